"""Kafka, as the platform sees it: where the broker is and how far the stream job is behind the topic."""

from __future__ import annotations

import dagster as dg

from propensity.streaming.job import DEFAULT_BOOTSTRAP, DEFAULT_TOPIC, bootstrap_servers, kafka_options, topic

ADMIN_TIMEOUT_S = 10.0


class KafkaResource(dg.ConfigurableResource):
    """The storefront events topic on a broker (local `make services` broker by default; MSK via env)."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topic: str = DEFAULT_TOPIC
    timeout_s: float = ADMIN_TIMEOUT_S

    @classmethod
    def from_env(cls) -> "KafkaResource":
        return cls(bootstrap_servers=bootstrap_servers(), topic=topic())

    def end_offsets(self) -> dict[int, int]:
        """Next offset to be written, per partition (the high watermark); raises when the broker does not answer."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": "propensity-lag-probe",
                "enable.auto.commit": False,
                "socket.timeout.ms": int(self.timeout_s * 1000),
                **kafka_options(),
            }
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=self.timeout_s)
            partitions = metadata.topics.get(self.topic)
            if partitions is None or partitions.error is not None:
                raise RuntimeError(
                    f"topic {self.topic} is not on {self.bootstrap_servers}: {partitions.error if partitions else 'missing'}"
                )
            return {
                p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=self.timeout_s)[1]
                for p in sorted(partitions.partitions)
            }
        except KafkaException as error:
            raise RuntimeError(
                f"Kafka at {self.bootstrap_servers} did not answer within {self.timeout_s} s: {error}"
            ) from error
        finally:
            consumer.close()

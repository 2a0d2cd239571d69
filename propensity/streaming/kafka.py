"""Kafka as the platform sees it: the storefront topic, how far the stream job is behind it, the dead-letter topic.

Every client here has a timeout. Brokers, topic and client options come from the settings (`KafkaSettings`); a
managed cluster (MSK) only needs those changed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from propensity.settings import KafkaSettings

# Amazon MSK with IAM authentication (KAFKA_AUTH=msk_iam): SASL over TLS. The Python clients sign a token with the
# process's AWS credentials (aws-msk-iam-sasl-signer-python, no network call); Spark's Kafka source uses AWS's
# Java login module, from the aws-msk-iam-auth package Spark fetches at start-up.
MSK_IAM_PACKAGE = "software.amazon.msk:aws-msk-iam-auth:2.4.0"
MSK_IAM_JAVA = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "AWS_MSK_IAM",
    "sasl.jaas.config": "software.amazon.msk.auth.iam.IAMLoginModule required;",
    "sasl.client.callback.handler.class": "software.amazon.msk.auth.iam.IAMClientCallbackHandler",
}


def msk_iam_token(region: str):
    """librdkafka's OAUTHBEARER callback: a fresh MSK IAM token and its expiry (seconds since the epoch)."""

    def token(_config: str) -> tuple[str, float]:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        value, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return value, expiry_ms / 1000.0

    return token


def client_config(kafka: KafkaSettings, **extra) -> dict:
    """A confluent-kafka client's configuration: the brokers, `extra`, the KAFKA_OPTION_* options, and the auth."""
    config = {"bootstrap.servers": kafka.bootstrap_servers, **extra, **kafka.options}
    if kafka.auth == "msk_iam":
        config.update(
            {"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER", "oauth_cb": msk_iam_token(kafka.region)}
        )
    return config


def spark_source_options(kafka: KafkaSettings) -> dict[str, str]:
    """The Kafka client options of Spark's Kafka source (`kafka.`-prefixed), the auth included."""
    options = {**kafka.options, **(MSK_IAM_JAVA if kafka.auth == "msk_iam" else {})}
    return {f"kafka.{key}": value for key, value in options.items()}


ADMIN_TIMEOUT_S = 10.0
CREATE_TOPIC_TIMEOUT_S = 30.0
DEAD_LETTER_TIMEOUT_S = 10.0
TOPIC_PARTITIONS = 2
MAX_STALL_S = 60.0


def end_offsets(kafka: KafkaSettings, timeout_s: float = ADMIN_TIMEOUT_S) -> dict[int, int]:
    """Next offset to be written, per partition (the high watermark); raises when the broker does not answer."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        client_config(
            kafka,
            **{
                "group.id": "propensity-lag-probe",
                "enable.auto.commit": False,
                "socket.timeout.ms": int(timeout_s * 1000),
            },
        )
    )
    try:
        metadata = consumer.list_topics(kafka.topic, timeout=timeout_s)
        partitions = metadata.topics.get(kafka.topic)
        if partitions is None or partitions.error is not None:
            why = partitions.error if partitions else "missing"
            raise RuntimeError(f"topic {kafka.topic} is not on {kafka.bootstrap_servers}: {why}")
        return {
            p: consumer.get_watermark_offsets(TopicPartition(kafka.topic, p), timeout=timeout_s)[1]
            for p in sorted(partitions.partitions)
        }
    except KafkaException as error:
        raise RuntimeError(
            f"Kafka at {kafka.bootstrap_servers} did not answer within {timeout_s} s: {error}; run make services"
        ) from error
    finally:
        consumer.close()


def ensure_topic(kafka: KafkaSettings, partitions: int = TOPIC_PARTITIONS) -> None:
    """Create the storefront topic if the broker does not have it (a managed cluster may forbid this)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(kafka))
    existing = admin.list_topics(timeout=CREATE_TOPIC_TIMEOUT_S).topics
    if kafka.topic in existing:
        return
    futures = admin.create_topics([NewTopic(kafka.topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[kafka.topic].result(timeout=CREATE_TOPIC_TIMEOUT_S)
    except KafkaException as error:
        if "TOPIC_ALREADY_EXISTS" not in str(error):
            raise


def dead_letter_producer(kafka: KafkaSettings):
    """Quarantined messages to the dead-letter topic, the reason in a header; delivery waited for (bounded)."""
    from confluent_kafka import Producer

    producer = Producer(client_config(kafka, **{"message.timeout.ms": 10000}))

    def send(bad: pd.DataFrame) -> None:
        for message, reason in zip(bad["message"], bad["reason"]):
            producer.produce(kafka.dead_letter_topic, value=message.encode(), headers={"reason": reason.encode()})
        remaining = producer.flush(DEAD_LETTER_TIMEOUT_S)
        if remaining:
            raise RuntimeError(
                f"{remaining} dead-letter messages not delivered to {kafka.dead_letter_topic} "
                f"within {DEAD_LETTER_TIMEOUT_S:.0f} s"
            )

    return send


def stream_status(kafka: KafkaSettings, progress_path: Path, max_stall_s: float = MAX_STALL_S) -> dict:
    """Lag per partition of the stream job behind the topic, from the job's progress file and the end offsets.

    `behind` is true when messages wait and the job has not finished a batch for `max_stall_s`: stopped, stuck, or
    slower than the storefront."""
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {}
    if progress and progress.get("topic") != kafka.topic:
        progress = {}  # the job was consuming another topic: nothing is known about this one
    end = end_offsets(kafka)
    processed = {int(p): int(o) for p, o in progress.get("offsets", {}).items()}
    lag = {p: max(0, end_offset - (processed[p] + 1 if p in processed else 0)) for p, end_offset in end.items()}
    processed_at = progress.get("processed_at")
    since = None if processed_at is None else time.time() - processed_at
    total_lag = sum(lag.values())
    return {
        "topic": kafka.topic,
        "lag_messages": total_lag,
        "lag_by_partition": {str(p): v for p, v in lag.items()},
        "last_offsets": {str(p): v for p, v in processed.items()},
        "last_batch_id": progress.get("batch_id"),
        "seconds_since_last_batch": None if since is None else round(since, 1),
        "newest_event_time_online": (progress.get("report") or {}).get("max_event_time"),
        "behind": total_lag > 0 and (since is None or since > max_stall_s),
    }

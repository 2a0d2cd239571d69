"""Kafka as a Dagster resource: the storefront topic and how far the stream job is behind it
(`propensity.streaming.kafka`)."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from propensity.settings import DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_TOPIC, KafkaSettings, settings
from propensity.streaming.job import progress_path
from propensity.streaming.kafka import ADMIN_TIMEOUT_S, MAX_STALL_S, end_offsets, stream_status


class KafkaResource(dg.ConfigurableResource):
    """The storefront events topic on a broker (the `make services` broker by default; MSK through the settings).
    Client options (KAFKA_OPTION_*, which may hold SASL secrets) come from the settings, never from the UI."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    topic: str = DEFAULT_TOPIC
    timeout_s: float = ADMIN_TIMEOUT_S

    def kafka(self) -> KafkaSettings:
        return replace(settings().kafka, bootstrap_servers=self.bootstrap_servers, topic=self.topic)

    def end_offsets(self) -> dict[int, int]:
        return end_offsets(self.kafka(), self.timeout_s)

    def stream_status(self, max_stall_s: float = MAX_STALL_S) -> dict:
        return stream_status(self.kafka(), progress_path("kafka"), max_stall_s)

"""The stream job: Spark Structured Streaming from Kafka (services profile) or a directory of JSON-lines files (the
embedded default) into the Feast online store, through `SessionStreamProcessor` in `foreachBatch`.

    python -m propensity.streaming.job --source kafka      # topic storefront.events at KAFKA_BOOTSTRAP_SERVERS
    python -m propensity.streaming.job --source file       # new files in $PROPENSITY_HOME/streaming/inbox

State and bookkeeping live under `$PROPENSITY_HOME/streaming/<source>/`: Spark's checkpoint (offsets and commits),
the processor's per-batch state snapshots, and `progress.json` (last batch, offsets per partition, newest event
time, when it was processed), which the Dagster observation and freshness check read. Raw events the stream folded
are archived to `lake/stream_events`, rejects to `lake/stream_quarantine` (and the dead-letter topic).

Micro-batches run back to back (no fixed trigger interval): on 2 cores that is what keeps freshness low.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd

from propensity.paths import home, table_dir, write_text_atomic
from propensity.streaming.processor import SessionStreamProcessor

LOG = logging.getLogger("propensity.streaming")
DEFAULT_TOPIC = "storefront.events"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ARCHIVE_TABLE = "stream_events"
STREAMING_SPARK_CONFIG = {
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
}
QUARANTINE_TABLE = "stream_quarantine"


def bootstrap_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)


def topic() -> str:
    """The events topic (STOREFRONT_TOPIC, default storefront.events); rejects go to `<topic>.dlq`."""
    return os.environ.get("STOREFRONT_TOPIC", DEFAULT_TOPIC)


def dead_letter_topic() -> str:
    return f"{topic()}.dlq"


def stream_dir(source: str) -> Path:
    return home() / "streaming" / source


def progress_path(source: str) -> Path:
    """What the job leaves after every micro-batch for the Dagster observation and freshness check."""
    return stream_dir(source) / "progress.json"


def inbox_dir() -> Path:
    return home() / "streaming" / "inbox"


def kafka_options() -> dict[str, str]:
    """Extra client settings for a managed cluster (MSK: SASL/IAM or TLS) as KAFKA_OPTION_<NAME>=value, e.g.
    KAFKA_OPTION_SECURITY_PROTOCOL=SASL_SSL -> security.protocol=SASL_SSL."""
    prefix = "KAFKA_OPTION_"
    return {k[len(prefix) :].lower().replace("_", "."): v for k, v in os.environ.items() if k.startswith(prefix)}


def spark_session(app_name: str = "propensity-stream"):
    from pyspark.sql import SparkSession

    from resources.spark import spark_config, streaming_config

    builder = SparkSession.builder.appName(app_name)
    config = spark_config() | streaming_config() | STREAMING_SPARK_CONFIG
    for key, value in config.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def online_writer(profile: str):
    """Each session's newest feature row into the online store, through the session push source: on Redis with
    `RedisPushWriter` (Feast's layout and bytes, without its per-row conversion), elsewhere with `FeatureStore.push`."""
    from feast.data_source import PushMode

    from propensity.features.definitions import SESSION_PUSH_SOURCE
    from propensity.streaming.redis_writer import RedisPushWriter
    from resources.feast import open_feature_store

    store = open_feature_store(profile)
    if store.config.online_store.type == "redis":
        return RedisPushWriter(store, SESSION_PUSH_SOURCE).write

    def write(rows: pd.DataFrame) -> None:
        store.push(SESSION_PUSH_SOURCE, rows, to=PushMode.ONLINE)

    return write


def dead_letter_producer(bootstrap: str):
    """Quarantined messages to the dead-letter topic, the reason in a header; delivery waited for (bounded)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 10000, **kafka_options()})

    def send(bad: pd.DataFrame) -> None:
        for message, reason in zip(bad["message"], bad["reason"]):
            producer.produce(dead_letter_topic(), value=message.encode(), headers={"reason": reason.encode()})
        remaining = producer.flush(10.0)
        if remaining:
            raise RuntimeError(f"{remaining} dead-letter messages not delivered to {dead_letter_topic()} within 10 s")

    return send


def build_processor(source: str, profile: str) -> SessionStreamProcessor:
    return SessionStreamProcessor(
        state_dir=stream_dir(source) / "state",
        archive_dir=table_dir(ARCHIVE_TABLE),
        quarantine_dir=table_dir(QUARANTINE_TABLE),
        write_online=online_writer(profile),
        dead_letter=dead_letter_producer(bootstrap_servers()) if source == "kafka" else None,
    )


def start_query(spark, source: str, profile: str, max_per_batch: int | None = None):
    """Start the streaming query; returns it (the caller awaits or stops it)."""
    directory = stream_dir(source)
    directory.mkdir(parents=True, exist_ok=True)
    processor = build_processor(source, profile)

    if source == "kafka":
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", bootstrap_servers())
            .option("subscribe", topic())
            .option("startingOffsets", "earliest")
            .option("failOnDataLoss", "false")
        )
        for key, value in kafka_options().items():
            reader = reader.option(f"kafka.{key}", value)
        if max_per_batch:
            reader = reader.option("maxOffsetsPerTrigger", str(max_per_batch))
        frame = reader.load().selectExpr("CAST(key AS STRING) AS key", "value", "partition", "offset", "timestamp")
    elif source == "file":
        inbox_dir().mkdir(parents=True, exist_ok=True)
        reader = spark.readStream.format("text")
        if max_per_batch:
            reader = reader.option("maxFilesPerTrigger", "1")
        from pyspark.sql import functions as F

        frame = reader.load(str(inbox_dir())).select(
            F.lit(None).cast("string").alias("key"),
            F.col("value"),
            F.lit(-1).alias("partition"),
            F.lit(-1).cast("long").alias("offset"),
            F.current_timestamp().alias("timestamp"),
        )
    else:
        raise ValueError(f"unknown stream source {source!r}: kafka or file")

    # Offsets processed so far per partition, carried in memory; a restart picks them up from the last progress file
    # when it was for the same topic.
    consumed = topic() if source == "kafka" else str(inbox_dir())
    progress = progress_path(source)
    previous = json.loads(progress.read_text()) if progress.exists() else {}
    offsets_done: dict[str, int] = dict(previous.get("offsets", {})) if previous.get("topic") == consumed else {}

    def each_batch(batch, batch_id: int) -> None:
        messages = batch.toPandas()
        report = processor.process(batch_id, messages)
        if source == "kafka" and len(messages):
            offsets_done.update({str(p): int(o) for p, o in messages.groupby("partition")["offset"].max().items()})
        write_text_atomic(
            progress,
            json.dumps(
                {
                    "source": source,
                    "batch_id": batch_id,
                    "offsets": dict(offsets_done),
                    "processed_at": time.time(),
                    "report": report.__dict__,
                    "topic": consumed,
                },
                indent=2,
                default=str,
            ),
        )
        LOG.info(
            "batch %s: %s messages, %s folded, %s quarantined in %.3f s",
            batch_id,
            report.messages,
            report.folded,
            report.quarantined,
            report.seconds,
        )

    return (
        frame.writeStream.foreachBatch(each_batch)
        .option("checkpointLocation", str(directory / "checkpoint"))
        .queryName(f"session_features_{source}")
        .start()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m propensity.streaming.job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=["kafka", "file"], default="file")
    parser.add_argument("--profile", default=os.environ.get("PROPENSITY_PROFILE", "local"))
    parser.add_argument("--max-per-batch", type=int, help="Kafka: at most this many messages per micro-batch")
    parser.add_argument("--run-seconds", type=float, help="stop after this long (default: run until interrupted)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ["PROPENSITY_PROFILE"] = args.profile
    spark = spark_session()
    spark.sparkContext.setLogLevel("WARN")
    query = start_query(spark, args.source, args.profile, args.max_per_batch)
    signal.signal(signal.SIGTERM, lambda *_: query.stop())
    print(
        f"streaming from {args.source} into the {args.profile} online store; state in {stream_dir(args.source)}",
        flush=True,
    )
    try:
        query.awaitTermination(args.run_seconds)
    except KeyboardInterrupt:
        pass
    finally:
        query.stop()
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

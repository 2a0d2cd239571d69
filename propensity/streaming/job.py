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
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from propensity.paths import home, table_dir, write_text_atomic
from propensity.settings import PROFILES, Settings
from propensity.settings import settings as current_settings
from propensity.spark import spark_config, streaming_config
from propensity.streaming import ALLOWED_LATENESS_S
from propensity.streaming.kafka import dead_letter_producer, spark_source_options

# Feast, pandas and the processor (pandera) are imported where they are used: the job's start imports them while
# Spark's JVM starts (`main`), and modules that only want `progress_path` do not import them at all.
if TYPE_CHECKING:
    from propensity.streaming.processor import Abandoned, SessionStreamProcessor

LOG = logging.getLogger("propensity.streaming")
ARCHIVE_TABLE = "stream_events"
QUARANTINE_TABLE = "stream_quarantine"
STREAMING_SPARK_CONFIG = {
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
}


def stream_dir(source: str, settings: Settings | None = None) -> Path:
    return home(settings) / "streaming" / source


def progress_path(source: str, settings: Settings | None = None) -> Path:
    """What the job leaves after every micro-batch for the Dagster observation and freshness check."""
    return stream_dir(source, settings) / "progress.json"


def inbox_dir(settings: Settings | None = None) -> Path:
    return home(settings) / "streaming" / "inbox"


def spark_session(app_name: str = "propensity-stream", settings: Settings | None = None):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    config = spark_config(settings) | streaming_config(settings) | STREAMING_SPARK_CONFIG
    for key, value in config.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def online_writer(profile: str, settings: Settings | None = None):
    """Each session's newest feature row and fold state into the online store, through their push sources: on Redis
    with `RedisPushWriter` (Feast's layout and bytes, without its per-row conversion; both in one HSET per session),
    elsewhere with `FeatureStore.push`."""
    from feast.data_source import PushMode

    from propensity.feature_store import open_feature_store
    from propensity.features.definitions import (
        FOLD_STATE_FIELDS,
        SESSION_FEATURE_NAMES,
        SESSION_FOLD_STATE_PUSH_SOURCE,
        SESSION_PUSH_SOURCE,
    )
    from propensity.streaming.processor import OnlineStoreUnreachable
    from propensity.streaming.redis_writer import RedisPushWriter

    store = open_feature_store(profile, settings=settings)
    if store.config.online_store.type == "redis":
        return RedisPushWriter(store, [SESSION_PUSH_SOURCE, SESSION_FOLD_STATE_PUSH_SOURCE]).write

    keys = ["session_id", "user_id", "event_timestamp"]

    def write(rows) -> None:
        try:
            store.push(SESSION_PUSH_SOURCE, rows[[*keys, *SESSION_FEATURE_NAMES]], to=PushMode.ONLINE)
            store.push(SESSION_FOLD_STATE_PUSH_SOURCE, rows[[*keys, *FOLD_STATE_FIELDS]], to=PushMode.ONLINE)
        except sqlite3.OperationalError as error:  # locked by another writer, or its disk gone: worth retrying
            raise OnlineStoreUnreachable(f"the SQLite online store: {error}") from error

    return write


def build_processor(
    source: str,
    profile: str,
    settings: Settings | None = None,
    allowed_lateness_s: float = ALLOWED_LATENESS_S,
    stopping: threading.Event | None = None,
) -> SessionStreamProcessor:
    import pandas as pd

    from propensity.streaming.processor import SessionStreamProcessor

    settings = settings or current_settings()
    return SessionStreamProcessor(
        state_dir=stream_dir(source, settings) / "state",
        archive_dir=table_dir(ARCHIVE_TABLE, settings),
        quarantine_dir=table_dir(QUARANTINE_TABLE, settings),
        write_online=online_writer(profile, settings),
        dead_letter=dead_letter_producer(settings.kafka) if source == "kafka" else None,
        allowed_lateness=pd.Timedelta(seconds=allowed_lateness_s),
        stopping=stopping,
    )


def start_query(
    spark,
    source: str,
    profile: str | None = None,
    max_per_batch: int | None = None,
    settings: Settings | None = None,
    allowed_lateness_s: float = ALLOWED_LATENESS_S,
    stopping: threading.Event | None = None,
    on_abandon=None,
    startup: dict | None = None,
    processor: SessionStreamProcessor | None = None,
):
    """Start the streaming query; returns it (the caller awaits or stops it). `stopping`, once set, makes a batch that
    waits for the online store give up (it is run again on the next start): `on_abandon(error)` is called then, in
    the batch's thread; without it the batch fails the query. `startup` (the job's own start-up marks, seconds since
    the process started) is completed by the first batch and written to the progress file. `processor`: one built
    beforehand (the job builds it while the JVM starts); by default one is built here."""
    from propensity.streaming.processor import Abandoned

    settings = settings or current_settings()
    kafka = settings.kafka
    directory = stream_dir(source, settings)
    directory.mkdir(parents=True, exist_ok=True)
    if processor is None:
        processor = build_processor(source, profile or settings.profile, settings, allowed_lateness_s, stopping)

    if source == "kafka":
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
            .option("subscribe", kafka.topic)
            .option("startingOffsets", "earliest")
            .option("failOnDataLoss", "false")
        )
        for key, value in spark_source_options(kafka).items():
            reader = reader.option(key, value)
        if max_per_batch:
            reader = reader.option("maxOffsetsPerTrigger", str(max_per_batch))
        frame = reader.load().select("value", "partition", "offset")  # what the processor reads, nothing more
    elif source == "file":
        inbox_dir(settings).mkdir(parents=True, exist_ok=True)
        reader = spark.readStream.format("text")
        if max_per_batch:
            reader = reader.option("maxFilesPerTrigger", "1")
        from pyspark.sql import functions as F

        frame = reader.load(str(inbox_dir(settings))).select(
            F.col("value"), F.lit(-1).alias("partition"), F.lit(-1).cast("long").alias("offset")
        )
    else:
        raise ValueError(f"unknown stream source {source!r}: kafka or file")

    # Offsets processed so far per partition, carried in memory; a restart picks them up from the last progress file
    # when it was for the same topic.
    consumed = kafka.topic if source == "kafka" else str(inbox_dir(settings))
    progress = progress_path(source, settings)
    previous = json.loads(progress.read_text()) if progress.exists() else {}
    offsets_done: dict[str, int] = dict(previous.get("offsets", {})) if previous.get("topic") == consumed else {}

    def each_batch(batch, batch_id: int) -> None:
        if startup is not None and "first_batch_started_s" not in startup:
            startup["first_batch_started_s"] = since_process_start()
        messages = batch.toPandas()
        try:
            report = processor.process(batch_id, messages)
        except Abandoned as error:
            if on_abandon is None:
                raise
            on_abandon(error)
            raise
        if source == "kafka" and len(messages):
            offsets_done.update({str(p): int(o) for p, o in messages.groupby("partition")["offset"].max().items()})
        if startup is not None and "first_batch_done_s" not in startup:
            startup["first_batch_done_s"] = since_process_start()
            LOG.info("start-up: %s", ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in startup.items()))
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
                    **({"startup": startup} if startup is not None else {}),
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

    query = (
        frame.writeStream.foreachBatch(each_batch)
        .option("checkpointLocation", str(directory / "checkpoint"))
        .queryName(f"session_features_{source}")
        .start()
    )
    if startup is not None:
        startup.setdefault("query_started_s", since_process_start())
    return query


RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0


def supervise(start, stopping: threading.Event, deadline: float | None = None) -> int:
    """Run the query `start()` returns until a stop is requested or the deadline passes; a query that fails (the
    broker unreachable past Spark's own retries, say) is started again from its checkpoint, with backoff (1 s
    doubling to 60 s). The main thread only polls: a signal handler that called into Py4J while the main thread
    waited in it would make a reentrant call."""
    from pyspark.errors import StreamingQueryException

    delay = RESTART_FIRST_S
    while True:
        started = time.monotonic()
        query = start()
        while query.isActive and not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                query.awaitTermination(0.5)
            except StreamingQueryException:
                break  # failed: query.exception() below says why
        if stopping.is_set() or (deadline is not None and time.monotonic() >= deadline):
            query.stop()
            return 0
        error = query.exception()
        if error is None:
            return 0  # stopped by someone else
        if time.monotonic() - started > RESTART_MAX_S:
            delay = RESTART_FIRST_S  # it had been running: this is a new failure, not the same one again
        reason = str(error).strip().splitlines()[0][:300]
        LOG.warning("the stream query failed (%s); starting it again from its checkpoint in %.0f s", reason, delay)
        if stopping.wait(delay):
            return 0
        delay = min(delay * 2, RESTART_MAX_S)


def since_process_start() -> float:
    """Seconds since this process started (the interpreter's own start-up included)."""
    import psutil

    return round(time.time() - psutil.Process().create_time(), 3)


def exit_uncommitted(error: Abandoned) -> None:
    """A stop requested while a batch waits for the online store: leave at once, the batch uncommitted (Spark's
    offsets log holds it, so the next start runs it again, from the state before it). The JVM exits with us: PySpark's
    gateway ends when its parent's stdin closes. Returning or raising instead would make Spark log the batch as a
    failed query."""
    LOG.warning("%s: exiting without committing it; the next start runs it again", error)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m propensity.streaming.job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=["kafka", "file"], default="file")
    parser.add_argument("--profile", choices=PROFILES, default=current_settings().profile)
    parser.add_argument("--max-per-batch", type=int, help="Kafka: at most this many messages per micro-batch")
    parser.add_argument("--run-seconds", type=float, help="stop after this long (default: run until interrupted)")
    parser.add_argument(
        "--allowed-lateness-s",
        type=float,
        default=ALLOWED_LATENESS_S,
        help="how far behind the watermark a session may fall before it expires (a replay that sends a day's sessions "
        "out of time order across sessions needs a day)",
    )
    args = parser.parse_args(argv)
    startup = {"imports_done_s": since_process_start()}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stopping = threading.Event()

    def request_stop(signum, _frame) -> None:
        if not stopping.is_set():
            LOG.info(
                "%s: stopping (a batch in flight finishes, or is abandoned while it waits)", signal.Signals(signum).name
            )
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Spark's JVM starts in a thread (PySpark then leaves our SIGINT handler alone) while this one imports Feast and
    # the processor and opens the online store: the two took 5 s each, one after the other.
    started: dict = {}

    def start_spark() -> None:
        try:
            started["spark"] = spark_session()
        except BaseException as error:  # noqa: BLE001 - raised in the main thread below
            started["error"] = error

    spark_thread = threading.Thread(target=start_spark, name="spark-start", daemon=True)
    spark_thread.start()
    first = [build_processor(args.source, args.profile, allowed_lateness_s=args.allowed_lateness_s, stopping=stopping)]
    startup["processor_ready_s"] = since_process_start()
    spark_thread.join()
    if "error" in started:
        raise started["error"]
    spark = started["spark"]
    spark.sparkContext.setLogLevel("WARN")
    startup["spark_session_s"] = since_process_start()
    print(
        f"streaming from {args.source} into the {args.profile} online store; state in {stream_dir(args.source)}",
        flush=True,
    )
    deadline = None if args.run_seconds is None else time.monotonic() + args.run_seconds
    try:
        return supervise(
            lambda: start_query(
                spark,
                args.source,
                args.profile,
                args.max_per_batch,
                allowed_lateness_s=args.allowed_lateness_s,
                stopping=stopping,
                on_abandon=exit_uncommitted,
                startup=startup,
                processor=first.pop() if first else None,  # a restart builds its own, from the snapshots
            ),
            stopping,
            deadline,
        )
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())

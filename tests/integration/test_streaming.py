"""The real-time path for real: the replayer publishes to Kafka, Spark Structured Streaming runs the stream job,
features land in Redis through Feast, and the Dagster freshness check watches it."""

import json
import time
import uuid
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from feature_repo import FEAST_OBJECTS
from propensity.feature_store import open_feature_store
from propensity.features.batch import session_prefix_features
from propensity.features.definitions import SESSION_FEATURE_NAMES, SESSION_FEATURE_VIEW
from propensity.paths import table_dir
from propensity.settings import Settings, settings
from propensity.sources.contract_files import contract_json_lines
from propensity.sources.simulator import simulate_traffic
from propensity.streaming.job import ARCHIVE_TABLE, QUARANTINE_TABLE, start_query, stream_dir
from propensity.streaming.kafka import ensure_topic
from propensity.streaming.replayer import load_events, replay_to_kafka
from resources.kafka import KafkaResource
from tests.conftest import REDIS_URL

pytestmark = [pytest.mark.spark, pytest.mark.redis, pytest.mark.kafka]
CATCH_UP_TIMEOUT_S = 240


@pytest.fixture
def stream_env(propensity_home):
    """A fresh state directory, a topic of its own, and the Redis online store (test db) registered with Feast."""
    import redis

    topic = f"test-events-{uuid.uuid4().hex[:8]}"
    config = replace(settings(), profile="redis", redis_url=REDIS_URL, kafka=replace(settings().kafka, topic=topic))
    try:
        ensure_topic(config.kafka)
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"Kafka is not answering at {config.kafka.bootstrap_servers}: run `make services` ({error})")
    redis.Redis.from_url(REDIS_URL, socket_timeout=5).flushdb()
    store = open_feature_store("redis", settings=config)
    store.apply(FEAST_OBJECTS)
    return config, store


def kafka_resource(config: Settings) -> KafkaResource:
    return KafkaResource(bootstrap_servers=config.kafka.bootstrap_servers, topic=config.kafka.topic)


def wait_until_caught_up(config: Settings, timeout_s: float = CATCH_UP_TIMEOUT_S) -> None:
    """Until the job has processed every message on the topic (the lag the Dagster observation reports is 0)."""
    kafka = kafka_resource(config)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = kafka.stream_status()
        if status["last_batch_id"] is not None and status["lag_messages"] == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"the stream did not catch up with {config.kafka.topic} within {timeout_s} s")


def stream_until_caught_up(spark, config: Settings, max_per_batch: int | None = None) -> None:
    """Run the stream job (Kafka source, Redis store) until it has consumed everything on the topic, then stop it."""
    query = start_query(spark, "kafka", max_per_batch=max_per_batch, settings=config)
    try:
        wait_until_caught_up(config)
    finally:
        query.stop()


def online_session_features(store, session_ids: list[str]) -> pd.DataFrame:
    features = [f"{SESSION_FEATURE_VIEW}:{name}" for name in SESSION_FEATURE_NAMES]
    frame = store.get_online_features(features=features, entity_rows=[{"session_id": s} for s in session_ids]).to_df()
    return frame.set_index("session_id")


def test_taobao_through_kafka_and_the_stream_equals_the_batch_features(stream_env, spark):
    """Parity: for every session, the online in-session features equal batch session_prefix_features at its last
    event."""
    config, store = stream_env
    events = load_events("taobao", 0, 0, 0)
    events = events[events["user_id"].map(hash) % 6 == 0]  # whole users: their sessions stay whole
    replay_to_kafka(events, config.kafka, speedup=None, progress=False)
    stream_until_caught_up(spark, config, max_per_batch=5000)

    archived = pd.read_parquet(table_dir(ARCHIVE_TABLE))
    assert len(archived) == len(events) and set(archived["event_id"]) == set(events["event_id"])
    batch = session_prefix_features(spark.read.parquet(str(table_dir(ARCHIVE_TABLE)))).toPandas()
    last = batch.sort_values("event_timestamp").groupby("session_id").tail(1).set_index("session_id")
    online = online_session_features(store, list(last.index))
    assert len(last) == events["session_id"].nunique() > 5000
    for name in SESSION_FEATURE_NAMES:
        np.testing.assert_array_equal(
            online.loc[last.index, name].to_numpy(dtype="float64"), last[name].to_numpy(dtype="float64"), err_msg=name
        )


def test_restart_from_checkpoint_mid_stream_loses_and_double_counts_nothing(stream_env, spark):
    config, store = stream_env
    events = simulate_traffic(n_users=400, days=1, seed=21).events
    first, second = events.iloc[: len(events) // 2], events.iloc[len(events) // 2 :]
    replay_to_kafka(first, config.kafka, speedup=None, progress=False)
    query = start_query(spark, "kafka", max_per_batch=150, settings=config)
    commits = stream_dir("kafka") / "checkpoint" / "commits"
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while len(list(commits.glob("[0-9]*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    query.stop()  # mid-stream: part of the first half is still unread
    # A crash after the last batch's writes but before Spark recorded its commit (and before it planned another):
    # on restart Spark runs that batch again, with the same offsets.
    last = max(int(p.name) for p in commits.glob("[0-9]*"))
    offsets = stream_dir("kafka") / "checkpoint" / "offsets"
    doomed = [commits / str(last)] + [p for p in offsets.glob("[0-9]*") if int(p.name) > last]
    for path in doomed:
        path.unlink()
        (path.parent / f".{path.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum beside each log file
    replay_to_kafka(second, config.kafka, speedup=None, progress=False)
    stream_until_caught_up(spark, config, max_per_batch=150)

    archived = pd.read_parquet(table_dir(ARCHIVE_TABLE))
    assert len(archived) == len(events) and archived["event_id"].is_unique
    expected = events.groupby("session_id").size()
    online = online_session_features(store, list(expected.index))
    np.testing.assert_array_equal(online.loc[expected.index, "session_events"].to_numpy(), expected.to_numpy())


def test_bad_messages_do_not_stop_the_job_and_are_quarantined_with_reasons(stream_env, spark):
    from confluent_kafka import Consumer, Producer

    config, store = stream_env
    topic = config.kafka.topic
    events = simulate_traffic(n_users=60, days=1, seed=4).events
    lines = contract_json_lines(events)
    producer = Producer({"bootstrap.servers": config.kafka.bootstrap_servers})
    query = start_query(spark, "kafka", settings=config)
    # Keyed by session, as the storefront sends them: one session's events stay in order on one partition. Unkeyed,
    # they would scatter over both partitions and a micro-batch could fold a later event first (then "late").
    keys = [session.encode() for session in events["session_id"]]
    try:
        for key, line in zip(keys[:20], lines[:20]):
            producer.produce(topic, key=key, value=line.encode())
        producer.produce(topic, value=b"{this is not json")
        producer.produce(
            topic, value=json.dumps({**json.loads(lines[0]), "event_id": "bad-price", "price": -5}).encode()
        )
        for key, line in zip(keys[20:], lines[20:]):
            producer.produce(topic, key=key, value=line.encode())
        producer.flush(30)
        wait_until_caught_up(config)
        assert query.isActive and query.exception() is None
    finally:
        query.stop()
    quarantine = pd.read_parquet(table_dir(QUARANTINE_TABLE))
    assert sorted(r.split(":")[0] for r in quarantine["reason"]) == ["contract", "malformed"]
    assert any(r.startswith("contract: price") for r in quarantine["reason"])
    expected = events.groupby("session_id").size()
    online = online_session_features(store, list(expected.index))
    np.testing.assert_array_equal(online.loc[expected.index, "session_events"].to_numpy(), expected.to_numpy())

    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka.bootstrap_servers,
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([f"{topic}.dlq"])
    dead, deadline = [], time.monotonic() + 30
    while len(dead) < 2 and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            dead.append(dict(message.headers())["reason"].decode())
    consumer.close()
    assert sorted(r.split(":")[0] for r in dead) == ["contract", "malformed"]


def test_freshness_check_fails_while_the_stream_is_stopped_and_passes_once_it_catches_up(stream_env, spark):
    from propensity_assets.streaming import StreamFreshnessConfig, stream_keeps_up

    config, _ = stream_env
    kafka = kafka_resource(config)
    replay_to_kafka(simulate_traffic(n_users=50, days=1, seed=8).events, config.kafka, speedup=None, progress=False)
    stopped = stream_keeps_up(config=StreamFreshnessConfig(max_stall_s=5), kafka=kafka)
    assert not stopped.passed and "messages waiting" in stopped.description

    query = start_query(spark, "kafka", settings=config)
    try:
        wait_until_caught_up(config)
        caught_up = stream_keeps_up(config=StreamFreshnessConfig(max_stall_s=5), kafka=kafka)
    finally:
        query.stop()
    assert caught_up.passed, caught_up.description

    # What the every-minute schedule runs: the observation and the check, in one run.
    import dagster as dg

    from propensity_assets.streaming import storefront_stream, stream_watch_job

    watch = (
        dg.Definitions(
            assets=[storefront_stream],
            asset_checks=[stream_keeps_up],
            jobs=[stream_watch_job],
            resources={"kafka": kafka},
        )
        .resolve_job_def("watch_stream")
        .execute_in_process()
    )
    observed = [
        e.event_specific_data.asset_observation for e in watch.all_events if e.event_type_value == "ASSET_OBSERVATION"
    ]
    checked = watch.get_asset_check_evaluations()
    assert [o.asset_key for o in observed] == [storefront_stream.key] and observed[0].metadata[
        "lag_messages"
    ].value == 0
    assert [(c.check_name, c.passed) for c in checked] == [("stream_keeps_up", True)]

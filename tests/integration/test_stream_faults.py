"""The stream job rides out faults on its own, tried as an operator would: the online store cut off through a relay
the test controls and given back (the job waits and resumes, nothing lost or counted twice), and the job stopped with
SIGTERM, idle or while it waits for the store (exit 0, no traceback; a restart picks up where it stopped)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis

from feature_repo import FEAST_OBJECTS
from propensity.feature_store import open_feature_store
from propensity.settings import PROJECT_ROOT, settings
from propensity.sources.simulator import simulate_traffic
from propensity.streaming.job import progress_path, start_query
from propensity.streaming.kafka import ensure_topic, stream_status
from propensity.streaming.replayer import replay_to_kafka
from tests.conftest import REDIS_URL
from tests.integration.test_streaming import online_session_features, wait_until_caught_up
from tests.tcp_relay import TcpRelay

pytestmark = [pytest.mark.spark, pytest.mark.redis, pytest.mark.kafka]
REDIS_PORT = int(REDIS_URL.split(":")[2].split("/")[0])
DB = REDIS_URL.rsplit("/", 1)[1]


@pytest.fixture
def relayed(propensity_home):
    """A topic of its own, and the settings of a stream whose Redis is behind a relay."""
    relay = TcpRelay(REDIS_PORT)
    topic = f"test-faults-{uuid.uuid4().hex[:8]}"
    config = replace(
        settings(),
        profile="redis",
        redis_url=f"redis://127.0.0.1:{relay.port}/{DB}",
        kafka=replace(settings().kafka, topic=topic),
    )
    ensure_topic(config.kafka)
    redis.Redis.from_url(REDIS_URL, socket_timeout=5).flushdb()
    open_feature_store("redis", redis_url=REDIS_URL).apply(FEAST_OBJECTS)
    yield config, relay
    relay.close()


def _expected_counts(events):
    return events.groupby("session_id").size()


def _assert_online_counts(events) -> None:
    expected = _expected_counts(events)
    online = online_session_features(open_feature_store("redis", redis_url=REDIS_URL), list(expected.index))
    np.testing.assert_array_equal(online.loc[expected.index, "session_events"].to_numpy(), expected.to_numpy())


def test_an_online_store_outage_is_waited_out_and_nothing_is_lost(relayed, spark, caplog):
    config, relay = relayed
    events = simulate_traffic(n_users=300, days=1, seed=31).events
    first, second = events.iloc[: len(events) // 2], events.iloc[len(events) // 2 :]
    caplog.set_level(logging.WARNING, logger="propensity.streaming")
    query = start_query(spark, "kafka", max_per_batch=400, settings=config)
    try:
        replay_to_kafka(first, config.kafka, speedup=None, progress=False)
        wait_until_caught_up(config)
        relay.cut()
        replay_to_kafka(second, config.kafka, speedup=None, progress=False)
        time.sleep(8)  # the job waits out the outage: it was dying here, about 8 s after the cut
        assert query.isActive and query.exception() is None
        relay.restore()
        wait_until_caught_up(config)
        assert query.isActive and query.exception() is None
    finally:
        query.stop()
    waited = [r.getMessage() for r in caplog.records if "waits for the online store" in r.getMessage()]
    assert len(waited) >= 3 and any("answers again" in r.getMessage() for r in caplog.records), waited
    _assert_online_counts(events)


def _job(config, home: Path, log: Path) -> subprocess.Popen:
    environ = dict(
        os.environ,
        PROPENSITY_HOME=str(home),
        PROPENSITY_PROFILE="redis",
        REDIS_URL=config.redis_url,
        STOREFRONT_TOPIC=config.kafka.topic,
        PYSPARK_PYTHON=sys.executable,
        SPARK_DRIVER_MEMORY="1g",
    )
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "propensity.streaming.job", "--source", "kafka", "--max-per-batch", "400"],
            cwd=PROJECT_ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _until(condition, job: subprocess.Popen, log: Path, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert job.poll() is None, f"the job exited ({job.returncode}) before {what}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not {what} within {timeout_s} s: {log.read_text()[-3000:]}"
        time.sleep(0.3)


def _caught_up(config, home: Path) -> bool:
    status = stream_status(config.kafka, progress_path("kafka", replace(settings(), home=home)))
    return status["last_batch_id"] is not None and status["lag_messages"] == 0


def _stop(job: subprocess.Popen, log: Path, timeout_s: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=timeout_s)
    return job.returncode, log.read_text(), time.monotonic() - started


def test_sigterm_exits_0_idle_and_while_waiting_for_the_store_and_a_restart_loses_nothing(relayed, tmp_path):
    config, relay = relayed
    events = simulate_traffic(n_users=200, days=1, seed=32).events
    first, second = events.iloc[: len(events) // 2], events.iloc[len(events) // 2 :]
    home = tmp_path / "home"
    open_feature_store("redis", redis_url=REDIS_URL, settings=replace(settings(), home=home)).apply(FEAST_OBJECTS)

    log = tmp_path / "idle.log"
    job = _job(config, home, log)
    replay_to_kafka(first, config.kafka, speedup=None, progress=False)
    _until(lambda: _caught_up(config, home), job, log, "caught up")
    code, output, seconds = _stop(job, log)  # idle
    assert code == 0 and "Traceback" not in output and "reentrant" not in output, output[-3000:]
    assert seconds < 30, seconds

    log = tmp_path / "waiting.log"
    relay.cut()
    job = _job(config, home, log)
    replay_to_kafka(second, config.kafka, speedup=None, progress=False)
    _until(lambda: "waits for the online store" in log.read_text(), job, log, "waiting for the store")
    code, output, seconds = _stop(job, log)  # its batch waits for Redis: abandoned, not committed
    assert code == 0 and "Traceback" not in output, output[-3000:]
    assert seconds < 30, seconds

    relay.restore()
    log = tmp_path / "restarted.log"
    job = _job(config, home, log)
    _until(lambda: _caught_up(config, home), job, log, "caught up after the restart")
    code, output, _ = _stop(job, log)
    assert code == 0, output[-3000:]
    _assert_online_counts(events)

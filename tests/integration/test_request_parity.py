"""Scores that see the event that triggered them, end to end: a Taobao slice replayed as a storefront sends it. Each
event goes to Kafka, where the stream job folds it into Redis; right after each decision point the storefront asks
the inference server for a score, carrying the session's events of the last 10 seconds. Whatever the stream had
folded by then, every score must equal the score of the batch `session_prefix_features` row at that point."""

from __future__ import annotations

import collections
import time
import zlib

import numpy as np
import pandas as pd
import pytest
import requests
from confluent_kafka import Producer

from propensity.features.definitions import MODEL_FEATURE_NAMES, SESSION_FEATURE_NAMES
from propensity.features.session import fold_session_events
from propensity.models.artifact import NO_INTERVENTION, load_artifact, write_artifact
from propensity.models.calibration_fit import choose_calibrator
from propensity.models.training import LightGBMSettings, fit_logistic_baseline, train_lightgbm
from propensity.sources.contract_files import contract_json_lines
from propensity.streaming.job import start_query
from propensity.streaming.replayer import load_events
from serving.online_features import open_online_feature_reader
from serving.scorer import Scorer
from serving.server import InferenceApp, InferenceLog
from tests.conftest import REDIS_URL
from tests.integration.test_inference_server import _event_json, _serve
from tests.integration.test_streaming import stream_env, wait_until_caught_up  # noqa: F401 - the fixture

pytestmark = [pytest.mark.spark, pytest.mark.redis, pytest.mark.kafka]
WINDOW_S = 10.0  # the storefront sends the session's events of the last 10 seconds with each score request
USERS_ONE_IN = 20  # a stable slice of Taobao's users: their sessions whole
CAUGHT_UP_EVERY = 200  # decision points


def _slice() -> pd.DataFrame:
    events = load_events("taobao", 0, 0, 0)
    return events[events["user_id"].map(lambda u: zlib.crc32(u.encode()) % USERS_ONE_IN == 0)].reset_index(drop=True)


def _model(events: pd.DataFrame, directory):
    """A real LightGBM on the slice's own decision points (label: the session buys later)."""
    rows, _ = fold_session_events(events.sort_values(["session_id", "event_time", "event_id"], kind="stable"))
    X = pd.DataFrame({name: np.nan for name in MODEL_FEATURE_NAMES}, index=rows.index)
    X[list(SESSION_FEATURE_NAMES)] = rows[list(SESSION_FEATURE_NAMES)].astype("float64")
    y = (rows.groupby("session_id")["purchases_so_far"].transform("max") > rows["purchases_so_far"]).astype(int)
    half = len(X) // 2
    booster = train_lightgbm(
        X[:half], y[:half], X[half:], y[half:], LightGBMSettings(min_data_in_leaf=10, max_rounds=40)
    )
    calibrator, _ = choose_calibrator(booster.predict(X[half:], raw_score=True), y[half:].to_numpy())
    return load_artifact(
        write_artifact(
            directory,
            booster=booster,
            calibrator=calibrator,
            baseline=fit_logistic_baseline(X.fillna(0), y),
            features={"feature_service": "purchase_propensity_v1", "features": list(MODEL_FEATURE_NAMES)},
            training={"rows": len(X)},
            metrics={},
            policy=NO_INTERVENTION,
        )
    )


def test_every_score_equals_the_batch_rows_whatever_the_stream_had_folded(stream_env, spark, tmp_path):  # noqa: F811
    config, _ = stream_env
    events = _slice()
    assert len(events) > 4000 and events["session_id"].nunique() > 800
    artifact = _model(events, tmp_path / "model")
    url, server = _serve(
        InferenceApp(
            Scorer(artifact, open_online_feature_reader("redis", redis_url=REDIS_URL)), InferenceLog(tmp_path / "log")
        )
    )
    producer = Producer({"bootstrap.servers": config.kafka.bootstrap_servers, "linger.ms": 0})
    query = start_query(spark, "kafka", settings=config)
    lines = contract_json_lines(events)
    # The storefront scores after the last event of each decision point (events sharing a timestamp are one point).
    last_of_point = ~events.duplicated(["session_id", "event_time"], keep="last").to_numpy()
    recent: dict[str, collections.deque] = collections.defaultdict(collections.deque)
    answers, folded_counts = [], collections.Counter()
    session = requests.Session()
    try:
        for i, row in enumerate(events.itertuples(index=False)):
            producer.produce(config.kafka.topic, key=row.session_id.encode(), value=lines[i].encode())
            producer.poll(0)
            now = time.monotonic()
            window = recent[row.session_id]
            window.append((now, _event_json(row)))
            while window[0][0] < now - WINDOW_S:
                window.popleft()
            if not last_of_point[i]:
                continue
            if len(answers) % CAUGHT_UP_EVERY == 0:  # now and then the stream is let catch up before the request
                producer.flush(10)
                wait_until_caught_up(config, timeout_s=30)
            body = {"session_id": row.session_id, "user_id": row.user_id, "events": [e for _, e in window]}
            answer = session.post(f"{url}/invocations", json=body, timeout=5).json()
            answers.append((row.session_id, row.event_time, answer))
            folded_counts[len(answer["request_events"]["folded"])] += 1
        producer.flush(30)
        wait_until_caught_up(config)
    finally:
        query.stop()
        server.should_exit = True

    from propensity.features.batch import session_prefix_features
    from tests.integration.test_spark_jobs import to_spark

    batch = session_prefix_features(to_spark(spark, events)).toPandas()
    batch["event_timestamp"] = pd.to_datetime(batch["event_timestamp"]).dt.tz_localize("UTC")
    batch = batch.set_index(["session_id", "event_timestamp"])
    assert len(answers) == len(batch)
    mismatches = []
    for session_id, point, answer in answers:
        row = batch.loc[(session_id, point)]
        got = np.array([answer["features"][n] for n in SESSION_FEATURE_NAMES], dtype="float64")
        want = row[list(SESSION_FEATURE_NAMES)].to_numpy(dtype="float64")
        vector = pd.DataFrame([{n: answer["features"][n] for n in MODEL_FEATURE_NAMES}]).astype("float64")
        vector[list(SESSION_FEATURE_NAMES)] = want
        expected = float(artifact.predict(vector)[0])
        if not np.allclose(got, want, rtol=0, atol=1e-9) or abs(answer["propensity"] - expected) > 1e-12:
            mismatches.append(
                (session_id, str(point), answer["request_events"], dict(zip(SESSION_FEATURE_NAMES, got - want)))
            )
    assert not mismatches, (len(mismatches), mismatches[:3])
    # Not vacuous: the stream was sometimes behind (events folded at request time) and sometimes not.
    assert folded_counts[0] > 0 and sum(c for n, c in folded_counts.items() if n > 0) > 0, folded_counts

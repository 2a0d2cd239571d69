"""The stream's Redis writer stores exactly what Feast's push stores: same keys, same fields, same bytes."""

import numpy as np
import pandas as pd
import pytest

from feature_repo import FEAST_OBJECTS
from propensity.contract import EVENT_TIME_DTYPE
from propensity.feature_store import open_feature_store
from propensity.features.definitions import (
    FOLD_STATE_FIELDS,
    FOLD_STATE_ID_FIELDS,
    FOLD_STATE_TIME_FIELD,
    SESSION_FEATURE_NAMES,
    SESSION_FEATURE_VIEW,
    SESSION_FEATURES,
    SESSION_FOLD_STATE_PUSH_SOURCE,
    SESSION_FOLD_STATE_VIEW,
    SESSION_PUSH_SOURCE,
)
from propensity.streaming.redis_writer import RedisPushWriter
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.fixture
def store(propensity_home):
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    client.flushdb()
    store = open_feature_store("redis")
    store.apply(FEAST_OBJECTS)
    yield store
    client.flushdb()


def _rows(n: int, seed: int, start: str = "2026-11-02 10:00:00") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "session_id": [f"s{i:04d}" for i in range(n)],
            "user_id": [f"u{i % 7}" for i in range(n)],
            # microsecond times, as the contract's event times are
            "event_timestamp": pd.Timestamp(start, tz="UTC")
            + pd.to_timedelta(rng.integers(0, 3_600_000_000, n), unit="us"),
        }
    )
    for feature in SESSION_FEATURES:
        if feature.dtype == "int64":
            rows[feature.name] = rng.integers(0, 40, n).astype("int64")
        else:
            rows[feature.name] = rng.normal(50, 30, n).round(rng.integers(0, 6))
    return rows


def _dump(client) -> dict:
    return {key: client.hgetall(key) for key in sorted(client.keys("*"))}


def test_writes_the_bytes_feast_push_writes(store):
    import redis
    from feast.data_source import PushMode

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    rows = _rows(300, seed=1)
    rows.loc[3, "session_cart_value"] = np.nan  # Feast stores a NaN as an empty value; so must we
    rows["event_timestamp"] = rows["event_timestamp"].astype(EVENT_TIME_DTYPE)  # as the fold emits them (µs)
    store.push(SESSION_PUSH_SOURCE, rows, to=PushMode.ONLINE)
    by_feast = _dump(client)
    assert len(by_feast) == 300
    for key in by_feast:
        client.delete(key)

    RedisPushWriter(store, SESSION_PUSH_SOURCE).write(rows)
    assert _dump(client) == by_feast

    # and Feast reads it back as written
    read = store.get_online_features(
        features=[f"{SESSION_FEATURE_VIEW}:{name}" for name in SESSION_FEATURE_NAMES],
        entity_rows=[{"session_id": s} for s in rows["session_id"]],
    ).to_df()
    assert read["session_events"].tolist() == rows["session_events"].tolist()
    assert np.allclose(read["session_duration_s"], rows["session_duration_s"])
    assert np.isnan(read.loc[3, "session_cart_value"])


def test_features_and_fold_state_in_one_write_are_the_bytes_of_two_feast_pushes(store):
    import redis
    from feast.data_source import PushMode

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    rows = _rows(50, seed=4)
    rows["event_timestamp"] = rows["event_timestamp"].astype(EVENT_TIME_DTYPE)
    for i, name in enumerate(FOLD_STATE_ID_FIELDS):
        rows[name] = [sorted({f"{name[8]}{(j * 7 + k) % 13}" for k in range(j % 4 + i)}) for j in range(len(rows))]
    rows[FOLD_STATE_TIME_FIELD] = rows["event_timestamp"].astype("int64")
    keys = ["session_id", "user_id", "event_timestamp"]
    store.push(SESSION_PUSH_SOURCE, rows[[*keys, *SESSION_FEATURE_NAMES]], to=PushMode.ONLINE)
    store.push(SESSION_FOLD_STATE_PUSH_SOURCE, rows[[*keys, *FOLD_STATE_FIELDS]], to=PushMode.ONLINE)
    by_feast = _dump(client)
    for key in by_feast:
        client.delete(key)

    RedisPushWriter(store, [SESSION_PUSH_SOURCE, SESSION_FOLD_STATE_PUSH_SOURCE]).write(rows)
    assert _dump(client) == by_feast
    read = store.get_online_features(
        features=[f"{SESSION_FOLD_STATE_VIEW}:{name}" for name in FOLD_STATE_FIELDS],
        entity_rows=[{"session_id": s} for s in rows["session_id"]],
    ).to_df()
    for name in FOLD_STATE_ID_FIELDS:
        assert [list(v) if v is not None else [] for v in read[name]] == rows[name].tolist()
    assert read[FOLD_STATE_TIME_FIELD].tolist() == rows[FOLD_STATE_TIME_FIELD].tolist()


def test_a_stored_newer_row_stays_and_an_equal_instant_is_overwritten(store):
    writer = RedisPushWriter(store, SESSION_PUSH_SOURCE)
    first = _rows(3, seed=2)
    writer.write(first)

    older = first.copy()
    older["event_timestamp"] -= pd.Timedelta(seconds=1)
    older["session_events"] += 100
    same_instant = first.copy()
    same_instant["session_events"] += 1  # more events folded at the same decision time (split across batches)
    writer.write(older.iloc[[0]])
    writer.write(same_instant.iloc[[1]])

    read = store.get_online_features(
        features=[f"{SESSION_FEATURE_VIEW}:session_events"],
        entity_rows=[{"session_id": s} for s in first["session_id"]],
    ).to_df()
    expected = first["session_events"].tolist()
    expected[1] += 1
    assert read["session_events"].tolist() == expected


def test_one_row_per_session(store):
    rows = _rows(2, seed=3)
    rows.loc[1, "session_id"] = rows.loc[0, "session_id"]
    with pytest.raises(ValueError, match="one row per"):
        RedisPushWriter(store, SESSION_PUSH_SOURCE).write(rows)

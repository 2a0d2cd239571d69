"""The one-round-trip online reader against Feast's own `get_online_features`, on SQLite and on Redis."""

import math

import numpy as np
import pandas as pd
import pytest
import redis

from feature_repo import FEAST_OBJECTS
from propensity.feature_store import open_feature_store
from propensity.features.definitions import (
    FEATURE_SERVICE_NAME,
    MODEL_FEATURE_NAMES,
    SESSION_FEATURE_NAMES,
    SESSION_FEATURE_VIEW,
    USER_FEATURE_NAMES,
    USER_FEATURE_VIEW,
)
from propensity.online_parity import latest_rows
from serving.online_features import OnlineFeatureReader, OnlineStoreUnavailable
from tests.conftest import REDIS_URL, clear_home
from tests.integration.test_feast import build_feature_lake

pytestmark = pytest.mark.spark

UNUSED_REDIS_URL = "redis://127.0.0.1:6390/15"
PROFILES = ["local", "redis"]


@pytest.fixture(scope="module")
def materialised(spark):
    """Simulated traffic through the Spark jobs into the lake, materialised into SQLite and into Redis (db 15)."""
    clear_home()
    users_pd, sessions_pd = build_feature_lake(spark)

    start = min(users_pd["feature_timestamp"].min(), sessions_pd["event_timestamp"].min()).to_pydatetime()
    end = (sessions_pd["event_timestamp"].max() + pd.Timedelta(days=2)).to_pydatetime()
    redis.Redis.from_url(REDIS_URL, socket_timeout=5).flushdb()
    for profile in PROFILES:
        store = open_feature_store(profile)
        store.apply(FEAST_OBJECTS)
        store.materialize(start_date=start, end_date=end)
    yield users_pd, sessions_pd
    redis.Redis.from_url(REDIS_URL, socket_timeout=5).flushdb()


def _open(profile):
    store = open_feature_store(profile)
    return store, OnlineFeatureReader(store, FEATURE_SERVICE_NAME, profile=profile)


def _pairs(users, sessions):
    """Every session with its user, every user with an unknown session, unknown users, and mixed-up pairs."""
    known = sessions[["user_id", "session_id"]].drop_duplicates()
    pairs = list(known.itertuples(index=False, name=None))
    user_ids = sorted(users["user_id"].unique())
    session_ids = sorted(sessions["session_id"].unique())
    pairs += [(u, "no-such-session") for u in user_ids]
    pairs += [("no-such-user", s) for s in session_ids[::7]]
    pairs += [("no-such-user", "no-such-session"), ("", "")]
    pairs += list(zip(user_ids, session_ids[::-1]))  # a user with someone else's session
    pairs += pairs[:5]  # repeats in one batch
    return pairs


def _feast_matrix(store, pairs):
    got = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE_NAME),
        entity_rows=[{"user_id": u, "session_id": s} for u, s in pairs],
    ).to_dict()
    return np.array(
        [[math.nan if v is None else float(v) for v in got[name]] for name in MODEL_FEATURE_NAMES], dtype=np.float64
    ).T


def _expected_stamp(latest, entity, column, profile):
    if entity not in latest.index:
        return None
    stamp = latest.at[entity, column]
    # Feast's SQLite store keeps whole seconds (its datetime adapter writes int epoch seconds); Redis keeps nanos.
    return (stamp.floor("s") if profile == "local" else stamp).to_pydatetime()


@pytest.mark.parametrize("profile", PROFILES)
def test_reader_serves_what_feast_serves(materialised, profile):
    users, sessions = materialised
    store, reader = _open(profile)
    assert reader.profile == profile
    assert reader.store_type == {"local": "sqlite", "redis": "redis"}[profile]
    assert reader.feature_names == MODEL_FEATURE_NAMES
    pairs = _pairs(users, sessions)

    batch = reader.read_many(pairs)
    ours = np.vstack([row.values for row in batch])
    theirs = _feast_matrix(store, pairs)
    assert ours.dtype == np.float64 and ours.shape == (len(pairs), len(MODEL_FEATURE_NAMES))
    differ = ~((ours == theirs) | (np.isnan(ours) & np.isnan(theirs)))
    assert not differ.any(), [(pairs[i], MODEL_FEATURE_NAMES[j]) for i, j in zip(*np.nonzero(differ))][:5]
    # the same answers one pair at a time
    for i in range(0, len(pairs), 13):
        np.testing.assert_array_equal(reader.read(*pairs[i]).values, ours[i])
    # not vacuous: most known pairs have real values for both views
    assert np.isfinite(ours[:, MODEL_FEATURE_NAMES.index("session_events")]).sum() > 100
    assert np.isfinite(ours[:, MODEL_FEATURE_NAMES.index("user_events_30d")]).sum() > 100

    latest_users = latest_rows(users, "user_id", "feature_timestamp")
    latest_sessions = latest_rows(sessions, "session_id", "event_timestamp")
    for (user_id, session_id), row in zip(pairs, batch):
        want = {
            USER_FEATURE_VIEW: _expected_stamp(latest_users, user_id, "feature_timestamp", profile),
            SESSION_FEATURE_VIEW: _expected_stamp(latest_sessions, session_id, "event_timestamp", profile),
        }
        assert row.event_timestamps == want, (user_id, session_id)
        assert set(row.missing_views) == {view for view, stamp in want.items() if stamp is None}
        user_cols = [MODEL_FEATURE_NAMES.index(n) for n in USER_FEATURE_NAMES]
        if USER_FEATURE_VIEW in row.missing_views:
            assert np.isnan(row.values[user_cols]).all()
    reader.close()


@pytest.mark.parametrize("profile", PROFILES)
def test_unknown_session_is_nan_and_reported_missing(materialised, profile):
    users, _ = materialised
    _, reader = _open(profile)
    user_id = sorted(users["user_id"].unique())[0]

    got = reader.read(user_id, "no-such-session")

    session_cols = [MODEL_FEATURE_NAMES.index(n) for n in SESSION_FEATURE_NAMES]
    user_cols = [MODEL_FEATURE_NAMES.index(n) for n in USER_FEATURE_NAMES]
    assert np.isnan(got.values[session_cols]).all()
    assert got.missing_views == (SESSION_FEATURE_VIEW,)
    assert got.event_timestamps[SESSION_FEATURE_VIEW] is None
    assert got.event_timestamps[USER_FEATURE_VIEW] is not None
    assert not np.isnan(got.values[user_cols]).all()
    assert reader.read_many([]) == []


def test_redis_down_raises_online_store_unavailable(materialised):
    reader = OnlineFeatureReader(open_feature_store("redis", redis_url=UNUSED_REDIS_URL), profile="redis")
    with pytest.raises(OnlineStoreUnavailable, match="127.0.0.1:6390"):
        reader.read("u1", "s1")
    with pytest.raises(OnlineStoreUnavailable):
        reader.read_many([("u1", "s1"), ("u2", "s2")])


@pytest.mark.parametrize("profile", PROFILES)
def test_fold_states_read_with_the_features_are_the_folds_own(materialised, profile):
    """The Spark table of fold states, materialised into the store, read in the same round trip: each session's is
    the state the pandas fold ends the session with (SessionState), stamped as the session's newest row."""
    from propensity.contract import validate_events
    from propensity.features.session import fold_session_events
    from propensity.sources.simulator import simulate_traffic

    users, sessions = materialised
    events = validate_events(simulate_traffic(n_users=120, days=4, seed=3).events).valid
    _, states = fold_session_events(events.sort_values(["session_id", "event_time", "event_id"], kind="stable"))
    _, reader = _open(profile)
    known = sessions[["user_id", "session_id"]].drop_duplicates()
    pairs = list(known.itertuples(index=False, name=None)) + [("no-such-user", "no-such-session")]
    read = reader.read_many(pairs, with_fold_state=True)
    assert len(states) == len(known) > 100
    for (_, session_id), row in zip(pairs[:-1], read):
        state = states[session_id]
        assert row.fold_state is not None, session_id
        assert row.fold_state.product_ids == state.products
        assert row.fold_state.category_ids == state.categories
        assert row.fold_state.last_event_ids == state.last_event_ids and state.last_event_ids
        assert row.fold_state.decision_time == state.last_time.to_pydatetime()
    assert read[-1].fold_state is None
    assert all(row.fold_state is None for row in reader.read_many(pairs))  # only when asked for
    reader.close()

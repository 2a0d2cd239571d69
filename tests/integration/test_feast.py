"""Feast over the real feature repository: point-in-time correctness, online/offline agreement, `feast apply`."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import redis

from feature_repo import FEAST_OBJECTS
from propensity.contract import validate_events
from propensity.feature_store import FEATURE_REPO_DIR, open_feature_store
from propensity.features.batch import session_fold_states, session_prefix_features, user_daily_aggregates
from propensity.features.definitions import (
    FEATURE_SERVICE_NAME,
    SESSION_FEATURE_NAMES,
    SESSION_FEATURE_VIEW,
    SESSION_FOLD_STATE_VIEW,
    USER_FEATURE_NAMES,
    USER_FEATURE_VIEW,
)
from propensity.online_parity import online_mismatches
from propensity.paths import table_dir
from propensity.sessions import summarise_sessions
from propensity.sources.simulator import simulate_traffic
from tests.conftest import REDIS_URL
from tests.integration.test_spark_jobs import to_spark

pytestmark = pytest.mark.spark


def _naive_to_utc(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    if frame[column].dt.tz is None:
        frame[column] = frame[column].dt.tz_localize("UTC")
    frame[column] = frame[column].dt.tz_convert("UTC")
    return frame


@pytest.fixture
def feature_lake(spark, propensity_home):
    """Simulated traffic through the Spark jobs into the lake, as the assets write it."""
    return build_feature_lake(spark)


def build_feature_lake(spark) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write user_daily_aggregates, session_prefix_features and session_fold_state for simulated traffic; return the
    first two as pandas."""
    events = validate_events(simulate_traffic(n_users=120, days=4, seed=3).events).valid
    session_events = to_spark(spark, events)
    users = user_daily_aggregates(session_events, summarise_sessions(session_events))
    sessions = session_prefix_features(session_events)
    users.write.mode("overwrite").parquet(str(table_dir("user_daily_aggregates")))
    sessions.write.mode("overwrite").parquet(str(table_dir("session_prefix_features")))
    session_fold_states(session_events).write.mode("overwrite").parquet(str(table_dir(SESSION_FOLD_STATE_VIEW)))
    users_pd = _naive_to_utc(pd.read_parquet(table_dir("user_daily_aggregates")), "feature_timestamp")
    sessions_pd = _naive_to_utc(pd.read_parquet(table_dir("session_prefix_features")), "event_timestamp")
    return users_pd, sessions_pd


def _expected_point_in_time(entities, table, key, timestamp, names, ttl):
    """The reference answer: the latest row at or before the decision time, within the view's ttl."""
    unit = "datetime64[us, UTC]"
    left = entities.astype({"event_timestamp": unit}).sort_values("event_timestamp")
    right = table[[key, timestamp, *names]].astype({timestamp: unit}).sort_values(timestamp)
    joined = pd.merge_asof(
        left, right, left_on="event_timestamp", right_on=timestamp, by=key, direction="backward", tolerance=ttl
    )
    return joined.set_index("decision_id")[list(names)]


def test_point_in_time_join_returns_one_row_per_decision_and_never_leaks(feature_lake):
    users, sessions = feature_lake
    store = open_feature_store("local")
    store.apply(FEAST_OBJECTS)

    rng = np.random.default_rng(0)
    decisions = sessions[["session_id", "user_id", "event_timestamp"]].copy()
    # Same-second decision points: the same session and time twice, told apart only by the decision id.
    repeats = decisions.sample(40, random_state=1)
    # Just before a feature row: the row stamped one microsecond later must not be seen.
    just_before = decisions.sample(200, random_state=2).assign(
        event_timestamp=lambda f: f["event_timestamp"] - pd.Timedelta(microseconds=1)
    )
    # Anywhere in the day: crosses user-history midnights.
    anywhere = decisions.sample(200, random_state=3).assign(
        event_timestamp=lambda f: f["event_timestamp"] + pd.to_timedelta(rng.integers(0, 86_400, 200), unit="s")
    )
    entity_df = pd.concat([decisions, repeats, just_before, anywhere], ignore_index=True)
    entity_df["decision_id"] = [f"d{i}" for i in range(len(entity_df))]

    result = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(FEATURE_SERVICE_NAME)
    ).to_df()

    assert len(result) == len(entity_df)
    assert result["decision_id"].is_unique
    got = result.set_index("decision_id")
    expected_sessions = _expected_point_in_time(
        entity_df, sessions, "session_id", "event_timestamp", SESSION_FEATURE_NAMES, pd.Timedelta(hours=12)
    )
    expected_users = _expected_point_in_time(
        entity_df, users, "user_id", "feature_timestamp", USER_FEATURE_NAMES, pd.Timedelta(days=2)
    )
    for expected in (expected_sessions, expected_users):
        for name in expected.columns:
            want = expected[name].reindex(got.index).astype("float64")
            have = got[name].astype("float64")
            mismatch = ~((want == have) | (want.isna() & have.isna()))
            assert not mismatch.any(), f"{name}: {got.index[mismatch][:5].tolist()} differ from the as-of answer"
    # the decisions just before a row really were answered from an earlier row (or nothing)
    first_points = got.loc[entity_df["decision_id"].iloc[len(decisions) + 40 : len(decisions) + 240]]
    original = sessions.set_index(["session_id", "event_timestamp"])["session_events"]
    later_values = original.reindex(
        list(zip(just_before["session_id"], just_before["event_timestamp"] + pd.Timedelta(microseconds=1)))
    ).to_numpy()
    seen = first_points["session_events"].fillna(0).to_numpy()
    assert (seen < later_values).all()


@pytest.mark.parametrize("profile", ["local", "redis"])
def test_online_store_serves_the_latest_offline_values(feature_lake, profile):
    users, sessions = feature_lake
    if profile == "redis":
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).flushdb()
    store = open_feature_store(profile)
    store.apply(FEAST_OBJECTS)
    start = min(users["feature_timestamp"].min(), sessions["event_timestamp"].min()).to_pydatetime()
    end = (sessions["event_timestamp"].max() + pd.Timedelta(days=2)).to_pydatetime()
    store.materialize(start_date=start, end_date=end)

    assert online_mismatches(store, USER_FEATURE_VIEW, users, sorted(users["user_id"].unique())) == []
    assert online_mismatches(store, SESSION_FEATURE_VIEW, sessions, sorted(sessions["session_id"].unique())) == []
    if profile == "redis":
        assert redis.Redis.from_url(REDIS_URL, socket_timeout=5).dbsize() >= users["user_id"].nunique()
    unknown = store.get_online_features(
        features=[f"{SESSION_FEATURE_VIEW}:session_events"], entity_rows=[{"session_id": "no-such-session"}]
    ).to_dict()
    assert unknown["session_events"] == [None]


def test_feast_apply_cli_registers_the_feature_service(propensity_home):
    env = os.environ | {"FEAST_REDIS_CONNECTION_STRING": "127.0.0.1:6379"}
    feast = [sys.executable, "-m", "feast.cli.cli"]
    yaml = str(FEATURE_REPO_DIR / "feature_store.local.yaml")
    applied = subprocess.run(
        [*feast, "-c", str(FEATURE_REPO_DIR), "-f", yaml, "apply", "--skip-source-validation"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert applied.returncode == 0, applied.stderr[-3000:]
    listed = subprocess.run(
        [*feast, "-c", str(FEATURE_REPO_DIR), "-f", yaml, "feature-services", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert FEATURE_SERVICE_NAME in listed.stdout
    views = subprocess.run(
        [*feast, "-c", str(FEATURE_REPO_DIR), "-f", yaml, "feature-views", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert USER_FEATURE_VIEW in views.stdout and SESSION_FEATURE_VIEW in views.stdout

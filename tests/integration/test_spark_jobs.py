"""Spark batch jobs on crafted and real events: sessionisation, user aggregates, in-session features."""

import math

import pandas as pd
import pytest

from propensity.contract import EVENT_ARROW_SCHEMA, events_to_arrow
from propensity.datasets import dataset_file
from propensity.features.batch import session_prefix_features, user_daily_aggregates
from propensity.features.session import fold_session_events
from propensity.sessions import sessionize, summarise_sessions
from propensity.sources.taobao import USER_HISTORIES_FILE
from tests.conftest import contract_events

pytestmark = pytest.mark.spark


def to_spark(spark, events: pd.DataFrame):
    return spark.createDataFrame(events_to_arrow(events).to_pandas(), schema=_spark_schema(spark))


def _spark_schema(spark):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(EVENT_ARROW_SCHEMA)


def test_sessions_are_cut_at_a_thirty_minute_gap(spark):
    events = contract_events(
        [
            {"event_id": "a1", "event_time": "2026-11-02 10:00:00", "user_id": "u1", "event_type": "page_view"},
            {
                "event_id": "a2",
                "event_time": "2026-11-02 10:29:59",
                "user_id": "u1",
                "event_type": "page_view",
            },  # 29:59 gap: same
            {
                "event_id": "a3",
                "event_time": "2026-11-02 10:59:59",
                "user_id": "u1",
                "event_type": "page_view",
            },  # exactly 30:00: same
            {
                "event_id": "a4",
                "event_time": "2026-11-02 11:30:00",
                "user_id": "u1",
                "event_type": "page_view",
            },  # 30:01: new
            {
                "event_id": "b1",
                "event_time": "2026-11-02 10:10:00",
                "user_id": "u2",
                "event_type": "page_view",
            },  # other user
            {
                "event_id": "c1",
                "event_time": "2026-11-02 10:00:00",
                "user_id": "u3",
                "session_id": "given",
                "event_type": "page_view",
            },
            {
                "event_id": "c2",
                "event_time": "2026-11-02 15:00:00",
                "user_id": "u3",
                "session_id": "given",
                "event_type": "page_view",
            },
        ]
    )
    result = sessionize(to_spark(spark, events)).toPandas().set_index("event_id")["session_id"]
    start = int(pd.Timestamp("2026-11-02 10:00:00", tz="UTC").timestamp() * 1000)
    assert result["a1"] == result["a2"] == result["a3"] == f"s-u1-{start}"
    assert result["a4"] == f"s-u1-{int(pd.Timestamp('2026-11-02 11:30:00', tz='UTC').timestamp() * 1000)}"
    assert result["b1"] != result["a1"]
    assert result["c1"] == result["c2"] == "given"  # a source's own session id is kept, whatever the gap
    # deterministic: same events in another order, same ids
    again = sessionize(to_spark(spark, events.iloc[::-1])).toPandas().set_index("event_id")["session_id"]
    pd.testing.assert_series_equal(result.sort_index(), again.sort_index())


def test_user_daily_aggregates_match_a_hand_computation(spark):
    # u1: Mon 2026-11-02 a session with a cart add and an order of 2 x 10 + 5; Wed 11-04 a session without an order.
    events = contract_events(
        [
            {
                "event_id": "1",
                "event_time": "2026-11-02 09:00",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "page_view",
            },
            {
                "event_id": "2",
                "event_time": "2026-11-02 09:01",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "add_to_cart",
                "price": 10.0,
                "quantity": 2,
            },
            {
                "event_id": "3",
                "event_time": "2026-11-02 09:02",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "purchase",
                "price": 10.0,
                "quantity": 2,
            },
            {
                "event_id": "4",
                "event_time": "2026-11-02 09:02",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "purchase",
                "price": 5.0,
            },
            {
                "event_id": "5",
                "event_time": "2026-11-04 20:00",
                "user_id": "u1",
                "session_id": "s2",
                "event_type": "page_view",
            },
            {
                "event_id": "6",
                "event_time": "2026-11-04 20:05",
                "user_id": "u1",
                "session_id": "s2",
                "event_type": "search",
            },
            {
                "event_id": "7",
                "event_time": "2026-11-05 08:00",
                "user_id": "u2",
                "session_id": "s3",
                "event_type": "page_view",
            },
            {
                "event_id": "8",
                "event_time": "2026-10-01 12:00",
                "user_id": "u3",
                "session_id": "s4",
                "event_type": "page_view",
            },
        ]
    )
    session_events = to_spark(spark, events)
    aggregates = user_daily_aggregates(session_events, summarise_sessions(session_events)).toPandas()
    u1 = aggregates[aggregates["user_id"] == "u1"].set_index("as_of_date")
    days = [pd.Timestamp(d).date() for d in ("2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05")]
    assert list(u1.index) == days  # dense: a row for the quiet day, up to the data's last day
    # stamped at the next midnight: day D's activity is knowable from D+1 00:00 UTC, never earlier
    assert list(u1["feature_timestamp"]) == [
        pd.Timestamp(d) for d in ("2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06")
    ]
    assert list(u1["user_events_1d"]) == [4, 0, 2, 0]
    assert list(u1["user_events_7d"]) == [4, 4, 6, 6]
    assert list(u1["user_sessions_7d"]) == [1, 1, 2, 2]
    assert list(u1["user_cart_adds_1d"]) == [1, 0, 0, 0]
    assert list(u1["user_orders_7d"]) == [1, 1, 1, 1]
    assert list(u1["user_conversion_rate_7d"]) == [1.0, 1.0, 0.5, 0.5]
    assert list(u1["user_cart_add_rate_30d"]) == [0.25, 0.25, 1 / 6, 1 / 6]
    assert list(u1["user_avg_order_value_30d"]) == [25.0, 25.0, 25.0, 25.0]
    assert list(u1["user_days_since_last_event"]) == [0.0, 1.0, 0.0, 1.0]
    assert list(u1["user_days_since_last_order"]) == [0.0, 1.0, 2.0, 3.0]
    u2 = aggregates[aggregates["user_id"] == "u2"].iloc[0]
    assert math.isnan(u2["user_days_since_last_order"]) and math.isnan(u2["user_avg_order_value_30d"])
    assert u2["user_conversion_rate_30d"] == 0.0
    # recency is windowed like the counts, so it never grows with the store's age: u3's one visit counts for 30 days
    u3 = aggregates[aggregates["user_id"] == "u3"].set_index("as_of_date")["user_days_since_last_event"]
    assert u3[pd.Timestamp("2026-10-30").date()] == 29.0 and math.isnan(u3[pd.Timestamp("2026-10-31").date()])


def test_spark_session_features_equal_the_pandas_fold_on_real_events(spark):
    """Taobao's 43 complete user histories, sessionised by Spark, with tiny Arrow batches so sessions straddle them."""
    from propensity.contract import validate_events
    from propensity.sources.taobao import load_taobao

    raw = load_taobao([dataset_file("taobao", USER_HISTORIES_FILE)]).events
    events = validate_events(raw).valid
    session_events = sessionize(to_spark(spark, events))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")
    try:
        from_spark = session_prefix_features(session_events, partitions=3).toPandas()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    as_pandas = session_events.toPandas()
    as_pandas["event_time"] = as_pandas["event_time"].dt.tz_localize("UTC")
    as_pandas = as_pandas.sort_values(["session_id", "event_time", "event_id"])
    expected, _ = fold_session_events(as_pandas)
    from_spark["event_timestamp"] = from_spark["event_timestamp"].dt.tz_localize("UTC")
    key = ["session_id", "event_timestamp"]
    got = from_spark.sort_values(key).reset_index(drop=True)
    want = expected.sort_values(key).reset_index(drop=True)
    assert len(got) == len(want) > 3000
    assert got["session_id"].nunique() == 722  # SOURCE.md: 722 sessions at a 30-minute gap
    pd.testing.assert_frame_equal(got, want, check_dtype=False)

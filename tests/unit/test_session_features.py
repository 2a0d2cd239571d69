"""The in-session fold: hand-computed values, and the same answer however the events are batched."""

import numpy as np
import pandas as pd
import pytest

from propensity.features.definitions import SESSION_FEATURE_NAMES
from propensity.features.session import FEATURE_ROW_COLUMNS, fold_session_events, fold_sorted_batches
from tests.conftest import contract_events


def _session_events():
    return contract_events(
        [
            {
                "event_id": "e0",
                "event_time": "2026-11-02 10:00:00",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "page_view",
            },
            {
                "event_id": "e1",
                "event_time": "2026-11-02 10:00:30",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "product_view",
                "product_id": "p1",
                "category_id": "c1",
                "price": 10.0,
            },
            {
                "event_id": "e2",
                "event_time": "2026-11-02 10:00:30",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "add_to_cart",
                "product_id": "p1",
                "category_id": "c1",
                "price": 10.0,
                "quantity": 2,
            },
            {
                "event_id": "e3",
                "event_time": "2026-11-02 10:02:00",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "product_view",
                "product_id": "p2",
                "category_id": "c2",
                "price": 5.0,
            },
            {
                "event_id": "e4",
                "event_time": "2026-11-02 10:05:00",
                "user_id": "u1",
                "session_id": "s1",
                "event_type": "remove_from_cart",
                "product_id": "p1",
                "category_id": "c1",
                "price": 10.0,
            },
            {
                "event_id": "e5",
                "event_time": "2026-11-07 23:59:00",
                "user_id": "u2",
                "session_id": "s2",
                "event_type": "search",
            },
            {
                "event_id": "e6",
                "event_time": "2026-11-08 00:00:10",
                "user_id": "u2",
                "session_id": "s2",
                "event_type": "purchase",
                "product_id": "p9",
                "category_id": "c9",
                "price": 3.0,
            },
        ]
    )


def test_features_at_each_decision_point_match_a_hand_computation():
    rows, _ = fold_session_events(_session_events())
    assert list(rows.columns) == list(FEATURE_ROW_COLUMNS)
    # e1 and e2 share a timestamp: one decision point reflecting both
    assert list(rows["decision_event_id"]) == ["e0", "e2", "e3", "e4", "e5", "e6"]
    s1 = rows[rows["session_id"] == "s1"].reset_index(drop=True)
    assert list(s1["session_events"]) == [1, 3, 4, 5]
    assert list(s1["session_product_views"]) == [0, 1, 2, 2]
    assert list(s1["session_distinct_products"]) == [0, 1, 2, 2]
    assert list(s1["session_cart_adds"]) == [0, 1, 1, 1]
    assert list(s1["session_cart_removes"]) == [0, 0, 0, 1]
    assert list(s1["session_cart_value"]) == [0.0, 20.0, 20.0, 10.0]  # 2 x 10 added, 1 x 10 removed
    assert list(s1["session_duration_s"]) == [0.0, 30.0, 120.0, 300.0]
    assert list(s1["session_seconds_since_previous_event"]) == [0.0, 30.0, 90.0, 180.0]
    s2 = rows[rows["session_id"] == "s2"].reset_index(drop=True)
    assert list(s2["session_hour_utc"]) == [23, 0]
    assert list(s2["session_weekday"]) == [5, 6]  # Saturday, then Sunday after midnight
    assert list(s2["purchases_so_far"]) == [0, 1]


def _random_sessions(seed: int, sessions: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    types = ["page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "favourite", "checkout_start"]
    for s in range(sessions):
        t = pd.Timestamp("2026-11-02 08:00", tz="UTC") + pd.Timedelta(minutes=int(rng.integers(0, 600)))
        for i in range(int(rng.integers(1, 25))):
            t = t + pd.Timedelta(seconds=int(rng.choice([0, 0, 5, 40, 300])))  # many same-second events
            product = f"p{rng.integers(0, 8)}"
            rows.append(
                {
                    "event_id": f"e{s:03d}-{i:03d}",
                    "event_time": t,
                    "user_id": f"u{s % 7}",
                    "session_id": f"s{s:03d}",
                    "event_type": str(rng.choice(types)),
                    "product_id": product,
                    "category_id": f"c{product[-1]}",
                    "price": float(rng.integers(1, 50)),
                }
            )
    events = contract_events(rows)
    return events.sort_values(["session_id", "event_time", "event_id"]).reset_index(drop=True)


@pytest.mark.parametrize("batch_size", [1, 3, 17, 250])
def test_batching_never_changes_the_features(batch_size):
    events = _random_sessions(seed=batch_size)
    whole, _ = fold_session_events(events)
    batches = (events.iloc[i : i + batch_size] for i in range(0, len(events), batch_size))
    batched = pd.concat(list(fold_sorted_batches(batches)), ignore_index=True)
    pd.testing.assert_frame_equal(batched, whole.reset_index(drop=True))
    assert not whole.duplicated(["session_id", "event_timestamp"]).any()


def test_streaming_style_fold_carries_every_session_state():
    """Micro-batches in time order (sessions interleaved) with all states kept, as the stream job folds them."""
    events = _random_sessions(seed=11)
    whole, _ = fold_session_events(events)
    by_time = events.sort_values(["event_time", "session_id", "event_id"]).reset_index(drop=True)
    states, pieces = {}, []
    for start in range(0, len(by_time), 37):
        batch = by_time.iloc[start : start + 37].sort_values(["session_id", "event_time", "event_id"])
        rows, new_states = fold_session_events(batch, states)
        states |= new_states
        pieces.append(rows)
    streamed = pd.concat(pieces, ignore_index=True)
    # a decision point split across micro-batches is emitted twice; the later row is the complete one
    latest = streamed.groupby(["session_id", "event_timestamp"], sort=False).tail(1)
    latest = latest.sort_values(["session_id", "event_timestamp"]).reset_index(drop=True)
    expected = whole.sort_values(["session_id", "event_timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(latest[list(SESSION_FEATURE_NAMES)], expected[list(SESSION_FEATURE_NAMES)])

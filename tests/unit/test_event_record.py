"""One event's contract (propensity.event_record) and the frame validator (propensity.contract) give the same verdict
and the same values on every record of JSON's types; what the JSON path refuses on top says so."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from propensity.contract import EVENT_COLUMNS, EVENT_TYPES, validate_events
from propensity.event_record import InvalidEvent, validate_event

TIMES = st.one_of(
    st.datetimes(min_value=datetime(1678, 1, 1), max_value=datetime(2261, 12, 31)).map(
        lambda t: t.isoformat() + st_suffix(t)
    ),
    st.sampled_from(["2026-12-08", "2026-12-08 10:15:02", "2026-12-08T10:15:02.123456789Z", "not a time", "", "12"]),
)


def st_suffix(t: datetime) -> str:
    return ("Z", "+02:00", "-05:30", "")[t.microsecond % 4]


def _maybe(strategy):
    return st.one_of(st.none(), strategy)


IDS = st.one_of(st.text(max_size=6), st.sampled_from(["e1", "u1", "p", ""]))
RECORDS = st.fixed_dictionaries(
    {
        "event_id": _maybe(IDS),
        "event_time": _maybe(TIMES),
        "user_id": _maybe(IDS),
        "session_id": _maybe(IDS),
        "event_type": _maybe(st.sampled_from([*EVENT_TYPES, "view", "", "PURCHASE"])),
        "product_id": _maybe(IDS),
        "category_id": _maybe(IDS),
        "price": _maybe(st.one_of(st.floats(min_value=-5, max_value=1e6), st.just(math.nan), st.integers(-3, 99))),
        "quantity": _maybe(st.one_of(st.integers(-2, 20), st.floats(min_value=-2, max_value=20), st.just(math.nan))),
        "source": _maybe(st.sampled_from(["storefront", "", "s"])),
    }
)


def _frame_verdict(record: dict):
    raw = pd.DataFrame([record], columns=list(EVENT_COLUMNS)).astype("object")
    validated = validate_events(raw)
    return None if validated.valid.empty else validated.valid.iloc[0]


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(record=RECORDS)
def test_the_same_verdict_and_values_as_the_frame_validator(record):
    frame = _frame_verdict(record)
    try:
        event = validate_event(record)
    except InvalidEvent:
        assert frame is None, (record, frame)
        return
    assert frame is not None, (record, event)
    assert event.event_time == frame["event_time"].to_pydatetime()
    for field in ("event_id", "user_id", "session_id", "event_type", "product_id", "category_id", "source"):
        assert getattr(event, field) == (None if pd.isna(frame[field]) else frame[field]), field
    assert (event.price is None and math.isnan(frame["price"])) or event.price == frame["price"]
    assert event.quantity == frame["quantity"]


GOOD = {
    "event_id": "e1",
    "event_time": "2026-12-08T10:15:02.25Z",
    "user_id": "u1",
    "session_id": "s1",
    "event_type": "add_to_cart",
    "product_id": "p7",
    "category_id": None,
    "price": 19.9,
    "quantity": 2,
    "source": "storefront",
}


def test_a_good_event_in_utc_with_its_defaults():
    event = validate_event(GOOD)
    assert event.event_time == datetime(2026, 12, 8, 10, 15, 2, 250000, tzinfo=timezone.utc)
    assert (event.price, event.quantity, event.category_id) == (19.9, 2, None)
    naive = validate_event({**GOOD, "event_time": "2026-12-08T11:15:02", "quantity": None, "price": None})
    assert naive.event_time == datetime(2026, 12, 8, 11, 15, 2, tzinfo=timezone.utc)  # no offset: UTC
    assert (naive.quantity, naive.price) == (1, None)
    shifted = validate_event({**GOOD, "event_time": "2026-12-08T12:15:02.25+02:00"})
    assert shifted.event_time == event.event_time


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event_type": "view"}, "event_type: not one of the contract's values"),
        ({"event_type": {}}, "event_type: not one of the contract's values"),
        ({"price": -1}, "price: must be >= 0"),
        ({"price": "12.5"}, "price: not a number ('12.5')"),
        ({"quantity": 0}, "quantity: must be >= 1"),
        ({"quantity": 1.5}, "quantity: not a whole number"),
        ({"quantity": True}, "quantity: not a number (True)"),
        ({"event_time": "yesterday"}, "event_time: unparseable timestamp"),
        ({"event_time": 1733650000}, "event_time: unparseable timestamp"),
        ({"event_id": ""}, "event_id: must be a non-empty string"),
        ({"event_id": None}, "event_id: missing value"),
        ({"product_id": 17}, "product_id: must be a string, got 17"),
        ({"source": ["x"]}, "source: must be a string, got a list"),
        ({"colour": "red"}, "unknown field(s) ['colour']"),
    ],
)
def test_a_broken_rule_is_named(change, message):
    with pytest.raises(InvalidEvent) as refused:
        validate_event({**GOOD, **change})
    assert message in str(refused.value)

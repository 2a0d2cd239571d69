"""Event contract v1, one event at a time, in plain Python: the fields and their rules, and a validator for a single
JSON event as the scoring request carries it (`serving.contract`).

`propensity.contract` holds the same rules as a pandera schema for frames (the lake's gate, the stream's micro-batches)
and takes its field list and event types from here, so there is one list of each. On JSON's own types (ids and
source as strings, price and quantity as numbers, times within 1678-2261 where the frame's nanosecond timestamps
end) the rules agree value for value: `tests/unit/test_event_record.py`
runs both validators over the same records and compares their verdicts. The frame validator also coerces what
adapters read from CSV (numeric ids, numbers as text); a JSON event must carry the contract's types. No pandas here:
the scoring container validates a request's events in microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

CONTRACT_VERSION = "v1"

EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "favourite",
    "checkout_start",
    "purchase",
)

EVENT_COLUMNS = (
    "event_id",
    "event_time",
    "user_id",
    "session_id",
    "event_type",
    "product_id",
    "category_id",
    "price",
    "quantity",
    "source",
)
REQUIRED_FIELDS = ("event_id", "event_time", "user_id", "event_type", "source")  # the rest may be null or absent
ID_FIELDS = ("event_id", "user_id", "session_id", "product_id", "category_id")
_EVENT_TYPE_SET = frozenset(EVENT_TYPES)
_COLUMN_SET = frozenset(EVENT_COLUMNS)


class InvalidEvent(ValueError):
    """An event that breaks the contract; the message names the field and the rule."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One valid contract-v1 event (`event_time` in UTC, microseconds; `quantity` defaults to 1)."""

    event_id: str
    event_time: datetime
    user_id: str
    session_id: str | None
    event_type: str
    product_id: str | None
    category_id: str | None
    price: float | None
    quantity: int
    source: str


def _identifier(value, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidEvent(f"{field}: must be a string, got {_short(value)}")


def _short(value) -> str:
    return f"a {type(value).__name__}" if isinstance(value, (dict, list, tuple)) else repr(value)[:40]


def _event_time(value) -> datetime:
    if not isinstance(value, str):
        raise InvalidEvent(f"event_time: unparseable timestamp ({value!r}); send ISO 8601, e.g. 2026-12-08T10:15:02Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"event_time: unparseable timestamp ({value[:40]!r})") from None
    # A time without an offset is UTC, as the frame validator reads it.
    try:
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    except OverflowError:  # an offset that moves it past year 1 or 9999
        raise InvalidEvent(f"event_time: unparseable timestamp ({value[:40]!r} is out of range in UTC)") from None


def _number(value, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(f"{field}: not a number ({_short(value)})")
    number = float(value)
    if math.isnan(number):
        return None  # the frame validator reads NaN as missing
    if math.isinf(number):
        raise InvalidEvent(f"{field}: not a finite number ({value!r})")
    return number


def validate_event(record) -> EventRecord:
    """One JSON event -> `EventRecord`, or `InvalidEvent` with the first rule it breaks. Written for the stream's
    hot path (a few microseconds per valid event): the common case is checked first, the message built only on
    failure."""
    if not isinstance(record, dict):
        raise InvalidEvent(f"an event is an object with the contract's fields, got a {type(record).__name__}")
    if not record.keys() <= _COLUMN_SET:
        unknown = sorted(set(record) - _COLUMN_SET)
        raise InvalidEvent(f"unknown field(s) {unknown}: contract {CONTRACT_VERSION} has {list(EVENT_COLUMNS)}")
    get = record.get
    for field in REQUIRED_FIELDS:
        if get(field) is None:
            raise InvalidEvent(f"{field}: missing value")
    event_id, user_id, session_id, product_id, category_id, source = (
        get("event_id"),
        get("user_id"),
        get("session_id"),
        get("product_id"),
        get("category_id"),
        get("source"),
    )
    for field, value in (
        ("event_id", event_id),
        ("user_id", user_id),
        ("session_id", session_id),
        ("product_id", product_id),
        ("category_id", category_id),
        ("source", source),
    ):
        if value is not None and value.__class__ is not str:
            _identifier(value, field)  # raises unless a str subclass
    for field, value in (("event_id", event_id), ("user_id", user_id), ("source", source)):
        if not value:
            raise InvalidEvent(f"{field}: must be a non-empty string")
    event_type = record["event_type"]
    if event_type.__class__ is not str or event_type not in _EVENT_TYPE_SET:
        raise InvalidEvent(f"event_type: not one of the contract's values {list(EVENT_TYPES)} ({_short(event_type)})")
    price = get("price")
    if price is not None:
        price = _number(price, "price")
        if price is not None and price < 0:
            raise InvalidEvent(f"price: must be >= 0 ({price!r})")
    quantity = get("quantity")
    if quantity.__class__ is not int or quantity < 1:  # the common case: a whole number >= 1
        number = _number(quantity, "quantity")
        number = 1.0 if number is None else number
        if not number.is_integer():
            raise InvalidEvent(f"quantity: not a whole number ({quantity!r})")
        if number < 1:
            raise InvalidEvent(f"quantity: must be >= 1 ({int(number)})")
        quantity = int(number)
    return EventRecord(
        event_id,
        _event_time(record["event_time"]),
        user_id,
        session_id,
        event_type,
        product_id,
        category_id,
        price,
        quantity,
        source,
    )

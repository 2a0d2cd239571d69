"""A scoring request's own events, folded onto the session's online row: the per-row path of the in-session fold.

The storefront asks for a score right after an event, and sends the session's last few events with the request: it
cannot know which of them the stream has already folded into the online store. This folds the ones the online row
does not reflect, in plain Python (a request has microseconds to spare, not a DataFrame's milliseconds), with the
semantics of `propensity.features.session.fold_session_events` continuing from the row's state:

- an event the online row reflects is ignored: its id is among the row's newest decision point's events, or it is
  older than that point (the stream quarantines such late events, so the online store never folds them either);
- the others are folded in (event_time, event_id) order, as the fold sorts; events sharing a timestamp are one
  decision point, and an event at the online row's own timestamp continues that point;
- counters add, the cart value adds price x quantity (unknown price 0, unknown quantity 1) with the fold's
  summation and rounding, distinct products and categories grow by the ids not seen before in the session, and the
  time features are those of the newest point.

The state the features alone do not carry (which products, categories and events are already in) comes with the
row from the `session_fold_state` view. `tests/unit/test_request_fold.py` checks the result against the pandas fold
on real Taobao and Diginetica sessions and on the simulator, cut at every kind of point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from propensity.event_record import EventRecord
from propensity.features.definitions import EVENT_TYPE_COUNTERS, SESSION_FEATURE_NAMES

_INDEX = {name: i for i, name in enumerate(SESSION_FEATURE_NAMES)}
_COUNTED = {event_type: _INDEX[name] for name, event_type in EVENT_TYPE_COUNTERS.items() if name in _INDEX}
_EVENTS = _INDEX["session_events"]
_CART_ADDS, _CART_REMOVES = _INDEX["session_cart_adds"], _INDEX["session_cart_removes"]
_CART_VALUE = _INDEX["session_cart_value"]
_PRODUCTS, _CATEGORIES = _INDEX["session_distinct_products"], _INDEX["session_distinct_categories"]
_DURATION, _SINCE_PREVIOUS = _INDEX["session_duration_s"], _INDEX["session_seconds_since_previous_event"]
_HOUR, _WEEKDAY = _INDEX["session_hour_utc"], _INDEX["session_weekday"]
_CART_SIGN = {"add_to_cart": 1.0, "remove_from_cart": -1.0}

ALREADY_ONLINE = "already online: one of the online row's newest events"
NOT_NEWER = "already online: not newer than the online row"
REPEATED = "repeated in this request"


@dataclass(frozen=True, slots=True)
class OnlineSession:
    """A session's online row as the scorer reads it: the features of its newest decision point (SESSION_FEATURE_NAMES
    order) and what that point has folded."""

    event_timestamp: datetime
    features: tuple[float, ...]
    product_ids: frozenset[str]
    category_ids: frozenset[str]
    last_event_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class RequestFold:
    features: tuple[float, ...] | None  # the session's features after the fold; None when nothing was folded
    event_timestamp: datetime | None  # the newest decision point's time after the fold
    folded: tuple[str, ...]  # event ids, in fold order
    ignored: tuple[tuple[str, str], ...]  # (event id, reason)


def _kahan_sum(values: list[float]) -> float:
    """The sum pandas' groupby takes of a decision point's cart increments (compensated), so the totals agree."""
    total = compensation = 0.0
    for value in values:
        y = value - compensation
        t = total + y
        compensation = (t - total) - y
        total = t
    return total


def _round6(value: float) -> float:
    """numpy's round(value, 6): scale, round half to even, unscale (what overflows is infinite, as in numpy)."""
    scaled = value * 1e6
    return round(scaled) / 1e6 if math.isfinite(scaled) else scaled


def fold_request_events(online: OnlineSession | None, events: Sequence[EventRecord]) -> RequestFold:
    """Fold `events` (one session's, validated) onto `online` (None: the online store has no row for the session)."""
    ignored: list[tuple[str, str]] = []
    seen: set[str] = set()
    fresh: list[EventRecord] = []
    for event in events:
        if event.event_id in seen:
            ignored.append((event.event_id, REPEATED))
            continue
        seen.add(event.event_id)
        if online is not None:
            if event.event_id in online.last_event_ids:
                ignored.append((event.event_id, ALREADY_ONLINE))
                continue
            if event.event_time < online.event_timestamp:
                ignored.append((event.event_id, NOT_NEWER))
                continue
        fresh.append(event)
    if not fresh:
        return RequestFold(None, None, (), tuple(ignored))
    fresh.sort(key=lambda e: (e.event_time, e.event_id))

    if online is None:
        values = [0.0] * len(SESSION_FEATURE_NAMES)
        products: set[str] = set()
        categories: set[str] = set()
        first_time = fresh[0].event_time
        last_time: datetime | None = None
        previous_time: datetime | None = None
        cart_value = 0.0
    else:
        values = list(online.features)
        products, categories = set(online.product_ids), set(online.category_ids)
        last_time = online.event_timestamp
        first_time = last_time - timedelta(seconds=values[_DURATION])
        # The first decision point of a session has no previous one (its gap is 0 by definition).
        previous_time = None if first_time == last_time else last_time - timedelta(seconds=values[_SINCE_PREVIOUS])
        cart_value = values[_CART_VALUE]

    # The fold sums each decision point's increments, then adds the points' sums to the carried value in order.
    running = 0.0
    point_increments: list[float] = []
    for event in fresh:
        if event.event_time != last_time:
            if point_increments:
                running += _kahan_sum(point_increments)
                point_increments = []
            previous_time, last_time = last_time, event.event_time
        values[_EVENTS] += 1
        counter = _COUNTED.get(event.event_type)
        if counter is not None:
            values[counter] += 1
        sign = _CART_SIGN.get(event.event_type, 0.0)
        point_increments.append((event.price or 0.0) * float(event.quantity) * sign)
        if event.product_id is not None:
            products.add(event.product_id)
        if event.category_id is not None:
            categories.add(event.category_id)
    running += _kahan_sum(point_increments)

    values[_CART_VALUE] = _round6(running + cart_value)
    values[_PRODUCTS] = float(len(products))
    values[_CATEGORIES] = float(len(categories))
    values[_DURATION] = (last_time - first_time).total_seconds()
    values[_SINCE_PREVIOUS] = 0.0 if previous_time is None else (last_time - previous_time).total_seconds()
    values[_HOUR] = float(last_time.hour)
    values[_WEEKDAY] = float(last_time.weekday())
    return RequestFold(tuple(float(v) for v in values), last_time, tuple(e.event_id for e in fresh), tuple(ignored))

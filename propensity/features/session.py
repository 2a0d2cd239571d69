"""In-session features: the single definition, used by the Spark batch job and the streaming job alike.

The features are a left fold over a session's events. `fold_session_events` takes a batch of events (sorted by
session, time, id) and the state carried from earlier batches, and returns one feature row per decision point plus
the new state. The batch job folds each sorted partition batch by batch; the streaming job folds each micro-batch
onto the state it keeps per session. Same function, so training and serving cannot drift.

A decision point is a distinct event timestamp within a session: events that share a timestamp cannot be ordered
by the storefront either, so the features reflect all of them. This keeps exactly one feature row per
(session_id, event_timestamp), which makes the point-in-time join unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping

import numpy as np
import pandas as pd

from propensity.contract import EVENT_TIME_DTYPE
from propensity.features.definitions import EVENT_TYPE_COUNTERS, SESSION_FEATURE_NAMES, SESSION_FEATURES

# Counters kept in the state, each the running sum of one per-event increment.
_COUNTERS = (
    "session_events",
    "session_product_views",
    "session_searches",
    "session_favourites",
    "session_cart_adds",
    "session_cart_removes",
    "session_checkout_starts",
    "purchases",
)

# Columns of a feature row besides the features: keys, timestamp, and what issue-3 labelling needs.
FEATURE_ROW_KEYS = ("session_id", "user_id", "event_timestamp", "decision_event_id", "purchases_so_far")
FEATURE_ROW_COLUMNS = FEATURE_ROW_KEYS + SESSION_FEATURE_NAMES


@dataclass
class SessionState:
    """What a session has accumulated so far; enough to continue the fold exactly."""

    user_id: str
    first_time: pd.Timestamp
    last_time: pd.Timestamp
    previous_time: pd.Timestamp | None  # the decision point before last_time: a later event at last_time folds into it
    counts: dict[str, int] = field(default_factory=dict)
    cart_value: float = 0.0
    products: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    last_event_ids: frozenset[str] = frozenset()  # the events at last_time: folded into the newest decision point


def empty_feature_rows() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in FEATURE_ROW_KEYS})
    frame["event_timestamp"] = frame["event_timestamp"].astype(EVENT_TIME_DTYPE)
    frame["purchases_so_far"] = frame["purchases_so_far"].astype("int64")
    for feature in SESSION_FEATURES:
        frame[feature.name] = pd.Series(dtype=feature.dtype)
    return frame


def held(session_ids: pd.Series, states: Mapping[str, object]) -> pd.Series:
    """True where the session has carried state: looks up the batch's sessions, not every state held (the stream
    holds thousands)."""
    return session_ids.isin([sid for sid in session_ids.unique() if sid in states])


def _first_seen(events: pd.DataFrame, column: str, states: dict[str, SessionState], attr: str) -> np.ndarray:
    """1 where this event touches a product/category not seen earlier in its session (this batch or before)."""
    new = events[column].notna() & ~events.duplicated(["session_id", column])
    carried = held(events["session_id"], states) & new
    if carried.any():
        seen = np.fromiter(
            (
                value in getattr(states[sid], attr)
                for sid, value in zip(events.loc[carried, "session_id"], events.loc[carried, column])
            ),
            dtype=bool,
            count=int(carried.sum()),
        )
        new.loc[carried] = ~seen
    return new.to_numpy(dtype=np.int64)


def fold_session_events(
    events: pd.DataFrame,
    states: dict[str, SessionState] | None = None,
    *,
    keep_state_for: list[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, SessionState]]:
    """Fold a batch of contract events (session_id set, sorted by session_id, event_time, event_id) onto `states`.

    Returns the feature rows (one per session and distinct timestamp) and the updated states for the sessions in
    `keep_state_for` (all sessions of the batch when None). `states` is not modified.
    """
    states = states or {}
    if events.empty:
        return empty_feature_rows(), {}
    events = events.reset_index(drop=True)
    event_type = events["event_type"].to_numpy()
    increments = pd.DataFrame({"session_id": events["session_id"], "event_timestamp": events["event_time"]})
    increments["session_events"] = 1
    for name, type_name in EVENT_TYPE_COUNTERS.items():
        increments[name] = (event_type == type_name).astype(np.int64)
    signed = increments["session_cart_adds"] - increments["session_cart_removes"]
    price = events["price"].astype("float64").fillna(0.0).to_numpy()
    quantity = events["quantity"].astype("float64").fillna(1.0).to_numpy()
    increments["cart_value"] = price * quantity * signed.to_numpy()
    increments["new_products"] = _first_seen(events, "product_id", states, "products")
    increments["new_categories"] = _first_seen(events, "category_id", states, "categories")
    increments["user_id"] = events["user_id"]
    increments["decision_event_id"] = events["event_id"]

    summed_columns = [*_COUNTERS, "cart_value", "new_products", "new_categories"]
    grouped = increments.groupby(["session_id", "event_timestamp"], sort=False)
    points = grouped[summed_columns].sum()
    points[["user_id", "decision_event_id"]] = grouped[["user_id", "decision_event_id"]].last()
    points = points.reset_index()

    by_session = points.groupby("session_id", sort=False)
    cumulative = by_session[summed_columns].cumsum()
    session_ids = points["session_id"]
    carried = held(session_ids, states).to_numpy()

    def offset(getter) -> np.ndarray:
        values = np.zeros(len(points))
        if carried.any():
            values[carried] = [getter(states[sid]) for sid in session_ids[carried]]
        return values

    rows = pd.DataFrame(
        {
            "session_id": session_ids,
            "user_id": points["user_id"],
            "event_timestamp": points["event_timestamp"].astype(EVENT_TIME_DTYPE),
            "decision_event_id": points["decision_event_id"],
        }
    )
    for name in _COUNTERS:
        rows[name] = (cumulative[name].to_numpy() + offset(lambda s, n=name: s.counts.get(n, 0))).astype(np.int64)
    rows["purchases_so_far"] = rows.pop("purchases")
    rows["session_distinct_products"] = (cumulative["new_products"] + offset(lambda s: len(s.products))).astype(
        np.int64
    )
    rows["session_distinct_categories"] = (cumulative["new_categories"] + offset(lambda s: len(s.categories))).astype(
        np.int64
    )
    rows["session_cart_value"] = np.round(cumulative["cart_value"].to_numpy() + offset(lambda s: s.cart_value), 6)

    timestamps = rows["event_timestamp"]
    first_time = by_session["event_timestamp"].transform("min").astype(EVENT_TIME_DTYPE)
    previous_time = by_session["event_timestamp"].shift(1).astype(EVENT_TIME_DTYPE)
    if carried.any():  # only the carried rows go through Python objects
        at = np.flatnonzero(carried)
        first_time.iloc[at] = pd.array([states[sid].first_time for sid in session_ids.iloc[at]], dtype=EVENT_TIME_DTYPE)
        at = np.flatnonzero(previous_time.isna().to_numpy() & carried)  # a carried session's first point of this batch
        previous_time.iloc[at] = pd.array(
            [_time_before(states[sid], ts) for sid, ts in zip(session_ids.iloc[at], timestamps.iloc[at])],
            dtype=EVENT_TIME_DTYPE,
        )
    rows["session_duration_s"] = (timestamps - first_time).dt.total_seconds().astype("float64")
    rows["session_seconds_since_previous_event"] = (
        (timestamps - previous_time).dt.total_seconds().fillna(0.0).astype("float64")
    )
    rows["session_hour_utc"] = timestamps.dt.hour.astype(np.int64)
    rows["session_weekday"] = timestamps.dt.weekday.astype(np.int64)

    rows = rows[list(FEATURE_ROW_COLUMNS)]
    return rows, _next_states(events, rows, first_time, previous_time, states, keep_state_for)


def _time_before(state: SessionState, timestamp: pd.Timestamp) -> pd.Timestamp | None:
    """The decision point before `timestamp` for a carried session (a repeat of last_time continues that point)."""
    return state.previous_time if timestamp == state.last_time else state.last_time


def _next_states(
    events: pd.DataFrame,
    rows: pd.DataFrame,
    first_time: pd.Series,
    previous_time: pd.Series,
    states: dict[str, SessionState],
    keep_state_for: list[str] | None,
) -> dict[str, SessionState]:
    """Each wanted session's state after its last row: the row's counts and times, plus the products and
    categories seen (plain Python over the batch's events: per-group pandas calls cost more at stream batch sizes)."""
    last = rows.groupby("session_id", sort=False).tail(1)
    if keep_state_for is not None:
        last = last[last["session_id"].isin(keep_state_for)]
    if last.empty:
        return {}
    # Times compared as integers: iterating a datetime column builds a Timestamp per event.
    wanted = dict(zip(last["session_id"], last["event_timestamp"].array.asi8.tolist()))
    products: dict[str, set] = {}
    categories: dict[str, set] = {}
    at_last: dict[str, set] = {}
    for sid, event_id, event_time, product, has_product, category, has_category in zip(
        events["session_id"],
        events["event_id"],
        events["event_time"].astype(EVENT_TIME_DTYPE).array.asi8.tolist(),
        events["product_id"],
        events["product_id"].notna(),
        events["category_id"],
        events["category_id"].notna(),
    ):
        if sid in wanted:
            if has_product:
                products.setdefault(sid, set()).add(product)
            if has_category:
                categories.setdefault(sid, set()).add(category)
            if event_time == wanted[sid]:
                at_last.setdefault(sid, set()).add(event_id)
    counts = {name: last[name].tolist() for name in _COUNTERS if name != "purchases"} | {
        "purchases": last["purchases_so_far"].tolist()
    }
    out: dict[str, SessionState] = {}
    for i, (sid, user, last_time, first, previous, cart_value) in enumerate(
        zip(
            last["session_id"],
            last["user_id"],
            last["event_timestamp"],
            first_time.loc[last.index],
            previous_time.loc[last.index],
            last["session_cart_value"].tolist(),
        )
    ):
        before = states.get(sid)
        # Events of an instant split over two batches belong to one decision point: the carried ones count too.
        continued = before.last_event_ids if before is not None and before.last_time == last_time else frozenset()
        out[sid] = SessionState(
            user_id=user,
            first_time=first,
            last_time=last_time,
            previous_time=None if pd.isna(previous) else previous,  # the session's first decision point has none
            counts={name: int(values[i]) for name, values in counts.items()},
            cart_value=float(cart_value),
            products=(before.products if before else frozenset()) | products.get(sid, set()),
            categories=(before.categories if before else frozenset()) | categories.get(sid, set()),
            last_event_ids=continued | at_last.get(sid, set()),
        )
    return out


def fold_sorted_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Fold the event batches of one partition sorted by session, time and id into feature-row batches.

    A session may straddle a batch boundary; only the trailing session's state needs carrying because the
    partition is sorted by session. Events sharing the batch's last (session, timestamp) are held back to the
    next batch, so a decision point is never split and each (session_id, event_timestamp) gets exactly one row.
    """
    states: dict[str, SessionState] = {}
    pending: pd.DataFrame | None = None
    for batch in batches:
        if pending is not None:
            batch = pd.concat([pending, batch], ignore_index=True)
        if batch.empty:
            continue
        last = batch.iloc[-1]
        tail = (batch["session_id"] == last["session_id"]).to_numpy() & (
            batch["event_time"] == last["event_time"]
        ).to_numpy()
        pending, ready = batch[tail], batch[~tail]
        if ready.empty:
            continue
        rows, states = fold_session_events(ready, states, keep_state_for=[ready["session_id"].iloc[-1]])
        yield rows
    if pending is not None and not pending.empty:
        rows, _ = fold_session_events(pending, states, keep_state_for=[])
        yield rows

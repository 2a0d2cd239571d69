"""The per-row fold of a request's events (propensity.features.request_fold) equals the pandas fold
(fold_session_events) on real Taobao and Diginetica sessions and on the simulator: whatever the online row had
folded when the request came, and whichever of its events the request repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from propensity.contract import validate_events
from propensity.event_record import EventRecord
from propensity.features.definitions import SESSION_FEATURE_NAMES
from propensity.features.request_fold import (
    ALREADY_ONLINE,
    NOT_NEWER,
    REPEATED,
    OnlineSession,
    fold_request_events,
)
from propensity.features.session import SessionState, fold_session_events
from propensity.session_ids import assign_session_ids
from propensity.sources.diginetica import load_diginetica
from propensity.sources.simulator import simulate_traffic
from propensity.sources.taobao import load_taobao


def _sessions(events: pd.DataFrame, limit: int = 150) -> list[pd.DataFrame]:
    """Sessions of at least two events, sorted as the fold sorts them (validated, deduplicated, with session ids)."""
    events = assign_session_ids(validate_events(events).valid)
    events = events.sort_values(["session_id", "event_time", "event_id"], kind="stable").reset_index(drop=True)
    groups = [g.reset_index(drop=True) for _, g in events.groupby("session_id", sort=True) if len(g) >= 2]
    rng = np.random.default_rng(0)
    picked = rng.choice(len(groups), size=min(limit, len(groups)), replace=False)
    return [groups[i] for i in sorted(picked)]


@pytest.fixture(scope="module")
def real_sessions() -> dict[str, list[pd.DataFrame]]:
    return {
        "taobao": _sessions(load_taobao().events),
        "diginetica": _sessions(load_diginetica().events),
        "simulator": _sessions(simulate_traffic(n_users=400, days=2, seed=3).events),
    }


def _records(frame: pd.DataFrame) -> list[EventRecord]:
    return [
        EventRecord(
            event_id=r.event_id,
            event_time=r.event_time.to_pydatetime(),
            user_id=r.user_id,
            session_id=r.session_id,
            event_type=r.event_type,
            product_id=None if pd.isna(r.product_id) else r.product_id,
            category_id=None if pd.isna(r.category_id) else r.category_id,
            price=None if pd.isna(r.price) else float(r.price),
            quantity=1 if pd.isna(r.quantity) else int(r.quantity),
            source=r.source,
        )
        for r in frame.itertuples(index=False)
    ]


def _online(rows: pd.DataFrame, state: SessionState) -> OnlineSession:
    """The online row the stream would have written after folding `rows`' events: its newest row and state."""
    last = rows.iloc[-1]
    return OnlineSession(
        event_timestamp=last["event_timestamp"].to_pydatetime(),
        features=tuple(float(last[name]) for name in SESSION_FEATURE_NAMES),
        product_ids=state.products,
        category_ids=state.categories,
        last_event_ids=state.last_event_ids,
    )


def _expected(rows: pd.DataFrame) -> tuple[float, ...]:
    return tuple(float(v) for v in rows.iloc[-1][list(SESSION_FEATURE_NAMES)])


def _check(session: pd.DataFrame, cut: int, resend: int, shuffle_seed: int) -> None:
    """The stream folded events [0, cut); the request carries the `resend` events before the cut and all after it,
    in any order. The fold must equal the pandas fold continuing from the stream's state, and the batch fold of the
    whole session at its last decision point (the training row)."""
    whole, _ = fold_session_events(session)
    online = None
    if cut:
        prefix_rows, states = fold_session_events(session.iloc[:cut])
        online = _online(prefix_rows, states[session["session_id"].iloc[0]])
        continued, _ = fold_session_events(session.iloc[cut:].reset_index(drop=True), states)
    request = session.iloc[max(cut - resend, 0) :]
    records = _records(request)
    np.random.default_rng(shuffle_seed).shuffle(records)
    folded = fold_request_events(online, records)

    assert folded.features is not None
    assert folded.features == pytest.approx(_expected(whole), rel=0, abs=1e-9)
    if cut:
        assert folded.features == _expected(continued)  # exactly the stream's own continuation
    assert folded.event_timestamp == whole["event_timestamp"].iloc[-1].to_pydatetime()
    assert set(folded.folded) == set(session["event_id"].iloc[cut:])
    assert {event_id for event_id, _ in folded.ignored} == set(request["event_id"]) - set(folded.folded)
    if cut:
        assert {reason for _, reason in folded.ignored} <= {ALREADY_ONLINE, NOT_NEWER}


@pytest.mark.parametrize("source", ["taobao", "diginetica", "simulator"])
def test_every_cut_of_real_sessions_folds_as_the_pandas_fold(real_sessions, source):
    sessions = real_sessions[source]
    assert len(sessions) >= 100
    rng = np.random.default_rng(len(source))
    checked = 0
    for session in sessions:
        # Every cut of short sessions; a few random ones of long ones. Cuts inside a timestamp included.
        cuts = range(len(session)) if len(session) <= 6 else sorted(rng.choice(len(session), 6, replace=False))
        for cut in cuts:
            _check(session, int(cut), resend=int(rng.integers(0, 4)), shuffle_seed=checked)
            checked += 1
    assert checked > 400


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_cut_and_any_resent_events(real_sessions, data):
    sessions = real_sessions[data.draw(st.sampled_from(sorted(real_sessions)))]
    session = sessions[data.draw(st.integers(0, len(sessions) - 1))]
    cut = data.draw(st.integers(0, len(session) - 1))
    _check(session, cut, resend=data.draw(st.integers(0, cut)), shuffle_seed=data.draw(st.integers(0, 1000)))


def test_nothing_new_keeps_the_online_row_and_repeats_are_named(real_sessions):
    session = real_sessions["simulator"][0]
    rows, states = fold_session_events(session)
    online = _online(rows, states[session["session_id"].iloc[0]])
    records = _records(session)
    folded = fold_request_events(online, records + records[-1:])
    assert folded.features is None and folded.folded == ()
    reasons = dict(folded.ignored[-1:])
    assert reasons == {records[-1].event_id: REPEATED}
    assert {r for _, r in folded.ignored[:-1]} <= {ALREADY_ONLINE, NOT_NEWER}
    assert dict(folded.ignored)[records[-1].event_id] in (ALREADY_ONLINE, REPEATED)

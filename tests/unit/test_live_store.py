"""The live storefront: sessions run in waves from the simulated world's own starts and traits, valid events, and a
session shown the offer goes on under the offer's response."""

import numpy as np
import pandas as pd
import pytest

from propensity.contract import validate_events
from propensity.sources.interventions import OfferResponse, catalogue, offer_sensitivity
from propensity.sources.live_store import LiveSessions, session_starts
from propensity.sources.simulator import simulate_traffic

SEED = 4


@pytest.fixture(scope="module")
def sessions():
    batch = simulate_traffic(n_users=2500, days=2, seed=SEED)
    return session_starts(batch.events, batch.sessions)


def _run(sessions, offer_at: int | None, who=None, seed=1) -> pd.DataFrame:
    live = LiveSessions(sessions, catalogue(SEED), seed=seed, id_prefix="t-")
    waves = []
    for k, wave in enumerate(live.waves()):
        waves.append(wave)
        if offer_at == k:
            points = wave.loc[wave["event_type"] != "purchase", "session_id"].unique()
            live.offer(points if who is None else [s for s in points if s in who])
    return pd.concat(waves, ignore_index=True)


def test_each_session_opens_with_a_page_view_at_its_start_and_every_event_is_valid(sessions):
    events = _run(sessions, offer_at=None)
    checked = validate_events(events)
    assert len(checked.valid) == len(events) and events["event_id"].is_unique
    first = events.drop_duplicates("session_id").set_index("session_id")
    assert set(first.index) == set(sessions["session_id"])
    assert (first["event_type"] == "page_view").all()
    starts = sessions.set_index("session_id")["start"]
    assert (first["event_time"] == starts.loc[first.index]).all()
    by_session = events.groupby("session_id")
    assert (by_session["user_id"].nunique() == 1).all()
    assert (by_session["event_time"].apply(lambda t: t.is_monotonic_increasing)).all()


def test_a_session_shown_the_offer_answers_as_its_sensitivity_says(sessions):
    beta = pd.Series(offer_sensitivity(sessions, catalogue(SEED), OfferResponse()), index=sessions["session_id"])
    moved = set(beta[beta > 0.5].index)
    control = _run(sessions, offer_at=None, seed=2)
    offered = _run(sessions, offer_at=0, who=moved, seed=2)

    def purchase_rate(events, ids):
        bought = events.loc[events["event_type"] == "purchase", "session_id"].unique()
        return np.isin(list(ids), bought).mean()

    assert purchase_rate(offered, moved) > 1.3 * purchase_rate(control, moved)
    # The sessions not offered run on as before: the same draws give the same purchases on average.
    others = set(sessions["session_id"]) - moved
    assert purchase_rate(offered, others) == pytest.approx(purchase_rate(control, others), abs=0.03)


def test_an_offer_is_shown_once(sessions):
    live = LiveSessions(sessions, catalogue(SEED), seed=1, id_prefix="t-")
    ids = sessions["session_id"].iloc[:10].tolist()
    assert live.offer(ids) == 10 and live.offer(ids[:5]) == 0

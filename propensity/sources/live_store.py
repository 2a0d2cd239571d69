"""A simulated storefront whose shoppers answer the offers it shows: sessions run step by step, in waves, and a
session shown the offer goes on under the offer's action table from its next step (`interventions.treated_table`,
the same response `bench.uplift` and the exact effects use).

The sessions (who, when, intent, hour, focus) are those `simulate_traffic` drew for the day, so the population,
the traffic pattern and any behaviour shift are the simulated world's; only the path inside each session is run
here, because it depends on what the storefront does. Each wave is one chain step of every live session: its k-th
event (a purchase is all its cart lines at once). The first wave is every session's opening page view, at its
start time, as the simulator has it.

One thing differs from `simulate_traffic`: a user's sessions were spaced for the durations drawn there, and a
session run on under an offer can last longer, so two sessions of a user can (rarely) overlap in time. Session ids
are the simulator's, so sessionisation is unaffected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from propensity.sources.interventions import OfferResponse, offer_sensitivity, treated_table
from propensity.sources.simulator import MAX_STEPS, PV, SessionWorld, _action_table, cumulative, event_frame

TRAIT_COLUMNS = ("session_id", "intent", "checkout_factor", "focus_category", "hour", "user_index")


class LiveSessions:
    """`waves()` yields each wave's events (contract columns); `offer(session_ids)` between two waves shows the
    offer to those sessions (once: a session already offered stays so)."""

    def __init__(
        self,
        sessions: pd.DataFrame,
        cat: dict[str, np.ndarray],
        *,
        seed: int,
        id_prefix: str,
        response: OfferResponse = OfferResponse(),
    ):
        missing = [c for c in (*TRAIT_COLUMNS, "user_id", "start") if c not in sessions.columns]
        if missing:
            raise ValueError(f"live sessions need column(s) {missing}")
        self.sessions = sessions.reset_index(drop=True)
        n = len(self.sessions)
        intent = self.sessions["intent"].to_numpy(float)
        checkout = self.sessions["checkout_factor"].to_numpy(float)
        beta = offer_sensitivity(self.sessions, cat, response)
        self._treated_cdf = cumulative(treated_table(intent, checkout, beta))
        self.world = SessionWorld.fresh(_action_table(intent, checkout), self.sessions["focus_category"].to_numpy())
        self.cat = cat
        self.rng = np.random.default_rng(seed)
        self.prefix = id_prefix
        self.offered = np.zeros(n, dtype=bool)
        self._row = {sid: i for i, sid in enumerate(self.sessions["session_id"])}
        self._start_us = (
            pd.to_datetime(self.sessions["start"], utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[us]")
        ).astype(np.int64)
        self._user = self.sessions["user_id"].to_numpy(dtype=object)
        self._session = self.sessions["session_id"].to_numpy(dtype=object)
        self._events = 0

    def offer(self, session_ids) -> int:
        """Show the offer to these sessions from their next step on; returns how many had not been offered."""
        rows = np.array([self._row[s] for s in session_ids], dtype=np.int64)
        new = rows[~self.offered[rows]]
        self.world.cdf[new] = self._treated_cdf[new]
        self.offered[new] = True
        return len(new)

    def _frame(self, sess, action, product, qty, clock) -> pd.DataFrame:
        time_us = self._start_us[sess] + clock
        # Within a wave: by time, then session (a purchase's lines keep their order), as event ids are issued.
        order = np.lexsort((np.arange(len(sess)), sess, time_us))
        sess, action, product, qty, time_us = (a[order] for a in (sess, action, product, qty, time_us))
        ids = np.array([f"{self.prefix}{self._events + i:09d}" for i in range(len(sess))], dtype=object)
        self._events += len(sess)
        return event_frame(ids, time_us, self._user[sess], self._session[sess], action, product, qty, self.cat)

    def waves(self):
        n = len(self.sessions)
        live = np.arange(n)
        ones = np.ones(n, dtype=np.int64)
        yield self._frame(live, np.full(n, PV), np.full(n, -1), ones, self.world.clock.copy())
        for _ in range(1, MAX_STEPS):  # after step MAX_STEPS-1 every live session is forced to exit
            if len(live) == 0:
                return
            (sess, action, product, qty, clock, _), live = self.world.step(self.rng, self.cat, live)
            if len(sess):
                yield self._frame(sess, action, product, qty, clock)


def session_starts(events: pd.DataFrame, traits: pd.DataFrame) -> pd.DataFrame:
    """Every session of simulated events with its start, user and hidden traits (`SourceBatch.sessions`): what
    `LiveSessions` runs. Pick a day's sessions by `start`, not by event time: a session may run past midnight."""
    first = events.sort_values(["event_time", "event_id"]).drop_duplicates("session_id")
    starts = first[["session_id", "user_id", "event_time"]].rename(columns={"event_time": "start"})
    return starts.merge(traits[list(TRAIT_COLUMNS)], on="session_id", how="left", validate="one_to_one")

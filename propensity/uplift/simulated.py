"""Offer decisions on the simulated store, with the exact answer beside them: one decision point per session (its
DECISION_EVENTS-th event, as in the decision log; sessions that end or buy before it meet none), the state there,
the exact effect of the offer (`propensity.sources.interventions`), the session features the platform's own fold
gives at that point, and the sessions run on from it under whichever arm they got. `bench.uplift` measures the
learners and the policy gate on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from propensity.features.definitions import PROPENSITY_INPUT, SESSION_FEATURE_NAMES
from propensity.features.session import fold_session_events
from propensity.sources.interventions import (
    DecisionStates,
    OfferResponse,
    catalogue,
    continue_sessions,
    decision_states,
    offer_effects,
    offer_sensitivity,
    treated_table,
)
from propensity.sources.simulator import _action_table, simulate_traffic
from propensity.uplift.policy import OfferTerms
from propensity.uplift.training import DECISION_EVENTS

DECISION_STEP = DECISION_EVENTS - 1  # the chain step (0-based) whose event is the session's DECISION_EVENTS-th


@dataclass(frozen=True)
class DecisionPoints:
    """One row per session that meets a decision point; `X` holds UPLIFT_FEATURE_NAMES (the exact propensity as
    the propensity: this measures uplift modelling, not the propensity model)."""

    states: DecisionStates
    cat: dict[str, np.ndarray]
    beta: np.ndarray
    effects: pd.DataFrame  # offer_effects: p and revenue under either arm, tau, exact incremental profit
    X: pd.DataFrame
    users: np.ndarray  # user index (int)
    user_ids: np.ndarray
    decided_at: np.ndarray  # the decision event's time
    terms: OfferTerms

    def __len__(self) -> int:
        return len(self.X)


def decision_points(seed: int, users: int, days: int, terms: OfferTerms = OfferTerms()) -> DecisionPoints:
    batch = simulate_traffic(n_users=users, days=days, seed=seed)
    events = batch.events.sort_values(["session_id", "event_time", "event_id"], kind="stable")
    steps = events[events["event_type"] != "purchase"]
    at_step = steps[steps.groupby("session_id").cumcount() == DECISION_STEP]
    decided = at_step[at_step["event_type"] != "purchase"]
    states = decision_states(events, batch.sessions, decided["event_id"])
    cat = catalogue(seed)
    beta = offer_sensitivity(states.traits, cat, OfferResponse())
    effects = offer_effects(states, beta, cat, terms)
    # Session features at the decision point: the platform's own fold over the events up to it.
    position = events.groupby("session_id").cumcount()
    at_decision = events["event_id"].isin(decided["event_id"])
    last = position[at_decision].groupby(events.loc[at_decision, "session_id"]).first()
    prefix = events[position <= events["session_id"].map(last)]  # sessions without a decision point drop out
    rows, _ = fold_session_events(prefix.reset_index(drop=True), keep_state_for=[])
    features = rows.groupby("session_id").tail(1).set_index("session_id").loc[states.session_id]
    X = features[list(SESSION_FEATURE_NAMES)].reset_index(drop=True).astype(float)
    X[PROPENSITY_INPUT] = effects["p_control"].to_numpy()
    decision_rows = decided.set_index("event_id").loc[states.event_id]
    return DecisionPoints(
        states=states,
        cat=cat,
        beta=beta,
        effects=effects,
        X=X,
        users=states.traits["user_index"].to_numpy(),
        user_ids=decision_rows["user_id"].to_numpy(),
        decided_at=decision_rows["event_time"].to_numpy(),
        terms=terms,
    )


def run_on(points: DecisionPoints, treated: np.ndarray, seed: int) -> pd.DataFrame:
    """Each session runs on from its decision point under the arm it got: purchased, revenue, treated, profit."""
    states = points.states
    table = np.where(
        np.asarray(treated, bool)[:, None, None],
        treated_table(states.intent, states.checkout_factor, points.beta),
        _action_table(states.intent, states.checkout_factor),
    )
    outcome = continue_sessions(states, table, points.cat, np.random.default_rng(seed))
    outcome["treated"] = np.asarray(treated, float)
    outcome["profit"] = points.terms.realised_profit(outcome["revenue"], treated)
    return outcome

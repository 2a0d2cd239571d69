"""The simulator's offers: the exact effect by backward induction agrees with the simulator itself (its own truth
without the offer, and Monte Carlo continuations run with its own step under either arm), and it is heterogeneous,
negative for some shoppers."""

import numpy as np
import pytest

from propensity.sources import interventions as iv
from propensity.sources.simulator import _action_table, simulate_traffic
from propensity.uplift.policy import OfferTerms

SEED = 5
REPLICAS = 100_000


@pytest.fixture(scope="module")
def world():
    batch = simulate_traffic(n_users=300, days=3, seed=SEED)
    events = batch.events
    decisions = events[events["event_type"] != "purchase"].sample(1200, random_state=3)["event_id"]
    states = iv.decision_states(events, batch.sessions, decisions)
    cat = iv.catalogue(SEED)
    return batch, states, cat, iv.offer_sensitivity(states.traits, cat, iv.OfferResponse())


def test_without_an_offer_the_exact_outcome_is_the_simulators_own_truth(world):
    batch, states, cat, _ = world
    control = iv.expected_outcomes(states, _action_table(states.intent, states.checkout_factor), cat)
    truth = batch.truth.set_index("event_id").loc[states.event_id, "true_propensity"].to_numpy()
    assert np.abs(control["purchase_probability"].to_numpy() - truth).max() < 1e-12
    assert (control["expected_revenue"] > 0).all()


def _z(sample, exact):
    return (sample.mean() - exact) / (sample.std() / np.sqrt(len(sample)))


def test_continuations_under_either_arm_average_to_the_exact_purchase_probability_and_revenue(world):
    _, states, cat, beta = world
    # A checkout, a cart with a product viewed last (a future add may reuse it), and an empty cart.
    kinds = [
        np.flatnonzero(states.in_checkout & (states.steps_left > 1))[0],
        np.flatnonzero(~states.in_checkout & (states.lines >= 1) & (states.last_viewed >= 0))[0],
        np.flatnonzero((states.lines == 0) & (states.last_viewed >= 0) & (states.intent > 0.2))[0],
    ]
    rng = np.random.default_rng(0)
    for i in kinds:
        replicas = states.take(np.full(REPLICAS, i))
        for table in (
            _action_table(replicas.intent, replicas.checkout_factor),
            iv.treated_table(replicas.intent, replicas.checkout_factor, np.full(REPLICAS, beta[i])),
        ):
            simulated = iv.continue_sessions(replicas, table, cat, rng)
            exact = iv.expected_outcomes(states.take([i]), table[:1], cat).iloc[0]
            assert abs(_z(simulated["purchased"].to_numpy(float), exact["purchase_probability"])) < 4.5
            assert abs(_z(simulated["revenue"].to_numpy(), exact["expected_revenue"])) < 4.5


def test_the_offer_moves_hesitant_shoppers_and_puts_some_off(world):
    _, states, cat, beta = world
    effects = iv.offer_effects(states, beta, cat)
    negative = (effects["tau_conversion"] < 0).mean()
    assert 0.05 < negative < 0.4
    assert effects["tau_conversion"].mean() > 0
    # Sensitivity drives the effect; high intent means a smaller (or negative) one.
    assert np.corrcoef(effects["beta"], effects["tau_conversion"])[0, 1] > 0.3
    terms = OfferTerms()
    expected = (
        terms.margin_rate * effects["tau_revenue"]
        - terms.discount_rate * effects["revenue_treated"]
        - terms.contact_cost
    )
    assert np.allclose(effects["incremental_profit"], expected)
    # Some decision points pay and some do not: a targeting policy has something to find.
    assert 0.02 < (effects["incremental_profit"] > 0).mean() < 0.9


def test_a_decision_after_a_purchase_or_on_an_unknown_event_is_refused(world):
    batch, *_ = world
    events = batch.events
    purchase = events.loc[events["event_type"] == "purchase", "event_id"].iloc[:1]
    with pytest.raises(ValueError, match="purchase ends its session"):
        iv.decision_states(events, batch.sessions, purchase)
    with pytest.raises(ValueError, match="not in the events"):
        iv.decision_states(events, batch.sessions, ["no-such-event"])
    with pytest.raises(ValueError, match="implausible offer terms"):
        OfferTerms(discount_rate=1.5)

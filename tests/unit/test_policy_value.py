"""Off-policy values recover a known policy value on simulated logs, and the promotion gate refuses a policy that
is no better."""

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm

from propensity.uplift.policy import OfferTerms, treat_when_profitable
from propensity.uplift.policy_value import doubly_robust, dr_difference, ips, policy_promotion, snips

N = 20_000


@pytest.fixture(scope="module")
def log():
    """Logged decisions under a non-uniform logging policy: reward 1 + 0.5 x + tau(x) a + noise, tau(x) = x
    (the offer hurts where x < 0)."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, N)
    p0 = 0.2 + 0.6 * expit(x)  # treats high x more often
    a = (rng.random(N) < p0).astype(float)
    reward = 1 + 0.5 * x + x * a + rng.normal(0, 1, N)
    return x, p0, a, reward


# The policy "treat when x > 0" is worth E[1 + 0.5 x + x 1{x > 0}] = 1 + phi(0).
TRUE_VALUE = 1 + norm.pdf(0)


def test_ips_snips_and_dr_recover_the_value_of_a_policy_the_log_did_not_run(log):
    x, p0, a, reward = log
    target = (x > 0).astype(float)
    estimates = [
        ips(a, p0, reward, target),
        snips(a, p0, reward, target),
        doubly_robust(a, p0, reward, target, np.zeros(N), np.zeros(N)),  # a useless reward model: still unbiased
        doubly_robust(a, p0, reward, target, 1 + 1.5 * x, 1 + 0.5 * x),  # the true reward model
    ]
    for estimate in estimates:
        assert estimate.low < TRUE_VALUE < estimate.high, estimate
        assert estimate.value == pytest.approx(TRUE_VALUE, abs=0.05), estimate
    ips_width = estimates[0].high - estimates[0].low
    dr_width = estimates[3].high - estimates[3].low
    assert dr_width < 0.9 * ips_width  # a good reward model buys precision (the reward's own noise stays)


def test_a_policy_acting_where_the_log_never_explored_is_refused(log):
    x, p0, a, reward = log
    deterministic = (x > 0.5).astype(float)  # a threshold policy without exploration: never treats x <= 0.5
    logged_action = deterministic.copy()
    with pytest.raises(ValueError, match="never could on 38"):
        ips(logged_action, deterministic, reward, (x > -0.5).astype(float))
    with pytest.raises(ValueError, match="probability 0"):
        snips(np.ones(N), np.zeros(N), reward, np.ones(N))


def test_promotion_gate_refuses_a_policy_no_better_and_promotes_a_better_one(log):
    x, p0, a, reward = log
    mu1, mu0 = 1 + 1.5 * x, 1 + 0.5 * x
    current = (x > 0).astype(float)
    rng = np.random.default_rng(5)
    # the same rule with 2 % of rows flipped at random: no better, and the gate must not take the noise for a gain
    same = np.where(rng.random(N) < 0.02, 1 - current, current)
    verdict = policy_promotion(dr_difference(a, p0, reward, same, current, mu1, mu0))
    assert not verdict.promote and "current policy stays" in verdict.reason
    worse_current = np.ones(N)  # treat-all loses on x < 0
    verdict = policy_promotion(dr_difference(a, p0, reward, current, worse_current, mu1, mu0))
    assert verdict.promote, verdict.reason
    # the difference's true value: E[-x 1{x < 0}] = phi(0)
    assert verdict.difference.low < norm.pdf(0) < verdict.difference.high


def test_the_profit_rule_is_the_uplift_in_realised_profit():
    terms = OfferTerms(margin_rate=0.3, discount_rate=0.1, contact_cost=0.05)
    treated, control = np.array([10.0, 2.0, 0.0]), np.array([9.0, 0.5, 0.0])
    # by hand: 0.3 * 1 - 0.1 * 10 - 0.05 = -0.75; 0.3 * 1.5 - 0.2 - 0.05 = 0.2; -0.05
    assert np.allclose(terms.incremental_profit(treated, control), [-0.75, 0.2, -0.05])
    uplift = terms.realised_profit(treated, 1) - terms.realised_profit(control, 0)
    assert np.allclose(uplift, terms.incremental_profit(treated, control))
    assert treat_when_profitable(uplift).tolist() == [0.0, 1.0, 0.0]

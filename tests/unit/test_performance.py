"""Performance and calibration monitors: interval coverage, expected against realised figures, the drift flag, and
the two checks on calibrated and miscalibrated scores (simulator traffic with its exact purchase probabilities,
and numpy draws where the statistics need many repetitions)."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.special import expit, logit

from propensity.models.metrics import roc_auc_batch
from propensity.monitoring.performance import (
    CALIBRATION_CHECK,
    PERFORMANCE_CHECK,
    calibration_check,
    expected_performance,
    performance_check,
    realised_performance,
)
from propensity.sources.simulator import simulate_traffic

INTERCEPT, SLOPE = 0.3, 0.8  # the scored model: logit q = 0.3 + 0.8 * true logit (too timid, too high)


@pytest.fixture(scope="module")
def simulated_decisions() -> pd.DataFrame:
    """Every non-purchase event of simulated traffic as a decision: its exact purchase probability (a perfectly
    calibrated score) and its label (the session purchased afterwards), with the session to group by."""
    batch = simulate_traffic(n_users=1500, days=4, seed=11)
    events = batch.events.merge(batch.truth, on="event_id")
    purchased = events.groupby("session_id")["event_type"].transform(lambda t: (t == "purchase").any())
    decisions = events[events["event_type"] != "purchase"].assign(label=purchased.astype(int))
    return decisions[["session_id", "true_propensity", "label"]].reset_index(drop=True)


def _population_truth(draws: int = 2_000_000) -> dict:
    """The population values of the scored model's metrics, from the exact probabilities (no label noise)."""
    rng = np.random.default_rng(99)
    t = rng.normal(-2.0, 1.0, draws)
    p, q = expit(t), expit(INTERCEPT + SLOPE * t)
    order = np.argsort(q)
    # AUC over the population: every row is a positive with weight p and a negative with weight 1 - p
    both = np.concatenate([q[order], q[order]])
    labels = np.concatenate([np.ones(draws), np.zeros(draws)])
    weights = np.concatenate([p[order], 1 - p[order]])
    resort = np.argsort(both, kind="stable")
    auc = float(roc_auc_batch(labels[resort], both[resort], weights[resort][None, :])[0])
    intercept = brentq(lambda c: np.mean(expit(c + logit(q))) - p.mean(), -5, 5)
    return {
        "roc_auc": auc,
        "log_loss": float(np.mean(-(p * np.log(q) + (1 - p) * np.log1p(-q)))),
        "calibration_slope": 1 / SLOPE,  # logit p = (logit q - 0.3) / 0.8: the recalibration is exact
        "calibration_intercept": float(intercept),
    }


def _sample(rng, n):
    t = rng.normal(-2.0, 1.0, n)
    y = (rng.random(n) < expit(t)).astype(int)
    return y, expit(INTERCEPT + SLOPE * t)


def test_realised_intervals_cover_the_population_values_at_their_level():
    truth = _population_truth()
    rng = np.random.default_rng(1)
    repetitions = 100
    covered = {name: 0 for name in truth}
    for i in range(repetitions):
        y, q = _sample(rng, 1500)
        realised = realised_performance(y, q, resamples=300, seed=i)
        for name, value in truth.items():
            covered[name] += realised[name]["low"] <= value <= realised[name]["high"]
    coverage = {name: c / repetitions for name, c in covered.items()}
    # 95 % intervals over 100 repetitions: 88..99 covered holds with probability > 0.99 at the nominal level;
    # too narrow an interval falls below, an interval that covers everything reaches 100.
    assert all(0.88 <= c <= 0.99 for c in coverage.values()), coverage


def test_sessions_sharing_a_label_need_session_resampling():
    """Sessions of 8 decision points with one outcome each: row resampling pretends to 8x the information."""
    rng = np.random.default_rng(2)
    truth = _population_truth()["log_loss"]
    covered = {"session": 0, "row": 0}
    repetitions = 60
    for i in range(repetitions):
        y, q = _sample(rng, 250)
        y, q = np.repeat(y, 8), np.repeat(q, 8)
        sessions = np.repeat(np.arange(250), 8)
        for by, groups in (("session", sessions), ("row", None)):
            interval = realised_performance(y, q, groups=groups, resamples=200, seed=i)["log_loss"]
            covered[by] += interval["low"] <= truth <= interval["high"]
    assert covered["session"] / repetitions >= 0.85 > 0.7 >= covered["row"] / repetitions, covered


def test_realised_figures_carry_their_n_and_undefined_metrics_say_so():
    realised = realised_performance(np.zeros(50, dtype=int), np.full(50, 0.05))
    assert (realised["n"], realised["positives"]) == (50, 0)
    assert realised["roc_auc"] is None and realised["calibration_slope"] is None
    assert realised["log_loss"]["low"] <= realised["log_loss"]["value"] <= realised["log_loss"]["high"]
    with pytest.raises(ValueError, match="at least one"):
        realised_performance([], [])


def test_expected_log_loss_and_ece_match_the_realised_ones_on_calibrated_simulator_traffic(simulated_decisions):
    d = simulated_decisions
    sessions = d["session_id"].to_numpy()
    expected = expected_performance(d["true_propensity"], drift_detected=False, groups=sessions)
    realised = realised_performance(d["label"], d["true_propensity"], groups=sessions)
    assert expected["valid"] and expected["n"] == realised["n"] == len(d) > 10_000
    for metric in ("log_loss", "ece"):
        assert expected[metric]["low"] <= realised[metric]["value"] <= expected[metric]["high"], metric
    assert realised["log_loss"]["value"] == pytest.approx(expected["log_loss"]["value"], rel=0.05)


def test_expected_interval_holds_the_realised_log_loss_at_its_level():
    rng = np.random.default_rng(3)
    inside, repetitions = 0, 200
    p = expit(rng.normal(-2.0, 1.0, 2000))
    expected = expected_performance(p, drift_detected=False, seed=4)["log_loss"]
    for _ in range(repetitions):
        y = (rng.random(len(p)) < p).astype(int)
        realised = float(np.mean(-(y * np.log(p) + (1 - y) * np.log1p(-p))))
        inside += expected["low"] <= realised <= expected["high"]
    assert 0.9 <= inside / repetitions <= 0.99


def test_expected_performance_is_invalid_while_drift_is_detected():
    p = np.full(100, 0.1)
    drifted = expected_performance(p, drift_detected=True)
    assert not drifted["valid"] and "drift" in drifted["reason"]
    assert expected_performance(p, drift_detected=False)["valid"]
    assert drifted["log_loss"]["value"] == pytest.approx(-(0.1 * np.log(0.1) + 0.9 * np.log(0.9)))


def test_checks_pass_a_calibrated_model_on_simulator_traffic(simulated_decisions):
    d = simulated_decisions
    realised = realised_performance(d["label"], d["true_propensity"], groups=d["session_id"].to_numpy())
    passed, detail = calibration_check(realised, max_ece=0.02)
    assert passed and detail["check"] == CALIBRATION_CHECK, detail["reason"]
    reference = {"log_loss": realised["log_loss"]["value"]}
    passed, detail = performance_check(realised, reference, tolerance=0.1)
    assert passed and detail["check"] == PERFORMANCE_CHECK, detail["reason"]


@pytest.mark.parametrize(
    ("distort", "failing"),
    [
        (lambda z: 2.0 * z, "calibration slope"),  # overconfident
        (lambda z: z - 1.0, "calibration intercept"),  # every score far too low
    ],
)
def test_calibration_check_fires_on_a_clearly_miscalibrated_model(simulated_decisions, distort, failing):
    d = simulated_decisions
    scores = expit(distort(logit(d["true_propensity"].clip(1e-6, 1 - 1e-6))))
    realised = realised_performance(d["label"], scores, groups=d["session_id"].to_numpy())
    passed, detail = calibration_check(realised, max_ece=0.02)
    assert not passed and failing in detail["reason"], detail["reason"]


def test_few_labels_are_not_clear_evidence_even_when_the_ece_exceeds_the_bound():
    """300 calibrated decisions: the ECE alone is above 0.02 by chance, and the check must not fire on it."""
    rng = np.random.default_rng(6)
    p = expit(rng.normal(-1.0, 1.0, 300))
    y = (rng.random(300) < p).astype(int)
    realised = realised_performance(y, p)
    assert realised["ece"]["low"] > 0.02  # a check on the bare interval would fire here
    passed, detail = calibration_check(realised, max_ece=0.02)
    assert passed, detail["reason"]


def test_performance_check_fires_only_when_the_lower_bound_clears_the_tolerance(simulated_decisions):
    d = simulated_decisions
    sessions = d["session_id"].to_numpy()
    # the same scores, each on another decision: what a broken feature join serves
    degraded = np.random.default_rng(0).permutation(d["true_propensity"].to_numpy())
    realised = realised_performance(d["label"], degraded, groups=sessions)
    healthy = realised_performance(d["label"], d["true_propensity"], groups=sessions)
    reference = {"log_loss": healthy["log_loss"]["value"]}  # what the model scored when it was trained
    assert realised["log_loss"]["low"] > reference["log_loss"] * 1.1
    passed, detail = performance_check(realised, reference, tolerance=0.1)
    assert not passed and "above the limit" in detail["reason"]
    # the same figures against a reference the degraded model's interval still reaches: no clear evidence
    passed, _ = performance_check(realised, {"log_loss": realised["log_loss"]["low"] / 1.1 + 1e-9}, tolerance=0.1)
    assert passed

"""Each uplift learner recovers a known heterogeneous effect from synthetic logged outcomes: who is moved (rank
correlation with the true tau, which is negative for part of the population) and by how much on average, under a
randomised log and under a confounded one where the naive difference of means is wrong."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from propensity.uplift.learners import LEARNERS, UpliftModel, fit_uplift

N = 24_000


def _population(seed: int):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(-1, 1, size=(N, 5)), columns=[f"x{i}" for i in range(5)])
    base = 0.30 + 0.15 * X["x0"].to_numpy()
    tau = 0.05 + 0.20 * X["x1"].to_numpy()  # from -0.15 to +0.25: a quarter of the shoppers are put off
    return rng, X, base, tau


def _log(seed: int, confounded: bool):
    rng, X, base, tau = _population(seed)
    # The confounded policy treats likely buyers more often: a difference of means then overstates the effect.
    e = 0.15 + 0.7 / (1 + np.exp(-3 * X["x0"].to_numpy())) if confounded else np.full(N, 0.5)
    t = (rng.random(N) < e).astype(float)
    y = (rng.random(N) < base + t * tau).astype(float)
    return X, y, t, e, tau


@pytest.mark.parametrize("learner", LEARNERS)
def test_each_learner_ranks_shoppers_by_their_true_effect_on_a_randomised_log(learner):
    X, y, t, e, tau = _log(seed=1, confounded=False)
    model = fit_uplift(learner, X, y, t, e, folds=3, seed=0)
    fresh = _population(seed=2)[1]
    true_fresh = 0.05 + 0.20 * fresh["x1"].to_numpy()
    predicted = model.predict(fresh)
    assert spearmanr(predicted, true_fresh).statistic > 0.6
    assert abs(predicted.mean() - true_fresh.mean()) < 0.02
    # The out-of-fold estimate for the training rows carries the same signal.
    assert spearmanr(model.training_effect, tau).statistic > 0.5


@pytest.mark.parametrize("learner", LEARNERS)
def test_a_fitted_learner_travels_as_json_and_predicts_the_same(learner):
    X, y, t, e, _ = _log(seed=6, confounded=False)
    model = fit_uplift(learner, X, y, t, e, folds=2, seed=0)
    restored = UpliftModel.from_dict(json.loads(json.dumps(model.to_dict())))
    fresh = _population(seed=7)[1]
    assert np.array_equal(restored.predict(fresh), model.predict(fresh))
    # columns are taken by name, whatever their order
    assert np.array_equal(restored.predict(fresh[list(reversed(fresh.columns))]), model.predict(fresh))
    with pytest.raises(ValueError, match="needs feature"):
        restored.predict(fresh.drop(columns=["x1"]))


@pytest.mark.parametrize("learner", ["t", "dr"])
def test_inverse_propensity_weights_undo_a_confounded_logging_policy(learner):
    X, y, t, e, tau = _log(seed=3, confounded=True)
    naive = y[t == 1].mean() - y[t == 0].mean()
    assert naive - tau.mean() > 0.05  # the log really is confounded
    model = fit_uplift(learner, X, y, t, e, folds=3, seed=0)
    assert abs(model.predict(X).mean() - tau.mean()) < 0.02


def test_a_revenue_outcome_gives_an_effect_in_currency():
    rng, X, base, tau = _population(seed=4)
    t = (rng.random(N) < 0.5).astype(float)
    bought = rng.random(N) < base + t * tau
    revenue = np.where(bought, rng.gamma(4.0, 10.0, N), 0.0)  # mean basket 40
    model = fit_uplift("t", X, revenue, t, 0.5, folds=3, seed=0)
    assert model.outcome == "regression"
    assert abs(model.predict(X).mean() - 40 * tau.mean()) < 1.5
    assert spearmanr(model.predict(X), tau).statistic > 0.5


def test_folds_keep_a_users_rows_together_and_bad_logs_are_refused():
    X, y, t, e, _ = _log(seed=5, confounded=False)
    users = np.arange(N) // 4
    model = fit_uplift("t", X, y, t, e, folds=3, groups=users, seed=0)
    assert len(model.effect_models) == 3
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        fit_uplift("dr", X, y, t, np.where(t == 1, 1.0, 0.5))
    with pytest.raises(ValueError, match="0 \\(control\\) or 1"):
        fit_uplift("t", X, y, t * 2, e)
    with pytest.raises(ValueError, match="binary outcome"):
        fit_uplift("class_transformation", X, y * 3.5, t, e)
    with pytest.raises(ValueError, match="too few treated"):
        fit_uplift("t", X, y, np.zeros(N) + (np.arange(N) < 10), e)
    with pytest.raises(ValueError, match="not one of"):
        fit_uplift("s", X, y, t, e)

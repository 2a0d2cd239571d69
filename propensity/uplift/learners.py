"""Uplift learners on logged outcomes, with LightGBM: cross-fitted T-, X- and DR-learners and a class-transformation
baseline. Written here rather than taken from causalml (pulls xgboost and black in at run time) or EconML (caps
scikit-learn below 1.10): each learner is a few lines over LightGBM, which the platform already pins.

Every learner takes the features X, the outcome y (binary: a conversion; otherwise a regression: revenue), the
arm t (1 treated) and the probability of treatment the logging policy gave each row (`treat_probability`: the
decision log's column; a constant for a randomised experiment). Where the logging policy was not uniform, the
outcome models are fitted with inverse-propensity weights (1/e for treated rows, 1/(1-e) for control), so each
arm's model sees the whole population rather than the part the policy favoured.

Cross-fitting: rows are split into `folds` (whole groups together when `groups` is given: a user's sessions); the
outcome models that build a row's pseudo-outcome never saw that row. New rows are scored by the average of the
fold models. `predict(X)` returns the estimated effect of treating on y (tau: probability points or revenue).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

LEARNERS = ("t", "x", "dr", "class_transformation")
# Uplift targets are differences of noisy outcomes (a profit is mostly 0 and sometimes a whole basket): shallow
# trees on large leaves, slowly. On bench.uplift's simulated store (54k decision points) these rank sessions by their
# exact incremental profit at Spearman 0.45-0.5, against 0.07 for 15 leaves of 100 rows and 200 rounds.
DEFAULT_PARAMS = {
    "learning_rate": 0.03,
    "num_leaves": 4,
    "min_data_in_leaf": 1000,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 2,
    "deterministic": True,
    "force_col_wise": True,
}
ROUNDS = 100


def _is_binary(y: np.ndarray) -> bool:
    return bool(np.isin(y, (0.0, 1.0)).all())


def _fit(X, y, weight, params, seed, objective) -> lgb.Booster:
    data = lgb.Dataset(X, label=y, weight=weight, free_raw_data=True)
    return lgb.train({**DEFAULT_PARAMS, **params, "objective": objective, "seed": seed}, data, num_boost_round=ROUNDS)


def _fold_of(n: int, folds: int, groups, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.permutation(np.arange(n) % folds)
    _, group = np.unique(np.asarray(groups), return_inverse=True)
    return rng.permutation(np.arange(group.max() + 1) % folds)[group]


@dataclass
class UpliftModel:
    """A fitted learner: `predict` averages its fold models; `training_effect` is the out-of-fold estimate for the
    training rows (what a cross-fitted evaluation or a DR policy value uses)."""

    learner: str
    outcome: str  # "binary" or "regression"
    models: list = field(default_factory=list)  # per fold: a callable X -> tau
    training_effect: np.ndarray | None = None
    training_mu: tuple[np.ndarray, np.ndarray] | None = None  # out-of-fold (mu1, mu0) for the training rows
    outcome_models: list = field(default_factory=list)  # per fold: (treated, control) outcome boosters

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.mean([model(X) for model in self.models], axis=0)

    def predict_outcomes(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(mu1, mu0): the expected outcome if treated and if not, averaged over the folds (a reward model for a
        doubly robust policy value on rows these models never saw)."""
        if not self.outcome_models:
            raise ValueError(f"the {self.learner} learner fits no outcome models")
        return (
            np.mean([m1.predict(X) for m1, _ in self.outcome_models], axis=0),
            np.mean([m0.predict(X) for _, m0 in self.outcome_models], axis=0),
        )


def _inputs(X, y, t, treat_probability):
    y, t = np.asarray(y, dtype=float), np.asarray(t, dtype=float)
    if not (len(X) == len(y) == len(t)):
        raise ValueError(f"X, y and t differ in length: {len(X)}, {len(y)}, {len(t)}")
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("t must be 0 (control) or 1 (treated)")
    e = np.broadcast_to(np.asarray(treat_probability, dtype=float), t.shape).copy()
    if ((e <= 0) | (e >= 1)).any():
        raise ValueError(
            "every row needs a probability of treatment strictly between 0 and 1: a row its policy was sure to "
            "treat (or spare) says nothing about the other arm (log an exploration share)"
        )
    for arm in (0.0, 1.0):
        if (t == arm).sum() < 2 * DEFAULT_PARAMS["min_data_in_leaf"]:
            raise ValueError(
                f"too few {'treated' if arm else 'control'} rows to fit an uplift model: {(t == arm).sum()}"
            )
    return y, t, e


def _arm_weights(t, e) -> np.ndarray | None:
    if np.ptp(e) == 0:
        return None  # uniform logging: the arms are random samples of the population already
    return np.where(t == 1, 1 / e, 1 / (1 - e))


def _outcome_models(X, y, t, e, folds, groups, seed, params):
    """Cross-fitted (mu1, mu0): out-of-fold predictions for the training rows and the fold models."""
    objective = "binary" if _is_binary(y) else "regression"
    fold = _fold_of(len(y), folds, groups, seed)
    weight = _arm_weights(t, e)
    mu1, mu0 = np.empty(len(y)), np.empty(len(y))
    fold_models = []
    for k in range(folds):
        train, held = fold != k, fold == k
        pair = []
        for arm, out in ((1.0, mu1), (0.0, mu0)):
            rows = train & (t == arm)
            booster = _fit(X[rows], y[rows], None if weight is None else weight[rows], params, seed + k, objective)
            out[held] = booster.predict(X[held])
            pair.append(booster)
        fold_models.append(tuple(pair))
    return objective, fold, mu1, mu0, fold_models


def fit_uplift(
    learner: str,
    X: pd.DataFrame,
    y,
    t,
    treat_probability=0.5,
    *,
    folds: int = 5,
    groups=None,
    seed: int = 0,
    params: dict | None = None,
) -> UpliftModel:
    if learner not in LEARNERS:
        raise ValueError(f"learner {learner!r} is not one of {', '.join(LEARNERS)}")
    params = params or {}
    y, t, e = _inputs(X, y, t, treat_probability)
    X = X.reset_index(drop=True)
    if learner == "class_transformation":
        return _class_transformation(X, y, t, e, folds, groups, seed, params)
    objective, fold, mu1, mu0, fold_models = _outcome_models(X, y, t, e, folds, groups, seed, params)
    outcome = "binary" if objective == "binary" else "regression"
    if learner == "t":
        models = [lambda Z, m1=m1, m0=m0: m1.predict(Z) - m0.predict(Z) for m1, m0 in fold_models]
        return UpliftModel("t", outcome, models, mu1 - mu0, (mu1, mu0), fold_models)
    if learner == "x":
        # Imputed effects: a treated row's outcome minus what control would have given it, and the reverse.
        imputed = np.where(t == 1, y - mu0, mu1 - y)
        share = float(t.mean())  # g(x) = P(treated): any weight in [0, 1] is valid (Kunzel et al. 2019)
        models, effect = [], np.empty(len(y))
        for k in range(folds):
            train, held = fold != k, fold == k
            tau1 = _fit(X[train & (t == 1)], imputed[train & (t == 1)], None, params, seed + k, "regression")
            tau0 = _fit(X[train & (t == 0)], imputed[train & (t == 0)], None, params, seed + k, "regression")

            def combined(Z, tau1=tau1, tau0=tau0):
                return share * tau0.predict(Z) + (1 - share) * tau1.predict(Z)

            effect[held] = combined(X[held])
            models.append(combined)
        return UpliftModel("x", outcome, models, effect, (mu1, mu0), fold_models)
    # DR-learner: the doubly robust pseudo-outcome, exact logging probabilities in its weights.
    pseudo = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
    models, effect = [], np.empty(len(y))
    for k in range(folds):
        train, held = fold != k, fold == k
        booster = _fit(X[train], pseudo[train], None, params, seed + k, "regression")
        effect[held] = booster.predict(X[held])
        models.append(booster.predict)
    return UpliftModel("dr", outcome, models, effect, (mu1, mu0), fold_models)


def _class_transformation(X, y, t, e, folds, groups, seed, params) -> UpliftModel:
    """z = 1 when a treated row responded or a control row did not; with the arms weighted to equal size,
    P(z = 1 | x) = (1 + tau(x)) / 2 (Jaskowski and Jaroszewicz 2012). Binary outcomes only."""
    if not _is_binary(y):
        raise ValueError("the class transformation needs a binary outcome (0/1)")
    z = y * t + (1 - y) * (1 - t)
    weight = np.where(t == 1, 1 / e, 1 / (1 - e))
    weight = np.where(t == 1, weight / weight[t == 1].sum(), weight / weight[t == 0].sum()) * len(y) / 2
    fold = _fold_of(len(y), folds, groups, seed)
    models, effect = [], np.empty(len(y))
    for k in range(folds):
        train, held = fold != k, fold == k
        booster = _fit(X[train], z[train], weight[train], params, seed + k, "binary")
        effect[held] = 2 * booster.predict(X[held]) - 1
        models.append(lambda Z, b=booster: 2 * b.predict(Z) - 1)
    return UpliftModel("class_transformation", "binary", models, effect, None)

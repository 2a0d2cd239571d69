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
# trees on large leaves, slowly. On bench.uplift's simulated store (33k training rows) these rank sessions by their
# exact incremental profit at Spearman 0.46-0.57; 15 leaves of 100 rows and 200 rounds gave 0.07 on 11k rows.
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
MIN_ARM_ROWS = 200  # per arm, below which no learner is fitted
LEAF_SHARE = 8  # a leaf holds at least 1/8 of the smaller arm's training rows in a fold, at most 1000 rows


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
    training rows (what a cross-fitted evaluation or a DR policy value uses). `to_dict` / `from_dict` carry it as
    LightGBM's text models and JSON numbers (nothing is pickled), for a model artifact.

    `effect_models` holds per fold the boosters that give tau: (treated, control) outcome models for "t", their
    difference; (tau on treated rows, tau on control rows) for "x", weighted by `share`; (tau,) for "dr"; (P(z=1),)
    for "class_transformation", tau = 2P - 1."""

    learner: str
    outcome: str  # "binary" or "regression"
    features: list[str]
    effect_models: list[tuple[lgb.Booster, ...]] = field(default_factory=list)
    share: float | None = None  # x-learner: the treated share, the weight of the control-side effect model
    outcome_models: list[tuple[lgb.Booster, lgb.Booster]] = field(default_factory=list)  # per fold (mu1, mu0)
    training_effect: np.ndarray | None = None
    training_mu: tuple[np.ndarray, np.ndarray] | None = None  # out-of-fold (mu1, mu0) for the training rows

    def _columns(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [name for name in self.features if name not in X.columns]
        if missing:
            raise ValueError(f"uplift model needs feature(s) {missing}")
        return X[self.features]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        X = self._columns(X)
        return np.mean([_effect(self.learner, self.share, boosters, X) for boosters in self.effect_models], axis=0)

    def predict_outcomes(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(mu1, mu0): the expected outcome if treated and if not, averaged over the folds (a reward model for a
        doubly robust policy value on rows these models never saw)."""
        if not self.outcome_models:
            raise ValueError(f"the {self.learner} learner fits no outcome models")
        X = self._columns(X)
        return (
            np.mean([m1.predict(X) for m1, _ in self.outcome_models], axis=0),
            np.mean([m0.predict(X) for _, m0 in self.outcome_models], axis=0),
        )

    def to_dict(self) -> dict:
        def text(models):
            return [[booster.model_to_string() for booster in fold] for fold in models]

        return {
            "learner": self.learner,
            "outcome": self.outcome,
            "features": list(self.features),
            "share": self.share,
            "effect_models": text(self.effect_models),
            "outcome_models": text(self.outcome_models),
        }

    @classmethod
    def from_dict(cls, data: dict) -> UpliftModel:
        if data.get("learner") not in LEARNERS:
            raise ValueError(f"not an uplift model: learner {data.get('learner')!r}")

        def boosters(models):
            return [tuple(lgb.Booster(model_str=m) for m in fold) for fold in models]

        return cls(
            learner=data["learner"],
            outcome=data["outcome"],
            features=list(data["features"]),
            effect_models=boosters(data["effect_models"]),
            share=data.get("share"),
            outcome_models=boosters(data.get("outcome_models", [])),
        )


def _effect(learner: str, share: float | None, boosters: tuple, X) -> np.ndarray:
    if learner == "t":
        return boosters[0].predict(X) - boosters[1].predict(X)
    if learner == "x":
        return share * boosters[1].predict(X) + (1 - share) * boosters[0].predict(X)
    if learner == "dr":
        return boosters[0].predict(X)
    return 2 * boosters[0].predict(X) - 1  # class transformation


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
        if (t == arm).sum() < MIN_ARM_ROWS:
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
    y, t, e = _inputs(X, y, t, treat_probability)
    # Leaves scale with the log: large ones on a large log, still a handful of leaves on a small one.
    smaller_arm = min(t.sum(), len(t) - t.sum()) * (folds - 1) / folds
    leaf = int(np.clip(smaller_arm / LEAF_SHARE, 20, DEFAULT_PARAMS["min_data_in_leaf"]))
    params = {"min_data_in_leaf": leaf, **(params or {})}
    X = X.reset_index(drop=True)
    if learner == "class_transformation":
        return _class_transformation(X, y, t, e, folds, groups, seed, params)
    objective, fold, mu1, mu0, fold_models = _outcome_models(X, y, t, e, folds, groups, seed, params)
    outcome = "binary" if objective == "binary" else "regression"
    features = list(X.columns)
    if learner == "t":
        return UpliftModel("t", outcome, features, fold_models, None, fold_models, mu1 - mu0, (mu1, mu0))
    if learner == "x":
        # Imputed effects: a treated row's outcome minus what control would have given it, and the reverse.
        imputed = np.where(t == 1, y - mu0, mu1 - y)
        share = float(t.mean())  # g(x) = P(treated): any weight in [0, 1] is valid (Kunzel et al. 2019)
        models, effect = [], np.empty(len(y))
        for k in range(folds):
            train, held = fold != k, fold == k
            tau1 = _fit(X[train & (t == 1)], imputed[train & (t == 1)], None, params, seed + k, "regression")
            tau0 = _fit(X[train & (t == 0)], imputed[train & (t == 0)], None, params, seed + k, "regression")
            models.append((tau1, tau0))
            effect[held] = _effect("x", share, models[-1], X[held])
        return UpliftModel("x", outcome, features, models, share, fold_models, effect, (mu1, mu0))
    # DR-learner: the doubly robust pseudo-outcome, exact logging probabilities in its weights.
    pseudo = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
    models, effect = [], np.empty(len(y))
    for k in range(folds):
        train, held = fold != k, fold == k
        booster = _fit(X[train], pseudo[train], None, params, seed + k, "regression")
        effect[held] = booster.predict(X[held])
        models.append((booster,))
    return UpliftModel("dr", outcome, features, models, None, fold_models, effect, (mu1, mu0))


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
        models.append((booster,))
    return UpliftModel("class_transformation", "binary", list(X.columns), models, training_effect=effect)

"""The two models: a logistic-regression baseline (the reference) and LightGBM. Seeds fixed; deterministic.

Class imbalance is left in the data on purpose: reweighting (is_unbalance, scale_pos_weight) inflates the
probabilities, and the storefront prices offers off calibrated probabilities. LightGBM copes with a few percent
positives; calibration on validation fixes what remains.

OpenMP threads spin while idle by default; beside Spark or a server on 2 cores that made a 0.3 s fit take 10 s and
more. The Makefile exports OMP_WAIT_POLICY=PASSIVE for every command it runs (it must be set before LightGBM loads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

SEED = 20261127


@dataclass(frozen=True)
class LightGBMSettings:
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    threads: int = 2
    extra: dict = field(default_factory=dict)

    def params(self) -> dict:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "seed": SEED,
            "deterministic": True,  # same data, same trees, whatever the thread timing
            "force_col_wise": True,
            "num_threads": self.threads,
            "verbose": -1,
            **self.extra,
        }


def train_lightgbm(
    X_train: pd.DataFrame, y_train, X_valid: pd.DataFrame, y_valid, settings: LightGBMSettings = LightGBMSettings()
) -> lgb.Booster:
    train = lgb.Dataset(X_train, label=np.asarray(y_train), free_raw_data=False)
    valid = lgb.Dataset(X_valid, label=np.asarray(y_valid), reference=train, free_raw_data=False)
    return lgb.train(
        settings.params(),
        train,
        num_boost_round=settings.max_rounds,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )


def fit_logistic_baseline(X: pd.DataFrame, y, C: float = 1.0) -> dict:
    """Signed-log compression, clipping to the training range, median imputation with missing-indicators,
    standardisation, L2 logistic regression; exported as numbers.

    Compression and clipping keep the linear model from extrapolating: counts such as 30-day activity keep growing
    after the training period, and an unclipped linear term turns that drift into confident nonsense on later days.
    """
    features = list(X.columns)
    compressed = _compress(X[features])
    low, high = compressed.min().fillna(0.0), compressed.max().fillna(0.0)
    medians = compressed.median().fillna(0.0)
    with_missing = [f for f in features if X[f].isna().any()]
    design = _baseline_design(compressed, features, medians, with_missing)
    means = design.mean()
    scales = design.std(ddof=0).replace(0.0, 1.0)
    model = LogisticRegression(C=C, max_iter=2000, random_state=SEED)
    model.fit(((design - means) / scales).to_numpy(), np.asarray(y))
    return {
        "kind": "logistic_regression",
        "features": features,
        "medians": {f: float(medians[f]) for f in features},
        "clip_low": {f: float(low[f]) for f in features},
        "clip_high": {f: float(high[f]) for f in features},
        "missing_indicators": with_missing,
        "design_columns": list(design.columns),
        "means": [float(v) for v in means],
        "scales": [float(v) for v in scales],
        "coef": [float(v) for v in model.coef_[0]],
        "intercept": float(model.intercept_[0]),
        "C": C,
    }


def _compress(X: pd.DataFrame) -> pd.DataFrame:
    values = X.astype("float64")
    return np.sign(values) * np.log1p(values.abs())


def _baseline_design(X: pd.DataFrame, features: list[str], medians, with_missing: list[str]) -> pd.DataFrame:
    design = X[features].astype("float64").fillna(medians)
    for f in with_missing:
        design[f"{f}__missing"] = X[f].isna().astype("float64")
    return design


def predict_logistic_baseline(model: dict, X: pd.DataFrame) -> np.ndarray:
    features = model["features"]
    compressed = _compress(X[features]).clip(pd.Series(model["clip_low"]), pd.Series(model["clip_high"]), axis=1)
    medians = pd.Series(model["medians"])
    design = _baseline_design(compressed, features, medians, model["missing_indicators"])[model["design_columns"]]
    z = ((design.to_numpy() - np.asarray(model["means"])) / np.asarray(model["scales"])) @ np.asarray(model["coef"])
    return expit(z + model["intercept"])

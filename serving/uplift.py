"""An uplift model on the request path: the estimated incremental profit of showing the offer, from one row.

The model comes from the artifact's policy (`UpliftModel.to_dict`: LightGBM text models, nothing pickled). Each
booster is compiled once by `serving.predictor` (plain Python, no LightGBM call per request), and the learner's
combination is the one `propensity.uplift.learners` applies: the fold average of m1 - m0 (T), of
share * tau0 + (1 - share) * tau1 (X), of tau (DR), of 2P - 1 (class transformation). A binary booster's raw score
goes through the logistic function, as LightGBM's predict does; a regression booster's raw score is its prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

from propensity.models.calibration import logistic_one
from serving.predictor import TreeEnsemblePredictor

_LEARNERS = ("t", "x", "dr", "class_transformation")


def _is_binary(model_text: str) -> bool:
    for line in model_text.splitlines():
        if line.startswith("objective="):
            return line.split("=", 1)[1].split()[0] in ("binary", "cross_entropy")
    raise ValueError("uplift booster text has no objective line")


class CompiledUplift:
    """`effect(row)`: the uplift estimate for a row laid out as `input_names` (NaN for missing)."""

    def __init__(self, model: dict, input_names: Sequence[str]):
        learner = model.get("learner")
        if learner not in _LEARNERS:
            raise ValueError(f"not an uplift model: learner {learner!r}")
        features = list(model.get("features") or [])
        unknown = [name for name in features if name not in input_names]
        if unknown:
            raise ValueError(f"the uplift model reads {unknown}, which the scorer does not have")
        folds = model.get("effect_models") or []
        if not folds:
            raise ValueError("the uplift model has no effect models")
        self.learner = learner
        self.features = features
        self.share = model.get("share")
        if learner == "x" and not (isinstance(self.share, (int, float)) and 0.0 <= self.share <= 1.0):
            raise ValueError(f"x-learner share must be in [0, 1], got {self.share!r}")
        self._index = [list(input_names).index(name) for name in features]
        self._folds = []
        for fold in folds:
            compiled = []
            for text in fold:
                predictor = TreeEnsemblePredictor.from_model_string(text)
                if predictor.feature_names != features:
                    raise ValueError("an uplift booster's features differ from the model's")
                compiled.append((predictor.raw_score_one, _is_binary(text)))
            self._folds.append(compiled)

    def _predict(self, booster, row: list[float]) -> float:
        score, binary = booster
        raw = score(row)
        return logistic_one(raw) if binary else raw

    def effect(self, row: Sequence[float]) -> float:
        inputs = [row[i] for i in self._index]
        total = 0.0
        for fold in self._folds:
            if self.learner == "t":
                total += self._predict(fold[0], inputs) - self._predict(fold[1], inputs)
            elif self.learner == "x":
                total += self.share * self._predict(fold[1], inputs) + (1 - self.share) * self._predict(fold[0], inputs)
            elif self.learner == "dr":
                total += self._predict(fold[0], inputs)
            else:
                total += 2 * self._predict(fold[0], inputs) - 1
        return total / len(self._folds)

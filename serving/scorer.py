"""The scorer: online features (one round trip) -> compiled tree ensemble -> calibration from the artifact's numbers.

Everything that can be done once (artifact load and manifest check, feature-service resolution, code generation of
the trees) happens in the constructor; `score` does only per-request work. When the online store is down or holds
nothing for a session, the model still scores with what is known (LightGBM routes missing values down each split's
default branch) and the answer says so: `fallback` with a reason.

Each prediction also carries the intervention `decision` (`serving.decision`, from the artifact's policy) and the
`features` the model read (null where missing). Both are in the response, not only in the local inference log,
because on SageMaker the decision log is read from Data Capture, which records only the request and the response.
"""

from __future__ import annotations

from datetime import datetime, timezone

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.artifact import ModelArtifact
from propensity.models.calibration import calibrator_function
from serving.contract import ScoringRequest
from serving.decision import DecisionPolicy
from serving.online_features import OnlineFeatureReader, OnlineStoreUnavailable
from serving.predictor import TreeEnsemblePredictor


class Scorer:
    def __init__(
        self,
        artifact: ModelArtifact,
        reader: OnlineFeatureReader,
        variant: str = "champion",
        model_version: str | None = None,
    ):
        if list(artifact.feature_names) != list(MODEL_FEATURE_NAMES) or list(reader.feature_names) != list(
            MODEL_FEATURE_NAMES
        ):
            raise ValueError(
                "the model, the online reader and propensity.features.definitions disagree on the features"
            )
        self.artifact = artifact
        self.reader = reader
        self.variant = variant
        self.model_version = model_version or artifact.version  # SageMaker mounts every model at /opt/ml/model
        self.predictor = TreeEnsemblePredictor.from_booster(artifact.booster)
        self.calibrate = calibrator_function(artifact.calibrator)
        self.policy = DecisionPolicy(artifact.policy)
        self._missing_row = [float("nan")] * len(MODEL_FEATURE_NAMES)

    def score(self, requests: list[ScoringRequest]) -> list[dict]:
        now = datetime.now(timezone.utc)
        try:
            rows = self.reader.read_many([(r.user_id, r.session_id) for r in requests])
            store_error = None
        except OnlineStoreUnavailable as error:
            rows, store_error = None, f"online store unavailable: {error}"
        results = []
        for i, request in enumerate(requests):
            if rows is None:
                values, ages, reason = self._missing_row, {v: None for v in self.reader.view_names}, store_error
            else:
                row = rows[i]
                values = row.values.tolist()
                ages = {
                    view: (None if ts is None else round((now - ts).total_seconds(), 3))
                    for view, ts in row.event_timestamps.items()
                }
                reason = f"no online features for {', '.join(row.missing_views)}" if row.missing_views else None
            propensity = self.calibrate(self.predictor.raw_score_one(values))
            decision = self.policy.decide(request.session_id, propensity, values)
            # JSON has no NaN: a missing feature is null (v != v holds for NaN only)
            results.append(
                {
                    "session_id": request.session_id,
                    "user_id": request.user_id,
                    "propensity": propensity,
                    "model_version": self.model_version,
                    "variant": self.variant,
                    "feature_age_s": ages,
                    "fallback": reason is not None,
                    "fallback_reason": reason,
                    "features": {name: (None if v != v else v) for name, v in zip(MODEL_FEATURE_NAMES, values)},
                    "decision": decision.as_dict(),
                }
            )
        return results

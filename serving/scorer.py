"""The scorer: online features (one round trip) -> compiled tree ensemble -> calibration from the artifact's numbers.

Everything that can be done once (artifact load and manifest check, feature-service resolution, code generation of
the trees) happens in the constructor; `score` does only per-request work. When the online store is down or holds
nothing for a session, the model still scores with what is known (LightGBM routes missing values down each split's
default branch) and the answer says so: `fallback` with a reason.

A request may carry the session's latest events (`events`): those the online row does not reflect yet are folded onto
it first (`propensity.features.request_fold`, with the row's fold state read in the same round trip), so the score
sees the event that triggered it; `request_events` in the answer says which were folded and which ignored, and why.

Each prediction also carries the intervention `decision` (`serving.decision`, from the artifact's policy) and the
`features` the model read (null where missing). Both are in the response, not only in the local inference log,
because on SageMaker the decision log is read from Data Capture, which records only the request and the response.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from propensity.features.definitions import MODEL_FEATURE_NAMES, SESSION_FEATURE_NAMES, SESSION_FEATURE_VIEW
from propensity.features.request_fold import NOT_NEWER, OnlineSession, fold_request_events
from propensity.models.artifact import ModelArtifact
from propensity.models.calibration import calibrator_function
from serving.contract import ScoringRequest
from serving.decision import DecisionPolicy
from serving.online_features import OnlineFeatureReader, OnlineFeatures, OnlineStoreUnavailable
from serving.predictor import TreeEnsemblePredictor

_SESSION_COLUMNS = tuple(MODEL_FEATURE_NAMES.index(name) for name in SESSION_FEATURE_NAMES)
NO_FOLD_STATE = (
    "not folded: the online row has no fold state of its own decision point (written before fold states existed, "
    "or rewritten just now); the score is the online row's"
)


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
        with_events = any(r.events is not None for r in requests)
        try:
            rows = self.reader.read_many([(r.user_id, r.session_id) for r in requests], with_fold_state=with_events)
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
            folded = None
            if request.events is not None:
                folded = self._fold(request, None if rows is None else rows[i], values, ages, now, store_error)
                if folded["folded"] and SESSION_FEATURE_VIEW in rows[i].missing_views:  # from the events alone
                    missing = [v for v in rows[i].missing_views if v != SESSION_FEATURE_VIEW]
                    reason = f"no online features for {', '.join(missing)}" if missing else None
            propensity = self.calibrate(self.predictor.raw_score_one(values))
            decision = self.policy.decide(request.session_id, propensity, values)
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
                    # JSON has no NaN or infinity (a price of 1e308 makes the cart value infinite): null
                    "features": {
                        name: (v if math.isfinite(v) else None) for name, v in zip(MODEL_FEATURE_NAMES, values)
                    },
                    "decision": decision.as_dict(),
                }
            )
            if folded is not None:
                results[-1]["request_events"] = folded
        return results

    def _fold(
        self, request: ScoringRequest, row: OnlineFeatures | None, values: list, ages: dict, now, store_error
    ) -> dict:
        """Fold the request's events onto the session's online row, in place in `values` and `ages`; the report."""
        report = {"folded": [], "ignored": [], "not_folded_reason": None}
        if row is None:
            report["not_folded_reason"] = f"not folded: {store_error}"
            return report
        stamp = row.event_timestamps.get(SESSION_FEATURE_VIEW)
        online = None
        if stamp is not None:
            if row.fold_state is None:
                if any(e.event_time >= stamp for e in request.events):
                    report["not_folded_reason"] = NO_FOLD_STATE
                else:
                    report["ignored"] = [{"event_id": e.event_id, "reason": NOT_NEWER} for e in request.events]
                return report
            online = OnlineSession(
                event_timestamp=row.fold_state.decision_time,
                features=tuple(values[c] for c in _SESSION_COLUMNS),
                product_ids=row.fold_state.product_ids,
                category_ids=row.fold_state.category_ids,
                last_event_ids=row.fold_state.last_event_ids,
            )
        result = fold_request_events(online, request.events)
        report["folded"] = list(result.folded)
        report["ignored"] = [{"event_id": event_id, "reason": reason} for event_id, reason in result.ignored]
        if result.features is not None:
            for column, value in zip(_SESSION_COLUMNS, result.features):
                values[column] = value
            ages[SESSION_FEATURE_VIEW] = round((now - result.event_timestamp).total_seconds(), 3)
        return report

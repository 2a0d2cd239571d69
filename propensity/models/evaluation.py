"""A candidate judged on its test split: metrics of the baseline, LightGBM and the calibrated model, the gates' evidence
and verdicts, and the candidate artifact's contents (training record, drift reference). One definition, used by the
`model_evaluation` asset and by the SageMaker pipeline's evaluation job (`propensity.models.pipeline_jobs`)."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit

from propensity.features.definitions import FEATURE_SERVICE_NAME, MODEL_FEATURE_NAMES
from propensity.models.artifact import ModelArtifact, fingerprint_frame, write_artifact
from propensity.models.calibration import apply_calibrator
from propensity.models.contract import SPLITS
from propensity.models.gates import (
    BASELINE_GATE,
    CALIBRATION_GATE,
    ECE_GATE,
    GATE_EVIDENCE,
    SKILL_GATE,
    GateResult,
    calibration_helps,
    ece_within_bound,
    not_worse_than_baseline,
    quality_gates,
    skill_over_base_rate,
)
from propensity.models.metrics import calibration_error_vs_truth, evaluate
from propensity.models.training import SEED, predict_logistic_baseline
from propensity.monitoring.reference import build_reference, one_per_session


def split_of(dataset: pd.DataFrame, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    part = dataset[dataset["split"] == name]
    return part[list(MODEL_FEATURE_NAMES)], part["label"].to_numpy()


@dataclass
class Evaluation:
    metrics: dict  # per model (baseline, lightgbm, calibrated, and the champion when there is one)
    gates: list[GateResult]
    predictions: dict[str, np.ndarray]  # test-split probabilities per model
    training: dict  # the artifact's training.json
    reference: dict  # the drift monitors' reference profile
    importance: dict[str, float]

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)


def evaluate_candidate(
    dataset: pd.DataFrame,
    booster: lgb.Booster,
    calibrator: dict,
    baseline: dict,
    selection: dict,
    lightgbm_params: dict,
    *,
    max_ece: float,
    champion_tolerance: float,
    champion: ModelArtifact | None = None,
    truth: pd.Series | None = None,
) -> Evaluation:
    """Judge the candidate on the test split; `truth` (the simulator's exact propensity per test row) adds the
    calibration error against the truth to the metrics."""
    X_test, y_test = split_of(dataset, "test")
    raw = booster.predict(X_test, raw_score=True)
    predictions = {
        "baseline": predict_logistic_baseline(baseline, X_test),
        "lightgbm": expit(raw),
        "calibrated": apply_calibrator(calibrator, raw),
    }
    metrics = {name: evaluate(y_test, p) for name, p in predictions.items()}
    if truth is not None:
        for name, p in predictions.items():
            metrics[name]["ece_vs_truth"] = calibration_error_vs_truth(truth.to_numpy(), p)
    champion_metrics = None
    if champion is not None and champion.feature_names == list(MODEL_FEATURE_NAMES):
        champion_metrics = evaluate(y_test, champion.predict(X_test))  # the champion on the challenger's test set
        metrics["champion"] = champion_metrics | {"version": champion.version}
    # Skill over the base rate (the training split's rate) and calibration that helps, resampled by session.
    test_sessions = dataset.loc[dataset["split"] == "test", "session_id"].to_numpy()
    train_rate = float(dataset.loc[dataset["split"] == "train", "label"].mean())
    versus = not_worse_than_baseline(y_test, predictions["calibrated"], predictions["baseline"], groups=test_sessions)
    skill = skill_over_base_rate(y_test, predictions["calibrated"], train_rate, groups=test_sessions)
    helps = calibration_helps(raw, y_test, calibrator, selection=selection, groups=test_sessions)
    ece = ece_within_bound(y_test, predictions["calibrated"], max_ece, groups=test_sessions)
    metrics["calibrated"][GATE_EVIDENCE] = {
        BASELINE_GATE: versus.evidence,
        ECE_GATE: ece.evidence,
        SKILL_GATE: skill.evidence,
        CALIBRATION_GATE: helps.evidence,
    }
    gates = quality_gates(metrics, champion_metrics, max_ece, champion_tolerance)

    importance = dict(zip(booster.feature_name(), (float(v) for v in booster.feature_importance("gain"))))
    training = {
        "fingerprint": fingerprint_frame(dataset),
        "rows": {s: int((dataset["split"] == s).sum()) for s in SPLITS},
        "positive_rate": {s: float(dataset.loc[dataset["split"] == s, "label"].mean()) for s in SPLITS},
        "lightgbm_params": lightgbm_params,
        "trees": booster.current_iteration(),  # the saved model keeps the early-stopping best iteration only
        "gates": [g.__dict__ for g in gates],
    }
    # The drift reference: the inputs the model learnt from (one decision point per session, as the drift monitor
    # samples live traffic: a session's points are not independent, the monitor's null assumes rows that are), and
    # the calibrated scores on validation.
    seen = one_per_session(dataset[dataset["split"].isin(["train", "valid"])], seed=SEED % 2**31)
    X_valid, y_valid = split_of(dataset, "valid")
    reference = build_reference(
        seen[list(MODEL_FEATURE_NAMES)],
        apply_calibrator(calibrator, booster.predict(X_valid, raw_score=True)),
        y_valid,
        importance,
        seed=SEED % 2**31,
    )
    return Evaluation(metrics, gates, predictions, training, reference, importance)


def write_candidate(directory, evaluation: Evaluation, booster: lgb.Booster, calibrator: dict, baseline: dict):
    """The candidate artifact (policy: none yet; the offer policy seals its own into it)."""
    return write_artifact(
        directory,
        booster=booster,
        calibrator=calibrator,
        baseline=baseline,
        features={"feature_service": FEATURE_SERVICE_NAME, "features": list(MODEL_FEATURE_NAMES)},
        training=evaluation.training,
        metrics=evaluation.metrics | {"feature_importance_gain": evaluation.importance},
        reference=evaluation.reference,
    )

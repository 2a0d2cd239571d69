"""Models: point-in-time training set, baseline and LightGBM, calibration, evaluation with blocking quality gates,
and the model registry (the offer policy sealed into each candidate is `propensity_assets.offers`)."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from propensity.features.definitions import FEATURE_SERVICE_NAME, SESSION_FEATURE_NAMES
from propensity.models.artifact import (
    ModelRegistry,
    fingerprint_frame,
    load_artifact,
)
from propensity.models.calibration_fit import choose_calibrator
from propensity.models.contract import CHAMPION_TOLERANCE, MAX_ECE, MIN_POSITIVE_SESSIONS, SPLITS
from propensity.models.dataset import (
    ENTITY_COLUMNS,
    TRAINING_DATASET,
    complete_sessions,
    decision_points,
    outcome_shortfall,
    purchasing_sessions,
    sessions_in_several_splits,
    warm_up_days,
)
from propensity.models.evaluation import evaluate_candidate, split_of, write_candidate
from propensity.models.gates import (
    BASELINE_GATE,
    CALIBRATION_GATE,
    SKILL_GATE,
    quality_gates,
)
from propensity.models.plots import gain_chart, reliability_diagram
from propensity.models.training import (
    SEED,
    LightGBMSettings,
    fit_logistic_baseline,
    train_lightgbm,
)
from propensity.paths import home
from propensity_assets.feature_store import offline_store
from propensity_assets.ingestion import SIMULATOR_TRUTH
from propensity_assets.metadata import png_markdown
from resources.feast import FeastResource
from resources.lake import LakeResource

MODEL_NAMES = ("baseline", "lightgbm", "calibrated")


def work_dir() -> Path:
    """Where the model assets hand files to each other before the registry takes a versioned copy."""
    path = home() / "models" / "work"
    path.mkdir(parents=True, exist_ok=True)
    return path


def candidate_dir() -> Path:
    """The candidate artifact of the run: written by model_evaluation, its policy sealed by offer_policy."""
    return work_dir() / "candidate"


def load_training_dataset(lake: LakeResource) -> pd.DataFrame:
    return lake.read_frame(TRAINING_DATASET)


class TrainingSetConfig(dg.Config):
    valid_fraction: float = 0.2  # share of sessions (by start time) for early stopping and calibration
    test_fraction: float = 0.2  # the latest sessions, never seen in training
    # Days at the start of the history left out, their user windows cut by the data's first day (None: automatic,
    # the longest user window when the history holds twice that; see propensity.models.dataset.warm_up_days).
    warm_up_days: int | None = None
    # A time (ISO 8601) from which validation and test are drawn, half each: set by the retrain sensor to the start
    # of the window whose monitor check failed, so the retrained model is calibrated and judged on the new traffic.
    evaluate_from: str | None = None
    # Fewer purchasing sessions in the validation or test split: too little to calibrate or to judge, and the run
    # stops (after a detected change this waits for more labelled traffic; the sensor retries after its cool-down).
    min_positive_sessions: int = MIN_POSITIVE_SESSIONS


@dg.asset(
    deps=["session_prefix_features", "sessions", "feast_registry"],
    group_name="models",
    kinds={"feast", "pandas"},
    check_specs=[
        dg.AssetCheckSpec("one_row_per_decision_point", asset=TRAINING_DATASET),
        dg.AssetCheckSpec("no_session_in_two_splits", asset=TRAINING_DATASET),
        dg.AssetCheckSpec("session_features_as_of_decision", asset=TRAINING_DATASET),
        dg.AssetCheckSpec("enough_outcomes_per_split", asset=TRAINING_DATASET, blocking=True),
    ],
    description="Decision points before the first purchase, labelled, joined point-in-time through Feast "
    f"({FEATURE_SERVICE_NAME}), split by session start time.",
)
def training_dataset(config: TrainingSetConfig, feast: FeastResource, lake: LakeResource):
    prefix = lake.read_frame("session_prefix_features")
    sessions = lake.read_frame("sessions")
    lake.pull("user_daily_aggregates")  # Feast's offline store reads it from the working copy
    evaluate_from = pd.to_datetime(config.evaluate_from, utc=True) if config.evaluate_from else None
    points, boundaries = decision_points(
        prefix,
        sessions,
        config.valid_fraction,
        config.test_fraction,
        warm_up=config.warm_up_days,
        evaluate_from=evaluate_from,
    )
    store = offline_store(feast)
    joined = store.get_historical_features(
        entity_df=points[list(ENTITY_COLUMNS)], features=store.get_feature_service(FEATURE_SERVICE_NAME)
    ).to_df()
    joined["event_timestamp"] = pd.to_datetime(joined["event_timestamp"], utc=True)
    dataset = points.merge(
        joined.drop(columns=["session_id", "user_id", "event_timestamp"]), on="decision_id", how="left"
    )
    dataset = dataset.sort_values(["event_timestamp", "decision_id"]).reset_index(drop=True)
    with lake.replace(TRAINING_DATASET) as staging:
        dataset.to_parquet(staging / "data.parquet", index=False)

    splits = {}
    for split in SPLITS:
        part = dataset[dataset["split"] == split]
        splits[split] = {
            "rows": len(part),
            "sessions": int(part["session_id"].nunique()),
            "positive_rate": round(float(part["label"].mean()), 5) if len(part) else None,
            "from": str(part["event_timestamp"].min()),
            "to": str(part["event_timestamp"].max()),
        }
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(dataset),
            "splits": dg.MetadataValue.json(splits),
            "boundaries": dg.MetadataValue.json(boundaries.as_dict()),
            "fingerprint": fingerprint_frame(dataset),
            "feature_service": FEATURE_SERVICE_NAME,
            "sessions_cut_by_data_edges": int((~complete_sessions(sessions)).sum()),
            "warm_up_days": warm_up_days(sessions, config.warm_up_days),
            "evaluate_from": config.evaluate_from or "none (fractions of the history)",
        }
    )
    positive_sessions = purchasing_sessions(dataset)
    shortfall = outcome_shortfall(positive_sessions, config.min_positive_sessions)
    yield dg.AssetCheckResult(
        check_name="enough_outcomes_per_split",
        passed=shortfall is None,
        metadata={**positive_sessions, "min_positive_sessions": config.min_positive_sessions},
        description=shortfall or f"purchasing sessions: {positive_sessions}",
    )
    yield dg.AssetCheckResult(
        check_name="one_row_per_decision_point",
        passed=len(joined) == len(points) and joined["decision_id"].is_unique,
        metadata={"entity_rows": len(points), "joined_rows": len(joined)},
    )
    in_several = sessions_in_several_splits(dataset)
    yield dg.AssetCheckResult(
        check_name="no_session_in_two_splits",
        passed=in_several == 0,
        metadata={"sessions_in_several_splits": in_several},
    )
    # Every decision point is a row of session_prefix_features: the joined values must be exactly that row's.
    expected = prefix.set_index(["session_id", "event_timestamp"])[list(SESSION_FEATURE_NAMES)]
    got = dataset.set_index(["session_id", "event_timestamp"])[list(SESSION_FEATURE_NAMES)]
    differs = (expected.reindex(got.index).to_numpy(dtype=float) != got.to_numpy(dtype=float)).any(axis=1)
    yield dg.AssetCheckResult(
        check_name="session_features_as_of_decision",
        passed=not differs.any(),
        metadata={"decision_points_with_other_values": int(differs.sum())},
    )


@dg.asset(
    deps=[TRAINING_DATASET],
    group_name="models",
    kinds={"scikitlearn"},
    description="Logistic regression with imputation and standardisation: the reference, stored as numbers.",
)
def baseline_model(lake: LakeResource) -> dg.MaterializeResult:
    dataset = load_training_dataset(lake)
    X, y = split_of(dataset, "train")
    model = fit_logistic_baseline(X, y)
    (work_dir() / "baseline.json").write_text(json.dumps(model, indent=2))
    weights = sorted(zip(model["design_columns"], model["coef"]), key=lambda kv: -abs(kv[1]))[:10]
    return dg.MaterializeResult(
        metadata={"train_rows": len(X), "largest_weights": dg.MetadataValue.json({k: round(v, 4) for k, v in weights})}
    )


class LightGBMConfig(dg.Config):
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 100
    max_rounds: int = 2000
    early_stopping_rounds: int = 100

    def settings(self) -> LightGBMSettings:
        return LightGBMSettings(
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_data_in_leaf=self.min_data_in_leaf,
            max_rounds=self.max_rounds,
            early_stopping_rounds=self.early_stopping_rounds,
        )


@dg.asset(
    deps=[TRAINING_DATASET],
    group_name="models",
    kinds={"lightgbm"},
    description="LightGBM with early stopping on the validation split; no reweighting (see training.py).",
)
def propensity_model(config: LightGBMConfig, lake: LakeResource) -> dg.MaterializeResult:
    dataset = load_training_dataset(lake)
    X_train, y_train = split_of(dataset, "train")
    X_valid, y_valid = split_of(dataset, "valid")
    settings = config.settings()
    booster = train_lightgbm(X_train, y_train, X_valid, y_valid, settings)
    (work_dir() / "model.txt").write_text(booster.model_to_string())
    (work_dir() / "lightgbm_params.json").write_text(json.dumps(settings.params(), indent=2))
    importance = dict(zip(booster.feature_name(), booster.feature_importance("gain")))
    top = dict(sorted(importance.items(), key=lambda kv: -kv[1])[:15])
    return dg.MaterializeResult(
        metadata={
            "best_iteration": booster.best_iteration,
            "valid_log_loss": float(booster.best_score["valid"]["binary_logloss"]),
            "feature_importance_gain": dg.MetadataValue.json({k: round(float(v), 1) for k, v in top.items()}),
            "seed": SEED,
        }
    )


def _load_booster():
    import lightgbm as lgb

    return lgb.Booster(model_str=(work_dir() / "model.txt").read_text())


@dg.asset(
    deps=["propensity_model"],
    group_name="models",
    kinds={"lightgbm"},
    description="Identity, temperature, sigmoid and isotonic maps compared by cross-validated log-loss on "
    "validation; the simplest within one standard error of the best kept as plain numbers.",
)
def calibrated_model(lake: LakeResource) -> dg.MaterializeResult:
    dataset = load_training_dataset(lake)
    X_valid, y_valid = split_of(dataset, "valid")
    booster = _load_booster()
    # Folds by session: a session's decision points share its label, so row folds leak it into the held-out fold.
    sessions = dataset.loc[dataset["split"] == "valid", "session_id"].to_numpy()
    calibrator, evidence = choose_calibrator(
        booster.predict(X_valid, raw_score=True), y_valid, seed=SEED % 2**31, groups=sessions
    )
    (work_dir() / "calibrator.json").write_text(json.dumps(calibrator, indent=2))
    (work_dir() / "calibration_selection.json").write_text(json.dumps(evidence, indent=2))
    return dg.MaterializeResult(
        metadata={
            "chosen": calibrator["method"],
            "best_by_cv_log_loss": evidence["best"],
            "cv_log_loss": dg.MetadataValue.json({k: round(v, 6) for k, v in evidence["cv_log_loss"].items()}),
            "paired_se_vs_best": dg.MetadataValue.json(
                {k: round(v, 6) for k, v in evidence["paired_se_vs_best"].items()}
            ),
            "rule": evidence["rule"],
            "folds_by": evidence["folds_by"],
        }
    )


class QualityGateConfig(dg.Config):
    max_ece: float = MAX_ECE  # expected calibration error bound on the test split
    champion_tolerance: float = CHAMPION_TOLERANCE  # how much worse than the champion (log-loss) still passes


def _truth_for(dataset: pd.DataFrame, lake: LakeResource) -> pd.Series | None:
    truth_dir = lake.pull(SIMULATOR_TRUTH)
    if not truth_dir.exists():
        return None
    truth = pd.read_parquet(truth_dir).drop_duplicates("event_id").set_index("event_id")["true_propensity"]
    matched = dataset["decision_event_id"].map(truth)
    return matched if matched.notna().all() else None


@dg.asset(
    deps=["baseline_model", "calibrated_model"],
    group_name="models",
    kinds={"lightgbm", "scikitlearn"},
    check_specs=[
        dg.AssetCheckSpec(BASELINE_GATE, asset="model_evaluation", blocking=True),
        dg.AssetCheckSpec("ece_within_bound", asset="model_evaluation", blocking=True),
        dg.AssetCheckSpec("not_worse_than_champion", asset="model_evaluation", blocking=True),
        dg.AssetCheckSpec(SKILL_GATE, asset="model_evaluation", blocking=True),
        dg.AssetCheckSpec(CALIBRATION_GATE, asset="model_evaluation", blocking=True),
    ],
    description="Test-split metrics for baseline, raw and calibrated LightGBM side by side, plots, and the quality "
    "gates that decide whether the candidate may become champion.",
)
def model_evaluation(config: QualityGateConfig, lake: LakeResource):
    dataset = load_training_dataset(lake)
    _, y_test = split_of(dataset, "test")
    booster = _load_booster()
    calibrator = json.loads((work_dir() / "calibrator.json").read_text())
    baseline = json.loads((work_dir() / "baseline.json").read_text())
    evaluation = evaluate_candidate(
        dataset,
        booster,
        calibrator,
        baseline,
        selection=json.loads((work_dir() / "calibration_selection.json").read_text()),
        lightgbm_params=json.loads((work_dir() / "lightgbm_params.json").read_text()),
        max_ece=config.max_ece,
        champion_tolerance=config.champion_tolerance,
        champion=ModelRegistry().champion(),
        truth=_truth_for(dataset[dataset["split"] == "test"], lake),
    )
    write_candidate(candidate_dir(), evaluation, booster, calibrator, baseline)
    metrics, predictions, importance = evaluation.metrics, evaluation.predictions, evaluation.importance
    test_rows = dataset[dataset["split"] == "test"][["decision_id", "session_id", "label"]].assign(
        **{f"p_{name}": p for name, p in predictions.items()}
    )
    test_rows.to_parquet(work_dir() / "test_predictions.parquet", index=False)

    table = {name: {k: round(v, 5) for k, v in m.items() if isinstance(v, float)} for name, m in metrics.items()}
    yield dg.MaterializeResult(
        metadata={
            "metrics": dg.MetadataValue.json(table),
            "calibrated_log_loss": metrics["calibrated"]["log_loss"],
            "calibrated_roc_auc": metrics["calibrated"]["roc_auc"],
            "calibrated_ece": metrics["calibrated"]["ece"],
            "reliability_diagram": png_markdown(reliability_diagram(y_test, predictions), "reliability"),
            "gain_chart": png_markdown(gain_chart(y_test, predictions), "gain"),
            "feature_importance_gain": dg.MetadataValue.json(
                {k: round(v, 1) for k, v in sorted(importance.items(), key=lambda kv: -kv[1])[:15]}
            ),
        }
    )
    for gate in evaluation.gates:
        yield dg.AssetCheckResult(
            asset_key="model_evaluation",
            check_name=gate.name,
            passed=gate.passed,
            description=gate.detail,
            severity=dg.AssetCheckSeverity.ERROR,
        )


@dg.asset(
    deps=["model_evaluation", "offer_policy"],
    group_name="models",
    kinds={"lightgbm"},
    automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    description="The candidate, with its offer policy, as a new registry version; promoted to champion only when "
    "every quality gate passes.",
)
def registered_model(config: QualityGateConfig) -> dg.MaterializeResult:
    candidate = load_artifact(candidate_dir())
    registry = ModelRegistry()
    champion = registry.champion()
    champion_metrics = candidate.metrics.get("champion") if champion is not None else None
    gates = quality_gates(candidate.metrics, champion_metrics, config.max_ece, config.champion_tolerance)
    failed = [g for g in gates if not g.passed]
    reason = "all quality gates passed" if not failed else "; ".join(f"{g.name}: {g.detail}" for g in failed)
    version = registry.register(candidate.directory, promote=not failed, reason=reason)
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "promoted": not failed,
            "reason": reason,
            "champion": registry.champion_version() or "none",
            "versions": dg.MetadataValue.json(registry.versions()[-10:]),
        }
    )

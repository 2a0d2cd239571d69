"""The SageMaker pipeline's jobs, run in the training container: `python -m propensity.models.pipeline_jobs <job>`.

The same code as the Dagster model assets, step for step:
- `prepare` (Processing): the `training_dataset` table (parquet, with its `split` column) checked as the asset's
  checks do (one row per decision point, no session in two splits, enough purchasing sessions to calibrate and
  judge), then cut into train, valid and test.
- `train` (Training: SageMaker starts the image with the argument `train`): the logistic baseline, LightGBM with
  early stopping on valid, the calibrator chosen on valid by session-folded cross-validation; into /opt/ml/model.
- `evaluate` (Processing): `evaluate_candidate` on the test split. Writes `evaluation.json`, which the pipeline's
  condition reads (`gates.passed`), and the candidate artifact packed as `model.tar.gz` (manifest verified) for the
  Model Registry: the serving container loads exactly that.

Paths default to SageMaker's container layout; every one can be moved by an argument (local runs and the tests).
A job that cannot run says why on stderr and in SageMaker's failure file, and exits 1: the pipeline stops there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from pathlib import Path

import lightgbm as lgb
import pandas as pd

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.artifact import package_artifact
from propensity.models.calibration_fit import choose_calibrator
from propensity.models.contract import (
    CHAMPION_TOLERANCE,
    EVALUATION_FILE,
    MAX_ECE,
    MIN_POSITIVE_SESSIONS,
    PACKAGE_FILE,
    PROCESSING_DIR,
    SPLITS,
)
from propensity.models.dataset import outcome_shortfall, purchasing_sessions, sessions_in_several_splits
from propensity.models.evaluation import evaluate_candidate, split_of, write_candidate
from propensity.models.training import SEED, LightGBMSettings, fit_logistic_baseline, train_lightgbm

PROCESSING = Path(PROCESSING_DIR)
TRAINING_INPUT = Path("/opt/ml/input")
MODEL_DIR = Path("/opt/ml/model")
FAILURE_FILE = Path("/opt/ml/output/failure")
REQUIRED_COLUMNS = ("decision_id", "session_id", "split", "label", *MODEL_FEATURE_NAMES)
MODEL_FILES = ("model.txt", "baseline.json", "calibrator.json", "calibration_selection.json", "lightgbm_params.json")


class JobError(RuntimeError):
    """The job cannot produce a trustworthy result from its input; the message says why."""


def read_parquet_dir(directory: Path) -> pd.DataFrame:
    files = sorted(Path(directory).rglob("*.parquet"))
    if not files:
        raise JobError(f"no parquet files under {directory}")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def prepare(dataset: pd.DataFrame, output: Path, min_positive_sessions: int = MIN_POSITIVE_SESSIONS) -> dict:
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.columns]
    if missing:
        raise JobError(f"the training dataset lacks column(s) {missing}")
    if not dataset["decision_id"].is_unique:
        raise JobError(f"{int(dataset['decision_id'].duplicated().sum())} decision points appear twice")
    in_several = sessions_in_several_splits(dataset)
    if in_several:
        raise JobError(f"{in_several} sessions are in two splits: the test split would leak into training")
    unknown = sorted(set(dataset["split"]) - set(SPLITS))
    if unknown:
        raise JobError(f"unknown split value(s) {unknown}: one of {SPLITS}")
    shortfall = outcome_shortfall(purchasing_sessions(dataset), min_positive_sessions)
    if shortfall:
        raise JobError(shortfall)
    summary = {}
    for name in SPLITS:
        part = dataset[dataset["split"] == name]
        (output / name).mkdir(parents=True, exist_ok=True)
        part.to_parquet(output / name / "data.parquet", index=False)
        summary[name] = {"rows": len(part), "sessions": int(part["session_id"].nunique())}
    return summary


def hyperparameters(path: Path) -> LightGBMSettings:
    """SageMaker hands hyperparameters over as strings in hyperparameters.json."""
    given = json.loads(path.read_text()) if path.exists() else {}
    defaults = LightGBMSettings()
    kinds = {name: type(getattr(defaults, name)) for name in defaults.__dataclass_fields__}
    unknown = sorted(set(given) - set(kinds))
    if unknown:
        raise JobError(f"unknown hyperparameter(s) {unknown}: one of {sorted(kinds)}")
    return LightGBMSettings(**{name: kinds[name](value) for name, value in given.items()})


def train(train_rows: pd.DataFrame, valid_rows: pd.DataFrame, settings: LightGBMSettings, model_dir: Path) -> dict:
    dataset = pd.concat([train_rows, valid_rows], ignore_index=True)
    X_train, y_train = split_of(dataset, "train")
    X_valid, y_valid = split_of(dataset, "valid")
    baseline = fit_logistic_baseline(X_train, y_train)
    booster = train_lightgbm(X_train, y_train, X_valid, y_valid, settings)
    sessions = dataset.loc[dataset["split"] == "valid", "session_id"].to_numpy()
    calibrator, selection = choose_calibrator(
        booster.predict(X_valid, raw_score=True), y_valid, seed=SEED % 2**31, groups=sessions
    )
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.txt").write_text(booster.model_to_string())
    for name, payload in zip(MODEL_FILES[1:], (baseline, calibrator, selection, settings.params())):
        (model_dir / name).write_text(json.dumps(payload, indent=2))
    return {"best_iteration": booster.best_iteration, "calibrator": calibrator["method"]}


def evaluate(
    dataset: pd.DataFrame, model_dir: Path, output: Path, *, max_ece: float, champion_tolerance: float
) -> dict:
    missing = [name for name in MODEL_FILES if not (model_dir / name).exists()]
    if missing:
        raise JobError(f"the trained model in {model_dir} lacks {missing}")
    booster = lgb.Booster(model_str=(model_dir / "model.txt").read_text())
    baseline, calibrator, selection, params = (json.loads((model_dir / name).read_text()) for name in MODEL_FILES[1:])
    evaluation = evaluate_candidate(
        dataset,
        booster,
        calibrator,
        baseline,
        selection,
        params,
        max_ece=max_ece,
        champion_tolerance=champion_tolerance,
    )
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        candidate = write_candidate(Path(scratch) / "candidate", evaluation, booster, calibrator, baseline)
        package_artifact(candidate, output / PACKAGE_FILE)
    report = {
        "gates": {
            "passed": int(evaluation.passed),
            "results": [{"name": g.name, "passed": bool(g.passed), "detail": g.detail} for g in evaluation.gates],
        },
        "metrics": {
            name: {k: v for k, v in values.items() if isinstance(v, float)}
            for name, values in evaluation.metrics.items()
        },
    }
    (output / EVALUATION_FILE).write_text(json.dumps(report, indent=2))
    return report


def _model_dir_from(path: Path) -> Path:
    """Training writes /opt/ml/model; SageMaker hands it to the next step as model.tar.gz: unpack it."""
    tarballs = sorted(path.glob("*.tar.gz"))
    if not tarballs:
        return path
    unpacked = Path(tempfile.mkdtemp(prefix="propensity-model-"))
    with tarfile.open(tarballs[0]) as archive:
        archive.extractall(unpacked, filter="data")
    return unpacked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m propensity.models.pipeline_jobs", description=__doc__.split("\n")[0]
    )
    jobs = parser.add_subparsers(dest="job", required=True)
    p = jobs.add_parser("prepare")
    p.add_argument("--input", type=Path, default=PROCESSING / "input" / "dataset")
    p.add_argument("--output", type=Path, default=PROCESSING / "output")
    p.add_argument("--min-positive-sessions", type=int, default=MIN_POSITIVE_SESSIONS)
    t = jobs.add_parser("train")
    t.add_argument("--input", type=Path, default=TRAINING_INPUT)
    t.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    e = jobs.add_parser("evaluate")
    e.add_argument("--model", type=Path, default=PROCESSING / "model")
    e.add_argument("--splits", type=Path, default=PROCESSING / "splits")
    e.add_argument("--output", type=Path, default=PROCESSING / "evaluation")
    e.add_argument("--max-ece", type=float, default=MAX_ECE)
    e.add_argument("--champion-tolerance", type=float, default=CHAMPION_TOLERANCE)
    args = parser.parse_args(argv)
    try:
        if args.job == "prepare":
            result = prepare(read_parquet_dir(args.input), args.output, args.min_positive_sessions)
        elif args.job == "train":
            data = args.input / "data"
            result = train(
                read_parquet_dir(data / "train"),
                read_parquet_dir(data / "valid"),
                hyperparameters(args.input / "config" / "hyperparameters.json"),
                args.model_dir,
            )
        else:
            dataset = pd.concat([read_parquet_dir(args.splits / name) for name in SPLITS], ignore_index=True)
            result = evaluate(
                dataset,
                _model_dir_from(args.model),
                args.output,
                max_ece=args.max_ece,
                champion_tolerance=args.champion_tolerance,
            )["gates"]
    except JobError as error:
        message = f"{args.job}: {error}"
        print(message, file=sys.stderr)
        if FAILURE_FILE.parent.is_dir():  # SageMaker shows this file's text as the job's failure reason
            FAILURE_FILE.write_text(message)
        return 1
    print(json.dumps({args.job: result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The SageMaker pipeline's jobs in SageMaker's directory layout: prepare, train and evaluate chained as the pipeline
chains them (SageMaker's model.tar.gz between training and evaluation), and the same results as the code the Dagster
assets run."""

import json
import tarfile

import numpy as np
import pandas as pd
import pytest

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.artifact import load_artifact
from propensity.models.evaluation import evaluate_candidate
from propensity.models.pipeline_jobs import EVALUATION_FILE, PACKAGE_FILE, main

HYPERPARAMETERS = {"max_rounds": "60", "learning_rate": "0.1", "early_stopping_rounds": "20"}  # strings, as SageMaker


def training_dataset(sessions: int = 1500, seed: int = 0) -> pd.DataFrame:
    """The training_dataset table's shape: decision points of sessions, labelled, split by session."""
    rng = np.random.default_rng(seed)
    per_session = rng.integers(1, 5, sessions)
    session = np.repeat(np.arange(sessions), per_session)
    frame = pd.DataFrame({name: rng.normal(size=len(session)) for name in MODEL_FEATURE_NAMES})
    intent = rng.normal(size=sessions)
    frame[MODEL_FEATURE_NAMES[0]] += intent[session]
    bought = rng.random(sessions) < 1 / (1 + np.exp(-(intent * 1.5 - 2.0)))
    frame["label"] = bought[session].astype("int64")
    frame["session_id"] = [f"s{i:05d}" for i in session]
    frame["user_id"] = [f"u{i // 3:05d}" for i in session]
    frame["decision_id"] = [f"s{i:05d}@{k}" for i, k in zip(session, frame.groupby(session).cumcount())]
    frame["split"] = np.select([session < 0.6 * sessions, session < 0.8 * sessions], ["train", "valid"], "test")
    return frame


def _run(*args) -> int:
    return main([str(a) for a in args])


def test_prepare_train_evaluate_as_the_pipeline_chains_them(tmp_path):
    dataset = training_dataset()
    (tmp_path / "dataset").mkdir()
    dataset.to_parquet(tmp_path / "dataset" / "part-0.parquet", index=False)

    assert _run("prepare", "--input", tmp_path / "dataset", "--output", tmp_path / "splits") == 0
    training_input = tmp_path / "input"
    for channel in ("train", "valid"):  # SageMaker mounts each channel under /opt/ml/input/data/<channel>
        (training_input / "data" / channel).mkdir(parents=True)
        (tmp_path / "splits" / channel / "data.parquet").rename(training_input / "data" / channel / "data.parquet")
        (tmp_path / "splits" / channel).rmdir()
    (training_input / "config").mkdir()
    (training_input / "config" / "hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS))
    assert _run("train", "--input", training_input, "--model-dir", tmp_path / "model") == 0

    # SageMaker packs /opt/ml/model into model.tar.gz and hands that to the evaluation step.
    (tmp_path / "model-input").mkdir()
    with tarfile.open(tmp_path / "model-input" / "model.tar.gz", "w:gz") as archive:
        for path in (tmp_path / "model").iterdir():
            archive.add(path, arcname=path.name)
    for channel in ("train", "valid"):
        (tmp_path / "splits" / channel).mkdir()
        (training_input / "data" / channel / "data.parquet").rename(tmp_path / "splits" / channel / "data.parquet")
    code = _run(
        "evaluate", "--model", tmp_path / "model-input", "--splits", tmp_path / "splits", "--output", tmp_path / "eval"
    )
    assert code == 0

    report = json.loads((tmp_path / "eval" / EVALUATION_FILE).read_text())
    assert report["gates"]["passed"] in (0, 1)
    assert report["metrics"]["calibrated"]["roc_auc"] > 0.7  # the planted signal is found

    # The packed candidate is an artifact the serving container loads, and it is what the Dagster path computes.
    with tarfile.open(tmp_path / "eval" / PACKAGE_FILE) as archive:
        archive.extractall(tmp_path / "artifact", filter="data")
    artifact = load_artifact(tmp_path / "artifact")  # manifest verified
    params = json.loads((tmp_path / "model" / "lightgbm_params.json").read_text())
    assert params["learning_rate"] == 0.1 and artifact.training["lightgbm_params"] == params
    same = evaluate_candidate(
        dataset,
        artifact.booster,
        artifact.calibrator,
        artifact.baseline,
        json.loads((tmp_path / "model" / "calibration_selection.json").read_text()),
        params,
        max_ece=0.02,
        champion_tolerance=0.002,
    )
    assert [(g["name"], g["passed"]) for g in report["gates"]["results"]] == [(g.name, g.passed) for g in same.gates]
    assert report["metrics"]["calibrated"]["log_loss"] == pytest.approx(same.metrics["calibrated"]["log_loss"])
    test = dataset[dataset["split"] == "test"]
    np.testing.assert_allclose(artifact.predict(test), same.predictions["calibrated"], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda d: d.assign(split=np.where(d.index % 2 == 0, "train", d["split"])), "sessions are in two splits"),
        (lambda d: d.assign(label=0), "too few purchasing sessions"),
        (lambda d: d.drop(columns=["decision_id"]), "lacks column(s) ['decision_id']"),
        (lambda d: pd.concat([d, d.head(3)]), "3 decision points appear twice"),
    ],
)
def test_prepare_refuses_what_the_training_set_checks_refuse(tmp_path, capsys, spoil, message):
    (tmp_path / "dataset").mkdir()
    spoil(training_dataset(400)).to_parquet(tmp_path / "dataset" / "part-0.parquet", index=False)
    assert _run("prepare", "--input", tmp_path / "dataset", "--output", tmp_path / "splits") == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "splits").exists()


def test_train_refuses_an_unknown_hyperparameter(tmp_path, capsys):
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"n_estimators": "400"}))
    for channel in ("train", "valid"):
        (tmp_path / "input" / "data" / channel).mkdir(parents=True)
        training_dataset(200).to_parquet(tmp_path / "input" / "data" / channel / "data.parquet", index=False)
    assert _run("train", "--input", tmp_path / "input", "--model-dir", tmp_path / "model") == 1
    assert "unknown hyperparameter(s) ['n_estimators']" in capsys.readouterr().err

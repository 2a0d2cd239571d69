"""The training container's environment (requirements-training.lock) with only the code Dockerfile.training copies
(propensity/): the SageMaker pipeline's three jobs run there as SageMaker runs them, and nothing of the platform
(Dagster, Spark, Feast, boto3) is installed or needed."""

import json
import shutil
import subprocess
import tarfile

import pytest

from propensity.models.pipeline_jobs import EVALUATION_FILE, PACKAGE_FILE
from propensity.settings import PROJECT_ROOT
from tests.unit.test_pipeline_jobs import HYPERPARAMETERS, training_dataset

TRAINING_PYTHON = PROJECT_ROOT / ".venv-training" / "bin" / "python"
ABSENT = ("dagster", "pyspark", "feast", "boto3", "redis", "pytest")


def _job(code_root, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TRAINING_PYTHON), "-m", "propensity.models.pipeline_jobs", *map(str, args)],
        cwd=code_root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(code_root), "OMP_WAIT_POLICY": "PASSIVE"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_pipeline_jobs_run_in_the_training_image_environment(tmp_path):
    if not TRAINING_PYTHON.exists():
        pytest.fail("no .venv-training: run `make training-env` (make test does)")
    code_root = tmp_path / "opt-program"  # COPY propensity ./propensity
    shutil.copytree(PROJECT_ROOT / "propensity", code_root / "propensity", ignore=shutil.ignore_patterns("__pycache__"))
    installed = subprocess.run(
        [
            str(TRAINING_PYTHON),
            "-c",
            "import importlib.util, json, sys; "
            f"print(json.dumps({{n: importlib.util.find_spec(n) is not None for n in {list(ABSENT)!r}}}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(installed.stdout) == {name: False for name in ABSENT}

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    training_dataset().to_parquet(dataset / "part-0.parquet", index=False)
    splits, training_input = tmp_path / "splits", tmp_path / "input"
    assert _job(code_root, "prepare", "--input", dataset, "--output", splits).returncode == 0
    (training_input / "config").mkdir(parents=True)
    (training_input / "config" / "hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS))
    for channel in ("train", "valid"):
        shutil.copytree(splits / channel, training_input / "data" / channel)
    trained = _job(code_root, "train", "--input", training_input, "--model-dir", tmp_path / "model")
    assert trained.returncode == 0, trained.stderr[-2000:]
    (tmp_path / "model-input").mkdir()
    with tarfile.open(tmp_path / "model-input" / "model.tar.gz", "w:gz") as archive:
        for path in (tmp_path / "model").iterdir():
            archive.add(path, arcname=path.name)
    evaluated = _job(
        code_root, "evaluate", "--model", tmp_path / "model-input", "--splits", splits, "--output", tmp_path / "eval"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    report = json.loads((tmp_path / "eval" / EVALUATION_FILE).read_text())
    assert report["gates"]["passed"] in (0, 1) and {g["name"] for g in report["gates"]["results"]} >= {
        "not_worse_than_baseline",
        "ece_within_bound",
    }
    assert (tmp_path / "eval" / PACKAGE_FILE).stat().st_size > 1000

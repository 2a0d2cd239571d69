"""The scoring container's process: `serve` runs and scores without loading Dagster, Spark or the platform's other
layers, in the platform's environment, and in the container's own: the slim environment of requirements-serving.lock
with only the code the Dockerfile copies."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from propensity.settings import PROJECT_ROOT
from serving.contract import ScoringRequest
from serving.control.container import container_environment, container_tree
from serving.control.endpoint import free_port
from serving.online_features import open_online_feature_reader
from serving.scorer import Scorer
from tests.integration.test_feast import feature_lake  # noqa: F401 - the fixture behind `served`
from tests.integration.test_inference_server import served  # noqa: F401 - a real model on a real store

pytestmark = pytest.mark.spark

SERVING_PYTHON = PROJECT_ROOT / ".venv-serving" / "bin" / "python"
NEVER_LOADED = ("dagster", "dagster_pyspark", "dagster_aws", "pyspark", "resources", "propensity_assets", "sensors")
NOT_IN_THE_CONTAINER = ("dagster", "pyspark", "sklearn", "pandera", "duckdb", "moto", "pytest", "boto3")

# Runs `serve` exactly as the container does (`python -m serving.server` in the main thread); a side thread waits
# for /ping, scores one session through /invocations, and writes what the process had loaded by then.
PROBE = """
import importlib.util, json, os, runpy, sys, threading, time, urllib.request

def probe():
    url = "http://127.0.0.1:" + os.environ["SERVING_PORT"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/ping", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.05)
    body = json.dumps({"session_id": os.environ["PROBE_SESSION"], "user_id": os.environ["PROBE_USER"]}).encode()
    request = urllib.request.Request(url + "/invocations", data=body, headers={"content-type": "application/json"})
    answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
    installed = {name: importlib.util.find_spec(name) is not None for name in os.environ["PROBE_PACKAGES"].split(",")}
    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump({"modules": sorted(sys.modules), "answer": answer, "installed": installed}, out)
    os._exit(0)

threading.Thread(target=probe, daemon=True).start()
runpy.run_module("serving.server", run_name="__main__")
"""


def _probe(python: Path, served, tmp_path, code_root: Path = PROJECT_ROOT) -> dict:  # noqa: F811
    _, artifact, _, sessions, _ = served
    session = sessions.sort_values("event_timestamp").iloc[-1]
    out = tmp_path / "probe.json"
    env = {
        **container_environment(os.environ),
        "PROPENSITY_PROFILE": "local",
        "PROPENSITY_MODEL_DIR": str(artifact.directory),
        "SERVING_PORT": str(free_port()),
        "PROBE_SESSION": session["session_id"],
        "PROBE_USER": session["user_id"],
        "PROBE_PACKAGES": ",".join(NOT_IN_THE_CONTAINER),
        "PROBE_OUT": str(out),
    }
    done = subprocess.run(
        [str(python), "-c", PROBE], env=env, cwd=code_root, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0 and out.exists(), done.stderr[-3000:]
    result = json.loads(out.read_text())
    answer = result["answer"]
    assert answer["fallback"] is False, answer
    in_process = Scorer(artifact, open_online_feature_reader("local"))
    expected = in_process.score([ScoringRequest(session["session_id"], session["user_id"])])[0]["propensity"]
    assert answer["propensity"] == expected  # the same features and the same model, bit for bit
    return result


def _loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in packages)


def test_serve_loads_no_dagster_spark_or_platform_layer(served, tmp_path):  # noqa: F811
    result = _probe(Path(sys.executable), served, tmp_path)
    assert _loaded(result["modules"], NEVER_LOADED) == []
    assert "serving.scorer" in result["modules"] and "serving.control" not in result["modules"]


def test_the_container_environment_has_none_of_the_platform_and_serves(served, tmp_path):  # noqa: F811
    assert SERVING_PYTHON.exists(), f"{SERVING_PYTHON} is missing: run make serving-env (make test does)"
    code = container_tree(tmp_path / "program")
    assert sorted(p.name for p in code.iterdir()) == ["feature_repo", "propensity", "serving"]
    result = _probe(SERVING_PYTHON, served, tmp_path, code_root=code)
    assert [name for name, present in result["installed"].items() if present] == []
    assert _loaded(result["modules"], NOT_IN_THE_CONTAINER + NEVER_LOADED) == []

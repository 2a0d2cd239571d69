"""The aws profile end to end: `scripts/demo.py` runs the whole asset graph (landing, Spark sessions and features,
Feast registry and online store, training set, models, the local endpoint) with its lake of record and Feast's
registry on moto's S3 server (real HTTP) and Redis as the online store. A second process with an empty working copy
then builds the training set again from what the lake holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import redis

from propensity.lake import MANIFEST
from propensity.settings import PROJECT_ROOT
from tests.s3_server import CREDENTIALS, REGION, create_bucket, s3_client, s3_server

pytestmark = pytest.mark.redis

BUCKET = "propensity-lake-e2e"
LAKE_URI = f"s3://{BUCKET}/propensity/lake"
REDIS_URL = "redis://127.0.0.1:6379/12"  # a database of its own: the online rows of this graph only
TIMEOUT_S = 900

TRAINING_SET = """
import dagster as dg
from propensity_assets.definitions import defs

result = dg.materialize(
    list(defs.assets), selection=["training_dataset"], resources=dict(defs.resources),
    instance=dg.DagsterInstance.get(),
)
assert result.success
"""


def _environment(url: str, home) -> dict:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("PROPENSITY_", "AWS_", "DAGSTER_", "SAGEMAKER_"))
    }
    return (
        environ
        | CREDENTIALS
        | {
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": url,  # boto3's own: dagster-aws's client and Feast's registry both follow it
            "PROPENSITY_PROFILE": "aws",
            "PROPENSITY_LAKE_URI": LAKE_URI,
            "PROPENSITY_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "REDIS_URL": REDIS_URL,
            "SPARK_DRIVER_MEMORY": "2g",
            "PYSPARK_PYTHON": sys.executable,
            "OMP_WAIT_POLICY": "PASSIVE",
        }
    )


def _run(args: list[str], environ: dict) -> subprocess.CompletedProcess:
    (PROJECT_ROOT / "var").mkdir(exist_ok=True)
    os.makedirs(environ["DAGSTER_HOME"], exist_ok=True)
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _lake_objects(url: str) -> dict[str, list[str]]:
    prefix = LAKE_URI.removeprefix(f"s3://{BUCKET}/") + "/"
    tables: dict[str, list[str]] = {}
    for page in s3_client(url).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            table, _, rest = item["Key"][len(prefix) :].partition("/")
            tables.setdefault(table, []).append(rest)
    return tables


def test_the_graph_runs_on_the_s3_lake_and_a_fresh_machine_reads_the_same_tables(tmp_path):
    online = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    online.flushdb()
    with s3_server(tmp_path / "moto.log") as url:
        create_bucket(url, BUCKET)
        first = tmp_path / "first"
        environ = _environment(url, first)
        try:
            demo = _run(["scripts/demo.py", "--users", "1500", "--days", "7"], environ)
        finally:
            _run(["-m", "serving.control.endpoint", "stop", "propensity"], environ)
        log = (first / "logs" / "demo.log").read_text() if (first / "logs" / "demo.log").exists() else ""
        assert demo.returncode == 0, demo.stdout + demo.stderr + log[-4000:]
        summary = json.loads((first / "demo" / "summary.json").read_text())
        assert summary["profile"] == "aws" and summary["online"]["store"] == "redis"
        assert summary["checks"] and all(summary["checks"].values()), summary["checks"]
        assert summary["model"]["training_rows"] > 0 and summary["endpoint"]["live_scores"]
        assert online.dbsize() >= summary["online"]["sessions_written"]

        # The lake of record: each table written whole carries its manifest; landed batches are single files.
        objects = _lake_objects(url)
        for table in ("session_events", "sessions", "session_prefix_features", "user_daily_aggregates"):
            assert MANIFEST in objects[table] and any(o.endswith(".parquet") for o in objects[table]), table
        assert objects["training_dataset"] == [MANIFEST, "data.parquet"]
        assert len([o for o in objects["raw_events"] if o.endswith(MANIFEST)]) == summary["event_days"]
        assert all(o.endswith(".parquet") for o in objects["landing"])
        assert objects["_feast"] == ["registry.pb"]  # Feast's registry beside the lake (the aws yaml)

        # Another machine: the first one is gone, nothing is in its working copy, and the registry on S3 names the
        # first one's paths; the training set comes out the same from the lake alone.
        before = pd.read_parquet(first / "lake" / "training_dataset").sort_values("decision_id", ignore_index=True)
        shutil.rmtree(first)
        second = tmp_path / "second"
        rebuilt = _run(["-c", TRAINING_SET], _environment(url, second))
        assert rebuilt.returncode == 0, rebuilt.stdout[-4000:] + rebuilt.stderr[-4000:]
        pulled = sorted(p.name for p in (second / "lake").iterdir() if not p.name.startswith("."))
        assert pulled == ["session_prefix_features", "sessions", "training_dataset", "user_daily_aggregates"]
        after = pd.read_parquet(second / "lake" / "training_dataset").sort_values("decision_id", ignore_index=True)
        pd.testing.assert_frame_equal(before, after)
    online.flushdb()

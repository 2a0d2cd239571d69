"""The batch feature jobs on a real Spark standalone cluster (a master and two workers on 127.0.0.1, from pyspark's own
jars) give exactly what `local[*]` gives, with the cluster chosen by SPARK_MASTER alone."""

import os
import socket
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from propensity.contract import events_to_arrow, validate_events
from propensity.datasets import dataset_file
from propensity.features.batch import session_prefix_features, user_daily_aggregates
from propensity.paths import PROJECT_ROOT
from propensity.sessions import sessionize, summarise_sessions
from propensity.sources.taobao import USER_HISTORIES_FILE, load_taobao
from propensity.spark_cluster import StandaloneCluster

pytestmark = pytest.mark.spark

# Run in its own process: a process holds one SparkContext, and the test session's is local.
CLUSTER_JOB = """
import sys
from pyspark.sql import SparkSession
from propensity.features.batch import session_prefix_features, user_daily_aggregates
from propensity.sessions import sessionize, summarise_sessions
from propensity.spark import spark_config

events_path, out = sys.argv[1], sys.argv[2]
builder = SparkSession.builder
for key, value in spark_config().items():  # the master comes from SPARK_MASTER, as for every job
    builder = builder.config(key, value)
spark = builder.config("spark.executor.memory", "768m").getOrCreate()
session_events = sessionize(spark.read.parquet(events_path))
sessions = summarise_sessions(session_events)
session_prefix_features(session_events).write.parquet(out + "/prefix")
user_daily_aggregates(session_events, sessions).write.parquet(out + "/daily")
# the driver's block manager and one per executor that did the work
print("master", spark.sparkContext.master, "executors", spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size())
spark.stop()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sorted(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return frame.sort_values(key).reset_index(drop=True)


def test_batch_features_on_a_standalone_cluster_equal_local(spark, tmp_path):
    events = validate_events(load_taobao([dataset_file("taobao", USER_HISTORIES_FILE)]).events).valid
    events_path = tmp_path / "events.parquet"
    pq.write_table(events_to_arrow(events), events_path)  # the contract's Arrow schema, as the lake holds it

    local_events = sessionize(spark.read.parquet(str(events_path)))
    local_prefix = session_prefix_features(local_events).toPandas()
    local_daily = user_daily_aggregates(local_events, summarise_sessions(local_events)).toPandas()

    with StandaloneCluster(tmp_path / "cluster", master_port=_free_port(), webui_port=_free_port()) as cluster:
        run = subprocess.run(
            [sys.executable, "-c", CLUSTER_JOB, str(events_path), str(tmp_path / "out")],
            env=dict(os.environ, SPARK_MASTER=cluster.url, PYTHONPATH=str(PROJECT_ROOT)),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        applications = cluster.status()["completedapps"] + cluster.status()["activeapps"]
    assert f"master {cluster.url}" in run.stdout
    # The job ran on the cluster's workers: the master saw the application, with executors on both workers.
    assert any(app["name"] == "propensity" for app in applications), applications
    assert "executors 3" in run.stdout  # the driver and one executor on each worker

    cluster_prefix = pd.read_parquet(tmp_path / "out" / "prefix")
    cluster_daily = pd.read_parquet(tmp_path / "out" / "daily")
    prefix_key, daily_key = ["session_id", "event_timestamp"], ["user_id", "feature_timestamp"]
    assert len(local_prefix) > 3000 and len(local_daily) > 100
    pd.testing.assert_frame_equal(
        _sorted(cluster_prefix, prefix_key), _sorted(local_prefix, prefix_key), check_dtype=False
    )
    pd.testing.assert_frame_equal(_sorted(cluster_daily, daily_key), _sorted(local_daily, daily_key), check_dtype=False)

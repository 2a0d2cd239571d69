"""Spark configuration for the batch jobs and the stream job: `local[*]` by default, any master by SPARK_MASTER.

The Dagster resource (`resources/spark.py`) and the stream job both build their sessions from `spark_config()`, so
the two never run with different settings. The stream job adds `streaming_config()`: Spark's Kafka connector and the
local checkpoint file manager, which must be on the classpath when the JVM starts.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from propensity.settings import Settings, SettingsError
from propensity.settings import settings as current_settings

LOG = logging.getLogger(__name__)

SPARK_DEFAULTS: dict[str, str] = {
    "spark.app.name": "propensity",
    "spark.sql.session.timeZone": "UTC",  # the contract is UTC end to end; days are UTC days
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # readable by DuckDB, pandas and Feast
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.extraJavaOptions": "-Dderby.system.home=/tmp/propensity-derby",
}

# 4.2.1 is not on Maven Central; the connector of a patch release works with the others of its minor version.
KAFKA_CONNECTOR_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"
CHECKPOINT_MANAGER_SOURCE = Path(__file__).resolve().parent / "streaming" / "jvm" / "LocalCheckpointFileManager.java"
CHECKPOINT_MANAGER_CLASS = "propensity.spark.LocalCheckpointFileManager"
JVM_BUILD_TIMEOUT_S = 180


def spark_config(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or current_settings()
    check_worker_python(settings)
    return {
        **SPARK_DEFAULTS,
        "spark.master": settings.spark_master,
        "spark.driver.memory": settings.spark_driver_memory,
    }


def check_worker_python(settings: Settings) -> None:
    """Spark's Python workers run PYSPARK_PYTHON, else `python3` from PATH: that must be an interpreter with our
    packages, or every pandas UDF fails deep inside a task with "No module named pandas"."""
    if settings.pyspark_python:
        return
    found = shutil.which("python3")
    if found is None or Path(found).parent != Path(sys.executable).parent:
        raise SettingsError(
            f"Spark's Python workers would run python3 from PATH ({found or 'none'}), not this interpreter "
            f"({sys.executable}): export PYSPARK_PYTHON={sys.executable} (make does this for you)"
        )


def kafka_connector_config(settings: Settings | None = None) -> dict[str, str]:
    """Spark's Kafka source: the jars `make services` fetched with Maven, else Spark's own resolver (Ivy)."""
    settings = settings or current_settings()
    jars = sorted(glob.glob(str(settings.services_home / "spark-jars" / "*.jar")))
    return {"spark.jars": ",".join(jars)} if jars else {"spark.jars.packages": KAFKA_CONNECTOR_PACKAGE}


def checkpoint_manager_jar(settings: Settings | None = None) -> Path | None:
    """The local checkpoint file manager (streaming/jvm), compiled once per source and pyspark version against
    pyspark's own jars; None without a JDK (Spark's default manager then: correct, ~70 ms slower per micro-batch)."""
    import pyspark

    build_dir = (settings or current_settings()).services_home / "jvm"  # a build artefact, shared by every state dir
    digest = hashlib.sha256(CHECKPOINT_MANAGER_SOURCE.read_bytes() + pyspark.__version__.encode()).hexdigest()[:12]
    jar = build_dir / f"propensity-spark-{digest}.jar"
    if jar.exists():
        return jar
    if not (shutil.which("javac") and shutil.which("jar")):
        LOG.warning("no javac/jar on PATH: streaming checkpoints use Spark's default file manager")
        return None
    build_dir.mkdir(parents=True, exist_ok=True)
    classpath = str(Path(pyspark.__file__).parent / "jars" / "*")
    with tempfile.TemporaryDirectory(dir=build_dir) as build:  # concurrent builds each rename a whole jar
        commands = (
            ["javac", "-nowarn", "-d", f"{build}/classes", "-cp", classpath, str(CHECKPOINT_MANAGER_SOURCE)],
            ["jar", "cf", f"{build}/out.jar", "-C", f"{build}/classes", "."],
        )
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, timeout=JVM_BUILD_TIMEOUT_S)
            if done.returncode:
                raise RuntimeError(
                    f"building {CHECKPOINT_MANAGER_SOURCE.name} failed: {' '.join(command[:2])}: {done.stderr[-2000:]}"
                )
        os.replace(f"{build}/out.jar", jar)
    for stale in build_dir.glob("propensity-spark-*.jar"):  # earlier sources or pyspark versions
        if stale != jar:
            stale.unlink(missing_ok=True)
    return jar


def streaming_config(settings: Settings | None = None) -> dict[str, str]:
    """What a session that runs the stream job needs on top of `spark_config()`: the Kafka connector and the local
    checkpoint file manager (jars at JVM start, so before the session exists)."""
    settings = settings or current_settings()
    config = kafka_connector_config(settings)
    if settings.kafka.auth == "msk_iam":  # AWS's login module for Spark's Kafka source (propensity.streaming.kafka)
        from propensity.streaming.kafka import MSK_IAM_PACKAGE

        config["spark.jars.packages"] = ",".join(filter(None, [config.get("spark.jars.packages"), MSK_IAM_PACKAGE]))
    manager = checkpoint_manager_jar(settings)
    if manager is not None:
        config["spark.jars"] = ",".join(filter(None, [config.get("spark.jars"), str(manager)]))
        config["spark.sql.streaming.checkpointFileManagerClass"] = CHECKPOINT_MANAGER_CLASS
    return config

"""Spark for the batch jobs: `local[*]` by default, any master by SPARK_MASTER (a cluster in production)."""

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

from dagster_pyspark import LazyPySparkResource

LOG = logging.getLogger(__name__)

SPARK_DEFAULTS: dict[str, str] = {
    "spark.app.name": "propensity",
    "spark.sql.session.timeZone": "UTC",  # the contract is UTC end to end; days are UTC days
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # readable by DuckDB, pandas and Feast
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.memory": "4g",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.extraJavaOptions": "-Dderby.system.home=/tmp/propensity-derby",
}


def spark_config() -> dict[str, str]:
    config = dict(SPARK_DEFAULTS)
    config["spark.master"] = os.environ.get("SPARK_MASTER", "local[*]")
    config["spark.driver.memory"] = os.environ.get("SPARK_DRIVER_MEMORY", config["spark.driver.memory"])
    # Python workers must run the interpreter that has our packages (the project's .venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return config


# Where `make services` (scripts/services.sh) put them: $PROPENSITY_SERVICES_HOME/spark-jars, default var/services.
SERVICES_HOME = Path(
    os.environ.get("PROPENSITY_SERVICES_HOME", Path(__file__).resolve().parent.parent / "var" / "services")
)
KAFKA_CONNECTOR_JARS = SERVICES_HOME / "spark-jars"
# 4.2.1 is not on Maven Central; the connector of a patch release works with the others of its minor version.
KAFKA_CONNECTOR_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"


def kafka_connector_config() -> dict[str, str]:
    """Spark's Kafka source: the jars `make services` fetched with Maven, else Spark's own resolver (Ivy)."""
    jars = sorted(glob.glob(str(KAFKA_CONNECTOR_JARS / "*.jar")))
    return {"spark.jars": ",".join(jars)} if jars else {"spark.jars.packages": KAFKA_CONNECTOR_PACKAGE}


CHECKPOINT_MANAGER_SOURCE = Path(__file__).resolve().parent / "jvm" / "LocalCheckpointFileManager.java"
CHECKPOINT_MANAGER_CLASS = "propensity.spark.LocalCheckpointFileManager"
JVM_BUILD_DIR = Path(__file__).resolve().parent.parent / "var" / "jvm"
JVM_BUILD_TIMEOUT_S = 180


def checkpoint_manager_jar() -> Path | None:
    """The local checkpoint file manager (resources/jvm), compiled once per source and pyspark version against
    pyspark's own jars; None without a JDK (Spark's default manager then: correct, ~70 ms slower per micro-batch)."""
    import pyspark

    digest = hashlib.sha256(CHECKPOINT_MANAGER_SOURCE.read_bytes() + pyspark.__version__.encode()).hexdigest()[:12]
    jar = JVM_BUILD_DIR / f"propensity-spark-{digest}.jar"
    if jar.exists():
        return jar
    if not (shutil.which("javac") and shutil.which("jar")):
        LOG.warning("no javac/jar on PATH: streaming checkpoints use Spark's default file manager")
        return None
    JVM_BUILD_DIR.mkdir(parents=True, exist_ok=True)
    classpath = str(Path(pyspark.__file__).parent / "jars" / "*")
    with tempfile.TemporaryDirectory(dir=JVM_BUILD_DIR) as build:  # concurrent builds each rename a whole jar
        for command in (
            ["javac", "-nowarn", "-d", f"{build}/classes", "-cp", classpath, str(CHECKPOINT_MANAGER_SOURCE)],
            ["jar", "cf", f"{build}/out.jar", "-C", f"{build}/classes", "."],
        ):
            done = subprocess.run(command, capture_output=True, text=True, timeout=JVM_BUILD_TIMEOUT_S)
            if done.returncode:
                raise RuntimeError(
                    f"building {CHECKPOINT_MANAGER_SOURCE.name} failed: {' '.join(command[:2])}: {done.stderr[-2000:]}"
                )
        os.replace(f"{build}/out.jar", jar)
    for stale in JVM_BUILD_DIR.glob("propensity-spark-*.jar"):  # earlier sources or pyspark versions
        if stale != jar:
            stale.unlink(missing_ok=True)
    return jar


def streaming_config() -> dict[str, str]:
    """What a session that runs the stream job needs on top of `spark_config()`: the Kafka connector and the local
    checkpoint file manager (jars at JVM start, so before the session exists)."""
    config = kafka_connector_config()
    manager = checkpoint_manager_jar()
    if manager is not None:
        config["spark.jars"] = ",".join(filter(None, [config.get("spark.jars"), str(manager)]))
        config["spark.sql.streaming.checkpointFileManagerClass"] = CHECKPOINT_MANAGER_CLASS
    return config


def spark_resource() -> LazyPySparkResource:
    """Lazy: the JVM starts only when an asset asks for the session."""
    return LazyPySparkResource(spark_config=spark_config())

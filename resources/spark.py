"""Spark for the batch jobs: `local[*]` by default, any master by SPARK_MASTER (a cluster in production)."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from dagster_pyspark import LazyPySparkResource

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


KAFKA_CONNECTOR_JARS = Path(__file__).resolve().parent.parent / "var" / "services" / "spark-jars"  # from `make services`
# 4.2.1 is not on Maven Central; the connector of a patch release works with the others of its minor version.
KAFKA_CONNECTOR_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"


def kafka_connector_config() -> dict[str, str]:
    """Spark's Kafka source: the jars `make services` fetched with Maven, else Spark's own resolver (Ivy)."""
    jars = sorted(glob.glob(str(KAFKA_CONNECTOR_JARS / "*.jar")))
    return {"spark.jars": ",".join(jars)} if jars else {"spark.jars.packages": KAFKA_CONNECTOR_PACKAGE}


def spark_resource() -> LazyPySparkResource:
    """Lazy: the JVM starts only when an asset asks for the session."""
    return LazyPySparkResource(spark_config=spark_config())

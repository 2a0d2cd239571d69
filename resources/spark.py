"""Spark for the batch jobs: `local[*]` by default, any master by SPARK_MASTER (a cluster in production)."""

from __future__ import annotations

import os
import sys

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


def spark_resource() -> LazyPySparkResource:
    """Lazy: the JVM starts only when an asset asks for the session."""
    return LazyPySparkResource(spark_config=spark_config())

"""Spark for the batch assets: the core's configuration (`propensity.spark`) behind Dagster's lazy resource."""

from __future__ import annotations

from dagster_pyspark import LazyPySparkResource

from propensity.settings import Settings
from propensity.spark import spark_config


def spark_resource(settings: Settings) -> LazyPySparkResource:
    """Lazy: the JVM starts only when an asset asks for the session."""
    return LazyPySparkResource(spark_config=spark_config(settings))

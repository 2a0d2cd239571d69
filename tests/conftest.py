"""Shared fixtures. One state directory and one Spark session for the whole test session (2 cores)."""

import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports feature_repo: its offline source paths follow PROPENSITY_HOME at import.
_TEST_HOME = Path(tempfile.mkdtemp(prefix="propensity-test-"))
os.environ["PROPENSITY_HOME"] = str(_TEST_HOME)
os.environ["DAGSTER_HOME"] = str(_TEST_HOME / "dagster")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")  # a db of its own, flushed by the tests
(_TEST_HOME / "dagster").mkdir(parents=True, exist_ok=True)

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from propensity.contract import EVENT_TIME_DTYPE  # noqa: E402

REDIS_URL = os.environ["REDIS_URL"]


def clear_home() -> Path:
    """Empty the session's state directory (the lake, Feast files, models), keeping the Dagster home."""
    for child in _TEST_HOME.iterdir():
        if child.name != "dagster":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return _TEST_HOME


@pytest.fixture
def propensity_home() -> Path:
    """The session's state directory, emptied before each test that uses it."""
    return clear_home()


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    from propensity.spark import spark_config, streaming_config

    # One session for batch and streaming tests: the Kafka connector (jars from `make services`) and the checkpoint
    # file manager ride along.
    config = (
        spark_config()
        | streaming_config()
        | {"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g"}
    )
    builder = SparkSession.builder
    for key, value in config.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def contract_events(rows: list[dict]) -> pd.DataFrame:
    """Contract-v1 events from short dicts: fills defaults so a test states only what it is about."""
    defaults = {
        "session_id": None,
        "product_id": None,
        "category_id": None,
        "price": float("nan"),
        "quantity": 1,
        "source": "test",
    }
    frame = pd.DataFrame([defaults | row for row in rows])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True).astype(EVENT_TIME_DTYPE)
    frame["quantity"] = frame["quantity"].astype("Int64")
    frame["price"] = frame["price"].astype("float64")
    from propensity.contract import EVENT_COLUMNS

    return frame[list(EVENT_COLUMNS)]

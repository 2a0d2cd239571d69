"""Batch features (Spark): user history per day and in-session features at every decision point."""

import dagster as dg
import pandas as pd
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import functions as F

from propensity.features.batch import session_fold_states
from propensity.features.batch import session_prefix_features as compute_session_prefix_features
from propensity.features.batch import user_daily_aggregates as compute_user_daily_aggregates
from propensity.features.definitions import SESSION_FOLD_STATE_VIEW
from propensity.features.schemas import session_prefix_features_schema, user_daily_aggregates_schema
from propensity_assets.spark_tables import read_table, table_metadata, write_table
from resources.lake import LakeResource

SCHEMA_SAMPLE_ROWS = 200_000  # the pandera check reads at most this many rows; uniqueness is checked in Spark


def _schema_check(frame, schema, keys: list[str], check_name: str) -> dg.AssetCheckResult:
    duplicate_keys = frame.groupBy(*keys).count().filter("count > 1").count()
    sample = frame.limit(SCHEMA_SAMPLE_ROWS).toPandas()
    for column in sample.select_dtypes(include=["datetime64"]).columns:  # Spark hands back naive UTC
        sample[column] = sample[column].dt.tz_localize("UTC").astype(pd.DatetimeTZDtype("us", "UTC"))
    failures = []
    try:
        schema.validate(sample, lazy=True)
    except Exception as error:  # noqa: BLE001 - the check reports it
        failures.append(str(error)[:2000])
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=not failures and duplicate_keys == 0,
        metadata={
            "duplicate_keys": duplicate_keys,
            "rows_validated": len(sample),
            "failures": dg.MetadataValue.json(failures),
        },
    )


@dg.asset(
    deps=["session_events", "sessions"],
    group_name="features",
    kinds={"spark", "parquet"},
    check_specs=[dg.AssetCheckSpec("user_aggregates_schema", asset="user_daily_aggregates")],
    description="User history per user and day (1/7/30-day counts and rates, recency and order value), "
    "stamped at the next midnight so a decision never sees its own day.",
)
def user_daily_aggregates(spark: LazyPySparkResource, lake: LakeResource):
    session = spark.spark_session
    aggregates = compute_user_daily_aggregates(
        read_table(session, lake, "session_events"), read_table(session, lake, "sessions")
    )
    written = write_table(aggregates, lake, "user_daily_aggregates")
    metadata = table_metadata(written, "feature_timestamp")
    metadata["users"] = written.select(F.countDistinct("user_id")).first()[0]
    yield dg.MaterializeResult(metadata=metadata)
    yield _schema_check(
        written, user_daily_aggregates_schema(), ["user_id", "feature_timestamp"], "user_aggregates_schema"
    )


@dg.asset(
    deps=["session_events"],
    group_name="features",
    kinds={"spark", "parquet"},
    check_specs=[dg.AssetCheckSpec("session_features_schema", asset="session_prefix_features")],
    description="In-session features at every decision point, from the fold the streaming job shares.",
)
def session_prefix_features(spark: LazyPySparkResource, lake: LakeResource):
    session = spark.spark_session
    features = compute_session_prefix_features(read_table(session, lake, "session_events"))
    written = write_table(features, lake, "session_prefix_features")
    metadata = table_metadata(written, "event_timestamp")
    metadata["sessions"] = written.select(F.countDistinct("session_id")).first()[0]
    yield dg.MaterializeResult(metadata=metadata)
    yield _schema_check(
        written, session_prefix_features_schema(), ["session_id", "event_timestamp"], "session_features_schema"
    )


@dg.asset(
    name=SESSION_FOLD_STATE_VIEW,
    deps=["session_events"],
    group_name="features",
    kinds={"spark", "parquet"},
    description="What each session's newest decision point has folded (its products, categories and events): the "
    "state the scorer folds a request's own events onto. Not a model input.",
)
def session_fold_state(spark: LazyPySparkResource, lake: LakeResource):
    session = spark.spark_session
    written = write_table(
        session_fold_states(read_table(session, lake, "session_events")), lake, SESSION_FOLD_STATE_VIEW
    )
    return dg.MaterializeResult(metadata=table_metadata(written, "event_timestamp"))

"""Sessions: every event gets a session (30-minute gap where the source has none); one summary row per session."""

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import functions as F

from propensity.contract import EVENT_COLUMNS
from propensity.sessions import sessionize, summarise_sessions
from propensity_assets.ingestion import RAW_EVENTS
from propensity_assets.spark_tables import read_table, table_metadata, write_table
from resources.lake import LakeResource


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "session_events",
            deps=[RAW_EVENTS],
            group_name="sessions",
            kinds={"spark", "parquet"},
            description="The event log with every event assigned to a session (deterministic ids).",
        ),
        dg.AssetSpec(
            "sessions",
            deps=[RAW_EVENTS],
            group_name="sessions",
            kinds={"spark", "parquet"},
            description="One row per session: user, start, end, events, purchases.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec("every_event_sessionised", asset="session_events"),
        dg.AssetCheckSpec("one_user_per_session", asset="sessions"),
    ],
)
def sessions(spark: LazyPySparkResource, lake: LakeResource):
    session = spark.spark_session
    raw = read_table(session, lake, RAW_EVENTS).select(*EVENT_COLUMNS)
    session_events = write_table(sessionize(raw), lake, "session_events")
    session_table = write_table(summarise_sessions(session_events), lake, "sessions")

    raw_rows = raw.count()
    events_meta = table_metadata(session_events, "event_time")
    yield dg.MaterializeResult(asset_key="session_events", metadata=events_meta)
    users_per_session = session_events.groupBy("session_id").agg(F.countDistinct("user_id").alias("users"))
    shared = users_per_session.filter("users > 1").count()
    session_meta = table_metadata(session_table, "session_start")
    rates = session_table.agg(
        F.avg(F.col("has_purchase").cast("double")).alias("rate"), F.countDistinct("user_id").alias("users")
    ).first()
    session_meta |= {"purchase_rate": float(rates["rate"] or 0.0), "users": int(rates["users"])}
    yield dg.MaterializeResult(asset_key="sessions", metadata=session_meta)
    yield dg.AssetCheckResult(
        asset_key="session_events",
        check_name="every_event_sessionised",
        passed=events_meta["dagster/row_count"] == raw_rows
        and session_events.filter("session_id IS NULL").count() == 0,
        metadata={"raw_events": raw_rows, "session_events": events_meta["dagster/row_count"]},
    )
    yield dg.AssetCheckResult(
        asset_key="sessions",
        check_name="one_user_per_session",
        passed=shared == 0,
        metadata={"sessions_with_several_users": shared},
    )

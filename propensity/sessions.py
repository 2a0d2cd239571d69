"""Sessionisation (Spark): cut sessions at an inactivity gap where the source has no session id.

Session ids are deterministic (user and session start), so re-running over the same events gives the same ids.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from propensity.contract import EVENT_COLUMNS
from propensity.features.definitions import SESSION_GAP_MINUTES

SESSION_COLUMNS = (
    "session_id",
    "user_id",
    "source",
    "session_start",
    "session_end",
    "events",
    "purchase_events",
    "first_purchase_time",
    "has_purchase",
)


def sessionize(events: DataFrame, gap_minutes: int = SESSION_GAP_MINUTES) -> DataFrame:
    """Contract events with `session_id` filled in: kept where the source gave one, cut at the gap elsewhere."""
    given = events.filter(F.col("session_id").isNotNull())
    missing = events.filter(F.col("session_id").isNull())
    by_user = Window.partitionBy("user_id").orderBy("event_time", "event_id")
    gap_us = gap_minutes * 60 * 1_000_000
    previous = F.lag("event_time").over(by_user)
    starts_session = previous.isNull() | ((F.unix_micros("event_time") - F.unix_micros(previous)) > gap_us)
    numbered = missing.withColumn("_session_index", F.sum(starts_session.cast("int")).over(by_user))
    session_start = F.min("event_time").over(Window.partitionBy("user_id", "_session_index"))
    cut = numbered.withColumn(
        "session_id", F.concat(F.lit("s-"), F.col("user_id"), F.lit("-"), F.unix_millis(session_start).cast("string"))
    ).drop("_session_index")
    return given.select(*EVENT_COLUMNS).unionByName(cut.select(*EVENT_COLUMNS))


def summarise_sessions(session_events: DataFrame) -> DataFrame:
    """One row per session: who, when, how long, and whether (and when first) it purchased."""
    is_purchase = F.col("event_type") == "purchase"
    return (
        session_events.groupBy("session_id")
        .agg(
            F.first("user_id", ignorenulls=True).alias("user_id"),
            F.first("source", ignorenulls=True).alias("source"),
            F.min("event_time").alias("session_start"),
            F.max("event_time").alias("session_end"),
            F.count(F.lit(1)).alias("events"),
            F.sum(is_purchase.cast("long")).alias("purchase_events"),
            F.min(F.when(is_purchase, F.col("event_time"))).alias("first_purchase_time"),
        )
        .withColumn("has_purchase", F.col("purchase_events") > 0)
        .select(*SESSION_COLUMNS)
    )

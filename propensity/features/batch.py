"""The Spark batch feature jobs: user history as of each day, and in-session features at every decision point."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from propensity.contract import EVENT_COLUMNS, EVENT_TIME_DTYPE
from propensity.features.definitions import (
    FOLD_STATE_ID_FIELDS,
    FOLD_STATE_TIME_FIELD,
    SESSION_FEATURES,
    USER_FEATURES,
    USER_WINDOWS_DAYS,
)
from propensity.features.session import FEATURE_ROW_KEYS, fold_sorted_batches

USER_AGGREGATE_KEYS = ("user_id", "as_of_date", "feature_timestamp")

_SPARK_TYPES = {"int64": T.LongType(), "float64": T.DoubleType()}


def user_daily_aggregates(session_events: DataFrame, sessions: DataFrame) -> DataFrame:
    """One row per user and day from the user's first active day to the last day in the data.

    The row for day D summarises activity up to the end of D and is stamped `feature_timestamp` = D+1 00:00 UTC, the
    moment it becomes knowable: a decision on day D+1 joins it, a decision on day D never sees day D's activity.
    Days without activity get rows too, so windows and recency stay correct for returning users.
    """
    events_daily = (
        session_events.withColumn("day", F.to_date("event_time"))
        .groupBy("user_id", "day")
        .agg(
            F.count(F.lit(1)).alias("events"),
            F.sum((F.col("event_type") == "add_to_cart").cast("long")).alias("cart_adds"),
        )
    )
    sessions_daily = (
        sessions.withColumn("day", F.to_date("session_start"))
        .groupBy("user_id", "day")
        .agg(F.count(F.lit(1)).alias("sessions"))
    )
    order_values = (
        session_events.filter((F.col("event_type") == "purchase") & F.col("price").isNotNull())
        .groupBy("session_id")
        .agg(F.sum(F.col("price") * F.col("quantity")).alias("order_value"))
    )
    orders_daily = (
        sessions.filter("has_purchase")
        .join(order_values, "session_id", "left")
        .withColumn("day", F.to_date("first_purchase_time"))
        .groupBy("user_id", "day")
        .agg(
            F.count(F.lit(1)).alias("orders"),
            F.sum("order_value").alias("order_value"),
            F.count("order_value").alias("priced_orders"),
        )
    )
    daily = events_daily.join(sessions_daily, ["user_id", "day"], "full").join(orders_daily, ["user_id", "day"], "full")

    last_day = session_events.agg(F.max(F.to_date("event_time")).alias("last_day"))
    first_days = daily.groupBy("user_id").agg(F.min("day").alias("first_day"))
    grid = first_days.crossJoin(last_day).select(
        "user_id", "first_day", F.explode(F.sequence("first_day", "last_day")).alias("day")
    )
    dense = grid.join(daily, ["user_id", "day"], "left").fillna(
        0, subset=["events", "cart_adds", "sessions", "orders", "order_value", "priced_orders"]
    )

    by_day = Window.partitionBy("user_id").orderBy("day")
    columns = [
        F.col("user_id"),
        F.col("day").alias("as_of_date"),
        F.to_timestamp(F.date_add("day", 1)).alias("feature_timestamp"),
    ]
    for count in ("sessions", "events", "cart_adds", "orders"):
        for days in USER_WINDOWS_DAYS:
            columns.append(
                F.sum(count).over(by_day.rowsBetween(-(days - 1), 0)).cast("long").alias(f"user_{count}_{days}d")
            )
    window_30 = by_day.rowsBetween(-29, 0)

    def ratio(numerator, denominator):
        return F.when(denominator > 0, numerator / denominator).otherwise(F.lit(0.0))

    columns += [
        ratio(F.sum("orders").over(by_day.rowsBetween(-6, 0)), F.sum("sessions").over(by_day.rowsBetween(-6, 0))).alias(
            "user_conversion_rate_7d"
        ),
        ratio(F.sum("orders").over(window_30), F.sum("sessions").over(window_30)).alias("user_conversion_rate_30d"),
        ratio(F.sum("cart_adds").over(window_30), F.sum("events").over(window_30)).alias("user_cart_add_rate_30d"),
        F.datediff("day", F.max(F.when(F.col("events") > 0, F.col("day"))).over(window_30))
        .cast("double")
        .alias("user_days_since_last_event"),
        F.datediff("day", F.max(F.when(F.col("orders") > 0, F.col("day"))).over(window_30))
        .cast("double")
        .alias("user_days_since_last_order"),
        F.when(
            F.sum("priced_orders").over(window_30) > 0,
            F.sum("order_value").over(window_30) / F.sum("priced_orders").over(window_30),
        ).alias("user_avg_order_value_30d"),
    ]
    result = dense.select(*columns)
    return result.select(*USER_AGGREGATE_KEYS, *(F.col(f.name).cast(_SPARK_TYPES[f.dtype]) for f in USER_FEATURES))


def session_feature_schema() -> T.StructType:
    key_types = {
        "session_id": T.StringType(),
        "user_id": T.StringType(),
        "event_timestamp": T.TimestampType(),
        "decision_event_id": T.StringType(),
        "purchases_so_far": T.LongType(),
    }
    fields = [T.StructField(name, key_types[name], name != "session_id") for name in FEATURE_ROW_KEYS]
    fields += [T.StructField(f.name, _SPARK_TYPES[f.dtype], True) for f in SESSION_FEATURES]
    return T.StructType(fields)


def _fold_partition(batches):
    """mapInPandas body: Arrow hands timestamps over as naive UTC (session time zone), the fold wants tz-aware."""

    def aware(batch: pd.DataFrame) -> pd.DataFrame:
        batch["event_time"] = batch["event_time"].dt.tz_localize("UTC").astype(EVENT_TIME_DTYPE)
        return batch

    for rows in fold_sorted_batches(aware(b) for b in batches):
        rows["event_timestamp"] = rows["event_timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
        yield rows


def session_prefix_features(session_events: DataFrame, partitions: int | None = None) -> DataFrame:
    """In-session features at every decision point: the shared fold, run per sorted partition."""
    events = session_events.select(*EVENT_COLUMNS)
    if partitions:
        events = events.repartition(partitions, "session_id")
    else:
        events = events.repartition("session_id")
    return events.sortWithinPartitions("session_id", "event_time", "event_id").mapInPandas(
        _fold_partition, schema=session_feature_schema()
    )


def session_fold_states(session_events: DataFrame) -> DataFrame:
    """Each session's fold state after its newest decision point, for the `session_fold_state` view: the distinct
    products and categories, and the events at that point's timestamp (`SessionState.products`, `.categories`,
    `.last_event_ids`), as sorted arrays, and that point's time in microseconds; stamped with it as its features are."""
    newest = session_events.groupBy("session_id").agg(F.max("event_time").alias("event_timestamp"))
    at_newest = F.when(F.col("event_time") == F.col("event_timestamp"), F.col("event_id"))
    product_ids, category_ids, last_event_ids = FOLD_STATE_ID_FIELDS
    return (
        session_events.join(newest, "session_id")
        .groupBy("session_id", "event_timestamp")
        .agg(
            F.array_sort(F.collect_set("product_id")).alias(product_ids),
            F.array_sort(F.collect_set("category_id")).alias(category_ids),
            F.array_sort(F.collect_set(at_newest)).alias(last_event_ids),
        )
        .withColumn(FOLD_STATE_TIME_FIELD, F.unix_micros("event_timestamp"))
    )

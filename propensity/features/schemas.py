"""Pandera schemas of the feature tables, built from the feature definitions (never listed twice)."""

from __future__ import annotations

import pandera.pandas as pa

from propensity.contract import EVENT_TIME_DTYPE
from propensity.features.definitions import SESSION_FEATURES, USER_FEATURES, Feature


def _feature_columns(features: tuple[Feature, ...]) -> dict[str, pa.Column]:
    columns = {}
    for f in features:
        checks = [] if f.name in ("session_weekday", "session_hour_utc") else [pa.Check.ge(0)]
        columns[f.name] = pa.Column(f.dtype, checks=checks, nullable=f.nullable)
    return columns


def session_prefix_features_schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "session_id": pa.Column(str, nullable=False),
            "user_id": pa.Column(str, nullable=False),
            "event_timestamp": pa.Column(EVENT_TIME_DTYPE, nullable=False),
            "decision_event_id": pa.Column(str, nullable=False),
            "purchases_so_far": pa.Column("int64", pa.Check.ge(0)),
            **_feature_columns(SESSION_FEATURES),
            "session_hour_utc": pa.Column("int64", pa.Check.in_range(0, 23)),
            "session_weekday": pa.Column("int64", pa.Check.in_range(0, 6)),
        },
        unique=["session_id", "event_timestamp"],  # one row per decision point keeps the point-in-time join exact
        strict=True,
        name="session_prefix_features",
    )


def user_daily_aggregates_schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "user_id": pa.Column(str, nullable=False),
            "as_of_date": pa.Column("object", nullable=False),
            "feature_timestamp": pa.Column(EVENT_TIME_DTYPE, nullable=False),
            **_feature_columns(USER_FEATURES),
            "user_conversion_rate_7d": pa.Column("float64", pa.Check.in_range(0, 1)),
            "user_conversion_rate_30d": pa.Column("float64", pa.Check.in_range(0, 1)),
            "user_cart_add_rate_30d": pa.Column("float64", pa.Check.in_range(0, 1)),
        },
        unique=["user_id", "feature_timestamp"],
        strict=True,
        name="user_daily_aggregates",
    )

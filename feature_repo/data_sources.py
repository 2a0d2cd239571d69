"""Offline sources are the lake tables the Spark jobs write; paths follow PROPENSITY_HOME at import."""

from feast import FileSource, PushSource
from feast.data_format import ParquetFormat

from propensity.features.definitions import SESSION_PUSH_SOURCE
from propensity.paths import table_glob

user_daily_aggregates_source = FileSource(
    name="user_daily_aggregates",
    path=table_glob("user_daily_aggregates"),
    file_format=ParquetFormat(),
    timestamp_field="feature_timestamp",
    description="Spark batch: user history as of the end of each day, stamped at the next midnight",
)

session_prefix_features_source = FileSource(
    name="session_prefix_features",
    path=table_glob("session_prefix_features"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Spark batch: in-session features at every decision point",
)

# The streaming job pushes fresh in-session features here; offline, the same view reads the batch table.
session_activity_push = PushSource(name=SESSION_PUSH_SOURCE, batch_source=session_prefix_features_source)

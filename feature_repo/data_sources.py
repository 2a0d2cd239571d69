"""Offline sources are the lake tables the Spark jobs write, named where the lake of record keeps them (the working
copy under PROPENSITY_HOME, or S3 on the aws profile), as the settings say at import."""

import copy

from feast import FileSource, PushSource
from feast.data_format import ParquetFormat

from propensity.features.definitions import SESSION_FOLD_STATE_PUSH_SOURCE, SESSION_FOLD_STATE_VIEW, SESSION_PUSH_SOURCE
from propensity.paths import table_glob, working_copy_glob

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

session_fold_state_source = FileSource(
    name=SESSION_FOLD_STATE_VIEW,
    path=table_glob(SESSION_FOLD_STATE_VIEW),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="Spark batch: what each session's newest decision point has folded (products, categories, events)",
)

# The streaming job pushes fresh in-session features and fold states here; offline, the views read the batch tables.
session_activity_push = PushSource(name=SESSION_PUSH_SOURCE, batch_source=session_prefix_features_source)
session_fold_state_push = PushSource(name=SESSION_FOLD_STATE_PUSH_SOURCE, batch_source=session_fold_state_source)


def reading_working_copy(objects: list) -> list:
    """Copies of the Feast objects whose file sources read this machine's working copy of the lake (the views and
    the push source refer to the copied sources). On the aws profile the sources name S3, which Feast's DuckDB store
    here cannot read; the platform's offline reads apply these to a registry of their own (propensity.feature_store).
    """
    copies = copy.deepcopy(objects)
    for item in copies:
        if isinstance(item, FileSource):
            item.file_options.uri = working_copy_glob(item.name)
    return copies

"""Feast: register the feature repository, and materialise the latest features into the online store."""

import dagster as dg
import pandas as pd
from feast import FeatureStore

from feature_repo import FEAST_OBJECTS
from feature_repo.data_sources import reading_working_copy
from propensity.features.definitions import (
    FEATURE_SERVICE_NAME,
    SESSION_ENTITY_KEY,
    SESSION_FEATURE_VIEW,
    SESSION_FOLD_STATE_VIEW,
    USER_ENTITY_KEY,
    USER_FEATURE_VIEW,
)
from propensity.online_parity import online_mismatches
from resources.feast import FeastResource
from resources.lake import LakeResource

PARITY_SAMPLE = 200


def offline_store(feast: FeastResource) -> FeatureStore:
    """The store that reads the offline sources, from the working copy where the lake pulls them. Where the
    profile's registry is shared (aws: its sources name S3), a registry in this machine's working copy with the same
    objects, their sources reading the working copy."""
    store = feast.store(working_copy_registry=True)
    if feast.registry_is_shared():
        store.apply(reading_working_copy(FEAST_OBJECTS))
    return store


@dg.asset(
    deps=["user_daily_aggregates", "session_prefix_features", SESSION_FOLD_STATE_VIEW],
    group_name="feature_store",
    kinds={"feast"},
    description="`feast apply` of feature_repo/: entities, sources, views and the versioned feature service.",
)
def feast_registry(feast: FeastResource) -> dg.MaterializeResult:
    store = feast.store()
    store.apply(FEAST_OBJECTS)
    views = store.list_feature_views()
    service = store.get_feature_service(FEATURE_SERVICE_NAME)
    return dg.MaterializeResult(
        metadata={
            "project": store.project,
            "feature_views": dg.MetadataValue.json({v.name: [f.name for f in v.features] for v in views}),
            "feature_service": FEATURE_SERVICE_NAME,
            "features_in_service": sum(len(p.features) for p in service.feature_view_projections),
            "online_store": store.config.online_store.type,
        }
    )


def _json_safe(row: dict) -> dict:
    return {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}


@dg.asset(
    deps=["feast_registry"],
    group_name="feature_store",
    kinds={"feast"},
    check_specs=[
        dg.AssetCheckSpec(
            "online_matches_offline",
            asset="online_features",
            description=f"{PARITY_SAMPLE} users and sessions: online values equal the latest offline rows",
        )
    ],
    description="Latest user-history and in-session features materialised into the online store.",
)
def online_features(feast: FeastResource, lake: LakeResource):
    store = offline_store(feast)
    # Feast's offline store reads the tables from the working copy, where these pulls put them.
    users = lake.read_frame("user_daily_aggregates")
    sessions = lake.read_frame("session_prefix_features")
    lake.pull(SESSION_FOLD_STATE_VIEW)
    start = min(users["feature_timestamp"].min(), sessions["event_timestamp"].min())
    end = max(users["feature_timestamp"].max(), sessions["event_timestamp"].max()) + pd.Timedelta(seconds=1)
    store.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime())

    user_ids = users[USER_ENTITY_KEY].drop_duplicates().sort_values().head(PARITY_SAMPLE).tolist()
    session_ids = sessions[SESSION_ENTITY_KEY].drop_duplicates().sort_values().head(PARITY_SAMPLE).tolist()
    problems = online_mismatches(store, USER_FEATURE_VIEW, users, user_ids)
    problems += online_mismatches(store, SESSION_FEATURE_VIEW, sessions, session_ids)

    latest_session = sessions.sort_values("event_timestamp").iloc[-1]
    example = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE_NAME),
        entity_rows=[
            {USER_ENTITY_KEY: latest_session[USER_ENTITY_KEY], SESSION_ENTITY_KEY: latest_session[SESSION_ENTITY_KEY]}
        ],
    ).to_df()
    yield dg.MaterializeResult(
        metadata={
            "users_written": users[USER_ENTITY_KEY].nunique(),
            "sessions_written": sessions[SESSION_ENTITY_KEY].nunique(),
            "materialised_from": str(start),
            "materialised_to": str(end),
            "online_store": store.config.online_store.type,
            "example_feature_vector": dg.MetadataValue.json(_json_safe(example.iloc[0].to_dict())),
        }
    )
    yield dg.AssetCheckResult(
        check_name="online_matches_offline",
        passed=not problems,
        metadata={"mismatches": len(problems), "examples": dg.MetadataValue.json(problems[:20])},
    )

"""The one Definitions of the code location: assets and checks, resources per profile, freshness policy."""

from datetime import timedelta

import dagster as dg

from propensity.settings import settings
from propensity_assets import deployment, feature_store, features, ingestion, models, sessions, streaming
from resources import build_resources

# Every materialisable table is expected at least daily: the storefront's features go stale otherwise.
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=24))

spine_job = dg.define_asset_job(
    "feature_spine",
    selection=dg.AssetSelection.groups("sessions", "features", "feature_store"),
    description="From the clean event log to the online store (run after ingestion).",
)

materialisable = dg.map_asset_specs(
    lambda spec: spec.replace_attributes(freshness_policy=DAILY_FRESHNESS),
    dg.load_assets_from_modules([ingestion, sessions, features, feature_store, models, deployment]),
)

defs = dg.Definitions(
    assets=[*materialisable, streaming.storefront_stream],  # the stream has its own check, not a daily policy
    asset_checks=[streaming.stream_keeps_up],
    resources=build_resources(settings()),
    jobs=[spine_job, streaming.stream_watch_job],
    schedules=[streaming.stream_watch_schedule],
)

"""The one Definitions of the code location: assets and checks, resources per profile, freshness policy."""

from datetime import timedelta

import dagster as dg

from propensity_assets import deployment, feature_store, features, ingestion, models, sessions
from resources import build_resources

# Every materialisable table is expected at least daily: the storefront's features go stale otherwise.
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=24))

spine_job = dg.define_asset_job(
    "feature_spine",
    selection=dg.AssetSelection.groups("sessions", "features", "feature_store"),
    description="From the clean event log to the online store (run after ingestion).",
)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion, sessions, features, feature_store, models, deployment]),
    resources=build_resources(),
    jobs=[spine_job],
).map_asset_specs(func=lambda spec: spec.replace_attributes(freshness_policy=DAILY_FRESHNESS))

"""The Feast feature store of a profile, as a Dagster resource over the core's `open_feature_store`."""

from __future__ import annotations

import dagster as dg
from feast import FeatureStore

from propensity import secrets
from propensity.feature_store import open_feature_store
from propensity.settings import DEFAULT_REDIS_URL


class FeastResource(dg.ConfigurableResource):
    """`local` (DuckDB + SQLite) or `redis` (DuckDB + Redis at `redis_url`, given as dg.EnvVar("REDIS_URL") when
    set, so the UI never shows a password)."""

    profile: str = "local"
    redis_url: str = DEFAULT_REDIS_URL

    def store(self) -> FeatureStore:
        # The variable may name a Secrets Manager secret (propensity.secrets): resolved here, never shown.
        return open_feature_store(self.profile, redis_url=secrets.resolve(self.redis_url))

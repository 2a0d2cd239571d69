"""The Feast feature store of a profile, as a Dagster resource over the core's `open_feature_store`."""

from __future__ import annotations

import dagster as dg
from feast import FeatureStore

from propensity import secrets
from propensity.feature_store import open_feature_store, registry_is_shared
from propensity.settings import DEFAULT_REDIS_URL


class FeastResource(dg.ConfigurableResource):
    """`local` (DuckDB + SQLite), `redis` (DuckDB + Redis at `redis_url`, given as dg.EnvVar("REDIS_URL") when set,
    so the UI never shows a password) or `aws` (as `redis`, with the registry on S3 beside the lake)."""

    profile: str = "local"
    redis_url: str = DEFAULT_REDIS_URL

    def store(self, *, working_copy_registry: bool = False) -> FeatureStore:
        """The profile's store; `working_copy_registry` for reads of the offline sources (see
        `propensity.feature_store.open_feature_store`)."""
        # The variable may name a Secrets Manager secret (propensity.secrets): resolved here, never shown.
        return open_feature_store(
            self.profile, redis_url=secrets.resolve(self.redis_url), working_copy_registry=working_copy_registry
        )

    def registry_is_shared(self) -> bool:
        return registry_is_shared(self.profile)

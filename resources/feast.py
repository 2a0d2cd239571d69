"""Feast feature store per profile, over the one feature repository."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
from feast import FeatureStore

from propensity.paths import PROJECT_ROOT, home

FEATURE_REPO_DIR = PROJECT_ROOT / "feature_repo"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def feast_redis_connection_string(redis_url: str) -> str:
    """REDIS_URL (redis://host:port/db) in Feast's own connection-string form (host:port,db=N)."""
    parsed = urlparse(redis_url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError(f"REDIS_URL must look like redis://host:port/db, got {redis_url!r}")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}", f"db={(parsed.path or '/0').lstrip('/') or 0}"]
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def feature_store_yaml(profile: str) -> Path:
    path = FEATURE_REPO_DIR / f"feature_store.{profile}.yaml"
    if not path.exists():
        raise ValueError(f"no Feast configuration for profile {profile!r}: expected {path}")
    return path


def open_feature_store(profile: str) -> FeatureStore:
    """Export what the yaml's ${VAR}s need, then open the store."""
    home()
    (Path(os.environ["PROPENSITY_HOME"]) / "feast").mkdir(parents=True, exist_ok=True)
    os.environ["FEAST_REDIS_CONNECTION_STRING"] = feast_redis_connection_string(
        os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    )
    return FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=feature_store_yaml(profile))


class FeastResource(dg.ConfigurableResource):
    """The feature store of one profile: `local` (DuckDB + SQLite) or `redis` (DuckDB + Redis)."""

    profile: str = "local"

    def store(self) -> FeatureStore:
        return open_feature_store(self.profile)

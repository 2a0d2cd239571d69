"""The Feast feature store of a profile, over the one feature repository (`feature_repo/`).

Each profile has its own `feature_repo/feature_store.<profile>.yaml`. Their `${VAR}`s are filled from the settings
here, not from the environment, so opening a store never depends on (or writes) process-wide state. The same files
work with the `feast` CLI when those variables are exported.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import yaml
from feast import FeatureStore
from feast.repo_config import RepoConfig

from propensity.settings import PROJECT_ROOT, Settings
from propensity.settings import settings as current_settings

FEATURE_REPO_DIR = PROJECT_ROOT / "feature_repo"
_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


# TLS options a rediss:// URL may carry in its query (redis-py's names), passed on to every Redis client: ElastiCache
# serves TLS with Amazon's certificate (verified against the system's CAs by default); a private CA is named here.
REDIS_TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")


def feast_redis_connection_string(redis_url: str) -> str:
    """A redis:// URL in Feast's own connection-string form (host:port,db=N[,password=...][,ssl=true][,ssl_...]).
    ElastiCache with AUTH and TLS in transit: rediss://:<token>@<primary endpoint>:6379/0."""
    parsed = urlparse(redis_url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError(f"a Redis URL must look like redis://host:port/db, got {redis_url!r}")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}", f"db={(parsed.path or '/0').lstrip('/') or 0}"]
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
        for name, value in parse_qsl(parsed.query):
            if name not in REDIS_TLS_OPTIONS:
                raise ValueError(f"unknown Redis URL option {name!r}: one of {', '.join(REDIS_TLS_OPTIONS)}")
            parts.append(f"{name}={value}")
    elif parsed.query:
        raise ValueError(f"options {parsed.query!r} in a redis:// URL: TLS options need rediss://")
    return ",".join(parts)


def feature_store_yaml(profile: str) -> Path:
    path = FEATURE_REPO_DIR / f"feature_store.{profile}.yaml"
    if not path.exists():
        raise ValueError(f"no Feast configuration for profile {profile!r}: expected {path}")
    return path


# Where a registry lives in the working copy: the local profiles' own registry, and on the aws profile the one its
# offline reads use (see `open_feature_store`).
WORKING_COPY_REGISTRY = "feast/registry.db"


def repo_config(
    profile: str,
    *,
    home: Path,
    redis_url: str,
    lake_uri: str | None = None,
    online_only: bool = False,
    working_copy_registry: bool = False,
) -> RepoConfig:
    """The profile's yaml with its variables filled in: PROPENSITY_HOME, FEAST_REDIS_CONNECTION_STRING and (the aws
    profile's registry) PROPENSITY_LAKE_URI.

    `online_only`: for the scoring path, which reads the registry and the online store only. Its offline store
    becomes Feast's plain file store, the one Feast carries without extras, so the scoring container needs neither
    DuckDB nor Ibis (nothing there ever reads offline).
    `working_copy_registry`: the registry under `home` instead of the profile's (see `open_feature_store`)."""
    path = feature_store_yaml(profile)
    values = {"PROPENSITY_HOME": str(home), "FEAST_REDIS_CONNECTION_STRING": feast_redis_connection_string(redis_url)}
    if lake_uri:
        values["PROPENSITY_LAKE_URI"] = lake_uri.rstrip("/")

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            hint = " (the aws profile's lake: set PROPENSITY_LAKE_URI)" if name == "PROPENSITY_LAKE_URI" else ""
            raise ValueError(f"{path} uses ${{{name}}}, which is not set here{hint}: {sorted(values)} are")
        return values[name]

    raw = yaml.safe_load(_VARIABLE.sub(fill, path.read_text()))
    if online_only:
        raw["offline_store"] = {"type": "file"}
    if working_copy_registry:
        raw["registry"] = {**raw["registry"], "registry_type": "file", "path": str(home / WORKING_COPY_REGISTRY)}
    config = RepoConfig(**raw)
    config.repo_path = FEATURE_REPO_DIR
    return config


def open_feature_store(
    profile: str | None = None,
    *,
    redis_url: str | None = None,
    settings: Settings | None = None,
    online_only: bool = False,
    working_copy_registry: bool = False,
) -> FeatureStore:
    """The feature store of `profile` (default: the settings' profile); `redis_url` overrides the settings' URL;
    `online_only` for the scoring path (see `repo_config`).

    `working_copy_registry` for reads of the offline sources (training sets, materialisation). Feast's DuckDB store
    reads a file source at the path its registry holds: the working copy of whichever machine applied the registry.
    The aws profile's registry is shared (on S3) and its sources name S3, so there its offline reads use a registry
    in this machine's working copy instead, to which the caller applies the same objects with their sources reading
    the working copy (`feature_repo.data_sources.reading_working_copy`)."""
    settings = settings or current_settings()
    profile = profile or settings.profile
    (settings.home / "feast").mkdir(parents=True, exist_ok=True)
    redis_url = redis_url or settings.redis_url
    repo = repo_config(
        profile,
        home=settings.home,
        redis_url=redis_url,
        lake_uri=settings.lake_uri,
        online_only=online_only,
        working_copy_registry=working_copy_registry,
    )
    return FeatureStore(repo_path=str(FEATURE_REPO_DIR), config=repo)


def registry_is_shared(profile: str) -> bool:
    """Whether the profile's registry lives outside the working copy (the aws profile's, on S3)."""
    registry = yaml.safe_load(feature_store_yaml(profile).read_text())["registry"]
    return not str(registry["path"]).startswith("${PROPENSITY_HOME}/")

"""`feast plan` or `feast apply` of feature_repo/ against the registry of the profile the settings name, as the
feature-store workflow runs them (`make feast-plan`, `make feast-apply`).

Feast's CLI fills the profile's yaml from the environment: this hands it PROPENSITY_HOME and PROPENSITY_LAKE_URI as
the settings read them, and FEAST_REDIS_CONNECTION_STRING in Feast's form from REDIS_URL (a Secrets Manager reference
resolved by the settings). A plan never connects to the online store; an apply does only to delete the rows of a
feature view that was removed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from propensity.feature_store import FEATURE_REPO_DIR, feast_redis_connection_string, feature_store_yaml
from propensity.settings import SettingsError, settings

TIMEOUT_S = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["plan", "apply"])
    args = parser.parse_args()
    try:
        config = settings()
    except SettingsError as error:
        print(f"[feast] {error}", file=sys.stderr)
        return 2
    environ = dict(
        os.environ,
        PROPENSITY_HOME=str(config.home),
        FEAST_REDIS_CONNECTION_STRING=feast_redis_connection_string(config.redis_url),
    )
    if config.lake_uri:
        environ["PROPENSITY_LAKE_URI"] = config.lake_uri.rstrip("/")
    (config.home / "feast").mkdir(parents=True, exist_ok=True)
    feast = Path(sys.executable).parent / "feast"
    yaml = feature_store_yaml(config.profile)
    print(f"[feast] {args.command} of {FEATURE_REPO_DIR.name}/ with {yaml.name} ({config.profile} profile)", flush=True)
    try:
        done = subprocess.run(
            [str(feast), "-c", str(FEATURE_REPO_DIR), "-f", str(yaml), args.command], env=environ, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        print(
            f"[feast] {args.command} did not finish within {TIMEOUT_S} s: is the registry reachable?", file=sys.stderr
        )
        return 1
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

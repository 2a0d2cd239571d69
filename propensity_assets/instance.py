"""The Dagster instance's `dagster.yaml`, written by what starts Dagster (`make demo`, `make dev`, `make loop`).

Storage is SQLite under DAGSTER_HOME by default, or PostgreSQL when DAGSTER_POSTGRES_URL is set (`make services`
runs one on 127.0.0.1:5432; in production, RDS). The URL carries a password, so it is never written into the file:
the yaml names the variable and Dagster reads it when the instance loads.

`python -m propensity_assets.instance DAGSTER_HOME [--max-concurrent-runs N]` writes the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from propensity.settings import Settings, settings

POSTGRES_URL_VARIABLE = "DAGSTER_POSTGRES_URL"


def instance_config(current: Settings, max_concurrent_runs: int | None = None) -> dict:
    config: dict = {"telemetry": {"enabled": False}}
    if max_concurrent_runs is not None:
        config["run_queue"] = {"max_concurrent_runs": max_concurrent_runs}
    if current.dagster_postgres_url:
        config["storage"] = {"postgres": {"postgres_url": {"env": POSTGRES_URL_VARIABLE}}}
    return config


def write_instance_yaml(dagster_home: Path, current: Settings, max_concurrent_runs: int | None = None) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(yaml.safe_dump(instance_config(current, max_concurrent_runs), sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m propensity_assets.instance", description=__doc__.splitlines()[0])
    parser.add_argument("dagster_home", type=Path)
    parser.add_argument("--max-concurrent-runs", type=int, default=None)
    args = parser.parse_args(argv)
    current = settings()
    path = write_instance_yaml(args.dagster_home, current, args.max_concurrent_runs)
    print(f"[dagster] {path}: {'PostgreSQL ($DAGSTER_POSTGRES_URL)' if current.dagster_postgres_url else 'SQLite'}")


if __name__ == "__main__":
    main()

"""Where local state lives. Everything goes under one directory, `var/` or `$PROPENSITY_HOME` (see settings)."""

from __future__ import annotations

import os
from pathlib import Path

from propensity.settings import PROJECT_ROOT, Settings, settings

__all__ = [
    "PROJECT_ROOT",
    "home",
    "lake_dir",
    "logs_dir",
    "table_dir",
    "storefront_export_dir",
    "table_glob",
    "working_copy_glob",
    "write_text_atomic",
    "LOOP_TIMELINE",
]

# `make loop`'s timeline, beside `make demo`'s summary: the loop's own state (var/loop) is wiped on every run, this is
# what it leaves for the README's table (bench/report.py) and for the reader.
LOOP_TIMELINE = PROJECT_ROOT / "var" / "demo" / "loop.json"


def home(using: Settings | None = None) -> Path:
    """The state directory."""
    return (using or settings()).home


def write_text_atomic(path: Path, text: str) -> None:
    """Write under a temporary name, then rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def lake_dir(using: Settings | None = None) -> Path:
    return home(using) / "lake"


def logs_dir() -> Path:
    """Where library output goes that a console should not show (see `propensity.console`)."""
    return home() / "logs"


def table_dir(table: str, using: Settings | None = None) -> Path:
    """A lake table: a directory of parquet files (Spark writes part files, pandas writes one file)."""
    return lake_dir(using) / table


def table_glob(table: str, using: Settings | None = None) -> str:
    """The glob a Feast file source names for a lake table: where the lake of record keeps it (s3://... on the aws
    profile, whose offline reads go through `working_copy_glob`; see propensity.feature_store)."""
    config = using or settings()
    if config.lake_uri:
        return f"{config.lake_uri.rstrip('/')}/{table}/*.parquet"
    return working_copy_glob(table, config)


def working_copy_glob(table: str, using: Settings | None = None) -> str:
    """The glob of a lake table in this machine's working copy: what Feast's DuckDB offline store reads."""
    return str(table_dir(table, using) / "*.parquet")


def storefront_export_dir(using: Settings | None = None) -> Path:
    """Where the storefront drops each closed day's events as contract-v1 JSON lines (`<YYYY-MM-DD>.jsonl`, written
    whole, then renamed); the `storefront_export_sensor` ingests each new file."""
    return home(using) / "storefront" / "export"

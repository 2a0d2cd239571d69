"""Where local state lives. Everything goes under one directory, `var/` or `$PROPENSITY_HOME`."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_DIR = Path(os.environ.get("PROPENSITY_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def home() -> Path:
    """The state directory; exported to the environment so Feast's yaml `${PROPENSITY_HOME}` resolves."""
    path = Path(os.environ.get("PROPENSITY_HOME", PROJECT_ROOT / "var")).resolve()
    os.environ["PROPENSITY_HOME"] = str(path)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write under a temporary name, then rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def lake_dir() -> Path:
    return home() / "lake"


def table_dir(table: str) -> Path:
    """A lake table: a directory of parquet files (Spark writes part files, pandas writes one file)."""
    return lake_dir() / table


def table_glob(table: str) -> str:
    """The glob Feast's DuckDB offline store reads a lake table with."""
    return str(table_dir(table) / "*.parquet")

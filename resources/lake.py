"""The lake: parquet tables under $PROPENSITY_HOME/lake (S3 in production)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from propensity.paths import table_dir


class LakeResource(dg.ConfigurableResource):
    """Where each table lives and how a whole table is replaced."""

    def table_dir(self, table: str) -> Path:
        return table_dir(table)

    def read_frame(self, table: str) -> pd.DataFrame:
        """A whole table in pandas, timestamps as UTC (naive timestamps in the lake are UTC by contract)."""
        path = table_dir(table)
        if not path.exists():
            raise dg.Failure(f"lake table {table} is missing at {path}: materialise it first")
        frame = pd.read_parquet(path)
        for column in frame.select_dtypes(include=["datetime64"]).columns:
            frame[column] = frame[column].dt.tz_localize("UTC")
        return frame

    def replace_dir(self, table: str) -> Path:
        """An empty directory for a full rewrite of `table` (recomputed assets are idempotent)."""
        path = table_dir(table)
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

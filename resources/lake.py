"""The lake as assets use it (propensity.lake): `pull` a table before reading it, `replace` a table or partition
whole, write one file whole. `LakeResource` is the local lake under $PROPENSITY_HOME/lake; `S3LakeResource` (the aws
profile) keeps the lake of record on S3 through dagster-aws's S3Resource and that directory as its working copy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from propensity.lake import Lake, S3Lake
from propensity.paths import lake_dir


class LakeResource(dg.ConfigurableResource):
    """The local lake: the working copy is the lake."""

    _lake: Lake | None = PrivateAttr(default=None)

    def lake(self) -> Lake:
        """Built once per resource (on S3 with its client)."""
        if self._lake is None:
            self._lake = self._build()
        return self._lake

    def _build(self) -> Lake:
        return Lake(lake_dir())

    def path(self, table: str, *parts: str) -> Path:
        """Where the table (or a partition, or a file) is in the working copy; nothing is fetched."""
        return self.lake().path(table, *parts)

    def pull(self, table: str, *parts: str) -> Path:
        """The table (or partition) as the lake holds it now, in the working copy; the path may not exist when the
        lake has no such table."""
        return self.lake().pull(table, *parts)

    def pull_table(self, table: str) -> Path:
        """`pull`, for a table that must exist: a failure that says which and where when it does not."""
        path = self.pull(table)
        if not path.exists():
            raise dg.Failure(f"lake table {table} is missing at {self.lake().describe(table)}: materialise it first")
        return path

    def read_frame(self, table: str) -> pd.DataFrame:
        """A whole table in pandas, timestamps as UTC (naive timestamps in the lake are UTC by contract)."""
        frame = pd.read_parquet(self.pull_table(table))
        for column in frame.select_dtypes(include=["datetime64"]).columns:
            frame[column] = frame[column].dt.tz_localize("UTC")
        return frame

    @contextmanager
    def replace(self, table: str, *parts: str) -> Iterator[Path]:
        """An empty directory for the whole new content of the table (or partition): it takes the old content's
        place when the block ends without an error (recomputed assets are idempotent)."""
        with self.lake().replace(table, *parts) as staging:
            yield staging

    @contextmanager
    def writing_file(self, table: str, *parts: str) -> Iterator[Path]:
        """A scratch path for one file of the table, which replaces the file when the block ends without an error."""
        with self.lake().writing_file(table, *parts) as scratch:
            yield scratch

    def remove_matching(self, table: str, pattern: str) -> list[str]:
        return self.lake().remove_matching(table, pattern)


class S3LakeResource(LakeResource):
    """The aws profile's lake: `uri` (s3://bucket/prefix, PROPENSITY_LAKE_URI) is the lake of record, reached with
    the client of `s3` (dagster-aws: region, endpoint, credentials, retries; botocore's connect and read timeouts,
    60 s each, bound every call)."""

    uri: str
    s3: S3Resource

    def _build(self) -> Lake:
        return S3Lake(lake_dir(), self.uri, self.s3.get_client())

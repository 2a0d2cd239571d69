"""SageMaker Data Capture: where an endpoint's captured requests and responses land in S3, and reading a day of them.

SageMaker writes JSON lines (one record per invocation: `captureData.endpointInput` / `endpointOutput` with `data`
and `encoding`, `eventMetadata.eventId` and `inferenceTime`) under
`{destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl`, the hour folders in UTC. Our endpoints capture to
`capture_destination(bucket)`, with input and output captured and application/json listed as a JSON content type,
so bodies are stored as JSON text rather than base64 (the reader decodes either).

A file is filed under one hour but can hold records from either side of it, so a day's read takes the day's folders
and the hour on each side (the day before's 23, the day after's 00), and the caller keeps the records whose
inferenceTime falls in the day (`propensity.monitoring.decisions.on_day`). Every S3 call has connect and read
timeouts and bounded retries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

CAPTURE_PREFIX = "propensity/data-capture"
CALL_TIMEOUT_S = 10
MAX_ATTEMPTS = 3


def capture_destination(bucket: str, prefix: str = CAPTURE_PREFIX) -> str:
    """The DataCaptureConfig DestinationS3Uri our endpoints capture to."""
    return f"s3://{bucket}/{prefix.strip('/')}"


@dataclass
class DataCaptureReader:
    bucket: str
    region: str
    prefix: str = CAPTURE_PREFIX
    _s3: Any = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings) -> "DataCaptureReader":
        values = settings.sagemaker.values
        return cls(bucket=values["bucket"], region=values["region"])

    def with_client(self, s3) -> "DataCaptureReader":
        """Use this boto3 S3 client (tests: moto) instead of one built from the configuration."""
        self._s3 = s3
        return self

    def _client(self):
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            config = Config(
                region_name=self.region,
                connect_timeout=CALL_TIMEOUT_S,
                read_timeout=CALL_TIMEOUT_S,
                retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            )
            self._s3 = boto3.client("s3", config=config)
        return self._s3

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict]:
        paginator = self._client().get_paginator("list_objects_v2")
        options = {"Bucket": self.bucket, "Prefix": prefix} | ({"Delimiter": delimiter} if delimiter else {})
        for page in paginator.paginate(**options):
            yield from page.get("CommonPrefixes", []) if delimiter else page.get("Contents", [])

    def variants(self, endpoint: str) -> list[str]:
        """The variants that have captured anything for this endpoint."""
        root = f"{self.prefix.strip('/')}/{endpoint}/"
        return sorted(common["Prefix"][len(root) :].strip("/") for common in self._list(root, delimiter="/"))

    def object_keys(self, endpoint: str, day: date) -> list[str]:
        """The capture objects of every variant for the UTC day, with the hours either side of it (the day
        before's last, the day after's first): a file can straddle the hour it is filed under."""
        before, after = day - timedelta(days=1), day + timedelta(days=1)
        keys = []
        for variant in self.variants(endpoint):
            root = f"{self.prefix.strip('/')}/{endpoint}/{variant}/"
            for folder in (f"{before:%Y/%m/%d}/23/", f"{day:%Y/%m/%d}/", f"{after:%Y/%m/%d}/00/"):
                keys += [o["Key"] for o in self._list(root + folder)]
        return sorted(key for key in keys if key.endswith(".jsonl"))

    def records(self, endpoint: str, day: date) -> Iterator[dict | bytes]:
        """Every capture record of the day's objects, in key order, parsed; a line that is not JSON comes as its
        raw bytes, for the decision log to quarantine with its reason (one bad line never hides the rest)."""
        for key in self.object_keys(endpoint, day):
            body = self._client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
            for line in body.splitlines():
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except (ValueError, RecursionError):
                    yield line

"""A canary's live traffic on the local endpoint runtime, read from the endpoint's inference log.

The log is what the variants actually answered, one JSON line per scored row or failed request (serving/server.py).
A canary's observations start at the log's size when it started (the offset its in-progress record keeps), so a
sensor in another process reads exactly the canary's period, the champion's rows on the same traffic included.
"""

from __future__ import annotations

import json
from pathlib import Path

from serving.control.deployment import CanaryTraffic, VariantTraffic, p99


class LogTail:
    """New JSON lines of an inference log since a byte offset (a deployment reads only its own period)."""

    def __init__(self, path: Path, offset: int | None = None):
        self.path = Path(path)
        self.offset = self.path.stat().st_size if offset is None and self.path.exists() else (offset or 0)
        self.records: list[dict] = []

    def poll(self) -> list[dict]:
        if not self.path.exists():
            return self.records
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self.offset += len(complete)
        self.records.extend(json.loads(line) for line in complete.splitlines() if line.strip())
        return self.records


def variant_traffic(records: list[dict], variant: str) -> VariantTraffic:
    """One variant's requests, 5xx answers, scores and p99 latency. A batch request logs one row per session under
    one request id: it is one request with one latency, and each of its rows is a score."""
    seen: set[str] = set()
    traffic = VariantTraffic()
    latencies: list[float] = []
    for r in records:
        if r.get("variant") != variant:
            continue
        first_row_of_request = r["request_id"] not in seen
        seen.add(r["request_id"])
        if first_row_of_request:
            traffic.requests += 1
        status = r.get("status", 200)
        if status >= 500:
            traffic.server_errors += 1
        elif status == 200:
            if first_row_of_request:
                latencies.append(r["latency_ms"])
            traffic.scores.append(float(r["propensity"]))
            traffic.sessions.append(r["session_id"])
    traffic.p99_ms = p99(latencies)
    return traffic


def log_traffic(path: Path, offset: int, canary: str, champion: str) -> CanaryTraffic:
    records = LogTail(path, offset).poll()
    return CanaryTraffic(canary=variant_traffic(records, canary), champion=variant_traffic(records, champion))

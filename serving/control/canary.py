"""Canary deployment on the local endpoint runtime: shift traffic by weights, watch alarms, promote or roll back.

The alarms read the endpoint's inference log (what the variants actually answered) from the moment the canary
started, so they judge the canary on live traffic next to the champion on the same traffic:
- error rate: the canary's 5xx answers over its requests (4xx are the caller's fault and do not count);
- p99 latency of the canary's successful requests, in ms;
- score shift: population stability index of the canary's scores against the champion's (10 bins on the
  champion's deciles), less its expected value between two samples of one distribution, (bins - 1)(1/n + 1/m):
  with 30 canary rows that bias alone is ~0.3, above the usual 0.25 alarm level;
- calibration on observed outcomes: |mean predicted - observed purchase rate| over the canary's scored sessions
  whose outcome is known, beyond `max_calibration_gap` plus two standard errors (so a small sample cannot trip it
  by chance).
Distribution, latency and calibration alarms need `min_requests` observations; the error alarm fires as soon as
three errors exceed the rate, so a canary that fails every request goes back within one check. No traffic means no
alarm (SageMaker behaves the same); the record says how much the canary saw.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving.control.deployment import CanaryPolicy, DeploymentRecord, append_history, utc_now
from serving.endpoint_state import VariantSpec

Outcomes = Callable[[Iterable[str]], dict[str, bool]]  # session ids -> did the session purchase (known ones only)
CHECK_INTERVAL_S = 0.5


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


@dataclass
class VariantObservation:
    requests: int = 0
    server_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.server_errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float | None:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else None


def observe(records: list[dict], variant: str) -> VariantObservation:
    seen: set[str] = set()
    obs = VariantObservation()
    for r in records:
        if r.get("variant") != variant:
            continue
        first_row_of_request = r["request_id"] not in seen
        seen.add(r["request_id"])
        if first_row_of_request:
            obs.requests += 1
        status = r.get("status", 200)
        if status >= 500:
            obs.server_errors += 1
        elif status == 200:
            if first_row_of_request:
                obs.latencies_ms.append(r["latency_ms"])
            obs.scores.append(r["propensity"])
            obs.sessions.append(r["session_id"])
    return obs


PSI_BINS = 10


def population_stability_index(expected: list[float], actual: list[float], bins: int = PSI_BINS) -> float:
    """PSI of `actual` against `expected` on `expected`'s quantile bins; 0.1 is a small shift, 0.25 a large one."""
    expected_arr, actual_arr = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    edges = np.unique(np.quantile(expected_arr, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected_arr, side="right"), minlength=len(edges) + 1) / len(expected_arr)
    a = np.bincount(np.searchsorted(edges, actual_arr, side="right"), minlength=len(edges) + 1) / len(actual_arr)
    # Half a count added to every bin: an empty bin in a small sample would otherwise make the index explode.
    e = (e * len(expected_arr) + 0.5) / (len(expected_arr) + 0.5 * len(e))
    a = (a * len(actual_arr) + 0.5) / (len(actual_arr) + 0.5 * len(a))
    return float(np.sum((a - e) * np.log(a / e)))


def check_alarms(
    policy: CanaryPolicy, canary: VariantObservation, champion: VariantObservation | None, outcomes: Outcomes | None
) -> tuple[list[str], dict]:
    """The alarms that fire (as reasons) and everything measured."""
    alarms: list[str] = []
    measured: dict = {
        "canary_requests": canary.requests,
        "canary_5xx": canary.server_errors,
        "champion_requests": champion.requests if champion else None,
    }
    enough = canary.requests >= policy.min_requests

    if (enough or canary.server_errors >= 3) and canary.error_rate > policy.max_error_rate:
        alarms.append(
            f"error rate {canary.error_rate:.1%} > {policy.max_error_rate:.1%} "
            f"({canary.server_errors} of {canary.requests} requests)"
        )
    measured["error_rate"] = round(canary.error_rate, 5)

    if enough and canary.p99_ms is not None:
        measured["p99_ms"] = round(canary.p99_ms, 3)
        if canary.p99_ms > policy.max_p99_latency_ms:
            alarms.append(f"p99 latency {canary.p99_ms:.1f} ms > {policy.max_p99_latency_ms:.1f} ms")

    if (
        champion is not None
        and len(canary.scores) >= policy.min_requests
        and len(champion.scores) >= policy.min_requests
    ):
        psi = population_stability_index(champion.scores, canary.scores)
        excess = psi - (PSI_BINS - 1) * (1 / len(canary.scores) + 1 / len(champion.scores))  # less sampling noise
        measured.update(score_psi=round(psi, 4), score_psi_excess=round(excess, 4))
        if excess > policy.max_score_psi:
            alarms.append(
                f"score distribution shift: PSI {psi:.3f} against the champion "
                f"({excess:.3f} beyond sampling noise) > {policy.max_score_psi}"
            )

    if outcomes is not None and canary.sessions:
        known = outcomes(set(canary.sessions))
        pairs = [(p, known[s]) for p, s in zip(canary.scores, canary.sessions) if s in known]
        measured["rows_with_outcome"] = len(pairs)
        if len(pairs) >= policy.min_requests:
            predicted = float(np.mean([p for p, _ in pairs]))
            observed = float(np.mean([y for _, y in pairs]))
            tolerance = policy.max_calibration_gap + 2 * math.sqrt(max(predicted * (1 - predicted), 1e-6) / len(pairs))
            measured.update(mean_predicted=round(predicted, 4), observed_rate=round(observed, 4))
            if abs(predicted - observed) > tolerance:
                alarms.append(
                    f"calibration: mean predicted {predicted:.3f} vs observed purchase rate {observed:.3f} over "
                    f"{len(pairs)} rows (tolerance {tolerance:.3f})"
                )
    return alarms, measured


def asked_once(outcomes: Outcomes | None) -> Outcomes | None:
    """Outcomes looked up once per session for one deployment: the alarms poll every half second, the lake changes
    daily."""
    if outcomes is None:
        return None
    known: dict[str, bool] = {}
    asked: set[str] = set()

    def lookup(session_ids: Iterable[str]) -> dict[str, bool]:
        wanted = set(session_ids)
        new = wanted - asked
        if new:
            known.update(outcomes(new))
            asked.update(new)
        return {s: known[s] for s in wanted if s in known}

    return lookup


class CanaryRun:
    """One deployment of `model_version` on an endpoint of the local runtime (see `serving.endpoint`)."""

    def __init__(
        self,
        files,
        policy: CanaryPolicy,
        outcomes: Outcomes | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.files = files
        self.policy = policy
        self.outcomes = outcomes
        self.sleep = sleep
        self.clock = clock

    def _record(
        self, model_version: str, outcome: str, reason: str, started_at: str, observations: dict
    ) -> DeploymentRecord:
        record = DeploymentRecord(
            endpoint=self.files.name,
            model_version=model_version,
            outcome=outcome,
            reason=reason,
            started_at=started_at,
            finished_at=utc_now() if outcome != "in_progress" else None,
            variants=self.files.read_variants(),
            observations=observations,
            deployer="local",
        )
        append_history(self.files.history, record)
        return record

    def deploy(self, model_version: str) -> DeploymentRecord:
        started_at = utc_now()
        current = self.files.read_variants()
        new = model_version  # a variant is named after the version it serves (registry versions fit SageMaker's rule)
        if not current:
            self.files.write_variants([VariantSpec(new, model_version, 1.0)])
            return self._record(
                model_version, "deployed", "first deployment on the endpoint: all traffic", started_at, {}
            )
        champion = max(current, key=lambda v: v.weight)
        if champion.model_version == model_version and len(current) == 1:
            return self._record(
                model_version, "deployed", "already serving this version: nothing to do", started_at, {}
            )

        tail = LogTail(self.files.inference_log)
        outcomes = asked_once(self.outcomes)
        share = self.policy.canary_share
        self.files.write_variants(
            [VariantSpec(champion.name, champion.model_version, 1.0 - share), VariantSpec(new, model_version, share)]
        )
        self._record(
            model_version, "in_progress", f"canary at {share:.0%} next to {champion.model_version}", started_at, {}
        )
        observations: dict = {}
        steps = [(share, self.policy.baking_s)]
        if self.policy.shift == "linear":
            while steps[-1][0] < 1.0:
                steps.append(
                    (min(1.0, round(steps[-1][0] + self.policy.linear_step_share, 9)), self.policy.linear_step_baking_s)
                )
        for i, (step_share, baking_s) in enumerate(steps):
            if i > 0 and step_share < 1.0:
                self.files.write_variants(
                    [
                        VariantSpec(champion.name, champion.model_version, 1.0 - step_share),
                        VariantSpec(new, model_version, step_share),
                    ]
                )
            if step_share >= 1.0:
                break  # full traffic: nothing left to compare against
            alarms, measured = self._bake(tail, new, champion.name, baking_s, outcomes)
            observations[f"{step_share:.0%}"] = measured
            if alarms:
                self.files.write_variants([VariantSpec(champion.name, champion.model_version, 1.0)])
                return self._record(model_version, "rolled_back", "; ".join(alarms), started_at, observations)
        self.files.write_variants([VariantSpec(new, model_version, 1.0)])
        seen = max((m["canary_requests"] for m in observations.values()), default=0)
        note = (
            ""
            if seen >= self.policy.min_requests
            else f" (only {seen} canary requests: too little traffic to judge score shift or calibration)"
        )
        return self._record(
            model_version, "promoted", f"no alarm while baking ({self.policy.shift}){note}", started_at, observations
        )

    def _bake(
        self, tail: LogTail, canary: str, champion: str, baking_s: float, outcomes: Outcomes | None
    ) -> tuple[list[str], dict]:
        deadline = self.clock() + baking_s
        while True:
            records = tail.poll()
            alarms, measured = check_alarms(self.policy, observe(records, canary), observe(records, champion), outcomes)
            if alarms or self.clock() >= deadline:
                return alarms, measured
            self.sleep(min(CHECK_INTERVAL_S, max(0.0, deadline - self.clock())))

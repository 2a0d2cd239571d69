"""What a deployment is, whoever carries it out: the canary policy, the record of each stage, the state of a canary in
progress, and the interface both deployers implement (the local endpoint runtime in `serving/control/endpoint.py`,
SageMaker in `serving/control/sagemaker.py`).

A deployment puts a registered model version on a named endpoint, in stages, each one appended to the endpoint's
history with its numbers:
- `deploy`: the first deployment on an endpoint takes all traffic at once ("deployed"); later ones start a canary, the
  new variant at `canary_share` next to the champion ("in_progress"), and return. Nothing bakes here.
- `observe`: both variants' live traffic since the canary started (requests, 5xx, scores, sessions, p99 latency).
- `shift` (linear steps), `promote`, `roll_back`: traffic moves; the judge (`serving/control/judge.py`) decides which,
  at every look, and a sensor in another process drives it. The in-progress record carries the canary's state (its
  policy, when it and its current step started, where its observations start), so any process can resume it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from serving.endpoint_state import VariantSpec

Shift = Literal["all_at_once", "linear"]
Outcome = Literal["deployed", "promoted", "rolled_back", "in_progress", "failed"]
Stage = Literal["deploy", "start_canary", "shift", "promote", "roll_back", ""]


@dataclass(frozen=True)
class CanaryPolicy:
    canary_share: float = 0.1
    baking_s: float = 60.0  # the canary's first bake; it is promoted (or shifted) only after this, with no alarm
    shift: Shift = "all_at_once"
    linear_step_share: float = 0.3  # share moved per linear step
    linear_step_baking_s: float = 30.0
    min_requests: int = 100  # canary requests needed before it may move on: too thin a sample judges nothing
    # Always-valid sequential tests of canary against champion on the same traffic (serving/control/judge.py).
    # alpha is the false-rollback rate of a quiet canary over all looks and all three tests together.
    alpha: float = 0.05
    error_rate_tolerance: float = 0.0  # canary's 5xx share may exceed the champion's by this much
    score_tolerance: float = 0.02  # |mean score difference| within this band is no shift
    logloss_tolerance: float = 0.0  # canary's per-row log-loss may exceed the champion's by this much
    # Mixture widths: the effect size each test finds fastest (any value keeps alpha; only the speed changes).
    tau_error: float = 0.01
    tau_score: float = 0.02
    tau_logloss: float = 0.02
    max_p99_latency_ms: float = 50.0  # a plain alarm on the canary's p99, once it has min_requests
    max_error_rate: float = 0.01  # SageMaker blue/green only: its own CloudWatch alarm on the new fleet's 5xx share

    def __post_init__(self):
        if not 0.0 < self.canary_share < 1.0:
            raise ValueError(f"canary_share must be in (0, 1), got {self.canary_share}")
        if not 0.0 < self.linear_step_share <= 1.0:
            raise ValueError(f"linear_step_share must be in (0, 1], got {self.linear_step_share}")
        if self.shift not in ("all_at_once", "linear"):
            raise ValueError(f"shift must be 'all_at_once' or 'linear', got {self.shift!r}")
        if self.baking_s < 0 or self.linear_step_baking_s < 0:
            raise ValueError("baking periods cannot be negative")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if min(self.tau_error, self.tau_score, self.tau_logloss) <= 0:
            raise ValueError("tau_error, tau_score and tau_logloss must be positive")
        if min(self.error_rate_tolerance, self.score_tolerance, self.logloss_tolerance) < 0:
            raise ValueError("tolerances cannot be negative")

    def next_share(self, share: float) -> float:
        """The canary's share after the bake at `share`: 1.0 (promotion) unless the policy shifts linearly."""
        if self.shift != "linear":
            return 1.0
        return min(1.0, round(share + self.linear_step_share, 9))


@dataclass(frozen=True)
class CanaryState:
    """A canary in progress, as its in-progress record keeps it (so a sensor in another process resumes it)."""

    model_version: str
    variant: str
    champion_version: str
    champion_variant: str
    share: float
    step: int  # 0 while at canary_share, then one more per linear shift
    started_at: float  # unix seconds: observations count from here
    step_started_at: float  # unix seconds: the current step bakes from here
    policy: CanaryPolicy
    cursor: dict = field(default_factory=dict)  # where the deployer's observations start (local: the log offset)

    def baking_s(self) -> float:
        return self.policy.baking_s if self.step == 0 else self.policy.linear_step_baking_s

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> "CanaryState":
        return cls(**{**payload, "policy": CanaryPolicy(**payload["policy"])})

    def shifted(self, share: float, now: float) -> "CanaryState":
        return replace(self, share=share, step=self.step + 1, step_started_at=now)


@dataclass
class VariantTraffic:
    """One variant's live traffic since the canary started."""

    requests: int = 0
    server_errors: int = 0  # 5xx only: a 4xx is the caller's fault
    scores: list[float] = field(default_factory=list)  # calibrated scores served, one per scored row
    sessions: list[str] = field(default_factory=list)  # the session of each score
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.server_errors / self.requests if self.requests else 0.0


def p99(latencies_ms: list[float]) -> float | None:
    return float(np.percentile(latencies_ms, 99)) if latencies_ms else None


@dataclass(frozen=True)
class CanaryTraffic:
    canary: VariantTraffic
    champion: VariantTraffic


@dataclass
class DeploymentRecord:
    endpoint: str
    model_version: str
    outcome: Outcome
    reason: str
    started_at: str
    finished_at: str | None = None
    variants: list[VariantSpec] = field(default_factory=list)  # the endpoint's variants afterwards
    observations: dict = field(default_factory=dict)  # the stage's numbers; "canary": the state while in progress
    deployer: str = "local"
    stage: Stage = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> "DeploymentRecord":
        payload = dict(payload)
        payload["variants"] = [VariantSpec(**v) for v in payload.get("variants", [])]
        return cls(**payload)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def append_history(path: Path, record: DeploymentRecord) -> None:
    """Deployment history: one JSON line per record, appended (the audit trail is never rewritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record.as_dict(), sort_keys=True) + "\n")


def read_history(path: Path) -> list[DeploymentRecord]:
    if not path.exists():
        return []
    return [DeploymentRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def canary_in_progress(history: list[DeploymentRecord]) -> CanaryState | None:
    """The canary the last record left in progress, if any (a finished stage ends it)."""
    if not history:
        return None
    last = history[-1]
    if last.outcome != "in_progress" or "canary" not in last.observations:
        return None
    return CanaryState.from_dict(last.observations["canary"])


class Deployer(Protocol):
    """The stages of a deployment; the `propensity_endpoint` asset starts one, the canary sensor drives the rest."""

    def deploy(self, endpoint: str, model_dir: Path, model_version: str, policy: CanaryPolicy) -> DeploymentRecord:
        """Put `model_version` (an artifact directory with a verified manifest) on `endpoint`: all traffic on a new
        endpoint ("deployed"), otherwise a canary at `policy.canary_share` ("in_progress"). Returns at once."""
        ...

    def canary(self, endpoint: str) -> CanaryState | None:
        """The canary in progress on the endpoint, if any."""
        ...

    def observe(self, endpoint: str, canary: CanaryState, now: float | None = None) -> CanaryTraffic:
        """Canary and champion live traffic since the canary started."""
        ...

    def shift(
        self, endpoint: str, share: float, reason: str, numbers: dict, now: float | None = None
    ) -> DeploymentRecord:
        """Move the canary to `share` of traffic (a linear step); still in progress."""
        ...

    def promote(self, endpoint: str, reason: str, numbers: dict) -> DeploymentRecord:
        """All traffic to the canary."""
        ...

    def roll_back(self, endpoint: str, reason: str, numbers: dict) -> DeploymentRecord:
        """All traffic back to the champion."""
        ...

    def endpoints(self) -> list[str]:
        """The endpoints this deployer has a history for."""
        ...

    def variants(self, endpoint: str) -> list[VariantSpec]:
        """The endpoint's production variants now ([] when it does not exist)."""
        ...

    def history(self, endpoint: str) -> list[DeploymentRecord]:
        """Every stage of every deployment on the endpoint, oldest first."""
        ...

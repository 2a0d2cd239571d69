"""What a deployment is, whoever carries it out: the canary policy, the record of each deployment, and the
interface both deployers implement (the local endpoint runtime in `serving/control/endpoint.py`, SageMaker in
`serving/control/sagemaker.py`).

A deployment puts a registered model version on a named endpoint. The first one on an endpoint takes all traffic.
Later ones arrive as a canary: the new variant gets `canary_share` of traffic for `baking_s`, while alarms watch it
(error rate, p99 latency, score distribution against the champion, calibration against observed outcomes); then
traffic shifts all at once or in linear steps (each step baked and watched again), and the old variant leaves. Any
alarm rolls traffic back to the champion. Every deployment, promotion and rollback is recorded with its reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Protocol

from serving.endpoint_state import VariantSpec

Shift = Literal["all_at_once", "linear"]
Outcome = Literal["deployed", "promoted", "rolled_back", "in_progress", "failed"]


@dataclass(frozen=True)
class CanaryPolicy:
    canary_share: float = 0.1
    baking_s: float = 60.0
    shift: Shift = "all_at_once"
    linear_step_share: float = 0.3  # share moved per linear step
    linear_step_baking_s: float = 30.0
    # Alarms, checked on the canary's own traffic during every baking period.
    max_error_rate: float = 0.01
    max_p99_latency_ms: float = 50.0
    max_score_psi: float = 0.25  # population stability index of the canary's scores against the champion's
    max_calibration_gap: float = 0.05  # |mean predicted - observed purchase rate| on sessions with known outcomes
    min_requests: int = 100  # below this the latency, distribution and calibration alarms have too little to judge

    def __post_init__(self):
        if not 0.0 < self.canary_share < 1.0:
            raise ValueError(f"canary_share must be in (0, 1), got {self.canary_share}")
        if not 0.0 < self.linear_step_share <= 1.0:
            raise ValueError(f"linear_step_share must be in (0, 1], got {self.linear_step_share}")
        if self.shift not in ("all_at_once", "linear"):
            raise ValueError(f"shift must be 'all_at_once' or 'linear', got {self.shift!r}")
        if self.baking_s < 0 or self.linear_step_baking_s < 0:
            raise ValueError("baking periods cannot be negative")


@dataclass
class DeploymentRecord:
    endpoint: str
    model_version: str
    outcome: Outcome
    reason: str
    started_at: str
    finished_at: str | None = None
    variants: list[VariantSpec] = field(default_factory=list)  # the endpoint's variants afterwards
    observations: dict = field(default_factory=dict)  # what the alarms measured, per baking period
    deployer: str = "local"

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


class Deployer(Protocol):
    """The interface the `propensity_endpoint` asset calls; the local runtime and SageMaker both implement it."""

    def deploy(self, endpoint: str, model_dir: Path, model_version: str, policy: CanaryPolicy) -> DeploymentRecord:
        """Put `model_version` (an artifact directory with a verified manifest) on `endpoint`."""
        ...

    def variants(self, endpoint: str) -> list[VariantSpec]:
        """The endpoint's production variants now ([] when it does not exist)."""
        ...

    def history(self, endpoint: str) -> list[DeploymentRecord]:
        """Every deployment, promotion and rollback on the endpoint, oldest first."""
        ...

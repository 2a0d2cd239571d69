"""The canary judge: at every look, canary against champion on the same live traffic, then roll back, shift, promote or
wait. It runs in the control plane (no Dagster); `sensors/canary.py` calls it at every tick.

Three always-valid tests (normal-mixture confidence sequences, `propensity.monitoring.sequential`; Lindon et al.,
KDD 2022), so looking every few seconds does not raise the false-rollback rate:
- error rate: the canary's 5xx share minus the champion's; alarm when the sequence lies wholly above
  `error_rate_tolerance`;
- score shift: mean calibrated score, canary minus champion; alarm when the sequence lies wholly outside
  +/- `score_tolerance` (a shift within the band is no shift, so a quiet canary can never trip it by sample size);
- log-loss on rows whose session outcome is known: per-row log-loss, canary minus champion; alarm when the sequence
  lies wholly above `logloss_tolerance`.
Each test runs at alpha / 3 (Bonferroni), so a quiet canary is rolled back with probability at most alpha over all
looks and tests together. The score and log-loss tests wait for MIN_ROWS rows per arm: the mixture's guarantee is
asymptotic, with variances estimated from the data, and a handful of rows estimates a variance badly (a 5 %
purchase rate gives about one positive in 30 rows). The p99 latency of the canary is a plain threshold, checked
once it has `min_requests`.

A canary is promoted (or shifted one linear step) once its step has baked `baking_s` with no alarm and it has served
`min_requests`; with fewer, it waits and the reason says how thin the traffic is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from propensity.models.metrics import row_log_loss
from propensity.monitoring.sequential import Interval, Summary, difference_sequence
from serving.control.deployment import CanaryPolicy, CanaryState, CanaryTraffic, Deployer, DeploymentRecord

Outcomes = Callable[[Iterable[str]], dict[str, bool]]  # session ids -> did the session purchase (known ones only)
Decision = Literal["promote", "roll_back", "continue", "shift", "none"]
TESTS = 3  # error rate, score shift, log-loss: alpha is split between them
MIN_ROWS = 100  # rows per arm before the score or log-loss test may alarm


@dataclass(frozen=True)
class ArmStats:
    """What the sequential tests need of one variant: its 5xx stream, score stream and log-loss stream."""

    errors: Summary
    scores: Summary
    log_loss: Summary

    @classmethod
    def of(cls, requests: int, server_errors: int, scores, log_losses) -> "ArmStats":
        return cls(Summary.of_proportion(server_errors, requests), Summary.of(scores), Summary.of(log_losses))


def row_log_losses(scores: list[float], sessions: list[str], known: dict[str, bool]) -> np.ndarray:
    pairs = [(p, known[s]) for p, s in zip(scores, sessions) if s in known]
    if not pairs:
        return np.empty(0)
    p, y = np.array(pairs, dtype=float).T
    return row_log_loss(y, p)


def _interval(interval: Interval) -> dict:
    """JSON numbers only (an interval without data is unbounded: null)."""
    return {k: (v if math.isfinite(v) else None) for k, v in interval.as_dict().items()}


def sequential_alarms(policy: CanaryPolicy, canary: ArmStats, champion: ArmStats) -> tuple[list[str], dict]:
    """The statistical core, the same for live traffic and the benchmark's simulated streams: the alarms that fire
    (as reasons) and each test's interval."""
    alpha = policy.alpha / TESTS
    error = difference_sequence(canary.errors, champion.errors, policy.tau_error, alpha)
    score = difference_sequence(canary.scores, champion.scores, policy.tau_score, alpha)
    loss = difference_sequence(canary.log_loss, champion.log_loss, policy.tau_logloss, alpha)
    alarms: list[str] = []
    if error.low > policy.error_rate_tolerance:
        alarms.append(
            f"error rate {canary.errors.mean:.2%} against the champion's {champion.errors.mean:.2%} "
            f"(difference at least {error.low:.2%} > {policy.error_rate_tolerance:.2%})"
        )
    if min(canary.scores.n, champion.scores.n) >= MIN_ROWS and (
        score.low > policy.score_tolerance or score.high < -policy.score_tolerance
    ):
        alarms.append(
            f"score shift: mean {canary.scores.mean:.4f} against the champion's {champion.scores.mean:.4f} "
            f"(difference in [{score.low:+.4f}, {score.high:+.4f}], outside +/-{policy.score_tolerance})"
        )
    if min(canary.log_loss.n, champion.log_loss.n) >= MIN_ROWS and loss.low > policy.logloss_tolerance:
        alarms.append(
            f"log-loss {canary.log_loss.mean:.4f} against the champion's {champion.log_loss.mean:.4f} on "
            f"{canary.log_loss.n} and {champion.log_loss.n} rows with outcomes "
            f"(difference at least {loss.low:+.4f} > {policy.logloss_tolerance})"
        )
    numbers = {
        "alpha_per_test": round(alpha, 6),
        "error_rate": {"canary": round(canary.errors.mean, 6), "champion": round(champion.errors.mean, 6)},
        "error_rate_difference": _interval(error),
        "mean_score": {"canary": round(canary.scores.mean, 6), "champion": round(champion.scores.mean, 6)},
        "score_difference": _interval(score),
        "rows_with_outcome": {"canary": canary.log_loss.n, "champion": champion.log_loss.n},
        "log_loss_difference": _interval(loss),
    }
    return alarms, numbers


def decide(
    state: CanaryState, traffic: CanaryTraffic, known: dict[str, bool], now: float
) -> tuple[Decision, str, dict]:
    """The decision at one look, with its reason and numbers (no side effect)."""
    policy = state.policy
    canary, champion = traffic.canary, traffic.champion
    arms = [
        ArmStats.of(t.requests, t.server_errors, t.scores, row_log_losses(t.scores, t.sessions, known))
        for t in (canary, champion)
    ]
    alarms, numbers = sequential_alarms(policy, *arms)
    baked_s = max(0.0, now - state.step_started_at)
    numbers = {
        "model_version": state.model_version,
        "champion_version": state.champion_version,
        "share": state.share,
        "step": state.step,
        "baked_s": round(baked_s, 3),
        "baking_s": state.baking_s(),
        "canary_requests": canary.requests,
        "champion_requests": champion.requests,
        "canary_5xx": canary.server_errors,
        "champion_5xx": champion.server_errors,
        "canary_p99_ms": None if canary.p99_ms is None else round(canary.p99_ms, 3),
        **numbers,
    }
    enough = canary.requests >= policy.min_requests
    if enough and canary.p99_ms is not None and canary.p99_ms > policy.max_p99_latency_ms:
        alarms.append(f"p99 latency {canary.p99_ms:.1f} ms > {policy.max_p99_latency_ms:.1f} ms")
    if alarms:
        return "roll_back", "; ".join(alarms), numbers
    seen = f"{canary.requests} canary and {champion.requests} champion requests"
    if baked_s < state.baking_s():
        return (
            "continue",
            f"baking at {state.share:.0%}: {baked_s:.0f} of {state.baking_s():.0f} s, {seen}, no alarm",
            numbers,
        )
    if not enough:
        return (
            "continue",
            f"baked at {state.share:.0%} but only {seen}: too little traffic to judge, waiting for "
            f"{policy.min_requests} canary requests",
            numbers,
        )
    following = policy.next_share(state.share)
    if following < 1.0:
        return (
            "shift",
            f"no alarm after {baked_s:.0f} s at {state.share:.0%} ({seen}): shift to {following:.0%}",
            numbers,
        )
    return "promote", f"no alarm after {baked_s:.0f} s at {state.share:.0%} ({seen}, {policy.shift})", numbers


@dataclass(frozen=True)
class Verdict:
    endpoint: str
    decision: Decision
    reason: str
    numbers: dict = field(default_factory=dict)
    model_version: str | None = None  # the canary's
    champion_version: str | None = None
    record: DeploymentRecord | None = None  # the stage the decision recorded (shift, promote, roll back)


def judge_canary(
    deployer: Deployer, endpoint: str, outcomes: Outcomes | None = None, now: float | None = None
) -> Verdict:
    """Look at the endpoint's canary once and carry out the decision through the deployer."""
    now = time.time() if now is None else now
    state = deployer.canary(endpoint)
    if state is None:
        return Verdict(endpoint, "none", f"no canary in progress on {endpoint}")
    traffic = deployer.observe(endpoint, state, now)
    sessions = set(traffic.canary.sessions) | set(traffic.champion.sessions)
    known = outcomes(sessions) if outcomes is not None and sessions else {}
    decision, reason, numbers = decide(state, traffic, known, now)
    record = None
    if decision == "roll_back":
        record = deployer.roll_back(endpoint, reason, numbers)
    elif decision == "shift":
        record = deployer.shift(endpoint, state.policy.next_share(state.share), reason, numbers, now)
    elif decision == "promote":
        record = deployer.promote(endpoint, reason, numbers)
    return Verdict(endpoint, decision, reason, numbers, state.model_version, state.champion_version, record)

"""The value of a treatment policy from logged decisions, off-policy: IPS, SNIPS and doubly robust estimates with
bootstrap intervals, and the gate that lets a new policy replace the current one.

A logged row holds the action taken (1 treated, 0 not), the probability the logging policy gave to treating it
(the decision log's `treatment_probability`), and the reward that followed (profit, revenue, a conversion). A
target policy is given as its probability of treating each row (0 or 1 for a deterministic rule).

- IPS: mean of w * r, w = pi(a | x) / pi0(a | x) for the logged action a.
- SNIPS: sum(w * r) / sum(w); a little biased, far less variable when weights are large.
- DR: mean of sum_a pi(a | x) mu_a(x) + w * (r - mu_a(x)): a reward model mu corrected by the weighted residual,
  unbiased when either the logging probabilities or the reward model are right.

A target policy that treats (or spares) a row the logging policy could never have treated (or spared) has no
support there: no estimate is valid, and the functions refuse with the share of such rows instead of answering.
Intervals resample whole groups (sessions, users) when `groups` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.05
RESAMPLES = 1000


@dataclass(frozen=True)
class PolicyValue:
    estimator: str
    value: float
    low: float
    high: float
    rows: int
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"estimator": self.estimator, "value": self.value, "ci": [self.low, self.high], "rows": self.rows}


def _inputs(action, logging_treat_probability, reward, target_treat_probability):
    a, p0, r, p = (
        np.asarray(v, dtype=float) for v in (action, logging_treat_probability, reward, target_treat_probability)
    )
    if not (len(a) == len(p0) == len(r) == len(p)):
        raise ValueError("action, logging probability, reward and target probability differ in length")
    if not np.isin(a, (0.0, 1.0)).all():
        raise ValueError("action must be 0 (not treated) or 1 (treated)")
    if ((p0 < 0) | (p0 > 1) | (p < 0) | (p > 1)).any():
        raise ValueError("probabilities of treatment must lie in [0, 1]")
    logged = np.where(a == 1, p0, 1 - p0)
    if (logged <= 0).any():
        raise ValueError(f"{int((logged <= 0).sum())} rows were logged with an action of probability 0: corrupt log")
    unsupported = ((p > 0) & (p0 == 0)) | ((p < 1) & (p0 == 1))
    if unsupported.any():
        raise ValueError(
            f"the target policy acts where the logging policy never could on {unsupported.mean():.1%} of rows "
            "(no exploration there): its value cannot be estimated from this log"
        )
    weight = np.where(a == 1, p, 1 - p) / logged
    return a, r, p, weight


def _group_sums(groups, *columns):
    if groups is None:
        return columns
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    return tuple(np.bincount(index, weights=c) for c in columns)


def _bootstrap(numerators, denominators, resamples, seed, chunk: int = 50):
    """Ratios sum(w_i * num) / sum(w_i * den) over Poisson(1) bootstrap weights (groups enter as their sums),
    drawn `chunk` resamples at a time as one matrix product."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, resamples, chunk):
        w = rng.poisson(1.0, (min(chunk, resamples - start), len(numerators))).astype(float)
        out.append((w @ numerators) / np.maximum(w @ denominators, 1e-12))
    return np.concatenate(out)


def _estimate(name, per_row, denominator, groups, resamples, seed, alpha, details=None) -> PolicyValue:
    num, den = _group_sums(groups, per_row, denominator)
    draws = _bootstrap(num, den, resamples, seed)
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return PolicyValue(
        name, float(per_row.sum() / denominator.sum()), float(low), float(high), len(per_row), details or {}
    )


def ips(
    action,
    logging_treat_probability,
    reward,
    target_treat_probability,
    *,
    groups=None,
    resamples=RESAMPLES,
    seed=0,
    alpha=ALPHA,
) -> PolicyValue:
    a, r, p, w = _inputs(action, logging_treat_probability, reward, target_treat_probability)
    return _estimate("ips", w * r, np.ones_like(w), groups, resamples, seed, alpha, {"max_weight": float(w.max())})


def snips(
    action,
    logging_treat_probability,
    reward,
    target_treat_probability,
    *,
    groups=None,
    resamples=RESAMPLES,
    seed=0,
    alpha=ALPHA,
) -> PolicyValue:
    a, r, p, w = _inputs(action, logging_treat_probability, reward, target_treat_probability)
    return _estimate("snips", w * r, w, groups, resamples, seed, alpha, {"weight_mean": float(w.mean())})


def doubly_robust(
    action,
    logging_treat_probability,
    reward,
    target_treat_probability,
    reward_if_treated,
    reward_if_not,
    *,
    groups=None,
    resamples=RESAMPLES,
    seed=0,
    alpha=ALPHA,
) -> PolicyValue:
    """`reward_if_treated` / `reward_if_not`: a reward model's prediction for each row under each action,
    cross-fitted (not trained on the row it predicts)."""
    a, r, p, w = _inputs(action, logging_treat_probability, reward, target_treat_probability)
    mu1, mu0 = np.asarray(reward_if_treated, dtype=float), np.asarray(reward_if_not, dtype=float)
    per_row = p * mu1 + (1 - p) * mu0 + w * (r - np.where(a == 1, mu1, mu0))
    return _estimate("dr", per_row, np.ones_like(per_row), groups, resamples, seed, alpha)


def dr_difference(
    action,
    logging_treat_probability,
    reward,
    new_treat_probability,
    current_treat_probability,
    reward_if_treated,
    reward_if_not,
    *,
    groups=None,
    resamples=RESAMPLES,
    seed=0,
    alpha=ALPHA,
) -> PolicyValue:
    """DR value of the new policy minus the current one on the same rows, with a paired bootstrap interval."""
    a, r, p_new, w_new = _inputs(action, logging_treat_probability, reward, new_treat_probability)
    _, _, p_cur, w_cur = _inputs(action, logging_treat_probability, reward, current_treat_probability)
    mu1, mu0 = np.asarray(reward_if_treated, dtype=float), np.asarray(reward_if_not, dtype=float)
    residual = r - np.where(a == 1, mu1, mu0)
    per_row = (p_new - p_cur) * (mu1 - mu0) + (w_new - w_cur) * residual
    return _estimate("dr_difference", per_row, np.ones_like(per_row), groups, resamples, seed, alpha)


@dataclass(frozen=True)
class PromotionVerdict:
    promote: bool
    reason: str
    difference: PolicyValue


def policy_promotion(difference: PolicyValue) -> PromotionVerdict:
    """A new policy replaces the current one only when its DR-estimated value is higher and the interval of the
    difference lies above 0: a policy that is no better, or not shown to be, keeps the current one."""
    shown = difference.low > 0
    reason = (
        f"DR value difference {difference.value:+.4f} per row, {1 - ALPHA:.0%} interval "
        f"[{difference.low:+.4f}, {difference.high:+.4f}] over {difference.rows} rows"
    )
    return PromotionVerdict(
        shown, reason + ("" if shown else ": not shown to be better, the current policy stays"), difference
    )

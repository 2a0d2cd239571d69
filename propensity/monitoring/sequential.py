"""Always-valid inference for differences of means: confidence sequences that stay valid however often one looks.

A canary judged at every sensor tick, or a KPI read every day, is a sequence of looks at growing data. A fixed-n
interval checked at every look errs far more often than its level says; a confidence sequence does not. We use the
normal-mixture boundary (Robbins 1970; Howard et al. 2021; the mSPRT of Johari et al. 2017, as used for software
deployments by Lindon et al., KDD 2022): for an estimate with variance V and a N(0, tau^2) mixture over the effect,

    radius = sqrt( V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)) ).

The interval estimate +/- radius covers the true difference at every look at once with probability >= 1 - alpha
(asymptotically, with V estimated from the data). `tau` is the size of effect the test is tuned to find fastest; any
tau keeps the error rate, only the speed changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """n, mean and (unbiased) variance of one stream of observations."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values) -> "Summary":
        x = np.asarray(values, dtype=float)
        n = len(x)
        if n == 0:
            return cls(0, 0.0, 0.0)
        return cls(n, float(x.mean()), float(x.var(ddof=1)) if n > 1 else 0.0)

    @classmethod
    def of_proportion(cls, successes: int, n: int) -> "Summary":
        """A Bernoulli stream, its rate shrunk by half a success and half a failure so that 0 of n still has a
        variance (an all-zero error stream must not make a difference look certain)."""
        if n == 0:
            return cls(0, 0.0, 0.0)
        rate = successes / n
        smoothed = (successes + 0.5) / (n + 1.0)
        return cls(n, rate, smoothed * (1.0 - smoothed))


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    variance: float

    def as_dict(self, digits: int = 6) -> dict:
        return {
            "estimate": round(self.estimate, digits),
            "low": round(self.low, digits),
            "high": round(self.high, digits),
        }


def mixture_radius(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence at estimate variance `variance` (infinite without data)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if not math.isfinite(variance):
        return math.inf
    if variance <= 0:
        return 0.0
    t2 = tau * tau
    return math.sqrt(
        variance * (variance + t2) / t2 * (2.0 * math.log(1.0 / alpha) + math.log((variance + t2) / variance))
    )


def difference_sequence(treatment: Summary, control: Summary, tau: float, alpha: float) -> Interval:
    """Always-valid interval for mean(treatment) - mean(control), two independent streams."""
    if treatment.n == 0 or control.n == 0:
        return Interval(0.0, -math.inf, math.inf, math.inf)
    estimate = treatment.mean - control.mean
    variance = treatment.variance / treatment.n + control.variance / control.n
    radius = mixture_radius(variance, tau, alpha)
    return Interval(estimate, estimate - radius, estimate + radius, variance)


def mean_sequence(stream: Summary, tau: float, alpha: float) -> Interval:
    """Always-valid interval for the mean of one stream."""
    if stream.n == 0:
        return Interval(0.0, -math.inf, math.inf, math.inf)
    variance = stream.variance / stream.n
    radius = mixture_radius(variance, tau, alpha)
    return Interval(stream.mean, stream.mean - radius, stream.mean + radius, variance)

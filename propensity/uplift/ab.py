"""An A/B of an offer policy against the randomised holdout, per session: relative conversion lift, the difference
in average order value, and incremental profit per 1,000 sessions, each with a percentile bootstrap interval
(each arm resampled on its own: the arms are independent by randomisation).

Intent to treat: the policy arm is every session not held out, treated or not, so the comparison is randomised
whatever the policy targets.
"""

from __future__ import annotations

import numpy as np

PER = 1000
RESAMPLES = 400
UNDEFINED = {"_lift": "no conversion in the holdout", "_aov": "no order in one of the arms"}


def format_figure(entry: dict, digits: int = 0, signed: bool = False) -> str:
    """`value [low, high]`, or why the figure is undefined (tables and logs)."""
    value = entry.get("value")
    if value is None or not np.isfinite(value):  # NaN: a figure written before it said why
        return f"undefined ({entry.get('undefined', 'no value')})"
    spec = f"{'+' if signed else ''},.{digits}f"
    interval = f" [{entry['ci'][0]:{spec}}, {entry['ci'][1]:{spec}}]" if entry.get("ci") else ""
    return f"{entry['value']:{spec}}{interval}"


def _lift(b1: np.ndarray, b0: np.ndarray) -> float:
    return float(b1.mean() / b0.mean() - 1) if b0.mean() > 0 else float("nan")


def _aov(r1: np.ndarray, r0: np.ndarray) -> float:
    o1, o0 = r1[r1 > 0], r0[r0 > 0]
    return float(o1.mean() - o0.mean()) if len(o1) and len(o0) else float("nan")


def _gain(p1: np.ndarray, p0: np.ndarray) -> float:
    return float(PER * (p1.mean() - p0.mean()))


def _interval(statistic, arm: tuple, hold: tuple, rng, resamples: int) -> list[float]:
    draws = []
    for _ in range(resamples):
        i, j = rng.integers(0, len(arm[0]), len(arm[0])), rng.integers(0, len(hold[0]), len(hold[0]))
        draws.append(statistic(*(a[i] for a in arm), *(h[j] for h in hold)))
    draws = np.asarray(draws, float)
    draws = draws[np.isfinite(draws)]
    return [float(v) for v in np.quantile(draws, [0.025, 0.975])] if len(draws) else None


def ab_figures(purchased, revenue, profit, holdout, *, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """`purchased`, `revenue`, `profit`: per session; `holdout`: True for the held-out sessions."""
    purchased, revenue, profit = (np.asarray(v, float) for v in (purchased, revenue, profit))
    hold = np.asarray(holdout, bool)
    arm = ~hold
    if arm.sum() == 0 or hold.sum() == 0:
        raise ValueError(f"an A/B needs both arms: {int(arm.sum())} policy and {int(hold.sum())} holdout sessions")
    rng = np.random.default_rng(seed)

    def figure(statistic, *columns):
        a, h = tuple(c[arm] for c in columns), tuple(c[hold] for c in columns)
        value = statistic(*a, *h)
        if not np.isfinite(value):  # JSON has no NaN: say why instead
            return {"value": None, "ci": None, "undefined": UNDEFINED[statistic.__name__]}
        return {"value": value, "ci": _interval(statistic, a, h, rng, resamples)}

    return {
        "policy_arm_sessions": int(arm.sum()),
        "holdout_sessions": int(hold.sum()),
        "conversion": {"policy_arm": float(purchased[arm].mean()), "holdout": float(purchased[hold].mean())},
        "relative_conversion_lift": figure(_lift, purchased),
        "aov_difference": figure(_aov, revenue),
        "incremental_profit_per_1000": figure(_gain, profit),
    }

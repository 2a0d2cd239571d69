"""Business KPIs of the intervention policy: the targeted arm against the randomised holdout.

The unit is the session. Holdout is assigned per session at random and a holdout session is never treated; every
other session is "targeted": the policy applies, and it treats the session or not depending on its score. Comparing
targeted with holdout is the randomised comparison (intent to treat); comparing treated with untreated sessions would
compare high scorers with low scorers. The treated share says how much of the targeted arm the policy touched.

Per model version and variant (a session belongs to the group of its first decision), for conversion rate, average
order value (over converted sessions) and revenue per session: each arm's n and value, an always-valid interval for
targeted - holdout (`propensity.monitoring.sequential`, so a report read every day keeps its error rate) and the
relative lift. Two checks:

- Sample ratio mismatch: is the observed holdout share the configured one? A broken assignment (a router that drops
  holdout sessions, a logging gap on one arm) makes every comparison meaningless, whatever it shows. We use the same
  always-valid confidence sequence, not a chi-square test: the report is recomputed every day on growing data, and a
  fixed-n test checked at every look raises false alarms at a rate that grows with the number of looks. Its alpha is
  small (0.001) because an alarm discards the experiment's evidence and must therefore be rare when nothing is wrong.
  Under the null the share's variance is known, p0 (1 - p0), so that is the variance the test uses.
- Regression: the targeted arm is worse than holdout on conversion or revenue per session beyond a tolerance: the
  always-valid interval for the difference lies wholly below -tolerance x the holdout's value (a relative tolerance,
  so one setting fits rates and currencies alike).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from propensity.monitoring.sequential import Interval, Summary, difference_sequence, mean_sequence

KPI_METRICS = ("conversion_rate", "average_order_value", "revenue_per_session")
# What the regression check guards; average order value alone says little (fewer, larger orders can be a win).
REGRESSION_METRICS = ("conversion_rate", "revenue_per_session")
SRM_ALPHA = 0.001
# The mixture's tau: the test is tuned to find a difference of this many per-session standard deviations fastest
# (any value keeps the error rate; only the time to a decision changes).
EFFECT_SIZE_SD = 0.05
# The sample-ratio test is tuned to find a one-point deviation of the holdout share fastest.
SRM_TAU = 0.01
REQUIRED_COLUMNS = ("session_id", "decided_at", "model_version", "variant", "holdout", "treated", "label", "revenue")


def _finite(x: float) -> float | None:
    """JSON numbers only: an unbounded side of an interval is None."""
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class ArmComparison:
    """One KPI, targeted against holdout: each arm's summary and the always-valid interval for the difference (None,
    with a note saying why, when it cannot be computed)."""

    metric: str
    targeted: Summary
    holdout: Summary
    difference: Interval | None
    note: str | None = None

    @property
    def relative_lift(self) -> float | None:
        """(targeted - holdout) / holdout; None when there is no difference or the holdout's value is 0."""
        if self.difference is None or self.holdout.mean <= 0:
            return None
        return self.difference.estimate / self.holdout.mean

    def worse_beyond(self, tolerance: float) -> bool:
        """The whole interval lies below -tolerance x the holdout's value: a confirmed harm, not noise."""
        if self.difference is None:
            return False
        return self.difference.high < -tolerance * self.holdout.mean

    def as_dict(self) -> dict:
        def arm(s: Summary) -> dict:
            return {"n": s.n, "value": s.mean if s.n else None}

        difference = None
        if self.difference is not None:
            difference = {
                "estimate": self.difference.estimate,
                "low": _finite(self.difference.low),
                "high": _finite(self.difference.high),
            }
        return {
            "targeted": arm(self.targeted),
            "holdout": arm(self.holdout),
            "difference": difference,
            "relative_lift": self.relative_lift,
            "note": self.note,
        }


def compare_arms(
    metric: str,
    targeted_values,
    holdout_values,
    *,
    alpha: float,
    proportion: bool = False,
    effect_size: float = EFFECT_SIZE_SD,
) -> ArmComparison:
    """Targeted against holdout for one per-session metric (0/1 outcomes when `proportion`)."""
    t = np.asarray(targeted_values, dtype=float)
    h = np.asarray(holdout_values, dtype=float)
    if proportion:
        targeted, holdout = Summary.of_proportion(int(t.sum()), len(t)), Summary.of_proportion(int(h.sum()), len(h))
    else:
        targeted, holdout = Summary.of(t), Summary.of(h)
    unit = "converted sessions" if metric == "average_order_value" else "sessions"
    minimum = 1 if proportion else 2  # a mean's variance needs two observations; a rate's is smoothed
    for name, s in (("targeted", targeted), ("holdout", holdout)):
        if s.n < minimum:
            note = f"no {name} {unit}" if s.n == 0 else f"only {s.n} {name} {unit[:-1]}, a spread needs {minimum}"
            return ArmComparison(metric, targeted, holdout, None, note)
    dof = targeted.n + holdout.n - 2
    pooled = (
        ((targeted.n - 1) * targeted.variance + (holdout.n - 1) * holdout.variance) / dof
        if dof > 0
        else max(targeted.variance, holdout.variance)
    )
    if pooled <= 0:
        return ArmComparison(metric, targeted, holdout, None, f"every {unit[:-1]} has the same value in both arms")
    interval = difference_sequence(targeted, holdout, tau=effect_size * math.sqrt(pooled), alpha=alpha)
    return ArmComparison(metric, targeted, holdout, interval)


@dataclass(frozen=True)
class SampleRatioCheck:
    """The observed holdout share against the configured one: always-valid interval at `alpha`, under the null's
    variance; fails when the configured share lies outside it."""

    holdout_sessions: int
    sessions: int
    expected_share: float
    alpha: float
    interval: Interval | None

    @property
    def observed_share(self) -> float | None:
        return self.holdout_sessions / self.sessions if self.sessions else None

    @property
    def failed(self) -> bool:
        if self.interval is None:
            return False
        return not (self.interval.low <= self.expected_share <= self.interval.high)

    def as_dict(self) -> dict:
        return {
            "method": "always-valid normal-mixture confidence sequence for the holdout share, variance p0(1-p0)",
            "alpha": self.alpha,
            "sessions": self.sessions,
            "holdout_sessions": self.holdout_sessions,
            "expected_share": self.expected_share,
            "observed_share": self.observed_share,
            "low": None if self.interval is None else _finite(self.interval.low),
            "high": None if self.interval is None else _finite(self.interval.high),
            "failed": self.failed,
            "note": "no sessions" if self.sessions == 0 else None,
        }


def sample_ratio_check(holdout_sessions: int, sessions: int, holdout_share: float, *, alpha: float = SRM_ALPHA):
    """Sample-ratio-mismatch test of H0: P(holdout) = holdout_share, valid at every look."""
    if sessions == 0:
        return SampleRatioCheck(0, 0, holdout_share, alpha, None)
    null = Summary(sessions, holdout_sessions / sessions, holdout_share * (1.0 - holdout_share))
    return SampleRatioCheck(holdout_sessions, sessions, holdout_share, alpha, mean_sequence(null, SRM_TAU, alpha))


def arm_sessions(labelled: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Decisions to sessions: one row per session with its group (its first decision's model version and variant),
    arm, whether the policy treated it, conversion and revenue. Returns the sessions and how many were left out
    because their decisions disagree on the arm (holdout is per session, so that is an assignment bug)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in labelled.columns]
    if missing:
        raise ValueError(f"labelled decisions lack column(s) {missing}; expected at least {list(REQUIRED_COLUMNS)}")
    columns = ["model_version", "variant", "holdout", "treated", "converted", "revenue"]
    if labelled.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="session_id")), 0
    ordered = labelled.sort_values("decided_at", kind="stable")
    by_session = ordered.groupby("session_id", sort=True)
    holdout_all, holdout_any = by_session["holdout"].all(), by_session["holdout"].any()
    sessions = pd.DataFrame(
        {
            "model_version": by_session["model_version"].first().astype(str),
            "variant": by_session["variant"].first().astype(str),
            "holdout": holdout_all,
            "treated": by_session["treated"].any(),
            # Every decision of a session precedes its first purchase, so the first decision's label and revenue
            # (the largest) are the session's.
            "converted": by_session["label"].max() > 0,
            "revenue": by_session["revenue"].max().astype(float),
        }
    )
    consistent = holdout_all == holdout_any
    return sessions[consistent], int((~consistent).sum())


def group_kpis(sessions: pd.DataFrame, *, alpha: float) -> dict[str, ArmComparison]:
    """The three KPIs for one group's sessions."""
    targeted, holdout = sessions[~sessions["holdout"]], sessions[sessions["holdout"]]
    return {
        "conversion_rate": compare_arms(
            "conversion_rate", targeted["converted"], holdout["converted"], alpha=alpha, proportion=True
        ),
        "average_order_value": compare_arms(
            "average_order_value",
            targeted.loc[targeted["converted"], "revenue"],
            holdout.loc[holdout["converted"], "revenue"],
            alpha=alpha,
        ),
        "revenue_per_session": compare_arms(
            "revenue_per_session", targeted["revenue"], holdout["revenue"], alpha=alpha
        ),
    }


def kpi_report(
    labelled: pd.DataFrame,
    holdout_share: float,
    *,
    alpha: float = 0.05,
    tolerance: float = 0.02,
    srm_alpha: float = SRM_ALPHA,
) -> dict:
    """The KPI report of labelled decisions (JSON-able). `holdout_share` is the configured share of holdout sessions;
    `tolerance` the relative harm the regression check accepts (0.02: fails only when the targeted arm is confirmed
    more than 2 % worse than holdout on conversion or revenue per session).

    An empty frame, or a group without holdout (or targeted) sessions, is an answer, not an error: its KPIs carry no
    interval and a note, and no check fails on them."""
    if not 0.0 <= holdout_share < 1.0:
        raise ValueError(f"holdout_share must be in [0, 1), got {holdout_share}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    sessions, mixed = arm_sessions(labelled)
    groups, findings = [], []
    for (model_version, variant), group in sessions.groupby(["model_version", "variant"], sort=True):
        kpis = group_kpis(group, alpha=alpha)
        targeted = group[~group["holdout"]]
        srm = sample_ratio_check(int(group["holdout"].sum()), len(group), holdout_share, alpha=srm_alpha)
        harmed = [m for m in REGRESSION_METRICS if kpis[m].worse_beyond(tolerance)]
        for metric in harmed:
            findings.append(
                {
                    "model_version": model_version,
                    "variant": variant,
                    "metric": metric,
                    "difference_high": kpis[metric].difference.high,
                    "threshold": -tolerance * kpis[metric].holdout.mean,
                }
            )
        groups.append(
            {
                "model_version": model_version,
                "variant": variant,
                "sessions": {"targeted": len(targeted), "holdout": len(group) - len(targeted)},
                "treated_sessions": int(targeted["treated"].sum()),
                "treated_share": float(targeted["treated"].mean()) if len(targeted) else None,
                # Must be 0: a treated holdout session means the policy ignored the assignment.
                "holdout_treated_sessions": int(group.loc[group["holdout"], "treated"].sum()),
                "kpis": {name: comparison.as_dict() for name, comparison in kpis.items()},
                "sample_ratio": srm.as_dict(),
                "regression": {"failed": bool(harmed), "metrics": harmed},
            }
        )
    overall = sample_ratio_check(int(sessions["holdout"].sum()), len(sessions), holdout_share, alpha=srm_alpha)
    return {
        "alpha": alpha,
        "tolerance": tolerance,
        "holdout_share": holdout_share,
        "decisions": len(labelled),
        "sessions": len(sessions),
        "mixed_arm_sessions": mixed,
        "groups": groups,
        # Fails when the whole population or any one group is off the configured share.
        "sample_ratio": {
            "failed": overall.failed or any(g["sample_ratio"]["failed"] for g in groups),
            "overall": overall.as_dict(),
        },
        "regression": {"failed": bool(findings), "tolerance": tolerance, "findings": findings},
    }

"""Uplift metrics with scikit-uplift's definitions (sklift.metrics, 0.5), written here because scikit-uplift is
dormant and breaks at scikit-learn 1.10; tests hold them to hand-computed vectors.

Rows are ranked by predicted uplift, highest first (a stable sort of the reversed order, as sklift does: ties keep
their reversed input order), and the curves are evaluated at the last row of each run of equal scores.

- Uplift curve at n rows: (treated response rate - control response rate among the top n) * n.
- Qini curve at n rows: treated responders - control responders * (treated / control among the top n).
- Normalised areas (uplift AUC, Qini coefficient): (area under the model's curve - area under the random line) /
  (area under the perfect curve - area under the random line), the random line joining (0, 0) to the curve's end.
- uplift@k: treated minus control response rate among the top k share of all rows ("overall"), or among the top k
  share of each group ("by_group").
"""

from __future__ import annotations

import math

import numpy as np


def _arrays(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, score, arm = (np.asarray(a, dtype=float) for a in (y_true, uplift, treatment))
    if not (len(y) == len(score) == len(arm)):
        raise ValueError(f"y_true, uplift and treatment differ in length: {len(y)}, {len(score)}, {len(arm)}")
    if not np.isin(arm, (0.0, 1.0)).all():
        raise ValueError("treatment must be 0 (control) or 1 (treated)")
    if arm.min(initial=1.0) == arm.max(initial=0.0):
        raise ValueError("uplift metrics need both treated and control rows")
    if not np.isfinite(score).all():
        raise ValueError("uplift scores must be finite")
    return y, score, arm


def _ranked(y, score, arm):
    order = np.argsort(score, kind="mergesort")[::-1]
    y, score, arm = y[order], score[order], arm[order]
    ends = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # last row of each run of equal scores
    n = (ends + 1).astype(float)
    treated = np.cumsum(arm)[ends]
    control = n - treated
    treated_y = np.cumsum(y * arm)[ends]
    control_y = np.cumsum(y * (1 - arm))[ends]
    return n, treated, control, treated_y, control_y


def _ratio(a, b):
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _from_origin(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if values[0] != 0 or x[0] != 0:
        return np.r_[0.0, x], np.r_[0.0, values]
    return x, values


def uplift_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    n, treated, control, treated_y, control_y = _ranked(*_arrays(y_true, uplift, treatment))
    return _from_origin(n, (_ratio(treated_y, treated) - _ratio(control_y, control)) * n)


def qini_curve(y_true, uplift, treatment) -> tuple[np.ndarray, np.ndarray]:
    n, treated, control, treated_y, control_y = _ranked(*_arrays(y_true, uplift, treatment))
    return _from_origin(n, treated_y - control_y * _ratio(treated, control))


def perfect_uplift_curve(y_true, treatment) -> tuple[np.ndarray, np.ndarray]:
    y, _, arm = _arrays(y_true, np.zeros(len(np.asarray(y_true))), treatment)
    control_responders = np.sum((y == 1) & (arm == 0))
    treated_non_responders = np.sum((y == 0) & (arm == 1))
    summand = y if control_responders > treated_non_responders else arm
    return uplift_curve(y, 2 * (y == arm) + summand, arm)


def perfect_qini_curve(y_true, treatment, negative_effect: bool = True) -> tuple[np.ndarray, np.ndarray]:
    y, _, arm = _arrays(y_true, np.zeros(len(np.asarray(y_true))), treatment)
    if negative_effect:
        return qini_curve(y, y * arm - y * (1 - arm), arm)
    gain = y[arm == 1].sum() - (arm == 1).sum() * y[arm == 0].sum() / (arm == 0).sum()
    return np.array([0.0, gain, len(y)]), np.array([0.0, gain, gain])


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.trapezoid(y, x))


def _normalised(actual, perfect) -> float:
    x_perfect, y_perfect = perfect
    baseline = _area(np.array([0.0, x_perfect[-1]]), np.array([0.0, y_perfect[-1]]))
    span = _area(x_perfect, y_perfect) - baseline
    if span == 0:
        raise ValueError("the perfect curve encloses no area above the random line: the metric is undefined")
    return (_area(*actual) - baseline) / span


def uplift_auc_score(y_true, uplift, treatment) -> float:
    """Area under the uplift curve, normalised between the random line (0) and the perfect ranking (1)."""
    return _normalised(uplift_curve(y_true, uplift, treatment), perfect_uplift_curve(y_true, treatment))


def qini_auc_score(y_true, uplift, treatment, negative_effect: bool = True) -> float:
    """The normalised Qini coefficient: area under the Qini curve between the random line (0) and the perfect
    ranking (1)."""
    return _normalised(qini_curve(y_true, uplift, treatment), perfect_qini_curve(y_true, treatment, negative_effect))


def uplift_at_k(y_true, uplift, treatment, k: float = 0.3, strategy: str = "overall") -> float:
    """Treated minus control response rate among the top `k` share (0 < k < 1) of the ranking."""
    y, score, arm = _arrays(y_true, uplift, treatment)
    if not 0 < k < 1:
        raise ValueError(f"k={k} must be a share in (0, 1)")
    order = np.argsort(score, kind="mergesort")[::-1]
    y, arm = y[order], arm[order]
    if strategy == "overall":
        top = slice(0, math.ceil(len(y) * k))
        top_y, top_arm = y[top], arm[top]
        if top_arm.min() == top_arm.max():
            raise ValueError(f"the top {k:.0%} holds only one group: uplift@k is undefined")
        return float(top_y[top_arm == 1].mean() - top_y[top_arm == 0].mean())
    if strategy == "by_group":
        treated_y, control_y = y[arm == 1], y[arm == 0]
        return float(
            treated_y[: math.ceil(len(treated_y) * k)].mean() - control_y[: math.ceil(len(control_y) * k)].mean()
        )
    raise ValueError(f"strategy {strategy!r} is not one of overall, by_group")

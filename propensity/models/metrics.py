"""Evaluation metrics. ECE is ours: scikit-learn has none."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

ECE_BINS = 15
PROBABILITY_FLOOR = 1e-7  # log-loss of a hard 0 or 1 is infinite; every model is scored with the same clip


def expected_calibration_error(y_true, y_prob, bins: int = ECE_BINS) -> float:
    """Equal-mass ECE: sort by predicted probability, cut into `bins` groups of (nearly) equal size, and take the
    size-weighted mean of |observed rate - mean prediction| over the groups.

    Equal mass, not equal width: propensities crowd near zero, and equal-width bins would leave most bins empty.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_prob = np.asarray(y_prob, dtype=float)
    if len(y_true) == 0:
        raise ValueError("ECE of an empty set is undefined")
    order = np.argsort(y_prob, kind="stable")
    total = 0.0
    for group in np.array_split(order, min(bins, len(order))):
        total += len(group) * abs(y_true[group].mean() - y_prob[group].mean())
    return float(total / len(y_true))


def calibration_error_vs_truth(true_prob, y_prob, bins: int = ECE_BINS) -> float:
    """Simulator only: the same equal-mass binning, against the known true probabilities instead of outcomes."""
    return expected_calibration_error(np.asarray(true_prob, dtype=float), y_prob, bins)


def top_decile(y_true, y_prob) -> tuple[float, float]:
    """(lift, captured share of purchases) among the 10 % highest-scored decision points."""
    y_true = np.asarray(y_true, dtype=float)
    order = np.argsort(-np.asarray(y_prob, dtype=float), kind="stable")
    top = order[: max(1, int(np.ceil(0.1 * len(order))))]
    base_rate = y_true.mean()
    positives = y_true.sum()
    lift = float(y_true[top].mean() / base_rate) if base_rate > 0 else float("nan")
    captured = float(y_true[top].sum() / positives) if positives > 0 else float("nan")
    return lift, captured


def evaluate(y_true, y_prob) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=int)
    clipped = np.clip(np.asarray(y_prob, dtype=float), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    lift, captured = top_decile(y_true, clipped)
    return {
        "roc_auc": float(roc_auc_score(y_true, clipped)),
        "pr_auc": float(average_precision_score(y_true, clipped)),
        "log_loss": float(log_loss(y_true, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, clipped)),
        "ece": expected_calibration_error(y_true, clipped),
        "top_decile_lift": lift,
        "top_decile_captured": captured,
        "rows": int(len(y_true)),
        "positive_rate": float(y_true.mean()),
    }

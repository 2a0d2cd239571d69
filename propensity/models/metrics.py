"""Evaluation metrics, each defined once here: the evaluation, the gates' bootstraps and the monitors all use these.

Log-loss, ROC-AUC and ECE take optional integer `weights` (multiplicities: a row of weight c counts as c copies), so
a bootstrap resample is a weight vector over the original rows instead of a copied frame, and the batched forms
(`*_batch`, one resample per row of a 2-D weight array) score hundreds of resamples with a few array operations.
With unit weights each equals its scikit-learn counterpart (tests check it). ECE is ours: scikit-learn has none.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss

ECE_BINS = 15
PROBABILITY_FLOOR = 1e-7  # log-loss of a hard 0 or 1 is infinite; every model is scored with the same clip
BOOTSTRAP_CELLS = 2_000_000  # weights held at once (resamples x rows): about 16 MB per array at float64


def clip_probability(p) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)


def row_log_loss(y, p) -> np.ndarray:
    """Each row's log-loss, probabilities clipped to [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR]."""
    y = np.asarray(y, dtype=float)
    p = clip_probability(p)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def log_loss(y, p, weights=None) -> float:
    return float(np.average(row_log_loss(y, p), weights=weights))


def log_loss_batch(row_losses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Log-loss of each resample (row of `weights`) from the rows' log-losses."""
    return weights @ row_losses / weights.sum(axis=1)


def _tie_starts(sorted_p: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.flatnonzero(np.diff(sorted_p) != 0) + 1])


def roc_auc_batch(sorted_y: np.ndarray, sorted_p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of each resample, rows already sorted by score: the weighted Mann-Whitney statistic, P(score of a
    positive > score of a negative) with ties counted half. NaN where a resample has only one class."""
    starts = _tie_starts(sorted_p)
    positive, negative = weights * sorted_y, weights * (1 - sorted_y)
    if len(starts) < len(sorted_p):  # tied scores (an isotonic map's steps) count as one score
        positive, negative = np.add.reduceat(positive, starts, axis=1), np.add.reduceat(negative, starts, axis=1)
    negatives_below = np.cumsum(negative, axis=1) - negative
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    concordant = (positive * (negatives_below + 0.5 * negative)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, concordant / pairs, np.nan)


def roc_auc(y, p, weights=None) -> float:
    y, p = np.asarray(y, dtype=float), clip_probability(p)
    weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(p, kind="stable")
    auc = float(roc_auc_batch(y[order], p[order], weights[order][None, :])[0])
    if np.isnan(auc):
        raise ValueError("ROC-AUC needs both classes")
    return auc


def ece_batch(sorted_y: np.ndarray, sorted_p: np.ndarray, weights: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """ECE of each resample, rows already sorted by probability (see `expected_calibration_error`).

    `weights` (resamples, n) and `sorted_y` ((resamples or 1, n): simulated labels per resample, or one label vector)
    broadcast together. A row of weight c is c consecutive copies; bin edges fall where np.array_split would cut the
    copied sequence, so a row whose copies straddle an edge is split between the two bins as the copies would be.
    """
    if np.shape(weights)[0] == 1 and np.all(weights == 1):  # unweighted (simulated labels): bins are fixed
        n = np.shape(weights)[1]
        starts = np.cumsum([0] + [len(b) for b in np.array_split(np.arange(n), min(bins, n))])[:-1]
        gaps = np.add.reduceat(np.atleast_2d(sorted_y), starts, axis=1) - np.add.reduceat(sorted_p, starts)
        return np.abs(gaps).sum(axis=1) / n
    shape = np.broadcast_shapes(np.shape(weights), np.shape(sorted_y))
    weights, sorted_y = np.broadcast_to(weights, shape), np.broadcast_to(sorted_y, shape)
    resamples, n = shape
    mass = np.zeros((resamples, n + 1))
    np.cumsum(weights, axis=1, out=mass[:, 1:])
    labels = np.zeros_like(mass)
    np.cumsum(weights * sorted_y, axis=1, out=labels[:, 1:])
    predicted = np.zeros_like(mass)
    np.cumsum(weights * sorted_p, axis=1, out=predicted[:, 1:])

    totals = np.rint(mass[:, -1]).astype(np.int64)
    groups = np.minimum(bins, totals)[:, None]
    k = np.arange(bins + 1)[None, :]  # edge k of array_split: k groups of size total // groups, plus one extra each
    size, extra = totals[:, None] // groups, totals[:, None] % groups
    edges = np.where(k <= groups, k * size + np.minimum(k, extra), totals[:, None])
    # one searchsorted for all resamples: shift each resample's cumulative mass past the previous one's
    offset = (np.arange(resamples) * (mass[:, -1].max() + 1.0))[:, None]
    position = np.searchsorted((mass + offset).ravel(), (edges + offset).ravel(), side="left").reshape(edges.shape)
    position -= np.arange(resamples)[:, None] * (n + 1)
    row = np.maximum(position, 1) - 1  # the row the edge falls in (its copies before the edge are in)
    rows = np.arange(resamples)[:, None]
    inside = edges - mass[rows, row]
    at_edge_labels = labels[rows, row] + sorted_y[rows, row] * inside
    at_edge_predicted = predicted[rows, row] + sorted_p[row] * inside
    gaps = np.abs(np.diff(at_edge_labels, axis=1) - np.diff(at_edge_predicted, axis=1))
    return gaps.sum(axis=1) / mass[:, -1]


def expected_calibration_error(y_true, y_prob, bins: int = ECE_BINS, weights=None) -> float:
    """Equal-mass ECE: sort by predicted probability, cut into `bins` groups of (nearly) equal size, and take the
    size-weighted mean of |observed rate - mean prediction| over the groups.

    Equal mass, not equal width: propensities crowd near zero, and equal-width bins would leave most bins empty.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_prob = np.asarray(y_prob, dtype=float)
    if len(y_true) == 0:
        raise ValueError("ECE of an empty set is undefined")
    weights = np.ones(len(y_true)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(y_prob, kind="stable")
    return float(ece_batch(y_true[order], y_prob[order], weights[order][None, :], bins)[0])


def calibration_error_vs_truth(true_prob, y_prob, bins: int = ECE_BINS) -> float:
    """Simulator only: the same equal-mass binning, against the known true probabilities instead of outcomes."""
    return expected_calibration_error(np.asarray(true_prob, dtype=float), y_prob, bins)


SIMULATION_CELLS = 2_000_000  # simulated labels held at once (draws x rows)


def label_clusters(groups, n: int) -> tuple[np.ndarray, int]:
    """Each row's cluster index (its session when `groups` is given, else its own) and the number of clusters."""
    if groups is None:
        return np.arange(n), n
    _, cluster = np.unique(np.asarray(groups), return_inverse=True)
    return cluster, int(cluster.max()) + 1


def simulated_labels(p: np.ndarray, cluster: np.ndarray, n_clusters: int, simulations: int, seed: int):
    """Labels drawn as if `p` were the true probabilities, in chunks of shape (draws in chunk, n). A session's
    decision points share their label, so with sessions one uniform per session is compared with each row's p:
    every row keeps its probability and rows of one session are as dependent as a single draw can make them."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, SIMULATION_CELLS // max(len(p), 1))
    done = 0
    while done < simulations:
        size = min(per_chunk, simulations - done)
        yield (rng.random((size, n_clusters))[:, cluster] < p).astype(float)
        done += size


def bootstrap_weights(
    n_rows: int, resamples: int, seed: int = 0, groups=None, cells: int = BOOTSTRAP_CELLS
) -> Iterator[np.ndarray]:
    """Bootstrap resamples as row multiplicities, in chunks of shape (resamples in chunk, n_rows).

    With `groups` (one id per row, e.g. the session), whole groups are drawn with replacement and every row of a
    drawn group gets the group's count: rows of one session share their outcome, so resampling them one by one
    would make the intervals too narrow.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        group_of_row, n_groups = None, n_rows
    else:
        _, group_of_row = np.unique(np.asarray(groups), return_inverse=True)
        n_groups = int(group_of_row.max()) + 1 if n_rows else 0
    per_chunk = max(1, cells // max(n_rows, 1))
    done = 0
    while done < resamples:
        size = min(per_chunk, resamples - done)
        draws = rng.integers(0, n_groups, (size, n_groups)) + (np.arange(size) * n_groups)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n_groups).reshape(size, n_groups).astype(float)
        yield counts if group_of_row is None else counts[:, group_of_row]
        done += size


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
    clipped = clip_probability(y_prob)
    lift, captured = top_decile(y_true, clipped)
    return {
        "roc_auc": roc_auc(y_true, clipped),
        "pr_auc": float(average_precision_score(y_true, clipped)),
        "log_loss": log_loss(y_true, clipped),
        "brier": float(brier_score_loss(y_true, clipped)),
        "ece": expected_calibration_error(y_true, clipped),
        "top_decile_lift": lift,
        "top_decile_captured": captured,
        "rows": int(len(y_true)),
        "positive_rate": float(y_true.mean()),
    }

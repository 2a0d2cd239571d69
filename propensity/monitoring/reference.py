"""The reference profile: what the training data looked like, written into the model artifact at training.

Built from the training-set features (train+valid rows), the validation split's calibrated scores and labels, and
LightGBM's gain importance. The drift monitor (`propensity.monitoring.drift`) compares live inputs with it; the
performance monitors read the score distribution and the validation calibration curve. JSON numbers only: it is
read back with `json.loads`, never unpickled.

Numeric features keep two binnings of the non-missing values, both on "value <= edge" boundaries:
- `edges`: at most 20 equal-mass bins for PSI. Quantiles of tie-heavy counts repeat (60 % zeros give one edge at 0
  for the first twelve 5 % levels), so edges are made unique and bins may be fewer; an edge at the maximum is
  dropped so the top bin ("above the last edge") always holds reference mass and live values beyond the training
  range land in it.
- `grid`: 201 quantiles (every 0.5 %, minimum and maximum included, unique) with the count of each cell
  (grid[i-1], grid[i]]: the CDF on that grid gives the Wasserstein distance (see drift.py). The PSI edges are grid
  points, so PSI counts are sums of grid cells and one pass over a live column serves both statistics.
Missing values (NaN; also +-inf, which no feature may hold) are counted in a bin of their own.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.metrics import ECE_BINS

REFERENCE_VERSION = 1
CATEGORICAL_FEATURES: frozenset[str] = frozenset({"session_hour_utc", "session_weekday"})
"""Model features compared as categories (Jensen-Shannon), not as ordered numbers: hour and weekday are cyclic codes,
where 23 and 0 are neighbours and a mean or a quantile means nothing."""

PSI_BINS = 20
GRID_QUANTILES = 201  # 0 %, 0.5 %, ..., 100 %
SAMPLE_ROWS = 5000


def feature_matrix(frame: pd.DataFrame, names=MODEL_FEATURE_NAMES, what: str = "features") -> dict[str, np.ndarray]:
    """The named columns as float64 arrays, non-finite values as NaN; a clear ValueError for a missing or
    non-numeric column."""
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(f"{what} lack {len(missing)} model feature column(s): {', '.join(missing)}")
    columns = {}
    for name in names:
        try:
            values = frame[name].to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{what} column {name!r} is not numeric ({frame[name].dtype}): {error}") from None
        finite = np.isfinite(values)
        if not finite.all():
            values = np.where(finite, values, np.nan)
        columns[name] = values
    return columns


def _numeric_profile(values: np.ndarray) -> dict:
    present = values[~np.isnan(values)]
    missing = int(len(values) - len(present))
    if len(present) == 0:
        return {
            "kind": "numeric",
            "count": 0,
            "missing": missing,
            "mean": None,
            "std": None,
            "edges": [],
            "bin_counts": [],
            "grid": [],
            "grid_counts": [],
        }
    grid = np.unique(np.quantile(present, np.linspace(0.0, 1.0, GRID_QUANTILES)))
    # The PSI edges are the grid's 5 % quantiles (the same numbers), minus any at the maximum.
    levels = np.quantile(present, np.linspace(0.0, 1.0, PSI_BINS + 1)[1:-1])
    edges = np.unique(levels)
    edges = edges[edges < present.max()]
    grid = np.unique(np.concatenate([grid, edges]))  # already there; kept exact against float quantile rounding
    grid_counts = np.bincount(np.searchsorted(grid, present, side="left"), minlength=len(grid))
    bin_counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return {
        "kind": "numeric",
        "count": int(len(present)),
        "missing": missing,
        "mean": float(present.mean()),
        "std": float(present.std()),
        "edges": edges.tolist(),
        "bin_counts": bin_counts.tolist(),
        "grid": grid.tolist(),
        "grid_counts": grid_counts[: len(grid)].tolist(),
    }


def _categorical_profile(values: np.ndarray) -> dict:
    present = values[~np.isnan(values)]
    categories, counts = np.unique(present, return_counts=True)
    return {
        "kind": "categorical",
        "count": int(len(present)),
        "missing": int(len(values) - len(present)),
        "categories": [int(c) if float(c).is_integer() else float(c) for c in categories],
        "counts": counts.tolist(),
    }


def _calibration_curve(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Equal-mass bins (as the ECE): mean predicted, observed rate and n per bin."""
    order = np.argsort(scores, kind="stable")
    curve = []
    for group in np.array_split(order, min(bins, len(order))):
        curve.append(
            {
                "mean_predicted": float(scores[group].mean()),
                "observed_rate": float(labels[group].mean()),
                "n": int(len(group)),
            }
        )
    return curve


def _json_number(value: float):
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _row_sample(columns: dict[str, np.ndarray], rows: int, seed: int) -> dict[str, list]:
    n = len(next(iter(columns.values())))
    picked = np.sort(np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False))
    return {name: [_json_number(v) for v in values[picked].tolist()] for name, values in columns.items()}


def fingerprint(reference: dict) -> str:
    """sha256 of the profile's canonical JSON (everything but the fingerprint): the drift monitor's cache key."""
    body = {key: value for key, value in reference.items() if key != "fingerprint"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def build_reference(
    features: pd.DataFrame,
    scores,
    labels,
    importance: dict[str, float],
    *,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> dict:
    """The reference profile (see the module docstring) as a JSON-able dict."""
    columns = feature_matrix(features, what="training features")
    if len(features) == 0:
        raise ValueError("training features are empty: a reference needs rows")
    scores = np.asarray(scores, dtype="float64")
    labels = np.asarray(labels, dtype="float64")
    if scores.shape != labels.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(
            f"scores and labels must be equal-length non-empty 1-d arrays (got {scores.shape} and {labels.shape})"
        )
    if not np.isfinite(scores).all():
        raise ValueError("validation scores hold NaN or infinite values")
    unknown = sorted(set(importance) - set(MODEL_FEATURE_NAMES))
    if unknown:
        raise ValueError(f"importance names features the model does not have: {', '.join(unknown)}")
    gains = np.array([max(float(importance.get(name, 0.0)), 0.0) for name in MODEL_FEATURE_NAMES])
    shares = gains / gains.sum() if gains.sum() > 0 else np.full(len(gains), 1.0 / len(gains))

    profiles = {
        name: _categorical_profile(values) if name in CATEGORICAL_FEATURES else _numeric_profile(values)
        for name, values in columns.items()
    }
    reference = {
        "version": REFERENCE_VERSION,
        "rows": int(len(features)),
        "features": list(MODEL_FEATURE_NAMES),
        "categorical": sorted(CATEGORICAL_FEATURES),
        "profiles": profiles,
        "importance": {name: float(share) for name, share in zip(MODEL_FEATURE_NAMES, shares)},
        "score": {**_numeric_profile(scores), "kind": "score"},
        "calibration_curve": _calibration_curve(scores, labels),
        "validation": {"rows": int(len(scores)), "positive_rate": float(labels.mean())},
        "sample": _row_sample(columns, sample_rows, seed),
    }
    reference["fingerprint"] = fingerprint(reference)
    return reference


def reference_sample_frame(reference: dict) -> pd.DataFrame:
    """The reference's row sample as a float64 frame (null as NaN), for `drift.classifier_drift`."""
    sample = reference["sample"]
    return pd.DataFrame(
        {name: np.array([np.nan if v is None else v for v in sample[name]], dtype="float64") for name in sample}
    )


def one_per_session(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One decision point drawn at random from each session. A session's decision points share one shopper and one
    evolving state, so they are far from independent; the drift null (multinomial draws) assumes independent rows,
    and it holds across sessions. The reference and every live window are sampled this way."""
    if frame.empty:
        return frame
    return frame.groupby("session_id", sort=False, group_keys=False).sample(n=1, random_state=seed)

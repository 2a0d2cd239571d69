"""Calibrators as plain numbers: the map from LightGBM's raw score (log-odds) to a probability, applied with numpy.

The calibrator is a small JSON dict stored in the model artifact (fitted by `calibration_fit`):
- identity: p = sigmoid(z), LightGBM's own probability
- sigmoid (Platt): p = sigmoid(a * z + b)
- temperature: p = sigmoid(z / T)
- isotonic: a monotone step function of z, interpolated linearly between fitted knots
This module is what the scoring path needs, so it imports no scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import expit

METHODS = ("identity", "temperature", "sigmoid", "isotonic")  # simplest first


def _logistic_map(calibrator: dict) -> tuple[float, float] | None:
    """(a, b) with p = sigmoid(a * z + b) for the methods that are one; None for isotonic."""
    method = calibrator["method"]
    if method == "sigmoid":
        return calibrator["a"], calibrator["b"]
    if method == "temperature":
        return 1.0 / calibrator["temperature"], 0.0
    if method == "identity":
        return 1.0, 0.0
    if method == "isotonic":
        return None
    raise ValueError(f"calibrator method {method!r} is not known to this version")


def apply_calibrator(calibrator: dict, raw_score) -> np.ndarray:
    z = np.asarray(raw_score, dtype=float)
    logistic = _logistic_map(calibrator)
    if logistic is None:
        return np.interp(z, np.asarray(calibrator["x"]), np.asarray(calibrator["y"]))
    a, b = logistic
    return expit(a * z + b)


def calibrator_function(calibrator: dict) -> Callable[[float], float]:
    """The same map for one score, without numpy's per-call overhead: the scoring path calls it per row."""
    logistic = _logistic_map(calibrator)
    if logistic is None:
        knots_x, knots_y = np.asarray(calibrator["x"]), np.asarray(calibrator["y"])
        return lambda z: float(np.interp(z, knots_x, knots_y))
    a, b = logistic

    def calibrated(z: float) -> float:
        return logistic_one(a * z + b)

    return calibrated


def logistic_one(t: float) -> float:
    """sigmoid(t) for one float, in plain Python (the scoring path's per-row form)."""
    if t >= 0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)  # the other branch, so a very negative score cannot overflow
    return e / (1.0 + e)

"""Reliability diagram and cumulative gain chart as PNG bytes, for asset metadata."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from propensity.models.metrics import ECE_BINS  # noqa: E402


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def reliability_diagram(y_true, predictions: dict[str, np.ndarray], bins: int = ECE_BINS) -> bytes:
    y_true = np.asarray(y_true, dtype=float)
    figure, axis = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for name, p in predictions.items():
        order = np.argsort(p, kind="stable")
        groups = np.array_split(order, bins)
        mean_p = [p[g].mean() for g in groups]
        rate = [y_true[g].mean() for g in groups]
        top = max(top, max(mean_p), max(rate))
        axis.plot(mean_p, rate, marker="o", label=name)
    axis.plot([0, top], [0, top], color="grey", linestyle="--", label="perfect")
    axis.set(
        xlabel="mean predicted propensity (equal-mass bins)",
        ylabel="observed purchase rate",
        title="Reliability (test)",
    )
    axis.legend()
    return png_bytes(figure)


def gain_chart(y_true, predictions: dict[str, np.ndarray]) -> bytes:
    y_true = np.asarray(y_true, dtype=float)
    figure, axis = plt.subplots(figsize=(5.5, 5))
    share = np.arange(1, len(y_true) + 1) / len(y_true)
    for name, p in predictions.items():
        captured = np.cumsum(y_true[np.argsort(-p, kind="stable")]) / max(y_true.sum(), 1)
        axis.plot(share, captured, label=name)
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="random")
    axis.set(
        xlabel="share of decision points targeted", ylabel="share of purchases captured", title="Cumulative gain (test)"
    )
    axis.legend()
    return png_bytes(figure)

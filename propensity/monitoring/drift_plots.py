"""Drift plots as PNG bytes, for asset metadata and the dashboard: the ranking by importance x drift, and reference
against live distributions of the features that lead it. Both take a `DriftReport` or its `as_dict()`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from propensity.models.plots import png_bytes  # noqa: E402
from propensity.monitoring.drift import DriftReport  # noqa: E402

DRIFTED_COLOUR, QUIET_COLOUR = "#c0392b", "#7f8c8d"


def _rows(report: DriftReport | dict) -> list[dict]:
    return (report.as_dict() if isinstance(report, DriftReport) else report)["features"]


def ranking_chart(report: DriftReport | dict, top: int = 15) -> bytes:
    """Horizontal bars of importance x drift (PSI) for the `top` features as the report ranks them, drifted ones red."""
    rows = _rows(report)[:top][::-1]  # the report's first row at the top of the chart
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    positions = np.arange(len(rows))
    axis.barh(
        positions,
        [r["score"] for r in rows],
        color=[DRIFTED_COLOUR if r["drifted"] else QUIET_COLOUR for r in rows],
    )
    axis.set_yticks(positions, [f"{r['feature']} (p={r['p_value']:.3g})" for r in rows], fontsize=8)
    axis.set(
        xlabel="importance share x drift (PSI)",
        title=f"Drift ranking, {_window(report)} rows (red: past the {_rate(report):.0%} false-alarm threshold)",
    )
    return png_bytes(figure)


def drift_histograms(report: DriftReport | dict, top: int = 4) -> bytes:
    """Reference against live shares per bin (categories, missing last) for the top drifted features, or the top
    ranked ones when nothing drifted."""
    rows = _rows(report)
    chosen = [r for r in rows if r["drifted"]][:top] or rows[:top]
    figure, axes = plt.subplots(len(chosen), 1, figsize=(8, 2.6 * len(chosen)), squeeze=False)
    for axis, row in zip(axes[:, 0], chosen):
        ref = np.asarray(row["reference_bins"], dtype=float)
        live = np.asarray(row["live_bins"], dtype=float)
        positions = np.arange(len(ref))
        axis.bar(positions - 0.2, ref / max(ref.sum(), 1), width=0.4, label="reference", color=QUIET_COLOUR)
        axis.bar(positions + 0.2, live / max(live.sum(), 1), width=0.4, label="live", color=DRIFTED_COLOUR)
        axis.set_xticks(positions, row["bin_labels"], rotation=45, ha="right", fontsize=7)
        tested = ", ".join(f"{name} {row['statistics'][name]:.3g}" for name in row["thresholds"])
        axis.set_title(f"{row['feature']}: {tested} ({'drifted' if row['drifted'] else 'quiet'})", fontsize=9)
        axis.set_ylabel("share of rows")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return png_bytes(figure)


def _window(report: DriftReport | dict) -> int:
    return report.window_rows if isinstance(report, DriftReport) else report["window_rows"]


def _rate(report: DriftReport | dict) -> float:
    return report.false_alarm_rate if isinstance(report, DriftReport) else report["false_alarm_rate"]

"""Quality gates: the one definition the blocking asset checks and the registry's promotion both use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str


def quality_gates(
    metrics: dict, champion_metrics: dict | None, max_ece: float, champion_tolerance: float
) -> list[GateResult]:
    """`metrics` holds test metrics per model (baseline, lightgbm, calibrated); the challenger is `calibrated`."""
    challenger, baseline = metrics["calibrated"], metrics["baseline"]
    gates = [
        GateResult(
            "beats_baseline_log_loss",
            challenger["log_loss"] < baseline["log_loss"],
            f"calibrated {challenger['log_loss']:.5f} vs baseline {baseline['log_loss']:.5f}",
        ),
        GateResult("ece_within_bound", challenger["ece"] <= max_ece, f"ECE {challenger['ece']:.4f}, bound {max_ece}"),
    ]
    if champion_metrics:
        limit = champion_metrics["log_loss"] + champion_tolerance
        gates.append(
            GateResult(
                "not_worse_than_champion",
                challenger["log_loss"] <= limit,
                f"log-loss {challenger['log_loss']:.5f} vs champion {champion_metrics['log_loss']:.5f} "
                f"+ {champion_tolerance}",
            )
        )
    else:
        gates.append(GateResult("not_worse_than_champion", True, "no champion yet"))
    return gates

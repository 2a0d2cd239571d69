"""Render the benchmark JSON under var/bench/ as the README's tables, so the figures there are written by code.

`python -m bench.report` rewrites each README block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
from `var/bench/NAME.json` (blocks whose JSON is missing are left as they are).
"""

from __future__ import annotations

import json
import re
import sys

from bench.common import result_path
from propensity.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
STAGES = ("raw_events", "sessions", "user_daily_aggregates", "session_prefix_features")


def _events(key: str) -> str:
    n = int(key)
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n / 1e3:.0f}k"


def batch_features(data: dict) -> str:
    sizes = list(data["stages"][STAGES[0]].keys())
    header = "| stage | " + " | ".join(f"{_events(s)} events: events/s, peak RSS" for s in sizes) + " |"
    lines = [header, "|---|" + "---|" * len(sizes)]
    for stage in STAGES:
        cells = [f"{data['stages'][stage][s]['events_per_s']:,.0f}/s, {data['stages'][stage][s]['peak_rss_mb']:,.0f} MB" for s in sizes]
        engine = "pandas contract gate" if stage == "raw_events" else "Spark"
        lines.append(f"| {stage} ({engine}) | " + " | ".join(cells) + " |")
    baseline = data["pandas_baseline"]["sessions"]
    cells = [f"{baseline[s]['events_per_s']:,.0f}/s, {baseline[s]['peak_rss_mb']:,.0f} MB" for s in sizes if s in baseline]
    lines.append("| sessions, plain pandas baseline | " + " | ".join(cells) + " |")
    ratios = [baseline[s]["events_per_s"] / data["stages"]["sessions"][s]["events_per_s"] for s in sizes if s in baseline]
    meta = data.get("meta", {})
    lines += [
        "",
        f"Plain pandas sessionisation is {', '.join(f'{r:.1f}x' for r in ratios)} the Spark stage's throughput at these sizes on "
        f"{meta.get('cores', 2)} cores: Spark's place is the cluster (`SPARK_MASTER`), not one small machine. "
        f"Peak RSS of Spark stages includes the JVM (driver memory {meta.get('driver_memory', '?')}). "
        f"Generated {meta.get('generated_at', '?')} by `{meta.get('command', 'make bench')}`.",
    ]
    return "\n".join(lines)


def model_quality(data: dict) -> str:
    columns = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "train_s", "peak_rss_mb")
    lines = ["| dataset | model | " + " | ".join(columns) + " | ECE vs truth |", "|---|---|" + "---|" * (len(columns) + 1)]
    for dataset in ("uci", "uci_no_pagevalues", "taobao", "simulator"):
        if dataset not in data:
            continue
        for model in ("baseline", "lightgbm", "calibrated"):
            m = data[dataset][model]
            cells = []
            for c in columns:
                value = m.get(c)
                std = m.get(f"{c}_std")
                if value is None:
                    cells.append("")
                elif c == "peak_rss_mb":
                    cells.append(f"{value:,.0f}")
                elif c == "train_s":
                    cells.append(f"{value:.2f}")
                else:
                    cells.append(f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
            truth = m.get("ece_vs_truth")
            lines.append(f"| {dataset} | {model} | " + " | ".join(cells) + f" | {'' if truth is None else f'{truth:.4f}'} |")
    lines.append("")
    for dataset in ("taobao", "simulator"):
        calibrated = data.get(dataset, {}).get("calibrated", {})
        if "log_loss_minus_baseline_ci95" in calibrated:
            low, high = calibrated["log_loss_minus_baseline_ci95"]
            verdict = "calibrated LightGBM is better" if high < 0 else "worse" if low > 0 else "no detectable difference"
            lines.append(
                f"- {dataset}: calibrated minus baseline log-loss {calibrated['log_loss_minus_baseline']:+.5f}, "
                f"95 % bootstrap interval over test sessions [{low:+.5f}, {high:+.5f}]: {verdict}."
            )
    meta = data.get("meta", {})
    lines += ["", f"Generated {meta.get('generated_at', '?')} by `{meta.get('command', 'make bench')}`."]
    return "\n".join(lines)


RENDERERS = {"batch_features": batch_features, "model_quality": model_quality}


def main() -> int:
    text = README.read_text()
    for name, render in RENDERERS.items():
        path = result_path(name)
        pattern = re.compile(rf"(<!-- bench:{name} -->).*?(<!-- /bench:{name} -->)", re.S)
        if not path.exists() or not pattern.search(text):
            continue
        table = render(json.loads(path.read_text()))
        text = pattern.sub(lambda m: f"{m.group(1)}\n{table}\n{m.group(2)}", text)
    README.write_text(text)
    print(f"README benchmark tables updated from {result_path('batch_features').parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Drift half of the monitoring benchmark: false alarms on A/A windows, power and delay on injected shifts, the
classifier check, and the cost of a report over 1M rows x every model feature.

Data: the lake's `training_dataset` (realistic feature rows from the pipeline) when it exists, else simulator
traffic folded into session features with pandas (user history missing, as for first-time visitors; no Spark).
Those rows are the population. The reference profile is built from an iid sample of it the size of the pipeline's
train+valid split, and every window is an independent iid sample of it (with replacement, so a 100k window can be
drawn from fewer rows): exactly the two-sample null the monitor is calibrated for, at every window size.

Shifts, each a reweighting of the population rows, so every value stays one a shopper could produce and the
features that go with the shifted one move with it:
- `mean_<d>sd`: exponential tilting of the most important numeric feature (by LightGBM gain on this data) until
  its mean is d reference SDs higher (its missing share unchanged);
- `category_mix`: evening decision points (18-22 UTC) 1.5 times as likely;
- `user_mix`: half the window from heavy users (the top quarter by sessions in the data).
Power is the share of shifted windows that alarm; windows are independent, so the expected delay is 1 / power
windows (geometric), given in windows and rows.

Run alone: `python -m bench.monitoring_drift [--quick]` prints the JSON; `bench.monitoring` calls `drift_section`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.paths import PROJECT_ROOT, table_dir

NAME = "monitoring_drift"
SIZES = (1_000, 10_000, 100_000)
MEAN_SHIFTS = (0.1, 0.2, 0.5)
BIG_WINDOW_ROWS = 1_000_000
SEED = 20261127
# Windows per size (A/A, then per shift): full run, quick run.
AA_WINDOWS = {1_000: (1000, 100), 10_000: (1000, 100), 100_000: (300, 30)}
POWER_WINDOWS = {1_000: (200, 30), 10_000: (200, 30), 100_000: (40, 8)}
CLASSIFIER_WINDOW_ROWS = 5_000
CLASSIFIER_WINDOWS = {"aa": (60, 8), "shift": (10, 3)}
WORKER_TIMEOUT_S = 300


# --------------------------------------------------------------------------------------------- data


def _simulated_rows(users: int) -> tuple[pd.DataFrame, str]:
    from propensity.features.session import fold_session_events
    from propensity.sources.simulator import simulate_traffic

    events = simulate_traffic(n_users=users, days=14).events
    rows, _ = fold_session_events(events.sort_values(["session_id", "event_time", "event_id"], kind="stable"))
    # Decision points before the session's first purchase, labelled by whether it purchases later (as the pipeline).
    rows["label"] = (rows.groupby("session_id")["purchases_so_far"].transform("max") > 0).astype(int)
    rows = rows[rows["purchases_so_far"] == 0].reset_index(drop=True)
    for name in MODEL_FEATURE_NAMES:
        if name not in rows:
            rows[name] = np.nan  # user history needs the Spark aggregates: every user a first-time visitor
    sessions = rows["session_id"].unique()
    valid = set(sessions[np.random.default_rng(SEED).random(len(sessions)) < 0.2])  # a fifth of sessions validate
    rows["split"] = np.where(rows["session_id"].isin(valid), "valid", "train")
    return rows, f"simulator ({users:,} users x 14 days, pandas fold; user history missing)"


def load_population(quick: bool) -> tuple[pd.DataFrame, str]:
    path = table_dir("training_dataset") / "data.parquet"
    if path.exists():
        frame = pd.read_parquet(path, columns=["user_id", "session_id", "split", "label", *MODEL_FEATURE_NAMES])
        return frame, f"lake training_dataset ({path})"
    return _simulated_rows(1_000 if quick else 4_000)


def gain_importance(frame: pd.DataFrame) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """LightGBM's gain importance on this data, and its validation scores and labels (for the reference)."""
    from propensity.models.training import LightGBMSettings, train_lightgbm

    features = list(MODEL_FEATURE_NAMES)
    train, valid = frame[frame["split"] == "train"], frame[frame["split"] == "valid"]
    booster = train_lightgbm(
        train[features], train["label"], valid[features], valid["label"], LightGBMSettings(max_rounds=300)
    )
    gains = booster.feature_importance(importance_type="gain")
    return dict(zip(features, map(float, gains))), booster.predict(valid[features]), valid["label"].to_numpy()


class Population:
    """The rows as a float matrix, and samplers of iid windows under a reweighting."""

    def __init__(self, frame: pd.DataFrame):
        self.names = list(MODEL_FEATURE_NAMES)
        self.matrix = frame[self.names].to_numpy(dtype="float64", na_value=np.nan)
        self.user_id = frame["user_id"].to_numpy()
        self.session_id = frame["session_id"].to_numpy()

    def __len__(self) -> int:
        return len(self.matrix)

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, self.names.index(name)]

    def window(self, rows: int, rng: np.random.Generator, cdf: np.ndarray | None = None) -> pd.DataFrame:
        if cdf is None:
            index = rng.integers(0, len(self), size=rows)
        else:
            index = np.minimum(np.searchsorted(cdf, rng.random(rows) * cdf[-1], side="right"), len(self) - 1)
        picked = self.matrix[index]
        return pd.DataFrame({name: picked[:, i] for i, name in enumerate(self.names)})


def tilted_weights(values: np.ndarray, shift_sd: float) -> np.ndarray:
    """Row weights exp(lambda z) on the standardised non-missing values (missing rows keep weight 1, the non-missing
    total is kept), lambda by bisection so the weighted mean is `shift_sd` SDs above the unweighted one."""
    present = ~np.isnan(values)
    x = values[present]
    z = (x - x.mean()) / x.std()

    def shifted_mean(lam: float) -> float:
        w = np.exp(lam * (z - z.max()))
        return float((w * z).sum() / w.sum())

    low, high = 0.0, 1.0
    while shifted_mean(high) < shift_sd:
        high *= 2
        if high > 1e3:
            raise ValueError(f"cannot tilt the mean by {shift_sd} SD: the values' range is too short")
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if shifted_mean(mid) < shift_sd else (low, mid)
    w = np.exp(high * (z - z.max()))
    weights = np.ones(len(values))
    weights[present] = w / w.mean()
    return weights


def shift_samplers(population: Population, feature: str) -> dict[str, np.ndarray]:
    """Cumulative row weights of every shift."""
    samplers = {f"mean_{d}sd": tilted_weights(population.column(feature), d) for d in MEAN_SHIFTS}
    hour = population.column("session_hour_utc")
    samplers["category_mix"] = np.where((hour >= 18) & (hour <= 22), 1.5, 1.0)
    sessions = pd.Series(population.session_id).groupby(population.user_id).nunique()
    heavy = np.isin(population.user_id, sessions.index[sessions >= sessions.quantile(0.75)])
    samplers["user_mix"] = 0.5 / len(population) + np.where(heavy, 0.5 / heavy.sum(), 0.0)
    return {name: np.cumsum(weights) for name, weights in samplers.items()}


# --------------------------------------------------------------------------------------------- measurements


def _rate(hits: int, trials: int) -> dict[str, Any]:
    """A rate with its 95 % Clopper-Pearson interval."""
    from scipy.stats import beta

    low = float(beta.ppf(0.025, hits, trials - hits + 1)) if hits > 0 else 0.0
    high = float(beta.ppf(0.975, hits + 1, trials - hits)) if hits < trials else 1.0
    return {"rate": hits / trials, "hits": hits, "windows": trials, "ci95": [round(low, 4), round(high, 4)]}


def alarm_rates(reference, population, sizes, windows, rng, cdf=None) -> dict[str, dict[str, Any]]:
    from propensity.monitoring.drift import drift_report

    out = {}
    for size in sizes:
        trials = windows[size]
        hits = sum(drift_report(reference, population.window(size, rng, cdf)).drifted for _ in range(trials))
        out[str(size)] = _rate(hits, trials)
    return out


def classifier_section(reference, population, samplers, quick: bool, rng) -> dict[str, Any]:
    from propensity.monitoring.drift import classifier_drift
    from propensity.monitoring.reference import reference_sample_frame

    sample = reference_sample_frame(reference)
    pick = 1 if quick else 0
    out: dict[str, Any] = {"window_rows": CLASSIFIER_WINDOW_ROWS, "reference_sample_rows": len(sample)}
    started = time.perf_counter()
    calls = 0
    for name, cdf in (("aa", None), *samplers.items()):
        trials = CLASSIFIER_WINDOWS["aa" if name == "aa" else "shift"][pick]
        results = [
            classifier_drift(sample, population.window(CLASSIFIER_WINDOW_ROWS, rng, cdf), seed=i) for i in range(trials)
        ]
        calls += trials
        key = "aa_false_alarm_rate" if name == "aa" else f"power_{name}"
        out[key] = _rate(sum(r["drifted"] for r in results), trials)
        out[key]["mean_auc"] = round(float(np.mean([r["auc"] for r in results])), 4)
    out["seconds_per_check"] = round((time.perf_counter() - started) / calls, 3)
    return out


def worker_big_report(reference_path: Path, population_path: Path, out_path: Path) -> None:
    """In a fresh process: a 1M-row window, then the report timed cold (calibration for 1M rows included) and warm,
    with the kernel's peak RSS reset just before the first report."""
    import psutil

    from bench.common import hwm_bytes, release_memory, reset_hwm
    from propensity.monitoring.drift import drift_report

    reference = json.loads(reference_path.read_text())
    matrix = np.load(population_path)
    index = np.random.default_rng(SEED).integers(0, len(matrix), size=BIG_WINDOW_ROWS)
    window = pd.DataFrame({name: matrix[index, i] for i, name in enumerate(reference["features"])})
    del matrix, index
    release_memory()
    me = psutil.Process()
    hwm_ok = reset_hwm([me])
    rss_start = me.memory_info().rss
    started = time.perf_counter()
    report = drift_report(reference, window)
    cold = time.perf_counter() - started
    peak = hwm_bytes([me]) if hwm_ok else None
    started = time.perf_counter()
    drift_report(reference, window)
    warm = time.perf_counter() - started
    if peak is None:  # no clear_refs: the lifetime peak
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out_path.write_text(
        json.dumps(
            {
                "report_1m_rows_s": cold,
                "report_1m_rows_warm_s": warm,
                "report_peak_rss_mb": peak / 2**20,
                "rss_at_report_start_mb": rss_start / 2**20,
                "rss_method": "VmHWM reset before the report" if hwm_ok else "ru_maxrss (lifetime)",
                "rows": BIG_WINDOW_ROWS,
                "features": len(reference["features"]),
                "drifted": report.drifted,
                "load_average_1m_at_start": os.getloadavg()[0],
            }
        )
    )


def big_report(reference: dict, population: Population) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as scratch:
        scratch_dir = Path(scratch)
        (scratch_dir / "reference.json").write_text(json.dumps(reference))
        np.save(scratch_dir / "population.npy", population.matrix)
        out = scratch_dir / "result.json"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", f"bench.{NAME}", "--worker", scratch]
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"1M-row report worker failed (exit {done.returncode}): {done.stderr[-2000:]}")
        return json.loads(out.read_text())


# --------------------------------------------------------------------------------------------- the section


def drift_section(quick: bool) -> dict[str, Any]:
    from propensity.monitoring.reference import CATEGORICAL_FEATURES, build_reference

    started = time.perf_counter()
    pick = 1 if quick else 0
    frame, source = load_population(quick)
    importance, valid_scores, valid_labels = gain_importance(frame)
    population = Population(frame)
    reference_rows = int((frame["split"] != "test").sum())
    rng = np.random.default_rng(SEED)
    reference_frame = population.window(reference_rows, rng)
    reference = build_reference(reference_frame, valid_scores, valid_labels, importance, seed=SEED)
    numeric = [name for name in MODEL_FEATURE_NAMES if name not in CATEGORICAL_FEATURES]
    shifted = max(numeric, key=lambda name: importance[name])
    samplers = shift_samplers(population, shifted)
    phases: dict[str, float] = {}

    t = time.perf_counter()
    aa = alarm_rates(reference, population, SIZES, {s: AA_WINDOWS[s][pick] for s in SIZES}, rng)
    phases["aa"] = time.perf_counter() - t
    t = time.perf_counter()
    power = {
        name: alarm_rates(reference, population, SIZES, {s: POWER_WINDOWS[s][pick] for s in SIZES}, rng, cdf)
        for name, cdf in samplers.items()
    }
    phases["power"] = time.perf_counter() - t
    t = time.perf_counter()
    classifier = classifier_section(reference, population, samplers, quick, rng)
    phases["classifier"] = time.perf_counter() - t
    t = time.perf_counter()
    cost = big_report(reference, population)
    phases["report_1m"] = time.perf_counter() - t

    delay = {
        name: {
            size: {
                "windows": round(1 / r["rate"], 2) if r["rate"] > 0 else None,
                "rows": round(int(size) / r["rate"]) if r["rate"] > 0 else None,
            }
            for size, r in by_size.items()
        }
        for name, by_size in power.items()
    }
    targets = {
        "false_alarms_at_most_1pct_every_size": all(r["rate"] <= 0.01 for r in aa.values()),
        "power_0.2sd_at_10k_at_least_0.95": power["mean_0.2sd"]["10000"]["rate"] >= 0.95,
        "report_1m_rows_under_10s": cost["report_1m_rows_s"] < 10,
        "classifier_aa_at_most_1pct": classifier["aa_false_alarm_rate"]["rate"] <= 0.01,
    }
    return {
        "aa_false_alarm_rate": {size: r["rate"] for size, r in aa.items()},
        "power": {name: {size: r["rate"] for size, r in by_size.items()} for name, by_size in power.items()},
        "detection_delay_windows": {name: {s: d["windows"] for s, d in by.items()} for name, by in delay.items()},
        "detection_delay_rows": {name: {s: d["rows"] for s, d in by.items()} for name, by in delay.items()},
        "report_1m_rows_s": round(cost["report_1m_rows_s"], 3),
        "report_1m_rows_warm_s": round(cost["report_1m_rows_warm_s"], 3),
        "report_peak_rss_mb": round(cost["report_peak_rss_mb"], 1),
        "classifier": classifier,
        "windows": sum(r["windows"] for r in aa.values())
        + sum(r["windows"] for by in power.values() for r in by.values()),
        "targets": targets,
        "details": {
            "aa": aa,
            "power": power,
            "report_1m": cost,
            "data": source,
            "population_rows": len(population),
            "reference_rows": reference_rows,
            "shifted_feature": shifted,
            "shifted_feature_importance": round(reference["importance"][shifted], 4),
            "false_alarm_target": 0.01,
            "quick": quick,
            "phases_s": {k: round(v, 1) for k, v in phases.items()},
            "wall_s": round(time.perf_counter() - started, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows (under a minute)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the 1M-row report in a fresh process
    args, _ = parser.parse_known_args(argv)
    if args.worker:
        scratch = Path(args.worker)
        worker_big_report(scratch / "reference.json", scratch / "population.npy", scratch / "result.json")
        return 0
    print(json.dumps(drift_section(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

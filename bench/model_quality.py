"""Model quality: baseline (logistic regression), LightGBM and calibrated LightGBM on four datasets.

1. `uci` / `uci_no_pagevalues`: the UCI Online Shoppers Intention table (12,330 sessions, label `Revenue`), 5-fold
   stratified CV (shuffled, fixed seed). Within each training fold a stratified 20 % is held out as validation: it is
   LightGBM's early-stopping set and the calibrator's fitting set (`choose_calibrator` on LightGBM's raw validation
   scores), exactly the roles the pipeline's `valid` split plays; the baseline is fitted on the other 80 %, like the
   pipeline's baseline on `train`. Month and VisitorType are one-hot encoded, Weekend is 0/1, the integer-coded
   columns (OperatingSystems, Browser, Region, TrafficType) stay numeric, for both models. Reported: the mean and
   std over folds of ROC-AUC, PR-AUC, log-loss and Brier; ECE on the pooled out-of-fold predictions (all 12,330 rows)
   as the headline `ece`, since per-fold ECE on ~2,466 rows with 15 equal-mass bins carries ~0.02 of sampling noise
   (`ece_fold_mean` / `ece_fold_std` show it). `uci_no_pagevalues` is the same without `PageValues`, which nearly
   leaks the label (SOURCE.md).
2. `taobao`: the real pipeline (`scripts/demo.py --dataset taobao`, then the `models` group if the demo does not run
   it) in a scratch PROPENSITY_HOME: sessions, Spark features, Feast point-in-time training set with its time split,
   the three models, evaluation. The figures are recomputed here with `evaluate` from the test split's predictions
   (`models/work/test_predictions.parquet`) and checked against the candidate artifact's metrics.json.
3. `simulator`: the same with ~1M simulator events (users scaled from a pilot simulation), plus `ece_vs_truth`:
   ECE against the simulator's true probabilities (`lake/simulator_truth`), matched by `decision_event_id`.
4. `train_s` / `peak_rss_mb`: each model's fit, timed in a fresh child process per model on the same training data
   (Taobao/simulator: the `train` and `valid` splits of the training_dataset parquet; UCI: fold 0). `calibrated` is the
   LightGBM fit plus the raw validation scores plus the calibrator selection. `peak_rss_mb` is the child's kernel peak
   RSS (VmHWM, reset just before the fit), i.e. interpreter + libraries + the loaded training data + the fit;
   `rss_at_fit_start_mb` says how much of it was there before the fit began.

Run: `python -m bench.model_quality [--quick] [--datasets uci,taobao,simulator]`; writes var/bench/model_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from propensity.datasets import dataset_file
from propensity.paths import PROJECT_ROOT

NAME = "model_quality"
MODELS = ("baseline", "lightgbm", "calibrated")
DATASETS = ("uci", "uci_no_pagevalues", "taobao", "simulator")
HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "ece")

UCI_FOLDS = 5
UCI_VALID_FRACTION = 0.2
UCI_SEED = 20261127  # = propensity.models.training.SEED: one seed for the CV split, the valid hold-out and the models
UCI_TIMING_FOLD = 0

SIM_TARGET_EVENTS = 1_000_000
SIM_DAYS = 14  # two weeks: 1- and 7-day user-history windows are whole for the later week, as in a live shop
SIM_PILOT_USERS = 3_000
QUICK_SIM_USERS = 3_000  # ~50k events: the quick run checks the plumbing, not the figures
SIM_SEED = 7  # SourceConfig's default seed and start date: the demo passes only users and days
SIM_START = "2026-11-02"
PIPELINE_TIMEOUT_S = 1800
FIT_TIMEOUT_S = 900

BENCH_DIR = PROJECT_ROOT / "var" / "bench"


# --------------------------------------------------------------------------------------------- data


def load_uci(drop_pagevalues: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_csv(dataset_file("uci"))
    y = frame.pop("Revenue").astype(bool).astype(int).to_numpy()
    frame["Weekend"] = frame["Weekend"].astype(bool).astype("float64")
    if drop_pagevalues:
        frame = frame.drop(columns=["PageValues"])
    X = pd.get_dummies(frame, columns=["Month", "VisitorType"], dtype="float64")
    X = X.astype("float64")
    X.columns = [str(c).replace(" ", "_") for c in X.columns]
    return X, y


def uci_folds(y: np.ndarray):
    """Yields (fold, fit_idx, valid_idx, test_idx) as positions into the full table."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    outer = StratifiedKFold(n_splits=UCI_FOLDS, shuffle=True, random_state=UCI_SEED)
    for fold, (train_idx, test_idx) in enumerate(outer.split(np.zeros(len(y)), y)):
        fit_idx, valid_idx = train_test_split(
            train_idx, test_size=UCI_VALID_FRACTION, stratify=y[train_idx], random_state=UCI_SEED + fold
        )
        yield fold, np.sort(fit_idx), np.sort(valid_idx), test_idx


def pipeline_splits(parquet: Path) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    from propensity.features.definitions import MODEL_FEATURE_NAMES

    features = list(MODEL_FEATURE_NAMES)
    frame = pd.read_parquet(parquet, columns=["split", "label", *features])
    out = {}
    for split in ("train", "valid"):
        part = frame[frame["split"] == split]
        out[split] = (part[features].reset_index(drop=True), part["label"].to_numpy())
    return out


# --------------------------------------------------------------------------------------------- the three models


def fit_and_predict(X_fit, y_fit, X_valid, y_valid, X_test) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The pipeline's recipe on one split: baseline on fit, LightGBM early-stopped on valid, calibrator on valid."""
    from scipy.special import expit

    from propensity.models.calibration import apply_calibrator
    from propensity.models.calibration_fit import choose_calibrator
    from propensity.models.training import (
        SEED,
        LightGBMSettings,
        fit_logistic_baseline,
        predict_logistic_baseline,
        train_lightgbm,
    )

    baseline = fit_logistic_baseline(X_fit, y_fit)
    booster = train_lightgbm(X_fit, y_fit, X_valid, y_valid, LightGBMSettings())
    calibrator, evidence = choose_calibrator(booster.predict(X_valid, raw_score=True), y_valid, seed=SEED % 2**31)
    raw = booster.predict(X_test, raw_score=True)
    predictions = {
        "baseline": predict_logistic_baseline(baseline, X_test),
        "lightgbm": expit(raw),
        "calibrated": apply_calibrator(calibrator, raw),
    }
    info = {
        "best_iteration": int(booster.best_iteration),
        "calibrator": calibrator["method"],
        "calibrator_cv_log_loss": {k: round(v, 6) for k, v in evidence["cv_log_loss"].items()},
    }
    return predictions, info


# --------------------------------------------------------------------------------------------- child workers


def worker_fit(args: argparse.Namespace) -> dict[str, Any]:
    """Fit one model in this (fresh) process: seconds and kernel peak RSS of the fit alone."""
    import resource

    import psutil

    from bench.common import hwm_bytes, release_memory, reset_hwm
    from propensity.models.calibration_fit import choose_calibrator
    from propensity.models.training import SEED, LightGBMSettings, fit_logistic_baseline, train_lightgbm

    if args.source == "uci":
        X, y = load_uci(drop_pagevalues=args.no_pagevalues)
        fold, fit_idx, valid_idx, _ = next(f for f in uci_folds(y) if f[0] == args.fold)
        X_fit, y_fit = X.iloc[fit_idx].reset_index(drop=True), y[fit_idx]
        X_valid, y_valid = X.iloc[valid_idx].reset_index(drop=True), y[valid_idx]
        del X, y
    else:
        splits = pipeline_splits(Path(args.data))
        (X_fit, y_fit), (X_valid, y_valid) = splits["train"], splits["valid"]
        del splits
    import lightgbm  # noqa: F401  imported before the clock starts: its import is not the fit
    import scipy.optimize  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    release_memory()
    me = psutil.Process()
    hwm_ok = reset_hwm([me])
    rss_start = me.memory_info().rss
    info: dict[str, Any] = {"load_average_1m_at_start": os.getloadavg()[0]}
    start = time.perf_counter()
    if args.model == "baseline":
        fit_logistic_baseline(X_fit, y_fit)
    else:
        booster = train_lightgbm(X_fit, y_fit, X_valid, y_valid, LightGBMSettings())
        info["best_iteration"] = int(booster.best_iteration)
        if args.model == "calibrated":
            calibrator, _ = choose_calibrator(booster.predict(X_valid, raw_score=True), y_valid, seed=SEED % 2**31)
            info["calibrator"] = calibrator["method"]
    seconds = time.perf_counter() - start
    if hwm_ok:
        peak, how = hwm_bytes([me]), "VmHWM reset at fit start"
    else:  # no /proc clear_refs: the lifetime peak, data loading included
        peak, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss (lifetime)"
    return {
        "train_s": seconds,
        "peak_rss_mb": peak / 2**20,
        "rss_at_fit_start_mb": rss_start / 2**20,
        "rss_method": how,
        "train_rows": int(len(X_fit)),
        "valid_rows": int(len(X_valid)),
        "features": int(X_fit.shape[1]),
        **info,
    }


def worker_models(args: argparse.Namespace) -> dict[str, Any]:
    """Materialise the `models` group in the Dagster instance of $PROPENSITY_HOME (what the demo has not done)."""
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("DAGSTER_HOME", os.path.join(os.environ["PROPENSITY_HOME"], "dagster"))
    import dagster as dg

    from propensity_assets.definitions import defs

    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            list(defs.assets),
            selection=dg.AssetSelection.groups("models"),
            resources=dict(defs.resources),
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,  # a failed quality gate is a finding to report, not a reason to lose the figures
        )
    return {
        "success": bool(result.success),
        "seconds": time.perf_counter() - start,
        "checks": {
            f"{e.asset_key.to_user_string()}:{e.check_name}": bool(e.passed)
            for e in result.get_asset_check_evaluations()
        },
        "materialized": sorted({e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}),
    }


def _child_env(home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONWARNINGS"] = "ignore"
    if home is not None:
        env["PROPENSITY_HOME"] = str(home)
        env["DAGSTER_HOME"] = str(home / "dagster")
    return env


def _run_child(command: list[str], env: dict[str, str], log: Path, timeout: float) -> tuple[int, float, float]:
    """Run a command in its own process group, output to `log`; returns (exit code, seconds, peak tree RSS MB).
    On timeout the whole group (this child and its Spark JVM) is killed."""
    from bench.common import RssSampler

    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        sampler = RssSampler(pid=child.pid, interval=0.25).start()
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            code = -9
        finally:
            peak = sampler.peak_mb  # a finished child samples as 0: the peak seen while it ran stays
            sampler.stop()
    return code, time.perf_counter() - start, peak


def _worker(
    kind: str, extra: list[str], env: dict[str, str], scratch: Path, tag: str, timeout: float
) -> dict[str, Any]:
    out = scratch / f"{tag}.json"
    log = scratch / f"{tag}.log"
    command = [sys.executable, "-m", f"bench.{NAME}", "--worker", kind, "--out", str(out), *extra]
    code, _, _ = _run_child(command, env, log, timeout)
    if code != 0 or not out.exists():
        raise RuntimeError(f"worker {kind} {' '.join(extra)} failed (exit {code}); last output:\n{_tail(log)}")
    return json.loads(out.read_text())


def _last_error(log: Path) -> str | None:
    """The exception line a crashed child ended with (with the line after it, where Dagster names the failed check)."""
    lines = _tail(log, 200).splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if "Error" in lines[i] or "Exception" in lines[i]:
            return " ".join(line.strip() for line in lines[i : i + 2])
    return lines[-1] if lines else None


def _lake_counts(home: Path) -> dict[str, int]:
    """Row counts of the lake tables the demo builds, from parquet footers (the demo summary may be missing)."""
    import pyarrow.dataset as ds

    counts = {}
    for table in ("raw_events", "sessions", "session_prefix_features", "training_dataset"):
        path = home / "lake" / table
        if path.exists():
            try:
                counts[table] = ds.dataset(path, format="parquet", partitioning="hive").count_rows()
            except Exception:  # noqa: BLE001  a count is context, not a result
                pass
    return counts


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def time_fits(source_args: list[str], env: dict[str, str], scratch: Path, tag: str) -> dict[str, dict[str, Any]]:
    fits = {}
    for model in MODELS:
        fit = _worker("fit", [*source_args, "--model", model], env, scratch, f"fit-{tag}-{model}", FIT_TIMEOUT_S)
        fits[model] = fit
        print(
            f"  fit {tag}/{model}: {fit['train_s']:.2f} s, peak RSS {fit['peak_rss_mb']:.0f} MB "
            f"(at fit start {fit['rss_at_fit_start_mb']:.0f} MB)",
            flush=True,
        )
    return fits


# --------------------------------------------------------------------------------------------- UCI


def run_uci(drop_pagevalues: bool, env: dict[str, str], scratch: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from propensity.models.metrics import evaluate, expected_calibration_error

    X, y = load_uci(drop_pagevalues)
    oof = {m: np.full(len(y), np.nan) for m in MODELS}
    per_fold: dict[str, list[dict[str, float]]] = {m: [] for m in MODELS}
    fold_info = []
    for fold, fit_idx, valid_idx, test_idx in uci_folds(y):
        predictions, info = fit_and_predict(
            X.iloc[fit_idx], y[fit_idx], X.iloc[valid_idx], y[valid_idx], X.iloc[test_idx]
        )
        for model, p in predictions.items():
            oof[model][test_idx] = p
            per_fold[model].append(evaluate(y[test_idx], p))
        fold_info.append(
            {"fold": fold, "fit_rows": len(fit_idx), "valid_rows": len(valid_idx), "test_rows": len(test_idx), **info}
        )
    tag = "uci_no_pagevalues" if drop_pagevalues else "uci"
    fits = time_fits(
        ["--source", "uci", "--fold", str(UCI_TIMING_FOLD), *(["--no-pagevalues"] if drop_pagevalues else [])],
        env,
        scratch,
        tag,
    )

    result: dict[str, Any] = {}
    for model in MODELS:
        folds = per_fold[model]
        entry: dict[str, Any] = {}
        for key in ("roc_auc", "pr_auc", "log_loss", "brier"):
            values = np.array([f[key] for f in folds])
            entry[key] = float(values.mean())
            entry[f"{key}_std"] = float(values.std(ddof=1))
        entry["ece"] = expected_calibration_error(y, np.clip(oof[model], 1e-7, 1 - 1e-7))  # pooled out-of-fold
        ece_folds = np.array([f["ece"] for f in folds])
        entry["ece_fold_mean"] = float(ece_folds.mean())
        entry["ece_fold_std"] = float(ece_folds.std(ddof=1))
        pooled = evaluate(y, oof[model])
        entry["pooled_oof"] = {k: pooled[k] for k in ("roc_auc", "pr_auc", "log_loss", "brier", "ece")}
        entry["folds"] = {k: [round(f[k], 5) for f in folds] for k in HEADLINE}
        entry["train_s"] = fits[model]["train_s"]
        entry["peak_rss_mb"] = fits[model]["peak_rss_mb"]
        entry["rss_at_fit_start_mb"] = fits[model]["rss_at_fit_start_mb"]
        result[model] = entry
    meta = {
        "rows": int(len(y)),
        "positive_rate": float(y.mean()),
        "features": int(X.shape[1]),
        "feature_columns": list(X.columns),
        "folds": fold_info,
        "timing_fold": UCI_TIMING_FOLD,
        "timing_fits": fits,
    }
    return result, meta


# --------------------------------------------------------------------------------------------- pipeline datasets


def simulator_users(target_events: int, days: int) -> tuple[int, float]:
    """Users for ~target events, from a pilot simulation with the demo's seed and start date (events per user-day)."""
    from propensity.sources.simulator import simulate_traffic

    pilot = simulate_traffic(n_users=SIM_PILOT_USERS, days=days, start_date=SIM_START, seed=SIM_SEED)
    rate = len(pilot.events) / (SIM_PILOT_USERS * days)
    return max(100, round(target_events / (rate * days))), rate


def run_pipeline_dataset(
    dataset: str, home: Path, scratch: Path, users: int | None, days: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    from propensity.models.metrics import calibration_error_vs_truth, evaluate

    env = _child_env(home)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "scripts/demo.py", "--dataset", dataset]
    if dataset == "simulator":
        command += ["--users", str(users), "--days", str(days)]
    print(f"  {' '.join(command[1:])} (PROPENSITY_HOME={home})", flush=True)
    started_at = time.time()
    code, demo_s, demo_rss = _run_child(command, env, scratch / f"demo-{dataset}.log", PIPELINE_TIMEOUT_S)
    summary_path = home / "demo" / "summary.json"
    summary = (
        json.loads(summary_path.read_text())
        if summary_path.exists() and summary_path.stat().st_mtime >= started_at
        else None
    )
    demo_error = None if summary is not None else _last_error(scratch / f"demo-{dataset}.log")
    counts = _lake_counts(home)
    failed_checks = [k for k, v in (summary or {}).get("checks", {}).items() if not v]
    print(
        f"  demo: exit {code}, {demo_s:.0f} s, peak tree RSS {demo_rss:,.0f} MB, {counts.get('raw_events', 0):,} "
        f"events, {counts.get('session_prefix_features', 0):,} decision points; "
        + (f"failed checks {failed_checks or 'none'}" if summary else f"no summary, it ended with: {demo_error}"),
        flush=True,
    )

    work = home / "models" / "work"
    predictions_path = work / "test_predictions.parquet"
    ran_models_in_demo = predictions_path.exists() and predictions_path.stat().st_mtime >= started_at
    models_run = None
    if not ran_models_in_demo:
        if not counts.get("session_prefix_features"):
            raise RuntimeError(
                f"demo for {dataset} failed (exit {code}) before the features; last "
                f"output:\n{_tail(scratch / f'demo-{dataset}.log')}"
            )
        print("  the demo did not materialise the models group: materialising it", flush=True)
        models_start = time.perf_counter()
        code_m, _, models_rss = _run_child(
            [
                sys.executable,
                "-m",
                f"bench.{NAME}",
                "--worker",
                "models",
                "--out",
                str(scratch / f"models-{dataset}.json"),
            ],
            env,
            scratch / f"models-{dataset}.log",
            PIPELINE_TIMEOUT_S,
        )
        models_s = time.perf_counter() - models_start
        out = scratch / f"models-{dataset}.json"
        models_run = json.loads(out.read_text()) if out.exists() else {"success": False}
        models_run |= {"exit": code_m, "wall_s": models_s, "peak_tree_rss_mb": models_rss}
        failed_model_checks = [k for k, v in models_run.get("checks", {}).items() if not v]
        print(
            f"  models group: success {models_run['success']}, {models_s:.0f} s, failed checks "
            f"{failed_model_checks or 'none'}",
            flush=True,
        )
        if not predictions_path.exists():
            raise RuntimeError(
                f"models group for {dataset} wrote no test predictions; last "
                f"output:\n{_tail(scratch / f'models-{dataset}.log')}"
            )

    dataset_path = home / "lake" / "training_dataset" / "data.parquet"
    training = pd.read_parquet(dataset_path, columns=["decision_id", "decision_event_id", "split", "label"])
    test = pd.read_parquet(predictions_path)
    test = test.merge(
        training[["decision_id", "decision_event_id"]], on="decision_id", how="left", validate="one_to_one"
    )
    y = test["label"].to_numpy()
    metrics = {m: evaluate(y, test[f"p_{m}"].to_numpy()) for m in MODELS}

    metrics["calibrated"]["log_loss_minus_baseline"], metrics["calibrated"]["log_loss_minus_baseline_ci95"] = (
        log_loss_difference_ci(test, "p_calibrated", "p_baseline")
    )

    truth_dir = home / "lake" / "simulator_truth"
    truth_info = None
    if truth_dir.exists():
        truth = pd.read_parquet(truth_dir).drop_duplicates("event_id").set_index("event_id")["true_propensity"]
        matched = test["decision_event_id"].map(truth)
        truth_info = {"test_rows": len(test), "matched": int(matched.notna().sum())}
        ok = matched.notna().to_numpy()
        for m in MODELS:
            metrics[m]["ece_vs_truth"] = calibration_error_vs_truth(
                matched.to_numpy()[ok], test[f"p_{m}"].to_numpy()[ok]
            )

    candidate = work / "candidate"
    pipeline_metrics = (
        json.loads((candidate / "metrics.json").read_text()) if (candidate / "metrics.json").exists() else {}
    )
    pipeline_training = (
        json.loads((candidate / "training.json").read_text()) if (candidate / "training.json").exists() else {}
    )
    disagreements = {}
    for m in MODELS:
        for key in (*HEADLINE, "ece_vs_truth"):
            theirs = pipeline_metrics.get(m, {}).get(key)
            ours = metrics[m].get(key)
            if theirs is not None and ours is not None and abs(theirs - ours) > 1e-9:
                disagreements[f"{m}.{key}"] = {"bench": ours, "pipeline": theirs}
    calibrator = json.loads((work / "calibrator.json").read_text()) if (work / "calibrator.json").exists() else {}
    # model.txt holds the best iteration's trees, one per round for a binary objective.
    pipeline_trees = (work / "model.txt").read_text().count("\nTree=") if (work / "model.txt").exists() else None

    fits = time_fits(["--source", "pipeline", "--data", str(dataset_path)], _child_env(), scratch, dataset)
    for m in ("lightgbm", "calibrated"):
        if fits[m].get("best_iteration") != pipeline_trees:
            disagreements[f"{m}.best_iteration(refit)"] = {
                "bench": fits[m].get("best_iteration"),
                "pipeline_trees": pipeline_trees,
            }
    if fits["calibrated"].get("calibrator") != calibrator.get("method"):
        disagreements["calibrator(refit)"] = {
            "bench": fits["calibrated"].get("calibrator"),
            "pipeline": calibrator.get("method"),
        }

    result = {}
    for m in MODELS:
        entry = {k: metrics[m][k] for k in HEADLINE}
        if "ece_vs_truth" in metrics[m]:
            entry["ece_vs_truth"] = metrics[m]["ece_vs_truth"]
        entry["top_decile_lift"] = metrics[m]["top_decile_lift"]
        for key in ("log_loss_minus_baseline", "log_loss_minus_baseline_ci95"):
            if key in metrics[m]:
                entry[key] = metrics[m][key]
        entry["train_s"] = fits[m]["train_s"]
        entry["peak_rss_mb"] = fits[m]["peak_rss_mb"]
        entry["rss_at_fit_start_mb"] = fits[m]["rss_at_fit_start_mb"]
        result[m] = entry

    splits = {}
    for split in ("train", "valid", "test"):
        part = training[training["split"] == split]
        splits[split] = {"rows": int(len(part)), "positive_rate": float(part["label"].mean()) if len(part) else None}
    meta = {
        "command": " ".join(command[1:]),
        "demo_exit": code,
        "demo_s": demo_s,
        "demo_peak_tree_rss_mb": demo_rss,
        "models_group_in_demo": ran_models_in_demo,
        "models_group_run": models_run,
        "pipeline_s": demo_s + (models_run["wall_s"] if models_run else 0.0),
        "demo_summary_written": summary is not None,
        "demo_error": demo_error,
        "events": (summary or {}).get("events", counts.get("raw_events")),
        "sessions": (summary or {}).get("sessions", counts.get("sessions")),
        "users": (summary or {}).get("users"),
        "event_days": (summary or {}).get("event_days"),
        "session_purchase_rate": (summary or {}).get("session_purchase_rate"),
        "decision_points": (summary or {}).get("decision_points", counts.get("session_prefix_features")),
        "lake_rows": counts,
        "demo_failed_checks": failed_checks,
        "splits": splits,
        "test_rows": int(len(test)),
        "best_iteration": pipeline_trees,
        "trees_in_training_json": pipeline_training.get("trees"),
        "calibrator": calibrator.get("method"),
        "gates": pipeline_training.get("gates"),
        "truth_match": truth_info,
        "bench_vs_pipeline_disagreements": disagreements,
        "timing_fits": fits,
    }
    return result, meta


# --------------------------------------------------------------------------------------------- orchestration


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if abs(value) < 100 else round(value, 1)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    from bench.common import remove_scratch, run_meta

    wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(wanted) - {"uci", "taobao", "simulator"})
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}: choose from uci, taobao, simulator")
    scratch = Path(args.scratch) if args.scratch else BENCH_DIR / "scratch" / f"{NAME}-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    meta: dict[str, Any] = {
        **run_meta(NAME, args.quick),
        "seeds": {"uci_cv": UCI_SEED, "lightgbm_and_baseline": UCI_SEED, "simulator": SIM_SEED},
        "headline_note": "pipeline datasets: test split of the time-based split; UCI: mean over 5 CV folds (std "
        "beside), ece from the pooled out-of-fold predictions",
        "train_s_note": "fit only, in a fresh child process per model; calibrated = LightGBM fit + raw validation "
        "scores + choose_calibrator. UCI: fold 0's fit and valid parts (sizes in uci.timing_fits); pipelines: the "
        "train split, with the valid split for early stopping and calibration",
        "peak_rss_note": "kernel peak RSS (VmHWM) of the fitting child, reset just before the fit: interpreter, "
        "libraries, training data and the fit; rss_at_fit_start_mb is the part present before the fit",
        "phases_s": {},
        "errors": {},
    }
    errors: list[str] = []
    start = time.perf_counter()
    try:
        if "uci" in wanted:
            for drop, key in ((False, "uci"), (True, "uci_no_pagevalues")):
                print(f"--- {key}: {UCI_FOLDS}-fold CV", flush=True)
                t = time.perf_counter()
                try:
                    result[key], meta[key] = run_uci(drop, _child_env(), scratch)
                except Exception as error:  # noqa: BLE001  one dataset failing must not lose the others
                    errors.append(f"{key}: {error}")
                    meta["errors"][key] = str(error)[-2000:]
                meta["phases_s"][key] = time.perf_counter() - t
        for dataset in ("taobao", "simulator"):
            if dataset not in wanted:
                continue
            users = days = None
            if dataset == "simulator":
                days = args.sim_days
                if args.sim_users:
                    users, rate = args.sim_users, None
                elif args.quick:
                    users, rate = QUICK_SIM_USERS, None
                else:
                    users, rate = simulator_users(args.sim_events, days)
                meta["simulator_sizing"] = {
                    "users": users,
                    "days": days,
                    "target_events": None if args.quick or args.sim_users else args.sim_events,
                    "pilot_events_per_user_day": rate,
                    "seed": SIM_SEED,
                    "start_date": SIM_START,
                }
            print(f"--- {dataset}: full pipeline" + (f" ({users:,} users x {days} days)" if users else ""), flush=True)
            t = time.perf_counter()
            try:
                result[dataset], meta[dataset] = run_pipeline_dataset(dataset, scratch / dataset, scratch, users, days)
            except Exception as error:  # noqa: BLE001
                errors.append(f"{dataset}: {error}")
                meta["errors"][dataset] = str(error)[-2000:]
                print(f"  FAILED: {error}", flush=True)
            meta["phases_s"][dataset] = time.perf_counter() - t
            if not args.keep_scratch:
                shutil.rmtree(scratch / dataset, ignore_errors=True)
    finally:
        if not args.keep_scratch:
            remove_scratch(scratch)
    meta["wall_s"] = time.perf_counter() - start
    meta["load_average_at_end"] = list(os.getloadavg())
    meta["budgets"] = budget_verdicts(result)
    ordered = {d: result[d] for d in DATASETS if d in result}
    return _round({**ordered, "meta": meta}), errors


def log_loss_difference_ci(
    test: pd.DataFrame, a: str, b: str, draws: int = 2000, seed: int = 0
) -> tuple[float, list[float]]:
    """log-loss(a) - log-loss(b) on the test split with a 95 % bootstrap interval over sessions (a session's decision
    points are not independent). An interval that straddles 0 means the data cannot tell the two models apart."""
    floor = 1e-7
    y = test["label"].to_numpy()

    def losses(column: str) -> np.ndarray:
        p = np.clip(test[column].to_numpy(), floor, 1 - floor)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    per_session = (
        pd.DataFrame({"session": test["session_id"].to_numpy(), "diff": losses(a) - losses(b)})
        .groupby("session")["diff"]
        .agg(["sum", "count"])
    )
    sums, counts = per_session["sum"].to_numpy(), per_session["count"].to_numpy()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(draws, len(sums)))
    boot = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    return float(sums.sum() / counts.sum()), [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]


def budget_verdicts(result: dict[str, Any]) -> dict[str, Any]:
    """docs/ARCHITECTURE.md, Budgets, Quality: calibrated LightGBM beats the baseline on log-loss and ROC-AUC;
    ECE under 0.02."""
    out = {}
    for dataset, models in result.items():
        cal, base = models["calibrated"], models["baseline"]
        out[dataset] = {
            "calibrated_beats_baseline_log_loss": cal["log_loss"] < base["log_loss"],
            "calibrated_beats_baseline_roc_auc": cal["roc_auc"] > base["roc_auc"],
            "calibrated_ece_under_0.02": cal["ece"] < 0.02,
            **({"calibrated_ece_vs_truth_under_0.02": cal["ece_vs_truth"] < 0.02} if "ece_vs_truth" in cal else {}),
        }
    return out


def print_summary(payload: dict[str, Any]) -> None:
    from bench.common import format_table

    def num(value, digits=4):
        return "-" if value is None else f"{value:.{digits}f}"

    rows = []
    for dataset in DATASETS:
        if dataset not in payload:
            continue
        for model in MODELS:
            m = payload[dataset][model]
            auc = num(m["roc_auc"]) + (f" ±{m['roc_auc_std']:.3f}" if "roc_auc_std" in m else "")
            rows.append(
                [
                    dataset,
                    model,
                    auc,
                    num(m["pr_auc"]),
                    num(m["log_loss"]),
                    num(m["brier"]),
                    num(m["ece"]),
                    num(m.get("ece_vs_truth")),
                    num(m["train_s"], 2),
                    num(m["peak_rss_mb"], 0),
                ]
            )
    print(
        format_table(
            [
                "dataset",
                "model",
                "roc_auc",
                "pr_auc",
                "log_loss",
                "brier",
                "ece",
                "ece_vs_truth",
                "train_s",
                "peak_rss_mb",
            ],
            rows,
        )
    )
    meta = payload["meta"]
    for dataset, verdict in meta.get("budgets", {}).items():
        print(f"{dataset}: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in verdict.items()))
    for dataset in ("taobao", "simulator"):
        if dataset in meta:
            d = meta[dataset]
            print(
                f"{dataset}: {d['events'] or 0:,} events, {d['decision_points'] or 0:,} decision points, test "
                f"{d['test_rows']:,} rows; pipeline {d['pipeline_s']:.0f} s (demo {d['demo_s']:.0f} s, summary "
                f"written: {d['demo_summary_written']}); disagreements {d['bench_vs_pipeline_disagreements'] or 'none'}"
            )
    print(f"whole run {meta['wall_s']:.0f} s; errors: {meta['errors'] or 'none'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"small simulator run ({QUICK_SIM_USERS:,} users) to check the plumbing"
    )
    parser.add_argument(
        "--datasets", default="uci,taobao,simulator", help="comma-separated subset of uci,taobao,simulator"
    )
    parser.add_argument(
        "--sim-events", type=lambda s: int(float(s)), default=SIM_TARGET_EVENTS, help="simulator target event count"
    )
    parser.add_argument("--sim-users", type=int, help="simulator users (overrides --sim-events sizing)")
    parser.add_argument("--sim-days", type=int, default=SIM_DAYS)
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch state directories")
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=NAME, help="result name: var/bench/<name>.json")
    # Internal: child-process workers.
    parser.add_argument("--worker", choices=("fit", "models"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--source", choices=("uci", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--fold", type=int, default=UCI_TIMING_FOLD, help=argparse.SUPPRESS)
    parser.add_argument("--no-pagevalues", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    from bench.common import parse_forwarded_args

    return parse_forwarded_args(parser, NAME, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker = {"fit": worker_fit, "models": worker_models}[args.worker]
        Path(args.out).write_text(json.dumps(worker(args), default=str))
        return 0
    from bench.common import publish

    payload, errors = run(args)
    publish(args.output, payload, print_summary)
    if errors:
        print("errors:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

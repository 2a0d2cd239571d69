"""The scoring container's footprint: installed size of its environment and time from process start to the first
`GET /ping` 200, against the platform's environment, measured in the same run.

Arms (each `python -m serving.server` with the same model artifact and the same Feast registry and SQLite store):
- `container`: the environment of requirements-serving.lock (`make serving-env`), the code laid out as the Dockerfile
  copies it (`serving.control.container`): what the image runs.
- `platform`: the full environment of requirements.lock, the whole checkout on the path.
- `before`: the code at git revision `--before` (default `BEFORE_REVISION`, the last commit before the serving path
  got its own lock; checked out into a scratch worktree) in the full environment, which is what the Dockerfile
  installed then. Left out, and said so in `meta`, where the clone does not have that revision (a shallow clone).
Start-up runs alternate between the arms (round robin), so a slower minute of the VM does not favour one of them.

    python -m bench.serving_footprint [--runs 7] [--before REV | --before ""] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from bench.common import bench_dir, parse_forwarded_args, publish, remove_scratch, run_meta, utc_now_iso
from propensity.settings import PROJECT_ROOT, settings

NAME = "serving_footprint"
SERVING_VENV = PROJECT_ROOT / ".venv-serving"
BEFORE_REVISION = "fb0939e"  # serve imported Dagster and PySpark, and the Dockerfile installed the whole lock
START_TIMEOUT_S = 180.0
POLL_S = 0.01


def site_packages(venv: Path) -> dict[str, Any]:
    """Bytes of every file under the environment's site-packages (what an image layer holds), and its packages."""
    root = next((venv / "lib").glob("python3*/site-packages"))
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    packages = sorted(p.name.split("-")[0].lower() for p in root.glob("*.dist-info"))
    return {"path": str(root), "mb": round(total / 1e6, 1), "packages": len(packages), "names": packages}


def make_state(home: Path) -> Path:
    """A Feast registry and SQLite online store (local profile) and a small real artifact: what `serve` loads."""
    import lightgbm as lgb

    from feature_repo import FEAST_OBJECTS
    from propensity.feature_store import open_feature_store
    from propensity.features.definitions import FEATURE_SERVICE_NAME, MODEL_FEATURE_NAMES
    from propensity.models.artifact import write_artifact

    config = replace(settings(), home=home, profile="local")
    open_feature_store("local", settings=config).apply(FEAST_OBJECTS)
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.gamma(2.0, 2.0, size=(4000, len(MODEL_FEATURE_NAMES))), columns=list(MODEL_FEATURE_NAMES))
    y = (rng.random(4000) < 1 / (1 + np.exp(2 - 0.2 * X["session_cart_adds"]))).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y), 100
    )
    return write_artifact(
        home / "model",
        booster=booster,
        calibrator={"method": "identity"},
        baseline={},
        features={"feature_service": FEATURE_SERVICE_NAME, "features": list(MODEL_FEATURE_NAMES)},
        training={"rows": len(X)},
        metrics={},
    )


def start_to_ping(python: Path, code_root: Path, env: dict[str, str]) -> dict[str, float]:
    """One cold start: seconds from spawning `python -m serving.server` to its first /ping 200, and its RSS then."""
    from serving.control.endpoint import free_port

    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(python), "-m", "serving.server"],
        cwd=code_root,
        env=env | {"SERVING_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{python} -m serving.server exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1).status == 200:
                    seconds = time.perf_counter() - started
                    break
            except OSError:
                pass
            if time.perf_counter() - started > START_TIMEOUT_S:
                raise RuntimeError(f"no /ping 200 within {START_TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)
        rss = psutil.Process(process.pid).memory_info().rss / 1e6
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {"seconds": seconds, "rss_mb": rss}


def has_revision(revision: str) -> bool:
    done = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "cat-file", "-e", f"{revision}^{{commit}}"], capture_output=True, timeout=30
    )
    return done.returncode == 0


def import_seconds(python: Path, code_root: Path, env: dict[str, str], module: str, runs: int) -> float:
    """Median wall time of a fresh interpreter importing `module` (minus the bare interpreter's start)."""

    def timed(statement: str) -> float:
        started = time.perf_counter()
        subprocess.run([str(python), "-c", statement], cwd=code_root, env=env, check=True, timeout=120)
        return time.perf_counter() - started

    bare = statistics.median(timed("pass") for _ in range(runs))
    return statistics.median(timed(f"import {module}") for _ in range(runs)) - bare


def worktree(revision: str, target: Path) -> Path:
    done = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "worktree", "add", "--detach", str(target), revision],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode:
        raise SystemExit(f"cannot check out {revision} for the `before` arm: {done.stderr.strip()}")
    return target


def run(args: argparse.Namespace) -> dict[str, Any]:
    from serving.control.container import container_environment, container_tree

    if not (SERVING_VENV / "bin" / "python").exists():
        raise SystemExit(f"{SERVING_VENV} is missing: run make serving-env (make bench does)")
    scratch = bench_dir() / "scratch" / f"{NAME}-{os.getpid()}"
    home = scratch / "home"
    home.mkdir(parents=True)
    meta = run_meta(NAME, args.quick)
    runs = 2 if args.quick else args.runs
    before_tree = None
    try:
        model = make_state(home)
        base_env = container_environment(os.environ) | {
            "PROPENSITY_HOME": str(home),
            "PROPENSITY_PROFILE": "local",
            "PROPENSITY_MODEL_DIR": str(model),
        }
        arms = {
            "container": (SERVING_VENV / "bin" / "python", container_tree(scratch / "program"), base_env),
            "platform": (Path(sys.executable), PROJECT_ROOT, base_env),
        }
        if args.before and not has_revision(args.before):
            meta["before_skipped"] = f"revision {args.before} is not in this clone (shallow?): no `before` arm"
            print(f"  {meta['before_skipped']}", flush=True)
        elif args.before:
            before_tree = worktree(args.before, scratch / "before")
            arms["before"] = (Path(sys.executable), before_tree, base_env | {"PYTHONPATH": str(before_tree)})
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
        for round_ in range(runs + 1):  # round 0 warms the page cache and writes .pyc files: not counted
            for name, (python, code, env) in arms.items():
                sample = start_to_ping(python, code, env)
                if round_:
                    samples[name].append(sample)
                print(
                    f"  [{name}] start to /ping {sample['seconds']:.2f} s{'' if round_ else ' (warm-up)'}", flush=True
                )
        environments = {"container": site_packages(SERVING_VENV), "platform": site_packages(Path(sys.prefix))}
        container_python, container_code, container_env = arms["container"]
        imports = {
            module: round(import_seconds(container_python, container_code, container_env, module, runs), 3)
            for module in ("feast", "lightgbm", "serving.server")
        }
        result: dict[str, Any] = {"arms": {}, "container_import_s": imports}
        for name, (python, code, _) in arms.items():
            seconds = [s["seconds"] for s in samples[name]]
            environment = environments["container" if name == "container" else "platform"]
            result["arms"][name] = {
                "python": str(python),
                "code": "Dockerfile layout" if name == "container" else str(code),
                "site_packages_mb": environment["mb"],
                "packages": environment["packages"],
                "start_to_ping_s": {
                    "median": round(statistics.median(seconds), 3),
                    "min": round(min(seconds), 3),
                    "max": round(max(seconds), 3),
                    "runs": [round(s, 3) for s in seconds],
                },
                "rss_mb_at_ping": round(statistics.median(s["rss_mb"] for s in samples[name]), 1),
            }
        baseline = "before" if "before" in result["arms"] else "platform"
        container, reference = result["arms"]["container"], result["arms"][baseline]
        result["ratios"] = {
            "baseline": baseline,
            "site_packages": round(reference["site_packages_mb"] / container["site_packages_mb"], 2),
            "start_to_ping": round(reference["start_to_ping_s"]["median"] / container["start_to_ping_s"]["median"], 2),
        }
        result["only_in_platform"] = sorted(
            set(environments["platform"]["names"]) - set(environments["container"]["names"])
        )[:400]
        meta |= {
            "before_revision": args.before if before_tree is not None else None,
            "runs_per_arm": runs,
            "method": "each run spawns `python -m serving.server` (SQLite online store, a 100-tree LightGBM artifact) "
            "and polls GET /ping every 10 ms; seconds from spawn to the first 200; arms alternate round robin; "
            "round 0 is a warm-up. Size: bytes of the files under each environment's site-packages. The "
            "`before` arm runs the old revision's code in the full environment, as the old Dockerfile installed it.",
            "generated_at_end": utc_now_iso(),
        }
        result["meta"] = meta
        return result
    finally:
        if before_tree is not None:
            subprocess.run(
                ["git", "-C", str(PROJECT_ROOT), "worktree", "remove", "--force", str(before_tree)],
                capture_output=True,
                timeout=60,
            )
        remove_scratch(scratch)


def print_summary(result: dict[str, Any]) -> None:
    for name, arm in result["arms"].items():
        t = arm["start_to_ping_s"]
        print(
            f"{name:>9}: site-packages {arm['site_packages_mb']:,.0f} MB ({arm['packages']} packages), start to /ping "
            f"median {t['median']:.2f} s (min {t['min']:.2f}, max {t['max']:.2f}), RSS {arm['rss_mb_at_ping']:.0f} MB"
        )
    r = result["ratios"]
    print(f"{r['baseline']} / container: size {r['site_packages']}x, start-up {r['start_to_ping']}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed cold starts per arm (default 7)")
    parser.add_argument(
        "--before", default=BEFORE_REVISION, help=f"also time this git revision's server (default {BEFORE_REVISION})"
    )
    parser.add_argument("--quick", action="store_true", help="2 runs per arm: checks the plumbing")
    args = parse_forwarded_args(parser, NAME, argv)
    return publish(NAME, run(args), print_summary)


if __name__ == "__main__":
    sys.exit(main())

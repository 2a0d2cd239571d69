"""Batch feature pipeline throughput and memory: simulator events through the lake stages, plus a pandas peer.

Stages, in the order the assets run them, each reading the previous stage's parquet from a scratch lake under
`var/bench/scratch/` (deleted afterwards) and writing its own:

1. `raw_events`              pandas: `validate_events` (the contract gate) + day-partitioned parquet, as ingestion does
2. `sessions`                Spark: read raw_events -> sessionize -> session_events -> summarise_sessions -> sessions
3. `user_daily_aggregates`   Spark: session_events + sessions -> user_daily_aggregates
4. `session_prefix_features` Spark: session_events -> the mapInPandas fold -> session_prefix_features

and `pandas_baseline.sessions`: the `sessions` stage in plain pandas on the same raw_events parquet.

The simulator gives every event a session id; the benchmark nulls `session_id` before the contract gate so both
sessionisers really cut sessions at the 30-minute gap (the simulator keeps >= 31 minutes between a user's sessions,
so the cut recovers its sessions exactly: the run checks simulator, Spark and pandas session counts and ids agree).

Memory: `peak_rss_mb` is the peak summed RSS of a process tree sampled every 50 ms. The Spark stages run in this
process with one Spark session for the whole run, so their tree is the Python driver + the Spark JVM (driver and
local executors, i.e. the whole Spark heap) + the PySpark Python workers. Simulation and the raw_events stage run in
a child process per size, and so does the pandas baseline, so neither carries the JVM nor the other's leftovers.

Run: `python -m bench.batch_features [--sizes 100000,1000000,5000000] [--quick]`; writes var/bench/batch_features.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import CONTENDED_PCT

NAME = "batch_features"
DEFAULT_SIZES = (100_000, 1_000_000, 5_000_000)
QUICK_SIZES = (20_000, 100_000)
WARMUP_EVENTS = 20_000
DAYS = 28  # four whole weeks: every weekday equally often, and the 30-day windows nearly filled
START_DATE = "2026-11-02"
SEED = 11
PILOT_USERS = 3_000
DEFAULT_DRIVER_MEMORY = "8g"  # local mode: the driver JVM is also the executor; 5M events need more than the 4g default
SPARK_STAGES = ("sessions", "user_daily_aggregates", "session_prefix_features")
STAGES = ("raw_events", *SPARK_STAGES)
RSS_NOTE = (
    "peak_rss_mb = peak of the summed RSS of the process tree (psutil, every 50 ms, reset at each stage start). "
    "Spark stages: the Python driver + the Spark JVM (driver and local executors, so it includes the JVM's resident "
    "heap, which once committed is rarely returned, so later stages and sizes carry earlier high-water marks) + the "
    "PySpark Python workers (forked, so pages they share with their daemon are counted per process); children under "
    "1 s old that still run their parent's command line (the JVM forks a `chmod` per file Hadoop writes) are skipped: "
    "they would count the JVM's pages twice. raw_events and "
    "the pandas baseline run in a fresh child process per size (no JVM), with the simulator output already in memory "
    "for raw_events. A thread samples less often while pandas holds the GIL (rss_samples says how many were taken), so "
    "each entry also has hwm_rss_mb: the kernel's peak RSS (VmHWM, reset per stage via /proc/<pid>/clear_refs) summed "
    "over the tree's processes, exact for the single-process pandas stages and an upper bound for the Spark tree."
)


# --------------------------------------------------------------------------------------------- child processes


def _lake(home: Path) -> None:
    """Point the project's lake paths (propensity.paths, LakeResource) at a scratch state directory."""
    from propensity.settings import reload_settings

    os.environ["PROPENSITY_HOME"] = str(home)
    reload_settings()


def _users_for(target: int, days: int, seed: int) -> tuple[int, float]:
    """Users needed for ~target events over `days` days, from a small pilot simulation (events per user-day)."""
    from propensity.sources.simulator import simulate_traffic

    pilot = simulate_traffic(n_users=PILOT_USERS, days=days, start_date=START_DATE, seed=seed)
    rate = len(pilot.events) / (PILOT_USERS * days)
    return max(1, round(target / (rate * days))), rate


def worker_prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate ~target events, null their session ids, then the timed raw_events stage: gate + daily parquet."""
    import pyarrow.parquet as pq

    from bench.common import RssSampler, measure, release_memory, stopwatch
    from propensity.contract import events_to_arrow, validate_events
    from propensity.paths import table_dir
    from propensity.sources.simulator import simulate_traffic

    _lake(Path(args.home))
    with RssSampler() as sampler:
        n_users, rate = _users_for(args.target, args.days, args.seed)
        with stopwatch() as simulate:
            batch = simulate_traffic(n_users=n_users, days=args.days, start_date=START_DATE, seed=args.seed)
        events = batch.events
        simulator_sessions = int(events["session_id"].nunique())
        events["session_id"] = None  # a source without session ids: both sessionisers must cut at the gap
        del batch
        release_memory()

        target = table_dir("raw_events")
        with measure(sampler, items=len(events)) as stage:
            validated = validate_events(events)
            valid = validated.valid
            event_day = valid["event_time"].dt.strftime("%Y-%m-%d")
            for day, rows in valid.groupby(event_day, sort=True):
                path = target / f"event_date={day}" / "part-0.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(events_to_arrow(rows), path)
        if len(validated.quarantine) or validated.duplicates_dropped or len(valid) != len(events):
            raise SystemExit(
                f"simulator events failed the contract: {len(validated.quarantine)} quarantined, "
                f"{validated.duplicates_dropped} duplicates"
            )
    return {
        "target_events": args.target,
        "events": len(valid),
        "users": n_users,
        "days": args.days,
        "events_per_user_day_pilot": round(rate, 4),
        "simulate_s": round(simulate["seconds"], 3),
        "simulator_sessions": simulator_sessions,
        "raw_events": stage.as_dict(),
    }


def pandas_sessionize(events, gap_minutes: int):
    """The plain-pandas twin of propensity.sessions.sessionize (the storefront replayer uses it too)."""
    from propensity.session_ids import assign_session_ids

    return assign_session_ids(events, gap_minutes)


def pandas_summarise_sessions(session_events):
    """Plain-pandas twin of propensity.sessions.summarise_sessions."""
    import pandas as pd

    from propensity.sessions import SESSION_COLUMNS

    is_purchase = session_events["event_type"].eq("purchase")
    frame = pd.DataFrame(
        {
            "session_id": session_events["session_id"],
            "user_id": session_events["user_id"],
            "source": session_events["source"],
            "event_time": session_events["event_time"],
            "purchase": is_purchase.astype("int64"),
            "purchase_time": session_events["event_time"].where(is_purchase),
        }
    )
    summary = frame.groupby("session_id", sort=False).agg(
        user_id=("user_id", "first"),
        source=("source", "first"),
        session_start=("event_time", "min"),
        session_end=("event_time", "max"),
        events=("event_time", "size"),
        purchase_events=("purchase", "sum"),
        first_purchase_time=("purchase_time", "min"),
    )
    summary = summary.reset_index()
    summary["events"] = summary["events"].astype("int64")
    summary["has_purchase"] = summary["purchase_events"] > 0
    return summary[list(SESSION_COLUMNS)]


def worker_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """The timed pandas `sessions` stage on raw_events; then (untimed) its sessions against Spark's."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.common import RssSampler, measure
    from propensity.contract import EVENT_COLUMNS, events_to_arrow
    from propensity.features.definitions import SESSION_GAP_MINUTES
    from propensity.paths import table_dir

    _lake(Path(args.home))
    with RssSampler() as sampler:
        with measure(sampler, items=args.events) as stage:
            raw = pd.read_parquet(table_dir("raw_events"), columns=list(EVENT_COLUMNS))
            session_events = pandas_sessionize(raw, SESSION_GAP_MINUTES)
            del raw
            out = table_dir("pandas_session_events") / "part-0.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(events_to_arrow(session_events), out)
            sessions = pandas_summarise_sessions(session_events)
            out = table_dir("pandas_sessions") / "part-0.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(sessions, preserve_index=False), out)
        if len(session_events) != args.events:
            raise SystemExit(f"pandas sessionisation lost events: {len(session_events)} of {args.events}")
    spark_ids = set(pq.read_table(table_dir("sessions"), columns=["session_id"]).column("session_id").to_pylist())
    pandas_ids = set(sessions["session_id"])
    spark_events = pq.read_table(table_dir("sessions"), columns=["session_id", "events"]).to_pandas()
    same_sizes = bool(
        spark_events.set_index("session_id")["events"]
        .sort_index()
        .equals(sessions.set_index("session_id")["events"].sort_index())
    )
    return {
        "sessions": stage.as_dict(),
        "pandas_sessions": len(sessions),
        "session_ids_equal_spark": spark_ids == pandas_ids,
        "session_sizes_equal_spark": same_sizes,
    }


def _run_worker(kind: str, home: Path, **options: Any) -> dict[str, Any]:
    """Run a worker in a fresh interpreter (its own memory) and return its JSON result."""
    result_file = home / f"{kind}.result.json"
    command = [sys.executable, "-m", f"bench.{NAME}", "--worker", kind, "--home", str(home), "--out", str(result_file)]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    subprocess.run(command, check=True)
    return json.loads(result_file.read_text())


# --------------------------------------------------------------------------------------------- Spark stages


def _preload_spark_modules() -> None:
    import pyspark.sql  # noqa: F401

    import propensity.features.batch  # noqa: F401
    import propensity.sessions  # noqa: F401
    import propensity.spark  # noqa: F401
    import propensity_assets.spark_tables  # noqa: F401
    import resources.lake  # noqa: F401


def start_spark(driver_memory: str):
    """One session for the whole run, from the project's one Spark configuration (propensity/spark.py)."""
    from pyspark.sql import SparkSession

    from propensity.settings import reload_settings
    from propensity.spark import spark_config

    os.environ["SPARK_DRIVER_MEMORY"] = driver_memory  # the settings read it; the JVM is not started yet
    config = spark_config(reload_settings())
    builder = SparkSession.builder
    for key, value in config.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.range(1).count()  # JVM up, executors ready: start-up cost ends here
    return spark, config


def run_spark_stages(spark, home: Path, n_events: int, sampler) -> tuple[dict[str, Any], dict[str, Any]]:
    """The three Spark stages, each reading the previous stages' parquet through the assets' read/write helpers."""
    from bench.common import measure
    from propensity.contract import EVENT_COLUMNS
    from propensity.features.batch import session_prefix_features, user_daily_aggregates
    from propensity.sessions import sessionize, summarise_sessions
    from propensity_assets.spark_tables import read_table, write_table
    from resources.lake import LakeResource

    _lake(home)
    lake = LakeResource()
    results: dict[str, Any] = {}

    with measure(sampler, items=n_events) as stage:
        raw = read_table(spark, lake, "raw_events").select(*EVENT_COLUMNS)
        session_events = write_table(sessionize(raw), lake, "session_events")
        write_table(summarise_sessions(session_events), lake, "sessions")
    results["sessions"] = stage

    with measure(sampler, items=n_events) as stage:
        aggregates = user_daily_aggregates(
            read_table(spark, lake, "session_events"), read_table(spark, lake, "sessions")
        )
        write_table(aggregates, lake, "user_daily_aggregates")
    results["user_daily_aggregates"] = stage

    with measure(sampler, items=n_events) as stage:
        write_table(session_prefix_features(read_table(spark, lake, "session_events")), lake, "session_prefix_features")
    results["session_prefix_features"] = stage

    # Untimed: what each stage produced.
    rows = {
        table: read_table(spark, lake, table).count()
        for table in ("session_events", "sessions", "user_daily_aggregates", "session_prefix_features")
    }
    return results, rows


# --------------------------------------------------------------------------------------------- orchestration


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.common import RssSampler, bench_dir, remove_scratch, run_meta, stopwatch

    sizes = list(QUICK_SIZES) if args.quick else args.sizes
    scratch = Path(args.scratch) if args.scratch else bench_dir() / "scratch" / f"{NAME}-{os.getpid()}"
    stages: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    baseline: dict[str, Any] = {}
    per_size: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    with stopwatch() as wall:
        try:
            _preload_spark_modules()  # importing dagster and pyspark (~10 s here) is not Spark start-up
            spark_timer = time.perf_counter()
            spark, config = start_spark(args.driver_memory)
            startup_s = time.perf_counter() - spark_timer
            jvm_heap_mb = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory() / 2**20
            print(
                f"spark up in {startup_s:.1f} s (master {config['spark.master']}, driver memory "
                f"{config['spark.driver.memory']}, JVM max heap {jvm_heap_mb:,.0f} MB)",
                flush=True,
            )
            with RssSampler() as sampler:
                warmup_s = 0.0
                if args.warmup:  # one untimed pass so the first size is not charged for class loading and codegen
                    home = scratch / "warmup"
                    with stopwatch() as warm:
                        info = _run_worker("prepare", home, target=WARMUP_EVENTS, days=args.days, seed=args.seed)
                        run_spark_stages(spark, home, info["events"], sampler)
                    warmup_s = warm["seconds"]
                    shutil.rmtree(home, ignore_errors=True)
                    print(f"warm-up pass ({info['events']:,} events) {warmup_s:.1f} s", flush=True)

                for target in sizes:
                    home = scratch / str(target)
                    print(f"--- target {target:,} events", flush=True)
                    info = _run_worker("prepare", home, target=target, days=args.days, seed=args.seed)
                    n = info["events"]
                    key = str(n)
                    stages["raw_events"][key] = info["raw_events"]
                    print(
                        f"simulated {n:,} events ({info['users']:,} users x {info['days']} days) in "
                        f"{info['simulate_s']:.1f} s; raw_events {info['raw_events']['seconds']:.1f} s",
                        flush=True,
                    )

                    spark_results, rows = run_spark_stages(spark, home, n, sampler)
                    for stage, measurement in spark_results.items():
                        stages[stage][key] = measurement.as_dict()
                        print(
                            f"{stage} {measurement.seconds:.1f} s, peak {measurement.peak_rss_mb:,.0f} MB, "
                            f"foreign CPU {measurement.foreign_cpu_pct:.0f} %",
                            flush=True,
                        )

                    base = _run_worker("baseline", home, events=n)
                    baseline[key] = base["sessions"]
                    print(
                        f"pandas sessions {base['sessions']['seconds']:.1f} s, foreign CPU "
                        f"{base['sessions']['foreign_cpu_pct']:.0f} %",
                        flush=True,
                    )

                    checks = {
                        "target_events": target,
                        "users": info["users"],
                        "days": info["days"],
                        "simulate_s": info["simulate_s"],
                        "sessions_simulator": info["simulator_sessions"],
                        "sessions_spark": rows["sessions"],
                        "sessions_pandas": base["pandas_sessions"],
                        "session_ids_equal": base["session_ids_equal_spark"],
                        "session_sizes_equal": base["session_sizes_equal_spark"],
                        "rows": rows,
                    }
                    per_size[key] = checks
                    problems = []
                    if rows["session_events"] != n:
                        problems.append(f"session_events has {rows['session_events']} rows for {n} raw events")
                    if not (checks["sessions_simulator"] == checks["sessions_spark"] == checks["sessions_pandas"]):
                        problems.append(
                            f"session counts differ: simulator {checks['sessions_simulator']}, "
                            f"spark {checks['sessions_spark']}, pandas {checks['sessions_pandas']}"
                        )
                    if not (checks["session_ids_equal"] and checks["session_sizes_equal"]):
                        problems.append("pandas and Spark sessions differ (ids or sizes)")
                    if problems:
                        raise SystemExit(f"sanity check failed at {n:,} events: " + "; ".join(problems))
                    if not args.keep_scratch:
                        shutil.rmtree(home, ignore_errors=True)
            meta = {
                "cores": os.cpu_count(),
                "spark_master": config["spark.master"],
                "spark_default_parallelism": spark.sparkContext.defaultParallelism,
                "driver_memory": config["spark.driver.memory"],
                "driver_memory_how": "SPARK_DRIVER_MEMORY, read by propensity.settings (project default 4g)",
                "jvm_max_heap_mb": round(jvm_heap_mb),
                "spark_shuffle_partitions": config.get("spark.sql.shuffle.partitions"),
                "spark_version": spark.version,
                "spark_startup_s": round(startup_s, 3),
                "spark_warmup_s": round(warmup_s, 3),
                "rss_note": RSS_NOTE,
                "foreign_cpu_note": "foreign_cpu_pct: share of the machine's CPU (all cores) used during the stage by "
                "processes outside the measured tree; near 0 on a quiet machine",
                "contended": contended(stages, baseline),
                "events_per_s_note": "input (raw) events / wall seconds of the stage, parquet read and write included; "
                "simulation and Spark start-up excluded",
                "workload": f"simulator seed {args.seed}, {args.days} days from {START_DATE}, users scaled to the "
                "target; session_id nulled so both sessionisers cut at the 30-minute gap",
                "sizes": per_size,
                **run_meta(NAME, args.quick),
            }
            spark.stop()
        finally:
            if not args.keep_scratch:
                remove_scratch(scratch)
    meta["wall_s"] = round(wall["seconds"], 1)
    return {"stages": stages, "pandas_baseline": {"sessions": baseline}, "meta": meta}


def contended(stages: dict[str, dict[str, Any]], baseline: dict[str, Any]) -> list[str]:
    """Entries another workload competed with (their figures are pessimistic): 'stage@events'."""
    entries = [(stage, key, m) for stage, by_size in stages.items() for key, m in by_size.items()]
    entries += [("pandas_baseline.sessions", key, m) for key, m in baseline.items()]
    return [f"{stage}@{key}" for stage, key, m in entries if m.get("foreign_cpu_pct", 0.0) > CONTENDED_PCT]


def print_summary(result: dict[str, Any]) -> None:
    from bench.common import format_table

    rows = []
    for stage, by_size in result["stages"].items():
        for key, m in by_size.items():
            engine = "pandas" if stage == "raw_events" else "spark"
            rows.append(
                [
                    stage,
                    engine,
                    int(key),
                    m["seconds"],
                    m["events_per_s"],
                    m["peak_rss_mb"],
                    m.get("hwm_rss_mb", "-"),
                    m.get("foreign_cpu_pct", "-"),
                ]
            )
        if stage == "sessions":
            for key, m in result["pandas_baseline"]["sessions"].items():
                rows.append(
                    [
                        "sessions (baseline)",
                        "pandas",
                        int(key),
                        m["seconds"],
                        m["events_per_s"],
                        m["peak_rss_mb"],
                        m.get("hwm_rss_mb", "-"),
                        m.get("foreign_cpu_pct", "-"),
                    ]
                )
    print(
        format_table(
            ["stage", "engine", "events", "seconds", "events/s", "peak RSS MB", "kernel HWM MB", "foreign CPU %"], rows
        )
    )
    meta = result["meta"]
    print(
        f"spark start-up {meta['spark_startup_s']:.1f} s, driver memory {meta['driver_memory']}, {meta['cores']} "
        f"cores, master {meta['spark_master']}; whole run {meta['wall_s']:.0f} s"
    )
    if meta.get("contended"):
        print(
            f"WARNING: another workload used > {CONTENDED_PCT:.0f} % of the CPU during: {', '.join(meta['contended'])}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from bench.common import parse_sizes

    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=list(DEFAULT_SIZES), help="target event counts, comma separated"
    )
    parser.add_argument("--quick", action="store_true", help=f"sizes {','.join(map(str, QUICK_SIZES))}")
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--driver-memory", default=os.environ.get("SPARK_DRIVER_MEMORY", DEFAULT_DRIVER_MEMORY))
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the untimed Spark warm-up pass")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch lake for inspection")
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=NAME, help="result name: var/bench/<name>.json")
    # Internal: the child-process workers.
    parser.add_argument("--worker", choices=("prepare", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    from bench.common import parse_forwarded_args

    return parse_forwarded_args(parser, NAME, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker = {"prepare": worker_prepare, "baseline": worker_baseline}[args.worker]
        Path(args.out).write_text(json.dumps(worker(args)))
        return 0
    from bench.common import publish

    return publish(args.output, run(args), print_summary)


if __name__ == "__main__":
    sys.exit(main())

"""Scoring latency: our endpoint against Feast's own feature server, in-process paths, and the tree predictor.

Set-up (untimed), in a scratch PROPENSITY_HOME under `var/bench/scratch/` (deleted afterwards):
`PROPENSITY_PROFILE=redis scripts/demo.py` (simulated events, Spark features, Feast apply + materialise into Redis db
`REDIS_DB` of the Redis at REDIS_URL's host and port, models, champion registered), then the `feast_registry` and
`online_features` assets again with the `local` profile, so the SQLite online store holds the same rows (checked
value for value on the sampled entities). The bench's Redis db is flushed before and after; no other db is touched.
No champion in the registry: the bench stops with a message (there is nothing to serve).

Measured on the same `ENTITIES` (user_id, session_id) pairs, sampled with a fixed seed from the materialised
sessions, for each online store (`redis`, `sqlite`):

- `endpoint`: `serve` (serving/server.py: uvicorn, one process) with the registry's champion, over HTTP: single-row
  POST /invocations at concurrency 1 and 8 (p50/p95/p99 ms, requests/s), and batches of 100 rows (rows/s). On
  Redis also `c1_events1` and `c1_events10`: concurrency 1 with 1 and with 10 request-time events per request, each
  newer than the online row (a new product each), so every one is folded onto the row before scoring.
- `feast_serve`: `feast serve` (Feast's feature server, its default settings: gunicorn with one uvicorn worker,
  recycled every ~1,000 requests) on the same repository, registry and store, POST /get-online-features for one
  entity row with the feature service; features only, no model.
- `inprocess`: per single-row call in this process, `naive` = the Feast SDK `get_online_features(...).to_dict()` +
  a one-row DataFrame + LightGBM `predict` (one thread) + the calibrator; `ours` = `Scorer.score` (online reader +
  generated trees + calibration).
- `predictor`: LightGBM `booster.predict(one-row 2-D array, raw_score=True)`, the faster of the model file's
  num_threads and one thread, vs `TreeEnsemblePredictor.raw_score_one`, mean µs per call, and the largest
  |difference| over the sampled rows.

The load generator is this process: one keep-alive `http.client` connection per thread (1 or 8 threads), request
bodies encoded in advance, the clock read around each request/response. On 2 cores it competes with the server for
CPU; its CPU per request is reported in meta. Budgets (docs/ARCHITECTURE.md) are judged in `meta.budgets`.

Run: `python -m bench.serving_latency [--quick]`; needs Redis (`make services`). Writes var/bench/serving_latency.json.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench.common import CONTENDED_PCT
from propensity.paths import PROJECT_ROOT
from propensity.settings import reload_settings
from serving.control.endpoint import free_port

NAME = "serving_latency"
STORES = ("redis", "sqlite")
PROFILE_OF_STORE = {"redis": "redis", "sqlite": "local"}  # resources/profiles.py: `local` is the SQLite online store
REDIS_DB = 14  # the bench's own db on the local Redis (the tests use 15, the platform 0); flushed before and after
SEED = 20261127
ENTITIES = 2_000
BATCH_ROWS = 100
CONCURRENCY = (1, 8)
REQUEST_EVENTS = (1, 10)  # events carried by a request, folded at request time (the two points)
REQUEST_EVENTS_P99_MS = {1: 2.0, 10: 3.0}

# Request counts: (full, quick).
COUNTS = {
    "warmup": (300, 100),
    "c1": (3_000, 500),
    "c8": (4_000, 800),
    "batch100": (200, 30),
    "inprocess": (2_000, 400),
    "predictor_rounds": (5, 1),
}

DEMO_TIMEOUT_S = 900
MATERIALISE_TIMEOUT_S = 600
SERVER_START_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 30
LOAD_TIMEOUT_S = 600
STOP_TIMEOUT_S = 15

CLIENT_DESCRIPTION = (
    "this Python process: one keep-alive http.client.HTTPConnection per thread (1 or 8 threads, the requests split "
    "evenly), request bodies JSON-encoded in advance, perf_counter_ns around request()+getresponse()+read(), "
    "garbage collector off while the clock runs; a dropped connection is reopened and the request retried, the "
    "retry counted in its latency"
)


# --------------------------------------------------------------------------------------------- helpers


def _percentiles_ms(ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    values = np.asarray(ns, dtype=np.float64) / 1e6
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": round(float(p50), 4), "p95_ms": round(float(p95), 4), "p99_ms": round(float(p99), 4)}


def _details_ms(ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    values = np.asarray(ns, dtype=np.float64) / 1e6
    return {
        "n": int(len(values)),
        "mean_ms": round(float(values.mean()), 4),
        "max_ms": round(float(values.max()), 4),
        "p999_ms": round(float(np.percentile(values, 99.9)), 4),
    }


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _kill_group(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the child's process group (a server and its workers), SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=timeout)


def _run_child(command: list[str], env: dict[str, str], log: Path, timeout: float) -> tuple[int, float]:
    """Run a command in its own process group with output to `log`; killed (group) on timeout."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = -9
        finally:
            _kill_group(child)
    return code, time.perf_counter() - start


def tree_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process and its descendants, including descendants that have exited and
    been reaped (`children_*`): gunicorn recycles its worker every ~1,000 requests, and the old worker's CPU
    must not vanish from the count."""
    import psutil

    try:
        root = psutil.Process(pid or os.getpid())
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            t = process.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class CpuWatch:
    """Foreign CPU over a phase: the machine's busy CPU minus this process tree's (servers included), as a share of
    all cores. Snapshots only at the start and the end (no sampling thread competes with the load generator)."""

    def __enter__(self) -> "CpuWatch":
        from bench.common import system_busy_cpu_s

        self.load_average_1m = os.getloadavg()[0]
        self._own0, self._busy0, self._wall0 = tree_cpu_s(), system_busy_cpu_s(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        from bench.common import system_busy_cpu_s

        own1, busy1, wall = tree_cpu_s(), system_busy_cpu_s(), time.monotonic() - self._wall0
        own = own1 - self._own0
        capacity = wall * (os.cpu_count() or 1)
        self.foreign_cpu_pct = (
            round(max(0.0, 100.0 * (busy1 - self._busy0 - own) / capacity), 1) if capacity > 0 else None
        )


# --------------------------------------------------------------------------------------------- HTTP load


class Client:
    """One keep-alive HTTP/1.1 connection; `post` returns (status, body), reopening a dropped connection once."""

    HEADERS = {"Content-Type": "application/json"}

    def __init__(self, port: int):
        self.port = port
        self.reconnects = 0
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            self._conn.request("POST", path, body, self.HEADERS)
            response = self._conn.getresponse()
            return response.status, response.read()
        except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
            # e.g. gunicorn recycling its worker after max_requests closes the connection: reopen and retry
            self._conn.close()
            self.reconnects += 1
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
            self._conn.request("POST", path, body, self.HEADERS)
            response = self._conn.getresponse()
            return response.status, response.read()

    def close(self) -> None:
        self._conn.close()


def run_load(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    concurrency: int,
    n_requests: int,
    check: Callable[[int, bytes], str | None],
) -> dict[str, Any]:
    """`n_requests` POSTs split over `concurrency` threads, each with its own connection, all started together.
    Returns per-request latencies (ns), wall seconds, failures, reconnects and the client's CPU seconds."""
    per_thread = [n_requests // concurrency + (1 if i < n_requests % concurrency else 0) for i in range(concurrency)]
    latencies = [np.zeros(n, dtype=np.int64) for n in per_thread]
    failures: list[str] = []
    clients = [Client(port) for _ in range(concurrency)]
    barrier = threading.Barrier(concurrency + 1)
    done_at = [0.0] * concurrency

    def worker(t: int) -> None:
        client, out = clients[t], latencies[t]
        offset = t * len(bodies) // concurrency  # threads start at different entities
        barrier.wait()
        clock = time.perf_counter_ns
        try:
            for i in range(per_thread[t]):
                body = bodies[(offset + i) % len(bodies)]
                start = clock()
                status, payload = client.post(path, body)
                out[i] = clock() - start
                if status != 200:
                    problem = check(status, payload) or f"HTTP {status}: {payload[:200]!r}"
                    failures.append(problem)
                    if len(failures) > 20:
                        return
        except Exception as error:  # noqa: BLE001  reported, and the phase fails below
            failures.append(f"{type(error).__name__}: {error}")
        finally:
            done_at[t] = time.perf_counter()

    threads = [threading.Thread(target=worker, args=(t,), name=f"load-{t}", daemon=True) for t in range(concurrency)]
    for thread in threads:
        thread.start()
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        cpu0 = time.process_time()
        barrier.wait(timeout=60)
        started = time.perf_counter()
        for thread in threads:
            thread.join(timeout=LOAD_TIMEOUT_S)
        wall = max(done_at) - started
        cpu = time.process_time() - cpu0
    finally:
        if gc_was_enabled:
            gc.enable()
        for client in clients:
            client.close()
    if any(thread.is_alive() for thread in threads):
        failures.append(f"load threads still running after {LOAD_TIMEOUT_S} s")
    if failures:
        raise RuntimeError(f"{len(failures)} failed request(s) to :{port}{path}, e.g. {failures[:3]}")
    return {
        "latencies_ns": np.concatenate(latencies),
        "wall_s": wall,
        "requests": n_requests,
        "reconnects": sum(c.reconnects for c in clients),
        "client_cpu_s": cpu,
    }


class Server:
    """A server subprocess in its own process group, started, waited for, and always stopped."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, ready_path: str, log: Path):
        self.name, self.command, self.env, self.port, self.ready_path, self.log = (
            name,
            command,
            env,
            port,
            ready_path,
            log,
        )
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def __enter__(self) -> "Server":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log, "w")
        start = time.perf_counter()
        self.process = subprocess.Popen(
            self.command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(start)
        except BaseException:
            self.__exit__()
            raise
        self.startup_s = time.perf_counter() - start
        return self

    def _wait_ready(self, start: float) -> None:
        while time.perf_counter() - start < SERVER_START_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited (code {self.process.returncode}) before answering; log:\n{_tail(self.log)}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.ready_path)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"{self.name} did not answer GET {self.ready_path} on :{self.port} within {SERVER_START_TIMEOUT_S} s; "
            f"log:\n{_tail(self.log)}"
        )

    def cpu_s(self) -> float:
        """CPU seconds of the server's process tree so far (gunicorn: master, worker and recycled workers)."""
        return tree_cpu_s(self.process.pid)

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            _kill_group(self.process)
        self._log_handle.close()


def measure_server(
    server: Server,
    path: str,
    single_bodies: list[bytes],
    counts: dict[str, int],
    check: Callable[[int, bytes], str | None],
    batch_bodies: list[bytes] | None = None,
) -> tuple[dict, dict]:
    """Warm-up, then c1 and c8 single-row phases (and batches when given). Returns (figures, details)."""
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {"startup_s": round(server.startup_s, 2)}
    run_load(server.port, path, single_bodies, 1, counts["warmup"], check)
    if batch_bodies:
        run_load(server.port, path, batch_bodies, 1, max(5, counts["batch100"] // 10), check)
    phases = [(f"c{c}", single_bodies, c, counts[f"c{c}"]) for c in CONCURRENCY]
    if batch_bodies:
        phases.append(("batch100", batch_bodies, 1, counts["batch100"]))
    for key, bodies, concurrency, n in phases:
        server_cpu0 = server.cpu_s()
        with CpuWatch() as watch:
            load = run_load(server.port, path, bodies, concurrency, n, check)
        server_cpu = server.cpu_s() - server_cpu0
        ns = load["latencies_ns"]
        if key == "batch100":
            figures["batch100_rows_per_s"] = round(n * BATCH_ROWS / load["wall_s"], 1)
        else:
            figures[key] = {**_percentiles_ms(ns), "rps": round(n / load["wall_s"], 1)}
        details[key] = {
            **_details_ms(ns),
            "concurrency": concurrency,
            "rows_per_request": BATCH_ROWS if key == "batch100" else 1,
            **({f"batch_{k}": v for k, v in _percentiles_ms(ns).items()} if key == "batch100" else {}),
            "wall_s": round(load["wall_s"], 3),
            "reconnects": load["reconnects"],
            "client_cpu_us_per_request": round(1e6 * load["client_cpu_s"] / n, 1),
            "server_cpu_us_per_request": round(1e6 * server_cpu / n, 1),
            "foreign_cpu_pct": watch.foreign_cpu_pct,
            "load_average_1m_at_start": round(watch.load_average_1m, 2),
        }
        label = f"{BATCH_ROWS}-row batches" if key == "batch100" else key
        pct = _percentiles_ms(ns)
        print(
            f"  {server.name} {label}: p50 {pct['p50_ms']:.3f} ms, p99 {pct['p99_ms']:.3f} ms, "
            f"{n / load['wall_s']:,.0f} req/s (server CPU {details[key]['server_cpu_us_per_request']:.0f} µs/req, "
            f"client {details[key]['client_cpu_us_per_request']:.0f} µs/req, foreign CPU {watch.foreign_cpu_pct} %, "
            f"reconnects {load['reconnects']})",
            flush=True,
        )
    return figures, details


# --------------------------------------------------------------------------------------------- set-up


def _redis_url() -> str:
    """REDIS_URL's server (default the local one `make services` starts) with the bench's own db."""
    from urllib.parse import urlparse

    from propensity.settings import DEFAULT_REDIS_URL

    return urlparse(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))._replace(path=f"/{REDIS_DB}").geturl()


def _child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONWARNINGS"] = "ignore"
    env["PROPENSITY_HOME"] = str(home)
    env["DAGSTER_HOME"] = str(home / "dagster")
    env["REDIS_URL"] = _redis_url()
    env.pop("PROPENSITY_MODEL_DIR", None)
    return env


def _redis_client():
    import redis

    return redis.Redis.from_url(_redis_url(), socket_timeout=5, socket_connect_timeout=2)


def check_redis() -> None:
    import redis

    try:
        _redis_client().ping()
    except redis.exceptions.RedisError as error:
        raise SystemExit(f"Redis is not reachable at {_redis_url()} ({error}): start it with `make services`") from None


def worker_materialise_local(args: argparse.Namespace) -> dict[str, Any]:
    """The `feast_registry` and `online_features` assets again with the `local` profile: the SQLite online store
    gets the same latest rows the demo wrote to Redis (same lake, same window, same code)."""
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg

    from propensity_assets.definitions import defs
    from resources.feast import FeastResource

    start = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            list(defs.assets),
            selection=["feast_registry", "online_features"],
            resources={**dict(defs.resources), "feast": FeastResource(profile=PROFILE_OF_STORE["sqlite"])},
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    return {
        "success": bool(result.success),
        "seconds": time.perf_counter() - start,
        "checks": {e.check_name: bool(e.passed) for e in result.get_asset_check_evaluations()},
    }


def build_state(home: Path, scratch: Path) -> dict[str, Any]:
    """The demo (Redis profile) and the SQLite materialisation, in `home`."""
    env = _child_env(home) | {"PROPENSITY_PROFILE": "redis"}
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "scripts/demo.py"]
    print(
        f"  {' '.join(command[1:])} (PROPENSITY_PROFILE=redis, PROPENSITY_HOME={home}, REDIS_URL={_redis_url()})",
        flush=True,
    )
    started_at = time.time()
    code, demo_s = _run_child(command, env, scratch / "demo.log", DEMO_TIMEOUT_S)
    summary_path = home / "demo" / "summary.json"
    summary = (
        json.loads(summary_path.read_text())
        if summary_path.exists() and summary_path.stat().st_mtime >= started_at
        else {}
    )
    demo_problem = None
    if code != 0:
        # What the bench needs is the online store and a champion; a later demo step failing (e.g. the local
        # endpoint deployment) does not spoil them. Both are checked below: the champion by load_champion, the
        # store by the SQLite materialisation's parity check and by reading every sampled entity from both stores.
        demo_problem = f"exit {code}; last output: {_tail(scratch / 'demo.log', 5)}"
        if code == -9 or not (home / "models" / "registry" / "registry.json").exists():
            raise RuntimeError(
                f"the demo failed (exit {code}) after {demo_s:.0f} s; last output:\n{_tail(scratch / 'demo.log')}"
            )
        print(
            f"  WARNING: the demo exited {code} (failed checks "
            f"{[k for k, v in summary.get('checks', {}).items() if not v] or 'unknown'}); continuing with its state",
            flush=True,
        )
    print(
        f"  demo: {demo_s:.0f} s, {summary.get('events')} events, {summary.get('sessions')} sessions, "
        f"online store {summary.get('online', {}).get('store')}",
        flush=True,
    )

    out = scratch / "materialise-local.json"
    command = [sys.executable, "-m", f"bench.{NAME}", "--worker", "materialise-local", "--out", str(out)]
    code, mat_s = _run_child(command, env, scratch / "materialise-local.log", MATERIALISE_TIMEOUT_S)
    result = json.loads(out.read_text()) if code == 0 and out.exists() else None
    if result is None or not result["success"] or not all(result["checks"].values()):
        raise RuntimeError(
            f"materialising the SQLite online store failed (exit {code}, {result}); last output:\n"
            f"{_tail(scratch / 'materialise-local.log')}"
        )
    print(f"  SQLite online store materialised in {mat_s:.0f} s (parity check {result['checks']})", flush=True)
    return {
        "demo": "PROPENSITY_PROFILE=redis scripts/demo.py",
        "demo_s": round(demo_s, 1),
        "demo_problem": demo_problem,
        "materialise_sqlite_s": round(mat_s, 1),
        "demo_events": summary.get("events"),
        "demo_sessions": summary.get("sessions"),
        "demo_users": summary.get("users"),
        "demo_decision_points": summary.get("decision_points"),
        "demo_online": {k: v for k, v in summary.get("online", {}).items() if k != "example_feature_vector"},
        "demo_model": {k: summary.get("model", {}).get(k) for k in ("version", "promoted", "calibration")},
    }


def load_champion(home: Path):
    from propensity.models.artifact import ModelRegistry

    registry = ModelRegistry(home / "models" / "registry")
    champion = registry.champion()
    if champion is None:
        statuses = [(v["version"], v["status"], v.get("reason")) for v in registry.versions()]
        raise SystemExit(
            f"the demo registered no champion in {registry.root} (versions: {statuses or 'none'}): there is no model "
            "to serve, so serving latency cannot be measured. The candidate probably failed a quality gate; see the "
            "demo log."
        )
    return champion


def sample_entities(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` distinct (user_id, session_id) pairs of the materialised sessions, fixed seed."""
    import pandas as pd

    from propensity.features.definitions import SESSION_ENTITY_KEY, USER_ENTITY_KEY
    from propensity.paths import table_dir

    frame = pd.read_parquet(table_dir("session_prefix_features"), columns=[USER_ENTITY_KEY, SESSION_ENTITY_KEY])
    pairs = frame.drop_duplicates().sort_values([SESSION_ENTITY_KEY, USER_ENTITY_KEY]).reset_index(drop=True)
    if len(pairs) < n:
        raise SystemExit(f"only {len(pairs)} sessions in the online store, {n} wanted")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pairs), size=n, replace=False)
    return [(str(u), str(s)) for u, s in pairs.iloc[picks].itertuples(index=False, name=None)]


def read_features(pairs: list[tuple[str, str]]) -> tuple[np.ndarray, dict[str, Any]]:
    """Both stores' rows for the pairs, checked equal (NaN = NaN) and complete."""
    from serving.online_features import open_online_feature_reader

    matrices, missing = {}, {}
    for store in STORES:
        reader = open_online_feature_reader(PROFILE_OF_STORE[store])
        try:
            rows = reader.read_many(pairs)
        finally:
            reader.close()
        matrices[store] = np.vstack([r.values for r in rows])
        missing[store] = sum(1 for r in rows if r.missing_views)
    if not np.array_equal(matrices["redis"], matrices["sqlite"], equal_nan=True):
        differ = int(
            (
                ~(
                    (matrices["redis"] == matrices["sqlite"])
                    | (np.isnan(matrices["redis"]) & np.isnan(matrices["sqlite"]))
                )
            )
            .any(axis=1)
            .sum()
        )
        raise SystemExit(f"the Redis and SQLite online stores disagree on {differ} of {len(pairs)} sampled entities")
    if any(missing.values()):
        raise SystemExit(f"sampled entities without a row in some view: {missing}")
    return matrices["redis"], {
        "stores_agree_on_sampled_entities": True,
        "entities_with_missing_views": missing,
        "nan_share_of_feature_values": round(float(np.isnan(matrices["redis"]).mean()), 4),
    }


# --------------------------------------------------------------------------------------------- phases


def measure_endpoint(store: str, artifact_dir: Path, home: Path, pairs, counts, scratch: Path) -> tuple[dict, dict]:
    single = [json.dumps({"session_id": s, "user_id": u}, separators=(",", ":")).encode() for u, s in pairs]
    batches = [
        json.dumps(
            {"instances": [{"session_id": s, "user_id": u} for u, s in pairs[i : i + BATCH_ROWS]]},
            separators=(",", ":"),
        ).encode()
        for i in range(0, len(pairs) - BATCH_ROWS + 1, BATCH_ROWS)
    ]
    port = free_port()
    env = _child_env(home) | {
        "PROPENSITY_MODEL_DIR": str(artifact_dir),
        "PROPENSITY_PROFILE": PROFILE_OF_STORE[store],
        "SERVING_HOST": "127.0.0.1",
        "SERVING_PORT": str(port),
    }
    serve = Path(sys.executable).with_name("serve")
    command = [str(serve)] if serve.exists() else [sys.executable, "-m", "serving.server"]

    def check(status: int, payload: bytes) -> str | None:
        return f"endpoint answered {status}: {payload[:300]!r}"

    with Server(f"endpoint[{store}]", command, env, port, "/ping", scratch / f"serve-{store}.log") as server:
        # One answer checked in full: features found, not a fallback.
        client = Client(port)
        status, body = client.post("/invocations", single[0])
        client.close()
        answer = json.loads(body)
        if status != 200 or answer.get("fallback"):
            raise RuntimeError(f"endpoint[{store}] answered {status} {answer}: expected features from the store")
        figures, details = measure_server(server, "/invocations", single, counts, check, batches)
        if store == "redis":
            for n in REQUEST_EVENTS:
                figures[f"c1_events{n}"], details[f"c1_events{n}"] = measure_request_events(server, pairs, n, counts)
    details["command"] = " ".join(command[-1:]) + " (uvicorn, uvloop, httptools, one process)"
    return figures, details


def _request_events(n: int, tag: str) -> list[dict[str, Any]]:
    """`n` storefront events newer than any online row (the demo's traffic is weeks older), each a new product: the
    scorer folds every one of them onto the session's online row."""
    kinds = ("product_view", "add_to_cart", "search", "favourite", "page_view")
    return [
        {
            "event_id": f"bench-{tag}-{i}",
            "event_time": f"2026-12-08T10:00:{i:02d}.250Z",
            "event_type": kinds[i % len(kinds)],
            "product_id": f"bench-product-{i}",
            "category_id": f"bench-category-{i % 3}",
            "price": 19.9,
            "quantity": 1,
            "source": "bench",
        }
        for i in range(n)
    ]


def measure_request_events(server: "Server", pairs, n: int, counts) -> tuple[dict, dict]:
    """Single-row requests at concurrency 1 that carry `n` new events each: the fold state is read with the features
    in the same round trip and the events folded before scoring."""
    bodies = [
        json.dumps(
            {"session_id": s, "user_id": u, "events": _request_events(n, str(i))}, separators=(",", ":")
        ).encode()
        for i, (u, s) in enumerate(pairs)
    ]
    client = Client(server.port)
    status, body = client.post("/invocations", bodies[0])
    client.close()
    answer = json.loads(body)
    folded = (answer.get("request_events") or {}).get("folded", [])
    if status != 200 or len(folded) != n or answer.get("fallback"):
        raise RuntimeError(f"{server.name} with {n} events answered {status} {answer}: expected all {n} folded")

    def check(status: int, payload: bytes) -> str | None:
        return f"endpoint answered {status}: {payload[:300]!r}"

    run_load(server.port, "/invocations", bodies, 1, counts["warmup"], check)
    server_cpu0 = server.cpu_s()
    with CpuWatch() as watch:
        load = run_load(server.port, "/invocations", bodies, 1, counts["c1"], check)
    ns = load["latencies_ns"]
    pct = _percentiles_ms(ns)
    print(
        f"  {server.name} c1 with {n} request event(s): p50 {pct['p50_ms']:.3f} ms, p99 {pct['p99_ms']:.3f} ms",
        flush=True,
    )
    return {**pct, "rps": round(counts["c1"] / load["wall_s"], 1)}, {
        **_details_ms(ns),
        "events_per_request": n,
        "request_bytes": len(bodies[0]),
        "server_cpu_us_per_request": round(1e6 * (server.cpu_s() - server_cpu0) / counts["c1"], 1),
        "foreign_cpu_pct": watch.foreign_cpu_pct,
    }


def measure_feast_serve(store: str, home: Path, pairs, counts, scratch: Path) -> tuple[dict, dict]:
    from propensity.feature_store import FEATURE_REPO_DIR, feast_redis_connection_string, feature_store_yaml
    from propensity.features.definitions import FEATURE_SERVICE_NAME, SESSION_ENTITY_KEY, USER_ENTITY_KEY

    single = [
        json.dumps(
            {"feature_service": FEATURE_SERVICE_NAME, "entities": {USER_ENTITY_KEY: [u], SESSION_ENTITY_KEY: [s]}},
            separators=(",", ":"),
        ).encode()
        for u, s in pairs
    ]
    port = free_port()
    # The yaml's ${VAR}s, as propensity.feature_store fills them, for the feast CLI; and the profile's yaml.
    env = _child_env(home) | {"FEAST_REDIS_CONNECTION_STRING": feast_redis_connection_string(_redis_url())}
    feast = Path(sys.executable).with_name("feast")
    command = [
        str(feast),
        "-c",
        str(FEATURE_REPO_DIR),
        "-f",
        str(feature_store_yaml(PROFILE_OF_STORE[store])),
        "serve",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]

    def check(status: int, payload: bytes) -> str | None:
        return f"feast serve answered {status}: {payload[:300]!r}"

    with Server(f"feast_serve[{store}]", command, env, port, "/health", scratch / f"feast-serve-{store}.log") as server:
        client = Client(port)
        status, body = client.post("/get-online-features", single[0])
        client.close()
        answer = json.loads(body)
        statuses = [s for result in answer.get("results", []) for s in result.get("statuses", [])]
        if status != 200 or not statuses or any(s != "PRESENT" for s in statuses):
            raise RuntimeError(
                f"feast serve [{store}] answered {status} {str(answer)[:500]}: expected every feature PRESENT"
            )
        figures, details = measure_server(server, "/get-online-features", single, counts, check)
    details["command"] = (
        "feast -c feature_repo -f " + feature_store_yaml(PROFILE_OF_STORE[store]).name + " serve -p <port>"
    )
    details["response_bytes"] = len(body)
    return figures, details


def measure_inprocess(store: str, artifact, pairs, n: int) -> tuple[dict, dict]:
    import pandas as pd

    from propensity.feature_store import open_feature_store
    from propensity.features.definitions import (
        FEATURE_SERVICE_NAME,
        MODEL_FEATURE_NAMES,
        SESSION_ENTITY_KEY,
        USER_ENTITY_KEY,
    )
    from propensity.models.calibration import apply_calibrator
    from serving.contract import ScoringRequest
    from serving.online_features import open_online_feature_reader
    from serving.scorer import Scorer

    profile = PROFILE_OF_STORE[store]
    feast_store = open_feature_store(profile)
    service = feast_store.get_feature_service(FEATURE_SERVICE_NAME)  # resolved once: the loop times the reads
    booster, calibrator = artifact.booster, artifact.calibrator
    names = list(MODEL_FEATURE_NAMES)

    def naive(user_id: str, session_id: str) -> float:
        values = feast_store.get_online_features(
            features=service, entity_rows=[{USER_ENTITY_KEY: user_id, SESSION_ENTITY_KEY: session_id}]
        ).to_dict()
        frame = pd.DataFrame([[values[name][0] for name in names]], columns=names, dtype="float64")
        # num_threads=1: with the model file's 2 OpenMP threads a one-row predict costs milliseconds whenever the
        # other core is busy (thread hand-off), which would flatter our path.
        return float(apply_calibrator(calibrator, booster.predict(frame, raw_score=True, num_threads=1))[0])

    reader = open_online_feature_reader(profile)
    scorer = Scorer(artifact, reader, "bench")
    requests = [ScoringRequest(session_id=s, user_id=u) for u, s in pairs]

    def ours(request: ScoringRequest) -> float:
        return scorer.score([request])[0]["propensity"]

    chosen = [pairs[i % len(pairs)] for i in range(n)]
    chosen_requests = [requests[i % len(requests)] for i in range(n)]
    for i in range(min(100, n)):  # warm-up: connections, caches, lazy imports
        naive(*chosen[i])
        ours(chosen_requests[i])
    naive_ns = np.zeros(n, dtype=np.int64)
    ours_ns = np.zeros(n, dtype=np.int64)
    naive_p = np.zeros(n)
    ours_p = np.zeros(n)
    clock = time.perf_counter_ns
    block = 200  # alternate blocks so both paths see the same background load
    with CpuWatch() as watch:
        for lo in range(0, n, block):
            for i in range(lo, min(n, lo + block)):
                start = clock()
                ours_p[i] = ours(chosen_requests[i])
                ours_ns[i] = clock() - start
            for i in range(lo, min(n, lo + block)):
                start = clock()
                naive_p[i] = naive(*chosen[i])
                naive_ns[i] = clock() - start
    reader.close()
    figures = {"naive": _percentiles_ms(naive_ns), "ours": _percentiles_ms(ours_ns)}
    details = {
        "naive": _details_ms(naive_ns),
        "ours": _details_ms(ours_ns),
        "max_abs_diff_propensity": float(np.max(np.abs(naive_p - ours_p))),
        "foreign_cpu_pct": watch.foreign_cpu_pct,
        "load_average_1m_at_start": round(watch.load_average_1m, 2),
    }
    print(
        f"  in-process [{store}]: naive p50 {figures['naive']['p50_ms']:.3f} / p99 {figures['naive']['p99_ms']:.3f} "
        f"ms, ours p50 {figures['ours']['p50_ms']:.3f} / p99 {figures['ours']['p99_ms']:.3f} ms, "
        f"max |Δp| {details['max_abs_diff_propensity']:.2e}, foreign CPU {watch.foreign_cpu_pct} %",
        flush=True,
    )
    return figures, details


def measure_predictor(artifact, X: np.ndarray, rounds: int) -> tuple[dict, dict]:
    from serving.predictor import TreeEnsemblePredictor

    booster = artifact.booster
    predictor = TreeEnsemblePredictor.from_booster(booster)
    one_row = [np.ascontiguousarray(X[i : i + 1]) for i in range(len(X))]  # (1, n_features) float64 arrays
    as_lists = [row.tolist() for row in X]
    raw_one = predictor.raw_score_one
    predict = booster.predict

    def time_lightgbm() -> tuple[float, list[float]]:
        out = [0.0] * len(one_row)
        start = time.perf_counter()
        for i, row in enumerate(one_row):
            out[i] = predict(row, raw_score=True)[0]
        return time.perf_counter() - start, out

    def time_lightgbm_1thread() -> tuple[float, list[float]]:
        out = [0.0] * len(one_row)
        start = time.perf_counter()
        for i, row in enumerate(one_row):
            out[i] = predict(row, raw_score=True, num_threads=1)[0]
        return time.perf_counter() - start, out

    def time_ours_numpy() -> tuple[float, list[float]]:
        out = [0.0] * len(one_row)
        start = time.perf_counter()
        for i, row in enumerate(one_row):
            out[i] = raw_one(row[0].tolist())  # from the same numpy row LightGBM gets, conversion included
        return time.perf_counter() - start, out

    def time_ours_list() -> tuple[float, list[float]]:
        start = time.perf_counter()
        for row in as_lists:
            raw_one(row)
        return time.perf_counter() - start, []

    implementations = (
        ("lightgbm_model_threads", time_lightgbm),
        ("lightgbm_1_thread", time_lightgbm_1thread),
        ("ours", time_ours_numpy),
        ("ours_list", time_ours_list),
    )
    for _, fn in implementations:  # warm-up
        fn()
    totals = {key: 0.0 for key, _ in implementations}
    per_round: dict[str, list[float]] = {k: [] for k in totals}
    max_diff = 0.0
    with CpuWatch() as watch:
        for _ in range(rounds):
            scores = {}
            for key, fn in implementations:
                seconds, out = fn()
                totals[key] += seconds
                per_round[key].append(round(1e6 * seconds / len(X), 3))
                scores[key] = np.asarray(out)
            for key in ("lightgbm_model_threads", "lightgbm_1_thread"):
                max_diff = max(max_diff, float(np.max(np.abs(scores[key] - scores["ours"]))))
    calls = rounds * len(X)
    mean_us = {key: 1e6 * total / calls for key, total in totals.items()}
    # The peer at its best: the faster of LightGBM as loaded (the model file's num_threads) and one thread.
    lightgbm_config = min(("lightgbm_model_threads", "lightgbm_1_thread"), key=mean_us.__getitem__)
    lightgbm_us, ours_us = mean_us[lightgbm_config], mean_us["ours"]
    batch = booster.predict(X, raw_score=True)
    figures = {
        "lightgbm_us": round(lightgbm_us, 3),
        "ours_us": round(ours_us, 3),
        "speedup": round(lightgbm_us / ours_us, 2),
        "max_abs_diff": max_diff,
    }
    details = {
        "calls_per_implementation": calls,
        "rows": len(X),
        "rounds": rounds,
        "per_round_mean_us": per_round,
        "lightgbm_us_by_config": {
            f"num_threads={booster.params.get('num_threads', 'default')} (as loaded)": round(
                mean_us["lightgbm_model_threads"], 3
            ),
            "num_threads=1": round(mean_us["lightgbm_1_thread"], 3),
        },
        "lightgbm_us_is": lightgbm_config + ": the faster of the two",
        "ours_from_list_us": round(mean_us["ours_list"], 3),
        "ours_us_note": "raw_score_one(row.tolist()) from the same (1, n) float64 row LightGBM predicts, conversion "
        "included; ours_from_list_us: a Python list given directly",
        "max_abs_diff_vs_lightgbm_batch_predict": float(
            np.max(np.abs(batch - np.asarray([raw_one(r) for r in as_lists])))
        ),
        "trees": predictor.num_trees,
        "features": int(X.shape[1]),
        "foreign_cpu_pct": watch.foreign_cpu_pct,
        "load_average_1m_at_start": round(watch.load_average_1m, 2),
    }
    print(
        f"  predictor: LightGBM {lightgbm_us:.2f} µs ({lightgbm_config}; as loaded "
        f"{mean_us['lightgbm_model_threads']:.2f} µs), ours {ours_us:.2f} µs ({lightgbm_us / ours_us:.1f}x), max "
        f"|diff| {max_diff:.2e}",
        flush=True,
    )
    return figures, details


# --------------------------------------------------------------------------------------------- orchestration


def budget_verdicts(result: dict[str, Any]) -> dict[str, Any]:
    """docs/ARCHITECTURE.md, Budgets: scoring and model."""
    endpoint, peer, inproc, predictor = (
        result["endpoint"],
        result["feast_serve"],
        result["inprocess"],
        result["predictor"],
    )
    out: dict[str, Any] = {}
    if "redis" in endpoint:
        p99 = endpoint["redis"]["c1"]["p99_ms"]
        out["endpoint_redis_c1_p99_under_2ms"] = {"pass": p99 < 2.0, "p99_ms": p99}
        for n, bound in REQUEST_EVENTS_P99_MS.items():
            if f"c1_events{n}" in endpoint["redis"]:
                p99 = endpoint["redis"][f"c1_events{n}"]["p99_ms"]
                out[f"endpoint_redis_c1_events{n}_p99_under_{bound:g}ms"] = {"pass": p99 < bound, "p99_ms": p99}
    for store in STORES:
        if store in endpoint and store in peer:
            ours, theirs = endpoint[store]["c1"]["p99_ms"], peer[store]["c1"]["p99_ms"]
            out[f"endpoint_{store}_c1_p99_at_most_third_of_feast_serve"] = {
                "pass": ours <= theirs / 3,
                "ours_p99_ms": ours,
                "feast_serve_p99_ms": theirs,
                "ratio": round(theirs / ours, 2),
            }
        if store in inproc:
            naive, ours = inproc[store]["naive"]["p99_ms"], inproc[store]["ours"]["p99_ms"]
            out[f"inprocess_{store}_ours_p99_3x_better_than_naive"] = {
                "pass": naive >= 3 * ours,
                "ours_p99_ms": ours,
                "naive_p99_ms": naive,
                "ratio": round(naive / ours, 2),
            }
    if predictor:
        out["predictor_speedup_at_least_3x"] = {"pass": predictor["speedup"] >= 3, "speedup": predictor["speedup"]}
        out["predictor_within_1e-9_of_lightgbm"] = {
            "pass": predictor["max_abs_diff"] <= 1e-9,
            "max_abs_diff": predictor["max_abs_diff"],
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import feast
    import lightgbm

    from bench.common import bench_dir, remove_scratch, run_meta

    counts = {key: quick if args.quick else full for key, (full, quick) in COUNTS.items()}
    scratch = Path(args.scratch) if args.scratch else bench_dir() / "scratch" / f"{NAME}-{os.getpid()}"
    reuse = args.state is not None
    home = Path(args.state).resolve() if reuse else scratch / "home"
    scratch.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        **run_meta(NAME, args.quick),
        "client": CLIENT_DESCRIPTION,
        "redis": f"{_redis_url()} (the bench's own db, flushed before and after)",
        "entities": args.entities,
        "entity_seed": SEED,
        "counts": counts,
        "versions": {"feast": feast.__version__, "lightgbm": lightgbm.__version__, "python": sys.version.split()[0]},
        "endpoint_note": "serve (serving/server.py), one uvicorn process; single rows are POST /invocations "
        "{session_id,user_id}; batch100 is {instances: [100 rows]} at concurrency 1; latency measured at the client",
        "feast_serve_note": "feast serve with its defaults (gunicorn, 1 uvicorn worker, max_requests 1000 + jitter: "
        "the worker is recycled about every 1,000 requests, the client reconnects; access log on, to a file): POST "
        "/get-online-features {feature_service, entities: one row}; it returns features only, no model",
        "inprocess_note": "naive: FeatureStore.get_online_features(features=<feature service resolved once>, "
        "entity_rows=[row]).to_dict() -> one-row float64 DataFrame -> booster.predict(raw_score=True, num_threads=1) "
        "-> apply_calibrator; ours: Scorer.score([request]) (serving/scorer.py with "
        "serving/online_features.py); alternating blocks of 200 calls, one entity per call",
        "predictor_note": "mean over all calls (rows x rounds) of booster.predict((1, n) float64 array, "
        "raw_score=True) vs TreeEnsemblePredictor.raw_score_one(row.tolist()) on the sampled entities' online feature "
        "rows; LightGBM is timed as loaded (the model file's num_threads) and with num_threads=1, and the faster is "
        "lightgbm_us; max_abs_diff over both LightGBM configurations and every round",
        "details": {},
        "phases_s": {},
    }
    result: dict[str, Any] = {"endpoint": {}, "feast_serve": {}, "inprocess": {}, "predictor": {}}
    os.environ["PROPENSITY_HOME"] = str(home)
    os.environ["REDIS_URL"] = _redis_url()
    os.environ.pop("PROPENSITY_MODEL_DIR", None)
    reload_settings()  # this process and the children it starts read the bench's own state directory and db
    start = time.perf_counter()
    try:
        check_redis()
        if not reuse:
            _redis_client().flushdb()
            print("--- set-up: demo (Redis profile) and the SQLite online store", flush=True)
            t = time.perf_counter()
            meta["setup"] = build_state(home, scratch)
            meta["phases_s"]["setup"] = round(time.perf_counter() - t, 1)
        else:
            meta["setup"] = {"reused_state": str(home)}
        artifact = load_champion(home)
        meta["model"] = {
            "version": artifact.version,
            "trees": artifact.booster.num_trees(),
            "features": len(artifact.feature_names),
            "calibrator": artifact.calibrator.get("method"),
        }
        pairs = sample_entities(args.entities, SEED)
        X, store_check = read_features(pairs)
        meta["online_stores"] = store_check
        print(
            f"  champion {artifact.version} ({meta['model']['trees']} trees, {meta['model']['calibrator']} "
            f"calibration); {len(pairs):,} entities, identical in Redis and SQLite",
            flush=True,
        )

        for store in STORES:
            print(f"--- {store}: endpoint and feast serve over HTTP", flush=True)
            t = time.perf_counter()
            result["endpoint"][store], meta["details"][f"endpoint.{store}"] = measure_endpoint(
                store, artifact.directory, home, pairs, counts, scratch
            )
            result["feast_serve"][store], meta["details"][f"feast_serve.{store}"] = measure_feast_serve(
                store, home, pairs, counts, scratch
            )
            meta["phases_s"][f"http.{store}"] = round(time.perf_counter() - t, 1)

        print("--- in-process", flush=True)
        for store in STORES:
            t = time.perf_counter()
            result["inprocess"][store], meta["details"][f"inprocess.{store}"] = measure_inprocess(
                store, artifact, pairs, counts["inprocess"]
            )
            meta["phases_s"][f"inprocess.{store}"] = round(time.perf_counter() - t, 1)

        print("--- predictor", flush=True)
        t = time.perf_counter()
        result["predictor"], meta["details"]["predictor"] = measure_predictor(artifact, X, counts["predictor_rounds"])
        meta["phases_s"]["predictor"] = round(time.perf_counter() - t, 1)
    finally:
        if not reuse:
            try:
                _redis_client().flushdb()
            except Exception:  # noqa: BLE001  Redis gone: nothing left to flush
                pass
        if not args.keep_scratch:
            remove_scratch(scratch)
    meta["wall_s"] = round(time.perf_counter() - start, 1)
    meta["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    meta["budgets"] = budget_verdicts(result)
    meta["contended"] = contended(meta["details"])
    meta["contended_note"] = (
        f"phases during which other processes used more than {CONTENDED_PCT:.0f} % of the machine's CPU "
        "(foreign_cpu_pct in details): on 2 cores their tail latencies measure the scheduler as much as the code"
    )
    return {**result, "meta": meta}


def contended(details: dict[str, Any]) -> list[str]:
    out = []
    for name, entry in details.items():
        phases = {key: value for key, value in entry.items() if isinstance(value, dict) and "foreign_cpu_pct" in value}
        if "foreign_cpu_pct" in entry:
            phases[""] = entry
        for key, value in phases.items():
            if (value.get("foreign_cpu_pct") or 0.0) > CONTENDED_PCT:
                out.append(f"{name}.{key}" if key else name)
    return out


def print_summary(result: dict[str, Any]) -> None:
    from bench.common import format_table, print_run_end

    rows = []
    for store in STORES:
        for kind in ("endpoint", "feast_serve"):
            entry = result[kind].get(store)
            if not entry:
                continue
            for c in ("c1", "c8"):
                m = entry[c]
                rows.append([kind, store, c, m["p50_ms"], m["p95_ms"], m["p99_ms"], m["rps"]])
        for path in ("naive", "ours"):
            m = result["inprocess"].get(store, {}).get(path)
            if m:
                rows.append([f"inprocess {path}", store, "c1", m["p50_ms"], m["p95_ms"], m["p99_ms"], "-"])
    print(format_table(["path", "store", "conc.", "p50 ms", "p95 ms", "p99 ms", "req/s"], rows))
    for store in STORES:
        if store in result["endpoint"]:
            print(
                f"endpoint {store}: {result['endpoint'][store]['batch100_rows_per_s']:,.0f} rows/s in batches of "
                f"{BATCH_ROWS}"
            )
    p = result["predictor"]
    print(
        f"predictor: LightGBM {p['lightgbm_us']:.2f} µs, ours {p['ours_us']:.2f} µs ({p['speedup']:.1f}x), max |diff| "
        f"{p['max_abs_diff']:.2e}"
    )
    meta = result["meta"]
    print_run_end(meta)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests and calls (checks the plumbing, not the figures)"
    )
    parser.add_argument("--entities", type=int, default=ENTITIES, help="sampled (user_id, session_id) pairs")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch state and server logs")
    parser.add_argument("--output", default=NAME, help="result name: var/bench/<name>.json")
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    # Development: reuse a PROPENSITY_HOME built by an earlier run (--keep-scratch) whose Redis db is still loaded.
    parser.add_argument("--state", help=argparse.SUPPRESS)
    # Internal: the child-process worker.
    parser.add_argument("--worker", choices=("materialise-local",), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    from bench.common import parse_forwarded_args

    return parse_forwarded_args(parser, NAME, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        Path(args.out).write_text(json.dumps(worker_materialise_local(args)))
        return 0
    import warnings

    warnings.filterwarnings("ignore")
    from bench.common import publish

    return publish(args.output, run(args), print_summary)


if __name__ == "__main__":
    sys.exit(main())

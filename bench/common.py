"""Shared benchmark helpers: a process-tree RSS sampler, stage timing, results under var/bench, a text table.

Every benchmark is a module `bench.<name>` that writes `var/bench/<name>.json` through `write_result`, so
`python -m bench` can run each one in its own process and memory figures never mix.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import psutil

from propensity.paths import PROJECT_ROOT

BENCH_DIR = PROJECT_ROOT / "var" / "bench"
MB = 1024 * 1024


def bench_dir() -> Path:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    return BENCH_DIR


def result_path(name: str) -> Path:
    return bench_dir() / f"{name}.json"


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write `var/bench/<name>.json` atomically (a reader never sees half a file)."""
    path = result_path(name)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


def parse_forwarded_args(parser, name: str, argv: list[str] | None):
    """`python -m bench` forwards every benchmark's arguments to each: keep ours, say which were ignored."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"bench.{name}: ignoring arguments meant for other benchmarks: {' '.join(unknown)}", file=sys.stderr)
    return args


def publish(name: str, result: dict[str, Any], print_summary) -> int:
    """The end of every benchmark's run: the JSON under var/bench, the summary on stdout."""
    path = write_result(name, result)
    print_summary(result)
    print(f"wrote {path}")
    return 0


RUNNER_ENV = "PROPENSITY_BENCH_RUNNER"  # `python -m bench` passes its own command line to each benchmark here
CONTENDED_PCT = (
    10.0  # other processes above this share of the machine's CPU during a phase: its figures are pessimistic
)


def run_meta(name: str, quick: bool) -> dict[str, Any]:
    """What every result's `meta` starts with. `command` is what the README shows: the runner's command line
    (`make bench` when it ran without arguments), or this benchmark's own when it ran alone."""
    argv = " ".join([f"python -m bench.{name}", *sys.argv[1:]])
    return {
        "command": os.environ.get(RUNNER_ENV) or argv,
        "argv": argv,
        "quick": quick,
        "generated_at": utc_now_iso(),
        "machine": machine_meta(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def remove_scratch(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        scratch.parent.rmdir()  # var/bench/scratch, if no other run is using it
    except OSError:
        pass


def print_run_end(meta: dict[str, Any]) -> None:
    """The last lines of a summary: budget verdicts, load, whole-run time, and phases other work competed with."""
    for name, verdict in meta.get("budgets", {}).items():
        print(
            f"budget {name}: {'yes' if verdict['pass'] else 'NO'} "
            f"{ ({k: v for k, v in verdict.items() if k != 'pass'}) }"
        )
    print(
        f"load average at start {meta['load_average_at_start']}, at end {meta['load_average_at_end']}; whole run "
        f"{meta['wall_s']:.0f} s"
    )
    if meta.get("contended"):
        print(
            f"WARNING: other processes used > {CONTENDED_PCT:.0f} % of the CPU during: {', '.join(meta['contended'])}"
        )


def utc_now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def machine_meta() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc), so the next stage's RSS starts clean."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


FORK_GRACE_S = 2.0  # psutil's create_time is whole seconds in some sandboxes: age is judged by first sighting


def _cmdline(pid: int) -> list[str] | None:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return None


def _is_unexeced_fork(process: psutil.Process, age_s: float) -> bool:
    """A child seconds old that still runs its parent's command line: a fork on its way to exec (the JVM spawns a
    `chmod` per file Hadoop writes). Its RSS is the parent's pages counted a second time, so it is skipped.
    (Checked before its RSS is read: once the command line has changed, the exec has replaced the memory too.)"""
    if age_s > FORK_GRACE_S:
        return False
    try:
        own = process.cmdline()
    except psutil.Error:
        return True  # already gone
    return own == _cmdline(process.ppid()) if own else True


@dataclass
class TreeSample:
    rss: int = 0
    cpu_s: dict[tuple[int, float], float] = field(default_factory=dict)  # (pid, create_time) -> user+system s


def sample_tree(root: psutil.Process, first_seen: dict[tuple[int, float], float] | None = None) -> TreeSample:
    """RSS (summed, shared pages once per process, momentary forks skipped) and per-process CPU seconds of a
    process and all its descendants. `first_seen` remembers when each process was first listed (monotonic)."""
    out = TreeSample()
    now = time.monotonic()
    for process in _tree(root):
        try:
            key = (process.pid, process.create_time())
        except psutil.Error:
            continue
        if process.pid != root.pid:
            age = now - first_seen.setdefault(key, now) if first_seen is not None else time.time() - key[1]
            if _is_unexeced_fork(process, age):
                continue
        try:
            with process.oneshot():
                out.rss += process.memory_info().rss
                times = process.cpu_times()
                out.cpu_s[key] = times.user + times.system
        except psutil.Error:
            continue  # a worker that exited between listing and reading
    return out


def tree_rss_bytes(root: psutil.Process) -> int:
    """Resident memory of a process and all its descendants (see `sample_tree`)."""
    return sample_tree(root).rss


def system_busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores) since boot."""
    t = psutil.cpu_times()
    total = sum(getattr(t, name) for name in t._fields if name not in ("guest", "guest_nice"))
    return total - t.idle - getattr(t, "iowait", 0.0)


def reset_hwm(processes: Sequence[psutil.Process]) -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of each process (Linux: `5` into /proc/<pid>/clear_refs).
    Returns whether it worked for the first process."""
    ok = []
    for process in processes:
        try:
            with open(f"/proc/{process.pid}/clear_refs", "w") as handle:
                handle.write("5")
            ok.append(True)
        except OSError:
            ok.append(False)
    return bool(ok and ok[0])


def hwm_bytes(processes: Sequence[psutil.Process]) -> int:
    """Sum of the kernel's peak RSS (VmHWM) of the processes: exact for one process, an upper bound for a tree
    (its processes peak at different moments)."""
    total = 0
    for process in processes:
        try:
            with open(f"/proc/{process.pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
    return total


class RssSampler:
    """Samples the RSS of a process tree every `interval` seconds in a daemon thread and keeps the peak.

    `reset()` starts a new peak (one per stage); `peak_mb` is the highest tree RSS since the last reset,
    including a sample taken at the moment of reading, so a stage shorter than the interval still counts.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.05):
        self.root = psutil.Process(pid or os.getpid())
        self.interval = interval
        self._lock = threading.Lock()
        self._peak = 0
        self._samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_seen: dict[tuple[int, float], float] = {}
        self._cpu: dict[tuple[int, float], float] = {}  # latest CPU seconds of each process seen since reset
        self._cpu0: dict[tuple[int, float], float] = {}  # their CPU seconds at reset (absent: started after it)
        self._busy0 = system_busy_cpu_s()
        self._wall0 = time.monotonic()

    def sample(self) -> int:
        tree = sample_tree(self.root, self._first_seen)
        with self._lock:
            self._peak = max(self._peak, tree.rss)
            self._samples += 1
            self._cpu.update(tree.cpu_s)
            if len(self._first_seen) > 4096:  # forget processes long gone
                self._first_seen = {k: v for k, v in self._first_seen.items() if k in tree.cpu_s}
        return tree.rss

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.sample()  # listing and reading a large tree takes a few ms: keep the period near `interval`
            self._stop.wait(max(0.005, self.interval - (time.perf_counter() - started)))

    def start(self) -> "RssSampler":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def reset(self) -> None:
        self._hwm_ok = reset_hwm(_tree(self.root))
        tree = sample_tree(self.root, self._first_seen)
        with self._lock:
            self._peak = tree.rss
            self._samples = 1
            self._cpu = dict(tree.cpu_s)
            self._cpu0 = dict(tree.cpu_s)
            self._busy0 = system_busy_cpu_s()
            self._wall0 = time.monotonic()

    def foreign_cpu_pct(self) -> float:
        """Share of the machine's CPU (all cores) used since the last reset by processes outside the tree: 0 on a
        quiet machine; well above 0 means something else competed with the measurement."""
        self.sample()
        with self._lock:
            own = sum(cpu - self._cpu0.get(key, 0.0) for key, cpu in self._cpu.items())
            busy = system_busy_cpu_s() - self._busy0
            capacity = (time.monotonic() - self._wall0) * (psutil.cpu_count() or 1)
        return max(0.0, 100.0 * (busy - own) / capacity) if capacity > 0 else 0.0

    @property
    def hwm_mb(self) -> float | None:
        """Kernel peak RSS since the last reset, summed over the live tree (None where it cannot be reset)."""
        if not getattr(self, "_hwm_ok", False):
            return None
        return hwm_bytes(_tree(self.root)) / MB

    @property
    def peak_mb(self) -> float:
        self.sample()
        with self._lock:
            return self._peak / MB

    @property
    def samples(self) -> int:
        with self._lock:
            return self._samples

    def current_mb(self) -> float:
        return tree_rss_bytes(self.root) / MB

    def __enter__(self) -> "RssSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Measurement:
    """Wall seconds and peak tree RSS of one timed block; `items` is the work done (e.g. input events)."""

    items: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    rss_samples: int = 0
    hwm_rss_mb: float | None = None
    foreign_cpu_pct: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self, rate_name: str = "events_per_s") -> dict[str, Any]:
        return {
            rate_name: round(self.items_per_s, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "seconds": round(self.seconds, 3),
            **({} if self.hwm_rss_mb is None else {"hwm_rss_mb": round(self.hwm_rss_mb, 1)}),
            "rss_samples": self.rss_samples,
            **({} if self.foreign_cpu_pct is None else {"foreign_cpu_pct": round(self.foreign_cpu_pct, 1)}),
            **self.extra,
        }


@contextmanager
def measure(sampler: RssSampler, items: int = 0) -> Iterator[Measurement]:
    """Time a block and record the tree's peak RSS during it (the sampler's peak is reset at entry)."""
    result = Measurement(items=items)
    sampler.reset()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        result.peak_rss_mb = sampler.peak_mb
        result.rss_samples = sampler.samples
        result.hwm_rss_mb = sampler.hwm_mb
        result.foreign_cpu_pct = sampler.foreign_cpu_pct()


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """`with stopwatch() as t: ...` then `t["seconds"]`."""
    timing = {"seconds": 0.0}
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - start


def parse_sizes(text: str) -> list[int]:
    """'100000,1e6,5_000_000' -> [100000, 1000000, 5000000]."""
    return [int(float(part.replace("_", ""))) for part in text.split(",") if part.strip()]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in text]
    return "\n".join(lines)

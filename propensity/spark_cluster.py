"""A Spark standalone cluster on this machine: one master and N workers started from pyspark's own jars, on 127.0.0.1.

What a team that outgrows `local[*]` runs, in miniature: the jobs do not change, only the master does
(`SPARK_MASTER=spark://127.0.0.1:7077`; on EMR or Databricks it is the cluster's own master URL or `yarn`). The
integration test runs the batch feature jobs on it and compares them with `local[*]`.

`python -m propensity.spark_cluster start|stop|status` (`make spark-cluster`, `make spark-cluster-down`) keeps one
under `$PROPENSITY_HOME/services/spark-cluster` (logs, worker directories, pids).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass
class StandaloneCluster:
    """Master and workers as child processes (`spark-class`); `with StandaloneCluster(...) as cluster:` stops them."""

    directory: Path
    workers: int = 2
    cores_per_worker: int = 1
    memory_per_worker: str = "1g"
    master_port: int = 7077
    webui_port: int = 8090  # the master's status page (and its /json/); 8080 is the scoring endpoint's port
    processes: list[subprocess.Popen] = field(default_factory=list, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    def status(self, timeout_s: float = 5.0) -> dict:
        """The master's own view: its JSON status page (workers, their state, cores)."""
        with urllib.request.urlopen(f"http://{HOST}:{self.webui_port}/json/", timeout=timeout_s) as response:
            return json.load(response)

    def alive_workers(self) -> int:
        try:
            return sum(1 for worker in self.status().get("workers", []) if worker.get("state") == "ALIVE")
        except OSError:
            return 0

    def start(self, timeout_s: float = START_TIMEOUT_S) -> StandaloneCluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "master",
            "org.apache.spark.deploy.master.Master",
            ["--host", HOST, "--port", str(self.master_port), "--webui-port", str(self.webui_port)],
        )
        self._wait(lambda: self._master_up(), timeout_s, "the master's status page")
        for index in range(self.workers):
            work_dir = self.directory / f"worker-{index}"
            work_dir.mkdir(exist_ok=True)
            self._spawn(
                f"worker-{index}",
                "org.apache.spark.deploy.worker.Worker",
                [
                    self.url,
                    "--host",
                    HOST,
                    "--cores",
                    str(self.cores_per_worker),
                    "--memory",
                    self.memory_per_worker,
                    "--webui-port",
                    "0",
                    "--work-dir",
                    str(work_dir),
                ],
            )
        self._wait(lambda: self.alive_workers() == self.workers, timeout_s, f"{self.workers} workers registered")
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _master_up(self) -> bool:
        try:
            return self.status().get("status") == "ALIVE"
        except OSError:
            return False

    def _spawn(self, name: str, main_class: str, args: list[str]) -> None:
        home = spark_home()
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 (the child holds it for its lifetime)
        process = subprocess.Popen(
            [str(home / "bin" / "spark-class"), main_class, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the caller's terminal is the caller's to handle
        )
        log.close()
        self.processes.append(process)
        (self.directory / f"{name}.pid").write_text(str(process.pid))

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                self.stop()
                raise RuntimeError(f"a Spark process exited (code {dead[0].returncode}): see {self.directory}/*.log")
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"no {what} within {timeout_s:.0f} s: see {self.directory}/*.log")


def _stop_recorded(directory: Path) -> int:
    """Stop the processes a previous `start` recorded (their pid files), workers first."""
    stopped = 0
    for pid_file in sorted(directory.glob("*.pid"), reverse=True):  # worker-* sort after master
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            stopped += 1
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()
    return stopped


def main(argv: list[str] | None = None) -> int:
    from propensity.settings import settings

    parser = argparse.ArgumentParser(prog="python -m propensity.spark_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores-per-worker", type=int, default=1)
    parser.add_argument("--memory-per-worker", default="1g")
    parser.add_argument("--port", type=int, default=7077)
    parser.add_argument("--webui-port", type=int, default=8090)
    args = parser.parse_args(argv)
    directory = settings().services_home / "spark-cluster"
    cluster = StandaloneCluster(
        directory, args.workers, args.cores_per_worker, args.memory_per_worker, args.port, args.webui_port
    )
    if args.command == "stop":
        print(f"spark cluster: {_stop_recorded(directory)} processes stopped")
        return 0
    if args.command == "status":
        alive = cluster.alive_workers()
        print(f"spark cluster at {cluster.url}: {alive} workers alive" if alive else "spark cluster: not running")
        return 0 if alive else 1
    if cluster.alive_workers():
        print(f"spark cluster: already running at {cluster.url}")
        return 0
    cluster.start()
    cluster.processes.clear()  # they outlive this command: `stop` finds them by their pid files
    print(f"spark cluster: {args.workers} workers at {cluster.url} (logs in {directory}); SPARK_MASTER={cluster.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

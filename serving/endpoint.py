"""The local endpoint runtime: named endpoints with production variants and weights, SageMaker-style, on one machine.

An endpoint lives in `$PROPENSITY_HOME/serving/endpoints/<name>/`:
- `state.json`: its production variants (name, model version from the registry, traffic weight), replaced atomically
  by the deployer;
- `history.jsonl`: every deployment, promotion and rollback with its reason (`serving.deployment`);
- `inference.log`: one JSON line per scored row or failed request, with the variant that answered (the canary alarms
  and the monitoring sensors read it);
- `server.pid` / `server.port` while its server runs.

The server (`python -m serving.endpoint serve NAME`) is one process holding every variant's scorer in memory. Each
request goes to one variant, drawn by weight as SageMaker does, unless the caller names one with the
`X-Amzn-SageMaker-Target-Variant` header. It re-reads `state.json` when the file changes, so the deployer shifts
traffic or rolls back without a restart and without dropping a request.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import requests
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from propensity.models.artifact import ModelRegistry, load_artifact
from propensity.paths import PROJECT_ROOT, home, write_text_atomic
from serving.deployment import VariantSpec
from serving.online_features import OnlineFeatureReader
from serving.scorer import Scorer
from serving.server import AsgiApp, InferenceApp, InferenceLog, Metrics, _json_response

LOG = logging.getLogger("propensity.endpoint")
TARGET_VARIANT_HEADER = b"x-amzn-sagemaker-target-variant"
STATE_CHECK_INTERVAL_S = 0.2
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class EndpointFiles:
    """Where one endpoint's state lives, and atomic reads and writes of its variants."""

    def __init__(self, name: str, root: Path | None = None):
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise ValueError(f"endpoint name {name!r}: use letters, digits and '-' (SageMaker's rule)")
        self.name = name
        self.dir = (Path(root) if root else home() / "serving" / "endpoints") / name
        self.state = self.dir / "state.json"
        self.history = self.dir / "history.jsonl"
        self.inference_log = self.dir / "inference.log"
        self.pid = self.dir / "server.pid"
        self.port = self.dir / "server.port"

    def read_variants(self) -> list[VariantSpec]:
        if not self.state.exists():
            return []
        return [VariantSpec(**v) for v in json.loads(self.state.read_text())["variants"]]

    def write_variants(self, variants: list[VariantSpec]) -> None:
        total = sum(v.weight for v in variants)
        if variants and total <= 0:
            raise ValueError("variant weights must sum to more than zero")
        if len({v.name for v in variants}) != len(variants):
            raise ValueError(f"variant names must be unique: {[v.name for v in variants]}")
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            self.state, json.dumps({"variants": [asdict(v) for v in variants], "updated_at": time.time()}, indent=2)
        )


class VariantRouter(AsgiApp):
    """Serves an endpoint's variants behind one SageMaker contract, re-reading the endpoint's state on change."""

    def __init__(
        self,
        files: EndpointFiles,
        reader: OnlineFeatureReader,
        registry: ModelRegistry | None = None,
        seed: int | None = None,
    ):
        self.files = files
        self.reader = reader
        self.registry = registry or ModelRegistry()
        self.metrics = Metrics()
        self.log = InferenceLog(files.inference_log)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._apps: dict[str, InferenceApp] = {}
        self._loaded: dict[str, str] = {}  # variant -> model version its app serves
        self._names: list[str] = []
        self._cumulative: list[float] = []
        self._state_stamp: tuple | None = None
        self._next_check = 0.0
        self.reload()

    def reload(self) -> None:
        """Load the variants in state.json; unchanged variants keep their warm scorer."""
        try:
            stat = self.files.state.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._state_stamp:
            return
        variants = self.files.read_variants()
        apps = {}
        for v in variants:
            if self._loaded.get(v.name) == v.model_version:
                apps[v.name] = self._apps[v.name]
            else:
                artifact = load_artifact(self.registry.root / v.model_version)
                apps[v.name] = InferenceApp(Scorer(artifact, self.reader, v.name), self.log, self.metrics)
        total = sum(v.weight for v in variants) or 1.0
        cumulative, running = [], 0.0
        for v in variants:
            running += v.weight / total
            cumulative.append(running)
        with self._lock:
            self._apps = apps
            self._loaded = {v.name: v.model_version for v in variants}
            self._names = [v.name for v in variants]
            self._cumulative = cumulative
            self._state_stamp = stamp
        LOG.info("endpoint %s serves %s", self.files.name, [(v.name, v.model_version, v.weight) for v in variants])

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + STATE_CHECK_INTERVAL_S
            try:
                self.reload()
            except Exception:  # noqa: BLE001 - a bad state file must not stop the variants already serving
                LOG.exception("could not load endpoint state %s; keeping the current variants", self.files.state)

    def choose(self, target: str | None = None) -> InferenceApp | None:
        with self._lock:
            if target is not None:
                return self._apps.get(target)
            u = self._random.random()
            for name, bound in zip(self._names, self._cumulative):
                if u < bound:
                    return self._apps[name]
            return self._apps[self._names[-1]] if self._names else None

    def handle(self, method: str, path: str, body: bytes, headers: dict[bytes, bytes]) -> tuple[int, bytes, bytes]:
        self._maybe_reload()
        if path == "/ping" and method == "GET":
            return (200, b"", b"text/plain") if self._names else _json_response(503, {"error": "no variant deployed"})
        if path == "/metrics" and method == "GET":
            return 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST.encode()
        if path == "/invocations":
            if method != "POST":
                return _json_response(405, {"error": "use POST /invocations"})
            target = headers.get(TARGET_VARIANT_HEADER)
            app = self.choose(target.decode("latin-1") if target else None)
            if app is None:
                if target:
                    return _json_response(
                        400, {"error": f"no variant {target.decode('latin-1')!r} on endpoint {self.files.name}"}
                    )
                return _json_response(503, {"error": f"endpoint {self.files.name} has no variant deployed"})
            return app.invoke(body, headers)
        return _json_response(404, {"error": f"no route {method} {path}: use GET /ping or POST /invocations"})


# --------------------------------------------------------------------------------------------- the server process


def free_port() -> int:
    """A port on 127.0.0.1 that is free now (the server that binds it next may still race another process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_url(files: EndpointFiles) -> str | None:
    """The URL of the endpoint's server if it is running and answers /ping."""
    if not (files.pid.exists() and files.port.exists()):
        return None
    if not _alive(int(files.pid.read_text())):
        return None
    url = f"http://127.0.0.1:{int(files.port.read_text())}"
    try:
        return url if requests.get(f"{url}/ping", timeout=1.0).status_code == 200 else None
    except requests.RequestException:
        return None


def start_server(
    files: EndpointFiles, profile: str, port: int | None = None, timeout_s: float = START_TIMEOUT_S
) -> str:
    """Start the endpoint's server in its own session (it outlives the caller, like a SageMaker endpoint) and wait
    until it answers /ping. Idempotent: a running server is reused."""
    url = running_url(files)
    if url:
        return url
    port = port or free_port()
    files.dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PROPENSITY_PROFILE=profile, PROPENSITY_HOME=str(home()))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(files.dir / "server.out", "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.endpoint", "serve", files.name, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=PROJECT_ROOT,
        )
    files.pid.write_text(str(process.pid))
    files.port.write_text(str(port))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"endpoint {files.name} exited with {process.returncode} on start; see {files.dir / 'server.out'}"
            )
        try:
            if requests.get(f"{url}/ping", timeout=0.5).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(
        f"endpoint {files.name} did not answer /ping within {timeout_s:.0f} s; see {files.dir / 'server.out'}"
    )


def stop_server(files: EndpointFiles, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the endpoint's server if it runs; True if one was stopped."""
    if not files.pid.exists():
        return False
    pid = int(files.pid.read_text())
    stopped = False
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            except ChildProcessError:
                pass
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        stopped = True
    files.pid.unlink(missing_ok=True)
    files.port.unlink(missing_ok=True)
    return stopped


def serve(name: str, port: int, host: str = "127.0.0.1") -> None:
    import uvicorn

    from resources.profiles import current_profile
    from serving.online_features import open_online_feature_reader

    logging.basicConfig(level=logging.INFO)
    router = VariantRouter(EndpointFiles(name), open_online_feature_reader(current_profile()))
    uvicorn.run(router, host=host, port=port, log_level="warning", access_log=False, loop="uvloop", http="httptools")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.endpoint", description="The local endpoint runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="serve an endpoint's variants (foreground)")
    serve_cmd.add_argument("name")
    serve_cmd.add_argument("--port", type=int, default=int(os.environ.get("SERVING_PORT", 8080)))
    serve_cmd.add_argument("--host", default=os.environ.get("SERVING_HOST", "127.0.0.1"))
    for command in ("start", "stop", "status"):
        sub.add_parser(command, help=f"{command} an endpoint's background server").add_argument("name")
    args = parser.parse_args(argv)
    files = EndpointFiles(args.name)
    if args.command == "serve":
        serve(args.name, args.port, args.host)
    elif args.command == "start":
        from resources.profiles import current_profile

        print(start_server(files, current_profile()))
    elif args.command == "stop":
        print("stopped" if stop_server(files) else "not running")
    else:
        print(json.dumps({"url": running_url(files), "variants": [asdict(v) for v in files.read_variants()]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

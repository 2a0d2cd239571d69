"""An endpoint's variants behind one SageMaker contract: the process the local endpoint runtime runs per endpoint.

The server (`python -m serving.router NAME --port P`) is one process holding every variant's scorer in memory. Each
request goes to one variant, drawn by weight as SageMaker does, unless the caller names one with the
`X-Amzn-SageMaker-Target-Variant` header. It re-reads the endpoint's `state.json` (`serving.endpoint_state`) when the
file changes, so the deployer shifts traffic or rolls back without a restart and without dropping a request. This is
the data plane: starting, stopping and deploying are the control plane's (`serving.control`).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import threading
import time

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from propensity.models.artifact import ModelRegistry, load_artifact
from propensity.settings import settings
from serving.contract import TARGET_VARIANT_HEADER
from serving.endpoint_state import EndpointFiles
from serving.online_features import OnlineFeatureReader, open_online_feature_reader
from serving.openapi import openapi_json
from serving.scorer import Scorer
from serving.server import AsgiApp, InferenceApp, InferenceLog, Metrics, json_response, no_route, run_server

LOG = logging.getLogger("propensity.endpoint")
TARGET_VARIANT = TARGET_VARIANT_HEADER.lower().encode()  # ASGI header names arrive lower-cased
STATE_CHECK_INTERVAL_S = 0.2


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
            return (200, b"", b"text/plain") if self._names else json_response(503, {"error": "no variant deployed"})
        if path == "/metrics" and method == "GET":
            return 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST.encode()
        if path == "/openapi.json" and method == "GET":
            return 200, openapi_json(), b"application/json"
        if path == "/invocations" and method == "POST":
            target = headers.get(TARGET_VARIANT)
            app = self.choose(target.decode("latin-1") if target else None)
            if app is None:
                if target:
                    return json_response(
                        400, {"error": f"no variant {target.decode('latin-1')!r} on endpoint {self.files.name}"}
                    )
                return json_response(503, {"error": f"endpoint {self.files.name} has no variant deployed"})
            return app.invoke(body, headers)
        return no_route(method, path)  # the single-model server's rule: 405 on a known path, else 404


def serve(name: str, port: int, host: str = "127.0.0.1", profile: str | None = None) -> None:
    """Serve endpoint `name` in the foreground with the profile's online store."""
    logging.basicConfig(level=logging.INFO)
    router = VariantRouter(EndpointFiles(name), open_online_feature_reader(profile or settings().profile))
    run_server(router, host, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.router", description="Serve a local endpoint's variants.")
    parser.add_argument("name")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    serve(args.name, args.port, args.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())

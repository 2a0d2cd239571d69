"""The inference server: SageMaker's container contract (`GET /ping`, `POST /invocations`, port 8080, `serve`).

A plain ASGI app on uvicorn: no framework layer between the socket and the scorer, because the budget is a 2 ms p99.
Bad input is a 4xx with a reason; an unexpected error is a 500 with a reason and never takes the server down.
A body over the contract's limit is refused on its Content-Length before any of it is read, or as soon as a chunked
body passes the limit. Every scored row goes to the inference log (JSON lines, written by a background thread off
the request path): the prediction as answered, with the features used and the intervention decision, so the log
reads back as the decision log (`propensity.monitoring.decisions`). `GET /openapi.json` answers the contract as an
OpenAPI document (`serving.openapi`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from propensity.paths import home
from propensity.settings import settings
from serving.contract import MAX_BODY_BYTES, BadRequest, check_content_length, parse_request
from serving.openapi import openapi_json
from serving.scorer import Scorer

LOG = logging.getLogger("propensity.serving")
SAGEMAKER_MODEL_DIR = "/opt/ml/model"  # where SageMaker extracts model.tar.gz
ROUTES = {"/ping": "GET", "/invocations": "POST", "/metrics": "GET", "/openapi.json": "GET"}  # path -> its method


class InferenceLog:
    """Appends one JSON line per scored row; the request path only enqueues."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._drain, name="inference-log", daemon=True).start()

    def append(self, record: dict) -> None:
        self._queue.put(record)

    def _drain(self) -> None:
        with open(self.path, "a", buffering=1) as handle:
            while True:
                record = self._queue.get()
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self, timeout_s: float = 2.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.005)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "propensity_request_seconds",
            "invocation latency",
            ["variant"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
        )
        self.fallbacks = Counter(
            "propensity_fallbacks_total", "rows scored without all features", ["variant"], registry=self.registry
        )
        self.errors = Counter(
            "propensity_errors_total", "requests answered with an error", ["variant", "status"], registry=self.registry
        )
        self.scores = Histogram(
            "propensity_score",
            "calibrated propensity served",
            ["variant"],
            registry=self.registry,
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
        )


def json_response(status: int, payload) -> tuple[int, bytes, bytes]:
    return status, json.dumps(payload, separators=(",", ":")).encode(), b"application/json"


def no_route(method: str, path: str) -> tuple[int, bytes, bytes]:
    """405 for a known path asked with another method (the Allow header names the right one), else 404."""
    if path in ROUTES:
        return json_response(405, {"error": f"use {ROUTES[path]} {path}"})
    return json_response(404, {"error": f"no route {method} {path}: use GET /ping or POST /invocations"})


class ClientGone(Exception):
    """The client disconnected before its request body arrived: there is no one to answer."""


async def read_body(receive, content_length: bytes | None) -> bytes:
    """The request body, refused (BadRequest) on its Content-Length before any is read, or as soon as the running
    total passes the limit: an oversized body is never held in memory."""
    check_content_length(content_length)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(413, f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class AsgiApp:
    """The ASGI plumbing shared by one-model servers and the endpoint runtime's variant router: subclasses answer
    `handle(method, path, body, headers) -> (status, body, content type)`."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        try:
            body = await read_body(receive, headers.get(b"content-length"))
        except ClientGone:
            return
        except BadRequest as error:
            # The rest of the body stays unread: close the connection, or uvicorn would go on reading and
            # discarding it for as long as the client sends.
            status, payload, content_type = self.refuse(error)
            await self._respond(send, scope["path"], status, payload, content_type, close=True)
            return
        status, payload, content_type = self.handle(scope["method"], scope["path"], body, headers)
        await self._respond(send, scope["path"], status, payload, content_type)

    @staticmethod
    async def _respond(send, path: str, status: int, payload: bytes, content_type: bytes, close: bool = False):
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(payload))]
        if status == 405 and path in ROUTES:
            headers.append((b"allow", ROUTES[path].encode()))  # RFC 9110: a 405 names the methods that work
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def refuse(self, error: BadRequest) -> tuple[int, bytes, bytes]:
        """The answer to a request refused before its body was read (too large, Content-Length not a number)."""
        return json_response(error.status, {"error": error.message})

    def handle(self, method: str, path: str, body: bytes, headers: dict[bytes, bytes]) -> tuple[int, bytes, bytes]:
        raise NotImplementedError


class InferenceApp(AsgiApp):
    """One Scorer behind the SageMaker contract. `metrics` and `inference_log` may be shared by several variants."""

    def __init__(self, scorer: Scorer, inference_log: InferenceLog | None = None, metrics: Metrics | None = None):
        self.scorer = scorer
        self.metrics = metrics or Metrics()
        self.log = inference_log or InferenceLog(home() / "serving" / "inference.log")

    def handle(self, method: str, path: str, body: bytes, headers: dict[bytes, bytes]) -> tuple[int, bytes, bytes]:
        if path == "/ping" and method == "GET":
            return 200, b"", b"text/plain"
        if path == "/invocations" and method == "POST":
            return self.invoke(body, headers)
        if path == "/metrics" and method == "GET":
            return 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST.encode()
        if path == "/openapi.json" and method == "GET":
            return 200, openapi_json(), b"application/json"
        return no_route(method, path)

    def refuse(self, error: BadRequest) -> tuple[int, bytes, bytes]:
        return self._error(error.status, error.message, time.perf_counter())  # counted and logged like any 4xx

    def invoke(self, body: bytes, headers: dict[bytes, bytes]) -> tuple[int, bytes, bytes]:
        started = time.perf_counter()
        variant = self.scorer.variant
        content_type = headers.get(b"content-type")
        try:
            requests, is_batch = parse_request(body, content_type.decode("latin-1") if content_type else None)
            predictions = self.scorer.score(requests)
        except BadRequest as error:
            return self._error(error.status, error.message, started)
        except Exception as error:  # noqa: BLE001 - answered, counted and logged; the server stays up
            LOG.exception("scoring failed")
            return self._error(500, f"scoring failed: {type(error).__name__}: {error}", started)
        elapsed = time.perf_counter() - started
        request_id = str(uuid.uuid4())
        self.metrics.latency.labels(variant).observe(elapsed)
        for prediction in predictions:
            self.metrics.scores.labels(variant).observe(prediction["propensity"])
            if prediction["fallback"]:
                self.metrics.fallbacks.labels(variant).inc()
            self.log.append(
                {
                    "request_id": request_id,
                    "ts": time.time(),
                    "status": 200,
                    "latency_ms": round(elapsed * 1000, 3),
                    **prediction,
                }
            )
        return json_response(200, {"predictions": predictions} if is_batch else predictions[0])

    def _error(self, status: int, message: str, started: float) -> tuple[int, bytes, bytes]:
        """Errors are counted and logged too: the canary's error-rate alarm reads them from the inference log."""
        variant = self.scorer.variant
        self.metrics.errors.labels(variant, str(status)).inc()
        self.log.append(
            {
                "request_id": str(uuid.uuid4()),
                "ts": time.time(),
                "status": status,
                "variant": variant,
                "model_version": self.scorer.model_version,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                "error": message[:300],
            }
        )
        return json_response(status, {"error": message})


def build_app(
    model_dir: str | Path | None = None, profile: str | None = None, variant: str | None = None
) -> InferenceApp:
    """Load the artifact (SageMaker mounts it at /opt/ml/model; locally the registry's champion) and the reader."""
    from propensity.models.artifact import ModelRegistry, load_artifact
    from serving.online_features import open_online_feature_reader

    config = settings()
    model_dir = model_dir or config.serving.model_dir
    if model_dir is None and Path(SAGEMAKER_MODEL_DIR, "MANIFEST.json").exists():
        model_dir = SAGEMAKER_MODEL_DIR
    if model_dir is not None:
        artifact = load_artifact(Path(model_dir))
    else:
        artifact = ModelRegistry().champion()
        if artifact is None:
            raise SystemExit("no model to serve: run `make demo` (it registers a champion) or set PROPENSITY_MODEL_DIR")
    reader = open_online_feature_reader(profile or config.profile)
    scorer = Scorer(artifact, reader, variant or config.serving.variant, model_version=config.serving.model_version)
    return InferenceApp(scorer)


def run_server(app: AsgiApp, host: str, port: int) -> None:
    """uvicorn with the settings the latency budget was measured with: no access log, uvloop, httptools."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, loop="uvloop", http="httptools")


def main() -> None:
    """`serve`: what SageMaker runs in the container, and what `make endpoint` starts for one model."""
    logging.basicConfig(level=logging.INFO)
    app = build_app()
    run_server(app, settings().serving.host, settings().serving.port)


if __name__ == "__main__":
    main()

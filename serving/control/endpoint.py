"""The local endpoint runtime's control plane: start and stop an endpoint's server, and deploy models to it.

    python -m serving.control.endpoint start NAME     # the endpoint's server in the background (make endpoint)
    python -m serving.control.endpoint stop NAME
    python -m serving.control.endpoint status NAME

The server is `serving.router` in its own process and session, so it outlives the caller like a SageMaker endpoint.
`LocalEndpointDeployer` implements `Deployer` (`serving.control.deployment`): the first deployment on an endpoint
takes all traffic, later ones start a canary and return; `serving.control.judge` judges it on the live traffic in
the endpoint's inference log and shifts, promotes or rolls it back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import requests

from propensity.models.artifact import ModelRegistry, verify_manifest
from propensity.paths import PROJECT_ROOT, home, table_dir
from propensity.settings import settings
from serving.control.canary import log_traffic
from serving.control.deployment import (
    CanaryPolicy,
    CanaryState,
    CanaryTraffic,
    DeploymentRecord,
    append_history,
    canary_in_progress,
    read_history,
    utc_now,
)
from serving.endpoint_state import EndpointFiles, VariantSpec, endpoints_root

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


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
            [sys.executable, "-m", "serving.router", files.name, "--port", str(port)],
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


def lake_outcomes(session_ids: Iterable[str]) -> dict[str, bool]:
    """Observed outcomes: whether each session purchased, for the sessions the lake's `sessions` table already holds
    (sessions still open, or not yet landed, are simply unknown)."""
    path = table_dir("sessions")
    if not path.exists():
        return {}
    wanted = list(session_ids)
    frame = pd.read_parquet(path, columns=["session_id", "has_purchase"], filters=[("session_id", "in", wanted)])
    return dict(zip(frame["session_id"], frame["has_purchase"].astype(bool)))


@dataclass(frozen=True)
class LocalEndpointDeployer:
    """The embedded default: endpoints served on this machine by `serving.router`, weights in the endpoint's
    state.json, observations from its inference log.

    The endpoint's server is started on the first deployment and keeps running (like a SageMaker endpoint) until
    `python -m serving.control.endpoint stop NAME`; later deployments shift its traffic without a restart.
    """

    profile: str = "local"  # the online store the endpoint reads features from
    launch_server: bool = True

    def deploy(self, endpoint: str, model_dir: Path, model_version: str, policy: CanaryPolicy) -> DeploymentRecord:
        files = EndpointFiles(endpoint)
        registry = ModelRegistry()
        if Path(model_dir).resolve() != (registry.root / model_version).resolve():
            raise ValueError(
                f"{model_dir} is not registry version {model_version}: "
                "the local runtime serves registered versions only"
            )
        verify_manifest(Path(model_dir))
        started = utc_now()
        new = model_version  # a variant is named after the version it serves (registry versions fit SageMaker's rule)
        if not files.read_variants():
            files.write_variants([VariantSpec(new, model_version, 1.0)])
            record = self._record(files, model_version, "deployed", "first deployment: all traffic", started, "deploy")
            if self.launch_server:
                start_server(files, self.profile)
            return record
        running = self.canary(endpoint)
        if running is not None and running.model_version == model_version:
            return self.history(endpoint)[-1]  # already canarying this version: the judge carries on
        if running is not None:
            self.roll_back(endpoint, f"superseded by {model_version} before a decision", {"superseded_by": new})
        current = files.read_variants()
        champion = max(current, key=lambda v: v.weight)
        if champion.model_version == model_version and len(current) == 1:
            return self._record(
                files, model_version, "deployed", "already serving this version: nothing to do", started, "deploy"
            )
        if self.launch_server:
            start_server(files, self.profile)  # a canary is judged on live traffic, so the endpoint must be up
        now = time.time()
        offset = files.inference_log.stat().st_size if files.inference_log.exists() else 0  # before any canary row
        state = CanaryState(
            model_version=model_version,
            variant=new,
            champion_version=champion.model_version,
            champion_variant=champion.name,
            share=policy.canary_share,
            step=0,
            started_at=now,
            step_started_at=now,
            policy=policy,
            cursor={"log_offset": offset},
        )
        self._write_split(files, state)
        reason = f"canary at {state.share:.0%} next to {champion.model_version}"
        return self._record(
            files, model_version, "in_progress", reason, started, "start_canary", {"canary": state.as_dict()}
        )

    def canary(self, endpoint: str) -> CanaryState | None:
        return canary_in_progress(self.history(endpoint))

    def observe(self, endpoint: str, canary: CanaryState, now: float | None = None) -> CanaryTraffic:
        files = EndpointFiles(endpoint)
        return log_traffic(files.inference_log, canary.cursor["log_offset"], canary.variant, canary.champion_variant)

    def shift(
        self, endpoint: str, share: float, reason: str, numbers: dict, now: float | None = None
    ) -> DeploymentRecord:
        files, state = self._running(endpoint)
        state = state.shifted(share, time.time() if now is None else now)
        self._write_split(files, state)
        observations = {**numbers, "canary": state.as_dict()}
        return self._record(files, state.model_version, "in_progress", reason, utc_now(), "shift", observations)

    def promote(self, endpoint: str, reason: str, numbers: dict) -> DeploymentRecord:
        files, state = self._running(endpoint)
        files.write_variants([VariantSpec(state.variant, state.model_version, 1.0)])
        return self._record(files, state.model_version, "promoted", reason, utc_now(), "promote", numbers)

    def roll_back(self, endpoint: str, reason: str, numbers: dict) -> DeploymentRecord:
        files, state = self._running(endpoint)
        files.write_variants([VariantSpec(state.champion_variant, state.champion_version, 1.0)])
        return self._record(files, state.model_version, "rolled_back", reason, utc_now(), "roll_back", numbers)

    def endpoints(self) -> list[str]:
        return sorted(p.parent.name for p in endpoints_root().glob("*/history.jsonl"))

    def variants(self, endpoint: str) -> list[VariantSpec]:
        return EndpointFiles(endpoint).read_variants()

    def history(self, endpoint: str) -> list[DeploymentRecord]:
        return read_history(EndpointFiles(endpoint).history)

    def url(self, endpoint: str) -> str | None:
        return running_url(EndpointFiles(endpoint))

    def _running(self, endpoint: str) -> tuple[EndpointFiles, CanaryState]:
        state = self.canary(endpoint)
        if state is None:
            raise RuntimeError(f"endpoint {endpoint} has no canary in progress: deploy one first")
        return EndpointFiles(endpoint), state

    @staticmethod
    def _write_split(files: EndpointFiles, state: CanaryState) -> None:
        files.write_variants(
            [
                VariantSpec(state.champion_variant, state.champion_version, round(1.0 - state.share, 9)),
                VariantSpec(state.variant, state.model_version, state.share),
            ]
        )

    @staticmethod
    def _record(
        files: EndpointFiles,
        model_version: str,
        outcome: str,
        reason: str,
        started_at: str,
        stage: str,
        observations: dict | None = None,
    ) -> DeploymentRecord:
        record = DeploymentRecord(
            endpoint=files.name,
            model_version=model_version,
            outcome=outcome,
            reason=reason,
            started_at=started_at,
            finished_at=None if outcome == "in_progress" else utc_now(),
            variants=files.read_variants(),
            observations=observations or {},
            deployer="local",
            stage=stage,
        )
        append_history(files.history, record)
        return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.control.endpoint", description="The local endpoint runtime."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("start", "stop", "status"):
        sub.add_parser(command, help=f"{command} an endpoint's background server").add_argument("name")
    args = parser.parse_args(argv)
    files = EndpointFiles(args.name)
    if args.command == "start":
        print(start_server(files, settings().profile))
    elif args.command == "stop":
        print("stopped" if stop_server(files) else "not running")
    else:
        print(json.dumps({"url": running_url(files), "variants": [asdict(v) for v in files.read_variants()]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

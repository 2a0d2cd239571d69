"""The local endpoint runtime for real: server processes, weighted variants, canaries started by the deployer and
judged on live HTTP traffic (shifted, promoted, rolled back), and an online store (Redis) that dies under a running
endpoint."""

import os
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest
import requests

from propensity.feature_store import open_feature_store
from propensity.models.artifact import ModelRegistry, write_artifact
from serving.client import PropensityClient
from serving.control.deployment import CanaryPolicy
from serving.control.endpoint import (
    LocalEndpointDeployer,
    free_port,
    lake_outcomes,
    running_url,
    start_server,
    stop_server,
)
from serving.control.judge import judge_canary
from serving.endpoint_state import EndpointFiles, VariantSpec
from serving.online_features import open_online_feature_reader
from serving.router import VariantRouter
from tests.integration.test_feast import feature_lake  # noqa: F401 - the fixture behind `served`
from tests.integration.test_inference_server import served  # noqa: F401 - a real model on a real store

pytestmark = pytest.mark.spark


def _register(artifact_dir, calibrator=None) -> tuple[str, object]:
    """A registry version of the test model; with `calibrator`, the same trees mapped to other probabilities."""
    registry = ModelRegistry()
    source = artifact_dir
    if calibrator is not None:
        import json

        from propensity.models.artifact import load_artifact

        a = load_artifact(artifact_dir)
        source = artifact_dir.parent / f"variant-{time.time_ns()}"
        write_artifact(
            source,
            booster=a.booster,
            calibrator=calibrator,
            baseline=a.baseline,
            features=a.features,
            training=a.training,
            metrics=json.loads((artifact_dir / "metrics.json").read_text()),
        )
    version = registry.register(source, promote=True, reason="test")
    return version, registry.root / version


class Storefront:
    """Live traffic on an endpoint from a background thread, through the storefront's client."""

    def __init__(self, url: str, pairs: list[tuple[str, str]]):
        self.client = PropensityClient.local(url, timeout_s=2.0)
        self.pairs = pairs
        self.answers: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            self.answers.append(self.client.score(*self.pairs[i % len(self.pairs)]))
            i += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def endpoint_name(request):
    name = f"t-{request.node.name.replace('_', '-')[:40]}-{os.getpid()}"
    yield name
    stop_server(EndpointFiles(name))


def test_router_splits_by_weight_honours_the_target_header_and_follows_state_changes(served, endpoint_name):  # noqa: F811
    _, artifact, _, sessions, _ = served
    a, _ = _register(artifact.directory)
    b, _ = _register(artifact.directory)
    files = EndpointFiles(endpoint_name)
    files.write_variants([VariantSpec("blue", a, 0.75), VariantSpec("green", b, 0.25)])
    router = VariantRouter(files, open_online_feature_reader("local"), seed=7)
    user, session = sessions.iloc[0][["user_id", "session_id"]]
    body = f'{{"session_id": "{session}", "user_id": "{user}"}}'.encode()
    headers = {b"content-type": b"application/json"}
    import json

    answered = [json.loads(router.handle("POST", "/invocations", body, headers)[1])["variant"] for _ in range(800)]
    assert abs(answered.count("green") / 800 - 0.25) < 0.05  # binomial sd 0.015
    targeted = router.handle("POST", "/invocations", body, {**headers, b"x-amzn-sagemaker-target-variant": b"green"})
    assert json.loads(targeted[1])["variant"] == "green"
    status, message, _ = router.handle(
        "POST", "/invocations", body, {**headers, b"x-amzn-sagemaker-target-variant": b"red"}
    )
    assert status == 400 and b"no variant 'red'" in message

    files.write_variants([VariantSpec("green", b, 1.0)])
    time.sleep(0.3)  # the router looks at the state file at most every 0.2 s
    assert {json.loads(router.handle("POST", "/invocations", body, headers)[1])["variant"] for _ in range(50)} == {
        "green"
    }


def _judge_until_decided(deployer, endpoint: str, limit_s: float = 120.0) -> list:
    """What the canary sensor does, tick after tick: look, act, until the canary is promoted or rolled back."""
    verdicts = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        verdicts.append(judge_canary(deployer, endpoint, outcomes=lake_outcomes))
        if verdicts[-1].decision in ("promote", "roll_back"):
            return verdicts
        time.sleep(0.25)
    pytest.fail(f"no decision on {endpoint} within {limit_s:.0f} s: last look said {verdicts[-1].reason}")


def test_canary_is_promoted_on_live_traffic_then_a_bad_one_is_rolled_back(served, endpoint_name):  # noqa: F811
    _, artifact, _, sessions, _ = served
    pairs = list(sessions.drop_duplicates("session_id")[["session_id", "user_id"]].itertuples(index=False, name=None))
    deployer = LocalEndpointDeployer(profile="local")
    champion, champion_dir = _register(artifact.directory)
    first = deployer.deploy(endpoint_name, champion_dir, champion, CanaryPolicy())
    assert first.outcome == "deployed" and [v.weight for v in first.variants] == [1.0]
    url = deployer.url(endpoint_name)
    assert url and requests.get(f"{url}/ping", timeout=2).status_code == 200

    challenger, challenger_dir = _register(artifact.directory)  # the same model again: a healthy canary
    policy = CanaryPolicy(
        canary_share=0.3, baking_s=4, shift="linear", linear_step_share=0.35, linear_step_baking_s=1.5
    )
    with Storefront(url, pairs) as storefront:
        started = deployer.deploy(endpoint_name, challenger_dir, challenger, policy)
        assert started.outcome == "in_progress"  # the deploy returns at once: nothing baked yet
        verdicts = _judge_until_decided(deployer, endpoint_name)
        time.sleep(0.5)
    assert [v.decision for v in verdicts if v.decision != "continue"] == ["shift", "promote"], verdicts[-1].reason
    assert deployer.variants(endpoint_name) == [VariantSpec(challenger, challenger, 1.0)]
    promoted = verdicts[-1]
    assert promoted.numbers["canary_requests"] >= policy.min_requests
    assert promoted.numbers["canary_5xx"] == 0 and promoted.numbers["canary_p99_ms"] > 0
    # the same model on the same traffic: the score difference's confidence sequence covers 0
    assert promoted.numbers["score_difference"]["low"] <= 0 <= promoted.numbers["score_difference"]["high"]
    served_by = {a.variant for a in storefront.answers}
    assert served_by == {champion, challenger} and not any(
        a.fallback and "endpoint" in (a.reason or "") for a in storefront.answers
    )
    assert storefront.answers[-1].variant == challenger  # the last answers come from the promoted variant

    # Same trees, probabilities pushed up: the score-shift test must catch it and traffic must go back.
    bad, bad_dir = _register(artifact.directory, calibrator={"method": "sigmoid", "a": 1.0, "b": 3.0})
    with Storefront(url, pairs) as storefront:
        deployer.deploy(endpoint_name, bad_dir, bad, CanaryPolicy(canary_share=0.3, baking_s=3600))
        rolled = _judge_until_decided(deployer, endpoint_name)[-1]
        time.sleep(0.5)
    assert rolled.decision == "roll_back" and rolled.reason.startswith("score shift"), rolled.reason
    assert deployer.variants(endpoint_name) == [VariantSpec(challenger, challenger, 1.0)]
    assert storefront.answers[-1].variant == challenger and all(not a.fallback for a in storefront.answers)

    # A broken model: its calibrator's knots do not line up, so every request it answers fails with a 500.
    broken, broken_dir = _register(artifact.directory, calibrator={"method": "isotonic", "x": [0.0, 1.0], "y": [0.1]})
    with Storefront(url, pairs) as storefront:
        deployer.deploy(endpoint_name, broken_dir, broken, CanaryPolicy(canary_share=0.3, baking_s=3600))
        crashed = _judge_until_decided(deployer, endpoint_name)[-1]
        time.sleep(0.5)
    assert crashed.decision == "roll_back" and crashed.reason.startswith("error rate"), crashed.reason
    assert deployer.variants(endpoint_name) == [VariantSpec(challenger, challenger, 1.0)]
    assert storefront.answers[-1].variant == challenger and not storefront.answers[-1].fallback
    stages = [r.stage for r in deployer.history(endpoint_name)]
    assert stages == [
        "deploy",
        "start_canary",
        "shift",
        "promote",
        "start_canary",
        "roll_back",
        "start_canary",
        "roll_back",
    ]


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of our own, so that stopping it does not disturb the shared one."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run `make services` (it installs Redis)")
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, timeout=2, check=True)
            break
        except subprocess.CalledProcessError:
            time.sleep(0.05)
    yield port, process
    process.kill()
    process.wait(timeout=10)


@pytest.mark.redis
def test_endpoint_survives_redis_stopping_mid_run_and_says_why(served, endpoint_name, private_redis, monkeypatch):  # noqa: F811
    _, artifact, _, sessions, _ = served
    port, redis_process = private_redis
    redis_url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("REDIS_URL", redis_url)  # for the endpoint's server process, which reads its environment
    from feature_repo import FEAST_OBJECTS

    store = open_feature_store("redis", redis_url=redis_url)
    store.apply(FEAST_OBJECTS)
    start = sessions["event_timestamp"].min() - np.timedelta64(40, "D")
    store.materialize(
        start_date=start.to_pydatetime(),
        end_date=(sessions["event_timestamp"].max() + np.timedelta64(2, "D")).to_pydatetime(),
    )

    version, version_dir = _register(artifact.directory)
    files = EndpointFiles(endpoint_name)
    files.write_variants([VariantSpec("champion", version, 1.0)])
    url = start_server(files, "redis")
    client = PropensityClient.local(url, timeout_s=3.0)
    user, session = sessions.iloc[-1][["user_id", "session_id"]]
    before = client.score(session, user)
    assert before.fallback is False, before.reason

    redis_process.kill()
    redis_process.wait(timeout=10)
    started = time.monotonic()
    during = client.score(session, user)
    assert time.monotonic() - started < 3.0  # bounded by the reader's timeouts, never a hang
    assert during.fallback is True and "online store unavailable" in during.reason
    assert 0.0 < during.propensity < 1.0 and during.model_version == version  # scored by the model, not the client
    assert requests.get(f"{url}/ping", timeout=2).status_code == 200
    assert running_url(files) == url
    assert 'propensity_fallbacks_total{variant="champion"} 1.0' in requests.get(f"{url}/metrics", timeout=2).text

"""The canary's stages on the local runtime and the judge's sequential tests, on an inference log written as the
endpoint writes it (no server: the log is the interface; tests/integration/test_endpoint_runtime.py has the server)."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from bench.monitoring_canary import false_rollback_rate, simulate_canary
from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.artifact import ModelRegistry
from serving.control.canary import LogTail, variant_traffic
from serving.control.deployment import CanaryPolicy
from serving.control.endpoint import LocalEndpointDeployer
from serving.control.judge import ArmStats, judge_canary, sequential_alarms
from serving.endpoint_state import EndpointFiles, VariantSpec
from tests.unit.test_model_pieces import _artifact

ENDPOINT = "unit"


def rows(variant: str, scores, latency_ms: float = 1.0, status: int = 200, start: int = 0) -> list[dict]:
    out = []
    for i, p in enumerate(scores):
        record = {
            "request_id": f"{variant}-{start + i}",
            "variant": variant,
            "status": status,
            "latency_ms": latency_ms,
        }
        if status == 200:
            record.update(propensity=float(p), session_id=f"s{variant}{start + i}")
        out.append(record)
    return out


class Storefront:
    """Requests split by the weights in the endpoint's state.json, answered into its inference log as the router
    answers them: the canary's answers come from `canary_score` (or fail with `canary_status`)."""

    def __init__(self, files: EndpointFiles, canary_score=None, canary_status: int = 200, seed: int = 2):
        self.files = files
        self.canary_score = canary_score
        self.canary_status = canary_status
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def send(self, requests: int, champion: str) -> None:
        variants = self.files.read_variants()
        weights = np.array([v.weight for v in variants])
        lines = []
        for i in self.rng.choice(len(variants), size=requests, p=weights / weights.sum()):
            name = variants[i].name
            canary = name != champion
            score = self.canary_score(self.rng) if canary and self.canary_score else self.rng.beta(0.9, 17.1)
            lines += rows(name, [score], status=self.canary_status if canary else 200, start=self.n)
            self.n += 1
        with open(self.files.inference_log, "a") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in lines)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.gamma(2.0, 2.0, size=(4000, len(MODEL_FEATURE_NAMES))), columns=list(MODEL_FEATURE_NAMES))
    y = (rng.random(4000) < expit(-2 + 0.3 * X["session_cart_adds"])).astype(int).to_numpy()
    return _artifact(tmp_path_factory.mktemp("model"), X, y)


@pytest.fixture
def registry(propensity_home, model_dir) -> ModelRegistry:
    return ModelRegistry()


def register(registry: ModelRegistry, model_dir) -> str:
    return registry.register(model_dir, promote=True, reason="test")


@pytest.fixture
def canary(registry, model_dir):
    """An endpoint serving a champion, with a second version started as a canary (no server: launch_server=False)."""

    def start(policy: CanaryPolicy):
        deployer = LocalEndpointDeployer(launch_server=False)
        champion, challenger = register(registry, model_dir), register(registry, model_dir)
        first = deployer.deploy(ENDPOINT, registry.root / champion, champion, policy)
        assert (first.outcome, first.stage) == ("deployed", "deploy")
        record = deployer.deploy(ENDPOINT, registry.root / challenger, challenger, policy)
        return deployer, champion, challenger, record

    return start


def test_variant_traffic_counts_requests_once_per_request_and_only_5xx_as_errors():
    batch = [
        {"request_id": "r1", "variant": "a", "status": 200, "latency_ms": 3.0, "propensity": 0.1, "session_id": f"s{i}"}
        for i in range(5)
    ]
    records = batch + rows("a", [0.2], status=500) + rows("a", [0.2], status=422, start=9) + rows("b", [0.3])
    traffic = variant_traffic(records, "a")
    assert traffic.requests == 3 and traffic.server_errors == 1 and len(traffic.scores) == 5
    assert traffic.p99_ms == 3.0 and traffic.error_rate == pytest.approx(1 / 3)


def test_log_tail_reads_only_complete_new_lines(tmp_path):
    path = tmp_path / "log"
    path.write_text('{"a": 1}\n')
    tail = LogTail(path)
    with open(path, "a") as handle:
        handle.write('{"a": 2}\n{"a": 3')  # the last line is still being written
    assert tail.poll() == [{"a": 2}]
    with open(path, "a") as handle:
        handle.write("}\n")
    assert tail.poll() == [{"a": 2}, {"a": 3}]


def test_canary_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="canary_share"):
        CanaryPolicy(canary_share=1.5)
    with pytest.raises(ValueError, match="shift"):
        CanaryPolicy(shift="sideways")
    with pytest.raises(ValueError, match="alpha"):
        CanaryPolicy(alpha=0.0)


def _arm(rng, n: int, errors: int = 0, shift: float = 0.0, noise: float = 0.0) -> ArmStats:
    p = rng.beta(0.9, 17.1, n)
    y = rng.random(n) < p
    served = np.clip(np.where(rng.random(n) < noise, rng.beta(0.9, 17.1, n), p) + shift, 1e-7, 1 - 1e-7)
    log_loss = -(y * np.log(served) + (~y) * np.log(1 - served))
    return ArmStats.of(n, errors, served, log_loss)


def test_each_sequential_test_fires_on_its_own_condition_and_not_otherwise():
    rng = np.random.default_rng(1)
    policy = CanaryPolicy()
    champion = _arm(rng, 20_000, errors=20)
    assert sequential_alarms(policy, _arm(rng, 2_000, errors=2), champion)[0] == []

    [alarm] = sequential_alarms(policy, _arm(rng, 2_000, errors=60), champion)[0]
    assert alarm.startswith("error rate")
    [alarm] = sequential_alarms(policy, _arm(rng, 2_000, errors=2, shift=0.05), _arm(rng, 20_000, errors=20))[0]
    assert alarm.startswith("score shift")
    # Scores within the band: a shift of 0.01 is no shift, however many rows show it.
    assert sequential_alarms(policy, _arm(rng, 50_000, shift=0.01), _arm(rng, 200_000))[0] == []
    # Same score distribution, half the scores uninformative: only the log-loss test can see it.
    alarms, numbers = sequential_alarms(policy, _arm(rng, 20_000, noise=0.5), _arm(rng, 60_000))
    assert [a.split(" ")[0] for a in alarms] == ["log-loss"], alarms
    assert numbers["log_loss_difference"]["low"] > 0 and numbers["rows_with_outcome"]["canary"] == 20_000
    # Too few rows to estimate a variance: no score or log-loss verdict at all.
    assert sequential_alarms(policy, _arm(rng, 20, shift=0.5), _arm(rng, 20))[0] == []
    assert sequential_alarms(policy, _arm(rng, 0), _arm(rng, 0))[1]["score_difference"]["low"] is None


def test_aa_canaries_are_rarely_rolled_back_however_often_the_judge_looks():
    """A/A canaries looked at every 50 canary requests up to 3,000 (60 looks), every tolerance at 0 so that only
    the confidence sequences' validity keeps quiet canaries in: at most alpha = 5 % may be rolled back."""
    strict = CanaryPolicy(error_rate_tolerance=0.0, score_tolerance=0.0, logloss_tolerance=0.0)
    rate, _ = false_rollback_rate(strict, canaries=150, canary_requests=3_000, seed=5)
    assert rate <= 0.05, rate
    # and the same machinery does roll back a canary that is really worse
    rng = np.random.default_rng(6)
    assert all(simulate_canary(rng, strict, "error_rate_1pct", 6_000)[0] for _ in range(10))


def test_a_quiet_canary_bakes_then_is_promoted(canary):
    deployer, champion, challenger, record = canary(CanaryPolicy(canary_share=0.2, baking_s=60, min_requests=50))
    assert (record.outcome, record.stage) == ("in_progress", "start_canary") and record.finished_at is None
    assert deployer.variants(ENDPOINT) == [
        VariantSpec(champion, champion, 0.8),
        VariantSpec(challenger, challenger, 0.2),
    ]
    state = deployer.canary(ENDPOINT)
    assert state.model_version == challenger and state.cursor["log_offset"] == 0
    files = EndpointFiles(ENDPOINT)
    Storefront(files).send(1_000, champion)

    baking = judge_canary(deployer, ENDPOINT, now=state.started_at + 30)
    assert baking.decision == "continue" and "30 of 60 s" in baking.reason
    assert deployer.canary(ENDPOINT) == state and len(deployer.history(ENDPOINT)) == 2  # a look records nothing

    promoted = judge_canary(deployer, ENDPOINT, now=state.started_at + 61)
    assert promoted.decision == "promote", promoted.reason
    assert deployer.variants(ENDPOINT) == [VariantSpec(challenger, challenger, 1.0)]
    assert promoted.record.stage == "promote" and promoted.record.observations["canary_requests"] > 150
    assert promoted.numbers["score_difference"]["low"] < 0 < promoted.numbers["score_difference"]["high"]
    assert judge_canary(deployer, ENDPOINT).decision == "none"
    stages = [(r.stage, r.outcome) for r in deployer.history(ENDPOINT)]
    assert stages == [("deploy", "deployed"), ("start_canary", "in_progress"), ("promote", "promoted")]


def test_thin_traffic_waits_and_says_so(canary):
    deployer, champion, _, _ = canary(CanaryPolicy(baking_s=0, min_requests=100))
    Storefront(EndpointFiles(ENDPOINT)).send(200, champion)  # about 20 canary requests
    verdict = judge_canary(deployer, ENDPOINT)
    assert verdict.decision == "continue" and "too little traffic" in verdict.reason
    assert verdict.numbers["canary_requests"] < 100


def test_a_failing_canary_is_rolled_back_without_waiting_out_the_bake(canary):
    deployer, champion, challenger, _ = canary(CanaryPolicy(canary_share=0.3, baking_s=3600))
    Storefront(EndpointFiles(ENDPOINT), canary_status=500).send(300, champion)
    verdict = judge_canary(deployer, ENDPOINT)
    assert verdict.decision == "roll_back" and verdict.reason.startswith("error rate"), verdict.reason
    assert deployer.variants(ENDPOINT) == [VariantSpec(champion, champion, 1.0)]
    assert verdict.record.outcome == "rolled_back" and verdict.record.model_version == challenger
    assert verdict.record.observations["canary_5xx"] == verdict.numbers["canary_requests"] > 0


def test_a_shifted_canary_is_rolled_back(canary):
    deployer, champion, _, _ = canary(CanaryPolicy(canary_share=0.3, baking_s=3600))
    Storefront(EndpointFiles(ENDPOINT), canary_score=lambda rng: min(rng.beta(0.9, 17.1) + 0.1, 1.0)).send(
        1_000, champion
    )
    verdict = judge_canary(deployer, ENDPOINT)
    assert verdict.decision == "roll_back" and verdict.reason.startswith("score shift"), verdict.reason


def test_linear_shift_steps_then_promotes(canary):
    policy = CanaryPolicy(canary_share=0.2, baking_s=10, shift="linear", linear_step_share=0.4, linear_step_baking_s=5)
    deployer, champion, challenger, _ = canary(policy)
    storefront = Storefront(EndpointFiles(ENDPOINT))
    start = deployer.canary(ENDPOINT).started_at
    storefront.send(800, champion)
    shifted = judge_canary(deployer, ENDPOINT, now=start + 11)
    assert shifted.decision == "shift" and shifted.record.stage == "shift"
    assert [v.weight for v in deployer.variants(ENDPOINT)] == [0.4, 0.6]
    assert judge_canary(deployer, ENDPOINT, now=start + 13).decision == "continue"  # the new step bakes 5 s
    storefront.send(400, champion)
    promoted = judge_canary(deployer, ENDPOINT, now=start + 17)
    assert promoted.decision == "promote", promoted.reason
    assert deployer.variants(ENDPOINT) == [VariantSpec(challenger, challenger, 1.0)]
    assert [r.stage for r in deployer.history(ENDPOINT)] == ["deploy", "start_canary", "shift", "promote"]


def test_a_new_deployment_supersedes_a_running_canary(canary, registry, model_dir):
    deployer, champion, challenger, started = canary(CanaryPolicy())
    again = deployer.deploy(ENDPOINT, registry.root / challenger, challenger, CanaryPolicy())
    assert again == started  # the same canary carries on
    newer = register(registry, model_dir)
    record = deployer.deploy(ENDPOINT, registry.root / newer, newer, CanaryPolicy())
    assert record.stage == "start_canary" and deployer.canary(ENDPOINT).model_version == newer
    assert deployer.canary(ENDPOINT).champion_version == champion
    superseded = deployer.history(ENDPOINT)[-2]
    assert (superseded.stage, superseded.model_version) == ("roll_back", challenger)
    assert superseded.observations == {"superseded_by": newer}
    assert deployer.endpoints() == [ENDPOINT]

"""Canary alarms and the canary state machine on a synthetic inference log (no server: the log is the interface)."""

import json

import numpy as np
import pytest

from serving.control.canary import CanaryRun, LogTail, check_alarms, observe, population_stability_index
from serving.control.deployment import CanaryPolicy, read_history
from serving.endpoint_state import EndpointFiles, VariantSpec


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
            record.update(propensity=float(p), session_id=f"s{start + i}")
        out.append(record)
    return out


def test_observe_counts_requests_once_per_request_and_only_5xx_as_errors():
    batch = [
        {"request_id": "r1", "variant": "a", "status": 200, "latency_ms": 3.0, "propensity": 0.1, "session_id": f"s{i}"}
        for i in range(5)
    ]
    records = batch + rows("a", [0.2], status=500) + rows("a", [0.2], status=422, start=9) + rows("b", [0.3])
    obs = observe(records, "a")
    assert obs.requests == 3 and obs.server_errors == 1 and len(obs.scores) == 5
    assert obs.latencies_ms == [3.0] and obs.error_rate == pytest.approx(1 / 3)


def test_population_stability_index_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    champion = rng.beta(1, 15, 2000)
    assert population_stability_index(champion, rng.beta(1, 15, 2000)) < 0.05
    assert population_stability_index(champion, np.minimum(champion * 4, 1.0)) > 0.5


def test_each_alarm_fires_on_its_own_condition_and_not_otherwise():
    policy = CanaryPolicy(
        min_requests=100, max_p99_latency_ms=10, max_error_rate=0.05, max_score_psi=0.25, max_calibration_gap=0.02
    )
    rng = np.random.default_rng(1)
    base = rng.beta(1, 15, 400)
    champion = observe(rows("champ", base), "champ")
    healthy = observe(rows("can", rng.beta(1, 15, 150)), "can")
    outcomes_like_scores = lambda ids: {s: bool(rng.random() < 0.06) for s in ids}  # noqa: E731
    assert check_alarms(policy, healthy, champion, outcomes_like_scores)[0] == []

    slow = observe(rows("can", rng.beta(1, 15, 150), latency_ms=25.0), "can")
    assert [a for a in check_alarms(policy, slow, champion, None)[0] if a.startswith("p99")]

    failing = observe(rows("can", [0.1] * 3, status=503), "can")  # three 5xx are enough, whatever the traffic
    assert check_alarms(policy, failing, champion, None)[0][0].startswith("error rate")

    shifted = observe(rows("can", np.minimum(rng.beta(1, 15, 150) + 0.3, 1.0)), "can")
    alarms, measured = check_alarms(policy, shifted, champion, lambda ids: {s: False for s in ids})
    assert any("PSI" in a for a in alarms) and any(a.startswith("calibration") for a in alarms)
    assert measured["observed_rate"] == 0.0

    few = observe(rows("can", [0.9] * 50), "can")  # too few rows to judge distribution or calibration
    assert check_alarms(policy, few, champion, lambda ids: {s: False for s in ids})[0] == []


def test_canary_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="canary_share"):
        CanaryPolicy(canary_share=1.5)
    with pytest.raises(ValueError, match="shift"):
        CanaryPolicy(shift="sideways")


class TrafficOnSleep:
    """Stands in for the storefront: every time the canary run waits, the endpoint answers a burst of requests,
    split by the weights the run has written, and the answers land in the inference log."""

    def __init__(self, files: EndpointFiles, canary_scores, canary_status: int = 200):
        self.files = files
        self.canary_scores = canary_scores
        self.canary_status = canary_status
        self.now = 0.0
        self.n = 0
        self.rng = np.random.default_rng(2)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        weights = {v.name: v.weight for v in self.files.read_variants()}
        lines = []
        for _ in range(100):
            name = self.rng.choice(list(weights), p=np.array(list(weights.values())) / sum(weights.values()))
            canary = name != "v-old"
            status = self.canary_status if canary else 200
            score = self.canary_scores(self.rng) if canary else self.rng.beta(1, 15)
            lines += rows(name, [score], status=status, start=self.n)
            self.n += 1
        with open(self.files.inference_log, "a") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in lines)


@pytest.fixture
def endpoint(tmp_path) -> EndpointFiles:
    files = EndpointFiles("unit", root=tmp_path)
    files.write_variants([VariantSpec("v-old", "v-old", 1.0)])
    return files


def test_healthy_canary_is_promoted_after_linear_steps(endpoint):
    traffic = TrafficOnSleep(endpoint, lambda rng: rng.beta(1, 15))
    policy = CanaryPolicy(
        canary_share=0.2, baking_s=5, shift="linear", linear_step_share=0.4, linear_step_baking_s=3, min_requests=100
    )
    record = CanaryRun(endpoint, policy, sleep=traffic.sleep, clock=traffic.clock).deploy("v-new")
    assert record.outcome == "promoted", record.reason
    assert endpoint.read_variants() == [VariantSpec("v-new", "v-new", 1.0)]
    assert list(record.observations) == ["20%", "60%"]  # then 100 %: nothing left to compare against
    assert [r.outcome for r in read_history(endpoint.history)] == ["in_progress", "promoted"]


def test_failing_canary_is_rolled_back_with_the_reason(endpoint):
    traffic = TrafficOnSleep(endpoint, lambda rng: 0.5, canary_status=500)
    record = CanaryRun(endpoint, CanaryPolicy(baking_s=30), sleep=traffic.sleep, clock=traffic.clock).deploy("v-new")
    assert record.outcome == "rolled_back" and record.reason.startswith("error rate")
    assert traffic.now < 30  # it did not wait out the bake
    assert endpoint.read_variants() == [VariantSpec("v-old", "v-old", 1.0)]
    history = read_history(endpoint.history)
    assert history[-1].outcome == "rolled_back" and history[-1].variants == [VariantSpec("v-old", "v-old", 1.0)]


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

"""The canary test (issue 11, benchmark 10(c)): simulated canary traffic through the judge's statistical core.

No server: each canary is a stream of requests split 10 % canary / 90 % champion, looked at every 50 canary
requests by `serving.control.judge.sequential_alarms` (the same function the canary sensor applies to live traffic,
with the default `CanaryPolicy`). Scores are Beta(0.9, 17.1) draws (mean 0.05, sd 0.05, about the storefront's
purchase propensity), outcomes Bernoulli(p), and a 0.1 % base rate of 5xx answers on both arms. Every scored row's
outcome is known at once (live, outcomes arrive as sessions close, so the log-loss test is slower than here).

- A/A: the canary is the champion; over a long bake every rollback is a false one (target: at most 5 %), with the
  default policy and with every tolerance at 0 (then only the confidence sequences' own validity holds the rate).
- Bad canaries, canary requests until the first rollback (median and p90; a canary not rolled back within the cap
  counts as undetected):
  - `logloss_plus_10pct`: a share w of the canary's scores is replaced by an independent draw from the same Beta,
    so its score distribution is the champion's but its log-loss is 10 % higher (w solved for on 400k draws);
  - `error_rate_1pct`: one more percentage point of 5xx answers;
  - `mean_score_plus_0.05`: every canary score +0.05 (the outcomes do not change).

Run: `python -m bench.monitoring_canary [--quick]` prints the section as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, replace

import numpy as np

from propensity.models.metrics import PROBABILITY_FLOOR, row_log_loss
from propensity.monitoring.sequential import Summary
from serving.control.deployment import CanaryPolicy
from serving.control.judge import MIN_ROWS, ArmStats, sequential_alarms

SCORE_BETA = (0.9, 17.1)  # mean 0.05, sd 0.05
BASE_ERROR_RATE = 0.001
CANARY_SHARE = 0.1
LOOK_EVERY = 50  # canary requests between looks
CASES = ("logloss_plus_10pct", "error_rate_1pct", "mean_score_plus_0.05")
TARGET_AA_FALSE_ROLLBACK = 0.05


def uninformative_share(rng: np.random.Generator, increase: float = 0.10, draws: int = 400_000) -> float:
    """The share of canary scores to replace by independent draws so that its expected log-loss is `increase` above
    the champion's (linear in the share: (1 - w) H + w CE)."""
    p = rng.beta(*SCORE_BETA, draws)
    y = (rng.random(draws) < p).astype(float)
    own = row_log_loss(y, p).mean()
    independent = row_log_loss(y, rng.beta(*SCORE_BETA, draws)).mean()
    return float(increase * own / (independent - own))


def _arm(rng: np.random.Generator, n: int, case: str, w: float) -> dict:
    """One arm's n requests: cumulative 5xx count, and cumulative sums of scores and per-row log-losses."""
    p = rng.beta(*SCORE_BETA, n)
    y = (rng.random(n) < p).astype(float)
    served = p
    error_rate = BASE_ERROR_RATE
    if case == "logloss_plus_10pct":
        served = np.where(rng.random(n) < w, rng.beta(*SCORE_BETA, n), p)
    elif case == "error_rate_1pct":
        error_rate += 0.01
    elif case == "mean_score_plus_0.05":
        served = np.minimum(p + 0.05, 1 - PROBABILITY_FLOOR)
    failed = rng.random(n) < error_rate
    scored = ~failed  # a 5xx answer carries no score
    score = np.where(scored, served, 0.0)
    loss = np.where(scored, row_log_loss(y, served), 0.0)
    return {
        "errors": np.cumsum(failed),
        "rows": np.cumsum(scored),
        "score": np.cumsum(score),
        "score2": np.cumsum(score * score),
        "loss": np.cumsum(loss),
        "loss2": np.cumsum(loss * loss),
    }


def _summary(n: int, total: float, squares: float) -> Summary:
    if n == 0:
        return Summary(0, 0.0, 0.0)
    mean = total / n
    variance = max(0.0, (squares - n * mean * mean) / (n - 1)) if n > 1 else 0.0
    return Summary(n, mean, variance)


def _stats(arm: dict, requests: int) -> ArmStats:
    i = requests - 1
    rows = int(arm["rows"][i])
    return ArmStats(
        Summary.of_proportion(int(arm["errors"][i]), requests),
        _summary(rows, arm["score"][i], arm["score2"][i]),
        _summary(rows, arm["loss"][i], arm["loss2"][i]),
    )


def simulate_canary(
    rng: np.random.Generator, policy: CanaryPolicy, case: str, canary_requests: int, w: float = 0.0
) -> tuple[int | None, list[str]]:
    """One canary looked at every LOOK_EVERY canary requests: the canary requests at its first rollback and the
    alarms then, or (None, []) if it stayed quiet for `canary_requests`."""
    champion_requests = round(canary_requests * (1 - CANARY_SHARE) / CANARY_SHARE)
    canary = _arm(rng, canary_requests, case, w)
    champion = _arm(rng, champion_requests, "aa", w)
    for n in range(LOOK_EVERY, canary_requests + 1, LOOK_EVERY):
        m = round(n * (1 - CANARY_SHARE) / CANARY_SHARE)
        alarms, _ = sequential_alarms(policy, _stats(canary, n), _stats(champion, m))
        if alarms:
            return n, alarms
    return None, []


def _test_of(alarm: str) -> str:
    return {"error": "error_rate", "score": "score_shift", "log-loss": "log_loss"}[alarm.split(" ")[0]]


def false_rollback_rate(
    policy: CanaryPolicy, canaries: int, canary_requests: int, seed: int = 11
) -> tuple[float, Counter]:
    """The share of A/A canaries rolled back within `canary_requests`, and by which tests."""
    rng = np.random.default_rng(seed)
    fired: Counter = Counter()
    rolled = 0
    for _ in range(canaries):
        at, alarms = simulate_canary(rng, policy, "aa", canary_requests)
        if at is not None:
            rolled += 1
            fired.update(_test_of(a) for a in alarms)
    return rolled / canaries, fired


# Canaries per bad case and the canary requests each may take before it counts as undetected: log-loss on a 5 %
# base rate is a noisy stream (per-row sd ~0.5 against a 0.017 difference), so its case needs a far longer cap.
BAD_RUNS = {
    "logloss_plus_10pct": {"quick": (40, 40_000), "full": (200, 100_000)},
    "error_rate_1pct": {"quick": (100, 10_000), "full": (400, 20_000)},
    "mean_score_plus_0.05": {"quick": (100, 10_000), "full": (400, 20_000)},
}


def _quantile(needed: np.ndarray, q: float) -> int | None:
    value = np.quantile(needed, q, method="inverted_cdf")  # an order statistic: undetected (inf) stays inf
    return int(value) if np.isfinite(value) else None


def canary_section(quick: bool) -> dict:
    started = time.perf_counter()
    policy = CanaryPolicy()
    no_tolerance = replace(policy, error_rate_tolerance=0.0, score_tolerance=0.0, logloss_tolerance=0.0)
    rng = np.random.default_rng(20261127)
    aa_canaries, aa_requests = (200, 5_000) if quick else (1_000, 20_000)
    w = uninformative_share(rng)
    aa_rate, aa_fired = false_rollback_rate(policy, aa_canaries, aa_requests)
    strict_rate, strict_fired = false_rollback_rate(no_tolerance, aa_canaries, aa_requests, seed=12)

    median, p90, detected, fired_by, runs = {}, {}, {}, {}, {}
    for case in CASES:
        canaries, cap = BAD_RUNS[case]["quick" if quick else "full"]
        needed, fired = [], Counter()
        for _ in range(canaries):
            at, alarms = simulate_canary(rng, policy, case, cap, w)
            needed.append(np.inf if at is None else at)
            fired.update(_test_of(a) for a in alarms)
        needed = np.array(needed, dtype=float)
        median[case], p90[case] = _quantile(needed, 0.5), _quantile(needed, 0.9)
        detected[case] = round(float(np.isfinite(needed).mean()), 4)
        fired_by[case] = dict(fired)
        runs[case] = {"canaries": canaries, "canary_request_cap": cap}

    def se(rate: float) -> float:
        return round(float(np.sqrt(max(rate * (1 - rate), 1e-12) / aa_canaries)), 4)

    return {
        "aa_false_rollback_rate": round(aa_rate, 4),
        "aa_false_rollback_rate_se": se(aa_rate),
        "aa_rolled_back_by": dict(aa_fired),
        "aa_false_rollback_rate_no_tolerance": round(strict_rate, 4),
        "aa_false_rollback_rate_no_tolerance_se": se(strict_rate),
        "aa_no_tolerance_rolled_back_by": dict(strict_fired),
        "aa_canaries": aa_canaries,
        "aa_canary_requests": aa_requests,
        "requests_to_rollback": median,
        "requests_to_rollback_p90": p90,
        "detected_within_cap": detected,
        "rolled_back_by": fired_by,
        "bad_runs": runs,
        "canaries": 2 * aa_canaries + sum(r["canaries"] for r in runs.values()),
        "look_every_canary_requests": LOOK_EVERY,
        "canary_share": CANARY_SHARE,
        "min_rows_per_arm": MIN_ROWS,
        "uninformative_share_for_logloss_plus_10pct": round(w, 4),
        "score_beta": list(SCORE_BETA),
        "base_error_rate": BASE_ERROR_RATE,
        "policy": asdict(policy),
        "outcomes": "known for every scored row at once (live, they arrive as sessions close)",
        "target": {
            "aa_false_rollback_rate_max": TARGET_AA_FALSE_ROLLBACK,
            "pass": aa_rate <= TARGET_AA_FALSE_ROLLBACK and strict_rate <= TARGET_AA_FALSE_ROLLBACK,
        },
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.monitoring_canary", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter canaries")
    args = parser.parse_args(argv)
    print(json.dumps(canary_section(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

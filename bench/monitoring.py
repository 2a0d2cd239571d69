"""Monitoring: the drift monitor's false alarms, power, delay and cost, and the canary test's false rollbacks and
speed, written to var/bench/monitoring.json.

    python -m bench.monitoring [--quick]

- drift (`bench.monitoring_drift`): A/A windows (no drift) at 1k, 10k and 100k rows, the alarm rate against the
  1 % target; injected shifts (0.1, 0.2, 0.5 SD in the most important numeric feature, an hour-mix change, a
  different user mix) with power and delay per window size; the 1M-row report's time and peak RSS.
- canary (`bench.monitoring_canary`): simulated A/A canaries (the false-rollback rate against 5 %), and the canary
  requests needed to roll back +10 % log-loss, 1 % errors and a +0.05 mean score shift.
The baseline is in the same run: every rate is against its own target, measured on the same reference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.common import parse_forwarded_args, publish, run_meta
from bench.monitoring_canary import canary_section
from bench.monitoring_drift import drift_section

NAME = "monitoring"
TARGETS = {
    "aa_false_alarm_rate_max": 0.01,
    "power_mean_0.2sd_at_10k_min": 0.95,
    "aa_false_rollback_rate_max": 0.05,
    "report_1m_rows_s_max": 10.0,
}


def budgets(drift: dict, canary: dict) -> dict:
    aa = drift["aa_false_alarm_rate"]
    return {
        "drift_false_alarms_at_most_1pct_at_every_size": {
            "pass": all(rate <= TARGETS["aa_false_alarm_rate_max"] for rate in aa.values()),
            "rates": aa,
        },
        "drift_power_0.2sd_at_10k_at_least_0.95": {
            "pass": drift["power"]["mean_0.2sd"]["10000"] >= TARGETS["power_mean_0.2sd_at_10k_min"],
            "power": drift["power"]["mean_0.2sd"]["10000"],
        },
        "canary_aa_false_rollbacks_at_most_5pct": {
            "pass": canary["aa_false_rollback_rate"] <= TARGETS["aa_false_rollback_rate_max"],
            "rate": canary["aa_false_rollback_rate"],
        },
        "drift_report_1m_rows_under_10s": {
            "pass": drift["report_1m_rows_s"] < TARGETS["report_1m_rows_s_max"],
            "seconds": drift["report_1m_rows_s"],
        },
    }


def run(args: argparse.Namespace) -> dict:
    meta = run_meta(NAME, args.quick)
    started = time.perf_counter()
    drift = drift_section(args.quick)
    canary = canary_section(args.quick)
    meta.update(
        wall_s=round(time.perf_counter() - started, 1),
        load_average_at_end=[round(v, 2) for v in os.getloadavg()],
        budgets=budgets(drift, canary),
    )
    return {"meta": meta, "drift": drift, "canary": canary}


def print_summary(result: dict) -> None:
    drift, canary = result["drift"], result["canary"]
    print(f"drift A/A false-alarm rate by window rows: {drift['aa_false_alarm_rate']}")
    for shift, power in drift["power"].items():
        print(f"drift power {shift}: {power}")
    print(f"drift report on 1M rows: {drift['report_1m_rows_s']} s, peak RSS {drift['report_peak_rss_mb']} MB")
    print(f"canary A/A false-rollback rate: {canary['aa_false_rollback_rate']}")
    print(f"canary requests to roll back (median): {canary['requests_to_rollback']}")
    for name, verdict in result["meta"]["budgets"].items():
        print(f"budget {name}: {'yes' if verdict['pass'] else 'NO'}")
    print(f"whole run {result['meta']['wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows and canaries: checks the plumbing")
    args = parse_forwarded_args(parser, NAME, argv)
    return publish(NAME, run(args), print_summary)


if __name__ == "__main__":
    sys.exit(main())

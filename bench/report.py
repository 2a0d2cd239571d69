"""Render the benchmark JSON under var/bench/ as the README's tables, so the figures there are written by code.

`python -m bench.report` rewrites each README block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
from `var/bench/NAME.json` (blocks whose JSON is missing are left as they are).
"""

from __future__ import annotations

import json
import re
import sys

from bench.common import result_path
from propensity.paths import LOOP_TIMELINE, PROJECT_ROOT
from propensity.uplift.ab import format_figure

README = PROJECT_ROOT / "README.md"
STAGES = ("raw_events", "sessions", "user_daily_aggregates", "session_prefix_features")


def _events(key: str) -> str:
    n = int(key)
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n / 1e3:.0f}k"


def batch_features(data: dict) -> str:
    sizes = list(data["stages"][STAGES[0]].keys())
    header = "| stage | " + " | ".join(f"{_events(s)} events: events/s, peak RSS" for s in sizes) + " |"
    lines = [header, "|---|" + "---|" * len(sizes)]
    for stage in STAGES:
        cells = [
            f"{data['stages'][stage][s]['events_per_s']:,.0f}/s, {data['stages'][stage][s]['peak_rss_mb']:,.0f} MB"
            for s in sizes
        ]
        engine = "pandas contract gate" if stage == "raw_events" else "Spark"
        lines.append(f"| {stage} ({engine}) | " + " | ".join(cells) + " |")
    baseline = data["pandas_baseline"]["sessions"]
    cells = [
        f"{baseline[s]['events_per_s']:,.0f}/s, {baseline[s]['peak_rss_mb']:,.0f} MB" for s in sizes if s in baseline
    ]
    lines.append("| sessions, plain pandas baseline | " + " | ".join(cells) + " |")
    ratios = [
        baseline[s]["events_per_s"] / data["stages"]["sessions"][s]["events_per_s"] for s in sizes if s in baseline
    ]
    meta = data.get("meta", {})
    lines += [
        "",
        f"Plain pandas sessionisation is {', '.join(f'{r:.1f}x' for r in ratios)} the Spark stage's throughput at "
        f"these sizes on {meta.get('cores', 2)} cores: Spark's place is the cluster (`SPARK_MASTER`), not one small "
        f"machine. Peak RSS of Spark stages includes the JVM (driver memory {meta.get('driver_memory', '?')}). "
        f"Generated {meta.get('generated_at', '?')} by `{meta.get('command', 'make bench')}`.",
    ]
    return "\n".join(lines)


def model_quality(data: dict) -> str:
    columns = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "train_s", "peak_rss_mb")
    lines = [
        "| dataset | model | " + " | ".join(columns) + " | ECE vs truth |",
        "|---|---|" + "---|" * (len(columns) + 1),
    ]
    for dataset in ("uci", "uci_no_pagevalues", "taobao", "simulator"):
        if dataset not in data:
            continue
        for model in ("baseline", "lightgbm", "calibrated"):
            m = data[dataset][model]
            cells = []
            for c in columns:
                value = m.get(c)
                std = m.get(f"{c}_std")
                if value is None:
                    cells.append("")
                elif c == "peak_rss_mb":
                    cells.append(f"{value:,.0f}")
                elif c == "train_s":
                    cells.append(f"{value:.2f}")
                else:
                    cells.append(f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
            truth = m.get("ece_vs_truth")
            lines.append(
                f"| {dataset} | {model} | " + " | ".join(cells) + f" | {'' if truth is None else f'{truth:.4f}'} |"
            )
    lines.append("")
    for dataset in ("taobao", "simulator"):
        calibrated = data.get(dataset, {}).get("calibrated", {})
        if "log_loss_minus_baseline_ci95" in calibrated:
            low, high = calibrated["log_loss_minus_baseline_ci95"]
            verdict = (
                "calibrated LightGBM is better" if high < 0 else "worse" if low > 0 else "no detectable difference"
            )
            lines.append(
                f"- {dataset}: calibrated minus baseline log-loss {calibrated['log_loss_minus_baseline']:+.5f}, "
                f"95 % bootstrap interval over test sessions [{low:+.5f}, {high:+.5f}]: {verdict}."
            )
    meta = data.get("meta", {})
    lines += ["", f"Generated {meta.get('generated_at', '?')} by `{meta.get('command', 'make bench')}`."]
    return "\n".join(lines)


def serving_latency(data: dict) -> str:
    stores = [s for s in ("redis", "sqlite") if s in data.get("endpoint", {}) or s in data.get("inprocess", {})]
    names = {"redis": "Redis", "sqlite": "SQLite"}

    def http(entry: dict | None) -> str:
        if not entry:
            return ""
        return f"{entry['p50_ms']:.2f} / {entry['p95_ms']:.2f} / {entry['p99_ms']:.2f} ms, {entry['rps']:,.0f} req/s"

    def local(entry: dict | None) -> str:
        return "" if not entry else f"{entry['p50_ms']:.3f} / {entry['p95_ms']:.3f} / {entry['p99_ms']:.3f} ms"

    lines = [
        "| path (p50 / p95 / p99) | " + " | ".join(names[s] for s in stores) + " |",
        "|---|" + "---|" * len(stores),
    ]
    for kind, label in (("endpoint", "our endpoint (`serve`)"), ("feast_serve", "`feast serve` (features only)")):
        for c in ("c1", "c8"):
            cells = [http(data.get(kind, {}).get(s, {}).get(c)) for s in stores]
            lines.append(f"| {label}, concurrency {c[1:]} | " + " | ".join(cells) + " |")
        if kind == "endpoint":
            for n in (1, 10):
                cells = [http(data.get(kind, {}).get(s, {}).get(f"c1_events{n}")) for s in stores]
                if any(cells):
                    lines.append(
                        f"| {label}, concurrency 1, {n} request-time event{'s' * (n > 1)} | " + " | ".join(cells) + " |"
                    )
            cells = [
                f"{data['endpoint'][s]['batch100_rows_per_s']:,.0f} rows/s" if s in data["endpoint"] else ""
                for s in stores
            ]
            lines.append(f"| {label}, batches of 100 rows | " + " | ".join(cells) + " |")
    for path, label in (("naive", "in-process Feast SDK + LightGBM `predict`"), ("ours", "in-process `Scorer.score`")):
        cells = [local(data.get("inprocess", {}).get(s, {}).get(path)) for s in stores]
        lines.append(f"| {label}, one row | " + " | ".join(cells) + " |")
    meta = data.get("meta", {})
    predictor = data.get("predictor")
    lines.append("")
    if predictor:
        lines.append(
            f"Model only, one row: LightGBM `predict` {predictor['lightgbm_us']:.1f} µs, generated trees "
            f"{predictor['ours_us']:.1f} µs ({predictor['speedup']:.1f}x), largest |difference| "
            f"{predictor['max_abs_diff']:.1e}."
        )
    budgets = meta.get("budgets", {})
    if budgets:
        verdicts = ", ".join(
            f"{name.replace('_', ' ')} {'yes' if v['pass'] else '**no**'}" for name, v in budgets.items()
        )
        lines.append(f"Budgets: {verdicts}.")
    load = meta.get("load_average_at_start")
    foreign = meta.get("details", {}).get("endpoint.redis", {}).get("c1", {}).get("foreign_cpu_pct")
    counts = meta.get("counts", {})
    lines.append(
        f"Same {meta.get('entities', '?'):,} sampled sessions in both stores; {counts.get('c1', '?'):,} single-row "
        f"requests at concurrency 1 and {counts.get('c8', '?'):,} at 8, sent by a keep-alive `http.client` load "
        f"generator on the same 2 cores as the server. Load average at start {load[0] if load else '?'}"
        + (
            f"; other processes used {foreign:.0f} % of the CPU during the Redis endpoint run"
            if foreign is not None
            else ""
        )
        + f". Generated {meta.get('generated_at', '?')} by `{meta.get('command', 'make bench')}`."
    )
    if meta.get("contended"):
        lines.append(
            f"Contended (another workload used > 10 % of the CPU, tails pessimistic): {', '.join(meta['contended'])}."
        )
    return "\n".join(lines)


def streaming_freshness(data: dict) -> str:
    sources = [s for s in ("kafka", "file") if s in data]
    names = {"kafka": "Kafka", "file": "file inbox"}
    meta = data.get("meta", {})
    details = meta.get("details", {})
    lines = [
        "| source | sustained (pre-loaded, to catch-up) | half rate | freshness p50 / p95 / p99 | batches at half rate "
        "| other CPU |",
        "|---|---|---|---|---|---|",
    ]
    for source in sources:
        r, d = data[source], details.get(source, {})
        t, f = d.get("throughput", {}), d.get("freshness", {})
        fresh = r["freshness_ms"]
        lines.append(
            f"| {names[source]} | {r['max_events_per_s']:,.0f} events/s ({t.get('events_folded', 0):,} events, "
            f"{t.get('batches', '?')} batch(es), {t.get('seconds_first_batch_start_to_catch_up', 0):.1f} s) "
            f"| {r['rate_events_per_s']:,.0f} events/s "
            f"| {fresh['p50']:,.0f} / {fresh['p95']:,.0f} / {fresh['p99']:,.0f} ms "
            f"| {f.get('batches', '?')}, mean {f.get('batch_messages', {}).get('mean', 0):,.0f} messages in "
            f"{f.get('mean_batch_s') or 0:.2f} s "
            f"| {t.get('foreign_cpu_pct', '?')} % / {f.get('foreign_cpu_pct', '?')} % |"
        )
    lines.append("")
    labels = {
        "spark_offsets_planning_commit": "Spark offsets/planning/commit",
        "spark_read_and_toPandas": "Spark read + toPandas",
        "parse_and_validate": "parse and validate (one pass)",
        "state_read": "state snapshot read",
        "state_write": "state snapshot write",
        "online_write": "online write (Redis)",
        "parquet_write": "archive parquet",
        "processor_other": "other processor work",
    }
    for source in sources:
        where = details.get(source, {}).get("freshness", {}).get("where_time_goes", {})
        parts = sorted(
            ((k, v["share_pct"]) for k, v in where.items() if isinstance(v, dict) and v.get("share_pct") is not None),
            key=lambda kv: -kv[1],
        )
        if parts:
            lines.append(
                f"- Where a half-rate batch's time goes ({names[source]}): "
                + ", ".join(f"{labels.get(k, k)} {p:.0f} %" for k, p in parts if p >= 1)
                + "."
            )
    for source in sources:
        f = details.get(source, {}).get("freshness", {})
        windows, scaling = f.get("freshness_ms_by_10s", []), f.get("scaling", {})
        if windows and scaling:
            lines.append(
                f"- {names[source][0].upper() + names[source][1:]} at half rate: freshness p50 per 10 s went "
                f"{windows[0]['p50']:,.0f} -> {windows[-1]['p50']:,.0f} ms; about "
                f"{scaling['fixed_s_per_batch_estimate']:.2f} s of each batch does not depend on its size; "
                f"{scaling['active_sessions_mean']:,.0f} active sessions on average (event time ran "
                f"{scaling['event_time_speedup']:,.0f}x the wall clock); state snapshots (per-batch deltas, a full one "
                f"every 50th batch) cost {scaling['state_snapshot_us_per_active_session']:.0f} µs per active session "
                "and batch."
            )
    kafka = data.get("kafka", {})
    if len(kafka.get("runs", [])) > 1:
        runs = kafka["runs"]
        lines.append(
            f"- Kafka, {len(runs)} consecutive runs (the table shows the one with the highest p95): sustained "
            + ", ".join(f"{r['max_events_per_s']:,.0f}" for r in runs)
            + " events/s; freshness p95 at half that rate "
            + ", ".join(f"{r['freshness_ms']['p95']:,.0f}" for r in runs)
            + " ms."
        )
    fixed = kafka.get("fixed_5000", {}).get("freshness_ms")
    if fixed:
        lines.append(
            f"- Kafka at a fixed 5,000 events/s: freshness p50 / p95 / p99 {fixed['p50']:,.0f} / {fixed['p95']:,.0f} / "
            f"{fixed['p99']:,.0f} ms."
        )
    startup = details.get("kafka", {}).get("startup")
    if startup:
        order = ("imports_done", "processor_ready", "spark_session", "query_started", "first_batch_started")
        last = startup["restarts"][-1]
        lines.append(
            f"- Restart to the first batch done (`python -O -m propensity.streaming.job`, {len(startup['restarts'])} "
            f"restarts over the run's state): median {startup['first_batch_done_s']['median']:.1f} s, max "
            f"{startup['first_batch_done_s']['max']:.1f} s; the last one's marks: "
            + ", ".join(f"{k.replace('_', ' ')} {last[k]:.1f} s" for k in order if k in last)
            + f", first batch done {last['first_batch_done']:.1f} s."
        )
    budgets = meta.get("budgets", {})
    if budgets:
        verdicts = ", ".join(
            f"{name.replace('_', ' ')} {'yes' if v['pass'] else '**no**'}" for name, v in budgets.items()
        )
        lines.append(f"- Budgets (2 cores): {verdicts}.")
    sizes = meta.get("sizes", {})
    load = meta.get("load_average_at_start")
    lines += [
        "",
        "The job as the platform runs it (`start_query`, back-to-back micro-batches, no per-trigger cap) on 2 cores "
        f"with Redis. Sustained: {sizes.get('preload', 0):,} simulator events pre-loaded, first batch start to "
        f"catch-up after a warm-up run. Freshness: half that rate for {sizes.get('duration_s', 0):.0f} s (after "
        f"{sizes.get('warmup_s', 0):.0f} s warm-up), from the send (Kafka `produce`, or the file's rename into the "
        "inbox) until the event's session row in Redis counts it, every 50th event, polled by a separate process. "
        "Other CPU: share of the machine used by other processes during the sustained / half-rate phases. Load average "
        f"at start {load[0] if load else '?'}. Generated {meta.get('generated_at', '?')} by "
        f"`{meta.get('command', 'make bench')}`.",
    ]
    if meta.get("contended"):
        lines.append(
            f"Contended (another workload used > 10 % of the CPU, figures pessimistic): {', '.join(meta['contended'])}."
        )
    return "\n".join(lines)


def serving_footprint(data: dict) -> str:
    arms = data["arms"]
    labels = {
        "before": f"before: `{data['meta'].get('before_revision')}`'s code, the full lock (the old Dockerfile's)",
        "platform": "the platform's environment (requirements.lock), whole checkout",
        "container": "the scoring container: requirements-serving.lock, the Dockerfile's code only",
    }
    rows = ["| environment | site-packages | packages | start to first /ping 200 (median, min-max) | RSS at ping |"]
    rows.append("|---|---|---|---|---|")
    for name in ("before", "platform", "container"):
        if name in arms:
            arm, t = arms[name], arms[name]["start_to_ping_s"]
            rows.append(
                f"| {labels[name]} | {arm['site_packages_mb']:,.0f} MB | {arm['packages']} | "
                f"{t['median']:.2f} s ({t['min']:.2f}-{t['max']:.2f}) | {arm['rss_mb_at_ping']:,.0f} MB |"
            )
    r, meta = data["ratios"], data["meta"]
    imports = data.get("container_import_s")
    if imports:
        rows.append("")
        rows.append(
            f"Most of the container's start-up is importing Feast: {imports['feast']:.2f} s alone in a fresh "
            f"interpreter of its environment (LightGBM {imports['lightgbm']:.2f} s)."
        )
    rows.append("")
    rows.append(
        f"{r['baseline'].capitalize()} / container: {r['site_packages']}x the installed size, {r['start_to_ping']}x "
        f"the start-up time; {meta['runs_per_arm']} cold starts per arm, alternating. Generated {meta['generated_at']} "
        f"by `{meta['command']}`."
    )
    return "\n".join(rows)


def monitoring(data: dict) -> str:
    drift, canary, meta = data["drift"], data["canary"], data["meta"]
    classifier_aa = drift["classifier"]["aa_false_alarm_rate"]
    sizes = list(drift["aa_false_alarm_rate"])
    rows = ["| drift, window rows | " + " | ".join(f"{int(n):,}" for n in sizes) + " |"]
    rows.append("|---|" + "---|" * len(sizes))
    rows.append(
        "| A/A false-alarm rate (target at most 0.01) | "
        + " | ".join(f"{drift['aa_false_alarm_rate'][n]:.3f}" for n in sizes)
        + " |"
    )
    for shift, power in drift["power"].items():
        rows.append(f"| power, {shift} | " + " | ".join(f"{power[n]:.3f}" for n in sizes) + " |")
    rows.append("")
    rows.append(
        f"Drift report over 1M rows x every model feature: {drift['report_1m_rows_s']:.2f} s cold "
        f"({drift['report_1m_rows_warm_s']:.2f} s warm), peak RSS {drift['report_peak_rss_mb']:,.0f} MB (target under "
        f"10 s). The classifier check (5k rows a side): A/A alarms "
        f"{classifier_aa['rate']:.3f} of {classifier_aa['windows']} windows."
    )
    rows.append("")
    rows.append("| canary | value |")
    rows.append("|---|---|")
    rows.append(f"| A/A false-rollback rate (target at most 0.05) | {canary['aa_false_rollback_rate']:.4f} |")
    for case, needed in canary["requests_to_rollback"].items():
        p90 = canary["requests_to_rollback_p90"][case]
        rows.append(f"| canary requests to roll back {case} (median, p90) | {needed:,.0f}, {p90:,.0f} |")
    verdicts = ", ".join(f"{name}: {'yes' if v['pass'] else 'NO'}" for name, v in meta["budgets"].items())
    rows.append("")
    rows.append(f"Targets: {verdicts}. Generated {meta['generated_at']} by `{meta['command']}`.")
    return "\n".join(rows)


def _ci(entry: dict, digits: int = 0) -> str:
    return format_figure(entry, digits)


def uplift(data: dict) -> str:
    store, ab, meta = data["store"], data["ab_test"], data["meta"]
    rows = [
        "| policy (simulated store, profit per 1,000 sessions) | treats | exact | IPS | SNIPS | DR |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in data["policies"].items():
        values = entry["off_policy"]
        if "dr" in values:
            estimates = " | ".join(_ci(values[e]) for e in ("ips", "snips", "dr"))
        else:  # refused (the log never explored where it acts), or a yardstick valued exactly only
            estimates = "refused: no support | | " if "refused" in values else "(exact only) | | "
        rows.append(f"| {name} | {entry['treated_share']:.2f} | {entry['exact_per_1000']:,.0f} | {estimates} |")
    ranking = ", ".join(f"{k} {v:.2f}" for k, v in data["rank_correlation_with_exact_incremental_profit"].items())
    exact = ab["exact_incremental_profit_per_1000"]
    rows += [
        "",
        f"{store['decision_points']:,} decision points ({store['users']:,} shoppers, {store['days']} days; learners on "
        f"{store['train']:,}, valued on {store['test']:,} of other shoppers); "
        f"{store['share_with_negative_tau_conversion']:.0%} of them are put off by the offer, "
        f"{store['share_with_positive_incremental_profit']:.0%} would repay it. Spearman of the learned uplift with "
        f"the exact incremental profit: {ranking}. Promotion of profit_dr over the current threshold: "
        f"{'promoted' if data['promotion']['promote'] else 'refused'} ({data['promotion']['reason']}).",
        "",
        f"A/B on a fresh store, profit_dr against a 50 % holdout ({ab['sessions']:,} sessions): relative conversion "
        f"lift {_ci(ab['relative_conversion_lift'], 3)}, AOV difference {_ci(ab['aov_difference'], 2)}, incremental "
        f"profit per 1,000 sessions {_ci(ab['incremental_profit_per_1000'])}; exact for the same policy "
        f"{exact['policy']:,.0f}, the oracle's ceiling {exact['oracle']:,.0f}, treat-all {exact['treat_all']:,.0f}.",
        "",
        "| Hillstrom, Womens vs No E-Mail | ATE | learner: normalised Qini mean (SD), splits above the random band | "
        "random band (95 %) | uplift@30 %: best learner mean |",
        "|---|---|---|---|---|",
    ]
    hillstrom = data["hillstrom"]
    for target, summary in hillstrom["targets"].items():
        learners = [k for k in summary if k not in ("ate", "control_mean", "random", "random_band_95")]
        qini = "; ".join(
            f"{k} {summary[k]['qini']['mean']:.4f} ({summary[k]['qini']['sd']:.4f}), "
            f"{summary[k]['splits_above_random_band']['qini']}/{hillstrom['splits']}"
            for k in learners
        )
        band = summary["random_band_95"]["qini"]
        best = max(learners, key=lambda k: summary[k]["uplift_at_30"]["mean"])
        rows.append(
            f"| {target} | {summary['ate']:.4f} | {qini} | [{band[0]:.4f}, {band[1]:.4f}] | "
            f"{best} {summary[best]['uplift_at_30']['mean']:.4f} |"
        )
    policies = hillstrom["policy_profit_ips_per_1000"]

    def mean_ci(name: str) -> str:
        lo, hi = policies[name]["ci_of_mean"]
        return f"{policies[name]['mean']:,.1f} [{lo:,.1f}, {hi:,.1f}]"

    simulator = data["simulator"]
    verdicts = ", ".join(f"{name}: {'yes' if v['pass'] else 'NO'}" for name, v in meta["budgets"].items())
    rows += [
        "",
        f"Hillstrom, IPS-estimated profit per 1,000 customers (spend as revenue, the simulator's terms; mean over the "
        f"splits [95 % interval of the mean]): profit_dr {mean_ci('profit_dr')}, treat-all {mean_ci('treat_all')}, "
        f"propensity threshold (top 30 %) {mean_ci('propensity_threshold')}; profit_dr minus treat-all "
        f"{mean_ci('profit_dr_minus_treat_all')}, minus the threshold "
        f"{mean_ci('profit_dr_minus_propensity_threshold')}.",
        "",
        f"Simulator headline (dr): Spearman {simulator['spearman_tau']:.2f}, regret "
        f"{simulator['policy_regret_share']:.0%} of the oracle's incremental profit, DR estimate of the deployed "
        f"policy over no offer "
        f"{simulator['dr_estimate']:,.0f} per 1,000 against the A/B's interval [{simulator['ab_value_ci'][0]:,.0f}, "
        f"{simulator['ab_value_ci'][1]:,.0f}]. Without the per-user offer trait (nothing in the log reveals it), "
        f"the exact effect itself ranks at Spearman {simulator['ceiling_without_user_trait']['spearman']:.2f} and "
        f"its policy leaves {simulator['ceiling_without_user_trait']['regret_share']:.0%} of the oracle's profit.",
        "",
        f"A decision on the request path: {data['decision_cost_us']['uplift']:.1f} µs with the uplift rule (the dr "
        f"model's compiled trees) against {data['decision_cost_us']['threshold']:.1f} µs with the threshold "
        f"(x{data['decision_cost_us']['ratio']:.0f}, same run).",
        "",
        f"Targets: {verdicts}. {hillstrom['splits']} stratified 30 % splits. Generated {meta['generated_at']} by "
        f"`{meta['command']}`.",
    ]
    return "\n".join(rows)


def loop(data: dict) -> str:
    """`make loop`'s timeline (var/demo/loop.json): what the daemon did after the shoppers changed."""
    start = min(e["at"] for e in data["timeline"])
    rows = ["| t (s) | event | detail |", "|---|---|---|"]
    for event in data["timeline"]:
        if event["event"] == "day_exported":
            detail = f"day {event['day']} exported"
        else:
            keys = (
                "check",
                "description",
                "status",
                "cause",
                "model_version",
                "outcome",
                "reason",
                "day",
                "intent_logit",
            )
            detail = "; ".join(f"{k}: {str(event[k])[:110]}" for k in keys if event.get(k) not in (None, ""))
        rows.append(f"| {event['at'] - start:,.0f} | {event['event']} | {detail.replace('|', '/')} |")
    rows.append("")
    rows.append(
        f"Shift to detection: {data['seconds_from_shift_to_detection']} s; shift to the new champion: "
        f"{data['seconds_from_shift_to_new_champion']} s; whole loop {data['seconds']:,.0f} s. KPIs per model version "
        "(labelled sessions, conversion, revenue per session): "
        + "; ".join(
            f"{v}: {k['sessions']:,} sessions, {k['conversion']:.2%}, {k['revenue_per_session']:.2f}"
            for v, k in data["kpis_by_model_version"].items()
        )
        + "."
    )
    retrains = data.get("uplift_retrains", [])
    if retrains:
        rows += [
            "",
            "| t (s) | uplift retrain: decision points | champion's rule | DR profit difference per 1,000 | verdict |",
        ]
        rows.append("|---|---|---|---|---|")
        for r in retrains:
            diff = r.get("dr_profit_difference_per_1000")
            shown = f"{diff[0]:+,.0f} [{diff[1]:+,.0f}, {diff[2]:+,.0f}]" if diff else "not valued"
            verdict = "promoted" if r.get("promote") else str(r.get("reason", ""))[:140].replace("|", "/")
            rows.append(
                f"| {r['at'] - start:,.0f} | {r.get('first_decisions', 0):,} | {r.get('champion_rule', '')} | {shown} "
                f"| {verdict} |"
            )
    ab_rows = data.get("policy_ab_by_model_version", {})
    if ab_rows:
        rows += [
            "",
            "| model version | rule | decision points | treated (policy arm) | conversion lift vs holdout | "
            "AOV difference | profit per 1,000 sessions |",
            "|---|---|---|---|---|---|---|",
        ]
        for version, entry in ab_rows.items():
            ab = entry.get("ab", {})
            if "incremental_profit_per_1000" not in ab:
                rows.append(
                    f"| {version} | {entry.get('rule')} | {entry['sessions']:,} | | {ab.get('refused', '')} | | |"
                )
                continue
            rows.append(
                f"| {version} | {entry.get('rule')} | {entry['sessions']:,} | "
                f"{entry['treated_share_of_policy_arm']:.2f} | {_ci(ab['relative_conversion_lift'], 3)} | "
                f"{_ci(ab['aov_difference'], 2)} | {_ci(ab['incremental_profit_per_1000'])} |"
            )
    rows += ["", "Written by `make loop`."]
    return "\n".join(rows)


RENDERERS = {
    "batch_features": batch_features,
    "monitoring": monitoring,
    "model_quality": model_quality,
    "serving_footprint": serving_footprint,
    "serving_latency": serving_latency,
    "streaming_freshness": streaming_freshness,
    "loop": loop,
    "uplift": uplift,
}


def main() -> int:
    text = README.read_text()
    for name, render in RENDERERS.items():
        path = LOOP_TIMELINE if name == "loop" else result_path(name)
        pattern = re.compile(rf"(<!-- bench:{name} -->).*?(<!-- /bench:{name} -->)", re.S)
        if not path.exists() or not pattern.search(text):
            continue
        table = render(json.loads(path.read_text()))
        text = pattern.sub(lambda m: f"{m.group(1)}\n{table}\n{m.group(2)}", text)
    README.write_text(text)
    print(f"README benchmark tables updated from {result_path('batch_features').parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

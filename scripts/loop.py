"""`make loop`: the closed loop under the real Dagster daemon, with sensors and automation on.

1. Bootstrap: a simulated store's history (HISTORY_DAYS days) is landed, turned into features and a model, and the
   champion is deployed to the local endpoint (in this process, as `make demo` does).
2. The stream job and `dagster-daemon` start. From here the script is only the storefront: it never calls a
   sensor or an asset. Day by day its shoppers browse in waves (`propensity.sources.live_store`): each wave's
   events go to the stream (file source), and once the stream has folded them the storefront asks the endpoint for
   a score for every session; the endpoint decides the intervention (holdout, exploration, the policy's rule) and
   logs the decision. At a session's decision point (its third event, `DECISION_EVENTS`) the storefront acts on
   the decision: a session shown the offer goes on under the offer's response, so outcomes answer to the policy.
   At the end of each day the storefront exports the day's events, and opens the next day once the platform's
   nightly work is done (it watches the run queue; see `platform_night`).
3. The daemon does the rest: `storefront_export_sensor` ingests the export, automation rebuilds sessions, features
   and the online store, `monitoring_sensor` runs the monitors (the decision log, labelled by the sessions' own
   outcomes), `retrain_sensor` retrains when a monitor check fails (the propensity model, and the uplift model from
   the labelled decision log, which replaces the offer rule only if the DR gate says it earns more), automation
   deploys the new champion as a canary, and `canary_sensor` promotes it or rolls it back.
4. From SHIFT_DAY on, shoppers buy less (`BehaviourShift`): the live model becomes miscalibrated and the features move.

`var/demo/loop.json` (beside `make demo`'s summary; the loop's own state, var/loop, is wiped on every run) holds the
timeline (shift, detection, retrain, canary, decision) with timestamps, the time from the shift to the new champion,
KPIs before and after, every uplift retrain's verdict, and per model version the A/B of its policy against the
randomised holdout at the decision points. The runs stay in the loop's Dagster instance: `make dev` with the same
DAGSTER_HOME shows them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import requests

from propensity.console import quiet_console
from propensity.paths import LOOP_TIMELINE, PROJECT_ROOT, logs_dir, storefront_export_dir, table_dir
from propensity.settings import settings
from propensity.uplift.ab import format_figure
from propensity_assets.instance import write_instance_yaml

ENDPOINT = "propensity"
USERS = 3000
HISTORY_DAYS = 60  # training leaves out the first 30 (their 30-day user windows are cut by the data's start)
LIVE_DAYS = 14  # at most; the loop ends one day after the canary's decision
SHIFT_DAY = 2  # live day (0-based) from which shoppers buy less (the simulated history depends on it too)
INTENT_SHIFT = -1.0  # on the log-odds scale: conversion falls to less than half
SEED = 11

# The first champion explores more than the platform's default (OfferConfig: 5 %): three days of this small store
# must hold a few hundred treated decision points on each half of the users for the uplift model to be fitted.
LOOP_EXPLORATION_SHARE = 0.3
EXPECTED_WAVES = 40  # a day's sessions are mostly over by then: the day's pacing (DAY_S) counts on it

STREAM_WAIT_S = 60.0
# The first file also waits for the job's start-up: a JVM, Feast, and in a fresh clone the first-use compile of the
# checkpoint file manager (56 s there beside the daemon's start, more than STREAM_WAIT_S).
STREAM_START_S = 300.0
DAY_S = 90.0  # a live day's traffic is spread over this long: a canary started the night before is judged on it
NIGHT_QUIET_S = 45.0  # the platform idle this long ends the night (sensors and automation tick every 30 s)
NIGHT_S = 15 * 60.0  # the longest night: a stuck run must not hold the storefront forever
TIMEOUT_S = 90 * 60.0  # about six nights of ~7 min on 2 cores, with headroom for a slow day
# A canary started before the budget ran out is judged on live traffic: the storefront keeps sending days for it
# this much longer (two days and their nights), or its decision could never be taken.
CANARY_GRACE_S = 20 * 60.0
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def world(start: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulated world: its events (history is landed as simulated) and every session with its start day and
    hidden traits (the sessions of live days are run again by the storefront, answering its offers)."""
    from propensity.contract import validate_events
    from propensity.sources.live_store import session_starts
    from propensity.sources.simulator import BehaviourShift, simulate_traffic

    batch = simulate_traffic(
        n_users=USERS,
        days=HISTORY_DAYS + LIVE_DAYS,
        start_date=start.strftime("%Y-%m-%d"),
        seed=SEED,
        shift=BehaviourShift(from_day=HISTORY_DAYS + SHIFT_DAY, intent_logit=INTENT_SHIFT),
    )
    events = validate_events(batch.events).valid
    sessions = session_starts(events, batch.sessions)
    sessions["day"] = sessions["start"].dt.strftime("%Y-%m-%d")
    # History is cut at midnight by event time, like a lake that has landed whole days: a history that ran on into
    # the first live day would date the user aggregates a day late (every "days since" one day more than at
    # training: the drift monitor caught exactly that). The few sessions open at midnight end there.
    events["day"] = events["event_time"].dt.strftime("%Y-%m-%d")
    return events, sessions


def bootstrap(history_file: Path, say) -> None:
    import dagster as dg

    from propensity_assets.definitions import defs
    from propensity_assets.partitions import event_date_partitions

    assets, resources = list(defs.assets), dict(defs.resources)
    with dg.DagsterInstance.get() as instance:
        dg.materialize(
            assets,
            selection=["source_events", "event_quarantine"],
            resources=resources,
            instance=instance,
            run_config={
                "ops": {"source_events": {"config": {"source": "contract_files", "paths": [str(history_file)]}}},
                **QUIET,
            },
        )
        days = sorted(instance.get_dynamic_partitions(event_date_partitions.name))
        dg.materialize(
            assets,
            selection=["raw_events"],
            resources=resources,
            instance=instance,
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
            run_config=QUIET,
        )
        say("[loop] history landed: sessions, Spark features, online store")
        dg.materialize(
            assets,
            selection=dg.AssetSelection.groups("sessions", "features", "feature_store"),
            resources=resources,
            instance=instance,
            run_config=QUIET,
        )
        say("[loop] training the first champion")
        dg.materialize(
            assets,
            selection=dg.AssetSelection.groups("models"),
            resources=resources,
            instance=instance,
            run_config={
                "ops": {"offer_policy": {"config": {"exploration_share": LOOP_EXPLORATION_SHARE}}},
                **QUIET,
            },
        )
        from propensity.models.artifact import ModelRegistry

        if ModelRegistry().champion_version() is None:
            raise RuntimeError("the first model failed its quality gates: nothing to deploy")
        dg.materialize(
            assets,
            selection=["propensity_endpoint"],
            resources=resources,
            instance=instance,
            run_config={"ops": {"propensity_endpoint": {"config": {"endpoint": ENDPOINT}}}, **QUIET},
        )
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is not None:  # the bootstrap's JVM (2 GB) would sit idle beside the daemon's runs on 2 cores
        spark.stop()


def start_process(args: list[str], log_name: str, env: dict) -> subprocess.Popen:
    log = open(logs_dir() / log_name, "ab")  # noqa: SIM115 - the child keeps it for its lifetime
    return subprocess.Popen(
        args, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_process(process: subprocess.Popen | None, timeout_s: float = 20.0) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class Stream:
    """The storefront's side of the file source: whole files into the inbox, then wait until a batch after them."""

    def __init__(self):
        from propensity.streaming.job import inbox_dir, progress_path

        self.inbox = inbox_dir()
        self.progress = progress_path("file")
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.files = 0

    def processed_at(self) -> float:
        try:
            return float(json.loads(self.progress.read_text()).get("processed_at") or 0.0)
        except (FileNotFoundError, json.JSONDecodeError):
            return 0.0

    def send(self, lines: list[str]) -> None:
        sent_at = time.time()
        name = f"store-{self.files:07d}.jsonl"
        hidden = self.inbox / f".{name}.tmp"  # Spark's file source skips names starting with '.': never half a file
        hidden.write_text("\n".join(lines) + "\n")
        os.replace(hidden, self.inbox / name)
        self.files += 1
        wait_s = STREAM_START_S if self.files == 1 else STREAM_WAIT_S
        deadline = time.monotonic() + wait_s
        while self.processed_at() <= sent_at:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stream did not fold a file within {wait_s:.0f} s: see var/logs")
            time.sleep(0.05)


def endpoint_url() -> str:
    from serving.control.endpoint import running_url
    from serving.endpoint_state import EndpointFiles

    url = running_url(EndpointFiles(ENDPOINT))
    if url is None:
        raise RuntimeError(f"endpoint {ENDPOINT} is not running")
    return url


def score(http: requests.Session, url: str, pairs: list[tuple[str, str]], stats: dict) -> list[tuple[str, dict]]:
    """One request per session, as a storefront asks: each is routed to a variant on its own. Returns the
    (session id, prediction) of every answered request."""
    answered = []
    for session_id, user_id in pairs:
        try:
            answer = http.post(f"{url}/invocations", json={"session_id": session_id, "user_id": user_id}, timeout=5.0)
        except requests.RequestException as error:
            stats["errors"] += 1
            stats["last_error"] = str(error)[:200]
            continue
        if answer.status_code != 200:
            stats["errors"] += 1
            stats["last_error"] = answer.text[:200]
            continue
        prediction = answer.json()
        decision = prediction["decision"]
        stats["scored"] += 1
        stats["treated"] += bool(decision["treated"])
        stats["holdout"] += bool(decision["holdout"])
        answered.append((session_id, prediction))
    return answered


def at_decision_point(prediction: dict) -> bool:
    """The answer came from an online row that had folded the session's DECISION_EVENTS-th event (what the uplift
    retraining takes as the session's decision point)."""
    from propensity.monitoring.decisions import SESSION_EVENTS_SEEN
    from propensity.uplift.training import DECISION_EVENTS

    seen = prediction["features"].get(SESSION_EVENTS_SEEN)
    return seen is not None and seen >= DECISION_EVENTS


def live_day(live, stream: Stream, stats: dict) -> pd.DataFrame:
    """One day of storefront traffic in waves (`LiveSessions`): the k-th event of every session, folded by the
    stream, then a score for every session whose k-th event was not its purchase. At its decision point a session
    is shown the offer when the answer says so, and its next steps follow the offer's response. Returns the day's
    events (the export)."""
    from propensity.sources.contract_files import contract_json_lines

    url = endpoint_url()
    started = time.monotonic()
    sent, decided = [], set()
    with requests.Session() as http:
        for i, wave in enumerate(live.waves()):
            stream.send(contract_json_lines(wave))
            sent.append(wave)
            points = wave[wave["event_type"] != "purchase"].drop_duplicates("session_id")
            answered = score(http, url, list(zip(points["session_id"], points["user_id"])), stats)
            offers = []
            for session_id, prediction in answered:
                if session_id in decided or not at_decision_point(prediction):
                    continue
                decided.add(session_id)
                stats["decision_points"] += 1
                if prediction["decision"]["treated"]:
                    offers.append(session_id)
            stats["offers_shown"] += live.offer(offers) if offers else 0
            # Spread the day over DAY_S: a canary needs live traffic whenever the platform starts one.
            due = started + DAY_S * (i + 1) / EXPECTED_WAVES
            time.sleep(max(0.0, due - time.monotonic()))
    return pd.concat(sent, ignore_index=True)


def platform_night(quiet_s: float = NIGHT_QUIET_S, longest_s: float = NIGHT_S) -> float:
    """The storefront's night: the next day opens once the platform has been idle (no run queued or going) for
    `quiet_s`, longer than a sensor's or the automation's tick, so the work each run leads to has been asked for.
    The daemon's nightly work then runs on the CPU the storefront leaves it; on 2 cores, with traffic beside it, one
    rebuild took 5.5 minutes and the pipeline fell days behind its exports. Returns the seconds waited."""
    import dagster as dg

    busy = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    began = quiet_since = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        while time.monotonic() - began < longest_s:
            if instance.get_runs_count(filters=dg.RunsFilter(statuses=busy)):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                break
            time.sleep(5)
    return time.monotonic() - began


def instance_timeline(since: float) -> dict:
    """Runs, monitor check results and deployment stages from the Dagster instance (what the daemon did)."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = []
        for record in instance.get_run_records(
            filters=dg.RunsFilter(created_after=datetime.fromtimestamp(since, timezone.utc))
        ):
            run = record.dagster_run
            runs.append(
                {
                    "run_id": run.run_id,
                    "job": run.job_name,
                    "status": run.status.value,
                    "created_at": record.create_timestamp.timestamp(),
                    "started_at": record.start_time,
                    "ended_at": record.end_time,
                    "tags": {
                        k: v for k, v in run.tags.items() if k.startswith("propensity/") or k == "dagster/sensor_name"
                    },
                }
            )
        checks = []
        from sensors.retraining import WATCHED_CHECKS

        for key in WATCHED_CHECKS:
            for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=50):
                data = (
                    record.event.dagster_event.event_specific_data
                    if record.event and record.event.dagster_event
                    else None
                )
                if hasattr(data, "passed"):
                    checks.append(
                        {
                            "check": key.to_user_string(),
                            "passed": data.passed,
                            "at": record.create_timestamp,
                            "description": (data.description or "")[:300],
                        }
                    )
        stages = []
        for event in instance.fetch_materializations(dg.AssetKey("propensity_endpoint"), limit=100).records:
            metadata = event.asset_materialization.metadata
            stages.append(
                {
                    "at": event.timestamp,
                    "run_id": event.run_id,
                    **{
                        k: getattr(v, "value", v)
                        for k, v in metadata.items()
                        if k in ("stage", "outcome", "model_version", "reason", "decided_by")
                    },
                }
            )
    return {
        "runs": sorted(runs, key=lambda r: r["created_at"]),
        "checks": sorted(checks, key=lambda c: c["at"]),
        "deployment_stages": sorted(stages, key=lambda s: s["at"]),
    }


def canary_decision(timeline: dict, after: float) -> dict | None:
    """The promote or roll-back (a stage recorded by the canary sensor) of the first canary started after `after`.

    A canary started before the shift (a retrain on the old regime) and decided after it is not the loop's answer to
    the change: the last run counted one and stopped with the post-shift canary still in flight."""
    stages = timeline["deployment_stages"]
    started = next((s for s in stages if s.get("stage") == "start_canary" and s["at"] > after), None)
    if started is None:
        return None
    for stage in stages:
        if (
            stage["at"] > started["at"]
            and stage.get("model_version") == started.get("model_version")
            and stage.get("outcome") in ("promoted", "rolled_back")
        ):
            return stage
    return None


def canary_in_flight(since: float) -> bool:
    """A canary started and not yet promoted or rolled back."""
    stages = instance_timeline(since)["deployment_stages"]
    started = [s["at"] for s in stages if s.get("stage") == "start_canary"]
    return bool(started) and canary_decision({"deployment_stages": stages}, max(started) - 1e-6) is None


def refusals(run_id: str) -> list[str]:
    """What stopped a failed run: its failed asset checks and failed steps, one line each."""
    import dagster as dg

    out = []
    with dg.DagsterInstance.get() as instance:
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None:
                continue
            data = event.event_specific_data
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION and not data.passed:
                out.append(f"{data.check_name}: {data.description or ''}"[:300])
            elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
                out.append(f"{event.step_key}: {data.error.message.strip() if data.error else ''}"[:300])
    return out


def kpis_by_model() -> dict:
    """Conversion, revenue per session and AOV per model version over labelled decisions (session level)."""
    path = table_dir("labelled_decisions")
    if not path.exists():
        return {}
    labelled = pd.read_parquet(path)
    sessions = (
        labelled.sort_values("decided_at")
        .groupby("session_id")
        .agg(
            model_version=("model_version", "first"),
            label=("label", "max"),
            revenue=("revenue", "max"),
            holdout=("holdout", "first"),
        )
    )
    out = {}
    for version, rows in sessions.groupby("model_version"):
        converted = rows[rows["label"] > 0]
        out[version] = {
            "sessions": len(rows),
            "conversion": round(float(rows["label"].mean()), 4),
            "revenue_per_session": round(float(rows["revenue"].mean()), 3),
            "aov": round(float(converted["revenue"].mean()), 3) if len(converted) else None,
            "holdout_share": round(float(rows["holdout"].mean()), 3),
        }
    return out


UPLIFT_FIELDS = (
    "promote",
    "reason",
    "first_decisions",
    "train_sessions",
    "evaluation_sessions",
    "treated_share_logged",
    "challenger_treated_share",
    "current_treated_share",
    "dr_profit_difference_per_1000",
    "champion_rule",
)


def uplift_retrains() -> list[dict]:
    """Every materialisation of `uplift_model` (one per retrain): the log it learned from and the DR verdict."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(dg.AssetKey("uplift_model"), limit=100).records
        return sorted(
            (
                {
                    "at": event.timestamp,
                    "run_id": event.run_id,
                    **{
                        k: getattr(v, "value", v)
                        for k, v in event.asset_materialization.metadata.items()
                        if k in UPLIFT_FIELDS
                    },
                }
                for event in records
            ),
            key=lambda r: r["at"],
        )


def policy_ab_by_model() -> dict:
    """Per model version: its offer rule and the A/B of its policy against the randomised holdout, over the
    sessions whose decision point it scored (intent to treat; realised profit under the uplift model's terms)."""
    from propensity.models.artifact import ModelRegistry, load_artifact
    from propensity.uplift.ab import ab_figures
    from propensity.uplift.policy import OfferTerms
    from propensity.uplift.training import decision_point_rows

    path = table_dir("labelled_decisions")
    if not path.exists():
        return {}
    points = decision_point_rows(pd.read_parquet(path))
    registry, terms, out = ModelRegistry(), OfferTerms(), {}
    for version, rows in points.groupby("model_version"):
        policy = load_artifact(registry.root / version).policy if (registry.root / version).exists() else {}
        entry = {"rule": policy.get("rule"), "rule_reason": policy.get("rule_reason"), "sessions": len(rows)}
        entry["treated_share_of_policy_arm"] = float(rows.loc[~rows["holdout"], "treated"].mean())
        profit = terms.realised_profit(rows["revenue"], rows["treated"])
        try:
            entry["ab"] = ab_figures(rows["label"], rows["revenue"], profit, rows["holdout"])
        except ValueError as error:  # one arm empty: too little traffic for this version
            entry["ab"] = {"refused": str(error)}
        out[version] = entry
    return out


def run_loop(say) -> int:
    config = settings()
    started = time.time()
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    # One run at a time: a retrain's point-in-time join beside the rebuild's Feast materialisation is refused by Feast
    # (a view being materialised cannot serve), and each run is short in-process.
    write_instance_yaml(dagster_home, config, max_concurrent_runs=1)
    today = pd.Timestamp.now(tz="UTC").normalize()
    start = today - pd.Timedelta(days=HISTORY_DAYS + LIVE_DAYS)
    if config.profile == "redis":  # the loop's own database: rows of an earlier run must not answer for this one
        import redis

        redis.Redis.from_url(config.redis_url, socket_timeout=5).flushdb()
    events, sessions = world(start)
    days = sorted(sessions["day"].unique())
    history_days, live_days = days[:HISTORY_DAYS], days[HISTORY_DAYS : HISTORY_DAYS + LIVE_DAYS]
    say(
        f"[loop] a store of {USERS} shoppers: {len(history_days)} days of history, up to {len(live_days)} live days; "
        f"shoppers start buying less on {live_days[SHIFT_DAY]} (state in {config.home})"
    )
    from propensity.sources.contract_files import write_contract_jsonl
    from propensity.sources.interventions import catalogue
    from propensity.sources.live_store import LiveSessions

    history_file = config.home / "storefront" / "history" / "history.jsonl"
    write_contract_jsonl(events[events["day"].isin(history_days)].drop(columns="day"), history_file)
    bootstrap(history_file, say)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    timeline_events = [{"event": "bootstrap_done", "at": time.time()}]
    stream = daemon = None
    stats = {"scored": 0, "treated": 0, "holdout": 0, "errors": 0, "decision_points": 0, "offers_shown": 0}
    decision = None
    try:
        say("[loop] starting the stream job and the Dagster daemon (sensors and automation on)")
        # The storefront sends each day in waves across all its sessions (live_day), so its events are up to a day
        # out of time order across sessions: the stream keeps an idle session that long.
        stream = start_process(
            [
                sys.executable,
                "-O",
                "-m",
                "propensity.streaming.job",
                "--source",
                "file",
                "--allowed-lateness-s",
                "86400",
            ],
            "loop-stream.log",
            env,
        )
        daemon = start_process(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")],
            "loop-daemon.log",
            env,
        )
        sink = Stream()
        for index, day in enumerate(live_days):
            elapsed = time.time() - started
            if elapsed > TIMEOUT_S and (elapsed > TIMEOUT_S + CANARY_GRACE_S or not canary_in_flight(started)):
                break
            if index == SHIFT_DAY:
                timeline_events.append({"event": "shift", "day": day, "at": time.time(), "intent_logit": INTENT_SHIFT})
            day_started = time.time()
            live = LiveSessions(
                sessions[sessions["day"] == day], catalogue(SEED), seed=SEED * 1000 + index, id_prefix=f"live-{day}-"
            )
            write_contract_jsonl(live_day(live, sink, stats), storefront_export_dir() / f"{day}.jsonl")
            timeline_events.append(
                {"event": "day_exported", "day": day, "at": time.time(), "seconds": round(time.time() - day_started, 1)}
            )
            night_s = platform_night()
            say(
                f"[loop] {day}: {stats['scored']} decisions so far ({stats['errors']} failed requests); "
                f"the platform's night took {night_s:.0f} s"
            )
            shift_at = next((e["at"] for e in timeline_events if e["event"] == "shift"), None)
            if decision is not None:
                break  # one whole day of traffic after the decision: the KPIs after it
            if shift_at is not None:
                decision = canary_decision(instance_timeline(started), shift_at)
        # Let the daemon finish what the last export started (monitoring, a canary judged on the traffic above).
        deadline = time.time() + 300
        while decision is None and time.time() < deadline:
            time.sleep(10)
            decision = canary_decision(
                instance_timeline(started), next((e["at"] for e in timeline_events if e["event"] == "shift"), started)
            )
    finally:
        stop_process(daemon)
        stop_process(stream)
        from serving.control.endpoint import stop_server
        from serving.endpoint_state import EndpointFiles

        stop_server(EndpointFiles(ENDPOINT))

    timeline = instance_timeline(started)
    shift_at = next((e["at"] for e in timeline_events if e["event"] == "shift"), None)
    detection = next((c for c in timeline["checks"] if not c["passed"] and shift_at and c["at"] > shift_at), None)
    canary = next(
        (
            s
            for s in timeline["deployment_stages"]
            if shift_at and s["at"] > shift_at and s.get("stage") == "start_canary"
        ),
        None,
    )
    decision = canary_decision(timeline, shift_at or started)
    promoted_at = decision["at"] if decision and decision.get("outcome") == "promoted" else None
    daemon_events = [{"event": "detection", **detection}] if detection else []
    daemon_events += [
        {
            "event": "retrain",
            "at": run["started_at"] or run["created_at"],
            "cause": run["tags"].get("propensity/retrain_cause"),
            "status": run["status"],  # FAILURE: a quality gate refused the challenger (see the run in the UI)
            **({"refused_by": refusals(run["run_id"])} if run["status"] == "FAILURE" else {}),
        }
        for run in timeline["runs"]
        if run["job"] == "retrain"
    ]
    daemon_events += [{"event": "canary_started", **canary}] if canary else []
    daemon_events += [{"event": "canary_decision", **decision}] if decision else []
    summary = {
        "timeline": sorted(timeline_events + daemon_events, key=lambda e: e["at"]),
        "seconds_from_shift_to_detection": round(detection["at"] - shift_at, 1) if detection and shift_at else None,
        "seconds_from_shift_to_new_champion": round(promoted_at - shift_at, 1) if promoted_at and shift_at else None,
        "decision": decision,
        "kpis_by_model_version": kpis_by_model(),
        "uplift_retrains": uplift_retrains(),
        "policy_ab_by_model_version": policy_ab_by_model(),
        "storefront": stats,
        "runs": timeline["runs"],
        "monitor_checks": timeline["checks"],
        "deployment_stages": timeline["deployment_stages"],
        "seconds": round(time.time() - started, 1),
    }
    out = LOOP_TIMELINE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    for event in summary["timeline"]:
        when = datetime.fromtimestamp(event["at"], timezone.utc).strftime("%H:%M:%S")
        detail = {k: v for k, v in event.items() if k not in ("event", "at")}
        say(f"[loop] {when} {event['event']}: {json.dumps(detail, default=str)[:160]}")
    for retrain in summary["uplift_retrains"]:
        say(f"[loop] uplift retrain on {retrain.get('first_decisions')} decision points: {retrain.get('reason')}")
    for version, entry in summary["policy_ab_by_model_version"].items():
        ab = entry.get("ab", {})
        if "incremental_profit_per_1000" in ab:
            profit, lift = ab["incremental_profit_per_1000"], ab["relative_conversion_lift"]
            say(
                f"[loop] {version} ({entry['rule']} rule, {entry['sessions']} decision points): conversion lift "
                f"{format_figure(lift, 3, signed=True)}, profit per 1,000 sessions "
                f"{format_figure(profit, signed=True)} against the holdout"
            )
    say(f"[loop] shift to new champion: {summary['seconds_from_shift_to_new_champion']} s; timeline in {out}")
    if decision is None:
        say("[loop] no canary decision was taken by the daemon's sensor: see the runs in the UI (make dev)")
        return 1
    return 0


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    if not os.environ.get("DAGSTER_HOME"):
        print("[loop] DAGSTER_HOME is not set: run `make loop`", file=sys.stderr)
        return 2
    log_path = logs_dir() / "loop.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_console(log_path) as say:
        try:
            return run_loop(say)
        except Exception as error:  # noqa: BLE001 - the log keeps the traceback; the console gets one line
            traceback.print_exc()
            say(f"[loop] failed: {type(error).__name__}: {' '.join(str(error).split())[:300]} (details in {log_path})")
            return 1


if __name__ == "__main__":
    sys.exit(main())

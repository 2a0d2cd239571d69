"""Retraining: a failing drift, performance or calibration check starts the `retrain` job, and so does the weekly
schedule.

Debounced: the cursor remembers the last check evaluation it has seen per check and when it last asked for a
retrain, so one failing evaluation gives one retrain, and failures during the cool-down after a retrain (the same
cause, seen again by later monitoring runs while the new model is trained and canaried) are absorbed, not queued.
A failure after the cool-down is new evidence and retrains again. The cause goes into the run's tags, and the start
of the failing window into the training set's configuration: the retrain is calibrated and judged on traffic since
the change (the first failing window since the checks last all passed). Too little of it yet, and the training set's
blocking check stops the run; the next failure after the cool-down retries from the same point, with more.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from propensity.models.dataset import TRAINING_DATASET
from propensity.monitoring.checks import JUDGED, RETRAIN_CHECKS, WINDOW_START
from propensity.settings import settings

RETRAIN_JOB = "retrain"
CAUSE_TAG = "propensity/retrain_cause"
TRIGGER_TAG = "propensity/retrain_trigger"
EVALUATE_FROM_TAG = "propensity/evaluate_from"
# The monitor checks whose failure means the live model no longer fits the traffic.
WATCHED_CHECKS = tuple(dg.AssetCheckKey(dg.AssetKey(asset), check) for asset, check in RETRAIN_CHECKS)


@dataclass
class RetrainCursor:
    seen: dict[str, int]  # check key -> id of the last evaluation considered
    last_retrain_at: float | None = None
    # Start of the first failing window since the watched checks last all passed: where the change began. A retrain
    # that stopped for too little traffic since then is retried from the same point, with more of it.
    change_at: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> "RetrainCursor":
        if not text:
            return cls(seen={})
        payload = json.loads(text)
        return cls(
            seen=payload["seen"], last_retrain_at=payload.get("last_retrain_at"), change_at=payload.get("change_at")
        )

    def dump(self) -> str:
        payload = {"seen": self.seen, "last_retrain_at": self.last_retrain_at, "change_at": self.change_at}
        return json.dumps(payload, sort_keys=True)


def _description(record) -> str:
    detail = getattr(_evaluation(record), "description", None) or ""
    return f"{record.key.asset_key.to_user_string()}:{record.key.name} failed" + (
        f" ({detail[:200]})" if detail else ""
    )


def retrain_decision(instance: dg.DagsterInstance, cursor: RetrainCursor, now: float, cooldown_s: float):
    """(run request or skip reason, new cursor): the sensor's logic, on the instance's check evaluations."""
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(WATCHED_CHECKS))
    new_failures = []
    seen = dict(cursor.seen)
    for key in WATCHED_CHECKS:
        record = latest.get(key)
        name = key.to_user_string()
        if record is None or record.id <= seen.get(name, 0):
            continue
        evaluation = _evaluation(record)
        if evaluation is None:
            continue  # still running (planned): judged once it has a result
        seen[name] = record.id
        if not evaluation.passed:
            new_failures.append(record)
    all_pass = all(_judged_pass(latest[key]) for key in WATCHED_CHECKS if key in latest)
    change_at = evaluate_from(new_failures, since=cursor.change_at) if not all_pass else None
    updated = RetrainCursor(seen=seen, last_retrain_at=cursor.last_retrain_at, change_at=change_at)
    if not new_failures:
        return dg.SkipReason("no new failing drift, performance or calibration check"), updated
    causes = "; ".join(_description(r) for r in new_failures)
    if cursor.last_retrain_at is not None and now - cursor.last_retrain_at < cooldown_s:
        left = cooldown_s - (now - cursor.last_retrain_at)
        return dg.SkipReason(f"cool-down ({left:.0f} s left) absorbs: {causes}"), updated
    updated.last_retrain_at = now
    run_key = "retrain-" + "-".join(str(r.id) for r in new_failures)
    run_config = {"ops": {TRAINING_DATASET: {"config": {"evaluate_from": change_at}}}} if change_at else {}
    return (
        dg.RunRequest(
            run_key=run_key,
            run_config=run_config,
            tags={CAUSE_TAG: causes[:1000], TRIGGER_TAG: "check", EVALUATE_FROM_TAG: change_at or "none"},
        ),
        updated,
    )


def evaluate_from(failures, since: str | None = None) -> str | None:
    """The earliest start of the windows whose checks failed (and of `since`, the change already under way): the
    retrain calibrates and is judged on the traffic from there on (see propensity.models.dataset.split_boundaries),
    the regime the new model will serve."""
    starts = [since] if since else []
    for record in failures:
        text = _metadata(_evaluation(record), WINDOW_START)
        if isinstance(text, str) and text not in ("", "NaT"):
            starts.append(text)
    return min(starts, key=lambda t: datetime.fromisoformat(t)) if starts else None


def _judged_pass(record) -> bool:
    """Passed on evidence: a window too thin to judge passes without saying the model fits again."""
    evaluation = _evaluation(record)
    if evaluation is None or not evaluation.passed:
        return False
    return _metadata(evaluation, JUDGED) is not False


def _metadata(evaluation, key: str):
    """A metadata entry's plain value on a check evaluation (None when absent)."""
    value = (evaluation.metadata or {}).get(key)
    return getattr(value, "value", value)


def _evaluation(record):
    """The check's evaluation (with `passed`), or None while it has not finished."""
    event = record.event
    data = event.dagster_event.event_specific_data if event is not None and event.dagster_event else None
    return data if hasattr(data, "passed") else None


@dg.sensor(
    job_name=RETRAIN_JOB,
    minimum_interval_seconds=30,  # each tick costs the code server CPU; the work it starts takes minutes
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains when a drift, performance or calibration check fails; one cause, one retrain "
    "(cursor and cool-down: PROPENSITY_RETRAIN_COOLDOWN_S).",
)
def retrain_sensor(context: dg.SensorEvaluationContext):
    cursor = RetrainCursor.parse(context.cursor)
    result, updated = retrain_decision(context.instance, cursor, time.time(), settings().retrain_cooldown_s)
    context.update_cursor(updated.dump())
    return result


retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain",
    job_name=RETRAIN_JOB,
    cron_schedule="0 3 * * 1",  # Monday 03:00 UTC: a week of new outcomes, before the week's traffic
    execution_timezone="UTC",
    tags={CAUSE_TAG: "weekly schedule", TRIGGER_TAG: "schedule"},
    description="Retrains weekly whatever the monitors say: slow drift stays under any alarm's threshold.",
)

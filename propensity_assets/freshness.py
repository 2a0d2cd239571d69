"""Freshness of the online features, per feature view: the batch view is as fresh as the last `online_features`
materialisation, the in-session view as fresh as the stream job keeps up with the storefront.

`online_features_fresh` is a blocking check: the deployment's automation condition waits for it to pass, so a new
model never goes live on stale features; the monitoring job evaluates it again every run.
"""

import json
import time

import dagster as dg

from propensity.features.definitions import SESSION_FEATURE_VIEW, USER_FEATURE_VIEW
from propensity.streaming.job import inbox_dir, progress_path
from propensity.streaming.kafka import MAX_STALL_S
from resources.kafka import KafkaResource


class FreshnessConfig(dg.Config):
    max_batch_age_s: float = 26 * 3600.0  # user history is rebuilt daily: a missed day fails the check
    max_stall_s: float = MAX_STALL_S  # events waiting while the stream has not finished a batch for this long


def file_stream_status(max_stall_s: float) -> dict:
    """The file source's lag: inbox files newer than the stream's last finished batch."""
    progress = progress_path("file")
    processed_at = json.loads(progress.read_text()).get("processed_at") if progress.exists() else None
    inbox = inbox_dir()
    pending = [
        p
        for p in (inbox.glob("*.jsonl") if inbox.exists() else [])
        if processed_at is None or p.stat().st_mtime > processed_at
    ]
    since = None if processed_at is None else time.time() - processed_at
    return {
        "source": "file",
        "pending_files": len(pending),
        "seconds_since_last_batch": None if since is None else round(since, 1),
        "behind": bool(pending) and (since is None or since > max_stall_s),
    }


def stream_status(kafka: KafkaResource, max_stall_s: float) -> dict:
    """The status of the stream that feeds the session view: the Kafka job's when it has run, else the file
    source's (the source is the stream job's choice, not the profile's)."""
    if progress_path("kafka").exists():
        try:
            return kafka.stream_status(max_stall_s)
        except Exception as error:  # noqa: BLE001 - a broker we cannot ask is a stream we cannot vouch for
            return {"source": "kafka", "behind": True, "seconds_since_last_batch": None, "error": str(error)[:300]}
    return file_stream_status(max_stall_s)


@dg.asset_check(
    asset="online_features",
    blocking=True,
    description="Per view: user_history's last materialisation within max_batch_age_s; session_activity's stream "
    "not stalled with events waiting. Deployments wait for this check.",
)
def online_features_fresh(
    context: dg.AssetCheckExecutionContext, config: FreshnessConfig, kafka: KafkaResource
) -> dg.AssetCheckResult:
    latest = context.instance.get_latest_materialization_event(dg.AssetKey("online_features"))
    batch_age = None if latest is None else time.time() - latest.timestamp
    stream = stream_status(kafka, config.max_stall_s)
    problems = []
    if batch_age is None:
        problems.append(f"{USER_FEATURE_VIEW}: never materialised")
    elif batch_age > config.max_batch_age_s:
        problems.append(f"{USER_FEATURE_VIEW}: last materialised {batch_age / 3600:.1f} h ago")
    if stream["behind"]:
        problems.append(f"{SESSION_FEATURE_VIEW}: the stream is behind ({stream})")
    ages = {
        USER_FEATURE_VIEW: None if batch_age is None else round(batch_age, 1),
        SESSION_FEATURE_VIEW: stream["seconds_since_last_batch"],
    }
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or "every view fresh",
        metadata={
            "age_s_by_view": dg.MetadataValue.json(ages),
            "stream": dg.MetadataValue.json(stream),
            "max_batch_age_s": config.max_batch_age_s,
        },
    )

"""The stream in the UI: an observable source asset for the storefront topic as the stream job sees it, and a
freshness check that fails when the job falls behind.

The stream job (`propensity.streaming.job`) runs outside Dagster, like any long-running service; it leaves
`progress.json` after every micro-batch. Observing `storefront_stream` compares that with the topic's end offsets:
lag in messages per partition, the last processed offset, when the last batch finished and the newest event time
folded into the online session features. `stream_keeps_up` fails when messages wait while the job has not finished
a batch for `max_stall_s`, i.e. the job is stopped, stuck, or slower than the storefront.
"""

import json

import dagster as dg

from propensity.streaming.kafka import MAX_STALL_S
from resources.kafka import KafkaResource


@dg.observable_source_asset(
    group_name="streaming",
    description="Storefront events on Kafka as the stream job has consumed them: lag, offsets, freshness.",
)
def storefront_stream(kafka: KafkaResource) -> dg.ObserveResult:
    status = kafka.stream_status()
    return dg.ObserveResult(
        data_version=dg.DataVersion(json.dumps(status["last_offsets"], sort_keys=True)),
        metadata={
            "lag_messages": status["lag_messages"],
            "last_batch_id": status["last_batch_id"] if status["last_batch_id"] is not None else -1,
            "seconds_since_last_batch": status["seconds_since_last_batch"]
            if status["seconds_since_last_batch"] is not None
            else -1.0,
            "newest_event_time_online": status["newest_event_time_online"] or "none",
            "last_offsets": dg.MetadataValue.json(status["last_offsets"]),
            "lag_by_partition": dg.MetadataValue.json(status["lag_by_partition"]),
        },
    )


class StreamFreshnessConfig(dg.Config):
    max_stall_s: float = MAX_STALL_S


@dg.asset_check(
    asset=storefront_stream,
    description="Fails when messages wait and the job has not finished a batch for max_stall_s.",
)
def stream_keeps_up(config: StreamFreshnessConfig, kafka: KafkaResource) -> dg.AssetCheckResult:
    status = kafka.stream_status(config.max_stall_s)
    if status["behind"]:
        last = (
            "never ran"
            if status["seconds_since_last_batch"] is None
            else f"last batch {status['seconds_since_last_batch']:.0f} s ago"
        )
        description = f"{status['lag_messages']} messages waiting on {status['topic']}; {last}"
    else:
        description = f"caught up: lag {status['lag_messages']}"
    return dg.AssetCheckResult(
        passed=not status["behind"],
        description=description,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "lag_messages": status["lag_messages"],
            "seconds_since_last_batch": status["seconds_since_last_batch"] or -1.0,
        },
    )


# The stream job runs outside Dagster, so nothing would observe it unless asked: this job observes the source and runs
# its check; the schedule runs it every minute. Stopped by default (the embedded default has no Kafka): turn it on in
# the UI where the services profile's stream runs.
stream_watch_job = dg.define_asset_job(
    "watch_stream",
    selection=dg.AssetSelection.assets(storefront_stream.key),
    description="Observe storefront_stream (lag, offsets, freshness) and run stream_keeps_up.",
)

stream_watch_schedule = dg.ScheduleDefinition(
    job=stream_watch_job,
    cron_schedule="* * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every minute: observe the stream and fail stream_keeps_up when it falls behind.",
)

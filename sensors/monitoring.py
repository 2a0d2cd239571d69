"""Monitoring runs when there is something new to judge: each rebuild of `session_events` (new outcomes landed)
starts the `monitoring` job for today's decision-log partition (decision log, outcomes, matured labels, drift,
performance, KPIs, dashboard, feature freshness)."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

MONITORING_JOB = "monitoring"


@dg.asset_sensor(
    asset_key=dg.AssetKey("session_events"),
    job_name=MONITORING_JOB,
    minimum_interval_seconds=30,  # each tick costs the code server CPU; the work it starts takes minutes
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the monitors after every rebuild of session_events (new outcomes to label decisions with).",
)
def monitoring_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return dg.RunRequest(
        run_key=f"monitor-{asset_event.run_id}-{asset_event.timestamp:.3f}",
        partition_key=today,
        tags={"propensity/cause": f"session_events rebuilt (run {asset_event.run_id[:8]})"},
    )

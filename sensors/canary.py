"""The canary sensor: at every tick, judge each endpoint's canary in progress on its live traffic
(`serving.control.judge`) and record every stage it takes as an event of `propensity_endpoint`.

`propensity_endpoint` only starts a canary. This sensor looks at it every few seconds with always-valid sequential
tests (they stay valid however often it looks), and shifts, promotes or rolls it back through the deployer resource.
Every stage appended to an endpoint's history since the sensor last looked (its own, and a canary superseded by a
new deployment) becomes an `AssetMaterialization` of `propensity_endpoint` with its numbers, plus an evaluation of
the `deployment_not_rolled_back` check when the canary's fate is decided. The cursor keeps, per endpoint, how many
history records have been reported, so a stage is reported once, and one missed by a failed tick is reported by the
next. On a rollback the registry hands the champion title back to the version still serving, unless a newer
champion has been registered meanwhile.
"""

from __future__ import annotations

import json

import dagster as dg

from propensity.models.artifact import ModelRegistry
from serving.control.deployment import Deployer, DeploymentRecord
from serving.control.endpoint import lake_outcomes
from serving.control.judge import Verdict, judge_canary

ASSET = "propensity_endpoint"
CHECK = "deployment_not_rolled_back"
REPORTED_STAGES = ("shift", "promote", "roll_back")
TICK_S = 10


def _hand_back_champion_title(verdict: Verdict, log) -> None:
    registry = ModelRegistry()
    if registry.champion_version() != verdict.model_version:
        return  # a newer champion was registered meanwhile: the title is not the canary's to give back
    registry.roll_back(verdict.model_version, to_version=verdict.champion_version, reason=verdict.reason)
    log.warning(f"canary {verdict.model_version} rolled back: {verdict.reason}")


def stage_events(record: DeploymentRecord) -> list:
    numbers = {k: v for k, v in record.observations.items() if k != "canary"}
    scalars = {k: v for k, v in numbers.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    metadata = {
        "endpoint": record.endpoint,
        "stage": record.stage,
        "outcome": record.outcome,
        "model_version": record.model_version,
        "reason": record.reason,
        "decided_by": "canary_sensor",
        "variants": dg.MetadataValue.json([v.__dict__ for v in record.variants]),
        "numbers": dg.MetadataValue.json(numbers),
        **scalars,
    }
    events: list = [dg.AssetMaterialization(asset_key=ASSET, description=record.reason, metadata=metadata)]
    if record.stage in ("promote", "roll_back") and "superseded_by" not in numbers:  # a decision on the canary
        events.append(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(ASSET),
                check_name=CHECK,
                passed=record.stage == "promote",
                severity=dg.AssetCheckSeverity.WARN,
                description=record.reason,
                metadata={"endpoint": record.endpoint, "model_version": record.model_version},
            )
        )
    return events


@dg.sensor(
    minimum_interval_seconds=TICK_S,
    default_status=dg.DefaultSensorStatus.RUNNING,  # a canary left unjudged would bake forever at its share
    description="Judges each canary in progress on live traffic (always-valid tests of error rate, score shift and "
    "log-loss against the champion) and shifts, promotes or rolls it back; every stage is an event of "
    "propensity_endpoint.",
)
def canary_sensor(context: dg.SensorEvaluationContext, deployer: dg.ResourceParam[Deployer]) -> dg.SensorResult:
    reported = json.loads(context.cursor) if context.cursor else {}
    events: list = []
    notes: list[str] = []
    for endpoint in deployer.endpoints():
        if endpoint not in reported:  # first look at this endpoint: what came before is already in the asset's runs
            reported[endpoint] = len(deployer.history(endpoint))
        verdict = judge_canary(deployer, endpoint, outcomes=lake_outcomes)
        if verdict.decision == "roll_back":
            _hand_back_champion_title(verdict, context.log)
        history = deployer.history(endpoint)
        for record in history[reported[endpoint] :]:
            if record.stage in REPORTED_STAGES:
                events.extend(stage_events(record))
        reported[endpoint] = len(history)
        if verdict.decision != "none":
            notes.append(f"{endpoint}: {verdict.decision}: {verdict.reason}")
    cursor = json.dumps(reported, sort_keys=True)
    if events:
        return dg.SensorResult(asset_events=events, cursor=cursor)
    return dg.SensorResult(cursor=cursor, skip_reason="; ".join(notes) or "no canary in progress")


SENSORS = [canary_sensor]

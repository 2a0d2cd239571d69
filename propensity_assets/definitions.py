"""The one Definitions of the code location: assets and checks, resources per profile, jobs, sensors, schedules,
and declarative automation.

The closed loop, as the daemon runs it:
- `storefront_export_sensor` ingests each daily export (`storefront_ingest`: contract gate, the day's raw_events);
- automation rebuilds what depends on new events (sessions, features, the Feast registry, the online store);
- `monitoring_sensor` runs `monitoring` after each rebuild (decision log, outcomes, labels, drift, performance,
  KPIs, dashboard, online-feature freshness);
- `retrain_sensor` runs `retrain` (training set to registration) when a drift, performance or calibration check
  fails, debounced; `weekly_retrain` retrains on a schedule;
- automation deploys a newly promoted champion as a canary once the quality gates and the freshness check pass;
- `canary_sensor` judges the canary at every tick and promotes it or rolls it back.
"""

from datetime import timedelta

import dagster as dg

from propensity.models.dataset import TRAINING_DATASET
from propensity.settings import settings
from propensity_assets import (
    decisions,
    deployment,
    feature_store,
    features,
    freshness,
    ingestion,
    models,
    monitoring,
    offers,
    sessions,
    streaming,
    training_pipeline,
)
from resources import build_resources
from sensors.canary import SENSORS as CANARY_SENSORS
from sensors.monitoring import MONITORING_JOB, monitoring_sensor
from sensors.retraining import RETRAIN_JOB, retrain_schedule, retrain_sensor
from sensors.storefront import INGEST_JOB, storefront_export_sensor

# Every materialisable table is expected at least daily: the storefront's features go stale otherwise.
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=24))
SPINE_GROUPS = ("sessions", "features", "feature_store")
# Eager, except that a day still being landed (its partition registered by the export sensor, its ingest run queued)
# does not hold the rebuild back: each rebuild reads every day that has landed, and the queued one is read by the
# next. With the stock condition a storefront exporting faster than runs launch kept one day always missing, and the
# spine was never rebuilt (make loop, 2 cores: eleven days exported, one rebuild).
SPINE_AUTOMATION = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing()).with_label("eager (landed days)")
)


# PROPENSITY_TRAINING=sagemaker: a retrain runs the training set, then the SageMaker pipeline in place of the
# in-process models group (propensity_assets/training_pipeline.py).
ON_SAGEMAKER = settings().training == "sagemaker"


def _policies(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The daily freshness policy on every table; eager automation on the spine, so new events reach the online
    store without anyone asking (training is not eager: the monitors and the schedule decide when to retrain)."""
    spec = spec.replace_attributes(freshness_policy=DAILY_FRESHNESS)
    if spec.group_name in SPINE_GROUPS:
        spec = spec.replace_attributes(automation_condition=SPINE_AUTOMATION)
    return spec


materialisable = dg.map_asset_specs(
    _policies,
    dg.load_assets_from_modules(
        [
            ingestion,
            sessions,
            features,
            feature_store,
            models,
            offers,
            deployment,
            decisions,
            monitoring,
            *([training_pipeline] if ON_SAGEMAKER else []),
        ]
    ),
)

spine_job = dg.define_asset_job(
    "feature_spine",
    selection=dg.AssetSelection.groups(*SPINE_GROUPS),
    description="From the clean event log to the online store (run after ingestion).",
)
ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.assets("source_events", "event_quarantine", "raw_events"),
    description="One storefront export through the contract gate into its day's raw_events partition.",
)
monitoring_job = dg.define_asset_job(
    MONITORING_JOB,
    selection=dg.AssetSelection.groups("decisions", "monitoring")
    | dg.AssetSelection.checks(freshness.online_features_fresh),
    description="Today's decision log, outcomes and matured labels; drift, performance, KPIs, the dashboard, and "
    "the online features' freshness.",
)
RETRAIN_SELECTION = (
    dg.AssetSelection.assets(TRAINING_DATASET, training_pipeline.SAGEMAKER_TRAINING)
    if ON_SAGEMAKER
    else dg.AssetSelection.groups("models")
)
retrain_job = dg.define_asset_job(
    RETRAIN_JOB,
    selection=RETRAIN_SELECTION,
    description="Training set to registration: the candidate passes the same gates as ever before it is champion.",
)

defs = dg.Definitions(
    # Steps run in the run's own process: a subprocess per step re-imports the platform (seconds each on 2 cores),
    # and the monitoring job's eight steps took two minutes that way.
    executor=dg.in_process_executor,
    assets=[*materialisable, streaming.storefront_stream],  # the stream has its own check
    asset_checks=[streaming.stream_keeps_up, freshness.online_features_fresh],
    resources=build_resources(settings()),
    jobs=[spine_job, ingest_job, monitoring_job, retrain_job, streaming.stream_watch_job],
    schedules=[streaming.stream_watch_schedule, retrain_schedule],
    sensors=[
        storefront_export_sensor,
        monitoring_sensor,
        retrain_sensor,
        *CANARY_SENSORS,
        dg.AutomationConditionSensorDefinition(
            "automation",
            target=dg.AssetSelection.all(),
            minimum_interval_seconds=30,  # an evaluation over every dynamic partition costs seconds on 2 cores
            default_status=dg.DefaultSensorStatus.RUNNING,
        ),
    ],
)

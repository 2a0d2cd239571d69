"""The code location loads, and the UI shows the spine's assets with their checks."""

import os
import subprocess
import sys

import dagster as dg

from propensity_assets.definitions import defs

SPINE_ASSETS = {
    "source_events",
    "event_quarantine",
    "raw_events",
    "session_events",
    "sessions",
    "user_daily_aggregates",
    "session_prefix_features",
    "feast_registry",
    "online_features",
}
MODEL_ASSETS = {
    "training_dataset",
    "baseline_model",
    "propensity_model",
    "calibrated_model",
    "model_evaluation",
    "registered_model",
    "offer_policy",
    "uplift_model",
}
BLOCKING_GATES = {
    "not_worse_than_baseline",
    "ece_within_bound",
    "not_worse_than_champion",
    "skill_over_base_rate",
    "calibration_helps",
}
SPINE_CHECKS = {
    "event_quarantine:bad_fraction_within_threshold",
    "raw_events:contract_v1",
    "session_events:every_event_sessionised",
    "sessions:one_user_per_session",
    "user_daily_aggregates:user_aggregates_schema",
    "session_prefix_features:session_features_schema",
    "online_features:online_matches_offline",
}


def test_asset_graph_names_the_spine_assets_and_checks():
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    checks = {key.to_user_string() for key in graph.asset_check_keys}
    assert SPINE_ASSETS | MODEL_ASSETS <= assets
    assert SPINE_CHECKS <= checks
    assert {f"model_evaluation:{gate}" for gate in BLOCKING_GATES} <= checks
    # lineage as docs/ARCHITECTURE.md draws it
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents["raw_events"] == {"source_events"}
    assert parents["session_prefix_features"] == {"session_events"}
    assert parents["session_fold_state"] == {"session_events"}
    assert parents["feast_registry"] == {"user_daily_aggregates", "session_prefix_features", "session_fold_state"}
    assert parents["online_features"] == {"feast_registry"}
    assert parents["training_dataset"] == {"session_prefix_features", "sessions", "feast_registry"}
    assert parents["registered_model"] == {"model_evaluation", "offer_policy"}
    assert parents["offer_policy"] == {"model_evaluation", "uplift_model"}
    # retrained on actual uplift, from the decision log, with the candidate's propensity as its input
    assert parents["uplift_model"] == {"labelled_decisions", "model_evaluation"}
    assert parents["propensity_endpoint"] == {"registered_model", "model_evaluation", "online_features"}
    assert "online_features:online_features_fresh" in checks  # blocking: the deployment waits for it
    assert "propensity_endpoint:deployment_not_rolled_back" in checks
    # the endpoint is deployed only when every blocking quality gate on its parents has passed
    assert "all_deps_blocking_checks_passed" in str(graph.get(dg.AssetKey("propensity_endpoint")).automation_condition)
    evaluation = next(a for a in defs.assets if dg.AssetKey("model_evaluation") in a.keys)
    gates = {spec.key.name: spec.blocking for spec in evaluation.check_specs}
    assert all(gates[g] for g in BLOCKING_GATES)
    # every materialisable asset carries the daily freshness policy; the stream has its own check
    for key in graph.get_all_asset_keys():
        if graph.get(key).is_materializable:
            assert graph.get(key).freshness_policy is not None, key
    assert "storefront_stream:stream_keeps_up" in checks
    # ... run every minute once turned on (off by default: the embedded default has no Kafka)
    watch = defs.resolve_schedule_def("watch_stream_schedule")
    assert watch.cron_schedule == "* * * * *" and watch.default_status == dg.DefaultScheduleStatus.STOPPED
    assert watch.job.name == "watch_stream"


def test_dagster_definitions_validate_passes():
    validated = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validated.returncode == 0, validated.stdout[-2000:] + validated.stderr[-3000:]
    assert "Validation successful" in validated.stdout + validated.stderr


SAGEMAKER_RETRAIN = """
from propensity_assets.definitions import defs
job = defs.resolve_job_def("retrain")
print(sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys))
print("sagemaker_pipeline" in defs.resources)
"""


def test_with_training_on_sagemaker_a_retrain_runs_the_pipeline_instead_of_the_models_group(tmp_path):
    definition = tmp_path / "pipeline.json"
    definition.write_text('{"Version": "2020-12-01", "Parameters": [], "Steps": []}')
    env = {
        **os.environ,
        "PROPENSITY_TRAINING": "sagemaker",
        "SAGEMAKER_REGION": "eu-west-1",
        "SAGEMAKER_BUCKET": "propensity-staging-lake-123456789012",
        "SAGEMAKER_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/propensity-staging-sagemaker-execution",
        "SAGEMAKER_PIPELINE_NAME": "propensity-staging-training",
        "SAGEMAKER_PIPELINE_DEFINITION": str(definition),
    }
    loaded = subprocess.run(
        [sys.executable, "-c", SAGEMAKER_RETRAIN], capture_output=True, text=True, timeout=300, env=env
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    selected, has_resource = loaded.stdout.strip().splitlines()[-2:]
    assert selected == "['sagemaker_training', 'training_dataset']" and has_resource == "True"
    # and the in-process default: the whole models group, no SageMaker asset
    assert "sagemaker_training" not in {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}

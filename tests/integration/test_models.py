"""The models group through Dagster: a good candidate is promoted; a deliberately worse one is blocked."""

import json
import shutil

import dagster as dg
import pandas as pd
import pytest

from propensity.models.artifact import ModelRegistry
from propensity.monitoring.decisions import LABELLED_COLUMNS
from propensity_assets.decisions import LABELLED_DECISIONS, write_partition
from propensity_assets.definitions import defs
from propensity_assets.partitions import event_date_partitions
from resources.lake import LakeResource
from serving.decision import DecisionPolicy
from tests.conftest import clear_home
from tests.uplift_logs import labelled_log

pytestmark = pytest.mark.spark

ASSETS = list(defs.assets)
RESOURCES = dict(defs.resources)
SMALL_DATA_GATES = {"max_ece": 0.05, "champion_tolerance": 0.002}  # ~1.5k test decision points: ECE noise ~0.02


def _materialize(instance, selection, run_config=None, tags=None):
    return dg.materialize(
        ASSETS,
        selection=selection,
        resources=RESOURCES,
        instance=instance,
        run_config=run_config or {},
        tags=tags,
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def spine():
    """Simulated traffic through the spine once for this module; the tests below only add models."""
    clear_home()
    with dg.instance_for_test() as instance:
        landed = _materialize(
            instance,
            ["source_events", "event_quarantine"],
            {"ops": {"source_events": {"config": {"source": "simulator", "users": 1500, "days": 6, "seed": 21}}}},
        )
        assert landed.success
        days = sorted(instance.get_dynamic_partitions(event_date_partitions.name))
        assert _materialize(
            instance,
            ["raw_events"],
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
        ).success
        assert _materialize(instance, dg.AssetSelection.groups("sessions", "features", "feature_store")).success
        yield instance


def _models_config(**lightgbm) -> dict:
    return {
        "ops": {
            "propensity_model": {"config": lightgbm},
            "model_evaluation": {"config": SMALL_DATA_GATES},
            "registered_model": {"config": SMALL_DATA_GATES},
        }
    }


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _materialized(result) -> set[str]:
    return {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def test_training_set_is_point_in_time_and_split_by_time(spine):
    result = _materialize(spine, ["training_dataset"])
    assert result.success
    assert all(_checks(result).values()), _checks(result)
    metadata = {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["training_dataset"]
    splits = metadata["splits"].value
    assert splits["train"]["to"] < splits["test"]["from"]
    assert json.dumps(splits)  # sizes, positive rates and time ranges per split are in the UI
    assert all(splits[s]["rows"] > 0 for s in ("train", "valid", "test"))


def test_quality_gates_promote_a_good_model_and_block_a_worse_one(spine):
    instance = spine
    good = _materialize(instance, dg.AssetSelection.groups("models"), _models_config())
    assert good.success, _checks(good)
    assert all(_checks(good).values()), _checks(good)
    assert {"training_dataset", "model_evaluation", "registered_model", "offer_policy"} <= _materialized(good)
    registry = ModelRegistry()
    champion = registry.champion_version()
    assert champion is not None

    # A model that may not split (no leaf can hold that many rows) predicts one calibrated base rate for everyone:
    # far worse than the champion on the same test set.
    worse = _materialize(instance, dg.AssetSelection.groups("models"), _models_config(min_data_in_leaf=10**8))
    checks = _checks(worse)
    assert not worse.success
    assert checks["not_worse_than_champion"] is False
    assert "registered_model" not in _materialized(worse)  # the blocking checks stopped the run before it
    assert registry.champion_version() == champion and len(registry.versions()) == 1

    # Run on its own, the registry step applies the same gates: recorded as rejected, never champion.
    alone = _materialize(instance, ["registered_model"], {"ops": {"registered_model": {"config": SMALL_DATA_GATES}}})
    assert alone.success
    assert registry.champion_version() == champion
    latest = registry.versions()[-1]
    assert latest["status"] == "rejected" and "not_worse_than_champion" in latest["reason"]


def test_a_retrain_after_a_change_is_judged_on_traffic_since_then_and_stops_without_enough_outcomes(spine):
    days = sorted(spine.get_dynamic_partitions(event_date_partitions.name))
    change = f"{days[-3]}T00:00:00+00:00"
    config = {"ops": {"training_dataset": {"config": {"evaluate_from": change}}}}
    result = _materialize(spine, ["training_dataset"], config)
    assert result.success and all(_checks(result).values()), _checks(result)
    materialization = next(iter(result.get_asset_materialization_events())).event_specific_data.materialization
    assert materialization.metadata["boundaries"].value["valid_start"] >= change
    at = {
        split: {k: pd.Timestamp(v) for k, v in part.items() if k in ("from", "to")}
        for split, part in materialization.metadata["splits"].value.items()
    }
    # split by session start: a training session begun before the change may still have decision points after it
    assert at["train"]["from"] < pd.Timestamp(change) <= at["valid"]["from"] < at["test"]["from"]

    # Too few purchases since the change to calibrate or judge a model: the blocking check stops the retrain.
    config["ops"]["training_dataset"]["config"]["min_positive_sessions"] = 10**6
    thin = _materialize(spine, ["training_dataset", "baseline_model"], config)
    assert not thin.success
    assert _checks(thin)["enough_outcomes_per_split"] is False
    assert "baseline_model" not in _materialized(thin)


def test_the_offer_policy_retrains_on_the_decision_log_and_keeps_the_uplift_model_that_won(spine):
    lake = LakeResource()
    for day, seed in (("2026-06-01", 11), ("2026-06-02", 12)):  # a strong effect on half the sessions
        write_partition(lake, LABELLED_DECISIONS, day, labelled_log(5000, lift=0.3, seed=seed), LABELLED_COLUMNS)
    try:
        retrained = _materialize(spine, dg.AssetSelection.groups("models"), _models_config())
        assert retrained.success, _checks(retrained)
        uplift = _metadata(retrained)["uplift_model"]
        assert uplift["promote"].value is True, uplift["reason"].value
        assert uplift["first_decisions"].value == 10_000
        assert uplift["propensity_input"].value == "candidate"  # the score it will be served with, not the logged one
        champion = ModelRegistry().champion()
        assert champion.policy["rule"] == "uplift" and champion.policy["threshold"] is None
        assert DecisionPolicy(champion.policy).rule == "uplift"  # what the scorer loads

        # More of the same world: a challenger that learns what the champion knows is no better, and the
        # champion's uplift model stays.
        shutil.rmtree(lake.path(LABELLED_DECISIONS))
        write_partition(lake, LABELLED_DECISIONS, "2026-06-03", labelled_log(8000, lift=0.3, seed=13), LABELLED_COLUMNS)
        refused = _materialize(spine, ["uplift_model", "offer_policy"])
        assert refused.success
        assert _metadata(refused)["uplift_model"]["promote"].value is False
        assert _metadata(refused)["offer_policy"]["rule"].value == "uplift"
        assert "the champion's uplift model stays" in _metadata(refused)["offer_policy"]["rule_reason"].value
    finally:
        shutil.rmtree(lake.path(LABELLED_DECISIONS), ignore_errors=True)


def _metadata(result) -> dict[str, dict]:
    return {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }

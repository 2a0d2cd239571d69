"""The spine materialised through Dagster, as the demo and the UI run it, on small data."""

import json

import dagster as dg
import pandas as pd
import pytest

from propensity.paths import table_dir
from propensity.sources.contract_files import write_contract_jsonl
from propensity.sources.simulator import simulate_traffic
from propensity_assets.definitions import defs
from propensity_assets.partitions import event_date_partitions

pytestmark = pytest.mark.spark

ASSETS = list(defs.assets)
RESOURCES = dict(defs.resources)


def _land(instance, source_config: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        selection=["source_events", "event_quarantine"],
        resources=RESOURCES,
        instance=instance,
        run_config={"ops": {"source_events": {"config": source_config}}},
        raise_on_error=False,
    )


def _raw_events(instance) -> dg.ExecuteInProcessResult:
    days = sorted(instance.get_dynamic_partitions(event_date_partitions.name))
    return dg.materialize(
        ASSETS,
        selection=["raw_events"],
        resources=RESOURCES,
        instance=instance,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )


def _metadata(result, asset, key):
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        if m.asset_key.to_user_string() == asset:
            return m.metadata[key].value
    raise KeyError(asset)


def test_simulated_traffic_flows_from_source_to_online_store(propensity_home):
    simulated = simulate_traffic(n_users=150, days=3, seed=5)
    with dg.instance_for_test() as instance:
        landed = _land(instance, {"source": "simulator", "users": 150, "days": 3, "seed": 5})
        assert landed.success
        assert sorted(instance.get_dynamic_partitions(event_date_partitions.name)) == [
            "2026-11-02",
            "2026-11-03",
            "2026-11-04",
        ]
        raw = _raw_events(instance)
        spine = dg.materialize(
            ASSETS,
            selection=dg.AssetSelection.groups("sessions", "features", "feature_store"),
            resources=RESOURCES,
            instance=instance,
        )
        checks = {
            f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
            for r in (landed, raw, spine)
            for e in r.get_asset_check_evaluations()
        }
        assert checks and all(checks.values()), checks
        assert _metadata(raw, "raw_events", "dagster/row_count") == len(simulated.events)
        assert _metadata(spine, "sessions", "dagster/row_count") == simulated.events["session_id"].nunique()
        assert _metadata(spine, "online_features", "sessions_written") == simulated.events["session_id"].nunique()
        truth = pd.read_parquet(table_dir("simulator_truth"))
        assert len(truth) == len(simulated.events)

        # Landing the same batch again replaces it: nothing doubles.
        again = _land(instance, {"source": "simulator", "users": 150, "days": 3, "seed": 5})
        assert _metadata(again, "source_events", "batch_id") == _metadata(landed, "source_events", "batch_id")
        assert _metadata(_raw_events(instance), "raw_events", "dagster/row_count") == len(simulated.events)


def test_a_bad_batch_is_quarantined_with_reasons_and_fails_the_threshold_check(propensity_home, tmp_path):
    good = simulate_traffic(n_users=20, days=1, seed=9).events.head(8)
    bad = good.head(4).copy()
    bad["event_id"] = ["bad-1", "bad-2", "bad-3", "bad-4"]
    bad["event_type"] = ["teleport", "product_view", "product_view", "product_view"]
    bad["price"] = [1.0, -5.0, 1.0, 1.0]
    bad["user_id"] = ["u1", "u1", None, "u1"]
    batch = pd.concat([good, bad], ignore_index=True)
    path = write_contract_jsonl(batch, tmp_path / "archive.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        if line["event_id"] == "bad-4":
            line["event_time"] = "yesterday"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    with dg.instance_for_test() as instance:
        landed = _land(instance, {"source": "contract_files", "paths": [str(path)], "max_bad_fraction": 0.05})
        check = {e.check_name: e for e in landed.get_asset_check_evaluations()}["bad_fraction_within_threshold"]
        assert not check.passed
        assert check.metadata["bad_fraction"].value == pytest.approx(4 / 12)
    quarantine = pd.read_parquet(next(table_dir("event_quarantine").glob("*.parquet")))
    reasons = dict(zip(quarantine["event_id"], quarantine["reason"]))
    assert set(reasons) == {"bad-1", "bad-2", "bad-3", "bad-4"}
    assert "event_type" in reasons["bad-1"]
    assert "price: must be >= 0" in reasons["bad-2"]
    assert "user_id: missing value" in reasons["bad-3"]
    assert "event_time: unparseable timestamp" in reasons["bad-4"]
    landed_rows = sum(len(pd.read_parquet(f)) for f in table_dir("landing").rglob("*.parquet"))
    assert landed_rows == 8  # the good rows still land: a bad row never takes good ones down with it

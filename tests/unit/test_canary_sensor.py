"""The canary sensor on the local runtime: it fires (a broken canary rolled back, a quiet one promoted after its bake),
it does not fire (still baking, no canary), its cursor holds, and its events land in a real Dagster instance."""

import json

import dagster as dg
import pytest

from propensity.models.artifact import ModelRegistry
from sensors.canary import SENSORS, canary_sensor
from serving.control.deployment import CanaryPolicy
from serving.control.endpoint import LocalEndpointDeployer
from serving.endpoint_state import EndpointFiles, VariantSpec
from tests.unit.test_canary import ENDPOINT, Storefront, model_dir, register  # noqa: F401 - model_dir: a fixture

DEPLOYER = LocalEndpointDeployer(launch_server=False)


@pytest.fixture
def canary(propensity_home, model_dir):  # noqa: F811
    registry = ModelRegistry()

    def start(policy: CanaryPolicy) -> tuple[str, str]:
        champion = register(registry, model_dir)
        DEPLOYER.deploy(ENDPOINT, registry.root / champion, champion, policy)
        challenger = register(registry, model_dir)
        DEPLOYER.deploy(ENDPOINT, registry.root / challenger, challenger, policy)
        return champion, challenger

    return start


def tick(cursor=None, instance=None) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, instance=instance, resources={"deployer": DEPLOYER})
    return canary_sensor(context)


def test_a_broken_canary_is_rolled_back_and_the_registry_title_goes_back(canary):
    champion, challenger = canary(CanaryPolicy(canary_share=0.3, baking_s=3600))
    assert ModelRegistry().champion_version() == challenger
    Storefront(EndpointFiles(ENDPOINT), canary_status=500).send(300, champion)

    result = tick()

    [materialization, check] = result.asset_events
    assert materialization.asset_key == dg.AssetKey("propensity_endpoint")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["stage"] == "roll_back" and metadata["model_version"] == challenger
    assert metadata["canary_5xx"] == metadata["canary_requests"] > 0
    assert metadata["numbers"]["error_rate_difference"]["low"] > 0
    assert (check.check_name, check.passed) == ("deployment_not_rolled_back", False)
    assert DEPLOYER.variants(ENDPOINT) == [VariantSpec(champion, champion, 1.0)]
    assert ModelRegistry().champion_version() == champion  # the registry names what the storefront gets
    assert json.loads(result.cursor) == {ENDPOINT: 3}

    again = tick(cursor=result.cursor)  # the cursor holds: nothing new to report, nothing to judge
    assert again.asset_events == [] and again.cursor == result.cursor
    assert again.skip_reason.skip_message == "no canary in progress"


def test_a_quiet_canary_is_promoted_after_its_bake_and_reported_once(canary):
    champion, challenger = canary(CanaryPolicy(canary_share=0.3, baking_s=0, min_requests=50))
    Storefront(EndpointFiles(ENDPOINT)).send(600, champion)

    result = tick()

    [materialization, check] = result.asset_events
    assert materialization.metadata["stage"].value == "promote" and check.passed
    assert DEPLOYER.variants(ENDPOINT) == [VariantSpec(challenger, challenger, 1.0)]
    assert ModelRegistry().champion_version() == challenger
    assert tick(cursor=result.cursor).asset_events == []


def test_no_event_while_the_canary_bakes_or_without_a_canary(canary, propensity_home):
    assert tick().skip_reason.skip_message == "no canary in progress"  # no endpoint at all
    champion, challenger = canary(CanaryPolicy(baking_s=3600))
    Storefront(EndpointFiles(ENDPOINT)).send(600, champion)

    result = tick()

    assert result.asset_events == [] and "baking" in result.skip_reason.skip_message
    assert DEPLOYER.canary(ENDPOINT).model_version == challenger
    assert [v.weight for v in DEPLOYER.variants(ENDPOINT)] == [0.9, 0.1]


def test_a_stage_a_failed_tick_missed_is_reported_by_the_next(canary):
    """A decision recorded in the history but not reported (the tick died after it): the cursor still points
    before it, so the next tick reports it."""
    champion, _ = canary(CanaryPolicy(baking_s=3600))
    cursor = tick().cursor
    DEPLOYER.roll_back(ENDPOINT, "rolled back by hand", {"by": "operator"})
    [materialization, check] = tick(cursor=cursor).asset_events
    assert materialization.metadata["reason"].value == "rolled back by hand" and not check.passed


def test_events_land_in_a_real_instance(canary):
    champion, challenger = canary(CanaryPolicy(canary_share=0.3, baking_s=0, min_requests=50))
    Storefront(EndpointFiles(ENDPOINT)).send(600, champion)
    with dg.DagsterInstance.ephemeral() as instance:
        result = tick(instance=instance)
        for event in result.asset_events:  # what the daemon does with a sensor's asset events
            instance.report_runless_asset_event(event)
        [recorded] = instance.fetch_materializations(dg.AssetKey("propensity_endpoint"), limit=10).records
        metadata = recorded.asset_materialization.metadata
        assert metadata["stage"].value == "promote" and metadata["model_version"].value == challenger
        key = dg.AssetCheckKey(dg.AssetKey("propensity_endpoint"), "deployment_not_rolled_back")
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert check.status.value == "SUCCEEDED"
    assert SENSORS == [canary_sensor]


def test_the_asset_starts_the_canary_and_returns_and_the_sensor_decides(propensity_home, model_dir):  # noqa: F811
    from propensity_assets.deployment import propensity_endpoint

    registry = ModelRegistry()
    champion = register(registry, model_dir)
    config = {"ops": {"propensity_endpoint": {"config": {"endpoint": ENDPOINT, "baking_s": 3600.0}}}}

    def materialize():
        result = dg.materialize([propensity_endpoint], resources={"deployer": DEPLOYER}, run_config=config)
        metadata = result.asset_materializations_for_node("propensity_endpoint")[0].metadata
        [check] = result.get_asset_check_evaluations()
        return {k: v.value for k, v in metadata.items()}, check

    first, _ = materialize()
    assert (first["stage"], first["outcome"]) == ("deploy", "deployed")
    challenger = register(registry, model_dir)
    started, check = materialize()
    assert (started["stage"], started["outcome"], started["model_version"]) == (
        "start_canary",
        "in_progress",
        challenger,
    )
    assert started["canary"]["policy"]["baking_s"] == 3600.0 and check.passed
    assert DEPLOYER.canary(ENDPOINT).model_version == challenger  # returned without baking

    Storefront(EndpointFiles(ENDPOINT), canary_status=503).send(1_000, champion)
    [materialization, _] = tick().asset_events
    assert materialization.metadata["stage"].value == "roll_back"
    assert registry.champion_version() == champion

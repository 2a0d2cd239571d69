"""The spine's automation condition on a real instance: a day registered but not yet landed (its ingest queued)
does not hold back the rebuild of the days that have landed; the stock eager condition would wait for it."""

import dagster as dg

from propensity_assets.definitions import SPINE_AUTOMATION

days = dg.DynamicPartitionsDefinition(name="days")


@dg.asset(partitions_def=days)
def landed_events() -> None:
    return None


def spine_asset(condition: dg.AutomationCondition) -> dg.AssetsDefinition:
    @dg.asset(name="sessions", deps=[landed_events], automation_condition=condition)
    def sessions() -> None:
        return None

    return sessions


def requested(condition: dg.AutomationCondition) -> bool:
    defs = [landed_events, spine_asset(condition)]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(days.name, ["2026-11-19"])
        assert dg.materialize(defs, instance=instance, selection=["sessions"]).success
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert dg.materialize([landed_events], instance=instance, partition_key="2026-11-19").success
        instance.add_dynamic_partitions(days.name, ["2026-11-20"])  # exported: its ingest is queued, not yet run
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        return result.get_num_requested(dg.AssetKey("sessions")) == 1


def test_a_landed_day_rebuilds_the_spine_while_the_next_day_is_still_queued():
    assert requested(SPINE_AUTOMATION)


def test_the_stock_eager_condition_would_wait_for_the_queued_day():
    assert not requested(dg.AutomationCondition.eager())

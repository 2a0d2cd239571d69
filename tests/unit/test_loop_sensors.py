"""The closed loop's sensors on a real Dagster instance: the retraining sensor (fires on a failing monitor check, not
on a passing one, one cause gives one retrain, the cool-down absorbs repeats), the storefront export sensor and the
monitoring sensor."""

import json

import dagster as dg
import pytest

from propensity.monitoring.checks import DRIFT_ASSET, FEATURE_DRIFT_CHECK, JUDGED, PERFORMANCE_ASSET, WINDOW_START
from propensity.monitoring.performance import CALIBRATION_CHECK, PERFORMANCE_CHECK
from propensity.paths import storefront_export_dir
from sensors.monitoring import monitoring_sensor
from sensors.retraining import CAUSE_TAG, EVALUATE_FROM_TAG, RetrainCursor, retrain_decision, retrain_sensor
from sensors.storefront import storefront_export_sensor


class Verdict(dg.Config):
    passed: bool = True
    window_start: str = "2026-11-20T00:03:00+00:00"
    judged: bool = True  # False: a window too thin to judge, which passes without evidence


@dg.asset(name=DRIFT_ASSET, check_specs=[dg.AssetCheckSpec(FEATURE_DRIFT_CHECK, asset=DRIFT_ASSET)])
def drift_stand_in(config: Verdict):
    """The monitor's asset key and check name with a verdict we choose: the sensor reads only the evaluations."""
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(
        check_name=FEATURE_DRIFT_CHECK,
        passed=config.passed,
        description="PSI 0.4 on cart adds",
        metadata={WINDOW_START: config.window_start, JUDGED: config.judged},
    )


@dg.asset(
    name=PERFORMANCE_ASSET,
    check_specs=[
        dg.AssetCheckSpec(PERFORMANCE_CHECK, asset=PERFORMANCE_ASSET),
        dg.AssetCheckSpec(CALIBRATION_CHECK, asset=PERFORMANCE_ASSET),
    ],
)
def performance_stand_in(config: Verdict):
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name=PERFORMANCE_CHECK, passed=True, metadata={JUDGED: config.judged})
    yield dg.AssetCheckResult(
        check_name=CALIBRATION_CHECK,
        passed=config.passed,
        description="slope 0.6",
        metadata={WINDOW_START: config.window_start, JUDGED: config.judged},
    )


def monitor(
    instance, asset, passed: bool, window_start: str = "2026-11-20T00:03:00+00:00", judged: bool = True
) -> None:
    config = {"passed": passed, "window_start": window_start, "judged": judged}
    result = dg.materialize([asset], instance=instance, run_config={"ops": {asset.op.name: {"config": config}}})
    assert result.success


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def tick(instance, cursor: str | None = None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = retrain_sensor(context)
    return result, context.cursor


def test_a_failing_drift_check_retrains_once_with_its_cause(instance):
    monitor(instance, drift_stand_in, passed=False)
    result, cursor = tick(instance)
    assert isinstance(result, dg.RunRequest)
    assert "drift_report:no_feature_drift failed" in result.tags[CAUSE_TAG]
    assert "PSI 0.4 on cart adds" in result.tags[CAUSE_TAG]
    # the cursor holds: the same evaluation is never a second cause
    again, _ = tick(instance, cursor)
    assert isinstance(again, dg.SkipReason)


def test_the_retrain_is_calibrated_and_judged_on_traffic_since_the_earliest_failing_window(instance):
    monitor(instance, drift_stand_in, passed=False, window_start="2026-11-21T00:01:00+00:00")
    monitor(instance, performance_stand_in, passed=False, window_start="2026-11-20T23:58:00+00:00")
    result, _ = tick(instance)
    assert isinstance(result, dg.RunRequest)
    earliest = "2026-11-20T23:58:00+00:00"
    assert result.run_config == {"ops": {"training_dataset": {"config": {"evaluate_from": earliest}}}}
    assert result.tags[EVALUATE_FROM_TAG] == earliest


def test_a_retry_after_the_cool_down_is_judged_from_where_the_change_began_until_the_checks_pass(instance):
    # a retrain that stopped for too little traffic since the change retries from the same point, with more of it
    monitor(instance, drift_stand_in, passed=False, window_start="2026-11-20T00:01:00+00:00")
    first, cursor = retrain_decision(instance, RetrainCursor(seen={}), now=1000.0, cooldown_s=600.0)
    assert first.tags[EVALUATE_FROM_TAG] == "2026-11-20T00:01:00+00:00"
    monitor(instance, drift_stand_in, passed=False, window_start="2026-11-21T00:02:00+00:00")
    again, cursor = retrain_decision(instance, cursor, now=1700.0, cooldown_s=600.0)
    assert isinstance(again, dg.RunRequest) and again.tags[EVALUATE_FROM_TAG] == "2026-11-20T00:01:00+00:00"
    monitor(instance, drift_stand_in, passed=True)
    monitor(instance, performance_stand_in, passed=True)
    _, cursor = retrain_decision(instance, cursor, now=1800.0, cooldown_s=600.0)
    assert cursor.change_at is None  # the model fits again: the next change starts afresh
    monitor(instance, drift_stand_in, passed=False, window_start="2026-11-25T00:00:00+00:00")
    later, _ = retrain_decision(instance, cursor, now=2500.0, cooldown_s=600.0)
    assert later.tags[EVALUATE_FROM_TAG] == "2026-11-25T00:00:00+00:00"


def test_a_window_too_thin_to_judge_keeps_the_change_point(instance):
    monitor(instance, drift_stand_in, passed=False, window_start="2026-11-20T00:01:00+00:00")
    _, cursor = retrain_decision(instance, RetrainCursor(seen={}), now=1000.0, cooldown_s=600.0)
    monitor(instance, drift_stand_in, passed=True, judged=False)
    monitor(instance, performance_stand_in, passed=True, judged=False)
    _, cursor = retrain_decision(instance, cursor, now=1100.0, cooldown_s=600.0)
    assert cursor.change_at == "2026-11-20T00:01:00+00:00"  # passing unjudged is no evidence the model fits again
    monitor(instance, drift_stand_in, passed=False, window_start="2026-11-22T00:00:00+00:00")
    retry, _ = retrain_decision(instance, cursor, now=1700.0, cooldown_s=600.0)
    assert retry.tags[EVALUATE_FROM_TAG] == "2026-11-20T00:01:00+00:00"


def test_passing_checks_do_not_retrain(instance):
    monitor(instance, drift_stand_in, passed=True)
    monitor(instance, performance_stand_in, passed=True)
    result, cursor = tick(instance)
    assert isinstance(result, dg.SkipReason)
    assert "no new failing" in result.skip_message
    assert json.loads(cursor)["last_retrain_at"] is None


def test_a_failure_during_the_cool_down_is_absorbed_and_a_later_one_retrains(instance):
    monitor(instance, drift_stand_in, passed=False)
    first, cursor = retrain_decision(instance, RetrainCursor(seen={}), now=1000.0, cooldown_s=600.0)
    assert isinstance(first, dg.RunRequest)
    monitor(instance, performance_stand_in, passed=False)  # a calibration failure while the retrain runs
    absorbed, cursor = retrain_decision(instance, cursor, now=1300.0, cooldown_s=600.0)
    assert isinstance(absorbed, dg.SkipReason) and "cool-down" in absorbed.skip_message
    assert "calibration" in absorbed.skip_message
    quiet, cursor = retrain_decision(instance, cursor, now=1700.0, cooldown_s=600.0)
    assert isinstance(quiet, dg.SkipReason)  # absorbed means gone, not queued for after the cool-down
    monitor(instance, drift_stand_in, passed=False)  # new evidence after the cool-down
    second, cursor = retrain_decision(instance, cursor, now=1800.0, cooldown_s=600.0)
    assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key
    assert cursor.last_retrain_at == 1800.0


def test_the_weekly_schedule_retrains_with_its_cause():
    from sensors.retraining import retrain_schedule

    assert retrain_schedule.job_name == "retrain" and retrain_schedule.cron_schedule == "0 3 * * 1"
    assert retrain_schedule.tags[CAUSE_TAG] == "weekly schedule"


def test_storefront_exports_are_ingested_once_each(propensity_home):
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        assert isinstance(storefront_export_sensor(context), dg.SkipReason)
        export = storefront_export_dir()
        export.mkdir(parents=True)
        (export / "2026-11-30.jsonl").write_text("{}\n")
        (export / ".2026-12-01.jsonl.tmp").write_text("half written\n")  # not a finished export
        result = storefront_export_sensor(context)
        assert [r.partition_key for r in result.run_requests] == ["2026-11-30"]
        config = result.run_requests[0].run_config["ops"]["source_events"]["config"]
        assert config == {"source": "contract_files", "paths": [str(export / "2026-11-30.jsonl")]}
        assert result.dynamic_partitions_requests[0].partition_keys == ["2026-11-30"]
        again = storefront_export_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
        assert isinstance(again, dg.SkipReason)
        (export / "2026-12-01.jsonl").write_text("{}\n")
        later = storefront_export_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
        assert [r.partition_key for r in later.run_requests] == ["2026-12-01"]


@dg.asset(name="session_events")
def session_events_stand_in():
    return None


@dg.asset(name="decision_log", partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1))
def decision_log_stand_in():
    return None


def test_monitoring_runs_after_each_session_events_rebuild():
    with dg.instance_for_test() as instance:
        defs = dg.Definitions(
            assets=[session_events_stand_in, decision_log_stand_in],
            jobs=[dg.define_asset_job("monitoring", selection=[decision_log_stand_in])],
            sensors=[monitoring_sensor],
        )
        sensor = defs.resolve_sensor_def("monitoring_sensor")
        assert not sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs)).run_requests
        dg.materialize([session_events_stand_in], instance=instance)
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        requests = sensor.evaluate_tick(context).run_requests
        assert len(requests) == 1 and requests[0].run_key.startswith("monitor-")
        later = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=context.cursor)
        )
        assert not later.run_requests  # the cursor holds: one run per rebuild

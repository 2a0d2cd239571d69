"""The monitor assets and their checks on a real instance: a registered model with its reference profile, labelled
decisions in the lake, drift, performance, KPIs and the dashboard. A quiet window passes every check; the next
window, with a shifted feature and shoppers who buy half as often as the model thinks, fails drift and calibration,
and the retraining sensor then asks for one retrain. Also the online-features freshness check."""

import json
import time

import dagster as dg
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.artifact import ModelRegistry, write_artifact
from propensity.models.metrics import evaluate
from propensity.monitoring.checks import (
    FEATURE_DRIFT_CHECK,
    KPI_REGRESSION_CHECK,
    MULTIVARIATE_DRIFT_CHECK,
    SAMPLE_RATIO_CHECK,
)
from propensity.monitoring.decisions import DECISION_COLUMNS, LABELLED_COLUMNS
from propensity.monitoring.performance import CALIBRATION_CHECK, PERFORMANCE_CHECK
from propensity.monitoring.reference import build_reference
from propensity.paths import home, table_dir
from propensity_assets import freshness, monitoring
from resources.kafka import KafkaResource
from resources.lake import LakeResource
from sensors.retraining import RetrainCursor, retrain_decision

SHIFTED = "session_cart_value"
HOLDOUT_SHARE = 0.1
THRESHOLD = 0.2


def shoppers(rng: np.random.Generator, n: int, shift_sd: float = 0.0, shifted: tuple[str, ...] = (SHIFTED,)):
    """Feature rows with every model feature: counts, amounts, a missing-heavy recency, hour and weekday; the
    `shifted` features moved by `shift_sd` of their SD."""
    columns = {}
    for i, name in enumerate(MODEL_FEATURE_NAMES):
        columns[name] = rng.gamma(2.0, 1.0 + i % 5, n)
    columns["session_hour_utc"] = rng.integers(0, 24, n).astype(float)
    columns["session_weekday"] = rng.integers(0, 7, n).astype(float)
    recency = columns["user_days_since_last_order"]
    columns["user_days_since_last_order"] = np.where(rng.random(n) < 0.5, np.nan, recency)
    frame = pd.DataFrame(columns)[list(MODEL_FEATURE_NAMES)]
    for name in shifted:
        frame[name] += shift_sd * frame[name].std()
    return frame


def true_probability(frame: pd.DataFrame) -> np.ndarray:
    return expit(-2.5 + 0.5 * (frame[SHIFTED] - 6) + 0.3 * (frame["session_events"] - 6))


def register_model(rng: np.random.Generator) -> str:
    train = shoppers(rng, 20_000)
    y = rng.random(len(train)) < true_probability(train)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": 1, "deterministic": True},
        lgb.Dataset(train, y.astype(int)),
        num_boost_round=60,
    )
    valid = shoppers(rng, 5_000)
    y_valid = (rng.random(len(valid)) < true_probability(valid)).astype(int)
    p_valid = booster.predict(valid)
    importance = dict(zip(MODEL_FEATURE_NAMES, (float(v) for v in booster.feature_importance("gain"))))
    directory = home() / "models" / "work" / "monitored"
    write_artifact(
        directory,
        booster=booster,
        calibrator={"method": "identity"},
        baseline={},
        features={"feature_service": "purchase_propensity_v1", "features": list(MODEL_FEATURE_NAMES)},
        training={},
        metrics={"calibrated": evaluate(y_valid, p_valid)},
        policy={"threshold": THRESHOLD, "holdout_share": HOLDOUT_SHARE, "offer": "discount", "economics": None},
        reference=build_reference(train, p_valid, y_valid, importance),
    )
    return ModelRegistry().register(directory, promote=True, reason="test")


def land_window(
    rng,
    version: str,
    start: pd.Timestamp,
    n: int,
    shift_sd: float = 0.0,
    buy_factor: float = 1.0,
    shifted=(SHIFTED,),
    filtered_tail: int = 0,
):
    """One day of labelled decisions (one per session) and their decision log, as the decision assets write them;
    the last `filtered_tail` decisions are ones the monitors leave out (fallback scores, treated)."""
    from propensity.models.artifact import load_artifact

    features = shoppers(rng, n, shift_sd, shifted)
    score = load_artifact(ModelRegistry().root / version).predict(features)
    holdout = rng.random(n) < HOLDOUT_SHARE
    treated = ~holdout & (score >= THRESHOLD)
    label = (rng.random(n) < buy_factor * true_probability(features)).astype("int64")
    decisions = pd.DataFrame(
        {
            "request_id": [f"r{start.value}-{i}" for i in range(n)],
            "decided_at": start + pd.to_timedelta(np.arange(n), unit="s"),
            "session_id": [f"s{start.value}-{i}" for i in range(n)],
            "user_id": [f"u{i % 500}" for i in range(n)],
            "endpoint": "propensity",
            "variant": version,
            "model_version": version,
            "propensity": score,
            "fallback": False,
            "fallback_reason": None,
            **{name: features[name].to_numpy() for name in MODEL_FEATURE_NAMES},
            "treated": treated,
            "holdout": holdout,
            "offer": np.where(treated, "discount", None),
            "treatment_probability": np.where(score >= THRESHOLD, 1 - HOLDOUT_SHARE, 0.0),
            "latency_ms": 1.0,
        }
    ).astype(DECISION_COLUMNS)
    if filtered_tail:
        tail = decisions.index[-filtered_tail:]
        decisions.loc[tail, ["fallback", "treated", "holdout"]] = [True, True, False]
        decisions.loc[tail, "offer"] = "discount"
        decisions.loc[tail, "treatment_probability"] = 1 - HOLDOUT_SHARE
    # The sessions began hours before their decisions, as when a storefront replays a past day (make loop): the
    # window's start handed to a retrain is the sessions' own time.
    labelled = decisions.assign(
        session_start=decisions["decided_at"] - pd.Timedelta(hours=6),
        label=label,
        revenue=label * 50.0,
        time_to_purchase_s=np.where(label == 1, 120.0, np.nan),
        matured_at=decisions["decided_at"] + pd.Timedelta(minutes=30),
    ).astype(LABELLED_COLUMNS)
    day = start.strftime("%Y-%m-%d")
    for table, frame in (("decision_log", decisions), ("labelled_decisions", labelled)):
        path = table_dir(table) / f"date={day}"
        path.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path / "data.parquet", index=False)


LAKE = {"lake": LakeResource()}
MONITORS = [monitoring.drift_report_asset, monitoring.performance_monitor, monitoring.kpi_monitor]


def run_monitors(instance) -> dict[str, bool]:
    result = dg.materialize([*MONITORS, monitoring.merchandising_dashboard], instance=instance, resources=LAKE)
    assert result.success
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_a_quiet_window_passes_and_a_shifted_miscalibrated_one_fails_and_retrains(propensity_home):
    rng = np.random.default_rng(20261201)
    version = register_model(rng)
    with dg.instance_for_test() as instance:
        land_window(rng, version, pd.Timestamp("2026-11-30 00:00", tz="UTC"), 4_000)
        quiet = run_monitors(instance)
        assert quiet[FEATURE_DRIFT_CHECK] and quiet[MULTIVARIATE_DRIFT_CHECK]
        assert quiet[PERFORMANCE_CHECK] and quiet[CALIBRATION_CHECK]
        assert quiet[SAMPLE_RATIO_CHECK] and quiet[KPI_REGRESSION_CHECK]
        drift = json.loads((home() / "monitoring" / "drift_report.json").read_text())
        assert drift["report"]["window_rows"] == 4_000 and drift["model_version"] == version
        page = home() / "dashboards" / "latest.html"
        assert page.exists() and version in page.read_text()
        cursor = RetrainCursor(seen={})
        nothing, cursor = retrain_decision(instance, cursor, now=time.time(), cooldown_s=600)
        assert isinstance(nothing, dg.SkipReason)

        # The next day: the window starts after the last one, shoppers changed and buy half as often.
        land_window(rng, version, pd.Timestamp("2026-12-01 00:00", tz="UTC"), 4_000, shift_sd=0.5, buy_factor=0.5)
        shifted = run_monitors(instance)
        assert not shifted[FEATURE_DRIFT_CHECK] and not shifted[CALIBRATION_CHECK]
        drift = json.loads((home() / "monitoring" / "drift_report.json").read_text())
        assert drift["report"]["drifted_features"][0] == SHIFTED and drift["report"]["window_rows"] == 4_000
        request, cursor = retrain_decision(instance, cursor, now=time.time(), cooldown_s=600)
        assert isinstance(request, dg.RunRequest)
        assert request.tags["propensity/evaluate_from"] == "2026-11-30T18:00:00+00:00"  # the shifted sessions' start
        assert "no_feature_drift failed" in request.tags["propensity/retrain_cause"]
        assert "realised_calibration_within_bounds failed" in request.tags["propensity/retrain_cause"]


def test_yesterdays_weekday_in_the_one_day_user_counts_does_not_alarm(propensity_home):
    """After a busy Sunday every one-day user count is up (0.24 SD on make loop's store); the shoppers are the same."""
    rng = np.random.default_rng(11)
    version = register_model(rng)
    one_day = tuple(name for name in MODEL_FEATURE_NAMES if name.endswith("_1d"))
    with dg.instance_for_test() as instance:
        land_window(rng, version, pd.Timestamp("2026-11-30 00:00", tz="UTC"), 4_000, shift_sd=0.5, shifted=one_day)
        checks = run_monitors(instance)
        assert checks[FEATURE_DRIFT_CHECK] and checks[MULTIVARIATE_DRIFT_CHECK]
        drift = json.loads((home() / "monitoring" / "drift_report.json").read_text())
        assert set(one_day) <= set(drift["excluded_from_alarm"]) and drift["report"]["window_rows"] == 4_000


def test_a_window_ends_at_its_last_decision_and_the_next_holds_only_newer_ones(propensity_home):
    """The window's end is its last decision, also when the monitors leave that decision out (a fallback score, a
    treated session): taken after the filter, the next window began a day early."""
    rng = np.random.default_rng(3)
    version = register_model(rng)
    with dg.instance_for_test() as instance:
        first = pd.Timestamp("2026-11-30 00:00", tz="UTC")
        land_window(rng, version, first, 2_000, filtered_tail=200)
        run_monitors(instance)
        last = first + pd.Timedelta(seconds=1_999)
        for asset in (monitoring.DRIFT_ASSET, monitoring.PERFORMANCE_ASSET):
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            assert event.asset_materialization.metadata["window_end"].value == str(last)
        second = pd.Timestamp("2026-12-01 00:00", tz="UTC")
        land_window(rng, version, second, 2_000)
        run_monitors(instance)
        drift = json.loads((home() / "monitoring" / "drift_report.json").read_text())
        assert drift["report"]["window_rows"] == 2_000
        assert drift["window_start"] == (second - pd.Timedelta(hours=6)).isoformat()


def test_too_few_decisions_are_not_judged(propensity_home):
    rng = np.random.default_rng(7)
    version = register_model(rng)
    with dg.instance_for_test() as instance:
        land_window(rng, version, pd.Timestamp("2026-11-30 00:00", tz="UTC"), 100, shift_sd=2.0)
        checks = run_monitors(instance)
        assert checks[FEATURE_DRIFT_CHECK] and checks[PERFORMANCE_CHECK]  # 100 sessions: too few to judge
        result = dg.materialize([monitoring.drift_report_asset], instance=instance, resources=LAKE)
        evaluation = result.get_asset_check_evaluations()[0]
        assert "not judged" in evaluation.description


@dg.asset(name="online_features")
def online_features_stand_in():
    return None


@pytest.mark.parametrize("stream_behind", [False, True])
def test_online_features_freshness_per_view(propensity_home, stream_behind):
    """Never materialised: fails. Just materialised, stream idle with nothing waiting: passes. Events waiting in the
    stream's inbox while its last batch is older than the stall bound: fails, naming the session view."""
    from propensity.streaming.job import inbox_dir, progress_path

    with dg.instance_for_test() as instance:
        defs = dg.Definitions(
            assets=[online_features_stand_in],
            asset_checks=[freshness.online_features_fresh],
            resources={"kafka": KafkaResource()},
        )
        check_job = dg.define_asset_job("fresh", selection=dg.AssetSelection.checks(freshness.online_features_fresh))
        job = dg.Definitions.merge(defs, dg.Definitions(jobs=[check_job])).resolve_job_def("fresh")

        def evaluate_check():
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            return result.get_asset_check_evaluations()[0]

        never = evaluate_check()
        assert not never.passed and "never materialised" in never.description
        dg.materialize([online_features_stand_in], instance=instance)
        if stream_behind:
            progress_path("file").parent.mkdir(parents=True, exist_ok=True)
            progress_path("file").write_text(json.dumps({"processed_at": time.time() - 3600}))
            inbox_dir().mkdir(parents=True, exist_ok=True)
            (inbox_dir() / "waiting.jsonl").write_text("{}\n")
        verdict = evaluate_check()
        assert verdict.passed is (not stream_behind)
        if stream_behind:
            assert "session_activity" in verdict.description

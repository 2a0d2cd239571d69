"""Metrics, calibration, the artifact's integrity, deterministic training, the time split and offer thresholds."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from propensity.models.artifact import ArtifactIntegrityError, ModelRegistry, load_artifact, write_artifact
from propensity.models.calibration import METHODS, apply_calibrator
from propensity.models.calibration_fit import choose_calibrator, fit_calibrator
from propensity.models.dataset import decision_points, warm_up_days
from propensity.models.metrics import (
    bootstrap_weights,
    expected_calibration_error,
    log_loss,
    roc_auc,
    top_decile,
)
from propensity.models.offers import (
    HILLSTROM_WOMENS_LIFT,
    OfferEconomics,
    expected_gain,
    hillstrom_relative_lift,
    intervention_threshold,
)
from propensity.models.training import (
    LightGBMSettings,
    fit_logistic_baseline,
    predict_logistic_baseline,
    train_lightgbm,
)


def test_ece_matches_a_hand_computation():
    # 6 predictions, 3 equal-mass bins of 2 (sorted by p):
    # bin 1: p 0.1, 0.2 -> mean 0.15, outcomes 0, 1 -> rate 0.5, gap 0.35
    # bin 2: p 0.4, 0.5 -> mean 0.45, outcomes 0, 0 -> rate 0.0, gap 0.45
    # bin 3: p 0.8, 0.9 -> mean 0.85, outcomes 1, 1 -> rate 1.0, gap 0.15
    # ECE = (2*0.35 + 2*0.45 + 2*0.15) / 6 = 0.31666...
    p = [0.9, 0.1, 0.5, 0.2, 0.8, 0.4]
    y = [1, 0, 0, 1, 1, 0]
    assert expected_calibration_error(y, p, bins=3) == pytest.approx(0.95 / 3)
    assert expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], bins=2) == pytest.approx(0.0)


@pytest.mark.parametrize("n", [7, 1000])
def test_weighted_metrics_equal_copied_rows_and_scikit_learn(n):
    """A bootstrap resample is a weight vector: each metric on weights must equal it on the copied rows."""
    from sklearn.metrics import log_loss as sklearn_log_loss
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(n)
    p = np.round(rng.random(n), 2)  # rounded: ties, which the AUC counts half and the ECE's bins split
    y = (rng.random(n) < p).astype(int)
    y[:2] = [0, 1]
    weights = next(bootstrap_weights(n, 1, seed=3))[0]
    copies = np.repeat(np.arange(n), weights.astype(int))
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    untied = p + rng.random(n) * 1e-3  # no ties: the AUC's other path
    assert roc_auc(y, untied, weights) == pytest.approx(roc_auc_score(y, untied, sample_weight=weights), abs=1e-12)
    assert roc_auc(y, p, weights) == pytest.approx(roc_auc_score(y[copies], p[copies]), abs=1e-12)
    assert log_loss(y, p, weights) == pytest.approx(sklearn_log_loss(y[copies], np.clip(p[copies], 1e-7, 1 - 1e-7)))
    assert expected_calibration_error(y, p, weights=weights) == pytest.approx(
        expected_calibration_error(y[copies], p[copies]), abs=1e-12
    )


def test_bootstrap_by_group_gives_a_session_one_count():
    groups = np.repeat(["a", "b", "c", "d"], [1, 2, 3, 4])
    for chunk in bootstrap_weights(len(groups), 50, seed=1, groups=groups):
        for g in "abcd":
            assert (chunk[:, groups == g] == chunk[:, groups == g][:, :1]).all()
        assert set(np.unique(chunk)) <= set(range(5))


def test_top_decile_lift_and_capture():
    y = np.array([1] * 5 + [0] * 95)
    p = np.linspace(1, 0, 100)  # the 5 buyers score highest
    lift, captured = top_decile(y, p)
    assert lift == pytest.approx((5 / 10) / 0.05)
    assert captured == 1.0


def _miscalibrated(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-2.5, 1.2, n)
    y = (rng.random(n) < expit(true_logit)).astype(int)
    return 2.0 * true_logit, y  # overconfident raw scores (twice the true log-odds)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "identity"])  # identity maps nothing
def test_each_calibrator_fixes_an_overconfident_score_and_survives_json(method):
    raw, y = _miscalibrated()
    calibrator = json.loads(json.dumps(fit_calibrator(method, raw, y)))
    calibrated = apply_calibrator(calibrator, raw)
    assert expected_calibration_error(y, calibrated) < 0.01 < expected_calibration_error(y, expit(raw))
    assert calibrated.min() > 0 and calibrated.max() < 1  # never a certain 0 or 1


def test_choice_is_by_cross_validated_log_loss():
    raw, y = _miscalibrated(seed=1)
    calibrator, evidence = choose_calibrator(raw, y)
    losses = evidence["cv_log_loss"]
    assert calibrator["method"] != "identity" and losses[calibrator["method"]] < losses["identity"]
    assert (
        losses[calibrator["method"]] - losses[evidence["best"]] <= evidence["paired_se_vs_best"][calibrator["method"]]
    )


def test_an_already_calibrated_score_is_left_alone():
    """Every map fits noise a little; none is better than leaving a calibrated score alone by more than its SE."""
    rng = np.random.default_rng(5)
    true_logit = rng.normal(-2.5, 1.2, 20_000)
    y = (rng.random(len(true_logit)) < expit(true_logit)).astype(int)
    calibrator, evidence = choose_calibrator(true_logit, y)
    assert calibrator["method"] == "identity", evidence


def _frame(n=4000, seed=3):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.integers(0, 5, n).astype(float)})
    X.loc[rng.random(n) < 0.1, "b"] = np.nan
    y = (rng.random(n) < expit(-2 + X["a"] - 0.5 * X["c"] + np.nan_to_num(X["b"]))).astype(int).to_numpy()
    return X, y


def test_training_is_deterministic():
    X, y = _frame()
    settings = LightGBMSettings(min_data_in_leaf=20, max_rounds=200, early_stopping_rounds=20)
    first = train_lightgbm(X[:3000], y[:3000], X[3000:], y[3000:], settings)
    second = train_lightgbm(X[:3000], y[:3000], X[3000:], y[3000:], settings)
    assert first.model_to_string() == second.model_to_string()
    assert fit_logistic_baseline(X, y) == fit_logistic_baseline(X, y)


def test_baseline_from_numbers_equals_its_fit():
    from sklearn.linear_model import LogisticRegression

    X, y = _frame()
    model = json.loads(json.dumps(fit_logistic_baseline(X, y)))
    assert "b__missing" in model["design_columns"]
    compressed = np.sign(X) * np.log1p(X.abs())
    design = compressed.fillna(compressed.median()).assign(b__missing=X["b"].isna().astype(float))
    standardised = (design - design.mean()) / design.std(ddof=0)
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(standardised.to_numpy(), y)
    expected = reference.predict_proba(standardised.to_numpy())[:, 1]
    assert np.allclose(predict_logistic_baseline(model, X), expected, atol=1e-6)
    # beyond the training range the baseline holds its edge value instead of extrapolating
    far = X.head(1).assign(a=1e6)
    edge = X.head(1).assign(a=X["a"].max())
    assert predict_logistic_baseline(model, far) == pytest.approx(predict_logistic_baseline(model, edge))


def _artifact(tmp_path, X, y):
    booster = train_lightgbm(
        X[:3000], y[:3000], X[3000:], y[3000:], LightGBMSettings(min_data_in_leaf=20, max_rounds=50)
    )
    return write_artifact(
        tmp_path / "candidate",
        booster=booster,
        calibrator={"method": "temperature", "temperature": 1.1},
        baseline=fit_logistic_baseline(X, y),
        features={"feature_service": "purchase_propensity_v1", "features": list(X.columns)},
        training={"fingerprint": "abc"},
        metrics={"calibrated": {"log_loss": 0.2}},
    )


def test_artifact_round_trip_and_tampering_is_refused(tmp_path):
    X, y = _frame()
    directory = _artifact(tmp_path, X, y)
    loaded = load_artifact(directory)
    assert np.allclose(loaded.predict(X), expit(loaded.booster.predict(X, raw_score=True) / 1.1))
    assert not list(directory.glob("*.pkl")) and not list(directory.glob("*.pickle"))

    calibrator = directory / "calibrator.json"
    calibrator.write_text(calibrator.read_text().replace("1.1", "0.2"))
    with pytest.raises(ArtifactIntegrityError, match="calibrator.json"):
        load_artifact(directory)


def test_a_version_registered_before_policies_treats_no_one_and_an_unlisted_policy_is_ignored(tmp_path):
    from propensity.models.artifact import MANIFEST, NO_INTERVENTION, POLICY_FILE

    X, y = _frame()
    directory = _artifact(tmp_path, X, y)
    manifest = json.loads((directory / MANIFEST).read_text())
    del manifest[POLICY_FILE]
    (directory / MANIFEST).write_text(json.dumps(manifest))  # the manifest of a version from before the closed loop
    (directory / POLICY_FILE).write_text(json.dumps({"threshold": 0.0, "holdout_share": 0.0, "offer": "all"}))
    assert load_artifact(directory).policy == NO_INTERVENTION  # a file the manifest does not seal is never read


def test_registry_promotes_only_what_passed(tmp_path):
    X, y = _frame()
    registry = ModelRegistry(tmp_path / "registry")
    first = registry.register(_artifact(tmp_path, X, y), promote=True, reason="all quality gates passed")
    second = registry.register(_artifact(tmp_path, X, y), promote=False, reason="not_worse_than_baseline failed")
    assert registry.champion_version() == first != second
    statuses = {v["version"]: v["status"] for v in registry.versions()}
    assert statuses == {first: "champion", second: "rejected"}


def test_splits_are_by_time_and_never_share_a_session():
    t0 = pd.Timestamp("2026-11-02", tz="UTC")
    sessions = pd.DataFrame(
        {
            "session_id": [f"s{i}" for i in range(10)],
            "session_start": [t0 + pd.Timedelta(hours=i) for i in range(10)],
            "session_end": [t0 + pd.Timedelta(hours=i, minutes=2) for i in range(10)],
            "has_purchase": [i % 3 == 0 for i in range(10)],
        }
    )
    rows = []
    for i in range(10):
        for k in range(3):
            rows.append(
                {
                    "session_id": f"s{i}",
                    "user_id": "u",
                    "event_timestamp": t0 + pd.Timedelta(hours=i, minutes=k),
                    "decision_event_id": f"e{i}{k}",
                    "purchases_so_far": 1 if (i % 3 == 0 and k == 2) else 0,
                }
            )
    points, boundaries = decision_points(pd.DataFrame(rows), sessions, valid_fraction=0.2, test_fraction=0.2)
    assert (points.groupby("session_id")["split"].nunique() == 1).all()
    order = {"train": 0, "valid": 1, "test": 2}
    by_session = points.groupby("session_id").agg(split=("split", "first"), start=("session_start", "first"))
    ranked = by_session.sort_values("start")["split"].map(order).to_numpy()
    assert (np.diff(ranked) >= 0).all() and set(by_session["split"]) == {"train", "valid", "test"}
    # the decision point at (or after) the first purchase is not a training example
    assert "e32" not in set(points["decision_event_id"]) and "e31" in set(points["decision_event_id"])
    assert points.loc[points["session_id"] == "s3", "label"].eq(1).all()
    assert points["decision_id"].is_unique
    # the first and last sessions touch the data's edges: maybe begun earlier, maybe not over: no examples
    assert {"s0", "s9"}.isdisjoint(points["session_id"])


def test_offer_threshold_is_where_expected_gain_turns_positive():
    economics = OfferEconomics(margin=20.0, discount=5.0, contact_cost=0.1, relative_lift=0.5)
    threshold = intervention_threshold(economics)
    assert threshold == pytest.approx(0.1 / (1.5 * 15 - 20))
    p = np.array([threshold * 0.9, threshold * 1.1])
    gain = expected_gain(p, economics)
    assert gain[0] < 0 < gain[1]
    assert intervention_threshold(OfferEconomics(20.0, 10.0, 0.1, 0.5)) is None  # the discount eats the lift


def test_hillstrom_lift_is_measured_on_the_randomised_arms():
    lift = hillstrom_relative_lift()
    # The publisher's statistics: Womens 0.00884 vs No E-Mail 0.00573
    assert lift["treated_conversion"] == pytest.approx(0.00884, abs=5e-5)
    assert lift["control_conversion"] == pytest.approx(0.00573, abs=5e-5)
    assert (lift["treated_n"], lift["control_n"]) == (21_387, 21_306)


def test_the_configured_offer_lift_is_the_one_measured_on_hillstrom():
    # The offer policy runs without the dataset on the configured lift; it must be the measured one, not a guess.
    assert HILLSTROM_WOMENS_LIFT == pytest.approx(hillstrom_relative_lift()["relative_lift"], abs=5e-6)


def _metrics(log_loss, ece=0.01):
    return {"log_loss": log_loss, "ece": ece}


@pytest.mark.parametrize(
    ("calibrated", "baseline", "champion", "failing"),
    [
        (_metrics(0.20), _metrics(0.25), _metrics(0.201), set()),
        (_metrics(0.26), _metrics(0.25), None, {"not_worse_than_baseline"}),
        (_metrics(0.20, ece=0.05), _metrics(0.25), None, {"ece_within_bound"}),
        (_metrics(0.21), _metrics(0.25), _metrics(0.20), {"not_worse_than_champion"}),
    ],
)
def test_quality_gates_fail_exactly_where_the_challenger_falls_short(calibrated, baseline, champion, failing):
    from propensity.models.gates import quality_gates

    gates = quality_gates(
        {"calibrated": calibrated, "baseline": baseline}, champion, max_ece=0.02, champion_tolerance=0.002
    )
    assert {g.name for g in gates if not g.passed} == failing
    assert {g.name for g in gates} == {"not_worse_than_baseline", "ece_within_bound", "not_worse_than_champion"}


def one_session_a_day(t0: pd.Timestamp, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sessions (one a day at noon, every fourth purchasing) and their one decision point each."""
    sessions = pd.DataFrame(
        {
            "session_id": [f"s{d}" for d in range(days)],
            "session_start": [t0 + pd.Timedelta(days=d, hours=12) for d in range(days)],
            "session_end": [t0 + pd.Timedelta(days=d, hours=12, minutes=5) for d in range(days)],
            "has_purchase": [d % 4 == 0 for d in range(days)],
        }
    )
    prefix = pd.DataFrame(
        {
            "session_id": sessions["session_id"],
            "user_id": "u",
            "event_timestamp": sessions["session_start"] + pd.Timedelta(minutes=1),
            "decision_event_id": [f"e{d}" for d in range(days)],
            "purchases_so_far": 0,
        }
    )
    return sessions, prefix


def test_the_first_user_window_of_a_long_history_is_left_out_of_training():
    """Sessions in the first 30 days have user windows cut by the data's first day: with 70 days of history they are
    not training examples; a week (the demo) keeps everything; an explicit value wins."""
    t0 = pd.Timestamp("2026-09-01", tz="UTC")
    days = 70
    sessions, prefix = one_session_a_day(t0, days)
    assert warm_up_days(sessions) == 30 and warm_up_days(sessions.head(59)) == 0
    assert warm_up_days(sessions.head(60)) == 30  # sixty calendar days of history: twice the longest window
    points, _ = decision_points(prefix, sessions)
    kept_days = sorted(int(s[1:]) for s in points["session_id"])
    assert kept_days == list(range(30, days - 1))  # the last session touches the data's end: no example
    week, _ = decision_points(prefix.head(7), sessions.head(7))
    assert len(week) == 5  # all but the two at the data's edges
    explicit, _ = decision_points(prefix, sessions, warm_up=5)
    assert min(int(s[1:]) for s in explicit["session_id"]) == 5
    with pytest.raises(ValueError, match="warm_up_days"):
        warm_up_days(sessions, -1)


def test_after_a_detected_change_validation_and_test_are_the_traffic_since_the_change():
    """evaluate_from: validation is the earlier half of the sessions since the change, test the later half, and
    everything before trains; a change before the first session or after the last is refused."""
    t0 = pd.Timestamp("2026-09-01", tz="UTC")
    days = 20
    sessions, prefix = one_session_a_day(t0, days)
    change = t0 + pd.Timedelta(days=14)
    points, boundaries = decision_points(prefix, sessions, evaluate_from=change)
    split = dict(zip(points["session_id"], points["split"]))
    assert boundaries.valid_start == t0 + pd.Timedelta(days=14, hours=12)
    assert boundaries.test_start == t0 + pd.Timedelta(days=16, hours=12)  # of s14..s18 (s19 touches the end)
    assert {s for s, part in split.items() if part == "train"} == {f"s{d}" for d in range(1, 14)}
    assert {s for s, part in split.items() if part == "valid"} == {"s14", "s15"}
    assert {s for s, part in split.items() if part == "test"} == {"s16", "s17", "s18"}
    for outside in (t0 - pd.Timedelta(days=1), t0 + pd.Timedelta(days=days)):
        with pytest.raises(ValueError, match="evaluate_from"):
            decision_points(prefix, sessions, evaluate_from=outside)

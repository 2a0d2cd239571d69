"""Retraining the offer policy on actual uplift: the log, the champion/challenger verdict, and the uplift rule the
scorer applies (compiled trees equal to the learner's own predictions)."""

import json

import numpy as np
import pandas as pd
import pytest

from propensity.features.definitions import MODEL_FEATURE_NAMES, PROPENSITY_INPUT, UPLIFT_FEATURE_NAMES
from propensity.uplift.ab import ab_figures, format_figure
from propensity.uplift.learners import LEARNERS, MIN_ARM_ROWS, fit_uplift
from propensity.uplift.policy import OfferTerms
from propensity.uplift.training import evaluation_half, scoring_rows, train_challenger, uplift_log
from serving.decision import DecisionPolicy
from serving.uplift import CompiledUplift
from tests.uplift_logs import RESPONSIVE_FEATURE, labelled_log

TERMS = OfferTerms()


def test_the_log_keeps_each_sessions_first_decision_and_its_realised_profit():
    labelled = labelled_log(400, lift=0.2, seed=1)
    later = labelled.iloc[:50].copy()
    later["decided_at"] += pd.Timedelta(minutes=5)
    later["request_id"] += "-later"
    later["treated"] = ~later["treated"]
    log = uplift_log(pd.concat([later, labelled]), TERMS)
    assert len(log) == 400
    first = labelled.set_index("session_id").loc[log.session_ids]
    np.testing.assert_array_equal(log.treated, first["treated"].to_numpy(float))
    expected = TERMS.realised_profit(first["revenue"].to_numpy(), first["treated"].to_numpy())
    np.testing.assert_allclose(log.reward, expected)
    assert list(log.X.columns) == list(UPLIFT_FEATURE_NAMES)


def test_a_log_that_contradicts_its_probabilities_is_refused():
    labelled = labelled_log(100, lift=0.2)
    labelled.loc[labelled["treated"], "treatment_probability"] = 0.0
    with pytest.raises(ValueError, match="contradict"):
        uplift_log(labelled, TERMS)


def test_the_evaluation_half_splits_whole_users_stably():
    users = np.array([f"u{i // 3}" for i in range(3000)])
    held = evaluation_half(users)
    assert 0.4 < held.mean() < 0.6
    assert pd.Series(held).groupby(users).nunique().max() == 1
    np.testing.assert_array_equal(held, evaluation_half(users))


def test_a_challenger_that_finds_who_is_moved_replaces_a_policy_that_treats_no_one():
    log = uplift_log(labelled_log(8000, lift=0.3, seed=2), TERMS)
    challenger = train_challenger(log, np.zeros(len(log)), resamples=200)
    assert challenger.promote, challenger.reason
    responsive = log.X[RESPONSIVE_FEATURE].to_numpy() > 0
    treat = challenger.model.predict(log.X) > 0
    assert treat[responsive].mean() > 0.8 and treat[~responsive].mean() < 0.2


def test_a_challenger_that_is_no_better_is_refused():
    # No effect anywhere: an offer only gives the discount away. The current policy already treats no one.
    log = uplift_log(labelled_log(8000, lift=0.0, seed=3), TERMS)
    challenger = train_challenger(log, np.zeros(len(log)), resamples=200)
    assert challenger.model is not None and not challenger.promote
    assert "the current policy stays" in challenger.reason


def test_too_little_logged_data_fits_nothing():
    log = uplift_log(labelled_log(2 * MIN_ARM_ROWS, lift=0.3, seed=4), TERMS)
    challenger = train_challenger(log, np.zeros(len(log)))
    assert challenger.model is None and not challenger.promote
    assert f"at least {MIN_ARM_ROWS}" in challenger.reason


@pytest.mark.parametrize("learner", LEARNERS)
def test_the_compiled_uplift_model_equals_the_learners_prediction(learner):
    labelled = labelled_log(3000, lift=0.3, seed=5)
    labelled.loc[labelled.index[::7], UPLIFT_FEATURE_NAMES[1]] = np.nan  # missing values take the default branch
    log = uplift_log(labelled, TERMS)
    y = (log.reward > 0).astype(float) if learner == "class_transformation" else log.reward
    model = fit_uplift(learner, log.X, y, log.treated, log.treatment_probability, folds=2, seed=1)
    compiled = CompiledUplift(model.to_dict(), (*MODEL_FEATURE_NAMES, PROPENSITY_INPUT))
    rows = scoring_rows(log.X)
    got = np.array([compiled.effect([*row, p]) for row, p in zip(rows, log.X[PROPENSITY_INPUT])])
    np.testing.assert_allclose(got, model.predict(log.X), rtol=1e-9, atol=1e-9)


def _uplift_policy(model, **shares) -> DecisionPolicy:
    return DecisionPolicy({"uplift": {"model": model.to_dict()}, "offer": "discount", **shares})


def test_the_uplift_rule_treats_where_the_estimated_profit_is_positive_and_logs_its_probability():
    log = uplift_log(labelled_log(4000, lift=0.3, seed=6), TERMS)
    model = fit_uplift("dr", log.X, log.reward, log.treated, log.treatment_probability, folds=2)
    policy = _uplift_policy(model, holdout_share=0.1, exploration_share=0.05)
    tau = model.predict(log.X)
    rows = scoring_rows(log.X)
    decisions = [policy.decide(s, p, row) for s, p, row in zip(log.session_ids, log.X[PROPENSITY_INPUT], rows)]
    would = np.array([d.treatment_probability == pytest.approx(0.9) for d in decisions])
    np.testing.assert_array_equal(would, tau > 0)
    treated = np.array([d.treated for d in decisions])
    held = np.array([d.holdout for d in decisions])
    assert not (treated & held).any()
    assert treated[would & ~held].all()
    explored = treated[~would]
    assert 0.01 < explored.mean() < 0.1  # the exploration share below the rule: 5 % of the non-held-out
    with pytest.raises(ValueError, match="features"):
        policy.decide("s", 0.1)


def test_a_policy_with_two_rules_or_unknown_inputs_is_refused_at_load():
    log = uplift_log(labelled_log(1000, lift=0.3, seed=7), TERMS)
    model = fit_uplift("dr", log.X, log.reward, log.treated, log.treatment_probability, folds=2)
    with pytest.raises(ValueError, match="one rule"):
        DecisionPolicy({"uplift": {"model": model.to_dict()}, "threshold": 0.2, "offer": "discount"})
    foreign = model.to_dict() | {"features": ["not_a_feature", *model.features[1:]]}
    with pytest.raises(ValueError, match="not_a_feature"):
        DecisionPolicy({"uplift": {"model": foreign}, "offer": "discount"})
    with pytest.raises(ValueError, match="offer"):
        DecisionPolicy({"uplift": {"model": model.to_dict()}})


def test_the_ab_figures_are_the_arms_differences_with_intervals_around_them():
    rng = np.random.default_rng(0)
    holdout = np.arange(4000) % 4 == 0  # 1,000 held out
    bought = rng.random(4000) < np.where(holdout, 0.05, 0.06)
    revenue = np.where(bought, np.where(holdout, 40.0, 38.0), 0.0)
    profit = 0.3 * revenue - (~holdout) * (0.1 * revenue + 0.05)
    ab = ab_figures(bought, revenue, profit, holdout, resamples=300)
    lift = bought[~holdout].mean() / bought[holdout].mean() - 1
    assert ab["relative_conversion_lift"]["value"] == pytest.approx(lift)
    assert ab["aov_difference"]["value"] == pytest.approx(-2.0)
    assert ab["incremental_profit_per_1000"]["value"] == pytest.approx(
        1000 * (profit[~holdout].mean() - profit[holdout].mean())
    )
    for figure in ("relative_conversion_lift", "incremental_profit_per_1000"):
        low, high = ab[figure]["ci"]
        assert low < ab[figure]["value"] < high
    assert (ab["policy_arm_sessions"], ab["holdout_sessions"]) == (3000, 1000)
    with pytest.raises(ValueError, match="both arms"):
        ab_figures(bought, revenue, profit, np.zeros(4000, bool))


def test_an_ab_figure_without_a_value_says_why_instead_of_nan():
    """A version that served a few sessions: no conversion in its holdout, so no relative lift (JSON has no NaN)."""
    purchased = np.array([1, 0, 0, 0, 0, 0])
    revenue = purchased * 50.0
    holdout = np.array([False, False, False, True, True, True])
    ab = ab_figures(purchased, revenue, revenue * 0.3, holdout, resamples=50)
    assert ab["relative_conversion_lift"] == {"value": None, "ci": None, "undefined": "no conversion in the holdout"}
    assert ab["aov_difference"]["undefined"] == "no order in one of the arms"
    assert ab["incremental_profit_per_1000"]["value"] == pytest.approx(1000 * 15 / 3)
    assert json.loads(json.dumps(ab, allow_nan=False)) == ab
    assert format_figure(ab["relative_conversion_lift"], 3) == "undefined (no conversion in the holdout)"
    assert format_figure({"value": 0.1234, "ci": [-0.5, 0.75]}, 2, signed=True) == "+0.12 [-0.50, +0.75]"

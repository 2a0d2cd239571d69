"""The simulator is the project's ground truth, so these tests check the truth itself (against outcomes it
generates), the contract, and the storefront structure the features and labels rely on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from propensity.contract import EVENT_COLUMNS, EVENT_TIME_DTYPE, validate_events
from propensity.sources.simulator import MAX_STEPS, absorption_probabilities, simulate_traffic

START = pd.Timestamp("2026-11-02", tz="UTC")  # a Monday


@pytest.fixture(scope="module")
def small():
    return simulate_traffic(n_users=300, days=3, seed=5)


@pytest.fixture(scope="module")
def large() -> pd.DataFrame:
    """~130k events, ~20k sessions: enough for the statistical checks, well under a second to generate."""
    batch = simulate_traffic(n_users=8000, days=7, seed=11)
    assert (batch.truth["event_id"].to_numpy() == batch.events["event_id"].to_numpy()).all()
    events = batch.events.assign(truth=batch.truth["true_propensity"].to_numpy())
    bought = events.loc[events["event_type"].eq("purchase"), "session_id"].unique()
    events["converted"] = events["session_id"].isin(bought)
    events["day"] = (events["event_time"].dt.normalize() - START).dt.days
    return events


def sessions_of(events: pd.DataFrame) -> pd.DataFrame:
    return events.groupby("session_id", sort=False).agg(
        user_id=("user_id", "first"),
        day=("day", "first"),
        converted=("converted", "first"),
        first_truth=("truth", "first"),
    )


# ---- contract ------------------------------------------------------------------------------------------------


def test_every_row_passes_the_contract(small):
    events = small.events
    assert tuple(events.columns) == EVENT_COLUMNS
    assert events["event_time"].dtype == EVENT_TIME_DTYPE
    result = validate_events(events)
    assert len(result.quarantine) == 0, result.quarantine["reason"].head().tolist()
    assert result.duplicates_dropped == 0
    assert len(result.valid) == len(events) > 1000


def test_ids_order_and_nullability(small):
    events = small.events
    assert events["event_id"].str.fullmatch(r"sim5-\d{9}").all()
    assert events["session_id"].str.fullmatch(r"sim5-s\d{7}").all()
    assert events["user_id"].str.fullmatch(r"u\d{5}").all()
    assert events["source"].eq("simulator").all()
    assert events.sort_values(["event_time", "event_id"]).index.equals(events.index)
    carries = events["event_type"].isin(["product_view", "add_to_cart", "remove_from_cart", "favourite", "purchase"])
    for column in ("product_id", "category_id", "price"):
        assert events.loc[carries, column].notna().all() and events.loc[~carries, column].isna().all(), column
    assert events.loc[carries, "product_id"].str.fullmatch(r"p\d{5}").all()
    assert events.loc[carries, "category_id"].str.fullmatch(r"c\d{3}").all()
    assert events.groupby("product_id")["category_id"].nunique().eq(1).all()  # a product's category is fixed
    assert set(events["quantity"].unique()) <= {1, 2}
    assert set(events.loc[events["quantity"].eq(2), "event_type"]) <= {"add_to_cart", "remove_from_cart", "purchase"}


def test_truth_frame_matches_events(small):
    truth = small.truth
    assert list(truth.columns) == ["event_id", "true_propensity"]
    assert (truth["event_id"].to_numpy() == small.events["event_id"].to_numpy()).all()
    assert truth["true_propensity"].between(0, 1).all()
    assert truth.loc[small.events["event_type"].eq("purchase").to_numpy(), "true_propensity"].eq(1.0).all()


# ---- determinism -----------------------------------------------------------------------------------------------


def test_same_seed_same_frames_other_seed_other_frames():
    a, b = simulate_traffic(n_users=200, days=2, seed=3), simulate_traffic(n_users=200, days=2, seed=3)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    c = simulate_traffic(n_users=200, days=2, seed=4)
    same_rows = len(c.events) == len(a.events)
    assert not (same_rows and c.events.drop(columns="event_id").equals(a.events.drop(columns="event_id")))
    assert not c.truth["true_propensity"].equals(a.truth["true_propensity"])


# ---- the truth is right ----------------------------------------------------------------------------------------


def test_capped_truth_agrees_with_the_linear_solve():
    """Backward induction over the horizon and np.linalg.solve of the uncapped chain are two independent
    solutions: equal for a long horizon, and the 60-step cap barely moves the value at a session's start."""
    intent = np.linspace(0.001, 0.99, 40)
    solved = absorption_probabilities(intent)
    np.testing.assert_allclose(absorption_probabilities(intent, steps_left=3000), solved, atol=1e-12)
    capped = absorption_probabilities(intent, steps_left=MAX_STEPS - 1)
    np.testing.assert_allclose(capped[:, 0], solved[:, 0], atol=1e-4)
    assert (np.diff(solved[:, 0]) > 0).all()  # more intent, more purchases
    assert absorption_probabilities(intent, steps_left=0).max() == 0.0  # no steps left: the session exits
    night = np.full(len(intent), 0.35)  # the late-night checkout factor: still two agreeing solutions
    np.testing.assert_allclose(
        absorption_probabilities(intent, steps_left=3000, checkout_factor=night),
        absorption_probabilities(intent, checkout_factor=night),
        atol=1e-12,
    )


def test_night_carts_convert_less_but_checkouts_do_not():
    """The hour acts on carts only (checkout starts), not at checkout: a non-additive funnel effect."""
    intent = np.linspace(0.01, 0.9, 20)
    day, night = absorption_probabilities(intent), absorption_probabilities(intent, checkout_factor=0.35)
    assert (night[:, 1:4] < day[:, 1:4] - 1e-3).all()  # one to three cart lines
    np.testing.assert_array_equal(night[:, -1], day[:, -1])  # at checkout the hour no longer matters


def test_mean_truth_at_session_start_matches_conversion(large):
    sessions = sessions_of(large)
    p = sessions["first_truth"].to_numpy()
    standard_error = np.sqrt((p * (1 - p)).sum()) / len(p)
    observed = sessions["converted"].mean()
    assert 0.03 <= observed <= 0.08
    assert abs(observed - p.mean()) < 4 * standard_error, (observed, p.mean(), standard_error)


def check_calibration(events: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Decision points (events before any purchase) binned by truth: the share whose session goes on to buy must
    track the bin's mean truth. Events of one session share an outcome, so the tolerance counts sessions."""
    points = events[events["event_type"].ne("purchase")]
    table = points.groupby(pd.qcut(points["truth"], bins, duplicates="drop"), observed=True).agg(
        mean_truth=("truth", "mean"), observed=("converted", "mean"), sessions=("session_id", "nunique")
    )
    m = table["mean_truth"]
    table["tolerance"] = 4 * np.sqrt(m * (1 - m) / table["sessions"]) + 0.003
    table["ok"] = (table["observed"] - m).abs() <= table["tolerance"]
    return table


def test_truth_is_calibrated_against_outcomes(large):
    table = check_calibration(large)
    assert len(table) == 10
    assert table["ok"].all(), table
    assert table["mean_truth"].iloc[-1] > 5 * table["mean_truth"].iloc[0]  # the truth separates, not a constant


# ---- storefront structure --------------------------------------------------------------------------------------


def test_purchases_follow_checkout_and_list_the_cart(large):
    buyers = large[large["converted"]]
    assert len(buyers) > 0
    for session_id, session in buyers.groupby("session_id", sort=False):
        types = session["event_type"].tolist()
        first_buy = types.index("purchase")
        assert set(types[first_buy:]) == {"purchase"}, session_id  # the session ends at the purchase
        assert types[first_buy - 1] == "checkout_start" and "add_to_cart" in types[:first_buy], session_id
        cart: list[tuple[str, int]] = []  # replay: remove_from_cart takes back the line added last
        for row in session.iloc[:first_buy].itertuples():
            if row.event_type == "add_to_cart":
                cart.append((row.product_id, row.quantity))
            elif row.event_type == "remove_from_cart":
                assert cart.pop() == (row.product_id, row.quantity), session_id
        bought = session.iloc[first_buy:]
        assert len(bought) == len(cart) > 0, session_id
        assert sorted(zip(bought["product_id"], bought["quantity"])) == sorted(cart), session_id
        assert bought["event_time"].nunique() == 1


def test_session_timing(large):
    steps = large[large["event_type"].ne("purchase")].groupby("session_id").size() + large.groupby("session_id")[
        "converted"
    ].first().astype(int)
    assert steps.max() <= MAX_STEPS
    by_session = large.sort_values(["session_id", "event_time"])
    gaps = by_session.groupby("session_id")["event_time"].diff().dropna()
    assert gaps.max() < pd.Timedelta(minutes=30)
    spans = large.groupby("session_id").agg(
        user_id=("user_id", "first"), start=("event_time", "min"), end=("event_time", "max")
    )
    spans = spans.sort_values(["user_id", "start"])
    next_start = spans.groupby("user_id")["start"].shift(-1)
    assert ((next_start - spans["end"]).dropna() > pd.Timedelta(minutes=30)).all()  # a 30-min sessioniser agrees


def test_sessions_look_like_a_storefront(large):
    events_per_session = large.groupby("session_id").size()
    assert 6 <= events_per_session.mean() <= 10 and 2 <= events_per_session.median() <= 6
    hours = large.groupby("session_id")["event_time"].min().dt.hour
    assert (hours.between(18, 22)).mean() > 2 * (hours.between(1, 5)).mean()  # evening peak, night trough


def test_weekends_are_busier(large):
    sessions = sessions_of(large)
    sessions = sessions[sessions["day"].between(0, 6)]
    per_day = sessions.groupby("day").size()
    weekend = (START + pd.to_timedelta(per_day.index, unit="D")).weekday >= 5
    assert per_day[weekend].mean() > 1.1 * per_day[~weekend].mean(), per_day


def test_buyers_keep_buying(large):
    """Persistent user intent: purchases in the first four days predict purchases in the last three."""
    sessions = sessions_of(large)
    users = pd.Index(sessions["user_id"].unique())
    past = sessions[sessions["day"] < 4].groupby("user_id")["converted"].sum().reindex(users, fill_value=0)
    future = sessions[sessions["day"] >= 4].groupby("user_id")["converted"].sum().reindex(users, fill_value=0)
    correlation = np.corrcoef(past, future)[0, 1]
    assert correlation > 3 / np.sqrt(len(users)), correlation  # > 0 beyond noise

"""The one definition of every model feature: name, type and meaning.

Feast's feature views, the Spark output schemas, the training set and the scorer all read these tuples; a feature
added here reaches every path, a feature not here reaches none.
"""

from __future__ import annotations

from dataclasses import dataclass

FEATURE_SERVICE_NAME = "purchase_propensity_v1"
USER_ENTITY_KEY = "user_id"
SESSION_ENTITY_KEY = "session_id"
USER_FEATURE_VIEW = "user_history"
SESSION_FEATURE_VIEW = "session_activity"
SESSION_PUSH_SOURCE = "session_activity_push"
# What the newest decision point of a session has folded, beyond its features: the scorer folds a request's own events
# onto the online row with it (propensity.features.request_fold). Not a model input; not in the feature service.
SESSION_FOLD_STATE_VIEW = "session_fold_state"
SESSION_FOLD_STATE_PUSH_SOURCE = "session_fold_state_push"
FOLD_STATE_ID_FIELDS = (
    "session_product_ids",  # distinct products of the session so far
    "session_category_ids",  # distinct categories of the session so far
    "session_last_event_ids",  # the events at the decision point's timestamp
)
# The decision point's time in microseconds since the epoch: exact where the online store keeps only seconds (SQLite).
FOLD_STATE_TIME_FIELD = "session_decision_time_us"
FOLD_STATE_FIELDS = (*FOLD_STATE_ID_FIELDS, FOLD_STATE_TIME_FIELD)

SESSION_GAP_MINUTES = 30  # inactivity gap that ends a session where the source has no session id
USER_WINDOWS_DAYS = (1, 7, 30)


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str  # "int64" or "float64"
    description: str
    nullable: bool = False  # null means "does not apply" (never ordered), not "unknown"


SESSION_FEATURES: tuple[Feature, ...] = (
    Feature("session_events", "int64", "events in the session so far"),
    Feature("session_product_views", "int64", "product views so far"),
    Feature("session_searches", "int64", "searches so far"),
    Feature("session_favourites", "int64", "favourites so far"),
    Feature("session_distinct_products", "int64", "distinct products touched so far"),
    Feature("session_distinct_categories", "int64", "distinct categories touched so far"),
    Feature("session_cart_adds", "int64", "add_to_cart events so far"),
    Feature("session_cart_removes", "int64", "remove_from_cart events so far"),
    Feature("session_checkout_starts", "int64", "checkout_start events so far"),
    Feature("session_cart_value", "float64", "price x quantity added minus removed so far (unknown prices count 0)"),
    Feature("session_duration_s", "float64", "seconds from the session's first event to this decision point"),
    Feature(
        "session_seconds_since_previous_event", "float64", "gap before this decision point's event (0 at the first)"
    ),
    Feature("session_hour_utc", "int64", "hour of day of the decision point (UTC)"),
    Feature("session_weekday", "int64", "weekday of the decision point (Monday=0, UTC)"),
)


# The in-session counters that count one event type each (the fold's; "purchases" labels, it is not a feature).
EVENT_TYPE_COUNTERS = {
    "session_product_views": "product_view",
    "session_searches": "search",
    "session_favourites": "favourite",
    "session_cart_adds": "add_to_cart",
    "session_cart_removes": "remove_from_cart",
    "session_checkout_starts": "checkout_start",
    "purchases": "purchase",
}


# No user feature grows with the calendar. A shopper's tenure grows a day a day, and recency over all history is
# bounded by the store's age, so tomorrow's live rows lie beyond every training row and a tree cannot extrapolate. On
# simulated stores with 60 days of history, LightGBM with them (and the weekday) lost to the baseline in 3 of 5
# worlds, and won on both worlds tried without them. Recency is therefore windowed like the user counts, and tenure
# is not a feature.
def _user_features() -> tuple[Feature, ...]:
    features: list[Feature] = []
    for count, meaning in (
        ("sessions", "sessions started"),
        ("events", "events"),
        ("cart_adds", "add_to_cart events"),
        ("orders", "sessions with a purchase"),
    ):
        for days in USER_WINDOWS_DAYS:
            features.append(Feature(f"user_{count}_{days}d", "int64", f"{meaning} in the {days} days up to yesterday"))
    features += [
        Feature("user_conversion_rate_7d", "float64", "orders / sessions over 7 days (0 without sessions)"),
        Feature("user_conversion_rate_30d", "float64", "orders / sessions over 30 days (0 without sessions)"),
        Feature("user_cart_add_rate_30d", "float64", "cart adds / events over 30 days (0 without events)"),
        Feature(
            "user_days_since_last_event",
            "float64",
            "days from the last active day to yesterday, within 30 days (null: not active in 30 days)",
            nullable=True,
        ),
        Feature(
            "user_days_since_last_order",
            "float64",
            "days from the last order to yesterday, within 30 days (null: no order in 30 days)",
            nullable=True,
        ),
        Feature(
            "user_avg_order_value_30d",
            "float64",
            "mean priced order value over 30 days (null: no priced order)",
            nullable=True,
        ),
    ]
    return tuple(features)


USER_FEATURES: tuple[Feature, ...] = _user_features()

SESSION_FEATURE_NAMES = tuple(f.name for f in SESSION_FEATURES)
USER_FEATURE_NAMES = tuple(f.name for f in USER_FEATURES)
MODEL_FEATURE_NAMES = USER_FEATURE_NAMES + SESSION_FEATURE_NAMES
# The uplift model's inputs at a decision (propensity.uplift.training): the in-session features and the calibrated
# propensity the scorer has just computed; both are in every decision-log row and at every scoring request.
PROPENSITY_INPUT = "propensity"
UPLIFT_FEATURE_NAMES = (*SESSION_FEATURE_NAMES, PROPENSITY_INPUT)

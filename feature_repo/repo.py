"""Entry point for `feast apply` and the list the platform applies: every Feast object, once."""

from feature_repo.data_sources import (
    session_activity_push,
    session_prefix_features_source,
    user_daily_aggregates_source,
)
from feature_repo.entities import session, user
from feature_repo.feature_services import purchase_propensity_v1
from feature_repo.features import session_activity, user_history

FEAST_OBJECTS = [
    user,
    session,
    user_daily_aggregates_source,
    session_prefix_features_source,
    session_activity_push,
    user_history,
    session_activity,
    purchase_propensity_v1,
]

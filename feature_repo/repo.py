"""Entry point for `feast apply` and the list the platform applies: every Feast object, once."""

from feature_repo.data_sources import (
    session_activity_push,
    session_fold_state_push,
    session_fold_state_source,
    session_prefix_features_source,
    user_daily_aggregates_source,
)
from feature_repo.entities import session, user
from feature_repo.feature_services import purchase_propensity_v1
from feature_repo.features import session_activity, session_fold_state, user_history

FEAST_OBJECTS = [
    user,
    session,
    user_daily_aggregates_source,
    session_prefix_features_source,
    session_activity_push,
    session_fold_state_source,
    session_fold_state_push,
    user_history,
    session_activity,
    session_fold_state,
    purchase_propensity_v1,
]

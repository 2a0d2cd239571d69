from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Array, Float64, Int64, String

from feature_repo.data_sources import session_activity_push, session_fold_state_push, user_daily_aggregates_source
from feature_repo.entities import session, user
from propensity.features.definitions import (
    FOLD_STATE_ID_FIELDS,
    FOLD_STATE_TIME_FIELD,
    SESSION_FEATURE_VIEW,
    SESSION_FEATURES,
    SESSION_FOLD_STATE_VIEW,
    USER_FEATURE_VIEW,
    USER_FEATURES,
    Feature,
)

_FEAST_TYPES = {"int64": Int64, "float64": Float64}


def _fields(features: tuple[Feature, ...]) -> list[Field]:
    return [Field(name=f.name, dtype=_FEAST_TYPES[f.dtype], description=f.description) for f in features]


user_history = FeatureView(
    name=USER_FEATURE_VIEW,
    entities=[user],
    ttl=timedelta(days=2),  # a row is written for every day; older than two days means the batch job stalled
    schema=_fields(USER_FEATURES),
    source=user_daily_aggregates_source,
    online=True,
    description="user history as of the end of the previous day",
)

session_activity = FeatureView(
    name=SESSION_FEATURE_VIEW,
    entities=[session],
    ttl=timedelta(hours=12),  # longer than any session; a stale session must not feed a new decision
    schema=_fields(SESSION_FEATURES),
    source=session_activity_push,
    online=True,
    description="in-session activity as of the decision point",
)

# Not a model input (the feature service leaves it out): what the scorer needs to fold a request's own events onto
# the session's row exactly (propensity.features.request_fold). Written with the session's row, same timestamp.
session_fold_state = FeatureView(
    name=SESSION_FOLD_STATE_VIEW,
    entities=[session],
    ttl=timedelta(hours=12),
    schema=[Field(name=name, dtype=Array(String)) for name in FOLD_STATE_ID_FIELDS]
    + [Field(name=FOLD_STATE_TIME_FIELD, dtype=Int64)],
    source=session_fold_state_push,
    online=True,
    description="what the session's newest decision point has folded: its products, categories and events",
)

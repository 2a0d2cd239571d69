"""Compare what the online store serves with the latest offline feature rows: the materialisation contract."""

from __future__ import annotations

import math

import pandas as pd
from feast import FeatureStore

from propensity.features.definitions import (
    SESSION_ENTITY_KEY,
    SESSION_FEATURE_NAMES,
    SESSION_FEATURE_VIEW,
    USER_ENTITY_KEY,
    USER_FEATURE_NAMES,
    USER_FEATURE_VIEW,
)

VIEWS = {
    USER_FEATURE_VIEW: (USER_ENTITY_KEY, USER_FEATURE_NAMES, "feature_timestamp"),
    SESSION_FEATURE_VIEW: (SESSION_ENTITY_KEY, SESSION_FEATURE_NAMES, "event_timestamp"),
}


def latest_rows(offline: pd.DataFrame, key: str, timestamp: str) -> pd.DataFrame:
    return offline.sort_values([key, timestamp]).groupby(key, sort=False).tail(1).set_index(key)


def online_mismatches(store: FeatureStore, view: str, offline: pd.DataFrame, entity_ids: list[str]) -> list[str]:
    """Every (entity, feature) whose online value differs from the entity's latest offline row."""
    key, names, timestamp = VIEWS[view]
    expected = latest_rows(offline[offline[key].isin(entity_ids)], key, timestamp)
    online = store.get_online_features(
        features=[f"{view}:{name}" for name in names], entity_rows=[{key: e} for e in entity_ids]
    ).to_df()
    problems = []
    for _, row in online.iterrows():
        entity = row[key]
        for name in names:
            want, got = expected.at[entity, name], row[name]
            if _missing(want) and _missing(got):
                continue
            if _missing(want) != _missing(got) or not math.isclose(float(want), float(got), rel_tol=0, abs_tol=1e-9):
                problems.append(f"{view}[{entity}].{name}: online {got!r} != offline {want!r}")
    return problems


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))

"""A labelled decision log with a known offer effect, in the decision log's own columns (tests only)."""

import numpy as np
import pandas as pd

from propensity.features.definitions import MODEL_FEATURE_NAMES, SESSION_FEATURE_NAMES
from propensity.monitoring.decisions import LABELLED_COLUMNS, SESSION_EVENTS_SEEN
from propensity.uplift.training import DECISION_EVENTS

BASKET = 50.0
RESPONSIVE_FEATURE = next(name for name in SESSION_FEATURE_NAMES if name != SESSION_EVENTS_SEEN)


def labelled_log(sessions: int, *, lift: float, seed: int = 0, treat_share: float = 0.5) -> pd.DataFrame:
    """One decision per session, treated at random with probability `treat_share` (logged as such). The purchase
    probability is 0.1, plus `lift` when treated and RESPONSIVE_FEATURE is positive: under OfferTerms'
    defaults the offer pays there when lift is large (0.3 * 50 * lift > 0.1 * 50 * (0.1 + lift) + 0.05) and
    loses everywhere else (the discount on orders that would have happened anyway)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=sessions) for name in MODEL_FEATURE_NAMES})
    frame["propensity"] = rng.uniform(0.02, 0.4, sessions)
    frame[SESSION_EVENTS_SEEN] = float(DECISION_EVENTS)  # every row is its session's decision point
    treated = rng.random(sessions) < treat_share
    responsive = frame[RESPONSIVE_FEATURE].to_numpy() > 0
    bought = rng.random(sessions) < 0.1 + lift * (treated & responsive)
    frame["revenue"] = np.where(bought, BASKET, 0.0)
    frame["label"] = bought.astype("int64")
    frame["treated"] = treated
    frame["treatment_probability"] = treat_share
    frame["holdout"] = False
    frame["offer"] = np.where(treated, "discount", None)
    frame["session_id"] = [f"s{seed}-{i:06d}" for i in range(sessions)]
    frame["user_id"] = [f"u{seed}-{i // 2:06d}" for i in range(sessions)]
    frame["request_id"] = [f"r{seed}-{i:06d}" for i in range(sessions)]
    decided = pd.Timestamp("2026-06-01", tz="UTC") + pd.to_timedelta(np.arange(sessions), unit="s")
    frame["decided_at"] = decided
    frame["session_start"] = decided
    frame["matured_at"] = decided + pd.Timedelta(hours=1)
    frame["endpoint"], frame["variant"], frame["model_version"] = "propensity", "champion", "v0001"
    frame["fallback"], frame["fallback_reason"] = False, None
    frame["time_to_purchase_s"] = np.where(bought, 60.0, np.nan)
    frame["latency_ms"] = 1.0
    return frame[list(LABELLED_COLUMNS)]

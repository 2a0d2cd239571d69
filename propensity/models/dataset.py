"""Decision points, labels and the time-based split: what a training example is (docs/ARCHITECTURE.md).

A decision point is a session prefix: the state just after one of its events (a distinct timestamp), before the
session's first purchase. Its label is whether the session purchases after that point. Splits are by session start
time, so one session's prefixes never land in two splits and the model is always tested on a later period.

A session is only an example when the data show it whole: one that starts within a gap of the data's first event
may have begun earlier (its features would undercount), and one still active within a gap of the data's last event
may purchase later (its label is unknown). A short window such as the Taobao sample is dominated by such sessions
at its edges; keeping them would test on truncated sessions with artificially few purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from propensity.features.definitions import SESSION_GAP_MINUTES, USER_WINDOWS_DAYS

TRAINING_DATASET = "training_dataset"  # the lake table and asset of decision points
ENTITY_COLUMNS = ("decision_id", "session_id", "user_id", "event_timestamp")


@dataclass(frozen=True)
class SplitBoundaries:
    valid_start: pd.Timestamp
    test_start: pd.Timestamp

    def as_dict(self) -> dict[str, str]:
        return {"valid_start": self.valid_start.isoformat(), "test_start": self.test_start.isoformat()}


def split_boundaries(
    session_starts: pd.Series,
    valid_fraction: float,
    test_fraction: float,
    evaluate_from: pd.Timestamp | None = None,
) -> SplitBoundaries:
    """Cut points in time such that about the last `test_fraction` of sessions (by start) are test, the
    `valid_fraction` before them validation, and the rest training.

    With `evaluate_from` (a change the monitors detected), validation and test are the sessions from then on, the
    earlier half and the later half: a model retrained after a change must be calibrated and judged on the traffic
    it will serve, not on the regime that ended (trained on the old regime, an isotonic map fit on old validation
    rows failed the ECE gate on new test rows). Everything before trains the booster."""
    if evaluate_from is not None:
        cut = pd.Timestamp(evaluate_from).tz_convert("UTC")
        starts = session_starts.sort_values(ignore_index=True)
        since = starts[starts >= cut]
        if since.empty or starts.iloc[0] >= cut:
            raise ValueError(
                f"evaluate_from {cut.isoformat()} must leave sessions both before it (training) and after it "
                f"(validation and test); {len(since)} of {len(starts)} sessions start after it"
            )
        valid_start, test_start = since.iloc[0], since.iloc[len(since) // 2]
        if not valid_start < test_start:
            raise ValueError("too few distinct session start times after evaluate_from to split by time")
        return SplitBoundaries(valid_start=valid_start.tz_convert("UTC"), test_start=test_start.tz_convert("UTC"))
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"valid_fraction {valid_fraction} and test_fraction {test_fraction} must leave room for training"
        )
    starts = np.sort(session_starts.to_numpy())
    n = len(starts)
    test_start = pd.Timestamp(starts[int(np.floor(n * (1 - test_fraction)))])
    valid_start = pd.Timestamp(starts[int(np.floor(n * (1 - test_fraction - valid_fraction)))])
    if not valid_start < test_start:
        raise ValueError("too few distinct session start times to split by time")
    return SplitBoundaries(valid_start=valid_start.tz_convert("UTC"), test_start=test_start.tz_convert("UTC"))


def assign_split(session_start: pd.Series, boundaries: SplitBoundaries) -> pd.Series:
    return pd.Series(
        np.where(
            session_start < boundaries.valid_start,
            "train",
            np.where(session_start < boundaries.test_start, "valid", "test"),
        ),
        index=session_start.index,
    )


def complete_sessions(sessions: pd.DataFrame, gap_minutes: int = SESSION_GAP_MINUTES) -> pd.Series:
    """True for sessions the data show whole (see the module docstring)."""
    gap = pd.Timedelta(minutes=gap_minutes)
    data_start, data_end = sessions["session_start"].min(), sessions["session_end"].max()
    return (sessions["session_start"] >= data_start + gap) & (sessions["session_end"] <= data_end - gap)


def warm_up_days(sessions: pd.DataFrame, requested: int | None = None) -> int:
    """Days at the start of the lake's history whose sessions are left out of training.

    A user-history feature over the last N days is cut short by the data's own first day for every decision point
    in the first N days: user_sessions_30d on day 3 counts three days. Live traffic never sees that edge, so a model
    trained on it learns windows that are not the ones it will be served, and the drift monitor sees every live day as
    drifted. `None` (auto): the longest user window when the history holds at least twice that, else 0 (a week of
    simulated demo traffic keeps all of it)."""
    if requested is not None:
        if requested < 0:
            raise ValueError(f"warm_up_days must be >= 0, got {requested}")
        return requested
    longest = max(USER_WINDOWS_DAYS)
    if sessions.empty:
        return 0
    days = (sessions["session_start"].max().floor("D") - sessions["session_start"].min().floor("D")).days + 1
    return longest if days >= 2 * longest else 0


def decision_points(
    session_prefix_features: pd.DataFrame,
    sessions: pd.DataFrame,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    warm_up: int | None = None,
    evaluate_from: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, SplitBoundaries]:
    """The entity frame for the point-in-time join: one row per decision point, with label and split. Sessions in the
    first `warm_up_days(sessions, warm_up)` days of the history are left out (see `warm_up_days`)."""
    skip = warm_up_days(sessions, warm_up)
    first_day = sessions["session_start"].min().floor("D") if len(sessions) else None
    sessions = sessions[complete_sessions(sessions)]
    if skip:
        sessions = sessions[sessions["session_start"] >= first_day + pd.Timedelta(days=skip)]
    points = session_prefix_features.loc[
        session_prefix_features["purchases_so_far"] == 0,
        ["session_id", "user_id", "event_timestamp", "decision_event_id"],
    ]
    outcome = sessions[["session_id", "session_start", "has_purchase"]]
    points = points.merge(outcome, on="session_id", how="inner", validate="many_to_one")
    points["label"] = points["has_purchase"].astype("int64")  # no purchase so far, so any purchase comes after
    points["decision_id"] = points["session_id"] + "@" + points["event_timestamp"].map(lambda t: t.isoformat())
    boundaries = split_boundaries(outcome["session_start"], valid_fraction, test_fraction, evaluate_from)
    points["split"] = assign_split(points["session_start"], boundaries)
    points = (
        points.drop(columns=["has_purchase"]).sort_values(["event_timestamp", "decision_id"]).reset_index(drop=True)
    )
    if not points["decision_id"].is_unique:
        raise ValueError("decision ids are not unique: session_prefix_features must have one row per decision point")
    return points, boundaries


def purchasing_sessions(dataset: pd.DataFrame) -> dict[str, int]:
    """Sessions with a purchase in the validation and test splits: what calibrating and judging a model rest on."""
    bought = dataset[dataset["label"] == 1]
    return {split: int(bought.loc[bought["split"] == split, "session_id"].nunique()) for split in ("valid", "test")}


def outcome_shortfall(positives: dict[str, int], minimum: int) -> str | None:
    """Why a training set cannot calibrate and judge a model, or None when every split has `minimum` purchases."""
    if all(n >= minimum for n in positives.values()):
        return None
    return f"too few purchasing sessions to calibrate and judge a model: {positives} (at least {minimum} each)"


def sessions_in_several_splits(dataset: pd.DataFrame) -> int:
    """Sessions whose decision points fall in more than one split (each would leak its label across them)."""
    return int((dataset.groupby("session_id")["split"].nunique() > 1).sum())

"""Session ids where a source has none, in plain pandas: the twin of `propensity.sessions.sessionize` (Spark) for
code that runs without Spark, such as the storefront replayer, which must send each event with its session id.
Same rule, same ids: "s-{user_id}-{session start epoch ms}", a new session after more than the gap of inactivity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from propensity.contract import EVENT_COLUMNS
from propensity.features.definitions import SESSION_GAP_MINUTES


def assign_session_ids(events: pd.DataFrame, gap_minutes: int = SESSION_GAP_MINUTES) -> pd.DataFrame:
    """Contract events with `session_id` filled in: kept where given, cut at the gap elsewhere."""
    given = events[events["session_id"].notna()]
    missing = events[events["session_id"].isna()]
    if missing.empty:
        return given[list(EVENT_COLUMNS)].reset_index(drop=True)
    user_codes, users = pd.factorize(missing["user_id"], sort=False)
    time_us = missing["event_time"].dt.tz_localize(None).to_numpy().astype("datetime64[us]").view("int64")
    event_ids = missing["event_id"].to_numpy()
    order = np.lexsort((event_ids, time_us, user_codes))  # by user, then time and id, as Spark's window
    codes, times = user_codes[order], time_us[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (codes[1:] != codes[:-1]) | ((times[1:] - times[:-1]) > gap_minutes * 60 * 1_000_000)
    session_of_row = np.cumsum(starts) - 1
    start_rows = np.flatnonzero(starts)
    start_ms = times[start_rows] // 1000  # floor, as Spark's unix_millis
    session_ids = (
        "s-" + pd.Series(np.asarray(users)[codes[start_rows]], dtype=object) + "-" + pd.Series(start_ms).astype(str)
    ).to_numpy(dtype=object)
    cut = missing.iloc[order].copy()
    cut["session_id"] = session_ids[session_of_row]
    return pd.concat([given, cut], ignore_index=True)[list(EVENT_COLUMNS)]

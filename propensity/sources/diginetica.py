"""DIGINETICA (CIKM Cup 2016 Track 2) adapter: item views + purchases -> event contract v1 (unvalidated).

Semicolon-separated files (provenance and licence in `propensity/datasets.py`; `make data` fetches them):
- views      `session_id;user_id;item_id;timeframe;eventdate` (SR-GNN's renamed header; the original
             `sessionId;userId;itemId;timeframe;eventdate` is accepted too) -> `product_view`
- purchases  `sessionId;userId;timeframe;eventdate;ordernumber;itemId` -> `purchase`
- categories `itemId;categoryId` -> `category_id` of every event (null where an item has none)

Event time (an approximation; the data hold no absolute time finer than a day):
    `timeframe` is milliseconds since the *start of the session*, and `eventdate` is the calendar day of the
    *event itself*. A session's start is therefore approximated as UTC midnight of its first day (the earliest
    `eventdate` among its views), and every event of the session, view or purchase, is placed at
    `session start + timeframe`. For the usual one-day session this is exactly `eventdate (UTC midnight) +
    timeframe`. It differs where that naive sum is wrong:
    - a session that crosses midnight (2 in the sample): its next-day views would jump 24 h forward;
    - purchases: their timeframe is often days or weeks (up to ~153 days in the full file) because a purchase can
      be logged against a session long after it started, while their `eventdate` is the purchase's own day; the
      naive sum would put such a purchase that many days *after* its own date (65 of the sample's 256 purchase
      rows land a day or more late). Anchored to the session start, each event lands on its own `eventdate` or
      the day before (the real session started some time after midnight).
    Because every session is anchored at midnight, time of day is not meaningful for this source.

Purchases are kept only for sessions present in the views file (the views file is a sample of sessions).
A session is one visitor's: every row of a session gets the session's first known `user_id` (views in file order,
then purchases). The raw data disagree inside 8 sample sessions (NA on some rows, or two ids), and a session with
two users would break per-user history. A session with no known user is an anonymous visitor, its own user
`"anon-" + session_id`.
Price is unknown (null); quantity 1.

Event ids: views `dn-v-{session}-{timeframe}-{item}`, purchases `dn-p-{ordernumber}-{item}`. A purchase of the
same item in the same order logged twice (exact duplicates, or re-logged at another time) shares one id; events
are ordered by session then time, so the gate keeps the earliest and counts the rest as duplicates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from propensity.contract import EVENT_COLUMNS, EVENT_TIME_DTYPE
from propensity.datasets import dataset_file
from propensity.sources import SourceBatch

SOURCE_NAME = "diginetica"
VIEWS_FILE = "train-item-views_sessions_1-3999.csv"
PURCHASES_FILE = "train-purchases.csv"
CATEGORIES_FILE = "product-categories.csv"

# Canonical names used below, and every header spelling accepted for each file.
VIEW_HEADERS = [
    ("session_id", "user_id", "item_id", "timeframe", "eventdate"),  # SR-GNN's sample
    ("sessionId", "userId", "itemId", "timeframe", "eventdate"),  # the original train-item-views.csv
]
PURCHASE_HEADER = ("sessionId", "userId", "timeframe", "eventdate", "ordernumber", "itemId")
CATEGORY_HEADER = ("itemId", "categoryId")
_CANONICAL = {"sessionId": "session_id", "userId": "user_id", "itemId": "item_id", "categoryId": "category_id"}


def _read(path: Path, accepted: list[tuple[str, ...]]) -> pd.DataFrame:
    """Every field as text; "NA" (the files' null) and empty fields are null. The header must be one we know."""
    frame = pd.read_csv(path, sep=";", dtype="object", keep_default_na=False, na_values=["", "NA"])
    if tuple(frame.columns) not in accepted:
        raise ValueError(f"{path}: header {list(frame.columns)} is not one of {[list(h) for h in accepted]}")
    return frame.rename(columns=_CANONICAL)


def _category_lookup(path: Path) -> pd.Series:
    categories = _read(path, [CATEGORY_HEADER]).dropna(subset=["item_id"]).drop_duplicates()
    conflicting = categories["item_id"][categories["item_id"].duplicated()]
    if len(conflicting):
        raise ValueError(f"{path}: items with more than one category, e.g. {conflicting.head(5).tolist()}")
    return categories.set_index("item_id")["category_id"]


def _event_time(session_start: pd.Series, timeframe: pd.Series, eventdate: pd.Series) -> pd.Series:
    milliseconds = pd.to_numeric(timeframe, errors="coerce")
    parsed = (session_start + pd.to_timedelta(milliseconds, unit="ms")).astype(EVENT_TIME_DTYPE)
    failed = parsed.isna() & (timeframe.notna() | eventdate.notna())
    if not failed.any():
        return parsed
    # Keep the original values where they do not make a time, so the gate quarantines them as unparseable.
    original = eventdate.fillna("") + "+" + timeframe.fillna("") + "ms"
    return parsed.astype("object").where(~failed, original)


def _session_users(views: pd.DataFrame, purchases: pd.DataFrame) -> pd.Series:
    """session_id -> the session's first known user id (views first), else "anon-" + session_id."""
    rows = pd.concat([views[["session_id", "user_id"]], purchases[["session_id", "user_id"]]], ignore_index=True)
    known = (
        rows.dropna(subset=["user_id"]).drop_duplicates("session_id", keep="first").set_index("session_id")["user_id"]
    )
    sessions = pd.Index(rows["session_id"].dropna().unique())
    anonymous = pd.Series("anon-" + sessions, index=sessions)
    return known.reindex(sessions).fillna(anonymous)


def _user(session_id: pd.Series, session_users: pd.Series) -> pd.Series:
    return session_id.map(session_users).fillna("anon-NA")


def load_diginetica(
    views_path: str | Path | None = None,
    purchases_path: str | Path | None = None,
    categories_path: str | Path | None = None,
) -> SourceBatch:
    """Views + purchases (for the views' sessions) as contract events, ordered by session then time."""
    views = _read(Path(views_path or dataset_file("diginetica", VIEWS_FILE)), VIEW_HEADERS)
    purchases = _read(Path(purchases_path or dataset_file("diginetica", PURCHASES_FILE)), [PURCHASE_HEADER])
    category_of = _category_lookup(Path(categories_path or dataset_file("diginetica", CATEGORIES_FILE)))

    view_day = pd.to_datetime(views["eventdate"], format="%Y-%m-%d", utc=True, errors="coerce")
    session_start = view_day.groupby(views["session_id"]).min()  # NaT only if none of a session's dates parse

    purchases = purchases[purchases["session_id"].isin(set(views["session_id"].dropna()))]
    session_users = _session_users(views, purchases)

    view_events = pd.DataFrame(
        {
            "event_id": "dn-v-"
            + views["session_id"].fillna("NA")
            + "-"
            + views["timeframe"].fillna("NA")
            + "-"
            + views["item_id"].fillna("NA"),
            "event_time": _event_time(views["session_id"].map(session_start), views["timeframe"], views["eventdate"]),
            "user_id": _user(views["session_id"], session_users),
            "session_id": views["session_id"],
            "event_type": "product_view",
            "product_id": views["item_id"],
        }
    )
    purchase_events = pd.DataFrame(
        {
            "event_id": "dn-p-" + purchases["ordernumber"].fillna("NA") + "-" + purchases["item_id"].fillna("NA"),
            "event_time": _event_time(
                purchases["session_id"].map(session_start), purchases["timeframe"], purchases["eventdate"]
            ),
            "user_id": _user(purchases["session_id"], session_users),
            "session_id": purchases["session_id"],
            "event_type": "purchase",
            "product_id": purchases["item_id"],
        }
    )
    events = pd.concat([view_events, purchase_events], ignore_index=True)
    events["category_id"] = events["product_id"].map(category_of)
    events["price"] = np.nan
    events["quantity"] = pd.Series(1, index=events.index, dtype="Int64")
    events["source"] = SOURCE_NAME

    # Session, then time, then views before purchases at the same instant; within a tie, file order (stable).
    order = pd.DataFrame(
        {
            "session": pd.to_numeric(events["session_id"], errors="coerce"),
            "session_text": events["session_id"].fillna(""),
            "time": pd.to_datetime(events["event_time"], utc=True, errors="coerce", format="ISO8601")
            if events["event_time"].dtype == object
            else events["event_time"],
            "kind": (events["event_type"] == "purchase").astype(int),
        }
    )
    ordered = order.sort_values(["session", "session_text", "time", "kind"], kind="stable", na_position="last").index
    events = events.loc[ordered].reset_index(drop=True)
    return SourceBatch(events=events[list(EVENT_COLUMNS)])

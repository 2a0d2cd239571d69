"""Taobao "UserBehavior" adapter (Alibaba / Tianchi): raw pv/cart/fav/buy log -> event contract v1 (unvalidated).

The file has no header; its columns are user_id, item_id, category_id, behavior_type, timestamp (unix seconds, UTC).
There is no session id (null here: the pipeline cuts sessions at a 30-minute inactivity gap), no price (null) and no
quantity (1). The files, their provenance and licence are in `propensity/datasets.py` (`make data` fetches them).

Nothing is dropped or repaired here: `validate_events` is the gate. An unknown behavior_type is passed through as it
is so the gate quarantines it with a reason; a timestamp that is not a number is passed through as its original text
so the gate reports it as unparseable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from propensity.contract import EVENT_COLUMNS, EVENT_TIME_DTYPE
from propensity.datasets import dataset_file
from propensity.sources import SourceBatch

SOURCE_NAME = "taobao"
WINDOW_FILE = "userbehavior_window_20171126T0100Z_0310Z.csv"  # 2017-11-26 01:00-03:10 UTC, every user active then
USER_HISTORIES_FILE = "userbehavior_first43users_full_history.csv"  # 43 users' whole histories
RAW_COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")

BEHAVIOR_TO_EVENT_TYPE = {
    "pv": "product_view",
    "cart": "add_to_cart",
    "fav": "favourite",
    "buy": "purchase",
}

# pandas' row hash is SipHash-2-4 under this key (pandas' own default, pinned here so a pandas change of default
# cannot silently change every event id). Changing it changes every event_id, which breaks replay idempotency.
_HASH_KEY = "0123456789123456"


def taobao_event_ids(raw: pd.DataFrame) -> pd.Series:
    """`"tb-"` + 16 hex digits of SipHash-2-4 (key `_HASH_KEY`) over the UTF-8 text
    `"user_id,item_id,category_id,behavior_type,timestamp"`, exactly as the fields appear in the file.

    The id is a function of the row's content only, so re-reading a file gives the same ids and two identical
    rows (a replayed line, or the same user viewing the same item twice within one second: the log cannot tell
    them apart) get the same id; the gate keeps the first and counts the rest as duplicates, idempotently.
    Vectorised: no Python loop over rows.
    """
    text = raw[list(RAW_COLUMNS)].fillna("").astype(str)
    key = text["user_id"]
    for column in RAW_COLUMNS[1:]:
        key = key + "," + text[column]
    hashes = pd.util.hash_pandas_object(key, index=False, encoding="utf8", hash_key=_HASH_KEY, categorize=False)
    big_endian = hashes.to_numpy(dtype=np.uint64).astype(">u8")
    hex_digits = np.frombuffer(big_endian.tobytes().hex().encode("ascii"), dtype="S16").astype(str)
    return pd.Series(np.char.add("tb-", hex_digits), index=raw.index, dtype="object")


def _read_raw(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in RAW_COLUMNS})
    # Every field as text: ids stay exactly as written, and a malformed value reaches the gate instead of
    # failing the read. Only an empty field is null. A line with the wrong number of fields fails loudly.
    return pd.read_csv(
        path,
        header=None,
        names=list(RAW_COLUMNS),
        dtype={c: "object" for c in RAW_COLUMNS},
        keep_default_na=False,
        na_values=[""],
        engine="c",
    )


def _event_time(timestamp: pd.Series) -> pd.Series:
    seconds = pd.to_numeric(timestamp, errors="coerce")
    parsed = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce").astype(EVENT_TIME_DTYPE)
    failed = timestamp.notna() & parsed.isna()
    if not failed.any():
        return parsed
    # Keep the original text where it is not a unix time, so the gate quarantines it as unparseable.
    return parsed.astype("object").where(~failed, timestamp)


def taobao_to_events(raw: pd.DataFrame) -> pd.DataFrame:
    """Map raw UserBehavior rows (columns `RAW_COLUMNS`, text) onto contract columns, in contract order."""
    behavior = raw["behavior_type"]
    events = pd.DataFrame(
        {
            "event_id": taobao_event_ids(raw),
            "event_time": _event_time(raw["timestamp"]),
            "user_id": raw["user_id"],
            "session_id": pd.Series(None, index=raw.index, dtype="object"),
            "event_type": behavior.map(BEHAVIOR_TO_EVENT_TYPE).where(behavior.isin(BEHAVIOR_TO_EVENT_TYPE), behavior),
            "product_id": raw["item_id"],
            "category_id": raw["category_id"],
            "price": pd.Series(np.nan, index=raw.index, dtype="float64"),
            "quantity": pd.Series(1, index=raw.index, dtype="Int64"),
            "source": SOURCE_NAME,
        },
        index=raw.index,
    )
    return events[list(EVENT_COLUMNS)].reset_index(drop=True)


def load_taobao(paths: list[str | Path] | str | Path | None = None) -> SourceBatch:
    """Load UserBehavior CSV files (default: the 2017-11-26 01:00-03:10 UTC window file) as contract events.

    Rows keep file order (files in the order given). `event_id` is content-derived (see `taobao_event_ids`):
    exact duplicate rows share an id and are deduplicated idempotently by `validate_events`.
    """
    if paths is None:
        paths = [dataset_file("taobao", WINDOW_FILE)]
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    raws = [_read_raw(Path(p)) for p in paths]
    raws = [r for r in raws if len(r)] or [pd.DataFrame({c: pd.Series(dtype="object") for c in RAW_COLUMNS})]
    raw = pd.concat(raws, ignore_index=True) if len(raws) > 1 else raws[0]
    return SourceBatch(events=taobao_to_events(raw))

"""Source adapters against the real shared datasets: the figures in each SOURCE.md, reproduced exactly.

Datasets are read through `propensity.datasets` from the data directory `make data` fills, never from the repository.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from propensity.contract import EVENT_COLUMNS, EVENT_TIME_DTYPE, EVENT_TYPES, validate_events
from propensity.datasets import dataset_file
from propensity.sources import SourceBatch, load_source
from propensity.sources.contract_files import load_contract_files, write_contract_jsonl
from propensity.sources.diginetica import load_diginetica
from propensity.sources.taobao import load_taobao

NOW = pd.Timestamp("2024-01-01", tz="UTC")


def assert_contract_shaped(events: pd.DataFrame) -> None:
    assert tuple(events.columns) == EVENT_COLUMNS


# --------------------------------------------------------------------------------------------------------- Taobao


@pytest.fixture(scope="module")
def taobao_window() -> pd.DataFrame:
    return load_taobao().events


@pytest.fixture(scope="module")
def taobao_window_gate(taobao_window):
    return validate_events(taobao_window, now=NOW)


def test_taobao_window_matches_source_md(taobao_window):
    events = taobao_window
    assert_contract_shaped(events)
    assert len(events) == 110_300
    assert events["event_type"].value_counts().to_dict() == {
        "product_view": 98_361,
        "add_to_cart": 6_063,
        "favourite": 3_383,
        "purchase": 2_493,
    }
    assert events["user_id"].nunique() == 66_454
    assert events["product_id"].nunique() == 84_793
    assert events["category_id"].nunique() == 3_913
    assert events["event_time"].dtype == EVENT_TIME_DTYPE
    assert events["event_time"].min() == pd.Timestamp("2017-11-26 01:00:00", tz="UTC")
    assert events["event_time"].max() == pd.Timestamp("2017-11-26 03:10:11", tz="UTC")
    assert events["event_time"].is_monotonic_increasing  # SOURCE.md: sorted by timestamp, file order kept
    assert events["session_id"].isna().all() and events["price"].isna().all()
    assert (events["quantity"] == 1).all() and (events["source"] == "taobao").all()
    assert all(isinstance(v, str) for v in events["user_id"].head(100))
    assert events["event_id"].str.fullmatch(r"tb-[0-9a-f]{16}").all()
    assert events["event_id"].is_unique  # 0 duplicate rows in the file, and no hash collision


def test_taobao_window_passes_the_gate(taobao_window_gate):
    gate = taobao_window_gate
    assert len(gate.quarantine) == 0
    assert gate.duplicates_dropped == 0
    assert len(gate.valid) == 110_300


def test_taobao_event_id_is_stable(taobao_window):
    # First line: 543462,1715,1464116,pv,1511658000. Pinned: a changed id means replays are no longer idempotent.
    first = taobao_window.iloc[0]
    assert (first["user_id"], first["product_id"], first["category_id"]) == ("543462", "1715", "1464116")
    assert first["event_id"] == "tb-621ec03071a41ed5"
    assert load_taobao().events["event_id"].equals(taobao_window["event_id"])


def test_taobao_first43_users():
    events = load_taobao([dataset_file("taobao", "userbehavior_first43users_full_history.csv")]).events
    assert len(events) == 4_321
    assert events["user_id"].nunique() == 43
    assert (events["event_type"] == "purchase").sum() == 77
    gate = validate_events(events, now=NOW)
    assert (len(gate.valid), len(gate.quarantine), gate.duplicates_dropped) == (4_321, 0, 0)


def test_taobao_unknown_behaviour_and_duplicates_reach_the_gate(tmp_path):
    path = tmp_path / "ub.csv"
    path.write_text(
        "1,10,100,pv,1511658000\n"
        "1,10,100,pv,1511658000\n"  # exact duplicate: same id, dropped idempotently
        "2,20,200,click,1511658001\n"  # unknown behaviour: passed through, quarantined
        "3,30,300,buy,yesterday\n"  # not a unix time: quarantined as unparseable
        "4,40,400,cart,1511658003\n"
    )
    events = load_taobao([path]).events
    assert len(events) == 5
    assert events["event_id"].iloc[0] == events["event_id"].iloc[1]
    assert events["event_id"].iloc[1:].is_unique
    assert events["event_type"].tolist() == ["product_view", "product_view", "click", "purchase", "add_to_cart"]
    gate = validate_events(events, now=NOW)
    assert gate.duplicates_dropped == 1
    assert len(gate.valid) == 2
    reasons = dict(zip(gate.quarantine["user_id"], gate.quarantine["reason"]))
    assert set(reasons) == {"2", "3"}
    assert reasons["2"].startswith("event_type: not one of the contract's values") and "(click)" in reasons["2"]
    assert reasons["3"] == "event_time: unparseable timestamp"
    assert gate.quarantine.loc[gate.quarantine["user_id"] == "3", "event_time"].item() == "yesterday"


# ----------------------------------------------------------------------------------------------------- Diginetica


@pytest.fixture(scope="module")
def diginetica_raw():
    """The raw files read independently of the adapter, to derive the expected figures."""
    read = dict(sep=";", dtype=str, keep_default_na=False)
    views = pd.read_csv(dataset_file("diginetica", "train-item-views_sessions_1-3999.csv"), **read)
    purchases = pd.read_csv(dataset_file("diginetica", "train-purchases.csv"), **read)
    return views, purchases


@pytest.fixture(scope="module")
def diginetica():
    events = load_diginetica().events
    return events, validate_events(events, now=NOW)


def test_diginetica_views_match_source_md(diginetica, diginetica_raw):
    events, _ = diginetica
    raw_views, _ = diginetica_raw
    assert_contract_shaped(events)
    views = events[events["event_type"] == "product_view"]
    # SOURCE.md's table says 12,390 rows, but the file holds 12,391 data rows: its last line has no trailing
    # newline, so `wc -l` minus the header undercounts by one. Its other figures (2,986 sessions, 7,681 NA users)
    # are those of all 12,391 rows.
    lines = (dataset_file("diginetica", "train-item-views_sessions_1-3999.csv")).read_text().splitlines()
    assert len(lines) - 1 == len(raw_views) == 12_391
    assert len(views) == 12_391
    assert views["session_id"].nunique() == 2_986
    assert views["product_id"].nunique() == 7_139
    known_user = raw_views["user_id"].ne("NA")
    assert (~known_user).sum() == 7_681  # SOURCE.md
    # one visitor per session: the session's first known user on every row, anonymous sessions their own user
    _, raw_purchases = diginetica_raw
    purchase_users = raw_purchases.rename(columns={"sessionId": "session_id", "userId": "user_id"})
    candidates = pd.concat([raw_views[known_user], purchase_users[purchase_users["user_id"].ne("NA")]])
    first_known = candidates.drop_duplicates("session_id").set_index("session_id")["user_id"]
    expected = raw_views["session_id"].map(first_known).fillna("anon-" + raw_views["session_id"])
    assert views["user_id"].tolist() == expected.tolist()
    assert events.groupby("session_id")["user_id"].nunique().max() == 1
    anonymous = views["user_id"].str.startswith("anon-")
    assert (
        views.loc[anonymous, "session_id"].nunique()
        == raw_views.loc[~raw_views["session_id"].isin(first_known.index), "session_id"].nunique()
    )
    assert views["event_id"].is_unique


def test_diginetica_purchases_only_for_sample_sessions(diginetica, diginetica_raw):
    events, gate = diginetica
    raw_views, raw_purchases = diginetica_raw
    sample = raw_purchases[raw_purchases["sessionId"].isin(set(raw_views["session_id"]))]
    exact_duplicates = int(sample.duplicated().sum())
    same_order_item = int(sample.duplicated(["ordernumber", "itemId"]).sum())
    distinct_order_items = len(sample) - same_order_item

    purchases = events[events["event_type"] == "purchase"]
    assert purchases["session_id"].nunique() == sample["sessionId"].nunique() == 138
    assert len(purchases) == len(sample) == 256
    assert set(purchases["session_id"]) <= set(raw_views["session_id"])
    # The gate drops repeats of an id; a purchase id is (order, item), so it drops exact duplicate rows (none in
    # the sample: the full file's 28 are elsewhere) and the same order line logged again at another time.
    assert exact_duplicates == 0
    assert gate.duplicates_dropped == same_order_item == 4
    kept = gate.valid[gate.valid["event_type"] == "purchase"]
    assert len(kept) == distinct_order_items == 252
    # The earliest logging of a repeated order line is the one kept.
    times = purchases.groupby("event_id")["event_time"].min()
    assert (kept.set_index("event_id")["event_time"] == times.reindex(kept["event_id"]).to_numpy()).all()


def test_diginetica_passes_the_gate_with_categories(diginetica):
    events, gate = diginetica
    assert events["category_id"].notna().all()
    assert len(gate.quarantine) == 0
    assert len(gate.valid) == len(events) - gate.duplicates_dropped == 12_391 + 252
    assert set(gate.valid["event_type"]) == {"product_view", "purchase"}
    assert (gate.valid["source"] == "diginetica").all()
    assert gate.valid["price"].isna().all() and (gate.valid["quantity"] == 1).all()


def test_diginetica_event_time_is_anchored_at_session_start(diginetica, diginetica_raw):
    """Every event lands on its own eventdate or the day before (the session started after midnight); the naive
    eventdate + timeframe would put a purchase logged days after its session start that many days too late."""
    events, _ = diginetica
    raw_views, raw_purchases = diginetica_raw
    assert events["event_time"].dtype == EVENT_TIME_DTYPE
    raw_views = raw_views.assign(
        key="dn-v-" + raw_views["session_id"] + "-" + raw_views["timeframe"] + "-" + raw_views["item_id"]
    )
    raw_purchases = raw_purchases.assign(key="dn-p-" + raw_purchases["ordernumber"] + "-" + raw_purchases["itemId"])
    dates = pd.concat(
        [raw_views.set_index("key")["eventdate"], raw_purchases.drop_duplicates("key").set_index("key")["eventdate"]]
    )
    event_day = events["event_time"].dt.tz_localize(None).dt.normalize()
    raw_day = pd.to_datetime(events["event_id"].map(dates))
    lag = (raw_day - event_day).dt.days
    assert lag.isin([0, 1]).all()
    # A one-day session is exactly eventdate (UTC midnight) + timeframe.
    one_day = raw_views.groupby("session_id")["eventdate"].transform("nunique").eq(1)
    naive_views = pd.to_datetime(raw_views["eventdate"], utc=True) + pd.to_timedelta(
        raw_views["timeframe"].astype("int64"), unit="ms"
    )
    adapter_time = events[events["event_type"] == "product_view"].set_index("event_id")["event_time"]
    assert one_day.sum() == len(raw_views) - 27  # two sessions (629: 17 views, 2205: 10) cross midnight
    assert (adapter_time.reindex(raw_views.loc[one_day, "key"]).to_numpy() == naive_views[one_day].to_numpy()).all()
    # The naive sum for purchases would land a day or more after the purchase's own eventdate wherever its
    # timeframe is a day or longer; the anchored time never does (lag above).
    in_sample = raw_purchases["sessionId"].isin(set(raw_views["session_id"]))
    naive_late = raw_purchases.loc[in_sample, "timeframe"].astype("int64") >= 86_400_000
    assert naive_late.sum() == 65


def test_diginetica_anonymous_users_and_bad_values(tmp_path):
    views = tmp_path / "views.csv"
    views.write_text(
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "7;NA;1;1000;2016-05-01\n"
        "7;NA;2;soon;2016-05-01\n"
        "8;42;3;5000;2016-05-02\n"
    )
    purchases = tmp_path / "purchases.csv"
    purchases.write_text(
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
        "7;NA;90000000;2016-05-02;100;1\n"
        "7;NA;90000000;2016-05-02;100;1\n"  # exact duplicate
        "9;NA;1;2016-05-02;101;3\n"  # session not in the views sample: not loaded
    )
    categories = tmp_path / "categories.csv"
    categories.write_text("itemId;categoryId\n1;11\n3;33\n")
    events = load_diginetica(views, purchases, categories).events
    assert len(events) == 5
    assert events.loc[events["session_id"] == "7", "user_id"].unique().tolist() == ["anon-7"]
    assert events.loc[events["session_id"] == "8", "user_id"].tolist() == ["42"]
    purchase = events[events["event_type"] == "purchase"].iloc[0]
    assert purchase["event_time"] == pd.Timestamp("2016-05-01", tz="UTC") + pd.Timedelta(milliseconds=90_000_000)
    category = dict(zip(events["product_id"], events["category_id"]))
    assert category["1"] == "11" and category["3"] == "33" and pd.isna(category["2"])  # item 2 has none: null
    gate = validate_events(events, now=NOW)
    assert gate.duplicates_dropped == 1
    assert gate.quarantine["reason"].tolist() == ["event_time: unparseable timestamp"]
    assert gate.quarantine["product_id"].tolist() == ["2"]


def test_diginetica_rejects_unknown_header(tmp_path):
    views = tmp_path / "views.csv"
    views.write_text("session;user;item;timeframe;eventdate\n1;NA;1;1;2016-01-01\n")
    with pytest.raises(ValueError, match="header"):
        load_diginetica(views_path=views)


# ------------------------------------------------------------------------------------------------ contract files


@pytest.fixture(scope="module")
def contract_sample(taobao_window_gate, diginetica) -> pd.DataFrame:
    """Validated events with every kind of value: null session and price, ids of any length, awkward prices,
    sub-second times, quantity > 1."""
    _, dn_gate = diginetica
    extra = pd.DataFrame(
        {
            "event_id": ["x-1", "x-2", "x-3"],
            "event_time": pd.to_datetime(
                ["2024-03-01T12:34:56.123456Z", "2024-03-01T23:59:59.999999Z", "1999-12-31T00:00:00Z"],
                utc=True,
                format="ISO8601",
            ),
            "user_id": ["00123", "u" * 40, "12345678901234567890123"],
            "session_id": ["s-1", None, 's 3; "quoted", with comma'],
            "event_type": ["add_to_cart", "search", "purchase"],
            "product_id": ["p-1", None, "p-3"],
            "category_id": ["NA", None, "ü-κατηγορία"],  # "NA" is an id here, not a null
            "price": [0.1, 19.99, 1234567.891234567],
            "quantity": [3, 1, 12],
            "source": ["simulator", "kafka", "simulator"],
        }
    )
    raw = pd.concat(
        [
            taobao_window_gate.valid.head(300).astype("object"),
            dn_gate.valid.tail(300).astype("object"),
            extra.astype("object"),
        ],
        ignore_index=True,
    )
    frame = validate_events(raw, now=NOW)
    assert len(frame.quarantine) == 0
    return frame.valid


def _write(events: pd.DataFrame, path):
    if path.suffix == ".parquet":
        events.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        events.to_csv(path, index=False)
    else:
        write_contract_jsonl(events, path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_contract_round_trip(contract_sample, tmp_path, suffix):
    path = _write(contract_sample, tmp_path / f"events{suffix}")
    loaded = load_contract_files(path)
    assert isinstance(loaded, SourceBatch)
    assert_contract_shaped(loaded.events)
    gate = validate_events(loaded.events, now=NOW)
    assert (len(gate.quarantine), gate.duplicates_dropped) == (0, 0)
    pd.testing.assert_frame_equal(gate.valid, contract_sample)


def test_contract_wire_format(contract_sample, tmp_path):
    path = write_contract_jsonl(contract_sample.tail(3), tmp_path / "nested" / "wire.jsonl")
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [list(r) for r in records] == [list(EVENT_COLUMNS)] * 3
    assert [r["event_time"] for r in records] == [
        "2024-03-01T12:34:56.123456Z",
        "2024-03-01T23:59:59.999999Z",
        "1999-12-31T00:00:00.000000Z",
    ]
    assert records[1]["session_id"] is None and records[1]["product_id"] is None
    assert records[2]["price"] == 1234567.891234567 and records[2]["quantity"] == 12
    # All loaded values are text, so nothing is rounded before the gate.
    loaded = load_contract_files(path).events
    assert loaded["price"].tolist() == ["0.1", "19.99", "1234567.891234567"]
    assert loaded["user_id"].iloc[2] == "12345678901234567890123"


def test_contract_directory_of_mixed_formats(contract_sample, tmp_path):
    parts = [contract_sample.iloc[:200], contract_sample.iloc[200:400], contract_sample.iloc[400:]]
    _write(parts[0], tmp_path / "a.parquet")
    _write(parts[1], tmp_path / "b.csv")
    (tmp_path / "sub").mkdir()
    _write(parts[2], tmp_path / "sub" / "c.jsonl")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".a.parquet.crc").write_text("junk")
    events = load_contract_files(tmp_path).events
    gate = validate_events(events, now=NOW)
    assert (len(gate.quarantine), gate.duplicates_dropped) == (0, 0)
    pd.testing.assert_frame_equal(gate.valid, contract_sample)
    via_registry = load_source("contract_files", paths=[tmp_path / "a.parquet", tmp_path / "sub"]).events
    assert len(via_registry) == len(parts[0]) + len(parts[2])


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
@pytest.mark.parametrize("change", ["extra", "missing"])
def test_contract_columns_must_match_exactly(contract_sample, tmp_path, suffix, change):
    events = contract_sample.head(5).copy()
    if change == "extra":
        events["device"] = "mobile"
        column = "device"
    else:
        events = events.drop(columns=["quantity"])
        column = "quantity"
    path = tmp_path / f"bad{suffix}"
    if suffix == ".jsonl":  # the writer refuses such a frame itself; write the lines by hand
        with pytest.raises(ValueError, match=column):
            write_contract_jsonl(events, path)
        path.write_text("\n".join(events.astype(str).apply(lambda r: json.dumps(r.to_dict()), axis=1)) + "\n")
    else:
        _write(events, path)
    with pytest.raises(ValueError, match=rf"{path.name}.*{change} columns \['{column}'\]"):
        load_contract_files(path)


def test_contract_json_record_missing_a_key(tmp_path, contract_sample):
    path = write_contract_jsonl(contract_sample.head(3), tmp_path / "events.jsonl")
    record = json.loads(path.read_text().splitlines()[0])
    del record["price"]
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=r"events.jsonl: line 4: .*missing columns \['price'\]"):
        load_contract_files(path)


def test_contract_unsupported_file(tmp_path):
    path = tmp_path / "events.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="unsupported"):
        load_contract_files(path)


BAD_ROWS = {
    # event_id: (field, bad value, expected reason)
    "bad-price": ("price", "-5.0", "price: must be >= 0 (-5.0)"),
    "bad-type": ("event_type", "teleport", "event_type: not one of the contract's values"),
    "bad-time": ("event_time", "yesterday", "event_time: unparseable timestamp"),
    "bad-user": ("user_id", None, "user_id: missing value"),
}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_contract_bad_values_load_then_quarantine(tmp_path, suffix):
    good = {
        "event_id": "good",
        "event_time": "2024-03-01T12:00:00Z",
        "user_id": "u1",
        "session_id": "s1",
        "event_type": "product_view",
        "product_id": "p1",
        "category_id": "c1",
        "price": "9.5",
        "quantity": "1",
        "source": "kafka",
    }
    rows = [good]
    for event_id, (field, value, _) in BAD_ROWS.items():
        rows.append({**good, "event_id": event_id, field: value})
    raw = pd.DataFrame(rows, columns=list(EVENT_COLUMNS), dtype="object")
    path = _write(raw, tmp_path / f"bad-values{suffix}")

    events = load_contract_files(path).events
    assert len(events) == 5
    gate = validate_events(events, now=NOW)
    assert gate.valid["event_id"].tolist() == ["good"]
    assert gate.duplicates_dropped == 0
    reasons = dict(zip(gate.quarantine["event_id"], gate.quarantine["reason"]))
    assert set(reasons) == set(BAD_ROWS)
    for event_id, (_, _, expected) in BAD_ROWS.items():
        assert reasons[event_id].startswith(expected), (event_id, reasons[event_id])
    assert "(teleport)" in reasons["bad-type"]
    # The quarantine keeps the original value for inspection.
    assert gate.quarantine.set_index("event_id").loc["bad-time", "event_time"] == "yesterday"


def test_all_event_types_round_trip_through_jsonl(tmp_path):
    n = len(EVENT_TYPES)
    raw = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "event_time": pd.date_range("2024-01-01", periods=n, freq="37s", tz="UTC"),
            "user_id": "u",
            "session_id": "s",
            "event_type": list(EVENT_TYPES),
            "product_id": None,
            "category_id": None,
            "price": [None] * (n - 1) + [0.0],
            "quantity": 1,
            "source": "simulator",
        }
    )
    valid = validate_events(raw, now=NOW).valid
    back = validate_events(load_contract_files(write_contract_jsonl(valid, tmp_path / "e.jsonl")).events, now=NOW)
    pd.testing.assert_frame_equal(back.valid, valid)

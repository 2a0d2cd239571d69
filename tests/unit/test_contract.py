import pandas as pd
import pytest

from propensity.contract import EVENT_COLUMNS, validate_events


def _raw(**overrides):
    row = {
        "event_id": "e1",
        "event_time": "2026-11-02T10:00:00Z",
        "user_id": "u1",
        "session_id": None,
        "event_type": "product_view",
        "product_id": "p1",
        "category_id": "c1",
        "price": 9.5,
        "quantity": 1,
        "source": "test",
    }
    return row | overrides


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"user_id": None}, "user_id: missing value"),
        ({"price": -3.0}, "price: must be >= 0"),
        ({"event_type": "teleport"}, "event_type: not one of the contract's values"),
        ({"event_time": "yesterday"}, "event_time: unparseable timestamp"),
        ({"quantity": 0}, "quantity: must be >= 1"),
        ({"price": "cheap"}, "price: not a number"),
    ],
)
def test_bad_rows_reach_quarantine_with_their_reason(bad, reason):
    raw = pd.DataFrame([_raw(), _raw(event_id="e2", **bad)])
    result = validate_events(raw)
    assert list(result.valid["event_id"]) == ["e1"]
    assert len(result.quarantine) == 1
    quarantined = result.quarantine.iloc[0]
    assert quarantined["event_id"] == "e2"
    assert reason in quarantined["reason"]
    # the original values travel with the row, so nothing is lost
    for column, value in bad.items():
        assert quarantined[column] == (None if value is None else str(value))


def test_missing_field_is_a_reason_not_a_crash():
    raw = pd.DataFrame([_raw()]).drop(columns=["user_id"])
    result = validate_events(raw)
    assert result.valid.empty
    assert "user_id: missing field" in result.quarantine.iloc[0]["reason"]


def test_duplicate_event_ids_are_dropped_once_and_counted():
    raw = pd.DataFrame([_raw(), _raw(price=1.0), _raw(event_id="e2")])
    result = validate_events(raw)
    assert list(result.valid["event_id"]) == ["e1", "e2"]
    assert result.valid.loc[0, "price"] == 9.5  # the first delivery wins
    assert result.duplicates_dropped == 1
    assert result.quarantine.empty
    assert result.rows_in == 3


def test_unknown_columns_are_refused_with_their_names():
    raw = pd.DataFrame([_raw() | {"device": "ios"}])
    with pytest.raises(ValueError, match="device"):
        validate_events(raw)


def test_valid_rows_come_out_in_contract_types():
    result = validate_events(pd.DataFrame([_raw(event_time="2026-11-02T11:00:00+01:00", price=None)]))
    valid = result.valid
    assert tuple(valid.columns) == EVENT_COLUMNS
    assert valid.loc[0, "event_time"] == pd.Timestamp("2026-11-02T10:00:00Z")
    assert pd.isna(valid.loc[0, "price"])
    assert result.bad_fraction == 0.0

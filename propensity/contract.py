"""Event contract v1: one row per storefront event. The one schema every entry point validates against.

`validate_events` is the only gate into the lake: it coerces raw adapter output to contract types, drops
duplicate `event_id`s idempotently (counted, not quarantined: a replayed event is not a bad event), and sends
every row that fails to the quarantine with a reason per row. Nothing is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow

# The fields and event types are defined once, with the same rules for one event at a time (the scoring request).
from propensity.event_record import CONTRACT_VERSION, EVENT_COLUMNS, EVENT_TYPES

# The lake's physical schema for contract events: explicit, so an all-null column (Taobao has no session ids)
# is still a string column to Spark and DuckDB.
EVENT_ARROW_SCHEMA = pa_arrow.schema(
    [
        ("event_id", pa_arrow.string()),
        ("event_time", pa_arrow.timestamp("us", tz="UTC")),
        ("user_id", pa_arrow.string()),
        ("session_id", pa_arrow.string()),
        ("event_type", pa_arrow.string()),
        ("product_id", pa_arrow.string()),
        ("category_id", pa_arrow.string()),
        ("price", pa_arrow.float64()),
        ("quantity", pa_arrow.int64()),
        ("source", pa_arrow.string()),
    ]
)

EVENT_TIME_DTYPE = pd.DatetimeTZDtype("us", "UTC")


class EventSchemaV1(pa.DataFrameModel):
    """Contract v1. `session_id` may be null: sources without one are sessionised at a 30-minute gap."""

    event_id: pa.typing.Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})
    event_time: pa.typing.Series[EVENT_TIME_DTYPE] = pa.Field(nullable=False)  # type: ignore[valid-type]
    user_id: pa.typing.Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})
    session_id: pa.typing.Series[str] = pa.Field(nullable=True)
    event_type: pa.typing.Series[str] = pa.Field(nullable=False, isin=list(EVENT_TYPES))
    product_id: pa.typing.Series[str] = pa.Field(nullable=True)
    category_id: pa.typing.Series[str] = pa.Field(nullable=True)
    price: pa.typing.Series[float] = pa.Field(nullable=True, ge=0)
    quantity: pa.typing.Series["Int64"] = pa.Field(nullable=False, ge=1)  # noqa: F821
    source: pa.typing.Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})

    class Config:
        strict = True  # unknown columns are a contract violation, not something to carry along silently
        ordered = True


@dataclass(frozen=True)
class ValidatedEvents:
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    duplicates_dropped: int
    quarantine_positions: list[int] = field(default_factory=list)  # row numbers of the quarantined rows in the input

    @property
    def rows_in(self) -> int:
        return len(self.valid) + len(self.quarantine) + self.duplicates_dropped

    @property
    def bad_fraction(self) -> float:
        return len(self.quarantine) / self.rows_in if self.rows_in else 0.0


def events_to_arrow(events: pd.DataFrame) -> pa_arrow.Table:
    return pa_arrow.Table.from_pandas(events[list(EVENT_COLUMNS)], schema=EVENT_ARROW_SCHEMA, preserve_index=False)


def _as_optional_str(series: pd.Series) -> pd.Series:
    """Ids arrive as ints, floats or strings depending on the source; the contract stores strings."""
    out = series.astype("object").where(series.notna(), None)
    if pd.api.types.infer_dtype(out, skipna=True) in ("string", "empty"):
        return out  # already strings (the common case): no per-value work
    return out.map(
        lambda v: None if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    )


def _parse_event_time(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values if getattr(values.dt, "tz", None) is not None else values.dt.tz_localize("UTC")
        return parsed.dt.tz_convert("UTC").astype(EVENT_TIME_DTYPE)
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    return parsed.astype(EVENT_TIME_DTYPE)


def coerce_events(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Cast raw adapter output to contract types. Returns the typed frame and a per-row parse-failure reason
    ("" where the row parsed); the original values of failed rows are kept by the caller for quarantine."""
    missing = [c for c in EVENT_COLUMNS if c not in raw.columns]
    raw = raw.copy()
    for column in missing:
        raw[column] = None
    reasons = pd.Series("", index=raw.index, dtype="object")

    def note(mask: pd.Series, text: str) -> None:
        if mask.any():
            reasons.loc[mask] = [f"{r}; {text}" if r else text for r in reasons.loc[mask]]

    typed = pd.DataFrame(index=raw.index)
    for column in ("event_id", "user_id", "session_id", "event_type", "product_id", "category_id", "source"):
        typed[column] = _as_optional_str(raw[column])

    typed["event_time"] = _parse_event_time(raw["event_time"])
    note(raw["event_time"].notna() & typed["event_time"].isna(), "event_time: unparseable timestamp")

    typed["price"] = pd.to_numeric(raw["price"], errors="coerce").astype("float64")
    note(raw["price"].notna() & typed["price"].isna(), "price: not a number")

    quantity = pd.to_numeric(raw["quantity"].where(raw["quantity"].notna(), 1), errors="coerce")
    fractional = quantity.notna() & (quantity % 1 != 0)
    note(quantity.isna() | fractional, "quantity: not a whole number")
    typed["quantity"] = quantity.where(~fractional).round().astype("Int64")

    for column in missing:
        if column not in ("session_id", "product_id", "category_id", "price", "quantity"):
            note(pd.Series(True, index=raw.index), f"{column}: missing field")
    return typed[list(EVENT_COLUMNS)], reasons


def _schema_reasons(typed: pd.DataFrame) -> pd.Series:
    """Per-row reasons from pandera's lazy validation (every failing check of a row, not just the first)."""
    try:
        EventSchemaV1.validate(typed, lazy=True)
        return pd.Series("", index=typed.index, dtype="object")
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        row_cases = cases[cases["index"].notna()].copy()
        frame_cases = cases[cases["index"].isna()]
        if len(frame_cases):  # a column-level failure (wrong dtype, missing column) concerns every row
            raise ValueError(
                f"event frame does not match contract {CONTRACT_VERSION}: {frame_cases.to_dict('records')}"
            )
        row_cases["text"] = (
            row_cases["column"].astype(str)
            + ": "
            + row_cases["check"].astype(str).map(_describe_check)
            + (" (" + row_cases["failure_case"].astype(str) + ")")
        )
        grouped = row_cases.groupby("index")["text"].agg(lambda t: "; ".join(sorted(set(t))))
        return grouped.reindex(typed.index).fillna("").astype("object")


def _describe_check(check: str) -> str:
    if check == "not_nullable":
        return "missing value"
    if check.startswith("isin"):
        return f"not one of the contract's values {list(EVENT_TYPES)}" if "page_view" in check else check
    if check.startswith("greater_than_or_equal_to"):
        return "must be " + check.replace("greater_than_or_equal_to", ">= ").replace("(", "").replace(")", "")
    return check


def _merge_reasons(parse_reason: str, schema_reason: str) -> str:
    """A value that failed to parse is null afterwards; say why once, not also as 'missing value'."""
    parsed_columns = {part.split(":")[0] for part in parse_reason.split("; ") if part}
    schema_parts = [
        part
        for part in schema_reason.split("; ")
        if part and not (part.split(":")[0] in parsed_columns and ": missing value" in part)
    ]
    return "; ".join([p for p in parse_reason.split("; ") if p] + schema_parts)


def validate_events(raw: pd.DataFrame, *, now: pd.Timestamp | None = None) -> ValidatedEvents:
    """The gate into the lake: dedupe by event_id, coerce, validate, quarantine with reasons."""
    unknown = sorted(set(raw.columns) - set(EVENT_COLUMNS))
    if unknown:
        raise ValueError(f"columns {unknown} are not in event contract {CONTRACT_VERSION}: map them in the adapter")
    raw = raw.reset_index(drop=True)
    typed, reasons = coerce_events(raw)

    # Idempotency: the first occurrence of an event_id wins; replays are dropped and counted.
    duplicate = typed["event_id"].notna() & typed.duplicated("event_id", keep="first")
    typed, raw, reasons = typed[~duplicate], raw[~duplicate], reasons[~duplicate]

    schema_reasons = _schema_reasons(typed)
    combined = reasons.copy()
    failing = reasons.ne("") | schema_reasons.ne("")
    combined.loc[failing] = [_merge_reasons(p, r) for p, r in zip(reasons[failing], schema_reasons[failing])]
    bad = combined.ne("")

    quarantine = (
        raw.reindex(columns=list(EVENT_COLUMNS)).loc[bad].astype("object").map(lambda v: None if pd.isna(v) else str(v))
    )
    quarantine["reason"] = combined[bad]
    quarantine["quarantined_at"] = (now or pd.Timestamp.now(tz="UTC")).isoformat()
    valid = typed.loc[~bad].reset_index(drop=True)
    return ValidatedEvents(
        valid=valid,
        quarantine=quarantine.reset_index(drop=True),
        duplicates_dropped=int(duplicate.sum()),
        quarantine_positions=[int(i) for i in quarantine.index],
    )

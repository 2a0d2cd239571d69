"""The decision log, session outcomes and labelled decisions: what the endpoint decided and what happened after.

- Decisions: one row per scored row (HTTP 200 only) with the score, the features the model read and the
  intervention decision. Read from the local runtime's inference log (JSON lines) or from SageMaker Data Capture
  (JSON lines of captured request and response bodies); both go through `decision_row`, so the frame is the same.
  Error answers are skipped and counted; an unreadable line or record is quarantined with its reason and never
  stops the read. The counts travel in `frame.attrs` (`READ_ERRORS`, `READ_QUARANTINE`).
- Outcomes: one row per session of the lake's `session_events`: when it started and ended, whether and when it
  first purchased, and its purchase revenue (price x quantity; an unknown price counts 0).
- Labelled decisions: decisions whose session has closed (its last event, or the decision if later, is at least
  `maturity_s` old), labelled 1 when the session purchased at or after the decision. A decision taken after the
  session's first purchase is left out: the outcome it would predict has already happened.

All times are UTC (`datetime64[us, UTC]`).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from propensity.features.definitions import MODEL_FEATURE_NAMES

TIME_DTYPE = pd.DatetimeTZDtype("us", "UTC")
DECISION_COLUMNS: dict[str, object] = {
    "request_id": "object",
    "decided_at": TIME_DTYPE,
    "session_id": "object",
    "user_id": "object",
    "endpoint": "object",
    "variant": "object",
    "model_version": "object",
    "propensity": "float64",
    "fallback": "bool",
    "fallback_reason": "object",
    **{name: "float64" for name in MODEL_FEATURE_NAMES},
    "treated": "bool",
    "holdout": "bool",
    "offer": "object",
    "treatment_probability": "float64",
    "latency_ms": "float64",
}
OUTCOME_COLUMNS: dict[str, object] = {
    "session_id": "object",
    "user_id": "object",
    "session_start": TIME_DTYPE,
    "session_end": TIME_DTYPE,
    "purchased": "bool",
    "first_purchase_time": TIME_DTYPE,
    "revenue": "float64",
    "time_to_purchase_s": "float64",
    "events_before_purchase": "int64",  # the session's events before its first purchase (all of them if none)
}
LABEL_COLUMNS: dict[str, object] = {
    "session_start": TIME_DTYPE,  # on the events' clock: what a retrain splits by (see label_decisions)
    "label": "int64",
    "revenue": "float64",
    "time_to_purchase_s": "float64",
    "matured_at": TIME_DTYPE,
}
LABELLED_COLUMNS: dict[str, object] = DECISION_COLUMNS | LABEL_COLUMNS
PURCHASE = "purchase"
SESSION_EVENTS_SEEN = "session_events"  # the model feature counting the session's events the online row had folded
READ_ERRORS = "errors"  # frame.attrs: error answers (status >= 400) skipped
READ_QUARANTINE = "quarantine"  # frame.attrs: [{"where": ..., "reason": ...}] for lines that could not be read
_QUARANTINE_TEXT = 300


class MalformedDecision(ValueError):
    """A line or record that is not a decision of this contract; the message is the quarantine reason."""


def _text(value, field: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedDecision(f"{field} must be a non-empty string, got {json.dumps(value)[:40]}")
    return value


def _number(value, field: str, *, nullable: bool = False) -> float:
    if value is None and nullable:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedDecision(f"{field} must be a number, got {json.dumps(value)[:40]}")
    return float(value)


def _flag(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise MalformedDecision(f"{field} must be true or false, got {json.dumps(value)[:40]}")
    return value


def _object(value, field: str) -> dict:
    if not isinstance(value, dict):
        raise MalformedDecision(f"{field} must be an object, got {type(value).__name__}")
    return value


def decision_row(
    prediction: dict, *, request_id: str, decided_at: pd.Timestamp, endpoint: str, latency_ms: float
) -> list:
    """One prediction of the /invocations response as a decision row, in DECISION_COLUMNS order; raises
    MalformedDecision with the reason when it is not one."""
    prediction = _object(prediction, "prediction")
    features = _object(prediction.get("features"), "features")
    decision = _object(prediction.get("decision"), "decision")
    unknown = sorted(set(features) - set(MODEL_FEATURE_NAMES))
    if unknown:
        raise MalformedDecision(f"features has unknown name(s) {unknown[:5]}: not this platform's model features")
    propensity = _number(prediction.get("propensity"), "propensity")
    if not 0.0 <= propensity <= 1.0:
        raise MalformedDecision(f"propensity {propensity} is not a probability")
    probability = _number(decision.get("treatment_probability"), "decision.treatment_probability")
    if not 0.0 <= probability <= 1.0:
        raise MalformedDecision(f"decision.treatment_probability {probability} is not a probability")
    return [
        _text(request_id, "request_id"),
        decided_at,
        _text(prediction.get("session_id"), "session_id"),
        _text(prediction.get("user_id"), "user_id"),
        endpoint,
        _text(prediction.get("variant"), "variant"),
        _text(prediction.get("model_version"), "model_version"),
        propensity,
        _flag(prediction.get("fallback"), "fallback"),
        _text(prediction.get("fallback_reason"), "fallback_reason", nullable=True),
        *(_number(features.get(name), f"features.{name}", nullable=True) for name in MODEL_FEATURE_NAMES),
        _flag(decision.get("treated"), "decision.treated"),
        _flag(decision.get("holdout"), "decision.holdout"),
        _text(decision.get("offer"), "decision.offer", nullable=True),
        probability,
        latency_ms,
    ]


def decision_frame(rows: list[list], *, errors: int = 0, quarantine: list[dict] | None = None) -> pd.DataFrame:
    """Rows from `decision_row` as the typed decision frame (empty rows: an empty frame with every column)."""
    frame = pd.DataFrame(rows, columns=list(DECISION_COLUMNS))
    frame = frame.astype({name: dtype for name, dtype in DECISION_COLUMNS.items() if name != "decided_at"})
    frame["decided_at"] = pd.to_datetime(frame["decided_at"], utc=True).astype(TIME_DTYPE)
    frame.attrs[READ_ERRORS] = errors
    frame.attrs[READ_QUARANTINE] = list(quarantine or [])
    return frame


def _quarantined(where: str, reason: str) -> dict:
    return {"where": where, "reason": reason[:_QUARANTINE_TEXT]}


def _lines(source: Iterable[str] | str | Path) -> Iterable[str | bytes]:
    """The lines of a log file as bytes (none when it does not exist yet), or the given lines."""
    if not isinstance(source, (str, Path)):
        yield from source
        return
    path = Path(source)
    if not path.exists():
        return
    with open(path, "rb") as handle:  # decoded line by line: a line that is not UTF-8 is quarantined alone
        yield from handle


def decisions_from_inference_log(source: Iterable[str] | str | Path, endpoint: str) -> pd.DataFrame:
    """The decisions in an inference log (a path, or its lines); a missing file holds none."""
    rows, errors, quarantine = [], 0, []
    for number, line in enumerate(_lines(source), start=1):
        where = f"line {number}"
        try:
            line = line.decode("utf-8") if isinstance(line, bytes) else line
            if not line.strip():
                continue
            record = _object(json.loads(line), "the line")
            status = record.get("status")
            if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
                errors += 1
                continue
            if status != 200:
                raise MalformedDecision(f"status must be 200 or an error status, got {json.dumps(status)[:40]}")
            ts = _number(record.get("ts"), "ts")
            rows.append(
                decision_row(
                    record,
                    request_id=record.get("request_id"),
                    decided_at=pd.Timestamp(ts, unit="s", tz="UTC"),
                    endpoint=endpoint,
                    latency_ms=_number(record.get("latency_ms"), "latency_ms"),
                )
            )
        # JSONDecodeError and MalformedDecision are ValueErrors; RecursionError: nesting too deep for json
        except (ValueError, OverflowError, RecursionError) as error:
            quarantine.append(_quarantined(where, f"{type(error).__name__}: {error}"))
    return decision_frame(rows, errors=errors, quarantine=quarantine)


def captured_body(capture: dict, field: str) -> object:
    """A Data Capture payload (`endpointInput` / `endpointOutput`) decoded to JSON. JSON and CSV encodings hold the
    body as text; BASE64 (SageMaker's default for content types not listed as JSON or CSV) as base64."""
    payload = _object(capture.get(field), f"captureData.{field}")
    data, encoding = payload.get("data"), payload.get("encoding")
    if not isinstance(data, str):
        raise MalformedDecision(f"captureData.{field}.data must be a string")
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as error:
            raise MalformedDecision(f"captureData.{field}.data is not base64 of UTF-8 text: {error}") from None
    elif encoding not in ("JSON", "CSV"):
        raise MalformedDecision(f"captureData.{field}.encoding {json.dumps(encoding)[:40]}: JSON, CSV or BASE64")
    try:
        return json.loads(data)
    except ValueError as error:
        raise MalformedDecision(f"captureData.{field}.data is not JSON: {error}") from None


def decisions_from_data_capture(records: Iterable[dict | str | bytes], endpoint: str) -> pd.DataFrame:
    """The decisions in SageMaker Data Capture records (one per invocation: parsed JSON lines, or raw lines): the
    response body is one prediction or {"predictions": [...]}, and every row of an invocation gets its eventId and
    inferenceTime. Data Capture has no latency: `latency_ms` is NaN."""
    rows, errors, quarantine = [], 0, []
    for number, record in enumerate(records, start=1):
        where = f"record {number}"
        try:
            if isinstance(record, (str, bytes)):
                record = json.loads(record)
            record = _object(record, "the record")
            metadata = _object(record.get("eventMetadata"), "eventMetadata")
            event_id = _text(metadata.get("eventId"), "eventMetadata.eventId")
            where = f"record {number} (eventId {event_id})"
            decided_at = pd.Timestamp(_text(metadata.get("inferenceTime"), "eventMetadata.inferenceTime"))
            decided_at = decided_at.tz_localize("UTC") if decided_at.tzinfo is None else decided_at.tz_convert("UTC")
            body = _object(captured_body(_object(record.get("captureData"), "captureData"), "endpointOutput"), "body")
            if "error" in body:
                errors += 1
                continue
            predictions = body["predictions"] if "predictions" in body else [body]
            if not isinstance(predictions, list) or not predictions:
                raise MalformedDecision("predictions must be a non-empty list")
            rows.extend(
                decision_row(p, request_id=event_id, decided_at=decided_at, endpoint=endpoint, latency_ms=math.nan)
                for p in predictions
            )
        except (ValueError, OverflowError, RecursionError) as error:
            quarantine.append(_quarantined(where, f"{type(error).__name__}: {error}"))
    return decision_frame(rows, errors=errors, quarantine=quarantine)


def empty_frame(columns: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def session_outcomes(session_events: pd.DataFrame) -> pd.DataFrame:
    """One row per session of a `session_events` frame (event_type, price, quantity, event_time, session_id,
    user_id), in OUTCOME_COLUMNS."""
    if session_events.empty:
        return empty_frame(OUTCOME_COLUMNS)
    events = session_events[["session_id", "user_id", "event_time", "event_type", "price", "quantity"]].copy()
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True).astype(TIME_DTYPE)
    is_purchase = events["event_type"].eq(PURCHASE)
    events["purchase_time"] = events["event_time"].where(is_purchase)
    first_purchase = events.groupby("session_id")["purchase_time"].transform("min")
    events["before_purchase"] = first_purchase.isna() | (events["event_time"] < first_purchase)
    # unknown prices count 0, as in the session's cart value
    events["purchase_value"] = (
        events["price"].astype("float64").fillna(0.0) * events["quantity"].astype("float64")
    ).where(is_purchase, 0.0)
    grouped = events.groupby("session_id", sort=True)
    outcomes = pd.DataFrame(
        {
            "user_id": grouped["user_id"].first(),
            "session_start": grouped["event_time"].min(),
            "session_end": grouped["event_time"].max(),
            "first_purchase_time": grouped["purchase_time"].min(),
            "revenue": grouped["purchase_value"].sum(),
            "events_before_purchase": grouped["before_purchase"].sum(),
        }
    ).reset_index()
    outcomes["purchased"] = outcomes["first_purchase_time"].notna()
    outcomes["time_to_purchase_s"] = (outcomes["first_purchase_time"] - outcomes["session_start"]).dt.total_seconds()
    return outcomes[list(OUTCOME_COLUMNS)].astype(OUTCOME_COLUMNS)


def label_decisions(
    decisions: pd.DataFrame, outcomes: pd.DataFrame, *, as_of: pd.Timestamp, maturity_s: float
) -> pd.DataFrame:
    """The decisions whose label has matured, with label, revenue, time to purchase and when it matured
    (LABELLED_COLUMNS). A decision whose session is not in `outcomes` (its events have not landed) waits.

    Two clocks meet here: decisions are stamped by the endpoint, events by the storefront (and a replayed or simulated
    store's events carry their own times). So nothing compares the two:
    - a decision came before the session's first purchase when the state it was scored on, `session_events` (the
      events the online row had folded), holds no more events than the session had before that purchase; a
      decision scored without session features (a fallback) is compared by time instead;
    - a session has closed once its last event is `maturity_s` older than `as_of`, both on the events' clock.
    `time_to_purchase_s` is from the decision's stamp to the first purchase, left empty where the clocks disagree."""
    if maturity_s < 0:
        raise ValueError(f"maturity_s must be >= 0, got {maturity_s}")
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    joined = decisions[list(DECISION_COLUMNS)].merge(
        outcomes[
            ["session_id", "session_start", "session_end", "first_purchase_time", "revenue", "events_before_purchase"]
        ].rename(columns={"revenue": "session_revenue"}),
        on="session_id",
        how="inner",
        validate="many_to_one",
    )
    if joined.empty:
        return empty_frame(LABELLED_COLUMNS)
    matured_at = joined["session_end"] + pd.Timedelta(seconds=maturity_s)
    first_purchase = joined["first_purchase_time"]
    seen = joined[SESSION_EVENTS_SEEN]
    before_by_state = seen <= joined["events_before_purchase"]
    before_by_time = joined["decided_at"] <= first_purchase
    after_purchase = first_purchase.notna() & ~before_by_state.where(seen.notna(), before_by_time)
    keep = (matured_at <= as_of) & ~after_purchase
    labelled = joined.loc[keep, list(DECISION_COLUMNS)].copy()
    labelled["session_start"] = joined.loc[keep, "session_start"]
    purchased = first_purchase[keep].notna()
    labelled["label"] = purchased.astype("int64")
    # every purchase of a kept decision's session is at or after its first, so after the decision
    labelled["revenue"] = joined.loc[keep, "session_revenue"].where(purchased, 0.0)
    waited = (first_purchase[keep] - labelled["decided_at"]).dt.total_seconds()
    labelled["time_to_purchase_s"] = waited.where(waited >= 0)
    labelled["matured_at"] = matured_at[keep]
    return labelled.reset_index(drop=True).astype(LABELLED_COLUMNS)


def day_bounds(day: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of a UTC day given as YYYY-MM-DD."""
    start = pd.Timestamp(day, tz="UTC")
    return start, start + pd.Timedelta(days=1)


def on_day(frame: pd.DataFrame, column: str, day: str) -> pd.DataFrame:
    """The rows whose `column` falls in the UTC day (attrs kept)."""
    start, end = day_bounds(day)
    chosen = frame[(frame[column] >= start) & (frame[column] < end)].reset_index(drop=True)
    chosen.attrs = dict(frame.attrs)
    return chosen

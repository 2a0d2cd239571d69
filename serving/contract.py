"""The /invocations request and response contract, and its validation (bad input is a 4xx with a reason).

Request: one object or a batch
    {"session_id": "s1", "user_id": "u1"}
    {"session_id": "s1", "user_id": "u1", "events": [{contract-v1 event}, ...]}
    {"instances": [{"session_id": "s1", "user_id": "u1"}, ...]}
  `events` (optional): the session's latest events as the storefront has them; each must pass event contract v1
  (`propensity.event_record`) and belong to the instance's user and session. The scorer folds those the online row
  does not reflect yet (`propensity.features.request_fold`).
Response: {"predictions": [{"session_id", "user_id", "propensity", "model_version", "variant",
           "feature_age_s": {view: seconds or null}, "fallback": bool, "fallback_reason": str or null,
           "features": {feature: value or null, in MODEL_FEATURE_NAMES order},
           "decision": {"treated": bool, "holdout": bool, "offer": str or null,
                        "treatment_probability": float},
           "request_events": {"folded": [event_id, ...], "ignored": [{"event_id", "reason"}, ...],
                              "not_folded_reason": str or null}  (only when the instance sent `events`)}, ...]}
          (a single request gets the one prediction object; `serving.decision` explains the decision)

Validation is by hand, in one pass over the parsed body: a schema library per request would cost more than the
scoring. `serving.openapi` publishes the same rules as an OpenAPI document built from the constants below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from propensity.event_record import EventRecord, InvalidEvent, validate_event

MAX_BATCH = 100
MAX_BODY_BYTES = 256 * 1024
MAX_ID_LENGTH = 256
MAX_REQUEST_EVENTS = 20  # per instance: "the last few" events of the session
ID_FIELDS = ("session_id", "user_id")
EVENTS_FIELD = "events"
BATCH_FIELD = "instances"
INSTANCE_FIELDS = frozenset((*ID_FIELDS, EVENTS_FIELD))
REQUEST_FIELDS = frozenset({BATCH_FIELD})
# SageMaker's header that sends a request to one production variant (the local runtime's router honours it too).
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"


class BadRequest(ValueError):
    """A client error: the status to answer with and a message that says what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ScoringRequest:
    session_id: str
    user_id: str
    events: tuple[EventRecord, ...] | None = None  # None: the request sent no `events` field


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose names repeat is ambiguous (which session_id was meant?), so it is refused."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


# Built once: json.loads with options would build a decoder per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def check_content_length(header: bytes | None) -> None:
    """Refuse a request on its Content-Length alone, before any of the body is read (a 200 MB body is never read)."""
    if header is None:
        return
    digits = header.strip()
    if not digits.isdigit():  # bytes.isdigit: ASCII digits only
        raise BadRequest(400, f"Content-Length {digits[:40].decode('latin-1')!r} is not a number of bytes")
    digits = digits.lstrip(b"0") or b"0"
    # the length test first: int() refuses strings of more than 4300 digits
    if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body of {digits[:40].decode()} bytes exceeds {MAX_BODY_BYTES}")


def _describe(value) -> str:
    """A wrong value, short, for a message. Containers by kind only: spelling a deeply nested one would recurse."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return json.dumps(value)[:40]


def _instance(value, where: str) -> ScoringRequest:
    if not isinstance(value, dict):
        raise BadRequest(422, f"{where} must be an object with session_id and user_id, got {type(value).__name__}")
    unknown = sorted(set(value) - INSTANCE_FIELDS)
    if unknown:
        raise BadRequest(422, f"{where} has unknown field(s) {unknown}: only {sorted(INSTANCE_FIELDS)} are accepted")
    for field in ID_FIELDS:
        if field not in value:
            raise BadRequest(422, f"{where} is missing {field}")
        item = value[field]
        if not isinstance(item, str) or not item:
            raise BadRequest(422, f"{where}.{field} must be a non-empty string, got {_describe(item)}")
        if len(item) > MAX_ID_LENGTH:
            raise BadRequest(422, f"{where}.{field} is longer than {MAX_ID_LENGTH} characters")
        # JSON's \ud800 escape yields a lone surrogate, which the online store's key encoding cannot write.
        _whole_characters(item, f"{where}.{field}")
    if EVENTS_FIELD not in value:
        return ScoringRequest(session_id=value["session_id"], user_id=value["user_id"])
    return ScoringRequest(
        session_id=value["session_id"],
        user_id=value["user_id"],
        events=_events(value[EVENTS_FIELD], value["session_id"], value["user_id"], f"{where}.{EVENTS_FIELD}"),
    )


def _whole_characters(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRequest(
            422,
            f"{where} cannot be encoded as UTF-8: it holds a lone surrogate "
            f"(\\u{ord(text[error.start]):04x} at character {error.start}); send whole characters",
        ) from None


def _events(value, session_id: str, user_id: str, where: str) -> tuple[EventRecord, ...]:
    if not isinstance(value, list):
        raise BadRequest(422, f"{where} must be an array of contract-v1 events, got {_describe(value)}")
    if len(value) > MAX_REQUEST_EVENTS:
        raise BadRequest(
            413, f"{where} holds {len(value)} events: send at most the session's last {MAX_REQUEST_EVENTS}"
        )
    events = []
    for j, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadRequest(422, f"{where}[{j}] must be an object (a contract-v1 event), got {_describe(item)}")
        # An event of the instance's session: its user and session are the instance's, given or not.
        for field, own in (("user_id", user_id), ("session_id", session_id)):
            if item.get(field) not in (None, own):
                raise BadRequest(
                    422, f"{where}[{j}].{field} {_describe(item[field])} is not the instance's {field} {own!r}"
                )
        try:
            event = validate_event({**item, "user_id": user_id, "session_id": session_id})
        except InvalidEvent as error:
            raise BadRequest(422, f"{where}[{j}]: {error}") from None
        _whole_characters(event.event_id, f"{where}[{j}].event_id")  # it is echoed in the response
        events.append(event)
    return tuple(events)


def _parse_json(body: bytes):
    if not body:
        raise BadRequest(400, "request body is empty: send one object or {'instances': [...]} as JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(400, f"request body is not valid JSON: it is not UTF-8 (byte {error.start})") from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise BadRequest(400, "request body is not valid JSON for this API: it is nested too deeply") from None
    except ValueError as error:  # syntax, duplicate keys, NaN/Infinity, integers over Python's digit limit
        raise BadRequest(400, f"request body is not valid JSON: {error}") from None


def parse_request(body: bytes, content_type: str | None) -> tuple[list[ScoringRequest], bool]:
    """The validated instances, and whether the request was a batch (the response mirrors it)."""
    if content_type is not None and content_type.split(";")[0].strip().lower() not in ("application/json", ""):
        raise BadRequest(415, f"content type {content_type!r} is not supported: send application/json")
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    payload = _parse_json(body)
    if isinstance(payload, dict) and BATCH_FIELD in payload:
        unknown = sorted(set(payload) - REQUEST_FIELDS)
        if unknown:
            raise BadRequest(422, f"unknown top-level field(s) {unknown}: send {{'instances': [...]}}")
        instances = payload[BATCH_FIELD]
        if not isinstance(instances, list) or not instances:
            raise BadRequest(422, "instances must be a non-empty list")
        if len(instances) > MAX_BATCH:
            raise BadRequest(413, f"batch of {len(instances)} exceeds the limit of {MAX_BATCH} instances")
        return [_instance(item, f"instances[{i}]") for i, item in enumerate(instances)], True
    return [_instance(payload, "request")], False

"""The /invocations request and response contract, and its validation (bad input is a 4xx with a reason).

Request: one object or a batch
    {"session_id": "s1", "user_id": "u1"}
    {"instances": [{"session_id": "s1", "user_id": "u1"}, ...]}
Response: {"predictions": [{"session_id", "user_id", "propensity", "model_version", "variant",
           "feature_age_s": {view: seconds or null}, "fallback": bool, "fallback_reason": str or null}, ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_BATCH = 100
MAX_BODY_BYTES = 256 * 1024
MAX_ID_LENGTH = 256
INSTANCE_FIELDS = frozenset({"session_id", "user_id"})
REQUEST_FIELDS = frozenset({"instances"})


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


def _instance(value, where: str) -> ScoringRequest:
    if not isinstance(value, dict):
        raise BadRequest(422, f"{where} must be an object with session_id and user_id, got {type(value).__name__}")
    unknown = sorted(set(value) - INSTANCE_FIELDS)
    if unknown:
        raise BadRequest(422, f"{where} has unknown field(s) {unknown}: only {sorted(INSTANCE_FIELDS)} are accepted")
    for field in ("session_id", "user_id"):
        if field not in value:
            raise BadRequest(422, f"{where} is missing {field}")
        item = value[field]
        if not isinstance(item, str) or not item:
            raise BadRequest(422, f"{where}.{field} must be a non-empty string, got {json.dumps(item)[:40]}")
        if len(item) > MAX_ID_LENGTH:
            raise BadRequest(422, f"{where}.{field} is longer than {MAX_ID_LENGTH} characters")
    return ScoringRequest(session_id=value["session_id"], user_id=value["user_id"])


def parse_request(body: bytes, content_type: str | None) -> tuple[list[ScoringRequest], bool]:
    """The validated instances, and whether the request was a batch (the response mirrors it)."""
    if content_type is not None and content_type.split(";")[0].strip().lower() not in ("application/json", ""):
        raise BadRequest(415, f"content type {content_type!r} is not supported: send application/json")
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(400, f"request body is not valid JSON: {error}") from None
    if isinstance(payload, dict) and "instances" in payload:
        unknown = sorted(set(payload) - REQUEST_FIELDS)
        if unknown:
            raise BadRequest(422, f"unknown top-level field(s) {unknown}: send {{'instances': [...]}}")
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest(422, "instances must be a non-empty list")
        if len(instances) > MAX_BATCH:
            raise BadRequest(413, f"batch of {len(instances)} exceeds the limit of {MAX_BATCH} instances")
        return [_instance(item, f"instances[{i}]") for i, item in enumerate(instances)], True
    return [_instance(payload, "request")], False

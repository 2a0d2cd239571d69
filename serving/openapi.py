"""The inference server's contract as an OpenAPI 3.0 document, built from `serving.contract`'s own constants.

Both servers answer it at `GET /openapi.json` (the inference server and the endpoint runtime's router); the committed
copy is `docs/openapi.json`, which a unit test keeps equal to this module's output. Regenerate it with
`python -m serving.openapi > docs/openapi.json`. The servers validate by hand (`serving.contract`); this document
describes that validation, it is never run on the request path.
"""

from __future__ import annotations

import functools
import json

from propensity.event_record import EVENT_TYPES
from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.features.request_fold import ALREADY_ONLINE, NOT_NEWER, REPEATED
from serving.contract import (
    BATCH_FIELD,
    EVENTS_FIELD,
    ID_FIELDS,
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_ID_LENGTH,
    MAX_REQUEST_EVENTS,
    TARGET_VARIANT_HEADER,
)

ERROR = {"$ref": "#/components/schemas/Error"}


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/responses/{name}"}


def openapi_document() -> dict:
    ids = {
        field: {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID_LENGTH,
            "description": f"The {field.split('_')[0]}'s id: Unicode text of 1 to {MAX_ID_LENGTH} characters "
            "(a lone surrogate is refused with 422).",
        }
        for field in ID_FIELDS
    }
    schemas = {
        "Instance": {
            "type": "object",
            "description": "One decision point to score.",
            "required": list(ID_FIELDS),
            "properties": {
                **ids,
                EVENTS_FIELD: {
                    "type": "array",
                    "maxItems": MAX_REQUEST_EVENTS,
                    "items": {"$ref": "#/components/schemas/Event"},
                    "description": f"Optional: the session's latest events (at most {MAX_REQUEST_EVENTS}), as the "
                    "storefront has them. Those the online store does not reflect yet are folded onto the session's "
                    "online row before scoring, with the stream's own feature semantics; the others are ignored. "
                    "`request_events` in the answer says which is which.",
                },
            },
            "additionalProperties": False,
        },
        "Event": {
            "type": "object",
            "description": "A storefront event of the instance's session, event contract v1 "
            "(`propensity.event_record`). Its `user_id` and `session_id` are the instance's: they may be left out, "
            "and when given must equal them. Ids may also be sent as whole numbers.",
            "required": ["event_id", "event_time", "event_type", "source"],
            "properties": {
                "event_id": {"type": "string", "minLength": 1, "description": "Unique per event (idempotency key)."},
                "event_time": {
                    "type": "string",
                    "format": "date-time",
                    "description": "ISO 8601; UTC when it has no offset.",
                },
                "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
                "product_id": {"type": "string", "nullable": True},
                "category_id": {"type": "string", "nullable": True},
                "price": {"type": "number", "minimum": 0, "nullable": True},
                "quantity": {"type": "integer", "minimum": 1, "nullable": True, "description": "1 when null."},
                "source": {"type": "string", "minLength": 1, "description": "Which client produced it."},
            },
            "additionalProperties": False,
        },
        "Batch": {
            "type": "object",
            "description": f"Up to {MAX_BATCH} decision points, scored in one online-store round trip.",
            "required": [BATCH_FIELD],
            "properties": {
                BATCH_FIELD: {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                    "items": {"$ref": "#/components/schemas/Instance"},
                }
            },
            "additionalProperties": False,
        },
        "Prediction": {
            "type": "object",
            "description": "One scored row. `fallback` says whether the model scored without all its features.",
            "required": [
                *ID_FIELDS,
                "propensity",
                "model_version",
                "variant",
                "feature_age_s",
                "fallback",
                "fallback_reason",
                "features",
                "decision",
            ],
            "properties": {
                **{field: {"type": "string"} for field in ID_FIELDS},
                "propensity": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "The calibrated probability of a purchase in this session.",
                },
                "model_version": {"type": "string", "description": "The model version that scored the row."},
                "variant": {"type": "string", "description": "The production variant that answered."},
                "feature_age_s": {
                    "type": "object",
                    "description": "Per feature view: seconds since the served row's event time, null when the "
                    "online store held no row.",
                    "additionalProperties": {"type": "number", "nullable": True},
                },
                "fallback": {"type": "boolean"},
                "fallback_reason": {
                    "type": "string",
                    "nullable": True,
                    "description": "Why features were missing (no row, online store unavailable); null otherwise.",
                },
                "features": {
                    "type": "object",
                    "description": "The feature vector the model scored, by name; null where the value was missing.",
                    "required": list(MODEL_FEATURE_NAMES),
                    "properties": {name: {"type": "number", "nullable": True} for name in MODEL_FEATURE_NAMES},
                    "additionalProperties": False,
                },
                "decision": {"$ref": "#/components/schemas/Decision"},
                "request_events": {"$ref": "#/components/schemas/RequestEvents"},
            },
            "additionalProperties": False,
        },
        "RequestEvents": {
            "type": "object",
            "description": "Present when the instance sent `events`: what became of them.",
            "required": ["folded", "ignored", "not_folded_reason"],
            "properties": {
                "folded": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Event ids folded onto the online row before scoring, in fold order.",
                },
                "ignored": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["event_id", "reason"],
                        "properties": {
                            "event_id": {"type": "string"},
                            "reason": {"type": "string", "enum": [ALREADY_ONLINE, NOT_NEWER, REPEATED]},
                        },
                        "additionalProperties": False,
                    },
                    "description": "Events the online row already reflects, or repeated in the request.",
                },
                "not_folded_reason": {
                    "type": "string",
                    "nullable": True,
                    "description": "Why no event could be folded (the online store unavailable, or its row without "
                    "a fold state); null otherwise.",
                },
            },
            "additionalProperties": False,
        },
        "Decision": {
            "type": "object",
            "description": "The intervention decided for this row by the model's policy. A randomised holdout of "
            "sessions (by a hash of the session id) is never treated; otherwise a row is treated when the policy's "
            "rule says so (propensity at or above its threshold, or a positive incremental profit estimated by "
            "its uplift model), and a small randomised exploration share of the others is treated all the same. "
            "Act on `treated` and `offer`.",
            "required": ["treated", "holdout", "offer", "treatment_probability"],
            "properties": {
                "treated": {"type": "boolean", "description": "Show the offer."},
                "holdout": {"type": "boolean", "description": "The session is in the randomised holdout."},
                "offer": {
                    "type": "string",
                    "nullable": True,
                    "description": "The offer to show when treated; null otherwise.",
                },
                "treatment_probability": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "The probability that this row is treated under the policy: 1 - holdout share "
                    "when the rule would treat it, else (1 - holdout share) * exploration share.",
                },
            },
            "additionalProperties": False,
        },
        "Predictions": {
            "type": "object",
            "description": "A batch's answer: one prediction per instance, in request order.",
            "required": ["predictions"],
            "properties": {"predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}},
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "description": "What was wrong and what to send instead.",
            "required": ["error"],
            "properties": {"error": {"type": "string", "minLength": 1}},
            "additionalProperties": False,
        },
    }
    responses = {
        "BadRequest": _error_response(
            "The body is empty, not UTF-8 or not JSON (syntax, duplicate keys, NaN or Infinity, nesting too deep, "
            "numbers too long), the Content-Length is not a number, or the router has no such target variant."
        ),
        "NotFound": _error_response("No such path."),
        "MethodNotAllowed": {
            **_error_response("The path exists but not with this method; `Allow` names the one it takes."),
            "headers": {"Allow": {"required": True, "schema": {"type": "string"}}},
        },
        "PayloadTooLarge": _error_response(
            f"The body is over {MAX_BODY_BYTES} bytes (refused on its Content-Length before it is read, or as soon "
            f"as a chunked body passes the limit; the connection is then closed) or the batch has more than "
            f"{MAX_BATCH} instances, or an instance more than {MAX_REQUEST_EVENTS} events."
        ),
        "UnsupportedMediaType": _error_response("The Content-Type is not application/json."),
        "UnprocessableEntity": _error_response(
            "Valid JSON of the wrong shape: not an object, a missing or unknown field, an id that is not a "
            f"non-empty string of at most {MAX_ID_LENGTH} characters or not encodable as UTF-8, "
            f"`{BATCH_FIELD}` not a non-empty list of objects, or an event that breaks event contract v1 or belongs "
            "to another user or session."
        ),
        "ServerError": _error_response("Scoring failed unexpectedly; the server stays up."),
        "Unavailable": _error_response("The endpoint runtime's router has no variant deployed."),
    }
    invocations = {
        "post": {
            "operationId": "invoke",
            "summary": "Score one decision point or a batch",
            "description": f"SageMaker's inference contract. A single object gets a single prediction, a batch "
            f"(`{BATCH_FIELD}`) gets `predictions` in the same order. Bodies over {MAX_BODY_BYTES} bytes are "
            "refused with 413.",
            "parameters": [
                {
                    "name": TARGET_VARIANT_HEADER,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Endpoint runtime's router only: the production variant to answer, instead of "
                    "one drawn by traffic weight (400 if the endpoint has no such variant). A single-model server "
                    "ignores it.",
                }
            ],
            "requestBody": {
                "required": True,
                "description": f"JSON (UTF-8), at most {MAX_BODY_BYTES} bytes.",
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Instance"},
                                {"$ref": "#/components/schemas/Batch"},
                            ]
                        },
                        "examples": {
                            "single": {"value": {"session_id": "s1", "user_id": "u1"}},
                            "with_events": {
                                "value": {
                                    "session_id": "s1",
                                    "user_id": "u1",
                                    EVENTS_FIELD: [
                                        {
                                            "event_id": "e41",
                                            "event_time": "2026-12-08T10:15:02.250Z",
                                            "event_type": "add_to_cart",
                                            "product_id": "p7",
                                            "category_id": "c2",
                                            "price": 19.9,
                                            "quantity": 1,
                                            "source": "storefront",
                                        }
                                    ],
                                }
                            },
                            "batch": {
                                "value": {
                                    BATCH_FIELD: [
                                        {"session_id": "s1", "user_id": "u1"},
                                        {"session_id": "s2", "user_id": "u1"},
                                    ]
                                }
                            },
                        },
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Scored.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Prediction"},
                                    {"$ref": "#/components/schemas/Predictions"},
                                ]
                            }
                        }
                    },
                },
                "400": _ref("BadRequest"),
                "413": _ref("PayloadTooLarge"),
                "415": _ref("UnsupportedMediaType"),
                "422": _ref("UnprocessableEntity"),
                "500": _ref("ServerError"),
                "503": _ref("Unavailable"),
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Purchase-propensity inference",
            "version": "1",
            "description": "The SageMaker inference-container contract served by `serving.server` (one model) and "
            '`serving.router` (an endpoint\'s variants). Every error is a JSON `{"error": ...}`: an unknown path '
            "is 404, a known path with another method is 405 with `Allow`, and a request body over "
            f"{MAX_BODY_BYTES} bytes is 413 on any path.",
        },
        "paths": {
            "/ping": {
                "get": {
                    "operationId": "ping",
                    "summary": "Health check",
                    "responses": {
                        "200": {
                            "description": "Ready to score (empty body).",
                            "content": {"text/plain": {"schema": {"type": "string", "maxLength": 0}}},
                        },
                        "503": _ref("Unavailable"),
                    },
                }
            },
            "/invocations": invocations,
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Latency, score and fallback histograms and error counts, per variant.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": schemas, "responses": responses},
    }


def render() -> str:
    """The committed form (docs/openapi.json): pretty, sorted keys, a trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


@functools.cache
def openapi_json() -> bytes:
    """What `GET /openapi.json` answers, built once per process."""
    return json.dumps(openapi_document(), separators=(",", ":"), sort_keys=True).encode()


if __name__ == "__main__":
    print(render(), end="")

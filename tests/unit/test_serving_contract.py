import asyncio
import json

import pytest

from propensity.settings import PROJECT_ROOT
from serving.contract import (
    BATCH_FIELD,
    ID_FIELDS,
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_ID_LENGTH,
    MAX_REQUEST_EVENTS,
    BadRequest,
    ScoringRequest,
    check_content_length,
    parse_request,
)
from serving.endpoint_state import EndpointFiles
from serving.openapi import openapi_document, render
from serving.server import ROUTES, AsgiApp, json_response, no_route


def test_single_and_batch_requests_parse():
    single, is_batch = parse_request(b'{"session_id": "s1", "user_id": "u1"}', "application/json")
    assert single == [ScoringRequest("s1", "u1")] and not is_batch
    body = json.dumps({"instances": [{"session_id": f"s{i}", "user_id": "u"} for i in range(3)]}).encode()
    batch, is_batch = parse_request(body, "application/json; charset=utf-8")
    assert [r.session_id for r in batch] == ["s0", "s1", "s2"] and is_batch


EVENT = {"event_id": "e1", "event_time": "2026-12-08T10:15:02Z", "event_type": "add_to_cart", "source": "web"}


def test_events_parse_into_the_instances_session():
    body = {"session_id": "s1", "user_id": "u1", "events": [EVENT, {**EVENT, "event_id": "e2", "user_id": "u1"}]}
    [request], _ = parse_request(json.dumps(body).encode(), None)
    assert [e.event_id for e in request.events] == ["e1", "e2"]
    assert {(e.user_id, e.session_id) for e in request.events} == {("u1", "s1")}
    [no_events], _ = parse_request(b'{"session_id": "s1", "user_id": "u1"}', None)
    [empty], _ = parse_request(b'{"session_id": "s1", "user_id": "u1", "events": []}', None)
    assert no_events.events is None and empty.events == ()


@pytest.mark.parametrize(
    ("events", "status", "says"),
    [
        ("e1", 422, "request.events must be an array of contract-v1 events"),
        ([1], 422, "request.events[0] must be an object"),
        ([{**EVENT, "event_type": "view"}], 422, "request.events[0]: event_type: not one of the contract's values"),
        ([EVENT, {**EVENT, "price": -2}], 422, "request.events[1]: price: must be >= 0"),
        ([{**EVENT, "user_id": "u2"}], 422, "request.events[0].user_id \"u2\" is not the instance's user_id 'u1'"),
        ([{**EVENT, "session_id": "s9"}], 422, 'request.events[0].session_id "s9" is not the instance\'s'),
        ([{**EVENT, "event_id": "\ud800"}], 422, "request.events[0].event_id cannot be encoded as UTF-8"),
        ([EVENT] * (MAX_REQUEST_EVENTS + 1), 413, f"send at most the session's last {MAX_REQUEST_EVENTS}"),
    ],
)
def test_a_bad_event_is_a_client_error_naming_it(events, status, says):
    body = json.dumps({"session_id": "s1", "user_id": "u1", "events": events}).encode()
    with pytest.raises(BadRequest) as refused:
        parse_request(body, None)
    assert refused.value.status == status and says in refused.value.message, refused.value.message


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"session_id": 5, "user_id": "u"}', "application/json", 422, "session_id must be a non-empty string"),
        (b'{"session_id": "s"}', "application/json", 422, "missing user_id"),
        (b'{"session_id": "s", "user_id": "u", "coupon": 1}', "application/json", 422, "unknown field"),
        (b'{"instances": []}', "application/json", 422, "non-empty list"),
        (b'{"instances": [1]}', "application/json", 422, "instances[0] must be an object"),
        (b'{"instances": [], "extra": 1}', "application/json", 422, "unknown top-level"),
        (b"[1, 2]", "application/json", 422, "must be an object"),
        (b'{"session_id": "s", "user_id": "u"}', "text/csv", 415, "application/json"),
        (
            json.dumps({"instances": [{"session_id": "s", "user_id": "u"}] * (MAX_BATCH + 1)}).encode(),
            None,
            413,
            "exceeds",
        ),
    ],
)
def test_bad_input_is_a_client_error_with_a_reason(body, content_type, status, says):
    with pytest.raises(BadRequest) as caught:
        parse_request(body, content_type)
    assert caught.value.status == status
    assert says in caught.value.message


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        # JSON's escape yields a str holding a lone surrogate, which the online store's key encoding cannot write
        (b'{"session_id": "\\ud800", "user_id": "u1"}', 422, "request.session_id cannot be encoded as UTF-8"),
        (b'{"instances": [{"session_id": "s", "user_id": "ok\\udfff"}]}', 422, "instances[0].user_id cannot be"),
        (b'{"session_id": "\\ud83d\\ude00", "user_id": "u1"}', None, None),  # a whole pair is one character: fine
        (_nested(100_000), 400, "nested too deeply"),
        (b'{"session_id": ' + _nested(5_000) + b', "user_id": "u"}', 400, "nested too deeply"),
        (b'{"session_id": "s", "user_id": "u", "session_id": "t"}', 400, "duplicate key 'session_id'"),
        (b'{"session_id": NaN, "user_id": "u"}', 400, "NaN is not a JSON value"),
        (b'{"instances": [Infinity]}', 400, "Infinity is not a JSON value"),
        (b'{"session_id": ' + b"1" * 5000 + b', "user_id": "u"}', 400, "not valid JSON"),  # Python's int-digit limit
        (b'{"session_id": "\xff\xfe", "user_id": "u"}', 400, "not UTF-8"),
        (b'{"session_id": "a\x00b", "user_id": "u"}', 400, "not valid JSON"),  # a raw control character
        (b"", 400, "empty"),
        (b"   ", 400, "not valid JSON"),
        (b'"s1"', 422, "request must be an object"),
        (b"null", 422, "request must be an object"),
        (b"12", 422, "request must be an object"),
        (b'{"instances": {"session_id": "s", "user_id": "u"}}', 422, "instances must be a non-empty list"),
        (b'{"instances": null}', 422, "instances must be a non-empty list"),
        (b'{"instances": [{"session_id": "s", "user_id": "u"}, "s2"]}', 422, "instances[1] must be an object"),
        (b"{}", 422, "request is missing session_id"),
        (b'{"session_id": "", "user_id": "u"}', 422, "session_id must be a non-empty string"),
        (b'{"session_id": "s", "user_id": null}', 422, "user_id must be a non-empty string, got null"),
        (b'{"session_id": ["s"], "user_id": "u"}', 422, "must be a non-empty string, got an array"),
        (b'{"session_id": ' + _nested(900) + b', "user_id": "u"}', 422, "got an array"),  # not re-spelled
        (b'{"session_id": {"id": "s"}, "user_id": "u"}', 422, "must be a non-empty string, got an object"),
        (b'{"session_id": true, "user_id": "u"}', 422, "got true"),
        (json.dumps({"session_id": "s" * (MAX_ID_LENGTH + 1), "user_id": "u"}).encode(), 422, "longer than 256"),
        (json.dumps({"session_id": "s" * MAX_ID_LENGTH, "user_id": "u"}).encode(), None, None),
        (b" " * (MAX_BODY_BYTES + 1), 413, f"exceeds {MAX_BODY_BYTES}"),
    ],
)
def test_every_malformed_body_is_a_client_error_with_a_reason(body, status, says):
    if status is None:
        assert len(parse_request(body, "application/json")[0]) == 1
        return
    with pytest.raises(BadRequest) as caught:
        parse_request(body, "application/json")
    assert (caught.value.status, says in caught.value.message) == (status, True), caught.value.message


@pytest.mark.parametrize("content_type", [None, "", "application/json", "Application/JSON; charset=utf-8"])
def test_json_or_no_content_type_is_accepted(content_type):
    assert parse_request(b'{"session_id": "s", "user_id": "u"}', content_type)[0] == [ScoringRequest("s", "u")]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_other_content_types_are_415(content_type):
    with pytest.raises(BadRequest) as caught:
        parse_request(b'{"session_id": "s", "user_id": "u"}', content_type)
    assert caught.value.status == 415 and "send application/json" in caught.value.message


@pytest.mark.parametrize(
    ("header", "status", "says"),
    [
        (None, None, None),  # chunked: the limit is enforced while reading
        (b"0", None, None),
        (str(MAX_BODY_BYTES).encode(), None, None),
        (b" 17 ", None, None),
        (b"0" * 30 + b"17", None, None),  # leading zeros do not make it large
        (str(MAX_BODY_BYTES + 1).encode(), 413, f"request body of {MAX_BODY_BYTES + 1} bytes exceeds"),
        (b"200000000", 413, "exceeds"),
        (b"9" * 5000, 413, "exceeds"),  # no int() over Python's digit limit
        (b"abc", 400, "not a number"),
        (b"-1", 400, "not a number"),
        (b"1e3", 400, "not a number"),
        (b"", 400, "not a number"),
    ],
)
def test_content_length_is_checked_before_the_body_is_read(header, status, says):
    if status is None:
        check_content_length(header)
        return
    with pytest.raises(BadRequest) as caught:
        check_content_length(header)
    assert caught.value.status == status and says in caught.value.message


class _Echo(AsgiApp):
    """The ASGI plumbing alone: answers with the size of the body it was handed."""

    def handle(self, method, path, body, headers):
        if path == "/invocations" and method == "POST":
            return json_response(200, {"bytes": len(body)})
        return no_route(method, path)


def _call(app, messages, headers=(), method="POST", path="/invocations"):
    """Run one request through the app; returns (status, headers, body or None, how many body messages it read)."""
    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    pending, sent = iter(messages), []

    async def receive():
        receive.count += 1
        return next(pending)

    receive.count = 0

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    if not sent:
        return None, {}, None, receive.count
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"], receive.count


def _chunks(size: int, count: int):
    return [{"type": "http.request", "body": b" " * size, "more_body": True} for _ in range(count)]


def test_a_declared_oversize_body_is_refused_before_any_of_it_is_read_and_the_connection_closed():
    status, headers, body, reads = _call(_Echo(), _chunks(64 * 1024, 4000), [(b"content-length", b"200000000")])
    assert (status, reads) == (413, 0)
    assert headers[b"connection"] == b"close" and "200000000 bytes exceeds" in json.loads(body)["error"]


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit():
    status, headers, body, reads = _call(_Echo(), _chunks(64 * 1024, 4000))  # 250 MB if it read them all
    assert status == 413 and reads == MAX_BODY_BYTES // (64 * 1024) + 1
    assert headers[b"connection"] == b"close" and f"exceeds {MAX_BODY_BYTES} bytes" in json.loads(body)["error"]


def test_a_body_in_chunks_is_joined_and_a_bad_content_length_is_400():
    status, headers, body, _ = _call(_Echo(), [*_chunks(1000, 3), {"type": "http.request", "body": b"x"}])
    assert (status, json.loads(body), b"connection" in headers) == (200, {"bytes": 3001}, False)
    assert headers[b"content-length"] == str(len(body)).encode()
    status, _, body, reads = _call(_Echo(), [], [(b"content-length", b"many")])
    assert (status, reads) == (400, 0) and "not a number" in json.loads(body)["error"]


def test_a_client_gone_before_its_body_arrived_gets_no_answer():
    assert _call(_Echo(), [{"type": "http.disconnect"}])[0] is None


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/invocations", 405, b"POST"),
        ("PUT", "/invocations", 405, b"POST"),
        ("POST", "/ping", 405, b"GET"),
        ("DELETE", "/openapi.json", 405, b"GET"),
        ("GET", "/nowhere", 404, None),
    ],
)
def test_a_wrong_method_is_405_naming_the_right_one_and_an_unknown_path_is_404(method, path, status, allow):
    answer, headers, body, _ = _call(_Echo(), [{"type": "http.request", "body": b""}], method=method, path=path)
    assert (answer, headers.get(b"allow")) == (status, allow) and json.loads(body)["error"]


def test_the_committed_openapi_document_is_the_generated_one():
    committed = (PROJECT_ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert committed == render(), "docs/openapi.json is stale: run `python -m serving.openapi > docs/openapi.json`"


def test_the_openapi_document_is_valid_and_built_from_the_contract():
    from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR

    document = openapi_document()
    OPENAPI_30_VALIDATOR.validate(document)
    schemas = document["components"]["schemas"]
    assert schemas["Instance"]["required"] == list(ID_FIELDS)
    assert {schemas["Instance"]["properties"][f]["maxLength"] for f in ID_FIELDS} == {MAX_ID_LENGTH}
    assert schemas["Batch"]["properties"][BATCH_FIELD]["maxItems"] == MAX_BATCH
    assert str(MAX_BODY_BYTES) in document["paths"]["/invocations"]["post"]["requestBody"]["description"]
    assert set(document["paths"]) == set(ROUTES)
    assert {path: next(iter(item)).upper() for path, item in document["paths"].items()} == ROUTES


def test_the_router_serves_the_openapi_document(tmp_path):
    from serving.router import VariantRouter

    router = VariantRouter(EndpointFiles("openapi-test", root=tmp_path), reader=None)  # no state: no variant
    status, body, content_type = router.handle("GET", "/openapi.json", b"", {})
    assert (status, content_type, json.loads(body)) == (200, b"application/json", openapi_document())

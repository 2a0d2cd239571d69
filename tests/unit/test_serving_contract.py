import json

import pytest

from serving.contract import MAX_BATCH, BadRequest, ScoringRequest, parse_request


def test_single_and_batch_requests_parse():
    single, is_batch = parse_request(b'{"session_id": "s1", "user_id": "u1"}', "application/json")
    assert single == [ScoringRequest("s1", "u1")] and not is_batch
    body = json.dumps({"instances": [{"session_id": f"s{i}", "user_id": "u"} for i in range(3)]}).encode()
    batch, is_batch = parse_request(body, "application/json; charset=utf-8")
    assert [r.session_id for r in batch] == ["s0", "s1", "s2"] and is_batch


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

"""The live inference server fuzzed from its own OpenAPI document (schemathesis), and with raw malformed bodies.

A real model on the real local online store (built as `served` builds it, once for this module), under uvicorn with
the production protocol. Requests valid and invalid, generated from `serving.openapi`: no answer may be a 5xx or take
longer than the request timeout, and every answer must be a status the document declares, with a body that matches
its schema. Bounded and deterministic: a fixed number of examples, derandomized, no example database.
"""

import json
import tempfile

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from serving.contract import MAX_ID_LENGTH
from serving.online_features import open_online_feature_reader
from serving.openapi import openapi_document
from serving.scorer import Scorer
from serving.server import InferenceApp, InferenceLog
from tests.conftest import clear_home
from tests.integration.test_feast import build_feature_lake
from tests.integration.test_inference_server import _serve, materialise_and_train

pytestmark = pytest.mark.spark

# No example database is used, but Hypothesis' pytest plugin caches source constants under ./.hypothesis while
# collecting; this keeps that out of the repository.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="propensity-hypothesis-"))

REQUEST_TIMEOUT_S = 5  # a hang fails the example instead of stalling the suite
FUZZ_SETTINGS = settings(
    max_examples=100,  # per operation, for the generated phase; schemathesis' coverage phase adds its boundary cases
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

schema = schemathesis.openapi.from_dict(
    openapi_document(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all", "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},  # no links between operations: nothing to chain
            # 413 is how the contract refuses a batch over MAX_BATCH; no 5xx counts as a rejection here
            "checks": {"negative_data_rejection": {"expected-statuses": [400, 405, 413, 415, 422]}},
            "request-timeout": REQUEST_TIMEOUT_S,
        }
    ),
)
INVOCATIONS = schema["/invocations"]["POST"]


@pytest.fixture(scope="module")
def live_url(spark, tmp_path_factory):
    """The `served` fixture's server (simulated traffic through Spark, materialised, a small real model), once."""
    clear_home()
    users, sessions = build_feature_lake(spark)
    directory = tmp_path_factory.mktemp("fuzzed-server")
    artifact, _ = materialise_and_train(users, sessions, directory / "model")
    log = InferenceLog(directory / "inference.log")
    url, server = _serve(InferenceApp(Scorer(artifact, open_online_feature_reader("local")), log))
    yield url
    server.should_exit = True


def test_the_server_answers_its_contract_document(live_url):
    response = requests.get(f"{live_url}/openapi.json", timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == openapi_document()


@schema.parametrize()
@FUZZ_SETTINGS
def test_generated_requests_get_declared_answers_and_never_a_5xx(case, live_url):
    # every check schemathesis has: not_a_server_error, status code / content type / header / body conformance,
    # positive data accepted, negative data rejected, 405 with Allow for a method the document does not declare
    response = case.call_and_validate(base_url=live_url, timeout=REQUEST_TIMEOUT_S)
    assert response.status_code < 500, response.text


_ID = st.text(min_size=1, max_size=12)
_INSTANCE = st.fixed_dictionaries({"session_id": _ID, "user_id": _ID})
_VALID_BODY = st.one_of(_INSTANCE, st.fixed_dictionaries({"instances": st.lists(_INSTANCE, min_size=1, max_size=3)}))


@st.composite
def _truncated_requests(draw) -> bytes:
    """A valid request cut short: every proper prefix of a JSON object is invalid JSON."""
    text = json.dumps(draw(_VALID_BODY)).encode()
    return text[: draw(st.integers(0, len(text) - 1))]


@st.composite
def _requests_with_a_lone_surrogate(draw) -> bytes:
    """A valid request whose first session_id starts with JSON's escape of half a surrogate pair."""
    surrogate = draw(st.integers(0xD800, 0xDFFF))
    text = json.dumps(draw(_VALID_BODY))
    return text.replace('"session_id": "', f'"session_id": "\\u{surrogate:04x}', 1).encode()


MALFORMED_BODIES = st.one_of(
    st.binary(max_size=64),  # mostly not UTF-8, never a request
    st.text(max_size=64).map(str.encode),
    _truncated_requests(),
    _requests_with_a_lone_surrogate(),
    st.integers(1, 100_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 100_000).map(lambda depth: b'{"session_id": ' + b"[" * depth + b"]" * depth + b', "user_id": "u"}'),
    st.integers(4301, 20_000).map(lambda digits: b'{"session_id": ' + b"7" * digits + b', "user_id": "u"}'),
    st.sampled_from([b"NaN", b"-Infinity", b'{"session_id": NaN, "user_id": "u"}', b'{"instances": [Infinity]}']),
    st.sampled_from([b'{"session_id": "a", "user_id": "u", "session_id": "b"}', b'{"instances": [], "instances": []}']),
    st.text(min_size=MAX_ID_LENGTH + 1, max_size=MAX_ID_LENGTH + 40).map(
        lambda long_id: json.dumps({"session_id": long_id, "user_id": "u"}).encode()
    ),
)


@FUZZ_SETTINGS
@given(body=MALFORMED_BODIES)
def test_malformed_bodies_are_refused_with_a_declared_4xx(live_url, body):
    response = INVOCATIONS.Case(body=body, media_type="application/json").call_and_validate(
        base_url=live_url, timeout=REQUEST_TIMEOUT_S
    )
    assert 400 <= response.status_code < 500 and response.json()["error"], (body[:200], response.text[:300])


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["session_id", "user_id", "instances", "extra"]) | st.text(), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@FUZZ_SETTINGS
@given(payload=JSON_VALUES | _VALID_BODY)
def test_json_of_any_shape_is_scored_or_refused_never_a_5xx(live_url, payload):
    response = INVOCATIONS.Case(body=payload, media_type="application/json").call_and_validate(
        base_url=live_url, timeout=REQUEST_TIMEOUT_S
    )
    assert response.status_code in (200, 400, 413, 422), (payload, response.text[:300])

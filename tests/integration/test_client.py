"""The storefront client against the real local inference server, and the SageMaker path against botocore's
Stubber (the request shape is checked against the real sagemaker-runtime service model)."""

import io
import json
import socket

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from serving.client import NO_DECISION, PropensityClient
from serving.decision import Decision
from tests.integration.test_feast import feature_lake  # noqa: F401 - fixtures: simulated features through Spark,
from tests.integration.test_inference_server import served  # noqa: F401 - and a real server on SQLite over them

pytestmark = pytest.mark.spark


def test_client_scores_through_the_local_endpoint(served):  # noqa: F811
    url, artifact, _, sessions, _ = served
    pair = sessions.iloc[0]
    client = PropensityClient.local(url, timeout_s=2.0)
    score = client.score(pair["session_id"], pair["user_id"])
    assert not score.fallback and 0 < score.propensity < 1 and score.model_version == artifact.version
    # the served artifact has no intervention policy: no one is treated or held out
    assert score.decision == NO_DECISION
    many = client.score_many([(s, u) for s, u in sessions[["session_id", "user_id"]].head(5).itertuples(index=False)])
    assert [m.session_id for m in many] == list(sessions["session_id"].head(5))


def test_client_falls_back_when_the_endpoint_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = PropensityClient.local(f"http://127.0.0.1:{port}", timeout_s=0.2, fallback_score=0.03)
    score = client.score("s1", "u1")
    assert score.fallback and score.propensity == 0.03 and "endpoint unavailable" in score.reason


def test_client_invokes_a_sagemaker_endpoint_with_the_contract_body():
    runtime = boto3.client(
        "sagemaker-runtime", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    answer = json.dumps(
        {
            "predictions": [
                {
                    "session_id": "s1",
                    "user_id": "u1",
                    "propensity": 0.2,
                    "model_version": "v1",
                    "variant": "canary",
                    "feature_age_s": {},
                    "fallback": False,
                    "fallback_reason": None,
                    "features": {},
                    "decision": {"treated": True, "holdout": False, "offer": "discount", "treatment_probability": 0.9},
                }
            ]
        }
    ).encode()
    with Stubber(runtime) as stubber:
        stubber.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"},
            {
                "EndpointName": "propensity-prod",
                "ContentType": "application/json",
                "Accept": "application/json",
                "Body": json.dumps({"instances": [{"session_id": "s1", "user_id": "u1"}]}),
            },
        )
        stubber.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424)
        client = PropensityClient.sagemaker("propensity-prod", runtime_client=runtime, fallback_score=0.05)
        first = client.score("s1", "u1")
        assert (first.propensity, first.variant, first.fallback) == (0.2, "canary", False)
        assert first.decision == Decision(treated=True, holdout=False, offer="discount", treatment_probability=0.9)
        second = client.score("s1", "u1")
        assert second.fallback and second.propensity == 0.05 and "ModelError" in second.reason
        assert second.decision == NO_DECISION  # no answer from the endpoint: nobody is treated
        stubber.assert_no_pending_responses()

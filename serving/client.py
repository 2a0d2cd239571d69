"""The storefront's client: score sessions on a local endpoint over HTTP or on a SageMaker endpoint, with a timeout
and a fallback score, so a slow or broken endpoint never holds up a page view. Each score carries the endpoint's
intervention decision (`serving.decision`): the storefront shows `decision.offer` when `decision.treated`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import requests

from serving.decision import Decision

LOG = logging.getLogger("propensity.client")


# What the storefront does without the endpoint's answer: treat no one. Such a row is in no decision log (the
# endpoint never saw it), so it is not part of the experiment either.
NO_DECISION = Decision(treated=False, holdout=False, offer=None, treatment_probability=0.0)


@dataclass(frozen=True)
class Score:
    session_id: str
    propensity: float
    fallback: bool
    reason: str | None
    model_version: str | None = None
    variant: str | None = None
    decision: Decision = NO_DECISION  # without an answer from the endpoint nobody is treated


class PropensityClient:
    """`PropensityClient.local("http://127.0.0.1:8080")` or `PropensityClient.sagemaker("endpoint-name")`.

    `score` never raises for endpoint trouble: past the timeout, on a connection error or a non-200 answer it returns
    `fallback_score` with `fallback=True` and the reason, which is what the storefront should act on.
    """

    def __init__(self, transport, fallback_score: float):
        if not 0.0 <= fallback_score <= 1.0:
            raise ValueError(f"fallback_score must be a probability, got {fallback_score}")
        self._transport = transport
        self.fallback_score = fallback_score

    @classmethod
    def local(cls, url: str, timeout_s: float = 0.05, fallback_score: float = 0.0) -> "PropensityClient":
        return cls(_HttpTransport(url.rstrip("/"), timeout_s), fallback_score)

    @classmethod
    def sagemaker(
        cls,
        endpoint_name: str,
        timeout_s: float = 0.1,
        fallback_score: float = 0.0,
        runtime_client=None,
        region: str | None = None,
    ) -> "PropensityClient":
        if runtime_client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 0})
            runtime_client = boto3.client("sagemaker-runtime", region_name=region, config=config)
        return cls(_SageMakerTransport(endpoint_name, runtime_client), fallback_score)

    def score(self, session_id: str, user_id: str) -> Score:
        return self.score_many([(session_id, user_id)])[0]

    def score_many(self, pairs: list[tuple[str, str]]) -> list[Score]:
        body = json.dumps({"instances": [{"session_id": s, "user_id": u} for s, u in pairs]})
        try:
            predictions = json.loads(self._transport.invoke(body))["predictions"]
            # parsed inside the try: an answer of another shape (an older container) is endpoint trouble too
            return [
                Score(
                    p["session_id"],
                    p["propensity"],
                    p["fallback"],
                    p["fallback_reason"],
                    p["model_version"],
                    p["variant"],
                    Decision(**p["decision"]),
                )
                for p in predictions
            ]
        except Exception as error:  # noqa: BLE001 - any endpoint trouble becomes a fallback the caller can act on
            reason = f"endpoint unavailable: {type(error).__name__}: {error}"[:300]
            LOG.warning(reason)
            return [Score(s, self.fallback_score, True, reason) for s, _ in pairs]


class EndpointError(RuntimeError):
    pass


class _HttpTransport:
    def __init__(self, url: str, timeout_s: float):
        self.url = f"{url}/invocations"
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def invoke(self, body: str) -> bytes:
        response = self.session.post(
            self.url, data=body, headers={"content-type": "application/json"}, timeout=self.timeout_s
        )
        if response.status_code != 200:
            raise EndpointError(f"HTTP {response.status_code}: {response.text[:200]}")
        return response.content


class _SageMakerTransport:
    def __init__(self, endpoint_name: str, runtime_client):
        self.endpoint_name = endpoint_name
        self.runtime = runtime_client

    def invoke(self, body: str) -> bytes:
        response = self.runtime.invoke_endpoint(
            EndpointName=self.endpoint_name, ContentType="application/json", Accept="application/json", Body=body
        )
        return response["Body"].read()

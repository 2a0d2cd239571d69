"""The SageMaker side of the `Deployer` interface: a registered artifact onto a SageMaker real-time endpoint.

The artifact directory (manifest verified first) becomes `s3://{bucket}/{prefix}/{version}/model.tar.gz` with its
files at the archive root, because SageMaker extracts that archive into /opt/ml/model, where `serve` (the Dockerfile
at the repo root) looks for MANIFEST.json. Each deployment creates a SageMaker model and an endpoint config named
after the endpoint, the version and a UTC stamp; variant names are derived from the model version, so CloudWatch
metrics and alarms per variant name exactly one model.

- No endpoint yet: create it with one variant and wait until it is InService ("deployed").
- `strategy="variant_weights"` (what the canary sensor drives): two production variants on one endpoint, the
  champion at 1 - canary_share and the canary at canary_share; the record says "in_progress" and carries the
  canary's state. The judge (`serving/control/judge.py`) observes both variants since the canary started, requests
  and 5xx from CloudWatch (`Invocations`, `Invocation5XXErrors`, p99 `ModelLatency`, per variant) and scores from
  Data Capture, then shifts, promotes or rolls back with `update_endpoint_weights_and_capacities`.
- `strategy="blue_green"`: SageMaker's own deployment guardrails. The new config has one variant; `update_endpoint`
  shifts traffic CANARY (`canary_share` for `baking_s`, then all) or LINEAR (`linear_step_share` per step, each baked
  `linear_step_baking_s`), watched by CloudWatch alarms on the new variant (5XX error rate above `max_error_rate`,
  p99 model latency) that roll it back by themselves; `describe_endpoint` tells how it ends. Canary and step sizes
  are shares of the new fleet's instances (SageMaker allows at most 50%), so a canary needs an endpoint of more than
  one instance (`initial_instance_count`). The judge's sequential tests are not part of that bake (no canary state
  is recorded for it).

Every endpoint config enables Data Capture: 100 % of requests and responses, as JSON, to
`s3://{bucket}/{capture_prefix}/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl`.

Every AWS call has a connect and read timeout and bounded retries; waiting for an endpoint is bounded by
`wait_timeout_s`. History is a JSON-lines file per endpoint under $PROPENSITY_HOME/serving/sagemaker/.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from propensity import secrets
from propensity.models.artifact import package_artifact, verify_manifest
from propensity.monitoring.decisions import captured_body
from propensity.paths import home
from propensity.settings import SAGEMAKER_STRATEGIES
from serving.control.data_capture import CAPTURE_PREFIX, capture_destination
from serving.control.deployment import (
    CanaryPolicy,
    CanaryState,
    CanaryTraffic,
    DeploymentRecord,
    VariantTraffic,
    append_history,
    canary_in_progress,
    read_history,
    utc_now,
)
from serving.endpoint_state import VariantSpec

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's rule for endpoint, config, variant
MAX_NAME = 63
NAMESPACE = "AWS/SageMaker"
ALARM_PERIOD_S = 60  # SageMaker publishes invocation metrics per minute


def sagemaker_name(*parts: str) -> str:
    """A SageMaker resource name from free text: [a-zA-Z0-9-], at most 63 characters, unique per input
    (a long name keeps its start and gets a digest of the whole input)."""
    raw = "-".join(parts)
    name = re.sub(r"[^a-zA-Z0-9]+", "-", raw).strip("-")
    if not name:
        raise ValueError(f"cannot make a SageMaker name out of {parts!r}")
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - len(digest) - 1].rstrip('-')}-{digest}"
    return name


def deployment_stamp() -> str:
    """UTC seconds: makes each deployment's model and endpoint config names unique."""
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")


def variant_name(model_version: str) -> str:
    return sagemaker_name(model_version)


@dataclass
class SageMakerDeployer:
    """Deploys model versions to SageMaker endpoints; implements `serving.control.deployment.Deployer`."""

    region: str
    bucket: str
    image_uri: str
    execution_role_arn: str
    prefix: str = "propensity/models"
    capture_prefix: str = CAPTURE_PREFIX  # Data Capture: s3://bucket/capture_prefix/<endpoint>/<variant>/...
    instance_type: str = "ml.c6i.large"
    initial_instance_count: int = 1
    strategy: Literal["blue_green", "variant_weights"] = "blue_green"
    environment: dict[str, str] = field(default_factory=dict)  # container environment, e.g. REDIS_URL
    alarm_topic_arn: str | None = None  # SNS topic the canary's alarms notify when they fire (infra/alarms.tf)
    call_timeout_s: int = 10
    max_attempts: int = 3  # per call, the first try included
    wait_timeout_s: int = 1800
    wait_poll_s: int = 30

    _sagemaker: Any = field(default=None, init=False, repr=False)
    _s3: Any = field(default=None, init=False, repr=False)
    _cloudwatch: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.strategy not in SAGEMAKER_STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r}: one of {', '.join(SAGEMAKER_STRATEGIES)}")
        if self.initial_instance_count < 1:
            raise ValueError(f"initial_instance_count must be at least 1, got {self.initial_instance_count}")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> SageMakerDeployer:
        """From the settings' SAGEMAKER_* values by field (propensity.settings.SAGEMAKER_VARIABLES); the online
        store's URL goes to the container as REDIS_URL."""
        numbers = {"initial_instance_count", "wait_timeout_s"}
        given = {k: int(v) if k in numbers else v for k, v in values.items() if v is not None and k != "redis_url"}
        # The container has no boto3: a Secrets Manager reference is resolved here, before the endpoint starts.
        redis_url = secrets.resolve(values.get("redis_url"))
        return cls(**given, environment={"REDIS_URL": redis_url} if redis_url else {})

    def client(self, service: str):
        """The deployer's own client for `service` (its timeouts and retries), for the release steps around it."""
        return self._client(service)

    def with_clients(self, *, sagemaker=None, s3=None, cloudwatch=None) -> "SageMakerDeployer":
        """Use these boto3 clients (tests: moto or botocore's Stubber) instead of building them from the config."""
        self._sagemaker, self._s3, self._cloudwatch = sagemaker, s3, cloudwatch
        return self

    def _client(self, service: str):
        attribute = {"sagemaker": "_sagemaker", "s3": "_s3", "cloudwatch": "_cloudwatch"}[service]
        if getattr(self, attribute) is None:
            import boto3
            from botocore.config import Config

            config = Config(
                region_name=self.region,
                connect_timeout=self.call_timeout_s,
                read_timeout=self.call_timeout_s,
                retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
            )
            setattr(self, attribute, boto3.client(service, config=config))
        return getattr(self, attribute)

    # -- the Deployer interface -------------------------------------------------------------------------------

    def deploy(self, endpoint: str, model_dir: Path, model_version: str, policy: CanaryPolicy) -> DeploymentRecord:
        started = utc_now()
        _check_endpoint_name(endpoint)
        verify_manifest(model_dir)  # refuse a tampered artifact before any AWS call
        self._check_policy(policy)
        running = self.canary(endpoint)
        if running is not None and running.model_version == model_version:
            return self.history(endpoint)[-1]  # already canarying this version: the judge carries on
        if running is not None:
            new_name = variant_name(model_version)
            self.roll_back(endpoint, f"superseded by {model_version} before a decision", {"superseded_by": new_name})
        described = self._describe_endpoint(endpoint)
        current = self._deployed(endpoint, described) if described else []
        if described and described["EndpointStatus"] != "InService":
            raise RuntimeError(
                f"SageMaker endpoint {endpoint} is {described['EndpointStatus']}: wait for the running update to end "
                f"(describe_endpoint), or delete a Failed endpoint, then deploy {model_version} again"
            )
        new_variant = variant_name(model_version)
        serving = [v["name"] for v in current if v["weight"] > 0]
        if serving == [new_variant]:
            unchanged = f"{endpoint} already serves {model_version}: nothing changed"
            return self._record(
                endpoint, model_version, "deployed", unchanged, started, _specs(current), stage="deploy"
            )
        if described and self.strategy == "variant_weights" and len(serving) != 1:
            raise RuntimeError(
                f"SageMaker endpoint {endpoint} serves {serving} without a canary on record: set the weights with "
                f"update_endpoint_weights_and_capacities so that one variant serves, then deploy {model_version}"
            )
        stamp = deployment_stamp()
        model_name = config_name = sagemaker_name(endpoint, model_version, stamp)  # SageMaker keeps them apart
        try:
            model_data_url = self._upload(endpoint, model_dir, model_version)
            self._create_model(endpoint, model_name, model_data_url, model_version, new_variant)
            new = {"name": new_variant, "model_name": model_name, "model_version": model_version}
            if not described:
                return self._first_deployment(endpoint, config_name, new, started)
            if self.strategy == "blue_green":
                return self._blue_green(endpoint, config_name, new, current, policy, started)
            return self._variant_weights(endpoint, config_name, new, current, policy, started)
        except RuntimeError as error:
            self._record(endpoint, model_version, "failed", str(error), started, _specs(current), stage="deploy")
            raise

    def canary(self, endpoint: str) -> CanaryState | None:
        """The variant-weights canary in progress (a blue/green update is SageMaker's to bake: none here)."""
        return canary_in_progress(self.history(endpoint))

    def observe(self, endpoint: str, canary: CanaryState, now: float | None = None) -> CanaryTraffic:
        """Both variants since the canary started: requests, 5xx and p99 model latency from CloudWatch, scores and
        sessions from Data Capture (our JSON response bodies) in S3."""
        end = time.time() if now is None else now
        return CanaryTraffic(
            canary=self._variant_traffic(endpoint, canary.variant, canary.started_at, end),
            champion=self._variant_traffic(endpoint, canary.champion_variant, canary.started_at, end),
        )

    def shift(
        self, endpoint: str, share: float, reason: str, numbers: dict, now: float | None = None
    ) -> DeploymentRecord:
        state = self._running(endpoint)
        state = state.shifted(share, time.time() if now is None else now)
        weights = {state.champion_variant: round(1.0 - share, 9), state.variant: share}
        return self._set_weights(
            endpoint, state.model_version, weights, "shift", reason, {**numbers, "canary": state.as_dict()}
        )

    def promote(self, endpoint: str, reason: str, numbers: dict) -> DeploymentRecord:
        """All traffic to the canary; the champion's variant stays at weight 0 (a fast way back) until the next
        deployment's endpoint config leaves it out."""
        state = self._running(endpoint)
        weights = {state.champion_variant: 0.0, state.variant: 1.0}
        return self._set_weights(endpoint, state.model_version, weights, "promote", reason, numbers)

    def roll_back(self, endpoint: str, reason: str, numbers: dict) -> DeploymentRecord:
        state = self._running(endpoint)
        weights = {state.champion_variant: 1.0, state.variant: 0.0}
        return self._set_weights(endpoint, state.model_version, weights, "roll_back", reason, numbers)

    def endpoints(self) -> list[str]:
        root = home() / "serving" / "sagemaker"
        return sorted(p.parent.name for p in root.glob("*/history.jsonl"))

    def variants(self, endpoint: str) -> list[VariantSpec]:
        described = self._describe_endpoint(endpoint)
        return _specs(self._deployed(endpoint, described)) if described else []

    def history(self, endpoint: str) -> list[DeploymentRecord]:
        return read_history(self._history_path(endpoint))

    def _running(self, endpoint: str) -> CanaryState:
        state = self.canary(endpoint)
        if state is None:
            raise RuntimeError(f"SageMaker endpoint {endpoint} has no canary in progress: deploy one first")
        return state

    def _set_weights(
        self, endpoint: str, model_version: str, weights: dict[str, float], stage: str, reason: str, numbers: dict
    ) -> DeploymentRecord:
        """One stage: the variants' weights (UpdateEndpointWeightsAndCapacities), then the record. An update that
        SageMaker does not finish within wait_timeout_s raises, and the canary stays on record for the next look."""
        started = utc_now()
        desired = [{"VariantName": name, "DesiredWeight": float(weight)} for name, weight in sorted(weights.items())]
        with self._aws("update_endpoint_weights_and_capacities", endpoint, "check the role's sagemaker permissions"):
            self._client("sagemaker").update_endpoint_weights_and_capacities(
                EndpointName=endpoint, DesiredWeightsAndCapacities=desired
            )
        waited = self._wait_in_service(endpoint)
        if waited is not None:
            raise RuntimeError(f"{stage} of {model_version} on {endpoint}: {waited[1]}")
        outcome = {"shift": "in_progress", "promote": "promoted", "roll_back": "rolled_back"}[stage]
        observations = {**numbers, "weights": weights}
        return self._record(
            endpoint, model_version, outcome, reason, started, self.variants(endpoint), observations, stage
        )

    # -- the three deployment paths ---------------------------------------------------------------------------

    def _first_deployment(self, endpoint: str, config_name: str, new: dict, started: str) -> DeploymentRecord:
        self._create_endpoint_config(endpoint, config_name, [self._production_variant(new, 1.0)])
        with self._aws("create_endpoint", endpoint, "check the role's sagemaker:CreateEndpoint and instance quota"):
            self._client("sagemaker").create_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
        waited = self._wait_in_service(endpoint)
        outcome, reason = waited or ("deployed", f"first deployment on {endpoint}: {new['name']} takes all traffic")
        variants = [VariantSpec(new["name"], new["model_version"], 1.0)] if waited is None else []
        return self._record(
            endpoint,
            new["model_version"],
            outcome,
            reason,
            started,
            variants,
            {"endpoint_config": config_name, "model_name": new["model_name"]},
            "deploy",
        )

    def _blue_green(
        self, endpoint: str, config_name: str, new: dict, current: list[dict], policy: CanaryPolicy, started: str
    ) -> DeploymentRecord:
        self._create_endpoint_config(endpoint, config_name, [self._production_variant(new, 1.0)])
        alarms = self._put_alarms(endpoint, new["name"], policy)
        deployment_config = self._deployment_config(policy, alarms)
        with self._aws("update_endpoint", endpoint, "check that the endpoint is InService and the role may update it"):
            self._client("sagemaker").update_endpoint(
                EndpointName=endpoint, EndpointConfigName=config_name, DeploymentConfig=deployment_config
            )
        routing = deployment_config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
        if routing["Type"] == "CANARY":
            plan = f"canary {routing['CanarySize']['Value']}% for {routing['WaitIntervalInSeconds']} s, then all"
        else:
            plan = f"steps of {routing['LinearStepSize']['Value']}%, each baked {routing['WaitIntervalInSeconds']} s"
        reason = (
            f"blue/green update to {new['name']} started ({plan}); SageMaker rolls back if any of "
            f"{', '.join(alarms)} fires; follow it with describe_endpoint"
        )
        return self._record(
            endpoint,
            new["model_version"],
            "in_progress",
            reason,
            started,
            _specs(current),
            {
                "alarms": alarms,
                "endpoint_config": config_name,
                "model_name": new["model_name"],
                "deployment_config": deployment_config,
            },
            "start_canary",
        )

    def _variant_weights(
        self, endpoint: str, config_name: str, new: dict, current: list[dict], policy: CanaryPolicy, started: str
    ) -> DeploymentRecord:
        [champion] = [v for v in current if v["weight"] > 0]  # deploy() checked there is exactly one
        variants = [
            {**champion["production_variant"], "InitialVariantWeight": 1.0 - policy.canary_share},
            self._production_variant(new, policy.canary_share),
        ]
        self._create_endpoint_config(endpoint, config_name, variants)
        with self._aws("update_endpoint", endpoint, "check that the endpoint is InService and the role may update it"):
            self._client("sagemaker").update_endpoint(EndpointName=endpoint, EndpointConfigName=config_name)
        specs = [
            VariantSpec(champion["name"], champion["model_version"], 1.0 - policy.canary_share),
            VariantSpec(new["name"], new["model_version"], policy.canary_share),
        ]
        waited = self._wait_in_service(endpoint)
        observations = {"endpoint_config": config_name, "model_name": new["model_name"]}
        if waited is None:
            now = time.time()
            state = CanaryState(
                model_version=new["model_version"],
                variant=new["name"],
                champion_version=champion["model_version"],
                champion_variant=champion["name"],
                share=policy.canary_share,
                step=0,
                started_at=now,
                step_started_at=now,
                policy=policy,
            )
            observations["canary"] = state.as_dict()
        outcome, reason = waited or (
            "in_progress",
            f"canary {new['name']} at {policy.canary_share:.0%} beside {champion['name']}: the canary sensor judges it",
        )
        return self._record(
            endpoint,
            new["model_version"],
            outcome,
            reason,
            started,
            specs if waited is None else _specs(current),
            observations,
            "start_canary",
        )

    # -- pieces -----------------------------------------------------------------------------------------------

    def _check_policy(self, policy: CanaryPolicy) -> None:
        """SageMaker's limits, so a policy it would reject fails here, before anything is uploaded."""
        if self.strategy != "blue_green":
            return
        if policy.shift == "all_at_once" and not 0.01 <= policy.canary_share <= 0.5:
            raise ValueError(f"SageMaker canaries take 1-50% of capacity, canary_share is {policy.canary_share}")
        if policy.shift == "linear" and not 0.1 <= policy.linear_step_share <= 0.5:
            raise ValueError(
                f"SageMaker linear steps take 10-50% of capacity, linear_step_share is {policy.linear_step_share}"
            )
        if max(policy.baking_s, policy.linear_step_baking_s) > 3600:
            raise ValueError("SageMaker bakes each step for at most 3600 s: shorten the policy's baking periods")

    def _deployment_config(self, policy: CanaryPolicy, alarms: list[str]) -> dict:
        if policy.shift == "all_at_once":
            baking = int(policy.baking_s)
            routing = {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": int(round(policy.canary_share * 100))},
                "WaitIntervalInSeconds": baking,
            }
            shifting = 2 * baking  # the canary's bake, then the final bake on all traffic
        else:
            baking = int(policy.linear_step_baking_s)
            routing = {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": int(round(policy.linear_step_share * 100))},
                "WaitIntervalInSeconds": baking,
            }
            shifting = math.ceil(1 / policy.linear_step_share) * baking
        termination_wait = min(3600, baking)  # the old fleet stays one more bake, for a fast rollback
        timeout = min(28800, max(600, self.wait_timeout_s + shifting + termination_wait))  # SageMaker's bounds
        return {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": termination_wait,
                "MaximumExecutionTimeoutInSeconds": timeout,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]},
        }

    def _put_alarms(self, endpoint: str, variant: str, policy: CanaryPolicy) -> list[str]:
        """Alarms on the new variant's own metrics: 5XX share of invocations per minute, and p99 model latency
        (ModelLatency is in microseconds). No traffic is not an error: missing data does not breach."""
        dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]

        def metric(query_id: str, name: str) -> dict:
            return {
                "Id": query_id,
                "MetricStat": {
                    "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dimensions},
                    "Period": ALARM_PERIOD_S,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            }

        # Notify the topic too, when there is one: SageMaker rolls back on its own, people should hear of it.
        actions = {"AlarmActions": [self.alarm_topic_arn]} if self.alarm_topic_arn else {}
        error_alarm = f"propensity-{endpoint}-{variant}-5xx-rate"
        latency_alarm = f"propensity-{endpoint}-{variant}-p99-latency"
        cloudwatch = self._client("cloudwatch")
        with self._aws("put_metric_alarm", endpoint, "check the role's cloudwatch:PutMetricAlarm permission"):
            cloudwatch.put_metric_alarm(
                AlarmName=error_alarm,
                AlarmDescription=f"5XX share of {variant}'s invocations above {policy.max_error_rate}: roll back",
                Metrics=[
                    metric("errors", "Invocation5XXErrors"),
                    metric("invocations", "Invocations"),
                    {
                        "Id": "error_rate",
                        "Expression": "IF(invocations > 0, errors / invocations, 0)",
                        "Label": "5XX error rate",
                        "ReturnData": True,
                    },
                ],
                ComparisonOperator="GreaterThanThreshold",
                Threshold=float(policy.max_error_rate),
                EvaluationPeriods=1,
                TreatMissingData="notBreaching",
                **actions,
            )
            cloudwatch.put_metric_alarm(
                AlarmName=latency_alarm,
                AlarmDescription=f"p99 model latency of {variant} above {policy.max_p99_latency_ms} ms: roll back",
                Namespace=NAMESPACE,
                MetricName="ModelLatency",
                Dimensions=dimensions,
                ExtendedStatistic="p99",
                Period=ALARM_PERIOD_S,
                EvaluationPeriods=1,
                Threshold=float(policy.max_p99_latency_ms) * 1000.0,
                ComparisonOperator="GreaterThanThreshold",
                TreatMissingData="notBreaching",
                **actions,
            )
        return [error_alarm, latency_alarm]

    def _upload(self, endpoint: str, model_dir: Path, model_version: str) -> str:
        key = f"{self.prefix.strip('/')}/{model_version}/model.tar.gz"
        with tempfile.TemporaryDirectory(prefix="propensity-model-") as scratch:
            tarball = Path(scratch) / "model.tar.gz"
            package_artifact(model_dir, tarball)
            with self._aws("s3 upload", endpoint, f"check that bucket {self.bucket} exists and the role may PutObject"):
                self._client("s3").upload_file(str(tarball), self.bucket, key)
        return f"s3://{self.bucket}/{key}"

    def _create_model(
        self, endpoint: str, model_name: str, model_data_url: str, model_version: str, variant: str
    ) -> None:
        environment = {
            "PROPENSITY_PROFILE": "redis",
            **self.environment,
            "PROPENSITY_VARIANT": variant,
            "PROPENSITY_MODEL_VERSION": model_version,
        }
        with self._aws("create_model", endpoint, "check image_uri, execution_role_arn and its access to the bucket"):
            self._client("sagemaker").create_model(
                ModelName=model_name,
                PrimaryContainer={"Image": self.image_uri, "ModelDataUrl": model_data_url, "Environment": environment},
                ExecutionRoleArn=self.execution_role_arn,
            )

    def _production_variant(self, new: dict, weight: float) -> dict:
        return {
            "VariantName": new["name"],
            "ModelName": new["model_name"],
            "InstanceType": self.instance_type,
            "InitialInstanceCount": self.initial_instance_count,
            "InitialVariantWeight": weight,
        }

    def _create_endpoint_config(self, endpoint: str, config_name: str, variants: list[dict]) -> None:
        with self._aws("create_endpoint_config", endpoint, "check instance_type and the account's instance quota"):
            self._client("sagemaker").create_endpoint_config(
                EndpointConfigName=config_name, ProductionVariants=variants, DataCaptureConfig=self._data_capture()
            )

    def _data_capture(self) -> dict:
        """Every request and response to S3 as JSON lines (our bodies are JSON, so they are kept as text): the canary
        judge reads the scores there, the decision log too."""
        return {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": capture_destination(self.bucket, self.capture_prefix),
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        }

    def _variant_traffic(self, endpoint: str, variant: str, start: float, end: float) -> VariantTraffic:
        requests, errors, p99_ms = self._invocation_metrics(endpoint, variant, start, end)
        scores, sessions = self._captured_scores(endpoint, variant, start, end)
        return VariantTraffic(requests=requests, server_errors=errors, scores=scores, sessions=sessions, p99_ms=p99_ms)

    def _invocation_metrics(
        self, endpoint: str, variant: str, start: float, end: float
    ) -> tuple[int, int, float | None]:
        """Invocations and Invocation5XXErrors summed per minute over the period, and the worst minute's p99
        ModelLatency in ms (percentiles of minutes do not add up; the worst one is the cautious figure)."""
        dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        window = {
            "Namespace": NAMESPACE,
            "Dimensions": dimensions,
            "StartTime": datetime.fromtimestamp(start, timezone.utc),
            "EndTime": datetime.fromtimestamp(max(end, start + 1), timezone.utc),
            "Period": ALARM_PERIOD_S,
        }
        cloudwatch = self._client("cloudwatch")
        with self._aws("get_metric_statistics", endpoint, "check the role's cloudwatch:GetMetricStatistics permission"):
            totals = {
                name: int(
                    sum(
                        point["Sum"]
                        for point in cloudwatch.get_metric_statistics(MetricName=name, Statistics=["Sum"], **window)[
                            "Datapoints"
                        ]
                    )
                )
                for name in ("Invocations", "Invocation5XXErrors")
            }
            latency = cloudwatch.get_metric_statistics(MetricName="ModelLatency", ExtendedStatistics=["p99"], **window)
        p99s = [point["ExtendedStatistics"]["p99"] for point in latency["Datapoints"] if "ExtendedStatistics" in point]
        p99_ms = max(p99s) / 1000.0 if p99s else None  # ModelLatency is in microseconds
        return totals["Invocations"], totals["Invocation5XXErrors"], p99_ms

    def _captured_scores(self, endpoint: str, variant: str, start: float, end: float) -> tuple[list[float], list[str]]:
        """Scores and sessions from Data Capture's JSON lines, s3://bucket/capture_prefix/<endpoint>/<variant>/
        yyyy/mm/dd/hh/*.jsonl, for inferences between start and end. `captureData.endpointOutput.data` is our
        response body (one prediction or {"predictions": [...]}, serving/contract.py)."""
        s3 = self._client("s3")
        base = f"{self.capture_prefix.strip('/')}/{endpoint}/{variant}/"
        hour = datetime.fromtimestamp(start, timezone.utc).replace(minute=0, second=0, microsecond=0)
        last = datetime.fromtimestamp(end, timezone.utc)
        scores: list[float] = []
        sessions: list[str] = []
        with self._aws(
            "s3 read of Data Capture", endpoint, f"check the role may list and read s3://{self.bucket}/{base}"
        ):
            while hour <= last:
                pages = s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=base + hour.strftime("%Y/%m/%d/%H/")
                )
                for page in pages:
                    for item in page.get("Contents", []):
                        body = s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read().decode()
                        for line in body.splitlines():
                            for prediction in _captured_predictions(line, start, end):
                                scores.append(float(prediction["propensity"]))
                                sessions.append(prediction["session_id"])
                hour += timedelta(hours=1)
        return scores, sessions

    def _describe_endpoint(self, endpoint: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self._client("sagemaker").describe_endpoint(EndpointName=endpoint)
        except ClientError as error:
            if "Could not find endpoint" in error.response.get("Error", {}).get("Message", ""):
                return None
            raise RuntimeError(
                f"SageMaker describe_endpoint for endpoint {endpoint} failed: {_describe_error(error)}: "
                "check the region and the role's sagemaker:DescribeEndpoint permission"
            ) from error
        except Exception as error:  # noqa: BLE001 - timeouts and connection errors, named for the caller
            hint = f"check network access to SageMaker in {self.region}"
            raise _aws_error("describe_endpoint", endpoint, error, hint) from error

    def _deployed(self, endpoint: str, described: dict) -> list[dict]:
        """The endpoint's variants: name, weight share, its production variant, and the model version from the
        model's PROPENSITY_MODEL_VERSION (the model name when another tool created it)."""
        sagemaker = self._client("sagemaker")
        with self._aws("describe_endpoint_config", endpoint, "check the role's sagemaker:Describe* permissions"):
            config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
            versions = {}
            for production_variant in config["ProductionVariants"]:
                model = sagemaker.describe_model(ModelName=production_variant["ModelName"])
                environment = model.get("PrimaryContainer", {}).get("Environment", {})
                version = environment.get("PROPENSITY_MODEL_VERSION", model["ModelName"])
                versions[production_variant["VariantName"]] = version
        configured = {pv["VariantName"]: pv for pv in config["ProductionVariants"]}
        configured_weights = {name: float(pv.get("InitialVariantWeight", 1.0)) for name, pv in configured.items()}
        weights = {
            pv["VariantName"]: float(pv.get("CurrentWeight", configured_weights.get(pv["VariantName"], 1.0)))
            for pv in described.get("ProductionVariants", [])
        } or configured_weights
        total = sum(weights.values()) or 1.0
        return [
            {
                "name": name,
                "weight": weight / total,
                "model_version": versions.get(name, name),
                "production_variant": _production_variant_of(configured[name]),
            }
            for name, weight in weights.items()
            if name in configured
        ]

    def _wait_in_service(self, endpoint: str) -> tuple[str, str] | None:
        """None once InService; otherwise the outcome and why ("failed" with SageMaker's reason, or "in_progress"
        when still updating after wait_timeout_s)."""
        from botocore.exceptions import WaiterError

        poll = max(1, self.wait_poll_s)
        try:
            attempts = max(1, math.ceil(self.wait_timeout_s / poll))
            self._client("sagemaker").get_waiter("endpoint_in_service").wait(
                EndpointName=endpoint, WaiterConfig={"Delay": poll, "MaxAttempts": attempts}
            )
            return None
        except WaiterError as error:
            last = error.last_response or {}
            status = last.get("EndpointStatus", "unknown")
            if status in ("Creating", "Updating", "SystemUpdating"):
                return "in_progress", f"{endpoint} still {status} after {self.wait_timeout_s} s: see describe_endpoint"
            why = last.get("FailureReason") or last.get("Error", {}).get("Message") or str(error)
            return "failed", f"{endpoint} is {status}: {why}; see CloudWatch logs /aws/sagemaker/Endpoints/{endpoint}"

    def _record(
        self,
        endpoint: str,
        model_version: str,
        outcome: str,
        reason: str,
        started: str,
        variants: list[VariantSpec],
        observations: dict | None = None,
        stage: str = "",
    ) -> DeploymentRecord:
        """Append to the endpoint's audit trail; a record is finished unless SageMaker is still at work."""
        record = DeploymentRecord(
            endpoint=endpoint,
            model_version=model_version,
            outcome=outcome,
            reason=reason,
            started_at=started,
            finished_at=None if outcome == "in_progress" else utc_now(),
            variants=variants,
            observations=observations or {},
            deployer="sagemaker",
            stage=stage,
        )
        append_history(self._history_path(endpoint), record)
        return record

    def _history_path(self, endpoint: str) -> Path:
        return home() / "serving" / "sagemaker" / endpoint / "history.jsonl"

    @contextmanager
    def _aws(self, call: str, endpoint: str, what_to_do: str):
        try:
            yield
        except Exception as error:
            from boto3.exceptions import Boto3Error
            from botocore.exceptions import BotoCoreError, ClientError

            if isinstance(error, (ClientError, BotoCoreError, Boto3Error)):
                raise _aws_error(call, endpoint, error, what_to_do) from error
            raise


def _captured_predictions(line: str, start: float, end: float) -> list[dict]:
    """The predictions of one Data Capture line inferred between start and end (an error answer has none)."""
    if not line.strip():
        return []
    event = json.loads(line)
    inferred = datetime.fromisoformat(event["eventMetadata"]["inferenceTime"]).timestamp()
    output = event.get("captureData", {}).get("endpointOutput")
    if output is None or not start <= inferred <= end:
        return []
    body = captured_body(event["captureData"], "endpointOutput")  # the decision log's decoder: one reading
    predictions = body.get("predictions", [body]) if isinstance(body, dict) else []
    return [p for p in predictions if isinstance(p, dict) and "propensity" in p and "session_id" in p]


def _check_endpoint_name(endpoint: str) -> None:
    if not NAME_PATTERN.match(endpoint or ""):
        raise ValueError(f"endpoint name {endpoint!r}: use at most 63 letters, digits and '-' (SageMaker's rule)")


def _describe_error(error: Exception) -> str:
    response = getattr(error, "response", None)
    if response:
        detail = response.get("Error", {})
        return f"{detail.get('Code', type(error).__name__)}: {detail.get('Message', error)}"
    return f"{type(error).__name__}: {error}"


def _aws_error(call: str, endpoint: str, error: Exception, what_to_do: str) -> RuntimeError:
    return RuntimeError(f"SageMaker {call} for endpoint {endpoint} failed ({_describe_error(error)}): {what_to_do}")


def _production_variant_of(configured: dict) -> dict:
    """The fields of a configured production variant that a new endpoint config carries over unchanged."""
    keep = ("VariantName", "ModelName", "InstanceType", "InitialInstanceCount", "InitialVariantWeight")
    return {key: configured[key] for key in keep if key in configured}


def _specs(deployed: list[dict]) -> list[VariantSpec]:
    return [VariantSpec(v["name"], v["model_version"], v["weight"]) for v in deployed]

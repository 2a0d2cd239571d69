"""The SageMaker deployer against moto (S3, SageMaker, CloudWatch) and, where moto 5.2.5 stops (it has no
UpdateEndpoint), against botocore's Stubber, which checks every request against the real SageMaker service model."""

import base64
import hashlib
import io
import json
import re
import shutil
import tarfile
from datetime import datetime, timezone

import boto3
import dagster as dg
import numpy as np
import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from botocore.validate import validate_parameters
from moto import mock_aws
from scipy.special import expit

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.artifact import ArtifactIntegrityError, load_artifact, verify_manifest
from propensity.settings import Settings, SettingsError
from resources.deployers import SageMakerDeployerResource
from serving.control import sagemaker as sagemaker_deployer
from serving.control.deployment import CanaryPolicy
from serving.control.judge import judge_canary
from serving.control.sagemaker import SageMakerDeployer, _captured_predictions, sagemaker_name
from serving.endpoint_state import VariantSpec
from tests.unit.test_model_pieces import _artifact

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "propensity-artifacts"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/propensity:0.1.0"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/propensity-sagemaker"
REDIS_URL = "redis://propensity-cache:6379/0"
ENDPOINT = "propensity-prod"
STAMP = "20260101120000"
NEW_NAME = f"{ENDPOINT}-v0002-bbbb-{STAMP}"  # model and endpoint config of the second deployment
MOTO_INSTANCE = "ml.c5.large"  # moto 5.2.5 knows an old list of instance types, without the default ml.c6i.large
NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
DATA_CAPTURE = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": f"s3://{BUCKET}/propensity/data-capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Two small real artifacts: LightGBM on random data over the model's real feature list."""
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.gamma(2.0, 2.0, size=(4000, len(MODEL_FEATURE_NAMES))), columns=list(MODEL_FEATURE_NAMES))
    y = (rng.random(4000) < expit(-2 + 0.3 * X["session_cart_adds"] - 0.1 * X["session_events"])).astype(int)
    return {
        "v0001-aaaa": _artifact(tmp_path_factory.mktemp("v1"), X, y.to_numpy()),
        "v0002-bbbb": _artifact(tmp_path_factory.mktemp("v2"), X[::-1].reset_index(drop=True), y.to_numpy()[::-1]),
    }


@pytest.fixture
def aws(monkeypatch, propensity_home):
    """moto for every AWS service, fake credentials, a bucket, and a fixed deployment stamp."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setattr(sagemaker_deployer, "deployment_stamp", lambda: STAMP)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


def _deployer(sagemaker=None, **overrides) -> SageMakerDeployer:
    config = dict(
        region=REGION,
        bucket=BUCKET,
        image_uri=IMAGE,
        execution_role_arn=ROLE,
        wait_poll_s=1,
        wait_timeout_s=3,
        environment={"REDIS_URL": REDIS_URL},
    )
    deployer = SageMakerDeployer(**(config | overrides))
    return deployer.with_clients(sagemaker=sagemaker) if sagemaker is not None else deployer


def _tarball(key: str) -> dict[str, bytes]:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return {member.name: archive.extractfile(member).read() for member in archive.getmembers()}


def _variant(name: str, model: str, weight: float, instances: int = 1, instance_type: str = "ml.c6i.large") -> dict:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": instance_type,
        "InitialInstanceCount": instances,
        "InitialVariantWeight": weight,
    }


def test_first_deploy_uploads_the_artifact_and_brings_the_endpoint_in_service(aws, artifacts, tmp_path):
    deployer = _deployer(instance_type=MOTO_INSTANCE)
    assert deployer.variants(ENDPOINT) == [] and deployer.history(ENDPOINT) == []

    record = deployer.deploy(ENDPOINT, artifacts["v0001-aaaa"], "v0001-aaaa", CanaryPolicy())

    assert (record.outcome, record.deployer) == ("deployed", "sagemaker")
    assert record.variants == [VariantSpec("v0001-aaaa", "v0001-aaaa", 1.0)]
    # the archive holds exactly the artifact's files, at its root, byte for byte
    files = _tarball("propensity/models/v0001-aaaa/model.tar.gz")
    manifest = verify_manifest(artifacts["v0001-aaaa"])
    assert sorted(files) == sorted([*manifest, "MANIFEST.json"])
    assert {name: hashlib.sha256(files[name]).hexdigest() for name in manifest} == manifest
    (tmp_path / "model").mkdir()  # what SageMaker extracts into /opt/ml/model loads as the artifact
    for name, content in files.items():
        (tmp_path / "model" / name).write_bytes(content)
    assert load_artifact(tmp_path / "model").feature_names == list(MODEL_FEATURE_NAMES)

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    model = sagemaker.describe_model(ModelName=f"{ENDPOINT}-v0001-aaaa-{STAMP}")
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/propensity/models/v0001-aaaa/model.tar.gz"
    assert model["PrimaryContainer"]["Environment"] == {
        "PROPENSITY_PROFILE": "redis",
        "REDIS_URL": REDIS_URL,
        "PROPENSITY_VARIANT": "v0001-aaaa",
        "PROPENSITY_MODEL_VERSION": "v0001-aaaa",
    }
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointStatus"] == "InService"
    capture = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])[
        "DataCaptureConfig"
    ]
    assert capture == DATA_CAPTURE
    assert deployer.variants(ENDPOINT) == record.variants
    assert deployer.canary(ENDPOINT) is None and record.stage == "deploy"
    for service in ("s3", "sagemaker"):  # every call is bounded in time
        config = deployer._client(service).meta.config
        assert (config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]) == (10, 10, 3)
    assert _deployer().history(ENDPOINT) == [record]  # a new deployer (another run) reads the same audit trail

    again = deployer.deploy(ENDPOINT, artifacts["v0001-aaaa"], "v0001-aaaa", CanaryPolicy())
    assert again.outcome == "deployed" and "nothing changed" in again.reason
    assert len(sagemaker.list_models()["Models"]) == 1


class _MotoWithUpdateEndpoint:
    """A moto SageMaker client that also does UpdateEndpoint (moto 5.2.5 has none): the request is validated against
    the service model, then the endpoint is re-created on the new config, the state a finished update leaves."""

    def __init__(self):
        self._client = boto3.client("sagemaker", region_name=REGION)
        self.updates: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def update_endpoint(self, **params):
        validate_parameters(params, self._client.meta.service_model.operation_model("UpdateEndpoint").input_shape)
        self.updates.append(params)
        self._client.delete_endpoint(EndpointName=params["EndpointName"])
        return self._client.create_endpoint(
            EndpointName=params["EndpointName"], EndpointConfigName=params["EndpointConfigName"]
        )


def _capture(endpoint: str, variant: str, started_at: float, scores, encoding: str = "JSON") -> None:
    """Data Capture's JSON lines for `scores` answered by `variant` after `started_at`, under SageMaker's layout
    (one object per hour, as SageMaker writes them)."""
    rng = np.random.default_rng(len(scores))
    by_hour: dict[str, list[str]] = {}
    for i, score in enumerate(scores):
        when = datetime.fromtimestamp(started_at + 1 + i * 0.01, timezone.utc)
        body = json.dumps(
            {
                "session_id": f"s-{variant}-{i}",
                "user_id": "u",
                "propensity": float(score),
                "variant": variant,
                "model_version": variant,
                "feature_age_s": {},
                "fallback": False,
                "fallback_reason": None,
            }
        )
        data = base64.b64encode(body.encode()).decode() if encoding == "BASE64" else body
        line = {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "application/json",
                    "mode": "INPUT",
                    "data": "{}",
                    "encoding": "JSON",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": data,
                    "encoding": encoding,
                },
            },
            "eventMetadata": {"eventId": f"e{i}{rng.integers(1e9)}", "inferenceTime": when.isoformat()},
            "eventVersion": "0",
        }
        by_hour.setdefault(when.strftime("%Y/%m/%d/%H"), []).append(json.dumps(line))
    s3 = boto3.client("s3", region_name=REGION)
    for hour, lines in by_hour.items():
        key = f"propensity/data-capture/{endpoint}/{variant}/{hour}/00-00-000-{variant}.jsonl"
        s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())


def _stub_metrics(stubber: Stubber, variant: str, invocations: int, errors: int, p99_us: float) -> None:
    dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
    window = {
        "Namespace": "AWS/SageMaker",
        "Dimensions": dimensions,
        "StartTime": ANY,
        "EndTime": ANY,
        "Period": 60,
    }
    for name, total in (("Invocations", invocations), ("Invocation5XXErrors", errors)):
        points = [{"Timestamp": NOW, "Sum": float(total // 2)}, {"Timestamp": NOW, "Sum": float(total - total // 2)}]
        stubber.add_response(
            "get_metric_statistics",
            {"Label": name, "Datapoints": points},
            {"MetricName": name, "Statistics": ["Sum"], **window},
        )
    stubber.add_response(
        "get_metric_statistics",
        {"Label": "ModelLatency", "Datapoints": [{"Timestamp": NOW, "ExtendedStatistics": {"p99": p99_us}}]},
        {"MetricName": "ModelLatency", "ExtendedStatistics": ["p99"], **window},
    )


def test_the_judge_drives_a_variant_weights_canary_from_cloudwatch_and_data_capture(aws, artifacts, monkeypatch):
    """moto for S3 (Data Capture) and SageMaker, botocore's Stubber for CloudWatch's per-variant metrics."""
    sagemaker = _MotoWithUpdateEndpoint()
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    deployer = _deployer(strategy="variant_weights", instance_type=MOTO_INSTANCE)
    deployer.with_clients(sagemaker=sagemaker, cloudwatch=cloudwatch)
    deployer.deploy(ENDPOINT, artifacts["v0001-aaaa"], "v0001-aaaa", CanaryPolicy())
    monkeypatch.setattr(sagemaker_deployer, "deployment_stamp", lambda: "20260101130000")
    policy = CanaryPolicy(canary_share=0.1, baking_s=60)

    canary = deployer.deploy(ENDPOINT, artifacts["v0002-bbbb"], "v0002-bbbb", policy)

    assert (canary.outcome, canary.stage) == ("in_progress", "start_canary")
    assert "DeploymentConfig" not in sagemaker.updates[-1]
    split = [VariantSpec("v0001-aaaa", "v0001-aaaa", 0.9), VariantSpec("v0002-bbbb", "v0002-bbbb", 0.1)]
    assert deployer.variants(ENDPOINT) == canary.variants == split
    state = deployer.canary(ENDPOINT)
    assert (state.variant, state.champion_variant, state.policy) == ("v0002-bbbb", "v0001-aaaa", policy)
    assert deployer.deploy(ENDPOINT, artifacts["v0002-bbbb"], "v0002-bbbb", policy) == canary  # no second canary

    rng = np.random.default_rng(3)
    _capture(ENDPOINT, "v0002-bbbb", state.started_at, rng.beta(0.9, 17.1, 300), encoding="BASE64")
    _capture(ENDPOINT, "v0001-aaaa", state.started_at, rng.beta(0.9, 17.1, 2700))
    _capture(ENDPOINT, "v0001-aaaa", state.started_at - 3600, [0.9] * 50)  # before the canary: not its period
    with Stubber(cloudwatch) as stubber:
        _stub_metrics(stubber, "v0002-bbbb", 300, 0, 4_000.0)
        _stub_metrics(stubber, "v0001-aaaa", 2_700, 1, 3_000.0)
        baking = judge_canary(deployer, ENDPOINT, now=state.started_at + 30)
        _stub_metrics(stubber, "v0002-bbbb", 300, 0, 4_000.0)
        _stub_metrics(stubber, "v0001-aaaa", 2_700, 1, 3_000.0)
        promoted = judge_canary(deployer, ENDPOINT, now=state.started_at + 61)
        stubber.assert_no_pending_responses()
    assert baking.decision == "continue" and "30 of 60 s" in baking.reason
    assert baking.numbers["canary_requests"] == 300 and baking.numbers["champion_5xx"] == 1
    assert baking.numbers["canary_p99_ms"] == 4.0  # ModelLatency is in microseconds
    assert baking.numbers["rows_with_outcome"] == {"canary": 0, "champion": 0}
    assert promoted.decision == "promote", promoted.reason
    assert promoted.numbers["mean_score"]["champion"] < 0.1  # the 0.9s before the canary started are not counted
    assert [(v.name, v.weight) for v in deployer.variants(ENDPOINT)] == [("v0001-aaaa", 0.0), ("v0002-bbbb", 1.0)]
    assert deployer.canary(ENDPOINT) is None

    # A third version whose every other answer is a 5xx: rolled back at the first look, the bake not waited out.
    monkeypatch.setattr(sagemaker_deployer, "deployment_stamp", lambda: "20260101140000")
    deployer.deploy(ENDPOINT, artifacts["v0001-aaaa"], "v0003-cccc", policy)
    state = deployer.canary(ENDPOINT)
    assert (state.variant, state.champion_variant) == ("v0003-cccc", "v0002-bbbb")
    _capture(ENDPOINT, "v0003-cccc", state.started_at, rng.beta(0.9, 17.1, 150))
    with Stubber(cloudwatch) as stubber:
        _stub_metrics(stubber, "v0003-cccc", 300, 150, 4_000.0)
        _stub_metrics(stubber, "v0002-bbbb", 2_700, 0, 3_000.0)
        rolled_back = judge_canary(deployer, ENDPOINT, now=state.started_at + 5)
        stubber.assert_no_pending_responses()
    assert rolled_back.decision == "roll_back" and rolled_back.reason.startswith("error rate"), rolled_back.reason
    assert [(v.name, v.weight) for v in deployer.variants(ENDPOINT)] == [("v0002-bbbb", 1.0), ("v0003-cccc", 0.0)]
    assert rolled_back.record.observations["weights"] == {"v0002-bbbb": 1.0, "v0003-cccc": 0.0}
    stages = [(r.stage, r.outcome) for r in deployer.history(ENDPOINT)]
    assert stages == [
        ("deploy", "deployed"),
        ("start_canary", "in_progress"),
        ("promote", "promoted"),
        ("start_canary", "in_progress"),
        ("roll_back", "rolled_back"),
    ]
    assert deployer.endpoints() == [ENDPOINT]


def test_a_linear_canary_shifts_by_weights_before_promotion(aws, artifacts, monkeypatch):
    sagemaker = _MotoWithUpdateEndpoint()
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    deployer = _deployer(strategy="variant_weights", instance_type=MOTO_INSTANCE)
    deployer.with_clients(sagemaker=sagemaker, cloudwatch=cloudwatch)
    deployer.deploy(ENDPOINT, artifacts["v0001-aaaa"], "v0001-aaaa", CanaryPolicy())
    monkeypatch.setattr(sagemaker_deployer, "deployment_stamp", lambda: "20260101130000")
    policy = CanaryPolicy(canary_share=0.2, baking_s=10, shift="linear", linear_step_share=0.5, min_requests=50)
    deployer.deploy(ENDPOINT, artifacts["v0002-bbbb"], "v0002-bbbb", policy)
    state = deployer.canary(ENDPOINT)
    with Stubber(cloudwatch) as stubber:
        _stub_metrics(stubber, "v0002-bbbb", 200, 0, 4_000.0)
        _stub_metrics(stubber, "v0001-aaaa", 800, 0, 3_000.0)
        shifted = judge_canary(deployer, ENDPOINT, now=state.started_at + 11)
        stubber.assert_no_pending_responses()
    assert shifted.decision == "shift" and shifted.record.stage == "shift"
    assert [(v.name, round(v.weight, 6)) for v in deployer.variants(ENDPOINT)] == [
        ("v0001-aaaa", 0.3),
        ("v0002-bbbb", 0.7),
    ]
    assert deployer.canary(ENDPOINT).share == 0.7 and deployer.canary(ENDPOINT).step == 1


def test_data_capture_lines_give_our_predictions_only_within_the_period():
    prediction = {"session_id": "s1", "propensity": 0.1, "variant": "v", "model_version": "v"}

    def line(body: dict, when: str = "2026-01-01T12:00:30Z", encoding: str = "JSON") -> str:
        data = json.dumps(body)
        data = base64.b64encode(data.encode()).decode() if encoding == "BASE64" else data
        output = {"observedContentType": "application/json", "mode": "OUTPUT", "data": data, "encoding": encoding}
        return json.dumps({"captureData": {"endpointOutput": output}, "eventMetadata": {"inferenceTime": when}})

    start, end = NOW.timestamp(), NOW.timestamp() + 60
    assert _captured_predictions(line(prediction), start, end) == [prediction]
    assert _captured_predictions(line(prediction, encoding="BASE64"), start, end) == [prediction]
    batch = {"predictions": [prediction, {**prediction, "session_id": "s2"}]}
    assert [p["session_id"] for p in _captured_predictions(line(batch), start, end)] == ["s1", "s2"]
    assert _captured_predictions(line({"error": "scoring failed"}), start, end) == []
    assert _captured_predictions(line(prediction, when="2026-01-01T11:59:59Z"), start, end) == []
    assert _captured_predictions("", start, end) == []


def _arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def _described_endpoint(status="InService", **extra) -> dict:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": _arn("endpoint", ENDPOINT),
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        **extra,
    }


def _stub_current_champion(stubber: Stubber, instances: int = 1) -> None:
    """An endpoint serving v0001-aaaa, as a previous deployment left it."""
    serving = {"VariantName": "v0001-aaaa", "CurrentWeight": 1.0, "CurrentInstanceCount": instances}
    stubber.add_response(
        "describe_endpoint",
        _described_endpoint(EndpointConfigName="old-config", ProductionVariants=[serving]),
        {"EndpointName": ENDPOINT},
    )
    stubber.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": "old-config",
            "EndpointConfigArn": _arn("endpoint-config", "old-config"),
            "CreationTime": NOW,
            "ProductionVariants": [_variant("v0001-aaaa", "old-model", 1.0, instances)],
        },
        {"EndpointConfigName": "old-config"},
    )
    stubber.add_response(
        "describe_model",
        {
            "ModelName": "old-model",
            "ModelArn": _arn("model", "old-model"),
            "CreationTime": NOW,
            "PrimaryContainer": {"Image": IMAGE, "Environment": {"PROPENSITY_MODEL_VERSION": "v0001-aaaa"}},
        },
        {"ModelName": "old-model"},
    )


def _stub_new_model_and_config(stubber: Stubber, variants: list[dict]) -> None:
    environment = {
        "PROPENSITY_PROFILE": "redis",
        "REDIS_URL": REDIS_URL,
        "PROPENSITY_VARIANT": "v0002-bbbb",
        "PROPENSITY_MODEL_VERSION": "v0002-bbbb",
    }
    container = {
        "Image": IMAGE,
        "ModelDataUrl": f"s3://{BUCKET}/propensity/models/v0002-bbbb/model.tar.gz",
        "Environment": environment,
    }
    stubber.add_response(
        "create_model",
        {"ModelArn": _arn("model", NEW_NAME)},
        {"ModelName": NEW_NAME, "ExecutionRoleArn": ROLE, "PrimaryContainer": container},
    )
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": _arn("endpoint-config", NEW_NAME)},
        {"EndpointConfigName": NEW_NAME, "ProductionVariants": variants, "DataCaptureConfig": DATA_CAPTURE},
    )


@pytest.mark.parametrize(
    "policy, routing",
    [
        (
            CanaryPolicy(canary_share=0.1, baking_s=300, shift="all_at_once"),
            {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}, "WaitIntervalInSeconds": 300},
        ),
        (
            CanaryPolicy(shift="linear", linear_step_share=0.25, linear_step_baking_s=120),
            {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                "WaitIntervalInSeconds": 120,
            },
        ),
    ],
    ids=["canary", "linear"],
)
def test_blue_green_update_hands_baking_and_rollback_to_sagemaker_alarms(aws, artifacts, policy, routing):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    alarms = [f"propensity-{ENDPOINT}-v0002-bbbb-5xx-rate", f"propensity-{ENDPOINT}-v0002-bbbb-p99-latency"]
    bake = routing["WaitIntervalInSeconds"]
    shifting = 2 * bake if routing["Type"] == "CANARY" else 4 * bake  # canary + final bake, or four 25% steps
    # One case notifies the alarm topic (SAGEMAKER_ALARM_TOPIC_ARN), the other has none: no alarm actions then.
    topic = (
        f"arn:aws:sns:{REGION}:123456789012:propensity-staging-endpoint-alarms" if routing["Type"] == "LINEAR" else None
    )
    deployment_config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": bake,
            "MaximumExecutionTimeoutInSeconds": max(600, 3 + shifting + bake),
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm} for alarm in alarms]},
    }
    with Stubber(sagemaker) as stubber:
        _stub_current_champion(stubber)
        _stub_new_model_and_config(stubber, [_variant("v0002-bbbb", NEW_NAME, 1.0)])
        stubber.add_response(
            "update_endpoint",
            {"EndpointArn": _arn("endpoint", ENDPOINT)},
            {"EndpointName": ENDPOINT, "EndpointConfigName": NEW_NAME, "DeploymentConfig": deployment_config},
        )
        deployer = _deployer(sagemaker, alarm_topic_arn=topic) if topic else _deployer(sagemaker)
        record = deployer.deploy(ENDPOINT, artifacts["v0002-bbbb"], "v0002-bbbb", policy)
        stubber.assert_no_pending_responses()

    assert record.outcome == "in_progress" and record.finished_at is None
    assert record.stage == "start_canary" and "canary" not in record.observations  # SageMaker bakes this one
    assert record.observations["alarms"] == alarms and all(alarm in record.reason for alarm in alarms)
    assert record.variants == [VariantSpec("v0001-aaaa", "v0001-aaaa", 1.0)]  # blue serves until SageMaker shifts
    assert _tarball("propensity/models/v0002-bbbb/model.tar.gz")  # uploaded before the model that points at it
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    described = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=alarms)["MetricAlarms"]}
    dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "v0002-bbbb"}]
    latency = described[alarms[1]]
    assert (latency["Namespace"], latency["MetricName"]) == ("AWS/SageMaker", "ModelLatency")
    assert latency["ExtendedStatistic"] == "p99" and latency["Dimensions"] == dimensions
    assert latency["Threshold"] == policy.max_p99_latency_ms * 1000  # ModelLatency is in microseconds
    errors = described[alarms[0]]
    assert errors["Threshold"] == policy.max_error_rate and errors["TreatMissingData"] == "notBreaching"
    queries = {q["Id"]: q for q in errors["Metrics"]}
    assert queries["error_rate"]["Expression"] == "IF(invocations > 0, errors / invocations, 0)"
    assert queries["errors"]["MetricStat"]["Metric"]["MetricName"] == "Invocation5XXErrors"
    assert queries["invocations"]["MetricStat"]["Metric"]["MetricName"] == "Invocations"
    assert all(queries[q]["MetricStat"]["Metric"]["Dimensions"] == dimensions for q in ("errors", "invocations"))
    assert all(described[alarm]["AlarmActions"] == ([topic] if topic else []) for alarm in alarms)
    assert _deployer().history(ENDPOINT)[-1].observations["alarms"] == alarms


def test_variant_weights_request_shapes(aws, artifacts):
    """The two-variant config keeps the champion's own capacity; update_endpoint carries no DeploymentConfig."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    with Stubber(sagemaker) as stubber:
        _stub_current_champion(stubber, instances=3)
        _stub_new_model_and_config(
            stubber, [_variant("v0001-aaaa", "old-model", 0.8, instances=3), _variant("v0002-bbbb", NEW_NAME, 0.2)]
        )
        stubber.add_response(
            "update_endpoint",
            {"EndpointArn": _arn("endpoint", ENDPOINT)},
            {"EndpointName": ENDPOINT, "EndpointConfigName": NEW_NAME},
        )
        stubber.add_response("describe_endpoint", _described_endpoint(), {"EndpointName": ENDPOINT})  # the waiter
        deployer = _deployer(sagemaker, strategy="variant_weights")
        record = deployer.deploy(ENDPOINT, artifacts["v0002-bbbb"], "v0002-bbbb", CanaryPolicy(canary_share=0.2))
        stubber.assert_no_pending_responses()
    assert record.outcome == "in_progress" and record.observations["canary"]["share"] == 0.2
    assert [(v.name, v.weight) for v in record.variants] == [("v0001-aaaa", 0.8), ("v0002-bbbb", 0.2)]


def test_an_endpoint_that_fails_to_start_is_recorded_with_sagemakers_reason(aws, artifacts):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    failed = _described_endpoint("Failed", FailureReason="The primary container did not pass the ping health check.")
    with Stubber(sagemaker) as stubber:
        stubber.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".')
        _stub_new_model_and_config(stubber, [_variant("v0002-bbbb", NEW_NAME, 1.0)])
        stubber.add_response(
            "create_endpoint",
            {"EndpointArn": _arn("endpoint", ENDPOINT)},
            {"EndpointName": ENDPOINT, "EndpointConfigName": NEW_NAME},
        )
        stubber.add_response("describe_endpoint", failed, {"EndpointName": ENDPOINT})
        record = _deployer(sagemaker).deploy(ENDPOINT, artifacts["v0002-bbbb"], "v0002-bbbb", CanaryPolicy())
        stubber.assert_no_pending_responses()
    assert record.outcome == "failed" and "ping health check" in record.reason and record.variants == []
    assert _deployer().history(ENDPOINT) == [record]


def test_a_failed_call_names_the_call_the_endpoint_and_what_to_do(aws, artifacts):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    with Stubber(sagemaker) as stubber:
        stubber.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".')
        stubber.add_client_error("create_model", "ValidationException", "Could not access model data at s3://...")
        expected = rf"create_model for endpoint {ENDPOINT} failed .*Could not access model data.*execution_role_arn"
        with pytest.raises(RuntimeError, match=expected):
            _deployer(sagemaker).deploy(ENDPOINT, artifacts["v0002-bbbb"], "v0002-bbbb", CanaryPolicy())
        stubber.assert_no_pending_responses()
    [failed] = _deployer().history(ENDPOINT)
    assert failed.outcome == "failed" and "create_model" in failed.reason


def _tampered(artifacts, tmp_path):
    copy = shutil.copytree(artifacts["v0001-aaaa"], tmp_path / "tampered")
    (copy / "calibrator.json").write_text('{"method": "temperature", "temperature": 9.0}')
    return copy


def _intact(artifacts, tmp_path):
    return artifacts["v0001-aaaa"]


@pytest.mark.parametrize(
    "endpoint, artifact, policy, error",
    [
        (ENDPOINT, _tampered, CanaryPolicy(), ArtifactIntegrityError),
        (ENDPOINT, _intact, CanaryPolicy(canary_share=0.6), ValueError),
        (ENDPOINT, _intact, CanaryPolicy(shift="linear", linear_step_share=0.05), ValueError),
        ("propensity_prod", _intact, CanaryPolicy(), ValueError),
    ],
    ids=["tampered-artifact", "canary-over-50%", "linear-step-under-10%", "bad-endpoint-name"],
)
def test_what_sagemaker_would_refuse_is_refused_before_any_call(
    aws, artifacts, tmp_path, endpoint, artifact, policy, error
):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    with Stubber(sagemaker):  # no responses queued: any SageMaker call fails the test
        with pytest.raises(error):
            _deployer(sagemaker).deploy(endpoint, artifact(artifacts, tmp_path), "v0001-aaaa", policy)
    assert boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_sagemaker_names_are_legal_and_distinct():
    pattern = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    assert sagemaker_name(ENDPOINT, "v0002-bbbb", STAMP) == NEW_NAME
    long_endpoint = "propensity-" + "x" * 60
    first, second = sagemaker_name(long_endpoint, "v0001_a.b", STAMP), sagemaker_name(long_endpoint, "v0002_a.b", STAMP)
    assert len(first) <= 63 and pattern.match(first) and pattern.match(sagemaker_name("v0001_a.b/"))
    assert first != second


def test_the_sagemaker_deployer_names_every_missing_variable_and_takes_the_rest_as_env_vars(monkeypatch):
    with pytest.raises(SettingsError, match="SAGEMAKER_BUCKET, SAGEMAKER_IMAGE_URI, SAGEMAKER_REGION"):
        Settings.from_env({"PROPENSITY_DEPLOYER": "sagemaker", "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE})
    environ = {
        "PROPENSITY_DEPLOYER": "sagemaker",
        "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE,
        "SAGEMAKER_BUCKET": BUCKET,
        "SAGEMAKER_IMAGE_URI": IMAGE,
        "AWS_REGION": "eu-west-1",
        "SAGEMAKER_INSTANCE_COUNT": "4",
        "SAGEMAKER_STRATEGY": "variant_weights",
        "SAGEMAKER_REDIS_URL": "rediss://:secret@cache.example:6379/0",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    resource = SageMakerDeployerResource.from_settings(Settings.from_env(environ))
    # The UI shows which variable a value comes from, never the value (the Redis URL carries a password).
    assert isinstance(resource.redis_url, dg.EnvVar) and resource.redis_url.env_var_name == "SAGEMAKER_REDIS_URL"
    assert resource.region.env_var_name == "AWS_REGION"
    with dg.build_resources({"deployer": resource}) as built:
        deployer = built.deployer
    assert isinstance(deployer, SageMakerDeployer)
    assert (deployer.region, deployer.bucket, deployer.initial_instance_count) == ("eu-west-1", BUCKET, 4)
    assert deployer.strategy == "variant_weights"
    assert deployer.environment == {"REDIS_URL": "rediss://:secret@cache.example:6379/0"}

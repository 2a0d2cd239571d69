"""The release steps after the training pipeline: the newest package of the group, approved, fetched with its
manifest verified, deployed by the SageMaker deployer, and the blue/green update followed to its end (moto for the
registry, S3 and a first deployment; botocore's Stubber where moto stops: it has no UpdateEndpoint)."""

import re
import shutil

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from propensity.models.artifact import ArtifactIntegrityError, package_artifact
from serving.control import sagemaker as sagemaker_deployer
from serving.control.deployment import CanaryPolicy
from serving.control.release import (
    ReleaseError,
    fetch_artifact,
    follow_update,
    model_version,
    packages,
    release,
    rollback_target,
)
from serving.control.sagemaker import SageMakerDeployer
from tests.integration.test_sagemaker_deployer import ACCOUNT, BUCKET, IMAGE, MOTO_INSTANCE, REGION, ROLE, artifacts  # noqa: F401

GROUP = "propensity-staging-propensity"
ENDPOINT = "propensity"


@pytest.fixture
def registry(monkeypatch, propensity_home, artifacts, tmp_path):  # noqa: F811
    """moto with the lake bucket and a model package group holding two registered packages (the second pending)."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setattr(sagemaker_deployer, "deployment_stamp", lambda: "20260101120000")
    with mock_aws():
        s3, sagemaker = boto3.client("s3", region_name=REGION), boto3.client("sagemaker", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        for index, (version, status) in enumerate(
            (("v0001-aaaa", "Approved"), ("v0002-bbbb", "PendingManualApproval"))
        ):
            package_artifact(artifacts[version], tmp_path / f"{version}.tar.gz")
            key = f"propensity/pipeline/exec-{index}/evaluation/model.tar.gz"
            s3.upload_file(str(tmp_path / f"{version}.tar.gz"), BUCKET, key)
            sagemaker.create_model_package(
                ModelPackageGroupName=GROUP,
                ModelApprovalStatus=status,
                InferenceSpecification={
                    "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/{key}"}],
                    "SupportedContentTypes": ["application/json"],
                    "SupportedResponseMIMETypes": ["application/json"],
                },
            )
        yield sagemaker, s3


def test_the_newest_approved_package_is_released_to_a_new_endpoint(registry, tmp_path):
    sagemaker, s3 = registry
    [pending] = packages(sagemaker, GROUP, "PendingManualApproval", limit=1)
    assert pending["ModelPackageVersion"] == 2
    sagemaker.update_model_package(ModelPackageArn=pending["ModelPackageArn"], ModelApprovalStatus="Approved")
    [newest] = packages(sagemaker, GROUP, "Approved", limit=1)
    assert newest["ModelPackageArn"] == pending["ModelPackageArn"]
    assert re.fullmatch(r"v0002-[0-9a-f]{10}", model_version(newest))
    deployer = SageMakerDeployer.from_values(
        {
            "region": REGION,
            "bucket": BUCKET,
            "image_uri": IMAGE,
            "execution_role_arn": ROLE,
            "instance_type": MOTO_INSTANCE,
            "wait_timeout_s": "5",
        }
    )
    deployer.wait_poll_s = 1
    outcome, why = release(deployer, sagemaker, s3, ENDPOINT, newest, CanaryPolicy(), wait_s=5, poll_s=0)
    assert outcome == "deployed", why  # no endpoint yet: the first deployment takes all traffic
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"
    assert deployer.history(ENDPOINT)[-1].model_version == model_version(newest)


def test_a_tampered_package_is_refused_before_any_deployment(registry, tmp_path):
    sagemaker, s3 = registry
    [package] = packages(sagemaker, GROUP, "Approved", limit=1)
    url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    fetched = fetch_artifact(s3, url, tmp_path / "a")
    (fetched / "calibrator.json").write_text('{"method": "identity"}')  # a changed file, an old manifest
    shutil.make_archive(str(tmp_path / "tampered"), "gztar", fetched)
    s3.upload_file(str(tmp_path / "tampered.tar.gz"), BUCKET, url.split(f"{BUCKET}/", 1)[1])
    with pytest.raises(ArtifactIntegrityError, match="calibrator.json has sha256"):
        fetch_artifact(s3, url, tmp_path / "b")


def _described(status: str, config: str, reason: str = "") -> dict:
    answer = {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": "2026-01-01T12:00:00Z",
        "LastModifiedTime": "2026-01-01T12:00:00Z",
    }
    return answer | ({"FailureReason": reason} if reason else {})


@pytest.mark.parametrize(
    ("answers", "outcome", "said"),
    [
        ([("Updating", "old"), ("InService", "new")], "promoted", "serves new"),
        ([("Updating", "old"), ("InService", "old", "Alarm propensity-x-5xx-rate fired")], "rolled_back", "5xx-rate"),
        ([("Failed", "new", "CannotStartContainerError")], "failed", "CannotStartContainerError"),
        ([("Updating", "old")], "in_progress", "still Updating"),
    ],
)
def test_the_update_is_followed_to_its_end(answers, outcome, said):
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        for answer in answers:
            stubber.add_response("describe_endpoint", _described(*answer), {"EndpointName": ENDPOINT})
        got, why = follow_update(client, ENDPOINT, "new", timeout_s=0 if outcome == "in_progress" else 60, poll_s=0)
        stubber.assert_no_pending_responses()
    assert got == outcome and said in why


def test_the_canary_command_approves_and_releases_the_newest_package(registry, monkeypatch, capsys):
    from propensity import settings as settings_module
    from propensity.settings import Settings
    from serving.control.release import main

    configured = Settings.from_env(
        {
            "PROPENSITY_DEPLOYER": "sagemaker",
            "SAGEMAKER_REGION": REGION,
            "SAGEMAKER_BUCKET": BUCKET,
            "SAGEMAKER_IMAGE_URI": IMAGE,
            "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE,
            "SAGEMAKER_INSTANCE_TYPE": MOTO_INSTANCE,
            "SAGEMAKER_WAIT_TIMEOUT_S": "5",
        }
    )
    monkeypatch.setattr(settings_module, "settings", lambda: configured)
    assert main(["canary", "--endpoint", ENDPOINT, "--package-group", GROUP, "--approve", "--poll-s", "0"]) == 0
    said = capsys.readouterr().out
    assert "canary v0002-" in said and ": deployed:" in said
    sagemaker, _ = registry
    assert packages(sagemaker, GROUP, "PendingManualApproval") == []  # approved by the command


def test_a_rollback_rejects_the_newest_approved_package_and_goes_back_to_the_one_before(registry):
    sagemaker, _ = registry
    with pytest.raises(ReleaseError, match="no approved package before the newest"):
        rollback_target(sagemaker, GROUP)  # one approved package: nowhere to go back to
    [pending] = packages(sagemaker, GROUP, "PendingManualApproval", limit=1)
    sagemaker.update_model_package(ModelPackageArn=pending["ModelPackageArn"], ModelApprovalStatus="Approved")
    target = rollback_target(sagemaker, GROUP)
    assert target["ModelPackageVersion"] == 1
    [rejected] = packages(sagemaker, GROUP, "Rejected")
    assert rejected["ModelPackageVersion"] == 2

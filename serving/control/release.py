"""A release after the training pipeline, as the deploy workflow runs it: the newest model package of the
environment's group onto the endpoint as a canary, followed to its end; and the way back.

- `canary`: the newest package (`--approve` approves a pending one first: the deploy workflow passes it once the
  environment's required reviewers, if any, approved the job; without it a person approves in the Model Registry)
  is fetched from S3, its manifest verified, and deployed by the SageMaker deployer with a blue/green canary.
  SageMaker bakes it and rolls it back by itself when the variant's alarms fire; this follows `describe_endpoint`
  until the update ends and exits 0 only when the new config serves.
- `rollback`: the approved package before the newest is deployed again (the newest is marked Rejected).

`python -m serving.control.release canary|rollback --endpoint propensity --package-group <group>`; the deployer's
settings come from SAGEMAKER_* (docs/ARCHITECTURE.md). Every call has a timeout; the wait is bounded.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

from propensity.models.artifact import verify_manifest
from serving.control.deployment import CanaryPolicy


class ReleaseError(RuntimeError):
    """A release step that cannot go on; the message says why and what to do."""


def packages(sagemaker, group: str, status: str, limit: int = 2) -> list[dict]:
    """The group's newest packages with an approval status, newest first, described (ModelDataUrl and all)."""
    listed = sagemaker.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=limit,
    )["ModelPackageSummaryList"]
    return [sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in listed]


def model_version(package: dict) -> str:
    """The version name the deployer and the endpoint's variants carry, shaped like the local registry's
    (`v0003-1f26ef2f0b`): the package's number in its group and a digest of its ARN."""
    digest = hashlib.sha256(package["ModelPackageArn"].encode()).hexdigest()[:10]
    return f"v{int(package['ModelPackageVersion']):04d}-{digest}"


def fetch_artifact(s3, model_data_url: str, directory: Path) -> Path:
    """model.tar.gz from S3, unpacked, its manifest verified (a tampered package is refused here)."""
    location = urlparse(model_data_url)
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / "model.tar.gz"
    s3.download_file(location.netloc, location.path.lstrip("/"), str(tarball))
    artifact = directory / "artifact"
    with tarfile.open(tarball) as archive:
        archive.extractall(artifact, filter="data")
    verify_manifest(artifact)
    return artifact


def follow_update(sagemaker, endpoint: str, config_name: str, timeout_s: float, poll_s: float) -> tuple[str, str]:
    """How a blue/green update ends: ("promoted" | "rolled_back" | "failed" | "in_progress", why)."""
    deadline = time.monotonic() + timeout_s
    while True:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        status = described["EndpointStatus"]
        if status == "InService":
            if described["EndpointConfigName"] == config_name:
                return "promoted", f"{endpoint} serves {config_name}: the canary baked without an alarm"
            return "rolled_back", (
                f"{endpoint} went back to {described['EndpointConfigName']}: SageMaker rolled {config_name} back "
                f"({described.get('FailureReason') or 'an alarm fired'}); see the variant's CloudWatch alarms"
            )
        if status == "Failed":
            return "failed", f"{endpoint} failed: {described.get('FailureReason', 'no reason given')}"
        if time.monotonic() > deadline:
            return "in_progress", f"{endpoint} still {status} after {timeout_s:.0f} s: SageMaker goes on; check later"
        time.sleep(poll_s)


def rollback_target(sagemaker, group: str) -> dict:
    """The approved package before the newest; the newest is marked Rejected, so no release picks it again."""
    approved = packages(sagemaker, group, "Approved", limit=2)
    if len(approved) < 2:
        raise ReleaseError(f"{group} has no approved package before the newest to go back to")
    sagemaker.update_model_package(ModelPackageArn=approved[0]["ModelPackageArn"], ModelApprovalStatus="Rejected")
    return approved[1]


def release(deployer, sagemaker, s3, endpoint: str, package: dict, policy: CanaryPolicy, wait_s: float, poll_s: float):
    with tempfile.TemporaryDirectory(prefix="propensity-release-") as scratch:
        artifact = fetch_artifact(s3, package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"], Path(scratch))
        record = deployer.deploy(endpoint, artifact, model_version(package), policy)
    if record.outcome != "in_progress":  # a first deployment, or the version already serves
        return record.outcome, record.reason
    return follow_update(sagemaker, endpoint, record.observations["endpoint_config"], wait_s, poll_s)


def main(argv: list[str] | None = None) -> int:
    from propensity.settings import settings
    from serving.control.sagemaker import SageMakerDeployer

    parser = argparse.ArgumentParser(prog="python -m serving.control.release", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["canary", "rollback"])
    parser.add_argument("--endpoint", default="propensity")
    parser.add_argument("--package-group", required=True)
    parser.add_argument("--approve", action="store_true", help="approve the newest pending package first (staging)")
    parser.add_argument("--wait-s", type=float, default=3600.0)
    parser.add_argument("--poll-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    deployer = SageMakerDeployer.from_values(settings().sagemaker.values)
    sagemaker, s3 = deployer.client("sagemaker"), deployer.client("s3")
    try:
        if args.step == "canary":
            if args.approve:
                for pending in packages(sagemaker, args.package_group, "PendingManualApproval", limit=1):
                    sagemaker.update_model_package(
                        ModelPackageArn=pending["ModelPackageArn"], ModelApprovalStatus="Approved"
                    )
            approved = packages(sagemaker, args.package_group, "Approved", limit=1)
            if not approved:
                raise ReleaseError(f"no approved package in {args.package_group}: approve one in the Model Registry")
            target = approved[0]
        else:
            target = rollback_target(sagemaker, args.package_group)
        outcome, why = release(deployer, sagemaker, s3, args.endpoint, target, CanaryPolicy(), args.wait_s, args.poll_s)
    except ReleaseError as error:
        print(f"[release] {error}", file=sys.stderr)
        return 1
    print(f"[release] {args.step} {model_version(target)}: {outcome}: {why}")
    return 0 if outcome in ("promoted", "deployed") else 1


if __name__ == "__main__":
    sys.exit(main())

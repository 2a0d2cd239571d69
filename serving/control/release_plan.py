"""A release rendered locally, nothing sent (`make release-dry-run`): for each environment, what the deploy workflow
would push, register and apply.

Per environment under `var/release/<env>/`:
- `images.json`: the serving and training image URIs of this commit (the ECR repositories Terraform creates);
- `model_package.json` and `model.tar.gz`: the Model Registry request for the current champion and its archive,
  packed as the deployer and the pipeline's evaluation pack it (the request is checked against SageMaker's own
  service model, as boto3 would check it before sending);
- `terraform.json`: the Terraform variables, from `infra/environments/<env>.tfvars` and those the workflow takes
  from the GitHub environment;
- `pipeline.json`: the training pipeline's definition (rendered by the SDK in its own environment,
  `make pipeline-definition`, which the dry run runs first);
and `var/release/manifest.json`: every file with its sha256.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from propensity.models.artifact import MANIFEST, ModelRegistry, package_artifact, sha256_file
from propensity.models.contract import PACKAGE_FILE
from propensity.paths import PROJECT_ROOT, home
from serving.control.training_pipeline import ENVIRONMENTS, SERVING_INSTANCE, PipelineConfig

FROM_THE_WORKFLOW = ("github_repository", "vpc_id", "private_subnet_ids", "client_cidr_blocks")  # terraform.yml
_ASSIGNMENT = re.compile(r'^\s*([a-z_]+)\s*=\s*("?)([^"#]*)\2\s*(#.*)?$')


def tfvars(path: Path) -> dict[str, object]:
    """The simple `name = value` lines of a tfvars file (strings, numbers, booleans)."""
    values: dict[str, object] = {}
    for line in path.read_text().splitlines():
        match = _ASSIGNMENT.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        name, quoted, raw = match.group(1), match.group(2), match.group(3).strip()
        if quoted:
            values[name] = raw
        elif raw in ("true", "false"):
            values[name] = raw == "true"
        else:
            values[name] = float(raw) if "." in raw else int(raw)
    return values


def render(out: Path, account: str, region: str, tag: str) -> dict[str, str]:
    """Write every environment's files; returns {relative path: sha256}."""
    champion = ModelRegistry().champion()
    if champion is None:
        raise SystemExit("[release] no champion in the model registry: run `make demo` (or a retrain) first")
    written: dict[str, str] = {}
    for environment in ENVIRONMENTS:
        directory = out / environment
        directory.mkdir(parents=True, exist_ok=True)
        names = PipelineConfig(environment, account, region, tag)  # the pipeline's and Terraform's names
        images = {"serving": names.image("serving"), "training": names.image("training")}
        manifest = package_artifact(champion.directory, directory / PACKAGE_FILE)
        request = {
            "ModelPackageGroupName": names.model_package_group,
            "ModelPackageDescription": f"{champion.version} (commit {tag})",
            "ModelApprovalStatus": "PendingManualApproval",
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": images["serving"],
                        "ModelDataUrl": f"s3://{names.bucket}/propensity/models/{champion.version}/{PACKAGE_FILE}",
                    }
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
                "SupportedRealtimeInferenceInstanceTypes": [SERVING_INSTANCE],
            },
            "CustomerMetadataProperties": {
                "model_version": champion.version,
                "manifest_sha256": sha256_file(champion.directory / MANIFEST),
                "files": str(len(manifest)),
            },
        }
        _check_request("CreateModelPackage", request)
        variables = tfvars(PROJECT_ROOT / "infra" / "environments" / f"{environment}.tfvars")
        terraform = {"from_tfvars": variables, "from_the_github_environment": list(FROM_THE_WORKFLOW)}
        for name, payload in (("images.json", images), ("model_package.json", request), ("terraform.json", terraform)):
            (directory / name).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        for path in sorted(directory.iterdir()):
            written[str(path.relative_to(out))] = sha256_file(path)
    (out / "manifest.json").write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
    return written


def _check_request(operation: str, request: dict) -> None:
    """Refuse what SageMaker would refuse: the request against the service model botocore ships."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("sagemaker")
    validate_parameters(request, model.operation_model(operation).input_shape)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.control.release_plan", description=__doc__.split("\n")[0])
    parser.add_argument("--account", default="123456789012")
    parser.add_argument("--region", default="eu-west-1")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or home() / "release"
    written = render(out, args.account, args.region, args.tag)
    missing = [env for env in ENVIRONMENTS if not (out / env / "pipeline.json").exists()]
    for name, digest in written.items():
        print(f"[release] {out / name}  sha256 {digest[:12]}")
    if missing:
        print(f"[release] no pipeline.json for {missing}: make pipeline-definition ENVIRONMENT=<env> renders it")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The release dry run renders, for each environment, what the deploy workflow would push, register and apply, with
the Model Registry request checked against SageMaker's service model and the archive the deployer would upload."""

import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ParamValidationError
from scipy.special import expit

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.models.artifact import ModelRegistry, verify_manifest
from serving.control import release_plan
from serving.control.release_plan import render, tfvars
from tests.unit.test_model_pieces import _artifact


@pytest.fixture
def champion(propensity_home, tmp_path):
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.gamma(2.0, 2.0, size=(4000, len(MODEL_FEATURE_NAMES))), columns=list(MODEL_FEATURE_NAMES))
    y = (rng.random(4000) < expit(-2 + 0.3 * X["session_cart_adds"])).astype(int).to_numpy()
    return ModelRegistry().register(_artifact(tmp_path, X, y), promote=True, reason="test")


def test_every_environment_gets_its_images_package_and_variables(champion, tmp_path):
    written = render(tmp_path / "release", account="123456789012", region="eu-west-1", tag="3f2a9c1b7d0e")
    assert {name.split("/")[0] for name in written} == {"staging", "production"}
    production = tmp_path / "release" / "production"
    images = json.loads((production / "images.json").read_text())
    assert (
        images["serving"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/propensity-production-serving:3f2a9c1b7d0e"
    )
    package = json.loads((production / "model_package.json").read_text())
    assert package["ModelPackageGroupName"] == "propensity-production-propensity"  # infra/sagemaker.tf
    assert package["CustomerMetadataProperties"]["model_version"] == champion
    with tarfile.open(production / "model.tar.gz") as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    verify_manifest(tmp_path / "unpacked")  # what the serving container would load
    terraform = json.loads((production / "terraform.json").read_text())
    assert terraform["from_tfvars"]["environment"] == "production"
    assert terraform["from_tfvars"]["create_github_oidc_provider"] is False
    assert "vpc_id" in terraform["from_the_github_environment"]
    manifest = json.loads((tmp_path / "release" / "manifest.json").read_text())
    assert manifest == written and "staging/model.tar.gz" in manifest


def test_a_request_sagemaker_would_refuse_is_refused():
    request = {"ModelPackageGroupName": "g", "CustomerMetadataProperties": {"files": 9}, "Unknown": 1}
    with pytest.raises(ParamValidationError) as refused:
        release_plan._check_request("CreateModelPackage", request)
    assert "CustomerMetadataProperties.files" in str(refused.value) and "Unknown" in str(refused.value)


def test_tfvars_reads_the_environments_files(tmp_path):
    path = tmp_path / "x.tfvars"
    path.write_text('# comment\nenvironment = "staging"\nredis_replicas = 0 # none\nflag = true\n')
    assert tfvars(path) == {"environment": "staging", "redis_replicas": 0, "flag": True}

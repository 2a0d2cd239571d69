"""The staged SageMaker pipeline's definition: its golden JSON, its structure, every reference it makes, built without
any AWS call; then upserted and started against moto, and its failure paths against botocore's Stubber."""

import json
from pathlib import Path

import boto3
import botocore.client
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from serving.control.training_pipeline import EVALUATION_FILE, PACKAGE_FILE, PipelineConfig, build_pipeline, definition

CONFIG = PipelineConfig(environment="staging", account="123456789012", region="eu-west-1", image_tag="3f2a9c1")
GOLDEN = Path(__file__).with_name("golden") / "staging-definition.json"
STEPS = {
    "PrepareTrainingSet": "Processing",
    "TrainModel": "Training",
    "EvaluateModel": "Processing",
    "QualityGate": "Condition",
    "RegisterModel": "RegisterModel",
}


def _steps(definition: dict) -> dict[str, dict]:
    """Every step by name, the condition's branches included."""
    found = {}
    for step in definition["Steps"]:
        found[step["Name"]] = step
        if step["Type"] == "Condition":
            for branch in ("IfSteps", "ElseSteps"):
                found.update(_steps({"Steps": step["Arguments"].get(branch, [])}))
    return found


def _references(node) -> list[str]:
    """Every {"Get": ...} in the definition (the JsonGet property files' included)."""
    if isinstance(node, dict):
        here = [node["Get"]] if isinstance(node.get("Get"), str) else []
        return here + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


@pytest.fixture(scope="module")
def built() -> dict:
    calls = []
    original = botocore.client.BaseClient._make_api_call

    def recording(client, operation, params):
        calls.append(f"{client.meta.service_model.service_name}.{operation}")
        raise AssertionError(f"building the definition called AWS: {operation}")

    botocore.client.BaseClient._make_api_call = recording
    try:
        built = definition(CONFIG)
    finally:
        botocore.client.BaseClient._make_api_call = original
    assert calls == []
    return built


def test_the_definition_is_the_golden_one(built):
    # After a deliberate change: python -m serving.control.training_pipeline --environment staging
    #   --account 123456789012 --image-tag 3f2a9c1 --out tests/aws/golden/staging-definition.json (in .venv-aws)
    assert built == json.loads(GOLDEN.read_text())


def test_five_stages_in_order_each_running_our_jobs_in_the_training_image(built):
    steps = _steps(built)
    assert {name: step["Type"] for name, step in steps.items()} == STEPS
    image = {"Get": "Parameters.TrainingImageUri"}
    for name, job in (("PrepareTrainingSet", "prepare"), ("EvaluateModel", "evaluate")):
        app = steps[name]["Arguments"]["AppSpecification"]
        assert app["ImageUri"] == image
        assert app["ContainerEntrypoint"] == ["python", "-m", "propensity.models.pipeline_jobs", job]
    training = steps["TrainModel"]["Arguments"]
    assert training["AlgorithmSpecification"]["TrainingImage"] == image  # started with `train`
    assert [c["ChannelName"] for c in training["InputDataConfig"]] == ["train", "valid"]
    assert steps["EvaluateModel"]["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": EVALUATION_FILE}
    ]
    condition = steps["QualityGate"]["Arguments"]["Conditions"]
    assert condition == [
        {
            "Type": "Equals",
            "LeftValue": {
                "Std:JsonGet": {
                    "PropertyFile": {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"},
                    "Path": "gates.passed",
                }
            },
            "RightValue": 1,
        }
    ]
    assert steps["QualityGate"]["Arguments"]["ElseSteps"] == []
    register = steps["RegisterModel"]["Arguments"]
    assert register["ModelPackageGroupName"] == "propensity-staging-propensity"  # infra/sagemaker.tf
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    container = register["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == {"Get": "Parameters.ServingImageUri"}
    assert PACKAGE_FILE in json.dumps(container["ModelDataUrl"])  # the artifact the evaluation packed and judged
    parameters = {p["Name"]: p.get("DefaultValue") for p in built["Parameters"]}
    assert parameters["TrainingImageUri"].endswith("/propensity-staging-training:3f2a9c1")
    assert parameters["ModelApprovalStatus"] == "PendingManualApproval"
    assert parameters["MaxEce"] == 0.02 and parameters["MinPositiveSessions"] == 15


def test_every_reference_names_a_step_or_parameter_that_exists(built):
    steps, parameters = set(_steps(built)), {p["Name"] for p in built["Parameters"]}
    references = _references(built)
    assert len(references) > 15
    for reference in references:
        kind, name = reference.split(".")[:2]
        if kind == "Steps":
            assert name in steps, f"{reference} names no step"
        elif kind == "Parameters":
            assert name in parameters, f"{reference} names no parameter"
        else:
            assert kind == "Execution", reference
    used = {r.split(".")[1] for r in references if r.startswith("Parameters.")}
    assert used == parameters  # and every parameter is used


def test_the_sdk_does_not_check_references():
    """Why the test above exists: a reference to a step that is not in the pipeline builds without complaint."""
    from sagemaker.core.workflow.functions import JsonGet
    from sagemaker.core.workflow.properties import PropertyFile

    dangling = JsonGet(step_name="NoSuchStep", property_file=PropertyFile("R", "o", "r.json"), json_path="x").expr
    assert dangling["Std:JsonGet"]["PropertyFile"] == {"Get": "Steps.NoSuchStep.PropertyFiles.R"}


@mock_aws
def test_upsert_then_start_against_moto(built):
    boto3.client("s3", region_name=CONFIG.region).create_bucket(
        Bucket=CONFIG.bucket, CreateBucketConfiguration={"LocationConstraint": CONFIG.region}
    )
    pipeline = build_pipeline(CONFIG)
    created = pipeline.upsert(role_arn=CONFIG.role_arn, description="first")
    assert created["PipelineArn"].endswith(f":pipeline/{CONFIG.pipeline_name}")
    pipeline.upsert(role_arn=CONFIG.role_arn, description="second")  # exists: updated, not duplicated
    sagemaker = boto3.client("sagemaker", region_name=CONFIG.region)
    described = sagemaker.describe_pipeline(PipelineName=CONFIG.pipeline_name)
    assert json.loads(described["PipelineDefinition"]) == built
    assert described["PipelineDescription"] == "second" and described["RoleArn"] == CONFIG.role_arn
    assert len(sagemaker.list_pipelines()["PipelineSummaries"]) == 1

    execution = pipeline.start(parameters={"TrainingImageUri": CONFIG.image("training"), "MaxEce": 0.03})
    run = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution.arn)
    assert run["PipelineArn"] == created["PipelineArn"]
    given = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=execution.arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in given}["MaxEce"] == "0.03"


def test_upsert_refused_by_iam_says_so():
    client = boto3.client("sagemaker", region_name=CONFIG.region)
    pipeline = build_pipeline(CONFIG)
    pipeline.sagemaker_session.sagemaker_client = client
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "create_pipeline",
            service_error_code="AccessDeniedException",
            service_message="not authorized to perform: sagemaker:CreatePipeline",
            http_status_code=400,
        )
        with pytest.raises(botocore.exceptions.ClientError, match="sagemaker:CreatePipeline"):
            pipeline.upsert(role_arn=CONFIG.role_arn)
        stubber.assert_no_pending_responses()


def test_start_of_a_pipeline_that_does_not_exist_is_an_error():
    client = boto3.client("sagemaker", region_name=CONFIG.region)
    pipeline = build_pipeline(CONFIG)
    pipeline.sagemaker_session.sagemaker_client = client
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "start_pipeline_execution",
            service_error_code="ResourceNotFound",
            service_message=f"Pipeline '{CONFIG.pipeline_name}' does not exist.",
            http_status_code=400,
        )
        with pytest.raises(botocore.exceptions.ClientError, match="does not exist"):
            pipeline.start()
        stubber.assert_no_pending_responses()

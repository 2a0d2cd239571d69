"""Running the training pipeline with boto3, against botocore's Stubber and SageMaker's real service model (moto has
no list_pipeline_execution_steps): upsert, start, poll to the end, and every failure said plainly."""

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from serving.control.pipeline_runs import PipelineRunError, PipelineRunner, train_on_sagemaker

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/propensity-staging-sagemaker-execution"
NAME = "propensity-staging-training"
PIPELINE_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/{NAME}"
EXECUTION = f"{PIPELINE_ARN}/execution/abc123"
DEFINITION = {"Version": "2020-12-01", "Parameters": [], "Steps": []}


@pytest.fixture
def stubbed():
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield PipelineRunner(REGION, ROLE, poll_s=0).with_client(client), stubber
        stubber.assert_no_pending_responses()


def _steps(*statuses: tuple[str, str, str]) -> dict:
    return {
        "PipelineExecutionSteps": [
            {
                "StepName": name,
                "StepStatus": status,
                "FailureReason": reason,
                "StartTime": datetime(2026, 12, 4, 10, i, tzinfo=timezone.utc),
            }
            for i, (name, status, reason) in enumerate(statuses)
        ]
    }


def _describe(stubber, status: str, reason: str = "") -> None:
    response = {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": status}
    if reason:
        response["FailureReason"] = reason
    stubber.add_response("describe_pipeline_execution", response, {"PipelineExecutionArn": EXECUTION})


def test_upsert_creates_a_new_pipeline_and_updates_an_existing_one(stubbed):
    runner, stubber = stubbed
    stubber.add_client_error("describe_pipeline", "ResourceNotFound", "Pipeline does not exist", 400)
    stubber.add_response(
        "create_pipeline",
        {"PipelineArn": PIPELINE_ARN},
        {"PipelineName": NAME, "PipelineDefinition": ANY, "RoleArn": ROLE, "PipelineDescription": "release 3f2a9c1"},
    )
    assert runner.upsert(NAME, DEFINITION, "release 3f2a9c1") == PIPELINE_ARN
    stubber.add_response("describe_pipeline", {"PipelineArn": PIPELINE_ARN}, {"PipelineName": NAME})
    stubber.add_response(
        "update_pipeline",
        {"PipelineArn": PIPELINE_ARN},
        {"PipelineName": NAME, "PipelineDefinition": ANY, "RoleArn": ROLE},
    )
    assert runner.upsert(NAME, DEFINITION) == PIPELINE_ARN


def test_start_then_wait_through_to_success_with_every_step(stubbed):
    runner, stubber = stubbed
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {
            "PipelineName": NAME,
            "PipelineParameters": [{"Name": "MaxEce", "Value": "0.03"}, {"Name": "TrainingImageUri", "Value": "img:1"}],
        },
    )
    assert runner.start(NAME, {"TrainingImageUri": "img:1", "MaxEce": 0.03}) == EXECUTION
    _describe(stubber, "Executing")
    stubber.add_response("list_pipeline_execution_steps", _steps(("PrepareTrainingSet", "Executing", "")))
    _describe(stubber, "Succeeded")
    stubber.add_response(
        "list_pipeline_execution_steps",
        _steps(
            ("PrepareTrainingSet", "Succeeded", ""), ("TrainModel", "Succeeded", ""), ("RegisterModel", "Succeeded", "")
        ),
    )
    polls = []
    run = runner.wait(EXECUTION, on_poll=lambda status, steps: polls.append((status, [s.name for s in steps])))
    assert run.succeeded and [s.name for s in run.steps] == ["PrepareTrainingSet", "TrainModel", "RegisterModel"]
    assert polls == [
        ("Executing", ["PrepareTrainingSet"]),
        ("Succeeded", ["PrepareTrainingSet", "TrainModel", "RegisterModel"]),
    ]


def test_a_failed_execution_raises_with_the_reason_and_the_failed_step(stubbed):
    runner, stubber = stubbed
    _describe(stubber, "Failed", "Step failure: One or multiple steps failed.")
    stubber.add_response(
        "list_pipeline_execution_steps",
        _steps(
            ("PrepareTrainingSet", "Failed", "AlgorithmError: prepare: too few purchasing sessions to calibrate"),
            ("TrainModel", "NotStarted", ""),
        ),
    )
    with pytest.raises(PipelineRunError) as raised:
        runner.wait(EXECUTION)
    assert "failed: Step failure" in str(raised.value)
    assert "PrepareTrainingSet: AlgorithmError: prepare: too few purchasing sessions" in str(raised.value)


def test_the_wait_is_bounded(stubbed):
    runner, stubber = stubbed
    runner.timeout_s = 0
    _describe(stubber, "Executing")
    stubber.add_response("list_pipeline_execution_steps", _steps(("TrainModel", "Executing", "")))
    with pytest.raises(PipelineRunError, match="still Executing after 0 s: it goes on in SageMaker"):
        runner.wait(EXECUTION)


def test_a_refused_call_names_the_permission_to_check(stubbed):
    runner, stubber = stubbed
    stubber.add_client_error("describe_pipeline", "ResourceNotFound", "Pipeline does not exist", 400)
    stubber.add_client_error("create_pipeline", "AccessDeniedException", "not authorized", 400)
    with pytest.raises(
        PipelineRunError, match="create_pipeline failed \\(AccessDeniedException.*sagemaker:CreatePipeline"
    ):
        runner.upsert(NAME, DEFINITION)


@mock_aws
def test_a_retrain_on_sagemaker_hands_over_the_training_set_and_follows_the_execution(stubbed, tmp_path):
    runner, stubber = stubbed
    bucket = "propensity-staging-lake-123456789012"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    dataset = tmp_path / "data.parquet"
    dataset.write_bytes(b"PAR1 training set")
    stubber.add_response("describe_pipeline", {"PipelineArn": PIPELINE_ARN}, {"PipelineName": NAME})
    stubber.add_response("update_pipeline", {"PipelineArn": PIPELINE_ARN})
    uri = f"s3://{bucket}/propensity/training-runs/run-1234abcd/"
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {
            "PipelineName": NAME,
            "PipelineParameters": [{"Name": "MaxEce", "Value": "0.02"}, {"Name": "TrainingDatasetUri", "Value": uri}],
            "PipelineExecutionDisplayName": "dagster-run-1234",
        },
    )
    _describe(stubber, "Succeeded")
    stubber.add_response("list_pipeline_execution_steps", _steps(("QualityGate", "Succeeded", "")))
    shown = train_on_sagemaker(
        dataset,
        runner,
        s3,
        bucket=bucket,
        pipeline_name=NAME,
        definition=DEFINITION,
        run_id="run-1234abcd",
        parameters={"MaxEce": "0.02"},
    )
    assert shown["execution_arn"] == EXECUTION and shown["status"] == "Succeeded"
    assert shown["steps"] == {"QualityGate": "Succeeded"} and shown["training_dataset_uri"] == uri
    stored = s3.get_object(Bucket=bucket, Key="propensity/training-runs/run-1234abcd/data.parquet")
    assert stored["Body"].read() == b"PAR1 training set"


@mock_aws
def test_no_bucket_no_pipeline_call(stubbed, tmp_path):
    runner, _ = stubbed
    (tmp_path / "data.parquet").write_bytes(b"x")
    with pytest.raises(PipelineRunError, match="uploading the training set to s3://missing/.*check the bucket"):
        train_on_sagemaker(
            tmp_path / "data.parquet",
            runner,
            boto3.client("s3", region_name=REGION),
            bucket="missing",
            pipeline_name=NAME,
            definition=DEFINITION,
            run_id="r",
        )


def test_the_command_upserts_starts_and_waits(stubbed, tmp_path, monkeypatch, capsys):
    """What the deploy workflow runs: `python -m serving.control.pipeline_runs --name ... --definition ...`."""
    from serving.control import pipeline_runs

    runner, stubber = stubbed
    stubbed_client = runner.client  # the command builds its own runner: hand it the stubbed client
    monkeypatch.setattr(pipeline_runs.PipelineRunner, "client", property(lambda self: stubbed_client))
    monkeypatch.setattr(pipeline_runs.time, "sleep", lambda s: None)
    definition = tmp_path / "pipeline.json"
    definition.write_text('{"Version": "2020-12-01", "Parameters": [], "Steps": []}')
    stubber.add_response("describe_pipeline", {"PipelineArn": PIPELINE_ARN}, {"PipelineName": NAME})
    stubber.add_response("update_pipeline", {"PipelineArn": PIPELINE_ARN})
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {"PipelineName": NAME, "PipelineParameters": [{"Name": "MaxEce", "Value": "0.03"}]},
    )
    _describe(stubber, "Succeeded")
    stubber.add_response("list_pipeline_execution_steps", _steps(("RegisterModel", "Succeeded", "")))
    arguments = ["--name", NAME, "--definition", str(definition), "--region", REGION, "--role-arn", ROLE]
    assert pipeline_runs.main([*arguments, "--parameter", "MaxEce=0.03"]) == 0
    said = capsys.readouterr().out
    assert f"started {EXECUTION}" in said and "Succeeded in" in said and "RegisterModel Succeeded" in said
    with pytest.raises(SystemExit):
        pipeline_runs.main([*arguments, "--parameter", "MaxEce"])  # not K=V
    assert "--parameter takes K=V" in capsys.readouterr().err

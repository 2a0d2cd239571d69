"""The staged SageMaker pipeline, built with the sagemaker SDK v3 (`sagemaker.mlops.workflow.Pipeline`).

Processing (the training set) -> Training (our LightGBM training in the training container) -> Evaluation (our
gates, written to evaluation.json, a property file) -> Condition (every gate passed) -> Register in the Model
Registry (the candidate artifact, packed by the evaluation job, in the environment's model package group, pending
approval). Deploying an approved package as a canary is the existing SageMaker deployer's job.

Every step runs `python -m propensity.models.pipeline_jobs <job>` in the training image: the same code as the
Dagster model assets. The image, the data and every threshold are pipeline parameters, so one definition serves
staging and production and a release only changes the values it starts the pipeline with.

Only the pipeline builder's environment has the SDK (requirements-aws.lock, `make aws-env`). Building needs no AWS
call and no credentials when run as `offline_environment()` says: role validation off
(SAGEMAKER_VALIDATE_ROLE=false), telemetry opted out in the SDK's config file (it has no variable for it), a region,
full role ARNs, explicit S3 URIs and code baked into the image (nothing is uploaded).

`python -m serving.control.training_pipeline --environment staging --account 123456789012 --out pipeline.json`
writes the definition (run it as `make pipeline-definition` does).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from propensity.models.contract import (
    CHAMPION_TOLERANCE,
    EVALUATION_FILE,
    MAX_ECE,
    MIN_POSITIVE_SESSIONS,
    PACKAGE_FILE,
    PROCESSING_DIR,
    SPLITS,
    TRAINING_RUNS_PREFIX,
)

SDK_CONFIG = Path(__file__).with_name("sagemaker_sdk_config.yaml")  # TelemetryOptOut: true
JOBS = ["python", "-m", "propensity.models.pipeline_jobs"]
SERVING_INSTANCE = "ml.c6i.large"  # SageMakerDeployer.instance_type
ENVIRONMENTS = ("staging", "production")  # infra/environments/


def offline_environment(region: str) -> dict[str, str]:
    """The variables under which the SDK builds a definition without calling AWS (for the process that builds)."""
    return {
        "AWS_DEFAULT_REGION": region,
        "SAGEMAKER_VALIDATE_ROLE": "false",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(SDK_CONFIG),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(SDK_CONFIG),
    }


@dataclass(frozen=True)
class PipelineConfig:
    """One environment's names (infra/: Terraform's outputs); everything else is a pipeline parameter."""

    environment: str
    account: str
    region: str = "eu-west-1"
    image_tag: str = "latest"

    @property
    def name(self) -> str:
        return f"propensity-{self.environment}"

    @property
    def pipeline_name(self) -> str:
        return f"{self.name}-training"

    @property
    def bucket(self) -> str:
        return f"{self.name}-lake-{self.account}"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{self.name}-sagemaker-execution"

    @property
    def model_package_group(self) -> str:
        return f"{self.name}-propensity"

    def image(self, repository: str) -> str:
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{self.name}-{repository}:{self.image_tag}"


def build_pipeline(config: PipelineConfig):
    import boto3
    from sagemaker.core.common_utils import ModelApprovalStatusEnum
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
    from sagemaker.core.training.configs import Compute, InputData, OutputDataConfig
    from sagemaker.core.workflow.conditions import ConditionEquals
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow.condition_step import ConditionStep
    from sagemaker.mlops.workflow.model_step import ModelStep
    from sagemaker.mlops.workflow.pipeline import Pipeline
    from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.model_trainer import ModelTrainer

    session = PipelineSession(boto_session=boto3.Session(region_name=config.region), default_bucket=config.bucket)
    training_image = ParameterString("TrainingImageUri", config.image("training"))
    serving_image = ParameterString("ServingImageUri", config.image("serving"))
    dataset_uri = ParameterString("TrainingDatasetUri", f"s3://{config.bucket}/{TRAINING_RUNS_PREFIX}/")
    processing_instance = ParameterString("ProcessingInstanceType", "ml.m5.large")
    training_instance = ParameterString("TrainingInstanceType", "ml.m5.large")
    min_positive_sessions = ParameterInteger("MinPositiveSessions", MIN_POSITIVE_SESSIONS)
    max_ece = ParameterFloat("MaxEce", MAX_ECE)
    champion_tolerance = ParameterFloat("ChampionTolerance", CHAMPION_TOLERANCE)
    approval = ParameterString("ModelApprovalStatus", ModelApprovalStatusEnum.PENDING_MANUAL_APPROVAL.value)
    run_prefix = Join(
        on="/", values=[f"s3://{config.bucket}", "propensity", "pipeline", ExecutionVariables.PIPELINE_EXECUTION_ID]
    )

    def s3_input(name: str, uri, local: str) -> ProcessingInput:
        return ProcessingInput(
            input_name=name,
            s3_input=ProcessingS3Input(s3_uri=uri, local_path=local, s3_data_type="S3Prefix", s3_input_mode="File"),
        )

    def s3_output(name: str, local: str) -> ProcessingOutput:
        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(
                s3_uri=Join(on="/", values=[run_prefix, name]), local_path=local, s3_upload_mode="EndOfJob"
            ),
        )

    def processor(job: str) -> Processor:
        return Processor(
            role=config.role_arn,
            image_uri=training_image,
            entrypoint=[*JOBS, job],
            instance_count=1,
            instance_type=processing_instance,
            base_job_name=f"{config.name}-{job}",
            max_runtime_in_seconds=3600,
            sagemaker_session=session,
        )

    prepare = ProcessingStep(
        name="PrepareTrainingSet",
        step_args=processor("prepare").run(
            inputs=[s3_input("dataset", dataset_uri, f"{PROCESSING_DIR}/input/dataset")],
            outputs=[s3_output(split, f"{PROCESSING_DIR}/output/{split}") for split in SPLITS],
            arguments=["--min-positive-sessions", min_positive_sessions.to_string()],
        ),
    )

    def split_uri(split: str):
        return prepare.properties.ProcessingOutputConfig.Outputs[split].S3Output.S3Uri

    trainer = ModelTrainer(
        training_image=training_image,  # SageMaker starts it with the argument `train`
        role=config.role_arn,
        sagemaker_session=session,
        base_job_name=f"{config.name}-train",
        compute=Compute(instance_type=training_instance, instance_count=1, volume_size_in_gb=30),
        output_data_config=OutputDataConfig(s3_output_path=Join(on="/", values=[run_prefix, "model"])),
        hyperparameters={"learning_rate": "0.05", "num_leaves": "31", "min_data_in_leaf": "100"},
    )
    train = TrainingStep(
        name="TrainModel",
        step_args=trainer.train(
            input_data_config=[InputData(channel_name=s, data_source=split_uri(s)) for s in ("train", "valid")]
        ),
    )
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts

    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path=EVALUATION_FILE)
    evaluate = ProcessingStep(
        name="EvaluateModel",
        step_args=processor("evaluate").run(
            inputs=[
                s3_input("model", model_data, f"{PROCESSING_DIR}/model"),
                *(s3_input(s, split_uri(s), f"{PROCESSING_DIR}/splits/{s}") for s in SPLITS),
            ],
            outputs=[s3_output("evaluation", f"{PROCESSING_DIR}/evaluation")],
            arguments=["--max-ece", max_ece.to_string(), "--champion-tolerance", champion_tolerance.to_string()],
        ),
        property_files=[report],
    )
    evaluation_uri = evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri

    candidate = ModelBuilder(
        image_uri=serving_image,
        s3_model_data_url=Join(on="/", values=[evaluation_uri, PACKAGE_FILE]),  # the artifact the gates judged
        role_arn=config.role_arn,
        sagemaker_session=session,
        instance_type=SERVING_INSTANCE,
        dependencies={},  # nothing to upload: the default would look the bucket up in S3
    )
    register = ModelStep(
        name="RegisterModel",
        step_args=candidate.register(
            model_package_group_name=config.model_package_group,
            approval_status=approval,
            content_types=["application/json"],
            response_types=["application/json"],
            inference_instances=[SERVING_INSTANCE],
            transform_instances=[SERVING_INSTANCE],
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    content_type="application/json", s3_uri=Join(on="/", values=[evaluation_uri, EVALUATION_FILE])
                )
            ),
        ),
    )
    gate = ConditionStep(
        name="QualityGate",
        conditions=[
            ConditionEquals(
                left=JsonGet(step_name=evaluate.name, property_file=report, json_path="gates.passed"), right=1
            )
        ],
        if_steps=[register],
        else_steps=[],
    )
    return Pipeline(
        name=config.pipeline_name,
        parameters=[
            training_image,
            serving_image,
            dataset_uri,
            processing_instance,
            training_instance,
            min_positive_sessions,
            max_ece,
            champion_tolerance,
            approval,
        ],
        steps=[prepare, train, evaluate, gate],
        sagemaker_session=session,
    )


def definition(config: PipelineConfig) -> dict:
    return json.loads(build_pipeline(config).definition())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.control.training_pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--environment", choices=ENVIRONMENTS, required=True)
    parser.add_argument("--account", required=True, help="the AWS account id (12 digits)")
    parser.add_argument("--region", default="eu-west-1")
    parser.add_argument("--image-tag", default="latest")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = PipelineConfig(args.environment, args.account, args.region, args.image_tag)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(definition(config), indent=2, sort_keys=True) + "\n")
    print(f"[pipeline] {config.pipeline_name}: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

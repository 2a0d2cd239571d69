"""The SageMaker training pipeline as a Dagster resource (`PROPENSITY_TRAINING=sagemaker`): configures the control
plane's runner (`serving/control/pipeline_runs.py`); every value comes from its variable as a dg.EnvVar."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from propensity.settings import Settings
from serving.control.pipeline_runs import PipelineRunner


class SageMakerPipelineResource(dg.ConfigurableResource):
    region: str
    bucket: str
    execution_role_arn: str
    pipeline_name: str
    definition_file: str  # the JSON `make pipeline-definition` renders
    poll_s: float = 30.0
    timeout_s: float = 4 * 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SageMakerPipelineResource:
        variables = settings.sagemaker.variables
        return cls(
            region=dg.EnvVar(variables["region"]),
            bucket=dg.EnvVar(variables["bucket"]),
            execution_role_arn=dg.EnvVar(variables["execution_role_arn"]),
            pipeline_name=dg.EnvVar("SAGEMAKER_PIPELINE_NAME"),
            definition_file=dg.EnvVar("SAGEMAKER_PIPELINE_DEFINITION"),
        )

    def runner(self) -> PipelineRunner:
        return PipelineRunner(self.region, self.execution_role_arn, poll_s=self.poll_s, timeout_s=self.timeout_s)

    def definition(self) -> dict:
        return json.loads(Path(self.definition_file).read_text())

    def s3(self):
        import boto3
        from botocore.config import Config

        config = Config(region_name=self.region, connect_timeout=10, read_timeout=60, retries={"total_max_attempts": 3})
        return boto3.client("s3", config=config)

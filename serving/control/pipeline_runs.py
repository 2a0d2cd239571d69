"""Running the SageMaker training pipeline with boto3: upsert its definition, start an execution, poll it to the end.

The definition is the JSON `serving.control.training_pipeline` renders with the SDK (`make pipeline-definition`,
in the builder's own environment); running it needs only boto3, so Dagster (`PROPENSITY_TRAINING=sagemaker`) and
the deploy workflow run it from the platform's environment. Every call has a connect and read timeout and bounded
retries; the wait is bounded by `timeout_s`, and a failed or stopped execution raises with SageMaker's reason and
the steps that failed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from propensity.models.contract import TRAINING_RUNS_PREFIX

DONE = ("Succeeded", "Failed", "Stopped")


@dataclass
class StepStatus:
    name: str
    status: str
    failure: str = ""


@dataclass
class PipelineRun:
    arn: str
    status: str
    failure: str
    steps: list[StepStatus]
    seconds: float

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"


class PipelineRunError(RuntimeError):
    """A call or an execution that failed; the message says which and what to check."""


@dataclass
class PipelineRunner:
    region: str
    role_arn: str
    call_timeout_s: int = 10
    max_attempts: int = 3
    poll_s: float = 30.0
    timeout_s: float = 4 * 3600.0
    _client: Any = field(default=None, init=False, repr=False)

    def with_client(self, client) -> PipelineRunner:
        self._client = client
        return self

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                region_name=self.region,
                connect_timeout=self.call_timeout_s,
                read_timeout=self.call_timeout_s,
                retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
            )
            self._client = boto3.client("sagemaker", config=config)
        return self._client

    def upsert(self, name: str, definition: dict, description: str = "") -> str:
        """Create the pipeline, or update it when it exists; returns its ARN."""
        body = json.dumps(definition)
        arguments = {"PipelineName": name, "PipelineDefinition": body, "RoleArn": self.role_arn}
        if description:
            arguments["PipelineDescription"] = description
        exists = self._call("describe_pipeline", "check the role's sagemaker:DescribePipeline", PipelineName=name)
        if exists is None:
            return self._call("create_pipeline", "check the role's sagemaker:CreatePipeline", **arguments)[
                "PipelineArn"
            ]
        return self._call("update_pipeline", "check the role's sagemaker:UpdatePipeline", **arguments)["PipelineArn"]

    def start(self, name: str, parameters: dict[str, Any] | None = None, display_name: str = "") -> str:
        arguments = {
            "PipelineName": name,
            "PipelineParameters": [{"Name": k, "Value": str(v)} for k, v in sorted((parameters or {}).items())],
        }
        if display_name:
            arguments["PipelineExecutionDisplayName"] = display_name
        started = self._call(
            "start_pipeline_execution",
            "check that the pipeline exists (upsert it) and the role may start it",
            **arguments,
        )
        return started["PipelineExecutionArn"]

    def status(self, arn: str) -> tuple[str, str, list[StepStatus]]:
        described = self._call(
            "describe_pipeline_execution",
            "check the execution ARN and sagemaker:DescribePipelineExecution",
            PipelineExecutionArn=arn,
        )
        listed = self._call(
            "list_pipeline_execution_steps", "check sagemaker:ListPipelineExecutionSteps", PipelineExecutionArn=arn
        )
        steps = [
            StepStatus(s["StepName"], s.get("StepStatus", "Unknown"), s.get("FailureReason", ""))
            for s in sorted(listed.get("PipelineExecutionSteps", []), key=lambda s: str(s.get("StartTime", "")))
        ]
        return described["PipelineExecutionStatus"], described.get("FailureReason", ""), steps

    def wait(self, arn: str, on_poll=None) -> PipelineRun:
        """Poll until the execution ends; raise unless it succeeded (or when `timeout_s` passes)."""
        started = time.monotonic()
        while True:
            status, failure, steps = self.status(arn)
            if on_poll is not None:
                on_poll(status, steps)
            if status in DONE:
                run = PipelineRun(arn, status, failure, steps, round(time.monotonic() - started, 1))
                if not run.succeeded:
                    failed = [f"{s.name}: {s.failure or s.status}" for s in steps if s.status in ("Failed", "Stopped")]
                    raise PipelineRunError(
                        f"pipeline execution {arn} {status.lower()}: {failure or 'no reason given'}; "
                        f"steps: {'; '.join(failed) or 'none failed'} (see the execution in SageMaker Studio)"
                    )
                return run
            if time.monotonic() - started > self.timeout_s:
                raise PipelineRunError(
                    f"pipeline execution {arn} still {status} after {self.timeout_s:.0f} s: it goes on in SageMaker; "
                    "stop it with stop_pipeline_execution or raise the timeout"
                )
            time.sleep(self.poll_s)

    def _call(self, operation: str, what_to_check: str, **arguments):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**arguments)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if operation == "describe_pipeline" and code == "ResourceNotFound":
                return None  # no such pipeline yet
            raise PipelineRunError(f"SageMaker {operation} failed ({code}: {error}): {what_to_check}") from error
        except BotoCoreError as error:
            raise PipelineRunError(
                f"SageMaker {operation} failed: {error}; check the network and the region"
            ) from error


def train_on_sagemaker(
    dataset_file: Path,
    runner: PipelineRunner,
    s3,
    *,
    bucket: str,
    pipeline_name: str,
    definition: dict,
    run_id: str,
    parameters: dict[str, Any] | None = None,
    on_poll=None,
) -> dict:
    """One retrain on SageMaker: the training set to S3 (under the run's id), the pipeline upserted from the rendered
    definition, started on that training set, and polled to the end. Returns what the Dagster asset shows."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    key = f"{TRAINING_RUNS_PREFIX}/{run_id}/data.parquet"
    try:
        s3.upload_file(str(dataset_file), bucket, key)
    except (BotoCoreError, ClientError, S3UploadFailedError) as error:
        raise PipelineRunError(
            f"uploading the training set to s3://{bucket}/{key} failed: {error}; check the bucket and s3:PutObject"
        ) from error
    dataset_uri = f"s3://{bucket}/{key.rsplit('/', 1)[0]}/"
    pipeline_arn = runner.upsert(pipeline_name, definition, description=f"upserted by Dagster run {run_id}")
    execution = runner.start(
        pipeline_name, {**(parameters or {}), "TrainingDatasetUri": dataset_uri}, display_name=f"dagster-{run_id[:8]}"
    )
    run = runner.wait(execution, on_poll=on_poll)
    return {
        "pipeline_arn": pipeline_arn,
        "execution_arn": run.arn,
        "status": run.status,
        "training_dataset_uri": dataset_uri,
        "steps": {step.name: step.status for step in run.steps},
        "seconds": run.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m serving.control.pipeline_runs --name N --definition F --region R --role-arn A [--parameter K=V]`:
    upsert the rendered definition, start it, and wait (the deploy workflow's pipeline step)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m serving.control.pipeline_runs", description=main.__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--definition", type=Path, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--role-arn", required=True)
    parser.add_argument("--parameter", action="append", default=[], help="K=V, repeatable")
    parser.add_argument("--timeout-s", type=float, default=4 * 3600.0)
    args = parser.parse_args(argv)
    bad = [p for p in args.parameter if "=" not in p]
    if bad:
        parser.error(f"--parameter takes K=V, got {bad}")
    runner = PipelineRunner(args.region, args.role_arn, timeout_s=args.timeout_s)
    try:
        runner.upsert(args.name, json.loads(args.definition.read_text()), description="upserted by the deploy workflow")
        arn = runner.start(args.name, dict(p.split("=", 1) for p in args.parameter))
        print(f"[pipeline] started {arn}", flush=True)
        run = runner.wait(
            arn,
            on_poll=lambda status, steps: print(
                f"[pipeline] {status}: " + ", ".join(f"{s.name} {s.status}" for s in steps), flush=True
            ),
        )
    except PipelineRunError as error:
        print(f"[pipeline] {error}", file=sys.stderr)
        return 1
    print(f"[pipeline] {run.status} in {run.seconds:.0f} s: " + ", ".join(f"{s.name} {s.status}" for s in run.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training on SageMaker (`PROPENSITY_TRAINING=sagemaker`): the retrain job runs the training set, then this asset
instead of the in-process models group. It hands the training set to the staged SageMaker pipeline (prepare,
train, evaluate, the gates' condition, registration pending approval) and shows the execution's ARN and step
statuses; the approved package is deployed as a canary by the SageMaker deployer."""

import dagster as dg

from propensity.models.dataset import TRAINING_DATASET
from resources.lake import LakeResource
from resources.training_pipeline import SageMakerPipelineResource
from serving.control.pipeline_runs import train_on_sagemaker

SAGEMAKER_TRAINING = "sagemaker_training"


class PipelineRunConfig(dg.Config):
    # Pipeline parameters for this execution (others keep the definition's defaults), e.g. {"MaxEce": 0.02}.
    parameters: dict[str, str] = {}


@dg.asset(
    name=SAGEMAKER_TRAINING,
    deps=[TRAINING_DATASET],
    group_name="sagemaker",
    kinds={"sagemaker"},
    description="The staged SageMaker training pipeline run on this training set: upserted from its rendered "
    "definition, started, and polled to the end (registration in the Model Registry when every gate passed).",
)
def sagemaker_training(
    context: dg.AssetExecutionContext,
    config: PipelineRunConfig,
    lake: LakeResource,
    sagemaker_pipeline: SageMakerPipelineResource,
) -> dg.MaterializeResult:
    def progress(status: str, steps) -> None:
        context.log.info(f"{status}: " + ", ".join(f"{s.name} {s.status}" for s in steps))

    result = train_on_sagemaker(
        lake.pull(TRAINING_DATASET) / "data.parquet",
        sagemaker_pipeline.runner(),
        sagemaker_pipeline.s3(),
        bucket=sagemaker_pipeline.bucket,
        pipeline_name=sagemaker_pipeline.pipeline_name,
        definition=sagemaker_pipeline.definition(),
        run_id=context.run_id,
        parameters=config.parameters,
        on_poll=progress,
    )
    return dg.MaterializeResult(
        metadata={
            "execution_arn": result["execution_arn"],
            "pipeline_arn": result["pipeline_arn"],
            "status": result["status"],
            "training_dataset_uri": result["training_dataset_uri"],
            "steps": dg.MetadataValue.json(result["steps"]),
            "seconds": result["seconds"],
        }
    )

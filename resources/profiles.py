"""One switch for the environment: the settings' profile and deployer pick every resource's implementation."""

from __future__ import annotations

import dagster as dg
from dagster_aws.s3 import S3Resource

from propensity.settings import Settings
from resources.deployers import LocalDeployerResource, SageMakerDeployerResource
from resources.feast import FeastResource
from resources.kafka import KafkaResource
from resources.lake import LakeResource, S3LakeResource
from resources.spark import spark_resource
from resources.training_pipeline import SageMakerPipelineResource


def _from_env(settings: Settings, variable: str, value: str):
    """A value the UI may show only by name: a dg.EnvVar when the environment set it, else the default."""
    return dg.EnvVar(variable) if variable in settings.set_variables else value


def lake_resource(settings: Settings) -> LakeResource:
    """The aws profile's lake of record is on S3 (the region and endpoint as boto3 finds them unless set here)."""
    if settings.profile != "aws":
        return LakeResource()
    return S3LakeResource(
        uri=_from_env(settings, "PROPENSITY_LAKE_URI", settings.lake_uri),
        s3=S3Resource(region_name=settings.aws_region),
    )


def build_resources(settings: Settings) -> dict:
    deployer = (
        SageMakerDeployerResource.from_settings(settings)
        if settings.deployer == "sagemaker"
        else LocalDeployerResource(profile=settings.profile)
    )
    resources = {
        "spark": spark_resource(settings),
        "lake": lake_resource(settings),
        "feast": FeastResource(
            profile=settings.profile, redis_url=_from_env(settings, "REDIS_URL", settings.redis_url)
        ),
        "deployer": deployer,
        "kafka": KafkaResource(
            bootstrap_servers=_from_env(settings, "KAFKA_BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers),
            topic=_from_env(settings, "STOREFRONT_TOPIC", settings.kafka.topic),
        ),
    }
    if settings.training == "sagemaker":
        resources["sagemaker_pipeline"] = SageMakerPipelineResource.from_settings(settings)
    return resources

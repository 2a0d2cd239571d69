"""Typed Dagster resources: thin wrappers that configure and hand over the core's and the control plane's objects,
and the one switch that picks them per profile (`build_resources`)."""

from resources.deployers import LocalDeployerResource, SageMakerDeployerResource
from resources.feast import FeastResource
from resources.kafka import KafkaResource
from resources.lake import LakeResource
from resources.profiles import build_resources
from resources.spark import spark_resource

__all__ = [
    "FeastResource",
    "KafkaResource",
    "LakeResource",
    "LocalDeployerResource",
    "SageMakerDeployerResource",
    "build_resources",
    "spark_resource",
]

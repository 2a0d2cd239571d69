"""One switch for the environment: PROPENSITY_PROFILE picks every resource's implementation."""

from __future__ import annotations

import os

from resources.deployers import LocalEndpointDeployer, current_deployer
from resources.feast import FeastResource
from resources.kafka import KafkaResource
from resources.lake import LakeResource
from resources.spark import spark_resource

PROFILES = ("local", "redis")


def current_profile() -> str:
    profile = os.environ.get("PROPENSITY_PROFILE", "local")
    if profile not in PROFILES:
        raise ValueError(f"PROPENSITY_PROFILE={profile!r} is not one of {PROFILES}")
    return profile


def build_resources(profile: str | None = None) -> dict:
    profile = profile or current_profile()
    return {
        "spark": spark_resource(),
        "lake": LakeResource(),
        "feast": FeastResource(profile=profile),
        "deployer": deployer_resource(profile),
        "kafka": KafkaResource.from_env(),
    }


def deployer_resource(profile: str):
    if current_deployer() == "sagemaker":
        from resources.sagemaker_deployer import SageMakerDeployer

        return SageMakerDeployer.from_env()
    return LocalEndpointDeployer(profile=profile)

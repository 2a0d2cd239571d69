"""Deployers as Dagster resources: each configures and hands over the control plane's object (`serving.control`),
which implements `Deployer`. `propensity_endpoint` receives the object, so the asset never knows which one it got."""

from __future__ import annotations

import dagster as dg

from propensity.settings import Settings
from serving.control.deployment import Deployer
from serving.control.endpoint import LocalEndpointDeployer
from serving.control.sagemaker import SageMakerDeployer


class LocalDeployerResource(dg.ConfigurableResource):
    """The embedded default: endpoints of the local runtime, on this machine."""

    profile: str = "local"  # the online store the endpoint reads features from
    launch_server: bool = True

    def create_resource(self, context: dg.InitResourceContext) -> Deployer:
        return LocalEndpointDeployer(profile=self.profile, launch_server=self.launch_server)


class SageMakerDeployerResource(dg.ConfigurableResource):
    """SageMaker real-time endpoints (`PROPENSITY_DEPLOYER=sagemaker`); see `serving/control/sagemaker.py`.
    `from_settings()` takes every value from its SAGEMAKER_* variable as dg.EnvVar."""

    region: str
    bucket: str
    image_uri: str
    execution_role_arn: str
    # Unset: the deployer's own defaults (serving/control/sagemaker.py), so they are defined once.
    prefix: str | None = None
    capture_prefix: str | None = None  # where Data Capture writes, under the bucket
    instance_type: str | None = None
    initial_instance_count: int | None = None
    strategy: str | None = None
    wait_timeout_s: int | None = None
    redis_url: str | None = None  # the online store as the endpoint reaches it (ElastiCache), passed as REDIS_URL
    alarm_topic_arn: str | None = None  # the SNS topic the canary's alarms notify (infra/alarms.tf)

    @classmethod
    def from_settings(cls, settings: Settings) -> SageMakerDeployerResource:
        """Every value as a dg.EnvVar of the variable it came from (SAGEMAKER_*), so the UI shows names only."""
        numbers = {"initial_instance_count", "wait_timeout_s"}
        return cls(
            **{
                field: dg.EnvVar.int(variable) if field in numbers else dg.EnvVar(variable)
                for field, variable in settings.sagemaker.variables.items()
            }
        )

    def create_resource(self, context: dg.InitResourceContext) -> Deployer:
        # Unset fields are left out: the deployer's own defaults apply (serving/control/sagemaker.py).
        return SageMakerDeployer.from_values({name: getattr(self, name) for name in type(self).model_fields})

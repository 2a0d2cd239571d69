"""The profile switch: one settings object picks every resource, and values the environment set reach Dagster as
dg.EnvVar, so the UI shows the variable's name and never a URL with its password."""

import sys

import dagster as dg

from propensity.settings import Settings
from resources import FeastResource, KafkaResource, LocalDeployerResource, build_resources

SPARK_WORKERS = {"PYSPARK_PYTHON": sys.executable}  # the Spark resource refuses to start without a worker Python


def test_values_from_the_environment_are_env_vars_and_defaults_are_plain():
    from_env = build_resources(
        Settings.from_env({"PROPENSITY_PROFILE": "redis", "REDIS_URL": "redis://:s3cret@cache:6379/0", **SPARK_WORKERS})
    )
    feast = from_env["feast"]
    assert isinstance(feast, FeastResource) and feast.profile == "redis"
    assert isinstance(feast.redis_url, dg.EnvVar) and feast.redis_url.env_var_name == "REDIS_URL"
    assert isinstance(from_env["deployer"], LocalDeployerResource) and from_env["deployer"].profile == "redis"

    defaults = build_resources(Settings.from_env(SPARK_WORKERS))
    assert not isinstance(defaults["feast"].redis_url, dg.EnvVar)
    kafka = defaults["kafka"]
    assert isinstance(kafka, KafkaResource) and (kafka.bootstrap_servers, kafka.topic) == (
        "127.0.0.1:9092",
        "storefront.events",
    )


def test_the_local_deployer_resource_hands_over_the_control_planes_object():
    from serving.control.endpoint import LocalEndpointDeployer

    with dg.build_resources({"deployer": LocalDeployerResource(profile="redis", launch_server=False)}) as built:
        assert built.deployer == LocalEndpointDeployer(profile="redis", launch_server=False)


def test_the_aws_profile_reads_and_writes_its_lake_on_s3_through_dagster_aws():
    from dagster_aws.s3 import S3Resource

    from propensity.lake import Lake, S3Lake
    from resources.lake import LakeResource, S3LakeResource

    environ = {"PROPENSITY_PROFILE": "aws", "PROPENSITY_LAKE_URI": "s3://lake-bucket/p", "AWS_REGION": "eu-west-1"}
    lake = build_resources(Settings.from_env({**environ, **SPARK_WORKERS}))["lake"]
    assert isinstance(lake, S3LakeResource) and isinstance(lake.s3, S3Resource) and lake.s3.region_name == "eu-west-1"
    assert isinstance(lake.uri, dg.EnvVar) and lake.uri.env_var_name == "PROPENSITY_LAKE_URI"
    built = S3LakeResource(uri="s3://lake-bucket/p", s3=S3Resource(region_name="eu-west-1")).lake()
    assert isinstance(built, S3Lake) and built.describe("sessions") == "s3://lake-bucket/p/sessions"

    local = build_resources(Settings.from_env(SPARK_WORKERS))["lake"]
    assert type(local) is LakeResource and type(local.lake()) is Lake

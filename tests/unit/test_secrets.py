"""Settings that name a Secrets Manager secret (moto): resolved once by the settings, by the resources that take
them as dg.EnvVar, and by the SageMaker deployer for the endpoint's container; failures name the variable and the
secret, never a value."""

import json

import boto3
import pytest
from moto import mock_aws

from propensity import secrets
from propensity.settings import Settings, SettingsError
from resources.feast import FeastResource
from serving.control.sagemaker import SageMakerDeployer

REGION = "eu-west-1"
URL = "rediss://:elasticache-token@master.propensity.cache.amazonaws.com:6379/0"


@pytest.fixture
def secretsmanager(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        client.create_secret(Name="propensity/staging/redis-url", SecretString=URL)
        client.create_secret(Name="propensity/staging/online", SecretString=json.dumps({"url": URL, "port": 6379}))
        yield client


def test_a_setting_may_name_a_secret_or_a_key_of_a_json_secret(secretsmanager):
    assert Settings.from_env({"REDIS_URL": "secretsmanager:propensity/staging/redis-url"}).redis_url == URL
    assert Settings.from_env({"REDIS_URL": "secretsmanager:propensity/staging/online#url"}).redis_url == URL
    assert Settings.from_env({"REDIS_URL": URL}).redis_url == URL  # a value is itself


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("secretsmanager:propensity/staging/nope", "REDIS_URL: secret 'propensity/staging/nope' could not be read"),
        ("secretsmanager:propensity/staging/online#password", "is not a JSON object with the key 'password'"),
        ("secretsmanager:", "names no secret"),
    ],
)
def test_an_unreadable_secret_names_the_variable_and_never_a_value(secretsmanager, value, message):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"REDIS_URL": value})
    assert message in str(refused.value) and "elasticache-token" not in str(refused.value)


def test_the_dagster_instance_url_cannot_name_a_secret(secretsmanager):
    with pytest.raises(SettingsError, match="DAGSTER_POSTGRES_URL cannot name a secret: Dagster's instance reads it"):
        Settings.from_env({"DAGSTER_POSTGRES_URL": "secretsmanager:propensity/staging/dagster"})


def test_resources_and_the_deployer_resolve_what_they_take_by_variable(secretsmanager, monkeypatch):
    reference = "secretsmanager:propensity/staging/redis-url"
    seen = {}
    monkeypatch.setattr(
        "resources.feast.open_feature_store", lambda profile, redis_url, **_: seen.setdefault("url", redis_url)
    )
    FeastResource(profile="redis", redis_url=reference).store()
    assert seen["url"] == URL
    deployer = SageMakerDeployer.from_values(
        {
            "region": REGION,
            "bucket": "b",
            "image_uri": "i",
            "execution_role_arn": "arn:aws:iam::1:role/r",
            "redis_url": reference,
        }
    )
    assert deployer.environment == {"REDIS_URL": URL}  # the container gets the value: it has no boto3
    assert secrets.resolve(None) is None

"""Settings: read from the environment in one place, validated with a message that names the variable, and never
written back to the environment."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from propensity.settings import (
    DEFAULT_BOOTSTRAP_SERVERS,
    DEFAULT_REDIS_URL,
    KNOWN_VARIABLES,
    PROJECT_ROOT,
    Settings,
    SettingsError,
    redacted_url,
)


def test_defaults_need_no_environment_at_all():
    config = Settings.from_env({})
    assert (config.profile, config.deployer, config.redis_url) == ("local", "local", DEFAULT_REDIS_URL)
    assert config.home == PROJECT_ROOT / "var" and config.data_dir == PROJECT_ROOT / "data"
    assert config.kafka.bootstrap_servers == DEFAULT_BOOTSTRAP_SERVERS and config.kafka.topic == "storefront.events"
    assert config.kafka.dead_letter_topic == "storefront.events.dlq"
    assert config.set_variables == frozenset() and config.data_mirror is None


def test_values_are_read_typed_and_the_set_ones_remembered(tmp_path):
    config = Settings.from_env(
        {
            "PROPENSITY_PROFILE": "redis",
            "PROPENSITY_HOME": str(tmp_path / "state"),
            "PROPENSITY_DATA_MIRROR": str(tmp_path),
            "REDIS_URL": "rediss://:s3cret@cache.example:6380/2",
            "KAFKA_BOOTSTRAP_SERVERS": "b-1.example:9096,b-2.example:9096",
            "KAFKA_OPTION_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_OPTION_SASL_MECHANISM": "SCRAM-SHA-512",
            "SERVING_PORT": "9090",
            "UNRELATED": "x",
        }
    )
    assert config.profile == "redis" and config.home == tmp_path / "state" and config.data_mirror == tmp_path
    assert config.kafka.options == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}
    assert config.kafka.bootstrap_servers == "b-1.example:9096,b-2.example:9096" and config.serving.port == 9090
    assert "REDIS_URL" in config.set_variables and "UNRELATED" not in config.set_variables
    assert redacted_url(config.redis_url) == "rediss://:***@cache.example:6380/2"


def test_the_aws_profile_keeps_its_lake_on_s3():
    config = Settings.from_env(
        {"PROPENSITY_PROFILE": "aws", "PROPENSITY_LAKE_URI": "s3://lake-bucket/propensity/", "AWS_REGION": "eu-west-1"}
    )
    assert (config.profile, config.lake_uri, config.aws_region) == ("aws", "s3://lake-bucket/propensity/", "eu-west-1")
    assert "PROPENSITY_LAKE_URI" in config.set_variables


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PROPENSITY_PROFILE": "prod"}, "PROPENSITY_PROFILE='prod' is not one of local, redis, aws"),
        ({"PROPENSITY_PROFILE": "aws"}, "PROPENSITY_PROFILE=aws needs PROPENSITY_LAKE_URI=s3://"),
        ({"PROPENSITY_LAKE_URI": "s3://lake-bucket/x"}, "PROPENSITY_LAKE_URI is set but PROPENSITY_PROFILE='local'"),
        (
            {"PROPENSITY_PROFILE": "aws", "PROPENSITY_LAKE_URI": "s3://Lake_Bucket/x"},
            "PROPENSITY_LAKE_URI: 'Lake_Bucket' in 's3://Lake_Bucket/x' is not an S3 bucket name",
        ),
        (
            {"PROPENSITY_PROFILE": "aws", "PROPENSITY_LAKE_URI": "/data/lake"},
            "PROPENSITY_LAKE_URI: a lake URI looks like s3://bucket/prefix",
        ),
        ({"PROPENSITY_DEPLOYER": "k8s"}, "PROPENSITY_DEPLOYER='k8s' is not one of local, sagemaker"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must look like redis://host:port/db"),
        ({"REDIS_URL": "redis://:pw@host:port/0"}, "REDIS_URL: Port could not be cast"),
        ({"REDIS_URL": "redis://:pw@host:6379/cache"}, "database 'cache' is not a number in 'redis://:***@host"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "broker"}, "'broker' is not host:port"),
        ({"STOREFRONT_TOPIC": "store front"}, "STOREFRONT_TOPIC='store front': a Kafka topic name is"),
        ({"SPARK_DRIVER_MEMORY": "lots"}, "SPARK_DRIVER_MEMORY='lots': give a size such as 4g"),
        ({"SERVING_PORT": "http"}, "SERVING_PORT='http' is not a port number"),
        ({"SERVING_PORT": "70000"}, "SERVING_PORT=70000: a TCP port is 1-65535"),
        ({"PROPENSITY_DATA_MIRROR": "/nonexistent/mirror"}, "PROPENSITY_DATA_MIRROR=/nonexistent/mirror: no such"),
        (
            {"PROPENSITY_DEPLOYER": "sagemaker", "AWS_REGION": "eu-west-1"},
            "PROPENSITY_DEPLOYER=sagemaker needs SAGEMAKER_BUCKET, SAGEMAKER_IMAGE_URI, SAGEMAKER_EXECUTION_ROLE_ARN",
        ),
        ({"SAGEMAKER_INSTANCE_COUNT": "two"}, "SAGEMAKER_INSTANCE_COUNT='two' is not a whole number"),
        ({"SAGEMAKER_STRATEGY": "yolo"}, "SAGEMAKER_STRATEGY='yolo' is not one of blue_green, variant_weights"),
        (
            {"DAGSTER_POSTGRES_URL": "mysql://u:pw@db:3306/dagster"},
            "DAGSTER_POSTGRES_URL must look like postgresql+psycopg2://user:password@host:port/database",
        ),
        ({"DAGSTER_POSTGRES_URL": "postgresql+psycopg2://u:pw@db:5432/"}, "got 'postgresql+psycopg2://u:***@db:5432/'"),
        ({"DAGSTER_POSTGRES_URL": "postgresql://u:pw@db:5432/dagster"}, "write postgresql+psycopg2://"),
        ({"PROPENSITY_TRAINING": "laptop"}, "PROPENSITY_TRAINING='laptop' is not one of in_process, sagemaker"),
        (
            {"PROPENSITY_TRAINING": "sagemaker", "AWS_REGION": "eu-west-1", "SAGEMAKER_BUCKET": "b"},
            "needs SAGEMAKER_EXECUTION_ROLE_ARN, SAGEMAKER_PIPELINE_NAME, SAGEMAKER_PIPELINE_DEFINITION set",
        ),
        (
            {
                "PROPENSITY_TRAINING": "sagemaker",
                "AWS_REGION": "eu-west-1",
                "SAGEMAKER_BUCKET": "b",
                "SAGEMAKER_EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/r",
                "SAGEMAKER_PIPELINE_NAME": "p",
                "SAGEMAKER_PIPELINE_DEFINITION": "/nonexistent/pipeline.json",
            },
            "SAGEMAKER_PIPELINE_DEFINITION=/nonexistent/pipeline.json: no such file (make pipeline-definition",
        ),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_may_be(environ, message):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(environ)
    assert message in str(raised.value)
    assert "s3cret" not in str(raised.value) and ":pw@" not in str(raised.value)  # never echo a password


# --------------------------------------------------------------------------------------------- who touches os.environ

LAYERED = ("propensity", "feature_repo", "serving", "resources", "sensors", "propensity_assets")
# The one module that reads the platform's variables, and reads that are not settings, each with its reason.
READERS = {
    "propensity/settings.py": "the settings",
    "serving/control/endpoint.py": "hands the whole environment on to the endpoint's server process",
}


def _environment_uses(path: Path) -> list[tuple[int, str]]:
    """(line, 'read' or 'write') for every use of os.environ / os.getenv / os.putenv in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in ("putenv", "unsetenv"):
                uses.append((node.lineno, "write"))
            elif node.attr == "getenv":
                uses.append((node.lineno, "read"))
            elif node.attr == "environ":
                parent = parents.get(node)
                writes = isinstance(parent, ast.Subscript) and isinstance(parent.ctx, (ast.Store, ast.Del))
                mutator = isinstance(parent, ast.Attribute) and parent.attr in (
                    "setdefault",
                    "update",
                    "pop",
                    "popitem",
                    "clear",
                )
                uses.append((node.lineno, "write" if writes or mutator else "read"))
    return sorted(uses)


def test_no_layer_writes_the_environment_and_only_the_settings_read_it():
    problems = []
    for package in LAYERED:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            name = str(path.relative_to(PROJECT_ROOT))
            for line, use in _environment_uses(path):
                if use == "write" or name not in READERS:
                    problems.append(f"{name}:{line}: {use}s os.environ")
    assert problems == []


def test_the_environment_rule_sees_writes_and_reads(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import os\n"
        "os.environ['A'] = '1'\n"
        "os.environ.setdefault('B', '2')\n"
        "del os.environ['C']\n"
        "x = os.environ.get('D')\n"
        "y = os.getenv('E')\n"
    )
    assert _environment_uses(module) == [(2, "write"), (3, "write"), (4, "write"), (5, "read"), (6, "read")]


def test_the_architecture_document_lists_every_variable_the_settings_read():
    table = (PROJECT_ROOT / "docs" / "ARCHITECTURE.md").read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert KNOWN_VARIABLES - documented == set()
    assert documented - KNOWN_VARIABLES - {"KAFKA_OPTION_", "OMP_WAIT_POLICY"} == set()


def test_spark_refuses_workers_that_would_run_another_python(monkeypatch, tmp_path):
    from propensity.spark import spark_config

    monkeypatch.setenv("PATH", str(tmp_path))  # no python3 anywhere on PATH
    with pytest.raises(SettingsError, match="export PYSPARK_PYTHON="):
        spark_config(Settings.from_env({}))
    config = spark_config(Settings.from_env({"PYSPARK_PYTHON": "/opt/venv/bin/python", "SPARK_MASTER": "local[2]"}))
    assert config["spark.master"] == "local[2]" and config["spark.sql.session.timeZone"] == "UTC"

"""The platform's settings: read once from the environment, typed and validated, in this one place.

Every package asks `settings()` (or takes a `Settings` argument); nothing else reads these variables and nothing
writes to `os.environ`. A wrong value fails at start-up with the variable's name, what it holds and what it may hold.
The variables, their meaning and defaults are listed in docs/ARCHITECTURE.md (Settings); a test keeps that list
and `KNOWN_VARIABLES` equal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from propensity import secrets
from propensity.lake import LakeError, LakeLocation

PROJECT_ROOT = Path(__file__).resolve().parent.parent

PROFILES = ("local", "redis", "aws")  # aws: the lake of record on S3 (PROPENSITY_LAKE_URI), Redis online
DEPLOYERS = ("local", "sagemaker")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
DEFAULT_TOPIC = "storefront.events"
KAFKA_OPTION_PREFIX = "KAFKA_OPTION_"
_HOST_PORT = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")
_MEMORY = re.compile(r"^\d+[kmgtKMGT]?$")


class SettingsError(ValueError):
    """A setting that cannot work: the message names the variable, its value and what it may be."""


KAFKA_AUTHS = ("none", "msk_iam")  # msk_iam: Amazon MSK's IAM authentication over TLS (propensity.streaming.kafka)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    topic: str = DEFAULT_TOPIC
    options: Mapping[str, str] = field(default_factory=dict)  # client settings by librdkafka / Java name
    auth: str = "none"
    region: str | None = None  # the cluster's AWS region, for msk_iam

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"


@dataclass(frozen=True)
class ServingSettings:
    """The inference container's contract: where it listens and what it serves."""

    host: str = "127.0.0.1"
    port: int = 8080
    model_dir: Path | None = None
    variant: str = "champion"
    model_version: str | None = None


# SageMaker deployer settings: field -> variable. Required ones are checked when the deployer is sagemaker.
SAGEMAKER_VARIABLES = {
    "bucket": "SAGEMAKER_BUCKET",
    "image_uri": "SAGEMAKER_IMAGE_URI",
    "execution_role_arn": "SAGEMAKER_EXECUTION_ROLE_ARN",
    "region": "SAGEMAKER_REGION",
    "prefix": "SAGEMAKER_PREFIX",
    "instance_type": "SAGEMAKER_INSTANCE_TYPE",
    "initial_instance_count": "SAGEMAKER_INSTANCE_COUNT",
    "strategy": "SAGEMAKER_STRATEGY",
    "wait_timeout_s": "SAGEMAKER_WAIT_TIMEOUT_S",
    "redis_url": "SAGEMAKER_REDIS_URL",
    "alarm_topic_arn": "SAGEMAKER_ALARM_TOPIC_ARN",
}
SAGEMAKER_REQUIRED = ("bucket", "image_uri", "execution_role_arn", "region")
# Where a retrain trains: in the Dagster run's process, or in the SageMaker training pipeline (serving/control).
TRAININGS = ("in_process", "sagemaker")
PIPELINE_REQUIRED = ("bucket", "execution_role_arn", "region")
REGION_VARIABLES = ("SAGEMAKER_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
SAGEMAKER_STRATEGIES = ("blue_green", "variant_weights")


@dataclass(frozen=True)
class SageMakerSettings:
    """What the SageMaker deployer needs; `variables` names the variable each value came from."""

    values: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)

    def missing(self) -> list[str]:
        return [SAGEMAKER_VARIABLES[f] for f in SAGEMAKER_REQUIRED if not self.values.get(f)]


@dataclass(frozen=True)
class Settings:
    profile: str = "local"
    deployer: str = "local"
    home: Path = PROJECT_ROOT / "var"
    lake_uri: str | None = None  # the aws profile's lake of record, s3://bucket/prefix (propensity.lake)
    data_dir: Path = PROJECT_ROOT / "data"
    data_mirror: Path | None = None
    data_base_url: str | None = None
    services_home: Path = PROJECT_ROOT / "var" / "services"
    redis_url: str = DEFAULT_REDIS_URL
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    spark_master: str = "local[*]"
    spark_driver_memory: str = "4g"
    pyspark_python: str | None = None
    serving: ServingSettings = field(default_factory=ServingSettings)
    sagemaker: SageMakerSettings = field(default_factory=SageMakerSettings)
    # After a retrain, further failing checks wait this long before they may cause another (one cause, one retrain).
    retrain_cooldown_s: float = 6 * 3600.0
    # The Dagster instance's storage (runs, event log, schedules): SQLite under DAGSTER_HOME when None.
    dagster_postgres_url: str | None = None
    training: str = "in_process"
    sagemaker_pipeline_name: str | None = None  # the pipeline `make pipeline-definition` renders, as upserted
    sagemaker_pipeline_definition: Path | None = None  # that definition's JSON file
    set_variables: frozenset[str] = frozenset()  # the variables that were set (resources pass those as dg.EnvVar)

    def __post_init__(self) -> None:
        _one_of("PROPENSITY_PROFILE", self.profile, PROFILES)
        if self.profile == "aws" and not self.lake_uri:
            raise SettingsError(
                "PROPENSITY_PROFILE=aws needs PROPENSITY_LAKE_URI=s3://<bucket>/<prefix>: the lake on S3"
            )
        if self.lake_uri is not None:
            if self.profile != "aws":
                raise SettingsError(
                    f"PROPENSITY_LAKE_URI is set but PROPENSITY_PROFILE={self.profile!r} keeps the lake under "
                    "PROPENSITY_HOME: set PROPENSITY_PROFILE=aws, or unset PROPENSITY_LAKE_URI"
                )
            try:
                LakeLocation.parse(self.lake_uri)
            except LakeError as error:
                raise SettingsError(f"PROPENSITY_LAKE_URI: {error}") from None
        _one_of("PROPENSITY_DEPLOYER", self.deployer, DEPLOYERS)
        _redis_url("REDIS_URL", self.redis_url)
        for server in self.kafka.bootstrap_servers.split(","):
            if not _HOST_PORT.match(server.strip()):
                raise SettingsError(
                    f"KAFKA_BOOTSTRAP_SERVERS={self.kafka.bootstrap_servers!r}: {server.strip()!r} is not host:port "
                    "(use a comma-separated list such as b-1.example:9092,b-2.example:9092)"
                )
        _one_of("KAFKA_AUTH", self.kafka.auth, KAFKA_AUTHS)
        if self.kafka.auth == "msk_iam" and not self.kafka.region:
            raise SettingsError(
                f"KAFKA_AUTH=msk_iam needs the cluster's region: set one of {', '.join(REGION_VARIABLES)}"
            )
        if not _TOPIC.match(self.kafka.topic):
            raise SettingsError(
                f"STOREFRONT_TOPIC={self.kafka.topic!r}: a Kafka topic name is 1-249 letters, digits, '.', '_' or '-'"
            )
        _one_of("PROPENSITY_TRAINING", self.training, TRAININGS)
        if self.training == "sagemaker":
            missing = [SAGEMAKER_VARIABLES[f] for f in PIPELINE_REQUIRED if not self.sagemaker.values.get(f)]
            missing += [] if self.sagemaker_pipeline_name else ["SAGEMAKER_PIPELINE_NAME"]
            missing += [] if self.sagemaker_pipeline_definition else ["SAGEMAKER_PIPELINE_DEFINITION"]
            if missing:
                raise SettingsError(
                    f"PROPENSITY_TRAINING=sagemaker needs {', '.join(missing)} set "
                    "(see serving/control/pipeline_runs.py)"
                )
            if not self.sagemaker_pipeline_definition.is_file():
                raise SettingsError(
                    f"SAGEMAKER_PIPELINE_DEFINITION={self.sagemaker_pipeline_definition}: no such file "
                    "(make pipeline-definition renders it)"
                )
        if self.dagster_postgres_url is not None:
            _postgres_url("DAGSTER_POSTGRES_URL", self.dagster_postgres_url)
        if not self.spark_master.strip():
            raise SettingsError(
                "SPARK_MASTER is empty: unset it for local[*] or give a master URL such as spark://host:7077"
            )
        if not _MEMORY.match(self.spark_driver_memory):
            raise SettingsError(f"SPARK_DRIVER_MEMORY={self.spark_driver_memory!r}: give a size such as 4g or 2048m")
        if self.deployer == "sagemaker" and self.sagemaker.missing():
            raise SettingsError(
                f"PROPENSITY_DEPLOYER=sagemaker needs {', '.join(self.sagemaker.missing())} set "
                "(see serving/control/sagemaker.py)"
            )
        strategy = self.sagemaker.values.get("strategy")
        if strategy is not None and strategy not in SAGEMAKER_STRATEGIES:
            raise SettingsError(f"SAGEMAKER_STRATEGY={strategy!r} is not one of {', '.join(SAGEMAKER_STRATEGIES)}")
        for number in ("initial_instance_count", "wait_timeout_s"):
            value = self.sagemaker.values.get(number)
            if value is not None and not value.isdigit():
                raise SettingsError(f"{SAGEMAKER_VARIABLES[number]}={value!r} is not a whole number")
        if not self.retrain_cooldown_s >= 0:
            raise SettingsError(
                f"PROPENSITY_RETRAIN_COOLDOWN_S={self.retrain_cooldown_s}: a cool-down cannot be negative"
            )
        if not 0 < self.serving.port < 65536:
            raise SettingsError(f"SERVING_PORT={self.serving.port}: a TCP port is 1-65535")
        if self.data_base_url is not None and urlparse(self.data_base_url).scheme not in ("http", "https"):
            raise SettingsError(f"PROPENSITY_DATA_BASE_URL={self.data_base_url!r}: give an http(s) URL")
        if self.data_mirror is not None and not self.data_mirror.is_dir():
            raise SettingsError(
                f"PROPENSITY_DATA_MIRROR={self.data_mirror}: no such directory (unset it to download the datasets)"
            )

    @property
    def aws_region(self) -> str | None:
        """The first of SAGEMAKER_REGION, AWS_REGION, AWS_DEFAULT_REGION that is set."""
        return self.sagemaker.values.get("region")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _with_secrets(os.environ if environ is None else environ)

        def get(name: str, default: str) -> str:
            value = env.get(name, "")
            return value if value.strip() else default

        def path(name: str, default: Path) -> Path:
            return Path(get(name, str(default))).expanduser().resolve()

        options = {
            name[len(KAFKA_OPTION_PREFIX) :].lower().replace("_", "."): value
            for name, value in env.items()
            if name.startswith(KAFKA_OPTION_PREFIX)
        }
        mirror = get("PROPENSITY_DATA_MIRROR", "")
        definition = get("SAGEMAKER_PIPELINE_DEFINITION", "")
        model_dir = get("PROPENSITY_MODEL_DIR", "")
        cooldown = get("PROPENSITY_RETRAIN_COOLDOWN_S", "21600")
        try:
            retrain_cooldown_s = float(cooldown)
        except ValueError:
            raise SettingsError(f"PROPENSITY_RETRAIN_COOLDOWN_S={cooldown!r} is not a number of seconds") from None
        port = get("SERVING_PORT", "8080")
        if not port.isdigit():
            raise SettingsError(f"SERVING_PORT={port!r} is not a port number (1-65535)")
        sagemaker_values, sagemaker_variables = {}, {}
        for name, variable in SAGEMAKER_VARIABLES.items():
            candidates = REGION_VARIABLES if name == "region" else (variable,)
            chosen = next((c for c in candidates if env.get(c, "").strip()), None)
            if chosen:
                sagemaker_values[name], sagemaker_variables[name] = env[chosen], chosen
        return cls(
            profile=get("PROPENSITY_PROFILE", "local"),
            deployer=get("PROPENSITY_DEPLOYER", "local"),
            home=path("PROPENSITY_HOME", PROJECT_ROOT / "var"),
            lake_uri=get("PROPENSITY_LAKE_URI", "") or None,
            data_dir=path("PROPENSITY_DATA", PROJECT_ROOT / "data"),
            data_mirror=Path(mirror).expanduser().resolve() if mirror else None,
            data_base_url=get("PROPENSITY_DATA_BASE_URL", "") or None,
            services_home=path("PROPENSITY_SERVICES_HOME", PROJECT_ROOT / "var" / "services"),
            redis_url=get("REDIS_URL", DEFAULT_REDIS_URL),
            kafka=KafkaSettings(
                bootstrap_servers=get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP_SERVERS),
                topic=get("STOREFRONT_TOPIC", DEFAULT_TOPIC),
                options=options,
                auth=get("KAFKA_AUTH", "none"),
                region=sagemaker_values.get("region"),  # the first of REGION_VARIABLES set, as for SageMaker
            ),
            spark_master=get("SPARK_MASTER", "local[*]"),
            spark_driver_memory=get("SPARK_DRIVER_MEMORY", "4g"),
            pyspark_python=get("PYSPARK_PYTHON", "") or None,
            serving=ServingSettings(
                host=get("SERVING_HOST", "127.0.0.1"),
                port=int(port),
                model_dir=Path(model_dir) if model_dir else None,
                variant=get("PROPENSITY_VARIANT", "champion"),
                model_version=get("PROPENSITY_MODEL_VERSION", "") or None,
            ),
            sagemaker=SageMakerSettings(values=sagemaker_values, variables=sagemaker_variables),
            retrain_cooldown_s=retrain_cooldown_s,
            dagster_postgres_url=get("DAGSTER_POSTGRES_URL", "") or None,
            training=get("PROPENSITY_TRAINING", "in_process"),
            sagemaker_pipeline_name=get("SAGEMAKER_PIPELINE_NAME", "") or None,
            sagemaker_pipeline_definition=path("SAGEMAKER_PIPELINE_DEFINITION", Path()) if definition else None,
            set_variables=frozenset(name for name, value in env.items() if value.strip()) & KNOWN_VARIABLES,
        )


KNOWN_VARIABLES = frozenset(
    {
        "PROPENSITY_PROFILE",
        "PROPENSITY_DEPLOYER",
        "PROPENSITY_HOME",
        "PROPENSITY_LAKE_URI",
        "PROPENSITY_DATA",
        "PROPENSITY_DATA_MIRROR",
        "PROPENSITY_DATA_BASE_URL",
        "PROPENSITY_SERVICES_HOME",
        "REDIS_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_AUTH",
        "STOREFRONT_TOPIC",
        "SPARK_MASTER",
        "SPARK_DRIVER_MEMORY",
        "PYSPARK_PYTHON",
        "SERVING_HOST",
        "SERVING_PORT",
        "PROPENSITY_MODEL_DIR",
        "PROPENSITY_VARIANT",
        "PROPENSITY_MODEL_VERSION",
        "PROPENSITY_RETRAIN_COOLDOWN_S",
        "DAGSTER_POSTGRES_URL",
        "PROPENSITY_TRAINING",
        "SAGEMAKER_PIPELINE_NAME",
        "SAGEMAKER_PIPELINE_DEFINITION",
        *SAGEMAKER_VARIABLES.values(),
        *REGION_VARIABLES,
    }
)


# Read by Dagster's instance itself (dagster.yaml names the variable), so it must hold the URL, not a reference.
NOT_FROM_SECRETS = ("DAGSTER_POSTGRES_URL",)


def _with_secrets(env: Mapping[str, str]) -> Mapping[str, str]:
    """The environment with every setting that names a Secrets Manager secret replaced by its value
    (propensity.secrets); a reference that cannot be resolved fails here, with the variable's name."""
    references = {name for name, value in env.items() if name in KNOWN_VARIABLES and secrets.is_reference(value)}
    if not references:
        return env
    refused = sorted(references & set(NOT_FROM_SECRETS))
    if refused:
        raise SettingsError(
            f"{refused[0]} cannot name a secret: Dagster's instance reads it itself; inject the value into the "
            "environment (an ECS task secret, for instance)"
        )
    resolved = dict(env)
    for name in sorted(references):
        try:
            resolved[name] = secrets.resolve(env[name])
        except secrets.SecretError as error:
            raise SettingsError(f"{name}: {error}") from None
    return resolved


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)} (unset means {allowed[0]})")


def _redis_url(name: str, value: str) -> None:
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError as error:
        raise SettingsError(f"{name}: {error}; expected redis://host:port/db") from None
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise SettingsError(
            f"{name} must look like redis://host:port/db (rediss:// for TLS), got {redacted_url(value)!r}"
        )
    db = (parsed.path or "/0").lstrip("/") or "0"
    if not db.isdigit():
        raise SettingsError(f"{name}: database {db!r} is not a number in {redacted_url(value)!r}")


POSTGRES_SCHEME = "postgresql+psycopg2"  # SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3, not installed


def _postgres_url(name: str, value: str) -> None:
    expected = f"{POSTGRES_SCHEME}://user:password@host:port/database"
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError as error:
        raise SettingsError(f"{name}: {error}; expected {expected}") from None
    if parsed.scheme in ("postgresql", "postgres"):
        raise SettingsError(
            f"{name}: write {POSTGRES_SCHEME}:// (the driver installed here; SQLAlchemy reads {parsed.scheme}:// as "
            f"psycopg 3), got {redacted_url(value)!r}"
        )
    if parsed.scheme != POSTGRES_SCHEME or not parsed.hostname or not parsed.path.strip("/"):
        raise SettingsError(f"{name} must look like {expected}, got {redacted_url(value)!r}")


def redacted_url(url: str) -> str:
    """A URL without its password, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


@cache
def settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings.from_env()


def reload_settings() -> Settings:
    """Read the environment again: for a process that changes its own environment on purpose (a benchmark moving to
    a scratch state directory between stages). Everything else reads the settings once."""
    settings.cache_clear()
    return settings()

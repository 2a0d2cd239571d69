"""Amazon MSK with IAM authentication (KAFKA_AUTH=msk_iam), as far as it can be checked without MSK: every Python
client gets SASL over TLS with a token signed from the process's AWS credentials (offline: a SigV4-presigned request
for kafka-cluster:Connect), and Spark's Kafka source gets AWS's login module and its package."""

import base64
import time
from urllib.parse import parse_qs, urlparse

import pytest

from propensity.settings import KafkaSettings, Settings, SettingsError
from propensity.spark import streaming_config
from propensity.streaming.kafka import MSK_IAM_PACKAGE, client_config, spark_source_options

MSK = KafkaSettings(bootstrap_servers="b-1.msk.example:9098", auth="msk_iam", region="eu-west-1")


def test_python_clients_sign_an_iam_token_for_the_cluster(monkeypatch):
    for key, value in (("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_SECRET_ACCESS_KEY", "secret")):
        monkeypatch.setenv(key, value)
    config = client_config(MSK, **{"linger.ms": 5})
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    assert config["bootstrap.servers"] == "b-1.msk.example:9098" and config["linger.ms"] == 5
    token, expires = config["oauth_cb"]("")
    assert expires > time.time()
    signed = urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    query = parse_qs(signed.query)
    assert signed.netloc == "kafka.eu-west-1.amazonaws.com" and query["Action"] == ["kafka-cluster:Connect"]
    assert "AKIDEXAMPLE/" in query["X-Amz-Credential"][0] and "X-Amz-Signature" in query


def test_without_auth_nothing_is_added():
    plain = KafkaSettings(options={"client.id": "storefront"})
    assert client_config(plain) == {"bootstrap.servers": "127.0.0.1:9092", "client.id": "storefront"}
    assert spark_source_options(plain) == {"kafka.client.id": "storefront"}


def test_spark_gets_the_login_module_and_its_package():
    options = spark_source_options(MSK)
    assert options["kafka.sasl.mechanism"] == "AWS_MSK_IAM" and options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.jaas.config"] == "software.amazon.msk.auth.iam.IAMLoginModule required;"
    settings = Settings.from_env({"KAFKA_AUTH": "msk_iam", "AWS_REGION": "eu-west-1", "PYSPARK_PYTHON": "python3"})
    assert MSK_IAM_PACKAGE in streaming_config(settings)["spark.jars.packages"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KAFKA_AUTH": "sasl"}, "KAFKA_AUTH='sasl' is not one of none, msk_iam"),
        ({"KAFKA_AUTH": "msk_iam"}, "KAFKA_AUTH=msk_iam needs the cluster's region"),
    ],
)
def test_auth_settings_are_validated(environ, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)

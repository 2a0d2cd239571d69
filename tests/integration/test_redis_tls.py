"""The online store as ElastiCache runs it: Redis with TLS in transit and AUTH. A real redis-server with TLS (a CA
and server certificate made here with openssl) and a password; the stream's writer and the scoring path's reader go
through it with nothing but REDIS_URL (rediss://:<token>@host:port/db, a private CA named in its query)."""

import subprocess
import time

import numpy as np
import pytest

from feature_repo import FEAST_OBJECTS
from propensity.feature_store import feast_redis_connection_string, open_feature_store
from propensity.features.definitions import FEATURE_SERVICE_NAME, SESSION_FEATURE_VIEW, SESSION_PUSH_SOURCE
from propensity.streaming.redis_writer import RedisPushWriter
from serving.control.endpoint import free_port
from serving.online_features import OnlineFeatureReader, OnlineStoreUnavailable
from tests.integration.test_redis_writer import _rows

pytestmark = pytest.mark.redis
TOKEN = "elasticache-auth-token-0123456789"


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """redis-server on 127.0.0.1 with TLS only (no plain port) and requirepass; yields its rediss:// URL."""
    certs = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=propensity-test-ca",
        cwd=certs,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=certs,
    )
    (certs / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=certs,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--tls-cert-file",
            str(certs / "server.pem"),
            "--tls-key-file",
            str(certs / "server.key"),
            "--tls-ca-cert-file",
            str(certs / "ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            TOKEN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://:{TOKEN}@127.0.0.1:{port}/0?ssl_ca_certs={certs / 'ca.pem'}"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_timeout=2).ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.1)
    yield url, port
    server.terminate()
    server.wait(timeout=10)


def test_the_stream_writes_and_the_scorer_reads_through_tls_and_auth(tls_redis, propensity_home):
    url, _ = tls_redis
    store = open_feature_store("redis", redis_url=url)
    store.apply(FEAST_OBJECTS)
    rows = _rows(50, seed=3)
    RedisPushWriter(store, SESSION_PUSH_SOURCE).write(rows)
    reader = OnlineFeatureReader(
        open_feature_store("redis", redis_url=url, online_only=True), FEATURE_SERVICE_NAME, profile="redis"
    )
    got = reader.read_many(list(zip(rows["user_id"], rows["session_id"])))
    assert all(SESSION_FEATURE_VIEW not in features.missing_views for features in got)
    events = [features.values[list(reader.feature_names).index("session_events")] for features in got]
    np.testing.assert_array_equal(events, rows["session_events"].to_numpy(dtype=float))


def test_a_wrong_token_or_a_plain_connection_is_refused_and_says_where(tls_redis, propensity_home):
    url, port = tls_redis
    open_feature_store("redis", redis_url=url).apply(FEAST_OBJECTS)  # the registry the readers resolve from
    for wrong in (url.replace(TOKEN, "not-the-token"), f"redis://:{TOKEN}@127.0.0.1:{port}/0"):
        reader = OnlineFeatureReader(
            open_feature_store("redis", redis_url=wrong, online_only=True), FEATURE_SERVICE_NAME, profile="redis"
        )
        with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{port}"):
            reader.read("u1", "s1")


def test_tls_options_ride_on_rediss_urls_only():
    assert feast_redis_connection_string("rediss://:t@cache.example:6379/0?ssl_cert_reqs=required") == (
        "cache.example:6379,db=0,password=t,ssl=true,ssl_cert_reqs=required"
    )
    with pytest.raises(ValueError, match="unknown Redis URL option 'timeout'"):
        feast_redis_connection_string("rediss://cache.example:6379/0?timeout=5")
    with pytest.raises(ValueError, match="TLS options need rediss://"):
        feast_redis_connection_string("redis://cache.example:6379/0?ssl_ca_certs=/ca.pem")

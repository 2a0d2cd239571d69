"""The Dagster instance on PostgreSQL (dagster-postgres), the server `make services` starts: runs, asset events and
checks are stored there and survive the instance, and the yaml never holds the password."""

import uuid
from urllib.parse import urlparse, urlunparse

import dagster as dg
import psycopg2
import pytest

from propensity.settings import Settings
from propensity_assets.instance import POSTGRES_URL_VARIABLE, write_instance_yaml

# What scripts/services.sh starts (POSTGRES_* there), as libpq reads it; Dagster's SQLAlchemy URL names the driver.
SERVICES_URL = "postgresql://propensity:propensity@127.0.0.1:5432/dagster"
DRIVER = "postgresql+psycopg2"


@pytest.fixture
def database():
    """A database of its own on the services' server, dropped afterwards."""
    name = f"dagster_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(SERVICES_URL, connect_timeout=10)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(urlparse(SERVICES_URL)._replace(scheme=DRIVER, path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="basket")])
def basket():
    yield dg.MaterializeResult(metadata={"items": 3})
    yield dg.AssetCheckResult(check_name="positive", passed=True)


def test_runs_events_and_checks_are_stored_in_postgres(database, tmp_path, monkeypatch):
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, database)
    path = write_instance_yaml(tmp_path, Settings(dagster_postgres_url=database), max_concurrent_runs=1)
    assert "propensity@" not in path.read_text() and POSTGRES_URL_VARIABLE in path.read_text()

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([basket], instance=instance)
        assert result.success
        run_id = result.run_id

    with dg.DagsterInstance.from_config(str(tmp_path)) as reopened:  # what the webserver and the daemon would see
        assert reopened.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        event = reopened.get_latest_materialization_event(dg.AssetKey("basket"))
        assert event.asset_materialization.metadata["items"].value == 3
        check = reopened.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("basket"), "positive")]
        )
        assert next(iter(check.values())).run_id == run_id

    libpq = database.replace(f"{DRIVER}://", "postgresql://")
    with psycopg2.connect(libpq, connect_timeout=10) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] > 5


def test_without_the_url_the_instance_is_sqlite(tmp_path):
    path = write_instance_yaml(tmp_path, Settings())
    assert "storage" not in path.read_text()
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"

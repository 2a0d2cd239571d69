"""The aws profile's lake (propensity.lake.S3Lake) against moto's S3 server over real HTTP: what a reader sees while
tables and partitions are replaced, what a fresh working copy pulls, and what a failure says."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from propensity.lake import MANIFEST, LakeError, S3Lake
from tests.s3_server import create_bucket, s3_client, s3_server

BUCKET = "propensity-lake-test"


@pytest.fixture(scope="module")
def s3_url(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        create_bucket(url, BUCKET)
        yield url


@pytest.fixture
def prefix(request) -> str:
    return f"lake/{request.node.name}"


def lake_at(url: str, root, prefix: str, client=None) -> S3Lake:
    return S3Lake(root, f"s3://{BUCKET}/{prefix}", client or s3_client(url))


def write_parts(directory, frames: dict[str, pd.DataFrame]) -> None:
    for name, frame in frames.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(directory / name, index=False)
    (directory / "_SUCCESS").write_text("")  # what Spark leaves beside its parts: never uploaded


def keys(url: str, prefix: str) -> list[str]:
    listed = s3_client(url).list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return sorted(item["Key"][len(prefix) + 1 :] for item in listed.get("Contents", []))


def test_a_replaced_table_is_what_a_fresh_working_copy_pulls(s3_url, prefix, tmp_path):
    writer = lake_at(s3_url, tmp_path / "writer", prefix)
    with writer.replace("sessions") as staging:
        write_parts(
            staging, {"part-0.parquet": pd.DataFrame({"x": [1, 2]}), "part-1.parquet": pd.DataFrame({"x": [3]})}
        )
    assert keys(s3_url, prefix) == ["sessions/_manifest.json", "sessions/part-0.parquet", "sessions/part-1.parquet"]
    assert sorted(pd.read_parquet(writer.path("sessions"))["x"]) == [1, 2, 3]  # the writer's own copy is in place

    reader = lake_at(s3_url, tmp_path / "reader", prefix)
    assert sorted(pd.read_parquet(reader.pull("sessions"))["x"]) == [1, 2, 3]

    # Rewritten with one part: the old parts go, in the lake and in every working copy that pulls again.
    with writer.replace("sessions") as staging:
        write_parts(staging, {"part-0.parquet": pd.DataFrame({"x": [9]})})
    assert keys(s3_url, prefix) == ["sessions/_manifest.json", "sessions/part-0.parquet"]
    assert pd.read_parquet(reader.pull("sessions"))["x"].tolist() == [9]
    assert sorted(p.name for p in reader.path("sessions").iterdir()) == ["part-0.parquet"]


def test_a_failed_write_leaves_the_table_as_it_was(s3_url, prefix, tmp_path):
    lake = lake_at(s3_url, tmp_path / "copy", prefix)
    with lake.replace("sessions") as staging:
        write_parts(staging, {"part-0.parquet": pd.DataFrame({"x": [1]})})
    with pytest.raises(RuntimeError, match="spark died"):
        with lake.replace("sessions") as staging:
            write_parts(staging, {"part-0.parquet": pd.DataFrame({"x": [2]})})
            raise RuntimeError("spark died")
    assert pd.read_parquet(lake.pull("sessions"))["x"].tolist() == [1]
    assert pd.read_parquet(lake_at(s3_url, tmp_path / "fresh", prefix).pull("sessions"))["x"].tolist() == [1]
    assert [p.name for p in lake.path("sessions").parent.iterdir() if p.name.startswith(".sessions")] == []


def test_partitions_are_replaced_one_at_a_time_and_read_together(s3_url, prefix, tmp_path):
    lake = lake_at(s3_url, tmp_path / "copy", prefix)
    for day, values in (("2026-03-01", [1, 2]), ("2026-03-02", [3])):
        with lake.replace("decision_log", f"date={day}") as staging:
            pd.DataFrame({"x": values}).to_parquet(staging / "data.parquet", index=False)
    with lake.replace("decision_log", "date=2026-03-01") as staging:
        pd.DataFrame({"x": [7]}).to_parquet(staging / "data.parquet", index=False)

    fresh = lake_at(s3_url, tmp_path / "fresh", prefix)
    both = pd.read_parquet(fresh.pull("decision_log"))
    assert both.groupby("date", observed=True)["x"].sum().to_dict() == {"2026-03-01": 7, "2026-03-02": 3}
    one = pd.read_parquet(lake_at(s3_url, tmp_path / "one", prefix).pull("decision_log", "date=2026-03-02"))
    assert one["x"].tolist() == [3]


def test_a_partition_of_a_table_written_whole_is_governed_by_the_tables_manifest(s3_url, prefix, tmp_path):
    lake = lake_at(s3_url, tmp_path / "copy", prefix)
    with lake.replace("raw_events") as staging:
        write_parts(staging, {"event_date=2026-03-01/part-0.parquet": pd.DataFrame({"x": [1]})})
    # Left by a write that died before its manifest: no reader sees it, the next replacement removes it.
    client = s3_client(s3_url)
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/raw_events/event_date=2026-03-01/part-9.parquet", Body=b"junk")
    fresh = lake_at(s3_url, tmp_path / "fresh", prefix)
    assert [p.name for p in fresh.pull("raw_events", "event_date=2026-03-01").iterdir()] == ["part-0.parquet"]
    assert pd.read_parquet(fresh.pull("raw_events"))["x"].tolist() == [1]
    with lake.replace("raw_events") as staging:
        write_parts(staging, {"event_date=2026-03-01/part-0.parquet": pd.DataFrame({"x": [2]})})
    assert keys(s3_url, prefix) == ["raw_events/_manifest.json", "raw_events/event_date=2026-03-01/part-0.parquet"]


def test_files_written_whole_and_removed_by_pattern(s3_url, prefix, tmp_path):
    lake = lake_at(s3_url, tmp_path / "copy", prefix)
    for day in ("2026-03-01", "2026-03-02"):
        for batch in ("a", "b"):
            with lake.writing_file("landing", f"event_date={day}", f"{batch}.parquet") as path:
                pd.DataFrame({"batch": [batch], "day": [day]}).to_parquet(path, index=False)
    fresh = lake_at(s3_url, tmp_path / "fresh", prefix)
    assert sorted(p.name for p in fresh.pull("landing", "event_date=2026-03-02").iterdir()) == [
        "a.parquet",
        "b.parquet",
    ]

    # A batch landed again: its files go from every day, including days this working copy never pulled.
    assert fresh.remove_matching("landing", "event_date=*/a.parquet") == [
        "event_date=2026-03-01/a.parquet",
        "event_date=2026-03-02/a.parquet",
    ]
    assert keys(s3_url, prefix) == [
        "landing/event_date=2026-03-01/b.parquet",
        "landing/event_date=2026-03-02/b.parquet",
    ]
    assert sorted(p.name for p in lake.pull("landing", "event_date=2026-03-01").iterdir()) == ["b.parquet"]


def test_only_changed_files_are_downloaded_again(s3_url, prefix, tmp_path):
    client = s3_client(s3_url)
    gets = []
    client.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"]))
    writer = lake_at(s3_url, tmp_path / "writer", prefix)
    with writer.replace("sessions") as staging:
        write_parts(staging, {f"part-{i}.parquet": pd.DataFrame({"x": [i]}) for i in range(3)})
    reader = lake_at(s3_url, tmp_path / "reader", prefix, client)
    reader.pull("sessions")
    assert sorted(k.rsplit("/", 1)[-1] for k in gets) == [
        MANIFEST,
        "part-0.parquet",
        "part-1.parquet",
        "part-2.parquet",
    ]
    gets.clear()
    reader.pull("sessions")
    assert [k.rsplit("/", 1)[-1] for k in gets] == [MANIFEST]

    # A file of the working copy changed by hand is not the lake's any more: it is fetched again.
    part = reader.path("sessions", "part-1.parquet")
    pd.DataFrame({"x": [100]}).to_parquet(part, index=False)
    os.utime(part, ns=(1, 1))
    gets.clear()
    assert sorted(pd.read_parquet(reader.pull("sessions"))["x"]) == [0, 1, 2]
    assert sorted(k.rsplit("/", 1)[-1] for k in gets) == [MANIFEST, "part-1.parquet"]


def test_a_file_changed_behind_its_manifest_is_never_read(s3_url, prefix, tmp_path):
    """A reader that lists while a writer replaces gets the old set or the new one: a part whose bytes are not the
    ones its manifest names (here: overwritten behind it, for good) is caught and the pull refuses."""
    lake = lake_at(s3_url, tmp_path / "copy", prefix)
    with lake.replace("sessions") as staging:
        write_parts(staging, {"part-0.parquet": pd.DataFrame({"x": [1]})})
    s3_client(s3_url).put_object(Bucket=BUCKET, Key=f"{prefix}/sessions/part-0.parquet", Body=b"not the same bytes")
    with pytest.raises(LakeError, match=f"s3://{BUCKET}/{prefix}/sessions was replaced during each of 3 pulls"):
        lake_at(s3_url, tmp_path / "fresh", prefix).pull("sessions")


def test_a_missing_table_pulls_nothing(s3_url, prefix, tmp_path):
    lake = lake_at(s3_url, tmp_path / "copy", prefix)
    assert not lake.pull("never_written").exists()
    with lake.replace("gone") as staging:
        write_parts(staging, {"part-0.parquet": pd.DataFrame({"x": [1]})})
    stale = lake_at(s3_url, tmp_path / "stale", prefix)
    assert stale.pull("gone").exists()
    s3_client(s3_url).delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": f"{prefix}/gone/{k}"} for k in (MANIFEST, "part-0.parquet")]}
    )
    assert not stale.pull("gone").exists()  # what the lake no longer holds leaves the working copy too


def test_a_manifest_that_is_not_one_is_named(s3_url, prefix, tmp_path):
    s3_client(s3_url).put_object(Bucket=BUCKET, Key=f"{prefix}/sessions/{MANIFEST}", Body=json.dumps({"x": 1}))
    with pytest.raises(LakeError, match=f"s3://{BUCKET}/{prefix}/sessions/_manifest.json is not a lake manifest"):
        lake_at(s3_url, tmp_path / "copy", prefix).pull("sessions")


def test_failures_say_what_failed_and_what_to_check(s3_url, tmp_path):
    missing = S3Lake(tmp_path / "a", "s3://no-such-lake-bucket/lake", s3_client(s3_url))
    with pytest.raises(LakeError, match="bucket no-such-lake-bucket does not exist .* PROPENSITY_LAKE_URI"):
        missing.pull("sessions")
    with pytest.raises(LakeError, match="bucket no-such-lake-bucket does not exist"):
        with missing.replace("sessions") as staging:
            (staging / "part-0.parquet").write_bytes(b"x")

    closed = s3_client(s3_url.rsplit(":", 1)[0] + ":9")  # nothing listens on port 9
    with pytest.raises(LakeError, match="S3 could not be reached to list s3://propensity-lake-test/lake/sessions"):
        S3Lake(tmp_path / "b", f"s3://{BUCKET}/lake", closed).pull("sessions")

    for bad in ("s3://UPPER/lake", "s3:///lake", "file:///tmp/lake", "s3://ok-bucket/a//b"):
        with pytest.raises(LakeError):
            S3Lake(tmp_path / "c", bad, closed)
    for table, parts in (("..", ()), ("_feast", ()), ("sessions", ("../x",)), ("sessions", ("",))):
        with pytest.raises(LakeError, match="not a"):
            S3Lake(tmp_path / "c", f"s3://{BUCKET}/lake", closed).path(table, *parts)


def test_the_aws_registry_is_on_s3_and_offline_reads_use_this_machines_own(tmp_path):
    from propensity.feature_store import registry_is_shared, repo_config

    shared = repo_config("aws", home=tmp_path, redis_url="rediss://:t@cache.example:6379/0", lake_uri="s3://b-1/x/")
    assert shared.registry.path == "s3://b-1/x/_feast/registry.pb" and shared.online_store.type == "redis"
    own = repo_config(
        "aws", home=tmp_path, redis_url="redis://h:6379/0", lake_uri="s3://b-1/x", working_copy_registry=True
    )
    assert own.registry.path == str(tmp_path / "feast" / "registry.db")
    assert [registry_is_shared(p) for p in ("local", "redis", "aws")] == [False, False, True]
    with pytest.raises(ValueError, match="set PROPENSITY_LAKE_URI"):
        repo_config("aws", home=tmp_path, redis_url="redis://h:6379/0")

"""propensity.datasets against a local HTTP server (no network): fetching, verifying, refusing, retrying, the mirror."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from propensity import datasets
from propensity.datasets import (
    DATASETS,
    Dataset,
    DatasetCorrupt,
    DatasetFile,
    DatasetMissing,
    DownloadError,
    dataset_file,
    fetch,
    semicolons_to_commas,
    verify,
)
from propensity.settings import PROJECT_ROOT

CONTENT = b"user_id,item_id,behavior\n" + b"".join(b"%d,%d,pv\n" % (i, i * 7) for i in range(5000))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    declared_length: int | None = None  # more than len(body): the server closes the connection early
    delay_s: float = 0.0


@dataclass
class Publisher:
    """A local stand-in for raw.githubusercontent.com: replies per path, in order (the last one repeats)."""

    base_url: str = ""
    routes: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def publish(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return self.base_url + path

    def next_reply(self, path: str) -> Reply | None:
        self.requests.append(path)
        replies = self.routes.get(path)
        if not replies:
            return None
        return replies.pop(0) if len(replies) > 1 else replies[0]


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    state = Publisher()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            reply = state.next_reply(self.path) or Reply(b"not found", status=404)
            time.sleep(reply.delay_s)
            self.send_response(reply.status)
            self.send_header("Content-Length", str(reply.declared_length or len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            pass  # a client that timed out and left makes the handler's write fail: expected here

    server = Server(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def one_file_catalogue(url: str, content: bytes = CONTENT, **overrides) -> dict[str, Dataset]:
    file = DatasetFile(name="events.csv", size=len(content), sha256=sha256(content), url=url)
    for name, value in overrides.items():
        file = DatasetFile(**{**file.__dict__, name: value})
    return {"shop": Dataset("shop", "shop_events", "A test shop", "test licence", (file,))}


def run_fetch(catalogue, data_dir: Path, lines: list[str] | None = None, **options):
    options = {"mirror": None, "timeout_s": 5.0, "attempts": 3, "backoff_s": 0.0} | options
    return fetch(data_dir=data_dir, datasets=catalogue, log=(lines if lines is not None else []).append, **options)


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.rglob("*")) if directory.exists() else []


def test_fetch_downloads_verifies_and_a_second_fetch_makes_no_request(publisher, tmp_path):
    catalogue = one_file_catalogue(publisher.publish("/o/r/c/events.csv", Reply(CONTENT)))
    lines: list[str] = []

    [report] = run_fetch(catalogue, tmp_path, lines)

    target = tmp_path / "shop_events" / "events.csv"
    assert target.read_bytes() == CONTENT
    assert (report.source, report.origin, report.path) == ("download", publisher.base_url + "/o/r/c/events.csv", target)
    assert leftovers(tmp_path) == ["events.csv", "shop_events"]
    assert any("downloaded from http://127.0.0.1" in line and "sha256 ok" in line for line in lines)
    assert publisher.requests == ["/o/r/c/events.csv"]

    [again] = run_fetch(catalogue, tmp_path, lines)
    assert again.source == "present"
    assert publisher.requests == ["/o/r/c/events.csv"]
    assert lines[-1].startswith("[data] 1 file in") and "1 present" in lines[-1]
    assert dataset_file("shop", data_dir=tmp_path, datasets=catalogue) == target


def test_wrong_body_is_refused_with_both_digests_and_leaves_nothing(publisher, tmp_path):
    wrong = CONTENT.replace(b"pv", b"px")
    catalogue = one_file_catalogue(publisher.publish("/events.csv", Reply(wrong)))

    with pytest.raises(DownloadError) as raised:
        run_fetch(catalogue, tmp_path)

    message = str(raised.value)
    assert sha256(CONTENT) in message and sha256(wrong) in message
    assert "dataset shop" in message and "events.csv" in message and publisher.base_url in message
    assert "\n" not in message
    assert leftovers(tmp_path / "shop_events") == []
    assert publisher.requests == ["/events.csv"]  # a digest mismatch is not retried


def test_body_cut_short_is_reported_as_interrupted_and_leaves_nothing(publisher, tmp_path):
    catalogue = one_file_catalogue(
        publisher.publish("/events.csv", Reply(CONTENT[:1000], declared_length=len(CONTENT)))
    )

    with pytest.raises(DownloadError) as raised:
        run_fetch(catalogue, tmp_path, attempts=2)

    message = str(raised.value)
    assert "interrupted" in message
    assert re.search(rf"\b1000 of {len(CONTENT)} bytes", message), message
    assert "after 2 attempts" in message
    assert publisher.requests == ["/events.csv", "/events.csv"]  # an interrupted body is transient: retried
    assert leftovers(tmp_path / "shop_events") == []


def test_transient_503_is_retried_then_succeeds(publisher, tmp_path):
    url = publisher.publish("/events.csv", Reply(b"busy", status=503), Reply(CONTENT))
    lines: list[str] = []

    [report] = run_fetch(one_file_catalogue(url), tmp_path, lines)

    assert report.source == "download"
    assert (tmp_path / "shop_events" / "events.csv").read_bytes() == CONTENT
    assert publisher.requests == ["/events.csv", "/events.csv"]
    assert any("HTTP 503" in line and "trying again" in line for line in lines)


def test_404_is_not_retried_and_is_reported_with_the_url(publisher, tmp_path):
    url = publisher.base_url + "/nowhere/events.csv"

    with pytest.raises(DownloadError) as raised:
        run_fetch(one_file_catalogue(url), tmp_path, attempts=5)

    assert url in str(raised.value) and "HTTP 404" in str(raised.value)
    assert publisher.requests == ["/nowhere/events.csv"]
    assert leftovers(tmp_path / "shop_events") == []


def test_timeout_is_retried_then_reported(publisher, tmp_path):
    url = publisher.publish("/events.csv", Reply(CONTENT, delay_s=1.0))

    with pytest.raises(DownloadError) as raised:
        run_fetch(one_file_catalogue(url), tmp_path, timeout_s=0.2, attempts=2)

    assert "timed out" in str(raised.value) and "after 2 attempts" in str(raised.value)
    assert publisher.requests == ["/events.csv", "/events.csv"]
    assert leftovers(tmp_path / "shop_events") == []


def test_no_network_without_a_mirror_suggests_the_mirror(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(DownloadError) as raised:
        run_fetch(one_file_catalogue(f"http://127.0.0.1:{port}/events.csv"), tmp_path, attempts=2)

    assert "no internet? set PROPENSITY_DATA_MIRROR to a directory holding the same files" in str(raised.value)


def test_fetch_stops_at_the_first_failure(publisher, tmp_path):
    good = DatasetFile("b.csv", len(CONTENT), sha256(CONTENT), publisher.publish("/b.csv", Reply(CONTENT)))
    missing = DatasetFile("a.csv", len(CONTENT), sha256(CONTENT), publisher.base_url + "/a.csv")
    catalogue = {"shop": Dataset("shop", "shop_events", "A test shop", "test licence", (missing, good))}

    with pytest.raises(DownloadError, match="a.csv"):
        run_fetch(catalogue, tmp_path)

    assert publisher.requests == ["/a.csv"]
    assert leftovers(tmp_path / "shop_events") == []


def test_the_mirror_is_used_instead_of_the_network(publisher, tmp_path):
    catalogue = one_file_catalogue(publisher.publish("/events.csv", Reply(CONTENT)))
    mirror = tmp_path / "mirror"
    (mirror / "shop_events").mkdir(parents=True)
    (mirror / "shop_events" / "events.csv").write_bytes(CONTENT)
    lines: list[str] = []

    [report] = run_fetch(catalogue, tmp_path / "data", lines, mirror=mirror)

    assert (tmp_path / "data" / "shop_events" / "events.csv").read_bytes() == CONTENT
    assert (report.source, report.origin) == ("mirror", str(mirror / "shop_events" / "events.csv"))
    assert publisher.requests == []
    assert any(f"from mirror {mirror}" in line and "sha256 ok" in line for line in lines)


def test_a_corrupt_mirror_file_is_refused_with_both_digests(publisher, tmp_path):
    catalogue = one_file_catalogue(publisher.publish("/events.csv", Reply(CONTENT)))
    corrupt = CONTENT[:-10]
    (tmp_path / "mirror" / "shop_events").mkdir(parents=True)
    (tmp_path / "mirror" / "shop_events" / "events.csv").write_bytes(corrupt)

    with pytest.raises(DownloadError) as raised:
        run_fetch(catalogue, tmp_path / "data", mirror=tmp_path / "mirror")

    message = str(raised.value)
    assert "from mirror" in message and str(tmp_path / "mirror") in message
    assert sha256(CONTENT) in message and sha256(corrupt) in message
    assert publisher.requests == []  # a bad mirror is an error to fix, not a reason to go to the network
    assert leftovers(tmp_path / "data" / "shop_events") == []


def test_a_mirror_without_the_file_falls_back_to_the_download(publisher, tmp_path):
    catalogue = one_file_catalogue(publisher.publish("/events.csv", Reply(CONTENT)))
    (tmp_path / "mirror").mkdir()

    [report] = run_fetch(catalogue, tmp_path / "data", mirror=tmp_path / "mirror")

    assert report.source == "download"
    assert publisher.requests == ["/events.csv"]


PUBLISHED = CONTENT.replace(b",", b";")


def transformed_catalogue(url: str, published_sha256: str) -> dict[str, Dataset]:
    return one_file_catalogue(
        url, published_sha256=published_sha256, published_size=len(PUBLISHED), transform=semicolons_to_commas
    )


def test_a_transformed_file_checks_the_published_then_the_stored_digest(publisher, tmp_path):
    catalogue = transformed_catalogue(publisher.publish("/events.csv", Reply(PUBLISHED)), sha256(PUBLISHED))

    run_fetch(catalogue, tmp_path)

    assert (tmp_path / "shop_events" / "events.csv").read_bytes() == CONTENT
    assert dataset_file("shop", data_dir=tmp_path, datasets=catalogue).read_bytes() == CONTENT


def test_a_transformed_file_with_a_wrong_published_digest_is_refused(publisher, tmp_path):
    wrong = "0" * 64
    catalogue = transformed_catalogue(publisher.publish("/events.csv", Reply(PUBLISHED)), wrong)

    with pytest.raises(DownloadError) as raised:
        run_fetch(catalogue, tmp_path)

    assert "published" in str(raised.value)
    assert wrong in str(raised.value) and sha256(PUBLISHED) in str(raised.value)
    assert leftovers(tmp_path / "shop_events") == []


def test_a_transform_whose_result_is_wrong_is_refused(publisher, tmp_path):
    catalogue = one_file_catalogue(
        publisher.publish("/events.csv", Reply(PUBLISHED)), published_sha256=sha256(PUBLISHED), transform=bytes.upper
    )

    with pytest.raises(DownloadError) as raised:
        run_fetch(catalogue, tmp_path)

    assert "after transform" in str(raised.value) and sha256(PUBLISHED.upper()) in str(raised.value)
    assert leftovers(tmp_path / "shop_events") == []


def test_a_present_corrupt_file_is_replaced(publisher, tmp_path):
    catalogue = one_file_catalogue(publisher.publish("/events.csv", Reply(CONTENT)))
    target = tmp_path / "shop_events" / "events.csv"
    target.parent.mkdir()
    target.write_bytes(b"truncated")
    lines: list[str] = []

    [report] = run_fetch(catalogue, tmp_path, lines)

    assert target.read_bytes() == CONTENT
    assert report.replaced_corrupt and report.source == "download"
    assert any("corrupt" in line and sha256(b"truncated") in line for line in lines)


def test_a_stale_part_file_from_a_killed_fetch_is_removed(publisher, tmp_path):
    catalogue = one_file_catalogue(publisher.publish("/events.csv", Reply(CONTENT)))
    (tmp_path / "shop_events").mkdir()
    (tmp_path / "shop_events" / ".events.csv.abc123.part").write_bytes(b"half")

    run_fetch(catalogue, tmp_path)

    assert leftovers(tmp_path / "shop_events") == ["events.csv"]


def test_dataset_file_on_a_missing_file_says_run_make_data_in_one_line(tmp_path):
    catalogue = one_file_catalogue("http://127.0.0.1:9/events.csv")

    with pytest.raises(DatasetMissing) as raised:
        dataset_file("shop", data_dir=tmp_path, datasets=catalogue)

    message = str(raised.value)
    assert isinstance(raised.value, FileNotFoundError)
    assert "\n" not in message and "run make data" in message
    assert message.startswith("dataset shop: events.csv is not in ") and str(tmp_path / "shop_events") in message


def test_dataset_file_on_a_corrupt_file_gives_both_digests(tmp_path):
    catalogue = one_file_catalogue("http://127.0.0.1:9/events.csv")
    (tmp_path / "shop_events").mkdir()
    (tmp_path / "shop_events" / "events.csv").write_bytes(b"not the file")

    with pytest.raises(DatasetCorrupt) as raised:
        dataset_file("shop", "events.csv", data_dir=tmp_path, datasets=catalogue)

    message = str(raised.value)
    assert sha256(CONTENT) in message and sha256(b"not the file") in message
    assert "\n" not in message and "make data" in message


def test_dataset_file_hashes_once_until_the_file_changes(tmp_path, monkeypatch):
    catalogue = one_file_catalogue("http://127.0.0.1:9/events.csv")
    target = tmp_path / "shop_events" / "events.csv"
    target.parent.mkdir()
    target.write_bytes(CONTENT)
    hashed: list[Path] = []
    real_sha256_of = datasets._sha256_of
    monkeypatch.setattr(datasets, "_sha256_of", lambda path: hashed.append(path) or real_sha256_of(path))

    for _ in range(3):
        assert dataset_file("shop", data_dir=tmp_path, datasets=catalogue) == target
    assert hashed == [target]

    target.write_bytes(CONTENT[:-1] + b"X")  # same size, new content and mtime
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    with pytest.raises(DatasetCorrupt):
        dataset_file("shop", data_dir=tmp_path, datasets=catalogue)
    assert hashed == [target, target]


def test_dataset_file_needs_a_name_when_the_dataset_has_several_files(tmp_path):
    with pytest.raises(ValueError, match="has 2 files"):
        dataset_file("taobao", data_dir=tmp_path)
    with pytest.raises(KeyError, match="no file"):
        dataset_file("taobao", "nonesuch.csv", data_dir=tmp_path)
    with pytest.raises(KeyError, match="unknown dataset"):
        dataset_file("nonesuch", data_dir=tmp_path)


def test_verify_lists_what_is_missing(tmp_path):
    problems = verify(data_dir=tmp_path)

    assert len(problems) == sum(len(dataset.files) for dataset in DATASETS.values()) == 7
    assert all(isinstance(problem, DatasetMissing) for problem in problems)


def test_the_real_catalogue_is_well_formed():
    assert list(DATASETS) == ["taobao", "diginetica", "uci", "hillstrom"]
    raw_url = re.compile(r"^https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+$")
    hex64 = re.compile(r"^[0-9a-f]{64}$")
    names: list[str] = []
    for key, dataset in DATASETS.items():
        assert dataset.key == key and dataset.directory and dataset.title and dataset.licence
        assert dataset.files and dataset.urls == tuple(file.url for file in dataset.files)
        for file in dataset.files:
            assert hex64.match(file.sha256), file
            assert raw_url.match(file.url), file.url
            assert file.size > 0 and "/" not in file.name
            assert (file.transform is None) == (file.published_sha256 is None)
            if file.published_sha256 is not None:
                assert hex64.match(file.published_sha256) and file.published_sha256 != file.sha256
            names.append(f"{dataset.directory}/{file.name}")
    assert len(names) == len(set(names)) == 7
    assert len({dataset.directory for dataset in DATASETS.values()}) == len(DATASETS)
    assert DATASETS["uci"].file().transform is semicolons_to_commas
    assert semicolons_to_commas(b"a;b;;c\r\n") == b"a,b,,c\r\n"


def test_the_data_directory_holds_the_catalogue_files():
    # `make test` runs `make data` first: every file there must be the catalogue's, byte for byte.
    assert [str(problem) for problem in verify()] == []
    # The published UCI copy is the stored one with ';' for ',': its digest is the published one in the catalogue.
    uci = DATASETS["uci"].file()
    published = dataset_file("uci").read_bytes().replace(b",", b";")
    assert sha256(published) == uci.published_sha256 and len(published) == uci.published_size


def run_cli(command: str, **variables: str) -> subprocess.CompletedProcess:
    """`python -m propensity.datasets COMMAND` (what `make data` runs) with only these PROPENSITY_DATA* settings."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PROPENSITY_DATA")}
    return subprocess.run(
        [sys.executable, "-m", "propensity.datasets", command],
        cwd=PROJECT_ROOT,
        env=environment | variables,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_verify_on_an_empty_data_dir_exits_1_and_says_make_data(tmp_path):
    result = run_cli("verify", PROPENSITY_DATA=str(tmp_path))

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert any(line.startswith("[data] ") and "make data" in line for line in output.splitlines()), output
    assert str(tmp_path) in output


def test_make_data_fetches_every_real_file_from_a_server_standing_in_for_the_publishers(publisher, tmp_path):
    """`make data`'s own command over HTTP: the real catalogue's URLs, served locally, every digest checked."""
    for dataset in DATASETS.values():
        for file in dataset.files:
            stored = dataset_file(dataset.key, file.name).read_bytes()  # the copies `make data` already verified
            # UCI is published with ';' separators and stored with ','; every other file as published
            published = stored.replace(b",", b";") if file.transform is not None else stored
            publisher.publish(file.url.removeprefix(datasets.GITHUB_RAW), Reply(published))
    result = run_cli("fetch", PROPENSITY_DATA=str(tmp_path / "data"), PROPENSITY_DATA_BASE_URL=publisher.base_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(publisher.requests) == sum(len(d.files) for d in DATASETS.values()) == 7
    assert verify(data_dir=tmp_path / "data") == []
    assert "7 downloaded" in result.stdout and not [p for p in (tmp_path / "data").rglob(".*.part")]

"""The real datasets: what they are, where they are published, and the only way code finds one of their files.

Each dataset is a directory of files under the data directory (`PROPENSITY_DATA`, default `data/` in the checkout):
`<data dir>/<dataset directory>/<file name>`. Every file is pinned by size and sha256 and published at a fixed commit
of a public GitHub repository. `fetch` (`make data`, or `python -m propensity.datasets fetch`) puts the missing ones
there: it copies them from a mirror when `PROPENSITY_DATA_MIRROR` names a directory with the same layout (for machines
without internet), otherwise it downloads them. A copy is verified before it appears under its final name, so a file
that is there is whole. `dataset_file(key, name)` returns the verified path of one file, or says to run `make data`.

The licences are the publishers' (see `Dataset.licence`); the project never commits these files.

CLI: `python -m propensity.datasets fetch [KEY ...] | verify | list`.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Literal

from propensity.settings import SettingsError, settings

__all__ = [
    "DATASETS",
    "FROM_SETTINGS",
    "Dataset",
    "DatasetCorrupt",
    "DatasetFile",
    "DatasetMissing",
    "DownloadError",
    "FetchReport",
    "dataset_file",
    "fetch",
    "github_raw_url",
    "main",
    "semicolons_to_commas",
    "verify",
]

CHUNK_BYTES = 1 << 16
USER_AGENT = "propensity-datasets/1 (python urllib)"
OFFLINE_HINT = "no internet? set PROPENSITY_DATA_MIRROR to a directory holding the same files"


GITHUB_RAW = "https://raw.githubusercontent.com"


def github_raw_url(repository: str, commit: str, path: str) -> str:
    """Where GitHub publishes `path` of `repository` ("owner/name") at one commit: pinned, so the bytes never change."""
    return f"{GITHUB_RAW}/{repository}/{commit}/{path}"


def published_via(datasets: Mapping[str, Dataset], base_url: str) -> dict[str, Dataset]:
    """The catalogue with GitHub's raw host replaced by `base_url` (PROPENSITY_DATA_BASE_URL): a proxy of
    raw.githubusercontent.com inside a company network, or a test server standing in for the publishers. The
    digests stay the publishers', so whatever serves the files cannot change them."""
    base = base_url.rstrip("/")
    return {
        key: replace(
            dataset,
            files=tuple(
                replace(f, url=base + f.url[len(GITHUB_RAW) :]) if f.url.startswith(GITHUB_RAW) else f
                for f in dataset.files
            ),
        )
        for key, dataset in datasets.items()
    }


def semicolons_to_commas(data: bytes) -> bytes:
    """Replace every ';' by ',' (the published UCI copy separates fields with ';'; no field holds either)."""
    return data.replace(b";", b",")


@dataclass(frozen=True)
class DatasetFile:
    """One file as stored under the data directory, and where it is published.

    Without a transform the published bytes are the stored bytes. With one, the download must match
    `published_sha256` (and `published_size` when given), and `transform(download)` must match `size` and `sha256`.
    """

    name: str
    size: int
    sha256: str
    url: str
    published_sha256: str | None = None
    transform: Callable[[bytes], bytes] | None = None
    published_size: int | None = None


@dataclass(frozen=True)
class Dataset:
    key: str
    directory: str
    title: str
    licence: str
    files: tuple[DatasetFile, ...]

    @property
    def urls(self) -> tuple[str, ...]:
        """Where the files are published, in file order."""
        return tuple(file.url for file in self.files)

    def file(self, name: str | None = None) -> DatasetFile:
        """The named file; the name may be left out only when the dataset has a single file."""
        if name is None:
            if len(self.files) != 1:
                raise ValueError(f"dataset {self.key} has {len(self.files)} files, name one of: {self._names()}")
            return self.files[0]
        for file in self.files:
            if file.name == name:
                return file
        raise KeyError(f"dataset {self.key} has no file {name!r}; its files: {self._names()}")

    def _names(self) -> str:
        return ", ".join(file.name for file in self.files)


_DIGINETICA_REPO, _DIGINETICA_COMMIT = "RecoHut-Datasets/diginetica", "2ae53aec9d4ae6b9cd18d0868117d0dad3f1bd81"

DATASETS: Mapping[str, Dataset] = MappingProxyType(
    {
        dataset.key: dataset
        for dataset in (
            Dataset(
                key="taobao",
                directory="taobao_user_behavior",
                title="Taobao UserBehavior (Alibaba / Tianchi)",
                licence="Tianchi dataset terms: research / non-commercial use (text not verified)",
                files=(
                    DatasetFile(
                        name="userbehavior_window_20171126T0100Z_0310Z.csv",
                        size=4_044_757,
                        sha256="ac78f25e2dc73f7734d8ab58152a4b7af577836b625a60502e12c4bbe104950e",
                        url=github_raw_url(
                            "jason-wang1/UserBehaviorAnalysis",
                            "fd73088edbb2daeedcb79c28ca4ba5aeef286cfe",
                            "HotItemsAnalysis/src/main/resources/UserBehavior.csv",
                        ),
                    ),
                    DatasetFile(
                        name="userbehavior_first43users_full_history.csv",
                        size=161_867,
                        sha256="e6f47712a2ae149885993ac7b520cf5ba3b099b2e52f90cfddd912455c710e6d",
                        url=github_raw_url(
                            "fattydelivery/clothes-shopping-website-v1.0",
                            "ee6cc5a462d49102d4583380619a122b31713c0b",
                            "UserBehavior.csv",
                        ),
                    ),
                ),
            ),
            Dataset(
                key="diginetica",
                directory="diginetica_cikm2016",
                title="DIGINETICA CIKM Cup 2016 Track 2",
                licence="distributed for the competition; redistribution terms unknown: research use",
                files=(
                    DatasetFile(
                        name="train-item-views_sessions_1-3999.csv",
                        size=395_354,
                        sha256="98da96e05c87ef12b739e4bfd9bc7b4864106ee77371f1db9eb4413e3f78d37e",
                        url=github_raw_url(
                            "CRIPAC-DIG/SR-GNN",
                            "cf724b1a748e5a238dd008aaac8b68e3039fd581",
                            "datasets/sample_train-item-views.csv",
                        ),
                    ),
                    DatasetFile(
                        name="train-purchases.csv",
                        size=749_277,
                        sha256="d6d3ce5b2df5d75a87fb0621f384aaf187ee1736bc46fcc58bb303ddc38d0658",
                        url=github_raw_url(_DIGINETICA_REPO, _DIGINETICA_COMMIT, "train-purchases.csv"),
                    ),
                    DatasetFile(
                        name="product-categories.csv",
                        size=1_979_575,
                        sha256="9e9566e34548e5d1b8d05ed6dd0222fbb8a7b7b2a8a18cdf28c1a4eba8f9e42c",
                        url=github_raw_url(_DIGINETICA_REPO, _DIGINETICA_COMMIT, "product-categories.csv"),
                    ),
                ),
            ),
            Dataset(
                key="uci",
                directory="uci_online_shoppers_intention",
                title="UCI Online Shoppers Purchasing Intention (Sakar et al. 2019)",
                licence="CC BY 4.0",
                files=(
                    DatasetFile(
                        name="online_shoppers_intention.csv",
                        size=1_072_063,
                        sha256="b3055ee355f59134d851d32641183cb4a8b45def7124d2f50442a042f358e0d9",
                        url=github_raw_url(
                            "remijul/dataset",
                            "2932bc420070530ea009719fad7dd688d3a3bb61",
                            "online_shoppers_intention.csv",
                        ),
                        published_sha256="9895055fb6c7b5376c93a850c2707522646a1cadf234cdc687fcc38a2cde180b",
                        published_size=1_072_063,
                        transform=semicolons_to_commas,
                    ),
                ),
            ),
            Dataset(
                key="hillstrom",
                directory="hillstrom_email_uplift",
                title="Hillstrom MineThatData e-mail challenge (2008)",
                licence="no explicit licence; released publicly for the challenge",
                files=(
                    DatasetFile(
                        name="hillstrom.csv",
                        size=3_964_975,
                        sha256="ff9e59285e9dc3f5fa3e0975419e6631ea5bdccd65d818991473d2367e02979c",
                        url=github_raw_url(
                            "carlosquintanillaa/Datasets", "86100ca06e114803df9b691b3fe904cc36c350ea", "hillstrom.csv"
                        ),
                    ),
                ),
            ),
        )
    }
)


class DatasetMissing(FileNotFoundError):
    """A dataset file is not in the data directory (`make data` fetches it)."""


class DatasetCorrupt(ValueError):
    """A dataset file is there but its size or sha256 is wrong (`make data` replaces it)."""


class DownloadError(RuntimeError):
    """A file could not be fetched, or what arrived was not the file; nothing was left behind."""


class _FromSettings:
    """The default of `mirror=`: PROPENSITY_DATA_MIRROR. A sentinel, because None must keep meaning "no mirror"."""

    def __repr__(self) -> str:
        return "FROM_SETTINGS"


FROM_SETTINGS = _FromSettings()


@dataclass(frozen=True)
class FetchReport:
    key: str
    name: str
    path: Path
    source: Literal["present", "mirror", "download"]
    origin: str | None  # the mirror file or the URL it came from; None when it was already present
    size: int
    replaced_corrupt: bool = False  # a corrupt copy was there before


# ------------------------------------------------------------------------------------------------------ lookup

# (path, size, mtime_ns, expected sha256) of files that hashed right: a lookup re-hashes only a file that changed.
_VERIFIED: set[tuple[str, int, int, str]] = set()


def dataset_file(
    key: str,
    name: str | None = None,
    *,
    data_dir: Path | str | None = None,
    datasets: Mapping[str, Dataset] | None = None,
) -> Path:
    """The verified path of one file of a dataset (`name` may be left out when the dataset has one file).

    Raises DatasetMissing or DatasetCorrupt, each with a one-line message that says to run `make data`.
    """
    dataset = _dataset(_catalogue(datasets), key)
    file = dataset.file(name)
    path = _data_dir(data_dir) / dataset.directory / file.name
    if not path.is_file():
        raise DatasetMissing(f"dataset {dataset.key}: {file.name} is not in {path.parent}: run make data")
    mismatch = _mismatch(file, path)
    if mismatch is not None:
        raise DatasetCorrupt(f"dataset {dataset.key}: {path} is corrupt ({mismatch}): run make data to replace it")
    return path


def verify(
    keys: Iterable[str] | None = None,
    *,
    data_dir: Path | str | None = None,
    datasets: Mapping[str, Dataset] | None = None,
) -> list[DatasetMissing | DatasetCorrupt]:
    """What is wrong with the chosen datasets' files (None = every dataset): an empty list when all are there."""
    catalogue = _catalogue(datasets)
    root = _data_dir(data_dir)
    problems: list[DatasetMissing | DatasetCorrupt] = []
    for dataset in _select(catalogue, keys):
        for file in dataset.files:
            try:
                dataset_file(dataset.key, file.name, data_dir=root, datasets=catalogue)
            except (DatasetMissing, DatasetCorrupt) as problem:
                problems.append(problem)
    return problems


def _mismatch(file: DatasetFile, path: Path) -> str | None:
    """None when `path` holds `file`, else what differs (both sizes and both digests)."""
    stat = path.stat()
    seen = (str(path), stat.st_size, stat.st_mtime_ns, file.sha256)
    if seen in _VERIFIED:
        return None
    digest = _sha256_of(path)
    if stat.st_size == file.size and digest == file.sha256:
        _VERIFIED.add(seen)
        return None
    return _difference(stat.st_size, digest, file.size, file.sha256)


def _sha256_of(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _difference(got_size: int, got_sha256: str, expected_size: int | None, expected_sha256: str) -> str:
    expected = f"{expected_size} bytes, " if expected_size is not None else ""
    return f"got {got_size} bytes, sha256 {got_sha256}; expected {expected}sha256 {expected_sha256}"


# ------------------------------------------------------------------------------------------------------- fetch


def fetch(
    keys: Iterable[str] | None = None,
    *,
    data_dir: Path | str | None = None,
    mirror: Path | str | None | _FromSettings = FROM_SETTINGS,
    timeout_s: float = 30.0,
    attempts: int = 3,
    backoff_s: float = 1.0,
    log: Callable[[str], object] = print,
    datasets: Mapping[str, Dataset] | None = None,
    base_url: str | None | _FromSettings = FROM_SETTINGS,
) -> list[FetchReport]:
    """Make the chosen datasets' files (None = every dataset) present and verified under the data directory.

    A file already there and verified is left alone; a corrupt one is replaced. The rest come from `mirror` (a
    directory with the data directory's layout; None = none, default PROPENSITY_DATA_MIRROR) when it holds them,
    else from where they are published. Stops at the first failure with a DownloadError, leaving nothing behind.
    Transient network failures are tried `attempts` times, waiting `backoff_s`, then twice that, and so on.
    `base_url` (default PROPENSITY_DATA_BASE_URL) serves GitHub's raw files instead of GitHub (`published_via`).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    catalogue = _catalogue(datasets)
    base = settings().data_base_url if isinstance(base_url, _FromSettings) else base_url
    if base:
        catalogue = published_via(catalogue, base)
    chosen = _select(catalogue, keys)
    root = _data_dir(data_dir)
    mirror_dir = _mirror_dir(mirror)
    reports = [
        _fetch_file(
            dataset, file, root, mirror_dir, timeout_s=timeout_s, attempts=attempts, backoff_s=backoff_s, log=log
        )
        for dataset in chosen
        for file in dataset.files
    ]
    counts = {
        source: sum(report.source == source for report in reports) for source in ("present", "mirror", "download")
    }
    replaced = sum(report.replaced_corrupt for report in reports)
    files = f"{len(reports)} file" + ("" if len(reports) == 1 else "s")
    log(
        f"[data] {files} in {root}: {counts['present']} present, {counts['mirror']} from mirror, "
        f"{counts['download']} downloaded" + (f" ({replaced} corrupt replaced)" if replaced else "")
    )
    return reports


def _fetch_file(
    dataset: Dataset,
    file: DatasetFile,
    root: Path,
    mirror_dir: Path | None,
    *,
    timeout_s: float,
    attempts: int,
    backoff_s: float,
    log: Callable[[str], object],
) -> FetchReport:
    label = f"{dataset.key}/{file.name}"
    target = root / dataset.directory / file.name
    replaced = False
    if target.is_file():
        mismatch = _mismatch(file, target)
        if mismatch is None:
            log(f"[data] {label}: present, sha256 ok")
            return FetchReport(dataset.key, file.name, target, "present", None, file.size)
        log(f"[data] {label}: present but corrupt ({mismatch}): replacing it")
        # Removed first, so a failed fetch leaves the file missing rather than a corrupt copy that looks fetched.
        target.unlink()
        replaced = True
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(file.name)}.*.part"):  # left by a fetch that was killed
        stale.unlink(missing_ok=True)

    mirrored = mirror_dir / dataset.directory / file.name if mirror_dir is not None else None
    if mirrored is not None and mirrored.is_file():
        _copy_from_mirror(dataset, file, mirrored, target)
        log(f"[data] {label}: from mirror {mirror_dir} ({_human_size(file.size)}, sha256 ok)")
        report = FetchReport(dataset.key, file.name, target, "mirror", str(mirrored), file.size, replaced)
    else:
        # A mirror that lacks the file is not an error, but worth saying when the download then fails too.
        note = f"; the mirror {mirror_dir} has no {dataset.directory}/{file.name}" if mirror_dir is not None else ""
        _download(
            dataset, file, target, timeout_s=timeout_s, attempts=attempts, backoff_s=backoff_s, note=note, log=log
        )
        log(f"[data] {label}: downloaded from {file.url} ({_human_size(file.size)}, sha256 ok)")
        report = FetchReport(dataset.key, file.name, target, "download", file.url, file.size, replaced)
    stat = target.stat()
    _VERIFIED.add((str(target), stat.st_size, stat.st_mtime_ns, file.sha256))  # it was verified on the way in
    return report


class _Failure(Exception):
    """Why one attempt failed; `transient` failures are worth another try, `offline` ones suggest no network."""

    def __init__(self, reason: str, *, transient: bool = False, offline: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient
        self.offline = offline


@contextmanager
def _part_file(target: Path) -> Iterator[BinaryIO]:
    """A hidden temporary file beside `target` that becomes `target` (fsynced, atomically) only if the block
    completes; if it raises, the temporary file is removed."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    part = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(part, 0o644)  # mkstemp makes it private; the datasets are for every local user
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _copy_from_mirror(dataset: Dataset, file: DatasetFile, source: Path, target: Path) -> None:
    """Copy a mirror's file (the stored form, so checked against the stored digest only)."""
    try:
        with source.open("rb") as stream, _part_file(target) as out:
            hasher, size = hashlib.sha256(), 0
            while chunk := stream.read(CHUNK_BYTES):
                hasher.update(chunk)
                size += len(chunk)
                out.write(chunk)
            if size != file.size or hasher.hexdigest() != file.sha256:
                raise _Failure(f"wrong content: {_difference(size, hasher.hexdigest(), file.size, file.sha256)}")
    except (_Failure, OSError) as error:
        raise DownloadError(f"dataset {dataset.key}: {file.name} from mirror {source}: {_one_line(error)}") from None


def _download(
    dataset: Dataset,
    file: DatasetFile,
    target: Path,
    *,
    timeout_s: float,
    attempts: int,
    backoff_s: float,
    note: str,
    log: Callable[[str], object],
) -> None:
    for attempt in range(1, attempts + 1):
        try:
            _download_once(file, target, timeout_s)
            return
        except _Failure as failure:
            if failure.transient and attempt < attempts:
                delay = backoff_s * 2 ** (attempt - 1)
                log(
                    f"[data] {dataset.key}/{file.name}: {failure} from {file.url}; "
                    f"trying again in {delay:g} s ({attempt + 1} of {attempts})"
                )
                time.sleep(delay)
                continue
            tries = f" (after {attempt} attempts)" if attempt > 1 else ""
            hint = f"; {OFFLINE_HINT}" if failure.offline and not note else ""
            raise DownloadError(
                f"dataset {dataset.key}: {file.name} from {file.url}: {failure}{tries}{note}{hint}"
            ) from None


# Errors of the connection itself (refused, reset, timed out, malformed response); a disk error is not one of them.
_NETWORK_ERRORS = (TimeoutError, ConnectionError, http.client.HTTPException)


def _download_once(file: DatasetFile, target: Path, timeout_s: float) -> None:
    """One attempt: stream the body into a temporary file while hashing it, and keep it only if it is the file."""
    request = urllib.request.Request(file.url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        raise _Failure(f"HTTP {error.code} {error.reason}", transient=error.code >= 500) from None
    except urllib.error.URLError as error:
        raise _Failure(f"cannot connect: {_one_line(error.reason)}", transient=True, offline=True) from None
    except _NETWORK_ERRORS as error:
        raise _Failure(f"no response: {_one_line(error)}", transient=True, offline=True) from None

    with response, _part_file(target) as out:
        declared = _content_length(response)
        of_declared = f" of {declared}" if declared is not None else ""
        hasher, received = hashlib.sha256(), 0
        body = bytearray() if file.transform is not None else None  # the transform needs the whole (small) file
        try:
            while chunk := response.read(CHUNK_BYTES):
                hasher.update(chunk)
                received += len(chunk)
                if body is None:
                    out.write(chunk)
                else:
                    body.extend(chunk)
        except _NETWORK_ERRORS as error:
            raise _Failure(
                f"interrupted body: {_one_line(error)} after {received}{of_declared} bytes", transient=True
            ) from None
        if declared is not None and received < declared:
            # http.client returns a short body without complaint when the server closes early: count it ourselves.
            raise _Failure(f"interrupted body: received {received} of {declared} bytes", transient=True)

        if file.transform is None:
            if received != file.size or hasher.hexdigest() != file.sha256:
                raise _Failure(f"wrong content: {_difference(received, hasher.hexdigest(), file.size, file.sha256)}")
            return
        assert body is not None
        if file.published_sha256 is not None and (
            hasher.hexdigest() != file.published_sha256
            or (file.published_size is not None and received != file.published_size)
        ):
            difference = _difference(received, hasher.hexdigest(), file.published_size, file.published_sha256)
            raise _Failure(f"wrong published content: {difference}")
        try:
            stored = file.transform(bytes(body))
        except Exception as error:  # a transform bug must still leave nothing behind and name the file
            raise _Failure(f"transform failed: {_one_line(error)}") from None
        stored_sha256 = hashlib.sha256(stored).hexdigest()
        if len(stored) != file.size or stored_sha256 != file.sha256:
            raise _Failure(
                f"wrong content after transform: {_difference(len(stored), stored_sha256, file.size, file.sha256)}"
            )
        out.write(stored)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


# ----------------------------------------------------------------------------------------------------- helpers


def _catalogue(datasets: Mapping[str, Dataset] | None) -> Mapping[str, Dataset]:
    return DATASETS if datasets is None else datasets


def _dataset(catalogue: Mapping[str, Dataset], key: str) -> Dataset:
    if key not in catalogue:
        raise KeyError(f"unknown dataset {key!r}; known: {', '.join(catalogue)}")
    return catalogue[key]


def _select(catalogue: Mapping[str, Dataset], keys: Iterable[str] | None) -> list[Dataset]:
    """The datasets named (all when None), every key checked before anything is done."""
    return list(catalogue.values()) if keys is None else [_dataset(catalogue, key) for key in keys]


def _data_dir(data_dir: Path | str | None) -> Path:
    return settings().data_dir if data_dir is None else Path(data_dir)


def _mirror_dir(mirror: Path | str | None | _FromSettings) -> Path | None:
    if isinstance(mirror, _FromSettings):
        return settings().data_mirror
    return None if mirror is None else Path(mirror)


def _human_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1_000_000 else f"{size / 1e3:.1f} kB"


def _one_line(error: object) -> str:
    """An error as one line (messages of this module are one line each, for Makefiles and logs)."""
    return " ".join(str(error).split()) or type(error).__name__


# --------------------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m propensity.datasets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="fetch what is missing (from the mirror or the publishers)")
    fetch_parser.add_argument(
        "keys", nargs="*", metavar="KEY", help=f"datasets to fetch (default all: {' '.join(DATASETS)})"
    )
    commands.add_parser("verify", help="check every file's size and sha256; exit 1 if any is missing or corrupt")
    commands.add_parser("list", help="the datasets, their licences, where they are published and what is present")
    args = parser.parse_args(argv)

    try:
        data_dir = settings().data_dir
        if args.command == "fetch":
            unknown = [key for key in args.keys if key not in DATASETS]
            if unknown:
                parser.error(f"unknown dataset {', '.join(unknown)}; known: {', '.join(DATASETS)}")
            fetch(args.keys or None, data_dir=data_dir)
            return 0
        if args.command == "verify":
            return _verify_command(data_dir)
        return _list_command(data_dir)
    except (DownloadError, SettingsError, OSError) as error:
        print(f"[data] error: {_one_line(error)}", file=sys.stderr)
        return 1


def _verify_command(data_dir: Path) -> int:
    problems = verify(data_dir=data_dir)
    for problem in problems:
        print(f"[data] {problem}")
    total = sum(len(dataset.files) for dataset in DATASETS.values())
    if problems:
        print(f"[data] {len(problems)} of {total} files missing or corrupt in {data_dir}: run make data")
        return 1
    print(f"[data] all {total} files present in {data_dir}, sha256 ok")
    return 0


def _list_command(data_dir: Path) -> int:
    present = 0
    for dataset in DATASETS.values():
        print(f"[data] {dataset.key}: {dataset.title} ({dataset.directory}/)")
        print(f"[data]   licence: {dataset.licence}")
        for file in dataset.files:
            path = data_dir / dataset.directory / file.name
            if not path.is_file():
                status = "missing"
            elif (mismatch := _mismatch(file, path)) is None:
                status, present = "present, sha256 ok", present + 1
            else:
                status = f"corrupt ({mismatch})"
            print(f"[data]   {file.name} ({_human_size(file.size)}): {status}")
            transformed = f", then: {file.transform.__doc__ or file.transform.__name__}" if file.transform else ""
            print(f"[data]     published at {file.url}{transformed}")
    total = sum(len(dataset.files) for dataset in DATASETS.values())
    print(f"[data] {len(DATASETS)} datasets, {present} of {total} files present in {data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

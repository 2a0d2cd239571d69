"""The lake: tables of parquet files, each a directory of the working copy (`$PROPENSITY_HOME/lake/<table>`).

One interface, two kinds:
- `Lake` (profiles `local` and `redis`): the working copy is the lake.
- `S3Lake` (profile `aws`): the lake of record is `s3://<bucket>/<prefix>/<table>/`; the working copy is this
  machine's cache of it. A reader `pull`s what it reads (only files that changed are downloaded), a writer
  `replace`s a table or one partition whole, or writes one file whole (`writing_file`). A run on a fresh machine
  (an ECS task, a CI runner) starts from an empty working copy and sees the same lake.

Consistency on S3. A directory written by `replace` gets `_manifest.json`, uploaded after its files, naming each
with its size, sha256 and ETag. Readers take exactly the files the nearest manifest names (a deeper manifest governs
its own subtree), so a reader that races a writer gets the old directory or the new one, never parts of both: a file
that changed or vanished since its manifest was read is caught (the GET is conditional on the ETag, the bytes are
checked against the sha256) and the pull starts over. Objects no manifest governs were written whole by
`writing_file` (one PUT, atomic). Files a manifest does not name, left by an interrupted write, are ignored by
readers and deleted by the next replacement. On this machine every write and read goes through the same table lock,
so two processes sharing one working copy never interleave a pull and a replacement of a table.

Names beginning with `.` or `_` (Spark's `_SUCCESS` and `.crc` files, staging directories) are never uploaded,
as Spark, pyarrow and DuckDB never read them.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

MANIFEST = "_manifest.json"
SYNC_DIR = ".sync"  # in the working copy: per table, what each local file was pulled or pushed as, and the lock
PULL_ATTEMPTS = 3
LOCK_TIMEOUT_S = 600.0
_DELETE_BATCH = 1000  # S3's DeleteObjects limit
# S3's bucket naming rules: 3-63 lower-case letters, digits, dots and hyphens, starting and ending alphanumeric.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class LakeError(RuntimeError):
    """The lake could not be read or written: the message names the table or object, and what to check."""


class _Raced(Exception):
    """A file changed or vanished between reading its manifest and downloading it: a writer replaced it."""


def _visible(name: str) -> bool:
    return not name.startswith((".", "_"))


def relative_path(table: str, *parts: str) -> str:
    """`table[/part...]`, each component checked: a table or partition name never climbs out of the lake."""
    for component in (table, *parts):
        if not component or component in (".", "..") or "/" in component or "\\" in component:
            raise LakeError(f"not a lake path component: {component!r} (in {'/'.join((table, *parts))!r})")
    if not _visible(table):
        raise LakeError(f"not a table name: {table!r} (names beginning with '.' or '_' are the lake's own)")
    return "/".join((table, *parts))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _visible_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and all(_visible(c) for c in p.relative_to(directory).parts)
    )


class Lake:
    """The local lake: the working copy under `root` is the lake itself."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def describe(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else str(self.root)

    def path(self, table: str, *parts: str) -> Path:
        """Where the table (or a partition, or a file of it) lives in the working copy; nothing is fetched."""
        return self.root / relative_path(table, *parts)

    def pull(self, table: str, *parts: str) -> Path:
        """The table (or partition) as the lake holds it now, in the working copy, for reading."""
        return self.path(table, *parts)

    @contextmanager
    def replace(self, table: str, *parts: str) -> Iterator[Path]:
        """Write the whole new content of a table or partition into the empty staging directory this yields; when
        the block ends without an error it takes the old content's place (on S3 it is uploaded first). On an error
        the old content stays."""
        rel = relative_path(table, *parts)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:12]}")
        staging.mkdir()
        try:
            with self._locked(table):
                yield staging
                published = self._publish_dir(staging, rel)
                _swap(staging, target)
                self._record(table, {f"{rel}/{name}": etag for name, etag in published.items()}, replaced=rel)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @contextmanager
    def writing_file(self, table: str, *parts: str) -> Iterator[Path]:
        """Write one file whole at the scratch path this yields; it replaces the file when the block ends without
        an error (on S3 it is uploaded first: one PUT, which readers see whole or not at all)."""
        rel = relative_path(table, *parts)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            with self._locked(table):
                yield scratch
                etag = self._publish_file(scratch, rel)
                os.replace(scratch, target)
                self._record(table, {rel: etag})
        finally:
            scratch.unlink(missing_ok=True)

    def remove_matching(self, table: str, pattern: str) -> list[str]:
        """Delete the table's files whose path under the table matches `pattern` (fnmatch, `*` spans `/`), here and
        in the lake of record; returns their paths under the table."""
        directory = self.path(table)
        with self._locked(table):
            local = {
                p.relative_to(directory).as_posix(): p
                for p in (directory.rglob("*") if directory.is_dir() else [])
                if p.is_file() and fnmatch.fnmatch(p.relative_to(directory).as_posix(), pattern)
            }
            remote = self._remove_remote(table, pattern)
            for path in local.values():
                path.unlink()
        return sorted(set(local) | set(remote))

    # The local lake has nothing to synchronise: S3Lake overrides these.
    @contextmanager
    def _locked(self, table: str) -> Iterator[None]:
        yield

    def _publish_dir(self, staging: Path, rel: str) -> dict[str, str | None]:
        """Upload a replacement; returns each file's ETag by its path under `rel`."""
        return {}

    def _publish_file(self, scratch: Path, rel: str) -> str | None:
        return None

    def _record(self, table: str, published: dict[str, str | None], replaced: str | None = None) -> None:
        """Note what the working copy's files now hold (by path from the root), after a replacement of `replaced`."""

    def _remove_remote(self, table: str, pattern: str) -> list[str]:
        return []


def _swap(staging: Path, target: Path) -> None:
    """Put `staging` where `target` is: two renames, so readers see the old directory or the new one."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class LakeLocation:
    """`s3://<bucket>/<prefix>`: where the lake of record lives."""

    bucket: str
    prefix: str  # without leading or trailing slash; may be empty

    @classmethod
    def parse(cls, uri: str) -> LakeLocation:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
            raise LakeError(f"a lake URI looks like s3://bucket/prefix, got {uri!r}")
        if not _BUCKET.match(parsed.netloc) or ".." in parsed.netloc:
            raise LakeError(f"{parsed.netloc!r} in {uri!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        prefix = parsed.path.strip("/")
        if "//" in prefix:
            raise LakeError(f"empty path component in {uri!r}")
        return cls(parsed.netloc, prefix)

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rel(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def uri(self, rel: str = "") -> str:
        key = self.key(rel) if rel else self.prefix
        return f"s3://{self.bucket}/{key}".rstrip("/")


@dataclass(frozen=True)
class RemoteFile:
    size: int
    etag: str
    sha256: str | None  # from the manifest; None for a file written whole on its own


class S3Lake(Lake):
    """The lake of record on S3, with this machine's working copy under `root` (see the module docstring).

    `client` is a boto3 S3 client (the Dagster resource builds it with dagster-aws's S3Resource); its timeouts and
    retries bound every call."""

    def __init__(self, root: Path, uri: str, client, *, lock_timeout_s: float = LOCK_TIMEOUT_S):
        super().__init__(root)
        self.location = LakeLocation.parse(uri)
        self._s3 = client
        self._lock_timeout_s = lock_timeout_s

    def describe(self, rel: str = "") -> str:
        return self.location.uri(rel)

    # Reading
    def pull(self, table: str, *parts: str) -> Path:
        rel = relative_path(table, *parts)
        with self._locked(table):
            for _ in range(PULL_ATTEMPTS):
                try:
                    self._mirror(table, rel, self._remote_files(rel))
                    return self.root / rel
                except _Raced:
                    continue
        raise LakeError(
            f"{self.describe(rel)} was replaced during each of {PULL_ATTEMPTS} pulls in a row: is a writer looping? "
            "Try again when it has finished"
        )

    def _remote_files(self, rel: str) -> dict[str, RemoteFile]:
        """Every file of `rel` a reader should see, by path from the lake's root (see the module docstring)."""
        listed = {self.location.rel(o["Key"]): (int(o["Size"]), o["ETag"]) for o in self._objects(rel)}
        manifests = {
            path.rsplit("/", 1)[0]: self._manifest(path.rsplit("/", 1)[0])
            for path in listed
            if path.rsplit("/", 1)[-1] == MANIFEST
        }
        manifests = {directory: files for directory, files in manifests.items() if files is not None}
        # The nearest manifest above `rel` (a table written whole, read one partition at a time) governs it too.
        parts = rel.split("/")
        for depth in range(len(parts) - 1, 0, -1):
            above = "/".join(parts[:depth])
            files = self._manifest(above)
            if files is not None:
                manifests[above] = files
                break

        def governor(path: str) -> str | None:
            directory = path.rsplit("/", 1)[0]
            while directory:
                if directory in manifests:
                    return directory
                directory = directory.rsplit("/", 1)[0] if "/" in directory else ""
            return None

        remote = {}
        for directory, files in manifests.items():
            for name, entry in files.items():
                path = f"{directory}/{name}"
                if (path + "/").startswith(rel + "/") and governor(path) == directory:
                    remote[path] = entry
        for path, (size, etag) in listed.items():
            if path.rsplit("/", 1)[-1] != MANIFEST and governor(path) is None:
                remote[path] = RemoteFile(size, etag, None)
        return remote

    def _manifest(self, directory: str) -> dict[str, RemoteFile] | None:
        key = self.location.key(f"{directory}/{MANIFEST}")
        try:
            body = self._call(
                "read", f"{directory}/{MANIFEST}", lambda: self._s3.get_object(Bucket=self.location.bucket, Key=key)
            )
        except _Missing:
            return None
        try:
            return {
                name: RemoteFile(int(entry["size"]), str(entry["etag"]), str(entry["sha256"]))
                for name, entry in json.loads(body["Body"].read())["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LakeError(
                f"{self.location.uri(f'{directory}/{MANIFEST}')} is not a lake manifest: rewrite the table "
                "(materialise its asset again)"
            ) from None

    def _mirror(self, table: str, rel: str, remote: dict[str, RemoteFile]) -> None:
        state = self._state(table)
        for path, wanted in sorted(remote.items()):
            local = self.root / path
            if _unchanged(state.get(path), local, wanted.etag):
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            scratch = local.with_name(f".{local.name}.pull-{uuid.uuid4().hex[:12]}")
            try:
                self._download(path, wanted, scratch)
                os.replace(scratch, local)
            finally:
                scratch.unlink(missing_ok=True)
            state[path] = _stamp(local, wanted.etag)
        base = self.root / rel
        if not remote:
            shutil.rmtree(base, ignore_errors=True)  # not in the lake: not in the working copy either
        elif base.is_dir():
            for local in _visible_files(base):
                if local.relative_to(self.root).as_posix() not in remote:
                    local.unlink()
        prefix = rel + "/"
        self._save_state(table, {p: s for p, s in state.items() if p in remote or not p.startswith(prefix)})

    def _download(self, path: str, wanted: RemoteFile, scratch: Path) -> None:
        key = self.location.key(path)
        response = self._call(
            "read",
            path,
            lambda: self._s3.get_object(Bucket=self.location.bucket, Key=key, IfMatch=wanted.etag),
            raced=("PreconditionFailed", "NoSuchKey", "404", "412"),
        )
        digest = hashlib.sha256()
        with scratch.open("wb") as handle:
            for block in response["Body"].iter_chunks(1 << 20):
                digest.update(block)
                handle.write(block)
        size = scratch.stat().st_size
        if size != wanted.size or (wanted.sha256 is not None and digest.hexdigest() != wanted.sha256):
            raise _Raced(path)

    # Writing
    def _publish_dir(self, staging: Path, rel: str) -> dict[str, str | None]:
        files = {}
        for local in _visible_files(staging):
            name = local.relative_to(staging).as_posix()
            files[name] = {
                "size": local.stat().st_size,
                "sha256": _sha256(local),
                "etag": self._put(local, f"{rel}/{name}"),
            }
        manifest = {"format": 1, "written_at": datetime.now(timezone.utc).isoformat(), "files": files}
        key = self.location.key(f"{rel}/{MANIFEST}")
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        self._call(
            "write", f"{rel}/{MANIFEST}", lambda: self._s3.put_object(Bucket=self.location.bucket, Key=key, Body=body)
        )
        # What the new manifest does not name is gone: earlier parts, nested manifests, interrupted writes.
        keep = {self.location.key(f"{rel}/{name}") for name in files} | {key}
        self._delete(rel, [o["Key"] for o in self._objects(rel) if o["Key"] not in keep])
        return {name: entry["etag"] for name, entry in files.items()}

    def _publish_file(self, scratch: Path, rel: str) -> str | None:
        return self._put(scratch, rel)

    def _record(self, table: str, published: dict[str, str | None], replaced: str | None = None) -> None:
        state = self._state(table)
        if replaced is not None:
            state = {p: s for p, s in state.items() if not (p + "/").startswith(replaced + "/")}
        for path, etag in published.items():
            state[path] = _stamp(self.root / path, etag)
        self._save_state(table, state)

    def _remove_remote(self, table: str, pattern: str) -> list[str]:
        prefix = self.location.key(table) + "/"
        matches = {
            key: key[len(prefix) :]
            for key in (o["Key"] for o in self._objects(table))
            if all(_visible(c) for c in key[len(prefix) :].split("/")) and fnmatch.fnmatch(key[len(prefix) :], pattern)
        }
        self._delete(table, sorted(matches))
        state = self._state(table)
        for name in matches.values():
            state.pop(f"{table}/{name}", None)
        self._save_state(table, state)
        return sorted(matches.values())

    def _objects(self, rel: str) -> list[dict]:
        """Every object under `rel/` (key, size, ETag)."""
        pages = self._call(
            "list",
            rel,
            lambda: list(
                self._s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.location.bucket, Prefix=self.location.key(rel) + "/"
                )
            ),
        )
        return [item for page in pages for item in page.get("Contents", [])]

    def _put(self, local: Path, rel: str) -> str:
        key = self.location.key(rel)
        with local.open("rb") as body:
            return self._call(
                "write", rel, lambda: self._s3.put_object(Bucket=self.location.bucket, Key=key, Body=body)
            )["ETag"]

    def _delete(self, rel: str, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + _DELETE_BATCH]]
            response = self._call(
                "delete",
                rel,
                lambda: self._s3.delete_objects(Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True}),
            )
            if response.get("Errors"):
                first = response["Errors"][0]
                raise LakeError(
                    f"S3 refused to delete {len(response['Errors'])} objects under {self.describe(rel)} "
                    f"(first: {first.get('Key')}: {first.get('Code')}): the role needs s3:DeleteObject there"
                )

    # Locks, state and calls
    @contextmanager
    def _locked(self, table: str) -> Iterator[None]:
        directory = self.root / SYNC_DIR
        directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self._lock_timeout_s
        with (directory / f"{table}.lock").open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LakeError(
                            f"lake table {table} stayed locked by another process for {self._lock_timeout_s:.0f} s "
                            f"({handle.name}): is a pull or write of it stuck?"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _state_file(self, table: str) -> Path:
        return self.root / SYNC_DIR / f"{table}.json"

    def _state(self, table: str) -> dict:
        path = self._state_file(table)
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return {}  # no record: every file is checked against the lake again

    def _save_state(self, table: str, state: dict) -> None:
        path = self._state_file(table)
        scratch = path.with_name(path.name + ".tmp")
        scratch.write_text(json.dumps(state, sort_keys=True))
        os.replace(scratch, path)

    def _call(self, action: str, rel: str, call: Callable, *, raced: tuple[str, ...] = ()):
        """One S3 call, its failures turned into errors that say what failed and what to check."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "unknown"))
            where = self.describe(rel)
            if code in raced:
                raise _Raced(rel) from None
            if code in ("NoSuchKey", "404") and action == "read":
                raise _Missing(rel) from None
            if code == "NoSuchBucket":
                raise LakeError(
                    f"the lake's bucket {self.location.bucket} does not exist (to {action} {where}): create it "
                    "(infra/lake.tf) or correct PROPENSITY_LAKE_URI"
                ) from None
            if code in (
                "AccessDenied",
                "403",
                "Forbidden",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "ExpiredToken",
                "InvalidToken",
            ):
                raise LakeError(
                    f"S3 refused to {action} {where} ({code}): the role needs s3:ListBucket, s3:GetObject, "
                    f"s3:PutObject and s3:DeleteObject on {self.location.uri()}/*, and valid credentials"
                ) from None
            message = error.response.get("Error", {}).get("Message", "")
            raise LakeError(f"S3 could not {action} {where} ({code}: {message})") from None
        except BotoCoreError as error:
            raise LakeError(
                f"S3 could not be reached to {action} {self.describe(rel)}: {error}; check the network, the region "
                "and AWS_ENDPOINT_URL_S3 when S3 is not AWS's"
            ) from None


class _Missing(Exception):
    """An object that does not exist (a manifest that was never written)."""


def _stamp(local: Path, etag: str) -> dict:
    stat = local.stat()
    return {"etag": etag, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _unchanged(recorded: dict | None, local: Path, etag: str) -> bool:
    """The working copy's file is the lake's: recorded as this ETag, and untouched since (size and mtime)."""
    if recorded is None or recorded.get("etag") != etag or not local.is_file():
        return False
    stat = local.stat()
    return recorded.get("size") == stat.st_size and recorded.get("mtime_ns") == stat.st_mtime_ns

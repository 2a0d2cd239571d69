"""The model artifact and the local model registry.

An artifact is a directory: LightGBM's text model, the calibrator and the baseline as JSON numbers, the feature list
with the feature service, the training-data fingerprint, metrics, the intervention policy the scorer applies with
this model (`policy.json`: its threshold depends on this model's calibrated scores), the drift reference profile
written at training (`reference.json`, read by the monitors only), and MANIFEST.json with every file's sha256.
Loading checks the manifest first and never unpickles anything.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from propensity.models.calibration import apply_calibrator
from propensity.paths import home, write_text_atomic

MANIFEST = "MANIFEST.json"
MODEL_FILE = "model.txt"
POLICY_FILE = "policy.json"
REFERENCE_FILE = "reference.json"
JSON_FILES = ("calibrator.json", "baseline.json", "features.json", "training.json", "metrics.json")
ARTIFACT_FILES = (MODEL_FILE, *JSON_FILES)
# Written by every artifact since the closed loop, but versions registered before it have neither: such a version
# treats no one (NO_INTERVENTION) and has no drift reference; an artifact built outside training may lack a reference.
OPTIONAL_FILES = (POLICY_FILE, REFERENCE_FILE)
# A model registered without an offer policy treats no one and holds no one out.
NO_INTERVENTION = {"threshold": None, "holdout_share": 0.0, "offer": None, "economics": None}


class ArtifactIntegrityError(RuntimeError):
    """The artifact on disk is not the one that was written: refuse to serve it."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """A content hash of the training data (row order included), recorded with the model."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + ",".join(frame.columns).encode()).hexdigest()


def write_artifact(
    directory: Path,
    *,
    booster: lgb.Booster,
    calibrator: dict,
    baseline: dict,
    features: dict,
    training: dict,
    metrics: dict,
    policy: dict = NO_INTERVENTION,
    reference: dict | None = None,
) -> Path:
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MODEL_FILE).write_text(booster.model_to_string())
    for name, payload in zip(JSON_FILES, (calibrator, baseline, features, training, metrics)):
        _write_json(directory / name, payload)
    _write_json(directory / POLICY_FILE, policy)
    if reference is not None:
        _write_json(directory / REFERENCE_FILE, reference)
    _write_manifest(directory)
    return directory


def set_artifact_file(directory: Path, name: str, payload: dict) -> None:
    """Replace one JSON file of an artifact that is not yet registered (the offer policy is decided after the
    evaluation wrote the candidate), and re-seal the manifest. Registered versions are never changed."""
    if name not in (*JSON_FILES, *OPTIONAL_FILES):
        raise ValueError(f"{name} is not an artifact JSON file: one of {(*JSON_FILES, *OPTIONAL_FILES)}")
    directory = Path(directory)
    verify_manifest(directory)
    _write_json(directory / name, payload)
    _write_manifest(directory)


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default))


def _write_manifest(directory: Path) -> None:
    names = [*ARTIFACT_FILES, *(name for name in OPTIONAL_FILES if (directory / name).exists())]
    manifest = {name: sha256_file(directory / name) for name in names}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class ModelArtifact:
    directory: Path
    booster: lgb.Booster
    calibrator: dict
    baseline: dict
    features: dict
    training: dict
    metrics: dict
    policy: dict

    @property
    def feature_names(self) -> list[str]:
        return list(self.features["features"])

    @property
    def version(self) -> str:
        return self.directory.name

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(X[self.feature_names], raw_score=True)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated purchase propensity."""
        return apply_calibrator(self.calibrator, self.raw_score(X))


def verify_manifest(directory: Path) -> dict[str, str]:
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise ArtifactIntegrityError(f"{directory} has no {MANIFEST}: not a model artifact")
    manifest = json.loads(manifest_path.read_text())
    missing = [name for name in ARTIFACT_FILES if name not in manifest]
    if missing:
        raise ArtifactIntegrityError(f"{manifest_path} does not list {missing}")
    for name, expected in manifest.items():
        path = directory / name
        if not path.exists():
            raise ArtifactIntegrityError(f"{path} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactIntegrityError(
                f"{path} has sha256 {actual[:12]}…, the manifest says {expected[:12]}…: tampered or corrupt"
            )
    return manifest


def load_artifact(directory: Path) -> ModelArtifact:
    directory = Path(directory)
    manifest = verify_manifest(directory)
    loaded = {name: json.loads((directory / name).read_text()) for name in JSON_FILES}
    booster = lgb.Booster(model_str=(directory / MODEL_FILE).read_text())
    return ModelArtifact(
        directory=directory,
        booster=booster,
        calibrator=loaded["calibrator.json"],
        baseline=loaded["baseline.json"],
        features=loaded["features.json"],
        training=loaded["training.json"],
        metrics=loaded["metrics.json"],
        policy=json.loads((directory / POLICY_FILE).read_text()) if POLICY_FILE in manifest else NO_INTERVENTION,
    )


def load_reference(directory: Path) -> dict:
    """The drift reference profile written at training (checked against the manifest)."""
    directory = Path(directory)
    manifest = verify_manifest(directory)
    if REFERENCE_FILE not in manifest:
        raise ArtifactIntegrityError(f"{directory} has no {REFERENCE_FILE}: it was not built by training; retrain")
    return json.loads((directory / REFERENCE_FILE).read_text())


class ModelRegistry:
    """Versions under $PROPENSITY_HOME/models/registry/<version>/, and registry.json naming the champion."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else home() / "models" / "registry"
        self.index_path = self.root / "registry.json"

    def _index(self) -> dict:
        if self.index_path.exists():
            return json.loads(self.index_path.read_text())
        return {"champion": None, "versions": []}

    def _save(self, index: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.index_path, json.dumps(index, indent=2))

    def versions(self) -> list[dict]:
        return self._index()["versions"]

    def champion_version(self) -> str | None:
        return self._index()["champion"]

    def champion(self) -> ModelArtifact | None:
        version = self.champion_version()
        return load_artifact(self.root / version) if version else None

    def register(self, candidate_dir: Path, *, promote: bool, reason: str) -> str:
        """Copy a verified candidate in as the next version; make it champion only when `promote`."""
        verify_manifest(candidate_dir)
        index = self._index()
        manifest_digest = hashlib.sha256((Path(candidate_dir) / MANIFEST).read_bytes()).hexdigest()[:10]
        version = f"v{len(index['versions']) + 1:04d}-{manifest_digest}"
        shutil.copytree(candidate_dir, self.root / version)
        verify_manifest(self.root / version)
        metrics = json.loads((Path(candidate_dir) / "metrics.json").read_text())
        index["versions"].append(
            {
                "version": version,
                "registered_at": datetime.now(timezone.utc).isoformat(),
                "status": "champion" if promote else "rejected",
                "reason": reason,
                "test_metrics": metrics.get("calibrated", {}),
            }
        )
        if promote:
            for entry in index["versions"][:-1]:
                if entry["status"] == "champion":
                    entry["status"] = "retired"
            index["champion"] = version
        self._save(index)
        return version

    def roll_back(self, version: str, *, to_version: str, reason: str) -> None:
        """The endpoint rolled `version` back: `to_version` (still serving) is champion again."""
        index = self._index()
        known = {entry["version"]: entry for entry in index["versions"]}
        if version not in known or to_version not in known:
            raise KeyError(f"unknown registry version: {version if version not in known else to_version}")
        known[version].update(status="rolled_back", reason=reason)
        known[to_version]["status"] = "champion"
        index["champion"] = to_version
        self._save(index)


def package_artifact(model_dir: Path, tarball: Path) -> dict[str, str]:
    """model.tar.gz with exactly the manifest's files and the manifest, at the archive root; byte-for-byte
    reproducible (fixed order, times and owners). Returns the verified manifest."""
    model_dir = Path(model_dir)
    manifest = verify_manifest(model_dir)
    with open(tarball, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name in sorted([*manifest, MANIFEST]):
                info = archive.gettarinfo(str(model_dir / name), arcname=name)
                info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = 0, 0o644, 0, 0, "", ""
                with open(model_dir / name, "rb") as handle:
                    archive.addfile(info, handle)
    return manifest

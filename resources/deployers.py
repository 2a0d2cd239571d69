"""Deployers: how `propensity_endpoint` puts a registered model on an endpoint. One interface
(`serving.deployment.Deployer`), two implementations: the local endpoint runtime here, SageMaker in
`resources/sagemaker_deployer.py`. `PROPENSITY_DEPLOYER` picks one (`local` by default)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import pandas as pd

from propensity.models.artifact import ModelRegistry, verify_manifest
from propensity.paths import table_dir
from serving.canary import CanaryRun
from serving.deployment import CanaryPolicy, DeploymentRecord, VariantSpec, read_history
from serving.endpoint import EndpointFiles, running_url, start_server

DEPLOYERS = ("local", "sagemaker")


def lake_outcomes(session_ids: Iterable[str]) -> dict[str, bool]:
    """Observed outcomes: whether each session purchased, for the sessions the lake's `sessions` table already holds
    (sessions still open, or not yet landed, are simply unknown)."""
    path = table_dir("sessions")
    if not path.exists():
        return {}
    wanted = list(session_ids)
    frame = pd.read_parquet(path, columns=["session_id", "has_purchase"], filters=[("session_id", "in", wanted)])
    return dict(zip(frame["session_id"], frame["has_purchase"].astype(bool)))


class LocalEndpointDeployer(dg.ConfigurableResource):
    """The embedded default: endpoints served on this machine by `serving.endpoint`, canaries by `serving.canary`.

    The endpoint's server is started on the first deployment and keeps running (like a SageMaker endpoint) until
    `python -m serving.endpoint stop NAME`; later deployments shift its traffic without a restart.
    """

    profile: str = "local"  # the online store the endpoint reads features from
    start_server: bool = True

    def deploy(self, endpoint: str, model_dir: Path, model_version: str, policy: CanaryPolicy) -> DeploymentRecord:
        files = EndpointFiles(endpoint)
        registry = ModelRegistry()
        if Path(model_dir).resolve() != (registry.root / model_version).resolve():
            raise ValueError(
                f"{model_dir} is not registry version {model_version}: the local runtime serves registered versions only"
            )
        verify_manifest(Path(model_dir))
        run = CanaryRun(files, policy, outcomes=lake_outcomes)
        first = not files.read_variants()
        if first:
            record = run.deploy(model_version)
            if self.start_server:
                start_server(files, self.profile)
            return record
        if self.start_server:
            start_server(files, self.profile)  # a canary bakes on live traffic, so the endpoint must be up
        return run.deploy(model_version)

    def variants(self, endpoint: str) -> list[VariantSpec]:
        return EndpointFiles(endpoint).read_variants()

    def history(self, endpoint: str) -> list[DeploymentRecord]:
        return read_history(EndpointFiles(endpoint).history)

    def url(self, endpoint: str) -> str | None:
        return running_url(EndpointFiles(endpoint))


def current_deployer() -> str:
    deployer = os.environ.get("PROPENSITY_DEPLOYER", "local")
    if deployer not in DEPLOYERS:
        raise ValueError(f"PROPENSITY_DEPLOYER={deployer!r} is not one of {DEPLOYERS}")
    return deployer

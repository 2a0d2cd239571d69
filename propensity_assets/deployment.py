"""Serving: the champion on an endpoint, as a canary next to what the endpoint serves now.

`propensity_endpoint` runs after the model assets when every blocking quality check upstream passed, and starts the
deployment of the registry's champion through the configured deployer (`resources/deployers.py`: the local endpoint
runtime by default, SageMaker with `PROPENSITY_DEPLOYER=sagemaker`): all traffic on a new endpoint, otherwise a
canary at `canary_share`. It returns at once, recording the stage; it never bakes. The canary sensor
(`sensors/canary.py`) judges the canary on live traffic at every tick, shifts, promotes or rolls it back, records
each stage as an event of this asset with its numbers, and on a rollback hands the registry's champion title back
to the version still serving, so the registry never names a model the storefront is not getting.
"""

import dagster as dg

from propensity.models.artifact import ModelRegistry
from serving.control.deployment import CanaryPolicy, Deployer

_DEFAULT = CanaryPolicy()


class EndpointConfig(dg.Config):
    endpoint: str = "propensity"
    canary_share: float = _DEFAULT.canary_share
    baking_s: float = _DEFAULT.baking_s
    shift: str = _DEFAULT.shift
    linear_step_share: float = _DEFAULT.linear_step_share
    linear_step_baking_s: float = _DEFAULT.linear_step_baking_s
    min_requests: int = _DEFAULT.min_requests
    alpha: float = _DEFAULT.alpha
    error_rate_tolerance: float = _DEFAULT.error_rate_tolerance
    score_tolerance: float = _DEFAULT.score_tolerance
    logloss_tolerance: float = _DEFAULT.logloss_tolerance
    tau_error: float = _DEFAULT.tau_error
    tau_score: float = _DEFAULT.tau_score
    tau_logloss: float = _DEFAULT.tau_logloss
    max_p99_latency_ms: float = _DEFAULT.max_p99_latency_ms
    max_error_rate: float = _DEFAULT.max_error_rate

    def policy(self) -> CanaryPolicy:
        return CanaryPolicy(**self.model_dump(exclude={"endpoint"}))


@dg.asset(
    deps=["registered_model", "model_evaluation", "online_features"],
    group_name="serving",
    kinds={"python"},
    # A new champion goes out once its quality gates and the online features' freshness check have passed (the
    # endpoint serves those features); a daily rebuild of the online store alone deploys nothing.
    automation_condition=dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets("online_features"))
    & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    check_specs=[dg.AssetCheckSpec("deployment_not_rolled_back", asset="propensity_endpoint")],
    description="The registry's champion on the endpoint: the first deployment, or a canary that the canary sensor "
    "then judges on live traffic (shift, promote or roll back, each an event of this asset).",
)
def propensity_endpoint(
    context: dg.AssetExecutionContext, config: EndpointConfig, deployer: dg.ResourceParam[Deployer]
):
    registry = ModelRegistry()
    version = registry.champion_version()
    if version is None:
        raise dg.Failure("the registry has no champion: no candidate has passed the quality gates yet")
    record = deployer.deploy(config.endpoint, registry.root / version, version, config.policy())
    if record.outcome == "failed":
        context.log.warning(f"deployment of {version} failed: {record.reason}")
    history = deployer.history(config.endpoint)
    rows = "\n".join(
        f"| {r.started_at[:19]} | {r.model_version} | {r.stage} | {r.outcome} | {r.reason.replace('|', '/')[:160]} |"
        for r in history[-15:]
    )
    observations = {k: v for k, v in record.observations.items() if k != "canary"}
    yield dg.MaterializeResult(
        metadata={
            "endpoint": config.endpoint,
            "model_version": version,
            "stage": record.stage,
            "outcome": record.outcome,
            "reason": record.reason,
            "variants": dg.MetadataValue.json([v.__dict__ for v in record.variants]),
            "observations": dg.MetadataValue.json(observations),
            "canary": dg.MetadataValue.json(record.observations.get("canary") or {}),
            "history": dg.MetadataValue.md(
                "| started | version | stage | outcome | reason |\n|---|---|---|---|---|\n" + rows
            ),
        }
    )
    # Not rolled back so far: a failed start fails it here; the canary sensor evaluates it again on its decision.
    yield dg.AssetCheckResult(
        check_name="deployment_not_rolled_back",
        passed=record.outcome != "failed",
        description=record.reason,
        severity=dg.AssetCheckSeverity.WARN,
    )

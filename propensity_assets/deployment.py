"""Serving: the champion on an endpoint, as a canary next to what the endpoint serves now.

`propensity_endpoint` runs after the model assets when every blocking quality check upstream passed, deploys the
registry's champion through the configured deployer (`resources/deployers.py`: the local endpoint runtime by
default, SageMaker with `PROPENSITY_DEPLOYER=sagemaker`) and shows the endpoint's deployment history. A canary
that trips an alarm is rolled back by the deployer; the registry then hands the champion title back to the version
still serving, so the registry never names a model the storefront is not getting.
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
    max_error_rate: float = _DEFAULT.max_error_rate
    max_p99_latency_ms: float = _DEFAULT.max_p99_latency_ms
    max_score_psi: float = _DEFAULT.max_score_psi
    max_calibration_gap: float = _DEFAULT.max_calibration_gap
    min_requests: int = _DEFAULT.min_requests

    def policy(self) -> CanaryPolicy:
        return CanaryPolicy(**self.model_dump(exclude={"endpoint"}))


@dg.asset(
    deps=["registered_model", "model_evaluation"],
    group_name="serving",
    kinds={"python"},
    automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    check_specs=[dg.AssetCheckSpec("deployment_not_rolled_back", asset="propensity_endpoint")],
    description="The registry's champion deployed to the endpoint (canary, baking, alarms, promote or roll back).",
)
def propensity_endpoint(
    context: dg.AssetExecutionContext, config: EndpointConfig, deployer: dg.ResourceParam[Deployer]
):
    registry = ModelRegistry()
    version = registry.champion_version()
    if version is None:
        raise dg.Failure("the registry has no champion: no candidate has passed the quality gates yet")
    record = deployer.deploy(config.endpoint, registry.root / version, version, config.policy())
    if record.outcome == "rolled_back":
        serving = max(record.variants, key=lambda v: v.weight).model_version
        registry.roll_back(version, to_version=serving, reason=record.reason)
        context.log.warning(f"canary {version} rolled back: {record.reason}")
    history = deployer.history(config.endpoint)
    rows = "\n".join(
        f"| {r.started_at[:19]} | {r.model_version} | {r.outcome} | {r.reason.replace('|', '/')[:160]} |"
        for r in history[-15:]
    )
    yield dg.MaterializeResult(
        metadata={
            "endpoint": config.endpoint,
            "model_version": version,
            "outcome": record.outcome,
            "reason": record.reason,
            "variants": dg.MetadataValue.json([v.__dict__ for v in record.variants]),
            "observations": dg.MetadataValue.json(record.observations),
            "history": dg.MetadataValue.md("| started | version | outcome | reason |\n|---|---|---|---|\n" + rows),
        }
    )
    yield dg.AssetCheckResult(
        check_name="deployment_not_rolled_back",
        passed=record.outcome != "rolled_back",
        description=record.reason,
        severity=dg.AssetCheckSeverity.WARN,
    )

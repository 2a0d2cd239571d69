"""The offer policy of each candidate model, and the uplift model it may use.

- `uplift_model`: retrained from the labelled decision log and judged against the offer policy in force.
- `offer_policy`: seals the rule into the candidate artifact (the scorer decides with it): the uplift model's
  profit rule when it won, else the expected-value threshold on calibrated propensity.

Champion and challenger (`propensity.uplift.training`): the challenger is fitted on half the users' first
decisions and replaces the champion's rule only when its doubly robust incremental profit over that rule, on the
other half, has an interval above 0. Otherwise the champion's rule stays: its uplift model if it has one, else the
propensity threshold. With no decision log yet (a first deployment, `make demo`) nothing is fitted and the
threshold rule is used.
"""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from propensity.features.definitions import MODEL_FEATURE_NAMES, PROPENSITY_INPUT
from propensity.models.artifact import MANIFEST, POLICY_FILE, ModelRegistry, load_artifact, set_artifact_file
from propensity.models.offers import (
    HILLSTROM_WOMENS_LIFT,
    LIFT_PROVENANCE,
    OfferEconomics,
    expected_gain,
    hillstrom_relative_lift,
    intervention_threshold,
)
from propensity.uplift.policy import OfferTerms
from propensity.uplift.training import LEARNER, Challenger, UpliftLog, scoring_rows, train_challenger, uplift_log
from propensity_assets.decisions import LABELLED_DECISIONS
from propensity_assets.models import candidate_dir, work_dir
from resources.lake import LakeResource
from serving.decision import DecisionPolicy

UPLIFT_MODEL_FILE = "uplift_model.json"
PER = 1000  # profit figures per 1,000 sessions


def uplift_model_path() -> Path:
    return work_dir() / UPLIFT_MODEL_FILE


def read_labelled(lake: LakeResource) -> pd.DataFrame:
    """Every day of the labelled decision log (empty when it was never materialised)."""
    path = lake.pull(LABELLED_DECISIONS)
    if not path.exists() or not any(path.glob("date=*/data.parquet")):
        return pd.DataFrame()
    return pd.read_parquet(path)


def as_the_candidate_scores(labelled: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The logged rows with their propensity input as the candidate model scores them, and where it came from.

    The policy is sealed into the candidate and applied to the candidate's propensity when it serves; the logged
    propensity is the score of whichever model served the decision. Training and judging on the candidate's score
    keeps the uplift model's input what it will be at serving time. Without a candidate (the asset run on its own
    before any evaluation) the logged score is used, and the metadata says so."""
    if labelled.empty or not (candidate_dir() / MANIFEST).exists():
        return labelled, "logged"
    candidate = load_artifact(candidate_dir())
    scores = candidate.predict(labelled[list(MODEL_FEATURE_NAMES)].astype(float))
    return labelled.assign(**{PROPENSITY_INPUT: scores}), "candidate"


def current_actions(policy: dict | None, log: UpliftLog) -> np.ndarray:
    """What the champion's rule would do at each logged first decision (1 treat, 0 not), by the scorer's own code."""
    if policy is None:
        return np.zeros(len(log))
    rule = DecisionPolicy(policy)
    rows = scoring_rows(log.X)
    return np.array([float(rule.would_treat(p, row)) for p, row in zip(log.X[PROPENSITY_INPUT], rows)])


class UpliftConfig(dg.Config):
    # The offer's economics, as rates on revenue and a cost per contact (propensity.uplift.policy.OfferTerms).
    margin_rate: float = OfferTerms.margin_rate
    discount_rate: float = OfferTerms.discount_rate
    contact_cost: float = OfferTerms.contact_cost
    seed: int = 0


def _summary(challenger: Challenger, sessions: int) -> dict:
    difference = challenger.verdict.difference if challenger.verdict else None
    return {
        "learner": LEARNER,
        "first_decisions": sessions,
        "train_sessions": challenger.train_sessions,
        "evaluation_sessions": challenger.evaluation_sessions,
        "treated_share_logged": challenger.treated_share_logged,
        "challenger_treated_share": challenger.challenger_treated_share,
        "current_treated_share": challenger.current_treated_share,
        "dr_profit_difference_per_1000": (
            None if difference is None else [PER * difference.value, PER * difference.low, PER * difference.high]
        ),
        "promote": challenger.promote,
        "reason": challenger.reason,
    }


@dg.asset(
    deps=[LABELLED_DECISIONS, "model_evaluation"],
    group_name="models",
    kinds={"lightgbm"},
    description="A DR-learner of the offer's incremental profit, retrained from the labelled decision log (each "
    "session's first decision, with its logged probability of treatment, and the candidate model's propensity), and "
    "the doubly robust verdict on its policy against the champion's rule on held-out users: it replaces the "
    "champion's rule only with an interval above 0.",
)
def uplift_model(context: dg.AssetExecutionContext, config: UpliftConfig, lake: LakeResource) -> dg.MaterializeResult:
    terms = OfferTerms(config.margin_rate, config.discount_rate, config.contact_cost)
    labelled, propensity_from = as_the_candidate_scores(read_labelled(lake))
    champion = ModelRegistry().champion()
    champion_policy = champion.policy if champion is not None else None
    if labelled.empty:
        challenger = Challenger(
            None, None, 0, 0, 0.0, None, None, reason="no labelled decisions yet: the threshold rule"
        )
        log_rows = 0
    else:
        log = uplift_log(labelled, terms)
        log_rows = len(log)
        challenger = train_challenger(log, current_actions(champion_policy, log), seed=config.seed)
    summary = _summary(challenger, log_rows)
    record = {
        **summary,
        "terms": terms.__dict__,
        "champion_version": champion.version if champion is not None else None,
        "model": challenger.model.to_dict() if challenger.promote else None,
    }
    path = uplift_model_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    context.log.info(f"uplift challenger: {challenger.reason}")
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in summary.items() if v is not None and not isinstance(v, list)},
            "dr_profit_difference_per_1000": dg.MetadataValue.json(summary["dr_profit_difference_per_1000"]),
            "champion_rule": (champion_policy or {}).get("rule") or ("threshold" if champion_policy else "none"),
            "propensity_input": propensity_from,
            "path": str(path),
        }
    )


def chosen_uplift(champion_policy: dict | None) -> tuple[dict | None, str]:
    """The uplift block the next artifact's policy carries, and why: the promoted challenger, else the champion's
    own uplift model, else none (the threshold rule)."""
    path = uplift_model_path()
    record = json.loads(path.read_text()) if path.exists() else None
    if record is not None and record.get("promote") and record.get("model"):
        evidence = {k: record[k] for k in ("dr_profit_difference_per_1000", "reason", "first_decisions")}
        return {"model": record["model"], "terms": record["terms"], "evidence": evidence}, "challenger promoted"
    if champion_policy and champion_policy.get("uplift"):
        return champion_policy["uplift"], "the champion's uplift model stays: " + (
            record["reason"] if record else "no challenger was trained"
        )
    return None, "threshold rule: " + (record["reason"] if record else "no uplift model was trained")


class OfferConfig(dg.Config):
    margin: float = 20.0  # contribution of an average order
    discount: float = 5.0  # given away on each order placed with the offer
    contact_cost: float = 0.10  # cost of showing the offer
    relative_lift: float = HILLSTROM_WOMENS_LIFT  # the offer multiplies the purchase probability by 1 + this
    lift_provenance: str = LIFT_PROVENANCE  # where relative_lift comes from: say so when you change it
    # Measure the lift on this randomised Hillstrom arm instead (needs the dataset: `make data`).
    measure_on_hillstrom_arm: str | None = None
    # Share of sessions randomly held out (never treated): the control group the KPI monitor compares against.
    holdout_share: float = 0.1
    # Share of the other sessions offered the discount below the threshold, so that a policy that would treat
    # them can be valued from the decision log (off-policy, with the logged probability of treatment).
    exploration_share: float = 0.05


@dg.asset(
    deps=["model_evaluation", "uplift_model"],
    group_name="models",
    kinds={"pandas"},
    description="The candidate's intervention policy, sealed into its artifact (the scorer applies it with that "
    "model): the uplift model's profit rule when its challenger won the DR gate (or the champion already had one), "
    "else the expected-value threshold on calibrated propensity; with the randomised holdout and exploration shares. "
    "The threshold's lift is configured with its provenance (default: the randomised Hillstrom e-mail test) or "
    "measured on Hillstrom.",
)
def offer_policy(config: OfferConfig) -> dg.MaterializeResult:
    if not 0.0 <= config.holdout_share < 1.0:
        raise dg.Failure(f"holdout_share must be in [0, 1), got {config.holdout_share}")
    if not 0.0 <= config.exploration_share < 1.0:
        raise dg.Failure(f"exploration_share must be in [0, 1), got {config.exploration_share}")
    if config.measure_on_hillstrom_arm:
        measured = hillstrom_relative_lift(arm=config.measure_on_hillstrom_arm)
        provenance = f"measured on Hillstrom: {config.measure_on_hillstrom_arm} vs No E-Mail"
        lift = {"relative_lift": measured["relative_lift"], "provenance": provenance, "hillstrom": measured}
    else:
        lift = {"relative_lift": config.relative_lift, "provenance": config.lift_provenance}
    economics = OfferEconomics(config.margin, config.discount, config.contact_cost, lift["relative_lift"])
    threshold = intervention_threshold(economics)
    test = pd.read_parquet(work_dir() / "test_predictions.parquet")
    gain = expected_gain(test["p_calibrated"], economics)
    targeted = test["p_calibrated"] >= threshold if threshold is not None else np.zeros(len(test), dtype=bool)
    champion = ModelRegistry().champion()
    uplift, why = chosen_uplift(champion.policy if champion is not None else None)
    rule = "uplift" if uplift is not None else "threshold" if threshold is not None else None
    policy = {
        "rule": rule,
        "rule_reason": why,
        "threshold": threshold,
        "economics": economics.__dict__,
        "lift": lift,
        "share_targeted": float(np.mean(targeted)),
        "expected_gain_policy": float(gain[targeted].sum()),
        "expected_gain_offer_to_all": float(gain.sum()),
        "test_decision_points": len(test),
    }
    (work_dir() / "offer_policy.json").write_text(json.dumps(policy, indent=2))
    # What the scorer needs, sealed into the candidate it was computed for: one rule (DecisionPolicy refuses two).
    sealed = {
        "rule": rule,
        "rule_reason": why,
        "threshold": threshold if rule == "threshold" else None,
        "holdout_share": config.holdout_share,
        "exploration_share": config.exploration_share,
        "offer": "discount" if rule is not None else None,
        "economics": economics.__dict__,
        "lift": lift,
    }
    if uplift is not None:
        sealed["uplift"] = uplift
    DecisionPolicy(sealed)  # refuse here, not at the endpoint, a policy the scorer could not load
    set_artifact_file(candidate_dir(), POLICY_FILE, sealed)
    return dg.MaterializeResult(
        metadata={
            "rule": rule or "none",
            "rule_reason": why,
            "threshold": threshold if threshold is not None else "never",
            "holdout_share": config.holdout_share,
            "exploration_share": config.exploration_share,
            "relative_lift": lift["relative_lift"],
            "lift_provenance": lift["provenance"],
            "share_targeted": policy["share_targeted"],
            "expected_gain_policy": policy["expected_gain_policy"],
            "expected_gain_offer_to_all": policy["expected_gain_offer_to_all"],
        }
    )

"""Retraining the offer policy on actual uplift: an uplift model from the labelled decision log, judged off-policy
against the policy in force before it may replace it.

Unit. A session's decision point: its first logged decision whose online row had folded at least DECISION_EVENTS
events (the storefront acts on the decision there, and only there: `make loop`'s storefront does; bench.uplift's
decision points are the same third event). The arm (treated or not) and the logged probability of that arm are
exact there, since the holdout and exploration draws are per session and the rule is a function of the row.
Earlier decisions are not acted on, and later ones are not a fresh experiment: the offer has been shown or not.

Reward. The session's realised profit under `OfferTerms` (margin on its revenue, less the discount and the contact
cost when treated): an uplift model of that reward estimates the incremental profit of showing the offer, and the
profit policy treats where it is positive (`propensity.uplift.policy`).

Champion and challenger. Users are split in two by a hash of the user id (whole users on each side): the
challenger is fitted on one half (cross-fitted DR-learner with the logged probabilities) and the doubly robust
difference of its policy against the current one is estimated on the other half, with a bootstrap over users.
It replaces the current policy only when that difference's interval lies above 0 (`policy_promotion`). The model
that is judged is the model that is deployed: it is not refitted on the evaluation half afterwards.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from propensity.features.definitions import MODEL_FEATURE_NAMES, UPLIFT_FEATURE_NAMES
from propensity.monitoring.decisions import SESSION_EVENTS_SEEN
from propensity.uplift.learners import MIN_ARM_ROWS, UpliftModel, fit_uplift
from propensity.uplift.policy import OfferTerms, treat_when_profitable
from propensity.uplift.policy_value import PromotionVerdict, dr_difference, policy_promotion

DECISION_EVENTS = 3  # a session's offer is decided once it has this many events (sessions that end before: never)
LEARNER = "dr"
FOLDS = 3


@dataclass(frozen=True)
class UpliftLog:
    """One row per session (its decision point): inputs, arm, logged probability, realised reward."""

    X: pd.DataFrame
    treated: np.ndarray
    treatment_probability: np.ndarray
    reward: np.ndarray
    users: np.ndarray
    session_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.treated)

    def take(self, mask: np.ndarray) -> UpliftLog:
        return UpliftLog(
            self.X[mask].reset_index(drop=True),
            self.treated[mask],
            self.treatment_probability[mask],
            self.reward[mask],
            self.users[mask],
            self.session_ids[mask],
        )


def decision_point_rows(labelled: pd.DataFrame) -> pd.DataFrame:
    """Each session's decision point among labelled decisions: its first row whose online row had folded at least
    DECISION_EVENTS events (a row without online features is not one)."""
    at_point = labelled[labelled[SESSION_EVENTS_SEEN] >= DECISION_EVENTS]
    return at_point.sort_values(["decided_at", "request_id"], kind="stable").drop_duplicates("session_id")


def uplift_log(labelled: pd.DataFrame, terms: OfferTerms) -> UpliftLog:
    """The labelled decisions (`labelled_decisions` rows) as the uplift model's training log."""
    needed = (*UPLIFT_FEATURE_NAMES, SESSION_EVENTS_SEEN, "decided_at", "request_id", "session_id", "user_id")
    missing = [c for c in (*needed, "treated", "treatment_probability", "revenue") if c not in labelled.columns]
    if missing:
        raise ValueError(f"labelled decisions lack column(s) {missing}")
    first = decision_point_rows(labelled)
    treated = first["treated"].to_numpy(dtype=float)
    probability = first["treatment_probability"].to_numpy(dtype=float)
    # A treated row logged with probability 0, or an untreated one with 1, cannot be reweighted: the log is not
    # what was served (the decision_log asset's holdout check says so too).
    impossible = ((treated == 1) & (probability <= 0)) | ((treated == 0) & (probability >= 1))
    if impossible.any():
        raise ValueError(f"{int(impossible.sum())} first decisions contradict their logged probability of treatment")
    return UpliftLog(
        X=first[list(UPLIFT_FEATURE_NAMES)].astype(float).reset_index(drop=True),
        treated=treated,
        treatment_probability=probability,
        reward=terms.realised_profit(first["revenue"].to_numpy(dtype=float), treated),
        users=first["user_id"].astype(str).to_numpy(),
        session_ids=first["session_id"].astype(str).to_numpy(),
    )


def evaluation_half(users: np.ndarray) -> np.ndarray:
    """True for the users whose sessions judge the challenger: crc32 of the user id is odd (stable across runs)."""
    return np.array([zlib.crc32(u.encode("utf-8")) & 1 == 1 for u in users], dtype=bool)


@dataclass(frozen=True)
class Challenger:
    model: UpliftModel | None  # None: too little logged data on one arm to fit anything
    verdict: PromotionVerdict | None
    train_sessions: int
    evaluation_sessions: int
    treated_share_logged: float
    challenger_treated_share: float | None
    current_treated_share: float | None
    reason: str

    @property
    def promote(self) -> bool:
        return self.verdict is not None and self.verdict.promote


def _arm_counts(log: UpliftLog) -> tuple[int, int]:
    treated = int(log.treated.sum())
    return treated, len(log) - treated


def train_challenger(
    log: UpliftLog,
    current_would_treat,
    *,
    seed: int = 0,
    resamples: int = 400,
) -> Challenger:
    """Fit the challenger on one half of the users and judge it against `current_would_treat` (the current
    policy's deterministic action, 0/1, for every row of `log`) on the other half."""
    current = np.asarray(current_would_treat, dtype=float)
    if len(current) != len(log):
        raise ValueError(f"current policy actions: {len(current)} for {len(log)} rows")
    held = evaluation_half(log.users)
    train, evaluation = log.take(~held), log.take(held)
    logged_share = float(log.treated.mean()) if len(log) else 0.0

    def verdict(reason, model=None, promotion=None, challenger_action=None) -> Challenger:
        acted = challenger_action is not None  # the shares each policy treats, once there is a challenger
        return Challenger(
            model,
            promotion,
            len(train),
            len(evaluation),
            logged_share,
            float(challenger_action.mean()) if acted else None,
            float(current[held].mean()) if acted else None,
            reason,
        )

    for name, part in (("training", train), ("evaluation", evaluation)):
        treated, control = _arm_counts(part)
        if min(treated, control) < MIN_ARM_ROWS:
            return verdict(
                f"the {name} half holds {treated} treated and {control} untreated sessions: at least "
                f"{MIN_ARM_ROWS} of each are needed; the current policy stays"
            )
    model = fit_uplift(
        LEARNER,
        train.X,
        train.reward,
        train.treated,
        train.treatment_probability,
        folds=FOLDS,
        groups=train.users,
        seed=seed,
    )
    challenger_action = treat_when_profitable(model.predict(evaluation.X))
    mu1, mu0 = model.predict_outcomes(evaluation.X)  # reward models that never saw the evaluation half
    try:
        difference = dr_difference(
            evaluation.treated,
            evaluation.treatment_probability,
            evaluation.reward,
            challenger_action,
            current[held],
            mu1,
            mu0,
            groups=evaluation.users,
            resamples=resamples,
            seed=seed,
        )
    except ValueError as unsupported:  # the challenger acts where the log never explored
        reason = f"cannot be valued from this log: {unsupported}; the current policy stays"
        return verdict(reason, model, challenger_action=challenger_action)
    promotion = policy_promotion(difference)
    return verdict(promotion.reason, model, promotion, challenger_action)


def scoring_rows(X: pd.DataFrame) -> list[list[float]]:
    """Rows laid out as the scorer hands them to the decision (MODEL_FEATURE_NAMES order, NaN where `X` lacks the
    column): how a logged or simulated frame is put through `serving.decision.DecisionPolicy`."""
    rows = np.full((len(X), len(MODEL_FEATURE_NAMES)), np.nan)
    for i, name in enumerate(MODEL_FEATURE_NAMES):
        if name in X.columns:
            rows[:, i] = X[name].to_numpy(dtype=float)
    return rows.tolist()

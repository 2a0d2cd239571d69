"""The intervention decision for each scored row, from the model artifact's policy (`policy.json`).

- Holdout: a randomised share of sessions (`holdout_share`) is never treated, whatever its score. The draw is
  sha256 of the session id read as a uniform number in [0, 1): the same session lands in the same arm on every
  request, on every variant and model version, and the arm is independent of the score (the KPI monitor compares
  treated against holdout as a randomised experiment).
- Otherwise the policy's rule says whether the row would be treated:
  - `threshold`: the calibrated propensity is at or above it (today's expected-value rule on propensity);
  - `uplift` (a model retrained on the decision log, `propensity.uplift.training`): the estimated incremental profit
    of the offer at this row, from its features and propensity, is positive (`serving.uplift`, compiled trees).
- Exploration: below the threshold, a randomised share of the other sessions (`exploration_share`) is treated
  all the same, so the log holds treated rows where the policy would not treat, and a new policy that would can be
  valued off-policy. Its draw is the next 64 bits of the same digest: independent of the holdout's, and sticky.
- `treatment_probability` is the probability that this row is treated under the logging policy: 1 - holdout_share
  when the rule would treat it, (1 - holdout_share) * exploration_share below it. It is exact because the two
  draws are the only randomness; a held-out row logs the same probability (what the policy would have done).

Plain Python on the request path: a sha256 of a short id and a few comparisons (about a microsecond), plus the
uplift model's compiled trees under the uplift rule.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from propensity.features.definitions import MODEL_FEATURE_NAMES, PROPENSITY_INPUT
from serving.uplift import CompiledUplift

_DRAW_BYTES = 8  # 64 bits of the digest: a uniform draw with a resolution far below any holdout share
_DRAW_SPAN = 1 << (8 * _DRAW_BYTES)


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8")).digest()


def _draw_bits(session_id: str) -> int:
    return int.from_bytes(_digest(session_id)[:_DRAW_BYTES], "big")


def _second_draw(digest: bytes) -> int:
    return int.from_bytes(digest[_DRAW_BYTES : 2 * _DRAW_BYTES], "big")


def holdout_draw(session_id: str) -> float:
    """The session's uniform draw in [0, 1): the first 64 bits of sha256(session_id) over 2**64."""
    return _draw_bits(session_id) / _DRAW_SPAN


@dataclass(frozen=True, slots=True)
class Decision:
    treated: bool
    holdout: bool
    offer: str | None  # the offer shown when treated, else None
    treatment_probability: float

    def as_dict(self) -> dict:
        return {
            "treated": self.treated,
            "holdout": self.holdout,
            "offer": self.offer,
            "treatment_probability": self.treatment_probability,
        }


class DecisionPolicy:
    """An artifact's intervention policy (`threshold` or `uplift`, `holdout_share`, `exploration_share`, `offer`),
    checked and compiled once at load; `decide` runs per scored row."""

    def __init__(self, policy: dict):
        # only these fields steer the decision; the rest (economics, the lift's provenance) are for people
        threshold = policy.get("threshold")
        uplift = policy.get("uplift")
        holdout_share = policy.get("holdout_share", 0.0)
        exploration_share = policy.get("exploration_share", 0.0)
        offer = policy.get("offer")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"intervention policy threshold must be a probability or null, got {threshold!r}")
        if not (isinstance(holdout_share, (int, float)) and 0.0 <= holdout_share < 1.0):
            raise ValueError(f"intervention policy holdout_share must be in [0, 1), got {holdout_share!r}")
        if not (isinstance(exploration_share, (int, float)) and 0.0 <= exploration_share < 1.0):
            raise ValueError(f"intervention policy exploration_share must be in [0, 1), got {exploration_share!r}")
        if threshold is not None and uplift is not None:
            raise ValueError("intervention policy has both a threshold and an uplift model: one rule, please")
        treats = threshold is not None or uplift is not None
        if treats and (not isinstance(offer, str) or not offer):
            raise ValueError(f"intervention policy with a rule needs an offer to show, got {offer!r}")
        self.threshold: float | None = None if threshold is None else float(threshold)
        # The uplift model reads a row laid out as the model's features, then the calibrated propensity.
        self.uplift: CompiledUplift | None = None
        if uplift is not None:
            if not isinstance(uplift, dict) or "model" not in uplift:
                raise ValueError("intervention policy uplift must hold the uplift model ({'model': ...})")
            self.uplift = CompiledUplift(uplift["model"], (*MODEL_FEATURE_NAMES, PROPENSITY_INPUT))
        self.rule = "uplift" if uplift is not None else "threshold" if threshold is not None else None
        self.holdout_share = float(holdout_share)
        self.offer: str | None = offer if treats else None
        # compared as integers on the request path: draw < share  <=>  first 64 bits < share * 2**64
        self._holdout_below = math.ceil(self.holdout_share * _DRAW_SPAN)
        self.exploration_share = float(exploration_share) if treats else 0.0
        self._explore_below = math.ceil(self.exploration_share * _DRAW_SPAN)
        self._treat_probability = 1.0 - self.holdout_share
        self._explore_probability = self._treat_probability * self.exploration_share
        self._none = Decision(treated=False, holdout=False, offer=None, treatment_probability=0.0)
        self._held_out = Decision(treated=False, holdout=True, offer=None, treatment_probability=0.0)

    def is_holdout(self, session_id: str) -> bool:
        """holdout_draw(session_id) < holdout_share, in integers (no hashing at all without a holdout)."""
        return self._holdout_below > 0 and _draw_bits(session_id) < self._holdout_below

    def is_exploring(self, session_id: str) -> bool:
        """The session's second draw (bits 64-127 of the digest) < exploration_share."""
        return self._explore_below > 0 and _second_draw(_digest(session_id)) < self._explore_below

    def would_treat(self, propensity: float, features: Sequence[float] | None = None) -> bool:
        """The rule alone, before the holdout and exploration draws. `features`: the row in MODEL_FEATURE_NAMES
        order (NaN for missing), which the uplift rule needs."""
        if self.uplift is not None:
            if features is None:
                raise ValueError("the uplift rule decides from the row's features: pass them")
            return self.uplift.effect([*features, propensity]) > 0.0
        return self.threshold is not None and propensity >= self.threshold

    def decide(self, session_id: str, propensity: float, features: Sequence[float] | None = None) -> Decision:
        # one digest per request serves both draws; none at all when neither share is set
        digest = _digest(session_id) if self._holdout_below or self._explore_below else b""
        holdout = self._holdout_below > 0 and int.from_bytes(digest[:_DRAW_BYTES], "big") < self._holdout_below
        if self.rule is None:
            return self._held_out if holdout else self._none
        if not self.would_treat(propensity, features):
            if self._explore_below == 0:
                return self._held_out if holdout else self._none
            treated = not holdout and _second_draw(digest) < self._explore_below
            probability = self._explore_probability
        else:
            treated, probability = not holdout, self._treat_probability
        return Decision(
            treated=treated, holdout=holdout, offer=self.offer if treated else None, treatment_probability=probability
        )

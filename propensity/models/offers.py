"""From calibrated propensity to an intervene / do-not-intervene decision, by expected value.

Showing an offer to a session with propensity p:
    without the offer: p * margin
    with the offer:    p' * (margin - discount) - contact_cost,   p' = min(1, p * (1 + relative_lift))
The discount is paid on every order the offer touches, including those that would have happened anyway, so the gain
    p * ((1 + r) * (margin - discount) - margin) - contact_cost
is linear in p and the rule is a threshold: intervene when p >= contact_cost / ((1 + r)(margin - discount) - margin).
If that slope is not positive the offer loses money at any propensity and the threshold is None (never intervene).
This only works with calibrated probabilities: a threshold in probability units means nothing on raw scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from propensity.datasets import dataset_file

# The offer's effect when nothing else is configured, so the offer policy needs no dataset: Hillstrom's randomised
# e-mail test, Womens E-Mail against No E-Mail, 189 of 21,387 customers converted against 122 of 21,306. Measured by
# `hillstrom_relative_lift` wherever the dataset is present (`make data`); a test holds the two equal.
HILLSTROM_WOMENS_LIFT = 0.54331
LIFT_PROVENANCE = (
    "Hillstrom MineThatData e-mail test (2008): Womens E-Mail vs No E-Mail, conversion 189/21,387 vs 122/21,306, "
    "relative lift +54.3 %"
)


@dataclass(frozen=True)
class OfferEconomics:
    margin: float  # contribution of an average order without the offer
    discount: float  # given away on each order placed with the offer
    contact_cost: float  # cost of showing the offer, converted or not
    relative_lift: float  # the offer multiplies the purchase probability by (1 + relative_lift)

    def __post_init__(self):
        if self.margin <= 0 or self.discount < 0 or self.contact_cost < 0 or self.relative_lift <= -1:
            raise ValueError(f"implausible offer economics: {self}")


def intervention_threshold(economics: OfferEconomics) -> float | None:
    slope = (1 + economics.relative_lift) * (economics.margin - economics.discount) - economics.margin
    if slope <= 0:
        return None
    threshold = economics.contact_cost / slope
    return float(threshold) if threshold <= 1 else None


def expected_gain(propensity, economics: OfferEconomics) -> np.ndarray:
    """Expected value of intervening minus not intervening, per decision point."""
    p = np.asarray(propensity, dtype=float)
    with_offer = np.minimum(1.0, p * (1 + economics.relative_lift))
    return with_offer * (economics.margin - economics.discount) - economics.contact_cost - p * economics.margin


def hillstrom_relative_lift(path: Path | None = None, arm: str = "Womens E-Mail") -> dict[str, float]:
    """Relative conversion lift of one e-mail arm over control in the randomised Hillstrom experiment."""
    path = path or dataset_file("hillstrom")
    data = pd.read_csv(path, usecols=["segment", "conversion"])
    treated = data.loc[data["segment"] == arm, "conversion"]
    control = data.loc[data["segment"] == "No E-Mail", "conversion"]
    if treated.empty or control.empty:
        raise ValueError(f"{path} has no rows for arm {arm!r} or for the control 'No E-Mail'")
    return {
        "arm": arm,
        "treated_conversion": float(treated.mean()),
        "control_conversion": float(control.mean()),
        "relative_lift": float(treated.mean() / control.mean() - 1),
        "treated_n": int(len(treated)),
        "control_n": int(len(control)),
    }

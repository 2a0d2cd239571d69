"""The profit policy: show the offer where its expected incremental profit is positive.

With a gross margin rate m on revenue, a discount rate d given away on every order placed under the offer (the
orders that would have happened anyway included) and a contact cost c, showing the offer earns in expectation
    m * (R1 - R0) - d * R1 - c = m * tau_revenue - d * R1 - c
(R1, R0: expected revenue treated and not). On a session's realised revenue the profit is m * revenue, less
d * revenue + c when treated (`realised_profit`), so an uplift model fitted to realised profit estimates exactly
this difference, and the rule "treat when the estimated uplift in profit is positive" is the same policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OfferTerms:
    """What an offer costs and earns: rates on revenue and a cost per contact (currency units)."""

    margin_rate: float = 0.30
    discount_rate: float = 0.10
    contact_cost: float = 0.05

    def __post_init__(self):
        if not (0 < self.margin_rate <= 1 and 0 <= self.discount_rate < 1 and self.contact_cost >= 0):
            raise ValueError(f"implausible offer terms: {self}")

    def incremental_profit(self, revenue_treated, revenue_control) -> np.ndarray:
        treated, control = np.asarray(revenue_treated, float), np.asarray(revenue_control, float)
        return self.margin_rate * (treated - control) - self.discount_rate * treated - self.contact_cost

    def realised_profit(self, revenue, treated) -> np.ndarray:
        revenue, treated = np.asarray(revenue, float), np.asarray(treated, float)
        return self.margin_rate * revenue - treated * (self.discount_rate * revenue + self.contact_cost)


def treat_when_profitable(expected_incremental_profit) -> np.ndarray:
    """1.0 where the offer is expected to add profit, else 0.0 (a deterministic target policy)."""
    return (np.asarray(expected_incremental_profit, float) > 0).astype(float)

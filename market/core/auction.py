"""What an auction's rules are told besides the bids: who won nothing (`NO_WINNER`), and
each bid's job hours, reliability and list price with the tenant's budget (`AuctionContext`).

Shared by the single-order rules (`market.mechanisms.rules`), the multi-order clearings
(`market.mechanisms.clearing`) and the engine that builds the context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The winner index of an auction nobody won.
NO_WINNER = -1
# Relative slack when comparing a job's cost with a budget: both are products of float hours.
ROUND_OFF = 1e-12


@dataclass(frozen=True, slots=True)
class AuctionContext:
    """What the market knows about each bid besides its price, for mechanisms that need it:
    how many hours the job runs on the bidder's GPU (1 for an open-ended lease), the bidder's
    reliability (the share of its past leases that ended without a provider fault, smoothed
    so that a newcomer starts near 1), and the hyperscaler list price of the bidder's GPU for
    the whole order (micro-USD per hour).

    `budget_micro` is the most the tenant pays for the order's work, micro-USD: its max price
    (per GPU-hour of the order) over the job's shortest run on a GPU model it accepts, and
    never more than that work is worth to it. `pays_reserve`: the lease pays the max price,
    not the bid (an interruptible order's bid per GPU-hour, as on Vast.ai).
    """

    job_hours: np.ndarray
    reliability: np.ndarray
    list_micro: np.ndarray
    budget_micro: float = math.inf
    pays_reserve: bool = False

    def job_cost_micro(self, prices_micro: np.ndarray, max_price_micro: int) -> np.ndarray:
        """What each bid would cost the tenant for the order's whole work, micro-USD."""
        rate = np.full(len(prices_micro), float(max_price_micro)) if self.pays_reserve \
            else np.asarray(prices_micro, dtype=float)
        return rate * self.job_hours

    def affordable(self, prices_micro: np.ndarray, max_price_micro: int) -> np.ndarray:
        """bool per bid: within the max price and, for the whole job, within the budget."""
        cost = self.job_cost_micro(prices_micro, max_price_micro)
        return (np.asarray(prices_micro) <= max_price_micro) & np.isfinite(cost) \
            & (cost <= self.budget_micro * (1 + ROUND_OFF))

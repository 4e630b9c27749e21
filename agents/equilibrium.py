"""Bid strategies auction theory prescribes (protocol: `market.strategy`).

- `Truthful`: bid your cost (dominant under second price).
- `Equilibrium`: the symmetric first-price equilibrium bid for i.i.d. costs.

Bids are USD per GPU-hour on the provider's cost basis (`MarketView.costs`). With a take rate t
on payouts a provider keeps (1 − t) × price, so by default each prices the *fee-grossed cost*
c / (1 − t) where the textbook prices the cost c (`cost_floors`); `MarketView.fee_gross_up()` is
1 / (1 − t) when the scenario's `market.bids_net_of_fee` is on (the default) and 1 when off.
"""


from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from market.strategy import MarketView, OrderView


def cost_floors(providers: np.ndarray, view: MarketView) -> np.ndarray:
    """The lowest price each provider can take and still cover its cost basis after the
    platform's fee, USD per GPU-hour: cost × `view.fee_gross_up()`."""
    return view.costs(providers) * view.fee_gross_up()


class Truthful:
    """Bid the provider's own cost basis per GPU-hour grossed up by the fee, c / (1 − t),
    whatever the order (c itself when the scenario's `market.bids_net_of_fee` is off).

    Winning at price p leaves (1 − t)·p − c = (1 − t)·(p − c / (1 − t)): a second-price
    (Vickrey) auction with fees is the fee-free one with costs c / (1 − t), so bidding
    c / (1 − t) is dominant; under pay-as-bid rules it keeps nothing above cost. No
    parameters.
    """

    def asks(self, providers: np.ndarray, view: MarketView) -> np.ndarray:
        return cost_floors(providers, view)

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        return self.asks(providers, view)


EQUILIBRIUM_DISTRIBUTIONS = ("uniform", "exponential", "lognormal")


class Equilibrium:
    """The symmetric equilibrium bid of a first-price procurement auction among `n` bidders
    whose costs are i.i.d. with distribution F (auction theory):

        b(c) = c + ∫_c^∞ (1 − F(u))^(n−1) du / (1 − F(c))^(n−1)

    that is, the expected lowest rival cost given that it is above c.

    With a take rate t on payouts (and the scenario's `market.bids_net_of_fee` on) the bid
    is ``gross_up × b(c)``, gross_up = 1 / (1 − t). Derivation: winning at x leaves
    (1 − t)·x − c = (1 − t)·(x − c'), with c' = c / (1 − t); so each bidder plays the
    fee-free first-price auction whose costs are c', i.i.d. with F'(s) = F((1 − t)·s). Its
    equilibrium is b'(c') = c' + ∫_c'^∞ (1 − F'(s))^(n−1) ds / (1 − F'(c'))^(n−1), and the
    change of variable s = u / (1 − t) turns the integral into ∫_c^∞ (1 − F(u))^(n−1) du /
    (1 − t), so b'(c') = (c + ∫_c^∞ (1 − F(u))^(n−1) du / (1 − F(c))^(n−1)) / (1 − t) =
    b(c) / (1 − t). For U[low, high]: ``(c + (high − c)/n) / (1 − t)``. `low`, `high` and
    `scale` describe the costs before the fee; `bid` is the fee-free b(c).

    `distribution` picks F, each shifted to start at `low` (USD per GPU-hour):
    - ``"uniform"`` on [low, high]: closed form ``b(c) = c + (high − c)/n``;
    - ``"exponential"`` with mean `low + scale`, and ``"lognormal"``, ``low + exp(N(log
      scale, sigma²))``: by `scipy.integrate.quad`. (The exponential's answer is known,
      ``b(c) = c + scale/(n − 1)``, as it is memoryless: a check on the integration.)
    `high` is used by the uniform only. A cost below `low` bids b(low) (rivals' costs are
    all above it); a cost that no rival's cost can be above (the uniform's `high` or more)
    bids the cost.

    `n` counts the bidders, rivals + 1, and must be given (>= 2): a participant cannot see
    how many rivals an order draws, so it is a belief, set as a scenario parameter. Its ask
    does not depend on the order (`asks`).

    >>> Equilibrium(n=4).bid(0.2)  # U[0, 1] costs: c + (1 − c)/n
    0.4
    """

    def __init__(self, n: int | None = None, low: float = 0.0, high: float = 1.0,
                 distribution: str = "uniform", scale: float = 1.0, sigma: float = 1.0) -> None:
        if n is None or not (isinstance(n, int) and n >= 2):
            raise ValueError(f"n: the number of bidders (rivals + 1) is required, an integer "
                             f">= 2, got {n!r}")
        if distribution not in EQUILIBRIUM_DISTRIBUTIONS:
            raise ValueError(f"distribution: {distribution!r} is not one of "
                             f"{', '.join(EQUILIBRIUM_DISTRIBUTIONS)}")
        if distribution == "uniform" and not low < high:
            raise ValueError(f"need low < high for the uniform, got low={low}, high={high}")
        if not (scale > 0 and sigma > 0):
            raise ValueError(f"scale and sigma must be > 0, got scale={scale}, sigma={sigma}")
        self.n, self.low, self.high = n, low, high
        self.distribution, self.scale, self.sigma = distribution, scale, sigma

    def bid(self, cost: float) -> float:
        """The fee-free equilibrium bid b(c) at `cost`, USD per GPU-hour (`asks` multiplies
        it by `MarketView.fee_gross_up()`)."""
        if self.distribution == "uniform":
            if cost >= self.high:
                return cost
            c = max(cost, self.low)
            return c + (self.high - c) / self.n
        return self._integral_bid(cost)

    def log_survival(self, t: float) -> float:
        """log(1 − F(t)) of the exponential or lognormal cost distribution."""
        if t <= self.low:
            return 0.0
        if self.distribution == "exponential":
            return -(t - self.low) / self.scale
        from scipy.special import log_ndtr  # imported only when needed: scipy is slow to load

        return float(log_ndtr(-math.log((t - self.low) / self.scale) / self.sigma))

    def _integral_bid(self, cost: float) -> float:
        from scipy.integrate import quad

        power = self.n - 1
        c = max(cost, self.low)
        at_c = self.log_survival(c)
        if at_c == -math.inf:  # no rival's cost can be above c
            return cost

        # (1 − F(t))^(n−1) / (1 − F(c))^(n−1), in logs so that tails do not underflow.
        def ratio(t: float) -> float:
            return math.exp(power * (self.log_survival(t) - at_c))

        # Integrate over a finite stretch that holds all but 1e-12 of the integrand (it
        # falls from 1 at c): quad is reliable there, even far out in a tail.
        width = 1e-3 * max(abs(c), self.scale)
        while ratio(c + width) > 1e-12 and width < 1e300:
            width *= 2.0
        return c + quad(ratio, c, c + width, limit=200)[0]

    def asks(self, providers: np.ndarray, view: MarketView) -> np.ndarray:
        costs = view.costs(providers)
        unique, where = np.unique(costs, return_inverse=True)
        bids = np.array([self.bid(float(c)) for c in unique.tolist()])[where]
        return bids.reshape(costs.shape) * view.fee_gross_up()

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        return self.asks(providers, view)


__all__ = ["EQUILIBRIUM_DISTRIBUTIONS", "Equilibrium", "Truthful", "cost_floors"]

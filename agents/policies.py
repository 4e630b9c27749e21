"""Tenant policies: how a tenant sets and revises the max price of its orders.

A policy sees a job through three calls, in USD per GPU-hour:
- `max_price(tenant, value, factor, job_cost_per_usd)`: the first max price of a new job.
  `value` is the job's value per GPU-hour of this order on its fastest acceptable GPU model
  (V / (GPUs × hours there)): at that max price the job on that model costs all it is worth,
  and on a slower model more, so the market's selection refuses such bids by their cost per
  job (`market.core.auction.AuctionContext.budget_micro`). `factor` is the tenant's draw from
  the scenario's `tenants.max_price_factor` range; and `job_cost_per_usd` is what the job's
  escrow deposit costs per USD of max price. Returning None means the tenant takes the job
  elsewhere (reason "budget").
- `after_expiry(tenant, max_price, value)`: the max price to re-post at after an expired
  order.
- `after_fill(tenant, waited_s, attempt)`: learn from a lease that started.

Whatever a policy returns, a tenant never pays more for a job than its value: the selection
caps every order's budget at the value of the work left.

Policies are registered by name (`gpumarket.tenant_policies`); a scenario picks one with
`tenants.policy = { name = ..., params = { ... } }`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from market.builder import Market


class Fraction:
    """A fixed fraction of the job's value; after an expiry, re-post `reprice` times higher,
    never above `cap` times the value (above 1 it only lets through bids the selection then
    refuses)."""

    def __init__(self, reprice: float = 1.5, cap: float = 1.0) -> None:
        if reprice < 1:
            raise ValueError(f"reprice must be >= 1, got {reprice}")
        if cap <= 0:
            raise ValueError(f"cap must be > 0, got {cap}")
        self.reprice = reprice
        self.cap = cap

    def bind(self, market: Market) -> None:
        """Called once when the tenants start (a policy may read the market's rules)."""

    def max_price(self, tenant: int, value: float, factor: float,
                  job_cost_per_usd: float) -> float | None:
        return min(factor, self.cap) * value

    def after_expiry(self, tenant: int, max_price: float, value: float) -> float:
        return min(max_price * self.reprice, value * self.cap)

    def after_fill(self, tenant: int, waited_s: float, attempt: int) -> None:
        return None


class Adaptive(Fraction):
    """Each tenant learns its own price level: its multiplier rises `up` times after an
    expired order and falls `down` times after a fill on the first attempt (it paid more than
    it needed to), within [`floor`, `cap` / factor]."""

    def __init__(self, reprice: float = 1.5, cap: float = 1.0, up: float = 1.25,
                 down: float = 0.9, floor: float = 0.2) -> None:
        super().__init__(reprice, cap)
        if not (up >= 1 and 0 < down <= 1 and 0 < floor <= 1):
            raise ValueError("expected up >= 1, 0 < down <= 1 and 0 < floor <= 1")
        self.up, self.down, self.floor = up, down, floor
        self.level: defaultdict[int, float] = defaultdict(lambda: 1.0)

    def max_price(self, tenant: int, value: float, factor: float,
                  job_cost_per_usd: float) -> float | None:
        return min(factor * self.level[tenant], self.cap) * value

    def after_expiry(self, tenant: int, max_price: float, value: float) -> float:
        self.level[tenant] = min(self.level[tenant] * self.up, 1 / self.floor)
        return super().after_expiry(tenant, max_price, value)

    def after_fill(self, tenant: int, waited_s: float, attempt: int) -> None:
        if attempt == 0:
            self.level[tenant] = max(self.level[tenant] * self.down, self.floor)


class Budget(Fraction):
    """A spending budget per tenant: `weekly_usd` a week, pro rata over the run. A job's max
    price is lowered until its escrow deposit fits what is left; below `min_fraction` of the
    job's value the job goes elsewhere."""

    def __init__(self, weekly_usd: float = 2_000.0, reprice: float = 1.5, cap: float = 1.0,
                 min_fraction: float = 0.05) -> None:
        super().__init__(reprice, cap)
        if weekly_usd <= 0 or not 0 < min_fraction <= 1:
            raise ValueError("expected weekly_usd > 0 and 0 < min_fraction <= 1")
        self.weekly_usd = weekly_usd
        self.min_fraction = min_fraction
        self.market: Market | None = None
        self.committed: defaultdict[int, float] = defaultdict(float)

    def bind(self, market: Market) -> None:
        self.market = market

    def _budget(self) -> float:
        assert self.market is not None
        return self.weekly_usd * max(self.market.horizon_s / (7 * 86_400), 1 / 7)

    def max_price(self, tenant: int, value: float, factor: float,
                  job_cost_per_usd: float) -> float | None:
        wanted = super().max_price(tenant, value, factor, job_cost_per_usd)
        left = self._budget() - self.committed[tenant]
        affordable = left / job_cost_per_usd if job_cost_per_usd > 0 else wanted
        price = min(wanted, affordable)
        if price < self.min_fraction * value:
            return None
        self.committed[tenant] += price * job_cost_per_usd
        return price

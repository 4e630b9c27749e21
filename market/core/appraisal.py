"""What an auction weighs besides prices: each bidder's track record, the job's hours on its
GPU, the tenant's budget, and what serving the job costs a provider (for welfare).
"""

from __future__ import annotations

import numpy as np

from market.catalog import GpuCatalog
from market.core.auction import AuctionContext
from market.core.pool import ProviderPool
from market.core.records import Order
from market.units import MICRO_USD_PER_USD, SECONDS_PER_HOUR, order_cost_micro


class Appraisal:
    """Providers' public track records (leases ended, and ended by their fault), and the
    figures an auction and the welfare accounts derive from them and from the order."""

    def __init__(self, pool: ProviderPool, catalog: GpuCatalog) -> None:
        self._pool = pool
        self._list_usd = catalog.array("list_usd_per_gpu_hour")
        self._ended = np.zeros(0)
        self._failed = np.zeros(0)

    def providers_added(self, count: int) -> None:
        self._ended = np.concatenate([self._ended, np.zeros(count)])
        self._failed = np.concatenate([self._failed, np.zeros(count)])

    def lease_ended(self, provider: int, fault: bool) -> None:
        """A lease on `provider` ended (by its fault: failure or departure)."""
        self._ended[provider] += 1
        if fault:
            self._failed[provider] += 1

    def leases_ended(self, provider: int) -> int:
        """How many leases `provider` has ended so far (its public track record)."""
        return int(self._ended[provider])

    def context(self, order: Order, providers: np.ndarray) -> AuctionContext:
        """Hours of the job on each bidder's GPU, each bidder's reliability so far, and the
        tenant's budget for the order's work."""
        models = self._pool.model[providers]
        hours = (np.ones(providers.size) if order.work_s is None
                 else order.work_s[models] / SECONDS_PER_HOUR)
        # Laplace-smoothed share of leases that ended without a provider fault.
        ended = self._ended[providers]
        reliability = (ended - self._failed[providers] + 1) / (ended + 1)
        list_micro = order_cost_micro(self._list_usd[models], order.gpus)
        # One max price per GPU-hour for every model the order accepts (as on Akash) means
        # the tenant's budget for the work is that price over its shortest run; it never pays
        # more than the work left is worth (the whole job's value, pro rata).
        shortest_h, value_micro = 1.0, float(order.job_value_micro)
        if order.work_s is not None:
            shortest_h = float(order.work_s[order.model_mask].min()) / SECONDS_PER_HOUR
            value_micro *= order.work_left
        budget_micro = min(order.max_price * shortest_h, value_micro)
        return AuctionContext(hours, reliability, list_micro, budget_micro=budget_micro,
                              pays_reserve=order.interruptible)

    def serving_cost_micro(self, order: Order, providers: np.ndarray) -> np.ndarray:
        """What serving the whole job of `order` (all its work, not only what is left) costs
        each of `providers` at its avoidable cost of serving (`cost_marginal`), micro-USD
        (float); for an open-ended order, one hour of it."""
        pool = self._pool
        rate = order_cost_micro(pool.cost_marginal_usd_per_gpu_hour[providers], order.gpus)
        if order.work_s is None:
            return rate
        return rate * order.work_s[pool.model[providers]] / order.work_left / SECONDS_PER_HOUR

    def best_cost_micro(self, order: Order, ids: np.ndarray) -> int:
        """The lowest cost of serving the whole job: the cheapest provider that could take
        it now (eligible, with the capacity free) or the outside option, micro-USD."""
        best = order.outside_cost_micro
        if ids.size:
            best = min(best, round(float(self._cheapest_serving_micro(order, ids))))
        return best

    def _cheapest_serving_micro(self, order: Order, ids: np.ndarray) -> float:
        """The least of `serving_cost_micro(order, ids)`, the very same float, in fewer
        passes over the eligible providers (this runs for every order posted).

        That cost is ((rate × hours' seconds) / work left) / 3600 per provider. Dividing by a
        positive number is monotone (rounding to nearest never reverses an order), so the
        least quotient is the quotient of the least product: the two divisions are done once,
        on the least product, instead of per provider. The products are the same floats
        (same operands, same order), here computed in place."""
        pool = self._pool
        rate = pool.cost_marginal_usd_per_gpu_hour[ids]  # order_cost_micro, in place:
        rate *= order.gpus
        rate *= MICRO_USD_PER_USD
        if order.work_s is None:
            return rate.min()
        rate *= order.work_s[pool.model[ids]]
        return rate.min() / order.work_left / SECONDS_PER_HOUR

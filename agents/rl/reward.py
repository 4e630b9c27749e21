"""A population's short-run profit as it stands at any instant of a run: the environments'
reward is its change over a step, so an episode's return is the population's short-run
profit of the run, the providers table's figure (`market.observe.metrics`), to the float.

Short-run profit = revenue net of fees − avoidable cost (serving: marginal cost × GPU-hours
served; idle power and operations: per GPU-hour on the market). Mid-run, revenue also counts
what the population's running leases have earned since their last settlement (what settling
now would pay, net of the take): a step is credited with the work done in it, not with the
day the provider withdraws. At the run's end everything earned is settled, and the figure is
exactly the table's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from market.core.records import Lease
from market.events import LeaseClosed, LeaseCreated
from market.units import SECONDS_PER_HOUR, micro_to_usd, owed_micro


class ProfitMeter:
    """The short-run profit of the providers with ids in [`first`, `end`) of `market`, USD."""

    def __init__(self, market: Any, first: int, end: int) -> None:
        self._market = market
        self._own = slice(first, end)
        self._first, self._end = first, end
        self._take_ppm = round(market.rules.fee_rate * 1_000_000)
        self._leases: dict[int, Lease] = {}   # the population's active leases
        market.subscribe(self._leased, kinds=(LeaseCreated,))
        market.subscribe(self._closed, kinds=(LeaseClosed,))

    def _leased(self, event: LeaseCreated) -> None:
        if self._first <= event.provider < self._end:
            self._leases[event.lease_id] = self._market.leases[event.lease_id]

    def _closed(self, event: LeaseClosed) -> None:
        self._leases.pop(event.lease_id, None)

    def profit_usd(self) -> float:
        """Short-run profit so far (the module's definition), USD."""
        market = self._market
        metrics = market.metrics
        pool = market.pool
        own = self._own
        now = market.now
        busy_s = pool.busy_gpu_s[own].copy()   # the leases' current runs are added below
        earned_micro = 0
        for lease in self._leases.values():
            if lease.running:
                busy_s[lease.provider - self._first] += lease.gpus * (now - lease.run_start_s)
            if not market.finished:  # at the end, all that could be paid is settled
                owed = min(owed_micro(lease.price, lease.ran_s(now)) - lease.paid,
                           lease.order.escrow)
                if owed > 0:
                    earned_micro += owed - owed * self._take_ppm // 1_000_000
        # As the providers table counts them (market.observe.metrics.provider_accounts).
        present_h = np.maximum(metrics.on_market_span_h()[own]
                               - metrics.absent_hours(np.arange(self._first, self._end)), 0.0)
        gpus = pool.capacity[own, 0].astype(float)
        revenue = metrics.revenue_by_provider()[own]
        serving = pool.cost_marginal_usd_per_gpu_hour[own] * (busy_s / SECONDS_PER_HOUR)
        idle = pool.cost_idle_usd_per_gpu_hour[own] * gpus * present_h
        operations = pool.cost_fixed_usd_per_gpu_hour[own] * gpus * present_h
        return (float((revenue - (serving + idle + operations)).sum())
                + micro_to_usd(earned_micro))

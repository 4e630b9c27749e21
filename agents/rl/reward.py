"""A population's short-run profit as it stands at any instant of a run: the environments'
reward is its change over a step, so an episode's return is the population's short-run
profit of the run, the providers table's figure (`market.observe.metrics`), to the float.

Short-run profit = revenue net of fees − avoidable cost (serving: marginal cost × GPU-hours
served; idle power and operations: per GPU-hour on the market). Mid-run, revenue also counts
what the population's leases have earned and not yet been paid (price × time run − paid, net
of the take): a step is credited with the work done in it, not with the day the provider
withdraws. At the run's end everything earned is settled, and the figure is
exactly the table's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from market.events import LeaseClosed, LeaseCreated, LeasePaused, LeaseResumed, PaymentSettled
from market.units import SECONDS_PER_HOUR, micro_to_usd


class ProfitMeter:
    """The short-run profit of the providers with ids in [`first`, `end`) of `market`, USD.

    It reads the population's leases from the event stream into running sums (what its
    running leases earn and cost per hour), so that reading the profit costs the same
    whatever the number of leases: an environment reads it at every step.
    """

    def __init__(self, market: Any, first: int, end: int) -> None:
        self._market = market
        self._own = slice(first, end)
        self._first, self._end = first, end
        self._take_ppm = round(market.rules.fee_rate * 1_000_000)
        self._marginal = market.pool.cost_marginal_usd_per_gpu_hour
        # Per active lease of the population: [price (micro-USD per hour), its serving cost
        # per hour (USD), start of its current run (None: paused), paid so far (micro-USD),
        # price x seconds of its finished runs].
        self._leases: dict[int, list[Any]] = {}
        self._revenue_micro = 0        # paid to the population, net of fees
        # Sums over the active leases: paid (micro-USD); price x seconds run before the
        # current runs; and, over the running ones, price, price x run start, serving cost
        # per hour, and that cost x run start.
        self._paid_micro = 0
        self._price_worked = 0.0
        self._price_running = self._price_start = 0.0
        self._serving_running = self._serving_start = 0.0
        market.subscribe(self._leased, kinds=(LeaseCreated,))
        market.subscribe(self._paid, kinds=(PaymentSettled,))
        market.subscribe(self._paused, kinds=(LeasePaused,))
        market.subscribe(self._resumed, kinds=(LeaseResumed,))
        market.subscribe(self._closed, kinds=(LeaseClosed,))

    def _leased(self, event: LeaseCreated) -> None:
        if self._first <= event.provider < self._end:
            serving = float(self._marginal[event.provider]) * event.gpus
            self._leases[event.lease_id] = [event.price_micro_per_hour, serving, None, 0, 0.0]
            self._run(event.lease_id, event.time_s)

    def _run(self, lease_id: int, start_s: float) -> None:
        lease = self._leases[lease_id]
        lease[2] = start_s
        self._price_running += lease[0]
        self._price_start += lease[0] * start_s
        self._serving_running += lease[1]
        self._serving_start += lease[1] * start_s

    def _stop(self, lease_id: int, now_s: float) -> None:
        lease = self._leases[lease_id]
        start = lease[2]
        if start is None:
            return
        lease[2] = None
        self._price_running -= lease[0]
        self._price_start -= lease[0] * start
        self._serving_running -= lease[1]
        self._serving_start -= lease[1] * start
        lease[4] += lease[0] * (now_s - start)
        self._price_worked += lease[0] * (now_s - start)

    def _paid(self, event: PaymentSettled) -> None:
        if self._first <= event.provider < self._end:
            self._revenue_micro += event.amount_micro - event.fee_micro
            lease = self._leases.get(event.lease_id)
            if lease is not None:
                lease[3] += event.amount_micro
                self._paid_micro += event.amount_micro

    def _paused(self, event: LeasePaused) -> None:
        if event.lease_id in self._leases:
            self._stop(event.lease_id, event.time_s)

    def _resumed(self, event: LeaseResumed) -> None:
        if event.lease_id in self._leases:
            self._run(event.lease_id, event.time_s)

    def _closed(self, event: LeaseClosed) -> None:
        lease = self._leases.get(event.lease_id)
        if lease is None:
            return
        self._stop(event.lease_id, event.time_s)
        # What it ran and was paid leaves the sums (its serving is in the pool's busy time).
        self._price_worked -= lease[4]
        self._paid_micro -= lease[3]
        del self._leases[event.lease_id]

    def profit_usd(self) -> float:
        """Short-run profit so far (the module's definition), USD."""
        market = self._market
        metrics = market.metrics
        pool = market.pool
        own = self._own
        now = market.now
        # Serving: the GPU-seconds the pool has booked (runs that ended) and the current runs.
        serving = (float(np.dot(self._marginal[own], pool.busy_gpu_s[own])) / SECONDS_PER_HOUR
                   + (self._serving_running * now - self._serving_start) / SECONDS_PER_HOUR)
        revenue_micro = float(self._revenue_micro)
        if not market.finished:  # at the end, all that could be paid is settled
            earned = ((self._price_worked + self._price_running * now - self._price_start)
                      / SECONDS_PER_HOUR - self._paid_micro)
            if earned > 0:
                revenue_micro += earned * (1.0 - self._take_ppm / 1_000_000)
        # As the providers table counts them (market.observe.metrics.provider_accounts).
        present_h = np.maximum(metrics.on_market_span_h()[own]
                               - metrics.absent_hours()[own], 0.0)
        per_hour = ((pool.cost_idle_usd_per_gpu_hour[own] + pool.cost_fixed_usd_per_gpu_hour[own])
                    * pool.capacity[own, 0])
        return micro_to_usd(revenue_micro) - serving - float(np.dot(per_hour, present_h))

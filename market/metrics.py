"""Metrics computed from the event stream: the run's summary and its price series.

The subscriber keeps running totals and one float per lease for price quantiles; everything
else is bounded by what is open at a time, not by how many orders have finished.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from market.events import (
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
    PaymentSettled,
    TenantLeft,
    Tick,
)
from market.records import PROVIDER_FAULTS
from market.units import MICRO_USD_PER_USD, SECONDS_PER_HOUR

if TYPE_CHECKING:
    from market.engine import Market


def describe(values: Any) -> dict[str, float | int]:
    """count, mean, median and p90 of `values` (NaN-free; zeros when empty)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {"count": 0, "mean": 0.0, "median": 0.0, "p90": 0.0}
    return {"count": int(data.size), "mean": float(data.mean()),
            "median": float(np.median(data)), "p90": float(np.quantile(data, 0.9))}


class _OpenLease:
    __slots__ = ("gpus", "model", "price_per_gpu_hour", "provider", "running", "start_s")

    def __init__(self, event: LeaseCreated) -> None:
        self.model = event.gpu_model
        self.gpus = event.gpus
        self.provider = event.provider
        self.start_s = event.time_s          # of the current run
        self.running = True                  # False while an interruptible lease is paused
        self.price_per_gpu_hour = event.price_micro_per_hour / event.gpus / MICRO_USD_PER_USD

    def running_gpu_s(self, now_s: float) -> float:
        """GPU-seconds of the current run up to `now_s` (none while paused)."""
        return self.gpus * (now_s - self.start_s) if self.running else 0.0


class Metrics:
    """Subscribes to a market's events and summarizes them."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.list_price = {m.id: m.list_usd_per_gpu_hour for m in market.catalog}
        self.counts: Counter[str] = Counter()
        self.close_reasons: Counter[str] = Counter()
        self.left_reasons: Counter[str] = Counter()
        self.waited_s = array("d")
        self.job_waited_s = array("d")
        self.prices: dict[str, array] = defaultdict(lambda: array("d"))
        self.open_leases: dict[int, _OpenLease] = {}
        self.job_first_s: dict[int, float] = {}
        self.jobs_to_repost: set[int] = set()
        self.served_gpu_h: Counter[str] = Counter()      # by model
        self.paid_usd: Counter[str] = Counter()          # by model
        self.revenue_usd: list[float] = []               # by provider, net of fees
        self.platform_usd = 0.0
        self.left_list_cost_usd = 0.0
        self.leased_gpus: Counter[str] = Counter()       # by model, right now
        self._bucket_value: Counter[str] = Counter()     # sum of price × gpus this bucket
        self._bucket_gpus: Counter[str] = Counter()
        self._bucket_leases: Counter[str] = Counter()
        self._bucket_start = 0.0
        self.series: list[dict[str, Any]] = []
        self.interruptible_prices = array("d")
        self.on_demand_prices = array("d")
        self.paused_gpu_s = 0.0
        self.pause_started: dict[int, float] = {}
        for kind, handler in _HANDLERS.items():
            market.subscribe(handler.__get__(self), kinds=(kind,))

    def _opened(self, event: OrderOpened) -> None:
        self.counts["orders_posted"] += 1
        if event.attempt == 0:
            self.counts["jobs_posted"] += 1
            self.job_first_s[event.job_id] = event.time_s
        if event.job_id in self.jobs_to_repost:
            self.jobs_to_repost.discard(event.job_id)
            self.counts["work_reposted"] += 1

    def _expired(self, event: OrderExpired) -> None:
        self.counts["orders_expired"] += 1

    def _cancelled(self, event: OrderCancelled) -> None:
        self.counts["orders_cancelled"] += 1

    def _leased(self, event: LeaseCreated) -> None:
        self.counts["leases_created"] += 1
        lease = _OpenLease(event)
        self.open_leases[event.lease_id] = lease
        self.waited_s.append(event.waited_s)
        first = self.job_first_s.pop(event.job_id, None)
        if first is not None:
            self.job_waited_s.append(event.time_s - first)
        self.prices[event.gpu_model].append(lease.price_per_gpu_hour)
        (self.interruptible_prices if event.interruptible
         else self.on_demand_prices).append(lease.price_per_gpu_hour)
        self.leased_gpus[event.gpu_model] += event.gpus
        self._bucket_value[event.gpu_model] += lease.price_per_gpu_hour * event.gpus
        self._bucket_gpus[event.gpu_model] += event.gpus
        self._bucket_leases[event.gpu_model] += 1

    def _served(self, lease: _OpenLease, until_s: float) -> None:
        self.served_gpu_h[lease.model] += lease.running_gpu_s(until_s) / SECONDS_PER_HOUR

    def _paused(self, event: LeasePaused) -> None:
        self.counts["leases_paused"] += 1
        lease = self.open_leases[event.lease_id]
        self._served(lease, event.time_s)
        lease.running = False
        self.leased_gpus[lease.model] -= lease.gpus
        self.pause_started[event.lease_id] = event.time_s

    def _resumed(self, event: LeaseResumed) -> None:
        self.counts["leases_resumed"] += 1
        lease = self.open_leases[event.lease_id]
        lease.running = True
        lease.start_s = event.time_s
        self.leased_gpus[lease.model] += lease.gpus
        self.paused_gpu_s += lease.gpus * event.paused_s
        self.pause_started.pop(event.lease_id, None)

    def _closed(self, event: LeaseClosed) -> None:
        lease = self.open_leases.pop(event.lease_id)
        self.close_reasons[event.reason] += 1
        self._served(lease, event.time_s)
        self.paid_usd[lease.model] += event.paid_micro / MICRO_USD_PER_USD
        if lease.running:
            self.leased_gpus[lease.model] -= lease.gpus
        else:
            self.counts["leases_closed_paused"] += 1
            self.paused_gpu_s += lease.gpus * (event.time_s - self.pause_started.pop(
                event.lease_id))
        if event.reason in PROVIDER_FAULTS:
            self.counts["leases_failed"] += 1
        if event.work_left > 0:
            self.jobs_to_repost.add(event.job_id)

    def _paid(self, event: PaymentSettled) -> None:
        revenue = self.revenue_usd
        if event.provider >= len(revenue):
            revenue.extend([0.0] * (event.provider + 1 - len(revenue)))
        revenue[event.provider] += (event.amount_micro - event.fee_micro) / MICRO_USD_PER_USD
        self.platform_usd += event.fee_micro / MICRO_USD_PER_USD

    def _left(self, event: TenantLeft) -> None:
        self.left_reasons[event.reason] += 1
        self.left_list_cost_usd += event.list_cost_micro / MICRO_USD_PER_USD
        self.job_first_s.pop(event.job_id, None)
        self.jobs_to_repost.discard(event.job_id)

    def _tick(self, event: Tick) -> None:
        pool = self.market.pool
        totals = np.bincount(pool.model, weights=pool.capacity[:, 0],
                             minlength=len(self.market.catalog))
        for index, model in enumerate(self.market.catalog.ids):
            if totals[index] == 0 and not self._bucket_leases[model]:
                continue
            gpus = self._bucket_gpus[model]
            self.series.append({
                "time_s": event.time_s,
                "gpu_model": model,
                "price_index_usd_per_gpu_hour": self._bucket_value[model] / gpus if gpus
                else math.nan,
                "leases": self._bucket_leases[model],
                "utilization": self.leased_gpus[model] / totals[index] if totals[index] else 0.0,
            })
        self._bucket_value.clear()
        self._bucket_gpus.clear()
        self._bucket_leases.clear()

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict[str, Any]:
        """The run's headline numbers as plain JSON-ready data."""
        market = self.market
        now = market.now
        served = Counter(self.served_gpu_h)
        for lease in self.open_leases.values():
            served[lease.model] += lease.running_gpu_s(now) / SECONDS_PER_HOUR
        paid = Counter(self.paid_usd)
        for lease_id, lease in self.open_leases.items():
            paid[lease.model] += market.leases[lease_id].paid / MICRO_USD_PER_USD
        counts = self.counts
        decided = counts["leases_created"] + counts["orders_expired"]
        by_model = {}
        for model in market.catalog.ids:
            if not self.prices.get(model) and not served[model]:
                continue
            list_cost = served[model] * self.list_price[model]
            by_model[model] = {
                **describe(self.prices.get(model, ())),
                "list_usd_per_gpu_hour": self.list_price[model],
                "gpu_hours": served[model],
                "paid_usd": paid[model],
                "savings_vs_list": 1 - paid[model] / list_cost if list_cost else 0.0,
            }
        total_list = sum(served[m] * self.list_price[m] for m in served)
        total_paid = sum(paid.values())
        return {
            "orders_posted": counts["orders_posted"],
            "jobs_posted": counts["jobs_posted"],
            "orders_filled": counts["leases_created"],
            "orders_expired": counts["orders_expired"],
            "orders_cancelled": counts["orders_cancelled"],
            "orders_open": len(market.orders) - len(market.leases),
            "fill_rate": counts["leases_created"] / decided if decided else 0.0,
            "time_to_lease_s": describe(self.waited_s),
            "job_time_to_lease_s": describe(self.job_waited_s),
            "leases_created": counts["leases_created"],
            "leases_active": len(market.leases),
            "leases_failed": counts["leases_failed"],
            "lease_close_reasons": dict(sorted(self.close_reasons.items())),
            "work_reposted": counts["work_reposted"],
            "tenants_left_for_hyperscaler": sum(self.left_reasons.values()),
            "tenants_left_by_reason": dict(sorted(self.left_reasons.items())),
            "hyperscaler_spend_usd": self.left_list_cost_usd,
            "price_usd_per_gpu_hour": by_model,
            "tenant_spend_usd": total_paid,
            "tenant_savings_vs_list": 1 - total_paid / total_list if total_list else 0.0,
            "platform_revenue_usd": self.platform_usd,
            "provider_participation": self._participation(),
            "providers": self._providers(),
            "populations": self._populations(),
            "allocative_efficiency": (market.welfare_realized_usd / market.welfare_best_usd
                                      if market.welfare_best_usd > 0 else 1.0),
            "interruptible": self._interruptible(now),
        }

    def _interruptible(self, now: float) -> dict[str, Any]:
        """Interruptible leases against on-demand ones: how many, their prices (USD per
        GPU-hour), how often they were paused and for how long."""
        paused_gpu_s = self.paused_gpu_s + sum(
            self.open_leases[lease_id].gpus * (now - since)
            for lease_id, since in self.pause_started.items())
        counts = self.counts
        return {
            "leases": len(self.interruptible_prices),
            "price_usd_per_gpu_hour": describe(self.interruptible_prices),
            "on_demand_price_usd_per_gpu_hour": describe(self.on_demand_prices),
            "pauses": counts["leases_paused"],
            "resumes": counts["leases_resumed"],
            "closed_while_paused": counts["leases_closed_paused"],
            "paused_now": len(self.pause_started),
            "paused_gpu_hours": paused_gpu_s / SECONDS_PER_HOUR,
        }

    def _by_group(self, labels: np.ndarray) -> dict[str, dict[str, float | int]]:
        """Utilization, revenue, cost and profit of the providers grouped by `labels` (one per
        provider), in USD."""
        market = self.market
        pool = market.pool
        hours = market.now / SECONDS_PER_HOUR
        busy = self._busy_gpu_s()
        busy_h = busy / SECONDS_PER_HOUR
        gpus = pool.capacity[:, 0].astype(float)
        # Fixed costs (capex, operations) and idle power run every hour; the marginal cost only
        # while a GPU is leased.
        fixed = pool.cost_fixed_usd_per_gpu_hour * gpus * hours
        idle = pool.cost_idle_usd_per_gpu_hour * gpus * hours
        marginal = pool.cost_marginal_usd_per_gpu_hour * busy_h
        revenue_by_provider = np.zeros(pool.n)
        revenue_by_provider[: len(self.revenue_usd)] = self.revenue_usd
        result = {}
        for label in sorted(set(labels.tolist())):
            members = labels == label
            revenue = float(revenue_by_provider[members].sum())
            cost = float((fixed[members] + marginal[members] + idle[members]).sum())
            capacity_h = float(gpus[members].sum() * hours)
            result[label] = {
                "providers": int(members.sum()),
                "participation": float((busy[members] > 0).mean()),
                "gpus": int(gpus[members].sum()),
                "utilization": float(busy_h[members].sum()) / capacity_h if capacity_h else 0.0,
                "revenue_usd": revenue,
                "cost_usd": cost,
                "marginal_cost_usd": float(marginal[members].sum()),
                "profit_usd": revenue - cost,
                "contribution_usd": revenue - float(marginal[members].sum()),
            }
        return result

    def _busy_gpu_s(self) -> np.ndarray:
        """GPU-seconds each provider has served so far, open leases' current runs included."""
        busy = self.market.pool.busy_gpu_s.copy()
        for lease in self.open_leases.values():
            busy[lease.provider] += lease.running_gpu_s(self.market.now)
        return busy

    def _participation(self) -> float:
        """Share of providers that served any lease."""
        busy = self._busy_gpu_s()
        return float((busy > 0).mean()) if busy.size else 0.0

    def _providers(self) -> dict[str, dict[str, float | int]]:
        """The provider figures by archetype."""
        pool = self.market.pool
        labels = np.array(pool.population_archetypes, dtype=object)[pool.population]
        return self._by_group(labels)

    def _populations(self) -> dict[str, dict[str, float | int]]:
        """The provider figures by population (name), with each one's archetype."""
        pool = self.market.pool
        labels = np.array(pool.population_names, dtype=object)[pool.population]
        groups = self._by_group(labels)
        for index, name in enumerate(pool.population_names):
            if name in groups:
                groups[name] = {"archetype": pool.population_archetypes[index], **groups[name]}
        return groups


_HANDLERS = {
    OrderOpened: Metrics._opened,
    OrderExpired: Metrics._expired,
    OrderCancelled: Metrics._cancelled,
    LeaseCreated: Metrics._leased,
    LeaseClosed: Metrics._closed,
    LeasePaused: Metrics._paused,
    LeaseResumed: Metrics._resumed,
    PaymentSettled: Metrics._paid,
    TenantLeft: Metrics._left,
    Tick: Metrics._tick,
}

"""Metrics computed from the event stream: the run's summary and its price series.

The subscriber keeps running totals and one float per lease for price quantiles; everything
else is bounded by what is open at a time, not by how many orders have finished.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from market.core.no_bids import Breakdown
from market.core.records import PROVIDER_FAULTS
from market.core.state import MarketState
from market.events import (
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
    PaymentSettled,
    ProviderExited,
    ProviderLeft,
    TenantLeft,
    Tick,
)
from market.observe.welfare import Welfare
from market.units import SECONDS_PER_HOUR, micro_to_usd, per_gpu_hour_usd


def describe(values: Any) -> dict[str, float | int]:
    """count, mean, median and p90 of `values` (NaN-free; zeros when empty)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {"count": 0, "mean": 0.0, "median": 0.0, "p90": 0.0}
    return {"count": int(data.size), "mean": float(data.mean()),
            "median": float(np.median(data)), "p90": float(np.quantile(data, 0.9))}


def dispersion(prices: Any) -> dict[str, float | None]:
    """How spread out `prices` are: p10, coefficient of variation (population standard
    deviation / mean) and p90/p10; None where undefined (no prices, or a zero mean or p10)."""
    data = np.asarray(prices, dtype=float)
    if data.size == 0:
        return {"p10": None, "cv": None, "p90_p10": None}
    mean = float(data.mean())
    p10, p90 = (float(q) for q in np.quantile(data, (0.1, 0.9)))
    return {"p10": p10, "cv": float(data.std()) / mean if mean > 0 else None,
            "p90_p10": p90 / p10 if p10 > 0 else None}


def hhi(shares_of: Any) -> float:
    """Herfindahl-Hirschman index of `shares_of` (any non-negative amounts, e.g. revenue per
    provider): the sum of squared percentage shares, 0 to 10,000 (0 when all are zero)."""
    amounts = np.asarray(shares_of, dtype=float)
    total = float(amounts.sum())
    if total <= 0:
        return 0.0
    return float(((100.0 * amounts / total) ** 2).sum())


class _OpenLease:
    __slots__ = ("gpus", "model", "price_per_gpu_hour", "provider", "running", "start_s")

    def __init__(self, event: LeaseCreated) -> None:
        self.model = event.gpu_model
        self.gpus = event.gpus
        self.provider = event.provider
        self.start_s = event.time_s          # of the current run
        self.running = True                  # False while an interruptible lease is paused
        self.price_per_gpu_hour = per_gpu_hour_usd(event.price_micro_per_hour, event.gpus)

    def running_gpu_s(self, now_s: float) -> float:
        """GPU-seconds of the current run up to `now_s` (none while paused)."""
        return self.gpus * (now_s - self.start_s) if self.running else 0.0


class Metrics:
    """Subscribes to a market's events and summarizes them."""

    def __init__(self, market: MarketState, welfare: Welfare) -> None:
        self.market = market
        self._welfare = welfare
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
        # Seconds each provider spent off the market (its owner took it back), including
        # absences still under way, and when the current absence of each ends.
        self.absent_s: Counter[int] = Counter()
        self.back_at_s: dict[int, float] = {}
        # Why providers did not bid on the orders that expired (market.core.no_bids).
        self.no_bids = Breakdown()
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
        self.no_bids.add(event.no_bids)

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
        if event.paused_s == 0:  # a restart: moved to other nodes, or back at once
            self.counts["leases_resumed_at_once"] += 1
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
        self.paid_usd[lease.model] += micro_to_usd(event.paid_micro)
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
        revenue[event.provider] += micro_to_usd(event.amount_micro - event.fee_micro)
        self.platform_usd += micro_to_usd(event.fee_micro)

    def _left(self, event: TenantLeft) -> None:
        self.left_reasons[event.reason] += 1
        self.left_list_cost_usd += micro_to_usd(event.list_cost_micro)
        self.job_first_s.pop(event.job_id, None)
        self.jobs_to_repost.discard(event.job_id)

    def _provider_left(self, event: ProviderLeft) -> None:
        back = min(event.back_at_s, self.market.horizon_s)
        self.absent_s[event.provider] += max(back - event.time_s, 0.0)
        self.back_at_s[event.provider] = back

    def _provider_exited(self, event: ProviderExited) -> None:
        # An absence under way ends with the provider's time on the market.
        back = self.back_at_s.get(event.provider)
        if back is not None and back > event.time_s:
            self.absent_s[event.provider] -= back - event.time_s
            self.back_at_s[event.provider] = event.time_s

    def on_market_span_h(self) -> np.ndarray:
        """Hours each provider has been in the market so far, from its arrival to now or to
        its exit for good (absences included)."""
        market = self.market
        now = market.now
        if not market.arrived_s.any() and np.isinf(market.exited_s).all():
            # Everyone since the start: the very hours (and floats) runs always had.
            return np.full(market.pool.n, now / SECONDS_PER_HOUR)
        until = np.minimum(market.exited_s, now)
        return np.maximum(until - market.arrived_s, 0.0) / SECONDS_PER_HOUR

    def absent_hours(self) -> np.ndarray:
        """Hours each provider has been off the market so far."""
        now = self.market.now
        absent = np.zeros(self.market.pool.n)
        for provider, seconds in self.absent_s.items():
            # an absence still under way counts only up to now
            absent[provider] = seconds - max(self.back_at_s[provider] - now, 0.0)
        return absent / SECONDS_PER_HOUR

    def _tick(self, event: Tick) -> None:
        pool = self.market.pool
        capacity = pool.capacity[:, 0]
        gone = ~np.isinf(self.market.exited_s)
        if gone.any():  # providers that left for good have no GPUs on the market
            capacity = np.where(gone, 0, capacity)
        totals = np.bincount(pool.model, weights=capacity, minlength=len(self.market.catalog))
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
            paid[lease.model] += micro_to_usd(market.leases[lease_id].paid)
        counts = self.counts
        decided = counts["leases_created"] + counts["orders_expired"]
        by_model = {}
        for model in market.catalog.ids:
            if not self.prices.get(model) and not served[model]:
                continue
            list_cost = served[model] * self.list_price[model]
            by_model[model] = {
                **describe(self.prices.get(model, ())),
                **dispersion(self.prices.get(model, ())),
                "list_usd_per_gpu_hour": self.list_price[model],
                "gpu_hours": served[model],
                "paid_usd": paid[model],
                "savings_vs_list": 1 - paid[model] / list_cost if list_cost else 0.0,
            }
        welfare = self._welfare.summary()
        accounts = self.provider_accounts()  # once: by archetype, population, market power
        providers = self._providers(accounts)
        total_list = sum(served[m] * self.list_price[m] for m in served)
        total_paid = sum(paid.values())
        return {
            "orders_posted": counts["orders_posted"],
            "jobs_posted": counts["jobs_posted"],
            "orders_filled": counts["leases_created"],
            "orders_expired": counts["orders_expired"],
            "no_bids": self.no_bids.summary(),
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
            "providers": providers,
            "populations": self._populations(accounts),
            "allocative_efficiency": welfare["allocative_efficiency"],
            "welfare": welfare,
            "market_power": self._market_power(providers, accounts),
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
            "resumed_at_once": counts["leases_resumed_at_once"],
            "closed_while_paused": counts["leases_closed_paused"],
            "paused_now": len(self.pause_started),
            "paused_gpu_hours": paused_gpu_s / SECONDS_PER_HOUR,
        }

    def provider_accounts(self) -> dict[str, np.ndarray]:
        """Each provider's figures so far, USD: revenue (net of fees) and costs. Avoidable
        costs: serving (marginal cost × GPU-hours served), idle power and operations (per
        GPU-hour on the market); capex amortization runs every hour from the provider's
        arrival to its exit for good (or now). Short-run profit = revenue − avoidable cost;
        long-run profit = short-run profit − capex."""
        market = self.market
        pool = market.pool
        hours = self.on_market_span_h()
        busy_h = self._busy_gpu_s() / SECONDS_PER_HOUR
        gpus = pool.capacity[:, 0].astype(float)
        present_h = np.maximum(hours - self.absent_hours(), 0.0)
        accounts = {
            "busy_gpu_hours": busy_h,
            "on_market_hours": present_h,
            "revenue_usd": self.revenue_by_provider(),
            "serving_cost_usd": pool.cost_marginal_usd_per_gpu_hour * busy_h,
            "idle_power_cost_usd": pool.cost_idle_usd_per_gpu_hour * gpus * present_h,
            "operations_cost_usd": pool.cost_fixed_usd_per_gpu_hour * gpus * present_h,
            "capex_usd": pool.cost_capex_usd_per_gpu_hour * gpus * hours,
        }
        accounts["avoidable_cost_usd"] = (accounts["serving_cost_usd"]
                                          + accounts["idle_power_cost_usd"]
                                          + accounts["operations_cost_usd"])
        accounts["short_run_profit_usd"] = accounts["revenue_usd"] - accounts["avoidable_cost_usd"]
        accounts["long_run_profit_usd"] = accounts["short_run_profit_usd"] - accounts["capex_usd"]
        return accounts

    def provider_rows(self) -> list[tuple[Any, ...]]:
        """One row per provider for the providers table
        (`market.observe.tables.PROVIDERS_SCHEMA`)."""
        pool = self.market.pool
        accounts = self.provider_accounts()
        columns = ("busy_gpu_hours", "on_market_hours", "revenue_usd", "serving_cost_usd",
                   "idle_power_cost_usd", "operations_cost_usd", "avoidable_cost_usd",
                   "capex_usd", "short_run_profit_usd", "long_run_profit_usd")
        values = [accounts[name].tolist() for name in columns]
        ids = self.market.catalog.ids
        arrived = self.market.arrived_s.tolist()
        exited = [None if math.isinf(t) else t for t in self.market.exited_s.tolist()]
        return [(p, pool.names[p], pool.population_names[pool.population[p]],
                 pool.population_archetypes[pool.population[p]], ids[pool.model[p]],
                 int(pool.capacity[p, 0]), *(column[p] for column in values),
                 arrived[p], exited[p])
                for p in range(pool.n)]

    def _by_group(self, labels: np.ndarray,
                  accounts: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """The providers' figures (`accounts`, from `provider_accounts`) summed over the
        groups that `labels` (one per provider) make, with utilization, participation and the
        Lerner index."""
        pool = self.market.pool
        busy_h = accounts["busy_gpu_hours"]
        gpus = pool.capacity[:, 0].astype(float)
        hours = self.on_market_span_h()
        uniform = bool((hours == hours[0]).all()) if hours.size else True
        money = ("revenue_usd", "serving_cost_usd", "idle_power_cost_usd", "operations_cost_usd",
                 "avoidable_cost_usd", "capex_usd", "short_run_profit_usd",
                 "long_run_profit_usd")
        result = {}
        for label in sorted(set(labels.tolist())):
            members = labels == label
            group = {name: float(accounts[name][members].sum()) for name in money}
            # Summed per provider only where they came or went at different times: the
            # same hours for everyone give the very floats runs always had.
            capacity_h = float(gpus[members].sum() * hours[0]) if uniform else \
                float((gpus[members] * hours[members]).sum())
            revenue = group["revenue_usd"]
            result[label] = {
                "providers": int(members.sum()),
                "participation": float((busy_h[members] > 0).mean()),
                "gpus": int(gpus[members].sum()),
                "utilization": float(busy_h[members].sum()) / capacity_h if capacity_h else 0.0,
                **group,
                "cost_usd": group["avoidable_cost_usd"] + group["capex_usd"],
                "profit_usd": group["long_run_profit_usd"],
                # (price − marginal cost) / price over what it served, at the price it kept
                "lerner_index": 1.0 - group["serving_cost_usd"] / revenue if revenue > 0
                else None,
            }
        return result

    def revenue_by_provider(self) -> np.ndarray:
        """What each provider has been paid so far, net of fees, USD."""
        revenue = np.zeros(self.market.pool.n)
        revenue[: len(self.revenue_usd)] = self.revenue_usd
        return revenue

    @staticmethod
    def _market_power(providers: dict[str, dict[str, Any]],
                      accounts: dict[str, np.ndarray]) -> dict[str, Any]:
        """Concentration of provider revenue (HHI, 0-10,000) and the Lerner index by
        archetype (also in `providers`)."""
        return {
            "hhi_provider_revenue": hhi(accounts["revenue_usd"]),
            "lerner_index_by_archetype": {name: row["lerner_index"]
                                          for name, row in providers.items()},
        }

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

    def _providers(self, accounts: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """The provider figures by archetype."""
        pool = self.market.pool
        labels = np.array(pool.population_archetypes, dtype=object)[pool.population]
        return self._by_group(labels, accounts)

    def _populations(self, accounts: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """The provider figures by population (name), with each one's archetype."""
        pool = self.market.pool
        labels = np.array(pool.population_names, dtype=object)[pool.population]
        groups = self._by_group(labels, accounts)
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
    ProviderLeft: Metrics._provider_left,
    ProviderExited: Metrics._provider_exited,
    Tick: Metrics._tick,
}

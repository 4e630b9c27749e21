"""The textbook population: bidders with i.i.d. costs, one one-unit order at a time.

It runs the procurement auction of auction theory through the real market, so that the
engine's mechanisms can be checked against theory. Before every auction each bidder's cost is
drawn afresh from the scenario's distribution (it is the provider's private value: its cost
basis, full and marginal cost alike); one tenant then posts a one-GPU order and waits for the
auction to end. Its max price is the top of the cost range grossed up by the platform's take
rate t, high / (1 − t): what the dearest bidder must ask to keep its cost after the fee, so
the reserve never binds on a bid that prices the fee in (truthful or equilibrium).

With a `deviator` table, the first bidder (`bidder-0`) bids with its own strategy times a
shading; every cost is drawn exactly as without it (common random numbers), so that a run
with and one without the deviation differ only in that bidder's bids.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from market.core.pool import ProviderRow
from market.core.resources import STORAGE_CLASSES, gpu_units
from market.units import GIB, SECONDS_PER_DAY, SECONDS_PER_HOUR

if TYPE_CHECKING:
    from market.builder import Market

#: A lease lasts this long (simulated seconds): the textbook prices one unit, not a job.
LEASE_S = 1.0
#: Bid latency (seconds): every bid is in long before any bidding window closes.
LATENCY_S = 1e-3


def populate(market: Market) -> None:
    """Add the bidders and the tenant who auctions one unit at a time."""
    book = market.scenario.textbook
    if book is None:
        raise ValueError("textbook: the textbook population needs a [textbook] table")
    needed_s = book.auctions * (market.rules.bidding_window_s + 2 * LEASE_S + 1)
    if needed_s > market.horizon_s:
        raise ValueError(f"duration_days: {book.auctions} auctions need at least "
                         f"{needed_s / SECONDS_PER_DAY:.3f} days")
    model = market.catalog.index(book.gpu_model)
    rows = [ProviderRow(
        name=f"bidder-{i}", population=0, model=model, gpus=1, cpu_millicores=64_000,
        memory_bytes=512 * GIB, storage_bytes=8192 * GIB, ip_leases=0,
        storage_classes=STORAGE_CLASSES, audited=True, cost_full_usd_per_gpu_hour=0.0,
        cost_marginal_usd_per_gpu_hour=0.0, cost_idle_usd_per_gpu_hour=0.0,
        cost_fixed_usd_per_gpu_hour=0.0, cost_basis_usd_per_gpu_hour=0.0,
        latency_log_median=math.log(LATENCY_S), latency_sigma=0.0)
        for i in range(book.bidders)]
    deviator = book.deviator
    if deviator is None:
        bidders = market.add_providers(rows, book.strategy.build(), wallet_usd=1e6)
    else:
        own = (deviator.strategy or book.strategy).build()
        first = market.add_providers(rows[:1], Shaded(own, deviator.shading), wallet_usd=1e6)
        rest = market.add_providers(rows[1:], book.strategy.build(), wallet_usd=1e6)
        bidders = np.concatenate([first, rest])
    tenant = market.add_tenant("buyer", wallet_usd=1e9)
    market.env.process(_auctioneer(market, bidders, tenant))


class Shaded:
    """A strategy whose every bid (and ask) is multiplied by `shading`: the textbook's
    deviator. It hears its auctions' outcomes if the strategy it wraps does."""

    def __init__(self, strategy: Any, shading: float) -> None:
        if not shading > 0:
            raise ValueError(f"shading must be > 0, got {shading}")
        self.strategy, self.shading = strategy, shading
        if callable(getattr(strategy, "asks", None)):
            self.asks = self._asks
        if callable(getattr(strategy, "observe", None)):
            self.observe = strategy.observe

    def _asks(self, providers: np.ndarray, view: Any) -> np.ndarray:
        return np.asarray(self.strategy.asks(providers, view), float) * self.shading

    def prices(self, order: Any, providers: np.ndarray, view: Any) -> np.ndarray:
        return np.asarray(self.strategy.prices(order, providers, view), float) * self.shading


def reserve_usd_per_gpu_hour(market: Market) -> float:
    """The textbook tenant's max price: the top of the cost range grossed up by the take
    rate, high / (1 − take_rate), USD per GPU-hour."""
    high = market.scenario.textbook.cost_high_usd_per_gpu_hour
    return high / (1.0 - market.rules.fee_rate)


def _auctioneer(market: Market, bidders: np.ndarray, tenant: int):
    book = market.scenario.textbook
    rng = market.streams.get("textbook.costs")
    pool = market.pool
    high = book.cost_high_usd_per_gpu_hour
    reserve = reserve_usd_per_gpu_hour(market)
    units = gpu_units(1, (book.gpu_model,), cpu_millicores_per_gpu=1000,
                      memory_bytes_per_gpu=GIB, storage_bytes_per_gpu=GIB)
    work_s = np.full(len(market.catalog), math.inf)
    work_s[market.catalog.index(book.gpu_model)] = LEASE_S
    for _ in range(book.auctions):
        costs = rng.uniform(book.cost_low_usd_per_gpu_hour, high, size=bidders.size)
        for column in ("cost_basis_usd_per_gpu_hour", "cost_full_usd_per_gpu_hour",
                       "cost_marginal_usd_per_gpu_hour"):
            getattr(pool, column)[bidders] = costs
        market.refresh_asks(bidders)
        market.post_order(tenant, units, reserve, deposit_usd=reserve,
                          job_value_usd=reserve * LEASE_S / SECONDS_PER_HOUR,
                          work_s=work_s)
        yield market.env.timeout(market.rules.bidding_window_s + 2 * LEASE_S + 1)

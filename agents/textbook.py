"""The textbook population: bidders with i.i.d. costs, one one-unit order at a time.

It runs the procurement auction of auction theory through the real market, so that the
engine's mechanisms can be checked against theory. Before every auction each bidder's cost is
drawn afresh from the scenario's distribution (it is the provider's private value: its cost
basis, full and marginal cost alike); one tenant then posts a one-GPU order whose max price is
the top of the cost range (a reserve that never binds) and waits for the auction to end.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from market import registry
from market.pool import ProviderRow
from market.resources import STORAGE_CLASSES, gpu_units
from market.units import GIB, SECONDS_PER_DAY

if TYPE_CHECKING:
    from market.engine import Market

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
    factory = registry.load("strategies", book.strategy.name)
    bidders = market.add_providers(rows, factory(**book.strategy.params), wallet_usd=1e6)
    tenant = market.add_tenant("buyer", wallet_usd=1e9)
    market.env.process(_auctioneer(market, bidders, tenant))


def _auctioneer(market: Market, bidders: np.ndarray, tenant: int):
    book = market.scenario.textbook
    rng = market.streams.get("textbook.costs")
    pool = market.pool
    high = book.cost_high_usd_per_gpu_hour
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
        market.post_order(tenant, units, high, deposit_usd=high, value_usd_per_gpu_hour=high,
                          work_s=work_s)
        yield market.env.timeout(market.rules.bidding_window_s + 2 * LEASE_S + 1)

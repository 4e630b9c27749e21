"""What a bid strategy is, and what it may see of the market.

A strategy prices orders for the providers it controls. Its vectorized entry point,
`prices(order, providers, view)`, returns one bid per provider in USD per GPU-hour (NaN: no
bid); a strategy written one provider at a time subclasses `PerProvider` and implements
`bid(order, me, view) -> float | None` instead. A strategy whose ask does not depend on the
order may also define `asks(providers, view)`, which the engine reads once instead of asking
for every order. `observe(outcome)` (optional) tells it how each auction it bid in ended.

The view exposes only what a real participant could see: the clock, the order's public data,
published clearing prices, and its own providers' facts; never a rival's costs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol, runtime_checkable

import numpy as np

from market.core.records import Order
from market.core.resources import ResourceUnit
from market.core.state import MarketState
from market.events import LeaseCreated
from market.units import order_rate_micro, per_gpu_hour_usd


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as providers see it on the chain.

    Its max price is the engine's own figure, `max_price_micro_per_hour`: integer micro-USD
    per hour for the whole order (canonical: bids are compared with it). The float
    `max_price_usd_per_gpu_hour` is derived from it for people and strategies that price per
    GPU-hour; `order_rate_micro` of it gives back the same integer.
    """

    order_id: int
    gpus: int
    gpu_models: tuple[str, ...]
    units: tuple[ResourceUnit, ...]
    max_price_micro_per_hour: int       # whole order; for an interruptible order: its bid
    created_s: float
    interruptible: bool = False         # its lease may be paused (Vast.ai-style)

    @property
    def max_price_usd_per_gpu_hour(self) -> float:
        """The max price per GPU-hour, USD (derived from `max_price_micro_per_hour`)."""
        return per_gpu_hour_usd(self.max_price_micro_per_hour, self.gpus)

    @classmethod
    def of(cls, order: Order) -> OrderView:
        return cls(order.id, order.gpus, order.requirement.gpu_models, order.units,
                   order.max_price, order.created_s, order.interruptible)

    @classmethod
    def priced(cls, order_id: int, gpus: int, gpu_models: tuple[str, ...],
               units: tuple[ResourceUnit, ...], max_price_usd_per_gpu_hour: float,
               created_s: float, interruptible: bool = False) -> OrderView:
        """An order view from a max price per GPU-hour, converted as the engine converts
        a posted order's (`order_rate_micro`): for strategies' tests and tools."""
        return cls(order_id, gpus, gpu_models, units,
                   order_rate_micro(max_price_usd_per_gpu_hour, gpus), created_s, interruptible)


@dataclass(frozen=True, slots=True)
class ProviderView:
    """One provider's own facts, as its strategy knows them (USD per GPU-hour)."""

    provider: int
    gpu_model: str
    gpus: int
    free_gpus: int
    cost_full_usd_per_gpu_hour: float
    cost_marginal_usd_per_gpu_hour: float
    cost_basis_usd_per_gpu_hour: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one auction ended for a strategy's bidders on it."""

    order: OrderView
    providers: np.ndarray               # the strategy's providers that bid
    bids_usd_per_gpu_hour: np.ndarray   # their bids
    won: np.ndarray                     # bool: which of them won (at most one)
    clearing_usd_per_gpu_hour: float    # the lease price; NaN when the order expired
    time_s: float
    # Every bid on the order, in arrival order (bids are public on the chain), USD/GPU-hour.
    public_bids_usd_per_gpu_hour: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # The engine's own figures behind the floats above, integer micro-USD per hour for the
    # whole order (canonical; the floats are `per_gpu_hour_usd` of them): the strategy's
    # bids, the lease rate (-1 when the order expired) and every public bid.
    bids_micro_per_hour: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    clearing_micro_per_hour: int = -1
    public_bids_micro_per_hour: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64))


_COST_COLUMNS = {"basis": "cost_basis_usd_per_gpu_hour", "full": "cost_full_usd_per_gpu_hour",
                 "marginal": "cost_marginal_usd_per_gpu_hour"}


class MarketView:
    """What one strategy may read: public market data and its own providers' facts."""

    def __init__(self, market: MarketState, strategy_index: int, history: PriceHistory) -> None:
        self._market = market
        self._index = strategy_index
        self._history = history
        # The ids of the strategy's providers, [first, end), when they are consecutive (the
        # market sets it: a population's providers join together); None: look each one up.
        self.members: tuple[int, int] | None = None

    @property
    def now_s(self) -> float:
        return self._market.now

    @property
    def gpu_models(self) -> tuple[str, ...]:
        """Catalog ids, in the order `model` indexes refer to."""
        return self._market.catalog.ids

    @property
    def take_rate(self) -> float:
        """The platform's share of every payout (a public rule of the market; none under
        BME settlement)."""
        return self._market.rules.fee_rate

    @property
    def bids_net_of_fee(self) -> bool:
        """Whether built-in strategies gross their asks up by 1 / (1 − take_rate), so that
        what their providers keep after the fee covers the ask (the scenario's
        `market.bids_net_of_fee`)."""
        return self._market.rules.bids_net_of_fee

    def fee_gross_up(self) -> float:
        """1 / (1 − take_rate) when bids are priced net of the fee, else 1: multiply a price
        the provider wants to keep by this to get the bid."""
        return 1.0 / (1.0 - self.take_rate) if self.bids_net_of_fee else 1.0

    def list_price(self, gpu_model: str) -> float:
        """The hyperscaler list price of `gpu_model`, USD per GPU-hour (public)."""
        return self._market.catalog[gpu_model].list_usd_per_gpu_hour

    def clearing_prices(self, gpu_model: str) -> np.ndarray:
        """Recent published lease prices for `gpu_model`, oldest first, USD per GPU-hour."""
        return self._history.recent(gpu_model)

    def mean_clearing_price(self, gpu_model: str, last: int) -> float:
        """Mean of the last `last` published lease prices for `gpu_model`, USD per GPU-hour
        (0 when none is published yet)."""
        return self._history.mean_recent(gpu_model, last)

    def _check(self, providers: np.ndarray) -> np.ndarray:
        providers = np.asarray(providers, dtype=np.int64)
        if not providers.size:
            return providers
        # Two reductions over a range rather than a lookup per provider: this runs for every
        # order, over every eligible provider of the strategy.
        own = (self.members[0] <= np.minimum.reduce(providers, axis=None)
               and np.maximum.reduce(providers, axis=None) < self.members[1]
               if self.members is not None
               else (self._market.strategy_of(providers) == self._index).all())
        if not own:
            raise PermissionError("a strategy may read only its own providers' facts")
        return providers

    def costs(self, providers: np.ndarray, basis: str = "basis") -> np.ndarray:
        """Own providers' cost per GPU-hour, USD: `basis` (the population's pricing basis),
        `full` or `marginal`."""
        providers = self._check(providers)
        return getattr(self._market.pool, _COST_COLUMNS[basis])[providers]

    def models(self, providers: np.ndarray) -> np.ndarray:
        """Own providers' GPU model indexes into `gpu_models`."""
        return self._market.pool.model[self._check(providers)]

    def own_providers(self) -> np.ndarray:
        """The ids of this strategy's providers, ascending."""
        if self.members is not None:
            return np.arange(*self.members, dtype=np.int64)
        return (self._market.strategy_of(np.arange(self._market.pool.n)) == self._index
                ).nonzero()[0].astype(np.int64)

    def gpus(self, providers: np.ndarray) -> np.ndarray:
        """Own providers' GPUs (all of them, busy or free)."""
        return self._market.pool.capacity[self._check(providers), 0].astype(np.int64)

    def free_gpus(self, providers: np.ndarray) -> np.ndarray:
        """Own providers' GPUs free now (none while a provider is down)."""
        pool = self._market.pool
        providers = self._check(providers)
        free = np.maximum(pool.free[providers, 0], 0)
        return np.where(pool.up[providers], free, 0).astype(np.int64)

    def provider(self, provider: int) -> ProviderView:
        pool = self._market.pool
        p = int(self._check(np.array([provider]))[0])
        return ProviderView(p, self._market.catalog.ids[int(pool.model[p])],
                            int(pool.capacity[p, 0]), max(int(pool.free[p, 0]), 0),
                            float(pool.cost_full_usd_per_gpu_hour[p]),
                            float(pool.cost_marginal_usd_per_gpu_hour[p]),
                            float(pool.cost_basis_usd_per_gpu_hour[p]))


class PriceHistory:
    """Published on-demand lease prices per GPU model, the last `keep` of each (USD per
    GPU-hour)."""

    def __init__(self, market: MarketState, keep: int = 256) -> None:
        self._recent: dict[str, deque[float]] = {}
        self._keep = keep
        market.subscribe(self._on_lease, kinds=(LeaseCreated,))

    def _on_lease(self, event: Any) -> None:
        if event.interruptible:  # the tenant's own bid, not a price providers competed to
            return
        prices = self._recent.get(event.gpu_model)
        if prices is None:
            prices = self._recent[event.gpu_model] = deque(maxlen=self._keep)
        prices.append(per_gpu_hour_usd(event.price_micro_per_hour, event.gpus))

    def recent(self, gpu_model: str) -> np.ndarray:
        return np.fromiter(self._recent.get(gpu_model, ()), dtype=float)

    def mean_recent(self, gpu_model: str, last: int) -> float:
        """Mean of the last `last` prices of `gpu_model` (0 when there are none)."""
        return mean_of_last(self._recent.get(gpu_model, ()), last)


def mean_of_last(prices: Any, last: int) -> float:
    """Mean of the last `last` items of the deque `prices` (0 when it is empty)."""
    total = count = 0
    for price in islice(reversed(prices), last):
        total += price
        count += 1
    return total / count if count else 0.0


@runtime_checkable
class BidStrategy(Protocol):
    """Prices an order for many providers at once, USD per GPU-hour (NaN: no bid)."""

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        ...


class PerProvider:
    """Base class for a strategy written one provider at a time: implement `bid`."""

    def bid(self, order: OrderView, me: ProviderView, view: MarketView) -> float | None:
        """This provider's bid for `order`, USD per GPU-hour, or None for no bid."""
        raise NotImplementedError

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        out = np.full(len(providers), np.nan)
        for i, provider in enumerate(np.asarray(providers).tolist()):
            price = self.bid(order, view.provider(provider), view)
            if price is not None:
                out[i] = price
        return out

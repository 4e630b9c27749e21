"""Built-in bid strategies. A strategy prices an order for many providers at once.

`prices(order, providers, market)` returns, for each provider id in `providers`, its bid for
the whole order in micro-USD per hour (float; NaN = no bid). The engine drops bids above the
order's max price, as the chain does. A strategy whose price per GPU-hour does not depend on
the order may also define `asks(providers, market)` (USD per GPU-hour): the engine then reads
its bids from one array instead of calling it for every order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from market.units import MICRO_USD_PER_USD

if TYPE_CHECKING:
    from market.engine import Market
    from market.records import Order


class _PerGpuHour:
    """A strategy with a fixed ask per GPU-hour for each provider."""

    def asks(self, providers: np.ndarray, market: Market) -> np.ndarray:
        raise NotImplementedError

    def prices(self, order: Order, providers: np.ndarray, market: Market) -> np.ndarray:
        return self.asks(providers, market) * (order.gpus * MICRO_USD_PER_USD)


class CostPlus(_PerGpuHour):
    """Bid cost plus a markup: ``cost_basis × (1 + markup)`` per GPU-hour.

    The cost basis is the provider's full or marginal cost per GPU-hour (its population's
    `cost_basis`).
    """

    def __init__(self, markup: float = 0.3) -> None:
        if markup < 0:
            raise ValueError(f"markup must be >= 0, got {markup}")
        self.markup = markup

    def asks(self, providers: np.ndarray, market: Market) -> np.ndarray:
        return market.pool.cost_basis_usd_per_gpu_hour[providers] * (1.0 + self.markup)


class ListPrice(_PerGpuHour):
    """A posted price: the GPU's hyperscaler list price per GPU-hour times `factor`."""

    def __init__(self, factor: float = 1.0) -> None:
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self.factor = factor

    def asks(self, providers: np.ndarray, market: Market) -> np.ndarray:
        list_price = market.catalog.array("list_usd_per_gpu_hour")
        return list_price[market.pool.model[providers]] * self.factor

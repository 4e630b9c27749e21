"""Built-in bid strategies. A strategy prices an order for many providers at once.

`prices(order, providers, market)` returns, for each provider id in `providers`, its bid for
the whole order in micro-USD per hour (float; NaN = no bid). The engine drops bids above the
order's max price, as the chain does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from market.units import MICRO_USD_PER_USD

if TYPE_CHECKING:
    from market.engine import Market
    from market.records import Order


class CostPlus:
    """Bid cost plus a markup: ``cost_basis × (1 + markup)`` per GPU-hour.

    The cost basis is the provider's full or marginal cost per GPU-hour (its population's
    `cost_basis`).
    """

    def __init__(self, markup: float = 0.3) -> None:
        if markup < 0:
            raise ValueError(f"markup must be >= 0, got {markup}")
        self.markup = markup

    def prices(self, order: Order, providers: np.ndarray, market: Market) -> np.ndarray:
        basis = market.pool.cost_basis_usd_per_gpu_hour[providers]
        return basis * ((1.0 + self.markup) * order.gpus * MICRO_USD_PER_USD)


class ListPrice:
    """A posted price: the GPU's hyperscaler list price per GPU-hour times `factor`."""

    def __init__(self, factor: float = 1.0) -> None:
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self.factor = factor
        self._list: np.ndarray | None = None

    def prices(self, order: Order, providers: np.ndarray, market: Market) -> np.ndarray:
        if self._list is None:
            self._list = market.catalog.array("list_usd_per_gpu_hour") * (
                self.factor * MICRO_USD_PER_USD)
        return self._list[market.pool.model[providers]] * order.gpus

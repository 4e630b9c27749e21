"""Built-in bid strategies (see `market.strategy` for the protocol they follow).

Bids are USD per GPU-hour; the engine drops bids above the order's max price, as the chain
does. A strategy whose ask does not depend on the order defines `asks(providers, view)`, read
once, instead of being asked for every order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from market.strategy import MarketView, OrderView


class _PerGpuHour:
    """A strategy with a fixed ask per GPU-hour for each provider."""

    def asks(self, providers: np.ndarray, view: MarketView) -> np.ndarray:
        raise NotImplementedError

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        return self.asks(providers, view)


class CostPlus(_PerGpuHour):
    """Bid cost plus a markup: ``cost_basis × (1 + markup)`` per GPU-hour.

    The cost basis is the provider's full or marginal cost per GPU-hour (its population's
    `cost_basis`). With `net_of_fee`, the markup is what the provider keeps after the
    platform's take rate: the bid is grossed up by ``1 / (1 − take_rate)``.
    """

    def __init__(self, markup: float = 0.3, net_of_fee: bool = False) -> None:
        if markup < 0:
            raise ValueError(f"markup must be >= 0, got {markup}")
        self.markup = markup
        self.net_of_fee = bool(net_of_fee)

    def asks(self, providers: np.ndarray, view: MarketView) -> np.ndarray:
        gross = 1.0 / (1.0 - view.take_rate) if self.net_of_fee else 1.0
        return view.costs(providers) * (1.0 + self.markup) * gross


class ListPrice(_PerGpuHour):
    """A posted price: the GPU's hyperscaler list price per GPU-hour times `factor`."""

    def __init__(self, factor: float = 1.0) -> None:
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self.factor = factor

    def asks(self, providers: np.ndarray, view: MarketView) -> np.ndarray:
        list_price = np.array([view.list_price(m) for m in view.gpu_models])
        return list_price[view.models(providers)] * self.factor

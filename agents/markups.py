"""Built-in bid strategies (see `market.strategy` for the protocol they follow).

Bids are USD per GPU-hour; the engine drops bids above the order's max price, as the chain
does. A strategy whose ask does not depend on the order defines `asks(providers, view)`, read
once, instead of being asked for every order.

Both price net of the platform's take rate t by default, following the scenario's
`market.bids_net_of_fee` (`MarketView.fee_gross_up()`): an ask meant to keep x after the fee
is x / (1 − t).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from market.strategy import MarketView, OrderView


def gross_up(view: MarketView, net_of_fee: bool | None) -> float:
    """What a price the provider wants to keep is multiplied by to make its bid: the
    scenario's rule (`view.fee_gross_up()`) when `net_of_fee` is None, else 1 / (1 − t) if
    true and 1 if false."""
    if net_of_fee is None:
        return view.fee_gross_up()
    return 1.0 / (1.0 - view.take_rate) if net_of_fee else 1.0


class _PerGpuHour:
    """A strategy with a fixed ask per GPU-hour for each provider."""

    def asks(self, providers: np.ndarray, view: MarketView) -> np.ndarray:
        raise NotImplementedError

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        return self.asks(providers, view)


class CostPlus(_PerGpuHour):
    """Bid cost plus a markup, kept after the platform's fee:
    ``cost_basis × (1 + markup) × gross_up`` per GPU-hour.

    The cost basis is the provider's full or marginal cost per GPU-hour (its population's
    `cost_basis`). `gross_up` is ``1 / (1 − take_rate)`` when the bid is priced net of the
    fee, so that what the provider keeps is its cost plus the markup, else 1. `net_of_fee`:
    None (the default) follows the scenario's `market.bids_net_of_fee`; true or false
    overrides it for this strategy.
    """

    def __init__(self, markup: float = 0.3, net_of_fee: bool | None = None) -> None:
        if markup < 0:
            raise ValueError(f"markup must be >= 0, got {markup}")
        if net_of_fee is not None and not isinstance(net_of_fee, bool):
            raise ValueError(f"net_of_fee must be true, false or left out (follow the "
                             f"scenario), got {net_of_fee!r}")
        self.markup = markup
        self.net_of_fee = net_of_fee

    def asks(self, providers: np.ndarray, view: MarketView) -> np.ndarray:
        return view.costs(providers) * (1.0 + self.markup) * gross_up(view, self.net_of_fee)


class ListPrice(_PerGpuHour):
    """A posted price: the GPU's hyperscaler list price per GPU-hour times `factor`, kept
    after the platform's fee: ``list × factor × view.fee_gross_up()``.

    A hyperscaler whose capacity would sell on demand elsewhere has list price as its
    opportunity cost: posting `factor = 1` here it keeps list after the fee when bids are
    priced net of it (the scenario's `market.bids_net_of_fee`), and asks list itself when
    they are not. It never undercuts the tenants' outside option, which is that list price.
    """

    def __init__(self, factor: float = 1.0) -> None:
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self.factor = factor

    def asks(self, providers: np.ndarray, view: MarketView) -> np.ndarray:
        list_price = np.array([view.list_price(m) for m in view.gpu_models])
        return list_price[view.models(providers)] * self.factor * view.fee_gross_up()

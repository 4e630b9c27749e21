"""`explore`: cost-plus with a random markup, the logging strategy of off-policy evaluation.

Each provider's bid on each order is ``cost_basis × (1 + m) × gross_up`` per GPU-hour with
the markup m drawn i.i.d. Uniform[`markup_low`, `markup_high`] from the strategy's own
generator (`seed`), so the bid itself is uniform on
``[c (1 + markup_low), c (1 + markup_high)]`` where ``c = cost_basis × gross_up`` (see
`agents.markups.CostPlus` for the basis and the gross-up). Because the distribution of every
bid is known, a market's log made with it can say what another strategy would have earned
(`market.experiments.offpolicy`): `bid_density` is each bid's propensity, and
`above_max_probability` the chance that a draw is above the order's max price (a bid the
engine drops, so it never reaches the log).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from agents.markups import gross_up

if TYPE_CHECKING:
    from market.strategy import MarketView, OrderView


class Explore:
    """Cost plus a markup drawn Uniform[`markup_low`, `markup_high`] per (order, provider).

    `net_of_fee`: None (the default) follows the scenario's `market.bids_net_of_fee`; true
    or false overrides it, as for `cost_plus`. `seed` seeds the strategy's own generator:
    the same seed in the same market gives the same bids.
    """

    def __init__(self, markup_low: float = 0.2, markup_high: float = 1.0, seed: int = 0,
                 net_of_fee: bool | None = None) -> None:
        for name, value in (("markup_low", markup_low), ("markup_high", markup_high)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or not 0 <= value <= 100:
                raise ValueError(f"{name} must be a number from 0 to 100, got {value!r}")
        if not markup_high > markup_low:
            raise ValueError(f"markup_high must be > markup_low ({markup_low}), got "
                             f"{markup_high}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if net_of_fee is not None and not isinstance(net_of_fee, bool):
            raise ValueError(f"net_of_fee must be true, false or left out (follow the "
                             f"scenario), got {net_of_fee!r}")
        self.markup_low = float(markup_low)
        self.markup_high = float(markup_high)
        self.seed = seed
        self.net_of_fee = net_of_fee
        self.rng = np.random.default_rng(seed)

    def support(self, providers: np.ndarray, view: MarketView) -> tuple[np.ndarray, np.ndarray]:
        """Each provider's lowest and highest possible bid, USD per GPU-hour."""
        scale = view.costs(providers) * gross_up(view, self.net_of_fee)
        return scale * (1.0 + self.markup_low), scale * (1.0 + self.markup_high)

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        """One bid per provider, USD per GPU-hour, each with its own markup draw."""
        markups = self.rng.uniform(self.markup_low, self.markup_high, len(providers))
        return view.costs(providers) * gross_up(view, self.net_of_fee) * (1.0 + markups)

    def bid_density(self, order: OrderView, providers: np.ndarray,
                    bids_usd_per_gpu_hour: np.ndarray, view: MarketView,
                    tolerance_usd_per_gpu_hour: float = 0.0) -> np.ndarray:
        """The density of each provider's bid at `bids_usd_per_gpu_hour`, per USD/GPU-hour:
        ``1 / (c (markup_high − markup_low))`` inside its support, 0 outside (NaN bids: 0).
        `tolerance_usd_per_gpu_hour` widens the support's edges for bids read back from
        the market's integer micro-USD (rounded by at most a micro-USD per order-hour).
        Does not depend on `order`: a draw does not know the order."""
        low, high = self.support(providers, view)
        bids = np.asarray(bids_usd_per_gpu_hour, dtype=float)
        inside = (bids >= low - tolerance_usd_per_gpu_hour) \
            & (bids <= high + tolerance_usd_per_gpu_hour)
        return np.where(inside, 1.0 / (high - low), 0.0)

    def above_max_probability(self, order: OrderView, providers: np.ndarray,
                              view: MarketView) -> np.ndarray:
        """The probability that each provider's draw is above the order's max price per
        GPU-hour: a bid the engine drops, so that the provider does not bid at all."""
        low, high = self.support(providers, view)
        return np.clip((high - order.max_price_usd_per_gpu_hour) / (high - low), 0.0, 1.0)

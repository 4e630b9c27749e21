"""What a learning bidder sees and how its action becomes bids: numpy only, so that a learned
policy runs wherever a strategy runs (offline markets, tournaments, remote bots), not only
inside the Gymnasium environments.

**Observation** (`observe`): a dict of arrays, per GPU model of the catalog (index order of
`view.gpu_models`) where it says so; only what a `market.strategy.MarketView` shows:

    time_s                      [1]  simulated seconds since the start
    clearing_usd_per_gpu_hour   [M]  mean of the last `PRICES_AVERAGED` published on-demand
                                     lease prices of the model, USD per GPU-hour (0: none yet)
    cost_usd_per_gpu_hour       [M]  own providers' mean cost basis of the model (0: none)
    gpus                        [M]  own GPUs of the model
    free_gpus                   [M]  own GPUs of the model free now
    order_gpus                  [1]  GPUs of the order(s) to price now (0: none)
    order_max_usd_per_gpu_hour  [1]  their max price per GPU-hour, USD (0: none)
    order_models                [M]  1 where the order accepts the model

**Action** (`BidSpace`): a markup over cost per GPU model (continuous), a price per GPU-hour
per model (continuous), or one markup for all models from a grid (discrete). A provider's bid
is its cost basis × (1 + markup) × `view.fee_gross_up()` (as `cost_plus` prices), or the
model's price; a bid above the order's max price is no bid, as the chain drops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from market.strategy import OrderView

PRICES_AVERAGED = 16
"""Published prices per model averaged into `clearing_usd_per_gpu_hour`."""

ActionKind = Literal["markup", "price", "discrete"]
ACTION_KINDS: tuple[str, ...] = ("markup", "price", "discrete")

Decision = Literal["order", "interval"]
DECISIONS: tuple[str, ...] = ("order", "interval")
"""When a learning bidder decides: for every order it prices, or at the first order it
prices in each interval of simulated time (`agents.rl.session`)."""

DEFAULT_GRID: tuple[float, ...] = tuple(round(0.25 * k, 2) for k in range(13))
"""The discrete action's markups: 0, 0.25, ..., 3."""


@dataclass(frozen=True)
class BidSpace:
    """How an action becomes bids, for a market of `gpu_models` (catalog ids).

    `kind` "markup": one markup per model in [`markup_low`, `markup_high`]; "price": one
    price per model, USD per GPU-hour, in (0, `price_high_usd_per_gpu_hour` of the model];
    "discrete": an index into `markup_grid`, one markup for every model.
    """

    gpu_models: tuple[str, ...]
    kind: ActionKind = "markup"
    markup_low: float = 0.0
    markup_high: float = 3.0
    markup_grid: tuple[float, ...] = DEFAULT_GRID
    price_high_usd_per_gpu_hour: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"action: expected one of {', '.join(ACTION_KINDS)}, "
                             f"got {self.kind!r}")
        if not -1.0 < self.markup_low < self.markup_high < np.inf:
            raise ValueError(f"markup range: expected -1 < low < high, got "
                             f"[{self.markup_low}, {self.markup_high}]")
        if not self.markup_grid or min(self.markup_grid) <= -1.0:
            raise ValueError("markup_grid: expected at least one markup, each > -1")
        if self.kind == "price" and len(self.price_high_usd_per_gpu_hour) != len(
                self.gpu_models):
            raise ValueError("price_high_usd_per_gpu_hour: one ceiling per GPU model")

    def check(self, action: Any) -> None:
        """Raise ValueError (one line) unless `action` is one of this space's actions."""
        if self.kind == "discrete":
            self.markups(action)
        else:
            self._per_model(action)

    def markups(self, action: Any) -> np.ndarray:
        """The markup per model that `action` sets ("markup" and "discrete")."""
        if self.kind == "discrete":
            values = np.asarray(action).reshape(-1)
            if values.size != 1 or not np.issubdtype(values.dtype, np.integer):
                raise ValueError(f"action: expected one integer index into the markup grid, "
                                 f"got {action!r}")
            index = int(values[0])
            if not 0 <= index < len(self.markup_grid):
                raise ValueError(f"action: expected an index in [0, {len(self.markup_grid)}), "
                                 f"got {index}")
            return np.full(len(self.gpu_models), self.markup_grid[index])
        markups = self._per_model(action)
        return np.clip(markups, self.markup_low, self.markup_high)

    def bids(self, action: Any, providers: np.ndarray, view: Any) -> np.ndarray:
        """Bids of own `providers` under `action`, USD per GPU-hour (NaN: no bid)."""
        models = view.models(providers)
        if self.kind == "price":
            prices = np.clip(self._per_model(action), 0.0,
                             np.asarray(self.price_high_usd_per_gpu_hour))
            bids = prices[models]
            return np.where(bids > 0, bids, np.nan)
        markups = self.markups(action)
        return view.costs(providers) * (1.0 + markups[models]) * view.fee_gross_up()

    def _per_model(self, action: Any) -> np.ndarray:
        values = np.asarray(action, dtype=float).reshape(-1)
        if values.size != len(self.gpu_models):
            raise ValueError(f"action: expected {len(self.gpu_models)} values (one per GPU "
                             f"model: {', '.join(self.gpu_models)}), got {values.size}")
        if not np.isfinite(values).all():
            raise ValueError("action: expected finite numbers")
        return values


def observe(view: Any, order: OrderView | None = None) -> dict[str, np.ndarray]:
    """What the strategy behind `view` sees now, about to price `order` (None: no order):
    the module's observation, keys in sorted order, float32 arrays."""
    models = view.gpu_models
    count = len(models)
    own = view.own_providers()
    own_models = view.models(own)
    per_model = np.bincount(own_models, minlength=count).astype(float)
    gpus = np.bincount(own_models, weights=view.gpus(own), minlength=count)
    free = np.bincount(own_models, weights=view.free_gpus(own), minlength=count)
    cost = np.bincount(own_models, weights=view.costs(own), minlength=count)
    cost = np.divide(cost, per_model, out=np.zeros(count), where=per_model > 0)
    clearing = np.array([view.mean_clearing_price(m, PRICES_AVERAGED) for m in models])
    accepts = np.zeros(count, np.float32)
    if order is None:
        order_gpus = order_max = 0.0
    else:
        order_gpus = float(order.gpus)
        order_max = order.max_price_usd_per_gpu_hour
        for model in order.gpu_models:
            if model in models:
                accepts[models.index(model)] = 1.0
        if not order.gpu_models:  # any model will do
            accepts[:] = 1.0
    return {
        "clearing_usd_per_gpu_hour": clearing.astype(np.float32),
        "cost_usd_per_gpu_hour": cost.astype(np.float32),
        "free_gpus": free.astype(np.float32),
        "gpus": gpus.astype(np.float32),
        "order_gpus": np.array([order_gpus], np.float32),
        "order_max_usd_per_gpu_hour": np.array([order_max], np.float32),
        "order_models": accepts,
        "time_s": np.array([view.now_s], np.float32),
    }

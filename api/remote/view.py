"""What a remote strategy sees of a live market: `RemoteView`, built from the event stream,
with exactly the reads `market.strategy.MarketView` allows (the clock, the public rules and
lease prices, its own provider's facts, never a rival's), and the stream's events read as the
strategy protocol's records (`order_view`; prices as USD per GPU-hour, converted by
`market.units`)."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from market.core.resources import GpuRequest, ResourceUnit, Storage
from market.strategy import OrderView, ProviderView, mean_of_last

#: Published lease prices kept per GPU model, as the offline market's PriceHistory keeps.
PRICES_KEPT = 256
_COST_COLUMNS = {"basis": "cost_basis_usd_per_gpu_hour", "full": "cost_full_usd_per_gpu_hour",
                 "marginal": "cost_marginal_usd_per_gpu_hour"}


class RemoteView:
    """What a remote strategy may read, with `market.strategy.MarketView`'s interface: the
    clock (simulated seconds), the market's public rules and lease prices (USD per GPU-hour),
    and its own provider's facts. Reading any other provider raises PermissionError."""

    def __init__(self, me: ProviderView, gpu_models: tuple[str, ...], take_rate: float,
                 list_usd_per_gpu_hour: dict[str, float], now_s: float = 0.0, *,
                 bids_net_of_fee: bool = True) -> None:
        self.me = me
        self._gpu_models = gpu_models
        self._take_rate = take_rate
        self._net_of_fee = bids_net_of_fee
        self._list = list_usd_per_gpu_hour
        self._recent: dict[str, deque[float]] = {}
        self._now_s = now_s

    @property
    def now_s(self) -> float:
        """The market's clock as last heard from the stream, simulated seconds."""
        return self._now_s

    def heard_clock(self, now_s: float) -> None:
        """The stream told the time (simulated seconds); the clock never goes back."""
        if now_s > self._now_s:
            self._now_s = now_s

    @property
    def gpu_models(self) -> tuple[str, ...]:
        """Catalog ids, in the order `model` indexes refer to."""
        return self._gpu_models

    @property
    def take_rate(self) -> float:
        """The platform's share of every payout (a public rule of the market)."""
        return self._take_rate

    @property
    def bids_net_of_fee(self) -> bool:
        """Whether built-in strategies gross their asks up by 1 / (1 − take_rate), so that
        what the provider keeps after the fee covers the ask (the market's
        `market.bids_net_of_fee`)."""
        return self._net_of_fee

    def fee_gross_up(self) -> float:
        """1 / (1 − take_rate) when bids are priced net of the fee, else 1: multiply a price
        the provider wants to keep by this to get the bid."""
        return 1.0 / (1.0 - self._take_rate) if self._net_of_fee else 1.0

    def list_price(self, gpu_model: str) -> float:
        """The hyperscaler list price of `gpu_model`, USD per GPU-hour (public)."""
        return self._list[gpu_model]

    def clearing_prices(self, gpu_model: str) -> np.ndarray:
        """Recent published lease prices for `gpu_model`, oldest first, USD per GPU-hour."""
        return np.fromiter(self._recent.get(gpu_model, ()), dtype=float)

    def mean_clearing_price(self, gpu_model: str, last: int) -> float:
        """Mean of the last `last` published lease prices for `gpu_model`, USD per GPU-hour
        (0 when none is heard yet)."""
        return mean_of_last(self._recent.get(gpu_model, ()), last)

    def record_price(self, gpu_model: str, usd_per_gpu_hour: float) -> None:
        """A new on-demand lease price was published."""
        prices = self._recent.get(gpu_model)
        if prices is None:
            prices = self._recent[gpu_model] = deque(maxlen=PRICES_KEPT)
        prices.append(usd_per_gpu_hour)

    def _check(self, providers: np.ndarray) -> np.ndarray:
        providers = np.asarray(providers, dtype=np.int64)
        if providers.size and not (providers == self.me.provider).all():
            raise PermissionError("a strategy may read only its own providers' facts")
        return providers

    def costs(self, providers: np.ndarray, basis: str = "basis") -> np.ndarray:
        """Own provider's cost per GPU-hour, USD: `basis` (its pricing basis), `full` or
        `marginal`."""
        providers = self._check(providers)
        return np.full(providers.shape, getattr(self.me, _COST_COLUMNS[basis]), dtype=float)

    def models(self, providers: np.ndarray) -> np.ndarray:
        """Own provider's GPU model index into `gpu_models`."""
        providers = self._check(providers)
        return np.full(providers.shape, self._gpu_models.index(self.me.gpu_model), np.int64)

    def own_providers(self) -> np.ndarray:
        """The id of this strategy's one provider."""
        return np.array([self.me.provider], dtype=np.int64)

    def gpus(self, providers: np.ndarray) -> np.ndarray:
        """Own provider's GPUs (all of them, busy or free)."""
        return np.full(self._check(providers).shape, self.me.gpus, np.int64)

    def free_gpus(self, providers: np.ndarray) -> np.ndarray:
        """Own provider's GPUs free now, as the bot last counted them."""
        return np.full(self._check(providers).shape, self.me.free_gpus, np.int64)

    def provider(self, provider: int) -> ProviderView:
        self._check(np.array([provider]))
        return self.me


def order_view(event: dict[str, Any]) -> OrderView:
    """The `OrderView` of an `order_opened` event from the stream, from the event's integer
    max price (micro-USD per hour for the whole order), exactly as the offline market builds
    it: a strategy reads the same `max_price_usd_per_gpu_hour` in both."""
    return OrderView(int(event["order_id"]), int(event["gpus"]), tuple(event["gpu_models"]),
                     tuple(_unit(unit) for unit in event.get("units", ())),
                     int(event["max_price_micro_per_hour"]), float(event["time_s"]),
                     bool(event.get("interruptible", False)))


def _unit(data: dict[str, Any]) -> ResourceUnit:
    gpu = data.get("gpu")
    return ResourceUnit(
        cpu_millicores=int(data["cpu_millicores"]), memory_bytes=int(data["memory_bytes"]),
        storage=tuple(Storage(s["storage_class"], int(s["size_bytes"]))
                      for s in data.get("storage", ())),
        gpu=None if gpu is None else GpuRequest(int(gpu["units"]), tuple(gpu["models"]),
                                                gpu.get("vendor", "nvidia")),
        endpoints=int(data.get("endpoints", 0)), ip_leases=int(data.get("ip_leases", 0)),
        count=int(data.get("count", 1)))

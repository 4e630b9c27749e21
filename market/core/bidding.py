"""The providers' bids: which strategy prices each provider, and the prices themselves.

When an order opens, every eligible provider's bid is priced at once over arrays: the asks of
strategies that do not depend on the order are read from one integer array (`asks`, read when
providers join and on `refresh_asks`); the other strategies are asked once each for all their
providers. After the auction, strategies that `observe` hear how it went for their bidders.
Prices are whole micro-USD per hour for the whole order inside; strategies speak USD per
GPU-hour (`market.strategy`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from market.core.records import Order
from market.core.state import MarketState
from market.strategy import MarketView, OrderView, Outcome, PriceHistory
from market.units import gpu_hour_micro, order_rates_micro, per_gpu_hour_usd


def _whole_micro(usd: Any) -> np.ndarray:
    """Asks in USD per GPU-hour as whole micro-USD per GPU-hour (`gpu_hour_micro`); -1 where
    not a positive number (the strategy is then asked per order)."""
    micro = gpu_hour_micro(np.nan_to_num(np.asarray(usd, float), nan=-1.0))
    micro[~(micro > 0)] = -1
    return micro.astype(np.int64)


def order_view(order: Order) -> OrderView:
    """The order as providers see it, built once per order (its public data never change)."""
    view = order.view
    if view is None:
        view = order.view = OrderView.of(order)
    return view


class Bidding:
    """The strategies of a market's provider populations, and the bids they make."""

    def __init__(self, market: MarketState) -> None:
        self._market = market
        self.history = PriceHistory(market)    # published prices, for the strategies' views
        self.strategies: list[Any] = []        # one per provider population (or outside group)
        self.views: list[MarketView] = []      # what each strategy may see, by index
        self.observers: list[int] = []         # strategies that want auction outcomes
        self._strategy_of = np.zeros(0, np.int32)
        # A population's providers join together, so strategy i prices exactly the providers
        # with ids in [_first_id[i], _first_id[i + 1]): in ascending ids, one slice each.
        self._first_id = np.zeros(1, np.int64)
        # Strategies with providers that must be asked per order (ask -1), ascending; and
        # those of them with some providers that are not (their bidders need a mask).
        self._asked: list[int] = []
        self._partly_asked: set[int] = set()
        # Asks of order-independent strategies, whole micro-USD per GPU-hour; -1 marks a
        # provider whose strategy must be asked for every order.
        self._static_ask_micro = np.zeros(0, np.int64)
        self._all_static = True
        # Floors for interruptible orders (Vast's "min bid"), whole micro-USD per GPU-hour.
        self._min_bid_micro = np.zeros(0, np.int64)
        self.all_automated = True              # no provider bids only by hand

    def add(self, ids: np.ndarray, strategy: Any) -> None:
        """Providers `ids` (just added to the pool) bid with `strategy` (None: by hand)."""
        index = len(self.strategies)
        self.strategies.append(None)
        self.views.append(MarketView(self._market, index, self.history))
        self._strategy_of = np.concatenate([self._strategy_of,
                                            np.full(len(ids), index, np.int32)])
        first = int(self._first_id[-1])
        if ids.size and not (ids[0] == first and ids[-1] == first + ids.size - 1):
            raise ValueError("Bidding.add: a population's ids must follow the last ones")
        self._first_id = np.append(self._first_id, first + ids.size)
        self.views[index].members = (first, first + ids.size)
        self.all_automated = self.all_automated and strategy is not None
        self._static_ask_micro = np.concatenate([self._static_ask_micro,
                                                 np.full(len(ids), -1, np.int64)])
        self._min_bid_micro = np.concatenate([self._min_bid_micro, np.zeros(len(ids), np.int64)])
        self._take(index, strategy)

    def replace(self, index: int, strategy: Any) -> None:
        """Strategy `index` (a population's) is `strategy` from now on: its asks, floors and
        whether it hears outcomes are read again. For an environment that takes a
        population over before its market runs (`agents.rl`)."""
        if not 0 <= index < len(self.strategies) or strategy is None:
            raise ValueError(f"Bidding.replace: no strategy {index}, or no new strategy")
        self._take(index, strategy)

    def _take(self, index: int, strategy: Any) -> None:
        """Strategy `index` is `strategy`: read its asks and floors for its providers, and
        whether it hears auction outcomes."""
        self.strategies[index] = strategy
        if index in self.observers:
            self.observers.remove(index)
        if callable(getattr(strategy, "observe", None)):
            self.observers = sorted([*self.observers, index])
        ids = np.arange(self._first_id[index], self._first_id[index + 1], dtype=np.int64)
        self._static_ask_micro[ids] = self._asks_micro(index, ids)
        self._sort_static()
        self._read_min_bids(ids)

    def _asks_micro(self, index: int, providers: np.ndarray) -> np.ndarray:
        """Strategy `index`'s order-independent asks for `providers`, rounded to whole
        micro-USD per GPU-hour (a bid is then an exact integer); -1 where it must be asked
        for every order (it has no `asks`, or gives no positive number)."""
        asks = getattr(self.strategies[index], "asks", None)
        return _whole_micro(asks(providers, self.views[index]) if asks is not None
                            else np.full(len(providers), np.nan))

    def strategy_of(self, providers: np.ndarray) -> np.ndarray:
        """Index into `strategies` of each provider's strategy."""
        return self._strategy_of[providers]

    def refresh_asks(self, providers: np.ndarray) -> None:
        """Read again the order-independent asks of `providers`, after their costs or their
        strategies' state changed."""
        providers = np.asarray(providers, dtype=np.int64)
        for index in np.unique(self._strategy_of[providers]).tolist():
            members = providers[self._strategy_of[providers] == index]
            self._static_ask_micro[members] = self._asks_micro(index, members)
        self._sort_static()
        self._read_min_bids(providers)

    def _sort_static(self) -> None:
        """Note which strategies must be asked for every order, for some or all of their
        providers (those whose order-independent ask is not a positive number)."""
        static = self._static_ask_micro > 0
        self._all_static = bool(static.all())
        self._asked, self._partly_asked = [], set()
        for index in range(len(self.strategies)):
            mine = static[self._first_id[index]:self._first_id[index + 1]]
            if not mine.all():
                self._asked.append(index)
                if mine.any():
                    self._partly_asked.add(index)

    def _read_min_bids(self, providers: np.ndarray) -> None:
        """Each provider's floor for interruptible orders: its strategy's
        `min_bids(providers, view)` if it has one, else its marginal cost per GPU-hour (idle
        capacity that on-demand work can take back at any time earns more at any price
        above it)."""
        for index in np.unique(self._strategy_of[providers]).tolist():
            members = providers[self._strategy_of[providers] == index]
            min_bids = getattr(self.strategies[index], "min_bids", None)
            if min_bids is None:
                usd = self._market.pool.cost_marginal_usd_per_gpu_hour[members]
            else:
                usd = np.asarray(min_bids(members, self.views[index]), float)
            micro = gpu_hour_micro(np.nan_to_num(usd, nan=0.0))
            self._min_bid_micro[members] = np.maximum(micro, 1).astype(np.int64)

    def price(self, order: Order, ids: np.ndarray) -> np.ndarray:
        """Bids in whole micro-USD per hour for the whole order (NaN: no bid) of the providers
        `ids`, in ascending order (as `Matcher.eligible` gives them).

        Order-independent strategies come from one array of integer asks; the others are
        asked, one call per strategy, in USD per GPU-hour; their bids are rounded to whole
        micro-USD (so that a bid at exactly the max price is not lost to float noise).
        On an interruptible order, providers bid their floors (min bids)."""
        if order.interruptible:
            return self._min_bid_micro[ids] * order.gpus
        prices = self._static_ask_micro[ids] * order.gpus
        if self._all_static:
            return prices
        # Each strategy's bidders are one slice of the ascending ids (see `_first_id`): no
        # per-provider lookup of strategies, no sort, whatever the number of providers.
        cuts = np.searchsorted(ids, self._first_id).tolist()
        priced = None
        for index in self._asked:  # ascending, as the strategies were always asked
            start, end = cuts[index], cuts[index + 1]
            if start == end:
                continue
            if index in self._partly_asked:
                where: Any = (prices[start:end] < 0).nonzero()[0] + start
                if not where.size:
                    continue
            else:
                where = slice(start, end)
            if priced is None:
                priced = prices.astype(float)
            # The strategy gets its own copy of the ids: it may keep or change them.
            asked = np.asarray(self.strategies[index].prices(
                order_view(order), ids[where].copy(), self.views[index]), dtype=float)
            rates = order_rates_micro(asked, order.gpus)
            rates[rates <= 0] = np.nan  # a bid must be a positive price: else none (NaN is)
            priced[where] = rates
        return prices if priced is None else priced

    def tell_outcome(self, order: Order, winner: int, price: int, now_s: float) -> None:
        """Tell each observing strategy how the auction went for its bidders (`winner`: the
        winning provider, or -1; `price`: the lease rate, micro-USD per hour). Not for an
        interruptible order: its bids were floors, not the strategies' prices."""
        if not self.observers or not order.bid_ids or order.interruptible:
            return
        strategy_of = self._strategy_of[order.bid_providers]
        view = order_view(order)
        gpus = order.gpus
        clearing = per_gpu_hour_usd(price, gpus) if winner >= 0 else math.nan
        public = per_gpu_hour_usd(order.bid_prices, gpus)
        public_micro = order.bid_prices.copy()  # strategies get their own, not the order's
        for index in self.observers:
            mine = strategy_of == index
            if mine.any():
                providers = order.bid_providers[mine]
                bids = order.bid_prices[mine]
                self.strategies[index].observe(Outcome(
                    view, providers, per_gpu_hour_usd(bids, gpus), providers == winner,
                    clearing, now_s, public, bids, int(price) if winner >= 0 else -1,
                    public_micro))

"""Periodic batch clearing (iExec/SONM-style order book): the process that clears it.

Owned by the `batch_clearing` mechanism, which attaches it to the engine. Orders the market
picks for wait in its queue instead of getting per-order bids; every `interval_s` the orders
still open are matched at once to one standing ask per provider
(`market.mechanisms.clearing.batch_clear`), and each trade goes through the engine as a bid and a
lease; an order left unmatched expires.
"""

from __future__ import annotations

import numpy as np

from market.core.engine import Engine
from market.core.records import Order, OrderState
from market.events import OrderExpired


class BatchClearer:
    """The queue of orders waiting for the next clearing, and the clearing process."""

    def __init__(self, market: Engine, interval_s: float, pricing: str) -> None:
        self._market = market
        self.interval_s = interval_s
        self.pricing = pricing
        self._queue: list[Order] = []
        market.env.process(self._clearings())

    def queue(self, order: Order) -> None:
        """`order` waits for the next clearing (no per-order bids)."""
        self._queue.append(order)

    def _clearings(self):
        """Every `interval_s`, match the orders opened since the last clearing at once."""
        from market.mechanisms.clearing import batch_clear  # scipy: only where it is used

        market = self._market
        pool = market.pool
        while True:
            yield market.env.timeout(self.interval_s)
            orders = [o for o in self._queue if o.state is OrderState.OPEN]
            self._queue = []
            if not orders:
                continue
            # One standing ask per provider: its price for the first order it can serve.
            ask: dict[int, int] = {}
            eligible_of = []
            for order in orders:
                ids = market.matcher.eligible(order)
                if not market.bidding.all_automated:
                    ids = ids[pool.automated[ids]]
                prices = market.bidding.price(order, ids) if ids.size else np.zeros(0)
                for provider, price in zip(ids.tolist(), prices.tolist(), strict=True):
                    if price == price and price > 0 and provider not in ask:
                        ask[provider] = round(price / order.gpus)
                eligible_of.append(set(ids.tolist()))
            providers = sorted(ask)
            if providers:
                column = {p: j for j, p in enumerate(providers)}
                eligible = np.zeros((len(orders), len(providers)), bool)
                for i, ids in enumerate(eligible_of):
                    for provider in ids:
                        if provider in column:
                            eligible[i, column[provider]] = True
                # As in every auction, a tenant takes no ask that makes its job cost more
                # than its budget (its max price over the shortest run, or the work's value).
                asks = np.array([ask[p] for p in providers], dtype=float)
                offered = np.array(providers)
                for i, order in enumerate(orders):
                    context = market.auction_context(order, offered)
                    job_cost = asks * order.gpus * context.job_hours
                    eligible[i] &= job_cost <= context.budget_micro
                winner, price = batch_clear(
                    np.array([o.gpus for o in orders]),
                    np.array([o.max_price // o.gpus for o in orders]),
                    pool.free[providers, 0], np.array([ask[p] for p in providers]),
                    self.pricing, eligible)
            else:
                winner = np.full(len(orders), -1)
                price = np.zeros(len(orders), np.int64)
            for order, j, per_gpu in zip(orders, winner.tolist(), price.tolist(), strict=True):
                self._trade(order, providers[j] if j >= 0 else -1, int(per_gpu))

    def _trade(self, order: Order, provider: int, per_gpu: int) -> None:
        """Lease `order` to `provider` at `per_gpu` micro-USD per GPU-hour if the provider
        still has room and pays the bid deposit; otherwise the order expires."""
        market = self._market
        if provider >= 0 and (market.pool.free[provider] >= order.need).all() \
                and market.pool.nodes.fits(order, provider):
            total = per_gpu * order.gpus
            bid_id = market.place_bids(order, np.array([provider]), np.array([total], np.int64),
                                       np.array([market.now]))
            if bid_id in order.bid_ids:  # the deposit was paid: the trade goes through
                market.lease(order, order.bid_ids.index(bid_id), total)
                return
        market.release_bids(order, np.arange(order.bid_arrivals.size))
        market.end_order(order)
        market.bidding.tell_outcome(order, -1, 0, market.now)
        market.emit(OrderExpired(market.now, order.id, order.tenant, order.job_id,
                                 len(order.bid_ids)))

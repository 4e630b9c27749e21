"""Hand-picked orders: their bids expire, unless the tenant holds the order to choose.

An order whose tenant picks the winner by hand (`auto_select` off) keeps each bid for
`bid_timeout_s` after it arrives, as Akash providers do, then the provider drops it. A tenant
taking time to choose holds the order (`hold`): no bid expires until `release`. A live market
releases a hold after a wall-clock limit, as a logged command, so a replay meets it at the
same simulated time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from market.core.records import Order, OrderState
from market.errors import MarketError


class HandPicks:
    """The bid-expiry chains of hand-picked orders, and the holds on them."""

    def __init__(self, env: simpy.Environment, orders: dict[int, Order],
                 release_bids: Callable[[Order, np.ndarray], None],
                 bid_timeout_s: float) -> None:
        self._env = env
        self._orders = orders            # the engine's open and leased orders
        self._release_bids = release_bids
        self._timeout_s = bid_timeout_s
        # Each held order's bid-expiry chain number, so a chain started before a hold and a
        # release does not run twice.
        self._held: set[int] = set()
        self._chain: dict[int, int] = {}

    def start(self, order: Order) -> None:
        """`order` opened with bids to pick from by hand: start expiring them."""
        self._env.timeout(self._timeout_s).callbacks.append(
            lambda _e, order=order: self._expire(order, 0))

    def _expire(self, order: Order, chain: int) -> None:
        """Providers drop bids held `bid_timeout_s` without a lease (not while the tenant
        holds the order: the chain stops, `release` restarts it)."""
        if order.state is not OrderState.OPEN or order.id in self._held \
                or self._chain.get(order.id, 0) != chain:
            return
        now = self._env.now
        stale = np.flatnonzero(order.bid_open
                               & (order.bid_arrivals <= now - self._timeout_s + 1e-9))
        self._release_bids(order, stale)
        waiting = order.bid_arrivals[order.bid_open]
        next_check = (float(waiting.min()) + self._timeout_s - now) if waiting.size \
            else self._timeout_s
        self._env.timeout(max(next_check, 0.0)).callbacks.append(
            lambda _e, order=order: self._expire(order, chain))

    def hold(self, order: Order) -> None:
        """The tenant of open `order` takes time to choose: its bids stay open."""
        if order.auto:
            raise MarketError(f"order {order.id}: the market picks its winner; only a "
                              "hand-picked order (auto_select false) can be held")
        self._held.add(order.id)

    def release(self, order_id: int) -> bool:
        """End the hold on `order_id`: bids held longer than `bid_timeout_s` are dropped now,
        the others expire as usual. False (nothing changed) if it was not held, or has been
        leased or closed meanwhile."""
        if order_id not in self._held:
            return False
        self._held.discard(order_id)
        order = self._orders.get(order_id)
        if order is None or order.state is not OrderState.OPEN:
            self._chain.pop(order_id, None)
            return False
        chain = self._chain[order_id] = self._chain.get(order_id, 0) + 1
        self._expire(order, chain)
        return True

    def ended(self, order_id: int) -> None:
        """The order got a lease or closed: a hold on it is over."""
        if self._held or self._chain:
            self._held.discard(order_id)
            self._chain.pop(order_id, None)

    def held(self, order_id: int) -> bool:
        return order_id in self._held

    def held_orders(self) -> list[int]:
        """The ids of the orders held now, in id order."""
        return sorted(self._held)

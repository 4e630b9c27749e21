"""An order's bids: placing them and releasing them.

A bid holds what it offers: the provider's capacity for the order is reserved from the moment
the bid is placed, and the provider's bid deposit is locked, until the bid is released (it
lost, timed out, or its order ended) or becomes a lease. Bids live on the order as parallel
arrays in arrival order (`market.core.records.Order`); bid ids count up across the market.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from market.core.eligibility import Matcher
from market.core.no_bids import BID_CAP, DEPOSIT, FRAGMENTED, LATE
from market.core.pool import ProviderPool
from market.core.records import Order
from market.core.settlement import Settlement
from market.events import BidsPlaced, Event
from market.scenario import MarketRules


def _earliest(times: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` earliest `times`, earliest first. Continuous times have no
    ties, so this equals a full argsort's first `count` without sorting all the rest (with
    many providers, most bids arrive too late for the cap)."""
    if times.size <= count:
        return np.argsort(times)
    part = np.argpartition(times, count - 1)[:count]
    return part[np.argsort(times[part])]


class BidBook:
    """Places and releases bids. `scheduler` (an interruptible market's) hears when released
    capacity comes back, as paused leases may resume on it."""

    def __init__(self, env: simpy.Environment, pool: ProviderPool, settlement: Settlement,
                 matcher: Matcher, emit: Callable[[Event], None],
                 listened: Callable[[type], bool], normals: Callable[[int], np.ndarray],
                 rules: MarketRules) -> None:
        self.env = env
        self._normals = normals
        self._window_s = rules.bidding_window_s
        self._log_window_s = float(np.log(rules.bidding_window_s))
        self._max_bids = rules.order_max_bids
        self.pool = pool
        self.settlement = settlement
        self.matcher = matcher
        self._emit = emit
        self._listened = listened
        self.next_bid = 0
        self.scheduler: Any = None

    def send(self, order: Order, providers: np.ndarray, prices: np.ndarray,
             now_s: float) -> None:
        """`providers` send their bids (`prices`, micro-USD per hour of the whole order) at
        `now_s`: each arrives after the provider's latency (log-normal), and the first
        `order_max_bids` to arrive within the bidding window are placed. Those left out,
        and those that cannot pay the deposit, are counted in `order.no_bids` (when set)."""
        pool = self.pool
        log_latency = (pool.latency_log_median[providers]
                       + pool.latency_sigma[providers] * self._normals(providers.size))
        first, arrivals = self._first_arrivals(log_latency, now_s)
        keep = first[arrivals <= now_s + self._window_s]
        why = order.no_bids
        if why is not None:
            late = first.size - keep.size
            crowded = providers.size - first.size
            if crowded and not late:
                # Beyond the cap: crowded out, unless too late anyway. Log latencies keep the
                # order of arrivals, so those late are the latest; the split alone, not the
                # sum, rests on how `now_s +` rounds.
                late = min(int(np.count_nonzero(log_latency > self._log_window_s)), crowded)
                crowded -= late
            else:  # the cap's last place was already late: so is everyone after it
                late, crowded = late + crowded, 0
            why[LATE] += late
            why[BID_CAP] += crowded
        if keep.size:
            self.place(order, providers[keep], prices[keep].astype(np.int64),
                       arrivals[: keep.size], why)

    def _first_arrivals(self, log_latency: np.ndarray, now_s: float
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the `order_max_bids` earliest arrivals `now_s + exp(log_latency)`,
        earliest first, and those arrivals. Only the earliest are exponentiated: exp and
        `now_s +` keep the order, so the earliest log latencies are the earliest arrivals,
        unless the sum rounds two of them to one time. That is checked on one more than
        needed, and where it happens the arrivals are all computed and sorted as they are."""
        count = self._max_bids
        first = _earliest(log_latency, count + 1)
        arrivals = now_s + np.exp(log_latency[first])
        if arrivals.size < 2 or (arrivals[1:] > arrivals[:-1]).all():
            return first[:count], arrivals[:count]
        arrivals = now_s + np.exp(log_latency)
        first = _earliest(arrivals, count)
        return first, arrivals[first]

    def place(self, order: Order, providers: np.ndarray, prices: np.ndarray,
              arrivals: np.ndarray, why: list[int] | None = None) -> int:
        """Reserve capacity and lock a deposit for each bid (`prices`: micro-USD per hour of
        the whole order; `arrivals`: simulated seconds, ascending); a provider that cannot pay
        the deposit does not bid. With `why` (a count per `market.core.no_bids.REASONS`),
        those that did not bid are added to it. Returns the id the first bid got (or would
        have got)."""
        first_id = self.next_bid
        nodes = self.pool.nodes
        if nodes.any:  # replicas go on nodes first: a provider out of room does not bid
            placed = nodes.reserve(order, providers)
            if not placed.all():
                providers, prices, arrivals = providers[placed], prices[placed], arrivals[placed]
                if why is not None:  # (screening saw them fit: only by hand may this happen)
                    why[FRAGMENTED] += placed.size - providers.size
        paid = self.settlement.take_deposits(self.pool.account[providers].tolist())
        if paid is not None:
            if why is not None:
                why[DEPOSIT] += paid.size - int(np.count_nonzero(paid))
            if nodes.any:
                nodes.release(order, providers[~paid])
            providers, prices, arrivals = providers[paid], prices[paid], arrivals[paid]
        if not providers.size:
            return first_id
        self.pool.free[providers] -= order.need
        self.matcher.reserved(order, providers)
        self.next_bid += providers.size
        bid_ids = list(range(first_id, self.next_bid))
        if order.bid_ids:  # a bid placed by hand: keep every array in arrival order
            merged = np.concatenate([order.bid_arrivals, arrivals])
            by_arrival = np.argsort(merged, kind="stable")
            ids = order.bid_ids + bid_ids
            order.bid_ids = [ids[i] for i in by_arrival.tolist()]
            order.bid_providers = np.concatenate([order.bid_providers, providers])[by_arrival]
            order.bid_prices = np.concatenate([order.bid_prices, prices])[by_arrival]
            order.bid_arrivals = merged[by_arrival]
            order.bid_open = np.concatenate([order.bid_open,
                                             np.ones(providers.size, bool)])[by_arrival]
        else:
            order.bid_ids = bid_ids
            order.bid_providers = providers
            order.bid_prices = prices
            order.bid_arrivals = arrivals
            order.bid_open = np.ones(providers.size, bool)
        if self._listened(BidsPlaced):  # built only when someone listens: bids are many
            self._emit(BidsPlaced(self.env.now, order.id, tuple(bid_ids),
                                  tuple(providers.tolist()), tuple(prices.tolist()),
                                  tuple(arrivals.tolist())))
        return first_id

    def release(self, order: Order, which: np.ndarray) -> None:
        """Close the open bids at positions `which`: free their capacity, refund deposits."""
        which = which[order.bid_open[which]]
        if not which.size:
            return
        order.bid_open[which] = False
        providers = order.bid_providers[which]
        self.pool.free[providers] += order.need
        self.pool.nodes.release(order, providers)
        self.settlement.refund_deposits(self.pool.account[providers].tolist())
        if self.scheduler is not None:  # capacity came back: paused leases may resume
            self.scheduler.capacity_back(providers)

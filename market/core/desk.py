"""The calls outside actors make on the market besides posting orders and closing leases:
join (tenants and providers), bid by hand, pick a bid, hold an order while choosing, cancel
it, read its bids, and report a job taken elsewhere.

Notebooks, live clients, remote bots and the built-in agents all use these; the engine
(`market.core.engine.Engine`) mixes them in. Each checks its arguments first and raises
MarketError with nothing changed; then it goes through the lifecycle's own steps (bids are
placed, released and auctions closed exactly as for the market's own bidders).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from market.core.appraisal import Appraisal
from market.core.bidding import Bidding
from market.core.eligibility import Matcher
from market.core.holds import HandPicks
from market.core.pool import ProviderPool, ProviderRow
from market.core.records import Order, OrderState
from market.core.reliability import Reliability
from market.core.settlement import Settlement
from market.errors import MarketError
from market.events import Event, LeaseClosed, OrderCancelled, ProviderExited, TenantLeft
from market.units import order_rate_micro, per_gpu_hour_usd, usd_to_micro


class OutsideCalls:
    """The outside actors' calls, on the engine's own state (a mixin of `Engine`, which
    provides what is declared here and the lifecycle steps `place_bids`, `release_bids`,
    `lease`, `end_order`, `_close_auction` and `_headroom`)."""

    env: simpy.Environment
    pool: ProviderPool
    orders: dict[int, Order]
    settlement: Settlement
    hand_picks: HandPicks
    mechanism: Any
    emit: Callable[[Event], None]
    _max_bids: int
    tenant_accounts: list[int]
    tenant_names: list[str]
    bidding: Bidding
    appraisal: Appraisal
    matcher: Matcher
    reliability: Reliability
    scheduler: Any
    leases: dict[int, Any]
    subscribe: Callable[..., Callable[[], None]]
    arrived_s: np.ndarray
    exited_s: np.ndarray
    _leaving: dict[int, float]
    _hears_leaving: bool

    # ------------------------------------------------------------------ participants

    def add_tenant(self, name: str, wallet_usd: float) -> int:
        """Register a tenant with `wallet_usd` of funds; returns its id."""
        if wallet_usd < 0:
            raise MarketError(f"wallet_usd must be >= 0, got {wallet_usd}")
        self.tenant_accounts.append(self.settlement.open_wallet(f"tenant:{name}", wallet_usd))
        self.tenant_names.append(name)
        return len(self.tenant_accounts) - 1

    def add_providers(self, rows: list[ProviderRow], strategy: Any,
                      wallet_usd: float = 1_000.0) -> np.ndarray:
        """Add providers that bid with `strategy` (None: they bid only through `submit_bid`);
        each gets `wallet_usd` to fund bid deposits. Returns their ids."""
        self.reliability.check(rows)  # a clock too fast is refused before anything changes
        accounts = []
        for row in rows:
            accounts.append(self.settlement.open_wallet(f"provider:{row.name}", wallet_usd))
            row.automated = strategy is not None
        ids = self.pool.add(rows, accounts)
        # Its costs run from now on (a provider joining a live market is not charged for
        # the hours before it came).
        self.arrived_s = np.concatenate([self.arrived_s, np.full(len(ids), self.env.now)])
        self.exited_s = np.concatenate([self.exited_s, np.full(len(ids), math.inf)])
        self.bidding.add(ids, strategy)
        self.appraisal.providers_added(len(ids))
        if self.scheduler is not None:
            self.scheduler.providers_added(len(ids))
        self.matcher.providers_added()
        self.reliability.add(ids)
        return ids

    def retire_provider(self, provider: int) -> bool:
        """`provider` leaves the market for good. It bids no more from now on (its open bids
        lapse, as a provider's do when it is down), serves its running leases to their planned
        ends, and leaves when the last one ends (`ProviderExited`; its costs stop then).
        Failures and absences never bring it back. Returns whether it left at once; raises
        MarketError (nothing changed) for an unknown provider or one already leaving."""
        if not 0 <= provider < self.pool.n:
            raise MarketError(f"provider: unknown id {provider}")
        if self.reliability.retired(provider):
            raise MarketError(f"provider {provider} is already leaving the market")
        self.reliability.retire(provider)
        decided_s = self.env.now
        if not self._serving(provider):
            self._exit(provider, decided_s)
            return True
        self._leaving[provider] = decided_s
        if not self._hears_leaving:  # subscribed after the observers: they hear the close first
            self._hears_leaving = True
            self.subscribe(self._lease_closed_leaving, kinds=(LeaseClosed,))
        return False

    def on_market(self) -> np.ndarray:
        """Whether each provider is on the market now: it has arrived and not left for good
        (up or down; a retiring one serving its last leases counts)."""
        return np.isinf(self.exited_s)

    def _serving(self, provider: int) -> bool:
        return any(lease.provider == provider for lease in self.leases.values())

    def _lease_closed_leaving(self, event: LeaseClosed) -> None:
        provider = event.provider
        if provider in self._leaving and not self._serving(provider):
            self._exit(provider, self._leaving.pop(provider))

    def _exit(self, provider: int, decided_s: float) -> None:
        self.exited_s[provider] = self.env.now
        self.reliability.gone(provider)
        self.emit(ProviderExited(self.env.now, provider, decided_s))

    def refresh_asks(self, providers: np.ndarray) -> None:
        """Read again the order-independent asks of `providers` (`Bidding.refresh_asks`)."""
        self.bidding.refresh_asks(providers)

    def strategy_of(self, providers: np.ndarray) -> np.ndarray:
        """Index into `strategies` of each provider's strategy."""
        return self.bidding.strategy_of(providers)

    def leases_ended(self, provider: int) -> int:
        """How many leases `provider` has ended so far (its public track record)."""
        return self.appraisal.leases_ended(provider)

    # ------------------------------------------------------------------ bids and orders


    def submit_bid(self, order_id: int, provider: int, price_usd_per_gpu_hour: float) -> int:
        """An outside provider bids on an open order now; returns the bid id.

        The provider must match the order and have the capacity free; the price is per GPU-hour
        and may not exceed the order's max price; the order keeps at most `order_max_bids`.
        """
        order = self._open_order(order_id)
        if not 0 <= provider < self.pool.n:
            raise MarketError(f"provider: unknown id {provider}")
        pool = self.pool
        if not 0 < price_usd_per_gpu_hour < math.inf:
            raise MarketError("price_usd_per_gpu_hour must be a finite number > 0")
        price = order_rate_micro(price_usd_per_gpu_hour, order.gpus)
        if price <= 0:
            raise MarketError("price_usd_per_gpu_hour is below one micro-USD per hour")
        if price > order.max_price:
            raise MarketError(f"price_usd_per_gpu_hour: above the order's max price "
                              f"{per_gpu_hour_usd(order.max_price, order.gpus):.4f}")
        now = self.env.now
        arrived = order.bid_open & (order.bid_arrivals <= now)
        if int(arrived.sum()) >= self._max_bids:
            raise MarketError(f"order {order_id} already has order_max_bids "
                              f"({self._max_bids}) bids")
        if provider in order.bid_providers.tolist():
            raise MarketError(f"provider {provider} already bid on order {order_id}")
        if not self.matcher.can_take(order, provider, self._headroom(order)):
            raise MarketError(f"provider {provider} does not match order {order_id} "
                              "(GPU model, storage class, audit, or free capacity on a node)")
        if not self.settlement.can_bid(int(pool.account[provider])):
            raise MarketError(f"provider {provider} cannot pay the bid deposit")
        bid_id = self.place_bids(order, np.array([provider]), np.array([price], np.int64),
                                 np.array([now]))
        # The cap keeps the first `order_max_bids` bids to arrive: this one arrived before
        # any still on their way, so the last of those drops out.
        waiting = order.bid_open.nonzero()[0]
        if waiting.size > self._max_bids:
            self.release_bids(order, waiting[self._max_bids:])
        if order.auto and not self.mechanism.sealed:  # the first bid to arrive wins: now
            self.env.timeout(0).callbacks.append(lambda _e: self._close_auction(order))
        return bid_id

    def accept_bid(self, order_id: int, bid_id: int) -> int:
        """The tenant accepts an open bid (tenant pick by hand); returns the lease id."""
        order = self._open_order(order_id)
        try:
            position = order.bid_ids.index(bid_id)
        except ValueError:
            raise MarketError(f"bid {bid_id} is not a bid on order {order_id}") from None
        if not order.bid_open[position] or order.bid_arrivals[position] > self.env.now:
            raise MarketError(f"bid {bid_id} is not open")
        if not self.pool.up[order.bid_providers[position]]:
            raise MarketError(f"bid {bid_id}: its provider is down")
        return self.lease(order, position, int(order.bid_prices[position])).id

    def bids(self, order_id: int) -> list[dict[str, Any]]:
        """The bids on an open or leased order, in arrival order: id, provider, price per
        GPU-hour (USD, for display) and the engine's own integer behind it (micro-USD per hour
        for the whole order), arrival time (simulated seconds; a future one is still on its
        way) and Akash state (open, active, lost, closed)."""
        order = self.orders.get(order_id)
        if order is None:
            raise MarketError(f"order {order_id} is not open or leased")
        winning = order.lease.bid_id if order.lease is not None else None
        return [{"bid_id": bid_id, "provider": int(provider),
                 "price_usd_per_gpu_hour": per_gpu_hour_usd(int(price), order.gpus),
                 "price_micro_per_hour": int(price),
                 "arrival_s": float(arrival), "state": state.value}
                for bid_id, provider, price, arrival, state in zip(
                    order.bid_ids, order.bid_providers, order.bid_prices, order.bid_arrivals,
                    order.bid_states(winning), strict=True)]

    def cancel_order(self, order_id: int) -> None:
        """The tenant withdraws an open order: bids are closed, escrow refunded."""
        order = self._open_order(order_id)
        self.release_bids(order, np.arange(order.bid_arrivals.size))
        self.end_order(order)
        self.emit(OrderCancelled(self.env.now, order.id, order.tenant,
                                 () if order.no_bids is None else tuple(order.no_bids)))

    def hold_order(self, order_id: int) -> None:
        """The tenant of a hand-picked open order takes time to choose: its bids stay open
        until `release_order` (`market.core.holds`). Raises MarketError (nothing changed) for an
        order the market picks."""
        self.hand_picks.hold(self._open_order(order_id))

    def release_order(self, order_id: int) -> bool:
        """End the hold on `order_id` (`market.core.holds.HandPicks.release`)."""
        return self.hand_picks.release(order_id)

    def held(self, order_id: int) -> bool:
        """Whether the order's tenant holds it (its bids do not expire)."""
        return self.hand_picks.held(order_id)

    def held_orders(self) -> list[int]:
        """The ids of the orders held now, in id order."""
        return self.hand_picks.held_orders()

    def tenant_left(self, tenant: int, job_id: int, reason: str, gpu_hours: float,
                    list_cost_usd: float, value_usd: float | None = None,
                    cost_usd: float | None = None) -> None:
        """Record that a tenant took a job's remaining work to a hyperscaler (the outside
        option): `gpu_hours` of it there cost the tenant `list_cost_usd`, are worth
        `value_usd` to it (default: the list cost, a tenant who is indifferent) and cost the
        hyperscaler `cost_usd` (its opportunity cost; default: the list cost, no margin).
        `job_id` -1 is a job never posted here."""
        for name, amount in (("list_cost_usd", list_cost_usd), ("value_usd", value_usd),
                             ("cost_usd", cost_usd)):
            if amount is not None and not 0 <= amount < math.inf:
                raise MarketError(f"{name} must be a finite number >= 0")
        value = list_cost_usd if value_usd is None else value_usd
        cost = list_cost_usd if cost_usd is None else cost_usd
        self.emit(TenantLeft(self.env.now, tenant, job_id, reason, gpu_hours,
                             usd_to_micro(list_cost_usd), usd_to_micro(value),
                             usd_to_micro(cost)))

    def _open_order(self, order_id: int) -> Order:
        order = self.orders.get(order_id)
        if order is None or order.state is not OrderState.OPEN:
            raise MarketError(f"order {order_id} is not open")
        return order

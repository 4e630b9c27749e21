"""The market's lifecycle core: order → bids → lease → end, on SimPy's clock.

Where the time goes is where SimPy's goes, on events, so an order costs a handful of them: the
order opening (scheduled by its tenant), one for the close of bidding, one for the lease's end.
Bids are not events: when an order opens, every eligible provider's bid is priced in bulk over
the provider arrays (`market.core.bidding`), with its arrival latency sampled, and the auction
closes once. Failures, churn and escrow run-out are sampled or computed when a lease starts, so
its end is scheduled once, whatever ends it.

The engine keeps the lifecycle; its parts each have one job: money moves in
`market.core.settlement`, bids are priced in `market.core.bidding`, who may serve an order is
`market.core.eligibility`, what an auction weighs besides prices is `market.core.appraisal`,
when a lease ends is `market.core.lease_end`, providers fail and leave in
`market.core.reliability`, hand-picked orders' bids expire in `market.core.holds`, and a
mechanism that needs more than one auction per order brings its own part
(`market.mechanisms.interruptible`, `market.mechanisms.batching`). Observers (welfare, metrics,
the result tables) are attached from outside (`market.builder`) and hear everything as events
on the bus (`market.core.bus`).

Outside actors (notebooks, live clients, bots) and the built-in agents use the same public
methods: `post_order`, `submit_bid`, `accept_bid`, `close_lease`, `cancel_order`, `subscribe`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from market.core.appraisal import Appraisal
from market.core.auction import NO_WINNER, AuctionContext
from market.core.bidding import Bidding
from market.core.bus import EventBus
from market.core.eligibility import Matcher
from market.core.holds import HandPicks
from market.core.intake import OutsideOption, check_order, check_work
from market.core.lease_end import LeaseEnds
from market.core.ledger import Ledger
from market.core.outside import outside_cost_fraction
from market.core.pool import ProviderPool, ProviderRow
from market.core.records import PROVIDER_FAULTS, CloseReason, Lease, LeaseState, Order, OrderState
from market.core.reliability import Reliability
from market.core.resources import ResourceUnit
from market.core.settlement import Settlement
from market.core.streams import Streams
from market.errors import MarketError
from market.events import (
    BidsPlaced,
    Event,
    LeaseClosed,
    LeaseCreated,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
    TenantLeft,
    Tick,
)
from market.scenario import Scenario
from market.units import (
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    gpu_hour_micro,
    micro_to_usd,
    order_rate_micro,
    per_gpu_hour_usd,
    usd_to_micro,
)

#: A periodic process (withdrawals, price index ticks, batch clearings) ticks at most this
#: many times over a run: finer intervals are refused when the market is built.
MAX_PERIODIC_TICKS = 10_000_000


def _earliest(times: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` earliest `times`, earliest first. Continuous times have no
    ties, so this equals a full argsort's first `count` without sorting all the rest (with
    many providers, most bids arrive too late for the cap)."""
    if times.size <= count:
        return np.argsort(times)
    part = np.argpartition(times, count - 1)[:count]
    return part[np.argsort(times[part])]


class Engine:
    """The lifecycle of one scenario and seed. `market.Market` is this engine with its
    observers attached; use that."""

    def __init__(self, scenario: Scenario, seed: int = 0) -> None:
        self.scenario = scenario
        self.seed = seed
        self.rules = rules = scenario.market
        self.horizon_s = scenario.duration_days * SECONDS_PER_DAY
        self.env = simpy.Environment()
        self.streams = Streams(seed)
        self.catalog = scenario.catalog()
        self.mechanism = rules.build_mechanism()
        self._check_periods()  # before anything is built or written
        # Read once: the auction close asks it for every order.
        self._mechanism_context = bool(getattr(self.mechanism, "uses_context", False))
        self.bus = EventBus()
        self.subscribe = self.bus.subscribe
        self.emit: Callable[[Event], None] = self.bus.emit
        self.ledger = Ledger()
        self.settlement = Settlement(self.ledger, rules.bid_deposit_usd, rules.take_rate,
                                     self.emit)
        self.pool = ProviderPool([p.name for p in scenario.providers],
                                 [p.archetype for p in scenario.providers])
        self.bidding = Bidding(self)
        self.prices_seen = self.bidding.history
        self.strategies = self.bidding.strategies
        self.views = self.bidding.views
        self.appraisal = Appraisal(self.pool, self.catalog)
        self.matcher = Matcher(self.pool, self.catalog)
        self._outside = OutsideOption(self.catalog, outside_cost_fraction(scenario, self.catalog))
        self._normals = np.zeros(0)
        self._normal_at = 0
        self.tenant_names: list[str] = []
        self.tenant_accounts: list[int] = []
        self.orders: dict[int, Order] = {}     # open or leased, not yet closed
        self.leases: dict[int, Lease] = {}     # active
        self._next_order = self._next_bid = self._next_lease = 0
        self._rng = self.streams.get("market.engine")
        # Standard normals for bid latencies and failure detection delays, drawn in blocks.
        self._normal_rng = self.streams.get("market.normals")
        self._deposit = self.settlement.deposit_micro
        self._window_s = rules.bidding_window_s
        self._max_bids = rules.order_max_bids
        self._finished = False
        self.lease_ends = LeaseEnds(self.env, self.pool, rules, self._rng, self._standard_normals,
                                    self._planned_close)
        self.plan_end = self.lease_ends.plan  # a resumed lease plans its end again
        self.reliability = Reliability(self.env, self.pool,
                                       self.streams.get("providers.reliability"), self.emit)
        self.hand_picks = HandPicks(self.env, self.orders, self.release_bids, rules.bid_timeout_s)
        # A mechanism that pauses leases (interruptible) or clears many orders at once (batch)
        # attaches its own part here.
        self.scheduler: Any = None
        self.clearing: Any = None
        attach = getattr(self.mechanism, "attach", None)
        if attach is not None:
            attach(self)
        self.env.process(self._withdrawals())
        self.env.process(self._ticks())

    # ------------------------------------------------------------------ participants

    @property
    def now(self) -> float:
        """Simulated seconds since the start."""
        return self.env.now

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
        self.bidding.add(ids, strategy)
        self.appraisal.providers_added(len(ids))
        if self.scheduler is not None:
            self.scheduler.providers_added(len(ids))
        self.matcher.providers_added()
        self.reliability.add(ids)
        return ids

    def refresh_asks(self, providers: np.ndarray) -> None:
        """Read again the order-independent asks of `providers` (`Bidding.refresh_asks`)."""
        self.bidding.refresh_asks(providers)

    def strategy_of(self, providers: np.ndarray) -> np.ndarray:
        """Index into `strategies` of each provider's strategy."""
        return self.bidding.strategy_of(providers)

    def leases_ended(self, provider: int) -> int:
        """How many leases `provider` has ended so far (its public track record)."""
        return self.appraisal.leases_ended(provider)

    # ------------------------------------------------------------------ orders

    def post_order(self, tenant: int, units: tuple[ResourceUnit, ...],
                   max_price_usd_per_gpu_hour: float, *, deposit_usd: float,
                   job_value_usd: float | None = None, outside_usd: float | None = None,
                   outside_cost_usd: float | None = None, job_id: int | None = None,
                   job_kind: str = "", work_s: np.ndarray | None = None, work_left: float = 1.0,
                   attempt: int = 0, auto_select: bool = True, audited_only: bool = False,
                   interruptible: bool = False, tag: object = None) -> int:
        """Open an order for `units` and lock `deposit_usd` of the tenant's funds in escrow.

        `max_price_usd_per_gpu_hour` caps every bid (the tenant's reserve). `work_s`, optional,
        is how long the job runs on each catalog GPU model; the lease then closes (reason
        owner) when it is done. With `auto_select` the market's mechanism picks the winner when
        bidding closes; without it the tenant picks by hand with `accept_bid`.
        An `interruptible` order (markets whose mechanism offers them, such as
        `interruptible`) bids its max price per GPU-hour, pays that bid while it runs, and may
        be paused for on-demand work or higher bids.
        Returns the order id; raises MarketError (nothing changed) on invalid input.
        """
        if not 0 <= tenant < len(self.tenant_accounts):
            raise MarketError(f"tenant: unknown id {tenant}")
        check_order(max_price_usd_per_gpu_hour=max_price_usd_per_gpu_hour,
                    deposit_usd=deposit_usd, job_value_usd=job_value_usd,
                    outside_usd=outside_usd, outside_cost_usd=outside_cost_usd,
                    work_left=work_left)
        if interruptible and self.scheduler is None:
            raise MarketError(f"interruptible: mechanism {self.mechanism.name!r} has no "
                              "interruptible orders; use mechanism 'interruptible'")
        work_s, shortest_s = check_work(work_s, len(self.catalog))
        units = tuple(units)
        req, model_mask, smask, shape_key = self.matcher.shape(units)
        deposit = usd_to_micro(deposit_usd)
        account = self.tenant_accounts[tenant]
        if deposit < 0 or self.ledger.balance(account) < deposit:
            raise MarketError(f"deposit_usd: {deposit_usd} is more than the tenant's wallet "
                              f"({micro_to_usd(self.ledger.balance(account)):.2f} USD)")
        gpus = req.gpus
        max_price = order_rate_micro(max_price_usd_per_gpu_hour, gpus)
        # Whole-job figures (a re-post carries the same ones with less work left). Without a
        # stated value, the tenant's reserve is the value it reveals: its max price over the
        # shortest run of the whole job; without a stated outside option, the cheapest
        # acceptable model at its list price, which costs the hyperscaler its opportunity cost
        # (market/core/outside.py); a stated outside price with no stated cost has no known margin.
        if job_value_usd is None:
            job_value_usd = max_price_usd_per_gpu_hour * gpus * shortest_s / SECONDS_PER_HOUR \
                / (work_left if work_s is not None else 1.0)
        if outside_usd is None:
            outside_usd, default_cost = self._outside.job_usd(gpus, model_mask, work_s,
                                                              work_left)
            if outside_cost_usd is None:
                outside_cost_usd = default_cost
        if outside_cost_usd is None:
            outside_cost_usd = outside_usd
        order = Order(self._next_order, tenant, units, req, model_mask, smask, max_price,
                      usd_to_micro(job_value_usd), self.env.now)
        order.outside_micro = usd_to_micro(outside_usd)
        order.outside_cost_micro = usd_to_micro(outside_cost_usd)
        self._next_order += 1
        order.job_id = order.id if job_id is None else job_id
        order.job_kind = job_kind
        order.work_s = work_s
        order.shape_key = shape_key
        order.work_left = work_left
        order.attempt = attempt
        order.auto = auto_select
        order.audited_only = audited_only
        order.tag = tag
        if interruptible:
            order.interruptible = True
            order.priority = gpu_hour_micro(max_price_usd_per_gpu_hour)
        self.settlement.lock_escrow(order, account, deposit)
        self.orders[order.id] = order
        # Who could serve it is read before anyone hears of it: the cheapest of them fixes
        # the job's best cost, which its welfare is measured against.
        eligible = self.matcher.eligible(order, self._headroom(order))
        order.best_cost_micro = self.appraisal.best_cost_micro(order, eligible)
        self.emit(OrderOpened(self.env.now, order.id, tenant, order.job_id, job_kind, gpus,
                              req.gpu_models, max_price, attempt, interruptible, auto_select,
                              units, order.job_value_micro, order.best_cost_micro, work_left,
                              work_s is None))
        self._open_auction(order, eligible)
        return order.id

    def _standard_normals(self, count: int) -> np.ndarray:
        """`count` standard normal draws, taken from blocks drawn ahead."""
        if self._normal_at + count > self._normals.size:
            self._normals = self._normal_rng.standard_normal(max(65_536, count))
            self._normal_at = 0
        start = self._normal_at
        self._normal_at += count
        return self._normals[start:self._normal_at]

    def _headroom(self, order: Order) -> np.ndarray | None:
        """What running leases that `order` may displace hold, per provider (interruptible
        markets; None elsewhere)."""
        return None if self.scheduler is None else self.scheduler.headroom(order)

    def _open_auction(self, order: Order, ids: np.ndarray) -> None:
        """Price the bids of the eligible providers `ids` and schedule the auction's close."""
        pool = self.pool
        now = self.env.now
        if ids.size and not self.bidding.all_automated:
            ids = ids[pool.automated[ids]]
        if order.auto and self.clearing is not None:
            self.clearing.queue(order)  # no per-order bids: it waits for the next clearing
            return
        if ids.size:
            prices = self.bidding.price(order, ids)
            ok = prices <= order.max_price  # NaN (no bid) compares False
            ids = ids[ok]
            prices = prices[ok]
        if ids.size:
            arrivals = now + np.exp(pool.latency_log_median[ids] + pool.latency_sigma[ids]
                                    * self._standard_normals(ids.size))
            first = _earliest(arrivals, self._max_bids)
            arrivals = arrivals[first]
            keep = first[arrivals <= now + self._window_s]
            if keep.size:
                self.place_bids(order, ids[keep], prices[keep].astype(np.int64),
                                arrivals[: keep.size])
        if order.auto:
            if self.mechanism.sealed or not order.bid_arrivals.size:
                close_at = now + self._window_s
            else:
                close_at = float(order.bid_arrivals[0])
            self.env.timeout(close_at - now).callbacks.append(
                lambda _e, order=order: self._close_auction(order))
        else:
            self.hand_picks.start(order)

    def auction_context(self, order: Order, providers: np.ndarray) -> AuctionContext:
        """What the auction weighs besides the bids (`Appraisal.context`)."""
        return self.appraisal.context(order, providers)

    def place_bids(self, order: Order, providers: np.ndarray, prices: np.ndarray,
                   arrivals: np.ndarray) -> int:
        """Reserve capacity and lock a deposit for each bid; a provider that cannot pay the
        deposit does not bid. Returns the id the first bid got (or would have got)."""
        first_id = self._next_bid
        paid = self.settlement.take_deposits(self.pool.account[providers].tolist())
        if paid is not None:
            providers, prices, arrivals = providers[paid], prices[paid], arrivals[paid]
        if not providers.size:
            return first_id
        self.pool.free[providers] -= order.need
        self.matcher.reserved(order, providers)
        self._next_bid += providers.size
        bid_ids = list(range(first_id, self._next_bid))
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
        if self.bus.listened(BidsPlaced):  # built only when someone listens: bids are many
            self.emit(BidsPlaced(self.env.now, order.id, tuple(bid_ids),
                                 tuple(providers.tolist()), tuple(prices.tolist()),
                                 tuple(arrivals.tolist())))
        return first_id

    def release_bids(self, order: Order, which: np.ndarray) -> None:
        """Close the open bids at positions `which`: free their capacity, refund deposits."""
        which = which[order.bid_open[which]]
        if not which.size:
            return
        order.bid_open[which] = False
        providers = order.bid_providers[which]
        self.pool.free[providers] += order.need
        self.settlement.refund_deposits(self.pool.account[providers].tolist())
        if self.scheduler is not None:  # capacity came back: paused leases may resume
            self.scheduler.capacity_back(providers)

    def _close_auction(self, order: Order) -> None:
        if order.state is not OrderState.OPEN:
            return
        now = self.env.now
        arrivals = order.bid_arrivals
        # Bids count once they have arrived, while the provider still holds them (bid timeout)
        # and is up to serve the lease.
        valid = order.bid_open & self.pool.up[order.bid_providers]
        if not (self.mechanism.sealed and order.auto):  # bids may still be on their way
            valid &= arrivals <= now
        if self._window_s > self.rules.bid_timeout_s:
            valid &= arrivals >= now - self.rules.bid_timeout_s
        valid = valid.nonzero()[0]
        winner, price = NO_WINNER, 0
        if valid.size:
            if self._mechanism_context:
                winner, price = self.mechanism.allocate(
                    order.bid_prices[valid], order.max_price,
                    self.auction_context(order, order.bid_providers[valid]))
            else:
                winner, price = self.mechanism.allocate(order.bid_prices[valid],
                                                        order.max_price)
        if winner == NO_WINNER and order.auto and not self.mechanism.sealed:
            # The first bid to arrive lost its provider meanwhile: wait for the next one.
            coming = arrivals[order.bid_open & (arrivals > now)]
            if coming.size:
                self.env.timeout(float(coming.min()) - now).callbacks.append(
                    lambda _e, order=order: self._close_auction(order))
                return
        if winner == NO_WINNER:
            self.bidding.tell_outcome(order, -1, 0, now)
            self.release_bids(order, np.arange(arrivals.size))
            self.end_order(order)
            self.emit(OrderExpired(now, order.id, order.tenant, order.job_id, arrivals.size))
            return
        self.lease(order, int(valid[winner]), price)

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

    def end_order(self, order: Order) -> None:
        """Close an order for good: refund what is left in its escrow to the tenant."""
        order.state = OrderState.CLOSED
        self.hand_picks.ended(order.id)
        self.settlement.refund_escrow(order, self.tenant_accounts[order.tenant])
        self.orders.pop(order.id, None)

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
        headroom = self._headroom(order)
        free = pool.free[provider] if headroom is None else \
            pool.free[provider] + headroom[provider]
        if not (pool.up[provider] and order.model_mask[pool.model[provider]]
                and (free >= order.need).all()
                and (pool.storage_mask[provider] & order.storage_mask) == order.storage_mask
                and (pool.audited[provider] or not order.audited_only)):
            raise MarketError(f"provider {provider} does not match order {order_id} "
                              "(GPU model, storage class, audit, or free capacity)")
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
        self.emit(OrderCancelled(self.env.now, order.id, order.tenant))

    def _open_order(self, order_id: int) -> Order:
        order = self.orders.get(order_id)
        if order is None or order.state is not OrderState.OPEN:
            raise MarketError(f"order {order_id} is not open")
        return order

    # ------------------------------------------------------------------ leases

    def lease(self, order: Order, position: int, price: int) -> Lease:
        """The bid at `position` wins `order` at `price` micro-USD per hour: the lease starts."""
        now = self.env.now
        pool = self.pool
        provider = int(order.bid_providers[position])
        order.bid_open[position] = False  # the winning bid's capacity becomes the lease's
        order.bid_lost = order.bid_open.copy()
        self.release_bids(order, order.bid_lost.nonzero()[0])
        self.bidding.tell_outcome(order, provider, price, now)
        if order.interruptible:
            price = order.max_price  # as on Vast, an interruptible lease pays the tenant's bid
        lease = Lease(self._next_lease, order, provider, order.bid_ids[position],
                      int(pool.model[provider]), price, now, self._deposit)
        self._next_lease += 1
        order.state = OrderState.ACTIVE
        self.hand_picks.ended(order.id)  # a held order got its lease: the hold is over
        order.lease = lease
        self.leases[lease.id] = lease
        self.lease_ends.plan(lease)
        self.emit(LeaseCreated(now, lease.id, order.id, lease.bid_id, order.tenant, provider,
                               order.job_id, self.catalog.ids[lease.model], lease.gpus, price,
                               int(order.bid_arrivals.size), now - order.created_s,
                               order.interruptible,
                               float(self.appraisal.serving_cost_micro(order, [provider])[0]),
                               lease.planned_work_s))
        if self.scheduler is not None:
            self.scheduler.leased(lease)
        return lease

    def close_lease(self, lease_id: int, reopen: bool = True) -> int | None:
        """The tenant closes a lease (reason owner).

        As on Akash, closing a lease keeps its group open: a new order for the remaining work
        (all of it, for a lease with no work estimate) is auctioned with the rest of the
        escrow, and its id is returned. `reopen=False` closes the deployment instead: the
        escrow is refunded and None is returned.
        """
        lease = self.leases.get(lease_id)
        if lease is None:
            raise MarketError(f"lease {lease_id} is not active")
        return self._close_lease(lease, CloseReason.OWNER, reopen=reopen)

    def _planned_close(self, lease: Lease, reason: CloseReason) -> None:
        """A lease's planned end came (`LeaseEnds`): a finished job closes as its owner's."""
        self._close_lease(lease, reason, finished=reason is CloseReason.OWNER)

    def settle(self, lease: Lease) -> None:
        """Pay the provider what the lease owes now (`Settlement.settle`)."""
        self.settlement.settle(lease, int(self.pool.account[lease.provider]), self.env.now)

    def _close_lease(self, lease: Lease, reason: CloseReason, reopen: bool = False,
                     finished: bool = False) -> int | None:
        now = self.env.now
        order = lease.order
        self.settle(lease)
        lease.state = (LeaseState.INSUFFICIENT_FUNDS if reason is CloseReason.INSUFFICIENT_FUNDS
                       else LeaseState.CLOSED)
        del self.leases[lease.id]
        order.lease = None  # break the order <-> lease cycle: refcounting frees both
        pool = self.pool
        provider = lease.provider
        if lease.running:
            pool.free[provider] += order.need
            pool.busy_gpu_s[provider] += lease.gpus * (now - lease.run_start_s)
            if self.scheduler is not None:
                self.scheduler.stopping(lease)
        self.appraisal.lease_ended(provider, reason in PROVIDER_FAULTS)
        self.settlement.refund_lease_deposit(lease, int(pool.account[provider]))
        # An open-ended lease (no work estimate) has done none of "the rest": it is all left.
        done = 0.0 if lease.planned_work_s == math.inf else \
            min(lease.ran_s(now) / lease.planned_work_s, 1.0)
        work_left = order.work_left * (1.0 - done)
        if finished:
            work_left = 0.0
        escrow_left = order.escrow
        self.end_order(order)  # refunds the escrow; a re-opened group deposits it again
        self.emit(LeaseClosed(now, lease.id, order.id, order.tenant, provider,
                              order.job_id, reason.value, lease.paid, work_left))
        if self.scheduler is not None:
            self.scheduler.closed(lease)
        if not (reopen and work_left > 0):
            return None
        # Akash keeps the group open after an owner close: re-auction the rest of the work.
        remaining = None if order.work_s is None else order.work_s * (1.0 - done)
        return self.post_order(
            # Back in people's units, which post_order converts to the very same integers
            # (market.units: a round trip never drifts).
            order.tenant, order.units, per_gpu_hour_usd(order.max_price, order.gpus),
            deposit_usd=micro_to_usd(escrow_left),
            job_value_usd=micro_to_usd(order.job_value_micro),
            outside_usd=micro_to_usd(order.outside_micro),
            outside_cost_usd=micro_to_usd(order.outside_cost_micro),
            job_id=order.job_id, job_kind=order.job_kind, work_s=remaining, work_left=work_left,
            attempt=order.attempt + 1, auto_select=order.auto, audited_only=order.audited_only,
            tag=order.tag)

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

    # ------------------------------------------------------------------ running

    def _check_periods(self) -> None:
        """Refuse a periodic process that would tick more than MAX_PERIODIC_TICKS times in the
        horizon: each tick is an event, so a tiny interval would spin in place of the run."""
        periods = [("market.withdraw_interval_s", self.rules.withdraw_interval_s),
                   ("market.price_index_interval_s", self.rules.price_index_interval_s)]
        periods += getattr(self.mechanism, "periods", lambda: [])()
        for name, interval_s in periods:
            if not interval_s * MAX_PERIODIC_TICKS >= self.horizon_s:  # NaN and 0 too
                raise MarketError(
                    f"{name}: every {interval_s:g} s over {self.horizon_s:g} s is more than "
                    f"{MAX_PERIODIC_TICKS:.0e} ticks; expected at least "
                    f"{self.horizon_s / MAX_PERIODIC_TICKS:.3g} s")

    def _withdrawals(self):
        """Providers withdraw their earnings every `withdraw_interval_s` (Akash: 24 h)."""
        while True:
            yield self.env.timeout(self.rules.withdraw_interval_s)
            for lease in list(self.leases.values()):
                self.settle(lease)

    def _ticks(self):
        interval = self.rules.price_index_interval_s
        while True:
            yield self.env.timeout(interval)
            self.emit(Tick(self.env.now))

    def advance(self, until: float | None = None,
                progress: Callable[[float, float], None] | None = None) -> bool:
        """Advance to `until` simulated seconds (default: the scenario's end); at the
        scenario's end, active leases are settled once more (`finish`). Returns whether the
        run is over. `progress(now_s, horizon_s)` is called on every tick."""
        target = self.horizon_s if until is None else min(until, self.horizon_s)
        unsubscribe = None
        if progress is not None:
            def on_tick(event: Event) -> None:
                progress(event.time_s, self.horizon_s)
            unsubscribe = self.subscribe(on_tick, kinds=(Tick,))
        try:
            if target > self.env.now:
                self.env.run(until=target)
                # SimPy lands on `until` as now + (until − now), which can miss it by a
                # rounding step; a replay reaching the same time in other steps must land on
                # the same float, so the clock is set to it exactly.
                self.env._now = target
            if target >= self.horizon_s and not self._finished:
                # SimPy stops before events due at `until`: let the last tick (the final
                # price interval) and anything else due at the very end happen.
                while self.env.peek() <= self.horizon_s:
                    self.env.step()
        finally:
            if unsubscribe is not None:
                unsubscribe()
        if target >= self.horizon_s:
            self.finish()
        return self._finished

    def finish(self) -> None:
        """End the run here (at the scenario's end, or earlier when a live market stops):
        settle active leases once more. Idempotent."""
        if self._finished:
            return
        self._finished = True
        for lease in list(self.leases.values()):
            self.settle(lease)

    @property
    def finished(self) -> bool:
        """Whether `finish` ran: the run is over and takes no more commands."""
        return self._finished

    def money(self) -> dict[str, Any]:
        """The ledger's audit: total money, whether it is unchanged, what escrow holds."""
        return self.settlement.audit(self.orders.values(), len(self.leases))

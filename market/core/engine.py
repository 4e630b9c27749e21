"""The market's lifecycle core: order → bids → lease → end, on SimPy's clock.

An order costs a handful of events: its opening (scheduled by its tenant), the close of
bidding, the lease's end. Bids are not events: every eligible provider's bid is priced in bulk
(`market.core.bidding`), sent with a sampled latency (`market.core.bidbook`), and the auction
closes once. A lease's end, whatever ends it, is planned once when it starts.

Each other part has one job: `settlement` moves money, `eligibility` says who may serve an
order, `appraisal` weighs what an auction weighs besides prices, `lease_end` plans ends,
`reliability` fails providers, `holds` expires hand-picked orders' bids, `clock` runs the time
and the periodic processes, and `desk` takes the outside actors' calls (mixed in). A mechanism
needing more than one auction per order attaches its own part (`market.mechanisms`).
Observers are attached from outside (`market.builder`) and hear events on the bus.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from market.core import no_bids
from market.core.appraisal import Appraisal
from market.core.auction import NO_WINNER, AuctionContext
from market.core.bidbook import BidBook
from market.core.bidding import Bidding
from market.core.bme_settlement import BmeSettlement
from market.core.bus import EventBus
from market.core.clock import Clock, check_periods
from market.core.desk import OutsideCalls
from market.core.eligibility import Matcher
from market.core.holds import HandPicks
from market.core.intake import OutsideOption, check_order, check_work, job_figures_usd
from market.core.lease_end import LeaseEnds
from market.core.ledger import Ledger
from market.core.outside import outside_cost_fraction
from market.core.pool import ProviderPool
from market.core.records import PROVIDER_FAULTS, CloseReason, Lease, LeaseState, Order, OrderState
from market.core.reliability import Reliability
from market.core.resources import ResourceUnit
from market.core.settlement import Settlement
from market.core.streams import NormalBlocks, Streams
from market.errors import MarketError
from market.events import Event, LeaseClosed, LeaseCreated, OrderExpired, OrderOpened
from market.scenario import Scenario
from market.units import (
    SECONDS_PER_DAY,
    gpu_hour_micro,
    micro_to_usd,
    order_rate_micro,
    per_gpu_hour_usd,
    usd_to_micro,
)


class Engine(OutsideCalls):
    """The lifecycle of one scenario and seed. `market.Market` is this engine with its
    observers attached; use that."""

    def __init__(self, scenario: Scenario, seed: int = 0) -> None:
        self.scenario = scenario
        self.seed = seed
        self.rules = rules = scenario.market
        self.horizon_s = scenario.duration_days * SECONDS_PER_DAY
        self.env = env = simpy.Environment()
        self.streams = Streams(seed)
        self.catalog = scenario.catalog()
        self.mechanism = rules.build_mechanism()
        # Before anything is built or written.
        check_periods(rules, getattr(self.mechanism, "periods", lambda: [])(), self.horizon_s)
        # Read once: the auction close asks it for every order.
        self._mechanism_context = bool(getattr(self.mechanism, "uses_context", False))
        self.bus = EventBus()
        self.subscribe = self.bus.subscribe
        self.emit: Callable[[Event], None] = self.bus.emit
        self.ledger = Ledger()
        self.tenant_names: list[str] = []
        self.tenant_accounts: list[int] = []
        self.orders: dict[int, Order] = {}     # open or leased, not yet closed
        self.leases: dict[int, Lease] = {}     # active
        self.settlement: Settlement
        if rules.settlement == "bme":  # AEP-76: ACT escrow settled in AKT
            self.settlement = BmeSettlement(
                self.ledger, rules.bid_deposit_usd, rules.bme, self.emit, env,
                self.streams.get("bme.akt_price"), self.leases.values, self.tenant_accounts)
        else:
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
        # Bid latencies and failure detection delays.
        self._standard_normals = NormalBlocks(self.streams.get("market.normals"))
        self.bid_book = BidBook(env, self.pool, self.settlement, self.matcher, self.emit,
                                self.bus.listened, self._standard_normals, rules)
        self.place_bids = self.bid_book.place
        self.release_bids = self.bid_book.release
        self._outside = OutsideOption(self.catalog, outside_cost_fraction(scenario, self.catalog))
        # Each node-list population's file and what it gave (`agents.node_lists`).
        self.node_lists: dict[str, dict[str, Any]] = {}
        self._next_order = self._next_lease = 0
        self._rng = self.streams.get("market.engine")
        self._deposit = self.settlement.deposit_micro
        self._window_s = rules.bidding_window_s
        self._max_bids = rules.order_max_bids
        self.lease_ends = LeaseEnds(env, self.pool, rules, self._rng, self._standard_normals,
                                    self._planned_close)
        self.plan_end = self.lease_ends.plan  # a resumed lease plans its end again
        self.reliability = Reliability(env, self.pool,
                                       self.streams.get("providers.reliability"), self.emit)
        self.hand_picks = HandPicks(env, self.orders, self.release_bids, rules.bid_timeout_s)
        # When each provider joined and left the market for good (simulated seconds; inf:
        # still on it): its costs run between the two (`OutsideCalls.retire_provider`).
        self.arrived_s = np.zeros(0)
        self.exited_s = np.zeros(0)
        self._leaving: dict[int, float] = {}  # retired, serving their last leases: decided_s
        self._hears_leaving = False
        # A mechanism that pauses leases (interruptible) or clears many orders at once (batch)
        # attaches its own part here.
        self.scheduler: Any = None
        self.clearing: Any = None
        attach = getattr(self.mechanism, "attach", None)
        if attach is not None:
            attach(self)
        self.bid_book.scheduler = self.scheduler
        # Last: its processes start after the mechanism's, as they always have.
        self.clock = Clock(env, self.horizon_s, rules, self.emit, self.subscribe,
                           self._settle_active, self.finish)

    @property
    def now(self) -> float:
        """Simulated seconds since the start."""
        return self.env.now

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
        if deposit < 0 or not self.settlement.can_lock(account, deposit):
            wallet = micro_to_usd(self.settlement.spendable_micro(account))
            raise MarketError(f"deposit_usd: {deposit_usd} is more than the tenant's wallet "
                              f"({wallet:.2f} USD)")
        gpus = req.gpus
        max_price = order_rate_micro(max_price_usd_per_gpu_hour, gpus)
        job_value_usd, outside_usd, outside_cost_usd = job_figures_usd(
            self._outside, max_price_usd_per_gpu_hour=max_price_usd_per_gpu_hour, gpus=gpus,
            model_mask=model_mask, work_s=work_s, shortest_s=shortest_s, work_left=work_left,
            job_value_usd=job_value_usd, outside_usd=outside_usd,
            outside_cost_usd=outside_cost_usd)
        order = Order(self._next_order, tenant, units, req, model_mask, smask, max_price,
                      usd_to_micro(job_value_usd), self.env.now, job_id=job_id,
                      job_kind=job_kind, work_s=work_s, work_left=work_left, attempt=attempt,
                      auto=auto_select, audited_only=audited_only, tag=tag, shape_key=shape_key,
                      outside_micro=usd_to_micro(outside_usd),
                      outside_cost_micro=usd_to_micro(outside_cost_usd))
        self._next_order += 1
        if interruptible:
            order.interruptible = True
            order.priority = gpu_hour_micro(max_price_usd_per_gpu_hour)
        self.settlement.lock_escrow(order, account, deposit)
        self.orders[order.id] = order
        # Who could serve it is read before anyone hears of it: the cheapest of them fixes
        # the job's best cost, which its welfare is measured against.
        order.no_bids = no_bids.empty()  # each step of the way adds whom it leaves out
        eligible = self.matcher.eligible(order, self._headroom(order), order.no_bids)
        order.best_cost_micro = self.appraisal.best_cost_micro(order, eligible)
        self.emit(OrderOpened(self.env.now, order.id, tenant, order.job_id, job_kind, gpus,
                              req.gpu_models, max_price, attempt, interruptible, auto_select,
                              units, order.job_value_micro, order.best_cost_micro, work_left,
                              work_s is None))
        self._open_auction(order, eligible)
        return order.id

    def _headroom(self, order: Order) -> np.ndarray | None:
        """What running leases that `order` may displace hold, per provider (interruptible
        markets; None elsewhere)."""
        return None if self.scheduler is None else self.scheduler.headroom(order)

    def _open_auction(self, order: Order, ids: np.ndarray) -> None:
        """Price the bids of the eligible providers `ids` and schedule the auction's close."""
        pool = self.pool
        now = self.env.now
        why = order.no_bids
        if ids.size and not self.bidding.all_automated:
            screened = ids.size
            ids = ids[pool.automated[ids]]
            if why is not None:
                why[no_bids.BY_HAND] += screened - ids.size
        if order.auto and self.clearing is not None:
            # No per-order bids: it waits for the next clearing (and no reasons are counted).
            order.no_bids = None
            self.clearing.queue(order)
            return
        if ids.size:
            prices = self.bidding.price(order, ids)
            ok = prices <= order.max_price  # NaN (no bid) compares False
            ids = ids[ok]
            prices = prices[ok]
            if why is not None:
                why[no_bids.PRICE] += ok.size - ids.size
        if ids.size:
            self.bid_book.send(order, ids, prices, now)
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
            self.emit(OrderExpired(now, order.id, order.tenant, order.job_id, arrivals.size,
                                   _counts(order)))
            return
        self.lease(order, int(valid[winner]), price)

    def end_order(self, order: Order) -> None:
        """Close an order for good: refund what is left in its escrow to the tenant."""
        order.state = OrderState.CLOSED
        self.hand_picks.ended(order.id)
        self.settlement.refund_escrow(order, self.tenant_accounts[order.tenant])
        self.orders.pop(order.id, None)

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
                               lease.planned_work_s, _counts(order)))
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
            if pool.nodes.any:  # (a paused lease holds no node)
                pool.nodes.release(order, np.array([provider]))
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

    # ------------------------------------------------------------------ running

    def advance(self, until: float | None = None,
                progress: Callable[[float, float], None] | None = None) -> bool:
        """Advance to `until` simulated seconds (default: the scenario's end); at the
        scenario's end, active leases are settled once more (`finish`). Returns whether the
        run is over. `progress(now_s, horizon_s)` is called on every tick."""
        return self.clock.advance(until, progress)

    def finish(self) -> None:
        """End the run here (at the scenario's end, or earlier when a live market stops):
        settle active leases once more. Idempotent."""
        if self.clock.finished:
            return
        self.clock.finished = True
        self._settle_active()
        self.settlement.close_books()

    def _settle_active(self) -> None:
        """Pay every active lease what it owes now (withdrawals, and the run's end)."""
        for lease in list(self.leases.values()):
            self.settle(lease)

    @property
    def finished(self) -> bool:
        """Whether `finish` ran: the run is over and takes no more commands."""
        return self.clock.finished

    def money(self) -> dict[str, Any]:
        """The ledger's audit: total money, whether it is unchanged, what escrow holds."""
        return self.settlement.audit(self.orders.values(), len(self.leases))


def _counts(order: Order) -> tuple[int, ...]:
    """`order.no_bids` as the events carry it."""
    return () if order.no_bids is None else tuple(order.no_bids)

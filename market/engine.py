"""The market engine: SimPy processes for the whole order → bid → lease → settle lifecycle.

Where the time goes is where SimPy's goes, on events, so an order costs a handful of them: the
order opening (scheduled by its tenant), one for the close of bidding, one for the lease's end.
Bids are not events: when an order opens, every eligible provider's bid is priced in bulk over
the provider arrays, with its arrival latency sampled, and the auction closes once. Failures,
churn and escrow run-out are sampled or computed when a lease starts, so its end is scheduled
once, whatever ends it.

Outside actors (notebooks, live clients, bots) and the built-in agents use the same public
methods: `post_order`, `submit_bid`, `accept_bid`, `close_lease`, `cancel_order`, `subscribe`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from market import registry
from market.errors import MarketError
from market.events import (
    EVENT_TYPES,
    BidsPlaced,
    Event,
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
    PaymentSettled,
    ProviderRecovered,
    TenantLeft,
    Tick,
)
from market.ledger import InsufficientFunds, Ledger
from market.matching import Matcher
from market.mechanisms import NO_WINNER, AuctionContext, Mechanism
from market.outside import outside_cost_fraction
from market.pool import ProviderPool, ProviderRow
from market.records import (
    PROVIDER_FAULTS,
    CloseReason,
    Lease,
    LeaseState,
    Order,
    OrderState,
)
from market.reliability import Reliability
from market.resources import CAPACITY, ResourceUnit
from market.scenario import Scenario
from market.strategy import MarketView, OrderView, Outcome, PriceHistory
from market.streams import Streams
from market.units import (
    MICRO_USD_PER_USD,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    owed_micro,
    usd_to_micro,
)

Subscriber = Callable[[Event], None]

#: A periodic process (withdrawals, price index ticks, batch clearings) ticks at most this
#: many times over a run: finer intervals are refused when the market is built.
MAX_PERIODIC_TICKS = 10_000_000


class Market:
    """A simulated GPU marketplace for one scenario and seed.

    >>> from market import Market, load_scenario
    >>> result = Market(load_scenario("default", ["duration_days=0.25"]), seed=1).run()
    >>> result.summary["money_conserved"]
    True
    """

    def __init__(self, scenario: Scenario, seed: int = 0, *, out: str | Path | None = None,
                 populate: bool = True, record: bool = True) -> None:
        from market.metrics import Metrics  # metrics subscribe to the market they measure
        from market.recorder import Recorder
        from market.welfare import Welfare

        self.scenario = scenario
        self.seed = seed
        self.rules = scenario.market
        self.horizon_s = scenario.duration_days * SECONDS_PER_DAY
        self.env = simpy.Environment()
        self.streams = Streams(seed)
        self.catalog = scenario.catalog()
        self.mechanism: Mechanism = scenario.market.build_mechanism()
        self._check_periods()  # before anything is built or written
        # Read once: the auction close asks it for every order.
        self._mechanism_context = bool(getattr(self.mechanism, "uses_context", False))
        self.ledger = Ledger()
        self.platform = self.ledger.open("platform")
        self.escrow = self.ledger.open("escrow")
        self.deposits = self.ledger.open("bid_deposits")
        self.pool = ProviderPool([p.name for p in scenario.providers],
                                 [p.archetype for p in scenario.providers])
        self.strategies: list[Any] = []        # one per provider population (or outside group)
        self.views: list[MarketView] = []      # what each strategy may see, by index
        self._observers: list[int] = []        # strategies that want auction outcomes
        self._strategy_of = np.zeros(0, np.int32)
        # Asks of order-independent strategies, whole micro-USD per GPU-hour; -1 marks a
        # provider whose strategy must be asked for every order.
        self._static_ask_micro = np.zeros(0, np.int64)
        self._all_static = True
        # Floors for interruptible orders (Vast's "min bid"), whole micro-USD per GPU-hour.
        self._min_bid_micro = np.zeros(0, np.int64)
        self._all_automated = True
        # Leases ended, and ended by a provider fault, per provider: public track records.
        self._leases_ended = np.zeros(0)
        self._leases_failed = np.zeros(0)
        self.matcher = Matcher(self.pool, self.catalog)
        # What serving at list costs a hyperscaler, per GPU model (a fraction of list).
        self._outside_fraction = outside_cost_fraction(scenario, self.catalog)
        self._normals = np.zeros(0)
        self._normal_at = 0
        self.tenant_names: list[str] = []
        self.tenant_accounts: list[int] = []
        self.orders: dict[int, Order] = {}     # open or leased, not yet closed
        self.leases: dict[int, Lease] = {}     # active
        # Subscribers by event type, as tuples: emitting reads them without copying.
        self._routes: dict[type[Event], tuple[Subscriber, ...]] = dict.fromkeys(EVENT_TYPES, ())
        self._pending: deque[Event] = deque()
        self._emitting = False
        self._next_order = 0
        # Hand-picked orders whose tenant asked for time to choose (`hold_order`): their bids
        # do not expire until `release_order`. Each holds its bid-expiry chain's number, so a
        # chain started before a hold and a release does not run twice.
        self._held: set[int] = set()
        self._expiry_chain: dict[int, int] = {}
        self._next_bid = 0
        self._next_lease = 0
        self._rng = self.streams.get("market.engine")
        # Standard normals for bid latencies and failure detection delays, drawn in blocks.
        self._normal_rng = self.streams.get("market.normals")
        self._deposit = usd_to_micro(self.rules.bid_deposit_usd)
        self._take_ppm = round(self.rules.take_rate * 1_000_000)
        self._window_s = self.rules.bidding_window_s
        self._max_bids = self.rules.order_max_bids
        checks = self.rules.health_check_failures
        low, high = self.rules.health_check_interval_s
        # Sum of `checks` uniform intervals: its mean and standard deviation (CLT, n ≈ 40).
        self._detect_mean_s = checks * (low + high) / 2
        self._detect_sd_s = math.sqrt(checks * (high - low) ** 2 / 12)
        self._finished = False
        self.welfare = Welfare(self)
        self.metrics = Metrics(self)
        self.recorder = Recorder(self, out) if record else None
        self.reliability = Reliability(self)
        self.prices_seen = PriceHistory(self)
        self._batch: list[Order] = []          # orders waiting for the next batch clearing
        # Vast.ai-style interruptible leases, running or paused, per provider in lease order,
        # and what the running ones hold (per provider and resource).
        self._interruptible = bool(getattr(self.mechanism, "interruptible", False))
        self._interruptible_on: dict[int, list[Lease]] = {}
        self._interruptible_held = np.zeros((0, len(CAPACITY)), np.int64)
        self._interruptible_running = 0
        if self._interruptible:
            self.subscribe(self._recovered, kinds=(ProviderRecovered,))
        self._is_batch = bool(getattr(self.mechanism, "batch", False))
        if self._is_batch:
            self.env.process(self._batch_clearings())
        self.env.process(self._withdrawals())
        self.env.process(self._ticks())
        if populate:
            registry.load("populations", scenario.population)(self)

    # ------------------------------------------------------------------ participants

    @property
    def now(self) -> float:
        """Simulated seconds since the start."""
        return self.env.now

    def subscribe(self, callback: Subscriber,
                  kinds: Iterable[type[Event]] | None = None) -> Callable[[], None]:
        """Call `callback(event)` for every event from now on, or only for events of the types
        in `kinds`; returns a function that unsubscribes.

        Callbacks run synchronously inside the simulation step and may call the market's
        public methods (that is how built-in tenants re-post expired orders).
        """
        targets = EVENT_TYPES if kinds is None else tuple(kinds)
        for kind in targets:
            if kind not in self._routes:
                raise ValueError(f"kinds: {kind!r} is not an event type of the market")
            self._routes[kind] = (*self._routes[kind], callback)

        def unsubscribe() -> None:
            for kind in targets:
                routes = list(self._routes[kind])
                if callback in routes:
                    routes.remove(callback)
                self._routes[kind] = tuple(routes)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Hand `event` to its subscribers, in subscription order.

        Events that subscribers cause while handling one (a tenant re-posting an expired
        order) are delivered after it, so every subscriber sees events in the same order.
        """
        pending = self._pending
        pending.append(event)
        if self._emitting:
            return
        self._emitting = True
        try:
            while pending:
                event = pending.popleft()
                for callback in self._routes[type(event)]:
                    callback(event)
        finally:
            self._emitting = False
            pending.clear()

    def add_tenant(self, name: str, wallet_usd: float) -> int:
        """Register a tenant with `wallet_usd` of funds; returns its id."""
        if wallet_usd < 0:
            raise MarketError(f"wallet_usd must be >= 0, got {wallet_usd}")
        account = self.ledger.open(f"tenant:{name}")
        self.ledger.transfer(self.ledger.external, account, usd_to_micro(wallet_usd), "fund")
        self.tenant_names.append(name)
        self.tenant_accounts.append(account)
        return len(self.tenant_accounts) - 1

    def add_providers(self, rows: list[ProviderRow], strategy: Any,
                      wallet_usd: float = 1_000.0) -> np.ndarray:
        """Add providers that bid with `strategy` (None: they bid only through `submit_bid`);
        each gets `wallet_usd` to fund bid deposits. Returns their ids."""
        self.reliability.check(rows)  # a clock too fast is refused before anything changes
        accounts = []
        for row in rows:
            account = self.ledger.open(f"provider:{row.name}")
            self.ledger.transfer(self.ledger.external, account, usd_to_micro(wallet_usd), "fund")
            accounts.append(account)
            row.automated = strategy is not None
        ids = self.pool.add(rows, accounts)
        index = len(self.strategies)
        self.strategies.append(strategy)
        self.views.append(MarketView(self, index, self.prices_seen))
        if callable(getattr(strategy, "observe", None)):
            self._observers.append(index)
        self._strategy_of = np.concatenate([self._strategy_of,
                                            np.full(len(ids), index, np.int32)])
        asks = getattr(strategy, "asks", None)
        static = np.asarray(asks(ids, self.views[index]), float) if asks is not None \
            else np.full(len(ids), np.nan)
        self._all_automated = self._all_automated and strategy is not None
        # Asks rounded to whole micro-USD per GPU-hour: a bid is then an exact integer. An ask
        # that is not a positive number falls back to asking the strategy per order.
        static_micro = np.round(np.nan_to_num(static, nan=-1.0) * MICRO_USD_PER_USD)
        static_micro[~(static_micro > 0)] = -1
        self._static_ask_micro = np.concatenate([self._static_ask_micro,
                                                 static_micro.astype(np.int64)])
        self._all_static = bool((self._static_ask_micro > 0).all())
        self._min_bid_micro = np.concatenate([self._min_bid_micro, np.zeros(len(ids), np.int64)])
        self._read_min_bids(ids)
        self._leases_ended = np.concatenate([self._leases_ended, np.zeros(len(ids))])
        self._leases_failed = np.concatenate([self._leases_failed, np.zeros(len(ids))])
        self._interruptible_held = np.concatenate(
            [self._interruptible_held, np.zeros((len(ids), len(CAPACITY)), np.int64)])
        self.matcher.providers_added()
        self.reliability.add(ids)
        return ids

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
        if not 0 < max_price_usd_per_gpu_hour < math.inf:
            raise MarketError("max_price_usd_per_gpu_hour must be a finite number > 0")
        if not 0 <= deposit_usd < math.inf:
            raise MarketError("deposit_usd must be a finite number >= 0")
        if job_value_usd is not None and not 0 <= job_value_usd < math.inf:
            raise MarketError("job_value_usd must be a finite number >= 0")
        if outside_usd is not None and not 0 <= outside_usd < math.inf:
            raise MarketError("outside_usd must be a finite number >= 0")
        if outside_cost_usd is not None and not 0 <= outside_cost_usd < math.inf:
            raise MarketError("outside_cost_usd must be a finite number >= 0")
        if not 0 < work_left <= 1:
            raise MarketError(f"work_left must be in (0, 1], got {work_left}")
        if interruptible and not self._interruptible:
            raise MarketError(f"interruptible: mechanism {self.mechanism.name!r} has no "
                              "interruptible orders; use mechanism 'interruptible'")
        shortest_s = SECONDS_PER_HOUR  # of the job's shortest run; an open-ended lease: an hour
        if work_s is not None:
            work_s = np.asarray(work_s, dtype=float)
            # All > 0 and one finite: the shortest run, positive and finite (NaN fails too).
            shortest_s = float(work_s.min()) if work_s.shape == (len(self.catalog),) \
                else math.nan
            if not 0 < shortest_s < math.inf:
                raise MarketError(f"work_s: expected {len(self.catalog)} durations > 0 "
                                  f"(seconds per catalog GPU model, inf where it never runs)")
        units = tuple(units)
        req, model_mask, smask, shape_key = self.matcher.shape(units)
        deposit = usd_to_micro(deposit_usd)
        account = self.tenant_accounts[tenant]
        if deposit < 0 or self.ledger.balance(account) < deposit:
            raise MarketError(f"deposit_usd: {deposit_usd} is more than the tenant's wallet "
                              f"({self.ledger.balance(account) / MICRO_USD_PER_USD:.2f} USD)")
        gpus = req.gpus
        max_price = usd_to_micro(max_price_usd_per_gpu_hour * gpus)
        # Whole-job figures (a re-post carries the same ones with less work left). Without a
        # stated value, the tenant's reserve is the value it reveals: its max price over the
        # shortest run of the whole job; without a stated outside option, the cheapest
        # acceptable model at its list price, which costs the hyperscaler its opportunity cost
        # (market/outside.py); a stated outside price with no stated cost has no known margin.
        if job_value_usd is None:
            job_value_usd = max_price_usd_per_gpu_hour * gpus * shortest_s / SECONDS_PER_HOUR \
                / (work_left if work_s is not None else 1.0)
        if outside_usd is None:
            outside_usd, default_cost = self._outside_usd(gpus, model_mask, work_s, work_left)
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
            order.priority = usd_to_micro(max_price_usd_per_gpu_hour)
        self.ledger.transfer(account, self.escrow, deposit, "escrow_deposit")
        order.escrow = deposit
        self.orders[order.id] = order
        # Who could serve it is read before anyone hears of it: the cheapest of them fixes
        # the job's best cost, which its welfare is measured against.
        eligible = self.matcher.eligible(order, self._headroom(order))
        order.best_cost_micro = self._best_cost_micro(order, eligible)
        self.emit(OrderOpened(self.env.now, order.id, tenant, order.job_id, job_kind, gpus,
                              req.gpu_models, max_price, attempt, interruptible))
        self._open_auction(order, eligible)
        return order.id

    def _outside_usd(self, gpus: int, model_mask: np.ndarray, work_s: np.ndarray | None,
                     work_left: float) -> tuple[float, float]:
        """The whole job at the outside option (an open-ended lease: one hour of it), USD:
        what its cheapest acceptable GPU model costs the tenant at list price, and the
        lowest cost to a hyperscaler of serving it on any acceptable model."""
        list_price = self.catalog.array("list_usd_per_gpu_hour")
        hours = np.ones(len(list_price)) if work_s is None \
            else work_s / work_left / SECONDS_PER_HOUR
        price = np.where(model_mask, list_price * hours * gpus, np.inf)
        cheapest = float(price.min())
        if not cheapest < math.inf:
            return 0.0, 0.0
        return cheapest, float((price * self._outside_fraction).min())

    def _standard_normals(self, count: int) -> np.ndarray:
        """`count` standard normal draws, taken from blocks drawn ahead."""
        if self._normal_at + count > self._normals.size:
            self._normals = self._normal_rng.standard_normal(max(65_536, count))
            self._normal_at = 0
        start = self._normal_at
        self._normal_at += count
        return self._normals[start:self._normal_at]

    def _open_auction(self, order: Order, ids: np.ndarray) -> None:
        """Price the bids of the eligible providers `ids` and schedule the auction's close."""
        pool = self.pool
        now = self.env.now
        if ids.size and not self._all_automated:
            ids = ids[pool.automated[ids]]
        if order.auto and self._is_batch:
            self._batch.append(order)  # no per-order bids: it waits for the next clearing
            return
        if ids.size:
            prices = self._price(order, ids)
            ok = prices <= order.max_price  # NaN (no bid) compares False
            ids = ids[ok]
            prices = prices[ok]
        if ids.size:
            arrivals = now + np.exp(pool.latency_log_median[ids] + pool.latency_sigma[ids]
                                    * self._standard_normals(ids.size))
            first = np.argsort(arrivals)[: self._max_bids]  # continuous times: no ties
            arrivals = arrivals[first]
            keep = first[arrivals <= now + self._window_s]
            if keep.size:
                self._place_bids(order, ids[keep], prices[keep].astype(np.int64),
                                 arrivals[: keep.size])
        if order.auto:
            if self.mechanism.sealed or not order.bid_arrivals.size:
                close_at = now + self._window_s
            else:
                close_at = float(order.bid_arrivals[0])
            self.env.timeout(close_at - now).callbacks.append(
                lambda _e, order=order: self._close_auction(order))
        else:
            self.env.timeout(self.rules.bid_timeout_s).callbacks.append(
                lambda _e, order=order: self._expire_bids(order, 0))

    def refresh_asks(self, providers: np.ndarray) -> None:
        """Read again the order-independent asks of `providers`, after their costs or their
        strategies' state changed."""
        providers = np.asarray(providers, dtype=np.int64)
        for index in np.unique(self._strategy_of[providers]).tolist():
            asks = getattr(self.strategies[index], "asks", None)
            if asks is None:
                continue
            members = providers[self._strategy_of[providers] == index]
            micro = np.round(np.asarray(asks(members, self.views[index]), float)
                             * MICRO_USD_PER_USD)
            micro[~(micro > 0)] = -1  # not a positive number: ask the strategy per order
            self._static_ask_micro[members] = micro.astype(np.int64)
        self._all_static = bool((self._static_ask_micro > 0).all())
        self._read_min_bids(providers)

    def _read_min_bids(self, providers: np.ndarray) -> None:
        """Each provider's floor for interruptible orders: its strategy's
        `min_bids(providers, view)` if it has one, else its marginal cost per GPU-hour (idle
        capacity that on-demand work can take back at any time earns more at any price
        above it)."""
        marginal = self.pool.cost_marginal_usd_per_gpu_hour
        for index in np.unique(self._strategy_of[providers]).tolist():
            members = providers[self._strategy_of[providers] == index]
            min_bids = getattr(self.strategies[index], "min_bids", None)
            usd = marginal[members] if min_bids is None else \
                np.asarray(min_bids(members, self.views[index]), float)
            micro = np.round(np.nan_to_num(usd, nan=0.0) * MICRO_USD_PER_USD)
            self._min_bid_micro[members] = np.maximum(micro, 1).astype(np.int64)

    def leases_ended(self, provider: int) -> int:
        """How many leases `provider` has ended so far (its public track record)."""
        return int(self._leases_ended[provider])

    def strategy_of(self, providers: np.ndarray) -> np.ndarray:
        """Index into `strategies` of each provider's strategy."""
        return self._strategy_of[providers]

    def _price(self, order: Order, ids: np.ndarray) -> np.ndarray:
        """Bids in whole micro-USD per hour for the whole order (NaN: no bid).

        Order-independent strategies come from one array of integer asks; the others are
        asked, one call per strategy, in USD per GPU-hour; their bids are rounded to whole
        micro-USD (so that a bid at exactly the max price is not lost to float noise).
        On an interruptible order, providers bid their floors (min bids)."""
        if order.interruptible:
            return self._min_bid_micro[ids] * order.gpus
        prices = self._static_ask_micro[ids] * order.gpus
        if self._all_static:
            return prices
        dynamic = prices < 0
        if dynamic.any():
            prices = prices.astype(float)
            strategy_of = self._strategy_of[ids]
            view = OrderView.of(order)
            for index in np.unique(strategy_of[dynamic]).tolist():
                members = dynamic & (strategy_of == index)
                asked = np.asarray(self.strategies[index].prices(
                    view, ids[members], self.views[index]), dtype=float)
                prices[members] = np.round(asked * (order.gpus * MICRO_USD_PER_USD))
            prices[~(prices > 0)] = np.nan  # a bid must be a positive price: else none
        return prices

    def _auction_context(self, order: Order, providers: np.ndarray) -> AuctionContext:
        """Hours of the job on each bidder's GPU, each bidder's reliability so far, and the
        tenant's budget for the order's work."""
        models = self.pool.model[providers]
        hours = (np.ones(providers.size) if order.work_s is None
                 else order.work_s[models] / SECONDS_PER_HOUR)
        # Laplace-smoothed share of leases that ended without a provider fault.
        ended = self._leases_ended[providers]
        reliability = (ended - self._leases_failed[providers] + 1) / (ended + 1)
        list_micro = (self.catalog.array("list_usd_per_gpu_hour")[models]
                      * order.gpus * MICRO_USD_PER_USD)
        # One max price per GPU-hour for every model the order accepts (as on Akash) means
        # the tenant's budget for the work is that price over its shortest run; it never pays
        # more than the work left is worth (the whole job's value, pro rata).
        shortest_h, value_micro = 1.0, float(order.job_value_micro)
        if order.work_s is not None:
            shortest_h = float(order.work_s[order.model_mask].min()) / SECONDS_PER_HOUR
            value_micro *= order.work_left
        budget_micro = min(order.max_price * shortest_h, value_micro)
        return AuctionContext(hours, reliability, list_micro, budget_micro=budget_micro,
                              pays_reserve=order.interruptible)

    def _tell_outcome(self, order: Order, winner: int, price: int) -> None:
        """Tell each observing strategy how the auction went for its bidders (`winner`: the
        winning provider, or -1; `price`: the lease rate, micro-USD per hour). Not for an
        interruptible order: its bids were floors, not the strategies' prices."""
        if not order.bid_ids or order.interruptible:
            return
        strategy_of = self._strategy_of[order.bid_providers]
        view = OrderView.of(order)
        per_gpu_hour = order.gpus * MICRO_USD_PER_USD
        clearing = price / per_gpu_hour if winner >= 0 else math.nan
        public = order.bid_prices / per_gpu_hour
        for index in self._observers:
            mine = strategy_of == index
            if mine.any():
                providers = order.bid_providers[mine]
                self.strategies[index].observe(Outcome(
                    view, providers, order.bid_prices[mine] / per_gpu_hour,
                    providers == winner, clearing, self.env.now, public))

    def serving_cost_micro(self, order: Order, providers: np.ndarray) -> np.ndarray:
        """What serving the whole job of `order` (all its work, not only what is left) costs
        each of `providers` at its avoidable cost of serving (`cost_marginal`), micro-USD
        (float); for an open-ended order, one hour of it."""
        pool = self.pool
        rate = pool.cost_marginal_usd_per_gpu_hour[providers] * order.gpus * MICRO_USD_PER_USD
        if order.work_s is None:
            return rate
        return rate * order.work_s[pool.model[providers]] / order.work_left / SECONDS_PER_HOUR

    def _best_cost_micro(self, order: Order, ids: np.ndarray) -> int:
        """The lowest cost of serving the whole job: the cheapest provider that could take
        it now (eligible, with the capacity free) or the outside option, micro-USD."""
        best = order.outside_cost_micro
        if ids.size:
            best = min(best, round(float(self.serving_cost_micro(order, ids).min())))
        return best

    def _place_bids(self, order: Order, providers: np.ndarray, prices: np.ndarray,
                    arrivals: np.ndarray) -> None:
        """Reserve capacity and lock a deposit for each bid; a provider that cannot pay the
        deposit does not bid."""
        if self._deposit:
            accounts = self.pool.account[providers].tolist()
            try:
                self.ledger.collect(accounts, self.deposits, self._deposit, "bid_deposit")
            except InsufficientFunds:  # rare: drop the bids of providers who cannot pay
                paid = self.ledger.can_pay(accounts, self._deposit)
                keep = np.array(paid, bool)
                providers, prices, arrivals = providers[keep], prices[keep], arrivals[keep]
                self.ledger.collect([a for a, ok in zip(accounts, paid, strict=True) if ok],
                                    self.deposits, self._deposit, "bid_deposit")
        if not providers.size:
            return
        self.pool.free[providers] -= order.need
        self.matcher.reserved(order, providers)
        first_id = self._next_bid
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
        if self._routes[BidsPlaced]:  # built only when someone listens: bids are many
            self.emit(BidsPlaced(self.env.now, order.id, tuple(bid_ids),
                                 tuple(providers.tolist()), tuple(prices.tolist()),
                                 tuple(arrivals.tolist())))

    def _release_bids(self, order: Order, which: np.ndarray) -> None:
        """Close the open bids at positions `which`: free their capacity, refund deposits."""
        which = which[order.bid_open[which]]
        if not which.size:
            return
        order.bid_open[which] = False
        providers = order.bid_providers[which]
        self.pool.free[providers] += order.need
        if self._deposit:
            self.ledger.distribute(self.deposits, self.pool.account[providers].tolist(),
                                   self._deposit, "bid_deposit_refund")
        if self._interruptible_on:  # capacity came back: paused leases may resume
            for provider in providers.tolist():
                if provider in self._interruptible_on:
                    self._reschedule(provider)

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
                    self._auction_context(order, order.bid_providers[valid]))
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
            if self._observers:
                self._tell_outcome(order, -1, 0)
            self._release_bids(order, np.arange(arrivals.size))
            self._end_order(order)
            self.emit(OrderExpired(now, order.id, order.tenant, order.job_id, arrivals.size))
            return
        self._lease(order, int(valid[winner]), price)

    def _expire_bids(self, order: Order, chain: int) -> None:
        """Hand-picked orders: providers drop bids held `bid_timeout_s` without a lease
        (not while the tenant holds the order: the chain stops, `release_order` restarts it)."""
        if order.state is not OrderState.OPEN or order.id in self._held \
                or self._expiry_chain.get(order.id, 0) != chain:
            return
        now = self.env.now
        stale = np.flatnonzero(order.bid_open
                               & (order.bid_arrivals <= now - self.rules.bid_timeout_s + 1e-9))
        self._release_bids(order, stale)
        waiting = order.bid_arrivals[order.bid_open]
        next_check = (float(waiting.min()) + self.rules.bid_timeout_s - now) if waiting.size \
            else self.rules.bid_timeout_s
        self.env.timeout(max(next_check, 0.0)).callbacks.append(
            lambda _e, order=order: self._expire_bids(order, chain))

    def hold_order(self, order_id: int) -> None:
        """The tenant of a hand-picked open order takes time to choose: its bids stay open
        (none expires after `bid_timeout_s`) until `release_order`. A live market releases
        a hold after a wall-clock limit, as a logged command, so a replay meets it at the same
        simulated time. Raises MarketError (nothing changed) for an order the market picks."""
        order = self._open_order(order_id)
        if order.auto:
            raise MarketError(f"order {order_id}: the market picks its winner; only a "
                              "hand-picked order (auto_select false) can be held")
        self._held.add(order_id)

    def release_order(self, order_id: int) -> bool:
        """End the hold on `order_id`: bids held longer than `bid_timeout_s` are dropped now,
        the others expire as usual. Returns False (nothing changed) if it was not held, or
        has been leased or closed meanwhile."""
        if order_id not in self._held:
            return False
        self._held.discard(order_id)
        order = self.orders.get(order_id)
        if order is None or order.state is not OrderState.OPEN:
            self._expiry_chain.pop(order_id, None)
            return False
        chain = self._expiry_chain[order_id] = self._expiry_chain.get(order_id, 0) + 1
        self._expire_bids(order, chain)
        return True

    def held(self, order_id: int) -> bool:
        """Whether the order's tenant holds it (its bids do not expire)."""
        return order_id in self._held

    def held_orders(self) -> list[int]:
        """The ids of the orders held now, in id order."""
        return sorted(self._held)

    def _end_order(self, order: Order) -> None:
        """Close an order for good: refund what is left in its escrow to the tenant."""
        order.state = OrderState.CLOSED
        self._held.discard(order.id)
        self._expiry_chain.pop(order.id, None)
        if order.escrow:
            self.ledger.transfer(self.escrow, self.tenant_accounts[order.tenant], order.escrow,
                                 "escrow_refund")
            order.escrow = 0
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
        price = usd_to_micro(price_usd_per_gpu_hour * order.gpus)
        if price <= 0:
            raise MarketError("price_usd_per_gpu_hour is below one micro-USD per hour")
        if price > order.max_price:
            raise MarketError(f"price_usd_per_gpu_hour: above the order's max price "
                              f"{order.max_price / order.gpus / MICRO_USD_PER_USD:.4f}")
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
        if self.ledger.balance(int(pool.account[provider])) < self._deposit:
            raise MarketError(f"provider {provider} cannot pay the bid deposit")
        bid_id = self._next_bid
        self._place_bids(order, np.array([provider]), np.array([price], np.int64),
                         np.array([now]))
        # The cap keeps the first `order_max_bids` bids to arrive: this one arrived before
        # any still on their way, so the last of those drops out.
        waiting = order.bid_open.nonzero()[0]
        if waiting.size > self._max_bids:
            self._release_bids(order, waiting[self._max_bids:])
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
        return self._lease(order, position, int(order.bid_prices[position])).id

    def bids(self, order_id: int) -> list[dict[str, Any]]:
        """The bids on an open or leased order, in arrival order: id, provider, price per
        GPU-hour (USD), arrival time (simulated seconds; a future one is still on its way)
        and Akash state (open, active, lost, closed)."""
        order = self.orders.get(order_id)
        if order is None:
            raise MarketError(f"order {order_id} is not open or leased")
        winning = order.lease.bid_id if order.lease is not None else None
        per_gpu_hour = order.gpus * MICRO_USD_PER_USD
        return [{"bid_id": bid_id, "provider": int(provider),
                 "price_usd_per_gpu_hour": int(price) / per_gpu_hour,
                 "arrival_s": float(arrival), "state": state.value}
                for bid_id, provider, price, arrival, state in zip(
                    order.bid_ids, order.bid_providers, order.bid_prices, order.bid_arrivals,
                    order.bid_states(winning), strict=True)]

    def cancel_order(self, order_id: int) -> None:
        """The tenant withdraws an open order: bids are closed, escrow refunded."""
        order = self._open_order(order_id)
        self._release_bids(order, np.arange(order.bid_arrivals.size))
        self._end_order(order)
        self.emit(OrderCancelled(self.env.now, order.id, order.tenant))

    def _open_order(self, order_id: int) -> Order:
        order = self.orders.get(order_id)
        if order is None or order.state is not OrderState.OPEN:
            raise MarketError(f"order {order_id} is not open")
        return order

    # ------------------------------------------------------------------ leases

    def _lease(self, order: Order, position: int, price: int) -> Lease:
        now = self.env.now
        pool = self.pool
        provider = int(order.bid_providers[position])
        order.bid_open[position] = False  # the winning bid's capacity becomes the lease's
        order.bid_lost = order.bid_open.copy()
        self._release_bids(order, order.bid_lost.nonzero()[0])
        if self._observers:
            self._tell_outcome(order, provider, price)
        if order.interruptible:
            price = order.max_price  # as on Vast, an interruptible lease pays the tenant's bid
        lease = Lease(self._next_lease, order, provider, order.bid_ids[position],
                      int(pool.model[provider]), price, now, self._deposit)
        self._next_lease += 1
        order.state = OrderState.ACTIVE
        if self._held:  # a held order got its lease: the hold is over
            self._held.discard(order.id)
            self._expiry_chain.pop(order.id, None)
        order.lease = lease
        self.leases[lease.id] = lease
        self._plan_end(lease)
        self.emit(LeaseCreated(now, lease.id, order.id, lease.bid_id, order.tenant, provider,
                               order.job_id, self.catalog.ids[lease.model], lease.gpus, price,
                               int(order.bid_arrivals.size), now - order.created_s,
                               order.interruptible))
        if order.interruptible:
            self._interruptible_on.setdefault(provider, []).append(lease)
            self._interruptible_held[provider] += order.need
            self._interruptible_running += 1
        if provider in self._interruptible_on:  # it may take what lower leases hold
            self._reschedule(provider)
        return lease

    def _plan_end(self, lease: Lease, resumed: bool = False) -> None:
        """Schedule the one event that ends this lease, whichever cause comes first (when it
        starts, and again when it resumes after a pause)."""
        now = self.env.now
        order = lease.order
        pool = self.pool
        end_s, reason = math.inf, CloseReason.OWNER
        if order.work_s is not None:
            if not resumed:
                lease.planned_work_s = float(order.work_s[lease.model])
            end_s = now + lease.planned_work_s - lease.worked_s
        # Each later cause replaces the earlier one only if strictly sooner.
        failure = float(pool.next_failure_s[lease.provider])
        if failure < end_s:
            detect = self._detect_mean_s + self._detect_sd_s * float(
                self._standard_normals(1)[0])
            if failure + max(detect, 0.0) < end_s:
                end_s, reason = failure + max(detect, 0.0), CloseReason.UNSTABLE
        leave = float(pool.next_leave_s[lease.provider])
        if leave < end_s:
            end_s, reason = leave, CloseReason.DECOMMISSION
        runout = now + order.escrow * SECONDS_PER_HOUR / lease.price
        if runout < end_s:
            end_s, reason = runout, CloseReason.INSUFFICIENT_FUNDS
        if not resumed and self._rng.random() < self.rules.manifest_failure_prob \
                and now + self.rules.manifest_timeout_s < end_s:
            end_s, reason = now + self.rules.manifest_timeout_s, CloseReason.MANIFEST_TIMEOUT
        lease.planned_end_s, lease.planned_reason = end_s, reason
        if end_s < math.inf:
            self.env.timeout(end_s - now).callbacks.append(
                lambda _e, lease=lease, plan=lease.plan: self._end_planned(lease, plan))

    def _end_planned(self, lease: Lease, plan: int) -> None:
        # Not if the tenant closed it earlier, or a pause made the plan void.
        if lease.state is LeaseState.ACTIVE and lease.plan == plan:
            self._close_lease(lease, lease.planned_reason,
                              finished=lease.planned_reason is CloseReason.OWNER)

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

    def _settle(self, lease: Lease) -> None:
        """Pay the provider what the lease owes now, from its order's escrow, less the fee."""
        order = lease.order
        owed = owed_micro(lease.price, lease.ran_s(self.env.now)) - lease.paid
        amount = min(owed, order.escrow)
        if amount <= 0:
            return
        fee = amount * self._take_ppm // 1_000_000
        account = int(self.pool.account[lease.provider])
        self.ledger.transfer(self.escrow, self.platform, fee, "take_rate")
        self.ledger.transfer(self.escrow, account, amount - fee, "lease_payout")
        order.escrow -= amount
        lease.paid += amount
        self.emit(PaymentSettled(self.env.now, lease.id, lease.provider, amount, fee))

    def _close_lease(self, lease: Lease, reason: CloseReason, reopen: bool = False,
                     finished: bool = False) -> int | None:
        now = self.env.now
        order = lease.order
        self._settle(lease)
        lease.state = (LeaseState.INSUFFICIENT_FUNDS if reason is CloseReason.INSUFFICIENT_FUNDS
                       else LeaseState.CLOSED)
        del self.leases[lease.id]
        order.lease = None  # break the order <-> lease cycle: refcounting frees both
        pool = self.pool
        provider = lease.provider
        if lease.running:
            pool.free[provider] += order.need
            pool.busy_gpu_s[provider] += lease.gpus * (now - lease.run_start_s)
            if lease.interruptible:
                self._interruptible_held[provider] -= order.need
                self._interruptible_running -= 1
        self._leases_ended[lease.provider] += 1
        if reason in PROVIDER_FAULTS:
            self._leases_failed[lease.provider] += 1
        if lease.deposit:
            self.ledger.transfer(self.deposits, int(pool.account[lease.provider]), lease.deposit,
                                 "bid_deposit_refund")
        # An open-ended lease (no work estimate) has done none of "the rest": it is all left.
        done = 0.0 if lease.planned_work_s == math.inf else \
            min(lease.ran_s(now) / lease.planned_work_s, 1.0)
        work_left = order.work_left * (1.0 - done)
        if finished:
            work_left = 0.0
        escrow_left = order.escrow
        self._end_order(order)  # refunds the escrow; a re-opened group deposits it again
        self.emit(LeaseClosed(now, lease.id, order.id, order.tenant, lease.provider,
                              order.job_id, reason.value, lease.paid, work_left))
        if lease.interruptible:
            held = self._interruptible_on[provider]
            held.remove(lease)
            if not held:
                del self._interruptible_on[provider]
        if provider in self._interruptible_on:  # capacity came back: paused leases may resume
            self._reschedule(provider)
        if not (reopen and work_left > 0):
            return None
        # Akash keeps the group open after an owner close: re-auction the rest of the work.
        remaining = None if order.work_s is None else order.work_s * (1.0 - done)
        return self.post_order(
            order.tenant, order.units, order.max_price / order.gpus / MICRO_USD_PER_USD,
            deposit_usd=escrow_left / MICRO_USD_PER_USD,
            job_value_usd=order.job_value_micro / MICRO_USD_PER_USD,
            outside_usd=order.outside_micro / MICRO_USD_PER_USD,
            outside_cost_usd=order.outside_cost_micro / MICRO_USD_PER_USD,
            job_id=order.job_id, job_kind=order.job_kind, work_s=remaining, work_left=work_left,
            attempt=order.attempt + 1, auto_select=order.auto, audited_only=order.audited_only,
            tag=order.tag)

    # ------------------------------------------------------------------ interruptible leases

    def _headroom(self, order: Order) -> np.ndarray | None:
        """What running interruptible leases hold that `order` may take, per provider and
        resource: all of it for an on-demand order, what lower bids hold for an interruptible
        one; None when no interruptible lease runs."""
        if not self._interruptible_running:
            return None
        if not order.interruptible:
            return self._interruptible_held
        headroom = np.zeros_like(self._interruptible_held)
        for provider, leases in self._interruptible_on.items():
            for lease in leases:
                if lease.running and lease.priority < order.priority:
                    headroom[provider] += lease.order.need
        return headroom

    def _reschedule(self, provider: int) -> None:
        """Run `provider`'s interruptible leases by rank in what on-demand leases and open
        bids leave (`market.clearing.interruptible_schedule`, backfilling): pause the ones
        that no longer fit, resume the paused ones that fit again. Nothing resumes while the
        provider is down."""
        from market.clearing import interruptible_schedule

        leases = self._interruptible_on.get(provider)
        if not leases or not self.pool.up[provider]:
            return
        room = np.maximum(self.pool.free[provider] + self._interruptible_held[provider], 0)
        running = interruptible_schedule(
            np.array([lease.priority for lease in leases], np.int64),
            np.zeros(len(leases), bool), room,
            np.array([lease.order.need for lease in leases]), backfill=True)
        # Pauses first: what they give back is what the resumed leases take.
        for lease, runs in zip(list(leases), running.tolist(), strict=True):
            if lease.running and not runs:
                self._pause(lease)
        for lease, runs in zip(list(leases), running.tolist(), strict=True):
            if runs and not lease.running:
                self._resume(lease)

    def _pause(self, lease: Lease) -> None:
        now = self.env.now
        self._settle(lease)  # paid for what ran; nothing accrues while paused
        provider, need = lease.provider, lease.order.need
        self.pool.busy_gpu_s[provider] += lease.gpus * (now - lease.run_start_s)
        lease.worked_s += now - lease.run_start_s
        lease.running = False
        lease.paused_since_s = now
        lease.pauses += 1
        lease.plan += 1  # the planned end no longer holds
        self.pool.free[provider] += need
        self._interruptible_held[provider] -= need
        self._interruptible_running -= 1
        order = lease.order
        self.emit(LeasePaused(now, lease.id, order.id, order.tenant, provider, order.job_id))

    def _resume(self, lease: Lease) -> None:
        now = self.env.now
        provider, need = lease.provider, lease.order.need
        paused_s = now - lease.paused_since_s
        lease.paused_s += paused_s
        lease.paused_since_s = math.nan
        lease.running = True
        lease.run_start_s = now
        self.pool.free[provider] -= need
        self._interruptible_held[provider] += need
        self._interruptible_running += 1
        self._plan_end(lease, resumed=True)
        order = lease.order
        self.emit(LeaseResumed(now, lease.id, order.id, order.tenant, provider, order.job_id,
                               paused_s))

    def _recovered(self, event: ProviderRecovered) -> None:
        self._reschedule(event.provider)

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

    def _batch_clearings(self):
        """Every `interval_s`, match the orders opened since the last clearing at once."""
        from market.clearing import batch_clear

        while True:
            yield self.env.timeout(self.mechanism.interval_s)
            orders = [o for o in self._batch if o.state is OrderState.OPEN]
            self._batch = []
            if not orders:
                continue
            # One standing ask per provider: its price for the first order it can serve.
            ask: dict[int, int] = {}
            eligible_of = []
            for order in orders:
                ids = self.matcher.eligible(order)
                if not self._all_automated:
                    ids = ids[self.pool.automated[ids]]
                prices = self._price(order, ids) if ids.size else np.zeros(0)
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
                    context = self._auction_context(order, offered)
                    job_cost = asks * order.gpus * context.job_hours
                    eligible[i] &= job_cost <= context.budget_micro
                winner, price = batch_clear(
                    np.array([o.gpus for o in orders]),
                    np.array([o.max_price // o.gpus for o in orders]),
                    self.pool.free[providers, 0], np.array([ask[p] for p in providers]),
                    self.mechanism.pricing, eligible)
            else:
                winner = np.full(len(orders), -1)
                price = np.zeros(len(orders), np.int64)
            for order, j, per_gpu in zip(orders, winner.tolist(), price.tolist(), strict=True):
                provider = providers[j] if j >= 0 else -1
                if provider >= 0 and (self.pool.free[provider] >= order.need).all():
                    total = int(per_gpu) * order.gpus
                    bid_id = self._next_bid
                    self._place_bids(order, np.array([provider]), np.array([total], np.int64),
                                     np.array([self.env.now]))
                    if bid_id in order.bid_ids:  # the deposit was paid: the trade goes through
                        self._lease(order, order.bid_ids.index(bid_id), total)
                        continue
                self._release_bids(order, np.arange(order.bid_arrivals.size))
                self._end_order(order)
                if self._observers:
                    self._tell_outcome(order, -1, 0)
                self.emit(OrderExpired(self.env.now, order.id, order.tenant, order.job_id,
                                       len(order.bid_ids)))

    def _check_periods(self) -> None:
        """Refuse a periodic process that would tick more than MAX_PERIODIC_TICKS times in the
        horizon: each tick is an event, so a tiny interval would spin in place of the run."""
        periods = [("market.withdraw_interval_s", self.rules.withdraw_interval_s),
                   ("market.price_index_interval_s", self.rules.price_index_interval_s)]
        if getattr(self.mechanism, "batch", False):
            periods.append(("market.mechanism_params.interval_s",
                            float(getattr(self.mechanism, "interval_s", 0.0))))
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
                self._settle(lease)

    def _ticks(self):
        interval = self.rules.price_index_interval_s
        while True:
            yield self.env.timeout(interval)
            self.emit(Tick(self.env.now))

    def run(self, until: float | None = None,
            progress: Callable[[float, float], None] | None = None) -> Any:
        """Advance to `until` simulated seconds (default: the scenario's end) and return the
        result so far; at the scenario's end, active leases are settled once more.
        `progress(now_s, horizon_s)` is called on every tick."""
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
        return self.result()

    def finish(self) -> None:
        """End the run here (at the scenario's end, or earlier when a live market stops):
        settle active leases once more and close the result files. Idempotent."""
        if self._finished:
            return
        self._finished = True
        for lease in list(self.leases.values()):
            self._settle(lease)
        if self.recorder is not None:
            self.recorder.close()

    @property
    def finished(self) -> bool:
        """Whether `finish` ran: the run is over and takes no more commands."""
        return self._finished

    def result(self) -> Any:
        from market.result import RunResult
        return RunResult(self)

    def money(self) -> dict[str, Any]:
        """The ledger's audit: total money, whether it is unchanged, what escrow holds."""
        ledger = self.ledger
        escrow_expected = sum(order.escrow for order in self.orders.values())
        deposits_expected = self._deposit * (
            sum(int(order.bid_open.sum()) for order in self.orders.values()) + len(self.leases))
        conserved = (ledger.total() == 0 and not ledger.overdrawn()
                     and ledger.balance(self.escrow) == escrow_expected
                     and ledger.balance(self.deposits) == deposits_expected)
        return {
            "money_conserved": conserved,
            "money_total_micro": ledger.total(),
            "money_in_micro": -ledger.balance(ledger.external),
            "escrow_held_micro": ledger.balance(self.escrow),
            "deposits_held_micro": ledger.balance(self.deposits),
            "flows_micro": dict(sorted(ledger.flows.items())),
        }


__all__ = ["Market", "MarketError"]

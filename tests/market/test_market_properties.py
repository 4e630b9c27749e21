"""Properties every run must keep, over small random markets (hypothesis).

Each example is a populated default-scenario market shrunk to a few providers and a short
horizon, with random rules (take rate, bidding window, bid cap, mechanism), failure and churn
rates, and seed. A checker subscribes before the agents do, so it sees each event before any
agent reacts to it, and audits the market after every event.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.markups import CostPlus
from agents.populate import populate
from market import Market, MarketError, load_scenario
from market.core.nodes import place_first_fit, take
from market.core.pool import ProviderRow
from market.core.resources import gpu_units
from market.events import (
    BidsPlaced,
    Event,
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderOpened,
    PaymentSettled,
)
from market.units import owed_micro

CLOSE_REASONS = {"owner", "unstable", "insufficient_funds", "manifest_timeout", "decommission"}
MECHANISMS = [("tenant_pick", "cheapest"), ("tenant_pick", "first"),
              ("first_price", "cheapest"), ("second_price", "cheapest"),
              ("interruptible", "cheapest"), ("interruptible", "first")]


@st.composite
def small_markets(draw) -> list[str]:
    """Scenario overrides for a small market that runs in a few tens of milliseconds."""
    mechanism, selection = draw(st.sampled_from(MECHANISMS))
    rate = st.floats(0.0, 12.0, allow_nan=False)
    return [
        f"duration_days={draw(st.floats(0.2, 1.0)):.3f}",
        f"market.mechanism={mechanism}",
        f"market.selection={selection}",
        f"market.take_rate={draw(st.floats(0.0, 0.5)):.4f}",
        f"market.bidding_window_s={draw(st.sampled_from([5, 30, 180, 600]))}",
        f"market.bid_timeout_s={draw(st.sampled_from([60, 300]))}",
        f"market.order_max_bids={draw(st.integers(1, 6))}",
        f"market.bid_deposit_usd={draw(st.sampled_from([0, 0.5, 5]))}",
        f"market.manifest_failure_prob={draw(st.sampled_from([0, 0.05]))}",
        f"market.withdraw_interval_s={draw(st.sampled_from([3600, 86400]))}",
        f"tenants.count={draw(st.integers(1, 6))}",
        f"tenants.arrivals_per_hour={draw(st.integers(2, 20))}",
        f"tenants.wallet_usd={draw(st.sampled_from([50, 5000, 1000000]))}",
        f"tenants.max_reposts={draw(st.integers(0, 3))}",
        f"tenants.max_failures={draw(st.integers(1, 3))}",
        f"tenants.deposit_factor={draw(st.sampled_from([0.3, 0.7, 1.2]))}",
        f"tenants.duration_error_sigma={draw(st.sampled_from([0.2, 1.0]))}",
        f"tenants.interruptible.share={draw(st.sampled_from([0.0, 0.5, 1.0]))}",
        f"tenants.interruptible.bid_fraction={draw(st.sampled_from(['[0.3,0.6]', '[1,1]']))}",
        f"tenants.interruptible.patience_s={draw(st.sampled_from([600, 3600, 86400]))}",
        f"providers.0.count={draw(st.integers(0, 4))}",
        f"providers.1.count={draw(st.integers(0, 12))}",
        f"providers.2.count={draw(st.integers(0, 1))}",
        f"providers.0.failure_rate_per_day={draw(rate):.3f}",
        f"providers.1.failure_rate_per_day={draw(rate):.3f}",
        f"providers.2.failure_rate_per_day={draw(rate):.3f}",
        f"providers.1.churn_per_day={draw(st.floats(0.0, 6.0)):.3f}",
        "providers.0.repair_hours=[0.05, 1.0]",
        "providers.1.repair_hours=[0.05, 2.0]",
        "providers.1.offline_days=[0.01, 0.2]",
    ]


class Audit:
    """Subscribes to a market and checks its invariants after every event."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.events: list[Event] = []
        self.max_price: dict[int, int] = {}          # order id -> max price, micro-USD/hour
        self.bids: dict[int, tuple[int, int]] = {}   # bid id -> (order id, price)
        self.created: dict[int, LeaseCreated] = {}
        self.closed: dict[int, LeaseClosed] = {}
        self.paid: dict[int, int] = {}               # lease id -> settled, micro-USD
        self.interruptible: set[int] = set()         # interruptible order ids
        # lease id -> [seconds run before the current run, current run start or None]
        self.runs: dict[int, list] = {}
        market.subscribe(self.on_event)

    def ran_s(self, lease_id: int, now_s: float) -> float:
        """Seconds the lease has run, summed as the engine sums them."""
        worked, start = self.runs[lease_id]
        return worked + (now_s - start if start is not None else 0.0)

    def on_event(self, event: Event) -> None:
        market = self.market
        if self.events:
            assert event.time_s >= self.events[-1].time_s
        self.events.append(event)
        free, capacity = market.pool.free, market.pool.capacity
        # A bid may reserve what an interruptible lease holds until its own lease starts:
        # free counts it as taken already, so only free + what those leases hold is >= 0.
        held = np.zeros_like(free)
        for lease in market.leases.values():
            if lease.interruptible and lease.running:
                held[lease.provider] += lease.order.need
        assert (free + held >= 0).all(), f"over-allocated after {event}"
        assert (free <= capacity).all(), f"freed more than held after {event}"
        if isinstance(event, OrderOpened):
            assert event.order_id not in self.max_price
            self.max_price[event.order_id] = event.max_price_micro_per_hour
            if event.interruptible:
                assert market.scenario.market.mechanism == "interruptible"
                self.interruptible.add(event.order_id)
        elif isinstance(event, BidsPlaced):
            cap = self.max_price[event.order_id]
            assert all(0 < price <= cap for price in event.prices_micro_per_hour)
            for bid, price in zip(event.bid_ids, event.prices_micro_per_hour, strict=True):
                self.bids[bid] = (event.order_id, price)
        elif isinstance(event, LeaseCreated):
            assert event.lease_id not in self.created
            cap = self.max_price[event.order_id]
            order, bid = self.bids[event.bid_id]
            assert order == event.order_id
            assert bid <= event.price_micro_per_hour <= cap
            assert event.interruptible == (event.order_id in self.interruptible)
            if event.interruptible:
                assert event.price_micro_per_hour == cap  # pays the tenant's bid
            elif market.scenario.market.mechanism != "second_price":
                assert event.price_micro_per_hour == bid  # pay-as-bid
            self.created[event.lease_id] = event
            self.runs[event.lease_id] = [0.0, event.time_s]
        elif isinstance(event, LeasePaused):
            assert self.created[event.lease_id].interruptible  # on-demand is never paused
            assert event.lease_id not in self.closed
            run = self.runs[event.lease_id]
            assert run[1] is not None, "paused twice"
            run[0] += event.time_s - run[1]
            run[1] = None
        elif isinstance(event, LeaseResumed):
            assert event.lease_id not in self.closed
            run = self.runs[event.lease_id]
            assert run[1] is None, "resumed while running"
            run[1] = event.time_s
        elif isinstance(event, PaymentSettled):
            assert event.lease_id in self.created and event.lease_id not in self.closed
            assert 0 <= event.fee_micro <= event.amount_micro
            self.paid[event.lease_id] = self.paid.get(event.lease_id, 0) + event.amount_micro
        elif isinstance(event, LeaseClosed):
            assert event.lease_id in self.created and event.lease_id not in self.closed
            assert event.reason in CLOSE_REASONS
            assert 0.0 <= event.work_left <= 1.0
            start = self.created[event.lease_id]
            # Paid for the time it ran: paused time is free.
            owed = owed_micro(start.price_micro_per_hour, self.ran_s(event.lease_id, event.time_s))
            assert event.paid_micro == self.paid.get(event.lease_id, 0)
            assert event.paid_micro <= owed  # never more than the time served
            if event.reason != "insufficient_funds":
                assert event.paid_micro == owed
            self.closed[event.lease_id] = event


def ranking_holds(market: Market) -> None:
    """At rest: running leases fit their providers, and on every provider that is up, no
    paused lease would fit beside the on-demand leases, open bids and the running
    interruptible leases ranked above it: in total, or, on a provider with machines, on its
    machines (first fit, as the scheduler places it)."""
    pool = market.pool
    nodes = pool.nodes
    used = np.zeros_like(pool.capacity)
    taken = np.zeros_like(pool.capacity)        # on-demand leases and open bids
    spot: dict[int, list] = defaultdict(list)
    for lease in market.leases.values():
        if lease.running:
            used[lease.provider] += lease.order.need
        if lease.interruptible:
            spot[lease.provider].append(lease)
        else:
            taken[lease.provider] += lease.order.need
    for order in market.orders.values():
        if order.lease is None:
            np.add.at(taken, order.bid_providers[order.bid_open], order.need)
    assert (used <= pool.capacity).all()
    for provider, leases in spot.items():
        if not pool.up[provider]:
            continue
        for paused in [lease for lease in leases if not lease.running]:
            rank = (paused.priority, -paused.id)
            above = sum((lease.order.need for lease in leases if lease.running and
                         (lease.priority, -lease.id) > rank),
                        np.zeros(pool.capacity.shape[1], np.int64))
            room = pool.capacity[provider] - taken[provider] - above
            if not nodes.count[provider]:
                assert not (paused.order.need <= room).all(), f"lease {paused.id} could run"
                continue
            # Free on its machines, and what the leases ranked below it hold there.
            room = nodes.free[nodes.of(provider)].copy()
            for lease in leases:
                if lease.running and (lease.priority, -lease.id) < rank:
                    rows, shape = nodes.placed[(lease.order.id, provider)]
                    take(room, rows - nodes.first[provider], shape, 1)
            assert place_first_fit(room, nodes.shape(paused.order)) is None, \
                f"lease {paused.id} could run on its provider's machines"


def audited_run(overrides: list[str], seed: int) -> tuple[Market, Audit]:
    market = Market(load_scenario("default", overrides), seed=seed, record=False,
                    populate=False)
    audit = Audit(market)
    populate(market)
    return market, audit


def check_books(market: Market) -> None:
    money = market.money()
    assert money["money_conserved"], money
    assert market.ledger.total() == 0
    assert not market.ledger.overdrawn()
    # Welfare adds up to the micro-USD, its fees and payments match the ledger, and no cause
    # of loss is negative beyond a micro-USD of rounding per lease.
    welfare = market.welfare.summary()
    assert welfare["identity_holds"], welfare
    leases = market._next_lease + 1
    for cause, usd in welfare["deadweight_loss_by_cause_usd"].items():
        assert usd >= -leases / 1e6, (cause, usd)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=small_markets(), seed=st.integers(0, 2**32 - 1))
def test_small_markets_keep_their_invariants(overrides, seed):
    market, audit = audited_run(overrides, seed)
    market.run(until=market.horizon_s / 2)
    check_books(market)  # in the middle of a run too, with leases and bids open
    result = market.run()
    check_books(market)
    assert result.summary["money_conserved"]
    # every lease ever created is closed with a reason or still active, never both
    active = set(market.leases)
    assert set(audit.closed) | active == set(audit.created)
    assert not set(audit.closed) & active
    assert all(lease.order.id in market.orders for lease in market.leases.values())
    summary = result.summary
    assert summary["leases_created"] == len(audit.created)
    assert sum(summary["lease_close_reasons"].values()) == len(audit.closed)
    assert set(summary["lease_close_reasons"]) <= CLOSE_REASONS
    # whatever is not leased is free: no capacity leaks once bids are over
    held = np.zeros_like(market.pool.free)
    for lease in market.leases.values():
        if lease.running:  # a paused lease gave its resources back
            held[lease.provider] += lease.order.need
    for order in market.orders.values():
        if order.lease is None:
            np.add.at(held, order.bid_providers[order.bid_open], order.need)
    assert (market.pool.free + held == market.pool.capacity).all()


@st.composite
def entry_and_exit(draw) -> list[str]:
    """An [entry_exit] table whose reviews fall inside a small market's horizon."""
    review = draw(st.sampled_from([0.02, 0.05]))
    return [f"entry_exit={{review_days={review}, "
            f"window_days={review * draw(st.integers(1, 3)):.2f}, "
            f"hurdle={draw(st.sampled_from([0, 0.5, 5]))}, "
            f"investment_lag_days={draw(st.sampled_from([0, 0.02, 0.1]))}, "
            f"max_entrants_per_review={draw(st.integers(0, 3))}, "
            f"max_entrants={draw(st.integers(0, 6))}}}"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=small_markets(), entry_exit=entry_and_exit(), seed=st.integers(0, 2**32 - 1))
def test_small_markets_with_entry_and_exit_keep_their_invariants(overrides, entry_exit, seed):
    market, audit = audited_run([*overrides, *entry_exit], seed)
    leased_after_retiring = []

    def on_lease(event: LeaseCreated) -> None:
        if market.reliability.retired(event.provider):
            leased_after_retiring.append(event)

    market.subscribe(on_lease, kinds=(LeaseCreated,))
    market.run(until=market.horizon_s / 2)
    check_books(market)
    result = market.run()
    check_books(market)
    assert result.summary["money_conserved"]
    assert not leased_after_retiring  # a retired provider wins nothing more
    assert set(audit.closed) | set(market.leases) == set(audit.created)
    gone = ~np.isinf(market.exited_s)
    assert not any(gone[lease.provider] for lease in market.leases.values())
    assert not market.pool.up[gone].any()
    figures = result.summary["entry_exit"]
    assert figures["exited"] == int(gone.sum())
    assert figures["entered"] == int((market.arrived_s > 0).sum())
    assert figures["providers_on_market"] == market.pool.n - figures["exited"]
    accounts = market.metrics.provider_accounts()
    span_h = (np.minimum(market.exited_s, market.now) - market.arrived_s) / 3600
    assert (accounts["on_market_hours"] <= span_h + 1e-9).all()


@pytest.mark.parametrize("seed", [1, 2])
def test_every_step_of_a_busy_market_keeps_the_ranking(seed):
    market = Market(load_scenario("interruptible", [
        "duration_days=0.5", "tenants.arrivals_per_hour=60", "providers.0.count=6",
        "providers.1.count=10", "providers.2.count=1"]), seed=seed, record=False)
    env = market.env
    while env.peek() <= market.horizon_s:
        env.step()
        ranking_holds(market)
    summary = market.run().summary
    assert summary["interruptible"]["pauses"] > 0 and summary["interruptible"]["resumes"] > 0
    assert summary["money_conserved"]


@settings(max_examples=15, deadline=None)
@given(overrides=small_markets(), seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_bytes(overrides, seed):
    first = Market(load_scenario("default", overrides), seed=seed, record=False).run()
    again = Market(load_scenario("default", overrides), seed=seed, record=False).run()
    assert first.to_json() == again.to_json()


# ----------------------------------------------------------------------------- outside actors

GIB = 2**30
MODELS = ("h100", "a100-80gb", "rtx4090")


def _units(gpus: int, model: str):
    return gpu_units(gpus, (model,), cpu_millicores_per_gpu=2_000, memory_bytes_per_gpu=8 * GIB,
                     storage_bytes_per_gpu=10 * GIB)


def _row(market: Market, index: int, model: str, gpus: int, cost: float,
         failure_per_day: float) -> ProviderRow:
    return ProviderRow(
        name=f"p{index}", population=0, model=market.catalog.index(model), gpus=gpus,
        cpu_millicores=2_000 * gpus, memory_bytes=8 * GIB * gpus, storage_bytes=10 * GIB * gpus,
        ip_leases=0, storage_classes=("ephemeral", "beta2"), audited=True,
        cost_full_usd_per_gpu_hour=cost, cost_marginal_usd_per_gpu_hour=cost,
        cost_idle_usd_per_gpu_hour=0.0, cost_fixed_usd_per_gpu_hour=0.0,
        cost_basis_usd_per_gpu_hour=cost, latency_log_median=float(np.log(5.0)),
        latency_sigma=1.0, failure_rate_per_s=failure_per_day / 86_400,
        repair_s=(600.0, 7_200.0), churn_rate_per_s=failure_per_day / 4 / 86_400,
        offline_s=(600.0, 3_600.0))


providers_st = st.lists(st.tuples(st.sampled_from(MODELS), st.sampled_from([2, 4, 8, 8]),
                                  st.floats(0.1, 3.0), st.sampled_from([0.0, 2.0, 20.0]),
                                  st.booleans()), min_size=2, max_size=8)
actions_st = st.lists(st.tuples(
    st.sampled_from([0.0, 0.0, 2.0, 10.0, 45.0, 400.0, 5_000.0]),  # wait before acting, s
    st.sampled_from(["post", "post", "bid", "bid", "bid", "accept", "cancel", "close"]),
    st.integers(0, 50), st.integers(0, 50),                    # picks
    st.floats(0.05, 4.0),                                      # a price, USD per GPU-hour
    st.sampled_from([1, 1, 2, 4, 9]),                           # GPUs
    st.sampled_from([None, 0.5, 3.0, 30.0]),                    # job hours (None: open-ended)
    st.booleans(),                                             # auto select
    st.booleans(),                                             # interruptible, where offered
), min_size=4, max_size=40)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(providers=providers_st, actions=actions_st, seed=st.integers(0, 2**32 - 1),
       mechanism=st.sampled_from(MECHANISMS))
def test_outside_actors_cannot_break_the_books(providers, actions, seed, mechanism):
    """Random calls of the public methods, valid or not: rejected calls change nothing, and
    every invariant holds after every event and call."""
    market = Market(load_scenario("default", [
        "duration_days=1", f"market.mechanism={mechanism[0]}",
        f"market.selection={mechanism[1]}", "market.bidding_window_s=60",
        "market.order_max_bids=3", "market.manifest_failure_prob=0.05"]),
        seed=seed, populate=False, record=False)
    audit = Audit(market)
    tenants = [market.add_tenant(f"t{i}", wallet) for i, wallet in enumerate((30.0, 5_000.0))]
    for index, (model, gpus, cost, failures, automated) in enumerate(providers):
        market.add_providers([_row(market, index, model, gpus, cost, failures)],
                             CostPlus(markup=0.2) if automated else None)
    offered = mechanism[0] == "interruptible"
    for wait, kind, pick, other, price, gpus, hours, auto, spot in actions:
        market.run(until=market.now + wait)
        if market.now >= market.horizon_s:
            break
        before = [market.ledger.balance(a) for a in range(len(market.ledger))]
        free = market.pool.free.copy()
        count = len(audit.events)
        open_orders = sorted(o for o, order in market.orders.items() if order.lease is None)
        try:
            if kind == "post":
                model = MODELS[other % len(MODELS)]
                work_s = None
                if hours is not None:
                    work_s = np.full(len(market.catalog), np.inf)
                    work_s[market.catalog.index(model)] = hours * 3_600
                market.post_order(tenants[pick % 2], _units(gpus, model), price,
                                  deposit_usd=price * gpus * (hours or 5.0) * 1.2,
                                  work_s=work_s, auto_select=auto,
                                  interruptible=spot and offered)
            elif kind == "bid" and open_orders:
                order = market.orders[open_orders[pick % len(open_orders)]]
                # mostly providers of the right model, at up to twice the max price
                pool = market.pool
                matching = np.flatnonzero(order.model_mask[pool.model] & pool.up
                                          & (pool.free[:, 0] >= order.gpus))
                matching = np.setdiff1d(matching, order.bid_providers)
                who = matching[other % matching.size] if matching.size and other % 4 else \
                    other % pool.n
                cap = order.max_price / order.gpus / 1e6
                market.submit_bid(order.id, int(who), cap * price / 2)
            elif kind == "accept" and open_orders:
                order = market.orders[open_orders[pick % len(open_orders)]]
                if order.bid_ids:
                    market.accept_bid(order.id, order.bid_ids[other % len(order.bid_ids)])
            elif kind == "cancel" and open_orders:
                market.cancel_order(open_orders[pick % len(open_orders)])
            elif kind == "close" and market.leases:
                leases = sorted(market.leases)
                market.close_lease(leases[pick % len(leases)])
        except MarketError:
            assert [market.ledger.balance(a) for a in range(len(market.ledger))] == before
            assert (market.pool.free == free).all()
            assert len(audit.events) == count
        check_books(market)
        ranking_holds(market)
    market.run()
    check_books(market)
    assert set(audit.closed) | set(market.leases) == set(audit.created)

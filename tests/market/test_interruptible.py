"""Vast.ai-style interruptible orders in the engine: highest bid runs, lower bids are paused and
resume later, on-demand outranks them, and a paused lease is neither paid nor working."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.compute as pc
import pytest

from agents.markups import CostPlus
from market import Market, MarketError, load_scenario
from market.core.pool import ProviderRow
from market.core.resources import gpu_units
from market.events import (
    Event,
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderExpired,
    OrderOpened,
)
from market.units import SECONDS_PER_HOUR, owed_micro, usd_to_micro

HOUR = SECONDS_PER_HOUR
GIB = 2**30
WINDOW_S = 180.0  # the default bidding window: an auto-selected order leases when it ends


def market_with(gpus: int = 1, cost: float = 0.5, mechanism: str = "interruptible",
                *overrides: str) -> tuple[Market, list[Event], int]:
    """An agent-free market with one H100 provider bidding cost + 20% (its floor for
    interruptible orders: its marginal cost) and one rich tenant. Asks are not grossed up
    by the take rate: these tests check scheduling, not fee pricing."""
    scenario = load_scenario("default", [f"market.mechanism={mechanism}",
                                         "market.manifest_failure_prob=0",
                                         "market.bids_net_of_fee=false", *overrides])
    market = Market(scenario, seed=1, populate=False, record=True)
    events: list[Event] = []
    market.subscribe(events.append)
    market.add_tenant("tenant", 100_000.0)
    row = ProviderRow(
        name="p", population=0, model=market.catalog.index("h100"), gpus=gpus,
        cpu_millicores=4_000 * gpus, memory_bytes=32 * GIB * gpus,
        storage_bytes=100 * GIB * gpus, ip_leases=0, storage_classes=("beta2",), audited=True,
        cost_full_usd_per_gpu_hour=cost, cost_marginal_usd_per_gpu_hour=cost,
        cost_idle_usd_per_gpu_hour=0.0, cost_fixed_usd_per_gpu_hour=0.0,
        cost_basis_usd_per_gpu_hour=cost, latency_log_median=math.log(3.0), latency_sigma=0.0)
    (provider,) = market.add_providers([row], CostPlus(markup=0.2)).tolist()
    return market, events, provider


def post(market: Market, gpus: int, price: float, hours: float,
         interruptible: bool = True) -> int:
    work_s = np.full(len(market.catalog), np.inf)
    work_s[market.catalog.index("h100")] = hours * HOUR
    units = gpu_units(gpus, ("h100",), cpu_millicores_per_gpu=4_000,
                      memory_bytes_per_gpu=32 * GIB, storage_bytes_per_gpu=100 * GIB)
    return market.post_order(0, units, price, deposit_usd=price * gpus * hours * 2,
                             work_s=work_s, interruptible=interruptible)


def lease_of(events: list[Event], order_id: int) -> LeaseCreated:
    return next(e for e in events if isinstance(e, LeaseCreated) and e.order_id == order_id)


def of(events: list[Event], kind: type, lease_id: int) -> list:
    return [e for e in events if isinstance(e, kind) and e.lease_id == lease_id]


def test_a_higher_bid_pauses_a_lower_one_which_resumes_and_is_paid_only_for_its_run():
    market, events, provider = market_with()
    low = post(market, 1, 1.0, hours=2)
    market.run(until=HOUR)
    high = post(market, 1, 2.0, hours=1)
    market.run()
    low_lease, high_lease = lease_of(events, low), lease_of(events, high)
    # Each pays the tenant's own bid, not the provider's floor (0.6 USD/GPU-h).
    assert low_lease.price_micro_per_hour == usd_to_micro(1.0)
    assert high_lease.price_micro_per_hour == usd_to_micro(2.0)
    (paused,) = of(events, LeasePaused, low_lease.lease_id)
    (resumed,) = of(events, LeaseResumed, low_lease.lease_id)
    (closed,) = of(events, LeaseClosed, low_lease.lease_id)
    (high_closed,) = of(events, LeaseClosed, high_lease.lease_id)
    assert paused.time_s == pytest.approx(HOUR + WINDOW_S)       # when the higher bid leased
    assert resumed.time_s == pytest.approx(high_closed.time_s)   # when it finished
    assert resumed.paused_s == pytest.approx(HOUR)
    # Two hours of work: one before the pause, one after; paid for two hours, not three.
    assert closed.time_s == pytest.approx(WINDOW_S + 3 * HOUR)
    assert closed.reason == "owner" and closed.work_left == 0
    assert closed.paid_micro == owed_micro(usd_to_micro(1.0), 2 * HOUR)
    assert not of(events, LeasePaused, high_lease.lease_id)
    summary = market.result().summary
    assert summary["money_conserved"]
    assert summary["price_usd_per_gpu_hour"]["h100"]["gpu_hours"] == pytest.approx(3.0)
    block = summary["interruptible"]
    assert (block["leases"], block["pauses"], block["resumes"]) == (2, 1, 1)
    assert block["paused_gpu_hours"] == pytest.approx(1.0)
    leases = market.result().leases
    row = leases.filter(pc.equal(leases["lease_id"], low_lease.lease_id)).to_pylist()[0]
    assert (row["interruptible"], row["pauses"]) == (True, 1)
    assert row["paused_s"] == pytest.approx(HOUR)
    assert provider == 0


def test_a_lower_or_equal_bid_cannot_take_a_running_lease():
    market, events, _ = market_with()
    first = post(market, 1, 1.0, hours=5)
    market.run(until=HOUR)
    lower = post(market, 1, 0.9, hours=1)
    equal = post(market, 1, 1.0, hours=1)
    market.run(until=2 * HOUR)
    expired = {e.order_id for e in events if isinstance(e, OrderExpired)}
    assert {lower, equal} <= expired
    assert lease_of(events, first)
    assert not [e for e in events if isinstance(e, LeasePaused)]


def test_on_demand_outranks_even_a_higher_interruptible_bid():
    market, events, _ = market_with()
    spot = post(market, 1, 5.0, hours=2)
    market.run(until=HOUR)
    on_demand = post(market, 1, 3.0, hours=1, interruptible=False)
    market.run()
    spot_lease, od_lease = lease_of(events, spot), lease_of(events, on_demand)
    assert not od_lease.interruptible and spot_lease.interruptible
    assert od_lease.price_micro_per_hour == usd_to_micro(0.6)  # the provider's ask, cost + 20%
    (paused,) = of(events, LeasePaused, spot_lease.lease_id)
    (resumed,) = of(events, LeaseResumed, spot_lease.lease_id)
    (od_closed,) = of(events, LeaseClosed, od_lease.lease_id)
    assert paused.time_s == pytest.approx(od_lease.time_s)
    assert resumed.time_s == pytest.approx(od_closed.time_s)
    assert not of(events, LeasePaused, od_lease.lease_id)
    assert market.result().summary["money_conserved"]


def test_smaller_lower_bids_backfill_what_a_paused_larger_one_cannot_use():
    market, events, _ = market_with(gpus=4)
    big = post(market, 4, 1.0, hours=3)          # all four GPUs
    market.run(until=HOUR)
    middle = post(market, 2, 3.0, hours=2)       # takes two: the big one no longer fits
    market.run(until=HOUR + 2 * WINDOW_S)
    small = post(market, 1, 0.8, hours=1)        # lower than the big one, but it fits
    market.run(until=HOUR + 4 * WINDOW_S)
    big_lease, small_lease = lease_of(events, big), lease_of(events, small)
    lease = market.leases[big_lease.lease_id]
    assert not lease.running and market.leases[small_lease.lease_id].running
    assert market.leases[lease_of(events, middle).lease_id].running
    market.run()
    # Once the middle one ends, the big one outranks the small one and waits for its GPU.
    (resumed,) = of(events, LeaseResumed, big_lease.lease_id)
    (small_closed,) = of(events, LeaseClosed, small_lease.lease_id)
    middle_closed = of(events, LeaseClosed, lease_of(events, middle).lease_id)[0]
    assert resumed.time_s == pytest.approx(max(small_closed.time_s, middle_closed.time_s))
    assert market.result().summary["money_conserved"]


def test_interruptible_orders_need_a_mechanism_that_offers_them():
    market, events, _ = market_with(mechanism="tenant_pick")
    before = market.ledger.total(), len(events)
    with pytest.raises(MarketError, match="interruptible: mechanism 'tenant_pick'"):
        post(market, 1, 1.0, hours=1)
    assert (market.ledger.total(), len(events)) == before


def test_provider_floor_is_its_marginal_cost_unless_its_strategy_says_otherwise():
    market, events, _ = market_with(cost=0.5)
    too_low = post(market, 1, 0.49, hours=1)
    market.run(until=HOUR)
    assert too_low in {e.order_id for e in events if isinstance(e, OrderExpired)}

    class Floor(CostPlus):
        def min_bids(self, providers, view):
            return np.full(len(providers), 0.2)

    other, other_events, _ = market_with(cost=0.5)
    other.refresh_asks(np.array([0]))
    other.strategies[0] = Floor(markup=0.2)
    other.refresh_asks(np.array([0]))
    order = post(other, 1, 0.3, hours=1)
    other.run(until=HOUR)
    assert lease_of(other_events, order).price_micro_per_hour == usd_to_micro(0.3)


# ----------------------------------------------------------------------------- populated runs


def interruptible_run(seed: int, *overrides: str) -> Market:
    return Market(load_scenario("interruptible", [
        "duration_days=0.5", "tenants.arrivals_per_hour=60", "providers.0.count=6",
        "providers.1.count=10", "providers.2.count=1", *overrides]), seed=seed, record=True)


def test_interruptible_leases_are_cheaper_than_on_demand_on_the_same_gpu():
    leases = interruptible_run(3, "duration_days=1").run().leases.to_pandas()
    prices = leases.groupby(["gpu_model", "interruptible"]).price_usd_per_gpu_hour
    both = (prices.count().unstack().fillna(0) >= 10).all(axis=1)
    table = prices.median().unstack()[both]
    assert len(table) >= 2
    assert (table[True] < table[False]).all(), table


def test_a_tenant_out_of_patience_takes_the_rest_on_demand():
    market = interruptible_run(4, "tenants.interruptible.patience_s=300")
    events: list[Event] = []
    market.subscribe(events.append)
    market.run()
    spot_orders = {e.order_id for e in events if isinstance(e, OrderOpened) and e.interruptible}
    given_up = [e for e in events if isinstance(e, LeaseClosed) and e.order_id in spot_orders
                and e.reason == "owner" and e.work_left > 0]
    assert given_up, "no tenant ran out of patience"
    pauses = {e.lease_id: e.time_s for e in events if isinstance(e, LeasePaused)}
    for close in given_up:
        assert close.time_s - pauses[close.lease_id] == pytest.approx(300)
        reposts = [e for e in events if isinstance(e, OrderOpened) and e.job_id == close.job_id
                   and e.time_s >= close.time_s]
        assert reposts and not reposts[0].interruptible

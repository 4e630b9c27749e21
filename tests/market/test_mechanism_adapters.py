"""The mechanisms the engine runs by name beyond Akash's own: clocks, posted price, scoring."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import Market, load_scenario
from market.events import LeaseCreated, OrderExpired, OrderOpened
from market.mechanisms.rules import (
    AscendingClock,
    AuctionContext,
    DescendingClock,
    PostedPrice,
    ScoringAuction,
    first_price,
    second_price,
)
from market.scenario import ScenarioError

bids = st.lists(st.integers(1, 2_000_000), min_size=1, max_size=12).map(
    lambda b: np.array(b, dtype=np.int64))


@settings(deadline=None)
@given(bids, st.integers(1, 2_000_000), st.floats(0.001, 0.2))
def test_descending_clock_is_vickrey_up_to_one_step(prices, max_price, step):
    winner, price = DescendingClock(step).allocate(prices, max_price)
    vickrey_winner, vickrey = second_price(prices, max_price)
    assert winner == vickrey_winner
    if winner >= 0:
        assert vickrey <= price < vickrey + max(1, int(max_price * step)) or price == max_price
        assert prices[winner] <= price <= max_price


@settings(deadline=None)
@given(bids, st.integers(1, 2_000_000), st.floats(0.001, 0.2))
def test_ascending_clock_is_first_price_up_to_one_step(prices, max_price, step):
    winner, price = AscendingClock(start=0.0, step=step).allocate(prices, max_price)
    first_winner, first = first_price(prices, max_price)
    grid = max(1, int(max_price * step))
    assert (winner < 0) == (first_winner < 0)
    if winner >= 0:
        assert prices[winner] <= price <= max_price
        assert (prices[winner] - first < grid and price - first < grid) or price == max_price


def test_posted_price_pays_the_posted_price_to_the_first_willing():
    context = AuctionContext(np.ones(3), np.ones(3), np.array([2_000, 1_000, 2_000]))
    mechanism = PostedPrice(fraction=0.5)  # posts 1000, 500, 1000
    assert mechanism.allocate(np.array([1_200, 400, 900]), 5_000, context) == (1, 500)
    assert mechanism.allocate(np.array([1_200, 600, 900]), 5_000, context) == (2, 1_000)
    assert mechanism.allocate(np.array([1_200, 600, 900]), 800, context) == (-1, 0)


def test_scoring_prefers_fast_reliable_bids():
    context = AuctionContext(job_hours=np.array([1.0, 3.0, 1.0]),
                             reliability=np.array([1.0, 1.0, 0.5]),
                             list_micro=np.zeros(3))
    prices = np.array([1_000, 600, 900], dtype=np.int64)
    assert ScoringAuction("first").allocate(prices, 5_000, context) == (0, 1_000)
    winner, price = ScoringAuction("second").allocate(prices, 5_000, context)
    assert winner == 0 and 1_000 <= price <= 5_000


@pytest.mark.parametrize("mechanism", ["reverse_english", "dutch", "posted_price", "scoring",
                                       "batch_clearing"])
def test_each_mechanism_runs_a_market_within_its_rules(mechanism):
    scenario = load_scenario("default", [f"market.mechanism={mechanism}", "duration_days=0.3"])
    market = Market(scenario, seed=2, record=False)
    max_price = {}
    leases = []
    market.subscribe(lambda e: max_price.__setitem__(e.order_id, e.max_price_micro_per_hour),
                     kinds=(OrderOpened,))
    market.subscribe(leases.append, kinds=(LeaseCreated,))
    summary = market.run().summary
    assert leases and summary["money_conserved"]
    assert all(e.price_micro_per_hour <= max_price[e.order_id] for e in leases)


def test_mechanism_params_are_validated_by_the_mechanism():
    assert load_scenario("default", ["market.mechanism=dutch",
                                     "market.mechanism_params={ step = 0.05 }"])
    with pytest.raises(ScenarioError, match=r"market\.mechanism_params.*step"):
        load_scenario("default", ["market.mechanism=dutch", "market.mechanism_params.step=2"])
    with pytest.raises(ScenarioError, match=r"market\.mechanism_params"):
        load_scenario("default", ["market.mechanism_params.speed=1"])


# ---------------------------------------------------------- batch clearing

def _batch_market(pricing: str):
    from agents.markups import CostPlus
    from market.core.pool import ProviderRow
    from market.core.resources import gpu_units
    from market.units import GIB

    scenario = load_scenario("default", [
        "market.mechanism=batch_clearing", "market.manifest_failure_prob=0",
        f'market.mechanism_params={{ interval_s = 600, pricing = "{pricing}" }}'])
    market = Market(scenario, seed=0, populate=False, record=False)
    tenant = market.add_tenant("alice", 10_000.0)

    def row(name: str, cost: float) -> ProviderRow:
        return ProviderRow(
            name=name, population=0, model=market.catalog.index("h100"), gpus=1,
            cpu_millicores=8000, memory_bytes=64 * GIB, storage_bytes=1000 * GIB, ip_leases=0,
            storage_classes=("ephemeral", "beta2"), audited=True,
            cost_full_usd_per_gpu_hour=cost, cost_marginal_usd_per_gpu_hour=cost,
            cost_idle_usd_per_gpu_hour=0.0, cost_fixed_usd_per_gpu_hour=0.0,
            cost_basis_usd_per_gpu_hour=cost)

    # Asks at cost, not grossed up for the take rate: each provider's ask is its cost.
    cheap, dear = market.add_providers([row("cheap", 1.0), row("dear", 2.0)],
                                       CostPlus(0.0, net_of_fee=False))
    units = gpu_units(1, ("h100",), cpu_millicores_per_gpu=4000,
                      memory_bytes_per_gpu=32 * GIB, storage_bytes_per_gpu=100 * GIB)
    return market, tenant, units, int(cheap), int(dear)


@pytest.mark.parametrize("pricing", ["pay_as_bid", "uniform"])
def test_batch_clearing_matches_a_batch_by_welfare(pricing):
    market, tenant, units, cheap, dear = _batch_market(pricing)
    leases, expired = [], []
    market.subscribe(leases.append, kinds=(LeaseCreated,))
    market.subscribe(expired.append, kinds=(OrderExpired,))
    # three one-GPU orders, two one-GPU providers: the two highest max prices trade
    orders = [market.post_order(tenant, units, price, deposit_usd=50.0)
              for price in (5.0, 1.5, 3.0)]
    market.run(until=599)
    assert not leases  # nothing clears before the interval ends
    market.run(until=601)
    by_order = {e.order_id: e for e in leases}
    assert set(by_order) == {orders[0], orders[2]}
    assert [e.order_id for e in expired] == [orders[1]]
    assert {by_order[o].provider for o in by_order} == {cheap, dear}
    prices = sorted(e.price_micro_per_hour for e in leases)
    if pricing == "pay_as_bid":
        assert prices == [1_000_000, 2_000_000]  # each provider paid its ask
    else:
        assert prices[0] == prices[1]  # one clearing price for every trade
        assert 2_000_000 <= prices[0] <= 3_000_000  # between the top ask and lowest max price
    assert market.money()["money_conserved"]


def test_batch_clearing_refuses_an_ask_that_costs_the_job_more_than_it_is_worth():
    market, tenant, units, cheap, _ = _batch_market("pay_as_bid")
    leases, expired = [], []
    market.subscribe(leases.append, kinds=(LeaseCreated,))
    market.subscribe(expired.append, kinds=(OrderExpired,))
    work_s = np.full(len(market.catalog), np.inf)
    work_s[market.catalog.index("h100")] = 2 * 3600.0
    # 2 hours at the cheapest ask (1.0) cost 2.00: under the max price per GPU-hour (5.0),
    # but above what the job is worth (1.50), so nothing trades.
    market.post_order(tenant, units, 5.0, deposit_usd=50.0, job_value_usd=1.5, work_s=work_s)
    worth = market.post_order(tenant, units, 5.0, deposit_usd=50.0, job_value_usd=2.5,
                              work_s=work_s)
    market.run(until=601)
    assert [e.order_id for e in leases] == [worth]
    assert leases[0].provider == cheap and len(expired) == 1


def test_batch_clearing_rejects_bad_params():
    with pytest.raises(ScenarioError, match="pricing"):
        load_scenario("default", ["market.mechanism=batch_clearing",
                                  'market.mechanism_params.pricing="vickrey"'])

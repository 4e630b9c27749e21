"""The mechanisms the engine runs by name beyond Akash's own: clocks, posted price, scoring."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import Market, load_scenario
from market.events import LeaseCreated, OrderOpened
from market.mechanisms import (
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


@pytest.mark.parametrize("mechanism", ["reverse_english", "dutch", "posted_price", "scoring"])
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

"""Tests for market.clearing: clocks, posted price, scoring, batch clearing, interruptibles.

Hand cases pin each rule; properties check the clocks against a literal tick-by-tick clock and
against `market.mechanisms.rules` (the descending clock is second price within one decrement, the
ascending clock is first price on the grid), scoring against first/second price when quality
is flat, batch clearing against a brute-force optimum on small instances, and the
interruptible schedule's priority and capacity guarantees.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from market.mechanisms.clearing import (
    ascending_clock,
    batch_clear,
    descending_clock,
    interruptible_schedule,
    posted_price,
    preempted,
    scoring_auction,
)
from market.mechanisms.rules import NO_WINNER, first_price, second_price


def micro(*prices: int) -> np.ndarray:
    return np.array(prices, dtype=np.int64)


# --- reference clocks, ticked literally from the docstring rules ---------------------------

def ticked_descending(reservations: np.ndarray, max_price: int, decrement: int):
    price = max_price
    if not (reservations <= price).any():
        return NO_WINNER, 0, 0
    if (reservations <= price).sum() == 1:
        return int(np.flatnonzero(reservations <= price)[0]), max_price, 0
    steps = 0
    while (reservations <= price - decrement).sum() >= 2:
        price -= decrement
        steps += 1
    survivors = np.flatnonzero(reservations <= price)
    return int(survivors[np.argmin(reservations[survivors])]), price, steps


def ticked_ascending(reservations: np.ndarray, start: int, max_price: int, increment: int):
    price, steps = start, 0
    while True:
        takers = np.flatnonzero(reservations <= price)
        if takers.size:
            return int(takers[0]), price, steps
        if price >= max_price:
            return NO_WINNER, 0, steps
        price = min(price + increment, max_price)
        steps += 1


prices = st.integers(0, 3_000)
price_lists = st.lists(prices, max_size=12).map(lambda xs: np.array(xs, dtype=np.int64))
steps_sizes = st.integers(1, 400)


# --- descending clock ----------------------------------------------------------------------

def test_descending_clock_stops_where_the_last_rival_drops():
    # Clock 1000, 950, ..., 800: at 750 only the 700 reservation is left; paid 800.
    assert descending_clock(micro(900, 700, 800), 1_000, 50) == (1, 800, 4)


def test_descending_clock_rounds_the_second_reservation_up_to_the_grid():
    assert descending_clock(micro(900, 700, 820), 1_000, 50) == (1, 850, 3)


def test_descending_clock_survivors_within_one_step_go_to_the_lowest_then_earliest():
    assert descending_clock(micro(990, 960, 960, 980), 1_000, 100) == (1, 1_000, 0)
    assert descending_clock(micro(990, 970, 960), 1_000, 100) == (2, 1_000, 0)


def test_descending_clock_alone_or_nobody():
    assert descending_clock(micro(1_200, 600), 1_000, 50) == (1, 1_000, 0)
    assert descending_clock(micro(1_200, 1_001), 1_000, 50) == (NO_WINNER, 0, 0)
    assert descending_clock(micro(), 1_000, 50) == (NO_WINNER, 0, 0)


def test_descending_clock_rejects_a_non_positive_decrement():
    with pytest.raises(ValueError, match="decrement_micro"):
        descending_clock(micro(1), 10, 0)


@settings(max_examples=300, deadline=None)
@given(price_lists, prices, steps_sizes)
def test_descending_clock_is_second_price_within_one_decrement(offers, max_price, decrement):
    winner, price, steps = descending_clock(offers, max_price, decrement)
    vickrey_winner, vickrey_price = second_price(offers, max_price)
    assert winner == vickrey_winner
    if winner == NO_WINNER:
        assert (price, steps) == (0, 0)
        return
    assert offers[winner] == offers[offers <= max_price].min()
    assert vickrey_price <= price < vickrey_price + decrement
    assert price <= max_price
    assert (max_price - price) == steps * decrement  # on the clock grid


@settings(max_examples=300, deadline=None)
@given(price_lists, prices, steps_sizes)
def test_descending_clock_matches_the_ticked_clock(offers, max_price, decrement):
    original = offers.copy()
    assert descending_clock(offers, max_price, decrement) == ticked_descending(
        offers, max_price, decrement
    )
    assert np.array_equal(offers, original)


# --- ascending clock -----------------------------------------------------------------------

def test_ascending_clock_first_taker_wins_at_the_clock_price():
    assert ascending_clock(micro(900, 700, 800), 500, 1_000, 50) == (1, 700, 4)
    assert ascending_clock(micro(900, 730, 720), 500, 1_000, 100) == (1, 800, 3)


def test_ascending_clock_below_the_start_is_paid_the_start():
    assert ascending_clock(micro(900, 100), 500, 1_000, 100) == (1, 500, 0)


def test_ascending_clock_last_step_is_the_max_price():
    assert ascending_clock(micro(950), 500, 1_000, 200) == (0, 1_000, 3)
    assert ascending_clock(micro(1_001), 500, 1_000, 200) == (NO_WINNER, 0, 3)
    assert ascending_clock(micro(), 500, 500, 200) == (NO_WINNER, 0, 0)


def test_ascending_clock_rejects_bad_arguments():
    with pytest.raises(ValueError, match="increment_micro"):
        ascending_clock(micro(1), 0, 10, -5)
    with pytest.raises(ValueError, match="start_price_micro"):
        ascending_clock(micro(1), 11, 10, 1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 40), max_size=12),
    st.integers(0, 1_000),
    steps_sizes,
    st.integers(0, 10_000),
)
def test_ascending_clock_is_first_price_on_the_grid(grid_steps, start, increment, max_price):
    assume(max_price >= start)
    offers = np.array([start + k * increment for k in grid_steps], dtype=np.int64)
    winner, price, _ = ascending_clock(offers, start, max_price, increment)
    assert (winner, price) == first_price(offers, max_price)


@settings(max_examples=300, deadline=None)
@given(price_lists, prices, steps_sizes, st.integers(0, 3_000))
def test_ascending_clock_matches_the_ticked_clock(offers, start, increment, max_price):
    assume(max_price >= start)
    result = ascending_clock(offers, start, max_price, increment)
    assert result == ticked_ascending(offers, start, max_price, increment)
    winner, price, _ = result
    if winner != NO_WINNER:
        lowest = int(offers.min())
        assert offers[winner] <= price <= max_price
        assert offers[winner] < max(lowest, start) + increment


# --- posted price --------------------------------------------------------------------------

def test_posted_price_first_willing_arrival_takes_the_posted_price():
    assert posted_price(micro(900, 700, 800), None, 850) == (1, 850)
    assert posted_price(micro(900, 700, 800), np.array([True, False, True]), 850) == (2, 850)
    assert posted_price(micro(900, 700, 850), np.array([True, False, True]), 850) == (2, 850)


def test_posted_price_without_a_willing_arrival_has_no_winner():
    assert posted_price(micro(900, 700), None, 600) == (NO_WINNER, 0)
    assert posted_price(micro(900, 500), np.array([True, False]), 600) == (NO_WINNER, 0)
    assert posted_price(micro(), None, 600) == (NO_WINNER, 0)


def test_posted_price_rejects_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match="arrivals_order_ok"):
        posted_price(micro(1, 2), np.array([True]), 5)


# --- scoring auction -----------------------------------------------------------------------

def test_scoring_auction_best_price_per_quality_wins():
    prices, quality = micro(900, 700, 800), np.array([1.0, 0.5, 1.0])
    assert scoring_auction(prices, quality, 1_000) == (2, 800)
    # Runner-up score 900 per unit of quality, times the winner's quality 1.0.
    assert scoring_auction(prices, quality, 1_000, "second") == (2, 900)


def test_scoring_auction_second_rule_scales_by_the_winners_quality_and_caps():
    prices, quality = micro(1_000, 600), np.array([1.0, 2.0])
    # Scores 1000 and 300: the winner could have bid up to 1000 × 2 = 2000, capped at 1500.
    assert scoring_auction(prices, quality, 1_500, "second") == (1, 1_500)
    assert scoring_auction(prices, quality, 5_000, "second") == (1, 2_000)


def test_scoring_auction_ignores_unacceptable_bids_and_alone_pays_the_max():
    prices, quality = micro(2_000, 600), np.array([100.0, 1.0])
    assert scoring_auction(prices, quality, 1_000, "second") == (1, 1_000)
    assert scoring_auction(micro(2_000), np.array([1.0]), 1_000) == (NO_WINNER, 0)


def test_scoring_auction_ties_go_to_the_earlier_bid():
    prices, quality = micro(800, 400, 400), np.array([2.0, 1.0, 1.0])
    assert scoring_auction(prices, quality, 1_000, "second") == (0, 800)


def test_scoring_auction_rejects_bad_quality_and_rules():
    with pytest.raises(ValueError, match="quality"):
        scoring_auction(micro(1, 2), np.array([1.0, 0.0]), 5)
    with pytest.raises(ValueError, match="quality"):
        scoring_auction(micro(1, 2), np.array([1.0]), 5)
    with pytest.raises(ValueError, match="rule"):
        scoring_auction(micro(1), np.array([1.0]), 5, "third")


@settings(max_examples=300, deadline=None)
@given(price_lists, prices, st.floats(0.01, 100.0))
def test_scoring_with_equal_quality_is_first_and_second_price(offers, max_price, q):
    quality = np.full(offers.shape, q)
    assert scoring_auction(offers, quality, max_price) == first_price(offers, max_price)
    assert scoring_auction(offers, quality, max_price, "second") == second_price(
        offers, max_price
    )


qualities = st.floats(0.1, 10.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(prices, qualities), min_size=1, max_size=8), prices, prices)
def test_scoring_second_truthful_bidding_is_dominant(rivals, cost, max_price):
    """Bidder 0 with cost `cost` never gains by bidding anything but its cost."""
    quality = np.array([1.0] + [q for _, q in rivals])

    def profit(bid: int) -> int:
        offers = np.array([bid] + [p for p, _ in rivals], dtype=np.int64)
        winner, price = scoring_auction(offers, quality, max_price, "second")
        return price - cost if winner == 0 else 0

    truthful = profit(cost)
    assert truthful >= 0
    for deviation in (0, cost // 2, cost - 1, cost + 1, cost * 2, max_price, max_price + 1):
        assert profit(max(deviation, 0)) <= truthful


# --- batch clearing ------------------------------------------------------------------------

def brute_force(gpus, bids, capacity, asks, eligible, uniform=False):
    """Best welfare over every assignment of orders to providers or nobody (uniform: over
    those where one price lies between every accepted ask and every accepted max price)."""
    best = 0
    for choice in itertools.product(range(-1, capacity.size), repeat=gpus.size):
        used = np.zeros(capacity.size, dtype=np.int64)
        welfare = 0
        ok = True
        for i, j in enumerate(choice):
            if j < 0:
                continue
            if not eligible[i, j] or asks[j] > bids[i]:
                ok = False
                break
            used[j] += gpus[i]
            welfare += (bids[i] - asks[j]) * gpus[i]
        ok = ok and bool(np.all(used <= capacity))
        matched = [(i, j) for i, j in enumerate(choice) if j >= 0]
        if ok and uniform and matched:
            ok = max(asks[j] for _, j in matched) <= min(bids[i] for i, _ in matched)
        if ok:
            best = max(best, int(welfare))
    return best


def welfare_of(provider, gpus, bids, asks):
    matched = provider >= 0
    return int(((bids[matched] - asks[provider[matched]]) * gpus[matched]).sum())


def check_maximal(provider, gpus, bids, capacity, asks, eligible, uniform=False):
    """No unmatched order could still trade with a provider that has room for it."""
    matched = provider >= 0
    free = capacity - np.bincount(provider[matched], weights=gpus[matched], minlength=capacity.size)
    highest_ask = asks[provider[matched]].max() if matched.any() else -1
    lowest_bid = bids[matched].min() if matched.any() else 10**9
    for i in np.flatnonzero(~matched):
        for j in range(capacity.size):
            if eligible[i, j] and asks[j] <= bids[i] and gpus[i] <= free[j]:
                assert uniform and max(highest_ask, asks[j]) > min(lowest_bid, bids[i])


def check_feasible(provider, price, gpus, bids, capacity, asks, eligible):
    assert provider.dtype == np.int64 and price.dtype == np.int64
    matched = provider >= 0
    assert np.all(provider >= NO_WINNER) and np.all(provider < capacity.size)
    assert np.all(price[~matched] == 0)
    used = np.bincount(provider[matched], weights=gpus[matched], minlength=capacity.size)
    assert np.all(used <= capacity)  # never more GPUs than a provider has
    for i in np.flatnonzero(matched):
        j = provider[i]
        assert eligible[i, j]
        assert asks[j] <= price[i] <= bids[i]  # individually rational on both sides


@st.composite
def batch_instances(draw, max_orders=4, max_offers=3, unit=False):
    n = draw(st.integers(0, max_orders))
    m = draw(st.integers(0, max_offers))
    gpus = np.array(draw(st.lists(st.integers(1, 1 if unit else 4), min_size=n, max_size=n)))
    bids = np.array(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n)))
    capacity = np.array(draw(st.lists(st.integers(0, 6), min_size=m, max_size=m)))
    asks = np.array(draw(st.lists(st.integers(0, 20), min_size=m, max_size=m)))
    flags = draw(st.lists(st.booleans(), min_size=n * m, max_size=n * m))
    eligible = np.array(flags, dtype=bool).reshape(n, m)
    return [a.astype(np.int64) for a in (gpus, bids, capacity, asks)] + [eligible]


def test_batch_clear_maximizes_welfare_over_the_greedy_choice():
    # Greedy would give the 2-GPU provider to order 1 (surplus 700 > 300 per GPU)...
    gpus, bids = micro(2, 1, 1), micro(1_000, 1_300, 700)
    capacity, asks = micro(2, 1), micro(600, 900)
    provider, price = batch_clear(gpus, bids, capacity, asks)
    # ...but order 0 needs the 2-GPU provider: 800 + 400 beats 700 + 0 + 100.
    assert provider.tolist() == [0, 1, NO_WINNER] and price.tolist() == [600, 900, 0]


def test_batch_clear_packs_several_orders_onto_one_provider():
    provider, price = batch_clear(micro(1, 2, 1), micro(10, 10, 10), micro(4), micro(5))
    assert provider.tolist() == [0, 0, 0] and price.tolist() == [5, 5, 5]


def test_batch_clear_respects_eligibility():
    eligible = np.array([[False, True], [True, False]])
    provider, price = batch_clear(
        micro(1, 1), micro(10, 10), micro(1, 1), micro(1, 8), eligible=eligible
    )
    assert provider.tolist() == [1, 0] and price.tolist() == [8, 1]


def test_batch_clear_trades_zero_surplus_pairs_that_fit():
    provider, price = batch_clear(micro(1, 1), micro(10, 9), micro(2), micro(10))
    assert provider.tolist() == [0, NO_WINNER] and price.tolist() == [10, 0]


def test_batch_clear_uniform_price_is_the_midpoint_of_the_marginal_trades():
    provider, price = batch_clear(
        micro(1, 1, 1), micro(20, 15, 4), micro(1, 1, 1), micro(5, 9, 12), pricing="uniform"
    )
    # 20 and 15 buy from the asks 5 and 9 (either way round: welfare 21); the marginal ask is
    # 9 and the marginal max price 15, so everyone trades at 12.
    assert sorted(provider.tolist()) == [NO_WINNER, 0, 1]
    assert price.tolist()[:2] == [12, 12] and price[2] == 0


def test_batch_clear_uniform_drops_trades_no_single_price_can_serve():
    # Pay as bid: order 0 (max 6, 2 GPUs) with provider 0 (ask 5) and order 1 (max 2) with
    # provider 1 (ask 1): welfare 3, but no one price is ≥ 5 and ≤ 2.
    args = micro(2, 1), micro(6, 2), micro(2, 1), micro(5, 1)
    provider, price = batch_clear(*args)
    assert provider.tolist() == [0, 1] and price.tolist() == [5, 1]
    provider, price = batch_clear(*args, pricing="uniform")
    assert provider.tolist() == [0, NO_WINNER] and price.tolist() == [5, 0]


def test_batch_clear_empty_sides():
    for args in [(micro(), micro(), micro(2), micro(5)), (micro(1), micro(9), micro(), micro())]:
        for pricing in ("pay_as_bid", "uniform"):
            provider, price = batch_clear(*args, pricing=pricing)
            assert np.all(provider == NO_WINNER) and np.all(price == 0)


def test_batch_clear_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pricing"):
        batch_clear(micro(1), micro(1), micro(1), micro(1), pricing="vcg")
    with pytest.raises(ValueError, match="order_max_prices"):
        batch_clear(micro(1, 1), micro(1), micro(1), micro(1))
    with pytest.raises(ValueError, match="offer_prices"):
        batch_clear(micro(1), micro(1), micro(1), micro(1, 2))
    with pytest.raises(ValueError, match="order_gpus"):
        batch_clear(micro(0), micro(1), micro(1), micro(1))
    with pytest.raises(ValueError, match="offer_gpus"):
        batch_clear(micro(1), micro(1), micro(-1), micro(1))
    with pytest.raises(ValueError, match="eligible"):
        batch_clear(micro(1), micro(1), micro(1), micro(1), eligible=np.ones((2, 1), bool))


def test_one_order_takes_the_cheapest_ask_it_fits_the_first_of_equal_ones():
    gpus, bids = micro(2), micro(900)
    capacity, asks = micro(1, 4, 2, 8), micro(300, 700, 500, 500)  # the 300 one is too small
    provider, price = batch_clear(gpus, bids, capacity, asks)
    assert provider.tolist() == [2] and price.tolist() == [500]
    provider, price = batch_clear(gpus, bids, capacity, asks, "uniform")
    assert provider.tolist() == [2] and price.tolist() == [(500 + 900) // 2]
    provider, price = batch_clear(gpus, micro(400), capacity, asks)
    assert provider.tolist() == [NO_WINNER] and price.tolist() == [0]


@settings(max_examples=150, deadline=None)
@given(st.one_of(batch_instances(), batch_instances(unit=True)))
def test_batch_clear_pay_as_bid_is_feasible_and_optimal(instance):
    gpus, bids, capacity, asks, eligible = instance
    inputs = [a.copy() for a in instance]
    provider, price = batch_clear(gpus, bids, capacity, asks, eligible=eligible)
    assert all(np.array_equal(a, b) for a, b in zip(inputs, instance, strict=True))
    check_feasible(provider, price, gpus, bids, capacity, asks, eligible)
    matched = provider >= 0
    assert np.array_equal(price[matched], asks[provider[matched]])
    assert welfare_of(provider, gpus, bids, asks) == brute_force(
        gpus, bids, capacity, asks, eligible
    )
    check_maximal(provider, gpus, bids, capacity, asks, eligible)


@settings(max_examples=150, deadline=None)
@given(batch_instances())
def test_batch_clear_uniform_is_one_rational_price_and_optimal_among_such(instance):
    gpus, bids, capacity, asks, eligible = instance
    provider, price = batch_clear(gpus, bids, capacity, asks, "uniform", eligible)
    check_feasible(provider, price, gpus, bids, capacity, asks, eligible)
    matched = provider >= 0
    assert np.unique(price[matched]).size <= 1
    assert welfare_of(provider, gpus, bids, asks) == brute_force(
        gpus, bids, capacity, asks, eligible, uniform=True
    )
    check_maximal(provider, gpus, bids, capacity, asks, eligible, uniform=True)


# --- interruptible rentals -----------------------------------------------------------------

def test_interruptible_on_demand_outranks_then_highest_bids_run():
    running = interruptible_schedule(micro(300, 500, 0, 400), np.array([0, 0, 1, 0], bool), 2)
    assert running.tolist() == [False, True, True, False]


def test_interruptible_equal_bids_go_to_the_earlier_arrival():
    running = interruptible_schedule(micro(400, 400, 400), np.zeros(3, bool), 2)
    assert running.tolist() == [True, True, False]


def test_interruptible_multi_gpu_requests_without_backfilling():
    # The 500 bid needs 3 GPUs and 2 are left after the on-demand request: it and everything
    # ranked below it pause, so the 1-GPU 100 bid cannot jump the queue.
    running = interruptible_schedule(
        micro(0, 500, 100), np.array([True, False, False]), 4, gpus=micro(2, 3, 1)
    )
    assert running.tolist() == [True, False, False]


def test_a_higher_bid_arriving_pauses_the_lowest_running_bid():
    before = interruptible_schedule(micro(300, 400, 0), np.array([0, 0, 0], bool), 2)
    after = interruptible_schedule(micro(300, 400, 500), np.array([0, 0, 0], bool), 2)
    assert before.tolist() == [True, True, False]
    assert preempted(before, after).tolist() == [True, False, False]


def test_interruptible_rejects_bad_arguments():
    with pytest.raises(ValueError, match="on_demand"):
        interruptible_schedule(micro(1, 2), np.array([True]), 2)
    with pytest.raises(ValueError, match="gpus"):
        interruptible_schedule(micro(1), np.array([True]), 2, gpus=micro(0))
    with pytest.raises(ValueError, match="capacity"):
        interruptible_schedule(micro(1), np.array([True]), -1)


requests = st.lists(
    st.tuples(st.integers(0, 50), st.booleans(), st.integers(1, 4)), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(requests, st.integers(0, 16))
def test_interruptible_schedule_guarantees(reqs, capacity):
    bids = np.array([b for b, _, _ in reqs], dtype=np.int64)
    on_demand = np.array([d for _, d, _ in reqs], dtype=bool)
    gpus = np.array([g for _, _, g in reqs], dtype=np.int64)
    running = interruptible_schedule(bids, on_demand, capacity, gpus)
    assert running.dtype == bool and running.shape == bids.shape
    assert gpus[running].sum() <= capacity
    if (running & ~on_demand).any():
        assert running[on_demand].all()  # on-demand never paused while an interruptible runs
    for i, j in itertools.permutations(range(bids.size), 2):
        if running[j] and not running[i] and not on_demand[i] and not on_demand[j]:
            assert bids[i] < bids[j] or (bids[i] == bids[j] and i > j)
    def rank(i: int) -> tuple[bool, int, int]:
        return bool(not on_demand[i]), 0 if on_demand[i] else -int(bids[i]), i

    ranking = sorted(range(bids.size), key=rank)
    paused = [i for i in ranking if not running[i]]
    if paused:  # everything ranked above the first paused request runs, and it did not fit
        above = ranking[: ranking.index(paused[0])]
        assert running[above].all() and not running[ranking[len(above):]].any()
        assert gpus[above].sum() + gpus[paused[0]] > capacity


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), max_size=10), st.lists(st.booleans(), max_size=10))
def test_preempted_is_running_before_and_not_after(before, after):
    n = min(len(before), len(after))
    b, a = np.array(before[:n], bool), np.array(after[:n], bool)
    assert preempted(b, a).tolist() == [x and not y for x, y in zip(b, a, strict=True)]

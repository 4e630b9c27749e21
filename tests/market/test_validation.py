"""The textbook auction run through the real market agrees with auction theory, fee included,
and the check can fail: bidders who do not play the equilibrium, or who ignore the fee, are
caught."""

from __future__ import annotations

import pytest

from market import load_scenario
from market.experiments.validation import MARGIN_TOLERANCE_USD, run_textbook, validate
from market.scenario import ScenarioError


def test_first_and_second_price_agree_with_theory():
    rows = validate(bidders=(2, 5), auctions=1500, seed=3)
    assert [(r.mechanism, r.bidders) for r in rows] == [
        ("first_price", 2), ("first_price", 5), ("second_price", 2), ("second_price", 5)]
    for row in rows:
        assert row.auctions == 1500
        assert row.agrees, row
        assert row.efficiency == pytest.approx(1.0)
        assert row.ci_low < row.mean_price < row.ci_high
        # with the textbook's 20% take rate, theory prices the fee-grossed costs c / 0.8
        assert row.take_rate == 0.2
        assert row.theory_mean == pytest.approx(2 / (row.bidders + 1) / 0.8)
        # no winner keeps less than its cost after the fee (up to the micro-USD rounding)
        assert row.min_margin_usd_per_gpu_hour >= -MARGIN_TOLERANCE_USD
        # revenue equivalence: both mechanisms, same expected price for the same n
    by_n = {}
    for row in rows:
        by_n.setdefault(row.bidders, []).append(row)
    for first, second in by_n.values():
        assert first.theory_mean == second.theory_mean
        # first price trades variance for the same mean: its price varies less
        assert first.variance < second.variance


def test_the_check_catches_bidders_off_equilibrium():
    # truthful bidders under first price pay the lowest cost, 1/(n+1), not 2/(n+1)
    row = run_textbook("first_price", "truthful", 3, 1500, seed=5)
    assert not row.agrees
    assert row.mean_price < row.theory_mean


def test_the_check_catches_bidders_who_ignore_the_fee():
    """Truthful bidders bidding c, not c / 0.8, under second price: the prices are fee-free
    theory's, but a winner paid less than cost / 0.8 keeps less than its cost."""
    row = run_textbook("second_price", "truthful", 3, 600, seed=5,
                       overrides=("market.bids_net_of_fee=false",))
    assert row.theory_mean == pytest.approx(2 / 4)  # theory of the bids as placed
    assert row.min_margin_usd_per_gpu_hour < -0.01
    assert not row.agrees


def test_the_reserve_never_binds_at_the_top_of_the_cost_range():
    """Two bidders, U[0, 1], 20% fee: equilibrium bids (c + (1 − c)/2) / 0.8 are above 1
    whenever c > 0.6, both bidders' in 16% of auctions, so a reserve at the top of the cost
    range would leave those unfilled. The tenant's max price is 1 / 0.8 = 1.25, the bid at
    cost 1: every auction ends in a lease."""
    row = run_textbook("first_price", "equilibrium", 2, 800, seed=8)
    assert row.auctions == 800 and row.agrees


def test_textbook_scenario_is_validated():
    with pytest.raises(ScenarioError, match=r"textbook\.gpu_model"):
        load_scenario("textbook", ["textbook.gpu_model=nope"])
    with pytest.raises(ScenarioError, match="cost_low_usd_per_gpu_hour"):
        load_scenario("textbook", ["textbook.cost_low_usd_per_gpu_hour=2"])
    with pytest.raises(ScenarioError, match="textbook"):
        load_scenario("default", ["population=textbook"])
    with pytest.raises(ScenarioError, match=r"textbook\.deviator\.shading"):
        load_scenario("textbook", ["textbook.deviator={ shading = 0 }"])
    with pytest.raises(ScenarioError, match=r"textbook\.deviator"):
        load_scenario("textbook", ['textbook.deviator={ strategy = { name = "nope" } }'])

"""The textbook auction run through the real market agrees with auction theory, and the check
can fail: bidders who do not play the equilibrium are caught."""

from __future__ import annotations

import pytest

from market import load_scenario
from market.scenario import ScenarioError
from market.validation import run_textbook, validate


def test_first_and_second_price_agree_with_theory():
    rows = validate(bidders=(2, 5), auctions=1500, seed=3)
    assert [(r.mechanism, r.bidders) for r in rows] == [
        ("first_price", 2), ("first_price", 5), ("second_price", 2), ("second_price", 5)]
    for row in rows:
        assert row.auctions == 1500
        assert row.agrees, row
        assert row.efficiency == pytest.approx(1.0)
        assert row.ci_low < row.mean_price < row.ci_high
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


def test_textbook_scenario_is_validated():
    with pytest.raises(ScenarioError, match=r"textbook\.gpu_model"):
        load_scenario("textbook", ["textbook.gpu_model=nope"])
    with pytest.raises(ScenarioError, match="cost_low_usd_per_gpu_hour"):
        load_scenario("textbook", ["textbook.cost_low_usd_per_gpu_hour=2"])
    with pytest.raises(ScenarioError, match="textbook"):
        load_scenario("default", ["population=textbook"])

"""Tournaments: populations split fairly among strategies, seeds run in parallel give the same
leaderboard as in one process, and replicator dynamics favour the more profitable strategy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market import load_scenario
from market.scenario import ScenarioError
from market.tournament import evolve, play, split_counts, split_scenario

SHORT = ["duration_days=0.25", "tenants.arrivals_per_hour=40"]


@given(st.integers(0, 500), st.lists(st.floats(0.01, 10), min_size=1, max_size=6))
def test_split_counts_add_up_and_follow_shares(count, shares):
    parts = split_counts(count, shares)
    assert sum(parts) == count and min(parts) >= 0
    total = sum(shares)
    for part, share in zip(parts, shares, strict=True):
        assert abs(part - count * share / total) < 1  # largest remainder: off by < 1


def test_split_scenario_gives_every_strategy_the_same_archetype_mix():
    scenario = load_scenario("default")
    split = split_scenario(scenario, ["cost_plus", "undercut"])
    assert len(split.providers) == 2 * len(scenario.providers)
    for original in scenario.providers:
        parts = [p for p in split.providers if p.name.startswith(original.name + "/")]
        assert [p.strategy.name for p in parts] == ["cost_plus", "undercut"]
        assert sum(p.count for p in parts) == original.count
        assert max(p.count for p in parts) - min(p.count for p in parts) <= 1
        assert all(p.archetype == original.archetype and p.gpu_mix == original.gpu_mix
                   for p in parts)


def test_unknown_or_repeated_strategies_are_bad_input():
    scenario = load_scenario("default")
    with pytest.raises(ScenarioError, match="unknown strategy 'sniper'"):
        split_scenario(scenario, ["cost_plus", "sniper"])
    with pytest.raises(ScenarioError, match="each strategy once"):
        split_scenario(scenario, ["cost_plus", "cost_plus"])


def test_parallel_and_serial_leaderboards_are_identical():
    scenario = load_scenario("default", SHORT)
    serial = play(scenario, ["cost_plus", "truthful"], seeds=2, seed=3, workers=1)
    parallel = play(scenario, ["cost_plus", "truthful"], seeds=2, seed=3, workers=2)
    assert [s.to_dict() for s in serial] == [s.to_dict() for s in parallel]
    for standing in serial:
        mean, low, high = standing.profit_per_provider_usd
        assert low <= mean <= high
        assert 0 <= standing.win_rate[0] <= 1 and 0 <= standing.utilization[0] <= 1
    # bidding at cost wins at least as often as bidding cost plus a markup
    rates = {s.strategy: s.win_rate[0] for s in serial}
    assert rates["truthful"] >= rates["cost_plus"]


def test_learning_strategies_report_regret():
    scenario = load_scenario("default", SHORT)
    standings = {s.strategy: s for s in play(scenario, ["hedge", "cost_plus"], seeds=2,
                                             seed=5, workers=1)}
    assert standings["hedge"].regret is not None and not math.isnan(standings["hedge"].regret[0])
    assert standings["cost_plus"].regret is None


def test_evolution_moves_shares_toward_the_more_profitable_strategy():
    scenario = load_scenario("default", SHORT)
    history = evolve(scenario, ["cost_plus", "truthful"], generations=2, seeds=2, seed=2,
                     workers=1)
    assert len(history) == 2
    first, second = ({s.strategy: s for s in generation} for generation in history)
    assert first["cost_plus"].share == pytest.approx(0.5)
    assert sum(s.share for s in second.values()) == pytest.approx(1.0)
    better = max(first, key=lambda name: first[name].profit_per_provider_usd[0])
    assert second[better].share > 0.5

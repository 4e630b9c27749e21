"""Tournaments: every strategy gets the same hardware (drawn as in an ordinary run, dealt
stratified), keeps its population's parameters, is measured on the same seeds with paired
differences, and replicator dynamics move shares only on significant fitness gaps."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from agents.stratified import deal
from market import Market, load_scenario
from market.experiments.tournament import (
    evolve,
    leaderboard,
    parse_lineup,
    play,
    replicate,
    significant,
    split_counts,
    split_warnings,
    tournament_scenario,
)
from market.scenario import ScenarioError

SHORT = ["duration_days=0.25", "tenants.arrivals_per_hour=40"]


# ----------------------------------------------------------------------------- line-up

@given(st.integers(0, 500), st.lists(st.floats(0.01, 10), min_size=1, max_size=6))
def test_split_counts_add_up_and_follow_shares(count, shares):
    parts = split_counts(count, shares)
    assert sum(parts) == count and min(parts) >= 0
    total = sum(shares)
    for part, share in zip(parts, shares, strict=True):
        assert abs(part - count * share / total) < 1  # largest remainder: off by < 1


def test_line_up_takes_parameters_as_toml_inline_tables():
    assert parse_lineup(" cost_plus{markup=0.5, net_of_fee=true} , hedge,") == [
        {"name": "cost_plus", "params": {"markup": 0.5, "net_of_fee": True}},
        {"name": "hedge", "params": {}}]
    # commas inside a table or a string do not split the line-up
    assert parse_lineup('akash_script{gpu="h100=1500,a100=900"},truthful')[0]["params"] == {
        "gpu": "h100=1500,a100=900"}


@pytest.mark.parametrize(("text", "mention"), [
    ("cost_plus{markup=}", "parameters must be a TOML inline table"),
    ("cost_plus{markup=0.5}x", "expected NAME or NAME{param=value, ...}"),
    ("", "name at least one strategy"),
    ("cost_plus,sniper", "unknown strategy 'sniper'"),
    ("cost_plus,cost_plus", "each strategy once, got cost_plus twice"),
    ("cost_plus{markup=0.3},cost_plus{markup=0.3}", "each strategy once"),
    ("cost_plus{fee=1}", "unexpected keyword argument 'fee'"),
    ("cost_plus{markup=-1}", "markup must be >= 0"),
])
def test_bad_line_up_is_one_line_naming_the_option(text, mention):
    with pytest.raises(ScenarioError) as caught:
        tournament_scenario(load_scenario("default"), parse_lineup(text) if text else [text])
    message = str(caught.value)
    assert message.startswith("--strategies: ") and "\n" not in message
    assert mention in message


def test_one_strategy_with_different_parameters_competes_with_itself():
    split = tournament_scenario(load_scenario("default"),
                                ["cost_plus{markup=0.1}", "cost_plus{markup=0.9}"])
    assert split.tournament.labels() == ["cost_plus{markup=0.1}", "cost_plus{markup=0.9}"]


def markups(market: Market) -> dict[str, float | None]:
    """Each tournament part's strategy markup (None for strategies without one)."""
    result = {}
    for index, name in enumerate(market.pool.population_names):
        members = np.flatnonzero(market.pool.population == index)
        if members.size:
            strategy = market.strategies[int(market.strategy_of(members[:1])[0])]
            result[name] = getattr(strategy, "markup", None)
    return result


def test_populations_keep_their_own_parameters_under_those_given():
    scenario = load_scenario("default", [
        *SHORT, 'providers.0.strategy={ name = "cost_plus", params = { markup = 0.5 } }'])
    own = {p.name: p.strategy for p in scenario.providers}
    assert own["datacenter"].params["markup"] != own["home_rig"].params["markup"]
    bare = Market(tournament_scenario(scenario, ["cost_plus", "truthful"]), seed=1,
                  record=False)
    assert markups(bare) == {
        "datacenter/cost_plus": own["datacenter"].params["markup"],
        "home_rig/cost_plus": own["home_rig"].params["markup"],
        "hyperscaler/cost_plus": 0.3,   # its own strategy is list_price: cost_plus's default
        "datacenter/truthful": None, "home_rig/truthful": None, "hyperscaler/truthful": None}
    given_ = Market(tournament_scenario(scenario, ["cost_plus{markup=0.9}", "truthful"]),
                    seed=1, record=False)
    assert {name: m for name, m in markups(given_).items() if "cost_plus" in name} == {
        f"{p}/cost_plus{{markup=0.9}}": 0.9 for p in ("datacenter", "home_rig", "hyperscaler")}


# ----------------------------------------------------------------------------- the deal

@st.composite
def inventories(draw):
    count = draw(st.integers(0, 60))
    models = draw(st.lists(st.integers(0, 2), min_size=count, max_size=count))
    gpus = draw(st.lists(st.sampled_from([1, 2, 8]), min_size=count, max_size=count))
    costs = draw(st.lists(st.floats(0.01, 5.0), min_size=count, max_size=count))
    equal = draw(st.booleans())
    strategies = draw(st.integers(1, 5))
    shares = [1.0] * strategies if equal else draw(st.lists(
        st.floats(0.05, 1.0), min_size=strategies, max_size=strategies))
    return np.array(models), np.array(gpus), np.array(costs), shares


@settings(max_examples=150, deadline=None)
@given(inventories())
def test_deal_gives_each_strategy_its_share_of_every_stratum(inventory):
    models, gpus, costs, shares = inventory
    owners = deal(models, gpus, costs, shares)
    assert owners.tolist() == deal(models, gpus, costs, shares).tolist()  # draws nothing
    totals = split_counts(len(costs), shares)
    assert np.bincount(owners, minlength=len(shares)).tolist() == totals
    for stratum in set(zip(models.tolist(), gpus.tolist(), strict=True)):
        members = (models == stratum[0]) & (gpus == stratum[1])
        size = int(members.sum())
        counts = np.bincount(owners[members], minlength=len(shares))
        for k, got in enumerate(counts):
            fair = size * totals[k] // len(costs)
            assert fair <= got <= fair + 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 12), st.integers(0, 3))
def test_deal_spreads_cost_ranks_within_a_stratum(strategies, rounds, stratum):
    # One stratum of `rounds` × `strategies` providers, costs all different: each strategy
    # gets `rounds` of them. Dealt round-robin in cost order, strategy k's ranks would sum
    # to rounds·k more than strategy 0's; the rotation keeps the spread of the rank sums
    # within strategies²/4 however many rounds.
    size = rounds * strategies
    costs = np.linspace(1.0, 2.0, size)[::-1].copy()
    owners = deal(np.full(size, stratum), np.full(size, 8), costs, [1.0] * strategies)
    ranks = np.argsort(np.argsort(costs))
    sums = [int(ranks[owners == k].sum()) for k in range(strategies)]
    assert max(sums) - min(sums) <= strategies ** 2 / 4


def test_tournament_market_has_the_providers_of_an_ordinary_run():
    scenario = load_scenario("default", SHORT)
    split = tournament_scenario(scenario, ["cost_plus", "undercut", "truthful", "hedge"])
    for seed in (3, 4):
        ordinary = Market(scenario, seed=seed, record=False).pool
        dealt = Market(split, seed=seed, record=False).pool

        def inventory(pool):
            return Counter(zip(pool.names, pool.model.tolist(), pool.capacity[:, 0].tolist(),
                               pool.cost_basis_usd_per_gpu_hour.tolist(), strict=True))

        assert inventory(dealt) == inventory(ordinary)
        for original in scenario.providers:
            parts = [i for i, name in enumerate(dealt.population_names)
                     if name.startswith(f"{original.name}/")]
            members = [dealt.population == i for i in parts]
            gpus = [int(dealt.capacity[m, 0].sum()) for m in members]
            biggest = int(dealt.capacity[np.isin(dealt.population, parts), 0].max())
            # GPU totals differ by less than one machine; costs are dealt rank by rank
            assert max(gpus) - min(gpus) <= biggest, (original.name, gpus)


def test_uneven_populations_are_named_in_a_warning():
    scenario = load_scenario("default")  # 40 data centers, 300 home rigs, 7 hyperscalers
    (warning,) = split_warnings(tournament_scenario(
        scenario, ["cost_plus", "undercut", "truthful", "hedge"]))
    assert warning == ("population 'hyperscaler' cannot be split evenly: 7 providers among 4 "
                       "strategies: cost_plus 2, undercut 2, truthful 2, hedge 1")
    few = load_scenario("default", ["providers.2.count=3"])
    (warning,) = split_warnings(tournament_scenario(
        few, ["cost_plus", "undercut", "truthful", "hedge"]))
    assert warning == ("population 'hyperscaler' cannot be split evenly: 3 providers among 4 "
                       "strategies (fewer providers than strategies): cost_plus 1, undercut 1, "
                       "truthful 1, hedge 0")
    even = load_scenario("default", ["providers.2.count=4"])
    assert split_warnings(tournament_scenario(
        even, ["cost_plus", "undercut", "truthful", "hedge"])) == []
    # unequal shares: 40 and 300 split exactly at 50/25/25%, 7 hyperscalers do not
    (odd,) = split_warnings(tournament_scenario(scenario, ["cost_plus", "hedge", "truthful"],
                                                shares=[2, 1, 1]))
    assert odd == ("population 'hyperscaler' cannot be split evenly: 7 providers among 3 "
                   "strategies at shares 50.0%/25.0%/25.0%: cost_plus 3, hedge 2, truthful 2")


# ----------------------------------------------------------------------------- paired seeds

def seed_result(profit: float, providers: int = 1) -> dict[str, float]:
    return {"profit": profit, "providers": providers, "gpus": 8, "bids": 10, "wins": 1,
            "busy": 0.5 * 8, "regret": math.nan}


def test_paired_difference_is_the_t_interval_of_per_seed_differences():
    a = [10.0, 20.0, 30.0, 45.0]
    b = [11.0, 22.0, 33.0, 46.0]
    runs = [{"a": seed_result(x), "b": seed_result(y)} for x, y in zip(a, b, strict=True)]
    board = leaderboard(runs, ["a", "b"], [1, 1], "a", [1, 2, 3, 4])
    diffs = np.subtract(b, a)
    low, high = stats.t.interval(0.95, 3, loc=diffs.mean(), scale=stats.sem(diffs))
    vs = board["b"].vs_reference["profit_per_provider_usd"]
    assert vs == pytest.approx((diffs.mean(), low, high))
    assert board["a"].vs_reference == {}
    # b's own interval overlaps a's widely; the paired one excludes 0
    own_a, own_b = board["a"].profit_per_provider_usd, board["b"].profit_per_provider_usd
    assert own_b[1] < own_a[2] and significant(vs)
    # the market's mean profit per provider is the average of the two (one provider each)
    gap = np.subtract(b, np.add(a, b) / 2)
    assert board["b"].profit_vs_mean_usd[0] == pytest.approx(gap.mean())
    assert [s.strategy for s in board.standings] == ["b", "a"]


def test_replicator_moves_shares_only_on_significant_gaps():
    # both gaps significant: the exponential replicator rule
    moved = replicate([0.5, 0.5], [(10.0, 5.0, 15.0), (-10.0, -15.0, -5.0)], scale=20.0)
    assert moved == pytest.approx([math.exp(0.5) / (math.exp(0.5) + math.exp(-0.5)),
                                   math.exp(-0.5) / (math.exp(0.5) + math.exp(-0.5))])
    # neither significant: nothing moves
    assert replicate([0.3, 0.7], [(10.0, -1.0, 21.0), (-4.0, -9.0, 1.0)], 20.0) == \
        pytest.approx([0.3, 0.7])
    # one significant: it grows, the others keep their shares relative to each other
    one = replicate([0.2, 0.3, 0.5], [(10.0, 5.0, 15.0), (-2.0, -5.0, 1.0),
                                      (-3.0, -7.0, 1.0)], 10.0)
    assert one[0] > 0.2 and one[2] / one[1] == pytest.approx(0.5 / 0.3)
    assert sum(one) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- markets

def test_parallel_and_serial_leaderboards_are_identical():
    scenario = load_scenario("default", SHORT)
    serial = play(scenario, ["cost_plus", "truthful"], seeds=2, seed=3, workers=1)
    parallel = play(scenario, ["cost_plus", "truthful"], seeds=2, seed=3, workers=2)
    assert serial.to_dict() == parallel.to_dict()
    assert serial.reference == "cost_plus" and len(serial.seeds) == 2
    for standing in serial.standings:
        mean, low, high = standing.profit_per_provider_usd
        assert low <= mean <= high
        assert 0 <= standing.win_rate[0] <= 1 and 0 <= standing.utilization[0] <= 1
        assert standing.providers == sum(standing.providers_by_population.values())
    # bidding at cost wins at least as often as bidding cost plus a markup
    assert serial["truthful"].win_rate[0] >= serial["cost_plus"].win_rate[0]
    assert serial.warnings == [w for w in serial.warnings if "'hyperscaler'" in w]


def test_paired_differences_follow_the_chosen_reference():
    scenario = load_scenario("default", SHORT)
    board = play(scenario, ["cost_plus", "truthful"], seeds=3, seed=5, workers=1,
                 reference="truthful")
    there = board["cost_plus"].vs_reference["win_rate"]
    back = play(scenario, ["cost_plus", "truthful"], seeds=3, seed=5, workers=1)
    # the same seeds: swapping the reference flips the sign of every difference
    assert back["truthful"].vs_reference["win_rate"] == pytest.approx(
        (-there[0], -there[2], -there[1]))
    with pytest.raises(ScenarioError, match="--reference: expected one of the strategies"):
        play(scenario, ["cost_plus", "truthful"], seeds=2, reference="hedge")


def test_learning_strategies_report_regret():
    scenario = load_scenario("default", SHORT)
    board = play(scenario, ["hedge", "cost_plus"], seeds=2, seed=5, workers=1)
    assert board["hedge"].regret is not None and not math.isnan(board["hedge"].regret[0])
    assert board["cost_plus"].regret is None


def test_evolution_moves_shares_on_significant_gaps_only():
    scenario = load_scenario("default", SHORT)
    # The first keeps a margin on what it serves; the second never wins a lease. (Truthful
    # bidders keep only their cost: no better than never leasing.)
    lineup = ["cost_plus{markup=1.0}", "list_price{factor=50.0}"]
    history = evolve(scenario, lineup, generations=2, seeds=3, seed=2, workers=1)
    assert len(history) == 2 and history[0].lineup == lineup
    first, second = history
    assert [first[k].share for k in lineup] == pytest.approx([0.5, 0.5])
    profits = np.array([first[k].profit_per_provider_usd[0] for k in lineup])
    scale = abs(first.mean_profit_per_provider_usd[0]) + profits.std()
    expected = replicate([0.5, 0.5], [first[k].profit_vs_mean_usd for k in lineup], scale)
    assert [second[k].share for k in lineup] == pytest.approx(expected)
    # the gap between a strategy that leases and one that never does is significant
    assert significant(first[lineup[0]].profit_vs_mean_usd)
    assert second[lineup[0]].share > 0.5


def test_a_tournament_needs_the_default_population_and_stratified_needs_a_line_up():
    with pytest.raises(ScenarioError, match="population: a tournament deals the scenario's "
                                            "provider populations"):
        tournament_scenario(load_scenario("textbook"), ["truthful"])
    with pytest.raises(ScenarioError, match="field `tournament`: the stratified population "
                                            "needs a \\[tournament\\] table"):
        load_scenario("default", ['population="stratified"'])

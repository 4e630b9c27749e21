"""Entry and exit (`agents.entry_exit`): hand-computable exits and entries, the accounts of
providers that come and go, the long run against theory, validation and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.entry_exit import start_entry_exit
from agents.markups import CostPlus
from agents.providers import add_populations, gpu_costs, outside_provider
from market import Market, load_scenario
from market.budget import check_budget, estimate
from market.core.pool import ProviderRow
from market.core.resources import gpu_units
from market.errors import MarketError
from market.events import (
    LeaseClosed,
    LeaseCreated,
    ProviderEntered,
    ProviderExited,
    ProviderRecovered,
)
from market.scenario import ScenarioError
from market.units import SECONDS_PER_DAY, SECONDS_PER_HOUR

GIB = 2**30
DAY = SECONDS_PER_DAY


def _collect(market: Market, *kinds) -> list:
    events: list = []
    market.subscribe(events.append, kinds=kinds)
    return events


def _units(gpus: int, model: str):
    return gpu_units(gpus, (model,), cpu_millicores_per_gpu=1_000, memory_bytes_per_gpu=GIB,
                     storage_bytes_per_gpu=GIB)


def _row(market: Market, name: str, gpus: int, *, idle: float, fixed: float, marginal: float,
         churn_per_day: float = 0.0) -> ProviderRow:
    full = idle + fixed + marginal
    return ProviderRow(
        name=name, population=0, model=market.catalog.index("h100"), gpus=gpus,
        cpu_millicores=1_000 * gpus, memory_bytes=GIB * gpus, storage_bytes=GIB * gpus,
        ip_leases=0, storage_classes=("ephemeral", "beta2"), audited=True,
        cost_full_usd_per_gpu_hour=full, cost_marginal_usd_per_gpu_hour=marginal,
        cost_idle_usd_per_gpu_hour=idle, cost_fixed_usd_per_gpu_hour=fixed,
        cost_basis_usd_per_gpu_hour=full, churn_rate_per_s=churn_per_day / DAY,
        offline_s=(DAY, DAY))


# ----------------------------------------------------------------------------- exit

def test_a_provider_without_demand_exits_at_the_first_review_after_one_window():
    scenario = load_scenario("longrun", [
        "duration_days=40", "tenants.arrivals_per_hour=0.0001", "providers.0.count=2",
        "providers.0.failure_rate_per_day=0", "entry_exit.max_entrants=0"])
    market = Market(scenario, seed=1)
    exits = _collect(market, ProviderExited)
    result = market.run()

    assert result.summary["leases_created"] == 0  # no demand at all
    window_s = 28 * DAY  # reviews every 7 days, a window of 4 of them
    assert [(e.provider, e.time_s, e.decided_s) for e in exits] == \
        [(0, window_s, window_s), (1, window_s, window_s)]
    assert result.summary["entry_exit"]["exited"] == 2
    assert result.summary["entry_exit"]["providers_on_market"] == 0
    # Its costs ran until it left, not to the end of the run: all of them by hand.
    providers = result.providers.to_pylist()
    for row, p in zip(providers, range(2), strict=True):
        hours = window_s / SECONDS_PER_HOUR
        pool = market.pool
        assert row["exited_s"] == window_s and row["arrived_s"] == 0.0
        assert row["on_market_hours"] == pytest.approx(hours)
        assert row["capex_usd"] == pytest.approx(
            pool.cost_capex_usd_per_gpu_hour[p] * pool.capacity[p, 0] * hours)
        assert row["avoidable_cost_usd"] == pytest.approx(
            (pool.cost_idle_usd_per_gpu_hour[p] + pool.cost_fixed_usd_per_gpu_hour[p])
            * pool.capacity[p, 0] * hours)
        assert not market.pool.up[p]
    assert result.summary["money_conserved"]


def _hand_market(overrides: list[str]) -> Market:
    """The longrun rules with daily reviews of a one-day window, no fee gross-up, no
    manifest failures, and nobody in it: the test adds its providers and orders."""
    scenario = load_scenario("longrun", [
        "entry_exit.review_days=1", "entry_exit.window_days=1",
        'market.settlement="aep23"', "market.take_rate=0.2",
        "market.manifest_failure_prob=0", "providers.0.failure_rate_per_day=0", *overrides])
    return Market(scenario, seed=3, populate=False)


def _post(market: Market, gpus: int, work_days: float, max_price: float) -> int:
    tenant = market.add_tenant("t", 1e6)
    work_s = np.full(len(market.catalog), work_days * DAY)
    return market.post_order(tenant, _units(gpus, "h100"), max_price, deposit_usd=1e5,
                             work_s=work_s)


def test_a_losing_provider_stops_bidding_and_leaves_when_its_last_lease_ends():
    market = _hand_market(["duration_days=4", "entry_exit.max_entrants=0"])
    (provider,) = market.add_providers(
        [_row(market, "dc", 8, idle=0.2, fixed=0.6, marginal=0.2)],
        CostPlus(markup=0.0, net_of_fee=False))  # bids its full cost: the fee makes it lose
    start_entry_exit(market)
    leases = _collect(market, LeaseCreated, LeaseClosed)
    exits = _collect(market, ProviderExited)
    _post(market, 8, 2.5, 5.0)
    market.run(until=1.5 * DAY)
    # Retired at the first review (day 1) but still serving its lease: still on the market.
    assert market.reliability.retired(provider) and not market.pool.up[provider]
    assert market.on_market()[provider] and not exits
    _post(market, 8, 0.5, 5.0)  # it bids no more: this order finds nobody
    market.run()

    created, closed = [e for e in leases if isinstance(e, LeaseCreated)], \
        [e for e in leases if isinstance(e, LeaseClosed)]
    assert len(created) == 1 and len(closed) == 1 and closed[0].reason == "owner"
    (exit_event,) = exits
    assert exit_event.decided_s == 1 * DAY
    assert exit_event.time_s == closed[0].time_s == pytest.approx(created[0].time_s + 2.5 * DAY)
    assert market.exited_s[provider] == exit_event.time_s
    result = market.result()
    (row,) = result.providers.to_pylist()
    assert row["on_market_hours"] == pytest.approx(exit_event.time_s / SECONDS_PER_HOUR)
    assert result.summary["money_conserved"]


def test_failures_and_absences_never_bring_a_retired_provider_back():
    market = _hand_market(["duration_days=20", "entry_exit.max_entrants=0"])
    (rig,) = market.add_providers([_row(market, "rig", 1, idle=0.1, fixed=0.0, marginal=0.1,
                                        churn_per_day=2.0)], None)
    recovered = _collect(market, ProviderRecovered)
    exits = _collect(market, ProviderExited)
    while market.pool.up[rig]:  # until its owner takes it away
        market.env.step()
    away_at = market.now
    assert market.retire_provider(rig) is True  # no lease: gone at once
    with pytest.raises(MarketError, match="already leaving"):
        market.retire_provider(rig)
    market.run()
    assert not market.pool.up[rig]
    assert [e.provider for e in recovered if e.time_s >= away_at] == []
    assert [(e.provider, e.time_s) for e in exits] == [(rig, away_at)]
    # The absence under way when it left ends with its time on the market.
    (row,) = market.result().providers.to_pylist()
    assert row["on_market_hours"] <= away_at / SECONDS_PER_HOUR + 1e-9


def test_retire_provider_refuses_an_unknown_id():
    market = _hand_market(["duration_days=1"])
    with pytest.raises(MarketError, match="provider: unknown id 5"):
        market.retire_provider(5)


# ----------------------------------------------------------------------------- entry

def _one_busy_provider(hurdle: float, days: float = 3.5) -> tuple[Market, list, list, float]:
    """One 8-GPU H100 provider of the longrun population, kept busy by one 3-day job from
    the start; reviews daily over a one-day window; entrants take 2 days to arrive. Returns
    the market run to day 3.5, its lease and entry events, and the expected long-run profit
    over full cost that the first review sees, computed here by hand."""
    market = _hand_market([
        f"duration_days={days}", "providers.0.count=1", "providers.0.gpu_mix={h100=1.0}",
        "providers.0.gpus_per_provider=[8, 8]", f"entry_exit.hurdle={hurdle}",
        "entry_exit.investment_lag_days=2", "entry_exit.max_entrants_per_review=5"])
    add_populations(market)
    start_entry_exit(market)
    leases = _collect(market, LeaseCreated)
    entries = _collect(market, ProviderEntered)
    _post(market, 8, 3.0, 20.0)
    market.run()
    (lease,) = leases
    # The first review (day 1): the window's mean price is this lease's, its utilization
    # the share of the day its GPUs ran; an entrant's costs at the middle of its
    # electricity range.
    price = lease.price_micro_per_hour / lease.gpus / 1e6
    utilization = (DAY - lease.time_s) / DAY
    population = market.scenario.providers[0]
    low, high = population.electricity_usd_per_kwh
    costs = gpu_costs(market.catalog, "h100", population, (low + high) / 2)
    profit = price * (1 - 0.2) * utilization - (
        costs["capex"] + costs["fixed"] + costs["idle"] + costs["marginal"] * utilization)
    return market, leases, entries, profit / costs["full"]


def test_an_entrant_arrives_lag_days_after_the_review_that_saw_profit_above_the_hurdle():
    _, _, _, ratio = _one_busy_provider(0.0)
    market, _, entries, same = _one_busy_provider(max(ratio - 0.01, 0.0))
    assert same == ratio > 0.01  # cost plus a markup of 1 on full cost: well above
    (entry,) = entries  # one review with a price: the first (no lease starts later)
    assert entry.committed_s == 1 * DAY
    assert entry.time_s == 3 * DAY  # the review, then two days of investment lag
    assert entry.population == "datacenters" and entry.gpu_model == "h100"
    assert entry.provider == 1 and market.arrived_s[1] == 3 * DAY
    assert market.pool.names[1] == "datacenters-1"
    summary = market.result().summary
    assert summary["entry_exit"]["entered"] == 1
    assert summary["entry_exit"]["providers_on_market"] == 2
    # The entrant's costs count from its arrival, not from the start of the run.
    row = market.result().providers.to_pylist()[1]
    assert row["on_market_hours"] == pytest.approx(0.5 * 24)
    assert row["capex_usd"] == pytest.approx(
        market.pool.cost_capex_usd_per_gpu_hour[1] * market.pool.capacity[1, 0] * 12)


def test_a_window_without_a_new_lease_judges_by_the_last_price():
    # The second review's window (day 1 to 2) has no lease starting: its GPUs are all on the
    # 3-day lease. It keeps the first window's price, at full utilization: a higher return,
    # which clears a hurdle that the first review's did not.
    market, leases, _, first = _one_busy_provider(0.0)
    price = leases[0].price_micro_per_hour / leases[0].gpus / 1e6
    population = market.scenario.providers[0]
    low, high = population.electricity_usd_per_kwh
    full = gpu_costs(market.catalog, "h100", population, (low + high) / 2)["full"]
    second = (price * (1 - 0.2) - full) / full
    assert second > first
    market, _, entries, _ = _one_busy_provider((first + second) / 2, days=4.5)
    (entry,) = entries
    assert (entry.committed_s, entry.time_s) == (2 * DAY, 4 * DAY)


def test_no_entry_when_the_expected_profit_is_below_the_hurdle():
    _, _, _, ratio = _one_busy_provider(0.0)
    market, _, entries, _ = _one_busy_provider(ratio + 0.01)
    assert entries == []
    assert market.result().summary["entry_exit"]["entered"] == 0
    assert market.pool.n == 1


# ----------------------------------------------------------------------------- accounts

def test_an_outside_provider_joining_mid_run_is_charged_from_its_arrival():
    market = Market(load_scenario("default", ["duration_days=0.5"]), seed=2)
    market.run(until=0.2 * DAY)
    provider = outside_provider(market, "late", "datacenter", "h100", 8, 100.0)
    market.run()
    row = market.result().providers.to_pylist()[provider]
    hours = 0.3 * 24
    assert row["arrived_s"] == pytest.approx(0.2 * DAY) and row["exited_s"] is None
    assert row["on_market_hours"] == pytest.approx(hours)
    assert row["capex_usd"] == pytest.approx(
        market.pool.cost_capex_usd_per_gpu_hour[provider] * 8 * hours)


# ----------------------------------------------------------------------------- the long run

def _profit_per_gpu_hour(overrides: list[str], seed: int) -> np.ndarray:
    scenario = load_scenario("longrun", [
        "duration_days=140", "tenants.arrivals_per_hour=2", *overrides])
    result = Market(scenario, seed=seed, record=False).run()
    assert result.summary["money_conserved"]
    return result.entry_exit.column("long_run_profit_usd_per_gpu_hour").to_numpy()


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error, widened for the weekly values' autocorrelation (lag one:
    a review's window overlaps the last ones)."""
    centred = values - values.mean()
    rho = float(np.clip((centred[1:] * centred[:-1]).sum() / (centred**2).sum(), 0, 0.9))
    se = values.std(ddof=1) / math.sqrt(values.size) * math.sqrt((1 + rho) / (1 - rho))
    return float(values.mean()), se


# Without sunk costs (servers rented by the hour, so every cost is avoidable) free entry and
# exit leave zero long-run profit; a market that starts with too few providers (2) or too
# many (24) gets there.
NO_SUNK_COSTS = ["providers.0.count_capex=false", "providers.0.ops_usd_per_gpu_hour=0.85"]


@pytest.mark.parametrize("count", [2, 24])
def test_without_sunk_costs_long_run_profit_settles_at_zero(count):
    profit = _profit_per_gpu_hour([*NO_SUNK_COSTS, f"providers.0.count={count}"], seed=1)
    start = profit[:4].mean()
    late, se = _mean_and_error(profit[len(profit) // 2:])
    assert abs(late) < 3 * se, (late, se)
    assert abs(late) < abs(start), (late, start)


def test_with_sunk_capex_profit_settles_between_minus_capex_and_the_hurdle():
    # Capex is sunk: incumbents stay while they cover their avoidable costs, so long-run
    # profit may rest below zero, but no lower than minus capex (they would leave) and no
    # higher than the hurdle (entrants would come): the band of entry and exit with sunk
    # costs. From too many providers it rises into it.
    profit = _profit_per_gpu_hour(["providers.0.count=24"], seed=1)
    scenario = load_scenario("longrun")
    population = scenario.providers[0]
    capexes = [gpu_costs(scenario.catalog(), model, population, 0.08)["capex"]
               for model in population.gpu_mix]
    capex = max(capexes)
    start = profit[:4].mean()
    late, se = _mean_and_error(profit[len(profit) // 2:])
    # Far too many: barely anyone busy, so a GPU loses at least the capex of the cheapest
    # model of the mix (and its operations and idle power besides).
    assert start < -min(capexes)
    assert -capex - 3 * se < late < scenario.entry_exit.hurdle + 3 * se
    assert abs(late) < abs(start)


# ----------------------------------------------------------------------------- edges

@pytest.mark.parametrize(("override", "field"), [
    ("entry_exit.window_days=10", "entry_exit.window_days"),
    ("entry_exit.review_days=0", "entry_exit.review_days"),
    ("entry_exit.hurdle=-0.5", "entry_exit.hurdle"),
    ("entry_exit.investment_lag_days=400", "entry_exit.investment_lag_days"),
    ("entry_exit.entrants=[\"nobody\"]", "entry_exit.entrants"),
    ("entry_exit.exiters=[\"nobody\"]", "entry_exit.exiters"),
    ("entry_exit.max_entrants=-1", "entry_exit.max_entrants"),
    ("entry_exit.max_entrants_per_review=1.5", "entry_exit.max_entrants_per_review"),
    ("entry_exit.lag=3", "entry_exit.lag"),
])
def test_bad_fields_are_one_line_naming_the_field(override, field):
    with pytest.raises(ScenarioError) as error:
        load_scenario("longrun", [override])
    message = str(error.value)
    assert f"`{field}`" in message and "\n" not in message


def test_off_by_default_and_same_seed_same_bytes():
    assert load_scenario("default").entry_exit is None
    runs = [Market(load_scenario("longrun", ["duration_days=49"]), seed=4, record=False).run()
            for _ in range(2)]
    assert runs[0].to_json() == runs[1].to_json()
    assert runs[0].entry_exit.equals(runs[1].entry_exit)
    assert runs[0].summary["entry_exit"]["entered"] > 0
    # A notebook shows the rules with the scenario and the counts with the result.
    assert "every 7 days, of the last 28 days" in load_scenario("longrun")._repr_html_()
    assert "Entry and exit" not in load_scenario("default")._repr_html_()
    assert "on market at the end" in runs[0]._repr_html_()


def test_only_the_named_populations_enter_and_exit():
    scenario = load_scenario("longrun", [
        "duration_days=63", "providers.0.count=24",
        "entry_exit.exiters=[]", "entry_exit.entrants=[]"])
    summary = Market(scenario, seed=1, record=False).run().summary["entry_exit"]
    assert summary["entered"] == summary["exited"] == 0
    assert summary["providers_on_market"] == 24


def test_the_budget_counts_the_entrants_a_run_may_add():
    small = estimate(load_scenario("longrun"))
    grown = load_scenario("longrun", ["entry_exit.max_entrants=100000"])
    assert estimate(grown).providers == small.providers - 100 + 100_000
    with pytest.raises(ScenarioError, match=r"^entry_exit\.max_entrants: the run would"):
        check_budget(grown)


def test_a_population_with_no_provider_yet_enters_with_its_own_strategy():
    # A second population with none at the start: its H100s are judged by the incumbents'.
    scenario = load_scenario("longrun", [
        "duration_days=56", "entry_exit.entrants=[\"newcomers\"]",
        'providers=[{name="datacenters", archetype="datacenter", count=4, '
        'gpu_mix={h100=1.0}, gpus_per_provider=[8, 16], '
        'strategy={name="cost_plus", params={markup=1.0}}}, '
        '{name="newcomers", archetype="datacenter", count=0, gpu_mix={h100=1.0}, '
        'gpus_per_provider=[8, 8], strategy={name="cost_plus", params={markup=0.8}}}]'])
    market = Market(scenario, seed=1, record=False)
    entries = _collect(market, ProviderEntered)
    market.run()
    assert entries and {e.population for e in entries} == {"newcomers"}
    first = entries[0].provider
    strategy = market.strategies[int(market.strategy_of(np.array([first]))[0])]
    assert isinstance(strategy, CostPlus) and strategy.markup == 0.8
    assert market.pool.names[first] == "newcomers-0"

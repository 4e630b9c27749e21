"""The run budget (market/budget.py): estimates against real runs, refusals that name the field
that drives the cost, and every built-in scenario and sweep well within the limits."""

from __future__ import annotations

import time

import pytest

from market import budget
from market.budget import MAX_EVENTS, MAX_MEMORY_BYTES, check_budget, estimate
from market.builder import Market
from market.events import EVENT_TYPES
from market.experiments.sweep import builtin_sweeps, load_sweep
from market.scenario import ScenarioError, builtin_scenarios, load_scenario

#: How far an estimate may be from the run it estimates (the module docstring's claim).
FACTOR = 2.0


def measured(scenario) -> tuple[int, int, int]:
    """(jobs, orders, engine events) of one real run, seed 1."""
    market = Market(scenario, seed=1, record=False)
    events = [0]

    def count(_event) -> None:
        events[0] += 1

    market.subscribe(count, kinds=EVENT_TYPES)
    summary = market.run().summary
    return summary["jobs_posted"], summary["orders_posted"], events[0]


# Short runs: whether a demand spike falls in them is luck (seed 1 puts one in bench's first
# day), so the bench day is estimated and run without spikes.
@pytest.mark.parametrize("name, overrides", [
    ("default", ["duration_days=2"]),
    ("bench", ["duration_days=1", "tenants.spikes.per_week=0"]),
])
def test_estimate_within_a_factor_of_a_real_run(name: str, overrides: list[str]) -> None:
    scenario = load_scenario(name, overrides)
    guess = estimate(scenario)
    jobs, orders, events = measured(scenario)
    for what, estimated, actual in (("jobs", guess.jobs, jobs), ("orders", guess.orders, orders),
                                    ("events", guess.events, events)):
        assert actual / FACTOR <= estimated <= actual * FACTOR, (what, estimated, actual)


def test_estimate_is_cheap_and_grows_with_what_drives_cost() -> None:
    scenario = load_scenario("default")
    started = time.perf_counter()
    base = estimate(scenario)
    assert time.perf_counter() - started < 0.05
    longer = estimate(load_scenario("default", ["duration_days=14"]))
    busier = estimate(load_scenario("default", ["tenants.arrivals_per_hour=96"]))
    spiky = estimate(load_scenario("default", ["tenants.spikes.multiplier=50"]))
    growing = estimate(load_scenario("default", ["tenants.weekly_growth=1"]))
    assert longer.jobs == pytest.approx(2 * base.jobs, rel=0.05)
    assert busier.jobs == pytest.approx(2 * base.jobs, rel=1e-9)
    assert spiky.jobs > base.jobs and growing.jobs > base.jobs
    assert growing.jobs == pytest.approx(base.jobs / 0.6931471805599453, rel=0.05)  # 1/ln 2
    more = estimate(load_scenario("default", ["providers.1.count=3000"]))
    assert more.pairs > base.pairs and more.memory_bytes > base.memory_bytes
    fine = estimate(load_scenario("default", ["market.withdraw_interval_s=60"]))
    assert fine.ticks > base.ticks and fine.events > base.events


def test_textbook_estimate_counts_auctions_and_bidders() -> None:
    guess = estimate(load_scenario("textbook", ["textbook.auctions=3000", "textbook.bidders=7"]))
    assert guess.orders == 3000 and guess.pairs == 3000 * 7 and guess.tenants == 1


@pytest.mark.parametrize("name", builtin_scenarios())
def test_builtin_scenarios_pass_with_margin(name: str) -> None:
    found = check_budget(load_scenario(name))
    assert found.events < MAX_EVENTS / 5 and found.memory_bytes < MAX_MEMORY_BYTES / 4


@pytest.mark.parametrize("name", builtin_sweeps())
def test_builtin_sweeps_pass_with_margin(name: str) -> None:
    sweep = load_sweep(name)
    for point in sweep.points:
        scenario = load_scenario(sweep.base, values={**sweep.fixed, **point}, label="sweep")
        assert check_budget(scenario).events < MAX_EVENTS / 5


@pytest.mark.parametrize("overrides, field, says", [
    (["tenants.arrivals_per_hour=20000"], "tenants.arrivals_per_hour", "orders"),
    (["providers.1.count=100000", "duration_days=14"], "providers.1.count", "pairs"),
    (["market.withdraw_interval_s=60", "duration_days=365"], "market.withdraw_interval_s",
     "raise it"),
    (["market.mechanism=batch_clearing", "market.mechanism_params={interval_s=0.01}"],
     "market.mechanism_params.interval_s", "raise it"),
    (["tenants.weekly_growth=10", "duration_days=365"], "tenants.weekly_growth", "orders"),
    (["tenants.spikes.multiplier=100", "tenants.spikes.per_week=100"],
     "tenants.spikes.per_week", "orders"),
    (["duration_days=365", "tenants.arrivals_per_hour=300"], "tenants.arrivals_per_hour",
     "orders"),
])
def test_refusal_names_the_field_that_drives_the_cost(overrides: list[str], field: str,
                                                      says: str) -> None:
    scenario = load_scenario("default", overrides)
    with pytest.raises(ScenarioError) as refused:
        check_budget(scenario)
    message = str(refused.value)
    assert message.startswith(f"{field}: the run would ")
    assert says in message and "--allow-large" in message and "\n" not in message
    assert check_budget(scenario, allow_large=True).events > MAX_EVENTS


def test_memory_refusal_names_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "MAX_MEMORY_BYTES", 200e6)
    with pytest.raises(ScenarioError, match=r"^tenants\.count: the run would hold about "
                                            r"[0-9.]+ GB \(limit 0\.2 GB\)"):
        check_budget(load_scenario("default", ["tenants.count=1000000"]))


def test_about_ten_minutes_of_work_is_refused() -> None:
    """MAX_EVENTS sits below ten minutes of the reference machine, well above the bench."""
    assert MAX_EVENTS * 80e-6 < 600
    assert estimate(load_scenario("bench")).events * 5 < MAX_EVENTS


def test_a_demand_curve_draws_up_to_its_cap_in_candidates() -> None:
    fixed = estimate(load_scenario("default"))
    elastic = estimate(load_scenario("default", ["tenants.price_elasticity=1",
                                                 "tenants.max_demand_multiplier=3"]))
    assert elastic.candidates == pytest.approx(3 * fixed.candidates, rel=1e-12)
    assert elastic.jobs == fixed.jobs  # the jobs at the reference price
    inert = estimate(load_scenario("default", ["tenants.max_demand_multiplier=3"]))
    assert inert.candidates == fixed.candidates  # no elasticity, no curve

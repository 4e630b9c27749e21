"""The default week shows what the README says it shows ("What the default market shows"):
each claim is checked on the run `make run` makes (seed 1)."""

from __future__ import annotations

import pytest

from market import Market, load_scenario

#: Observed 2025-26 mean prices, USD per GPU-hour (DOMAIN's price trackers).
OBSERVED = {"h100": (1.5, 3.0), "a100-80gb": (1.0, 1.8), "rtx4090": (0.3, 0.5)}


@pytest.fixture(scope="module")
def week():
    scenario = load_scenario("default")
    return scenario, Market(scenario, seed=1, record=False).run().summary


def test_every_archetype_covers_its_avoidable_costs(week):
    _, summary = week
    for archetype, row in summary["providers"].items():
        assert row["short_run_profit_usd"] >= 0, archetype


def test_every_gpu_model_trades(week):
    scenario, summary = week
    sold = {gpu for population in scenario.providers
            for gpu, share in population.gpu_mix.items() if share > 0}
    assert sold == set(scenario.catalog().ids)  # Trainium2 only from the hyperscalers
    for gpu in sold:
        assert summary["price_usd_per_gpu_hour"][gpu]["count"] > 0, gpu


def test_the_hyperscalers_sell_spare_capacity_here_at_a_profit(week):
    _, summary = week
    hyperscalers = summary["providers"]["hyperscaler"]
    assert hyperscalers["short_run_profit_usd"] > 0
    sides = summary["welfare"]["outside_surplus_by_side_usd"]
    assert sides["tenants"] > 0 and sides["hyperscalers"] > 0
    assert sum(sides.values()) == pytest.approx(summary["welfare"]["outside_surplus_usd"])


def test_prices_fall_in_the_observed_ranges_and_disperse(week):
    _, summary = week
    prices = summary["price_usd_per_gpu_hour"]
    for gpu, (low, high) in OBSERVED.items():
        assert low <= prices[gpu]["mean"] <= high, gpu
    assert prices["h100"]["cv"] >= 0.05


def test_welfare_adds_up(week):
    _, summary = week
    assert summary["welfare"]["identity_holds"] and summary["money_conserved"]

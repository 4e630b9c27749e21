"""The plug-in registry: built-ins found through entry points, one-line errors for unknown
names, and `register` making a new strategy usable by name in a scenario."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agents.markups import CostPlus, ListPrice
from agents.populate import populate
from market import Market, ScenarioError, load_scenario, registry
from market.mechanisms.rules import FirstPrice, SecondPrice, TenantPick
from market.registry import UnknownName


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(registry, "_registered",
                        {group: dict(known) for group, known in registry._registered.items()})
    return monkeypatch


def test_builtin_names_are_known():
    assert {"tenant_pick", "first_price", "second_price"} <= set(registry.names("mechanisms"))
    assert {"cost_plus", "list_price"} <= set(registry.names("strategies"))
    assert "default" in registry.names("populations")
    for group in registry.GROUPS:
        known = registry.names(group)
        assert known == sorted(known)


@pytest.mark.parametrize(("group", "name", "expected"), [
    ("mechanisms", "tenant_pick", TenantPick),
    ("mechanisms", "first_price", FirstPrice),
    ("mechanisms", "second_price", SecondPrice),
    ("strategies", "cost_plus", CostPlus),
    ("strategies", "list_price", ListPrice),
    ("populations", "default", populate),
])
def test_load_returns_the_builtin_objects(group, name, expected):
    assert registry.load(group, name) is expected


@pytest.mark.parametrize(("group", "noun"), [
    ("mechanisms", "mechanism"), ("strategies", "strategy"), ("populations", "population")])
def test_unknown_name_raises_a_one_line_error_listing_the_known_names(group, noun):
    with pytest.raises(UnknownName) as caught:
        registry.load(group, "no_such_thing")
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in message
    assert message.startswith(f"unknown {noun} 'no_such_thing'")
    for name in registry.names(group):
        assert name in message


@pytest.mark.parametrize("call", [
    lambda: registry.names("plugins"),
    lambda: registry.load("plugins", "tenant_pick"),
    lambda: registry.register("plugins", "x", object()),
])
def test_unknown_group_raises_value_error(call):
    with pytest.raises(ValueError, match="mechanisms, strategies, populations") as caught:
        call()
    assert not isinstance(caught.value, UnknownName)


def test_registered_name_is_listed_and_loaded(scratch_registry):
    marker = object()
    registry.register("mechanisms", "my_test_mechanism", marker)
    assert "my_test_mechanism" in registry.names("mechanisms")
    assert registry.load("mechanisms", "my_test_mechanism") is marker
    assert "my_test_mechanism" not in registry.names("strategies")


def test_registration_takes_precedence_over_entry_points(scratch_registry):
    marker = object()
    registry.register("strategies", "cost_plus", marker)
    assert registry.load("strategies", "cost_plus") is marker
    assert registry.names("strategies").count("cost_plus") == 1


PRICE_USD_PER_GPU_HOUR = 0.5


class HalfDollar:
    """Bids 0.5 USD per GPU-hour on every order.

    Takes any parameters: setting only `providers.0.strategy.name` keeps the datacenter
    preset's `params` (markup = 0.5), which are then passed to the new strategy.
    """

    def __init__(self, **params: object) -> None:
        self.params = params

    def prices(self, order, providers, view) -> np.ndarray:
        return np.full(len(providers), PRICE_USD_PER_GPU_HOUR)  # USD per GPU-hour


def test_registered_strategy_is_usable_by_name_in_a_scenario(scratch_registry):
    with pytest.raises(ScenarioError, match="unknown strategy 'my_test_strategy'") as caught:
        load_scenario("default", ["providers.0.strategy.name=my_test_strategy"])
    assert "\n" not in str(caught.value)
    assert all(name in str(caught.value) for name in registry.names("strategies"))
    registry.register("strategies", "my_test_strategy", HalfDollar)
    scenario = load_scenario("default", ["providers.0.strategy.name=my_test_strategy",
                                         "duration_days=0.1"])
    market = Market(scenario, seed=0)
    used = [s for s in market.strategies if isinstance(s, HalfDollar)]
    assert len(used) == 1
    result = market.run()
    population = scenario.providers[0].name
    leases = result.leases.to_pylist()
    ours = [lease for lease in leases if lease["population"] == population]
    assert ours, "the datacenter population won no lease"
    assert all(lease["price_usd_per_gpu_hour"] == pytest.approx(PRICE_USD_PER_GPU_HOUR)
               for lease in ours)
    assert all(lease["price_usd_per_gpu_hour"] != pytest.approx(PRICE_USD_PER_GPU_HOUR)
               for lease in leases if lease["population"] != population)
    assert result.summary["money_conserved"]
    # The registration is gone once the test's monkeypatching is undone.
    scratch_registry.undo()
    assert "my_test_strategy" not in registry.names("strategies")
    with pytest.raises(UnknownName):
        registry.load("strategies", "my_test_strategy")


def test_an_installed_package_adds_a_strategy_by_entry_point(installed_strategy):
    """A package installed next to gpumarket (here: a module and its dist-info on the path,
    which is what an install leaves) is found by name, from a fresh process, in a
    tournament: the README's walkthrough, end to end."""
    env = installed_strategy(
        "halfway_to_list",
        "from market.strategy import PerProvider\n\n\n"
        "class HalfwayToList(PerProvider):\n"
        "    def bid(self, order, me, view):\n"
        "        ask = (me.cost_basis_usd_per_gpu_hour + view.list_price(me.gpu_model)) / 2\n"
        "        return ask if ask <= order.max_price_usd_per_gpu_hour else None\n",
        "HalfwayToList")
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "tournament", "--strategies",
         "halfway_to_list,cost_plus", "--seeds", "2", "--workers", "1", "--json",
         "--set", "duration_days=0.25"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    standings = {row["strategy"]: row for row in json.loads(done.stdout)["standings"]}
    assert set(standings) == {"halfway_to_list", "cost_plus"}
    # Halfway to the list price is far above cost plus 30%: it should win less often.
    assert (standings["halfway_to_list"]["win_rate"]["mean"]
            < standings["cost_plus"]["win_rate"]["mean"])

"""market.scenario_toml: a scenario written as a standalone TOML file reads back equal, for
every built-in scenario and for one with awkward values (quotes, unicode, overrides deep in
lists)."""

from __future__ import annotations

import pytest

from market import load_scenario
from market.scenario import builtin_scenarios
from market.scenario_toml import scenario_toml


@pytest.mark.parametrize("name", builtin_scenarios())
def test_built_in_scenarios_read_back_equal(tmp_path, name):
    scenario = load_scenario(name)
    path = tmp_path / "written.toml"
    path.write_text(scenario_toml(scenario, "a comment\non two lines"), encoding="utf-8")
    assert load_scenario(str(path)) == scenario


def test_awkward_values_read_back_equal(tmp_path):
    scenario = load_scenario("default", [
        'description="quotes \\" and \\\\ and ünïcode"', "market.take_rate=0.1234567890123",
        "providers.1.strategy.params.markup=2.5", "tenants.max_price_factor=[0.25, 0.5]"])
    path = tmp_path / "written.toml"
    text = scenario_toml(scenario)
    path.write_text(text, encoding="utf-8")
    assert text.startswith('base = ""')
    assert load_scenario(str(path)) == scenario

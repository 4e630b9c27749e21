"""Every scenario and catalog field bounded; every engine loop guarded against spinning.

Each hang once seen from outside (issue 13) is here: the value is now refused up front, by the
scenario's bounds, the run budget or an engine guard, or the run finishes promptly."""

from __future__ import annotations

import math
import time
from importlib import resources

import numpy as np
import pytest

from market import Market, MarketError
from market.budget import check_budget
from market.catalog import BOUNDS, CatalogError, GpuCatalog, load_catalog
from market.core import clock
from market.core.pool import ProviderRow
from market.core.reliability import MIN_CYCLE_S
from market.scenario import (
    MAX_NESTING,
    MarketRules,
    Scenario,
    ScenarioError,
    load_scenario,
    scenario_from_toml,
    scenario_schema,
)

#: Seconds any refusal may take: no loading, building or running behind it.
PROMPT_S = 2.0


def refused(*overrides: str, budget: bool = True) -> str:
    """The one-line refusal of the default scenario with `overrides` (bounds or budget)."""
    started = time.perf_counter()
    with pytest.raises(ScenarioError) as error:
        scenario = load_scenario("default", list(overrides))
        if budget:
            check_budget(scenario)
    assert time.perf_counter() - started < PROMPT_S
    message = str(error.value)
    assert "\n" not in message and len(message) < 400
    return message


# ----------------------------------------------------------------------------- the schema

def _leaf_numbers(schema: dict, defs: dict, path: str = "") -> list[tuple[str, dict]]:
    """Every number or integer in the schema, with its dotted path."""
    found = []
    stack = [(schema, path)]
    while stack:
        node, where = stack.pop()
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if "anyOf" in node:
            stack.extend((option, where) for option in node["anyOf"])
            continue
        if node.get("type") in ("number", "integer"):
            found.append((where, node))
        for key, child in node.get("properties", {}).items():
            stack.append((child, f"{where}.{key}".lstrip(".")))
        for index, child in enumerate(node.get("prefixItems", [])):
            stack.append((child, f"{where}.{index}"))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                stack.append((node[key], f"{where}.*"))
    return found


def test_every_number_in_the_schema_has_a_finite_range() -> None:
    schema = scenario_schema()
    numbers = _leaf_numbers(schema, schema.get("$defs", {}))
    assert len(numbers) > 80  # the walk reached the whole schema
    for where, node in numbers:
        low = node.get("minimum", node.get("exclusiveMinimum"))
        high = node.get("maximum", node.get("exclusiveMaximum"))
        assert low is not None and high is not None, where
        assert math.isfinite(low) and math.isfinite(high) and low < high, where


@pytest.mark.parametrize("override, field, valid", [
    ("tenants.spikes.multiplier=1e300", "tenants.spikes.multiplier", "> 0|>= 1 and <= 100"),
    ("tenants.weekly_growth=1e300", "tenants.weekly_growth", "> -1 and <= 10"),
    ("tenants.arrivals_per_hour=1e12", "tenants.arrivals_per_hour", "> 0 and <= 100,000"),
    ("duration_days=1e9", "duration_days", "> 0 and <= 365"),
    ("duration_days=1e300", "duration_days", "> 0 and <= 365"),
    ("market.withdraw_interval_s=1e-9", "market.withdraw_interval_s", ">= 60"),
    ("market.price_index_interval_s=1e-9", "market.price_index_interval_s", ">= 60"),
    ("providers.1.count=2000000", "providers.1.count", ">= 0 and <= 100,000"),
    ("tenants.count=1e8", "tenants.count", "<= 1,000,000"),
    ("tenants.count=100000000", "tenants.count", "<= 1,000,000"),
    ("tenants.deposit_factor=1e300", "tenants.deposit_factor", "> 0 and <= 100"),
    ("providers.1.gpus_per_provider=[1e9, 1e9]", "providers.1.gpus_per_provider.0",
     ">= 1 and <= 4,096"),
    ("providers.0.failure_rate_per_day=1e9", "providers.0.failure_rate_per_day",
     ">= 0 and <= 1,440"),
    ("tenants.arrivals_per_hour=nan", "tenants.arrivals_per_hour", "<= 100,000"),
    ("tenants.arrivals_per_hour=-inf", "tenants.arrivals_per_hour", "<= 100,000"),
    ("market.bid_timeout_s=1e-9", "market.bid_timeout_s", ">= 1"),
    ("tenants.jobs.training.tokens_b=[1, 1e308]", "tenants.jobs.training.tokens_b.1",
     "<= 10,000,000"),
])
def test_out_of_range_values_are_refused_naming_field_and_range(override: str, field: str,
                                                                valid: str) -> None:
    message = refused(override, budget=False)
    assert f"field `{field}`: expected " in message
    assert any(part in message for part in valid.split("|")), message


def test_catalog_fields_are_bounded() -> None:
    assert set(BOUNDS) >= {"list_usd_per_gpu_hour", "capex_usd", "tflops_bf16_dense"}
    assert all(0 < low < high < math.inf for low, high in BOUNDS.values())
    message = refused("gpus.h100.list_usd_per_gpu_hour=1e15", budget=False)
    assert "field `gpus.h100.list_usd_per_gpu_hour`: expected a number from 0.001 to 1000" \
        in message
    assert "from 0.001" in refused("gpus.h100.list_usd_per_gpu_hour=1e-300", budget=False)
    with pytest.raises(ValueError, match=r"'list_usd_per_gpu_hour' override must be a number "
                                         r"from 0\.001 to 1000, got 1e\+308"):
        load_catalog().with_overrides({"h100": {"list_usd_per_gpu_hour": 1e308}})
    with pytest.raises(ValueError, match="an integer of about 5000 digits"):
        load_catalog().with_overrides({"h100": {"capex_usd": 10 ** 4999}})


def test_catalog_file_with_an_absurd_price_is_refused(tmp_path) -> None:
    text = resources.files("market").joinpath("data", "gpus.toml").read_text("utf-8")
    path = tmp_path / "gpus.toml"
    path.write_text(text.replace("list_usd_per_gpu_hour = 12.29", "list_usd_per_gpu_hour = 1e308",
                                 1), "utf-8")
    with pytest.raises(CatalogError, match=r"gpu 'h100': field 'list_usd_per_gpu_hour' must be "
                                           r"a number from 0\.001 to 1000"):
        load_catalog(path)
    assert isinstance(load_catalog(), GpuCatalog)


def test_scenario_toml_with_a_huge_list_price_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"field `gpus\.h100\.list_usd_per_gpu_hour`: "
                                            r"expected a number from 0\.001 to 1000"):
        scenario_from_toml("[gpus.h100]\nlist_usd_per_gpu_hour = 1e308\n")


def test_deep_nesting_and_huge_integers_are_one_line() -> None:
    deep = "[" * 5000 + "]" * 5000
    assert "nest" in refused(f"duration_days={deep}", budget=False)
    assert "nest" in refused("market.mechanism_params={a=" + "{a=" * 3000 + "1" + "}" * 3001,
                             budget=False)
    assert f"at most {MAX_NESTING}" in refused("a." * 3000 + "b=1", budget=False)
    assert "too many digits" in refused("tenants.count=" + "9" * 5000, budget=False)
    with pytest.raises(ScenarioError, match="nested too deeply"):
        scenario_from_toml("x = " + deep)
    with pytest.raises(ScenarioError, match="too many digits"):
        scenario_from_toml("duration_days = " + "7" * 5000)
    with pytest.raises(ScenarioError, match=r"field `tenants\.count`: .*an integer of about "
                                            r"5000 digits"):
        load_scenario("default", values={"tenants.count": 10 ** 4999})


# ----------------------------------------------------------------------------- the hangs

@pytest.mark.parametrize("overrides", [
    ["tenants.spikes.multiplier=100", "tenants.spikes.per_week=100"],
    ["tenants.weekly_growth=10", "duration_days=365"],
    ["tenants.arrivals_per_hour=100000"],
    ["duration_days=365", "tenants.arrivals_per_hour=1000"],
    ["market.withdraw_interval_s=60", "duration_days=365"],
    ["market.price_index_interval_s=60", "duration_days=365", "market.withdraw_interval_s=60"],
    ["providers.1.count=100000", "duration_days=30"],
    ["providers.0.count=100000", "providers.1.count=100000", "providers.2.count=100000"],
])
def test_hangs_within_the_bounds_are_refused_by_the_budget(overrides: list[str]) -> None:
    assert "--allow-large" in refused(*overrides)


def test_bounded_extremes_that_pass_the_budget_finish_promptly() -> None:
    """The largest spikes and growth and the finest intervals, on a short run."""
    scenario = load_scenario("default", [
        "duration_days=0.25", "tenants.arrivals_per_hour=1", "tenants.spikes.multiplier=100",
        "tenants.spikes.per_week=1000",
        "tenants.weekly_growth=10", "market.withdraw_interval_s=60",
        "market.price_index_interval_s=60", "providers.1.failure_rate_per_day=1440",
        "providers.1.churn_per_day=1440", "providers.1.repair_hours=[0.0001, 0.0002]"])
    check_budget(scenario)
    started = time.perf_counter()
    result = Market(scenario, seed=1, record=False).run()
    assert time.perf_counter() - started < 20
    assert result.summary["money_conserved"] and result.summary["simulated_days"] == 0.25


def test_thinning_that_would_spin_is_refused_when_the_market_is_built() -> None:
    """With the budget bypassed (--allow-large), arrivals that grow 11x a week for a year
    would draw candidates for ever at the year's peak rate: a MarketError at once."""
    scenario = load_scenario("default", ["tenants.weekly_growth=10", "duration_days=365"])
    started = time.perf_counter()
    with pytest.raises(MarketError, match=r"^tenants\.weekly_growth: arrivals peak at .* "
                                          r"candidate arrivals \(limit 1e\+10\)"):
        Market(scenario, seed=1, record=False)
    assert time.perf_counter() - started < PROMPT_S


@pytest.mark.parametrize("field", ["withdraw_interval_s", "price_index_interval_s"])
def test_periodic_processes_finer_than_the_engine_allows_are_refused(field: str) -> None:
    """A scenario built around validation (model_construct) still cannot make a tick loop
    spin."""
    base = load_scenario("default")
    market = MarketRules.model_construct(**{**dict(base.market), field: 1e-9})
    scenario = Scenario.model_construct(**{**dict(base), "market": market})
    with pytest.raises(MarketError, match=rf"^market\.{field}: every 1e-09 s"):
        Market(scenario, seed=1, record=False)


def test_batch_clearing_interval_is_guarded() -> None:
    scenario = load_scenario("default", ["market.mechanism=batch_clearing",
                                         "market.mechanism_params={interval_s=1e-9}"])
    with pytest.raises(MarketError, match=r"^market\.mechanism_params\.interval_s: "):
        Market(scenario, seed=1, record=False)
    assert clock.MAX_PERIODIC_TICKS * 60 >= 365 * 86_400  # the schema's bounds pass


def test_provider_outage_cycles_shorter_than_a_minute_are_refused_with_nothing_added(
) -> None:
    market = Market(load_scenario("default", ["duration_days=0.1"]), seed=1, record=False)
    before = market.pool.size if hasattr(market.pool, "size") else len(market.pool.up)
    accounts = len(market.ledger._balances)
    row = ProviderRow(name="storm", population=0, model=0, gpus=8, cpu_millicores=64_000,
                      memory_bytes=1 << 40, storage_bytes=1 << 40, ip_leases=0,
                      storage_classes=("ephemeral",), audited=True,
                      cost_full_usd_per_gpu_hour=1.0, cost_marginal_usd_per_gpu_hour=0.5,
                      cost_idle_usd_per_gpu_hour=0.1, cost_fixed_usd_per_gpu_hour=0.1,
                      cost_basis_usd_per_gpu_hour=1.0, failure_rate_per_s=1e9,
                      repair_s=(0.001, 0.002))
    with pytest.raises(MarketError, match=r"^providers\.0\.failure_rate_per_day: 8\.64e\+13 a "
                                          r"day with at least 0\.001 s away is an outage every"):
        market.add_providers([row], None)
    after = market.pool.size if hasattr(market.pool, "size") else len(market.pool.up)
    assert after == before and len(market.ledger._balances) == accounts
    row.failure_rate_per_s = 1 / MIN_CYCLE_S  # the scenario's largest rate, however short
    assert market.add_providers([row], None).size == 1
    row.failure_rate_per_s, row.repair_s = 1e9, (1e6, 1e6)  # fails at once, down for days
    assert market.add_providers([row], None).size == 1
    row.churn_rate_per_s = math.nan
    with pytest.raises(MarketError, match="churn_per_day"):
        market.add_providers([row], None)
    assert np.all(np.isfinite(market.pool.churn_rate_per_s))

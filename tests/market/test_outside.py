"""The tenants' outside option (`market.core.outside`) and how the engine prices it: which models
the scenario's hyperscalers rent, and what serving a GPU-hour at list costs them."""

from __future__ import annotations

import numpy as np
import pytest

from market import load_scenario
from market.core.outside import outside_cost_fraction, outside_models
from market.errors import MarketError
from market.units import MICRO_USD_PER_USD
from tests.market.test_engine import bare_market, units, work


def with_hyperscalers(*changes: dict):
    """The default scenario with its hyperscaler population replaced by copies changed so."""
    scenario = load_scenario("default")
    others = [p for p in scenario.providers if p.archetype != "hyperscaler"]
    (hyperscaler,) = [p for p in scenario.providers if p.archetype == "hyperscaler"]
    copies = [hyperscaler.model_copy(update={"name": f"cloud{i}", **change})
              for i, change in enumerate(changes)]
    return scenario.model_copy(update={"providers": [*others, *copies]})


def test_the_outside_option_is_what_the_hyperscalers_rent_or_anything_without_them():
    scenario = with_hyperscalers({"gpu_mix": {"h100": 1.0}},
                                 {"gpu_mix": {"l40s": 0.5, "a10": 0.5, "mi300x": 0.0}},
                                 {"gpu_mix": {"rtx4090": 1.0}, "count": 0})
    catalog = scenario.catalog()
    rented = {m.id for m, yes in zip(catalog, outside_models(scenario, catalog), strict=True)
              if yes}
    assert rented == {"h100", "l40s", "a10"}  # not a zero share, not an empty population
    none = with_hyperscalers()
    assert outside_models(none, catalog).all()


def test_serving_at_list_costs_the_cheapest_hyperscaler_its_fraction_of_list():
    scenario = with_hyperscalers(
        {"gpu_mix": {"h100": 0.5, "a10": 0.5}, "elsewhere_fraction_of_list": 0.4},
        {"gpu_mix": {"h100": 1.0}, "elsewhere_fraction_of_list": 0.7},
        {"gpu_mix": {"l40s": 1.0}, "elsewhere_fraction_of_list": 0.2,
         "sells_elsewhere_at_list": False},  # its cost is its own, not a share of list
        {"gpu_mix": {"a100-80gb": 1.0}, "elsewhere_fraction_of_list": 0.1, "count": 0})
    catalog = scenario.catalog()
    fraction = dict(zip(catalog.ids, outside_cost_fraction(scenario, catalog), strict=True))
    assert fraction["h100"] == 0.4      # the lower of 0.4 and 0.7
    assert fraction["a10"] == 0.4
    assert fraction["l40s"] == 1.0
    assert fraction["a100-80gb"] == 1.0  # nobody there
    assert fraction["rtx4090"] == 1.0


def test_an_order_without_a_stated_outside_option_is_priced_at_list_and_costed_at_spot():
    market = bare_market("providers.2.elsewhere_fraction_of_list=0.25")
    tenant = market.add_tenant("alice", 1_000.0)
    # 2 GPUs for 3 hours on an H100 or 5 on an A100 80GB: the cheaper at list is the outside
    # option, and serving it costs the hyperscaler a quarter of that.
    catalog = market.catalog
    hours = {"h100": 3.0, "a100-80gb": 5.0}
    work_s = np.full(len(catalog), np.inf)
    for gpu, h in hours.items():
        work_s[catalog.index(gpu)] = h * 3600
    order_id = market.post_order(tenant, units(2, tuple(hours)), 5.0, deposit_usd=100.0,
                                 job_value_usd=100.0, work_s=work_s)
    order = market.orders[order_id]
    at_list = {gpu: catalog[gpu].list_usd_per_gpu_hour * h * 2 for gpu, h in hours.items()}
    assert order.outside_micro == round(min(at_list.values()) * MICRO_USD_PER_USD)
    assert order.outside_cost_micro == round(0.25 * min(at_list.values()) * MICRO_USD_PER_USD)
    # A stated outside price with no stated cost has no known margin: cost = price.
    stated = market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, outside_usd=12.0,
                               work_s=work(market, 1.0))
    assert market.orders[stated].outside_cost_micro == 12 * MICRO_USD_PER_USD
    both = market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, outside_usd=12.0,
                             outside_cost_usd=3.0, work_s=work(market, 1.0))
    assert market.orders[both].outside_cost_micro == 3 * MICRO_USD_PER_USD


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_outside_costs_must_be_finite_and_not_negative(bad):
    market = bare_market()
    tenant = market.add_tenant("alice", 1_000.0)
    with pytest.raises(MarketError, match="outside_cost_usd must be a finite number >= 0"):
        market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, outside_cost_usd=bad)
    assert not market.orders  # nothing half-applied
    with pytest.raises(MarketError, match="cost_usd must be a finite number >= 0"):
        market.tenant_left(tenant, -1, "expired", 1.0, 10.0, cost_usd=bad)

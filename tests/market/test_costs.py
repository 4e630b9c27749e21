"""Providers' costs and profits, market power and price dispersion, on cases worked out by
hand (`market.observe.metrics`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.markups import CostPlus
from market.core.pool import ProviderRow
from market.events import ProviderLeft
from market.observe.metrics import dispersion, hhi
from tests.market.test_engine import bare_market, provider, units, work

DAY = 86_400.0


def costly(market, name: str, gpus: int = 8) -> ProviderRow:
    """An H100 provider: serving 1.0, idle power 0.1, operations 0.2, capex 0.5 USD per
    GPU-hour."""
    row = provider(market, name, gpus=gpus, cost=1.0)
    row.cost_idle_usd_per_gpu_hour = 0.1
    row.cost_fixed_usd_per_gpu_hour = 0.2
    row.cost_capex_usd_per_gpu_hour = 0.5
    return row


def test_short_and_long_run_profit_of_one_provider_by_hand():
    market = bare_market("duration_days=1", record=True)
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([costly(market, "p")], CostPlus(markup=0.5))  # bids 1.5
    market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, work_s=work(market, 2.0))
    # The owner takes it off the market for the last 6 hours (after the lease is over).
    market.run(until=18 * 3600.0)
    market.emit(ProviderLeft(market.now, 0, market.now + 6 * 3600.0))
    result = market.run()
    row = result.summary["providers"]["datacenter"]
    # 2 GPU-hours at 1.5, of which 20% is the fee: kept 2.40; 8 GPUs on the market 18 h.
    assert row["revenue_usd"] == pytest.approx(2.4)
    assert row["serving_cost_usd"] == pytest.approx(2.0)
    assert row["idle_power_cost_usd"] == pytest.approx(0.1 * 8 * 18)
    assert row["operations_cost_usd"] == pytest.approx(0.2 * 8 * 18)
    assert row["avoidable_cost_usd"] == pytest.approx(2.0 + 14.4 + 28.8)
    assert row["capex_usd"] == pytest.approx(0.5 * 8 * 24)  # sunk: every hour of the run
    assert row["short_run_profit_usd"] == pytest.approx(2.4 - 45.2)
    assert row["long_run_profit_usd"] == pytest.approx(2.4 - 45.2 - 96.0)
    assert row["profit_usd"] == row["long_run_profit_usd"]
    assert row["lerner_index"] == pytest.approx(1 - 2.0 / 2.4)
    table = result.providers.to_pandas()
    assert table.loc[0, "on_market_hours"] == pytest.approx(18.0)
    assert table.loc[0, "busy_gpu_hours"] == pytest.approx(2.0)
    assert table.loc[0, "short_run_profit_usd"] == pytest.approx(row["short_run_profit_usd"])
    assert result.summary["market_power"]["lerner_index_by_archetype"] == {
        "datacenter": pytest.approx(1 - 2.0 / 2.4)}


def test_an_archetype_that_earned_nothing_has_no_lerner_index():
    market = bare_market("duration_days=0.1")
    market.add_providers([costly(market, "idle")], CostPlus(markup=0.5))
    summary = market.run().summary
    assert summary["providers"]["datacenter"]["lerner_index"] is None
    assert summary["market_power"]["hhi_provider_revenue"] == 0.0


@pytest.mark.parametrize("revenues, expected", [
    ([1.0], 10_000.0),              # a monopoly
    ([1.0, 1.0], 5_000.0),          # two equal sellers
    ([3.0, 1.0], 75**2 + 25**2),    # 6,250
    ([1.0, 1.0, 1.0, 1.0, 0.0], 2_500.0),  # a seller with nothing adds nothing
    ([0.0, 0.0], 0.0),
])
def test_hhi_by_hand(revenues, expected):
    assert hhi(revenues) == pytest.approx(expected)


def test_hhi_of_a_market_with_two_providers_sharing_revenue():
    market = bare_market("duration_days=1")
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([provider(market, "a", cost=1.0, latency_s=1.0),
                          provider(market, "b", cost=1.0, latency_s=2.0)],
                         CostPlus(markup=0.0))
    # Equal asks: the first to bid (a) takes the first order; the second order, posted once
    # a is busy, goes to b.
    market.post_order(tenant, units(8), 5.0, deposit_usd=100.0, work_s=work(market, 1.0))
    market.run(until=200.0)
    market.post_order(tenant, units(8), 5.0, deposit_usd=100.0, work_s=work(market, 3.0))
    summary = market.run().summary
    revenue = np.array(market.metrics.revenue_usd)
    assert (revenue > 0).all() and len(revenue) == 2  # both sold: 1 h and 3 h of 8 GPUs
    share = revenue / revenue.sum()
    assert sorted(share) == pytest.approx([0.25, 0.75])
    assert summary["market_power"]["hhi_provider_revenue"] == pytest.approx(6_250.0)


def test_dispersion_by_hand():
    found = dispersion([1.0, 2.0, 3.0, 4.0])
    assert found["cv"] == pytest.approx(math.sqrt(1.25) / 2.5)  # population sd / mean
    assert found["p10"] == pytest.approx(1.3)                  # numpy's linear quantile
    assert found["p90_p10"] == pytest.approx(3.7 / 1.3)
    assert dispersion([2.0, 2.0]) == {"p10": 2.0, "cv": 0.0, "p90_p10": 1.0}
    assert dispersion([]) == {"p10": None, "cv": None, "p90_p10": None}


def test_price_dispersion_is_reported_per_gpu_model():
    market = bare_market("duration_days=1")
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([provider(market, "low", cost=1.0, gpus=1)], CostPlus(markup=0.0))
    market.add_providers([provider(market, "high", cost=3.0, gpus=1)], CostPlus(markup=0.0))
    for _ in range(2):  # the cheap one takes the first order, the dear one the second
        market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, work_s=work(market, 5.0))
        market.run(until=market.now + 200.0)
    h100 = market.run().summary["price_usd_per_gpu_hour"]["h100"]
    assert h100["count"] == 2
    assert h100["cv"] == pytest.approx(1.0 / 2.0)
    assert h100["p90_p10"] == pytest.approx(2.8 / 1.2)

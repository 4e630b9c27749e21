"""Price-elastic demand (agents.demand_curve): the price index and the demand curve by hand,
and the realized elasticity of arrivals in a controlled market against the configured one.

Controlled market: every provider posts the same fraction f of its GPU's list price
(`list_price`, bids not grossed up for the fee), so every lease is paid at f × list and the
index is f from the first interval with a lease on. With reference 0.5 and elasticity ε, a
market at f = 0.5 has multiplier 1 and one at f = 0.25 has 2^ε. Counting first posts after
the first interval (before it the index is the reference in both), ε̂ = ln(N_0.25 / N_0.5) /
ln 2. The tolerance is four standard errors of ε̂ for independent Poisson counts,
sqrt(1/N_0.25 + 1/N_0.5) / ln 2 (the runs share their candidate arrivals, which only makes
the ratio steadier).
"""

from __future__ import annotations

import math

import pytest

from agents.demand_curve import DemandCurve
from market import Market, load_scenario
from market.events import LeaseCreated, OrderOpened, Tick

STEADY = ["tenants.daily_amplitude=0", "tenants.spikes.per_week=0", "tenants.weekly_growth=0",
          "market.bids_net_of_fee=false"]


def lease(model: str, gpus: int, price_micro: int) -> LeaseCreated:
    return LeaseCreated(0.0, 0, 0, 0, 0, 0, 0, model, gpus, price_micro, 1, 0.0)


def test_index_and_curve_by_hand():
    scenario = load_scenario("default", ["tenants.price_elasticity=1.5",
                                         "tenants.reference_price_to_list=0.5",
                                         "tenants.max_demand_multiplier=3"])
    market = Market(scenario, seed=1, populate=False, record=False)
    curve = DemandCurve(market, scenario.tenants)
    h100 = round(market.catalog["h100"].list_usd_per_gpu_hour * 1e6)
    a10 = round(market.catalog["a10"].list_usd_per_gpu_hour * 1e6)
    assert curve.index == 0.5 and curve.multiplier() == 1.0  # before any lease
    market.emit(lease("h100", 2, 2 * h100))      # paid list on 2 GPUs (the whole order's rate)
    market.emit(lease("a10", 1, a10 // 2))       # paid half list on 1
    assert curve.index == 0.5  # the interval is not over
    market.emit(Tick(3600.0))
    assert curve.index == pytest.approx((2 * h100 + a10 // 2) / (2 * h100 + a10), rel=1e-15)
    assert curve.multiplier() == pytest.approx((curve.index / 0.5) ** -1.5, rel=1e-12)
    market.emit(Tick(7200.0))  # no lease: the index holds
    assert curve.index == pytest.approx((2 * h100 + a10 // 2) / (2 * h100 + a10), rel=1e-15)
    market.emit(lease("a10", 4, a10 // 10))     # a tenth of list: the cap binds
    market.emit(Tick(10800.0))
    assert curve.multiplier() == 3.0


def test_no_elasticity_no_curve():
    scenario = load_scenario("default")
    market = Market(scenario, seed=1, populate=False, record=False)
    curve = DemandCurve(market, scenario.tenants)
    assert curve.cap == 1.0 and curve.admits() and curve.multiplier() == 1.0
    market.emit(lease("a10", 1, 1))  # it does not listen: the index stays the reference
    market.emit(Tick(3600.0))
    assert curve.index == scenario.tenants.reference_price_to_list


def first_posts_after(fraction: float, elasticity: float, after_s: float) -> int:
    scenario = load_scenario("default", [
        *STEADY, "duration_days=1", "tenants.arrivals_per_hour=200",
        f"tenants.price_elasticity={elasticity}", "tenants.reference_price_to_list=0.5",
        *(f"providers.{i}.strategy={{ name = \"list_price\", params = {{ factor = {fraction} }} }}"
          for i in range(3))])
    market = Market(scenario, seed=4, record=False)
    posts = []
    market.subscribe(lambda e: posts.append(e.time_s) if e.attempt == 0 else None,
                     kinds=(OrderOpened,))
    market.run()
    return sum(t >= after_s for t in posts)


def test_realized_elasticity_matches_the_configured_one():
    elasticity = 1.0
    at_reference = first_posts_after(0.5, elasticity, 3600.0)
    cheaper = first_posts_after(0.25, elasticity, 3600.0)
    realized = math.log(cheaper / at_reference) / math.log(2.0)
    se = math.sqrt(1 / cheaper + 1 / at_reference) / math.log(2.0)
    assert abs(realized - elasticity) < 4 * se, (realized, se, at_reference, cheaper)

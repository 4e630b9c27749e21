"""Tenant policies: the rules each one states, alone and driving a real market."""

from __future__ import annotations

from collections import defaultdict

import pytest

from agents.policies import Adaptive, Budget, Fraction
from market import Market, load_scenario
from market.events import OrderOpened, TenantLeft
from market.scenario import ScenarioError
from market.units import MICRO_USD_PER_USD


def test_fraction_starts_at_the_factor_and_reprices_up_to_the_cap():
    policy = Fraction(reprice=2.0, cap=0.8)
    assert policy.max_price(0, value=10.0, factor=0.3, job_cost_per_usd=1.0) == pytest.approx(3)
    assert policy.max_price(0, value=10.0, factor=0.9, job_cost_per_usd=1.0) == pytest.approx(8)
    assert policy.after_expiry(0, 3.0, 10.0) == pytest.approx(6.0)
    assert policy.after_expiry(0, 6.0, 10.0) == pytest.approx(8.0)  # capped
    with pytest.raises(ValueError, match="reprice"):
        Fraction(reprice=0.5)


def test_adaptive_learns_each_tenants_own_level():
    policy = Adaptive(up=2.0, down=0.5, floor=0.25)
    first = policy.max_price(7, 10.0, 0.2, 1.0)
    policy.after_expiry(7, first, 10.0)
    assert policy.max_price(7, 10.0, 0.2, 1.0) == pytest.approx(2 * first)
    assert policy.max_price(8, 10.0, 0.2, 1.0) == pytest.approx(first)  # others unaffected
    for _ in range(10):  # fast fills bring it down, but not below the floor
        policy.after_fill(7, waited_s=180.0, attempt=0)
    assert policy.max_price(7, 10.0, 0.2, 1.0) == pytest.approx(0.25 * first)
    policy.after_fill(8, waited_s=900.0, attempt=2)  # a fill after re-posts: no lowering
    assert policy.max_price(8, 10.0, 0.2, 1.0) == pytest.approx(first)


def test_budget_caps_what_a_tenant_commits():
    market = Market(load_scenario("default", ["duration_days=7"]), populate=False,
                    record=False)
    policy = Budget(weekly_usd=100.0, min_fraction=0.1)
    policy.bind(market)
    # each job's deposit is 10 USD per USD of max price
    prices = [policy.max_price(0, value=5.0, factor=0.4, job_cost_per_usd=10.0)
              for _ in range(8)]
    assert prices[:5] == [pytest.approx(2.0)] * 5          # 20 USD a job, 100 USD in all
    assert prices[5] is None                               # nothing left: goes elsewhere
    assert policy.max_price(1, 5.0, 0.4, 10.0) == pytest.approx(2.0)  # per tenant


def test_unknown_policy_or_bad_params_are_one_line_errors():
    with pytest.raises(ScenarioError, match="unknown tenant policy 'greedy'"):
        load_scenario("default", ['tenants.policy={ name = "greedy" }'])
    with pytest.raises(ScenarioError, match=r"tenants\.policy\.params"):
        load_scenario("default", ['tenants.policy={ name = "budget", params = { bogus = 1 } }'])


def test_budget_tenants_never_deposit_more_than_their_budget():
    weekly = 300.0
    scenario = load_scenario("default", [
        "duration_days=1", "tenants.count=20",
        f'tenants.policy={{ name = "budget", params = {{ weekly_usd = {weekly} }} }}'])
    market = Market(scenario, seed=3, record=False)
    deposits: defaultdict[int, float] = defaultdict(float)
    jobs: defaultdict[int, int] = defaultdict(int)
    left = []

    def opened(event: OrderOpened) -> None:
        if event.attempt == 0:
            deposits[event.tenant] += market.orders[event.order_id].escrow / MICRO_USD_PER_USD
            jobs[event.tenant] += 1

    market.subscribe(opened, kinds=(OrderOpened,))
    market.subscribe(left.append, kinds=(TenantLeft,))
    summary = market.run().summary
    budget = weekly / 7  # one day of a weekly budget
    # Each deposit is rounded to the micro-USD: half a micro-USD per job at most.
    assert deposits and all(deposits[t] <= budget + 0.5e-6 * jobs[t] + 1e-9 for t in deposits)
    assert any(e.reason == "budget" for e in left)
    assert summary["money_conserved"]

"""Welfare per job (`market.observe.welfare`), checked on markets small enough to work out by hand.

Every market here is bare (no agents): one tenant, providers that bid their cost times a
markup (`CostPlus`, not grossed up by the fee), 20% take rate, Akash's 180 s bidding window.
A provider's serving cost is its `cost` per GPU-hour; the job's value and outside option are
given when it is posted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.markups import CostPlus
from market import Market, load_scenario
from market.observe.welfare import LOSSES, PARTS
from tests.market.test_engine import bare_market, provider, units, work

MICRO = 1_000_000
HOUR = 3600.0


def micro(summary: dict, key: str) -> int:
    return round(summary[key] * MICRO)


def welfare(market: Market) -> dict:
    return market.run().summary["welfare"]


def one_job_market(*overrides: str, value_usd: float = 10.0, max_price: float = 5.0,
                   providers: tuple[tuple[str, float, float], ...] = (("p", 1.0, 3.0),),
                   markup: float = 0.5, record: bool = False) -> tuple[Market, int, int]:
    """A market with `providers` ((name, cost USD/GPU-h, bid latency s), each bidding cost ×
    (1 + markup)) and one tenant who posts one 1-GPU job of 2 hours on an H100."""
    market = bare_market(*overrides, record=record)
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([provider(market, name, cost=cost, latency_s=latency)
                          for name, cost, latency in providers], CostPlus(markup=markup))
    order = market.post_order(tenant, units(1), max_price, deposit_usd=50.0,
                              job_value_usd=value_usd, work_s=work(market, 2.0))
    return market, tenant, order


def test_a_served_job_splits_into_each_side_surplus_exactly():
    market, _, _ = one_job_market()
    w = welfare(market)
    # bid 1.5 USD/GPU-h for 2 h: the tenant pays 3.00, the platform keeps 20% of it (0.60),
    # the provider keeps 2.40 and spends 1.0 × 2 = 2.00 serving it; worth 10 to the tenant.
    assert micro(w, "consumer_surplus_usd") == 10_000_000 - 3_000_000
    assert micro(w, "producer_surplus_usd") == 2_400_000 - 2_000_000
    assert micro(w, "platform_fees_usd") == 600_000
    assert micro(w, "outside_surplus_usd") == 0
    assert micro(w, "deadweight_loss_usd") == 0
    assert micro(w, "potential_usd") == 10_000_000 - 2_000_000
    assert w["allocative_efficiency"] == 1.0
    assert w["identity_holds"] and w["identity_residual_micro"] == 0
    assert w["jobs"] == {"served": 1}


def test_a_dearer_winner_is_misallocation_measured_against_the_cheapest_who_could_serve():
    # Tenant pick of the first bid: the dearer provider answers in 1 s, the cheaper in 10 s.
    market, _, _ = one_job_market("market.selection=first", markup=0.0,
                                  providers=(("cheap", 1.0, 10.0), ("dear", 1.3, 1.0)))
    w = welfare(market)
    assert micro(w, "potential_usd") == 10_000_000 - 2_000_000   # against the cheap one
    assert micro(w, "realized_usd") == 10_000_000 - 2_600_000    # served by the dear one
    assert w["deadweight_loss_by_cause_usd"] == {"unserved": 0.0, "misallocated": 0.6,
                                                 "wasted": 0.0}
    assert w["allocative_efficiency"] == pytest.approx(7.4 / 8.0, abs=1e-12)
    assert w["identity_holds"]


def test_an_expiry_before_the_fill_leaves_potential_welfare_unchanged():
    direct, _, _ = one_job_market()
    # The same job first posted below every ask: it expires, and is re-posted as the same job.
    market, tenant, first = one_job_market(max_price=1.0)
    market.run(until=200.0)
    assert first not in market.orders  # expired
    market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, job_value_usd=10.0,
                      work_s=work(market, 2.0), job_id=first, attempt=1)
    reposted, straight = welfare(market), welfare(direct)
    for key in ("potential_usd", *(f"{part}_usd" for part in PARTS)):
        assert reposted[key] == straight[key], key
    assert reposted["jobs"] == straight["jobs"] == {"served": 1}


def test_a_job_taken_to_a_hyperscaler_adds_outside_surplus_not_loss():
    # Nobody here has an H100: the order expires and the tenant takes the job outside,
    # where 2 GPU-hours at the H100 list price cost 24.58; it is worth 30 to the tenant.
    market = bare_market()
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([provider(market, "a100", model="a100-80gb")], CostPlus(markup=0.0))
    list_usd = market.catalog["h100"].list_usd_per_gpu_hour * 2
    order = market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, job_value_usd=30.0,
                              outside_usd=list_usd, work_s=work(market, 2.0))
    market.run(until=200.0)
    market.tenant_left(tenant, order, "expired", 2.0, list_usd, value_usd=30.0)
    w = welfare(market)
    assert micro(w, "outside_surplus_usd") == 30_000_000 - round(list_usd * MICRO)
    assert micro(w, "potential_usd") == micro(w, "outside_surplus_usd")
    assert micro(w, "deadweight_loss_usd") == 0
    assert w["allocative_efficiency"] == 1.0
    assert w["jobs"] == {"outside": 1}


def test_outside_surplus_splits_between_the_tenant_and_a_hyperscaler_selling_spare_capacity():
    # As above, but the hyperscaler's GPU-hour would otherwise sell as spot at 40% of list:
    # serving the job at list earns it list - spot, the tenant keeps value - list.
    market = bare_market(record=True)
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([provider(market, "a100", model="a100-80gb")], CostPlus(markup=0.0))
    list_usd = market.catalog["h100"].list_usd_per_gpu_hour * 2
    spot_usd = 0.4 * list_usd
    order = market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, job_value_usd=30.0,
                              outside_usd=list_usd, outside_cost_usd=spot_usd,
                              work_s=work(market, 2.0))
    market.run(until=200.0)
    market.tenant_left(tenant, order, "expired", 2.0, list_usd, value_usd=30.0,
                       cost_usd=spot_usd)
    result = market.run()
    w = result.summary["welfare"]
    list_micro, spot_micro = round(list_usd * MICRO), round(spot_usd * MICRO)
    assert micro(w, "outside_surplus_usd") == 30_000_000 - spot_micro
    assert micro(w["outside_surplus_by_side_usd"], "tenants") == 30_000_000 - list_micro
    assert micro(w["outside_surplus_by_side_usd"], "hyperscalers") == list_micro - spot_micro
    # the best way to serve it was the hyperscaler, at its spot price: nothing lost
    assert micro(w, "potential_usd") == 30_000_000 - spot_micro
    assert micro(w, "deadweight_loss_usd") == 0 and w["allocative_efficiency"] == 1.0
    assert w["identity_holds"]
    (job,) = result.jobs.to_pylist()
    assert job["outside_paid_usd"] == list_micro / MICRO
    assert job["outside_surplus_usd"] == (30_000_000 - spot_micro) / MICRO


def test_leaving_when_the_market_could_serve_cheaper_loses_the_difference():
    market, tenant, order = one_job_market(max_price=1.0, value_usd=30.0)  # every ask above
    market.run(until=200.0)
    list_usd = market.catalog["h100"].list_usd_per_gpu_hour * 2
    market.tenant_left(tenant, order, "expired", 2.0, list_usd, value_usd=30.0)
    w = welfare(market)
    assert micro(w, "potential_usd") == 30_000_000 - 2_000_000  # the provider at 1.0 × 2 h
    assert micro(w, "outside_surplus_usd") == 30_000_000 - round(list_usd * MICRO)
    assert micro(w["deadweight_loss_by_cause_usd"], "misallocated") == \
        round(list_usd * MICRO) - 2_000_000


def test_work_never_done_is_unserved_loss_and_work_under_way_is_pending():
    market, _, _ = one_job_market(max_price=1.0)  # expires; the tenant never comes back
    w = welfare(market)
    assert micro(w["deadweight_loss_by_cause_usd"], "unserved") == 8_000_000
    assert micro(w, "potential_usd") == 8_000_000 and w["allocative_efficiency"] == 0.0
    assert w["jobs"] == {"unserved": 1}
    # A run that ends an hour into the 2-hour lease: half the job is done, half pending.
    running, _, _ = one_job_market("duration_days=0.05")  # 72 minutes
    market_end = running.run()
    w = market_end.summary["welfare"]
    done = (0.05 * 86_400 - 180.0) / (2 * HOUR)  # the lease began when bidding closed
    assert w["jobs"] == {"pending": 1}
    assert micro(w, "pending_potential_usd") == round(8_000_000 * (1 - done))
    assert w["allocative_efficiency"] == pytest.approx(1.0, abs=1e-6)
    assert w["identity_holds"]


def test_work_worth_less_than_its_cost_is_wasted():
    # Worth 1.00 to the tenant, it costs 2.00 to serve: a tenant picking by hand takes it.
    market = bare_market()
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([provider(market, "p", cost=1.0)], CostPlus(markup=0.5))
    order = market.post_order(tenant, units(1), 5.0, deposit_usd=50.0, job_value_usd=1.0,
                              work_s=work(market, 2.0), auto_select=False)
    market.run(until=10.0)
    (bid,) = market.bids(order)
    market.accept_bid(order, bid["bid_id"])
    w = welfare(market)
    assert micro(w, "potential_usd") == 0
    assert micro(w["deadweight_loss_by_cause_usd"], "wasted") == 1_000_000
    assert micro(w, "realized_usd") == -1_000_000
    assert w["identity_holds"]


def test_jobs_table_rows_add_up_to_the_summary():
    market, tenant, _ = one_job_market("market.selection=first", markup=0.0, record=True,
                                       providers=(("cheap", 1.0, 10.0), ("dear", 1.3, 1.0)))
    market.post_order(tenant, units(1), 0.5, deposit_usd=50.0, job_value_usd=4.0,
                      work_s=work(market, 1.0))  # below every ask: never served
    result = market.run()
    jobs = result.jobs.to_pandas()
    w = result.summary["welfare"]
    assert sorted(jobs["status"]) == ["served", "unserved"]
    for key in ("potential_usd", *(f"{part}_usd" for part in PARTS)):
        assert jobs[key].sum() == pytest.approx(w[key], abs=1e-6), key
    for cause in LOSSES:
        assert jobs[f"{cause}_usd"].sum() == pytest.approx(
            w["deadweight_loss_by_cause_usd"][cause], abs=1e-6)
    assert (jobs["outside_paid_usd"] == 0).all()  # nobody left for a hyperscaler


def test_an_open_ended_lease_is_valued_by_the_hour():
    market = bare_market("duration_days=0.25")
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([provider(market, "p", cost=1.0)], CostPlus(markup=0.0))
    market.post_order(tenant, units(1), 3.0, deposit_usd=100.0)  # no work estimate
    w = welfare(market)
    hours = (0.25 * 86_400 - 180.0) / HOUR  # runs from the close of bidding to the end
    # valued at its max price (3 USD an hour, the value it reveals), served at cost 1
    assert micro(w, "realized_usd") == pytest.approx(round(3e6 * hours) - round(1e6 * hours),
                                                     abs=2)
    assert w["identity_holds"]


def test_textbook_market_is_fully_efficient():
    """Unit jobs, second price, truthful bidders, no fee: the lowest cost always serves."""
    auctions, bidders = 300, 4
    scenario = load_scenario("textbook", [
        "market.mechanism=second_price", "market.take_rate=0", f"textbook.bidders={bidders}",
        f"textbook.auctions={auctions}", 'textbook.strategy={ name = "truthful" }',
        f"duration_days={auctions * 14 / 86_400 * 1.05}"])
    result = Market(scenario, seed=3, record=False).run()
    w = result.summary["welfare"]
    assert w["jobs"] == {"served": auctions}
    assert w["deadweight_loss_usd"] == 0.0
    assert w["allocative_efficiency"] == 1.0
    assert w["identity_holds"]
    assert math.isclose(result.summary["allocative_efficiency"], 1.0)


def test_default_week_counts_each_job_once():
    result = Market(load_scenario("default", ["duration_days=1"]), seed=2, record=True).run()
    summary = result.summary
    w = summary["welfare"]
    assert w["identity_holds"]
    assert sum(w["jobs"].values()) == result.jobs.num_rows
    # every job posted is one row, whatever its re-posts; jobs never posted add to them
    assert result.jobs.num_rows >= summary["jobs_posted"]
    jobs = result.jobs.to_pandas()
    assert (jobs["orders"] >= 0).all() and jobs["job_id"].is_unique
    assert summary["orders_posted"] > summary["jobs_posted"]  # re-posts happened ...
    assert w["potential_usd"] == pytest.approx(jobs["potential_usd"].sum(), rel=1e-12)
    assert 0.0 <= w["allocative_efficiency"] <= 1.0 + 1e-9
    assert np.isfinite(jobs["value_usd"]).all()


def test_an_open_ended_lease_by_the_cheapest_provider_is_not_misallocated():
    """Hand case: one provider whose cost is 324,218.75 micro-USD per GPU-hour (not a whole
    micro-USD) serves an open-ended order for 20 hours. The job's best cost per hour is that
    provider's, so nothing is misallocated — exactly, not 20 × 0.25 micro-USD below zero."""
    market = bare_market("duration_days=1")
    tenant = market.add_tenant("t", 1_000.0)
    market.add_providers([provider(market, "cheap", cost=0.32421875)], CostPlus(markup=0.2))
    market.post_order(tenant, units(), 1.0, deposit_usd=20 * 0.32421875 * 1.2 + 1e-3)
    market.run(until=20.5 * 3600)
    account = market.welfare.summary()
    losses = account["deadweight_loss_by_cause_usd"]
    assert losses["misallocated"] == 0.0 and losses["unserved"] == 0.0, losses

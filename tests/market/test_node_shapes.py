"""Drawn providers' machines in the market (`gpus_per_node`): each replica of an order must
fit on one of them, a provider whose GPUs are free only across machines is turned away as
`fragmented`, and the default market reports what its machines' boundaries turned away."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from agents.providers import add_populations
from market import Market, load_scenario
from market.core.no_bids import FRAGMENTED, REASONS
from market.core.resources import gpu_units
from market.events import BidsPlaced
from market.units import GIB
from tests.market.test_engine import of, record

#: One home rig owner of four RTX 4090s, always up; its machines are the population's.
HOME_OF_FOUR = ["providers=[{archetype = \"home_rig\", name = \"home\", count = 1, "
                "gpu_mix = {rtx4090 = 1.0}, gpus_per_provider = [4, 4], "
                "failure_rate_per_day = 0.0, churn_per_day = 0.0}]",
                "market.manifest_failure_prob=0"]


def home_market(*overrides: str) -> Market:
    market = Market(load_scenario("default", [*HOME_OF_FOUR, *overrides]), seed=0,
                    populate=False, record=False)
    add_populations(market)
    return market


def rtx_units(gpus: int):
    """One replica of `gpus` RTX 4090s, asking less CPU and memory per GPU than a rig has."""
    return gpu_units(gpus, ("rtx4090",), cpu_millicores_per_gpu=4_000,
                     memory_bytes_per_gpu=32 * GIB, storage_bytes_per_gpu=100 * GIB)


@pytest.mark.parametrize("gpus_per_node", [None, 0])
def test_a_three_gpu_job_does_not_fit_a_home_of_two_two_gpu_rigs(gpus_per_node):
    rigs = gpus_per_node is None  # the archetype's machines: two rigs of two GPUs
    market = home_market(*([] if rigs else [f"providers.0.gpus_per_node={gpus_per_node}"]))
    nodes = market.pool.nodes
    assert nodes.capacity[nodes.of(0), 0].tolist() == ([2, 2] if rigs else [])
    tenant = market.add_tenant("alice", 1_000.0)
    events = record(market)
    three = market.post_order(tenant, rtx_units(3), 5.0, deposit_usd=100.0)
    why = market.orders[three].no_bids
    if rigs:  # four GPUs free in total, but no rig has three; a rig has two
        assert not of(events, BidsPlaced)
        assert why[FRAGMENTED] == 1 and sum(why) == 1
        assert market.pool.nodes.fragmentation() == {"providers_turned_away": 1,
                                                     "orders_turned_away": 1}
        two = market.post_order(tenant, rtx_units(2), 5.0, deposit_usd=100.0)
        assert [event.order_id for event in of(events, BidsPlaced)] == [two]
    else:  # one machine of four: it bids
        assert [event.order_id for event in of(events, BidsPlaced)] == [three]
        assert sum(why) == 0


def test_the_default_market_reports_what_its_machines_turned_away():
    result = Market(load_scenario("default", ["duration_days=1"]), seed=1).run()
    summary = result.summary
    fragmentation = summary["node_fragmentation"]
    assert fragmentation["providers_turned_away"] > 0
    # The orders table counts the same providers, order by order, under the two reasons.
    orders = result.orders
    per_order = sum(pc.sum(orders.column(f"no_bid_{reason}")).as_py()
                    for reason in ("fragmented", "node_headroom"))
    assert per_order == fragmentation["providers_turned_away"]
    assert summary["no_bids"]["providers"]["fragmented"] > 0
    assert fragmentation["orders_turned_away"] <= summary["orders_expired"] + \
        summary["orders_filled"]
    assert set(summary["no_bids"]["providers"]) == set(REASONS)

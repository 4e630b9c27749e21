"""Providers with nodes (`market.core.nodes`): every replica of an order must fit on one node.

The cases are small enough to place by hand: a provider of two 4-GPU machines has 8 GPUs in
all, yet cannot run one 8-GPU replica; it can run two 4-GPU replicas, one on each machine;
what a bid reserves on a node comes back when the bid loses or its lease ends.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.markups import CostPlus
from market.core.nodes import Nodes, replicas
from market.core.resources import gpu_units
from market.events import BidsPlaced, LeaseClosed, LeaseCreated, LeasePaused, LeaseResumed
from tests.market.test_engine import (
    CPU_PER_GPU,
    HOUR,
    MEMORY_PER_GPU,
    STORAGE_PER_GPU,
    assert_money_conserved,
    bare_market,
    of,
    provider,
    record,
    work,
)


def machine(gpus: int) -> tuple[int, int, int]:
    """A node with `gpus` GPUs and the test providers' CPU and memory per GPU."""
    return (gpus, CPU_PER_GPU * gpus, MEMORY_PER_GPU * gpus)


def noded(market, name: str, machines: tuple[int, ...], **kwargs):
    """A provider row made of machines with these GPU counts."""
    row = provider(market, name, gpus=sum(machines), **kwargs)
    row.nodes = tuple(machine(g) for g in machines)
    return row


def replica_units(gpus: int, per_replica: int):
    """An order of `gpus` GPUs in replicas of `per_replica`."""
    return gpu_units(gpus, ("h100",), cpu_millicores_per_gpu=CPU_PER_GPU,
                     memory_bytes_per_gpu=MEMORY_PER_GPU, storage_bytes_per_gpu=STORAGE_PER_GPU,
                     gpus_per_replica=per_replica)


def test_a_replica_needs_one_node_with_room_not_room_in_total():
    market = bare_market("market.bidding_window_s=60")
    tenant = market.add_tenant("alice", 1_000.0)
    (split,) = market.add_providers([noded(market, "split", (4, 4))], CostPlus(markup=0))
    events = record(market)
    market.post_order(tenant, replica_units(8, 8), 2.0, deposit_usd=100.0)  # one 8-GPU pod
    market.post_order(tenant, replica_units(8, 4), 2.0, deposit_usd=100.0)  # two 4-GPU pods
    assert [e.order_id for e in of(events, BidsPlaced)] == [1]
    nodes = market.pool.nodes
    assert nodes.free[nodes.of(int(split))].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert market.pool.free[split, 0] == 0


def test_first_fit_places_replicas_largest_first_on_the_first_node_with_room():
    market = bare_market("market.bidding_window_s=60")
    tenant = market.add_tenant("alice", 1_000.0)
    (p,) = market.add_providers([noded(market, "p", (2, 8, 4))], CostPlus(markup=0))
    market.post_order(tenant, replica_units(3, 3), 2.0, deposit_usd=100.0)  # 3: node 1 (8)
    market.post_order(tenant, replica_units(2, 2), 2.0, deposit_usd=100.0)  # 2: node 0 (2)
    market.post_order(tenant, replica_units(4, 4), 2.0, deposit_usd=100.0)  # 4: node 1 (5 left)
    market.post_order(tenant, replica_units(4, 4), 2.0, deposit_usd=100.0)  # 4: node 2
    nodes = market.pool.nodes
    assert nodes.free[nodes.of(int(p)), 0].tolist() == [0, 1, 0]
    # One GPU is left in total, on node 1: a 1-GPU order still fits, a 2-GPU one does not.
    events = record(market)
    market.post_order(tenant, replica_units(2, 2), 2.0, deposit_usd=100.0)
    market.post_order(tenant, replica_units(1, 1), 2.0, deposit_usd=100.0)
    assert [e.order_id for e in of(events, BidsPlaced)] == [5]


def test_what_a_bid_holds_on_its_nodes_comes_back_when_it_loses_and_when_its_lease_ends():
    market = bare_market("market.bidding_window_s=60", "market.bid_timeout_s=600")
    tenant = market.add_tenant("alice", 1_000.0)
    cheap, dear = (int(i) for i in market.add_providers(
        [noded(market, "cheap", (4, 4), cost=1.0), noded(market, "dear", (4, 4), cost=1.5)],
        CostPlus(markup=0)))
    events = record(market)
    market.post_order(tenant, replica_units(8, 4), 2.0, deposit_usd=100.0,
                      work_s=work(market, 2.0))
    nodes = market.pool.nodes
    market.run(until=120)  # the auction closed: the cheap bid won, the dear one lost
    assert nodes.free[nodes.of(dear)].tolist() == nodes.capacity[nodes.of(dear)].tolist()
    assert nodes.free[nodes.of(cheap), 0].tolist() == [0, 0]
    market.run(until=3 * HOUR)  # the lease ended
    assert of(events, LeaseClosed)
    assert nodes.free.tolist() == nodes.capacity.tolist() and not nodes.placed
    assert_money_conserved(market)


def test_a_bid_by_hand_must_fit_on_a_node():
    market = bare_market("market.bidding_window_s=60")
    tenant = market.add_tenant("alice", 1_000.0)
    (by_hand,) = market.add_providers([noded(market, "by-hand", (4, 4))], None)
    order = market.post_order(tenant, replica_units(8, 8), 2.0, deposit_usd=100.0)
    with pytest.raises(ValueError, match="free capacity on a node"):
        market.submit_bid(order, int(by_hand), 1.0)
    fits = market.post_order(tenant, replica_units(4, 4), 2.0, deposit_usd=100.0)
    market.submit_bid(fits, int(by_hand), 1.0)
    nodes = market.pool.nodes
    assert nodes.free[nodes.of(int(by_hand)), 0].tolist() == [0, 4]


def test_nodes_that_do_not_add_up_to_the_provider_are_refused():
    market = bare_market()
    row = noded(market, "p", (4, 4))
    row.gpus = 9
    with pytest.raises(ValueError, match="its nodes have 8 gpus in all, its row says 9"):
        market.add_providers([row], None)
    assert market.pool.n == 0


def test_replicas_are_listed_largest_first():
    market = bare_market()
    tenant = market.add_tenant("alice", 1_000.0)
    order_id = market.post_order(tenant, replica_units(10, 4), 2.0, deposit_usd=100.0)
    shape = replicas(market.orders[order_id])
    assert shape[:, 0].tolist() == [4, 4, 2]
    assert shape[:, 1].tolist() == [4 * CPU_PER_GPU, 4 * CPU_PER_GPU, 2 * CPU_PER_GPU]


# --------------------------------------------------------------------------- invariants

@settings(max_examples=60, deadline=None)
@given(machines=st.lists(st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=4),
                         min_size=1, max_size=4),
       orders=st.lists(st.tuples(st.integers(1, 16), st.sampled_from([1, 2, 4, 8]),
                                 st.floats(0.1, 3.0), st.booleans(), st.floats(1.0, 5.0)),
                       min_size=1, max_size=12),
       mechanism=st.sampled_from(["tenant_pick", "interruptible"]), seed=st.integers(0, 10))
def test_node_capacity_is_never_overdrawn_and_always_adds_up(machines, orders, mechanism, seed):
    """Whatever orders come, on-demand or interruptible, no node holds more than it has
    once the auctions are over, what nodes hold adds up to what their provider holds (paused
    leases hold nothing), the scheduler's count of what interruptible leases hold is right,
    every GPU comes back once the leases end, and money is conserved."""
    market = bare_market("market.bidding_window_s=60", f"market.mechanism={mechanism}",
                         seed=seed)
    tenant = market.add_tenant("alice", 100_000.0)
    ids = market.add_providers([noded(market, f"p{i}", tuple(m)) for i, m in
                                enumerate(machines)], CostPlus(markup=0))
    nodes = market.pool.nodes
    for k, (gpus, per_replica, hours, spot, price) in enumerate(orders):
        market.run(until=k * 600.0)
        market.post_order(tenant, replica_units(gpus, per_replica), price, deposit_usd=500.0,
                          work_s=work(market, hours),
                          interruptible=spot and mechanism == "interruptible")
        market.run(until=k * 600.0 + 120)
        assert (nodes.free >= 0).all()
        for p in ids.tolist():
            held = nodes.capacity[nodes.of(p)] - nodes.free[nodes.of(p)]
            assert held.sum(axis=0).tolist() == \
                (market.pool.capacity[p, :3] - market.pool.free[p, :3]).tolist()
        if market.scheduler is not None and market.scheduler.running:
            counted = np.zeros_like(nodes.free)
            for lease in market.leases.values():
                if lease.interruptible and lease.running:
                    rows, shape = nodes.placed[(lease.order.id, lease.provider)]
                    np.add.at(counted, rows, shape)
            assert np.array_equal(market.scheduler.node_held, counted)
    # A paused lease waits at most while the others run: all the work, one after another.
    market.run(until=len(orders) * 600.0 + (sum(o[2] for o in orders) + 1) * HOUR)
    assert not market.leases and not nodes.placed
    assert np.array_equal(nodes.free, nodes.capacity)
    assert_money_conserved(market)


def test_a_provider_without_nodes_costs_the_table_nothing():
    nodes = Nodes()
    nodes.add(np.arange(3), [(), (), ()])
    assert not nodes.any and nodes.count.tolist() == [0, 0, 0] and nodes.free.shape == (0, 3)


# ------------------------------------------------------------------ interruptible leases

def spot_market(machines: tuple[int, ...]):
    """An interruptible market with one provider of these machines (floor: its cost + 20%)."""
    market = bare_market("market.mechanism=interruptible")
    market.add_tenant("tenant", 100_000.0)
    (provider,) = market.add_providers([noded(market, "p", machines, cost=0.5)],
                                       CostPlus(markup=0.2)).tolist()
    events = record(market)
    return market, events, provider


def post_spot(market, gpus: int, per_replica: int, price: float, hours: float,
              interruptible: bool = True) -> int:
    return market.post_order(0, replica_units(gpus, per_replica), price,
                             deposit_usd=price * gpus * hours * 2, work_s=work(market, hours),
                             interruptible=interruptible)


def lease_id(events, order_id: int) -> int:
    return next(e.lease_id for e in events if isinstance(e, LeaseCreated)
                and e.order_id == order_id)


def test_on_demand_displaces_the_interruptible_lease_on_the_node_it_needs_then_it_resumes():
    market, events, p = spot_market((4, 4))
    spot = post_spot(market, 4, 4, 1.0, hours=3)       # first fit: node 0
    market.run(until=HOUR)
    on_demand = post_spot(market, 8, 4, 3.0, hours=1, interruptible=False)  # both nodes
    market.run(until=HOUR + 600)
    paused = [e for e in events if isinstance(e, LeasePaused)]
    assert [e.lease_id for e in paused] == [lease_id(events, spot)]
    nodes = market.pool.nodes
    assert nodes.free[nodes.of(p), 0].tolist() == [0, 0]
    assert (spot, p) not in nodes.placed and (on_demand, p) in nodes.placed
    market.run(until=4 * HOUR)
    resumed = [e for e in events if isinstance(e, LeaseResumed)]
    assert [e.lease_id for e in resumed] == [lease_id(events, spot)]
    assert resumed[0].time_s > paused[0].time_s + HOUR - 600
    market.run(until=8 * HOUR)
    assert nodes.free.tolist() == nodes.capacity.tolist() and not nodes.placed
    assert_money_conserved(market)


def test_the_higher_bid_keeps_running_even_when_the_lower_one_sat_on_the_free_node():
    """B (high bid) runs on node 0, A (low bid) on node 1. An on-demand 4-GPU order is placed
    first fit on node 0, B's node; the ranking then moves B to node 1 and pauses A."""
    market, events, p = spot_market((4, 4))
    high = post_spot(market, 4, 4, 2.0, hours=5)  # node 0
    market.run(until=600)
    low = post_spot(market, 4, 4, 1.0, hours=5)   # node 1
    market.run(until=1200)
    post_spot(market, 4, 4, 3.0, hours=1, interruptible=False)
    market.run(until=1800)
    paused = {e.lease_id for e in events if isinstance(e, LeasePaused)}
    resumed = {e.lease_id for e in events if isinstance(e, LeaseResumed)}
    assert lease_id(events, low) in paused and lease_id(events, low) not in resumed
    assert market.leases[lease_id(events, high)].running  # moved: paused and resumed at once
    nodes = market.pool.nodes
    assert nodes.placed[(high, p)][0].tolist() == [nodes.first[p] + 1]
    assert (nodes.free >= 0).all()
    spot = market.result().summary["interruptible"]
    assert (spot["pauses"], spot["resumes"], spot["resumed_at_once"]) == (2, 1, 1)
    assert_money_conserved(market)

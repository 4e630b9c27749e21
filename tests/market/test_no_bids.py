"""Why providers did not bid (`market.core.no_bids`): each provider counted once, under the
first reason in the documented precedence, where it drops out.

One hand-built market has exactly one provider per reason, so every count is 1; a property
checks on random small markets that reasons and bids always add up to the providers, and that
the screening reasons agree with a provider-by-provider reading of the rules.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.markups import CostPlus
from market import Market, load_scenario
from market.core import no_bids
from market.core.nodes import place_first_fit
from market.core.records import Order
from market.core.resources import gpu_units
from market.events import BidsPlaced, LeaseCreated, OrderExpired
from tests.market.test_engine import (
    CPU_PER_GPU,
    MEMORY_PER_GPU,
    STORAGE_PER_GPU,
    bare_market,
    of,
    provider,
    record,
    units,
)
from tests.market.test_nodes import noded

MODELS = ("h100", "a100-80gb")


def test_every_reason_once():
    market = bare_market("market.bidding_window_s=60", "market.order_max_bids=3")
    tenant = market.add_tenant("alice", 1_000.0)
    cramped = provider(market, "cramped", gpus=6)  # 4 GPUs on a node with CPU for 1
    cramped.nodes = ((4, CPU_PER_GPU, 4 * MEMORY_PER_GPU), (2, 5 * CPU_PER_GPU,
                                                            2 * MEMORY_PER_GPU))
    rows = {
        "no_model": provider(market, "a100", model="a100-80gb"),
        "offline": provider(market, "broken", failure_rate_per_s=1.0, repair_s=(1e6, 1e6)),
        "audit": provider(market, "unaudited", audited=False),
        "storage_class": provider(market, "no-ssd", storage=("ephemeral", "beta3")),
        "capacity": provider(market, "small", gpus=2),
        "fragmented": noded(market, "split", (2, 2)),
        "node_headroom": cramped,
        "price": provider(market, "dear", cost=2.5),
        "late": provider(market, "slow", latency_s=90.0),
        "bid_cap": provider(market, "fourth", latency_s=5.0),
        "fast": provider(market, "fast", latency_s=1.0),
        "second": provider(market, "second", latency_s=2.0),
    }
    ids = dict(zip(rows, market.add_providers(list(rows.values()), CostPlus(markup=0)).tolist(),
                   strict=True))
    market.add_providers([provider(market, "by-hand")], None)
    # Its bid would arrive third, inside the cap, but it cannot lock the 0.5 USD deposit.
    market.add_providers([provider(market, "poor", latency_s=1.5)], CostPlus(markup=0),
                         wallet_usd=0.4)
    market.run(until=50)  # "broken" fails within seconds and stays down
    events = record(market)
    order_id = market.post_order(tenant, units(4), 2.0, deposit_usd=100.0, audited_only=True)
    (placed,) = of(events, BidsPlaced)
    assert set(placed.providers) == {ids["fast"], ids["second"]}
    assert no_bids.as_dict(market.orders[order_id].no_bids, nonzero=False) == \
        dict.fromkeys(no_bids.REASONS, 1)
    market.run(until=200)
    (lease,) = of(events, LeaseCreated)
    assert lease.no_bids == (1,) * len(no_bids.REASONS)


def test_an_expired_order_carries_its_reasons_and_the_summary_counts_them():
    market = bare_market("market.bidding_window_s=60", record=True)
    tenant = market.add_tenant("alice", 1_000.0)
    market.add_providers([provider(market, "dear", cost=3.0), provider(market, "a", cost=3.0),
                          provider(market, "small", gpus=1),
                          provider(market, "a100", model="a100-80gb", cost=0.5)],
                         CostPlus(markup=0))
    events = record(market)
    market.post_order(tenant, units(2), 2.0, deposit_usd=100.0)
    result = market.run(until=100)
    (expired,) = of(events, OrderExpired)
    assert no_bids.as_dict(expired.no_bids) == {"no_model": 1, "capacity": 1, "price": 2}
    # Dominant: the reason most providers of an accepted model gave, not the other models'.
    assert no_bids.dominant(expired.no_bids) == "price"
    summary = result.summary["no_bids"]
    assert summary["expired_orders"] == 1
    assert summary["dominant_reason_orders"]["price"] == 1
    assert sum(summary["dominant_reason_orders"].values()) == 1
    assert summary["providers"] == no_bids.as_dict(expired.no_bids, nonzero=False)
    row = result.orders.to_pylist()[0]
    assert row["outcome"] == "expired"
    assert [row[c] for c in no_bids.COLUMNS] == list(expired.no_bids)


def test_dominant_is_no_model_only_when_nobody_else_is_left():
    counts = [0] * len(no_bids.REASONS)
    assert no_bids.dominant(counts) is None
    counts[no_bids.NO_MODEL] = 9
    assert no_bids.dominant(counts) == "no_model"
    counts[no_bids.CAPACITY] = counts[no_bids.PRICE] = 2  # a tie: the earlier reason
    assert no_bids.dominant(counts) == "capacity"


def _screening_reason(market, order, provider_id: int) -> int | None:
    """The first screening reason of one provider, read from the rules one by one (None: it
    passes screening)."""
    pool = market.pool
    if not order.model_mask[pool.model[provider_id]]:
        return no_bids.NO_MODEL
    if not pool.up[provider_id]:
        return no_bids.OFFLINE
    if order.audited_only and not pool.audited[provider_id]:
        return no_bids.AUDIT
    if pool.storage_mask[provider_id] & order.storage_mask != order.storage_mask:
        return no_bids.STORAGE_CLASS
    if not (pool.free[provider_id] >= order.need).all():
        return no_bids.CAPACITY
    nodes = pool.nodes
    if nodes.count[provider_id]:
        shape = nodes.shape(order)
        room = nodes.free[nodes.of(provider_id)]
        if place_first_fit(room.copy(), shape) is None:
            gpus_only = shape.copy()
            gpus_only[:, 1:] = 0
            fits_gpus = place_first_fit(room.copy(), gpus_only) is not None
            return no_bids.NODE_HEADROOM if fits_gpus else no_bids.FRAGMENTED
    return None


#: Machines by GPU count; "cramped": 4 GPUs beside one GPU's CPU, and 2 beside five's.
CRAMPED = ((4, CPU_PER_GPU, 4 * MEMORY_PER_GPU), (2, 5 * CPU_PER_GPU, 2 * MEMORY_PER_GPU))
provider_specs = st.lists(st.tuples(
    st.sampled_from(MODELS),
    st.sampled_from([(1,), (2,), (4,), (2, 2), (4, 4), (1, 2, 4), "cramped"]),
    st.booleans(), st.booleans(), st.floats(0.5, 3.0), st.floats(0.5, 120.0),
    st.booleans(), st.sampled_from([False, False, True])), min_size=1, max_size=8)
order_specs = st.lists(st.tuples(st.integers(1, 6), st.sampled_from((*MODELS, "both")),
                                 st.booleans(), st.sampled_from([1, 2, 4])),
                       min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(provider_specs, order_specs, st.integers(1, 4))
def test_reasons_and_bids_add_up_to_the_providers(providers, orders, cap):
    market = bare_market("market.bidding_window_s=60", f"market.order_max_bids={cap}")
    tenant = market.add_tenant("alice", 10_000.0)
    rows = []
    for i, (model, machines, audited, ssd, cost, latency, hand, broken) in enumerate(providers):
        row = noded(market, f"p{i}", (4, 2) if machines == "cramped" else machines,
                    model=model, audited=audited, cost=cost, latency_s=latency,
                    storage=("ephemeral", "beta2") if ssd else ("ephemeral", "beta3"),
                    # fails within seconds and stays down
                    failure_rate_per_s=1.0 if broken else 0.0, repair_s=(1e6, 1e6))
        if machines == "cramped":
            row.nodes = CRAMPED
        elif len(machines) == 1:
            row.nodes = ()  # one machine: no node list
        rows.append((row, hand))
    for row, hand in rows:
        market.add_providers([row], None if hand else CostPlus(markup=0))
    market.run(until=30.0)
    for i, (gpus, model, audited_only, per_replica) in enumerate(orders):
        models = MODELS if model == "both" else (model,)
        order_units = units(gpus, models) if gpus % per_replica else _replicas(
            gpus, models, per_replica)
        expected = np.zeros(len(no_bids.REASONS), np.int64)
        order_id = market._next_order
        # The screening reasons as each provider's rules give them, before the order is posted.
        req, model_mask, smask, key = market.matcher.shape(order_units)
        probe = Order(order_id, tenant, order_units, req, model_mask, smask, 0, 0, 0.0,
                      audited_only=audited_only, shape_key=key)
        for p in range(market.pool.n):
            reason = _screening_reason(market, probe, p)
            if reason is not None:
                expected[reason] += 1
        market.post_order(tenant, order_units, 2.0, deposit_usd=50.0,
                          audited_only=audited_only)
        order = market.orders[order_id]
        counted = order.no_bids
        assert sum(counted) + len(order.bid_ids) == market.pool.n
        assert counted[:no_bids.BY_HAND] == expected[:no_bids.BY_HAND].tolist()
        market.run(until=market.now + 7.0 * (i + 1))


def _replicas(gpus: int, models: tuple[str, ...], per_replica: int):
    return gpu_units(gpus, models, cpu_millicores_per_gpu=CPU_PER_GPU,
                     memory_bytes_per_gpu=MEMORY_PER_GPU, storage_bytes_per_gpu=STORAGE_PER_GPU,
                     gpus_per_replica=per_replica)


def test_the_counts_are_deterministic_and_the_summary_agrees_with_the_orders_table():
    def run():
        scenario = load_scenario("default", ["duration_days=0.2"])
        return Market(scenario, seed=3).run()

    first, again = run(), run()
    columns = list(no_bids.COLUMNS)
    table = first.orders.select(["outcome", *columns])
    assert table.equals(again.orders.select(["outcome", *columns]))
    assert first.summary["no_bids"] == again.summary["no_bids"]
    expired = [row for row in table.to_pylist() if row["outcome"] == "expired"]
    assert expired and first.summary["no_bids"]["expired_orders"] == len(expired)
    providers = first.summary["no_bids"]["providers"]
    for reason, column in zip(no_bids.REASONS, columns, strict=True):
        assert providers[reason] == sum(row[column] for row in expired)
    dominant = first.summary["no_bids"]["dominant_reason_orders"]
    assert sum(dominant.values()) == len(expired)

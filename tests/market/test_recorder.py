"""The `Recorder` as a component: a bare market is fed a hand-made event stream through `emit`
and its orders, leases and prices tables are checked row by row, in memory and as Parquet.

One test runs the engine for real, because a lease still active at the end is written with
what the market says it has paid so far.
"""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from market import Market, load_scenario
from market.core.pool import ProviderRow
from market.core.resources import gpu_units
from market.events import (
    Event,
    LeaseClosed,
    LeaseCreated,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
    Tick,
)
from market.observe import tables as recorder_module
from market.observe.tables import LEASES_SCHEMA, ORDERS_SCHEMA, PRICES_SCHEMA

HOUR = 3600.0
MICRO = 1_000_000
GIB = 2**30

# Population indices of the default scenario: its [[providers]] in file order.
DATACENTER, HOME_RIG = 0, 1
DC_H100, RIG_A = 0, 1  # provider ids, in the order `bare_market` adds them


# ----------------------------------------------------------------------------- helpers

def row(market: Market, name: str, population: int, model: str, gpus: int) -> ProviderRow:
    return ProviderRow(
        name=name, population=population, model=market.catalog.index(model), gpus=gpus,
        cpu_millicores=4_000 * gpus, memory_bytes=32 * GIB * gpus, storage_bytes=100 * GIB * gpus,
        ip_leases=0, storage_classes=("beta2",), audited=True,
        cost_full_usd_per_gpu_hour=1.0, cost_marginal_usd_per_gpu_hour=1.0,
        cost_idle_usd_per_gpu_hour=0.0, cost_fixed_usd_per_gpu_hour=0.0,
        cost_basis_usd_per_gpu_hour=1.0)


def bare_market(out=None, *overrides: str) -> Market:
    """A one-day market, no agents, two hand-bidding providers (8 × h100, 2 × rtx4090)."""
    scenario = load_scenario("default", ["duration_days=1", *overrides])
    market = Market(scenario, seed=0, out=out, populate=False, record=True)
    ids = market.add_providers([row(market, "dc-h100", DATACENTER, "h100", 8),
                                row(market, "rig-a", HOME_RIG, "rtx4090", 2)], None)
    assert ids.tolist() == [DC_H100, RIG_A]
    return market


def opened(t: float, order: int, job: int, gpus: int, models: tuple[str, ...] = ("h100",),
           max_usd_per_gpu_hour: float = 6.0, attempt: int = 0,
           tenant: int = 0) -> OrderOpened:
    return OrderOpened(t, order, tenant, job, "fine_tuning", gpus, models,
                       round(max_usd_per_gpu_hour * gpus * MICRO), attempt)


def leased(t: float, lease: int, order: int, job: int, provider: int, model: str, gpus: int,
           usd_per_gpu_hour: float, opened_at: float, bids: int = 3,
           tenant: int = 0) -> LeaseCreated:
    return LeaseCreated(t, lease, order, 1000 + lease, tenant, provider, job, model, gpus,
                        round(usd_per_gpu_hour * gpus * MICRO), bids, t - opened_at)


def closed(t: float, lease: int, order: int, job: int, provider: int, reason: str,
           paid_micro: int, work_left: float = 0.0, tenant: int = 0) -> LeaseClosed:
    return LeaseClosed(t, lease, order, tenant, provider, job, reason, paid_micro, work_left)


def feed(market: Market, events: list[Event]) -> None:
    for event in events:
        market.emit(event)


def stream() -> list[Event]:
    """Order 0 leased then closed (owner), order 1 expired, order 2 cancelled, order 3 never
    decided, order 4 leased then closed (unstable, half the work left)."""
    return [
        opened(0, 0, 0, 2),
        opened(10, 1, 1, 1, ("rtx4090", "rtx3090"), max_usd_per_gpu_hour=0.5, tenant=1),
        opened(20, 2, 2, 1),
        leased(50, 0, 0, 0, DC_H100, "h100", 2, 4.0, opened_at=0),
        OrderCancelled(90, 2, 0),
        OrderExpired(190, 1, 1, 1, 2),
        opened(200, 3, 1, 1, ("rtx4090", "rtx3090"), max_usd_per_gpu_hour=0.75, attempt=1,
               tenant=1),
        opened(250, 4, 4, 1, ("rtx4090",), max_usd_per_gpu_hour=0.5),
        leased(300, 1, 4, 4, RIG_A, "rtx4090", 1, 0.3, opened_at=250, bids=1),
        closed(50 + HOUR, 0, 0, 0, DC_H100, "owner", 8_000_000),
        closed(300 + 2 * HOUR, 1, 4, 4, RIG_A, "unstable", 600_000, work_left=0.5),
    ]


def assert_rows(table, expected: list[dict]) -> None:
    """`table` has exactly the rows `expected` (only the columns they name), in order."""
    rows = table.to_pylist()
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        for column, value in want.items():
            if isinstance(value, float):
                assert got[column] == pytest.approx(value), (want, column)
            else:
                assert got[column] == value, (want, column)


# ----------------------------------------------------------------------------- in memory

def test_orders_rows_record_outcome_price_and_decision_time():
    market = bare_market()
    feed(market, stream())
    market.recorder.close()
    # Rows are written when an order is decided; orders still open at the close come last.
    assert_rows(market.recorder.orders.table(), [
        {"order_id": 0, "job_id": 0, "tenant": 0, "job_kind": "fine_tuning", "attempt": 0,
         "gpus": 2, "gpu_models": "h100", "max_price_usd_per_gpu_hour": 6.0, "created_s": 0.0,
         "outcome": "leased", "bids": 3, "decided_s": 50.0, "lease_id": 0,
         "price_usd_per_gpu_hour": 4.0},
        {"order_id": 2, "outcome": "cancelled", "bids": 0, "decided_s": 90.0, "lease_id": None,
         "price_usd_per_gpu_hour": None, "created_s": 20.0},
        {"order_id": 1, "tenant": 1, "gpus": 1, "gpu_models": "rtx4090,rtx3090",
         "max_price_usd_per_gpu_hour": 0.5, "outcome": "expired", "bids": 2,
         "decided_s": 190.0, "lease_id": None, "price_usd_per_gpu_hour": None},
        {"order_id": 4, "job_id": 4, "outcome": "leased", "bids": 1, "decided_s": 300.0,
         "lease_id": 1, "price_usd_per_gpu_hour": 0.3},
        {"order_id": 3, "job_id": 1, "attempt": 1, "max_price_usd_per_gpu_hour": 0.75,
         "created_s": 200.0, "outcome": "open", "bids": 0, "decided_s": None,
         "lease_id": None, "price_usd_per_gpu_hour": None},
    ])


def test_leases_rows_record_end_reason_paid_and_work_left():
    market = bare_market()
    feed(market, stream())
    market.recorder.close()
    assert_rows(market.recorder.leases.table(), [
        {"lease_id": 0, "order_id": 0, "job_id": 0, "tenant": 0, "provider": DC_H100,
         "population": "datacenter", "archetype": "datacenter", "gpu_model": "h100", "gpus": 2,
         "price_usd_per_gpu_hour": 4.0, "start_s": 50.0, "end_s": 50 + HOUR,
         "reason": "owner", "paid_usd": 8.0, "work_left": 0.0},
        {"lease_id": 1, "order_id": 4, "job_id": 4, "provider": RIG_A,
         "population": "home_rig", "archetype": "home_rig", "gpu_model": "rtx4090", "gpus": 1,
         "price_usd_per_gpu_hour": 0.3, "start_s": 300.0, "end_s": 300 + 2 * HOUR,
         "reason": "unstable", "paid_usd": 0.6, "work_left": 0.5},
    ])


def test_tables_have_the_declared_schemas_in_memory():
    market = bare_market()
    feed(market, [*stream(), Tick(HOUR)])
    market.recorder.close()
    assert market.recorder.orders.table().schema.equals(ORDERS_SCHEMA)
    assert market.recorder.leases.table().schema.equals(LEASES_SCHEMA)
    assert market.recorder.prices().schema.equals(PRICES_SCHEMA)


def test_close_is_idempotent():
    market = bare_market()
    feed(market, stream())
    market.recorder.close()
    market.recorder.close()
    assert market.recorder.orders.table().num_rows == 5
    assert market.recorder.leases.table().num_rows == 2


def test_lease_still_active_at_the_end_is_written_active_with_what_it_paid():
    market = bare_market(None, "market.manifest_failure_prob=0")
    tenant = market.add_tenant("alice", 1_000.0)
    units = gpu_units(1, ("h100",), cpu_millicores_per_gpu=4_000,
                      memory_bytes_per_gpu=32 * GIB, storage_bytes_per_gpu=100 * GIB)
    # 100 USD of escrow at 2 USD/h lasts 50 h: the lease outlives the one-day run.
    order = market.post_order(tenant, units, 5.0, deposit_usd=100.0, auto_select=False)
    bid = market.submit_bid(order, DC_H100, 2.0)
    lease = market.accept_bid(order, bid)
    result = market.run()  # to the end: settles the lease and closes the recorder
    assert market.recorder.closed
    assert lease in market.leases
    assert market.leases[lease].paid == 2 * MICRO * 24  # 2 USD/h for 24 h, exact
    assert_rows(result.orders, [
        {"order_id": order, "outcome": "leased", "decided_s": 0.0, "lease_id": lease,
         "price_usd_per_gpu_hour": 2.0, "max_price_usd_per_gpu_hour": 5.0, "bids": 1},
    ])
    assert_rows(result.leases, [
        {"lease_id": lease, "order_id": order, "provider": DC_H100, "gpu_model": "h100",
         "gpus": 1, "price_usd_per_gpu_hour": 2.0, "start_s": 0.0, "end_s": None,
         "reason": "active", "paid_usd": 48.0, "work_left": None},
    ])
    # Hourly price rows for both models of the pool; the lease is in the first bucket only
    # and holds one of the 8 H100s throughout.
    prices = result.prices.to_pylist()
    h100 = [r for r in prices if r["gpu_model"] == "h100"]
    assert {r["gpu_model"] for r in prices} == {"h100", "rtx4090"}
    assert [r["time_s"] for r in h100] == [HOUR * (i + 1) for i in range(len(h100))]
    assert h100[0]["leases"] == 1 and h100[0]["price_index_usd_per_gpu_hour"] == 2.0
    assert all(r["utilization"] == pytest.approx(1 / 8) for r in h100)
    assert all(r["leases"] == 0 and math.isnan(r["price_index_usd_per_gpu_hour"])
               for r in h100[1:])


def test_price_series_covers_the_last_interval_of_the_run():
    market = bare_market(None, "market.manifest_failure_prob=0")
    tenant = market.add_tenant("alice", 1_000.0)
    units = gpu_units(1, ("h100",), cpu_millicores_per_gpu=4_000,
                      memory_bytes_per_gpu=32 * GIB, storage_bytes_per_gpu=100 * GIB)
    day_s = 86_400.0
    market.run(until=day_s - HOUR / 2)  # into the last hour of the run
    order = market.post_order(tenant, units, 5.0, deposit_usd=100.0, auto_select=False)
    market.accept_bid(order, market.submit_bid(order, DC_H100, 2.0))
    prices = [r for r in market.run().prices.to_pylist() if r["gpu_model"] == "h100"]
    assert [r["time_s"] for r in prices] == [HOUR * (i + 1) for i in range(int(day_s // HOUR))]
    assert prices[-1]["leases"] == 1
    assert prices[-1]["price_index_usd_per_gpu_hour"] == 2.0


# ----------------------------------------------------------------------------- Parquet

def many(orders: int) -> tuple[list[Event], list[int], list[int]]:
    """`orders` one-GPU orders: even ones leased and closed, odd ones expired; returns the
    events, the order ids in decision order and the lease ids in close order."""
    events: list[Event] = []
    decided: list[int] = []
    for order in range(orders):
        t = 100.0 * order
        events.append(opened(t, order, order, 1))
        if order % 2 == 0:
            events.append(leased(t + 10, order // 2, order, order, DC_H100, "h100", 1, 1.0 + order,
                                 opened_at=t))
            events.append(closed(t + 50, order // 2, order, order, DC_H100, "owner",
                                 round((1.0 + order) * MICRO * 40 / 3600)))
        else:
            events.append(OrderExpired(t + 60, order, 0, order, 0))
        decided.append(order)
    return events, decided, list(range((orders + 1) // 2))


def test_parquet_files_are_written_on_close_with_the_schemas(tmp_path):
    market = bare_market(tmp_path)
    feed(market, [*stream(), Tick(HOUR), Tick(2 * HOUR)])
    market.recorder.close()
    for name, schema, rows in (("orders", ORDERS_SCHEMA, 5), ("leases", LEASES_SCHEMA, 2),
                               ("prices", PRICES_SCHEMA, 4)):
        path = tmp_path / f"{name}.parquet"
        assert path.exists(), name
        table = pq.read_table(path)
        assert table.schema.equals(schema), name
        assert table.num_rows == rows, name
    # The same rows as in memory.
    orders = pq.read_table(tmp_path / "orders.parquet")
    assert orders.column("order_id").to_pylist() == [0, 2, 1, 4, 3]
    assert orders.column("outcome").to_pylist() == [
        "leased", "cancelled", "expired", "leased", "open"]
    assert market.recorder.orders.table().equals(orders)
    prices = pq.read_table(tmp_path / "prices.parquet").to_pylist()
    # Ticks at 1 h and 2 h, h100 and rtx4090 (the pool's models).
    assert [(r["time_s"], r["gpu_model"]) for r in prices] == [
        (HOUR, "h100"), (HOUR, "rtx4090"), (2 * HOUR, "h100"), (2 * HOUR, "rtx4090")]
    assert prices[0]["price_index_usd_per_gpu_hour"] == pytest.approx(4.0)
    assert prices[1]["price_index_usd_per_gpu_hour"] == pytest.approx(0.3)


def test_reading_a_streamed_table_before_close_is_refused(tmp_path):
    market = bare_market(tmp_path)
    feed(market, stream())
    with pytest.raises(RuntimeError, match="finish the run"):
        market.recorder.orders.table()


def test_more_rows_than_a_batch_stream_in_row_groups_and_keep_their_order(tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(recorder_module, "_BATCH_ROWS", 3)
    market = bare_market(tmp_path)
    events, decided, closed_leases = many(11)
    feed(market, events)
    market.recorder.close()
    orders_file = pq.ParquetFile(tmp_path / "orders.parquet")
    leases_file = pq.ParquetFile(tmp_path / "leases.parquet")
    assert orders_file.num_row_groups > 1
    assert leases_file.num_row_groups > 1
    orders = orders_file.read()
    leases = leases_file.read()
    assert orders.schema.equals(ORDERS_SCHEMA)
    assert leases.schema.equals(LEASES_SCHEMA)
    assert orders.column("order_id").to_pylist() == decided
    assert orders.column("outcome").to_pylist() == [
        "leased" if order % 2 == 0 else "expired" for order in decided]
    assert orders.column("price_usd_per_gpu_hour").to_pylist() == [
        1.0 + order if order % 2 == 0 else None for order in decided]
    assert leases.column("lease_id").to_pylist() == closed_leases
    assert leases.column("order_id").to_pylist() == [2 * lease for lease in closed_leases]
    assert leases.column("end_s").to_pylist() == [200.0 * lease + 50 for lease in closed_leases]


def test_more_rows_than_a_batch_in_memory_keep_their_order(monkeypatch):
    monkeypatch.setattr(recorder_module, "_BATCH_ROWS", 3)
    market = bare_market()
    events, decided, closed_leases = many(11)
    feed(market, events)
    market.recorder.close()
    assert len(market.recorder.orders.batches) > 1
    assert market.recorder.orders.table().column("order_id").to_pylist() == decided
    assert market.recorder.leases.table().column("lease_id").to_pylist() == closed_leases

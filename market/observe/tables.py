"""Result tables from the event stream: orders, leases, jobs (their welfare), providers (their
costs and profits) and the price series.

With an output directory, rows stream to Parquet in row groups as orders, leases and jobs
finish, so memory does not grow with the run; without one, they are kept as Arrow record
batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from market.core.no_bids import COLUMNS
from market.core.state import MarketState
from market.events import (
    Event,
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
)
from market.observe.metrics import Metrics
from market.observe.welfare import JOBS_COLUMNS, Welfare, rows
from market.units import micro_to_usd, per_gpu_hour_usd

ORDERS_SCHEMA = pa.schema([
    ("order_id", pa.int64()), ("job_id", pa.int64()), ("tenant", pa.int64()),
    ("job_kind", pa.string()), ("attempt", pa.int32()), ("gpus", pa.int32()),
    ("gpu_models", pa.string()), ("max_price_usd_per_gpu_hour", pa.float64()),
    ("created_s", pa.float64()), ("outcome", pa.string()), ("bids", pa.int32()),
    ("decided_s", pa.float64()), ("lease_id", pa.int64()),
    ("price_usd_per_gpu_hour", pa.float64()), ("interruptible", pa.bool_()),
    # Providers that did not bid when its auction opened, one column per reason
    # (market.core.no_bids); null only where not counted (orders cleared in a batch). Plain
    # int columns: pandas sums, filters and groups them as they load, with no parsing.
    *((column, pa.int32()) for column in COLUMNS),
])
_NOT_COUNTED = [None] * len(COLUMNS)

LEASES_SCHEMA = pa.schema([
    ("lease_id", pa.int64()), ("order_id", pa.int64()), ("job_id", pa.int64()),
    ("tenant", pa.int64()), ("provider", pa.int64()), ("population", pa.string()),
    ("archetype", pa.string()), ("gpu_model", pa.string()), ("gpus", pa.int32()),
    ("price_usd_per_gpu_hour", pa.float64()), ("start_s", pa.float64()),
    ("end_s", pa.float64()), ("reason", pa.string()), ("paid_usd", pa.float64()),
    ("work_left", pa.float64()), ("interruptible", pa.bool_()), ("pauses", pa.int32()),
    ("paused_s", pa.float64()),
])

PRICES_SCHEMA = pa.schema([
    ("time_s", pa.float64()), ("gpu_model", pa.string()),
    ("price_index_usd_per_gpu_hour", pa.float64()), ("leases", pa.int64()),
    ("utilization", pa.float64()),
])

#: Burn-Mint Equilibrium over time, one row per check (`market.core.bme_settlement`).
BME_SCHEMA = pa.schema([
    ("time_s", pa.float64()), ("akt_spot_usd", pa.float64()), ("akt_twap_usd", pa.float64()),
    ("oracle_healthy", pa.bool_()), ("collateral_ratio", pa.float64()),
    ("mint_status", pa.string()), ("outstanding_act_usd", pa.float64()),
    ("vault_akt", pa.float64()), ("akt_burned", pa.float64()), ("akt_minted", pa.float64()),
])

#: One row per provider paid in AKT.
BME_PROVIDERS_SCHEMA = pa.schema([
    ("provider", pa.int64()), ("akt_earned", pa.float64()),
    ("usd_at_settlement", pa.float64()), ("usd_at_sale", pa.float64()),
])

#: One row per provider population per entry-and-exit review (`agents.entry_exit`).
ENTRY_EXIT_SCHEMA = pa.schema([
    ("time_s", pa.float64()), ("population", pa.string()), ("providers_on_market", pa.int64()),
    ("gpus_on_market", pa.int64()), ("entered", pa.int64()), ("exited", pa.int64()),
    ("committed", pa.int64()), ("long_run_profit_usd_per_gpu_hour", pa.float64()),
])

JOBS_SCHEMA = pa.schema([(name, getattr(pa, kind)()) for name, kind in JOBS_COLUMNS])

PROVIDERS_SCHEMA = pa.schema([
    ("provider", pa.int64()), ("name", pa.string()), ("population", pa.string()),
    ("archetype", pa.string()), ("gpu_model", pa.string()), ("gpus", pa.int32()),
    ("busy_gpu_hours", pa.float64()), ("on_market_hours", pa.float64()),
    ("revenue_usd", pa.float64()), ("serving_cost_usd", pa.float64()),
    ("idle_power_cost_usd", pa.float64()), ("operations_cost_usd", pa.float64()),
    ("avoidable_cost_usd", pa.float64()), ("capex_usd", pa.float64()),
    ("short_run_profit_usd", pa.float64()), ("long_run_profit_usd", pa.float64()),
    ("arrived_s", pa.float64()), ("exited_s", pa.float64()),
])

#: Rows of a table held as Python tuples before they become an Arrow batch (and, with `out`,
#: a Parquet row group on disk): a few thousand keep a streamed run's memory flat in its
#: length (at 50,000 a week of leases stayed resident until the first write).
_BATCH_ROWS = 5_000


class _Table:
    """Rows of one table, buffered as tuples and flushed as record batches."""

    def __init__(self, schema: pa.Schema, path: Path | None) -> None:
        self.schema = schema
        self.rows: list[tuple[Any, ...]] = []
        self.batches: list[pa.RecordBatch] = []
        self.writer = pq.ParquetWriter(path, schema) if path is not None else None
        self.path = path

    def append(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= _BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        columns = [pa.array(column, type=field.type)
                   for column, field in zip(zip(*self.rows, strict=True), self.schema,
                                            strict=True)]
        batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        self.rows.clear()
        if self.writer is not None:
            self.writer.write_batch(batch)
        else:
            self.batches.append(batch)

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def table(self) -> pa.Table:
        if self.path is not None:
            if self.writer is not None:
                raise RuntimeError("the table is still being written; finish the run first")
            return pq.read_table(self.path)
        self.flush()
        return pa.Table.from_batches(self.batches, schema=self.schema)


class Recorder:
    """Subscribes to a market and keeps its orders and leases tables."""

    def __init__(self, market: MarketState, welfare: Welfare, metrics: Metrics,
                 out: str | Path | None = None) -> None:
        self.market = market
        self._welfare = welfare
        self._metrics = metrics
        self.out = Path(out) if out is not None else None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        self.orders = _Table(ORDERS_SCHEMA, self._path("orders.parquet"))
        self.leases = _Table(LEASES_SCHEMA, self._path("leases.parquet"))
        self.jobs = _Table(JOBS_SCHEMA, self._path("jobs.parquet"))
        self.providers = _Table(PROVIDERS_SCHEMA, self._path("providers.parquet"))
        welfare.sink = self.jobs.append  # a job's row is written when it is over
        self._open_orders: dict[int, list[Any]] = {}
        self._open_leases: dict[int, list[Any]] = {}
        self.closed = False
        self._pause_started: dict[int, float] = {}
        market.subscribe(self.on_event, kinds=(OrderOpened, LeaseCreated, OrderExpired,
                                               OrderCancelled, LeaseClosed, LeasePaused,
                                               LeaseResumed))

    def _path(self, name: str) -> Path | None:
        return self.out / name if self.out is not None else None

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is OrderOpened:
            self._open_orders[event.order_id] = [
                event.order_id, event.job_id, event.tenant, event.job_kind, event.attempt,
                event.gpus, ",".join(event.gpu_models),
                per_gpu_hour_usd(event.max_price_micro_per_hour, event.gpus),
                event.time_s, "open", 0, None, None, None, event.interruptible,
                *_NOT_COUNTED]
        elif kind is LeaseCreated:
            row = self._open_orders.pop(event.order_id)
            row[9:14] = ["leased", event.bids, event.time_s, event.lease_id,
                         per_gpu_hour_usd(event.price_micro_per_hour, event.gpus)]
            if event.no_bids:
                row[15:] = event.no_bids
            self.orders.append(tuple(row))
            pool = self.market.pool
            population = int(pool.population[event.provider])
            self._open_leases[event.lease_id] = [
                event.lease_id, event.order_id, event.job_id, event.tenant, event.provider,
                pool.population_names[population], pool.population_archetypes[population],
                event.gpu_model, event.gpus, row[13], event.time_s, None, "active", 0.0, None,
                event.interruptible, 0, 0.0]
        elif kind is OrderExpired or kind is OrderCancelled:
            row = self._open_orders.pop(event.order_id)
            row[9:12] = ["expired" if kind is OrderExpired else "cancelled",
                         getattr(event, "bids", 0), event.time_s]
            if getattr(event, "no_bids", ()):
                row[15:] = event.no_bids
            self.orders.append(tuple(row))
        elif kind is LeaseClosed:
            row = self._open_leases.pop(event.lease_id)
            row[11:15] = [event.time_s, event.reason, micro_to_usd(event.paid_micro),
                          event.work_left]
            since = self._pause_started.pop(event.lease_id, None)
            if since is not None:  # closed while paused
                row[17] += event.time_s - since
            self.leases.append(tuple(row))
        elif kind is LeasePaused:
            self._open_leases[event.lease_id][16] += 1
            self._pause_started[event.lease_id] = event.time_s
        elif kind is LeaseResumed:
            self._open_leases[event.lease_id][17] += event.paused_s
            self._pause_started.pop(event.lease_id, None)

    def close(self) -> None:
        """Write what is still open (orders `open`, leases `active`) and the price series."""
        if self.closed:
            return
        orders = self.market.orders
        for order_id, row in self._open_orders.items():
            order = orders.get(order_id)
            if order is not None and order.no_bids is not None:
                row[15:] = order.no_bids
            self.orders.append(tuple(row))
        for lease_id, row in self._open_leases.items():
            row[13] = micro_to_usd(self.market.leases[lease_id].paid)
            since = self._pause_started.pop(lease_id, None)
            if since is not None:  # paused at the end: counted up to now
                row[17] += self.market.now - since
            self.leases.append(tuple(row))
        self._open_orders.clear()
        self._open_leases.clear()
        self.orders.close()
        self.leases.close()
        for row in rows(self._welfare.open_accounts()):  # jobs not over: as they stand
            self.jobs.append(row)
        self.jobs.close()
        for row in self._metrics.provider_rows():
            self.providers.append(row)
        self.providers.close()
        prices = self.prices()
        if self.out is not None:
            pq.write_table(prices, self.out / "prices.parquet")
        self.closed = True

    def prices(self) -> pa.Table:
        rows = self._metrics.series
        return pa.Table.from_pylist(rows, schema=PRICES_SCHEMA)

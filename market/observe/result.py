"""What a run returns: the summary (plain data) and the result tables (Arrow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from market.core.state import MarketState
from market.observe.metrics import Metrics
from market.observe.tables import (
    BME_PROVIDERS_SCHEMA,
    BME_SCHEMA,
    ENTRY_EXIT_SCHEMA,
    PRICES_SCHEMA,
    Recorder,
)
from market.units import SECONDS_PER_DAY

if TYPE_CHECKING:  # plots bring in matplotlib: only for those who draw
    from market.observe.plots import RunPlots


class RunResult:
    """The summary of a run and its tables.

    `summary` is JSON-ready; `orders`, `leases`, `jobs`, `providers` and `prices` are pyarrow
    Tables (call `.to_pandas()` for pandas). Tables are complete once the run reached its
    end. The summary and the price and utilization series (`prices`) are always kept; the
    per-order, per-lease, per-job and per-provider tables only when the market was made with
    `record=True` (the default). `plot.prices()`, `plot.utilization()` and `plot.welfare()`
    draw the run (matplotlib); in a notebook the result shows itself as a short HTML summary.
    """

    def __init__(self, market: MarketState, metrics: Metrics,
                 recorder: Recorder | None) -> None:
        self._metrics = metrics
        self._recorder = recorder
        self._scenario = market.scenario
        self.summary: dict[str, Any] = {
            "scenario": market.scenario.name,
            "seed": market.seed,
            "mechanism": market.scenario.market.mechanism,
            "simulated_days": market.now / SECONDS_PER_DAY,
            "providers_count": market.pool.n,
            "tenants_count": len(market.tenant_accounts),
            **metrics.summary(),
            **market.money(),
        }
        if market.node_lists:  # providers made of real clusters' machines
            self.summary["node_lists"] = dict(market.node_lists)
        if market.pool.nodes.any:  # orders turned away for want of room on one node
            self.summary["node_fragmentation"] = market.pool.nodes.fragmentation()
        trace = getattr(market, "trace_demand", None)  # jobs replayed from a trace file
        if trace is not None:
            self.summary["trace"] = trace.summary()
        # Providers entering and leaving (`agents.entry_exit`), where the scenario has them.
        self._entry_exit = getattr(market, "entry_exit", None)
        if self._entry_exit is not None:
            self.summary["entry_exit"] = self._entry_exit.summary()
        # Settlement in AKT (`market.core.bme_settlement`), where the scenario has it.
        self._bme = market.settlement if market.rules.settlement == "bme" else None
        if self._bme is not None:
            self.summary["bme"] = self._bme.summary()

    def __repr__(self) -> str:
        from market.observe.reprs import result_text

        return result_text(self)

    def _repr_html_(self) -> str:
        from market.observe.reprs import result_html

        return result_html(self)

    @property
    def plot(self) -> RunPlots:
        """Plots of this run, drawn inline in a notebook: `plot.prices()`,
        `plot.utilization()`, `plot.welfare()`; each returns its matplotlib Axes."""
        from market.observe.plots import RunPlots

        return RunPlots(self)

    def _table(self, name: str) -> pa.Table:
        if name == "prices":  # the metrics keep the series whether or not the run records
            return pa.Table.from_pylist(self._metrics.series, schema=PRICES_SCHEMA)
        recorder = self._recorder
        if recorder is None:
            raise RuntimeError(f"{name}: this market was made with record=False, which keeps "
                               "only the summary and the price series (`prices`); make it "
                               "with record=True (the default) for the per-order, per-lease, "
                               "per-job and per-provider tables")
        return getattr(recorder, name).table()

    @property
    def orders(self) -> pa.Table:
        return self._table("orders")

    @property
    def leases(self) -> pa.Table:
        return self._table("leases")

    @property
    def jobs(self) -> pa.Table:
        """One row per job: its welfare decomposition (see `market.observe.welfare`)."""
        return self._table("jobs")

    @property
    def providers(self) -> pa.Table:
        """One row per provider: its revenue, costs and short- and long-run profit."""
        return self._table("providers")

    @property
    def prices(self) -> pa.Table:
        """One row per GPU model per price-index bucket (`market.price_index_interval_s`):
        `time_s` (end of the bucket, simulated seconds), `gpu_model`,
        `price_index_usd_per_gpu_hour` (GPU-weighted mean price of the leases made in the
        bucket; NaN if none), `leases` made, and `utilization` (share of the model's GPUs
        leased at the bucket's end). Kept with or without `record`."""
        return self._table("prices")

    @property
    def entry_exit(self) -> pa.Table | None:
        """One row per provider population per entry-and-exit review: `time_s`,
        `population`, `providers_on_market` and `gpus_on_market` then, how many `entered`
        and `exited` so far, how many are `committed` (on their way), and the population's
        `long_run_profit_usd_per_gpu_hour` since the previous review (long-run profit over
        its GPU-hours on the market). None when the scenario has no entry and exit."""
        if self._entry_exit is None:
            return None
        return pa.Table.from_pylist(self._entry_exit.series, schema=ENTRY_EXIT_SCHEMA)

    @property
    def bme(self) -> pa.Table | None:
        """Burn-Mint Equilibrium over time, one row per check (`market.bme.check_interval_s`)
        and one at the end: `time_s`, `akt_spot_usd`, `akt_twap_usd` (the oracle's price),
        `oracle_healthy`, `collateral_ratio` (null while no ACT is outstanding),
        `mint_status`, `outstanding_act_usd`, `vault_akt`, and the AKT `akt_burned` and
        `akt_minted` so far. None unless `market.settlement` is "bme"."""
        if self._bme is None:
            return None
        return pa.Table.from_pylist(self._bme.series, schema=BME_SCHEMA)

    @property
    def bme_providers(self) -> pa.Table | None:
        """One row per provider paid in AKT: `provider`, `akt_earned`, `usd_at_settlement`
        (each payment at its settlement price) and `usd_at_sale` (what selling it fetched).
        None unless `market.settlement` is "bme"."""
        if self._bme is None:
            return None
        return pa.Table.from_pylist(self._bme.providers_rows(), schema=BME_PROVIDERS_SCHEMA)

    def to_json(self) -> str:
        """The summary as one JSON object: sorted keys, so equal runs give equal bytes."""
        return json.dumps(self.summary, sort_keys=True, allow_nan=False)

    def write(self, out: str | Path) -> None:
        """Write `summary.json` and `scenario.json` to `out` (tables are streamed there when
        the market has `out=`, otherwise written now). With the summary's seed, the resolved
        scenario rebuilds the very run (`market.observe.eventlog.read_scenario`)."""
        import pyarrow.parquet as pq

        from market.observe.eventlog import write_scenario

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(self.to_json() + "\n", encoding="utf-8")
        write_scenario(folder, self._scenario)
        recorder = self._recorder
        if recorder is not None and recorder.out != folder:
            for name in ("orders", "leases", "jobs", "providers", "prices"):
                pq.write_table(self._table(name), folder / f"{name}.parquet")
        if self._entry_exit is not None:
            pq.write_table(self.entry_exit, folder / "entry_exit.parquet")
        if self._bme is not None:
            pq.write_table(self.bme, folder / "bme.parquet")
            pq.write_table(self.bme_providers, folder / "bme_providers.parquet")

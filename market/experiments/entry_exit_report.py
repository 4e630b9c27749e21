"""A run's entry-and-exit report: how prices, the providers on the market and their long-run
profit moved over a run with entry and exit (`[entry_exit]`, `agents.entry_exit`).

`write_run_report(directory)` reads a run's folder (`gpumarket run --out DIR`: summary.json,
prices.parquet and entry_exit.parquet) and writes `report.html` with its figures in
`report/`, in the page frame of the sweep reports (`market.experiments.report_html`).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from market.experiments import labels
from market.experiments.analysis import ReportError
from market.experiments.report_html import (
    _document,
    _figure,
    _figure_html,
    _figures_folder,
    _grid,
    _legend,
    _save,
    _slug,
    _table,
    _th,
)
from market.units import SECONDS_PER_DAY

#: The figures' price index is averaged over buckets of this many simulated days (an hour's
#: index of a small market jumps with every lease).
PRICE_BUCKET_DAYS = 7.0


def is_run_folder(directory: str | Path) -> bool:
    """Whether `directory` holds one run's results (`gpumarket run --out`)."""
    return (Path(directory) / "summary.json").is_file()


def write_run_report(directory: str | Path) -> Path:
    """Write `directory/report.html` (and its figures in `directory/report/`) for the run in
    `directory`; return its path. Raises ReportError, before anything is written, when the
    folder is not a run's with entry and exit."""
    folder = Path(directory)
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"{folder}: not a run's folder (summary.json: {error})") from None
    if not isinstance(summary, dict) or "entry_exit" not in summary:
        raise ReportError(f"{folder}: the run has no entry and exit (its scenario has no "
                          "[entry_exit] table); a run report shows entry and exit")
    tables = {}
    for name in ("prices", "entry_exit"):
        try:
            tables[name] = pq.read_table(folder / f"{name}.parquet").to_pylist()
        except (OSError, ValueError) as error:
            raise ReportError(f"{folder}: {name}.parquet: {error}") from None
    figures = _figures_folder(folder)
    drawn = [_price_figure(tables["prices"], figures),
             _utilization_figure(tables["prices"], figures),
             _providers_figure(tables["entry_exit"], figures),
             _profit_figure(tables["entry_exit"], figures)]
    notes = [note for html, note in drawn if not html]
    days = labels.format_number(summary.get("simulated_days", 0))
    body = [
        f"<p>Scenario {escape(str(summary.get('scenario')))}, seed "
        f"{escape(str(summary.get('seed')))}, {escape(days)} simulated days. Providers "
        "review the market on a clock: those whose revenue did not cover their avoidable "
        "costs over the window leave; new ones invest when the expected "
        "long-run profit beats the hurdle, and arrive after the investment lag (README, "
        "\u201cEntry and exit\u201d).</p>",
        '<h2 id="summary">Entry and exit</h2>', _totals(summary["entry_exit"]),
        '<h2 id="figures">Over time</h2>', _grid([html for html, _ in drawn if html], notes),
    ]
    path = folder / "report.html"
    path.write_text(_document(f"Run report: {summary.get('scenario')}", body),
                    encoding="utf-8")
    return path


def _totals(figures: dict[str, Any]) -> str:
    head = "".join(_th(t) for t in ("population", "entered", "exited", "providers on market",
                                    "GPUs on market"))
    rows = [f"<tr><td>{escape(name)}</td>"
            + "".join(f'<td class="num">{int(row[key])}</td>'
                      for key in ("entered", "exited", "providers_on_market", "gpus_on_market"))
            + "</tr>" for name, row in figures.get("by_population", {}).items()]
    more = (f"<p>At the end: {figures.get('leaving', 0)} providers leaving (serving their last "
            f"leases), {figures.get('committed', 0)} committed to enter and not yet "
            "arrived.</p>")
    return _table(head, rows) + more


def _bucketed(rows: list[dict[str, Any]], model: str, column: str,
              weighted: bool) -> tuple[np.ndarray, list[float]] | None:
    """`column` of `model`'s rows averaged over PRICE_BUCKET_DAYS (weighted by leases when
    `weighted`, and then over the hours with a lease only): bucket middles (days), means."""
    mine = [r for r in rows if r["gpu_model"] == model and np.isfinite(r[column])
            and (r["leases"] > 0 or not weighted)]
    if not mine:
        return None
    bucket = np.array([int(r["time_s"] / SECONDS_PER_DAY // PRICE_BUCKET_DAYS) for r in mine])
    weights = np.array([r["leases"] if weighted else 1 for r in mine], float)
    values = np.array([r[column] for r in mine], float)
    keys = np.unique(bucket)
    means = [float(np.average(values[bucket == k], weights=weights[bucket == k]))
             for k in keys]
    return (keys + 0.5) * PRICE_BUCKET_DAYS, means


def _price_figure(rows: list[dict[str, Any]], folder: Path) -> tuple[str, str]:
    """The price index of each GPU model, averaged over PRICE_BUCKET_DAYS (weighted by
    leases), against simulated days."""
    return _model_figure(
        rows, folder, "price_index_usd_per_gpu_hour", True, "Price (USD/GPU-h)",
        "price_by_model.png", "Price by GPU model",
        f"Mean price of the leases that started, USD per GPU-hour, by GPU model, over "
        f"{PRICE_BUCKET_DAYS:g}-day buckets.")


def _utilization_figure(rows: list[dict[str, Any]], folder: Path) -> tuple[str, str]:
    return _model_figure(
        rows, folder, "utilization", False, "Utilization", "utilization_by_model.png",
        "Utilization by GPU model",
        f"Share of the GPUs on the market that are leased, by GPU model, mean over "
        f"{PRICE_BUCKET_DAYS:g}-day buckets.")


def _model_figure(rows: list[dict[str, Any]], folder: Path, column: str, weighted: bool,
                  ylabel: str, file: str, heading: str, caption: str) -> tuple[str, str]:
    figure, ax = _figure()
    lines = 0
    for model in sorted({r["gpu_model"] for r in rows}):
        found = _bucketed(rows, model, column, weighted)
        if found is None:
            continue
        ax.plot(*found, marker="o", markersize=3, label=model)
        lines += 1
    if not lines:
        return "", f"No {heading.lower()} figure: no lease in the run."
    ax.set_xlabel("Simulated day")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    _legend(figure, ax, [], lines)
    path = folder / file
    _save(figure, path)
    return _figure_html(path, figure, heading, caption), ""


def _by_population(rows: list[dict[str, Any]], column: str) -> dict[str, tuple[np.ndarray,
                                                                               np.ndarray]]:
    series = {}
    for name in dict.fromkeys(r["population"] for r in rows):
        mine = [r for r in rows if r["population"] == name]
        series[name] = (np.array([r["time_s"] for r in mine]) / SECONDS_PER_DAY,
                        np.array([r[column] for r in mine], float))
    return series


def _providers_figure(rows: list[dict[str, Any]], folder: Path) -> tuple[str, str]:
    if not rows:
        return "", "No providers figure: the run ended before its first review."
    figure, ax = _figure()
    series = _by_population(rows, "providers_on_market")
    for name, (days, count) in series.items():
        ax.step(days, count, where="post", label=name)
    ax.set_xlabel("Simulated day (review)")
    ax.set_ylabel("Providers on the market")
    ax.set_ylim(bottom=0)
    _legend(figure, ax, [], len(series) if len(series) > 1 else 0)
    path = folder / f"providers_{_slug('on_market')}.png"
    _save(figure, path)
    return _figure_html(path, figure, "Providers on the market",
                        "Providers on the market at each review (arrived and not yet gone; "
                        "one leaving while it serves its last leases still counts), by "
                        "population."), ""


def _profit_figure(rows: list[dict[str, Any]], folder: Path) -> tuple[str, str]:
    if not rows:
        return "", "No profit figure: the run ended before its first review."
    figure, ax = _figure()
    series = _by_population(rows, "long_run_profit_usd_per_gpu_hour")
    for name, (days, profit) in series.items():
        ax.plot(days, profit, marker="o", markersize=3, label=name)
    ax.axhline(0.0, color="#888", linewidth=0.8)
    ax.set_xlabel("Simulated day (review)")
    ax.set_ylabel("Long-run profit (USD/GPU-h)")
    _legend(figure, ax, [], len(series) if len(series) > 1 else 0)
    path = folder / "long_run_profit.png"
    _save(figure, path)
    return _figure_html(path, figure, "Long-run profit per GPU-hour",
                        "Mean long-run profit (revenue net of fees − avoidable costs − capex) "
                        "per GPU-hour on the market, between one review and the next, by "
                        "population; zero is the free-entry equilibrium."), ""

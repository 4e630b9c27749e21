"""A calibration's HTML report: the fitted parameters, each target observed against
simulated, and the loss over the evaluations; in the page style of a sweep's report
(`market.experiments.report_html`), self-contained and readable offline."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from market.experiments import labels
from market.experiments.report_html import (
    _document,
    _figure,
    _figure_html,
    _figures_folder,
    _save,
    _table,
    _th,
)


def write_calibration_report(folder: Path, *, name: str, description: str, method: str,
                             replications: int, bounds: dict[str, tuple[float, float]],
                             best: dict[str, Any], losses: list[float],
                             fit: list[dict[str, Any]]) -> Path:
    """Write `folder/report.html` and `folder/report/loss.png` for a calibration: its
    parameters' `bounds`, the `best` evaluation, every evaluation's loss in order, and the
    fit rows (`market.experiments.calibration.fit_table`); return the page's path."""
    figures = _figures_folder(folder)
    path = figures / "loss.png"
    figure = _loss_figure(np.array(losses, dtype=float))
    _save(figure, path)
    fitted = [f"<tr><td title=\"{escape(p)}\">{escape(labels.parameter(p).label)}</td>"
              f'<td class="num">{escape(labels.format_number(value))}</td>'
              f'<td class="num">{escape(labels.format_number(bounds[p][0]))} – '
              f"{escape(labels.format_number(bounds[p][1]))}</td></tr>"
              for p, value in best["values"].items()]
    fit = [
        f"<tr><td title=\"{escape(row['metric'])}\">"
        f"{escape(labels.metric(row['metric']).label)}</td>"
        f'<td class="num">{_number(row["target"])} ± {_number(row["target_sd"])}</td>'
        f"<td>{escape(row['source'])}</td>"
        f'<td class="num">{escape(simulated(row))}</td>'
        f'<td class="num">{_number(row["loss"])}</td></tr>'
        for row in fit]
    loss = _figure_html(path, figure, "Loss", "Each evaluation and the best so far (log scale).")
    title = f"Calibration report: {name}"
    body = [
        f"<p>{escape(description)}</p>" if description else "",
        f"<p>{len(losses)} evaluations ({method}) of {replications} runs "
        "each, every candidate on the same seeds. Loss: Σ weight × ((simulated − target) / "
        f"sd)²; best {_number(best['loss'])}. The calibrated scenario is "
        "<code>calibrated.toml</code>.</p>",
        '<h2 id="parameters">Fitted parameters</h2>',
        _table(_th("parameter") + _th("fitted") + _th("bounds"), fitted),
        '<h2 id="fit">Observed against simulated</h2>',
        _table(_th("metric") + _th("target ± sd") + _th("source")
               + _th("simulated ± 95% CI over the runs") + _th("loss"), fit),
        '<h2 id="loss">Loss over the evaluations</h2>',
        f'<div class="plots">{loss}</div>']
    page = folder / "report.html"
    page.write_text(_document(title, body), encoding="utf-8")
    return page


def _number(value: float) -> str:
    return escape(labels.format_number(value))


def simulated(row: dict[str, Any]) -> str:
    """A fit row's simulated mean ± the half-width of its 95% t interval (as sweep reports
    show means)."""
    return labels.format_interval(row["simulated"], row["simulated_high"] - row["simulated"])


def _loss_figure(losses: np.ndarray) -> Any:
    figure, ax = _figure()
    at = np.arange(1, losses.size + 1)
    shown = np.maximum(losses, 1e-12)  # a perfect fit is 0: shown at the axis' floor
    ax.plot(at, shown, "o", markersize=3, color="#4c72b0", label="evaluation")
    ax.plot(at, np.minimum.accumulate(shown), "-", color="#dd8452", label="best so far")
    ax.set_yscale("log")
    ax.set_xlabel("evaluation", fontsize="small")
    ax.set_ylabel("loss", fontsize="small")
    figure.legend(loc="outside lower center", ncols=2, fontsize="x-small", frameon=False)
    return figure

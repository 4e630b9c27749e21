"""A sensitivity analysis' HTML report: the Sobol' indices with their intervals, and a bar
chart per metric.

`write_sensitivity_report` writes `report.html` and its figures in `report/`, in the page style
of a sweep's report (`market.experiments.report_html`): self-contained, readable offline.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from market.experiments import labels
from market.experiments.report_html import (
    FIGURE_INCHES,
    _document,
    _figure,
    _figure_html,
    _figures_folder,
    _note,
    _save,
    _slug,
    _table,
    _th,
)

FIRST_COLOUR, TOTAL_COLOUR = "#4c72b0", "#dd8452"


def write_sensitivity_report(directory: str | Path, indices: pa.Table, *, name: str,
                             description: str, runs: int, points: int, samples: int,
                             confidence: float, resamples: int) -> Path:
    """Write `directory/report.html` (and `directory/report/*.png`) for `indices`
    (`market.experiments.sensitivity.sobol_table`); return the page's path."""
    folder = Path(directory)
    figures = _figures_folder(folder)
    rows = indices.to_pylist()
    metrics = list(dict.fromkeys(row["metric"] for row in rows))
    cells, drawn, notes = [], [], []
    for metric in metrics:
        mine = [row for row in rows if row["metric"] == metric]
        title = labels.metric(metric).label  # the indices are shares, not the metric's unit
        if all(math.isnan(row["first_order"]) for row in mine):
            notes.append(f"{title}: the same at every design point, so no parameter explains "
                         "any of its variance (no indices).")
        else:
            path = figures / f"sobol-{_slug(metric)}.png"
            figure = _bars(mine, title)
            _save(figure, path)
            drawn.append(_figure_html(path, figure, title, "First-order (alone) and total "
                                      f"(with interactions) Sobol' indices, {confidence:.0%} "
                                      "bootstrap intervals."))
        for row in mine:
            cells.append("<tr>" + "".join([
                f'<td title="{escape(metric)}">{escape(title)}</td>',
                f'<td title="{escape(row["parameter"])}">'
                f'{escape(labels.parameter(row["parameter"]).label)}</td>',
                _index_cell(row, "first_order"), _index_cell(row, "total_order")]) + "</tr>")
    head = _th("metric") + _th("parameter") + _th("first order S") + _th("total order ST")
    title = f"Sensitivity report: {name}"
    body = [
        f"<p>{escape(description)}</p>" if description else "",
        f"<p>Saltelli's design: {samples} samples × (parameters + 2) rows, {points} distinct "
        f"points, {runs} runs (each point's metric is its mean over its replications). "
        f"Indices with {confidence:.0%} percentile bootstrap intervals over the samples "
        f"({resamples:,} resamples). S is the share of a metric's variance a parameter "
        "explains alone; ST, with all its interactions. Estimates can stray below 0 or above "
        "1 when samples are few: the intervals say how far.</p>",
        '<h2 id="indices">Indices</h2>', _table(head, cells),
        '<h2 id="charts">Charts</h2>',
        f'<div class="plots">{"".join(drawn)}</div>' + "".join(_note(n) for n in notes)]
    page = folder / "report.html"
    page.write_text(_document(title, body), encoding="utf-8")
    return page


def _index_cell(row: dict[str, Any], key: str) -> str:
    text = labels.format_bounds(row[key], row[f"{key}_low"], row[f"{key}_high"])
    return f'<td class="num">{escape(text)}</td>'


def _bars(rows: list[dict[str, Any]], title: str) -> Any:
    names = [labels.parameter(row["parameter"]).label for row in rows]
    figure, ax = _figure((FIGURE_INCHES[0], 1.2 + 0.45 * len(rows)))
    at = np.arange(len(rows))
    for offset, key, colour, label in ((-0.2, "first_order", FIRST_COLOUR, "first order S"),
                                       (0.2, "total_order", TOTAL_COLOUR, "total order ST")):
        values = np.array([row[key] for row in rows])
        errors = np.abs(np.array([[row[f"{key}_low"] for row in rows],
                                  [row[f"{key}_high"] for row in rows]]) - values)
        ax.barh(at + offset, values, height=0.38, xerr=errors, color=colour, label=label,
                error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(at, names, fontsize="small")
    ax.invert_yaxis()
    ax.axvline(0, color="#888", linewidth=0.6)
    ax.set_xlabel("share of the variance", fontsize="small")
    ax.set_title(title, fontsize="small")
    figure.legend(loc="outside lower center", ncols=2, fontsize="x-small", frameon=False)
    return figure

"""A sweep's HTML report: the summary table with confidence intervals, and its plots.

`write_report` writes `report.html` and the PNG figures it shows, in `report/` next to it;
the page needs nothing else (no scripts, fonts or styles from elsewhere), so it can be mailed
or opened offline as a folder. Figures are drawn on `matplotlib.figure.Figure` with the Agg
canvas directly, never through `pyplot`: importing this module selects no backend and changes
no global state.

The page is read by people: every metric and parameter under its label with its unit
(`market.experiments.labels`; the dotted key in a tooltip, for `--metric`), every number through the
one formatter, plots in a grid (several columns on a wide screen, one on a phone), and no
plot without data: a metric no run measured, or a GPU model that never traded, is a note,
not empty axes.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from market.experiments import labels
from market.experiments.analysis import (
    CONFIDENCE,
    TAKE_RATE,
    Comparison,
    Estimate,
    GroupSummary,
    PassThrough,
    PriceSeries,
    ReportError,
    Sweep,
    compare_to_baseline,
    fee_pass_through,
    format_difference,
    format_estimate,
    format_share,
    format_share_interval,
    is_numeric_param,
    resolve_metrics,
    resolve_params,
    summarize,
    summarize_timeseries,
)
from market.units import SECONDS_PER_DAY

MAX_METRIC_PLOTS = 12
"""Metric × parameter figures drawn at most; a report is read, not scrolled."""

MAX_LEGEND = 12
"""Lines in a figure above which the legend is left out (it would hide the plot)."""

MAX_FAILURES = 20
"""Failed runs listed with their error."""

FIGURE_INCHES = (4.6, 3.0)
"""A figure's size before its legend; drawn at FIGURE_DPI and shown at its grid cell's
width, so it stays sharp on a high-density screen."""

FIGURE_DPI = 150

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 110rem; color: #222;
       padding: 0 1em; line-height: 1.4; }
h1 { margin-bottom: 0.2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
nav a { margin-right: 1em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; text-align: left; min-width: 5em;
     max-width: 14em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.plots { display: grid; gap: 1.2em; align-items: start; margin: 1em 0;
         grid-template-columns: repeat(auto-fill, minmax(min(100%, 26rem), 1fr)); }
figure { margin: 0; min-width: 0; border: 1px solid #e3e3e3; border-radius: 4px;
         padding: 0.6em; }
figure h3 { font-size: 1em; margin: 0 0 0.4em; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; color: #444; margin-top: 0.4em; }
.note { color: #8a5a00; }
"""


def write_report(sweep: Sweep, directory: str | Path, metrics: Iterable[str] | None = None,
                 by: Iterable[str] | None = None,
                 baseline: Mapping[str, Any] | None = None) -> Path:
    """Write `directory/report.html` and its figures in `directory/report/`; return the HTML
    file's path. `metrics` and `by` are as for `analysis.summarize`; with a `baseline`
    ({path: value}, see `analysis.parse_baseline`) the page adds every point's paired
    differences from it; where the sweep varies the take rate, the fee pass-through. The
    price index figures are drawn when the sweep has a timeseries. Raises ReportError for an
    unknown name, before anything is written."""
    names = resolve_metrics(sweep, metrics)
    params = resolve_params(sweep, by)
    summaries = summarize(sweep, names, params)
    comparisons = compare_to_baseline(sweep, baseline, names) if baseline else []
    passes = fee_pass_through(sweep, baseline)
    try:
        series = summarize_timeseries(sweep, params)
        no_series = "No price index data: the timeseries has no rows of OK runs."
    except ReportError as error:
        series, no_series = [], f"No price index figures: {error}."
    folder = Path(directory)
    figures = _figures_folder(folder)
    sections = [("summary", "Summary", _summary_table(summaries, names, params)
                 + (_failures(sweep) if sweep.failed else ""))]
    sections.append(("metrics", "Metrics by parameter",
                     _metric_figures(sweep, summaries, names, params, figures)))
    if baseline:
        sections.append(("baseline", "Paired differences from the baseline ("
                         + labels.group_title(dict(baseline)) + ")",
                         _baseline_section(sweep, comparisons, names, baseline, figures)))
    if passes:
        sections.append(("pass-through", "Fee pass-through", _pass_through_section(
            passes, bool(baseline and TAKE_RATE in baseline), figures)))
    sections.append(("prices", "Price index over time",
                     _price_figures(series, figures) if series else _note(no_series)))
    page = _page(sweep, params, sections)
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- HTML

def _page(sweep: Sweep, params: list[str], sections: list[tuple[str, str, str]]) -> str:
    title = f"Sweep report: {sweep.name}"
    failed = sweep.failed
    planned = sweep.manifest.get("runs")
    runs = (f"{len(sweep.runs)} of {planned} runs" if isinstance(planned, int)
            and planned != len(sweep.runs) else f"{len(sweep.runs)} runs")
    description = sweep.manifest.get("description")
    swept = "; ".join(_swept(sweep, p) for p in sweep.params) or "none"
    grouped = ""
    if params != list(sweep.params):
        grouped = (" Grouped by: " + (", ".join(labels.parameter(p).label for p in params)
                                      or "nothing (all runs pooled)") + ".")
    nav = " ".join(f'<a href="#{anchor}">{escape(heading.split(" (")[0])}</a>'
                   for anchor, heading, _ in sections)
    parts = [
        f"<p>{escape(str(description))}</p>" if description else "",
        f"<p>{escape(runs)}, {failed} failed. Swept: {escape(swept)}.{escape(grouped)} Means "
        f"over OK runs with {CONFIDENCE:.0%} confidence intervals (Student's t), shown as "
        "mean ± half-width to the precision of the interval; failed runs are counted, not "
        "averaged. Hover over a heading for the metric's key (for <code>--metric</code>) and "
        "over a number for its interval and standard deviation.</p>",
        f"<nav>{nav}</nav>",
    ]
    for anchor, heading, html in sections:
        parts += [f'<h2 id="{anchor}">{escape(heading)}</h2>', html]
    return _document(title, parts)


def _document(title: str, body: list[str]) -> str:
    """A whole self-contained page: `title` as its title and first heading, then `body`
    (HTML parts, in order), in the reports' one style."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        *body, "</body></html>", ""])


def _figures_folder(folder: Path) -> Path:
    """`folder/report/`, made if need be, without the figures of an earlier report (they
    must not linger)."""
    figures = folder / "report"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):
        old.unlink()
    return figures


def _swept(sweep: Sweep, param: str) -> str:
    """A swept parameter and its values in words: "Take rate (%): 0%, 10%, 20%"."""
    values: list[Any] = []
    for value in sweep.runs[param].to_pylist() if len(sweep.runs) else []:
        if value not in values:
            values.append(value)
    shown = ", ".join(labels.format_param_value(param, v) for v in values[:8])
    more = f" and {len(values) - 8} more" if len(values) > 8 else ""
    return f"{labels.parameter(param).label}: {shown}{more}"


def _th(text: str, key: str | None = None) -> str:
    tip = f' title="{escape(key)}"' if key else ""
    return f"<th{tip}>{escape(text)}</th>"


def _number_cell(text: str, e: Estimate | None = None,
                 quantity: labels.Quantity | None = None) -> str:
    tip = ""
    if e is not None:
        scale = quantity.scale if quantity else 1.0
        unit = f" {quantity.unit}" if quantity and quantity.unit else ""
        tip = (f"n={e.n}, {CONFIDENCE:.0%} CI [{labels.format_number(e.low * scale)}, "
               f"{labels.format_number(e.high * scale)}]{unit}, "
               f"sd={labels.format_number(e.sd * scale)}" if e.n > 1 else f"n={e.n}")
        tip = f' title="{escape(tip)}"'
    return f'<td class="num"{tip}>{escape(text)}</td>'


def _table(head: str, rows: list[str]) -> str:
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>")


def _param_head(params: Iterable[str]) -> str:
    return "".join(_th(labels.parameter(p).label, p) for p in params)


def _param_cells(values: Mapping[str, Any], params: Iterable[str]) -> list[str]:
    return [f"<td>{escape(labels.format_param_value(p, values[p]))}</td>" for p in params]


def _summary_table(summaries: list[GroupSummary], names: list[str], params: list[str]) -> str:
    if not summaries:
        return _note("No run finished OK: nothing to summarize.")
    head = _param_head(params) + _th("OK runs") + _th("failed")
    head += "".join(_th(labels.metric(n).title, n) for n in names)
    rows = []
    for group in summaries:
        cells = _param_cells(group.values, params)
        cells += [f'<td class="num">{group.runs}</td>', f'<td class="num">{group.failed}</td>']
        for name in names:
            e, quantity = group.metrics[name], labels.metric(name)
            cells.append(_number_cell(format_estimate(e, quantity), e, quantity))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return _table(head, rows)


def _failures(sweep: Sweep) -> str:
    columns = [c for c in ("point", "replication", "run_id", "error")
               if c in sweep.runs.column_names]
    failed = sweep.runs.select(columns).filter(pa.array(~sweep.ok)).to_pylist()
    rows = [f'<tr><td class="num">{row.get("point")}</td>'
            f'<td class="num">{row.get("replication")}</td>'
            f"<td>{escape(str(row.get('run_id')))}</td>"
            f"<td>{escape(str(row.get('error') or ''))}</td></tr>"
            for row in failed[:MAX_FAILURES]]
    more = (_note(f"Showing {MAX_FAILURES} of {len(failed)} failed runs.")
            if len(failed) > MAX_FAILURES else "")
    return ("<h3>Failed runs</h3>" + _table(
        _th("point") + _th("replication") + _th("run") + _th("error"), rows) + more)


def _figure_html(path: Path, figure: Figure, heading: str, caption: str) -> str:
    src = f"{path.parent.name}/{path.name}"
    width, height = (round(x * FIGURE_DPI) for x in figure.get_size_inches())
    return (f'<figure><h3>{escape(heading)}</h3><img src="{escape(src)}" '
            f'width="{width}" height="{height}" alt="{escape(heading)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _grid(figures: list[str], notes: list[str]) -> str:
    grid = f'<div class="plots">{"".join(figures)}</div>' if figures else ""
    return grid + "".join(_note(n) for n in notes)


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _baseline_section(sweep: Sweep, comparisons: list[Comparison], names: list[str],
                      baseline: Mapping[str, Any], folder: Path) -> str:
    intro = ("<p>Each point minus its baseline point (the point with the baseline's values on "
             "the parameters it names and the point's own on the others), per seed: "
             "replication r of every point runs on the same seed, so the difference is "
             f"paired. Mean difference ± half-width of its {CONFIDENCE:.0%} confidence "
             "interval (Student's t over the seeds both ran OK); * marks an interval that "
             "excludes 0. An interval that contains 0 means the seeds cannot tell the point "
             "from its baseline. Shares are compared in percentage points (pp).</p>")
    if not comparisons:
        return _note("No point has a baseline point with OK runs.")
    head = _param_head(sweep.params) + _th("pairs")
    head += "".join(_th(labels.metric(n).difference_title, n) for n in names)
    rows = []
    for c in comparisons:
        cells = _param_cells(c.values, sweep.params)
        cells.append(f'<td class="num">{c.pairs}</td>')
        for name in names:
            e, quantity = c.differences[name], labels.metric(name)
            text = "baseline" if c.is_baseline else format_difference(e, quantity)
            cells.append(_number_cell(text, None if c.is_baseline else e, quantity))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return intro + _table(head, rows) + _difference_figures(sweep, comparisons, names,
                                                            list(baseline), folder)


def _difference_figures(sweep: Sweep, comparisons: list[Comparison], names: list[str],
                        named: list[str], folder: Path) -> str:
    """Each metric's difference against each parameter the baseline names, with CI bands
    and the zero line."""
    groups = [GroupSummary(c.values, (c.point,), c.pairs, 0, c.differences)
              for c in comparisons]
    return _plot_grid(sweep, groups, names, named, list(sweep.params), folder, "diff_",
                      difference=True)


def _pass_through_section(passes: list[PassThrough], from_baseline: bool,
                          folder: Path) -> str:
    how = ("from the baseline's take rate to each other one" if from_baseline
           else "between adjacent take rates")
    intro = ("<p>Δ mean price paid per GPU-hour / Δ fee per "
             f"GPU-hour, {how}, the other parameters alike, on the same seeds. A run's price "
             "paid per GPU-hour is what tenants paid (providers and platform) over the "
             "GPU-hours served; its fee per GPU-hour, the platform's revenue over the same "
             "GPU-hours. 100% means tenants bear the whole change in the fee; 0%, that "
             f"providers absorb it. The {CONFIDENCE:.0%} interval is Fieller's for a ratio of "
             "paired means; it is unbounded when the fee change itself is not clearly "
             "non-zero.</p>")
    others = list(passes[0].values)
    head = _param_head(others)
    head += (_th("Take rate") + _th("pairs") + _th("Δ fee per GPU-hour (USD/GPU-h)")
             + _th("Δ price paid per GPU-hour (USD/GPU-h)") + _th("Pass-through (%)")
             + _th(f"{CONFIDENCE:.0%} interval (Fieller)"))
    rows = []
    for p in passes:
        cells = _param_cells(p.values, others)
        cells += [f"<td>{escape(labels.format_param_value(TAKE_RATE, p.take_rate_from))} → "
                  f"{escape(labels.format_param_value(TAKE_RATE, p.take_rate_to))}</td>",
                  f'<td class="num">{p.fee_change.n}</td>',
                  _number_cell(format_estimate(p.fee_change), p.fee_change),
                  _number_cell(format_estimate(p.price_change), p.price_change),
                  _number_cell(format_share(p.ratio)),
                  _number_cell(format_share_interval(p.low, p.high))]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    path = folder / "pass_through.png"
    figure = _pass_through_figure(passes, from_baseline)
    _save(figure, path)
    where = ("each compared with the baseline" if from_baseline
             else "at the middle of each adjacent pair")
    caption = (f"Fee pass-through by take rate ({where}) with its {CONFIDENCE:.0%} Fieller "
               "interval; unbounded intervals are not drawn. The dotted lines are 0% and 100%.")
    return intro + _table(head, rows) + _grid(
        [_figure_html(path, figure, "Fee pass-through by take rate", caption)], [])


# ----------------------------------------------------------------------------- figures

def _axes(sweep: Sweep, params: list[str]) -> list[str]:
    """The parameters to plot against: the numeric ones (the others become lines), or, when
    none is numeric, each of them (a categorical axis)."""
    numeric = [p for p in params if is_numeric_param(sweep, p)]
    return numeric or list(params)


def _metric_figures(sweep: Sweep, summaries: list[GroupSummary], names: list[str],
                    params: list[str], folder: Path) -> str:
    if not params:
        return _note("No swept parameters to plot against; the table above has the numbers.")
    if not summaries:
        return _note("No run finished OK: nothing to plot.")
    return _plot_grid(sweep, summaries, names, _axes(sweep, params), params, folder, "")


def _plot_grid(sweep: Sweep, groups: list[GroupSummary], names: list[str], axes: list[str],
               params: list[str], folder: Path, prefix: str, difference: bool = False) -> str:
    """One figure per metric × axis parameter that has data, in a grid; a note for each
    left out and for those beyond MAX_METRIC_PLOTS."""
    figures, notes, empty, flat = [], [], [], {}
    pairs = [(name, param) for name in names for param in axes]
    drawn = 0
    for name, param in pairs:
        if not any(math.isfinite(g.metrics[name].mean) for g in groups):
            if name not in empty:
                empty.append(name)
            continue
        same = _constant([g.metrics[name] for g in groups])
        if same is not None:  # a flat line on axes of ±4% of nothing says less than a note
            flat[name] = same
            continue
        if drawn >= MAX_METRIC_PLOTS:
            continue
        others = [p for p in params if p != param]
        quantity, axis = labels.metric(name), labels.parameter(param)
        figure = _metric_figure(groups, name, param, others,
                                is_numeric_param(sweep, param), difference)
        path = folder / f"{prefix}{drawn:02d}_{_slug(name)}_by_{_slug(param)}.png"
        _save(figure, path)
        what = quantity.difference_title if difference else quantity.title
        lines = (f"; one line per {_and(labels.parameter(p).label.lower() for p in others)}"
                 if others else "")
        kind = "mean paired difference from the baseline" if difference else "mean over runs"
        if quantity.unit == "%" and not difference:
            lines += "; intervals drawn within 0–100%"
        heading = f"{what.split(' (')[0]} by {axis.label.lower()}"
        figures.append(_figure_html(path, figure, heading,
                                    f"{what} against {axis.title.lower()}: {kind} with its "
                                    f"{CONFIDENCE:.0%} confidence interval{lines}."))
        drawn += 1
    if empty:
        notes.append("Not plotted, no run has a value: "
                     + "; ".join(labels.metric(n).label for n in empty) + ".")
    if flat:
        what = "no difference on any seed" if difference else "the same in every run"
        notes.append(f"Not plotted, {what}: " + "; ".join(
            f"{labels.metric(n).label} ({labels.metric(n).show_with_unit(v)})"
            for n, v in flat.items()) + ".")
    plottable = len(pairs) - (len(empty) + len(flat)) * len(axes)
    if plottable > MAX_METRIC_PLOTS:
        notes.append(f"Showing the first {MAX_METRIC_PLOTS} of {plottable} plots; choose "
                     "fewer metrics (--metric) or parameters (--by) to see the others.")
    return _grid(figures, notes)


def _constant(estimates: list[Estimate]) -> float | None:
    """The one value every estimate has, without spread, if so (a metric no parameter
    moves: the median wait pinned at the bidding window, a difference that is 0 on every
    seed)."""
    means = [e.mean for e in estimates if math.isfinite(e.mean)]
    spread = [e.half_width for e in estimates if math.isfinite(e.half_width)]
    if means and max(means) - min(means) <= 1e-12 * max(1.0, abs(means[0])) \
            and all(abs(h) <= 1e-12 for h in spread):
        return means[0]
    return None


def _and(words: Iterable[str]) -> str:
    items = list(words)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _metric_figure(summaries: list[GroupSummary], name: str, param: str, others: list[str],
                   numeric: bool, difference: bool = False) -> Figure:
    """`name` against `param`: one line per combination of `others`, CI as band or bars;
    a `difference` from the baseline gets the zero line. Values in the metric's display
    unit (percent for a share)."""
    quantity, axis = labels.metric(name), labels.parameter(param)
    lines: dict[tuple[Any, ...], list[GroupSummary]] = {}
    for group in summaries:  # already in sweep order, so lines and categories are too
        lines.setdefault(tuple(group.values[p] for p in others), []).append(group)
    xs = [g.values[param] for g in summaries]
    numeric = numeric and all(x is not None for x in xs)
    categories = list(dict.fromkeys(xs))
    figure, ax = _figure()
    width = min(0.6 / len(lines), 0.15)  # categorical: lines side by side, not on top
    # A share cannot leave 0..100%: a t interval of two runs may, and is drawn clipped (the
    # table's tooltip keeps the interval as computed).
    bounds = (0.0, 100.0) if quantity.unit == "%" and not difference else (-np.inf, np.inf)
    for number, (key, groups) in enumerate(lines.items()):
        label = _line_label(others, key)
        mean = np.array([g.metrics[name].mean for g in groups]) * quantity.scale
        half = np.array([g.metrics[name].half_width for g in groups]) * quantity.scale
        if numeric:
            x = np.array([g.values[param] for g in groups], dtype=float) * axis.scale
            order = np.argsort(x, kind="stable")
            x, mean, half = x[order], mean[order], half[order]
            (line,) = ax.plot(x, mean, marker="o", label=label)
            ax.fill_between(x, np.clip(mean - half, *bounds), np.clip(mean + half, *bounds),
                            color=line.get_color(), alpha=0.2, linewidth=0)
            if x.size == 1:  # a band over one point has no width: show its interval as a bar
                ax.errorbar(x, mean, yerr=np.nan_to_num(half), color=line.get_color(),
                            capsize=4)
        else:
            x = np.array([categories.index(g.values[param]) for g in groups], dtype=float)
            x += (number - (len(lines) - 1) / 2) * width
            low, high = np.clip(mean - half, *bounds), np.clip(mean + half, *bounds)
            ax.errorbar(x, mean, yerr=np.nan_to_num(np.vstack([mean - low, high - mean])),
                        fmt="o", capsize=4, label=label)
    if not numeric:
        ax.set_xticks(range(len(categories)),
                      [_short(labels.format_param_value(param, c)) for c in categories],
                      rotation=20 if len(categories) > 4 else 0, ha="right"
                      if len(categories) > 4 else "center")
        ax.set_xlim(-0.5, len(categories) - 0.5)
    elif len(categories) <= 8:  # ticks at the swept values, not at 2.5, 7.5, ...
        ax.set_xticks([c * axis.scale for c in categories],
                      [axis.show(c) for c in categories])
    ax.set_xlabel(axis.title)
    if difference:
        ax.axhline(0.0, color="0.3", linewidth=0.8, linestyle=":")
    ax.set_ylabel(_wrap(quantity.difference_title if difference else quantity.title))
    _legend(figure, ax, others, len(lines) if others else 0)
    return figure


def _line_label(others: list[str], key: tuple[Any, ...]) -> str | None:
    """A line's legend entry: the value alone when one parameter tells lines apart (its
    name is the legend's title), else every parameter with its value."""
    if not others:
        return None
    if len(others) == 1:
        return labels.format_param_value(others[0], key[0])
    return labels.group_title(dict(zip(others, key, strict=True)))


def _pass_through_figure(passes: list[PassThrough], from_baseline: bool) -> Figure:
    """Pass-through against the take rate, one line per combination of the other
    parameters, Fieller intervals as error bars; both in percent."""
    figure, ax = _figure()
    lines: dict[tuple[Any, ...], list[PassThrough]] = {}
    for p in passes:
        lines.setdefault(tuple(p.values.values()), []).append(p)
    others = list(passes[0].values)
    for key, mine in lines.items():
        x = 100 * np.array([p.take_rate_to if from_baseline
                            else (p.take_rate_from + p.take_rate_to) / 2 for p in mine])
        y = 100 * np.array([p.ratio for p in mine])
        bounded = np.array([math.isfinite(p.low) and math.isfinite(p.high) for p in mine])
        below = np.where(bounded, y - 100 * np.array([p.low for p in mine]), 0.0)
        above = np.where(bounded, 100 * np.array([p.high for p in mine]) - y, 0.0)
        order = np.argsort(x, kind="stable")
        ax.errorbar(x[order], y[order], yerr=np.nan_to_num(np.vstack([below, above])[:, order]),
                    marker="o", capsize=4, label=_line_label(others, key))
    for level in (0.0, 100.0):
        ax.axhline(level, color="0.3", linewidth=0.8, linestyle=":")
    ax.set_xlabel("Take rate (%)" + (", compared with the baseline's" if from_baseline
                                     else ", middle of each adjacent pair"))
    ax.set_ylabel("Fee pass-through (%)")
    _legend(figure, ax, others, len(lines) if len(lines) > 1 else 0)
    return figure


def _price_figures(series: list[PriceSeries], folder: Path) -> str:
    """One figure per GPU model that traded: its hourly price index per parameter
    combination, over the hours that have one. A model without a lease in any run is a
    note; so is the span of hours a model's index covers when it is not the whole run."""
    figures, silent = [], []
    models = list(dict.fromkeys(s.gpu_model for s in series))
    for model in models:
        mine = [s for s in series if s.gpu_model == model]
        priced = [s for s in mine if np.isfinite(s.price_usd_per_gpu_hour).any()]
        if not priced:
            silent.append(model)
            continue
        name = labels.metric(f"price_usd_per_gpu_hour.{model}.mean").label.split(" mean")[0]
        figure, ax = _figure()
        first, last = math.inf, -math.inf
        for s in priced:  # a combination without a lease of this model has no line
            days = s.time_s / SECONDS_PER_DAY
            has = np.isfinite(s.price_usd_per_gpu_hour)
            first, last = min(first, days[has].min()), max(last, days[has].max())
            # markers: an hour between two without leases is a point, not a hidden segment
            (line,) = ax.plot(days, s.price_usd_per_gpu_hour, marker="o",
                              markersize=2.5 if has.sum() > 12 else 5,
                              label=_line_label(list(s.values), tuple(s.values.values())))
            # no price is below 0, whatever the t interval of two runs says
            ax.fill_between(days, np.clip(s.price_usd_per_gpu_hour - s.half_width, 0, None),
                            s.price_usd_per_gpu_hour + s.half_width, color=line.get_color(),
                            alpha=0.2, linewidth=0)
        span_days = max(float(np.nanmax(s.time_s)) for s in mine) / SECONDS_PER_DAY
        pad = max((last - first) * 0.03, 0.5 / 24)
        ax.set_xlim(first - pad, last + pad)  # the hours that have a price, nothing else
        covers = (f"day {labels.format_number(first)} to {labels.format_number(last)}"
                  if last > first else f"one hour, day {labels.format_number(last)}")
        partial = last - first < 0.9 * span_days
        ax.set_xlabel("Simulated day" + (f" (leases only {covers})" if partial else ""))
        ax.set_ylabel("Price index (USD/GPU-h)")
        keys = list(mine[0].values)
        _legend(figure, ax, keys, len(priced) if len(mine) > 1 else 0)
        path = folder / f"price_{len(figures):02d}_{_slug(model)}.png"
        _save(figure, path)
        legend = (f" ({len(priced)} lines; legend left out)" if len(priced) > MAX_LEGEND
                  else "")
        where = (f" The axis covers only the hours with a lease: {covers}, of "
                 f"{labels.format_number(span_days)} simulated days." if partial else "")
        if len(priced) < len(mine):
            where += (" No lease of this model at: "
                      + "; ".join(labels.group_title(s.values) for s in mine
                                  if s not in priced) + ".")
        figures.append(_figure_html(
            path, figure, f"{name} price index",
            f"Hourly price index of {name} (USD per GPU-hour, the leased GPUs' mean price): "
            f"mean over runs with its {CONFIDENCE:.0%} confidence band (drawn from 0 up), one "
            f"line per parameter combination{legend}. Gaps are hours without leases.{where}"))
    notes = []
    if silent:
        names = [labels.metric(f"price_usd_per_gpu_hour.{m}.mean").label.split(" mean")[0]
                 for m in silent]
        notes.append(f"Not plotted, no lease in any hour of any run, so no price index: "
                     f"{', '.join(names)}.")
    return _grid(figures, notes)


def _figure(inches: tuple[float, float] = FIGURE_INCHES) -> tuple[Figure, Any]:
    figure = Figure(figsize=inches, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: this figure renders with Agg, whatever pyplot's
    return figure, figure.add_subplot()


def _legend(figure: Figure, ax: Any, keys: list[str], lines: int) -> None:
    """The legend below the axes, never over the data; the figure grows to hold it. With
    one parameter telling the lines apart, its label is the legend's title."""
    if not 0 < lines <= MAX_LEGEND:
        return
    handles, texts = ax.get_legend_handles_labels()
    longest = max((len(t) for t in texts), default=0)
    columns = 1 if longest > 28 else 2 if longest > 12 else 4
    rows = math.ceil(len(texts) / columns)
    width, height = FIGURE_INCHES
    figure.set_size_inches(width, height + 0.22 * rows + 0.3)
    title = labels.parameter(keys[0]).label if len(keys) == 1 else None
    figure.legend(handles, texts, loc="outside lower center", ncols=columns, fontsize="small",
                  title=title, title_fontsize="small", frameon=False)


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, format="png")


def _slug(text: str) -> str:
    """A file-name-safe form of a metric or parameter name."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in text)
    return safe.strip("-.")[:60] or "x"


def _wrap(text: str, width: int = 30) -> str:
    """An axis label on lines short enough for the figure's height."""
    return "\n".join(textwrap.wrap(text, width)) or text


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


__all__ = ["MAX_METRIC_PLOTS", "write_report"]

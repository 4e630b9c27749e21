"""A sweep's HTML report: the summary table with confidence intervals, and its plots.

`write_report` writes `report.html` and the PNG figures it shows, in `report/` next to it;
the page needs nothing else (no scripts, fonts or styles from elsewhere), so it can be mailed
or opened offline as a folder. Figures are drawn on `matplotlib.figure.Figure` with the Agg
canvas directly, never through `pyplot`: importing this module selects no backend and changes
no global state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from market.analysis import (
    CONFIDENCE,
    TAKE_RATE,
    Comparison,
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
    format_value,
    group_label,
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

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222;
       padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { display: inline-block; margin: 1em 1em 1em 0; max-width: 100%; }
figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #444; max-width: 40em; }
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
    figures = folder / "report"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):  # figures of an earlier report must not linger
        old.unlink()
    metric_html = _metric_figures(sweep, summaries, names, params, figures)
    price_html = _price_figures(series, figures) if series else _note(no_series)
    extra = ""
    if baseline:
        extra += _baseline_section(sweep, comparisons, names, baseline, figures)
    if passes:
        extra += _pass_through_section(passes, bool(baseline and TAKE_RATE in baseline),
                                       figures)
    page = _page(sweep, summaries, names, params, metric_html, price_html, extra)
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- HTML

def _page(sweep: Sweep, summaries: list[GroupSummary], names: list[str], params: list[str],
          metric_html: str, price_html: str, extra: str = "") -> str:
    title = f"Sweep report: {sweep.name}"
    failed = sweep.failed
    planned = sweep.manifest.get("runs")
    runs = (f"{len(sweep.runs)} of {planned} runs" if isinstance(planned, int)
            and planned != len(sweep.runs) else f"{len(sweep.runs)} runs")
    description = sweep.manifest.get("description")
    swept = ", ".join(sweep.params) or "none"
    if params != list(sweep.params):
        swept += f"; grouped by: {', '.join(params) or 'nothing (all runs pooled)'}"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{escape(str(description))}</p>" if description else "",
        f"<p>{escape(runs)}, {failed} failed; swept parameters: {escape(swept)}. Means over "
        f"OK runs with {CONFIDENCE:.0%} confidence intervals (Student's t); "
        "failed runs are counted, not averaged.</p>",
        "<h2>Summary</h2>",
        _summary_table(summaries, names, params),
        _failures(sweep) if failed else "",
        "<h2>Metrics by parameter</h2>",
        metric_html,
        extra,
        "<h2>Price index over time</h2>",
        price_html,
        "</body></html>",
        "",
    ])


def _summary_table(summaries: list[GroupSummary], names: list[str], params: list[str]) -> str:
    if not summaries:
        return _note("No run finished OK: nothing to summarize.")
    head = "".join(f"<th>{escape(p)}</th>" for p in params) + "<th>OK runs</th><th>failed</th>"
    head += "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    for group in summaries:
        cells = [f"<td>{escape(format_value(group.values[p]))}</td>" for p in params]
        cells += [f'<td class="num">{group.runs}</td>', f'<td class="num">{group.failed}</td>']
        for name in names:
            e = group.metrics[name]
            tip = (f"n={e.n}, {CONFIDENCE:.0%} CI [{e.low:.6g}, {e.high:.6g}], sd={e.sd:.6g}"
                   if e.n > 1 else f"n={e.n}")
            cells.append(f'<td class="num" title="{escape(tip)}">'
                         f"{escape(format_estimate(e))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows)
            + "\n</tbody></table>")


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
    return ("<h2>Failed runs</h2><table><thead><tr><th>point</th><th>replication</th>"
            "<th>run</th><th>error</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>" + more)


def _figure_html(path: Path, caption: str) -> str:
    src = f"{path.parent.name}/{path.name}"
    return (f'<figure><img src="{escape(src)}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _baseline_section(sweep: Sweep, comparisons: list[Comparison], names: list[str],
                      baseline: Mapping[str, Any], folder: Path) -> str:
    title = ("<h2>Paired differences from the baseline "
             f"({escape(group_label(dict(baseline)))})</h2>")
    intro = ("<p>Each point minus its baseline point (the point with the baseline's values on "
             "the parameters it names and the point's own on the others), per seed: "
             "replication r of every point runs on the same seed, so the difference is "
             f"paired. Mean difference ± half-width of its {CONFIDENCE:.0%} confidence "
             "interval (Student's t over the seeds both ran OK); * marks an interval that "
             "excludes 0. An interval that contains 0 means the seeds cannot tell the point "
             "from its baseline.</p>")
    if not comparisons:
        return title + _note("No point has a baseline point with OK runs.")
    head = "".join(f"<th>{escape(p)}</th>" for p in sweep.params) + "<th>pairs</th>"
    head += "".join(f"<th>Δ {escape(n)}</th>" for n in names)
    rows = []
    for c in comparisons:
        cells = [f"<td>{escape(format_value(c.values[p]))}</td>" for p in sweep.params]
        cells.append(f'<td class="num">{c.pairs}</td>')
        for name in names:
            e = c.differences[name]
            text = "baseline" if c.is_baseline else format_difference(e)
            tip = (f"n={e.n}, {CONFIDENCE:.0%} CI [{e.low:.6g}, {e.high:.6g}], sd={e.sd:.6g}"
                   if e.n > 1 else f"n={e.n}")
            cells.append(f'<td class="num" title="{escape(tip)}">{escape(text)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    table = (f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows)
             + "\n</tbody></table>")
    return title + intro + table + _difference_figures(sweep, comparisons, names,
                                                       list(baseline), folder)


def _difference_figures(sweep: Sweep, comparisons: list[Comparison], names: list[str],
                        named: list[str], folder: Path) -> str:
    """Each metric's difference against each parameter the baseline names, with CI bands
    and the zero line."""
    groups = [GroupSummary(c.values, (c.point,), c.pairs, 0, c.differences)
              for c in comparisons]
    pairs = [(name, param) for name in names for param in named]
    parts = []
    for index, (name, param) in enumerate(pairs[:MAX_METRIC_PLOTS]):
        others = [p for p in sweep.params if p != param]
        figure = _metric_figure(groups, name, param, others, is_numeric_param(sweep, param),
                                difference=True)
        path = folder / f"diff_{index:02d}_{_slug(name)}_by_{_slug(param)}.png"
        _save(figure, path)
        lines = f"; one line per {', '.join(others)}" if others else ""
        parts.append(_figure_html(path, f"Δ {name} from the baseline by {param}: mean paired "
                                        f"difference with its {CONFIDENCE:.0%} confidence "
                                        f"interval{lines}."))
    if len(pairs) > MAX_METRIC_PLOTS:
        parts.append(_note(f"Showing the first {MAX_METRIC_PLOTS} of {len(pairs)} difference "
                           "plots; choose fewer metrics to see the others."))
    return "\n".join(parts)


def _pass_through_section(passes: list[PassThrough], from_baseline: bool,
                          folder: Path) -> str:
    how = ("from the baseline's take rate to each other one" if from_baseline
           else "between adjacent take rates")
    intro = ("<h2>Fee pass-through</h2><p>Δ mean price paid per GPU-hour / Δ fee per "
             f"GPU-hour, {how}, the other parameters alike, on the same seeds. A run's price "
             "paid per GPU-hour is what tenants paid (providers and platform) over the "
             "GPU-hours served; its fee per GPU-hour, the platform's revenue over the same "
             "GPU-hours. 100% means tenants bear the whole change in the fee; 0%, that "
             f"providers absorb it. The {CONFIDENCE:.0%} interval is Fieller's for a ratio of "
             "paired means; it is unbounded when the fee change itself is not clearly "
             "non-zero.</p>")
    others = list(passes[0].values)
    head = "".join(f"<th>{escape(p)}</th>" for p in others)
    head += ("<th>take rate</th><th>pairs</th><th>Δ fee per GPU-hour (USD)</th>"
             "<th>Δ price paid per GPU-hour (USD)</th><th>pass-through</th>"
             f"<th>{CONFIDENCE:.0%} interval</th>")
    rows = []
    for p in passes:
        cells = [f"<td>{escape(format_value(p.values[k]))}</td>" for k in others]
        cells += [f"<td>{format_value(p.take_rate_from)} → {format_value(p.take_rate_to)}</td>",
                  f'<td class="num">{p.fee_change.n}</td>',
                  f'<td class="num">{escape(format_estimate(p.fee_change))}</td>',
                  f'<td class="num">{escape(format_estimate(p.price_change))}</td>',
                  f'<td class="num">{escape(format_share(p.ratio))}</td>',
                  f'<td class="num">{escape(format_share_interval(p.low, p.high))}</td>']
        rows.append(f"<tr>{''.join(cells)}</tr>")
    table = (f"<table><thead><tr>{head}</tr></thead><tbody>" + "".join(rows)
             + "</tbody></table>")
    path = folder / "pass_through.png"
    _save(_pass_through_figure(passes, from_baseline), path)
    where = ("each compared with the baseline" if from_baseline
             else "at the middle of each adjacent pair")
    caption = (f"Fee pass-through by take rate ({where}) with its {CONFIDENCE:.0%} Fieller "
               "interval; unbounded intervals are not drawn. The dotted lines are 0% and 100%.")
    return intro + table + _figure_html(path, caption)


# ----------------------------------------------------------------------------- figures

def _metric_figures(sweep: Sweep, summaries: list[GroupSummary], names: list[str],
                    params: list[str], folder: Path) -> str:
    if not params:
        return _note("No swept parameters to plot against; the table above has the numbers.")
    if not summaries:
        return _note("No run finished OK: nothing to plot.")
    pairs = [(name, param) for name in names for param in params]
    parts = []
    for index, (name, param) in enumerate(pairs[:MAX_METRIC_PLOTS]):
        others = [p for p in params if p != param]
        figure = _metric_figure(summaries, name, param, others, is_numeric_param(sweep, param))
        path = folder / f"{index:02d}_{_slug(name)}_by_{_slug(param)}.png"
        _save(figure, path)
        lines = f"; one line per {', '.join(others)}" if others else ""
        parts.append(_figure_html(path, f"{name} by {param}: mean over runs with its "
                                        f"{CONFIDENCE:.0%} confidence interval{lines}."))
    if len(pairs) > MAX_METRIC_PLOTS:
        parts.append(_note(f"Showing the first {MAX_METRIC_PLOTS} of {len(pairs)} metric × "
                           "parameter plots; choose fewer metrics or parameters to see the "
                           "others."))
    return "\n".join(parts)


def _metric_figure(summaries: list[GroupSummary], name: str, param: str, others: list[str],
                   numeric: bool, difference: bool = False) -> Figure:
    """`name` against `param`: one line per combination of `others`, CI as band or bars;
    a `difference` from the baseline gets the zero line."""
    lines: dict[tuple[Any, ...], list[GroupSummary]] = {}
    for group in summaries:  # already in sweep order, so lines and categories are too
        lines.setdefault(tuple(group.values[p] for p in others), []).append(group)
    xs = [g.values[param] for g in summaries]
    numeric = numeric and all(x is not None for x in xs)
    categories = list(dict.fromkeys(xs))
    figure, ax = _figure()
    width = min(0.6 / len(lines), 0.15)  # categorical: lines side by side, not on top
    for number, (key, groups) in enumerate(lines.items()):
        label = group_label(dict(zip(others, key, strict=True))) if others else None
        mean = np.array([g.metrics[name].mean for g in groups])
        half = np.array([g.metrics[name].half_width for g in groups])
        if numeric:
            x = np.array([g.values[param] for g in groups], dtype=float)
            order = np.argsort(x, kind="stable")
            x, mean, half = x[order], mean[order], half[order]
            (line,) = ax.plot(x, mean, marker="o", label=label)
            ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2,
                            linewidth=0)
            if x.size == 1:  # a band over one point has no width: show its interval as a bar
                ax.errorbar(x, mean, yerr=np.nan_to_num(half), color=line.get_color(),
                            capsize=4)
        else:
            x = np.array([categories.index(g.values[param]) for g in groups], dtype=float)
            x += (number - (len(lines) - 1) / 2) * width
            ax.errorbar(x, mean, yerr=np.nan_to_num(half), fmt="o", capsize=4, label=label)
    if not numeric:
        ax.set_xticks(range(len(categories)),
                      [_short(format_value(c)) for c in categories],
                      rotation=20 if len(categories) > 4 else 0, ha="right"
                      if len(categories) > 4 else "center")
        ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_xlabel(param)
    if difference:
        ax.axhline(0.0, color="0.3", linewidth=0.8, linestyle=":")
        name = f"Δ {name} from the baseline"
    ax.set_ylabel(name)
    ax.set_title(f"{name} by {param}")
    _legend(ax, len(lines) if others else 0)
    return figure


def _pass_through_figure(passes: list[PassThrough], from_baseline: bool) -> Figure:
    """Pass-through against the take rate, one line per combination of the other
    parameters, Fieller intervals as error bars."""
    figure, ax = _figure()
    lines: dict[str, list[PassThrough]] = {}
    for p in passes:
        lines.setdefault(p.label if p.values else "", []).append(p)
    for label, mine in lines.items():
        x = np.array([p.take_rate_to if from_baseline
                      else (p.take_rate_from + p.take_rate_to) / 2 for p in mine])
        y = np.array([p.ratio for p in mine])
        bounded = np.array([math.isfinite(p.low) and math.isfinite(p.high) for p in mine])
        below = np.where(bounded, y - np.array([p.low for p in mine]), 0.0)
        above = np.where(bounded, np.array([p.high for p in mine]) - y, 0.0)
        order = np.argsort(x, kind="stable")
        ax.errorbar(x[order], y[order], yerr=np.nan_to_num(np.vstack([below, above])[:, order]),
                    marker="o", capsize=4, label=label or None)
    for level in (0.0, 1.0):
        ax.axhline(level, color="0.3", linewidth=0.8, linestyle=":")
    ax.set_xlabel("take rate" + (" compared with the baseline's" if from_baseline
                                 else " (middle of each adjacent pair)"))
    ax.set_ylabel("fee pass-through (Δ price / Δ fee)")
    ax.set_title("Fee pass-through")
    _legend(ax, len(lines) if len(lines) > 1 else 0)
    return figure


def _price_figures(series: list[PriceSeries], folder: Path) -> str:
    parts = []
    models = list(dict.fromkeys(s.gpu_model for s in series))
    for index, model in enumerate(models):
        mine = [s for s in series if s.gpu_model == model]
        figure, ax = _figure()
        for s in mine:
            days = s.time_s / SECONDS_PER_DAY
            (line,) = ax.plot(days, s.price_usd_per_gpu_hour, label=s.label)
            ax.fill_between(days, s.price_usd_per_gpu_hour - s.half_width,
                            s.price_usd_per_gpu_hour + s.half_width, color=line.get_color(),
                            alpha=0.2, linewidth=0)
        ax.set_xlabel("simulated days")
        ax.set_ylabel("price index, USD per GPU-hour")
        ax.set_title(f"{model}: price index")
        _legend(ax, len(mine) if len(mine) > 1 else 0)
        path = folder / f"price_{index:02d}_{_slug(model)}.png"
        _save(figure, path)
        legend = (f" ({len(mine)} lines; legend left out)" if len(mine) > MAX_LEGEND else "")
        parts.append(_figure_html(path, f"{model}: hourly price index (USD per GPU-hour, "
                                        f"leased GPUs' mean price), mean over runs with its "
                                        f"{CONFIDENCE:.0%} confidence band, one line per "
                                        f"parameter combination{legend}. Gaps are hours "
                                        "without leases."))
    return "\n".join(parts)


def _figure() -> tuple[Figure, Any]:
    figure = Figure(figsize=(6.4, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: this figure renders with Agg, whatever pyplot's
    return figure, figure.add_subplot()


def _legend(ax: Any, lines: int) -> None:
    if 0 < lines <= MAX_LEGEND:
        ax.legend(fontsize="small", loc="best")


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, format="png")


def _slug(text: str) -> str:
    """A file-name-safe form of a metric or parameter name."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in text)
    return safe.strip("-.")[:60] or "x"


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


__all__ = ["MAX_METRIC_PLOTS", "write_report"]

"""Plots for notebooks: a run's prices, utilization and welfare, and a batch's metric against a
parameter with confidence intervals over seeds.

Every function draws on the matplotlib Axes it is given (a new figure's otherwise), labels its
axes with units, returns the Axes, and never calls `plt.show()`: a notebook shows the figure
inline, a script saves it (`ax.figure.savefig(...)`).

For example, `result.plot.prices()` for a run, and
`metric_vs_parameter(runs, "market.take_rate", "allocative_efficiency")` for a batch (both are
exercised by tests/market/test_notebook_api.py and the example notebooks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from market.units import SECONDS_PER_DAY

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

#: Parts of welfare, in the order they add up to the potential (see market.observe.welfare).
WELFARE_PARTS = (
    ("consumer_surplus_usd", "consumer surplus (tenants)"),
    ("producer_surplus_usd", "producer surplus (providers)"),
    ("platform_fees_usd", "platform fees"),
    ("outside_surplus_usd", "outside surplus (hyperscaler option)"),
    ("deadweight_loss_usd", "deadweight loss"),
)


def _axes(ax: Axes | None, size: tuple[float, float] = (8, 4)) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _figure, new = plt.subplots(figsize=size, layout="constrained")
    return new


class Run(Protocol):
    """A run as drawn here (`market.observe.result.RunResult` is one)."""

    summary: dict[str, Any]

    @property
    def prices(self) -> Any:
        """The price and utilization series, a pyarrow Table."""
        ...


class RunPlots:
    """`result.plot`: plots of one run. The series come from the run's metrics, which every
    run keeps (with or without `record`): one point per GPU model per price-index bucket
    (`market.price_index_interval_s`, an hour by default)."""

    def __init__(self, result: Run) -> None:
        self._result = result

    def _series(self, gpu_models: Sequence[str] | None) -> dict[str, dict[str, np.ndarray]]:
        table = self._result.prices
        if table.num_rows == 0:
            raise ValueError("this run has no time series yet: it ended before its first "
                             "price-index bucket (market.price_index_interval_s); run it "
                             "longer")
        columns = table.to_pydict()
        models = list(dict.fromkeys(columns["gpu_model"]))
        if gpu_models is not None:
            unknown = [m for m in gpu_models if m not in models]
            if unknown:
                raise ValueError(f"gpu_models: {unknown[0]!r} is not in this run; its GPU "
                                 f"models are {', '.join(models)}")
            models = list(gpu_models)
        gpu = np.array(columns["gpu_model"])
        out: dict[str, dict[str, np.ndarray]] = {}
        for model in models:
            rows = gpu == model
            out[model] = {name: np.asarray(columns[name], dtype=float)[rows]
                          for name in ("time_s", "price_index_usd_per_gpu_hour", "leases",
                                       "utilization")}
        return out

    def prices(self, ax: Axes | None = None, gpu_models: Sequence[str] | None = None,
               list_prices: bool = False) -> Axes:
        """Price index per GPU model over simulated days, USD per GPU-hour: the GPU-weighted
        mean price of the leases made in each bucket. Buckets without a lease have no price;
        the line joins the buckets that have one (dots mark them). Models that never traded
        are named in the legend as such. `list_prices` adds each model's hyperscaler list
        price, dashed."""
        ax = _axes(ax)
        summary = self._result.summary.get("price_usd_per_gpu_hour", {})
        idle = []
        for model, series in self._series(gpu_models).items():
            price = series["price_index_usd_per_gpu_hour"]
            traded = np.isfinite(price)
            if not traded.any():
                idle.append(model)
                continue
            days = series["time_s"][traded] / SECONDS_PER_DAY
            (line,) = ax.plot(days, price[traded], marker=".", markersize=4, linewidth=1.2,
                              label=model)
            listed = summary.get(model, {}).get("list_usd_per_gpu_hour")
            if list_prices and listed:
                ax.axhline(listed, color=line.get_color(), linestyle="--", linewidth=0.8,
                           alpha=0.7)
        if list_prices:
            ax.plot([], [], color="#777", linestyle="--", linewidth=0.8,
                    label="list price (dashed)")
        if idle:
            ax.plot([], [], " ", label=f"no trades: {', '.join(idle)}")
        ax.set_xlabel("simulated time (days)")
        ax.set_ylabel("price index (USD per GPU-hour)")
        ax.set_title(f"Prices, {self._title()}")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small", ncols=2)
        ax.grid(alpha=0.3)
        return ax

    def utilization(self, ax: Axes | None = None,
                    gpu_models: Sequence[str] | None = None) -> Axes:
        """Share of each GPU model's GPUs under lease at the end of each bucket, in percent,
        over simulated days."""
        ax = _axes(ax)
        for model, series in self._series(gpu_models).items():
            ax.plot(series["time_s"] / SECONDS_PER_DAY, series["utilization"] * 100,
                    linewidth=1.2, label=model)
        ax.set_xlabel("simulated time (days)")
        ax.set_ylabel("GPUs leased (% of the model's GPUs)")
        ax.set_title(f"Utilization, {self._title()}")
        ax.set_ylim(0, 100)
        ax.legend(fontsize="small", ncols=2)
        ax.grid(alpha=0.3)
        return ax

    def welfare(self, ax: Axes | None = None) -> Axes:
        """Where the potential welfare went, USD: consumer and producer surplus, platform
        fees, outside surplus and deadweight loss, which add up to the potential (dotted)."""
        ax = _axes(ax, (8, 3.2))
        welfare = self._result.summary.get("welfare") or {}
        labels = [label for key, label in WELFARE_PARTS]
        values = [float(welfare.get(key) or 0.0) for key, _label in WELFARE_PARTS]
        colors = ["#4c72b0", "#55a868", "#8172b2", "#ccb974", "#c44e52"]
        bars = ax.barh(labels, values, color=colors)
        ax.bar_label(bars, labels=[f"${v:,.0f}" for v in values], padding=3, fontsize="small")
        ax.invert_yaxis()
        potential = welfare.get("potential_usd")
        if potential:
            ax.axvline(potential, color="#555", linestyle=":", linewidth=1,
                       label=f"potential ${potential:,.0f}")
            ax.legend(fontsize="small", loc="lower right")
        ax.set_xlabel("USD (work decided by the end of the run)")
        ax.set_ylabel("share of the potential welfare")
        efficiency = welfare.get("allocative_efficiency")
        shown = f", allocative efficiency {efficiency * 100:.1f}%" if isinstance(
            efficiency, float) and math.isfinite(efficiency) else ""
        ax.set_title(f"Welfare, {self._title()}{shown}")
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
        return ax

    def _title(self) -> str:
        summary = self._result.summary
        return (f"{summary.get('scenario')}, seed {summary.get('seed')}, "
                f"{summary.get('simulated_days', 0):.2f} days")


# ----------------------------------------------------------------------------- batches


def metric_vs_parameter(runs: pd.DataFrame, parameter: str, metric: str, *,
                        by: str | None = None, ax: Axes | None = None,
                        confidence: float = 0.95) -> Axes:
    """The mean of `metric` over seeds at each value of `parameter`, with its Student's t
    confidence interval (`confidence`, 95% by default): a line with a band for a numeric
    parameter, points with error bars otherwise; one line per value of `by` (another swept
    path) if given. `runs` is a `batch_run` DataFrame or a sweep's runs.parquet read with
    pandas; failed runs are left out. Axes are titled in words with units, values shown in
    them (`market.experiments.labels`: a share or a take rate in percent, waits in minutes);
    intervals are clipped to the metric's natural range (`market.experiments.batch.summarize`)."""
    from market.experiments import labels
    from market.experiments.summaries import summarize

    groups = [parameter] if by is None else [by, parameter]
    table = summarize(runs, groups, [metric], confidence=confidence)
    ax = _axes(ax)
    shown = labels.metric(metric)
    along = labels.parameter(parameter)
    numeric = _numeric(table[parameter])
    lines = [(None, table)] if by is None else list(table.groupby(by, sort=True,
                                                                  dropna=False))
    categories = [labels.format_param_value(parameter, value)
                  for value in dict.fromkeys(table[parameter].tolist())]
    for index, (value, part) in enumerate(lines):
        mean, low, high = (part[k].to_numpy(float) * shown.scale for k in ("mean", "low",
                                                                            "high"))
        label = None if by is None else (f"{labels.parameter(by).label} "
                                         f"{labels.format_param_value(by, _item(value))}")
        if numeric:
            x = part[parameter].to_numpy(float) * along.scale
            (line,) = ax.plot(x, mean, marker="o", markersize=4, label=label)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        else:
            offset = (index - (len(lines) - 1) / 2) * 0.12
            x = np.array([categories.index(labels.format_param_value(parameter, v))
                          for v in part[parameter].tolist()]) + offset
            errors = np.vstack([mean - low, high - mean])
            ax.errorbar(x, mean, yerr=np.where(np.isfinite(errors), errors, 0), fmt="o",
                        capsize=4, label=label)
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    fewest, most = (int(table["runs"].min()), int(table["runs"].max())) if len(table) \
        else (0, 0)
    seeds = f"{fewest}" if fewest == most else f"{fewest}–{most}"
    ax.set_xlabel(along.title)
    ax.set_ylabel(shown.title)
    ax.set_title(f"{shown.label}: mean over {seeds} seeds, {confidence * 100:g}% CI")
    if by is not None:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def _item(value: Any) -> Any:
    """A pandas group key as a plain Python value."""
    return value.item() if isinstance(value, np.generic) else value


def _numeric(column: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column)) and not pd.api.types.is_bool_dtype(
        column)


__all__ = ["WELFARE_PARTS", "RunPlots", "metric_vs_parameter"]

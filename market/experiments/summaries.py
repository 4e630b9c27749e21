"""Tables over a batch's runs (`market.experiments.batch.batch_run`'s DataFrame, or a sweep's
runs.parquet read with pandas): each metric's mean and confidence interval per group of swept
parameters (`summarize`), and the same as a table to read (`summary_table`). Needs only pandas
and the labels, so that plots can use it without the machinery that runs batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def _pandas() -> Any:
    """pandas, which batch results are returned in (the `analysis` extra)."""
    try:
        import pandas
    except ImportError:
        raise ImportError("batch runs return pandas DataFrames: install pandas, e.g. "
                          "pip install 'gpumarket[analysis]'") from None
    return pandas


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values (a grid from `np.linspace` is numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def summarize(runs: pd.DataFrame, by: str | Sequence[str] | None = None,
              metrics: str | Sequence[str] | None = None,
              confidence: float = 0.95) -> pd.DataFrame:
    """Each metric's mean over the runs of each group of `by` (swept paths; default: every
    swept path in `runs`), with Student's t confidence interval: one row per group and metric,
    columns `by`…, `metric`, `runs`, `mean`, `sd`, `low`, `high`, in the metric's own units
    (shares as fractions). Failed runs are left out; with one run a group has no interval
    (NaN). An interval is clipped to the range its metric cannot leave
    (`market.experiments.intervals.natural_range`: a share stays in [0, 1], a price at least 0).

    Groups compared on common random numbers (same seeds) differ less than their intervals
    suggest: for a difference, pair the runs by seed (see the take-rate example notebook) or
    see `market.experiments.analysis.compare_to_baseline` on a sweep directory.
    """
    pd = _pandas()
    from scipy import stats

    from market.experiments.intervals import clip, natural_range

    names = _columns(runs, by, "by", default=_swept(runs))
    chosen = _columns(runs, metrics, "metrics", default=_default_metrics(runs))
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    records = []
    groups = ok.groupby(names, sort=True, dropna=False) if names else [((), ok)]
    for key, group in groups:
        values = dict(zip(names, key if isinstance(key, tuple) else (key,), strict=True))
        for metric in chosen:
            column = pd.to_numeric(group[metric], errors="coerce").to_numpy(dtype=float)
            column = column[np.isfinite(column)]
            n = len(column)
            mean = float(column.mean()) if n else np.nan
            sd = float(column.std(ddof=1)) if n > 1 else np.nan
            half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n)) \
                if n > 1 else np.nan
            low, high = clip(mean - half, mean + half, natural_range(metric))
            records.append({**values, "metric": metric, "runs": n, "mean": mean, "sd": sd,
                            "low": low, "high": high})
    return pd.DataFrame.from_records(records, columns=[*names, "metric", "runs", "mean", "sd",
                                                       "low", "high"])


def summary_table(runs: pd.DataFrame, by: str | Sequence[str] | None = None,
                  metrics: str | Sequence[str] | None = None,
                  confidence: float = 0.95) -> pd.DataFrame:
    """`summarize` as a table to read: one row per group (its values in words: `10%`, `yes`),
    one column per metric titled with its unit (`Allocative efficiency (%)`), each cell the
    mean and its confidence interval in that unit, `49.8 [41.2, 58.4]`."""
    pd = _pandas()

    from market.experiments.labels import format_number, format_param_value, metric, parameter

    summary = summarize(runs, by, metrics, confidence)
    names = [name for name in summary.columns if name not in
             ("metric", "runs", "mean", "sd", "low", "high")]
    rows: dict[tuple[str, ...], dict[str, str]] = {}
    titles = {}
    for record in summary.to_dict("records"):
        key = tuple(format_param_value(name, _plain(record[name])) for name in names)
        quantity = metric(record["metric"])
        titles[record["metric"]] = quantity.title
        mean, low, high = (record[k] * quantity.scale for k in ("mean", "low", "high"))
        shown = format_number(mean)
        if np.isfinite(low) and np.isfinite(high):
            shown += f" [{format_number(low)}, {format_number(high)}]"
        rows.setdefault(key, {})[quantity.title] = shown
    index = pd.MultiIndex.from_tuples(list(rows), names=[parameter(n).title for n in names]) \
        if len(names) > 1 else pd.Index([k[0] for k in rows] if names else ["all runs"],
                                        name=parameter(names[0]).title if names else None)
    return pd.DataFrame(list(rows.values()), index=index,
                        columns=list(dict.fromkeys(titles.values())))


def _swept(runs: pd.DataFrame) -> list[str]:
    """Swept paths: as `batch_run` noted them, else the columns between the bookkeeping and
    the first metric of the summary (`scenario`), as in a sweep's runs.parquet."""
    noted = runs.attrs.get("parameters")
    if isinstance(noted, list) and all(name in runs.columns for name in noted):
        return list(noted)
    columns = list(runs.columns)
    if "elapsed_s" not in columns:
        return []
    after = columns[columns.index("elapsed_s") + 1:]
    metrics_start = after.index("scenario") if "scenario" in after else len(after)
    return after[:metrics_start]


def _default_metrics(runs: pd.DataFrame) -> list[str]:
    from market.experiments.analysis import DEFAULT_METRICS

    return [name for name in DEFAULT_METRICS if name in runs.columns]


def _columns(runs: pd.DataFrame, names: str | Sequence[str] | None, what: str,
             default: list[str]) -> list[str]:
    chosen = default if names is None else [names] if isinstance(names, str) else list(names)
    missing = [name for name in chosen if name not in runs.columns]
    if missing:
        import difflib

        close = difflib.get_close_matches(missing[0], [str(c) for c in runs.columns], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{what}: {missing[0]!r} is not a column of these runs{hint}")
    return chosen


__all__ = ["summarize", "summary_table"]

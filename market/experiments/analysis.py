"""Sweep results as numbers: read a sweep's output directory and summarize its runs per
parameter combination, with Student's t confidence intervals of the mean.

A sweep directory holds `runs.parquet` (one row per run: bookkeeping, the swept parameters by
dotted path, then the run's summary metrics flattened with "."), `timeseries.parquet` (each
run's hourly price index and utilization per GPU model) and `sweep.json` (the manifest: name,
swept parameters in sweep order, number of runs). Everything here is plain data for a terminal
table or a report; nothing here draws.

Replications of a point are independent draws, so the interval of a point's mean is
`mean ± t(0.975, n − 1) · sd / √n`:

>>> e = estimate([1.0, 2.0, 3.0])
>>> e.n, e.mean, e.sd, round(e.half_width, 4)
(3, 2.0, 1.0, 2.4841)
>>> format_estimate(e)
'2.0 ± 2.5'
>>> math.isnan(estimate([5.0]).half_width)   # one run says nothing about the spread
True
>>> group_label({"market.mechanism": "first_price", "market.take_rate": 0.1})
'market.mechanism=first_price, market.take_rate=0.1'

Points, though, are compared on common random numbers: replication r of every point runs on
the same seed. `compare_to_baseline` reports each point's **paired difference** from a
baseline point, metric by metric: the mean over seeds of (point − baseline) with the t
interval of those per-seed differences, far tighter than two overlapping intervals.

The **fee pass-through** between two take rates (`fee_pass_through`) is
Δ mean price paid per GPU-hour / Δ fee per GPU-hour, both paired by seed, where a run's price
paid per GPU-hour is `tenant_spend_usd` and its fee per GPU-hour `platform_revenue_usd` over
the GPU-hours it served (all models). 1 means tenants bear the whole change in the fee, 0
that providers absorb it. Its interval is Fieller's (`fieller`).
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from market.experiments import labels
from market.experiments.sweep import BOOKKEEPING

CONFIDENCE = 0.95
"""Coverage of every interval here: two-sided, Student's t."""

"""Columns of runs.parquet that describe the run, not the market."""

DEFAULT_METRICS = ("fill_rate", "tenant_savings_vs_list", "allocative_efficiency",
                   "welfare.consumer_surplus_usd", "welfare.producer_surplus_usd",
                   "welfare.deadweight_loss_usd", "platform_revenue_usd",
                   "time_to_lease_s.median")
"""Headline metrics, summarized when the user names none (those the sweep has)."""

_REQUIRED = ("run_id", "point", "replication", "status")
_MAKE_IT = "run `gpumarket sweep FILE --out {dir}` first"


class ReportError(ValueError):
    """A sweep directory, metric or parameter name a user got wrong: one line naming it."""


# ----------------------------------------------------------------------------- loading

@dataclass(frozen=True)
class Sweep:
    """A sweep's results, read from its output directory.

    `runs` has one row per run (see the module docstring); `params` are the swept columns in
    sweep order. The timeseries is read on first use: terminal tables never need it.
    """

    directory: Path
    runs: pa.Table
    manifest: dict[str, Any]
    params: tuple[str, ...]
    _cache: dict[str, pa.Table] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.directory.name)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask over `runs`: True where the run finished with status "ok"."""
        if not len(self.runs):  # its columns may not even exist yet
            return np.zeros(0, dtype=bool)
        return np.asarray(pc.fill_null(pc.equal(self.runs["status"], "ok"), False))

    @property
    def failed(self) -> int:
        """How many runs failed."""
        return len(self.runs) - int(self.ok.sum())

    def timeseries(self) -> pa.Table:
        """timeseries.parquet (read once): run_id, point, replication, time_s (sim_seconds),
        gpu_model, price_index_usd_per_gpu_hour (NaN in an hour without a lease), leases,
        utilization (0..1)."""
        if "timeseries" not in self._cache:
            path = self.directory / "timeseries.parquet"
            if not path.is_file():
                raise ReportError(f"{self.directory}: no timeseries.parquet; "
                                  + _MAKE_IT.format(dir=self.directory))
            self._cache["timeseries"] = _read_parquet(path)
        return self._cache["timeseries"]


def load_sweep(directory: str | Path) -> Sweep:
    """Read a sweep's output directory. Raises ReportError (one line) when it is not one."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ReportError(f"{directory}: no such directory; expected a sweep's output "
                          f"directory ({_MAKE_IT.format(dir=directory)})")
    for name in ("runs.parquet", "sweep.json"):
        if not (folder / name).is_file():
            raise ReportError(f"{directory}: no {name}; {_MAKE_IT.format(dir=directory)}")
    try:
        manifest = json.loads((folder / "sweep.json").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{folder / 'sweep.json'}: not readable JSON: "
                          f"{_first_line(error)}") from None
    params = manifest.get("params", []) if isinstance(manifest, dict) else None
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise ReportError(f"{folder / 'sweep.json'}: expected a JSON object whose \"params\" "
                          "is a list of column names")
    runs = _read_parquet(folder / "runs.parquet")
    missing = [c for c in (*_REQUIRED, *params) if c not in runs.column_names]
    if missing and len(runs):  # a sweep stopped before its first run has no columns yet
        raise ReportError(f"{folder / 'runs.parquet'}: no column {missing[0]!r}; "
                          "expected the runs table a sweep writes")
    return Sweep(folder, runs, manifest, tuple(params))


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise ReportError(f"{path}: not a readable Parquet file: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# ----------------------------------------------------------------------------- names

def metric_names(sweep: Sweep) -> list[str]:
    """The numeric metric columns of the runs table, in its column order (bookkeeping,
    parameters and non-numeric columns such as `scenario` or `money_conserved` excluded)."""
    skip = {*BOOKKEEPING, *sweep.params}
    return [f.name for f in sweep.runs.schema
            if f.name not in skip and _is_numeric(f.type)]


def resolve_metrics(sweep: Sweep, metrics: Iterable[str] | None = None) -> list[str]:
    """The metrics to summarize: `metrics` checked against the sweep, or by default those of
    DEFAULT_METRICS it has (all of its metrics if it has none of them)."""
    valid = metric_names(sweep)
    if metrics is None:
        return [m for m in DEFAULT_METRICS if m in valid] or valid
    return _checked(list(dict.fromkeys(metrics)), valid, "metric")


def resolve_params(sweep: Sweep, by: Iterable[str] | None = None) -> list[str]:
    """The parameters to group by: `by` checked against the swept ones, in sweep order, or by
    default all of them. An empty `by` pools every run into one group."""
    if by is None:
        return list(sweep.params)
    chosen = _checked(list(dict.fromkeys(by)), list(sweep.params), "parameter")
    return [p for p in sweep.params if p in chosen]


def _checked(names: list[str], valid: list[str], kind: str) -> list[str]:
    what = "a swept parameter" if kind == "parameter" else "a numeric metric"
    for name in names:
        if name not in valid:
            raise ReportError(f"{kind} {name!r}: not {what} of this sweep; "
                              + nearest_names(name, valid))
    return names


MAX_SUGGESTIONS = 5
"""Names offered for a mistyped metric or parameter; a sweep has hundreds of metrics."""


def nearest_names(name: str, valid: Sequence[str]) -> str:
    """The end of a one-line error for an unknown `name`: the valid names when they are few,
    else the closest few (by spelling, or containing `name`) and how many there are.

    >>> nearest_names("fillrate", ["fill_rate", "fill_count", *(f"m{i}" for i in range(40))])
    'did you mean: fill_rate? (42 names in all: the numeric columns of runs.parquet)'
    >>> nearest_names("mechanism", ["market.take_rate"])
    'expected one of: market.take_rate'
    """
    if len(valid) <= MAX_SUGGESTIONS * 2:
        return f"expected one of: {', '.join(valid) or '(none)'}"
    lowered = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=MAX_SUGGESTIONS,
                                      cutoff=0.6)
    close += [v for v in lowered if name.lower() in v and v not in close]
    # A dotted key mistyped in its leaf: compare leaves too (h100.meen -> ...h100.mean).
    leaf = name.lower().rsplit(".", 1)[-1]
    close += [v for v in lowered if v not in close and v.rsplit(".", 1)[-1] in
              difflib.get_close_matches(leaf, [v.rsplit(".", 1)[-1]], cutoff=0.8)
              and v.rsplit(".", 1)[0] == name.lower().rsplit(".", 1)[0]]
    hint = (f"did you mean: {', '.join(lowered[v] for v in close[:MAX_SUGGESTIONS])}? "
            if close else f"no name is close; e.g. {', '.join(valid[:3])} ")
    return f"{hint}({len(valid)} names in all: the numeric columns of runs.parquet)"


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def is_numeric_param(sweep: Sweep, param: str) -> bool:
    """True when the parameter's values are numbers (a numeric axis, not categories)."""
    return _is_numeric(sweep.runs.schema.field(param).type)


# ----------------------------------------------------------------------------- estimates

@dataclass(frozen=True, slots=True)
class Estimate:
    """The mean of `n` values, their standard deviation (n − 1 in the denominator) and the
    half-width of the 95% confidence interval of the mean (NaN when n < 2)."""

    n: int
    mean: float
    sd: float
    half_width: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def estimate(values: Sequence[float] | np.ndarray) -> Estimate:
    """Mean and 95% t interval of `values`; NaNs (missing values) are left out."""
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    n = int(data.size)
    mean = float(data.mean()) if n else math.nan
    sd = float(data.std(ddof=1)) if n > 1 else math.nan
    return Estimate(n, mean, sd, float(half_widths(np.array([sd]), np.array([n]))[0]))


def half_widths(sd: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Half-widths `t(0.975, n − 1) · sd / √n` of 95% intervals of means, elementwise; NaN
    where n < 2."""
    from scipy import stats  # here, not at the top: it takes most of a second to import

    n = np.asarray(n, dtype=float)
    enough = n >= 2
    t = stats.t.ppf(0.5 + CONFIDENCE / 2, np.where(enough, n - 1, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(enough, t * np.asarray(sd, dtype=float) / np.sqrt(n), math.nan)


# ----------------------------------------------------------------------------- summaries

@dataclass(frozen=True, slots=True)
class GroupSummary:
    """One combination of the grouping parameters and its metrics over its OK runs.

    `values` maps each grouping parameter to its value (None where a point left it at the
    base scenario's); `points` are the sweep points pooled here; `runs` counts OK runs and
    `failed` failed ones; `metrics` maps a metric name to its Estimate (whose `n` can be below
    `runs` where a run has no value for it).
    """

    values: dict[str, Any]
    points: tuple[int, ...]
    runs: int
    failed: int
    metrics: dict[str, Estimate]

    @property
    def label(self) -> str:
        return group_label(self.values)


def summarize(sweep: Sweep, metrics: Iterable[str] | None = None,
              by: Iterable[str] | None = None) -> list[GroupSummary]:
    """Each combination of the `by` parameters that has OK runs, in sweep order (by its first
    point), with every metric's mean and 95% interval over those runs. Parameters not in `by`
    are pooled. Raises ReportError for a name the sweep does not have."""
    names = resolve_metrics(sweep, metrics)
    params = resolve_params(sweep, by)
    ok = sweep.ok
    columns = {name: _floats(sweep.runs[name]) for name in names}
    points = sweep.runs["point"].to_numpy() if len(sweep.runs) else np.zeros(0, int)
    result = []
    for values, rows in _groups(sweep, params):
        good = rows[ok[rows]]
        if good.size == 0:
            continue
        result.append(GroupSummary(
            values, tuple(int(p) for p in np.unique(points[rows])), int(good.size),
            int(rows.size - good.size),
            {name: estimate(column[good]) for name, column in columns.items()}))
    return result


def _groups(sweep: Sweep, params: list[str]) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Rows of the runs table per combination of `params`, ordered by the combination's
    first point among OK runs (combinations without OK runs last)."""
    if not len(sweep.runs):
        return []
    keys = list(zip(*(sweep.runs[p].to_pylist() for p in params), strict=True)) if params \
        else [()] * len(sweep.runs)
    rows: dict[tuple[Any, ...], list[int]] = {}
    for index, key in enumerate(keys):
        rows.setdefault(key, []).append(index)
    points = sweep.runs["point"].to_numpy()
    ok = sweep.ok

    def first_point(indices: np.ndarray) -> float:
        good = indices[ok[indices]]
        return float(points[good].min()) if good.size else math.inf

    groups = [(dict(zip(params, key, strict=True)), np.array(indices))
              for key, indices in rows.items()]
    return sorted(groups, key=lambda group: first_point(group[1]))


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, missing values as NaN."""
    return np.asarray(pc.fill_null(pc.cast(column, pa.float64()), math.nan), dtype=float)


# ----------------------------------------------------------------------------- time series

@dataclass(frozen=True, eq=False)
class PriceSeries:
    """One combination's hourly price index and utilization on one GPU model, averaged over
    its OK runs. Arrays are aligned on `time_s`.

    time_s: sim_seconds, as in timeseries.parquet (the moment each hour was closed).
    runs: how many runs had a lease, hence a price index, in that hour.
    price_usd_per_gpu_hour: mean price index over those runs (NaN when none had one).
    half_width: of its 95% t interval, usd_per_gpu_hour (NaN below two runs).
    utilization: mean share of the model's GPUs leased, 0..1, over all the runs.
    """

    values: dict[str, Any]
    gpu_model: str
    time_s: np.ndarray
    runs: np.ndarray
    price_usd_per_gpu_hour: np.ndarray
    half_width: np.ndarray
    utilization: np.ndarray

    @property
    def label(self) -> str:
        return group_label(self.values)


def summarize_timeseries(sweep: Sweep, by: Iterable[str] | None = None,
                         gpu_model: str | None = None) -> list[PriceSeries]:
    """One PriceSeries per combination of the `by` parameters (in sweep order) and GPU model
    (in order of first appearance), over OK runs; `gpu_model` keeps one model. Raises
    ReportError for an unknown parameter or model, or a sweep without timeseries.parquet."""
    params = resolve_params(sweep, by)
    table = sweep.timeseries()
    if len(table):  # a sweep stopped before its first run may leave the file empty
        ok_ids = sweep.runs.filter(pa.array(sweep.ok))["run_id"]
        table = table.filter(pc.is_in(table["run_id"], value_set=ok_ids.combine_chunks()))
    names = pc.unique(table["gpu_model"]).to_pylist() if len(table) else []
    if gpu_model is not None:
        if gpu_model not in names:
            raise ReportError(f"gpu model {gpu_model!r}: not in this sweep's timeseries; "
                              f"expected one of: {', '.join(names) or '(none)'}")
        table, names = table.filter(pc.equal(table["gpu_model"], gpu_model)), [gpu_model]
    ok = sweep.ok
    groups = [(values, rows) for values, rows in _groups(sweep, params) if ok[rows].any()]
    if not len(table) or not groups:
        return []
    # Each point belongs to exactly one combination, so a lookup by point labels every row.
    run_points = sweep.runs["point"].to_numpy()
    point_group = np.full(int(run_points.max()) + 1, -1)
    for index, (_, rows) in enumerate(groups):
        point_group[run_points[rows]] = index
    model = pc.index_in(table["gpu_model"], value_set=pa.array(names)).to_numpy()
    key = point_group[table["point"].to_numpy()] * len(names) + model
    time_s = _floats(table["time_s"])
    price = _floats(table["price_index_usd_per_gpu_hour"])
    utilization = _floats(table["utilization"])
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    result = []
    for chunk in np.split(order, bounds):
        group, which = divmod(int(key[chunk[0]]), len(names))
        result.append(_series(groups[group][0], names[which], time_s[chunk], price[chunk],
                              utilization[chunk]))
    return result


def _series(values: dict[str, Any], model: str, time_s: np.ndarray, price: np.ndarray,
            utilization: np.ndarray) -> PriceSeries:
    times, at = np.unique(time_s, return_inverse=True)
    mean, n = _means(price, at, times.size)
    has = ~np.isnan(price)
    squares = np.bincount(at[has], (price[has] - mean[at[has]]) ** 2, minlength=times.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.where(n >= 2, np.sqrt(squares / (n - 1)), math.nan)
    return PriceSeries(values, model, times, n, mean, half_widths(sd, n),
                       _means(utilization, at, times.size)[0])


def _means(values: np.ndarray, at: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean of `values` (bin index `at`) ignoring NaNs, and the count behind it."""
    has = ~np.isnan(values)
    n = np.bincount(at[has], minlength=size)
    total = np.bincount(at[has], values[has], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, math.nan), n


# ----------------------------------------------------------------------------- baselines

@dataclass(frozen=True, slots=True)
class Comparison:
    """One point of a sweep against its baseline point: each metric's paired difference
    (point − baseline), one per seed both ran OK, as an Estimate (mean, sd, 95% t interval).

    `values` are the point's parameters and `baseline` its baseline point's; `pairs` counts
    the seeds both ran OK. The baseline point itself is compared with itself (differences 0).
    """

    values: dict[str, Any]
    point: int
    baseline: dict[str, Any]
    baseline_point: int
    pairs: int
    differences: dict[str, Estimate]

    @property
    def label(self) -> str:
        return group_label(self.values)

    @property
    def is_baseline(self) -> bool:
        return self.point == self.baseline_point


def parse_baseline(sweep: Sweep, assignments: Iterable[str]) -> dict[str, Any]:
    """`["market.take_rate=0.2", ...]` -> {path: value}, each VALUE read as TOML (else as a
    string) and checked against the values the sweep gave that parameter. Raises
    ReportError, one line listing what is valid."""
    baseline: dict[str, Any] = {}
    for assignment in assignments:
        path, sep, text = assignment.partition("=")
        path = path.strip()
        if not sep or not path:
            raise ReportError(f"--baseline {assignment!r}: expected PATH=VALUE, e.g. "
                              "market.take_rate=0.2")
        if path not in sweep.params:
            raise ReportError(f"--baseline {assignment!r}: {path} is not a swept parameter; "
                              f"expected one of: {', '.join(sweep.params) or '(none)'}")
        if path in baseline:
            raise ReportError(f"--baseline {assignment!r}: {path} is given twice")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        valid: list[Any] = []
        for values in _point_values(sweep).values():
            if not any(_same(values.get(path), v) for v in valid):
                valid.append(values.get(path))
        match = [v for v in valid if _same(v, value)]
        if not match:
            raise ReportError(f"--baseline {assignment!r}: not a point of this sweep; {path} "
                              f"is one of: {', '.join(format_value(v) for v in valid)}")
        baseline[path] = match[0]
    if not baseline:
        raise ReportError("--baseline: expected PATH=VALUE, e.g. market.take_rate=0.2")
    return baseline


def compare_to_baseline(sweep: Sweep, baseline: Mapping[str, Any],
                        metrics: Iterable[str] | None = None) -> list[Comparison]:
    """Every point with OK runs (in sweep order) against its baseline point: the point that
    agrees with it on the parameters `baseline` does not name and has `baseline`'s values
    on those it names. Differences are paired by seed: replication r of every point runs on
    the same seed. Points without a baseline point are left out."""
    names = resolve_metrics(sweep, metrics)
    points = _point_values(sweep)
    seeds = _seed_rows(sweep)
    columns = {name: _floats(sweep.runs[name]) for name in names}
    result = []
    for point, values in points.items():
        base = _baseline_point(points, values, baseline)
        if base is None:
            continue
        shared = sorted(set(seeds[point]) & set(seeds.get(base, {})))
        mine = np.array([seeds[point][s] for s in shared], dtype=np.int64)
        theirs = np.array([seeds[base][s] for s in shared], dtype=np.int64)
        result.append(Comparison(
            values, point, points[base], base, len(shared),
            {name: estimate(column[mine] - column[theirs]) for name, column in columns.items()}))
    return result


def _baseline_point(points: dict[int, dict[str, Any]], values: Mapping[str, Any],
                    baseline: Mapping[str, Any]) -> int | None:
    """The first point with `values` on the parameters `baseline` does not name and
    `baseline`'s values on those it names, if any."""
    wanted = {**values, **baseline}
    return next((p for p, v in points.items()
                 if all(_same(v.get(k), x) for k, x in wanted.items())), None)


def _point_values(sweep: Sweep) -> dict[int, dict[str, Any]]:
    """Each point's swept parameter values, in sweep order (points with OK runs only)."""
    if not len(sweep.runs):
        return {}
    ok = sweep.ok
    rows = sweep.runs.select(["point", *sweep.params]).to_pylist()
    values: dict[int, dict[str, Any]] = {}
    for row, good in zip(rows, ok, strict=True):
        if good and row["point"] not in values:
            values[row["point"]] = {p: row[p] for p in sweep.params}
    return dict(sorted(values.items()))


def _seed_rows(sweep: Sweep) -> dict[int, dict[int, int]]:
    """point -> seed -> row index of its OK run (the pairing of common random numbers)."""
    if not len(sweep.runs):
        return {}
    column = "seed" if "seed" in sweep.runs.column_names else "replication"
    result: dict[int, dict[int, int]] = {}
    for index, (point, seed, good) in enumerate(zip(
            sweep.runs["point"].to_pylist(), sweep.runs[column].to_pylist(), sweep.ok,
            strict=True)):
        if good:
            result.setdefault(point, {}).setdefault(seed, index)
    return result


def _same(a: Any, b: Any) -> bool:
    """Parameter values are the same: numbers by value (0 is 0.0), anything else exactly."""
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, number) and isinstance(b, number):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


# ----------------------------------------------------------------------------- fee incidence

TAKE_RATE = "market.take_rate"
"""The swept parameter whose levels the fee pass-through compares."""

_GPU_HOURS = re.compile(r"price_usd_per_gpu_hour\.[^.]+\.gpu_hours")


@dataclass(frozen=True, slots=True)
class PassThrough:
    """How much of a change in the platform's fee tenants bear, between two take rates on
    the same seeds: Δ mean price paid per GPU-hour / Δ fee per GPU-hour.

    `values` are the other swept parameters (the same at both points). `price_change` and
    `fee_change` are the paired differences per seed (USD per GPU-hour, point `to` − point
    `from`); `ratio` their means' ratio with its 95% Fieller interval (`low`, `high`;
    infinite when the fee change is not clearly non-zero).
    """

    values: dict[str, Any]
    take_rate_from: float
    take_rate_to: float
    point_from: int
    point_to: int
    price_change: Estimate
    fee_change: Estimate
    ratio: float
    low: float
    high: float

    @property
    def label(self) -> str:
        return group_label(self.values)


def per_gpu_hour(sweep: Sweep) -> tuple[np.ndarray, np.ndarray]:
    """Per run: the mean price tenants paid and the mean fee the platform took, USD per
    GPU-hour served: `tenant_spend_usd` and `platform_revenue_usd` over the GPU-hours of all
    models (`price_usd_per_gpu_hour.<model>.gpu_hours`). NaN where a run served none, or
    the sweep lacks the columns."""
    runs = sweep.runs
    nothing = np.full(len(runs), math.nan)
    hours_columns = [c for c in runs.column_names if _GPU_HOURS.fullmatch(c)]
    if not hours_columns or not {"tenant_spend_usd", "platform_revenue_usd"} <= set(
            runs.column_names):
        return nothing, nothing.copy()
    hours = np.nansum([_floats(runs[c]) for c in hours_columns], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(hours > 0, _floats(runs["tenant_spend_usd"]) / hours, math.nan)
        fee = np.where(hours > 0, _floats(runs["platform_revenue_usd"]) / hours, math.nan)
    return price, fee


def fee_pass_through(sweep: Sweep, baseline: Mapping[str, Any] | None = None
                     ) -> list[PassThrough]:
    """The fee pass-through where the sweep varies `market.take_rate`: from the baseline
    point to every point at another take rate when `baseline` names the take rate, else
    between adjacent take rates with the other parameters alike. Empty when the sweep does
    not vary the take rate or lacks the columns (see `per_gpu_hour`)."""
    if TAKE_RATE not in sweep.params:
        return []
    price, fee = per_gpu_hour(sweep)
    if np.isnan(price).all():
        return []
    points = _point_values(sweep)
    seeds = _seed_rows(sweep)
    pairs = (_baseline_pairs(points, baseline) if baseline and TAKE_RATE in baseline
             else _adjacent_pairs(points))
    return [_pass_through(points, seeds, price, fee, low, high) for low, high in pairs]


def _baseline_pairs(points: dict[int, dict[str, Any]], baseline: Mapping[str, Any]
                    ) -> list[tuple[int, int]]:
    pairs = []
    for point, values in points.items():
        base = _baseline_point(points, values, baseline)
        if base is not None and not _same(points[base].get(TAKE_RATE), values.get(TAKE_RATE)):
            pairs.append((base, point))
    return pairs


def _adjacent_pairs(points: dict[int, dict[str, Any]]) -> list[tuple[int, int]]:
    """Pairs of points at adjacent take rates, the other parameters alike, in sweep order."""
    lines: dict[tuple[Any, ...], list[int]] = {}
    for point, values in points.items():
        if isinstance(values.get(TAKE_RATE), int | float):
            key = tuple((k, repr(v)) for k, v in values.items() if k != TAKE_RATE)
            lines.setdefault(key, []).append(point)
    pairs = []
    for members in lines.values():
        members = sorted(members, key=lambda p: points[p][TAKE_RATE])
        pairs += [(a, b) for a, b in itertools.pairwise(members)
                  if not _same(points[a][TAKE_RATE], points[b][TAKE_RATE])]
    return pairs


def _pass_through(points: dict[int, dict[str, Any]], seeds: dict[int, dict[int, int]],
                  price: np.ndarray, fee: np.ndarray, low: int, high: int) -> PassThrough:
    shared = sorted(set(seeds.get(low, {})) & set(seeds.get(high, {})))
    a = np.array([seeds[low][s] for s in shared], dtype=np.int64)
    b = np.array([seeds[high][s] for s in shared], dtype=np.int64)
    price_change, fee_change = price[b] - price[a], fee[b] - fee[a]
    keep = ~(np.isnan(price_change) | np.isnan(fee_change))
    ratio, lower, upper = fieller(price_change[keep], fee_change[keep])
    others = {k: v for k, v in points[high].items() if k != TAKE_RATE}
    return PassThrough(others, float(points[low][TAKE_RATE]), float(points[high][TAKE_RATE]),
                       low, high, estimate(price_change[keep]), estimate(fee_change[keep]),
                       ratio, lower, upper)


def fieller(numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray
            ) -> tuple[float, float, float]:
    """The ratio of two paired means, mean(numerator) / mean(denominator), with its 95%
    Fieller interval: the ρ for which mean(numerator − ρ·denominator) = 0 is not rejected by
    a t test over the pairs (n − 1 degrees of freedom). Unbounded (−inf, inf) when the
    denominator's own interval contains 0; NaN bounds below two pairs.

    >>> fieller([0.1, 0.2, 0.15], [0.1, 0.2, 0.15])   # the price rose by exactly the fee
    (1.0, 1.0, 1.0)
    >>> fieller([0.0, 0.0, 0.0], [0.1, 0.2, 0.15])    # it did not move
    (0.0, 0.0, 0.0)
    """
    from scipy import stats

    x = np.asarray(numerator, dtype=float)
    y = np.asarray(denominator, dtype=float)
    n = x.size
    if n == 0 or y.mean() == 0:
        return (math.nan, math.nan, math.nan)
    ratio = float(x.mean() / y.mean())
    if n < 2:
        return (ratio, math.nan, math.nan)
    t2 = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) ** 2
    covariance = np.cov(np.vstack([x, y]), ddof=1)
    # (mean x − ρ mean y)² ≤ t² var(x − ρ y) / n  is  a ρ² − 2 b ρ + c ≤ 0:
    a = y.mean() ** 2 - t2 * covariance[1, 1] / n
    b = x.mean() * y.mean() - t2 * covariance[0, 1] / n
    c = x.mean() ** 2 - t2 * covariance[0, 0] / n
    if a <= 0:
        return (ratio, -math.inf, math.inf)
    root = math.sqrt(max(b * b - a * c, 0.0))
    return (ratio, float((b - root) / a), float((b + root) / a))


# ----------------------------------------------------------------------------- display

def format_value(value: Any) -> str:
    """A parameter value as people read it; None (left at the base scenario) as "(base)"."""
    if value is None:
        return "(base)"
    if isinstance(value, float):
        return f"{value:.10g}"  # drops float noise (0.30000000000000004) but keeps digits
    return str(value)


def group_label(values: dict[str, Any]) -> str:
    """"path=value, ..." for a combination of parameters; "all runs" when there are none."""
    return ", ".join(f"{path}={format_value(v)}" for path, v in values.items()) or "all runs"


def format_number(x: float) -> str:
    """A metric value in a table: 3 significant digits, thousands grouped, the integer part
    never rounded away (`labels.format_number`, the one formatter of the report page and the
    terminal); "—" for NaN."""
    return labels.format_number(x)


def format_difference(e: Estimate, quantity: labels.Quantity | None = None) -> str:
    """A paired difference: "mean ± half-width", with " *" when its interval excludes 0 (the
    seeds tell the two apart). Float noise around an exact 0 (|x| < 1e-12) shows as 0. In
    `quantity`'s display unit when given (percentage points for a share).

    >>> format_difference(estimate([1.0, 1.2, 1.4])), format_difference(estimate([1.0, 2.0, 3.0]))
    ('1.20 ± 0.50 *', '2.0 ± 2.5')
    """
    return labels.format_difference(e.n, e.mean, e.half_width, quantity)


def format_share(x: float) -> str:
    """A ratio such as a pass-through, in percent; "—" for NaN.

    >>> format_share(0.8749), format_share(math.nan)
    ('87%', '—')
    """
    return "—" if math.isnan(x) else f"{x:.0%}"


def format_share_interval(low: float, high: float) -> str:
    """An interval of a ratio in percent, "[low, high]"; "unbounded" when it is.

    >>> format_share_interval(0.5, 1.25), format_share_interval(-math.inf, math.inf)
    ('[50%, 125%]', 'unbounded')
    """
    if math.isnan(low) or math.isnan(high):
        return "—"
    if math.isinf(low) or math.isinf(high):
        return "unbounded"
    return f"[{low:.0%}, {high:.0%}]"


def format_estimate(e: Estimate, quantity: labels.Quantity | None = None) -> str:
    """"mean ± half-width" of an Estimate, the half-width to 2 significant digits and the
    mean to the same place; "mean (n=1)" for one run; "—" for none. In `quantity`'s display
    unit when given (`labels.metric(name)`: percent for a share, minutes for a wait)."""
    return labels.format_estimate(e.n, e.mean, e.half_width, quantity)


__all__ = [
    "BOOKKEEPING", "CONFIDENCE", "DEFAULT_METRICS", "TAKE_RATE", "Comparison", "Estimate",
    "GroupSummary", "PassThrough", "PriceSeries", "ReportError", "Sweep", "compare_to_baseline",
    "estimate", "fee_pass_through", "fieller", "format_difference", "format_estimate",
    "format_number",
    "format_share", "format_share_interval", "format_value", "group_label", "half_widths",
    "is_numeric_param", "load_sweep", "metric_names", "nearest_names", "parse_baseline",
    "per_gpu_hour",
    "resolve_metrics", "resolve_params", "summarize", "summarize_timeseries",
]

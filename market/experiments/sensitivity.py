"""Global sensitivity: Sobol' indices of chosen metrics over chosen parameter ranges.

A sensitivity file is TOML:

    name = "default"
    base = "default"            # a built-in scenario, or a path relative to this file
    seed = 1                    # the design's and the replications' root seed
    replications = 1            # runs per design point (common random numbers)
    samples = 32                # n, a power of 2: n x (parameters + 2) points
    metrics = ["fill_rate", "welfare.allocative_efficiency"]

    [set]                       # the same for every run
    duration_days = 1

    [ranges]                    # each parameter uniform over its range, independently
    "market.take_rate" = [0.0, 0.3]
    "tenants.arrivals_per_hour" = { low = 20, high = 80, scale = "log" }
    "tenants.max_reposts" = { low = 0, high = 5, integer = true }

The design is Saltelli's (2010): two n-row matrices A and B from one scrambled Sobol'
sequence in 2d dimensions (`scipy.stats.qmc.Sobol`, seeded), and for each parameter i the
matrix AB_i, A with column i taken from B. Unit values map to a range linearly, log-uniformly
(`scale = "log"`), or uniformly over the integers low..high (`integer = true`). The design's
distinct points run as one sweep (`market.experiments.sweep`, local processes or Dask, resumable),
each on the same `replications` seeds; a point's metric is its mean over them.

With f_A, f_B, f_AB_i the metric at A's, B's and AB_i's rows, each less the mean of f_A and
f_B (Sobol' and Levitan 1999), and V the variance of f_A and f_B together (as SciPy's
`scipy.stats.sobol_indices` computes them):

- first order, S_i = mean(f_B × (f_AB_i − f_A)) / V (Saltelli et al. 2010): the share of the
  metric's variance that parameter i explains alone;
- total order, ST_i = mean((f_A − f_AB_i)²) / (2V) (Jansen 1999): its share with all its
  interactions.

Confidence intervals are percentile bootstraps over the n rows (seeded, so the whole analysis
is reproducible). A metric constant over the design has no variance to share: its indices are
left empty (NaN) and the report says so.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from scipy.stats import bootstrap, qmc

from market.experiments.execution import Progress, run_sweep
from market.experiments.sweep import (
    MAX_RUNS,
    ExperimentFile,
    Sweep,
    SweepError,
    SweepFile,
    _check_path,
    _first_error,
    expand_sweep,
    read_toml_file,
)
from market.scenario import builtin_tomls

#: Most parameters one analysis varies (each adds n points).
MAX_PARAMETERS = 50
#: Files an analysis writes next to the sweep's own.
INDICES_FILE = "sensitivity.parquet"
DESIGN_FILE = "design.parquet"
SPEC_FILE = "sensitivity.toml"


class Range(BaseModel):
    """One parameter's range: uniform on [low, high], log-uniform with `scale = "log"`, or
    uniform over the integers low..high with `integer = true`."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    scale: Literal["linear", "log"] = "linear"
    integer: bool = False

    def model_post_init(self, _context: Any) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"expected finite low < high, got low={self.low:g}, "
                             f"high={self.high:g}")
        if self.scale == "log" and not self.low > 0:
            raise ValueError(f"scale log: expected low > 0, got {self.low:g}")
        if self.integer and (self.scale == "log" or not (self.low.is_integer()
                                                         and self.high.is_integer())):
            raise ValueError("integer: expected whole low and high on a linear scale")

    def values(self, unit: np.ndarray) -> np.ndarray:
        """Points of the unit interval mapped to the range (floats; whole for `integer`)."""
        if self.integer:
            return np.minimum(np.floor(self.low + unit * (self.high - self.low + 1)), self.high)
        if self.scale == "log":
            low, high = math.log(self.low), math.log(self.high)
            return np.exp(low + unit * (high - low))
        return self.low + unit * (self.high - self.low)


class SensitivityFile(ExperimentFile):
    """The fields of a sensitivity file (see the module docstring)."""

    replications: Annotated[int, Field(ge=1, le=1_000)] = 1
    samples: Annotated[int, Field(ge=4, le=65_536)] = Field(
        32, description="n, a power of 2: the design has n x (parameters + 2) points")
    metrics: Annotated[list[str], Field(min_length=1, max_length=100)] = Field(
        description="metric columns of runs.parquet (flattened summary keys)")
    set: dict[str, Any] = Field(default_factory=dict)
    ranges: Annotated[dict[str, Any], Field(min_length=1, max_length=MAX_PARAMETERS)] = Field(
        description="dotted path -> [low, high] or { low, high, scale, integer }")
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    resamples: Annotated[int, Field(ge=100, le=100_000)] = 1_000

    @field_validator("samples")
    @classmethod
    def _power_of_two(cls, samples: int) -> int:
        if samples & (samples - 1):
            raise ValueError(f"expected a power of 2 (Sobol' points balance in 2^m), "
                             f"got {samples}")
        return samples

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, ranges: dict[str, Any]) -> dict[str, Range]:
        parsed = {}
        for path, value in ranges.items():
            _check_path(path)
            try:
                if isinstance(value, dict):
                    parsed[path] = Range.model_validate(value)
                elif isinstance(value, list) and len(value) == 2 and all(
                        isinstance(end, int | float) and not isinstance(end, bool)
                        for end in value):
                    parsed[path] = Range(low=value[0], high=value[1])
                else:
                    raise ValueError("expected [low, high] or { low, high, scale, integer }")
            except ValidationError as error:
                detail = error.errors()[0]
                where = ".".join(str(part) for part in detail["loc"])
                message = detail["msg"].removeprefix("Value error, ")
                raise ValueError(f"{path}: {where + ': ' if where else ''}{message}") from None
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
        return parsed

    @field_validator("set")
    @classmethod
    def _set_paths(cls, fixed: dict[str, Any]) -> dict[str, Any]:
        for path in fixed:
            _check_path(path)
        return fixed


@dataclass(frozen=True)
class Design:
    """Saltelli's design: `values[row]` for every row of A (rows 0..n−1), B (n..2n−1), then
    AB_0, AB_1, … (n rows each); `point[row]`, the sweep point that row runs as (rows with
    equal values share one)."""

    parameters: list[str]
    values: np.ndarray          # (n x (d + 2), d)
    point: np.ndarray           # (n x (d + 2),) int
    points: list[dict[str, Any]]

    @property
    def n(self) -> int:
        return self.values.shape[0] // (len(self.parameters) + 2)


def design(spec: SensitivityFile) -> Design:
    """The design of `spec`: the same file and seed give the same rows."""
    ranges: dict[str, Range] = spec.ranges  # parsed by the validator
    parameters = list(ranges)
    d, n = len(parameters), spec.samples
    unit = qmc.Sobol(d=2 * d, scramble=True, rng=np.random.default_rng(spec.seed)).random_base2(
        int(math.log2(n)))
    a, b = unit[:, :d], unit[:, d:]
    blocks = [a, b]
    for i in range(d):
        ab = a.copy()
        ab[:, i] = b[:, i]
        blocks.append(ab)
    rows = np.vstack(blocks)
    values = np.column_stack([ranges[path].values(rows[:, i])
                              for i, path in enumerate(parameters)])
    index: dict[tuple[float, ...], int] = {}
    point = np.empty(len(values), dtype=np.int64)
    points: list[dict[str, Any]] = []
    for row, entry in enumerate(values.tolist()):
        key = tuple(entry)
        if key not in index:
            index[key] = len(points)
            points.append({path: int(value) if ranges[path].integer else value
                           for path, value in zip(parameters, entry, strict=True)})
        point[row] = index[key]
    return Design(parameters, values, point, points)


@dataclass(frozen=True)
class Analysis:
    """A loaded sensitivity file, its design, and the sweep that runs it."""

    spec: SensitivityFile
    name: str
    text: str
    design: Design
    sweep: Sweep


def load_sensitivity(path: str | Path, *, allow_large: bool = False) -> Analysis:
    """Read and validate a sensitivity file (or a built-in one by name) and build its design
    and sweep; every point is validated and budgeted before anything runs. Raises SweepError,
    one line naming the field."""
    file = read_toml_file(path, "sensitivity", "sensitivities", builtin_sensitivities())
    where, folder, stem, text = file.where, file.folder, file.stem, file.text
    try:
        spec = SensitivityFile.model_validate(file.data)
    except ValidationError as error:
        raise SweepError(str(_first_error(error, where))) from None
    fixed = sorted(set(spec.set) & set(spec.ranges))
    if fixed:
        raise SweepError(f"{where}: field `set`: {fixed[0]} has a range too; set it in one place")
    runs = spec.samples * (len(spec.ranges) + 2) * spec.replications
    if runs > MAX_RUNS:
        raise SweepError(f"{where}: field `samples`: {spec.samples} x ({len(spec.ranges)} "
                         f"parameters + 2) x {spec.replications} replications = {runs:,} runs, "
                         f"over the limit of {MAX_RUNS:,}; lower samples or replications")
    plan = design(spec)
    sweep_spec = SweepFile(name=spec.name or stem, description=spec.description, base=spec.base,
                           seed=spec.seed, replications=spec.replications, set=spec.set,
                           runs=plan.points)
    sweep = expand_sweep(sweep_spec, where, folder=folder, name=spec.name or stem, text=text,
                         source=file.source, allow_large=allow_large)
    return Analysis(spec, spec.name or stem, text, plan, sweep)


def builtin_sensitivities() -> list[str]:
    """Names of the example analyses that ship inside the package."""
    return builtin_tomls("sensitivities")


def run_sensitivity(analysis: Analysis, out: str | Path, *, workers: int | None = None,
                    dask: str | None = None, resume: bool = False,
                    on_progress: Callable[[Progress], None] | None = None
                    ) -> tuple[Progress, pa.Table | None]:
    """Run the analysis' sweep into `out` (as `run_sweep`, resumable), then compute and write
    its indices (`INDICES_FILE`) and design (`DESIGN_FILE`). Returns the sweep's counts and
    the indices (None when some runs failed: `--resume` runs them again)."""
    out = Path(out)
    progress = run_sweep(analysis.sweep, out, workers=workers, dask=dask, resume=resume,
                         on_progress=on_progress)
    (out / SPEC_FILE).write_text(analysis.text, "utf-8")
    pq.write_table(design_table(analysis.design), out / DESIGN_FILE)
    if progress.failed:
        return progress, None
    indices = sobol_table(analysis, pq.read_table(out / "runs.parquet"))
    pq.write_table(indices, out / INDICES_FILE)
    write_report(out)
    return progress, indices


@dataclass(frozen=True)
class Finished:
    """A finished analysis as its directory holds it."""

    spec: SensitivityFile
    indices: pa.Table
    runs: int
    points: int


def read_finished(directory: str | Path) -> Finished:
    """The analysis finished in `directory`. Raises SweepError, one line, when it holds none."""
    folder = Path(directory)
    try:
        spec = SensitivityFile.model_validate(tomllib.loads(
            (folder / SPEC_FILE).read_text("utf-8")))
        indices = pq.read_table(folder / INDICES_FILE)
        plan = pq.read_table(folder / DESIGN_FILE, columns=["point"])
        runs = pq.read_metadata(folder / "runs.parquet").num_rows
    except (OSError, ValueError, pa.ArrowException) as error:
        raise SweepError(f"{folder}: not a finished sensitivity analysis "
                         f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
                         ) from None
    return Finished(spec, indices, runs, len(set(plan.column("point").to_pylist())))


def write_report(directory: str | Path) -> Path:
    """(Re)write the HTML report of the analysis finished in `directory`; return the page's
    path. Raises SweepError when the directory holds no finished analysis."""
    from market.experiments.sensitivity_report import write_sensitivity_report

    done = read_finished(directory)
    return write_sensitivity_report(
        directory, done.indices, name=done.spec.name or Path(directory).name,
        description=done.spec.description, runs=done.runs, points=done.points,
        samples=done.spec.samples, confidence=done.spec.confidence,
        resamples=done.spec.resamples)


def design_table(plan: Design) -> pa.Table:
    """The design, a row per design row: its block (A, B or AB), the parameter an AB row takes
    from B, the sweep point it runs as, and its values."""
    n, d = plan.n, len(plan.parameters)
    blocks = ["A"] * n + ["B"] * n + ["AB"] * (n * d)
    taken = [None] * (2 * n) + [plan.parameters[i] for i in range(d) for _ in range(n)]
    columns = {"block": blocks, "from_b": taken, "point": plan.point.tolist()}
    for i, path in enumerate(plan.parameters):
        columns[path] = plan.values[:, i].tolist()
    return pa.table(columns)


def point_means(analysis: Analysis, runs: pa.Table, metric: str) -> np.ndarray:
    """Each sweep point's mean of `metric` over its replications. Raises SweepError naming
    the metric, or the point, when one is missing, not a number, or not finite."""
    if metric not in runs.column_names:
        numeric = [name for name in runs.column_names
                   if pa.types.is_floating(runs.schema.field(name).type)]
        raise SweepError(f"metrics: {metric!r} is not a metric of the runs (e.g. "
                         f"{', '.join(numeric[:6])}); correct it and run again with --resume: "
                         "no run is repeated")
    column = runs.column(metric)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise SweepError(f"metrics: {metric!r} is not a number in runs.parquet")
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=float)
    points = np.asarray(runs.column("point").to_numpy(), dtype=np.int64)
    count = len(analysis.design.points)
    sums = np.bincount(points, weights=values, minlength=count)
    runs_per_point = np.bincount(points, minlength=count)
    means = sums / np.maximum(runs_per_point, 1)
    bad = np.flatnonzero(~np.isfinite(means) | (runs_per_point == 0))
    if bad.size:
        raise SweepError(f"metrics: {metric!r} has no finite value at design point "
                         f"{int(bad[0])} ({analysis.design.points[int(bad[0])]})")
    return means


def sobol_indices(f_a: np.ndarray, f_b: np.ndarray, f_ab: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """First and total order indices of each parameter (see the module docstring): `f_a` and
    `f_b` of shape (..., n), `f_ab` of shape (d, ..., n). NaN where the metric is constant."""
    both = np.concatenate([f_a, f_b], axis=-1)
    variance = np.var(both, axis=-1)
    # Centred on the mean of A's and B's values first (Sobol' and Levitan 1999): the same
    # indices in expectation, with less variance for the first order.
    mean = np.mean(both, axis=-1, keepdims=True)
    f_a, f_b, f_ab = f_a - mean, f_b - mean, f_ab - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.mean(f_b * (f_ab - f_a), axis=-1) / variance
        total = 0.5 * np.mean((f_a - f_ab) ** 2, axis=-1) / variance
    constant = variance == 0
    return np.where(constant, np.nan, first), np.where(constant, np.nan, total)


def estimate(y: np.ndarray, d: int, *, confidence: float = 0.95, resamples: int = 1_000,
             seed: int = 1) -> dict[str, np.ndarray]:
    """Sobol' indices of `d` parameters from a metric's values `y` at a design's rows (A, B,
    then AB_0 … AB_{d−1}, n rows each), with percentile bootstrap intervals over the n rows
    (`resamples` of them, seeded by `seed`): arrays of d values keyed first_order,
    first_order_low, first_order_high, total_order, total_order_low, total_order_high. NaN
    throughout for a constant metric."""
    n = y.size // (d + 2)
    f_a, f_b, f_ab = y[:n], y[n:2 * n], y[2 * n:].reshape(d, n)
    first, total = sobol_indices(f_a, f_b, f_ab)
    if np.isnan(first).all():
        low = high = np.full((2, d), np.nan)
    else:
        def statistic(rows: np.ndarray, axis: int = -1) -> np.ndarray:
            # `rows` is (resamples, n): each resample's rows of the design.
            first_order, total_order = sobol_indices(f_a[rows], f_b[rows], f_ab[:, rows])
            return np.concatenate([first_order, total_order])

        result = bootstrap((np.arange(n),), statistic, n_resamples=resamples,
                           confidence_level=confidence, method="percentile",
                           rng=np.random.default_rng(seed), vectorized=True)
        low = np.asarray(result.confidence_interval.low).reshape(2, d)
        high = np.asarray(result.confidence_interval.high).reshape(2, d)
    return {"first_order": first, "first_order_low": low[0], "first_order_high": high[0],
            "total_order": total, "total_order_low": low[1], "total_order_high": high[1]}


def sobol_table(analysis: Analysis, runs: pa.Table) -> pa.Table:
    """The indices of every metric and parameter with their confidence intervals (`estimate`),
    a row each: metric, parameter, the indices and their bounds, and the metric's variance
    over the design (its mean per design point)."""
    plan, spec = analysis.design, analysis.spec
    d = len(plan.parameters)
    rows: dict[str, list[Any]] = {"metric": [], "parameter": []}
    for metric in spec.metrics:
        y = point_means(analysis, runs, metric)[plan.point]
        found = estimate(y, d, confidence=spec.confidence, resamples=spec.resamples,
                         seed=spec.seed)
        rows["metric"] += [metric] * d
        rows["parameter"] += plan.parameters
        for key, values in found.items():
            rows.setdefault(key, []).extend(float(value) for value in values)
        rows.setdefault("variance", []).extend([float(np.var(y[:2 * plan.n]))] * d)
    return pa.table(rows)

"""Calibration: fit scenario parameters so that the market's statistics match observed ones.

A calibration file is TOML:

    name = "default"
    base = "default"            # a built-in scenario, or a path relative to this file
    seed = 1                    # root of the replications' seeds
    replications = 4            # runs per candidate, on the same seeds for every candidate
    evaluations = 40            # the optimizer's budget of candidates
    method = "nelder-mead"      # or "powell" (scipy.optimize.minimize)

    [set]                       # the same for every run
    duration_days = 2

    [parameters]                # what to fit: bounds and a starting value
    "tenants.arrivals_per_hour" = { low = 24, high = 96, start = 48 }

    [[targets]]                 # an observed statistic: the span reported for a GPU model
    metric = "price_usd_per_gpu_hour.h100.mean"
    observed = { gpu = "h100", venue = "marketplace", since = "2026-01" }

    [[targets]]                 # or a value with its standard deviation
    metric = "fill_rate"
    value = 0.6
    sd = 0.1

A target from observed prices (`market/data/observed_prices.csv`, `market.observed`) aims at the
middle of the reported span, with a standard deviation of a quarter of its width (the span
read as ±2 sd). The loss of a candidate is Σ weight × ((simulated − target) / sd)², where
"simulated" is the mean over the replications. Every candidate runs on the same seeds (common
random numbers), so two candidates differ by their parameters, not by luck. A candidate at
which a target metric has no value (no H100 traded, say) adds `MISSING_LOSS` for it.

The optimizer works on the parameters scaled to [0, 1] within their bounds. Each evaluation
is a line of `calibration.jsonl` as soon as it is made; `--resume` replays those lines instead of
running them again, and the optimizer, deterministic given its losses, walks the same path
on to where it stopped. The best candidate seen (not only the optimizer's last) is the result:
`calibrated.toml`, a standalone scenario file; `fit.parquet`, each target observed against
simulated with a 95% t interval over the replications; and `report.html` with the loss over the
evaluations.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.optimize import minimize

from market.experiments.analysis import estimate, half_widths
from market.experiments.batch import ScenarioRunSpec
from market.experiments.calibration_report import write_calibration_report
from market.experiments.execution import _local, execute
from market.experiments.sweep import (
    ExperimentFile,
    SweepError,
    _check_path,
    _first_error,
    _run_id,
    _scenario_hash,
    read_toml_file,
    replication_seeds,
)
from market.observed import load_observed_prices, observed_span
from market.scenario import (
    Scenario,
    ScenarioError,
    builtin_scenarios,
    builtin_tomls,
    load_scenario,
)
from market.scenario_toml import scenario_toml

#: What a target adds to the loss at a candidate where its metric has no value.
MISSING_LOSS = 1e6
LOG_FILE = "calibration.jsonl"
SPEC_FILE = "calibration.toml"
SCENARIO_FILE = "calibrated.toml"
FIT_FILE = "fit.parquet"


class Parameter(BaseModel):
    """A fitted parameter: its bounds and where the search starts (default: the middle)."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    start: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Parameter:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"expected finite low < high, got low={self.low:g}, "
                             f"high={self.high:g}")
        if self.start is not None and not self.low <= self.start <= self.high:
            raise ValueError(f"start: expected a value in [{self.low:g}, {self.high:g}], got "
                             f"{self.start:g}")
        return self

    @property
    def first(self) -> float:
        return (self.low + self.high) / 2 if self.start is None else self.start


class Observed(BaseModel):
    """Which observed prices a target aims at (`market.observed.observed_span`)."""

    model_config = ConfigDict(extra="forbid")

    gpu: str
    venue: Literal["marketplace", "specialist", "hyperscaler", "contract"] | None = None
    since: str = "0000-01"


class Target(BaseModel):
    """A statistic to match: a metric (a flattened summary key) and either observed prices or
    a value with its standard deviation."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    observed: Observed | None = None
    value: float | None = None
    sd: Annotated[float, Field(gt=0)] | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="after")
    def _one_source(self) -> Target:
        if (self.observed is None) == (self.value is None):
            raise ValueError("expected either `observed` or `value` (with `sd`)")
        if self.value is not None and self.sd is None:
            raise ValueError("value: expected an `sd` with it")
        return self


class CalibrationFile(ExperimentFile):
    """The fields of a calibration file (see the module docstring)."""

    replications: Annotated[int, Field(ge=1, le=1_000)] = 4
    evaluations: Annotated[int, Field(ge=1, le=10_000)] = 40
    method: Literal["nelder-mead", "powell"] = "nelder-mead"
    set: dict[str, Any] = Field(default_factory=dict)
    parameters: Annotated[dict[str, Parameter], Field(min_length=1, max_length=20)]
    targets: Annotated[list[Target], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _paths(self) -> CalibrationFile:
        for path in [*self.set, *self.parameters]:
            _check_path(path)
        both = sorted(set(self.set) & set(self.parameters))
        if both:
            raise ValueError(f"set: {both[0]} is fitted too; set it in one place")
        return self


@dataclass(frozen=True)
class Aim:
    """A target resolved: what its metric should be, and how far off counts as one sd."""

    metric: str
    value: float
    sd: float
    weight: float
    source: str


@dataclass
class Calibration:
    """A loaded calibration file: its base scenario, the targets' aims and the run seeds."""

    spec: CalibrationFile
    name: str
    text: str
    base: Scenario
    aims: list[Aim]
    seeds: list[int]
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def parameters(self) -> list[str]:
        return list(self.spec.parameters)

    def values(self, unit: np.ndarray) -> dict[str, float]:
        """Parameter values at a point of the unit cube (clipped into it)."""
        return {path: p.low + float(np.clip(u, 0.0, 1.0)) * (p.high - p.low)
                for (path, p), u in zip(self.spec.parameters.items(), unit, strict=True)}

    def unit(self, values: dict[str, float]) -> np.ndarray:
        return np.array([(values[path] - p.low) / (p.high - p.low)
                         for path, p in self.spec.parameters.items()])

    def scenario(self, values: dict[str, float]) -> Scenario:
        return self.base.with_values(values)


def load_calibration(path: str | Path) -> Calibration:
    """Read and validate a calibration file (or a built-in one by name); every bound of every
    parameter is checked as a scenario value before anything runs. Raises SweepError, one
    line naming the field."""
    file = read_toml_file(path, "calibration", "calibrations", builtin_calibrations())
    where = file.where
    try:
        spec = CalibrationFile.model_validate(file.data)
    except ValidationError as error:
        raise SweepError(str(_first_error(error, where))) from None
    base_name = spec.base
    if (file.folder is not None and base_name not in builtin_scenarios()
            and not Path(base_name).is_absolute()):
        base_name = str(file.folder / base_name)
    try:
        base = load_scenario(base_name, values=spec.set, label="calibration")
        for corner in ("low", "high"):  # the whole box is valid, not just where it starts
            base.with_values({path: getattr(p, corner) for path, p in spec.parameters.items()})
    except ScenarioError as error:
        raise SweepError(f"{where}: {error}") from None
    prices = load_observed_prices() if any(t.observed for t in spec.targets) else []
    aims = []
    for index, target in enumerate(spec.targets):
        if target.observed is None:
            aims.append(Aim(target.metric, float(target.value), float(target.sd),
                            target.weight, "stated"))
            continue
        wanted = target.observed
        span = observed_span(prices, wanted.gpu, venue=wanted.venue, since=wanted.since)
        if span is None:
            raise SweepError(f"{where}: field `targets.{index}.observed`: no observed price "
                             f"for {wanted.gpu} (venue {wanted.venue or 'any'}, since "
                             f"{wanted.since}) in market/data/observed_prices.csv")
        low, high = span
        sd = (high - low) / 4 if high > low else 0.05 * high  # a single figure: ±5%
        aims.append(Aim(target.metric, (low + high) / 2, sd, target.weight,
                        f"observed {wanted.gpu} {wanted.venue or 'any venue'} since "
                        f"{wanted.since}: {low:g}–{high:g} USD/GPU-h"))
    return Calibration(spec, spec.name or file.stem, file.text, base, aims,
                       replication_seeds(spec.seed, spec.replications))


def builtin_calibrations() -> list[str]:
    """Names of the example calibrations that ship inside the package."""
    return builtin_tomls("calibrations")


def evaluate(calibration: Calibration, values: dict[str, float], workers: int | None = 1
             ) -> dict[str, Any]:
    """Run a candidate on every replication seed, on `workers` processes (None: one per
    core; never more than the replications; 1: in this process, the fastest for short runs,
    as the processes start afresh for each candidate): its targets' metrics (mean, sd, n) and
    its loss. Raises SweepError (one line) when a run fails: a candidate
    inside the bounds should run."""
    workers = min(workers or os.cpu_count() or 1, len(calibration.seeds))
    scenario = calibration.scenario(values)
    scenario_hash = _scenario_hash(scenario)
    specs = [ScenarioRunSpec(_run_id(scenario_hash, seed), 0, replication, seed,
                             calibration.base.name, dict(values), {}, calibration.base)
             for replication, seed in enumerate(calibration.seeds)]
    results = ([(spec, execute(spec)) for spec in specs] if workers <= 1
               else list(_local(specs, workers, None)))
    failed = [result for _, result in results if result["status"] != "ok"]
    if failed:
        raise SweepError(f"calibration: a run at {values} failed: {failed[0]['error']}")
    summaries = [result["summary"] for _, result in sorted(
        results, key=lambda pair: pair[0].replication)]
    metrics, loss = {}, 0.0
    for aim in calibration.aims:
        found = [summary.get(aim.metric) for summary in summaries]
        numbers = [float(x) for x in found if isinstance(x, float) and math.isfinite(x)]
        estimated = estimate(numbers)
        metrics[aim.metric] = {"mean": estimated.mean, "sd": estimated.sd, "n": estimated.n}
        if estimated.n == 0:
            loss += aim.weight * MISSING_LOSS
        else:
            loss += aim.weight * ((estimated.mean - aim.value) / aim.sd) ** 2
    return {"values": values, "metrics": metrics, "loss": loss}


def calibrate(calibration: Calibration, out: str | Path, *, workers: int | None = 1,
              resume: bool = False,
              on_evaluation: Callable[[int, int, dict[str, Any]], None] | None = None
              ) -> dict[str, Any]:
    """Fit the calibration's parameters (see the module docstring), writing into `out` as it
    goes; returns the best evaluation. Raises SweepError for an `out` that holds another
    calibration, or this one without `resume`."""
    folder = Path(out)
    log_path = folder / LOG_FILE
    cached = _open_output(folder, calibration, resume)
    budget = calibration.spec.evaluations
    made: list[dict[str, Any]] = []

    def loss(unit: np.ndarray) -> float:
        values = calibration.values(unit)
        key = json.dumps(values, sort_keys=True)
        if len(made) >= budget:  # the optimizer may ask past maxfev while it finishes
            return math.inf
        evaluation = cached.get(key)
        if evaluation is None:
            evaluation = evaluate(calibration, values, workers)
            with log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(evaluation, allow_nan=True) + "\n")
        made.append(evaluation)
        if on_evaluation is not None:
            on_evaluation(len(made), budget, evaluation)
        return float(evaluation["loss"])

    start = calibration.unit({path: p.first for path, p in calibration.spec.parameters.items()})
    bounds = [(0.0, 1.0)] * len(start)
    options: dict[str, Any] = {"maxfev": budget, "xatol": 1e-4, "fatol": 1e-6} \
        if calibration.spec.method == "nelder-mead" else {"maxfev": budget, "xtol": 1e-4}
    method = "Nelder-Mead" if calibration.spec.method == "nelder-mead" else "Powell"
    if method == "Nelder-Mead":
        # A first simplex a quarter of each range wide (inward from the start), not SciPy's
        # 5% of the start: a market's loss is flat at small steps, noisy between seeds.
        simplex = np.tile(start, (len(start) + 1, 1))
        for i in range(len(start)):
            simplex[i + 1, i] += 0.25 if start[i] <= 0.75 else -0.25
        options["initial_simplex"] = simplex
    minimize(loss, start, method=method, bounds=bounds, options=options)
    calibration.log = made
    best = min(made, key=lambda evaluation: evaluation["loss"])
    _write_results(folder, calibration, best)
    return best


def _open_output(folder: Path, calibration: Calibration, resume: bool) -> dict[str, Any]:
    """Check `folder` is this calibration's (or new); return its logged evaluations by their
    values (JSON, keys sorted)."""
    spec_path = folder / SPEC_FILE
    if spec_path.exists():
        if spec_path.read_text("utf-8") != calibration.text:
            raise SweepError(f"--out {folder}: holds another calibration; choose another "
                             "directory")
        if not resume:
            raise SweepError(f"--out {folder}: already holds this calibration; pass --resume "
                             "to finish it, or choose another directory")
    elif folder.exists() and any(folder.iterdir()):
        raise SweepError(f"--out {folder}: not empty and holds no calibration; choose an "
                         "empty or new directory")
    folder.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(calibration.text, "utf-8")
    cached: dict[str, Any] = {}
    log_path = folder / LOG_FILE
    if log_path.exists():
        for line in log_path.read_text("utf-8").splitlines():
            try:
                evaluation = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interruption: made again
            cached[json.dumps(evaluation["values"], sort_keys=True)] = evaluation
    return cached


def _write_results(folder: Path, calibration: Calibration, best: dict[str, Any]) -> None:
    scenario = calibration.scenario(best["values"])
    fitted = ", ".join(f"{path} = {value:.6g}" for path, value in best["values"].items())
    comment = (f"Calibrated by gpumarket calibrate ({calibration.name}): {fitted}; loss "
               f"{best['loss']:.6g} over {len(calibration.log)} evaluations of "
               f"{calibration.spec.replications} runs each.")
    (folder / SCENARIO_FILE).write_text(scenario_toml(scenario, comment), "utf-8")
    fit = fit_table(calibration, best)
    pq.write_table(fit, folder / FIT_FILE)
    spec = calibration.spec
    write_calibration_report(
        folder, name=calibration.name, description=spec.description, method=spec.method,
        replications=spec.replications,
        bounds={path: (p.low, p.high) for path, p in spec.parameters.items()}, best=best,
        losses=[evaluation["loss"] for evaluation in calibration.log], fit=fit.to_pylist())


def fit_table(calibration: Calibration, best: dict[str, Any]) -> pa.Table:
    """A row per target: metric, target value and sd, its source, the simulated mean with
    its 95% t interval over the replications, and its share of the loss."""
    rows: dict[str, list[Any]] = {key: [] for key in (
        "metric", "target", "target_sd", "source", "simulated", "simulated_low",
        "simulated_high", "runs", "loss")}
    for aim in calibration.aims:
        found = best["metrics"][aim.metric]
        n, mean, sd = found["n"], found["mean"], found["sd"]
        half = float(half_widths(np.array([sd]), np.array([n]))[0])
        rows["metric"].append(aim.metric)
        rows["target"].append(aim.value)
        rows["target_sd"].append(aim.sd)
        rows["source"].append(aim.source)
        rows["simulated"].append(mean)
        rows["simulated_low"].append(mean - half)
        rows["simulated_high"].append(mean + half)
        rows["runs"].append(n)
        rows["loss"].append(aim.weight * (MISSING_LOSS if n == 0
                                          else ((mean - aim.value) / aim.sd) ** 2))
    return pa.table(rows)

"""Batch runs from Python: a scenario in memory, parameters as a grid or a list of points,
several seeds, results as a pandas DataFrame, one row per run.

>>> from market import batch_run, load_scenario
>>> runs = batch_run(load_scenario("default"), {"market.take_rate": [0.0, 0.1, 0.2],
...                                             "duration_days": 0.5},
...                  replications=4, workers=2)                           # doctest: +SKIP
>>> summary_table(runs, "market.take_rate", ["allocative_efficiency"])   # doctest: +SKIP

A batch is a sweep (`market.experiments.sweep`) whose base is a Scenario object rather than a file:
the same points, the same replication seeds, the same run ids, the same checks before anything runs
(points that resolve to the same scenario, the run budget, the sweep's size limits), and the
same execution (`market.experiments.execution`: local worker processes, results independent of how
many). So a batch's DataFrame has exactly the columns and values of the `runs.parquet` a sweep file
with the same points and seeds writes, and `out=DIR` writes that sweep directory (manifest,
`runs.parquet`, `timeseries.parquet`) for `gpumarket report` and `resume=True`.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from market.budget import check_budget
from market.experiments.execution import Output, Progress, _local, execute, run_sweep
from market.experiments.summaries import _pandas, _plain, summarize, summary_table
from market.experiments.sweep import (
    BOOKKEEPING,
    MAX_RUNS,
    RunSpec,
    Sweep,
    SweepError,
    SweepFile,
    _check_size,
    _first_error,
    _label,
    _run_id,
    _same_scenario,
    _scenario_hash,
)
from market.experiments.sweep import _points as _sweep_points
from market.scenario import Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:
    import pandas as pd

#: Largest seed a run takes: seeds are int64 columns of runs.parquet.
MAX_SEED = 2**63 - 1

_WHERE = "batch_run"


@dataclass(frozen=True, slots=True)
class ScenarioRunSpec(RunSpec):
    """A run whose base is a Scenario object (it travels to worker processes with the run):
    the run's scenario is the base with the point's values, validated as a sweep's are."""

    base_scenario: Scenario | None = None

    def scenario(self) -> Scenario:
        assert self.base_scenario is not None
        return self.base_scenario.with_values({**self.fixed, **self.params})


@dataclass(frozen=True)
class ScenarioSweep(Sweep):
    """A sweep over a Scenario object, with its replication seeds given."""

    base_scenario: Scenario | None = None
    run_seeds: tuple[int, ...] = field(default=())
    #: (group, name) of every plug-in its runs use that was registered in this process at
    #: run time (`market.registry.register`) rather than through an entry point.
    registered_here: frozenset[tuple[str, str]] = frozenset()

    @property
    def seeds(self) -> list[int]:
        return list(self.run_seeds)

    @cached_property
    def _runs(self) -> tuple[RunSpec, ...]:
        return tuple(ScenarioRunSpec(_run_id(scenario_hash, seed), point, replication, seed,
                                     self.base, params, self.fixed, self.base_scenario)
                     for replication, seed in enumerate(self.seeds)
                     for point, (params, scenario_hash) in enumerate(
                         zip(self.points, self._ids, strict=True)))


def batch_run(scenario: Scenario | str | Path = "default",
              parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None, *,
              replications: int = 1, seed: int = 1, seeds: Sequence[int] | None = None,
              workers: int | None = 1, out: str | Path | None = None, resume: bool = False,
              allow_large: bool = False, progress: bool = False,
              on_progress: Callable[[Progress], None] | None = None) -> pd.DataFrame:
    """Run `scenario` at every point of `parameters` on every seed; one DataFrame row per run.

    `scenario` is a Scenario (e.g. from `load_scenario(...).with_values(...)`), or a built-in
    scenario's name or a scenario file's path. `parameters` takes dotted scenario paths, as
    `--set` and sweep files name them, either way:

    - a dict, as `mesa.batch_run` takes: a list (or tuple, range, numpy array) of values is
      swept, every combination a point (a factorial grid, the last path varying fastest);
      any other value (a number, text, a table) holds for every run. To sweep values that are
      lists themselves, list them: ``{"market.health_check_interval_s": [[5, 10], [5, 60]]}``;
    - a list of dicts: explicit points, each run as given (values held whole).

    Seeds: replication r of every point runs on the same seed (common random numbers), by
    default the r-th of `replications` children of the root `seed`, exactly as a sweep file
    with that `seed` and `replications` (so the same run ids and results); or `seeds`, the
    run seeds themselves (integers from 0 to 2^63 − 1, each once).

    `workers`: processes to run on (1: this process; None: one per core). Results do not
    depend on it. With more than one, runs go to fresh processes (`forkserver`), which get
    the scenario with each run but not what the caller registered at run time: plug-ins
    (strategies, mechanisms) must come from an installed package's entry points there, and
    a batch that names one registered with `market.registry.register` is refused unless
    `workers=1`.

    Returns a pandas DataFrame with the columns of a sweep's `runs.parquet`: `run_id`,
    `point`, `replication`, `seed`, `status` (`ok` or `failed`), `error`, `elapsed_s` (wall
    seconds), one column per swept path, then every metric of the run summary flattened with
    "." (`fill_rate`, `welfare.allocative_efficiency`, `price_usd_per_gpu_hour.h100.mean`, …),
    sorted by point then replication. A failed run is a row with its one-line error (and a
    warning); the batch goes on. Nothing is written unless `out` names a directory: then the
    batch is also a sweep directory there (`resume=True` finishes one cut short), read back.

    `progress=True` keeps one line on stderr up to date (`batch_run: 12/16 runs, 0 failed`);
    `on_progress(Progress)` is called after every run.

    Raises SweepError (one line naming the parameter) before anything runs: a path that is
    not in the scenario or a value it refuses, two points that resolve to the same scenario,
    more than 100,000 runs, or a run over the budget (`market.budget`; `allow_large=True`
    lifts it).
    """
    pd = _pandas()

    sweep = prepare(scenario, parameters, replications=replications, seed=seed, seeds=seeds,
                    allow_large=allow_large)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise SweepError(f"{_WHERE}: workers: expected a whole number >= 1 or None (one per "
                         f"core), got {workers!r}")
    if sweep.registered_here and workers != 1 and len(sweep.runs()) > 1:
        group, name = sorted(sweep.registered_here)[0]
        raise SweepError(f"{_WHERE}: workers: the {group} plug-in {name!r} was registered in "
                         "this process (market.registry.register), and worker processes start "
                         "without it; pass workers=1, or register it through an entry point "
                         "of an installed package")
    if progress:
        on_progress = _ProgressLine(on_progress)
    if out is not None:
        try:
            run_sweep(sweep, out, workers=workers, resume=resume, on_progress=on_progress)
        except SweepError as error:  # said in the command line's words: say it in these
            raise SweepError(f"{_WHERE}: " + str(error).replace("--out ", "out=").replace(
                "pass --resume", "pass resume=True")) from None
        frame = pd.read_parquet(Path(out) / "runs.parquet")
    else:
        frame = run_in_memory(sweep, workers=workers, on_progress=on_progress)
    frame = _with_parameters(frame, sweep)
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        warnings.warn(f"{_WHERE}: {len(failed)} of {len(frame)} runs failed; the first: "
                      f"{failed['error'].iloc[0]}", RuntimeWarning, stacklevel=2)
    return frame


def prepare(scenario: Scenario | str | Path = "default",
            parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None, *,
            replications: int = 1, seed: int = 1, seeds: Sequence[int] | None = None,
            allow_large: bool = False) -> ScenarioSweep:
    """The batch as a validated sweep, every point's scenario checked, nothing run (see
    `batch_run`). Raises SweepError, one line."""
    base = _base(scenario)
    grid, runs, fixed = _split(parameters)
    if fixed:
        try:
            base = base.with_values(fixed)
        except ScenarioError as error:
            raise SweepError(f"{_WHERE}: parameters: {error}") from None
    run_seeds = _seeds(replications, seed, seeds)
    try:
        spec = SweepFile.model_validate({"name": "batch", "description": base.description,
                                         "seed": seed if seeds is None else 0,
                                         "replications": len(run_seeds),
                                         "grid": grid, "runs": runs})
    except ValidationError as error:
        raise SweepError(str(_first_error(error, f"{_WHERE}: parameters"))) from None
    _check_size(spec, _WHERE)
    points, origins, params = _sweep_points(spec, _WHERE)
    ids: list[str] = []
    first: dict[str, int] = {}
    here: set[tuple[str, str]] = set()
    for index, point in enumerate(points):
        try:
            resolved = base.with_values(point)
            here |= _registered_here(resolved)
            check_budget(resolved, allow_large=allow_large, bypass="pass allow_large=True")
        except ScenarioError as error:
            raise SweepError(f"{_WHERE}: point {index} ({_label(point)}): {error}") from None
        scenario_hash = _scenario_hash(resolved)
        if scenario_hash in first:
            message = _same_scenario(_WHERE, spec, points, origins, first[scenario_hash], index)
            for before in ("from ", " and ", " x "):  # name the parameters as they were given
                message = message.replace(f"{before}grid.", before).replace(
                    f"{before}runs.", f"{before}parameters.")
            raise SweepError(message)
        first[scenario_hash] = index
        ids.append(scenario_hash)
    return ScenarioSweep(base.name, base.description, f"scenario object {base.name!r}",
                         spec.seed, len(run_seeds), params, points, False, {}, "",
                         "batch_run", ids, base_scenario=base, run_seeds=run_seeds,
                         registered_here=frozenset(here))


def _registered_here(scenario: Scenario) -> set[tuple[str, str]]:
    """The plug-ins `scenario` names that only this process knows (registered at run time)."""
    from market import registry

    named = [("mechanisms", scenario.market.mechanism), ("populations", scenario.population),
             ("tenant_policies", scenario.tenants.policy.name)]
    named += [("strategies", p.strategy.name) for p in scenario.providers]
    if scenario.textbook is not None:
        named.append(("strategies", scenario.textbook.strategy.name))
        if scenario.textbook.deviator is not None and scenario.textbook.deviator.strategy:
            named.append(("strategies", scenario.textbook.deviator.strategy.name))
    if scenario.tournament is not None:
        named += [("strategies", ref.name) for ref in scenario.tournament.strategies]
    return {(group, name) for group, name in named if name in registry._registered[group]}


def run_in_memory(sweep: Sweep, *, workers: int | None = 1,
                  on_progress: Callable[[Progress], None] | None = None) -> pd.DataFrame:
    """Make every run of `sweep` and return `runs.parquet`'s table as a DataFrame, writing
    nothing: the same rows and column types as `market.experiments.execution.Output.gather`
    gives."""
    pd = _pandas()

    specs = sweep.runs()
    progress = Progress(total=len(specs))
    if on_progress is not None:
        on_progress(progress)
    if workers == 1 or len(specs) <= 1:
        results: Iterable[tuple[RunSpec, dict[str, Any]]] = (
            (spec, execute(spec)) for spec in specs)
    else:
        results = _local(specs, min(workers or os.cpu_count() or 1, len(specs)), None)
    output = Output(Path(), sweep)  # for its column types only: nothing is opened or written
    rows = []
    for spec, result in results:
        rows.append(_row(sweep, output, spec, result))
        progress.done += 1
        progress.failed += result["status"] != "ok"
        if on_progress is not None:
            on_progress(progress)
    rows.sort(key=lambda row: (row["point"], row["replication"]))
    table = output.runs_table(rows)
    return table.to_pandas() if rows else pd.DataFrame(columns=table.schema.names)


class _ProgressLine:
    """One line on stderr, rewritten in place at most every half second and when the batch
    ends (a notebook and a terminal both honour the carriage return)."""

    def __init__(self, then: Callable[[Progress], None] | None) -> None:
        self.then = then
        self.shown_at = -math.inf

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        finished = progress.done >= progress.total
        if finished or now - self.shown_at >= 0.5:
            self.shown_at = now
            sys.stderr.write(f"\r{_WHERE}: {progress.done:,}/{progress.total:,} runs, "
                             f"{progress.failed:,} failed" + ("\n" if finished else ""))
            sys.stderr.flush()
        if self.then is not None:
            self.then(progress)


def _with_parameters(frame: pd.DataFrame, sweep: Sweep) -> pd.DataFrame:
    """`frame` with its swept paths noted in `frame.attrs["parameters"]` (for `summarize`)."""
    frame.attrs["parameters"] = list(sweep.params)
    return frame


def _row(sweep: Sweep, output: Output, spec: RunSpec, result: dict[str, Any]) -> dict[str, Any]:
    """A run's row of runs.parquet (as `Output.save` writes it)."""
    from market.experiments.execution import _param_value

    row: dict[str, Any] = {
        "run_id": spec.run_id, "point": spec.point, "replication": spec.replication,
        "seed": spec.seed, "status": result["status"], "error": result["error"],
        "elapsed_s": result["elapsed_s"]}
    for path in sweep.params:
        row[path] = _param_value(spec.params.get(path), output.column_types[path])
    for name, value in result["summary"].items():
        if name in BOOKKEEPING:
            continue
        row[f"summary.{name}" if name in row else name] = value
    return row


def _base(scenario: Scenario | str | Path) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, str | Path):
        try:
            return load_scenario(scenario)
        except ScenarioError as error:
            raise SweepError(f"{_WHERE}: scenario: {error}") from None
    raise SweepError(f"{_WHERE}: scenario: expected a Scenario, a built-in scenario's name "
                     f"or a scenario file's path, got {type(scenario).__name__}")


def _split(parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
           ) -> tuple[dict[str, list[Any]], list[dict[str, Any]], dict[str, Any]]:
    """(grid, explicit points, values held fixed) from `parameters` (see `batch_run`)."""
    if parameters is None:
        return {}, [], {}
    if isinstance(parameters, Mapping):
        grid: dict[str, list[Any]] = {}
        fixed: dict[str, Any] = {}
        for path, values in parameters.items():
            _check_key(path, "parameters")
            if isinstance(values, list | tuple | range | np.ndarray):
                listed = [_plain(value) for value in values]
                if not listed:
                    raise SweepError(f"{_WHERE}: parameters: {path}: expected a non-empty "
                                     "list of values")
                grid[path] = listed
            else:
                fixed[path] = _plain(values)
        return grid, [], fixed
    if isinstance(parameters, Sequence) and not isinstance(parameters, str | bytes):
        runs = []
        for index, point in enumerate(parameters):
            if not isinstance(point, Mapping):
                raise SweepError(f"{_WHERE}: parameters.{index}: expected a dict of dotted "
                                 f"path -> value, got {type(point).__name__}")
            for path in point:
                _check_key(path, f"parameters.{index}")
            runs.append({path: _plain(value) for path, value in point.items()})
        if not runs:
            raise SweepError(f"{_WHERE}: parameters: expected at least one point")
        return {}, runs, {}
    raise SweepError(f"{_WHERE}: parameters: expected a dict of dotted path -> value(s) or a "
                     f"list of such dicts, got {type(parameters).__name__}")


def _check_key(path: Any, where: str) -> None:
    if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
        raise SweepError(f"{_WHERE}: {where}: {path!r}: expected a dotted scenario path like "
                         "market.take_rate")


def _seeds(replications: int, seed: int, seeds: Sequence[int] | None) -> tuple[int, ...]:
    if seeds is not None:
        if replications != 1:
            raise SweepError(f"{_WHERE}: seeds: give either seeds (the run seeds) or "
                             "replications (children of seed), not both")
        listed = list(seeds) if isinstance(seeds, Iterable) and not isinstance(
            seeds, str | bytes) else None
        if not listed:
            raise SweepError(f"{_WHERE}: seeds: expected a non-empty list of whole numbers "
                             f"from 0 to 2^63 - 1, got {seeds!r}")
        plain = [_plain(s) for s in listed]
        for value in plain:
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value <= MAX_SEED:
                raise SweepError(f"{_WHERE}: seeds: expected whole numbers from 0 to "
                                 f"2^63 - 1, got {value!r}")
        if len(set(plain)) != len(plain):
            twice = next(v for v in plain if plain.count(v) > 1)
            raise SweepError(f"{_WHERE}: seeds: {twice} is listed twice; each seed once "
                             "(a repeated seed repeats the same run)")
        if len(plain) > MAX_RUNS:
            raise SweepError(f"{_WHERE}: seeds: {len(plain):,} seeds, over the limit of "
                             f"{MAX_RUNS:,} runs")
        return tuple(plain)
    for name, value, low in (("replications", replications, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise SweepError(f"{_WHERE}: {name}: expected a whole number >= {low}, got "
                             f"{value!r}")
    if replications > MAX_RUNS:
        raise SweepError(f"{_WHERE}: replications: {replications:,}, over the limit of "
                         f"{MAX_RUNS:,} runs")
    sweep = Sweep("batch", "", "", int(seed), int(replications), [], [], False)
    return tuple(sweep.seeds)


__all__ = ["ScenarioRunSpec", "ScenarioSweep", "batch_run", "prepare", "run_in_memory",
           "summarize", "summary_table"]

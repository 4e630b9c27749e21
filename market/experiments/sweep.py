"""Sweep files: a base scenario, overrides as a grid and/or a list of runs, times replications.

A sweep file is TOML:

    name = "take_rate"
    base = "default"            # a built-in scenario, or a path relative to this file
    seed = 1                    # the root seed
    replications = 10

    [set]                       # the same for every run (not a swept parameter)
    duration_days = 2

    [grid]                      # factorial: every combination of these values
    "market.take_rate" = [0.0, 0.1, 0.2]

    [[runs]]                    # explicit points; with a grid, each is crossed with it
    "market.mechanism" = "first_price"
    [[runs]]
    "market.mechanism" = "second_price"

The points are the list entries (or one empty entry) crossed with the grid's combinations (or
one empty combination), in file order. Replication `r` of every point runs with the same
seed, the r-th child of `numpy.random.SeedSequence(seed).spawn(replications)`: replications
are independent, points are compared on common random numbers, and the whole sweep is
reproducible. A run's id is a hash of its fully resolved scenario and its seed, so it is the
same wherever and whenever the run is made.

Two points that resolve to the same scenario (a value listed twice, `0.1` and `0.10`, a value
equal to the base's) would be the same runs under the same ids: the file is refused, naming
both. A sweep's size is checked from the lengths of its lists before it is expanded, so a
file of a few lines cannot ask for 10^10 runs or gigabytes of points.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from market.budget import check_budget
from market.scenario import (
    Scenario,
    ScenarioError,
    _first_error,
    builtin_scenarios,
    builtin_tomls,
    load_scenario,
)

#: Most runs (points x replications) one sweep may hold. Every point is validated and every
#: run listed before anything runs, so the bound is checked from the lengths first.
MAX_RUNS = 100_000
#: Largest sweep file read, in bytes: ample for any sweep written by hand or by a script.
MAX_FILE_BYTES = 1_000_000
#: Most bytes of values (as JSON) a sweep may carry in total: every run's point values (they
#: are columns of runs.parquet) and the `set` once per point (each point is validated with it).
MAX_POINT_BYTES = 64_000_000


#: The columns of a sweep's runs table that describe a run rather than measure it.
BOOKKEEPING = ("run_id", "point", "replication", "seed", "status", "error", "elapsed_s")


class SweepError(ValueError):
    """A sweep file or sweep directory a user got wrong: one line naming the field."""


class ExperimentFile(BaseModel):
    """The fields every experiment file opens with: a sweep's, a sensitivity analysis', a
    calibration's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="its name (default: the file's)")
    description: str = ""
    base: str = Field("default", description="base scenario: a built-in name or a path, "
                      "relative to the file")
    seed: Annotated[int, Field(ge=0)] = Field(1, description="root seed of the replications")


class SweepFile(ExperimentFile):
    """The fields of a sweep file (see the module docstring)."""

    replications: Annotated[int, Field(ge=1, le=100_000)] = 1
    set: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value "
                                "for every run")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted path -> "
                                       "values; every combination is a point")
    runs: list[dict[str, Any]] = Field(default_factory=list, description="explicit points: "
                                       "dotted path -> value")
    event_logs: bool = Field(False, description="write each run's orders, leases and events")

    @field_validator("name")
    @classmethod
    def _name_a_folder(cls, name: str) -> str:
        # The default output directory is sweeps/NAME: the name must be one folder's name.
        if (len(name) > 100 or name.startswith(".") or any(c in name for c in "/\\")
                or not name.isprintable()):
            raise ValueError("expected at most 100 printable characters, without / or \\, "
                             "not starting with '.' (it names the output folder)")
        return name

    @field_validator("set")
    @classmethod
    def _set_paths(cls, fixed: dict[str, Any]) -> dict[str, Any]:
        for path in fixed:
            _check_path(path)
        return fixed

    @field_validator("grid")
    @classmethod
    def _values_listed(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in grid.items():
            _check_path(path)
            if not values:
                raise ValueError(f"{path}: expected a non-empty list of values")
        return grid

    @field_validator("runs")
    @classmethod
    def _paths_named(cls, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for entry in runs:
            for path in entry:
                _check_path(path)
        return runs


def _check_path(path: str) -> None:
    if not path or any(not part for part in path.split(".")):
        raise ValueError(f"{path!r}: expected a dotted scenario path like market.take_rate")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run of a sweep: what a worker needs to make it (plain data: it travels to other
    processes and machines)."""

    run_id: str
    point: int                   # index of the parameter combination, in sweep order
    replication: int
    seed: int
    base: str                    # scenario name, or absolute path of a scenario file
    params: dict[str, Any]       # dotted path -> value, this point's overrides
    fixed: dict[str, Any] = field(default_factory=dict)  # the sweep's `set`, every run

    def scenario(self) -> Scenario:
        return load_scenario(self.base, values={**self.fixed, **self.params}, label="sweep")


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: its points and how to turn them into runs."""

    name: str
    description: str
    base: str
    seed: int
    replications: int
    params: list[str]                     # swept paths, in order of first appearance
    points: list[dict[str, Any]]
    event_logs: bool
    fixed: dict[str, Any] = field(default_factory=dict)
    text: str = ""                        # the sweep file as written
    source: str = ""                      # where it came from
    _ids: list[str] = field(default_factory=list, repr=False)  # per point: scenario hash

    @property
    def seeds(self) -> list[int]:
        """Replication seeds (`replication_seeds`)."""
        return replication_seeds(self.seed, self.replications)

    def runs(self) -> list[RunSpec]:
        """Every run, replication-major: each point's first replication comes before any
        point's second, so a sweep cut short still covers every point."""
        return list(self._runs)

    @cached_property
    def _runs(self) -> tuple[RunSpec, ...]:
        return tuple(RunSpec(_run_id(scenario_hash, seed), point, replication, seed, self.base,
                        params, self.fixed)
                for replication, seed in enumerate(self.seeds)
                for point, (params, scenario_hash) in enumerate(
                    zip(self.points, self._ids, strict=True)))

    @cached_property
    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for spec in self._runs:
            digest.update(spec.run_id.encode())
        return digest.hexdigest()[:16]

    def fingerprint(self) -> str:
        """Identifies the set of runs: equal for equal sweeps, whatever their file says."""
        return self._fingerprint


def replication_seeds(seed: int, replications: int) -> list[int]:
    """The run seeds of `replications` replications: children of the root `seed` (63-bit,
    so they fit int64). Every point of a sweep runs on these: common random numbers."""
    children = np.random.SeedSequence(seed).spawn(replications)
    return [int(child.generate_state(1, np.uint64)[0] >> np.uint64(1)) for child in children]


def _run_id(scenario_hash: str, seed: int) -> str:
    return hashlib.sha256(f"{scenario_hash}:{seed}".encode()).hexdigest()[:16]


def _scenario_hash(scenario: Scenario) -> str:
    text = json.dumps(scenario.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def builtin_sweeps() -> list[str]:
    """Names of the example sweeps that ship inside the package."""
    return builtin_tomls("sweeps")


def load_sweep(name_or_path: str | Path, *, allow_large: bool = False) -> Sweep:
    """Read, validate and expand a sweep file (or a built-in sweep by name). Its size is
    bounded from its lengths before it is expanded (`MAX_RUNS`, `MAX_POINT_BYTES`); every
    point's scenario is validated here, before anything runs, and checked against the run
    budget (`market.budget.check_budget`, skipped with `allow_large`); two points that
    resolve to the same scenario are refused. Raises SweepError, one line."""
    file = read_toml_file(name_or_path, "sweep", "sweeps", builtin_sweeps())
    try:
        spec = SweepFile.model_validate(file.data)
    except ValidationError as error:
        raise SweepError(str(_first_error(error, file.where))) from None
    where, folder, stem, text, text_name = file.where, file.folder, file.stem, file.text, \
        file.source
    return expand_sweep(spec, where, folder=folder, name=spec.name or stem, text=text,
                        source=text_name, allow_large=allow_large)


def expand_sweep(spec: SweepFile, where: str, *, folder: Path | None, name: str, text: str,
                 source: str, allow_large: bool = False) -> Sweep:
    """A validated sweep file's points, each validated and budgeted (`load_sweep`); `folder`
    is where a relative base scenario is found (None: the working directory); `text` and
    `source` are what the manifest records of where the sweep came from. Raises SweepError,
    one line."""
    base = spec.base
    if folder is not None and base not in builtin_scenarios() and not Path(base).is_absolute():
        base = str(folder / base)  # relative to the sweep file
    elif Path(base).suffix:
        base = str(Path(base).resolve())
    _check_size(spec, where)
    points, origins, params = _points(spec, where)
    ids: list[str] = []
    first: dict[str, int] = {}  # scenario hash -> the first point that resolves to it
    for index, point in enumerate(points):
        try:
            scenario = load_scenario(base, values={**spec.set, **point}, label="sweep")
            check_budget(scenario, allow_large=allow_large)  # replications cost the same
        except ScenarioError as error:
            raise SweepError(f"{where}: point {index} ({_label(point)}): {error}") from None
        scenario_hash = _scenario_hash(scenario)
        if scenario_hash in first:
            raise SweepError(_same_scenario(where, spec, points, origins, first[scenario_hash],
                                            index))
        first[scenario_hash] = index
        ids.append(scenario_hash)
    return Sweep(name, spec.description, base, spec.seed, spec.replications,
                 params, points, spec.event_logs, dict(spec.set), text, source, ids)


@dataclass(frozen=True)
class TomlFile:
    """A sweep-like file as read: its TOML data and where it came from."""

    data: dict[str, Any]
    text: str
    where: str              # how messages name it: "sweep 'take_rate'", "sweep file 'x.toml'"
    source: str             # as the user named it
    folder: Path | None     # where relative paths in it start (None: a built-in)
    stem: str               # its default name


def read_toml_file(name_or_path: str | Path, kind: str, package_folder: str,
                   builtins: list[str]) -> TomlFile:
    """Read a `kind` file ("sweep", "sensitivity"): a path, or the name of one of the
    `builtins` shipped in `market/<package_folder>/`. Raises SweepError, one line, for a
    missing, unreadable, oversized or invalid TOML file."""
    text_name = str(name_or_path)
    if text_name in builtins and not Path(text_name).suffix:
        where = f"{kind} {text_name!r}"
        text = resources.files("market").joinpath(package_folder, f"{text_name}.toml"
                                                  ).read_text("utf-8")
        folder, stem = None, text_name
    else:
        path = Path(name_or_path)
        where = f"{kind} file {text_name!r}"
        if not path.is_file():
            raise SweepError(f"{kind}: {text_name!r} is neither a file nor a built-in {kind} "
                             f"({', '.join(builtins)})")
        text = _read(path, where)
        folder, stem = path.resolve().parent, path.stem
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise SweepError(f"{where}: not valid TOML: arrays or tables nested too deeply") from None
    except ValueError as error:  # TOMLDecodeError, or an integer of over 4300 digits
        raise SweepError(f"{where}: not valid TOML: {str(error).split(';')[0]}") from None
    return TomlFile(data, text, where, text_name, folder, stem)


def _read(path: Path, where: str) -> str:
    """The file's text, refused unread past `MAX_FILE_BYTES`."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise SweepError(f"{where}: larger than {MAX_FILE_BYTES:,} bytes; a sweep file "
                             "lists values, not data")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SweepError(f"{where}: cannot be read as UTF-8 text: {error}") from None


def _check_size(spec: SweepFile, where: str) -> None:
    """Refuse a sweep too large to expand, from its lengths alone: points over `MAX_RUNS`
    (field `grid`, or `runs` without a grid), runs over it (`replications`), or values that
    add up past `MAX_POINT_BYTES`."""
    entries = max(len(spec.runs), 1)
    combinations = math.prod(len(values) for values in spec.grid.values())
    points = entries * combinations
    if points > MAX_RUNS:
        shape = " x ".join([f"{combinations:,} grid combinations"] * bool(spec.grid)
                           + [f"{len(spec.runs):,} runs entries"] * bool(spec.runs))
        raise SweepError(f"{where}: field `{'grid' if spec.grid else 'runs'}`: {points:,} "
                         f"points ({shape}), over the limit of {MAX_RUNS:,} runs per sweep; "
                         "split it into several sweeps")
    if points * spec.replications > MAX_RUNS:
        raise SweepError(f"{where}: field `replications`: {spec.replications:,} replications "
                         f"x {points:,} points = {points * spec.replications:,} runs, over the "
                         f"limit of {MAX_RUNS:,} runs per sweep; lower it or split the sweep")
    # Each run carries its point's values (columns of runs.parquet, held while they are
    # gathered) and each point is validated with the `set`: sum their sizes from the lengths.
    fixed = points * _size(spec.set)
    carried = combinations * sum(_size(entry) for entry in spec.runs)
    for values in spec.grid.values():
        carried += entries * (combinations // len(values)) * sum(_size(v) for v in values)
    total = fixed + carried * spec.replications
    if total > MAX_POINT_BYTES:
        field = "set" if fixed > total // 2 else "grid" if spec.grid else "runs"
        raise SweepError(f"{where}: field `{field}`: the {points * spec.replications:,} runs "
                         f"hold about {total:,} bytes of values, over the limit of "
                         f"{MAX_POINT_BYTES:,}; use fewer points or smaller values")


def _size(value: Any) -> int:
    """Bytes of `value` as JSON (TOML dates as text)."""
    return len(json.dumps(value, default=str))


def _points(spec: SweepFile, where: str
            ) -> tuple[list[dict[str, Any]], list[tuple[int, tuple[int, ...]]], list[str]]:
    """The list entries crossed with the grid's combinations; where each point comes from
    (its entry's index, its value's index on each grid path); and the swept paths."""
    swept = set(spec.grid) | {path for entry in spec.runs for path in entry}
    fixed = sorted(swept & set(spec.set))
    if fixed:
        raise SweepError(f"{where}: field `set`: {fixed[0]} is swept too; set it in one place")
    for index, entry in enumerate(spec.runs):
        shared = sorted(set(entry) & set(spec.grid))
        if shared:
            raise SweepError(f"{where}: field `runs.{index}`: {shared[0]} is in the grid too; "
                             "set it in one place")
    paths = list(spec.grid)
    combos = list(itertools.product(*(range(len(values)) for values in spec.grid.values())))
    points, origins = [], []
    for number, entry in enumerate(spec.runs or [{}]):
        for combo in combos:
            points.append({**entry, **{path: spec.grid[path][i]
                                       for path, i in zip(paths, combo, strict=True)}})
            origins.append((number, combo))
    params = list(dict.fromkeys([path for entry in spec.runs for path in entry] + paths))
    return points, origins, params


def _same_scenario(where: str, spec: SweepFile, points: list[dict[str, Any]],
                   origins: list[tuple[int, tuple[int, ...]]], first: int, second: int) -> str:
    """The error for two points that resolve to the same scenario, naming both and the
    entries of the file they come from (where their origins differ)."""
    (entry_a, combo_a), (entry_b, combo_b) = origins[first], origins[second]
    sources: list[list[str]] = [[], []]
    if entry_a != entry_b:
        sources[0].append(f"runs.{entry_a}")
        sources[1].append(f"runs.{entry_b}")
    for path, a, b in zip(spec.grid, combo_a, combo_b, strict=True):
        if a != b:
            sources[0].append(f"grid.{path}[{a}]")
            sources[1].append(f"grid.{path}[{b}]")
    return (f"{where}: points {first} ({_label(points[first])}) and {second} "
            f"({_label(points[second])}) resolve to the same scenario (from "
            f"{' x '.join(sources[0])} and {' x '.join(sources[1])}); remove one "
            "(replications repeat a point on new seeds)")


def _label(point: dict[str, Any]) -> str:
    """A point as its values, cut at 200 characters (a value may be a long table)."""
    label = ", ".join(f"{path}={value!r}" for path, value in point.items()) or "the base"
    return label if len(label) <= 200 else f"{label[:197]}..."


__all__ = ["MAX_FILE_BYTES", "MAX_POINT_BYTES", "MAX_RUNS", "RunSpec", "Sweep", "SweepError",
           "SweepFile", "builtin_sweeps", "load_sweep"]

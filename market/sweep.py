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
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from market.scenario import (
    Scenario,
    ScenarioError,
    _first_error,
    builtin_scenarios,
    load_scenario,
)


class SweepError(ValueError):
    """A sweep file or sweep directory a user got wrong: one line naming the field."""


class SweepFile(BaseModel):
    """The fields of a sweep file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="the sweep's name (default: the file's)")
    description: str = ""
    base: str = Field("default", description="base scenario: a built-in name or a path, "
                      "relative to the sweep file")
    seed: Annotated[int, Field(ge=0)] = Field(1, description="root seed of the replications")
    replications: Annotated[int, Field(ge=1, le=100_000)] = 1
    set: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value "
                                "for every run")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted path -> "
                                       "values; every combination is a point")
    runs: list[dict[str, Any]] = Field(default_factory=list, description="explicit points: "
                                       "dotted path -> value")
    event_logs: bool = Field(False, description="write each run's orders, leases and events")

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
        """Replication seeds: children of the root seed (63-bit, so they fit int64)."""
        children = np.random.SeedSequence(self.seed).spawn(self.replications)
        return [int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
                for child in children]

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


def _run_id(scenario_hash: str, seed: int) -> str:
    return hashlib.sha256(f"{scenario_hash}:{seed}".encode()).hexdigest()[:16]


def _scenario_hash(scenario: Scenario) -> str:
    text = json.dumps(scenario.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def builtin_sweeps() -> list[str]:
    """Names of the example sweeps that ship inside the package."""
    folder = resources.files("market").joinpath("sweeps")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                  if p.name.endswith(".toml"))


def load_sweep(name_or_path: str | Path) -> Sweep:
    """Read, validate and expand a sweep file (or a built-in sweep by name). Every point's
    scenario is validated here, before anything runs. Raises SweepError, one line."""
    text_name = str(name_or_path)
    if text_name in builtin_sweeps() and not Path(text_name).suffix:
        where = f"sweep {text_name!r}"
        text = resources.files("market").joinpath("sweeps", f"{text_name}.toml").read_text(
            "utf-8")
        folder, stem = None, text_name
    else:
        path = Path(name_or_path)
        where = f"sweep file {text_name!r}"
        if not path.is_file():
            raise SweepError(f"sweep: {text_name!r} is neither a file nor a built-in sweep "
                             f"({', '.join(builtin_sweeps())})")
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SweepError(f"{where}: cannot be read as UTF-8 text: {error}") from None
        folder, stem = path.resolve().parent, path.stem
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"{where}: not valid TOML: {error}") from None
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as error:
        raise SweepError(str(_first_error(error, where))) from None
    base = spec.base
    if folder is not None and base not in builtin_scenarios() and not Path(base).is_absolute():
        base = str(folder / base)  # relative to the sweep file
    elif Path(base).suffix:
        base = str(Path(base).resolve())
    points, params = _points(spec, where)
    ids = []
    for index, point in enumerate(points):
        try:
            ids.append(_scenario_hash(load_scenario(base, values={**spec.set, **point},
                                                    label="sweep")))
        except ScenarioError as error:
            raise SweepError(f"{where}: point {index} ({_label(point)}): {error}") from None
    return Sweep(spec.name or stem, spec.description, base, spec.seed, spec.replications,
                 params, points, spec.event_logs, dict(spec.set), text, text_name, ids)


def _points(spec: SweepFile, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The list entries crossed with the grid's combinations, and the swept paths."""
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
    combos = [dict(zip(paths, values, strict=True))
              for values in itertools.product(*spec.grid.values())]
    points = [{**entry, **combo} for entry in (spec.runs or [{}]) for combo in combos]
    params = list(dict.fromkeys([path for entry in spec.runs for path in entry] + paths))
    return points, params


def _label(point: dict[str, Any]) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in point.items()) or "the base"


__all__ = ["RunSpec", "Sweep", "SweepError", "SweepFile", "builtin_sweeps", "load_sweep"]

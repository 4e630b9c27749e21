"""Running a sweep: every run on local processes or a Dask cluster, results streamed to disk.

Each finished run becomes one small file under `DIR/parts/` (its row and its time series, as
JSON), written to a temporary name and renamed into place (a rename is atomic): a run is
finished exactly when its file exists, so a sweep killed at any moment loses only the runs in
flight, and `resume` skips the others. At the end of every session the parts are gathered,
streaming, into `runs.parquet` and `timeseries.parquet`, sorted by point and replication.
The parent holds no results: memory stays flat however many runs there are.

Whatever executes the runs, a run's result depends only on its `RunSpec`, so local processes,
a local Dask cluster and a remote one give identical files.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from market.experiments.sweep import BOOKKEEPING, RunSpec, Sweep, SweepError
from market.observe.eventlog import EVENTS_FILE, EventLog

TIMESERIES_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("point", pa.int32()), ("replication", pa.int32()),
    ("time_s", pa.float64()), ("gpu_model", pa.string()),
    ("price_index_usd_per_gpu_hour", pa.float64()), ("leases", pa.int64()),
    ("utilization", pa.float64()),
])

#: Attempts at a run whose worker process died before it finished.
ATTEMPTS = 2

#: Exit status of a worker whose sweep process ended before it (see `_watch_lifeline`).
_LIFELINE_CUT = 75

_DEPENDENCIES = ("simpy", "numpy", "pydantic", "pyarrow", "scipy", "rich", "typer",
                 "distributed", "matplotlib")


# ----------------------------------------------------------------------------- one run


def execute(spec: RunSpec, events_dir: str | None = None) -> dict[str, Any]:
    """Make one run; returns its result as plain data (it travels back from workers). An
    exception is caught and returned as a failed result with a one-line error."""
    from market.builder import Market  # workers import the engine only when they run

    start = time.perf_counter()
    try:
        scenario = spec.scenario()
        out = None
        if events_dir is not None:
            out = Path(events_dir) / f".{spec.run_id}.tmp"
        market = Market(scenario, seed=spec.seed, out=out, record=out is not None)
        if out is not None:
            log = EventLog(market, out / EVENTS_FILE)
        result = market.run()
        if out is not None:
            log.close()
            result.write(out)  # its summary and scenario: `gpumarket evaluate` reads the folder
            final = Path(events_dir) / spec.run_id
            if final.exists():  # a run made again (a failed one, resumed)
                shutil.rmtree(final)
            os.replace(out, final)
        return {"status": "ok", "summary": flatten(result.summary),
                "series": market.metrics.series, "error": None,
                "elapsed_s": time.perf_counter() - start}
    except Exception as error:  # a run's failure is data: recorded, and the sweep goes on
        where = traceback.extract_tb(error.__traceback__)[-1]
        message = f"{type(error).__name__}: {error}".replace("\n", " ")
        return {"status": "failed", "summary": {}, "series": [],
                "error": f"{message} ({Path(where.filename).name}:{where.lineno})",
                "elapsed_s": time.perf_counter() - start}


def flatten(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested summary tables as one level of dotted names; numbers as floats (so that every
    run gives a column one type), booleans and strings as they are.

    >>> flatten({"a": 1, "b": {"c": True, "d": "x"}})
    {'a': 1.0, 'b.c': True, 'b.d': 'x'}
    """
    flat: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | str) or value is None:
            flat[name] = value
        elif isinstance(value, int | float):
            flat[name] = float(value)
        else:
            flat[name] = json.dumps(value)
    return flat


# ----------------------------------------------------------------------------- output


class Output:
    """A sweep's output directory: parts of finished runs, gathered tables, the manifest."""

    def __init__(self, directory: str | Path, sweep: Sweep) -> None:
        self.dir = Path(directory)
        self.parts = self.dir / "parts"
        self.sweep = sweep
        self.column_types = _param_types(sweep)

    @property
    def manifest_path(self) -> Path:
        return self.dir / "sweep.json"

    def open(self, resume: bool) -> dict[str, Any]:
        """Check the directory is this sweep's (or empty) and return its manifest, new or
        read. Raises SweepError if it holds another sweep, or this one without `resume`."""
        if self.manifest_path.exists():
            try:
                manifest = json.loads(self.manifest_path.read_text("utf-8"))
            except (OSError, ValueError) as error:
                raise SweepError(f"--out {self.dir}: sweep.json is unreadable: {error}") from None
            if manifest.get("fingerprint") != self.sweep.fingerprint():
                raise SweepError(f"--out {self.dir}: holds another sweep "
                                 f"({manifest.get('name')!r}); choose another directory")
            if not resume:
                raise SweepError(f"--out {self.dir}: already holds this sweep; pass --resume "
                                 "to finish it, or choose another directory")
            return manifest
        try:
            if self.dir.exists() and not self.dir.is_dir():
                raise SweepError(f"--out {self.dir}: is a file; choose a new or empty directory")
            if self.dir.exists() and any(self.dir.iterdir()):
                raise SweepError(f"--out {self.dir}: not empty and holds no sweep; choose an "
                                 "empty or new directory")
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # not a directory on the way, no permission, name too long
            raise SweepError(f"--out {self.dir}: cannot be made a sweep's directory: "
                             f"{error.strerror or error}") from None
        return self._new_manifest()

    def _new_manifest(self) -> dict[str, Any]:
        sweep = self.sweep
        versions = {}
        for name in _DEPENDENCIES:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
        try:
            package = metadata.version("gpumarket")
        except metadata.PackageNotFoundError:
            package = None
        return {
            "name": sweep.name, "description": sweep.description, "source": sweep.source,
            "sweep_toml": sweep.text, "base": sweep.base, "seed": sweep.seed,
            "replications": sweep.replications, "params": sweep.params,
            "points": sweep.points, "set": sweep.fixed, "runs": len(sweep.runs()),
            "fingerprint": sweep.fingerprint(), "package_version": package,
            "python": platform.python_version(), "dependencies": versions, "sessions": [],
        }

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        _atomic_write_bytes(self.manifest_path,
                            json.dumps(manifest, indent=2, default=str).encode())

    def _part(self, run_id: str) -> Path:
        return self.parts / f"{run_id}.json"

    def finished(self) -> set[str]:
        """Ids of runs whose part is on disk with status ok."""
        return {path.stem for path in self.parts.glob("*.json")
                if json.loads(path.read_bytes())["row"]["status"] == "ok"}

    def save(self, spec: RunSpec, result: dict[str, Any]) -> None:
        """Write a finished run's part, atomically: JSON, cheap to write, so that the parent
        keeps up with many workers; `gather` types it."""
        row: dict[str, Any] = {
            "run_id": spec.run_id, "point": spec.point, "replication": spec.replication,
            "seed": spec.seed, "status": result["status"], "error": result["error"],
            "elapsed_s": result["elapsed_s"]}
        for path in self.sweep.params:
            row[path] = _param_value(spec.params.get(path), self.column_types[path])
        for name, value in result["summary"].items():
            if name in BOOKKEEPING:  # the run's seed, already a column
                continue
            # A metric named like a parameter keeps both.
            row[f"summary.{name}" if name in row else name] = value
        part = {"row": row, "series": result["series"]}
        _atomic_write_bytes(self._part(spec.run_id), json.dumps(part).encode())

    def gather(self) -> tuple[int, int]:
        """Gather the parts of this sweep's runs into `runs.parquet` and `timeseries.parquet`
        (sorted by point and replication); returns (runs ok, runs failed). The time series go
        to disk one run at a time."""
        order = {spec.run_id: (spec.point, spec.replication) for spec in self.sweep.runs()}
        ids = sorted((path.stem for path in self.parts.glob("*.json") if path.stem in order),
                     key=order.__getitem__)
        rows = []
        temporary = self.dir / ".timeseries.parquet.tmp"
        with pq.ParquetWriter(temporary, TIMESERIES_SCHEMA) as writer:
            for run_id in ids:
                part = json.loads(self._part(run_id).read_bytes())
                row = part["row"]
                rows.append(row)
                if part["series"]:
                    writer.write_table(pa.Table.from_pylist(
                        [{"run_id": run_id, "point": row["point"],
                          "replication": row["replication"], **point}
                         for point in part["series"]], schema=TIMESERIES_SCHEMA))
        os.replace(temporary, self.dir / "timeseries.parquet")
        _atomic_write_table(self.dir / "runs.parquet", self.runs_table(rows))
        statuses = [row["status"] for row in rows]
        return statuses.count("ok"), statuses.count("failed")

    def runs_table(self, rows: list[dict[str, Any]]) -> pa.Table:
        """`rows` (one per run) as the runs table, typed by `_runs_schema`; a metric some runs
        report as a number and others not becomes text in every run (JSON for the
        numbers)."""
        schema = self._runs_schema(rows)
        texts = [f.name for f in schema if f.type == pa.string() and f.name not in BOOKKEEPING]
        for row in rows:
            for name in texts:
                if row.get(name) is not None and not isinstance(row[name], str):
                    row[name] = json.dumps(row[name])
        return pa.Table.from_pylist(rows, schema=schema)

    def _runs_schema(self, rows: list[dict[str, Any]]) -> pa.Schema:
        """Bookkeeping, then the swept parameters, then every metric any run reported, each
        with one type: float64 for numbers, bool, else string."""
        fields = [pa.field("run_id", pa.string()), pa.field("point", pa.int32()),
                  pa.field("replication", pa.int32()), pa.field("seed", pa.int64()),
                  pa.field("status", pa.string()), pa.field("error", pa.string()),
                  pa.field("elapsed_s", pa.float64())]
        fields += [pa.field(path, self.column_types[path]) for path in self.sweep.params]
        known = {field.name for field in fields}
        kinds: dict[str, set[pa.DataType]] = {}
        for row in rows:
            for name, value in row.items():
                if name not in known and value is not None:
                    kinds.setdefault(name, set()).add(_metric_type(value))
        for row in rows:  # metrics in the order the runs report them
            for name in row:
                if name not in known:
                    found = kinds.get(name, {pa.float64()})  # null in every run
                    fields.append(pa.field(name, next(iter(found)) if len(found) == 1
                                           else pa.string()))
                    known.add(name)
        return pa.schema(fields)


def _param_types(sweep: Sweep) -> dict[str, pa.DataType]:
    """One Arrow type per swept path, from all its values: bool, int64, float64 or string
    (tables and lists as JSON)."""
    types = {}
    for path in sweep.params:
        values = [point[path] for point in sweep.points if path in point]
        if all(isinstance(v, bool) for v in values):
            types[path] = pa.bool_()
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            types[path] = pa.int64()
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            types[path] = pa.float64()
        else:
            types[path] = pa.string()
    return types


def _param_value(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if kind == pa.string() and not isinstance(value, str):
        return json.dumps(value, sort_keys=True, default=str)
    if kind == pa.float64():
        return float(value)
    return value


def _metric_type(value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, float | int):
        return pa.float64()
    return pa.string()


def _atomic_write_table(path: Path, table: pa.Table) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# ----------------------------------------------------------------------------- executors


@dataclass
class Progress:
    """What a sweep has done so far, for a progress display."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0


def _local(specs: list[RunSpec], workers: int, events_dir: str | None
           ) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    """Runs on `workers` local processes, at most two per worker in flight. Workers fork
    from a server process that imported the engine once (`forkserver`): they start fast and
    inherit none of the caller's state or threads. (As with any multiprocessing, a script
    that runs a sweep guards it with ``if __name__ == "__main__":``.) A worker that dies
    takes down the pool: the runs in flight go to a new pool, each at most `ATTEMPTS` times,
    then count as failed.

    Workers end with this process, however it ends (`kill -9` included), through a lifeline
    (see `_watch_lifeline`); the fork server and the resource tracker then stop by themselves,
    as they do once no process holds their pipes. Interrupted, this process cuts the lifeline
    rather than wait for runs whose results it would not keep."""
    pending = list(reversed(specs))
    attempts: dict[str, int] = {}
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["market.experiments.execution", "market.builder",
                                    "agents.populate"])
    lifeline, held = context.Pipe(duplex=False)  # only this process ever holds `held`
    try:
        while pending:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                     initializer=_watch_lifeline,
                                     initargs=(lifeline,)) as pool:
                running: dict[Any, RunSpec] = {}
                try:
                    while pending or running:
                        while pending and len(running) < 2 * workers:
                            spec = pending[-1]
                            future = pool.submit(execute, spec, events_dir)  # raises if broken
                            pending.pop()
                            attempts[spec.run_id] = attempts.get(spec.run_id, 0) + 1
                            running[future] = spec
                        finished, _ = wait(running, return_when=FIRST_COMPLETED)
                        for future in finished:
                            result = future.result()  # raises if the pool broke: still running
                            yield running.pop(future), result
                except BrokenProcessPool:
                    for future, spec in running.items():
                        if attempts[spec.run_id] >= ATTEMPTS:
                            yield spec, _died(spec)
                        elif future.done() and future.exception() is None:
                            yield spec, future.result()
                        else:
                            pending.append(spec)
                except BaseException:
                    held.close()  # the workers exit now: nothing will collect their runs
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        held.close()
        lifeline.close()


def _watch_lifeline(lifeline: Connection) -> None:
    """A worker's initializer: a daemon thread that ends the worker when the sweep process
    ends. Nothing is ever written to the lifeline; the sweep process alone holds its other
    end, so reading it returns exactly when that process has closed it or died, whatever
    killed it. (The worker's parent is the fork server, not the sweep process, so watching
    the parent's pid would not do; and this works wherever `forkserver` does.)"""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os._exit(_LIFELINE_CUT)  # at once: a run in flight has no one to report to

    threading.Thread(target=watch, name="gpumarket-lifeline", daemon=True).start()


def _died(spec: RunSpec) -> dict[str, Any]:
    return {"status": "failed", "summary": {}, "series": [], "elapsed_s": math.nan,
            "error": f"its worker process died {ATTEMPTS} times"}


def _connect(address: str, workers: int) -> tuple[Any, Any]:
    """A Dask client (and the cluster it started, or None): to an existing scheduler at
    `address`, or with "local" to a LocalCluster of `workers` single-threaded processes."""
    from dask.distributed import Client, LocalCluster

    if address == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        return Client(cluster), cluster
    try:
        return Client(address, timeout="10s"), None
    except (OSError, TimeoutError) as error:
        raise SweepError(f"--dask {address}: cannot reach the scheduler: {error}") from None


def _dask(specs: list[RunSpec], client: Any, cluster: Any, workers: int,
          events_dir: str | None) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    """Runs on a Dask cluster through `client`; closes the client (and `cluster`) at the
    end."""
    from dask.distributed import as_completed

    try:
        in_flight = max(2 * workers, 2 * len(client.scheduler_info().get("workers", {})))
        queue = list(reversed(specs))
        futures = as_completed()
        keys: dict[str, RunSpec] = {}

        def submit() -> None:
            spec = queue.pop()
            future = client.submit(execute, spec, events_dir, pure=False)
            keys[future.key] = spec
            futures.add(future)

        for _ in range(min(in_flight, len(queue))):
            submit()
        for future in futures:
            spec = keys.pop(future.key)
            try:
                result = future.result()
            except Exception as error:  # the cluster lost it (KilledWorker, ...)
                result = {"status": "failed", "summary": {}, "series": [],
                          "elapsed_s": math.nan,
                          "error": f"{type(error).__name__}: {error}".replace("\n", " ")}
            future.release()
            if queue:
                submit()
            yield spec, result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ----------------------------------------------------------------------------- the sweep


def run_sweep(sweep: Sweep, out: str | Path, *, workers: int | None = None,
              dask: str | None = None, resume: bool = False, event_logs: bool | None = None,
              on_progress: Callable[[Progress], None] | None = None) -> Progress:
    """Run every run of `sweep` not finished yet into `out`; returns the counts. Interrupted
    (KeyboardInterrupt), it gathers what finished before re-raising."""
    workers = workers or os.cpu_count() or 1
    output = Output(out, sweep)
    # Reach the cluster first: an unreachable one leaves the output directory untouched.
    client, cluster = _connect(dask, workers) if dask else (None, None)
    try:
        manifest = output.open(resume)
    except SweepError:
        if client is not None:
            client.close()
            if cluster is not None:
                cluster.close()
        raise
    done = output.finished() if resume else set()
    specs = [spec for spec in sweep.runs() if spec.run_id not in done]
    progress = Progress(total=len(sweep.runs()), done=len(done), skipped=len(done))
    logs = sweep.event_logs if event_logs is None else event_logs
    events_dir = None
    if logs:
        events_dir = str((output.dir / "events").resolve())
        Path(events_dir).mkdir(parents=True, exist_ok=True)
    session = {"started": _now(), "ended": None, "executor": f"dask {dask}" if dask
               else "local processes", "workers": workers, "runs_to_do": len(specs),
               "argv": sys.argv[1:]}
    manifest["sessions"].append(session)
    output.write_manifest(manifest)
    if on_progress is not None:
        on_progress(progress)
    try:
        results = (_dask(specs, client, cluster, workers, events_dir) if dask
                   else _local(specs, workers, events_dir))
        for spec, result in results:
            output.save(spec, result)
            progress.done += 1
            progress.failed += result["status"] != "ok"
            if on_progress is not None:
                on_progress(progress)
    finally:
        ok, failed = output.gather()
        session.update(ended=_now(), runs_ok=ok, runs_failed=failed)
        output.write_manifest(manifest)
    return progress


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = ["Output", "Progress", "execute", "flatten", "run_sweep"]

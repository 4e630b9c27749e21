"""Job traces as files: the readers of each format, row by row, into one kind of trace row.

A trace is read with the `csv` module one row at a time, never loaded whole (a million-row
trace costs the memory of a few rows, plus a bounded re-ordering buffer). Each format's reader
turns a row into a :class:`TraceRow` in the trace's own words (its clock, its GPU names, GPU
counts that may be shares of a GPU); :func:`trace_rows` then applies the rules that make it a
job for a market that rents whole GPUs, or says why it is skipped (:data:`SKIP_REASONS`).

Formats (columns as the public files name them):

- ``alibaba_v2023``: Alibaba GPU v2023 pod list ``name, cpu_milli, memory_mib, num_gpu,
  gpu_milli, gpu_spec, qos, pod_phase, creation_time, deletion_time, scheduled_time``.
  Submitted at ``creation_time``, runs ``deletion_time - creation_time`` seconds on
  ``num_gpu`` GPUs, each used ``gpu_milli``/1000 (below 1000: a share of a GPU);
  ``gpu_spec`` lists acceptable models separated by ``|`` (empty: any); qos ``BE`` (best
  effort) is interruptible. No tenant column.
- ``alibaba_spot_v2026``: Alibaba 2026 spot-GPU jobs ``job_name, organization, gpu_model,
  cpu_request, gpu_request, worker_num, submit_time, duration, job_type``: ``gpu_request``
  GPUs on each of ``worker_num`` workers; ``job_type`` ``HP`` is on demand, ``Spot``
  interruptible; ``organization`` is the tenant.
- ``alibaba_v2020``: Alibaba GPU v2020 ``pai_job_table`` (``job_name, inst_id, user,
  status, start_time, end_time``; gives the tenant, ``user``) joined on ``job_name`` with
  ``pai_task_table`` (``job_name, task_name, inst_num, status, start_time, end_time,
  plan_cpu, plan_mem, plan_gpu, gpu_type``): every task is a job of ``inst_num`` instances
  of ``plan_gpu`` percent of a GPU each (empty: CPU only), from ``start_time`` to
  ``end_time``. The public tables have no header row: a first row that is not the header is
  read as data in these columns.
- ``generic``: a CSV with a header naming ``submit_s, duration_s, gpus`` and optionally
  ``models`` (acceptable GPU names separated by ``|``; empty: any), ``tenant``,
  ``interruptible`` (true/false/1/0), ``value_usd`` (what the whole job is worth) and
  ``max_price_usd_per_gpu_hour``; other columns are ignored.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from market.errors import MarketError

FORMATS = ("alibaba_v2023", "alibaba_spot_v2026", "alibaba_v2020", "generic")

#: Why a row of a trace does not become a job (counted in the run's summary and by
#: `gpumarket trace inspect`).
SKIP_REASONS = {
    "cpu_only": "asks for no GPU (trace.cpu_only = \"skip\")",
    "gpu_share": "asks for a share of a GPU (trace.gpu_share = \"skip\")",
    "no_duration": "no end time, or ends before it starts",
    "unmapped_gpu": "none of its GPU names maps to a catalog model (trace.gpu_map)",
    "too_many_gpus": "asks for more GPUs than trace.max_gpus",
    "outside_window": "submitted outside trace.window_s",
    "out_of_order": "submitted earlier than jobs already replayed, beyond trace.reorder_rows",
    "no_job": "v2020: its job_name is not in the job table",
}

_V2020_JOB_COLUMNS = ("job_name", "inst_id", "user", "status", "start_time", "end_time")
_V2020_TASK_COLUMNS = ("job_name", "task_name", "inst_num", "status", "start_time",
                       "end_time", "plan_cpu", "plan_mem", "plan_gpu", "gpu_type")
_REQUIRED = {
    "alibaba_v2023": ("name", "num_gpu", "gpu_milli", "gpu_spec", "qos", "creation_time",
                      "deletion_time"),
    "alibaba_spot_v2026": ("job_name", "organization", "gpu_model", "gpu_request",
                           "worker_num", "submit_time", "duration", "job_type"),
    "generic": ("submit_s", "duration_s", "gpus"),
}

#: The largest number any time, duration or GPU count in a trace may be (far beyond any
#: real trace: a century in seconds), so that nothing overflows downstream.
_MAX_NUMBER = 1e12


class TraceError(MarketError):
    """A trace file cannot be read as its format says; the message is one line naming the
    file, the line and the column."""


class TraceRow(NamedTuple):
    """One row of a trace in its own words: times on its clock (seconds), GPUs as it counts
    them (`gpus` may be fractional: shares of a GPU), its GPU names."""

    line: int                 # line of the file (the task table's for v2020), 1 = header
    name: str
    submit_s: float
    duration_s: float         # NaN when the trace has no end
    gpus: float               # GPUs in total, shares counted as fractions
    whole_gpus: int           # GPUs rented when every share takes a whole GPU
    share: bool               # some GPU is asked for in part
    models: tuple[str, ...]   # acceptable GPU names as the trace spells them; () = any
    tenant: str               # "" = the trace names none
    interruptible: bool
    value_usd: float | None = None
    max_price_usd_per_gpu_hour: float | None = None


class TraceJob(NamedTuple):
    """A trace row that becomes a job: whole GPUs, catalog models, times in trace seconds."""

    row: TraceRow
    gpus: int
    models: tuple[str, ...]   # catalog ids; () = any catalog model


class Skipped(NamedTuple):
    """A trace row that is not a job, and why (a key of SKIP_REASONS)."""

    row: TraceRow
    reason: str


@dataclass(frozen=True)
class TraceRules:
    """What makes a trace row a job (the scenario's `tenants.trace`, or `trace inspect`'s
    options)."""

    format: str
    gpu_map: dict[str, str]           # trace GPU name -> catalog id (after defaults)
    gpu_share: str = "whole"          # "whole" | "skip"
    cpu_only: str = "skip"            # "skip" | "keep" (one whole GPU of any model)
    max_gpus: int = 1024
    window_s: tuple[float, float] | None = None
    reorder_rows: int = 10_000
    interruptible_qos: tuple[str, ...] = ("BE",)


def file_digest(path: str | Path) -> str:
    """sha256 of the file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalized_gpu_name(name: str) -> str:
    """A GPU name reduced for matching: lower case, letters and digits only, no vendor."""
    text = "".join(ch for ch in name.lower() if ch.isalnum())
    for vendor in ("nvidia", "geforce", "amd", "instinct", "aws"):
        text = text.replace(vendor, "")
    return text


def default_gpu_map(catalog: Any) -> dict[str, str]:
    """Normalized trace GPU name -> catalog id, for names that are a catalog model: its id
    (``A10``, ``a100-80gb``) or its full name without the vendor (``A100-SXM4-80GB``)."""
    mapping: dict[str, str] = {}
    for model in catalog:
        mapping[normalized_gpu_name(model.id)] = model.id
        mapping[normalized_gpu_name(model.name)] = model.id
    return mapping


def resolve_gpu_map(catalog: Any, given: dict[str, str]) -> dict[str, str]:
    """The mapping a run uses: the defaults, overridden by the scenario's, keyed by
    normalized trace name."""
    mapping = default_gpu_map(catalog)
    mapping.update({normalized_gpu_name(name): model for name, model in given.items()})
    return mapping


# ----------------------------------------------------------------------------- raw reading

class CsvRows:
    """A CSV file read row by row as dicts, with errors naming the file, line and column."""

    def __init__(self, path: Path, required: tuple[str, ...],
                 headerless: tuple[str, ...] | None = None) -> None:
        self.path = path
        self.required = required
        self.headerless = headerless

    def fail(self, line: int, column: str, message: str) -> TraceError:
        return TraceError(f"{self.path}: line {line}: column `{column}`: {message}")

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        try:
            with open(self.path, newline="", encoding="utf-8") as handle:
                yield from self._read(handle)
        except OSError as error:
            raise TraceError(f"{self.path}: cannot be read: {error.strerror or error}") from None

    def _read(self, handle: Any) -> Iterator[tuple[int, dict[str, str]]]:
        reader = csv.reader(handle)
        try:
            first = next(reader, None)
            if first is None:
                raise TraceError(f"{self.path}: line 1: the file is empty (expected a "
                                 f"header with {', '.join(self.required)})")
            header = [name.strip() for name in first]
            pending: list[str] | None = None
            if self.headerless is not None and header[:1] != [self.headerless[0]]:
                header, pending = list(self.headerless), first  # no header: data
            missing = [name for name in self.required if name not in header]
            if missing:
                raise TraceError(f"{self.path}: line 1: column `{missing[0]}`: missing from "
                                 f"the header (expected {', '.join(self.required)})")
            width = len(header)
            if pending is not None:
                yield 1, self._row(1, header, pending, width)
            for row in reader:
                if not row:
                    continue
                yield reader.line_num, self._row(reader.line_num, header, row, width)
        except csv.Error as error:
            raise TraceError(f"{self.path}: line {reader.line_num}: not valid CSV: "
                             f"{error}") from None
        except UnicodeDecodeError as error:
            raise TraceError(f"{self.path}: not UTF-8 text: {error.reason} at byte "
                             f"{error.start}") from None

    def _row(self, line: int, header: list[str], row: list[str], width: int) -> dict[str, str]:
        if len(row) < width:
            raise self.fail(line, header[len(row)], f"missing (the row has {len(row)} of "
                            f"{width} columns)")
        return dict(zip(header, row, strict=False))


#: How tables written by data-frame libraries spell a missing value, where one may be missing.
_MISSING = frozenset(("nan", "null", "none", "na", "\\n"))


def csv_number(rows: CsvRows, line: int, record: dict[str, str], column: str, *,
            empty: float | None = None, integer: bool = False, positive: bool = False,
            high: float = _MAX_NUMBER) -> float:
    text = record[column].strip()
    if not text or (empty is not None and text.lower() in _MISSING):
        if empty is not None:
            return empty
        raise rows.fail(line, column, "expected a number, got nothing")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    kind = "an integer" if integer else "a number"
    if not (0 <= value <= high) or (integer and not value.is_integer()) \
            or (positive and value == 0):
        shown = text if len(text) <= 40 else text[:37] + "..."
        low = "> 0" if positive else "from 0"
        raise rows.fail(line, column, f"expected {kind} {low} {'and <=' if positive else 'to'} "
                        f"{high:g}, got {shown!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    """Acceptable GPU names: `|`-separated, blanks and repeats dropped, order kept."""
    return tuple(dict.fromkeys(part.strip() for part in text.split("|") if part.strip()))


def _v2023(path: Path, rules: TraceRules, _tasks: Path | None) -> Iterator[TraceRow]:
    rows = CsvRows(path, _REQUIRED["alibaba_v2023"])
    qos = set(rules.interruptible_qos)
    for line, rec in rows:
        num_gpu = csv_number(rows, line, rec, "num_gpu", integer=True)
        milli = csv_number(rows, line, rec, "gpu_milli", empty=0.0)
        created = csv_number(rows, line, rec, "creation_time")
        deleted = csv_number(rows, line, rec, "deletion_time", empty=math.nan)
        share = 0 < milli < 1000 and num_gpu > 0
        yield TraceRow(line, rec["name"], created, deleted - created,
                       num_gpu * milli / 1000 if share else num_gpu, int(num_gpu), share,
                       _names(rec["gpu_spec"]), "", rec["qos"].strip() in qos)


def _spot_v2026(path: Path, rules: TraceRules, _tasks: Path | None) -> Iterator[TraceRow]:
    rows = CsvRows(path, _REQUIRED["alibaba_spot_v2026"])
    for line, rec in rows:
        per_worker = csv_number(rows, line, rec, "gpu_request", empty=0.0)
        workers = csv_number(rows, line, rec, "worker_num", empty=1.0, integer=True)
        kind = rec["job_type"].strip()
        if kind not in ("HP", "Spot"):
            raise rows.fail(line, "job_type", f"expected HP or Spot, got {kind[:40]!r}")
        share = per_worker % 1 > 0
        yield TraceRow(line, rec["job_name"], csv_number(rows, line, rec, "submit_time"),
                       csv_number(rows, line, rec, "duration", empty=math.nan),
                       per_worker * workers, int(math.ceil(per_worker) * workers), share,
                       _names(rec["gpu_model"]), rec["organization"].strip(), kind == "Spot")


def _generic(path: Path, rules: TraceRules, _tasks: Path | None) -> Iterator[TraceRow]:
    rows = CsvRows(path, _REQUIRED["generic"])
    flags = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False,
             "": False}
    for line, rec in rows:
        gpus = csv_number(rows, line, rec, "gpus")
        flag = rec.get("interruptible", "").strip().lower()
        if flag not in flags:
            raise rows.fail(line, "interruptible", f"expected true or false, got {flag[:40]!r}")
        optional = {}
        # What a market takes: a value > 0 and a max price > 0 of at most 1,000 USD per
        # GPU-hour (the scenario's bound on prices).
        for column, high in (("value_usd", 1e9), ("max_price_usd_per_gpu_hour", 1_000.0)):
            if rec.get(column, "").strip():
                optional[column] = csv_number(rows, line, rec, column, positive=True, high=high)
        yield TraceRow(line, rec.get("name", "") or f"row-{line}",
                       csv_number(rows, line, rec, "submit_s"),
                       csv_number(rows, line, rec, "duration_s", empty=math.nan), gpus,
                       math.ceil(gpus), gpus % 1 > 0, _names(rec.get("models", "")),
                       rec.get("tenant", "").strip(), flags[flag], **optional)


#: Job-table rows read ahead of the task table (tables out of step) before the join gives up.
V2020_JOIN_AHEAD = 1_000_000
#: Jobs the task table has reached that are kept for tasks that come later.
V2020_RECENT_JOBS = 10_000


def _v2020(path: Path, rules: TraceRules, tasks: Path | None) -> Iterator[TraceRow]:
    if tasks is None:
        raise TraceError(f"{path}: alibaba_v2020 needs the task table too (pai_task_table: "
                         "trace.tasks_path, or --tasks)")
    jobs = iter(CsvRows(path, ("job_name", "user"), headerless=_V2020_JOB_COLUMNS))
    # A streamed join: the tables list jobs in the same order. `ahead` holds job rows read
    # ahead of the tasks, until the tasks reach them; `recent` the last jobs reached (a job's
    # tasks may come a little apart), V2020_RECENT_JOBS of them.
    ahead: OrderedDict[str, str] = OrderedDict()
    recent: OrderedDict[str, str] = OrderedDict()
    rows = CsvRows(tasks, ("job_name", "inst_num", "start_time", "end_time", "plan_gpu",
                         "gpu_type"), headerless=_V2020_TASK_COLUMNS)
    done = False
    for line, rec in rows:
        job = rec["job_name"]
        user = recent.get(job)
        if user is None:
            while job not in ahead and not done:
                nxt = next(jobs, None)
                if nxt is None:
                    done = True
                else:
                    ahead[nxt[1]["job_name"]] = nxt[1]["user"].strip()
                    if len(ahead) > V2020_JOIN_AHEAD:
                        raise rows.fail(line, "job_name", f"{job[:40]!r} not found within "
                                        f"{V2020_JOIN_AHEAD:,} rows of the job table {path} "
                                        "(the tables must list jobs in the same order)")
            if job in ahead:  # reached: it and the jobs before it leave the read-ahead
                while True:
                    name, owner = ahead.popitem(last=False)
                    recent[name] = owner
                    if len(recent) > V2020_RECENT_JOBS:
                        recent.popitem(last=False)
                    if name == job:
                        user = owner
                        break
        instances = csv_number(rows, line, rec, "inst_num", empty=1.0, integer=True)
        percent = csv_number(rows, line, rec, "plan_gpu", empty=0.0)
        start = csv_number(rows, line, rec, "start_time")
        end = csv_number(rows, line, rec, "end_time", empty=math.nan)
        share = percent % 100 > 0
        row = TraceRow(line, f"{job}/{rec['task_name']}", start, end - start,
                       instances * percent / 100, int(instances * math.ceil(percent / 100)),
                       share, _names(rec["gpu_type"]), user or "", False)
        if user is None:
            yield Skipped(row, "no_job")  # type: ignore[misc]
            continue
        yield row


_READERS: dict[str, Callable[[Path, TraceRules, Path | None], Iterator[TraceRow]]] = {
    "alibaba_v2023": _v2023, "alibaba_spot_v2026": _spot_v2026, "alibaba_v2020": _v2020,
    "generic": _generic,
}


# ----------------------------------------------------------------------------- the rules

def trace_rows(path: str | Path, rules: TraceRules,
               tasks: str | Path | None = None) -> Iterator[TraceJob | Skipped]:
    """Every row of the trace, in submission order, as a job or as skipped with a reason
    (:data:`SKIP_REASONS`). Rows up to `rules.reorder_rows` out of order are put back in
    order; a row submitted earlier than one already given out is skipped (``out_of_order``).
    Raises TraceError (one line: file, line, column) at the first malformed row."""
    if rules.format not in _READERS:
        raise TraceError(f"format: expected one of {', '.join(FORMATS)}, got {rules.format!r}")
    source = _READERS[rules.format](Path(path), rules, None if tasks is None else Path(tasks))
    heap: list[tuple[float, int, TraceJob | Skipped]] = []
    released = -math.inf

    def release() -> TraceJob | Skipped:
        """The earliest job held, or its skip if a later one has already gone out."""
        nonlocal released
        submit, _, job = heapq.heappop(heap)
        if submit < released:
            return Skipped(job.row, "out_of_order")
        released = submit
        return job

    for order, item in enumerate(_judged(source, rules)):
        if isinstance(item, Skipped):
            yield item
            continue
        heapq.heappush(heap, (item.row.submit_s, order, item))
        if len(heap) > rules.reorder_rows:
            yield release()
    while heap:
        yield release()


def _judged(source: Iterable[TraceRow | Skipped], rules: TraceRules
            ) -> Iterator[TraceJob | Skipped]:
    mapping = rules.gpu_map
    mapped: dict[tuple[str, ...], tuple[str, ...]] = {}
    window = rules.window_s
    for row in source:
        if isinstance(row, Skipped):
            yield row
            continue
        if not row.duration_s > 0:  # NaN too
            yield Skipped(row, "no_duration")
            continue
        if window is not None and not window[0] <= row.submit_s < window[1]:
            yield Skipped(row, "outside_window")
            continue
        gpus = row.whole_gpus
        if row.gpus <= 0:
            if rules.cpu_only == "skip":
                yield Skipped(row, "cpu_only")
                continue
            gpus = 1  # kept: it rents the smallest thing this market sells, one GPU
        elif row.share and rules.gpu_share == "skip":
            yield Skipped(row, "gpu_share")
            continue
        if gpus > rules.max_gpus:
            yield Skipped(row, "too_many_gpus")
            continue
        if row.models:
            models = mapped.get(row.models)
            if models is None:
                models = tuple(dict.fromkeys(mapping[key] for key in map(
                    normalized_gpu_name, row.models) if key in mapping))
                if len(mapped) < 100_000:  # traces list a few hundred combinations
                    mapped[row.models] = models
            if not models:
                yield Skipped(row, "unmapped_gpu")
                continue
        else:
            models = ()
        yield TraceJob(row, gpus, models)


# ----------------------------------------------------------------------------- inspection

def _quantiles(values: list[float] | Any, qs: tuple[float, ...]) -> dict[str, float]:
    import numpy as np

    data = np.asarray(values, dtype=float)
    if not data.size:
        return {}
    return {f"p{round(q * 100)}": float(np.quantile(data, q)) for q in qs}


def inspect_trace(path: str | Path, rules: TraceRules, tasks: str | Path | None = None,
                  buckets: int = 12) -> dict[str, Any]:
    """What a trace holds, read once: rows, jobs and skipped rows by reason, GPUs by trace
    name and by catalog model, arrivals per hour over the span (in `buckets` equal parts,
    trace clock), duration quantiles (hours) and the file's digest."""
    from array import array

    submits = array("d")
    durations = array("d")
    by_name: Counter[str] = Counter()
    by_model: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    gpus = interruptible = rows = 0
    tenants: set[str] = set()
    for item in trace_rows(path, rules, tasks):
        rows += 1
        if isinstance(item, Skipped):
            skipped[item.reason] += 1
            continue
        row = item.row
        submits.append(row.submit_s)
        durations.append(row.duration_s / 3600)
        gpus += item.gpus
        interruptible += row.interruptible
        for name in row.models or ("(any)",):
            by_name[name] += item.gpus
        for model in item.models or ("(any)",):
            by_model[model] += item.gpus
        if row.tenant and len(tenants) <= 100_000:
            tenants.add(row.tenant)
    arrivals = []
    if submits:
        first, last = min(submits), max(submits)
        width = max((last - first) / buckets, 1.0)
        counts = Counter(min(int((t - first) / width), buckets - 1) for t in submits)
        arrivals = [{"from_s": first + i * width, "to_s": first + (i + 1) * width,
                     "jobs": counts[i], "jobs_per_hour": counts[i] / (width / 3600)}
                    for i in range(buckets)]
    files = {"path": str(path), "sha256": file_digest(path)}
    if tasks is not None:
        files.update(tasks_path=str(tasks), tasks_sha256=file_digest(tasks))
    return {
        "format": rules.format, **files, "rows": rows, "jobs": len(submits),
        "gpus_requested": gpus, "interruptible_jobs": interruptible,
        "tenants": len(tenants),
        "span_s": [min(submits), max(submits)] if submits else [],
        "skipped": dict(sorted(skipped.items())),
        "gpus_by_trace_name": dict(by_name.most_common()),
        "gpus_by_catalog_model": dict(by_model.most_common()),
        "arrivals": arrivals,
        "duration_h": _quantiles(durations, (0.1, 0.5, 0.9, 0.99, 1.0)),
    }

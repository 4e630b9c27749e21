"""`gpumarket trace inspect`: what a job trace holds, before anyone simulates it — jobs, GPUs
by model, arrivals over time, duration quantiles, and what a run would skip and why."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from api.cli.shared import FormatOption, fail, output_format, print_json

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Read job traces (Alibaba GPU v2020, v2023, spot-GPU 2026, generic CSV).")

TRACE_FORMATS = ("auto", "alibaba_v2023", "alibaba_spot_v2026", "alibaba_v2020", "generic")


def detect_format(path: Path, tasks: Path | None) -> str:
    """The trace format its header names: v2023 pod lists have `creation_time`, spot-GPU jobs
    `job_type`, generic CSVs `submit_s`; a job table given with `--tasks` is v2020."""
    if tasks is not None:
        return "alibaba_v2020"
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise fail(f"FILE: {path}: cannot be read: {error}") from None
    names = {name.strip() for name in header}
    for column, found in (("creation_time", "alibaba_v2023"), ("job_type", "alibaba_spot_v2026"),
                          ("submit_s", "generic")):
        if column in names:
            return found
    raise fail(f"--trace-format: cannot tell the format of {path} from its header; give one of "
               f"{', '.join(TRACE_FORMATS[1:])}")


def _gpu_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        name, sep, model = pair.partition("=")
        if not sep or not name.strip() or not model.strip():
            raise fail(f"--gpu-map: expected TRACE_NAME=CATALOG_ID, got {pair[:100]!r}")
        mapping[name.strip()] = model.strip()
    return mapping


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        start, end = (float(part) for part in text.split(","))
    except ValueError:
        start = end = float("nan")
    if not 0 <= start < end <= 1e12:
        raise fail(f"--window: expected START,END in trace seconds with 0 <= START < END, got "
                   f"{text[:100]!r}")
    return start, end


@app.command("inspect")
def inspect(
    file: Annotated[Path, typer.Argument(help="the trace file (for alibaba_v2020, its "
                                              "pai_job_table)")],
    trace_format: Annotated[str, typer.Option(
        "--trace-format", help=f"the trace's format: {', '.join(TRACE_FORMATS)} (auto: from the "
                         "header)")] = "auto",
    tasks: Annotated[Path | None, typer.Option(
        "--tasks", help="alibaba_v2020: the pai_task_table file")] = None,
    gpu_map: Annotated[list[str] | None, typer.Option(
        "--gpu-map", help="map a trace GPU name to a catalog id: NAME=ID (repeatable)",
        metavar="NAME=ID")] = None,
    gpu_share: Annotated[str, typer.Option(
        help="a share of a GPU: whole (rents whole GPUs) or skip")] = "whole",
    cpu_only: Annotated[str, typer.Option(
        help="a job with no GPU: skip, or keep (rents one GPU)")] = "skip",
    max_gpus: Annotated[int, typer.Option(help="skip jobs asking for more GPUs", min=1,
                                          max=4096)] = 1024,
    window: Annotated[str | None, typer.Option(
        help="keep jobs submitted in [START,END) trace seconds", metavar="START,END")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print it as one JSON object")] = False,
    output: FormatOption = None,
) -> None:
    """What a trace holds: jobs, GPUs by model, arrival rate over time, duration quantiles,
    and what a run would skip and why."""
    from agents.trace_files import TraceError, TraceRules, inspect_trace, resolve_gpu_map
    from market.catalog import load_catalog

    shape = output_format(output, as_json)
    if trace_format not in TRACE_FORMATS:
        raise fail(f"--trace-format: expected one of {', '.join(TRACE_FORMATS)}, got "
                   f"{trace_format[:100]!r}")
    for name, value, valid in (("--gpu-share", gpu_share, ("whole", "skip")),
                               ("--cpu-only", cpu_only, ("skip", "keep"))):
        if value not in valid:
            raise fail(f"{name}: expected {' or '.join(valid)}, got {value[:100]!r}")
    for name, path in (("FILE", file), ("--tasks", tasks)):
        if path is not None and not path.is_file():
            raise fail(f"{name}: no such file {str(path)[:200]!r}")
    if trace_format == "auto":
        trace_format = detect_format(file, tasks)
    if (trace_format == "alibaba_v2020") != (tasks is not None):
        raise fail("--tasks: must be given for alibaba_v2020 (the pai_task_table) and only "
                   "for it")
    catalog = load_catalog()
    given = _gpu_map(gpu_map or [])
    for name, model in given.items():
        if model not in catalog:
            raise fail(f"--gpu-map: {name}: unknown GPU model {model!r}; known: "
                       f"{', '.join(catalog.ids)}")
    rules = TraceRules(format=trace_format, gpu_map=resolve_gpu_map(catalog, given),
                       gpu_share=gpu_share, cpu_only=cpu_only, max_gpus=max_gpus,
                       window_s=_window(window))
    try:
        report = inspect_trace(file, rules, tasks)
    except TraceError as error:
        raise fail(str(error)) from None
    if shape == "json":
        print_json(report)
        return
    from api.cli.output import Output

    Output(shape).show(*trace_blocks(report))


def _table(title: str, columns: tuple[str, ...], left: int = 1) -> Table:
    """A table whose first `left` columns are text (left-justified), the rest numbers."""
    table = Table(title=title, header_style="bold", box=box.SIMPLE, pad_edge=False,
                  show_edge=False, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < left else "right")
    return table


def trace_blocks(report: dict[str, Any]) -> list[Table]:
    """`trace inspect`'s report as tables."""
    from agents.trace_files import SKIP_REASONS

    head = _table(f"Trace {escape(Path(report['path']).name)} ({report['format']})",
                  ("", ""), left=2)
    head.show_header = False
    span = report["span_s"]
    for label, value in (
            ("rows", f"{report['rows']:,}"), ("jobs", f"{report['jobs']:,}"),
            ("GPUs requested", f"{report['gpus_requested']:,}"),
            ("interruptible jobs", f"{report['interruptible_jobs']:,}"),
            ("tenants named", f"{report['tenants']:,}"),
            ("submitted from, to (trace s)", f"{span[0]:,.0f} to {span[1]:,.0f}" if span
             else "-"),
            ("sha256", report["sha256"])):
        head.add_row(label, value)
    blocks = [head]
    skipped = _table("Skipped rows", ("reason", "rows", "why"))
    skipped.columns[2].justify = "left"
    for reason, count in report["skipped"].items():
        skipped.add_row(reason, f"{count:,}", escape(SKIP_REASONS[reason]))
    if not report["skipped"]:
        skipped.add_row("(none)", "0", "")
    blocks.append(skipped)
    # A job that accepts several models counts under each.
    gpus = _table("GPUs by acceptable model", ("model", "GPUs"))
    for name, count in report["gpus_by_trace_name"].items():
        gpus.add_row(f"trace {escape(name)}", f"{count:,}")
    for name, count in report["gpus_by_catalog_model"].items():
        gpus.add_row(f"catalog {escape(name)}", f"{count:,}")
    blocks.append(gpus)
    arrivals = _table("Arrivals over the span", ("from (trace h)", "to (trace h)", "jobs",
                                                 "jobs per hour"))
    for bucket in report["arrivals"]:
        arrivals.add_row(f"{bucket['from_s'] / 3600:,.1f}", f"{bucket['to_s'] / 3600:,.1f}",
                         f"{bucket['jobs']:,}", f"{bucket['jobs_per_hour']:.3g}")
    blocks.append(arrivals)
    quantiles = _table("Duration (hours)", ("quantile", "hours"))
    for name, hours in report["duration_h"].items():
        quantiles.add_row("max" if name == "p100" else name, f"{hours:,.2f}")
    blocks.append(quantiles)
    return blocks


def _figures(title: str, rows: list[tuple[str, str]]) -> Table:
    """A run's block of labelled figures, values read from the left (paths, digests)."""
    table = Table(title=title, show_header=False, box=None, padding=(0, 2),
                  title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value")
    for label, value in rows:
        table.add_row(label, value)
    return table


def _counts(counts: dict[str, int]) -> str:
    """`name count` lines, or "none"."""
    return "\n".join(f"{name} {count:,}" for name, count in counts.items()) or "none"


def run_trace_table(trace: dict[str, Any]) -> Table:
    """The trace a run replayed (`gpumarket run`): its file and digest, what was read,
    replayed and skipped, by reason."""
    return _figures("Trace replayed", [
        ("file", escape(f"{trace['path']} ({trace['format']}, {trace['mode']})")),
        ("sha256", trace["sha256"]),
        ("rows read / jobs", f"{trace['rows']:,} / {trace['jobs']:,}"),
        ("skipped rows", _counts(trace["skipped"])),
        ("jobs arrived", f"{trace['arrived']:,}"),
        ("sampled out", f"{trace['sampled_out']:,}"),
        ("beyond the end of the run", f"{trace['beyond_end_of_run']:,}"),
        ("interruptible posted on demand", f"{trace['interruptible_posted_on_demand']:,}")])


def run_node_list_table(population: str, nodes: dict[str, Any],
                        fragmentation: dict[str, int] | None = None) -> Table:
    """A population made of a node list (`gpumarket run`): its file and digest, the machines
    read, kept and skipped, their GPUs by model, the providers made of them, and (for the
    market as a whole) what was turned away for want of room on one node."""
    rows = [("file", escape(f"{nodes['path']} ({nodes['format']})")),
            ("sha256", nodes["sha256"]),
            ("nodes read / kept", f"{nodes['nodes']:,} / {nodes['nodes_kept']:,}"),
            ("skipped nodes", _counts(nodes["skipped"])),
            ("GPUs by model", _counts(nodes["gpus_by_model"])),
            ("providers", f"{nodes['providers']:,}")]
    if fragmentation is not None:
        rows.append(("turned away, no node with room",
                     f"{fragmentation['orders_turned_away']:,} orders, "
                     f"{fragmentation['providers_turned_away']:,} providers' bids"))
    return _figures(f"Providers from a node list: {escape(population)}", rows)

"""`gpumarket sensitivity`: Sobol' indices of metrics over parameter ranges
(`market.experiments.sensitivity`), run on the sweep machinery."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from api.cli.output import Output, runs_progress
from api.cli.shared import (
    INTERRUPTED,
    DaskOption,
    FormatOption,
    WorkersOption,
    check_dask,
    fail,
    output_format,
    print_json,
)
from market.experiments import labels

#: Exit code when some runs failed (as `sweep`'s): the indices need every design point.
SOME_RUNS_FAILED = 3


def sensitivity(
    file: Annotated[str, typer.Argument(
        help="sensitivity file (TOML), or a built-in analysis' name (default)")],
    out: Annotated[Path | None, typer.Option(
        help="output directory (default: sensitivities/NAME)")] = None,
    workers: WorkersOption = None,
    dask: DaskOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="finish an interrupted analysis in --out, skipping finished runs")
    ] = False,
    allow_large: Annotated[bool, typer.Option(
        "--allow-large", help="run even if a point's cost estimate is above the run budget")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the indices as one JSON "
                                          "object on stdout")] = False,
    fmt: FormatOption = None,
) -> None:
    """Global sensitivity: first- and total-order Sobol' indices, with bootstrap intervals,
    of the file's metrics over its parameter ranges (Saltelli's design run as one sweep);
    writes sensitivity.parquet and report.html. Exit code 3 if any run failed."""
    from market.experiments.sensitivity import (
        INDICES_FILE,
        load_sensitivity,
        run_sensitivity,
    )
    from market.experiments.sweep import SweepError

    shape = output_format(fmt, as_json)
    try:  # every point is validated and budgeted before anything runs
        analysis = load_sensitivity(file, allow_large=allow_large)
    except SweepError as error:
        raise fail(str(error)) from None
    check_dask(dask)
    target = out if out is not None else Path("sensitivities") / analysis.name
    console = Console(stderr=True)
    try:
        with runs_progress("sensitivity", analysis.name, len(analysis.sweep.runs()),
                           console) as show:
            progress, indices = run_sensitivity(analysis, target, workers=workers, dask=dask,
                                                resume=resume, on_progress=show)
    except SweepError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        console.print(f"interrupted: finished runs are kept in {target}; run again with "
                      "--resume to finish the analysis")
        raise typer.Exit(INTERRUPTED) from None
    if indices is None:
        console.print(f"[red]{progress.failed} runs failed[/]: every design point is needed; "
                      f"their errors are in {target}/runs.parquet; --resume runs them again")
        raise typer.Exit(SOME_RUNS_FAILED)
    if shape == "json":
        print_json({"analysis": analysis.name, "runs": progress.total, "out": str(target),
                    "indices_file": str(target / INDICES_FILE),
                    "report": str(target / "report.html"), "indices": indices.to_pylist()})
        return
    show_indices(indices.to_pylist(), analysis.spec.confidence, shape, console)
    console.print(f"{analysis.name}: {progress.done}/{progress.total} runs; indices in "
                  f"{target}/{INDICES_FILE}, report in {target}/report.html")


def show_indices(rows: list[dict], confidence: float, shape: str, console: Console) -> None:
    """The indices as a table in `shape` (table, plain or markdown), and a line on `console`
    for each metric that had no variance."""
    table = Table(title=f"Sobol' indices, {confidence:.0%} bootstrap intervals")
    for column in ("metric", "parameter", "first order S", "total order ST"):
        table.add_column(column, justify="left" if column in ("metric", "parameter")
                         else "right")
    for row in rows:
        table.add_row(escape(labels.metric(row["metric"]).label),
                      escape(labels.parameter(row["parameter"]).label),
                      _interval(row, "first_order"), _interval(row, "total_order"))
    Output(shape).show(table)
    for metric in sorted({row["metric"] for row in rows if math.isnan(row["first_order"])}):
        console.print(f"{metric}: the same at every design point: no indices")


def _interval(row: dict, key: str) -> str:
    return labels.format_bounds(row[key], row[f"{key}_low"], row[f"{key}_high"])

"""`gpumarket calibrate`: fit scenario parameters to observed statistics
(`market.experiments.calibration`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli.output import Output, ProgressLines, duration
from api.cli.shared import (
    INTERRUPTED,
    FormatOption,
    fail,
    output_format,
    print_json,
)
from market.experiments import labels


def calibrate(
    file: Annotated[str, typer.Argument(
        help="calibration file (TOML), or a built-in calibration's name (default)")],
    out: Annotated[Path | None, typer.Option(
        help="output directory (default: calibrations/NAME)")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="processes each candidate's replications run on (1: in this process, the "
        "default; each evaluation starts its processes afresh, which pays only when a run "
        "takes several seconds)")] = 1,
    resume: Annotated[bool, typer.Option(
        "--resume", help="finish an interrupted calibration in --out: logged evaluations are "
        "replayed, not run again")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the fit as one JSON object "
                                          "on stdout")] = False,
    fmt: FormatOption = None,
) -> None:
    """Fit a scenario's parameters to target statistics (observed GPU prices, or stated
    values): every candidate on the same seeds, each evaluation logged as it is made; writes
    calibrated.toml, fit.parquet and report.html."""
    from market.experiments.calibration import SCENARIO_FILE, fit_table, load_calibration
    from market.experiments.calibration import calibrate as run_calibration
    from market.experiments.calibration_report import simulated
    from market.experiments.sweep import SweepError

    shape = output_format(fmt, as_json)
    try:
        calibration = load_calibration(file)
    except SweepError as error:
        raise fail(str(error)) from None
    target = out if out is not None else Path("calibrations") / calibration.name
    console = Console(stderr=True)
    budget = calibration.spec.evaluations
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} evaluations"),
                   TextColumn("best loss {task.fields[best]}"), TimeRemainingColumn(),
                   console=console, disable=not console.is_terminal, transient=True)
    task = bar.add_task(calibration.name, total=budget, best="—")
    best_loss = [math.inf]

    def line(done: float, total: float, elapsed_s: float, detail: dict) -> str:
        return (f"calibrate {calibration.name}: {done:.0f}/{total:.0f} evaluations, best loss "
                f"{detail['best']}, {duration(elapsed_s)} elapsed")

    lines = ProgressLines(line)

    def show(done: int, total: int, evaluation: dict[str, Any]) -> None:
        best_loss[0] = min(best_loss[0], evaluation["loss"])
        best = labels.format_number(best_loss[0])
        bar.update(task, completed=done, best=best)
        if not console.is_terminal:
            lines.update(done, total, best=best)

    try:
        with bar, lines:
            best = run_calibration(calibration, target, workers=workers, resume=resume,
                                   on_evaluation=show)
    except SweepError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        console.print(f"interrupted: evaluations so far are logged in {target}; run again "
                      "with --resume to go on from there")
        raise typer.Exit(INTERRUPTED) from None
    fit = fit_table(calibration, best).to_pylist()
    if shape == "json":
        print_json({"calibration": calibration.name, "evaluations": len(calibration.log),
                    "loss": best["loss"], "values": best["values"], "fit": fit,
                    "scenario": str(target / SCENARIO_FILE),
                    "report": str(target / "report.html")})
        return
    fitted = Table(title="Fitted parameters")
    fitted.add_column("parameter")
    fitted.add_column("fitted", justify="right")
    for path, value in best["values"].items():
        fitted.add_row(escape(labels.parameter(path).label), labels.format_number(value))
    loss = labels.format_number(best["loss"])
    observed = Table(title=f"Observed against simulated (loss {loss})")
    for column in ("metric", "target ± sd", "simulated ± 95% CI", "loss"):
        observed.add_column(column, justify="left" if column == "metric" else "right")
    for row in fit:
        observed.add_row(escape(labels.metric(row["metric"]).label),
                         f"{labels.format_number(row['target'])} ± "
                         f"{labels.format_number(row['target_sd'])}",
                         simulated(row),
                         labels.format_number(row["loss"]))
    Output(shape).show(fitted, observed)
    console.print(f"{calibration.name}: {len(calibration.log)} evaluations; the calibrated "
                  f"scenario is {target}/{SCENARIO_FILE}, the report {target}/report.html")

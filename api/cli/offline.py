"""The offline commands: `run` one market, `validate` the auction against theory, a
`tournament` of bid strategies, a `sweep` and its `report`, and the built-in `scenarios`,
`sweeps` and the scenario `schema`. Everything here runs in this process; nothing listens.

Exit codes beyond 0 and 2 (bad input): `validate` 1 when the market disagrees with auction
theory; `sweep` 3 when some runs failed and 130 when interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from api.cli.output import Output, ProgressLines, duration, eta, runs_progress
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
from market.scenario import (
    Scenario,
    ScenarioError,
    builtin_scenarios,
    load_scenario,
    scenario_schema,
)

ALLOW_LARGE_HELP = ("run even if the scenario's cost estimate (engine events, memory) is above "
                    "the limits of market.budget")


def _budgeted(scenario: str, overrides: list[str], allow_large: bool) -> Scenario:
    """Load a scenario and check what running it would cost, before anything is built; bad
    input and a refused estimate exit 2 with one line."""
    from market.budget import check_budget

    try:
        loaded = load_scenario(scenario, overrides)
        check_budget(loaded, allow_large=allow_large)
    except ScenarioError as error:
        raise fail(str(error)) from None
    return loaded


def run(
    scenario: Annotated[str, typer.Option(
        "--scenario", "-s", help="built-in scenario name or path to a TOML file")] = "default",
    seed: Annotated[int, typer.Option(help="random seed (>= 0)", min=0)] = 1,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="override a scenario field by dotted path: PATH=VALUE (repeatable)",
        metavar="PATH=VALUE")] = None,
    out: Annotated[Path | None, typer.Option(
        help="write summary.json and orders/leases/prices Parquet files here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON "
                                          "object on stdout")] = False,
    allow_large: Annotated[bool, typer.Option("--allow-large", help=ALLOW_LARGE_HELP)] = False,
    events: Annotated[bool, typer.Option(
        "--events", help="with --out: also write every event to events.parquet (what "
        "`gpumarket evaluate` reads)")] = False,
    fmt: FormatOption = None,
) -> None:
    """Run one simulated market and report who paid what and who earned what."""
    from market.builder import Market  # imported here so that `--help` stays fast
    from market.observe.eventlog import EVENTS_FILE, EventLog

    shape = output_format(fmt, as_json)
    if events and out is None:
        raise fail("--events: needs --out DIR, the folder events.parquet is written to")
    loaded = _budgeted(scenario, overrides or [], allow_large)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise fail(f"--out: cannot create directory {str(out)!r}: "
                       f"{error.strerror or error}") from None
    try:
        market = Market(loaded, seed=seed, out=out)
    except ValueError as error:  # MarketError included: the engine's and agents' own checks
        raise fail(f"scenario {scenario!r}: {error}") from None
    log = EventLog(market, out / EVENTS_FILE) if events and out is not None else None
    console = Console(stderr=True)
    if console.is_terminal and shape != "json":
        with Progress(TextColumn("[bold]simulating"), BarColumn(),
                      TextColumn("{task.fields[day]}"), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("run", total=market.horizon_s, day="day 0.0")

            def show(now_s: float, horizon_s: float) -> None:
                progress.update(task, completed=now_s, day=f"day {now_s / 86_400:.1f}")

            result = market.run(progress=show)
    elif not console.is_terminal:  # a log: a plain line every few seconds on long runs
        def line(now_s: float, horizon_s: float, elapsed_s: float, _: dict) -> str:
            return (f"run {loaded.name} seed {seed}: day {now_s / 86_400:.1f} of "
                    f"{horizon_s / 86_400:.1f} simulated, {duration(elapsed_s)} elapsed"
                    f"{eta(now_s, horizon_s, elapsed_s)}")

        with ProgressLines(line) as lines:
            result = market.run(progress=lambda now_s, horizon_s: lines.update(now_s,
                                                                               horizon_s))
    else:
        result = market.run()
    if log is not None:
        log.close()
    if out is not None:
        result.write(out)  # with scenario.json: the resolved scenario rebuilds this run
        if "entry_exit" in result.summary:  # prices, providers and profit over the months
            from market.experiments.entry_exit_report import write_run_report

            write_run_report(out)
    if shape == "json":
        sys.stdout.write(result.to_json() + "\n")
    else:
        from api.cli.report import show_run

        show_run(result.summary, shape, out)


def _bidders(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",")[:101] if part.strip())
    except ValueError:  # not an integer, or beyond Python's int-string conversion limit
        values = ()
    if not values or min(values) < 2 or max(values) > 1_000 or len(values) > 100:
        raise typer.BadParameter(f"expected a comma-separated list of at most 100 integers "
                                 f"from 2 to 1000, got {text[:100]!r}", param_hint="'--bidders'")
    return values


def _shadings(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",")[:101] if part.strip())
    except ValueError:
        values = ()
    if not values or len(values) > 100 or not all(0 < value <= 100 for value in values):
        raise typer.BadParameter(f"expected a comma-separated list of at most 100 numbers "
                                 f"in (0, 100], got {text[:100]!r}", param_hint="'--shadings'")
    return values


def validate(
    bidders: Annotated[str | None, typer.Option(
        help="numbers of bidders, comma-separated (each >= 2); default 2,3,5,10, or 3 with "
             "--deviations")] = None,
    auctions: Annotated[int | None, typer.Option(
        help="auctions per run (10 to 1,000,000); default 2000, or 3000 with --deviations",
        min=10, max=1_000_000)] = None,
    seed: Annotated[int, typer.Option(help="root seed (>= 0)", min=0)] = 1,
    deviations: Annotated[bool, typer.Option(
        "--deviations", help="incentive checks instead: the gain of one bidder's best "
        "shading of the prescribed bid, per mechanism")] = False,
    shadings: Annotated[str, typer.Option(
        help="with --deviations: factors on the prescribed bid, comma-separated (each > 0)")]
    = "0.8,0.9,0.95,1.05,1.1,1.2",
    workers: Annotated[int | None, typer.Option(
        help="with --deviations: processes to run on (default: one per CPU)", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as a JSON list")]
    = False,
    fmt: FormatOption = None,
) -> None:
    """Run the textbook auction through the market and compare it with auction theory."""
    shape = output_format(fmt, as_json)
    if deviations:
        _validate_deviations(bidders or "3", auctions or 3000, seed, _shadings(shadings),
                             workers, shape)
        return
    from market.experiments.validation import validate as run_validation

    counts = _bidders(bidders or "2,3,5,10")
    rows = run_validation(counts, auctions or 2000, seed)
    if shape == "json":
        print_json([row.to_dict() for row in rows])
    else:
        from api.cli.report import render_validation

        render_validation(rows, Output(shape))
    if not all(row.agrees for row in rows):
        Console(stderr=True).print("[bold red]the market disagrees with auction theory[/]")
        raise typer.Exit(1)


def _validate_deviations(bidders: str, auctions: int, seed: int, shadings: tuple[float, ...],
                         workers: int | None, shape: str) -> None:
    """`validate --deviations`: the incentive checks for each number of bidders."""
    from market.experiments.validation import deviations as run_deviations

    console = Console(stderr=True)
    counts = _bidders(bidders)

    def line(done: float, total: float, elapsed_s: float, detail: dict) -> str:
        return (f"validate --deviations (n={detail['n']}): {done:.0f}/{total:.0f} markets "
                f"done, {duration(elapsed_s)} elapsed{eta(done, total, elapsed_s)}")

    rows = []
    with ProgressLines(line) as lines:
        for n in counts:
            def show(done: int, total: int, n: int = n) -> None:
                if not console.is_terminal:
                    lines.update(done, total, n=n)

            rows += run_deviations(n, auctions, shadings, seed, workers, on_progress=show)
    if shape == "json":
        print_json([row.to_dict() for row in rows])
    else:
        from api.cli.report import render_deviations

        render_deviations(rows, Output(shape))
    if not all(row.holds for row in rows):
        Console(stderr=True).print("[bold red]a deviation pays where auction theory says "
                                   "none does[/]")
        raise typer.Exit(1)


def tournament(
    strategies: Annotated[str, typer.Option(
        help="competing strategies, comma-separated, each with optional parameters as a TOML "
             "inline table: 'cost_plus{markup=0.5},hedge'")],
    scenario: Annotated[str, typer.Option(
        "--scenario", "-s", help="built-in scenario name or path to a TOML file")] = "default",
    seeds: Annotated[int, typer.Option(
        help="markets run, the same for every strategy (2 to 10,000)", min=2, max=10_000)] = 8,
    seed: Annotated[int, typer.Option(help="root seed (>= 0)", min=0)] = 1,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="override a scenario field: PATH=VALUE (repeatable)",
        metavar="PATH=VALUE")] = None,
    workers: Annotated[int | None, typer.Option(
        help="processes to run seeds on (default: one per core)", min=1)] = None,
    evolve_generations: Annotated[int, typer.Option(
        "--evolve", help="generations of replicator dynamics (0: a single tournament; at "
        "most 1,000)", min=0, max=1_000)] = 0,
    reference: Annotated[str | None, typer.Option(
        help="the strategy paired differences are taken from (default: the first named)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    allow_large: Annotated[bool, typer.Option("--allow-large", help=ALLOW_LARGE_HELP + " (per "
                                              "market)")] = False,
    fmt: FormatOption = None,
) -> None:
    """Pit bid strategies against each other in the same markets: a leaderboard with 95% CIs
    and each strategy's paired difference from a reference."""
    from market.experiments.tournament import evolve, parse_lineup, play

    shape = output_format(fmt, as_json)
    try:
        lineup = parse_lineup(strategies)
    except ScenarioError as error:
        raise fail(str(error)) from None
    loaded = _budgeted(scenario, overrides or [], allow_large)
    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]tournament"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} markets"), TimeRemainingColumn(),
                   console=console, disable=not console.is_terminal, transient=True)
    task = bar.add_task("tournament", total=None)

    def line(done: float, total: float, elapsed_s: float, detail: dict) -> str:
        return (f"tournament: {done:.0f}/{total:.0f} markets done, {duration(elapsed_s)} "
                f"elapsed{eta(done, total, elapsed_s)}")

    lines = ProgressLines(line)

    def show(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        if not console.is_terminal:
            lines.update(done, total)

    try:
        with bar, lines:
            if evolve_generations:
                history = evolve(loaded, lineup, evolve_generations, seeds, seed, workers,
                                 reference=reference, on_progress=show)
            else:
                history = [play(loaded, lineup, seeds, seed, workers, reference=reference,
                                on_progress=show)]
    except ScenarioError as error:
        raise fail(str(error)) from None
    if shape == "json":
        for warning in history[-1].warnings:  # stdout stays one JSON document
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[yellow]warning:[/] {escape(warning)}")
        boards = [board.to_dict() for board in history]
        print_json({"generations": boards} if evolve_generations else boards[0])
        return
    from api.cli.report import render_evolution, render_standings

    output = Output(shape)
    if evolve_generations:
        render_evolution(history, history[0].lineup, output)
    render_standings(history[-1], output)


#: `sweep`'s exit code when some runs failed (the others are written).
SOME_RUNS_FAILED = 3


def sweep(
    file: Annotated[str, typer.Argument(help="sweep file (TOML), or a built-in sweep's name")],
    out: Annotated[Path | None, typer.Option(
        help="output directory (default: sweeps/NAME)")] = None,
    workers: WorkersOption = None,
    dask: DaskOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="finish an interrupted sweep in --out, skipping finished runs")
    ] = False,
    event_logs: Annotated[bool | None, typer.Option(
        "--event-logs/--no-event-logs", help="write each run's orders, leases and events "
        "under OUT/events/ (default: as the sweep file says)")] = None,
    allow_large: Annotated[bool, typer.Option("--allow-large", help=ALLOW_LARGE_HELP + " (per "
                                              "point)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome (runs done, "
                                          "failed, files) as one JSON object on stdout")]
    = False,
) -> None:
    """Run a parameter sweep: every point times every replication, in parallel, streamed to
    runs.parquet and timeseries.parquet. Exit code 3 if any run failed."""
    from market.experiments.execution import run_sweep
    from market.experiments.sweep import SweepError, load_sweep

    try:  # every point is validated and its run budget checked before anything runs
        loaded = load_sweep(file, allow_large=allow_large)
    except SweepError as error:
        raise fail(str(error)) from None
    check_dask(dask)
    target = out if out is not None else Path("sweeps") / loaded.name
    console = Console(stderr=True)
    try:
        with runs_progress("sweep", loaded.name, len(loaded.runs()), console) as show:
            progress = run_sweep(loaded, target, workers=workers, dask=dask, resume=resume,
                                 event_logs=event_logs, on_progress=show)
    except SweepError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        console.print(f"interrupted: finished runs are kept in {target}; run again with "
                      "--resume to finish the sweep")
        raise typer.Exit(INTERRUPTED) from None
    done_now = progress.done - progress.skipped
    if as_json:
        print_json({"sweep": loaded.name, "runs": progress.total, "done": progress.done,
               "done_now": done_now, "skipped": progress.skipped, "failed": progress.failed,
               "out": str(target), "runs_file": str(target / "runs.parquet"),
               "timeseries_file": str(target / "timeseries.parquet")})
    console.print(f"{loaded.name}: {progress.done}/{progress.total} runs done"
                  f" ({done_now} now, {progress.skipped} before), {progress.failed} failed;"
                  f" results in {target}/runs.parquet and {target}/timeseries.parquet")
    if progress.failed:
        console.print(f"[red]{progress.failed} runs failed[/]: their errors are in the "
                      "`error` column of runs.parquet; --resume runs them again")
        raise typer.Exit(SOME_RUNS_FAILED)


def report(
    directory: Annotated[Path, typer.Argument(
        help="a sweep's output directory, a sensitivity analysis', or one run's (run --out) "
        "with entry and exit")],
    metrics: Annotated[list[str] | None, typer.Option(
        "--metric", help="a metric column of runs.parquet (repeatable; default: headline "
        "metrics)")] = None,
    by: Annotated[list[str] | None, typer.Option(
        "--by", help="a swept parameter to group by (repeatable; default: all of them)")
    ] = None,
    baseline: Annotated[list[str] | None, typer.Option(
        "--baseline", help="a point of the sweep to compare every other point with, paired "
        "by seed: PATH=VALUE of a swept parameter (repeatable)", metavar="PATH=VALUE")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the tables as one JSON "
                                          "object on stdout")] = False,
    fmt: FormatOption = None,
) -> None:
    """Summarize a sweep: means with 95% confidence intervals per parameter combination,
    paired differences from a --baseline point, the fee pass-through where the take rate is
    swept, and report.html with plots. On one run's folder with entry and exit: report.html
    with its prices, providers on the market and long-run profit over time."""
    from market.experiments import analysis
    from market.experiments.report_html import write_report

    shape = output_format(fmt, as_json)
    if (directory / "sensitivity.parquet").is_file():
        _sensitivity_report(directory, shape)
        return
    from market.experiments.entry_exit_report import is_run_folder

    if is_run_folder(directory) and not (directory / "runs.parquet").is_file():
        _run_report(directory, shape)
        return
    try:
        swept = analysis.load_sweep(directory)
        groups = analysis.summarize(swept, metrics or None, by or None)
        params = analysis.resolve_params(swept, by or None)
        names = analysis.resolve_metrics(swept, metrics or None)
        chosen = analysis.parse_baseline(swept, baseline) if baseline else None
        comparisons = analysis.compare_to_baseline(swept, chosen, names) if chosen else []
        passes = analysis.fee_pass_through(swept, chosen)
        page = write_report(swept, directory, metrics or None, by or None, chosen)
    except analysis.ReportError as error:
        raise fail(str(error)) from None
    if shape == "json":
        from api.cli.report import sweep_report_json

        print_json(sweep_report_json(swept, groups, params, names, chosen, comparisons, passes,
                                page))
        return
    from api.cli.report import render_baseline, render_pass_through, render_sweep

    output = Output(shape)
    render_sweep(swept, groups, params, names, output)
    if chosen:
        render_baseline(swept, comparisons, names, chosen, output)
    if passes:
        render_pass_through(passes, analysis.TAKE_RATE in (chosen or {}), output)
    output.show(f"report: {escape(str(page))}")


def _run_report(directory: Path, shape: str) -> None:
    """`report` on one run's directory (`run --out`) with entry and exit: report.html."""
    from market.experiments.analysis import ReportError
    from market.experiments.entry_exit_report import write_run_report

    try:
        page = write_run_report(directory)
    except ReportError as error:
        raise fail(str(error)) from None
    if shape == "json":
        print_json({"report": str(page)})
        return
    Output(shape).show(f"report: {escape(str(page))}")


def _sensitivity_report(directory: Path, shape: str) -> None:
    """`report` on a sensitivity analysis' directory: its indices, and report.html again."""
    from api.cli.sensitivity import show_indices
    from market.experiments.sensitivity import read_finished, write_report
    from market.experiments.sweep import SweepError

    try:
        done = read_finished(directory)
        page = write_report(directory)
    except SweepError as error:
        raise fail(str(error)) from None
    rows = done.indices.to_pylist()
    if shape == "json":
        print_json({"indices": rows, "report": str(page)})
        return
    show_indices(rows, done.spec.confidence, shape, Console(stderr=True))
    Output(shape).show(f"report: {escape(str(page))}")


def sweeps(
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
    fmt: FormatOption = None,
) -> None:
    """List the built-in example sweeps."""
    from market.experiments.sweep import builtin_sweeps, load_sweep

    shape = output_format(fmt, as_json)
    rows = []
    for name in builtin_sweeps():
        loaded = load_sweep(name)
        rows.append({"name": name, "runs": len(loaded.runs()),
                     "description": loaded.description})
    _listing("Built-in sweeps (gpumarket sweep NAME)", rows, shape)


def scenarios(
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
    fmt: FormatOption = None,
) -> None:
    """List the built-in scenarios."""
    shape = output_format(fmt, as_json)
    rows = [{"name": name, "description": load_scenario(name).description}
            for name in builtin_scenarios()]
    _listing("Built-in scenarios (--scenario NAME)", rows, shape)


def _listing(title: str, rows: list[dict], shape: str) -> None:
    if shape == "json":
        print_json(rows)
        return
    from api.cli.report import render_listing

    render_listing(title, rows, Output(shape))


def schema() -> None:
    """Print the JSON schema of scenario files."""
    typer.echo(json.dumps(scenario_schema(), indent=2))

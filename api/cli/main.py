"""The `gpumarket` command line.

Exit codes: 0 success, 2 bad input (usage, scenario, arguments), 1 a bug (with a traceback);
`sweep` also 3 when some runs failed and 130 when interrupted; `bot` 130 when interrupted and
1 when the server failed it mid-run.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from typer.exceptions import TyperException

from api.cli.output import (
    FORMAT_HELP,
    FormatError,
    Output,
    ProgressLines,
    choose_format,
    configure_help,
    duration,
    eta,
)
from market.scenario import (
    Scenario,
    ScenarioError,
    builtin_scenarios,
    load_scenario,
    scenario_schema,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Simulate a decentralized GPU compute marketplace.")

BAD_INPUT = 2


def fail(message: str) -> typer.Exit:
    """Print one line naming what is wrong and return the exit to raise (code 2)."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(BAD_INPUT)


FormatOption = Annotated[str | None, typer.Option(
    "--format", help=FORMAT_HELP, metavar="table|plain|markdown|json", show_default=False)]


def _format(requested: str | None, as_json: bool) -> str:
    """The output format (`api.cli.output.choose_format`); an unknown one exits 2."""
    try:
        return choose_format(requested, as_json)
    except FormatError as error:
        raise fail(str(error)) from None


def _json(payload: object) -> None:
    """One JSON document on stdout, NaN and infinity (not JSON) as null."""
    sys.stdout.write(json.dumps(_finite(payload), allow_nan=False) + "\n")


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


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


@app.command()
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
    fmt: FormatOption = None,
) -> None:
    """Run one simulated market and report who paid what and who earned what."""
    from market.engine import Market  # imported here so that `--help` stays fast

    shape = _format(fmt, as_json)
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
    if out is not None:
        result.write(out)
    if shape == "json":
        sys.stdout.write(result.to_json() + "\n")
    else:
        _show_run(result.summary, shape, out)


def _show_run(summary: dict, shape: str, out: Path | None) -> None:
    """The run report (`run`, `replay`) and where its files went."""
    from api.cli.report import render

    output = Output(shape)
    render(summary, output)
    if out is not None:
        output.show(f"wrote summary.json, orders, leases, jobs, providers and prices "
                    f"(.parquet) to {escape(str(out))}")


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


@app.command()
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
    shape = _format(fmt, as_json)
    if deviations:
        _validate_deviations(bidders or "3", auctions or 3000, seed, _shadings(shadings),
                             workers, shape)
        return
    from market.validation import validate as run_validation

    counts = _bidders(bidders or "2,3,5,10")
    rows = run_validation(counts, auctions or 2000, seed)
    if shape == "json":
        _json([row.to_dict() for row in rows])
    else:
        from api.cli.report import render_validation

        render_validation(rows, Output(shape))
    if not all(row.agrees for row in rows):
        Console(stderr=True).print("[bold red]the market disagrees with auction theory[/]")
        raise typer.Exit(1)


def _validate_deviations(bidders: str, auctions: int, seed: int, shadings: tuple[float, ...],
                         workers: int | None, shape: str) -> None:
    """`validate --deviations`: the incentive checks for each number of bidders."""
    from market.validation import deviations as run_deviations

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
        _json([row.to_dict() for row in rows])
    else:
        from api.cli.report import render_deviations

        render_deviations(rows, Output(shape))
    if not all(row.holds for row in rows):
        Console(stderr=True).print("[bold red]a deviation pays where auction theory says "
                                   "none does[/]")
        raise typer.Exit(1)


@app.command()
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
    from market.tournament import evolve, parse_lineup, play

    shape = _format(fmt, as_json)
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
        _json({"generations": boards} if evolve_generations else boards[0])
        return
    from api.cli.report import render_evolution, render_standings

    output = Output(shape)
    if evolve_generations:
        render_evolution(history, history[0].lineup, output)
    render_standings(history[-1], output)


SOME_RUNS_FAILED = 3
INTERRUPTED = 130


@app.command()
def sweep(
    file: Annotated[str, typer.Argument(help="sweep file (TOML), or a built-in sweep's name")],
    out: Annotated[Path | None, typer.Option(
        help="output directory (default: sweeps/NAME)")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="processes (or Dask workers with --dask local); default: one per core")
    ] = None,
    dask: Annotated[str | None, typer.Option(
        help="run on a Dask cluster: its scheduler address (tcp://host:8786), or 'local' to "
             "start one here", metavar="ADDRESS|local")] = None,
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
    from market.experiment import run_sweep
    from market.sweep import SweepError, load_sweep

    try:  # every point is validated and its run budget checked before anything runs
        loaded = load_sweep(file, allow_large=allow_large)
    except SweepError as error:
        raise fail(str(error)) from None
    if dask is not None and dask != "local" and "://" not in dask:
        raise fail(f"--dask: expected a scheduler address like tcp://host:8786 or 'local', "
                   f"got {dask!r}")
    target = out if out is not None else Path("sweeps") / loaded.name
    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} runs"),
                   TextColumn("[red]{task.fields[failed]} failed"), TimeRemainingColumn(),
                   console=console, disable=not console.is_terminal, transient=True)
    task = bar.add_task(loaded.name, total=len(loaded.runs()), failed=0)

    def line(done: float, total: float, elapsed_s: float, detail: dict) -> str:
        # The pace counts only runs done in this invocation (not those --resume skipped).
        left = eta(done - detail["skipped"], total - detail["skipped"], elapsed_s)
        return (f"sweep {loaded.name}: {done:.0f}/{total:.0f} runs done, {detail['failed']} "
                f"failed, {duration(elapsed_s)} elapsed{left}")

    lines = ProgressLines(line)

    def show(progress) -> None:
        bar.update(task, completed=progress.done, failed=progress.failed)
        if not console.is_terminal:
            lines.update(progress.done, progress.total, failed=progress.failed,
                         skipped=progress.skipped)

    try:
        with bar, lines:
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
        _json({"sweep": loaded.name, "runs": progress.total, "done": progress.done,
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


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="a sweep's output directory")],
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
    swept, and report.html with plots."""
    from market import analysis
    from market.report_html import write_report

    shape = _format(fmt, as_json)
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

        _json(sweep_report_json(swept, groups, params, names, chosen, comparisons, passes,
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=0, max=65535)] = 8000,
    db: Annotated[Path, typer.Option(help="session log (SQLite); live markets in it resume "
                                     "where they were")] = Path("gpumarket-sessions.db"),
    operator_token: Annotated[str | None, typer.Option(
        envvar="GPUMARKET_OPERATOR_TOKEN", show_envvar=True,
        help="the token that creates and controls markets (16+ printable characters); "
             "prefer the environment variable, which `ps` does not show; default: a new "
             "one, printed at start")] = None,
    allowed_hosts: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="a Host name the server answers to, besides the bind "
        "address and, bound to loopback, localhost and 127.0.0.1 (repeatable; *.example.org "
        "for subdomains)")] = None,
    trusted_proxies: Annotated[list[str] | None, typer.Option(
        "--trusted-proxy", help="the address of a reverse proxy whose X-Forwarded-For names "
        "the client (repeatable)")] = None,
    max_markets: Annotated[int, typer.Option(help="live markets per server", min=1)] = 16,
    max_connections: Annotated[int, typer.Option(
        help="websocket connections per market", min=1)] = 2000,
    max_participants: Annotated[int, typer.Option(
        help="participants per market", min=1)] = 200,
    max_message_bytes: Annotated[int, typer.Option(
        help="largest HTTP body or websocket message", min=256)] = 16_384,
    rate: Annotated[float, typer.Option(
        help="requests per second per token or websocket", min=0.01)] = 20.0,
    burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 40,
    address_rate: Annotated[float, typer.Option(
        help="requests per second per client address, all its tokens and sockets together",
        min=0.01)] = 50.0,
    address_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 100,
    anonymous_rate: Annotated[float, typer.Option(
        help="requests without a token (lists, snapshots, events, websocket handshakes) "
             "per second per client address", min=0.01)] = 10.0,
    anonymous_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 100,
    join_rate: Annotated[float, typer.Option(
        help="joins per second per client address", min=0.001)] = 0.5,
    join_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 20,
    market_join_rate: Annotated[float, typer.Option(
        help="joins per second per market, from everyone", min=0.001)] = 2.0,
    market_join_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 50,
    creates_per_minute: Annotated[float, typer.Option(
        help="market creations per minute per client address", min=0.001)] = 6.0,
    create_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 20,
    evict_after: Annotated[float, typer.Option(
        help="wall seconds a stopped or finished market stays in memory (its log stays)",
        min=0.0)] = 600.0,
    body_timeout: Annotated[float, typer.Option(
        help="wall seconds a request body may take to arrive", min=0.1)] = 10.0,
    keep_alive_timeout: Annotated[int, typer.Option(
        help="wall seconds an idle HTTP connection is kept open", min=1)] = 5,
    max_concurrency: Annotated[int, typer.Option(
        help="connections and requests at once, websockets included; then 503", min=1)] = 10_000,
    max_header_bytes: Annotated[int, typer.Option(
        help="largest request line and headers", min=1024)] = 16_384,
    queue_frames: Annotated[int, typer.Option(
        help="frames a websocket client may fall behind before it is cut off", min=1)] = 256,
    history_events: Annotated[int, typer.Option(
        help="events kept per market for clients that resume", min=1)] = 200_000,
    tick: Annotated[float, typer.Option(
        help="wall seconds between tick boundaries", min=0.005, max=5.0)] = 0.1,
    ws_deflate: Annotated[bool, typer.Option(
        "--ws-deflate/--no-ws-deflate",
        help="compress websocket frames (per client: less bandwidth, much more CPU)")] = False,
    hold_s: Annotated[float, typer.Option(
        "--hold-s", help="wall seconds the bids on a hand-picked order stay open for its "
        "tenant to choose, at any speed (0: bids expire after the scenario's bid_timeout_s "
        "of simulated time)", min=0.0, max=3600.0)] = 60.0,
    demo: Annotated[bool, typer.Option(
        "--demo", help="open a guided demo market at start: the default week from a seed "
        "whose demand spike comes within hours, with captions saying what happens")] = False,
    demo_speed: Annotated[float, typer.Option(
        help="the demo market's speed, simulated seconds per wall second", min=1.0,
        max=100_000.0)] = 300.0,
) -> None:
    """Serve live markets: the browser page at /, the API under /api, docs at /docs."""
    import ipaddress
    import re
    import secrets
    import sqlite3

    import uvicorn

    from api.live.driver import Limits
    from api.live.exposure import default_hosts, is_loopback
    from api.live.markets import LiveMarkets
    from api.live.server import create_app
    from api.live.sessionlog import SessionLogError

    if operator_token is not None and not re.fullmatch(r"[\x21-\x7e]{16,256}", operator_token):
        raise fail("--operator-token: expected 16 to 256 printable characters without spaces")
    for proxy in trusted_proxies or []:
        try:
            ipaddress.ip_address(proxy)
        except ValueError:
            raise fail(f"--trusted-proxy: expected an IP address, got {proxy!r}") from None
    for name in allowed_hosts or []:
        if not re.fullmatch(r"(\*|(\*\.)?[A-Za-z0-9.:\[\]-]{1,253})", name):
            raise fail(f"--allowed-host: expected a host name, an address, *.domain or *; "
                       f"got {name!r}")
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with db.open("ab"):
            pass
    except OSError as error:
        raise fail(f"--db: cannot write {str(db)!r}: {error.strerror or error}") from None
    limits = Limits(max_markets=max_markets, max_connections_per_market=max_connections,
                    max_participants_per_market=max_participants,
                    max_message_bytes=max_message_bytes, rate_per_s=rate, rate_burst=burst,
                    address_rate_per_s=address_rate, address_burst=address_burst,
                    anonymous_rate_per_s=anonymous_rate, anonymous_burst=anonymous_burst,
                    join_rate_per_s=join_rate, join_burst=join_burst,
                    market_join_rate_per_s=market_join_rate,
                    market_join_burst=market_join_burst,
                    create_rate_per_s=creates_per_minute / 60, create_burst=create_burst,
                    evict_after_s=evict_after, body_timeout_s=body_timeout,
                    queue_frames=queue_frames, history_events=history_events, tick_s=tick,
                    hold_s=hold_s)
    hosts = [*default_hosts(host), *(allowed_hosts or [])]
    if not allowed_hosts and not is_loopback(host):
        Console(stderr=True, highlight=False).print(
            f"[bold yellow]warning:[/] only requests for {', '.join(hosts)} are answered; "
            "name the host clients use with --allowed-host")
    # A busy port is the commonest start-up failure: one line, before uvicorn logs anything.
    if port:
        problem = _check_port_free(host, port)
        if problem:
            raise fail(f"--port: {problem}")
    # Open the log before serving: a log another server holds, or one that is not a
    # session log, is refused here in one line rather than inside uvicorn's start-up.
    try:
        markets = LiveMarkets(db, limits)
    except (SessionLogError, sqlite3.DatabaseError) as error:
        raise fail(f"--db: {error}") from None
    generated = operator_token is None
    token = operator_token or f"gmo_{secrets.token_urlsafe(32)}"
    served = create_app(db, limits, operator_token=token, allowed_hosts=hosts,
                        trusted_proxies=trusted_proxies or (), markets=markets)
    # The websocket layer's own cap sits above ours: an oversized message gets an error frame
    # from the app and the connection stays open. Compression is per connection, so a frame
    # sent to 1,000 watchers would be deflated 1,000 times: off unless asked for.
    config = uvicorn.Config(
        served, host=host, port=port, log_level="info",
        ws_max_size=max(4 * max_message_bytes, 1 << 20), ws_ping_interval=20.0,
        ws_per_message_deflate=ws_deflate, timeout_keep_alive=keep_alive_timeout,
        limit_concurrency=max_concurrency, h11_max_incomplete_event_size=max_header_bytes)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            if not (generated and self.started and self.servers):
                return
            # Once listening, the real port is known (--port 0). The token goes to stdout
            # once, in the page's address (its fragment never reaches a server or a log).
            bound = self.servers[0].sockets[0].getsockname()
            name = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            name = f"[{name}]" if ":" in name else name
            sys.stdout.write(f"operator page: http://{name}:{bound[1]}/#operator={token}\n")
            sys.stdout.flush()

    async def open_demo(server: uvicorn.Server) -> None:
        from api.live.commands import CreateMarket
        from api.live.narration import demo_seed
        from market.scenario import load_scenario

        seed = demo_seed(load_scenario("default"))
        live, control = await markets.create(CreateMarket(
            scenario="default", seed=seed, speed=demo_speed, name="Guided demo"))
        bound = server.servers[0].sockets[0].getsockname()
        name = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        name = f"[{name}]" if ":" in name else name
        sys.stdout.write(f"demo market: http://{name}:{bound[1]}/#/m/{live.market_id} "
                         f"(control token {control})\n")
        sys.stdout.flush()

    class DemoServer(Server):
        async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            if self.started and self.servers:
                await open_demo(self)

    (DemoServer if demo else Server)(config).run()


def _check_port_free(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on, in one line, or None if it can."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a server just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return (f"{host}:{port} is already in use (another server?); stop it or "
                        "choose another --port")
            return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None


@app.command()
def replay(
    db: Annotated[Path, typer.Argument(help="a session log written by `gpumarket serve`")],
    market: Annotated[str, typer.Option(help="the market id, m-xxxxxxxx")],
    out: Annotated[Path | None, typer.Option(
        help="write summary.json and orders/leases/prices Parquet files here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON "
                                          "object on stdout")] = False,
    fmt: FormatOption = None,
) -> None:
    """Replay a recorded live market to where it was, into the outputs of `gpumarket run`.

    Reads the log without locking it (a server may be writing it) and replays only what its
    checksums verify: a damaged or mixed log is refused naming the market and the command."""
    from api.live.replay import ReplayError, replay_market
    from api.live.sessionlog import SessionLogError

    shape = _format(fmt, as_json)
    if not db.is_file():
        raise fail(f"DB: {str(db)!r} is not a file")

    def note(message: str) -> None:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[yellow]note:[/] {escape(message)}")

    try:
        result = replay_market(db, market, out, note)
    except SessionLogError as error:
        raise fail(f"DB: {error}") from None
    except (ReplayError, LookupError, ScenarioError) as error:
        raise fail(str(error.args[0] if isinstance(error, LookupError) else error)) from None
    if shape == "json":
        sys.stdout.write(result.to_json() + "\n")
    else:
        _show_run(result.summary, shape, out)


@app.command()
def bot(
    url: Annotated[str, typer.Option(help="the server, e.g. http://127.0.0.1:8000")],
    market: Annotated[str, typer.Option(help="the market id, m-xxxxxxxx")],
    strategy: Annotated[str, typer.Option(help="a registered bid strategy, e.g. cost_plus")],
    params: Annotated[list[str] | None, typer.Option(
        "--param", help="a strategy parameter: NAME=VALUE, value read as TOML (repeatable)",
        metavar="NAME=VALUE")] = None,
    name: Annotated[str, typer.Option(help="the provider's name in the market")] = "bot",
    gpu_model: Annotated[str, typer.Option(help="a catalog GPU id (gpumarket's GPU "
                                           "catalog, e.g. h100)")] = "h100",
    gpus: Annotated[int, typer.Option(help="GPUs in the machine", min=1, max=1024)] = 8,
    archetype: Annotated[str, typer.Option(
        help="cost model: datacenter, home_rig or hyperscaler")] = "datacenter",
    wallet_usd: Annotated[float, typer.Option(help="starting wallet, USD", min=0)] = 1000.0,
    token: Annotated[str | None, typer.Option(
        help="act as the provider that joined with this token instead of joining")] = None,
    stop_after: Annotated[float | None, typer.Option(
        help="stop after this many wall seconds")] = None,
    max_orders: Annotated[int | None, typer.Option(
        help="stop after pricing this many orders")] = None,
    invite_code: Annotated[str | None, typer.Option(
        help="the market's invite code, if it has one")] = None,
    status_every: Annotated[float, typer.Option(
        help="wall seconds between status lines (bids sent, accepted, refused by reason, "
             "leases, revenue); 0: none", min=0)] = 10.0,
) -> None:
    """Run a bid strategy as a remote provider in a live market (the same strategy classes
    as offline runs and tournaments)."""
    from api.remote.bot import bot_command

    try:
        code = bot_command(url, market, strategy, params or [], name=name, gpu_model=gpu_model,
                           gpus=gpus, archetype=archetype, wallet_usd=wallet_usd, token=token,
                           stop_after=stop_after, max_orders=max_orders,
                           invite_code=invite_code, status_every_s=status_every or None,
                           log=lambda line: typer.echo(line))
    except ValueError as error:
        raise fail(str(error)) from None
    raise typer.Exit(code)


@app.command()
def sweeps(
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
    fmt: FormatOption = None,
) -> None:
    """List the built-in example sweeps."""
    from market.sweep import builtin_sweeps, load_sweep

    shape = _format(fmt, as_json)
    rows = []
    for name in builtin_sweeps():
        loaded = load_sweep(name)
        rows.append({"name": name, "runs": len(loaded.runs()),
                     "description": loaded.description})
    _listing("Built-in sweeps (gpumarket sweep NAME)", rows, shape)


@app.command()
def scenarios(
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
    fmt: FormatOption = None,
) -> None:
    """List the built-in scenarios."""
    shape = _format(fmt, as_json)
    rows = [{"name": name, "description": load_scenario(name).description}
            for name in builtin_scenarios()]
    _listing("Built-in scenarios (--scenario NAME)", rows, shape)


def _listing(title: str, rows: list[dict], shape: str) -> None:
    if shape == "json":
        _json(rows)
        return
    from api.cli.report import render_listing

    render_listing(title, rows, Output(shape))


@app.command()
def schema() -> None:
    """Print the JSON schema of scenario files."""
    typer.echo(json.dumps(scenario_schema(), indent=2))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors print one line and exit 2."""
    configure_help()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="gpumarket")
    except RecursionError:  # input nested beyond what any loader walks: still one line
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            "[bold red]error:[/] input nested too deeply (tables, arrays or paths)")
        code = BAD_INPUT
    except TyperException as error:  # click's usage errors (typer vendors click)
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        hint = getattr(getattr(error, "ctx", None), "command_path", "gpumarket")
        code = getattr(error, "exit_code", BAD_INPUT) or BAD_INPUT
        if message:  # empty when click already printed the help (no arguments)
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[bold red]error:[/] {escape(message)} (see '{escape(hint)} --help')")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

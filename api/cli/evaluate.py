"""`gpumarket evaluate`: what another bid strategy would have earned on logged markets.

Reads run folders written by `gpumarket run --out DIR --events` (or `gpumarket replay ...
--out DIR --events` for a live session), estimates the logging population's lease profit
under the target strategy (`market.experiments.offpolicy`: DM, IPS, SNIPS, DR, each with a
95% interval), and checks the estimates against the market run again with the target on the
same seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from api.cli.output import Output
from api.cli.shared import FormatOption, fail, output_format, print_json

ESTIMATOR_CHOICES = ("dm", "ips", "snips", "dr", "all")
_NAMES = {"dm": "DM (direct method)", "ips": "IPS (inverse propensity)",
          "snips": "SNIPS (self-normalized IPS)", "dr": "DR (doubly robust)"}


def evaluate(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="run folders with events.parquet, scenario.json and summary.json "
             "(`gpumarket run --out DIR --events`); several seeds are also pooled",
        metavar="RUN_DIR")],
    population: Annotated[str, typer.Option(
        help="the logging provider population, by name (e.g. home_rig)")],
    strategy: Annotated[str, typer.Option(
        help="the target strategy: NAME or NAME{param=value, ...}, e.g. "
             "'cost_plus{markup=0.5}'")],
    estimator: Annotated[str, typer.Option(
        help="dm, ips, snips, dr or all", metavar="dm|ips|snips|dr|all")] = "all",
    rerun: Annotated[bool, typer.Option(
        "--rerun/--no-rerun", help="run the market again with the target on each seed to "
        "show the realized value (the check); --no-rerun only estimates")] = True,
    bandwidth: Annotated[float, typer.Option(
        help="IPS kernel half-width, as a fraction of each bidder's cost basis per GPU-hour "
             "(for a deterministic target)")] = 0.05,
    capacity_as_logged: Annotated[bool, typer.Option(
        "--capacity-as-logged", help="DM keeps the population's capacity as logged (by "
        "default the leases DM gives the target hold their GPUs)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print every figure as one JSON "
                                          "object on stdout")] = False,
    fmt: FormatOption = None,
) -> None:
    """Estimate what a population would have earned with another bid strategy on the same
    orders (off-policy evaluation), and check it against re-running the market."""
    from market.experiments.offpolicy import OffPolicyError, evaluate, parse_target
    from market.experiments.offpolicy_figures import ESTIMATORS

    shape = output_format(fmt, as_json)
    if estimator not in ESTIMATOR_CHOICES:
        raise fail(f"--estimator: expected one of {', '.join(ESTIMATOR_CHOICES)}, got "
                   f"{estimator!r}")
    if not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise fail(f"--bandwidth: expected a number > 0 (a fraction of each bidder's cost "
                   f"basis), got {bandwidth}")
    wanted = ESTIMATORS if estimator == "all" else (estimator,)
    try:
        target = parse_target(strategy)
        result = evaluate(list(run_dirs), population, target, bandwidth=bandwidth,
                          rerun=rerun, capacity_aware=not capacity_as_logged, note=_note)
    except OffPolicyError as error:
        raise fail(str(error)) from None
    data = result.to_dict()
    for run in [*data["runs"], *([data["pooled"]] if "pooled" in data else [])]:
        run["estimates"] = {name: run["estimates"][name] for name in wanted}
    if shape == "json":
        print_json(data)
        return
    blocks: list[Any] = [_run_panel(run) for run in data["runs"]]
    if "pooled" in data:
        blocks.append(_run_panel(data["pooled"], pooled=len(data["runs"])))
    Output(shape).show(*blocks)


def _note(line: str) -> None:
    """A step that takes a while (a run rebuilt or re-run), on stderr: stdout stays the
    report."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"evaluate: {escape(line)}")


def _usd(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _run_panel(run: dict[str, Any], pooled: int = 0) -> Panel:
    title = (f"pooled over {pooled} runs" if pooled else f"{run['run']} (seed {run['seed']})")
    title += f": {run['population']} as {run['target']}, logged with {run['logging']}"
    table = Table(title="lease profit of the population, USD (revenue net of fees − serving "
                  "cost)")
    for column in ("estimator", "estimate", "95% CI", "per order", "realized", "logged",
                   "covers", "gap"):
        table.add_column(column, justify="left" if column == "estimator" else "right")
    for name, figure in run["estimates"].items():
        if not figure["available"]:
            table.add_row(_NAMES[name], "n/a", figure["reason"], "", _usd(run["realized_usd"]),
                          _usd(run["logged_usd"]), "", "")
            continue
        covers = figure["covers_realized"]
        table.add_row(_NAMES[name], _usd(figure["estimate_usd"]),
                      f"{_usd(figure['ci_low_usd'])} to {_usd(figure['ci_high_usd'])}",
                      f"{figure['per_order_usd']:.4f}" if figure["per_order_usd"] is not None
                      else "—",
                      _usd(run["realized_usd"]), _usd(run["logged_usd"]),
                      "—" if covers is None else ("yes" if covers else "no"),
                      _usd(figure["gap_usd"]))
    facts = Table(title="the log")
    facts.add_column("figure")
    facts.add_column("value", justify="right")

    def share(value: float | None) -> str:
        return "—" if value is None else f"{value:.1%}"

    def number(value: float | None, digits: int = 1) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    for label, value in (
            ("orders with the population's bids (units)", f"{run['units']:,}"),
            ("its bids on them", f"{run['bidders']:,}"),
            ("won in the log / by DM under the target",
             f"{run['won_logged']:,} / {run['won_dm']:,}"),
            ("DM reproduces the logged outcome", share(run["fidelity"])),
            ("DM's capacity", run["capacity"]),
            ("target bids DM left out (its own leases held the GPUs)", f"{run['crowded']:,}"),
            ("job hours for per-job auctions from", run["job_hours"]),
            ("orders left out (tenant picked by hand)", f"{run['hand_picked']:,}"),
            ("target bids outside the logging support", share(run["overlap_violations"])),
            ("mean IPS weight", number(run["mean_weight"], 3)),
            ("effective units of IPS", number(run["effective_units"]))):
        facts.add_row(label, value)
    return Panel(Group(table, facts), title=title)

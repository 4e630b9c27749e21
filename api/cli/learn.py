"""`gpumarket learn`: train a bid policy for one provider population by the cross-entropy
method (`agents.rl.cem`, through the Gymnasium environment), save it as a `learned` strategy's
policy file, and compare it with the population's own strategy on held-out paired seeds
(`agents.rl.compare`).

Writes OUT/policy.json (the policy: `learned{path="OUT/policy.json"}` bids with it),
OUT/curve.parquet (the learning curve, one row per iteration) and OUT/curve.png (the curve,
with the baseline's profit on the training seeds). Training seeds are 1..N; held-out seeds
start at HELD_OUT_FIRST, so the two never meet.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli.output import Output, ProgressLines, duration, eta
from api.cli.shared import INTERRUPTED, FormatOption, fail, output_format, print_json

HELD_OUT_FIRST = 1001
"""The first held-out seed: held-out seeds are HELD_OUT_FIRST, HELD_OUT_FIRST + 1, ...;
training seeds 1..N stay below it."""

# Defaults measured on `learn` (README "Learn to bid"): from the baseline's markup, one
# iteration of 8 candidates on 2 training seeds already beats cost_plus{markup=0.855} far
# beyond its interval; by the fourth the search has settled near the best constant markup
# (0.7) and gains little more: about 4 minutes on 2 cores, held-out comparison included.
ITERATIONS = 4
CANDIDATES = 8
TRAIN_SEEDS = 2
HELD_OUT_SEEDS = 8

DEFAULT_START_MARKUP = 0.5
"""The search's first markup when the baseline is not cost_plus."""
MARKUP_HIGH = 3.0
"""The policy's markups lie in [0, MARKUP_HIGH] (the environment's default range)."""

POLICY_FILE = "policy.json"
CURVE_FILE = "curve.parquet"
PLOT_FILE = "curve.png"


def learn(
    scenario: Annotated[str, typer.Option(
        "--scenario", "-s", help="built-in scenario name or path to a TOML file")] = "learn",
    population: Annotated[str, typer.Option(
        help="the provider population that learns (its own strategy is the baseline)")
    ] = "learner",
    iterations: Annotated[int, typer.Option(
        help="cross-entropy iterations (1 to 1,000)", min=1, max=1_000)] = ITERATIONS,
    candidates: Annotated[int, typer.Option(
        help="policies tried per iteration (2 to 1,000)", min=2, max=1_000)] = CANDIDATES,
    train_seeds: Annotated[int, typer.Option(
        help="markets every candidate is run on: seeds 1..N (1 to 1,000)", min=1,
        max=HELD_OUT_FIRST - 1)] = TRAIN_SEEDS,
    held_out_seeds: Annotated[int, typer.Option(
        help=f"markets of the comparison with the baseline: seeds {HELD_OUT_FIRST}.. "
             "(2 to 10,000; 0: no comparison)", min=0, max=10_000)] = HELD_OUT_SEEDS,
    elite: Annotated[float, typer.Option(
        help="share of the candidates kept as the elite, in (0, 1]")] = 0.25,
    decision: Annotated[str, typer.Option(
        help="when the policy decides: order (every order it prices) or interval")] = "order",
    interval_s: Annotated[float, typer.Option(
        "--interval-s", help="with --decision interval: simulated seconds between decisions")
    ] = 3600.0,
    baseline: Annotated[str | None, typer.Option(
        help="the strategy the policy is compared with on the held-out seeds, as NAME or "
             "NAME{param=value, ...} (default: the population's own, as in the scenario)")
    ] = None,
    start_markup: Annotated[float | None, typer.Option(
        help="the search's first policy: this markup over cost for every order (default: "
             "the population's own cost_plus markup, else 0.5)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the search (>= 0)", min=0)] = 1,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="override a scenario field: PATH=VALUE (repeatable)",
        metavar="PATH=VALUE")] = None,
    out: Annotated[Path | None, typer.Option(
        help="output directory (default: policies/SCENARIO-POPULATION)")] = None,
    workers: Annotated[int | None, typer.Option(
        help="processes to run episodes on (default: one per core)", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    fmt: FormatOption = None,
) -> None:
    """Learn a bid policy (cross-entropy over a linear markup policy) for a provider
    population, save it as a `learned` strategy's file, and compare it with the population's
    own strategy on held-out paired seeds."""
    from agents.rl.cem import INIT_MEAN, Episodes, train
    from agents.rl.compare import check_held_out, compare, run_profits, with_strategy
    from agents.rl.features import DECISIONS
    from agents.rl.policy import FEATURES, save_policy
    from market.budget import check_budget
    from market.experiments.tournament import parse_lineup
    from market.scenario import ScenarioError, load_scenario

    shape = output_format(fmt, as_json)
    if not 0 < elite <= 1:
        raise fail(f"--elite: expected a share in (0, 1], got {elite}")
    if held_out_seeds == 1:
        raise fail("--held-out-seeds: expected 0 (no comparison) or at least 2 (an interval)")
    if decision not in DECISIONS:
        raise fail(f"--decision: expected {' or '.join(DECISIONS)}, got {decision!r}")
    if not 0 < interval_s < math.inf:
        raise fail(f"--interval-s: expected simulated seconds > 0, got {interval_s}")
    try:
        loaded = load_scenario(scenario, overrides or [])
        check_budget(loaded)
    except ScenarioError as error:
        raise fail(str(error)) from None
    names = [p.name for p in loaded.providers]
    if population not in names:
        raise fail(f"--population: expected one of {', '.join(names)}, got {population!r}")
    against = loaded
    if baseline is not None:
        try:
            against = with_strategy(loaded, population, parse_lineup(baseline, "--baseline")[0])
        except ScenarioError as error:
            raise fail(f"--baseline: {str(error).removeprefix('--baseline: ')}") from None
    target = out if out is not None else Path("policies") / f"{loaded.name}-{population}"
    if target.exists() and not target.is_dir():
        raise fail(f"--out: {str(target)!r} is a file; expected a directory")
    start = start_markup if start_markup is not None else _baseline_markup(loaded, population)
    if not 0 <= start <= MARKUP_HIGH:
        raise fail(f"--start-markup: expected a markup in [0, {MARKUP_HIGH:g}], got {start}")
    train_list = list(range(1, train_seeds + 1))
    held_out = list(range(HELD_OUT_FIRST, HELD_OUT_FIRST + held_out_seeds))
    check_held_out(held_out, train_list)
    episodes = Episodes(loaded, population, (), decision, interval_s)
    console = Console(stderr=True)
    progress = _Progress(console)
    try:
        with progress:
            trained = train(episodes, iterations=iterations, candidates=candidates,
                            train_seeds=train_list, elite_fraction=elite, seed=seed,
                            init_mean=(start, *INIT_MEAN[1:]),
                            workers=workers, on_progress=progress.stage("training", "episodes"))
            training = dict(trained.policy.training)
            training["scenario"] = scenario  # as typed: a name or a path
            training["overrides"] = list(overrides or [])
            policy = replace(trained.policy, training=training)
            target.mkdir(parents=True, exist_ok=True)
            policy_path = save_policy(policy, target / POLICY_FILE)
            _write_curve(trained.curve, target / CURVE_FILE)
            # The baseline on the training seeds: the curve's line to beat.
            baseline_train = run_profits(loaded, population, train_list, workers=workers,
                                         on_progress=progress.stage("baseline", "markets"))
            baseline_mean = sum(baseline_train) / len(baseline_train)
            _plot_curve(trained.curve, baseline_mean, _baseline_label(loaded, population),
                        target / PLOT_FILE)
            comparison = None if not held_out else compare(
                against, population, policy_path, held_out, workers=workers,
                on_progress=progress.stage("held-out comparison", "markets"))
    except ScenarioError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        console.print(f"interrupted: what was finished is in {escape(str(target))}")
        raise typer.Exit(INTERRUPTED) from None
    files = {"policy": str(policy_path), "curve": str(target / CURVE_FILE),
             "plot": str(target / PLOT_FILE)}
    theta = dict(zip(FEATURES, policy.theta, strict=True))
    if shape == "json":
        print_json({"scenario": scenario, "population": population, "train_seeds": train_list,
                    "held_out_seeds": held_out, "theta": theta, "curve": trained.curve,
                    "baseline_train_usd": baseline_train,
                    "train_seconds": round(trained.elapsed_s, 1), "files": files,
                    "comparison": None if comparison is None else comparison.to_dict()})
        return
    tables = [_curve_table(trained.curve, baseline_mean, train_list), _theta_table(theta)]
    if comparison is not None:
        tables.append(_comparison_table(comparison))
    Output(shape).show(*tables)
    console.print(_verdict(comparison))
    console.print(f"trained in {duration(trained.elapsed_s)}; policy in {escape(files['policy'])}"
                  f" (strategy learned{{path=\"{escape(files['policy'])}\"}}), curve in "
                  f"{escape(files['curve'])} and {escape(files['plot'])}")


class _Progress:
    """A bar on a terminal, else a line every few seconds, for each stage in turn."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
                            TimeRemainingColumn(), console=console,
                            disable=not console.is_terminal, transient=True)
        self.lines = ProgressLines(self._line)

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        self.lines.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lines.__exit__(*exc)
        self.bar.__exit__(*exc)

    @staticmethod
    def _line(done: float, total: float, elapsed_s: float, detail: dict[str, Any]) -> str:
        return (f"learn: {detail['stage']} {done:.0f}/{total:.0f} {detail['unit']}, "
                f"{duration(elapsed_s)} elapsed{eta(done, total, elapsed_s)}")

    def stage(self, name: str, unit: str) -> Any:
        task = self.bar.add_task(name, total=None, unit=unit)

        def show(done: int, total: int) -> None:
            self.bar.update(task, completed=done, total=total)
            if not self.console.is_terminal:
                self.lines.update(done, total, stage=name, unit=unit)

        return show


def _baseline_markup(scenario: Any, population: str) -> float:
    """The markup of the population's own strategy when it is cost_plus, else 0.5."""
    ref = next(p.strategy for p in scenario.providers if p.name == population)
    markup = ref.params.get("markup") if ref.name == "cost_plus" else None
    return float(markup) if isinstance(markup, int | float) else DEFAULT_START_MARKUP


def _baseline_label(scenario: Any, population: str) -> str:
    return next(p.strategy for p in scenario.providers if p.name == population).label()


def _usd(value: float) -> str:
    return "" if value != value else f"{value:,.0f}"


def _curve_table(curve: list[dict[str, float]], baseline_mean: float,
                 seeds: list[int]) -> Table:
    table = Table(title=f"Learning curve: the population's short-run profit, USD, mean over "
                        f"training seeds {seeds[0]}..{seeds[-1]} (baseline "
                        f"{baseline_mean:,.0f}; ✓ the policy saved: the best centre μ)")
    for column in ("iteration", "policy (μ)", "candidates' mean", "elite mean", "best"):
        table.add_column(column, justify="right")
    for row in curve:
        mark = " ✓" if row.get("chosen") else ""
        table.add_row(f"{int(row['iteration'])}{mark}", _usd(row["mu_return_usd"]),
                      _usd(row["mean_return_usd"]), _usd(row["elite_return_usd"]),
                      _usd(row["best_return_usd"]))
    return table


def _theta_table(theta: dict[str, float]) -> Table:
    table = Table(title="The learned policy: markup = clip(θ · features, 0, 3)")
    table.add_column("feature")
    table.add_column("θ", justify="right")
    for name, value in theta.items():
        table.add_row(name, f"{value:+.3f}")
    return table


def _comparison_table(comparison: Any) -> Table:
    table = Table(title=f"Held-out seeds: population {comparison.population}'s short-run "
                        f"profit, USD, learned vs {comparison.baseline}")
    for column in ("seed", "learned", "baseline", "difference"):
        table.add_column(column, justify="right")
    for seed, mine, theirs in zip(comparison.seeds, comparison.learned_usd,
                                  comparison.baseline_usd, strict=True):
        table.add_row(str(seed), _usd(mine), _usd(theirs), f"{mine - theirs:+,.0f}")
    mean, low, high = comparison.difference_usd
    table.add_row("mean", _usd(sum(comparison.learned_usd) / len(comparison.seeds)),
                  _usd(sum(comparison.baseline_usd) / len(comparison.seeds)),
                  f"{mean:+,.0f} [{low:+,.0f}, {high:+,.0f}]")
    return table


def _verdict(comparison: Any) -> str:
    if comparison is None:
        return "no comparison (--held-out-seeds 0)"
    mean, low, high = comparison.difference_usd
    n = len(comparison.seeds)
    if comparison.excludes_zero:
        better = "beats" if mean > 0 else "loses to"
        return (f"the learned policy {better} {escape(comparison.baseline)} by {mean:+,.0f} "
                f"USD per market (95% CI [{low:+,.0f}, {high:+,.0f}] over {n} held-out paired "
                f"seeds: it excludes 0)")
    return (f"the {n} held-out paired seeds cannot tell the learned policy from "
            f"{escape(comparison.baseline)}: {mean:+,.0f} USD per market, 95% CI "
            f"[{low:+,.0f}, {high:+,.0f}] contains 0")


def _write_curve(curve: list[dict[str, float]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{**row, "iteration": int(row["iteration"])} for row in curve])
    pq.write_table(table, path)


def _plot_curve(curve: list[dict[str, float]], baseline_usd: float, baseline: str,
                path: Path) -> None:
    """The learning curve on Agg (no display needed): μ's return, the candidates' mean and
    best per iteration, and the baseline's profit on the same training seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    steps = [int(row["iteration"]) for row in curve]
    ax.plot(steps, [row["mu_return_usd"] for row in curve], "o-", label="policy (μ)")
    ax.plot(steps, [row["mean_return_usd"] for row in curve], "s--", alpha=0.7,
            label="candidates' mean")
    ax.plot(steps, [row["best_return_usd"] for row in curve], "^:", alpha=0.7,
            label="best candidate")
    chosen = [row for row in curve if row.get("chosen")]
    ax.plot([int(row["iteration"]) for row in chosen], [row["mu_return_usd"] for row in chosen],
            "*", color="black", markersize=14, label="the policy saved")
    ax.axhline(baseline_usd, color="grey", linestyle="-.", label=f"baseline: {baseline}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cross-entropy iteration")
    ax.set_ylabel("short-run profit, USD (mean over training seeds)")
    ax.set_title("Learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    figure.savefig(path, format="png")

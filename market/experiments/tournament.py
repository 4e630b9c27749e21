"""Tournaments: bid strategies compete in the same market, over many seeds, on equal terms.

**Line-up.** Each competitor is a registered strategy with optional parameters
(`cost_plus{markup=0.5}`: the parameters as a TOML inline table). A population whose own
strategy is a competitor keeps its parameters for it, those given for the competitor
overriding them; in other populations a competitor gets the parameters given for it and the
strategy's defaults for the rest.

**A fair split.** The tournament's market is the scenario itself with population
`stratified` (`agents/stratified.py`) and a `[tournament]` table: every provider population is
drawn as in an ordinary run on the same seed, then dealt among the strategies by their shares,
stratified by GPU model, GPU count and cost, so that each strategy's providers are as alike as
the population allows. Where a population's count does not split exactly by the shares (3
hyperscalers among 4 strategies), the leaderboard says so (`Leaderboard.warnings`).

**Paired seeds.** Every strategy is measured in the same markets (common random numbers).
Each figure is a mean over seeds with its 95% confidence interval (Student's t), and each
strategy's **paired difference** from a reference strategy (the first named unless chosen) is
the mean over seeds of (strategy − reference), with the t interval of those differences: it
removes the seed-to-seed swings both share (demand, inventories), so it is the comparison to
read, not two overlapping intervals. An interval that contains 0 means the seeds cannot tell
the two apart.

**Replicator dynamics** (`evolve`). Each generation plays a tournament with the current
shares. A strategy's fitness gap is its profit per provider minus the market's mean profit per
provider (all providers' profit over all providers), per seed, with the paired t interval of
its mean over seeds. The shares then move by the exponential replicator rule, but only on
gaps that are significant:

    share'_k ∝ share_k · exp(rate · gap_k / scale)   if gap_k's 95% interval excludes 0,
    share'_k ∝ share_k                               otherwise (its exponent is 0),

renormalized to sum to one, where `scale = |mean profit per provider| + the standard
deviation of the strategies' mean profits per provider` (1 if that is 0). So a strategy the
seeds cannot tell from the mean keeps its share, except for the renormalization that makes
room for the significant winners and losers.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError
from scipy import stats

from market.builder import Market
from market.events import BidsPlaced, LeaseCreated
from market.experiments.fanout import map_in_order
from market.experiments.intervals import SIGNED_UNIT, UNIT, labelled
from market.scenario import (
    Scenario,
    ScenarioError,
    StrategyRef,
    Tournament,
    validate_scenario,
)

FIGURES = ("profit_per_provider_usd", "win_rate", "utilization", "regret")
PAIRED_FIGURES = ("profit_per_provider_usd", "win_rate", "utilization")
"""Figures whose paired difference from the reference is reported."""

DEFAULT_SEEDS = 8
"""Markets per tournament unless chosen. A 95% interval's half-width is t(0.975, n − 1)·sd/√n
of the per-seed values: 1.59 sd with 4 seeds, 0.84 with 8, 0.53 with 16 (the README has the
measurement behind this default)."""

Interval = tuple[float, float, float]
"""(mean, low, high): a mean over seeds and its 95% confidence interval."""

_NO_INTERVAL: Interval = (math.nan, math.nan, math.nan)

RANGES: dict[str, tuple[float, float] | None] = {
    "profit_per_provider_usd": None, "win_rate": UNIT, "utilization": UNIT, "regret": None}
"""Where each figure lives: its interval is clipped there in `to_dict` (a t interval around a
utilization of 98% can reach past 100%). A difference of two shares lives in [−1, 1]."""


def labelled_interval(figure: Interval | None, n: int,
                      bounds: tuple[float, float] | None) -> dict[str, Any] | None:
    """An Interval as `{"mean", "ci_low", "ci_high", "method": "student_t", ...}`, clipped
    to `bounds` (`market.experiments.intervals.labelled`); None stays None."""
    if figure is None:
        return None
    return labelled(*figure, method="student_t", n=n, bounds=bounds)


def _difference_range(figure: str) -> tuple[float, float] | None:
    return SIGNED_UNIT if RANGES[figure] == UNIT else None


# ----------------------------------------------------------------------------- line-up

_ITEM = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*(\{.*\})?\s*", re.S)


def parse_lineup(text: str, option: str = "--strategies") -> list[dict[str, Any]]:
    """`"cost_plus{markup=0.5},hedge"` -> `[{"name": "cost_plus", "params": {"markup":
    0.5}}, {"name": "hedge", "params": {}}]`: strategies separated by commas, each with an
    optional TOML inline table of parameters. Raises ScenarioError (one line naming
    `option`) on a malformed item.

    >>> parse_lineup('cost_plus{markup=0.5, net=true},hedge')
    [{'name': 'cost_plus', 'params': {'markup': 0.5, 'net': True}}, {'name': 'hedge', 'params': {}}]
    """
    items = [item for item in _split_top_level(text) if item.strip()]
    if not items:
        raise ScenarioError(f"{option}: name at least one strategy, e.g. cost_plus,hedge")
    lineup = []
    for item in items:
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ScenarioError(f"{option}: {item.strip()!r}: expected NAME or "
                                "NAME{param=value, ...}, e.g. cost_plus{markup=0.5}")
        params: dict[str, Any] = {}
        if match[2]:
            try:
                params = tomllib.loads(f"params = {match[2]}")["params"]
            except tomllib.TOMLDecodeError:
                raise ScenarioError(f"{option}: {item.strip()!r}: parameters must be a TOML "
                                    "inline table, e.g. cost_plus{markup=0.5} or "
                                    'akash_script{gpu_prices="h100=1500"}') from None
        lineup.append({"name": match[1], "params": params})
    return lineup


def _split_top_level(text: str) -> list[str]:
    """`text` split at commas outside braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for at, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:at])
            start = at + 1
    parts.append(text[start:])
    return parts


def split_counts(count: int, shares: list[float]) -> list[int]:
    """Split `count` providers by `shares` (largest remainder): the parts add up to count."""
    total = sum(shares)
    exact = [count * share / total for share in shares]
    parts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in by_remainder[: count - sum(parts)]:
        parts[i] += 1
    return parts


def tournament_scenario(scenario: Scenario, strategies: Sequence[str | Mapping[str, Any]],
                        shares: Sequence[float] | None = None) -> Scenario:
    """The scenario whose market is the tournament: population `stratified`, with the
    line-up in its `[tournament]` table. `strategies` are names, `NAME{params}` texts or
    `{"name", "params"}` tables. Raises ScenarioError (one line) on an unknown or repeated
    strategy, or parameters a strategy does not take in some population."""
    if scenario.population not in ("default", "stratified"):
        raise ScenarioError(f"population: a tournament deals the scenario's provider "
                            f"populations; expected population 'default', got "
                            f"{scenario.population!r}")
    lineup = [parse_lineup(s)[0] if isinstance(s, str) else dict(s) for s in strategies]
    if not lineup:
        raise ScenarioError("--strategies: name at least one strategy")
    try:
        table = Tournament.model_validate({"strategies": lineup,
                                           "shares": None if shares is None else list(shares)})
    except ValidationError as error:
        raise ScenarioError(_lineup_error(error, lineup)) from None
    data = scenario.model_dump()
    data["population"] = "stratified"
    data["tournament"] = table.model_dump()
    split = validate_scenario(data, "tournament")
    _check_params(split)
    return split


def _lineup_error(error: ValidationError, lineup: list[dict[str, Any]]) -> str:
    """A line-up's first error as one line: which strategy, and what is wrong."""
    detail = error.errors(include_url=False)[0]
    message = str(detail["msg"]).removeprefix("Value error, ")
    where = detail["loc"]
    if len(where) >= 2 and where[0] == "strategies" and isinstance(where[1], int) \
            and not message.startswith("params: "):  # those name the strategy already
        message = f"{lineup[where[1]].get('name')}: {message}"
    return f"--strategies: {message.removeprefix('strategies: ')}"


def _check_params(split: Scenario) -> None:
    """Every competitor's parameters, as each population resolves them, build the strategy."""
    tournament = split.tournament
    assert tournament is not None
    for index, label in enumerate(tournament.labels()):
        for population in split.providers:
            params = tournament.params_for(index, population.strategy)
            try:
                StrategyRef.model_validate({"name": tournament.strategies[index].name,
                                            "params": params})
            except ValidationError as error:
                detail = error.errors(include_url=False)[0]["msg"]
                raise ScenarioError(f"--strategies: {label} in population "
                                    f"{population.name!r}: "
                                    f"{detail.removeprefix('Value error, ')}") from None


def split_warnings(split: Scenario) -> list[str]:
    """One line per provider population that does not split exactly by the shares, naming
    it and each strategy's count."""
    tournament = split.tournament
    assert tournament is not None
    labels = tournament.labels()
    shares = tournament.shares or [1.0] * len(labels)
    total = sum(shares)
    equal = len(set(shares)) == 1
    warnings = []
    for population in split.providers:
        parts = split_counts(population.count, list(shares))
        exact = [population.count * share / total for share in shares]
        if all(abs(part - x) < 1e-9 for part, x in zip(parts, exact, strict=True)):
            continue
        among = f"{len(labels)} strategies" if equal else \
            f"{len(labels)} strategies at shares " + "/".join(f"{s / total:.1%}" for s in shares)
        dealt = ", ".join(f"{label} {part}" for label, part in zip(labels, parts, strict=True))
        fewer = " (fewer providers than strategies)" if population.count < len(labels) else ""
        warnings.append(f"population {population.name!r} cannot be split evenly: "
                        f"{population.count} providers among {among}{fewer}: {dealt}")
    return warnings


# ----------------------------------------------------------------------------- one market

def run_one(split: Scenario, seed: int) -> dict[str, dict[str, float]]:
    """One tournament market: each strategy's profit (USD), providers, GPUs, bids, wins,
    busy GPU-share and regret, by its label."""
    market = Market(split, seed=seed, record=False)
    bids: Counter[int] = Counter()
    wins: Counter[int] = Counter()
    population = market.pool.population

    def on_bids(event: Any) -> None:
        for provider in event.providers:
            bids[int(population[provider])] += 1

    def on_lease(event: Any) -> None:
        wins[int(population[event.provider])] += 1

    market.subscribe(on_bids, kinds=(BidsPlaced,))
    market.subscribe(on_lease, kinds=(LeaseCreated,))
    summary = market.run().summary
    return _tally(market, split, summary, bids, wins)


def _tally(market: Market, split: Scenario, summary: dict[str, Any], bids: Counter[int],
           wins: Counter[int]) -> dict[str, dict[str, float]]:
    tournament = split.tournament
    assert tournament is not None
    labels = tournament.labels()
    label_of = {f"{p.name}/{label}": label for p in split.providers for label in labels}
    results = {label: {"profit": 0.0, "providers": 0, "gpus": 0, "bids": 0, "wins": 0,
                       "busy": 0.0, "regret": math.nan} for label in labels}
    strategies: dict[str, set[int]] = {label: set() for label in labels}
    pool = market.pool
    for index, name in enumerate(pool.population_names):
        label = label_of.get(name)
        row = summary["populations"].get(name)
        if label is None or row is None:  # an original population: its providers are dealt
            continue
        into = results[label]
        into["profit"] += row["profit_usd"]
        into["providers"] += row["providers"]
        into["busy"] += row["utilization"] * row["gpus"]
        into["gpus"] += row["gpus"]
        into["bids"] += bids[index]
        into["wins"] += wins[index]
        members = np.flatnonzero(pool.population == index)
        strategies[label].update(np.unique(market.strategy_of(members)).tolist())
    for label, indices in strategies.items():
        regrets = [float(regret()) for i in sorted(indices)
                   if callable(regret := getattr(market.strategies[i], "regret", None))]
        if regrets:
            results[label]["regret"] = float(sum(regrets))
    return results


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True, slots=True)
class Standing:
    """One strategy's results over the seeds: each figure's mean and 95% interval, and its
    paired differences.

    `vs_reference` maps each of PAIRED_FIGURES to the mean over seeds of (this strategy's
    figure − the reference's) and its paired t interval; it is empty for the reference.
    `profit_vs_mean_usd` is the same for the profit per provider minus the market's mean
    profit per provider (the replicator's fitness gap). `gpus` is the mean over seeds of the
    strategy's GPUs; `providers_by_population` says where its providers come from.
    """

    strategy: str
    share: float
    providers: int
    gpus: float
    seeds: int
    profit_per_provider_usd: Interval
    win_rate: Interval
    utilization: Interval
    regret: Interval | None
    reference: str
    vs_reference: dict[str, Interval]
    profit_vs_mean_usd: Interval
    providers_by_population: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each figure and difference a labelled, clipped interval over the
        seeds (`labelled_interval`), NaN as null."""
        record = asdict(self)
        for name in FIGURES:
            record[name] = labelled_interval(getattr(self, name), self.seeds, RANGES[name])
        record["vs_reference"] = {
            name: labelled_interval(figure, self.seeds, _difference_range(name))
            for name, figure in self.vs_reference.items()}
        record["profit_vs_mean_usd"] = labelled_interval(self.profit_vs_mean_usd, self.seeds,
                                                         None)
        return record


@dataclass(frozen=True)
class Leaderboard:
    """A tournament's results: standings best profit per provider first, the strategies in
    the order named, the reference of the paired differences, the seeds every strategy was
    measured on, the market's mean profit per provider, and warnings about populations that
    do not split evenly."""

    standings: list[Standing]
    lineup: list[str]
    reference: str
    seeds: list[int]
    mean_profit_per_provider_usd: Interval
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, label: str) -> Standing:
        for standing in self.standings:
            if standing.strategy == label:
                return standing
        raise KeyError(label)

    def to_dict(self) -> dict[str, Any]:
        return {"standings": [s.to_dict() for s in self.standings], "lineup": self.lineup,
                "reference": self.reference, "seeds": self.seeds,
                "mean_profit_per_provider_usd": labelled_interval(
                    self.mean_profit_per_provider_usd, len(self.seeds), None),
                "warnings": self.warnings}


def interval(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean of `values` (NaNs left out) and its 95% Student's t interval; the bounds are NaN
    below two values.

    >>> [round(x, 4) for x in interval([1.0, 2.0, 3.0])]
    [2.0, -0.4841, 4.4841]
    """
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return _NO_INTERVAL
    mean = float(data.mean())
    if data.size < 2:
        return (mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.975, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return (mean, mean - half, mean + half)


def significant(figure: Interval | None) -> bool:
    """True when the interval excludes 0: the seeds tell the difference from nothing."""
    return figure is not None and (figure[1] > 0 or figure[2] < 0)


def _per_seed(runs: list[dict[str, dict[str, float]]], label: str) -> dict[str, np.ndarray]:
    """Each figure of `label`, one value per seed (NaN where it has no provider or bid)."""
    def ratio(top: str, bottom: str) -> np.ndarray:
        return np.array([r[label][top] / r[label][bottom] if r[label][bottom] else math.nan
                         for r in runs])

    return {"profit_per_provider_usd": ratio("profit", "providers"),
            "win_rate": ratio("wins", "bids"), "utilization": ratio("busy", "gpus"),
            "regret": np.array([r[label]["regret"] for r in runs])}


def _mean_profit(runs: list[dict[str, dict[str, float]]]) -> np.ndarray:
    """The market's profit per provider, per seed: all strategies' profit over their
    providers."""
    return np.array([sum(r[k]["profit"] for k in r) / max(1, sum(r[k]["providers"] for k in r))
                     for r in runs])


def leaderboard(runs: list[dict[str, dict[str, float]]], labels: list[str],
                shares: Sequence[float], reference: str, seeds: list[int],
                warnings: list[str] | None = None,
                where: Mapping[str, dict[str, int]] | None = None) -> Leaderboard:
    """The standings from per-seed results (`run_one`'s, one per seed, in seed order);
    `where` gives each strategy's providers by population."""
    figures = {label: _per_seed(runs, label) for label in labels}
    market_mean = _mean_profit(runs)
    total = sum(shares)
    standings = []
    for label, share in zip(labels, shares, strict=True):
        mine = figures[label]
        regret = mine["regret"]
        standings.append(Standing(
            label, share / total, int(runs[0][label]["providers"]),
            float(np.mean([r[label]["gpus"] for r in runs])), len(runs),
            interval(mine["profit_per_provider_usd"]), interval(mine["win_rate"]),
            interval(mine["utilization"]),
            None if np.isnan(regret).all() else interval(regret), reference,
            {} if label == reference else
            {name: interval(mine[name] - figures[reference][name]) for name in PAIRED_FIGURES},
            interval(mine["profit_per_provider_usd"] - market_mean),
            dict((where or {}).get(label, {}))))
    ranked = sorted(standings, key=lambda s: -np.nan_to_num(s.profit_per_provider_usd[0],
                                                            nan=-np.inf))
    return Leaderboard(ranked, list(labels), reference, seeds, interval(market_mean),
                       list(warnings or []))


# ----------------------------------------------------------------------------- playing

def _seeds(root: int, count: int) -> list[int]:
    return [int(child.generate_state(1)[0])
            for child in np.random.SeedSequence(root).spawn(count)]


def _run(args: tuple[dict[str, Any], int]) -> dict[str, dict[str, float]]:
    data, seed = args
    return run_one(validate_scenario(data), seed)


def resolve_reference(labels: list[str], reference: str | None) -> str:
    """The reference strategy's label: the first competitor unless `reference` names one
    (by label, or by strategy name when only one competitor has it). Raises ScenarioError."""
    if reference is None:
        return labels[0]
    if reference in labels:
        return reference
    named = [label for label in labels if label.split("{", 1)[0] == reference]
    if len(named) == 1:
        return named[0]
    raise ScenarioError(f"--reference: expected one of the strategies ({', '.join(labels)}), "
                        f"got {reference!r}")


def play(scenario: Scenario, strategies: Sequence[str | Mapping[str, Any]],
         seeds: int = DEFAULT_SEEDS, seed: int = 1, workers: int | None = None,
         shares: Sequence[float] | None = None, reference: str | None = None,
         on_progress: Callable[[int, int], None] | None = None) -> Leaderboard:
    """Run the tournament: `seeds` markets (in parallel on `workers` processes, one per core
    by default), every strategy in each; the leaderboard, best profit per provider first.
    `on_progress(done, total)` is called as markets finish. Raises ScenarioError (one line)
    on bad input."""
    if seeds < 1:
        raise ScenarioError("--seeds: expected at least 1")
    split = tournament_scenario(scenario, strategies, shares)
    assert split.tournament is not None
    labels = split.tournament.labels()
    chosen = resolve_reference(labels, reference)
    run_seeds = _seeds(seed, seeds)
    jobs = [(split.model_dump(), run_seed) for run_seed in run_seeds]
    runs = map_in_order(_run, jobs, workers, on_progress)
    return leaderboard(runs, labels, split.tournament.shares or [1.0] * len(labels), chosen,
                       run_seeds, split_warnings(split), _providers_by_population(split))


def _providers_by_population(split: Scenario) -> dict[str, dict[str, int]]:
    tournament = split.tournament
    assert tournament is not None
    labels = tournament.labels()
    shares = tournament.shares or [1.0] * len(labels)
    where: dict[str, dict[str, int]] = {label: {} for label in labels}
    for population in split.providers:
        for label, part in zip(labels, split_counts(population.count, list(shares)),
                               strict=True):
            where[label][population.name] = part
    return where


def replicate(shares: Sequence[float], gaps: Sequence[Interval], scale: float,
              rate: float = 1.0) -> list[float]:
    """The next generation's shares (see the module docstring): each share times
    exp(rate · gap / scale) where the gap's interval excludes 0, else unchanged; then
    renormalized.

    >>> [round(s, 4) for s in replicate([0.5, 0.5], [(10, 5, 15), (-10, -15, -5)], 20)]
    [0.7311, 0.2689]
    >>> replicate([0.5, 0.5], [(10, -5, 25), (-10, -25, 5)], 20)
    [0.5, 0.5]
    """
    exponents = np.array([rate * gap[0] / scale if significant(gap) else 0.0 for gap in gaps])
    weights = np.asarray(shares, dtype=float) * np.exp(exponents - exponents.max())
    return (weights / weights.sum()).tolist()


def evolve(scenario: Scenario, strategies: Sequence[str | Mapping[str, Any]],
           generations: int, seeds: int = DEFAULT_SEEDS, seed: int = 1,
           workers: int | None = None, rate: float = 1.0,
           reference: str | None = None,
           on_progress: Callable[[int, int], None] | None = None) -> list[Leaderboard]:
    """Replicator dynamics over `generations`: each generation plays a tournament with the
    current shares (equal at first), then shares move on the significant fitness gaps only
    (see the module docstring). Returns each generation's leaderboard. `on_progress(done,
    total)` counts markets over all generations."""
    if generations < 1:
        raise ScenarioError("--evolve: expected at least 1 generation")
    split = tournament_scenario(scenario, strategies)
    assert split.tournament is not None
    labels = split.tournament.labels()
    shares = [1.0 / len(labels)] * len(labels)
    history = []
    for generation, generation_seed in enumerate(_seeds(seed, generations)):
        def tell(done: int, _total: int, before: int = generation * seeds) -> None:
            if on_progress is not None:
                on_progress(before + done, generations * seeds)

        board = play(scenario, strategies, seeds, generation_seed, workers, shares, reference,
                     on_progress=tell)
        history.append(board)
        if generation == generations - 1:
            break
        by_label = {s.strategy: s for s in board.standings}
        profits = np.array([np.nan_to_num(by_label[k].profit_per_provider_usd[0])
                            for k in labels])
        scale = abs(board.mean_profit_per_provider_usd[0]) + float(profits.std()) or 1.0
        shares = replicate(shares, [by_label[k].profit_vs_mean_usd for k in labels], scale,
                           rate)
    return history

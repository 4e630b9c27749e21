"""Tournaments: bid strategies compete in the same market, over many seeds.

Every provider population of the scenario is split among the strategies (the same archetype
mix for each), the market runs once per seed, in parallel on the machine's cores, and each
strategy's providers are scored: profit per provider, win rate (leases won per bid placed),
utilization, and, for learning strategies that report it, regret. The leaderboard gives each
figure's mean over seeds with a 95% confidence interval (Student's t).

With `evolve`, the strategies' shares of the providers change from one generation to the
next with their relative profit (replicator dynamics, in its exponential form, which keeps
every share positive): share ∝ share × exp(rate × (profit − mean profit) / (|mean profit| +
spread)), where profit is per provider and `spread` the standard deviation across strategies.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from market import registry
from market.engine import Market
from market.events import BidsPlaced, LeaseCreated
from market.scenario import Scenario, ScenarioError, validate_scenario

FIGURES = ("profit_per_provider_usd", "win_rate", "utilization", "regret")


@dataclass(frozen=True, slots=True)
class Standing:
    """One strategy's results: each figure's mean over seeds and its 95% interval."""

    strategy: str
    share: float
    providers: int
    seeds: int
    profit_per_provider_usd: tuple[float, float, float]  # mean, low, high
    win_rate: tuple[float, float, float]
    utilization: tuple[float, float, float]
    regret: tuple[float, float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_counts(count: int, shares: list[float]) -> list[int]:
    """Split `count` providers by `shares` (largest remainder): the parts add up to count."""
    total = sum(shares)
    exact = [count * share / total for share in shares]
    parts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in by_remainder[: count - sum(parts)]:
        parts[i] += 1
    return parts


def split_scenario(scenario: Scenario, strategies: list[str],
                   shares: list[float] | None = None) -> Scenario:
    """The scenario with every provider population split among `strategies` by `shares`
    (equal by default); the parts are named `population/strategy`."""
    if not strategies:
        raise ScenarioError("--strategies: name at least one strategy")
    if len(set(strategies)) != len(strategies):
        raise ScenarioError("--strategies: each strategy once")
    for name in strategies:
        try:
            registry.load("strategies", name)
        except registry.UnknownName as error:
            raise ScenarioError(f"--strategies: {error}") from None
    shares = shares or [1.0] * len(strategies)
    data = scenario.model_dump()
    populations = []
    for population in data["providers"]:
        for strategy, count in zip(strategies, split_counts(population["count"], shares),
                                   strict=True):
            populations.append({**population, "name": f"{population['name']}/{strategy}",
                                "count": count, "strategy": {"name": strategy, "params": {}}})
    data["providers"] = populations
    return validate_scenario(data, f"tournament over {scenario.name!r}")


def _strategy_of_population(name: str) -> str:
    return name.rsplit("/", 1)[1]


def run_one(scenario: Scenario, seed: int) -> dict[str, dict[str, float]]:
    """One market run: each strategy's profit, bids, wins, utilization and regret."""
    market = Market(scenario, seed=seed, record=False)
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
    names = market.pool.population_names
    results: dict[str, dict[str, float]] = {}
    for index, name in enumerate(names):
        strategy = _strategy_of_population(name)
        row = summary["populations"].get(name)
        into = results.setdefault(strategy, {"profit": 0.0, "providers": 0, "bids": 0,
                                             "wins": 0, "busy": 0.0, "gpus": 0,
                                             "regret": math.nan})
        if row is not None:
            into["profit"] += row["profit_usd"]
            into["providers"] += row["providers"]
            into["busy"] += row["utilization"] * row["gpus"]
            into["gpus"] += row["gpus"]
        into["bids"] += bids[index]
        into["wins"] += wins[index]
        regret = getattr(market.strategies[index], "regret", None)
        if callable(regret):
            value = float(regret())
            into["regret"] = value if math.isnan(into["regret"]) else into["regret"] + value
    return results


def _interval(values: list[float]) -> tuple[float, float, float]:
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if data.size < 2:
        return (mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.975, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return (mean, mean - half, mean + half)


def _seeds(root: int, count: int) -> list[int]:
    return [int(child.generate_state(1)[0])
            for child in np.random.SeedSequence(root).spawn(count)]


def _run(args: tuple[dict[str, Any], int]) -> dict[str, dict[str, float]]:
    data, seed = args
    return run_one(validate_scenario(data), seed)


def play(scenario: Scenario, strategies: list[str], seeds: int = 8, seed: int = 1,
         workers: int | None = None, shares: list[float] | None = None) -> list[Standing]:
    """Run the tournament: `seeds` markets in parallel, and the leaderboard, best first."""
    if seeds < 1:
        raise ScenarioError("--seeds: expected at least 1")
    split = split_scenario(scenario, strategies, shares)
    jobs = [(split.model_dump(), run_seed) for run_seed in _seeds(seed, seeds)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            runs = list(pool.map(_run, jobs))
    else:
        runs = [_run(job) for job in jobs]
    shares = shares or [1.0] * len(strategies)
    standings = []
    for strategy, share in zip(strategies, shares, strict=True):
        rows = [run[strategy] for run in runs]
        providers = rows[0]["providers"]
        standings.append(Standing(
            strategy, share / sum(shares), providers, seeds,
            _interval([r["profit"] / r["providers"] if r["providers"] else math.nan
                       for r in rows]),
            _interval([r["wins"] / r["bids"] if r["bids"] else math.nan for r in rows]),
            _interval([r["busy"] / r["gpus"] if r["gpus"] else math.nan for r in rows]),
            None if all(math.isnan(r["regret"]) for r in rows)
            else _interval([r["regret"] for r in rows]),
        ))
    return sorted(standings, key=lambda s: -np.nan_to_num(s.profit_per_provider_usd[0],
                                                          nan=-np.inf))


def evolve(scenario: Scenario, strategies: list[str], generations: int, seeds: int = 4,
           seed: int = 1, workers: int | None = None,
           rate: float = 1.0) -> list[list[Standing]]:
    """Replicator dynamics over `generations`: each generation plays a tournament with the
    current shares, then shares move toward the more profitable strategies."""
    if generations < 1:
        raise ScenarioError("--evolve: expected at least 1 generation")
    shares = [1.0 / len(strategies)] * len(strategies)
    history = []
    for generation, generation_seed in enumerate(_seeds(seed, generations)):
        standings = play(scenario, strategies, seeds, generation_seed, workers, shares)
        history.append(standings)
        if generation == generations - 1:
            break
        profit = {s.strategy: s.profit_per_provider_usd[0] for s in standings}
        fitness = np.array([np.nan_to_num(profit[name]) for name in strategies])
        scale = abs(float(fitness.mean())) + float(fitness.std()) or 1.0
        weights = np.array(shares) * np.exp(rate * (fitness - fitness.mean()) / scale)
        shares = (weights / weights.sum()).tolist()
    return history

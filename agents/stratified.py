"""The `stratified` population: a tournament's strategies share one market on equal terms.

Every provider population of the scenario is drawn once, from the random stream an ordinary
run draws it from (`providers.<name>.inventory`), so a tournament on a seed has exactly the
providers of a plain run on that seed. Each population is then dealt among the strategies of
the scenario's `[tournament]` by their shares, stratified so that every strategy gets as
nearly as possible the same hardware and costs (`deal`):

1. **Counts by stratum.** A stratum is one (GPU model, GPU count). Each strategy's total is
   its largest-remainder share of the population (`market.experiments.tournament.split_counts`); of
   each stratum it gets its proportional share rounded down, plus at most one of the
   stratum's leftovers (so with equal shares the counts of every stratum differ by at most
   one). Leftovers go out biggest machines first, each to the strategies holding the fewest
   machines of that model for their share (then the fewest of its GPUs, then of all GPUs),
   so that models and GPU totals come out as even as the machines allow.
2. **Costs within a stratum.** The stratum's providers are dealt in order of cost: a
   strategy with `c` of its `L` providers gets the cost ranks nearest `(i + ½)·L/c`,
   i = 0..c−1, ties taken in an order that rotates from one rank (and one stratum) to the
   next, so that no strategy gets the cheapest provider of every block.

Each strategy's part of a population is a population of the market named
`population/strategy` (the tournament's label), bidding with its own strategy instance whose
parameters `Tournament.params_for` resolves. Tenants start as in the default population.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.populate import start_tenants
from agents.providers import build_rows
from market import registry
from market.experiments.tournament import split_counts
from market.scenario import ProviderPopulation, Tournament

if TYPE_CHECKING:
    from market.builder import Market


def populate(market: Market) -> None:
    """Add the scenario's provider populations dealt among the tournament's strategies, and
    start its tenants."""
    tournament = market.scenario.tournament
    if tournament is None:
        raise ValueError("tournament: the stratified population needs a [tournament] table")
    labels = tournament.labels()
    shares = tournament.shares or [1.0] * len(labels)
    for index, population in enumerate(market.scenario.providers):
        rng = market.streams.get(f"providers.{population.name}.inventory")
        rows = build_rows(population, index, market.catalog, rng)
        owners = deal(np.array([row.model for row in rows], dtype=np.int64),
                      np.array([row.gpus for row in rows], dtype=np.int64),
                      np.array([row.cost_basis_usd_per_gpu_hour for row in rows], dtype=float),
                      shares)
        for competitor, label in enumerate(labels):
            part = [row for row, owner in zip(rows, owners, strict=True) if owner == competitor]
            if not part:
                continue
            number = market.pool.add_population(f"{population.name}/{label}",
                                                population.archetype)
            for row in part:
                row.population = number
            market.add_providers(part, _strategy(tournament, competitor, population))
    start_tenants(market)


def _strategy(tournament: Tournament, competitor: int, population: ProviderPopulation) -> Any:
    name = tournament.strategies[competitor].name
    params = tournament.params_for(competitor, population.strategy)
    try:
        return registry.load("strategies", name)(**params)
    except (TypeError, ValueError) as error:
        raise ValueError(f"tournament.strategies.{competitor}.params: {name} in population "
                         f"{population.name!r}: {error}") from None


def deal(models: np.ndarray, gpus: np.ndarray, costs_usd_per_gpu_hour: np.ndarray,
         shares: Sequence[float]) -> np.ndarray:
    """Which strategy (index into `shares`) gets each provider, stratified by GPU model, GPU
    count and cost per GPU-hour (see the module docstring). Deterministic: it draws nothing.

    >>> deal(np.array([0, 0, 0, 0, 1, 1]), np.array([8, 8, 8, 8, 1, 1]),
    ...      np.array([1.0, 2.0, 3.0, 4.0, 0.5, 0.6]), [1, 1]).tolist()
    [0, 1, 1, 0, 1, 0]
    """
    count = len(costs_usd_per_gpu_hour)
    owners = np.zeros(count, dtype=np.int64)
    if count == 0:
        return owners
    order = np.lexsort((costs_usd_per_gpu_hour, gpus, models))
    models, gpus = models[order], gpus[order]
    starts = [0, *(np.flatnonzero(np.diff(models) | np.diff(gpus)) + 1).tolist()]
    bounds = list(zip(starts, [*starts[1:], count], strict=True))
    strata = [_Stratum(int(models[a]), int(gpus[a]), b - a) for a, b in bounds]
    counts = _stratum_counts(strata, split_counts(count, list(shares)))
    dealt = np.zeros(count, dtype=np.int64)
    for number, ((start, stop), mine) in enumerate(zip(bounds, counts, strict=True)):
        dealt[start:stop] = _spread_by_cost(mine, number)
    owners[order] = dealt
    return owners


@dataclass(frozen=True, slots=True)
class _Stratum:
    model: int
    gpus: int
    size: int


def _stratum_counts(strata: list[_Stratum], totals: list[int]) -> list[list[int]]:
    """How many providers of each stratum each strategy gets: its proportional share rounded
    down, plus at most one of the stratum's leftovers, so that every strategy reaches its
    total. Leftovers go out biggest machines first, each to the strategies with the fewest
    machines of that model for their share (then the fewest of its GPUs, then of all GPUs),
    as long as the rest can still be dealt (Gale–Ryser); otherwise to those with the most
    providers still owed, which always can (Ryser's construction)."""
    count = sum(totals)
    counts = [[s.size * total // count for total in totals] for s in strata]
    owed = [total - sum(row[k] for row in counts) for k, total in enumerate(totals)]
    left = [s.size - sum(row) for s, row in zip(strata, counts, strict=True)]
    model_gpus: dict[int, list[int]] = {}
    model_count: dict[int, list[int]] = {}
    all_gpus = [0] * len(totals)
    for s, row in zip(strata, counts, strict=True):
        held = model_gpus.setdefault(s.model, [0] * len(totals))
        machines = model_count.setdefault(s.model, [0] * len(totals))
        for k, n in enumerate(row):
            held[k] += n * s.gpus
            machines[k] += n
            all_gpus[k] += n * s.gpus
    for i in sorted(range(len(strata)), key=lambda i: (-strata[i].gpus, strata[i].model, i)):
        if not left[i]:
            continue
        stratum, held = strata[i], model_gpus[strata[i].model]
        machines = model_count[stratum.model]
        owing = [k for k in range(len(totals)) if owed[k] > 0]
        fewest = sorted(owing, key=lambda k: (machines[k] / totals[k], held[k] / totals[k],
                                              all_gpus[k] / totals[k], k))
        chosen = fewest[:left[i]]
        rest = [n for j, n in enumerate(left) if j != i]
        if not _can_deal(rest, [o - (k in chosen) for k, o in enumerate(owed)]):
            chosen = sorted(owing, key=lambda k: (-owed[k], fewest.index(k)))[:left[i]]
        for k in chosen:
            counts[i][k] += 1
            owed[k] -= 1
            held[k] += stratum.gpus
            machines[k] += 1
            all_gpus[k] += stratum.gpus
        left[i] = 0
    return counts


def _can_deal(rows: list[int], columns: list[int]) -> bool:
    """Gale–Ryser: is there a 0/1 matrix with these row and column sums (each stratum's
    leftovers to distinct strategies, each strategy its providers owed)?"""
    if sum(rows) != sum(columns) or min(columns, default=0) < 0:
        return False
    ordered = sorted(columns, reverse=True)
    return all(sum(ordered[:k]) <= sum(min(r, k) for r in rows)
               for k in range(1, len(ordered) + 1))


def _spread_by_cost(counts: list[int], stratum: int) -> list[int]:
    """Strategy of each cost rank of a stratum where strategy k has `counts[k]` providers:
    k's i-th provider goes to the rank nearest (i + ½)·L/counts[k]; ties rotate with i and
    with the stratum's number."""
    size, strategies = sum(counts), len(counts)
    slots = [(Fraction((2 * i + 1) * size, 2 * c), (k - i - stratum) % strategies, k)
             for k, c in enumerate(counts) for i in range(c)]
    return [k for _, _, k in sorted(slots)]


__all__ = ["deal", "populate"]

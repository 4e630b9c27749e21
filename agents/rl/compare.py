"""A learned policy against its population's baseline on held-out paired seeds.

For each seed, two markets of the same scenario: one as written (the population bids with its
own strategy, the baseline: `cost_plus{markup=0.855}` in `learn`) and one where the population
bids with `learned{path=...}`; every other population is the same in both, with the same
draws (each agent has its own random stream), so the per-seed difference of the population's
short-run profit removes what the two markets share (demand, rivals' inventories). The mean
paired difference has a 95% Student's t interval (`market.experiments.tournament.interval`);
an interval that excludes 0 means the seeds tell the two apart. Seeds must be held out: none
of them may have been a training seed (`check_held_out`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from market.builder import Market
from market.experiments.fanout import map_in_order
from market.experiments.intervals import labelled
from market.experiments.tournament import Interval, interval, significant
from market.scenario import Scenario, ScenarioError, validate_scenario

FIGURE = "short_run_profit_usd"
"""The population's figure compared: what the environments' return is (USD)."""


@dataclass(frozen=True)
class Comparison:
    """Per seed, the population's short-run profit (USD) with the learned policy and with
    the baseline, and the mean paired difference (learned − baseline) with its 95% t
    interval."""

    population: str
    baseline: str
    policy: str
    seeds: list[int]
    learned_usd: list[float]
    baseline_usd: list[float]
    difference_usd: Interval

    @property
    def excludes_zero(self) -> bool:
        """Whether the difference's 95% interval excludes 0."""
        return significant(self.difference_usd)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the difference as a labelled interval (`intervals.labelled`)."""
        return {"population": self.population, "baseline": self.baseline,
                "policy": self.policy, "figure": FIGURE, "seeds": self.seeds,
                "learned_usd": self.learned_usd, "baseline_usd": self.baseline_usd,
                "difference_usd": labelled(*self.difference_usd, method="student_t",
                                           n=len(self.seeds)),
                "excludes_zero": self.excludes_zero}


def with_policy(scenario: Scenario, population: str, path: str | Path) -> Scenario:
    """`scenario` with `population` bidding by the policy file at `path` (strategy
    `learned`). Raises ScenarioError (one line) on an unknown population or a bad file."""
    return with_strategy(scenario, population,
                         {"name": "learned", "params": {"path": str(path)}})


def with_strategy(scenario: Scenario, population: str, strategy: dict[str, Any]) -> Scenario:
    """`scenario` with `population` bidding by `strategy` (`{"name", "params"}`): another
    baseline than its own. Raises ScenarioError (one line)."""
    data = scenario.model_dump()
    names = [p["name"] for p in data["providers"]]
    if population not in names:
        raise ScenarioError(f"population: expected one of {', '.join(names)}, "
                            f"got {population!r}")
    data["providers"][names.index(population)]["strategy"] = dict(strategy)
    return validate_scenario(data)


def check_held_out(seeds: Sequence[int], train_seeds: Sequence[int]) -> None:
    """Raise ValueError unless `seeds` are distinct and none is a training seed."""
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"held-out seeds: expected distinct seeds, got {list(seeds)}")
    shared = sorted(set(seeds) & set(train_seeds))
    if shared:
        raise ValueError(f"held-out seeds: {shared} were training seeds; a comparison on them "
                         "would flatter the policy")


def _profit(job: tuple[dict[str, Any], str, int]) -> float:
    data, population, seed = job
    summary = Market(validate_scenario(data), seed=seed, record=False).run().summary
    return float(summary["populations"][population][FIGURE])


def run_profits(scenario: Scenario, population: str, seeds: Sequence[int], *,
                workers: int | None = 1,
                on_progress: Callable[[int, int], None] | None = None) -> list[float]:
    """`population`'s short-run profit (USD) in the market of `scenario` on each seed."""
    return map_in_order(_profit, [(scenario.model_dump(), population, int(seed))
                                  for seed in seeds], workers, on_progress)


def compare(scenario: Scenario, population: str, policy_path: str | Path,
            seeds: Sequence[int], *, workers: int | None = 1,
            on_progress: Callable[[int, int], None] | None = None) -> Comparison:
    """The policy at `policy_path` against `population`'s own strategy in `scenario`, on
    `seeds` (2 markets each; on `workers` processes, None: one per core). Raises
    ScenarioError (one line) on an unknown population or a bad policy file."""
    if len(seeds) < 2:
        raise ValueError(f"held-out seeds: expected at least 2 for an interval, got {len(seeds)}")
    learned = with_policy(scenario, population, policy_path)
    ref = next(p.strategy for p in scenario.providers if p.name == population)
    jobs = [(market.model_dump(), population, int(seed))
            for seed in seeds for market in (learned, scenario)]
    profits = map_in_order(_profit, jobs, workers, on_progress)
    mine, theirs = profits[0::2], profits[1::2]
    return Comparison(population, ref.label(), str(policy_path),
                      [int(s) for s in seeds], mine, theirs,
                      interval([a - b for a, b in zip(mine, theirs, strict=True)]))

"""Benchmark: the market inside the Gymnasium environment against the plain run. A day of
the `learn` scenario, run plainly (the learner's cost-plus strategy) and through
`ProviderBidding` (a constant markup action, so that both markets are the same market), in
the same process one after the other; auctions per second of each, the environment's steps
per second, and the ratio (the issue's bar: at least 0.5 of the plain run) are printed.
Run with `make bench`."""

from __future__ import annotations

import time

import numpy as np

from agents.rl.env import ProviderBidding
from agents.rl.parallel import ProviderBiddingParallel
from market import Market, load_scenario
from market.events import OrderOpened

DAY = ["duration_days=1"]
MARKUP = 0.3


class _Auctions:
    """Counts the auctions (orders opened) of a market."""

    def __init__(self, market) -> None:
        self.count = 0
        market.subscribe(self._opened, kinds=(OrderOpened,))

    def _opened(self, _event) -> None:
        self.count += 1


def plain() -> tuple[float, int]:
    scenario = load_scenario("learn", [*DAY, f"providers.3.strategy.params.markup={MARKUP}"])
    start = time.perf_counter()
    market = Market(scenario, seed=1, record=False)
    auctions = _Auctions(market)
    market.run()
    return time.perf_counter() - start, auctions.count


def in_env(decision: str) -> tuple[float, int, int]:
    env = ProviderBidding(overrides=DAY, decision=decision, interval_s=3600.0)
    action = np.full(len(env.space.gpu_models), MARKUP, np.float32)
    start = time.perf_counter()
    env.reset(seed=1)
    auctions = _Auctions(env.market)
    steps = 0
    while True:
        steps += 1
        if env.step(action)[3]:
            break
    return time.perf_counter() - start, auctions.count, steps


def in_parallel_env() -> tuple[float, int, int]:
    env = ProviderBiddingParallel("learn", ("learner", "datacenter"), overrides=DAY,
                                  decision="order")
    actions = {agent: np.full(len(env.space.gpu_models), MARKUP, np.float32)
               for agent in env.possible_agents}
    start = time.perf_counter()
    env.reset(seed=1)
    auctions = _Auctions(env.session.market)
    steps = 0
    while env.agents:
        env.step(actions)
        steps += 1
    return time.perf_counter() - start, auctions.count, steps


def test_environment_against_the_plain_run() -> None:
    # Warm up: imports and first calls would otherwise be charged to whichever runs first.
    Market(load_scenario("learn", ["duration_days=0.05"]), seed=1, record=False).run()
    ProviderBidding(overrides=["duration_days=0.05"]).reset(seed=1)
    plain_s, plain_auctions = plain()
    plain_rate = plain_auctions / plain_s
    print()
    print(f"plain run           {plain_s:7.2f} s  {plain_auctions:,} auctions  "
          f"{plain_rate:8,.0f} auctions/s")
    ratios = []
    for label, (seconds, auctions, steps) in (
            ("env, per order", in_env("order")), ("env, hourly", in_env("interval")),
            ("parallel, 2 agents", in_parallel_env())):
        rate = auctions / seconds
        ratios.append(rate / plain_rate)
        print(f"{label:19} {seconds:7.2f} s  {auctions:,} auctions  {rate:8,.0f} auctions/s"
              f"  {steps / seconds:8,.0f} steps/s  ({steps:,} steps)  "
              f"{rate / plain_rate:.2f} x the plain run")
    assert min(ratios) >= 0.5, "the environment runs the market at less than half speed"

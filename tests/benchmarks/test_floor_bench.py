"""Benchmark: where an order's time goes, from the full market down to the lifecycle's floor.

One day of the `bench` scenario, run three ways in one process, each against the bare SimPy
skeleton of its own orders (`test_bench.bare_loop`: arrival, bidding window, lease):

1. the full market (`Market`: welfare, metrics and result tables attached, `record=False`);
2. the engine alone (`Engine` with the scenario's population, no observer on the bus);
3. the engine alone with every provider on a fixed markup on cost (`cost_plus`, whose asks are
   one integer array read once, so no strategy is called per order).

The third is the floor of the design the engine keeps: an order opened by its tenant's
process, checked, escrowed, matched, its bids sent and placed, its auction closed, its lease
run to its end and settled, each step in Python per order. Its ratio to the skeleton bounds
what any work on observers or strategies can reach. Run with `make bench`.
"""

from __future__ import annotations

import time

import numpy as np

from market import Market, load_scenario
from market.core.engine import Engine
from market.registry import load
from tests.benchmarks.test_bench import bare_loop

DAYS = 1.0
FIXED_MARKUP = [f'providers.{index}.strategy={{ name = "cost_plus", params = {{ markup = 1.5 }} }}'
                for index in range(3)]


def timed(engine: Engine) -> tuple[float, int, float]:
    """Run `engine` to its end: wall seconds, orders posted, and the skeleton's seconds for
    the same orders (arrival, window, lease span as it ran)."""
    created: list[float] = []
    lease_of: dict[int, float] = {}
    started: dict[int, tuple[int, float]] = {}

    def on_event(event) -> None:
        kind = type(event).__name__
        if kind == "OrderOpened":
            created.append(event.time_s)
        elif kind == "LeaseCreated":
            started[event.lease_id] = (event.order_id, event.time_s)
        elif kind == "LeaseClosed" and event.lease_id in started:
            order, start_s = started.pop(event.lease_id)
            lease_of[order] = event.time_s - start_s

    unsubscribe = engine.subscribe(on_event)
    start = time.perf_counter()
    engine.advance()
    wall_s = time.perf_counter() - start
    unsubscribe()
    horizon = engine.horizon_s
    for order, start_s in started.values():  # still running at the end
        lease_of[order] = horizon - start_s
    spans = np.full(len(created), np.nan)
    for order, span in lease_of.items():
        if order < spans.size:
            spans[order] = span
    bare_s = bare_loop(np.asarray(created), engine.rules.bidding_window_s, spans)
    return wall_s, len(created), bare_s


def engine_alone(overrides: list[str]) -> Engine:
    scenario = load_scenario("bench", [f"duration_days={DAYS}", *overrides])
    engine = Engine(scenario, seed=1)
    load("populations", scenario.population)(engine)
    return engine


def test_where_an_orders_time_goes() -> None:
    runs = {
        "full market": Market(load_scenario("bench", [f"duration_days={DAYS}"]), seed=1,
                              record=False),
        "engine, no observers": engine_alone([]),
        "engine, fixed markups": engine_alone(FIXED_MARKUP),
    }
    print(f"\nwhere an order's time goes (bench, {DAYS:g} day; ratio to the bare SimPy "
          "skeleton of the same orders):")
    ratios = {}
    for name, engine in runs.items():
        wall_s, orders, bare_s = timed(engine)
        ratios[name] = wall_s / bare_s
        print(f"  {name:24s} {wall_s:6.2f} s  {wall_s / orders * 1e6:6.1f} µs/order  "
              f"skeleton {bare_s / orders * 1e6:5.1f} µs/order  ratio {ratios[name]:5.1f} x")
        assert orders > 0
        assert engine.money()["money_conserved"]
    print(f"  the floor (fixed markups, no observers) is {ratios['engine, fixed markups']:.1f} x;"
          " the goal for the full market is 4 x")

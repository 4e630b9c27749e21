"""Benchmark: the full market on the `bench` scenario against a bare SimPy loop.

The baseline replays the same orders through SimPy with nothing but their event skeleton:
each order arrives, waits out its bidding window, and, if it was leased, runs its lease to its
end. Both are timed in the same process, one after the other, so the ratio survives a noisy
machine better than either time alone. Run with `make bench`.
"""

from __future__ import annotations

import time

import numpy as np
import simpy

from market import Market, load_scenario


def bare_loop(arrivals_s: np.ndarray, window_s: float, lease_s: np.ndarray) -> float:
    """Seconds of wall time SimPy takes for the skeleton; `lease_s` is NaN for unleased
    orders."""
    env = simpy.Environment()
    gaps = np.diff(arrivals_s, prepend=0.0).tolist()
    leases = lease_s.tolist()

    def order(index: int):
        yield env.timeout(window_s)
        if leases[index] == leases[index]:  # not NaN
            yield env.timeout(leases[index])

    def arrive():
        for index, gap in enumerate(gaps):
            yield env.timeout(gap)
            env.process(order(index))

    env.process(arrive())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def test_market_against_bare_simpy() -> None:
    scenario = load_scenario("bench")
    market = Market(scenario, seed=1)
    start = time.perf_counter()
    result = market.run()
    market_s = time.perf_counter() - start
    summary = result.summary
    assert summary["money_conserved"]

    orders = result.orders.to_pydict()
    leases = result.leases.to_pydict()
    horizon = market.horizon_s
    lease_span = {lid: (min(end if end is not None else horizon, horizon) - start_s)
                  for lid, start_s, end in zip(leases["lease_id"], leases["start_s"],
                                               leases["end_s"], strict=True)}
    created = np.array(orders["created_s"])
    spans = np.array([lease_span[lid] if lid is not None else np.nan
                      for lid in orders["lease_id"]])
    sort = np.argsort(created, kind="stable")
    bare_s = bare_loop(created[sort], scenario.market.bidding_window_s, spans[sort])

    count = summary["orders_posted"]
    print()
    print(f"bench scenario: {count:,} orders, {summary['providers_count']:,} providers, "
          f"{summary['leases_created']:,} leases, fill rate {summary['fill_rate']:.1%}")
    print(f"full market     {market_s:8.2f} s  ({market_s / count * 1e6:6.1f} µs per order)")
    print(f"bare SimPy loop {bare_s:8.2f} s  ({bare_s / count * 1e6:6.1f} µs per order)")
    print(f"ratio           {market_s / bare_s:8.1f} x  (goal: 4 x)")

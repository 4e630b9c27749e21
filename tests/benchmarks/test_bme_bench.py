"""Benchmark: what settling in AKT costs. Two days of the default market settled by
Burn-Mint Equilibrium (ACT top-ups, the oracle, the vault, checks every 10 minutes) and by
AEP-23's USD escrow, on the same seed, in the same process one after the other; the ratio is
printed. Run with `make bench`."""

from __future__ import annotations

import time

from market import Market, load_scenario


def timed(settlement: str) -> tuple[float, dict]:
    scenario = load_scenario("default", ["duration_days=2",
                                         f'market.settlement="{settlement}"'])
    start = time.perf_counter()
    summary = Market(scenario, seed=1, record=False).run().summary
    return time.perf_counter() - start, summary


def test_settling_in_akt_against_usd_escrow() -> None:
    # Warm up first: imports and first calls would otherwise be charged to whichever runs
    # first.
    for settlement in ("aep23", "bme"):
        Market(load_scenario("default", ["duration_days=0.05",
                                         f'market.settlement="{settlement}"']),
               seed=1, record=False).run()
    usd_s, usd = timed("aep23")
    akt_s, akt = timed("bme")
    assert usd["money_conserved"] and akt["money_conserved"]
    print()
    for label, seconds, summary in (("aep23", usd_s, usd), ("bme", akt_s, akt)):
        print(f"{label:6} {seconds:8.2f} s  ({summary['orders_posted']:,} orders, "
              f"{summary['leases_created']:,} leases)")
    print(f"bme    {akt['bme']['topups']:,} top-ups")
    print(f"ratio  {akt_s / usd_s:8.2f} x  (per order posted "
          f"{akt_s / akt['orders_posted'] / (usd_s / usd['orders_posted']):.2f} x: without the "
          f"fee, more orders fill at once)")

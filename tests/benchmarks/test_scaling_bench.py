"""Benchmarks of how the market scales: the cost of an order with ten times the providers, and
the peak memory of a run five times as long with its results streamed to disk. Run with
`make bench`.

Each figure is compared with a baseline measured in the same session (the same scenario at
its usual size), so the ratio survives a noisy, shared machine better than either figure.
Only what holds whatever the speed is asserted; the goals are printed.

Providers ×10: the `bench` scenario shortened to one day, then the same with every provider
population ten times as large, same seed and tenants. Jobs arrive from each tenant's stream,
seeded by name, so both runs see the same jobs; the orders posted differ by the re-posts of
expired orders, fewer when more providers bid. Only `Market.run()` is timed (building the
providers is not), with `record=False` in both, so no result table is kept.

Days ×5: the `default` scenario for one week and for five, each in a fresh interpreter, so
that the peak resident size (`VmHWM`) is that run's own, with the orders, leases and jobs
streamed to Parquet in a temporary folder (`out=`, `record=True`), as `gpumarket run --out`
does. `bench` is not used here: five of its weeks take about six minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from market import Market, load_scenario
from tests.benchmarks.peak import PEAK_KIB

# `providers.N.count` of market/scenarios/bench.toml: datacenter, home_rig, hyperscaler.
BENCH_PROVIDERS = (300, 690, 10)
PROVIDER_DAYS = 1.0
SCALE = 10
GOAL_COST_RATIO = 1.5

WEEK_DAYS = 7
WEEKS = 5
GOAL_PEAK_RATIO = 1.2


# ---------------------------------------------------------------- providers ×10


def run_bench_day(scale: int) -> tuple[dict[str, Any], float]:
    """The summary of one day of `bench` with every provider population `scale` times its
    size, and the wall seconds of `run()` alone."""
    overrides = [f"duration_days={PROVIDER_DAYS}"] + [
        f"providers.{index}.count={count * scale}"
        for index, count in enumerate(BENCH_PROVIDERS)]
    market = Market(load_scenario("bench", overrides), seed=1, record=False)
    start = time.perf_counter()
    result = market.run()
    return result.summary, time.perf_counter() - start


def test_ten_times_the_providers() -> None:
    runs = {scale: run_bench_day(scale) for scale in (1, SCALE)}

    print(f"\nproviders x{SCALE} (bench, {PROVIDER_DAYS:g} day, record=False, run() only):")
    per_order = {}
    for scale, (summary, seconds) in runs.items():
        orders, jobs = summary["orders_posted"], summary["jobs_posted"]
        per_order[scale] = seconds / orders * 1e6
        print(f"  {summary['providers_count']:6,} providers {seconds:6.1f} s "
              f"{per_order[scale]:7.1f} µs/order ({orders:,} orders for {jobs:,} jobs, "
              f"fill {summary['fill_rate']:.1%})  {seconds / jobs * 1e6:7.1f} µs/job")
    (small, small_s), (large, large_s) = runs[1], runs[SCALE]
    ratio = per_order[SCALE] / per_order[1]
    print(f"  ratio per order posted {ratio:5.2f} x  (goal: {GOAL_COST_RATIO} x), per job "
          f"{(large_s / large['jobs_posted']) / (small_s / small['jobs_posted']):5.2f} x")

    for summary, _ in runs.values():
        assert summary["money_conserved"]
        assert summary["orders_posted"] >= summary["jobs_posted"] > 0
    assert large["providers_count"] == SCALE * small["providers_count"]
    # The jobs come from the tenants' own seeded arrival streams, which the providers do not
    # touch: only a tenant leaving for a hyperscaler could change them (none does in a day).
    assert abs(large["jobs_posted"] - small["jobs_posted"]) <= 0.01 * small["jobs_posted"]


# ---------------------------------------------------------------- days ×5, peak memory


PEAK = """
import json, resource, sys, time
from market import Market, load_scenario
""" + PEAK_KIB + """scenario = load_scenario("default", [f"duration_days={sys.argv[1]}"])
market = Market(scenario, seed=1, out=sys.argv[2], record=True)
start = time.perf_counter()
summary = market.run().summary
wall_s = time.perf_counter() - start
print(json.dumps({"peak_kib": peak_kib(),
                  "wall_s": wall_s, "orders": summary["orders_posted"],
                  "leases": summary["leases_created"],
                  "money_conserved": summary["money_conserved"]}))
"""


def run_streamed(days: int, out: Path) -> dict[str, Any]:
    """One run of `default` for `days`, streamed to `out`, in a fresh interpreter: its peak
    resident size (KiB, as Linux reports it), wall seconds and counts."""
    done = subprocess.run([sys.executable, "-c", PEAK, str(days), str(out)],
                          capture_output=True, text=True, check=True, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_five_times_the_days_streamed(tmp_path) -> None:
    runs = {days: run_streamed(days, tmp_path / f"out-{days}")
            for days in (WEEK_DAYS, WEEKS * WEEK_DAYS)}

    print(f"\ndays x{WEEKS} (default, --out, record=True, peak RSS of a fresh process):")
    for days, run in runs.items():
        print(f"  {days:3d} days  peak {run['peak_kib'] / 1024:6.1f} MiB  "
              f"{run['wall_s']:6.1f} s  ({run['orders']:,} orders, {run['leases']:,} leases)")
    week, weeks = runs[WEEK_DAYS], runs[WEEKS * WEEK_DAYS]
    print(f"  ratio {weeks['peak_kib'] / week['peak_kib']:5.2f} x  (goal: {GOAL_PEAK_RATIO} x)"
          f" for {weeks['orders'] / week['orders']:.1f} x the orders")

    for days, run in runs.items():
        assert run["money_conserved"]
        # Every order and lease reached the Parquet files: the tables left the process.
        out = tmp_path / f"out-{days}"
        assert pq.ParquetFile(out / "orders.parquet").metadata.num_rows == run["orders"]
        assert pq.ParquetFile(out / "leases.parquet").metadata.num_rows == run["leases"]
    assert weeks["orders"] > 3 * week["orders"]

"""Benchmarks of sweeps: the speedup of two workers over one on a 200-run sweep, and the
sweep process's memory as the number of runs grows. Run with `make bench`.

Both workers run in one machine's cores, timed one after the other in the same session, so the
ratio survives a noisy machine better than either time. Memory is the peak resident size of
the sweeping process itself (its workers are separate processes), each size measured in a
fresh interpreter: the results of finished runs go to disk, so it should not grow with them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from market.experiments.execution import run_sweep
from market.experiments.sweep import load_sweep
from tests.benchmarks.peak import PEAK_KIB

SWEEP = """
name = "bench"
seed = 1
replications = {replications}
[grid]
"market.take_rate" = [0.05, 0.1, 0.15, 0.2]
[set]
duration_days = 1.0
"tenants.arrivals_per_hour" = 30
"providers.0.count" = 8
"providers.1.count" = 20
"providers.2.count" = 1
"""

PEAK = """
import json, resource, sys
from market.experiments.execution import run_sweep
from market.experiments.sweep import load_sweep
""" + PEAK_KIB + """run_sweep(load_sweep(sys.argv[1]), sys.argv[2], workers=2)
print(json.dumps(peak_kib()))
"""


def sweep_of(tmp_path: Path, runs: int) -> Path:
    path = tmp_path / f"bench-{runs}.toml"
    path.write_text(SWEEP.format(replications=runs // 4))
    return path


def test_two_workers_against_one(tmp_path) -> None:
    # The fork server that workers start from is started once per process: start it before
    # timing, so that neither timing includes it.
    run_sweep(load_sweep(sweep_of(tmp_path, 4)), tmp_path / "warm-up", workers=2)
    sweep = load_sweep(sweep_of(tmp_path, 200))
    seconds = {}
    for workers in (1, 2):
        start = time.perf_counter()
        progress = run_sweep(sweep, tmp_path / f"out-{workers}", workers=workers)
        seconds[workers] = time.perf_counter() - start
        assert (progress.done, progress.failed) == (200, 0)
    speedup = seconds[1] / seconds[2]
    print(f"\n200-run sweep, 1 worker   {seconds[1]:7.1f} s")
    print(f"200-run sweep, 2 workers  {seconds[2]:7.1f} s")
    print(f"speedup                   {speedup:7.2f} x  (goal: 1.8 x on two cores)")


def test_memory_flat_as_runs_grow(tmp_path) -> None:
    peaks = {}
    for runs in (40, 100, 200):
        done = subprocess.run([sys.executable, "-c", PEAK, str(sweep_of(tmp_path, runs)),
                               str(tmp_path / f"mem-{runs}")],
                              capture_output=True, text=True, check=True, timeout=1800)
        peaks[runs] = json.loads(done.stdout.strip().splitlines()[-1]) / 1024  # MiB
    print()
    for runs, mib in peaks.items():
        print(f"{runs:4d} runs: sweep process peak {mib:6.1f} MiB")
    print(f"growth from 40 to 200 runs: {peaks[200] / peaks[40]:.2f} x (flat: 1.0 x)")

"""Benchmark: replaying the Alibaba GPU v2023 pod list (8,152 tasks) for its full span against
the same number of synthetic jobs over the same span, in the same process one after the
other. Goal: the replay within 1.5 x the synthetic run's time. Run with `make bench`; skipped
where `../shared/data` is absent (failing in CI, where it must be)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from market import Market, load_scenario

POD_LIST = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
            / "alibaba-gpu-v2023" / "openb_pod_list_gpuspec33.csv")
GPU_MAP = {"P100": "rtx3090", "T4": "rtx3090", "V100M16": "a10", "V100M32": "a10",
           "G2": "l40s", "G3": "a100-40gb"}
#: The pod list's span: its last submission is at 12,901,761 s (149.3 days).
SPAN_DAYS = 149.4


def test_trace_replay_against_synthetic_jobs() -> None:
    if not POD_LIST.is_file():
        reason = f"real trace not found: {POD_LIST.name} (github.com/alibaba/clusterdata)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    trace = {"path": str(POD_LIST), "format": "alibaba_v2023", "gpu_map": GPU_MAP}
    # Building the market is timed too: it reads the whole trace once (checks, digest).
    start = time.perf_counter()
    replay = Market(load_scenario("default", [f"duration_days={SPAN_DAYS}"],
                                  values={"tenants.trace": trace}), seed=1, record=False)
    replayed = replay.run().summary
    replay_s = time.perf_counter() - start
    jobs = replayed["trace"]["arrived"]
    assert replayed["money_conserved"] and replayed["trace"]["beyond_end_of_run"] == 0

    # The same number of synthetic jobs, expected, spread evenly over the same span.
    rate = jobs / (SPAN_DAYS * 24)
    start = time.perf_counter()
    synthetic = Market(load_scenario("default", [
        f"duration_days={SPAN_DAYS}", f"tenants.arrivals_per_hour={rate}",
        "tenants.daily_amplitude=0", "tenants.spikes.per_week=0"]), seed=1, record=False)
    made = synthetic.run().summary
    synthetic_s = time.perf_counter() - start
    assert made["money_conserved"]

    print()
    print(f"trace replay    {replay_s:8.2f} s  ({jobs:,} jobs, {replayed['orders_posted']:,} "
          f"orders, {replayed['leases_created']:,} leases)")
    print(f"synthetic jobs  {synthetic_s:8.2f} s  ({made['jobs_posted']:,} jobs, "
          f"{made['orders_posted']:,} orders, {made['leases_created']:,} leases)")
    print(f"ratio           {replay_s / synthetic_s:8.2f} x  (goal: 1.5 x)")

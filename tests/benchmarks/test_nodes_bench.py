"""Benchmark: what placing replicas on machines costs. One day of the `interruptible` market
on a generated cluster of 1,200 machines (the v2023 cluster's shapes: 2-, 4- and 8-GPU
machines) in 150 providers, run with `placement = "per_node"` and with the same machines
pooled, in the same process one after the other; the ratio is printed. Run with
`make bench`."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from market import Market, load_scenario

#: Machines of each shape, in rack order: (count, GPUs, CPU millicores, memory MiB, model).
SHAPES = ((550, 8, 96_000, 786_432, "L40S"), (400, 2, 64_000, 262_144, "A10"),
          (150, 4, 96_000, 393_216, "A100-80GB"), (100, 8, 96_000, 786_432, "H100"))


def write_cluster(path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(("sn", "cpu_milli", "memory_mib", "gpu", "model"))
        for count, gpus, cpu, memory, model in SHAPES:
            out.writerows((f"{model}-{i}", cpu, memory, gpus, model) for i in range(count))
    return path


def timed(cluster: Path, placement: str) -> tuple[float, dict]:
    scenario = load_scenario("interruptible", [
        "duration_days=1", "tenants.arrivals_per_hour=150"], values={"providers": [{
            "name": "cluster", "archetype": "datacenter", "count": 150,
            "nodes": {"path": str(cluster), "format": "alibaba_v2023",
                      "placement": placement}}]})
    start = time.perf_counter()
    summary = Market(scenario, seed=1, record=False).run().summary
    return time.perf_counter() - start, summary


def test_placement_on_machines_against_pooled_machines(tmp_path: Path) -> None:
    cluster = write_cluster(tmp_path / "cluster.csv")
    pooled_s, pooled = timed(cluster, "pooled")
    per_node_s, per_node = timed(cluster, "per_node")
    assert pooled["money_conserved"] and per_node["money_conserved"]
    print()
    for label, seconds, summary in (("pooled", pooled_s, pooled),
                                    ("per node", per_node_s, per_node)):
        print(f"{label:9} {seconds:8.2f} s  ({summary['orders_posted']:,} orders, "
              f"{summary['leases_created']:,} leases, "
              f"{summary['interruptible']['pauses']:,} pauses)")
    print(f"ratio     {per_node_s / pooled_s:8.2f} x")

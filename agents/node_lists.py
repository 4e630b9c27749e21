"""Providers from a real cluster's node list: its machines, grouped into providers.

A node list names each machine of a cluster with its GPUs, GPU model, CPU and memory. A
population that reads one (`providers.N.nodes`) becomes `count` providers made of those
machines, each provider keeping its nodes (`market.core.nodes`: every replica of an order must
fit on one node).

**Grouping.** A provider sells one GPU model (as every provider in the market does), so nodes
are grouped by model: each model gets providers in proportion to its number of nodes (largest
remainder, and at least one for every model when `count` allows: `model_quota`), and that
model's nodes, in the file's order, are cut into as many runs of consecutive nodes, as equal
in size as can be. A cluster's nodes listed in rack or purchase order so stay together.

**Costs** come from the population (its archetype's cost model, its electricity range), per
provider, as for drawn providers; the GPU model and the capacity come from the nodes.

Formats (columns as the public files name them):

- ``alibaba_v2023``: Alibaba GPU v2023 node list ``sn, cpu_milli, memory_mib, gpu, model``.
- ``alibaba_spot_v2026``: Alibaba 2026 spot-GPU node list ``gpu_model, gpu_capacity_num,
  cpu_num, node_name`` (``cpu_num`` in cores). It gives no memory: a node gets the
  population's ``memory_gib_per_gpu`` per GPU.
- ``generic``: a CSV with a header naming ``node, gpus, model`` and optionally
  ``cpu_millicores`` and ``memory_gib`` (missing: the population's per-GPU figures).

Nodes without GPUs are skipped, as are nodes whose GPU name maps to no catalog model
(`gpu_map`, as for traces); the count of each is in the run's summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from agents.trace_files import (
    CsvRows,
    TraceError,
    csv_number,
    file_digest,
    normalized_gpu_name,
    resolve_gpu_map,
)
from market.units import GIB

FORMATS = ("alibaba_v2023", "alibaba_spot_v2026", "generic")

#: Why a node of a list does not join the market.
SKIP_REASONS = {
    "no_gpu": "has no GPU",
    "unmapped_gpu": "its GPU name maps to no catalog model (nodes.gpu_map)",
}

_REQUIRED = {
    "alibaba_v2023": ("sn", "cpu_milli", "memory_mib", "gpu", "model"),
    "alibaba_spot_v2026": ("gpu_model", "gpu_capacity_num", "cpu_num", "node_name"),
    "generic": ("node", "gpus", "model"),
}

#: The most GPUs, CPU millicores and MiB of memory one machine may have (far beyond any
#: real one), so that nothing overflows downstream.
_MAX_GPUS, _MAX_CPU_MILLI, _MAX_MEMORY_MIB = 1_024, 1e9, 1e9


class NodeRow(NamedTuple):
    """One machine in the list's own words; CPU and memory None where the list has none."""

    line: int
    name: str
    gpu_name: str
    gpus: int
    cpu_millicores: int | None
    memory_bytes: int | None


def _v2023(rows: CsvRows) -> Iterator[NodeRow]:
    for line, rec in rows:
        yield NodeRow(line, rec["sn"], rec["model"].strip(),
                      int(csv_number(rows, line, rec, "gpu", integer=True, high=_MAX_GPUS)),
                      int(csv_number(rows, line, rec, "cpu_milli", integer=True,
                                     high=_MAX_CPU_MILLI)),
                      int(csv_number(rows, line, rec, "memory_mib", high=_MAX_MEMORY_MIB)
                          * 2**20))


def _spot_v2026(rows: CsvRows) -> Iterator[NodeRow]:
    for line, rec in rows:
        yield NodeRow(line, rec["node_name"], rec["gpu_model"].strip(),
                      int(csv_number(rows, line, rec, "gpu_capacity_num", integer=True,
                                     high=_MAX_GPUS)),
                      int(csv_number(rows, line, rec, "cpu_num", high=_MAX_CPU_MILLI / 1000)
                          * 1000), None)


def _generic(rows: CsvRows) -> Iterator[NodeRow]:
    for line, rec in rows:
        cpu = memory = None
        if rec.get("cpu_millicores", "").strip():
            cpu = int(csv_number(rows, line, rec, "cpu_millicores", integer=True,
                                 high=_MAX_CPU_MILLI))
        if rec.get("memory_gib", "").strip():
            memory = int(csv_number(rows, line, rec, "memory_gib",
                                    high=_MAX_MEMORY_MIB / 1024) * GIB)
        yield NodeRow(line, rec["node"], rec["model"].strip(),
                      int(csv_number(rows, line, rec, "gpus", integer=True, high=_MAX_GPUS)),
                      cpu, memory)


_READERS = {"alibaba_v2023": _v2023, "alibaba_spot_v2026": _spot_v2026, "generic": _generic}


def node_rows(path: str | Path, format: str) -> Iterator[NodeRow]:
    """The machines of a node list, row by row; raises TraceError (one line naming the file,
    line and column) on a malformed row."""
    return _READERS[format](CsvRows(Path(path), _REQUIRED[format]))


@dataclass
class NodeList:
    """A node list read for one population: the machines kept, by catalog model, in file
    order, and what was skipped."""

    path: str
    format: str
    sha256: str
    rows: int
    skipped: Counter[str]
    by_model: dict[str, list[NodeRow]]

    def summary(self, providers: int) -> dict[str, Any]:
        """The file and its digest, nodes read, kept and skipped by reason, GPUs by model,
        and the providers made of them."""
        return {
            "path": self.path, "format": self.format, "sha256": self.sha256,
            "nodes": self.rows, "nodes_kept": sum(len(n) for n in self.by_model.values()),
            "skipped": dict(sorted(self.skipped.items())),
            "gpus_by_model": {model: sum(node.gpus for node in nodes)
                              for model, nodes in sorted(self.by_model.items())},
            "providers": providers,
        }


def read_node_list(path: str | Path, format: str, catalog: Any,
                   gpu_map: dict[str, str]) -> NodeList:
    """Read and check every row of a node list, keeping the machines with GPUs of a catalog
    model (GPU names through `gpu_map`, as for traces)."""
    mapping = resolve_gpu_map(catalog, gpu_map)
    by_model: dict[str, list[NodeRow]] = {}
    skipped: Counter[str] = Counter()
    rows = 0
    for node in node_rows(path, format):
        rows += 1
        model = mapping.get(normalized_gpu_name(node.gpu_name))
        if node.gpus == 0:
            skipped["no_gpu"] += 1
        elif model is None:
            skipped["unmapped_gpu"] += 1
        else:
            by_model.setdefault(model, []).append(node)
    return NodeList(str(path), format, file_digest(path), rows, skipped, by_model)


def split_runs(items: list[Any], parts: int) -> list[list[Any]]:
    """`items` cut into `parts` runs of consecutive items, as equal in size as can be (the
    longer runs first): ``split_runs([1, 2, 3, 4, 5], 2) == [[1, 2, 3], [4, 5]]``."""
    size, longer = divmod(len(items), parts)
    runs, start = [], 0
    for k in range(parts):
        stop = start + size + (k < longer)
        runs.append(items[start:stop])
        start = stop
    return runs


def group_nodes(nodes: NodeList, count: int, quota: Any) -> list[tuple[str, list[NodeRow]]]:
    """The list's machines as `count` providers: (catalog model, its nodes) each. `quota`
    deals `count` providers among the models in proportion to their node counts
    (`agents.providers.model_quota`). Raises ValueError if there are more providers than
    machines."""
    models = sorted(nodes.by_model)
    kept = sum(len(nodes.by_model[m]) for m in models)
    if count > kept:
        raise ValueError(f"count: {count} providers but the node list has {kept} machines "
                         "with GPUs of a catalog model; expected at most that")
    if count == 0 or not models:
        return []
    shares = np.array([len(nodes.by_model[m]) for m in models], float)
    groups = []
    for model, parts in zip(models, quota(shares, count).tolist(), strict=True):
        machines = nodes.by_model[model]
        groups.extend((model, run) for run in split_runs(machines, min(parts, len(machines)))
                      if run)
    return groups


def node_specs(nodes: list[NodeRow], cpu_millicores_per_gpu: int,
               memory_bytes_per_gpu: int) -> tuple[tuple[int, int, int], ...]:
    """Each machine as (GPUs, CPU millicores, memory bytes), the population's per-GPU figures
    standing in where the list gives none."""
    return tuple((node.gpus,
                  node.cpu_millicores if node.cpu_millicores is not None
                  else cpu_millicores_per_gpu * node.gpus,
                  node.memory_bytes if node.memory_bytes is not None
                  else memory_bytes_per_gpu * node.gpus)
                 for node in nodes)


__all__ = ["FORMATS", "SKIP_REASONS", "NodeList", "NodeRow", "TraceError", "group_nodes",
           "node_rows", "node_specs", "read_node_list", "split_runs"]

"""Providers as a struct of arrays: one row per provider, shared by every population.

The engine matches, reserves and releases capacity with whole-array numpy operations; the
agents package fills the rows (inventories, costs, reliability, strategies). Arrays grow when an
outside provider joins a running market.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from market.core.nodes import NODE_CAPACITY, Nodes, NodeSpec
from market.core.resources import CAPACITY, STORAGE_CLASSES


def storage_mask(classes: Any) -> int:
    """Bit mask of storage classes (bit i = STORAGE_CLASSES[i])."""
    mask = 0
    for name in classes:
        mask |= 1 << STORAGE_CLASSES.index(name)
    return mask


@dataclass(slots=True)
class ProviderRow:
    """One provider's facts, for `ProviderPool.add`. Money in USD per GPU-hour; times in
    simulated seconds; rates per simulated second."""

    name: str
    population: int
    model: int                      # index into the GPU catalog
    gpus: int
    cpu_millicores: int
    memory_bytes: int
    storage_bytes: int
    ip_leases: int
    storage_classes: tuple[str, ...]
    audited: bool
    # Costs per GPU-hour: `marginal` is the avoidable cost of serving (extra power and wear
    # while a GPU runs a lease, or what the capacity would earn elsewhere); `idle` (idle
    # power) and `fixed` (operations) run while the provider is on the market, avoidable by
    # leaving it; `capex` is amortization, sunk in the short run (0 where it is not
    # counted); `full` is all four, a GPU's cost at full use; `basis` is what it prices from.
    cost_full_usd_per_gpu_hour: float
    cost_marginal_usd_per_gpu_hour: float
    cost_idle_usd_per_gpu_hour: float
    cost_fixed_usd_per_gpu_hour: float
    cost_basis_usd_per_gpu_hour: float
    cost_capex_usd_per_gpu_hour: float = 0.0
    latency_log_median: float = float(np.log(3.0))
    latency_sigma: float = 0.5
    failure_rate_per_s: float = 0.0
    repair_s: tuple[float, float] = (3600.0, 3600.0)
    churn_rate_per_s: float = 0.0
    offline_s: tuple[float, float] = (86_400.0, 86_400.0)
    automated: bool = True          # False: an outside actor bids for it by hand
    # Its machines, each (GPUs, CPU millicores, memory bytes), summing to the totals above;
    # empty: one machine with all of it (`market.core.nodes`).
    nodes: tuple[NodeSpec, ...] = ()


_FLOAT_COLUMNS = (
    "cost_full_usd_per_gpu_hour", "cost_marginal_usd_per_gpu_hour", "cost_idle_usd_per_gpu_hour",
    "cost_fixed_usd_per_gpu_hour", "cost_basis_usd_per_gpu_hour", "cost_capex_usd_per_gpu_hour",
    "latency_log_median",
    "latency_sigma", "failure_rate_per_s", "churn_rate_per_s",
)


class ProviderPool:
    """Every provider in the market.

    `capacity` and `free` are int64 ``[n, len(CAPACITY)]``; `free` counts what is neither leased
    nor reserved by an open bid. `up` is False while a provider is failed or decommissioned.
    """

    def __init__(self, population_names: list[str], population_archetypes: list[str]) -> None:
        self.population_names = list(population_names)
        self.population_archetypes = list(population_archetypes)
        self.names: list[str] = []
        self.n = 0
        self.population = np.zeros(0, np.int32)
        self.model = np.zeros(0, np.int32)
        self.capacity = np.zeros((0, len(CAPACITY)), np.int64)
        self.free = np.zeros((0, len(CAPACITY)), np.int64)
        self.storage_mask = np.zeros(0, np.int64)
        self.audited = np.zeros(0, bool)
        self.up = np.zeros(0, bool)
        self.automated = np.zeros(0, bool)
        for column in _FLOAT_COLUMNS:
            setattr(self, column, np.zeros(0))
        self.repair_s = np.zeros((0, 2))
        self.offline_s = np.zeros((0, 2))
        self.account = np.zeros(0, np.int64)
        self.busy_gpu_s = np.zeros(0)       # GPU-seconds leased, accumulated at lease end
        self.next_failure_s = np.zeros(0)   # inf = never
        self.next_leave_s = np.zeros(0)
        self.nodes = Nodes()

    def add_population(self, name: str, archetype: str) -> int:
        """Register one more population (an outside provider joining a live market); returns
        its index for `ProviderRow.population`."""
        self.population_names.append(name)
        self.population_archetypes.append(archetype)
        return len(self.population_names) - 1

    # Adding rows copies every array once; done at set-up in bulk and rarely afterwards.
    def add(self, rows: list[ProviderRow], accounts: list[int]) -> np.ndarray:
        """Append providers; returns their ids."""
        if not rows:
            return np.zeros(0, np.int64)
        for row in rows:
            _check_nodes(row)
        first = self.n

        def grow(name: str, values: Any, dtype: Any) -> None:
            setattr(self, name, np.concatenate([getattr(self, name),
                                                np.asarray(values, dtype=dtype)]))

        grow("population", [r.population for r in rows], np.int32)
        grow("model", [r.model for r in rows], np.int32)
        cap = np.array([[r.gpus, r.cpu_millicores, r.memory_bytes, r.storage_bytes, r.ip_leases]
                        for r in rows], dtype=np.int64)
        self.capacity = np.concatenate([self.capacity, cap])
        self.free = np.concatenate([self.free, cap])
        grow("storage_mask", [storage_mask(r.storage_classes) for r in rows], np.int64)
        grow("audited", [r.audited for r in rows], bool)
        grow("up", [True] * len(rows), bool)
        grow("automated", [r.automated for r in rows], bool)
        for column in _FLOAT_COLUMNS:
            grow(column, [getattr(r, column) for r in rows], np.float64)
        self.repair_s = np.concatenate([self.repair_s, np.array([r.repair_s for r in rows])])
        self.offline_s = np.concatenate([self.offline_s, np.array([r.offline_s for r in rows])])
        grow("account", accounts, np.int64)
        grow("busy_gpu_s", [0.0] * len(rows), np.float64)
        grow("next_failure_s", [np.inf] * len(rows), np.float64)
        grow("next_leave_s", [np.inf] * len(rows), np.float64)
        self.names.extend(r.name for r in rows)
        self.n += len(rows)
        ids = np.arange(first, self.n)
        self.nodes.add(ids, [r.nodes for r in rows])
        return ids


def _check_nodes(row: ProviderRow) -> None:
    """Raise ValueError (before anything is added) unless `row`'s nodes sum to its totals."""
    if not row.nodes:
        return
    sums = np.array(row.nodes, np.int64).reshape(-1, len(NODE_CAPACITY)).sum(axis=0)
    totals = (row.gpus, row.cpu_millicores, row.memory_bytes)
    for name, total, summed in zip(NODE_CAPACITY, totals, sums.tolist(), strict=True):
        if total != summed:
            raise ValueError(f"provider {row.name!r}: its nodes have {summed} {name} in all, "
                             f"its row says {total}")

"""Resources in Akash's shape, and the rule for when a provider's offer covers an order.

An order asks for one or more resource units; each unit is replicated `count` times and asks per
replica for CPU millicores, memory bytes, storage by class, GPU units with attributes
(model / VRAM / interface), endpoints and leased IPs. A provider covers an order when its
attributes match and its free capacity covers the order's totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Akash storage classes: ephemeral, then persistent beta1 (HDD), beta2 (SSD), beta3 (NVMe).
STORAGE_CLASSES = ("ephemeral", "beta1", "beta2", "beta3")

#: Capacity dimensions the engine tracks per provider, in this order.
CAPACITY = ("gpus", "cpu_millicores", "memory_bytes", "storage_bytes", "ip_leases")


@dataclass(frozen=True, slots=True)
class Storage:
    """`size_bytes` of storage of one class (`STORAGE_CLASSES`)."""

    storage_class: str
    size_bytes: int

    def __post_init__(self) -> None:
        if self.storage_class not in STORAGE_CLASSES:
            raise ValueError(
                f"storage class: expected one of {', '.join(STORAGE_CLASSES)}, "
                f"got {self.storage_class!r}"
            )
        if self.size_bytes < 0:
            raise ValueError(f"storage size_bytes must be >= 0, got {self.size_bytes}")


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """GPU units per replica; `models` are catalog ids that may serve them (any of them)."""

    units: int
    models: tuple[str, ...]
    vendor: str = "nvidia"


@dataclass(frozen=True, slots=True)
class ResourceUnit:
    """One Akash resource unit: per-replica needs, replicated `count` times."""

    cpu_millicores: int
    memory_bytes: int
    storage: tuple[Storage, ...] = ()
    gpu: GpuRequest | None = None
    endpoints: int = 0
    ip_leases: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        for name in ("cpu_millicores", "memory_bytes", "endpoints", "ip_leases"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")


@dataclass(frozen=True, slots=True)
class Requirement:
    """An order's totals over its units: what a provider must have free, in `CAPACITY` order,
    plus the GPU models that may serve it and the storage classes it needs."""

    capacity: np.ndarray = field(repr=False)  # int64, one entry per CAPACITY dimension
    gpu_models: tuple[str, ...]
    storage_classes: frozenset[str]

    @property
    def gpus(self) -> int:
        return int(self.capacity[0])


def requirement(units: tuple[ResourceUnit, ...]) -> Requirement:
    """Total what `units` ask for.

    GPU models: a provider must be able to serve every GPU unit of the order, so the allowed
    models are those every GPU-bearing unit accepts.
    """
    if not units:
        raise ValueError("an order needs at least one resource unit")
    gpus = cpu = memory = storage = ips = 0
    models: set[str] | None = None
    classes: set[str] = set()
    for unit in units:
        cpu += unit.cpu_millicores * unit.count
        memory += unit.memory_bytes * unit.count
        ips += unit.ip_leases * unit.count
        for item in unit.storage:
            storage += item.size_bytes * unit.count
            if item.size_bytes:
                classes.add(item.storage_class)
        if unit.gpu is not None and unit.gpu.units:
            gpus += unit.gpu.units * unit.count
            accepted = set(unit.gpu.models)
            models = accepted if models is None else models & accepted
    if models is not None and not models:
        raise ValueError("the order's GPU units accept no common GPU model")
    ordered = tuple(sorted(models)) if models is not None else ()
    capacity = np.array([gpus, cpu, memory, storage, ips], dtype=np.int64)
    return Requirement(capacity, ordered, frozenset(classes))


def gpu_units(gpus: int, models: tuple[str, ...], *, cpu_millicores_per_gpu: int,
              memory_bytes_per_gpu: int, storage_bytes_per_gpu: int,
              storage_class: str = "beta2", gpus_per_replica: int = 8) -> tuple[ResourceUnit, ...]:
    """The resource units a GPU job asks for: replicas of up to `gpus_per_replica` GPUs each,
    with CPU, memory and storage in proportion to the GPUs."""
    units = []
    full, rest = divmod(gpus, gpus_per_replica)
    for per_replica, count in ((gpus_per_replica, full), (rest, 1)):
        if per_replica and count:
            units.append(ResourceUnit(
                cpu_millicores=cpu_millicores_per_gpu * per_replica,
                memory_bytes=memory_bytes_per_gpu * per_replica,
                storage=(Storage(storage_class, storage_bytes_per_gpu * per_replica),),
                gpu=GpuRequest(per_replica, models),
                endpoints=1,
                count=count,
            ))
    return tuple(units)

"""Tests for market.resources: validation of storage and resource units, an order's totals
(`requirement`: per-replica needs times `count`, GPU models every unit accepts, storage
classes) and how a GPU job is split into replicas (`gpu_units`)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.core.resources import (
    CAPACITY,
    STORAGE_CLASSES,
    GpuRequest,
    ResourceUnit,
    Storage,
    gpu_units,
    requirement,
)
from market.units import GIB

CPU = CAPACITY.index("cpu_millicores")
MEMORY = CAPACITY.index("memory_bytes")
STORAGE = CAPACITY.index("storage_bytes")
IPS = CAPACITY.index("ip_leases")


# --- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("storage_class", STORAGE_CLASSES)
def test_storage_accepts_every_akash_class(storage_class):
    assert Storage(storage_class, 0).size_bytes == 0


def test_storage_rejects_an_unknown_class_listing_the_valid_ones():
    with pytest.raises(ValueError, match="storage class") as error:
        Storage("beta4", 10)
    assert all(name in str(error.value) for name in STORAGE_CLASSES)


def test_storage_rejects_a_negative_size():
    with pytest.raises(ValueError, match="size_bytes"):
        Storage("beta2", -1)


@pytest.mark.parametrize("field", ["cpu_millicores", "memory_bytes", "endpoints", "ip_leases"])
def test_resource_unit_rejects_negative_needs_naming_the_field(field):
    fields = {"cpu_millicores": 1000, "memory_bytes": GIB, field: -1}
    with pytest.raises(ValueError, match=field):
        ResourceUnit(**fields)


@pytest.mark.parametrize("count", [0, -2])
def test_resource_unit_needs_at_least_one_replica(count):
    with pytest.raises(ValueError, match="count"):
        ResourceUnit(cpu_millicores=1000, memory_bytes=GIB, count=count)


def test_resource_units_are_immutable():
    unit = ResourceUnit(cpu_millicores=1000, memory_bytes=GIB)
    with pytest.raises(AttributeError):
        unit.count = 3  # type: ignore[misc]


# --- requirement ---------------------------------------------------------------------------

def test_requirement_multiplies_per_replica_needs_by_count():
    web = ResourceUnit(cpu_millicores=500, memory_bytes=GIB, storage=(Storage("ephemeral", 2),),
                       ip_leases=1, count=3)
    trainer = ResourceUnit(cpu_millicores=8000, memory_bytes=64 * GIB,
                           storage=(Storage("beta3", 100), Storage("beta2", 10)),
                           gpu=GpuRequest(4, ("h100", "a100-80gb")), count=2)
    need = requirement((web, trainer))
    totals = dict(zip(CAPACITY, need.capacity.tolist(), strict=True))
    assert totals == {
        "gpus": 4 * 2,
        "cpu_millicores": 500 * 3 + 8000 * 2,
        "memory_bytes": GIB * 3 + 64 * GIB * 2,
        "storage_bytes": 2 * 3 + (100 + 10) * 2,
        "ip_leases": 1 * 3,
    }
    assert need.gpus == 8
    assert need.gpu_models == ("a100-80gb", "h100")
    assert need.storage_classes == frozenset({"ephemeral", "beta2", "beta3"})


def test_requirement_without_gpus_allows_no_particular_model():
    need = requirement((ResourceUnit(cpu_millicores=100, memory_bytes=1),))
    assert need.gpus == 0
    assert need.gpu_models == ()
    assert need.storage_classes == frozenset()


def test_requirement_ignores_storage_classes_of_zero_size():
    unit = ResourceUnit(cpu_millicores=100, memory_bytes=1,
                        storage=(Storage("beta1", 0), Storage("beta2", 5)))
    assert requirement((unit,)).storage_classes == frozenset({"beta2"})


def test_requirement_gpu_models_are_those_every_gpu_unit_accepts():
    units = (
        ResourceUnit(cpu_millicores=1, memory_bytes=1,
                     gpu=GpuRequest(1, ("h100", "a100-80gb", "l40s"))),
        ResourceUnit(cpu_millicores=1, memory_bytes=1),  # no GPU: does not constrain
        ResourceUnit(cpu_millicores=1, memory_bytes=1, gpu=GpuRequest(0, ("rtx4090",))),
        ResourceUnit(cpu_millicores=1, memory_bytes=1, gpu=GpuRequest(2, ("l40s", "h100"))),
    )
    need = requirement(units)
    assert need.gpu_models == ("h100", "l40s")
    assert need.gpus == 3


def test_requirement_rejects_gpu_units_with_no_common_model():
    units = (
        ResourceUnit(cpu_millicores=1, memory_bytes=1, gpu=GpuRequest(1, ("h100",))),
        ResourceUnit(cpu_millicores=1, memory_bytes=1, gpu=GpuRequest(1, ("rtx4090",))),
    )
    with pytest.raises(ValueError, match="common GPU model"):
        requirement(units)


def test_requirement_of_no_units_is_an_error():
    with pytest.raises(ValueError, match="at least one resource unit"):
        requirement(())


# --- gpu_units -----------------------------------------------------------------------------

SIZES = {"cpu_millicores_per_gpu": 4_000, "memory_bytes_per_gpu": 32 * GIB,
         "storage_bytes_per_gpu": 100 * GIB}


def test_gpu_units_splits_into_full_replicas_and_a_remainder():
    units = gpu_units(20, ("h100",), **SIZES)
    assert [(u.gpu.units, u.count) for u in units] == [(8, 2), (4, 1)]
    full = units[0]
    assert full.cpu_millicores == 8 * 4_000
    assert full.memory_bytes == 8 * 32 * GIB
    assert full.storage == (Storage("beta2", 8 * 100 * GIB),)
    assert full.gpu.models == ("h100",)
    assert full.endpoints == 1


def test_gpu_units_exact_multiple_has_no_remainder_and_small_jobs_one_replica():
    assert [(u.gpu.units, u.count) for u in gpu_units(16, ("h100",), **SIZES)] == [(8, 2)]
    assert [(u.gpu.units, u.count) for u in gpu_units(3, ("h100",), **SIZES)] == [(3, 1)]
    assert gpu_units(0, ("h100",), **SIZES) == ()


def test_gpu_units_honours_replica_size_and_storage_class():
    units = gpu_units(10, ("a10",), **SIZES, gpus_per_replica=4, storage_class="beta3")
    assert [(u.gpu.units, u.count) for u in units] == [(4, 2), (2, 1)]
    assert {u.storage[0].storage_class for u in units} == {"beta3"}


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.integers(1, 16))
def test_gpu_units_totals_are_proportional_to_the_gpus(gpus, per_replica):
    units = gpu_units(gpus, ("h100", "a100-80gb"), **SIZES, gpus_per_replica=per_replica)
    assert all(1 <= u.gpu.units <= per_replica for u in units)
    need = requirement(units)
    assert need.gpus == gpus
    assert need.capacity[CPU] == gpus * SIZES["cpu_millicores_per_gpu"]
    assert need.capacity[MEMORY] == gpus * SIZES["memory_bytes_per_gpu"]
    assert need.capacity[STORAGE] == gpus * SIZES["storage_bytes_per_gpu"]
    assert need.capacity[IPS] == 0
    assert need.gpu_models == ("a100-80gb", "h100")

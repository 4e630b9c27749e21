"""Tests for market.catalog: the built-in GPU data file and its loader."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from market.catalog import (
    NUMERIC_FIELDS,
    OPTIONAL_NUMERIC_FIELDS,
    CatalogError,
    GpuCatalog,
    GpuModel,
    load_catalog,
)

# The order the catalog documents; the file must keep it.
DOCUMENTED_ORDER = (
    "h100",
    "a100-80gb",
    "a100-40gb",
    "l40s",
    "a10",
    "rtx4090",
    "rtx3090",
    "mi300x",
    "trainium2",
)


@pytest.fixture(scope="module")
def catalog() -> GpuCatalog:
    return load_catalog()


# --- helpers for writing small catalog files -------------------------------------------

_VALID_GPU: dict[str, object] = {
    "id": "testgpu",
    "name": "Test GPU",
    "vendor": "nvidia",
    "akash_model": "testgpu",
    "akash_ram": "24Gi",
    "interface": "pcie",
    "tflops_bf16_dense": 100.0,
    "memory_gib": 24.0,
    "memory_bandwidth_tb_s": 0.9,
    "board_power_w": 300.0,
    "capex_usd": 2000.0,
    "list_usd_per_gpu_hour": 1.0,
    "marketplace_usd_per_gpu_hour": 0.5,
}


def _gpu_toml(gpu: dict[str, object], sources: dict[str, str] | None = None) -> str:
    """One [[gpu]] table; sources default to one string per numeric field present."""
    if sources is None:
        sources = {k: f"test source for {k}" for k in gpu if k in NUMERIC_FIELDS}
    lines = ["[[gpu]]"]
    # json.dumps of str/float/int is also valid TOML for these simple values.
    lines += [f"{key} = {json.dumps(value)}" for key, value in gpu.items()]
    lines.append("[gpu.sources]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in sources.items()]
    return "\n".join(lines) + "\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpus.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _without(key: str) -> dict[str, object]:
    return {k: v for k, v in _VALID_GPU.items() if k != key}


# --- the built-in data file -------------------------------------------------------------


def test_builtin_ids_are_unique_and_in_documented_order(catalog: GpuCatalog) -> None:
    assert catalog.ids == DOCUMENTED_ORDER
    assert len(set(catalog.ids)) == len(catalog) == len(DOCUMENTED_ORDER)
    assert [model.id for model in catalog] == list(catalog.ids)


def test_every_number_has_a_source(catalog: GpuCatalog) -> None:
    for model in catalog:
        present = {f for f in NUMERIC_FIELDS if getattr(model, f) is not None}
        for name in present:
            text = model.sources.get(name)
            assert isinstance(text, str) and text.strip(), (model.id, name)
        # A source for a number that is not there would be a stale or misplaced citation.
        assert set(model.sources) == present, model.id


def test_domain_key_numbers(catalog: GpuCatalog) -> None:
    h100 = catalog["h100"]
    assert h100.tflops_bf16_dense == 989
    assert h100.memory_gib == 80
    assert h100.board_power_w == 700
    assert h100.list_usd_per_gpu_hour == pytest.approx(12.29)
    # An 8-GPU H100 server costs ~$300k.
    assert h100.capex_usd == pytest.approx(300_000 / 8)
    assert catalog["a100-80gb"].tflops_bf16_dense == 312
    assert catalog["a100-40gb"].tflops_bf16_dense == 312
    assert catalog["a100-80gb"].list_usd_per_gpu_hour == pytest.approx(5.12)
    assert catalog["a100-40gb"].list_usd_per_gpu_hour == pytest.approx(4.10)


def test_memory_bandwidth_is_the_datasheet_figure_in_decimal_tb_s(catalog: GpuCatalog) -> None:
    datasheet_tb_s = {
        "h100": 3.35,
        "a100-80gb": 2.039,
        "a100-40gb": 1.555,
        "l40s": 0.864,
        "a10": 0.600,
        "rtx4090": 1.008,
        "rtx3090": 0.936,
        "mi300x": 5.3,
        "trainium2": 2.9,
    }
    assert {m.id: m.memory_bandwidth_tb_s for m in catalog} == datasheet_tb_s
    # GDDR6X on a 384-bit bus: bytes per transfer x Gbps per pin (RTX 3090 19.5, RTX 4090 21).
    assert catalog["rtx3090"].memory_bandwidth_tb_s == pytest.approx(384 / 8 * 19.5 / 1000)
    assert catalog["rtx4090"].memory_bandwidth_tb_s == pytest.approx(384 / 8 * 21 / 1000)


def test_builtin_models_are_internally_consistent(catalog: GpuCatalog) -> None:
    for model in catalog:
        assert model.vendor in {"nvidia", "amd", "aws"}, model.id
        # Akash spells memory in GiB; it must agree with memory_gib.
        assert model.akash_ram == f"{model.memory_gib:g}Gi", model.id
        assert model.akash_model == model.akash_model.lower(), model.id
        assert model.interface == model.interface.lower(), model.id
        assert model.memory_bytes == model.memory_gib * 2**30
        # The outside option is the most expensive way to rent (large clouds
        # charge a premium); cheaper channels must not exceed it.
        for name in OPTIONAL_NUMERIC_FIELDS:
            price = getattr(model, name)
            if price is not None:
                assert price <= model.list_usd_per_gpu_hour, (model.id, name)


def test_builtin_file_is_a_package_resource(catalog: GpuCatalog) -> None:
    resource = resources.files("market").joinpath("data/gpus.toml")
    assert resource.is_file()
    with resources.as_file(resource) as path:
        assert load_catalog(path) == catalog


def test_builtin_catalog_is_cached_and_not_loaded_at_import() -> None:
    assert load_catalog() is load_catalog()
    code = (
        "import market.catalog as c; "
        "assert c._builtin_catalog.cache_info().currsize == 0, 'loaded at import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --- model and catalog behaviour ----------------------------------------------------------


def test_model_is_frozen_and_sources_read_only(catalog: GpuCatalog) -> None:
    model = catalog["h100"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.capex_usd = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        model.sources["capex_usd"] = "x"  # type: ignore[index]
    assert hash(model) == hash(catalog["h100"])


def test_sources_are_copied_from_the_caller() -> None:
    sources = {"capex_usd": "a"}
    model = GpuModel(**_VALID_GPU, sources=sources)  # type: ignore[arg-type]
    sources["capex_usd"] = "changed"
    assert model.sources["capex_usd"] == "a"


def test_lookup_errors_list_known_ids(catalog: GpuCatalog) -> None:
    with pytest.raises(KeyError, match=r"h100.*trainium2"):
        catalog["b200"]
    with pytest.raises(ValueError, match=r"h100.*trainium2"):
        catalog.index("b200")
    assert "h100" in catalog
    assert "b200" not in catalog
    assert ["h100"] not in catalog  # unhashable: answered, not a TypeError


def test_index_matches_ids(catalog: GpuCatalog) -> None:
    for position, gpu_id in enumerate(catalog.ids):
        assert catalog.index(gpu_id) == position


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
def test_array_follows_ids_order(catalog: GpuCatalog, name: str) -> None:
    values = catalog.array(name)
    assert values.dtype == np.float64
    assert values.shape == (len(catalog),)
    for gpu_id, value in zip(catalog.ids, values, strict=True):
        expected = getattr(catalog[gpu_id], name)
        if expected is None:
            assert math.isnan(value)
        else:
            assert value == expected
    assert not values.flags.writeable
    with pytest.raises(ValueError):
        values[0] = 1.0


def test_array_rejects_unknown_field(catalog: GpuCatalog) -> None:
    with pytest.raises(ValueError, match=r"'name'.*capex_usd"):
        catalog.array("name")


def test_overrides_make_a_new_catalog(catalog: GpuCatalog) -> None:
    before = catalog.array("list_usd_per_gpu_hour").copy()
    changed = catalog.with_overrides(
        {"h100": {"list_usd_per_gpu_hour": 6.88}, "l40s": {"specialty_usd_per_gpu_hour": 1}}
    )
    assert changed is not catalog
    assert changed.ids == catalog.ids
    assert changed["h100"].list_usd_per_gpu_hour == 6.88
    assert changed["l40s"].specialty_usd_per_gpu_hour == 1.0
    assert changed.array("list_usd_per_gpu_hour")[changed.index("h100")] == 6.88
    # The old citation no longer describes the new number.
    new_source = changed["h100"].sources["list_usd_per_gpu_hour"]
    assert new_source != catalog["h100"].sources["list_usd_per_gpu_hour"]
    # Original untouched, including its cached array.
    assert catalog["h100"].list_usd_per_gpu_hour == pytest.approx(12.29)
    assert catalog["l40s"].specialty_usd_per_gpu_hour is None
    np.testing.assert_array_equal(catalog.array("list_usd_per_gpu_hour"), before)
    assert changed["a100-80gb"] == catalog["a100-80gb"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"b200": {"capex_usd": 1.0}}, "b200"),
        ({"h100": {"capex": 1.0}}, "capex"),
        ({"h100": {"name": 1.0}}, "name"),
        ({"h100": {"capex_usd": -1.0}}, "capex_usd"),
        ({"h100": {"capex_usd": 0}}, "capex_usd"),
        ({"h100": {"capex_usd": float("nan")}}, "capex_usd"),
        ({"h100": {"capex_usd": True}}, "capex_usd"),
        ({"h100": {"capex_usd": "1"}}, "capex_usd"),
    ],
)
def test_bad_overrides_raise_naming_the_problem(
    catalog: GpuCatalog, overrides: dict, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        catalog.with_overrides(overrides)


def test_catalog_constructor_validates() -> None:
    model = GpuModel(**_VALID_GPU)  # type: ignore[arg-type]
    with pytest.raises(CatalogError, match=r"testgpu.*'id'"):
        GpuCatalog([model, model])
    with pytest.raises(CatalogError, match=r"testgpu.*'capex_usd'"):
        GpuCatalog([dataclasses.replace(model, capex_usd=0.0)])
    with pytest.raises(CatalogError, match=r"testgpu.*'memory_bandwidth_tb_s'"):
        GpuCatalog([dataclasses.replace(model, memory_bandwidth_tb_s=0.0)])
    with pytest.raises(CatalogError):
        GpuCatalog([])


# --- loading files ----------------------------------------------------------------------


def test_loads_a_valid_file(tmp_path: Path) -> None:
    second = {**_without("marketplace_usd_per_gpu_hour"), "id": "other"}
    path = _write(tmp_path, _gpu_toml(_VALID_GPU) + _gpu_toml(second))
    loaded = load_catalog(str(path))
    assert loaded.ids == ("testgpu", "other")
    assert loaded["other"].marketplace_usd_per_gpu_hour is None
    assert math.isnan(loaded.array("marketplace_usd_per_gpu_hour")[1])
    assert load_catalog(path) == loaded  # os.PathLike accepted too


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (_gpu_toml(_without("capex_usd")), "'capex_usd' is missing"),
        (_gpu_toml(_without("name")), "'name' is missing"),
        (_gpu_toml({**_VALID_GPU, "board_power_w": -700.0}), "'board_power_w'"),
        (_gpu_toml({**_VALID_GPU, "memory_gib": 0}), "'memory_gib'"),
        (_gpu_toml(_without("memory_bandwidth_tb_s")), "'memory_bandwidth_tb_s' is missing"),
        (_gpu_toml({**_VALID_GPU, "memory_bandwidth_tb_s": 0.0}), "'memory_bandwidth_tb_s'"),
        (_gpu_toml({**_VALID_GPU, "memory_bandwidth_tb_s": -1.0}), "'memory_bandwidth_tb_s'"),
        (_gpu_toml({**_VALID_GPU, "capex_usd": "2000"}), "'capex_usd'"),
        (_gpu_toml({**_VALID_GPU, "specialty_usd_per_gpu_hour": -1.0}), "'specialty_usd"),
        (_gpu_toml({**_VALID_GPU, "vendor": ""}), "'vendor'"),
        (_gpu_toml({**_VALID_GPU, "capex": 1.0}), "'capex'"),
        (
            _gpu_toml(_VALID_GPU, sources={"capex_usd": "only this one"}),
            "'sources.tflops_bf16_dense'",
        ),
        (
            _gpu_toml(_VALID_GPU).replace('capex_usd = "test source for capex_usd"', ""),
            "'sources.capex_usd'",
        ),
        (
            _gpu_toml(
                _without("marketplace_usd_per_gpu_hour"),
                sources={k: "s" for k in NUMERIC_FIELDS if k in _VALID_GPU},
            ),
            "'sources.marketplace_usd_per_gpu_hour'",
        ),
        (_gpu_toml(_VALID_GPU) + _gpu_toml(_VALID_GPU), "'id' is duplicated"),
    ],
)
def test_malformed_file_names_gpu_and_field(tmp_path: Path, text: str, named: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert named in message
    assert "testgpu" in message
    assert "\n" not in message


def test_missing_sources_table(tmp_path: Path) -> None:
    text = _gpu_toml(_VALID_GPU)
    text = text[: text.index("[gpu.sources]")]
    with pytest.raises(CatalogError, match=r"testgpu.*'sources'"):
        load_catalog(_write(tmp_path, text))


def test_entry_without_id_is_named_by_position(tmp_path: Path) -> None:
    text = _gpu_toml(_VALID_GPU) + _gpu_toml(_without("id"))
    with pytest.raises(CatalogError, match="gpu #2: field 'id' is missing"):
        load_catalog(_write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    ["[[gpu]\nid = ", "title = 'no gpus'\n", "gpu = 3\n", ""],
)
def test_file_that_is_not_a_catalog(tmp_path: Path, text: str) -> None:
    with pytest.raises(CatalogError):
        load_catalog(_write(tmp_path, text))


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_catalog(tmp_path / "absent.toml")

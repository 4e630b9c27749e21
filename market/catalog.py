"""GPU catalog: the hardware, price and cost defaults the market starts from.

The built-in catalog lives in ``market/data/gpus.toml`` (one ``[[gpu]]`` table per model,
every number with a source string); scenarios replace numbers with
:meth:`GpuCatalog.with_overrides` or load a whole file with :func:`load_catalog`.

Units used throughout: TFLOP/s (dense BF16), GiB, TB/s (memory bandwidth, decimal), W, USD,
USD per GPU-hour.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import tomllib
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BOUNDS",
    "NUMERIC_FIELDS",
    "OPTIONAL_NUMERIC_FIELDS",
    "REQUIRED_NUMERIC_FIELDS",
    "STRING_FIELDS",
    "CatalogError",
    "GpuCatalog",
    "GpuModel",
    "load_catalog",
]

STRING_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "vendor",
    "akash_model",
    "akash_ram",
    "interface",
)
REQUIRED_NUMERIC_FIELDS: tuple[str, ...] = (
    "tflops_bf16_dense",
    "memory_gib",
    "memory_bandwidth_tb_s",
    "board_power_w",
    "capex_usd",
    "list_usd_per_gpu_hour",
)
OPTIONAL_NUMERIC_FIELDS: tuple[str, ...] = (
    "specialty_usd_per_gpu_hour",
    "marketplace_usd_per_gpu_hour",
)
NUMERIC_FIELDS: tuple[str, ...] = REQUIRED_NUMERIC_FIELDS + OPTIONAL_NUMERIC_FIELDS

#: Valid range [low, high] of every numeric field, in its units: generous for any GPU real
#: or imagined, finite so that prices, bytes and power stay within the engine's integer
#: micro-USD and byte counts (a price of 1e15 USD per GPU-hour would overflow them; one of
#: 1e-300 would round every max price to zero).
BOUNDS: Mapping[str, tuple[float, float]] = types.MappingProxyType({
    "tflops_bf16_dense": (0.01, 1e6),
    "memory_gib": (0.01, 4_096.0),
    "memory_bandwidth_tb_s": (0.001, 1_000.0),
    "board_power_w": (1.0, 100_000.0),
    "capex_usd": (1.0, 1e8),
    "list_usd_per_gpu_hour": (0.001, 1_000.0),
    "specialty_usd_per_gpu_hour": (0.001, 1_000.0),
    "marketplace_usd_per_gpu_hour": (0.001, 1_000.0),
})

# Where the built-in file sits inside the installed package (see [tool.setuptools.package-data]).
_DATA_PACKAGE = "market"
_DATA_FILE = "data/gpus.toml"
_TABLE_KEYS = frozenset((*STRING_FIELDS, *NUMERIC_FIELDS, "sources"))
_OVERRIDE_SOURCE = "scenario override"


class CatalogError(ValueError):
    """A malformed catalog: the message is one line naming the GPU id and the field."""


@dataclass(frozen=True, slots=True)
class GpuModel:
    """One GPU model: identity, Akash attributes, performance, cost and outside prices.

    Attributes:
        id: Catalog key, e.g. ``"h100"``.
        name: Human-readable name.
        vendor: ``"nvidia"``, ``"amd"`` or ``"aws"``.
        akash_model: Model string of Akash provider GPU attributes, e.g. ``"a100"``.
        akash_ram: GPU memory as Akash writes it, e.g. ``"80Gi"``.
        interface: Physical interface as Akash writes it, e.g. ``"sxm5"``, ``"pcie"``.
        tflops_bf16_dense: Peak dense BF16 tensor throughput, TFLOP/s.
        memory_gib: GPU memory, GiB.
        memory_bandwidth_tb_s: Peak GPU memory bandwidth, TB/s (decimal, 10^12 bytes/s);
            bounds how fast inference can read the model's weights.
        board_power_w: Board/module power, W.
        capex_usd: Purchase cost of one GPU, USD (see the data file for what it includes).
        list_usd_per_gpu_hour: Tenants' outside option, USD per GPU-hour (large cloud).
        specialty_usd_per_gpu_hour: Specialty-cloud price, USD per GPU-hour, or None.
        marketplace_usd_per_gpu_hour: Marketplace price, USD per GPU-hour, or None.
        sources: Read-only map from numeric field name to where its number comes from.
    """

    id: str
    name: str
    vendor: str
    akash_model: str
    akash_ram: str
    interface: str
    tflops_bf16_dense: float
    memory_gib: float
    memory_bandwidth_tb_s: float
    board_power_w: float
    capex_usd: float
    list_usd_per_gpu_hour: float
    specialty_usd_per_gpu_hour: float | None = None
    marketplace_usd_per_gpu_hour: float | None = None
    # hash=False: a mapping proxy is unhashable, and the numbers already identify a model.
    sources: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Copy before wrapping so later changes to the caller's dict cannot leak in.
        object.__setattr__(self, "sources", types.MappingProxyType(dict(self.sources)))

    @property
    def memory_bytes(self) -> int:
        """GPU memory in bytes (``memory_gib * 2**30``), the unit of Akash resource specs."""
        return round(self.memory_gib * 2**30)


class GpuCatalog:
    """Immutable, ordered collection of :class:`GpuModel`, indexed by id.

    Order is the file order; :meth:`array` returns per-field vectors in that order so the
    simulator can work on whole fleets with numpy.
    """

    __slots__ = ("_arrays", "_index", "_models")

    def __init__(self, models: Iterable[GpuModel]) -> None:
        """Build a catalog; raises CatalogError for duplicate ids or non-positive numbers."""
        models = tuple(models)
        if not models:
            raise CatalogError("catalog has no GPU models")
        index: dict[str, int] = {}
        for position, model in enumerate(models):
            if not isinstance(model, GpuModel):
                raise TypeError(f"catalog entries must be GpuModel, got {type(model).__name__}")
            _check_model(model)
            if model.id in index:
                raise CatalogError(
                    f"gpu {model.id!r}: field 'id' is duplicated (entries #{index[model.id] + 1}"
                    f" and #{position + 1})"
                )
            index[model.id] = position
        self._models = models
        self._index = index
        self._arrays: dict[str, npt.NDArray[np.float64]] = {}

    @property
    def ids(self) -> tuple[str, ...]:
        """GPU ids in catalog (file) order."""
        return tuple(self._index)

    def __getitem__(self, gpu_id: str) -> GpuModel:
        try:
            return self._models[self._index[gpu_id]]
        except KeyError:
            raise KeyError(f"unknown gpu id {gpu_id!r}; known ids: {self._known()}") from None

    def __contains__(self, gpu_id: object) -> bool:
        # isinstance first: an unhashable argument would otherwise raise TypeError.
        return isinstance(gpu_id, str) and gpu_id in self._index

    def __iter__(self) -> Iterator[GpuModel]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GpuCatalog):
            return NotImplemented
        return self._models == other._models

    def __hash__(self) -> int:
        return hash(self._models)

    def __repr__(self) -> str:
        return f"GpuCatalog({self._known()})"

    def index(self, gpu_id: str) -> int:
        """Position of ``gpu_id`` in :attr:`ids`; raises ValueError listing the known ids."""
        try:
            return self._index[gpu_id]
        except KeyError:
            raise ValueError(f"unknown gpu id {gpu_id!r}; known ids: {self._known()}") from None

    def array(self, field: str) -> npt.NDArray[np.float64]:
        """Values of numeric ``field`` as a read-only float64 array in :attr:`ids` order.

        Units are the field's own (see :class:`GpuModel`); a missing optional value is NaN.
        """
        if field not in NUMERIC_FIELDS:
            raise ValueError(
                f"{field!r} is not a numeric catalog field; valid: {', '.join(NUMERIC_FIELDS)}"
            )
        cached = self._arrays.get(field)
        if cached is None:
            values = [getattr(model, field) for model in self._models]
            cached = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            # Read-only so the cached array can be shared without callers corrupting it.
            cached.flags.writeable = False
            self._arrays[field] = cached
        return cached

    def with_overrides(self, overrides: Mapping[str, Mapping[str, float]]) -> GpuCatalog:
        """New catalog with numeric fields replaced, e.g. ``{"h100": {"capex_usd": 30000}}``.

        Values must be positive finite numbers in the field's units. An overridden field's
        source becomes ``"scenario override"``. This catalog is left untouched. Raises
        ValueError naming the unknown id or field and listing the valid ones.
        """
        for gpu_id, changes in overrides.items():
            if gpu_id not in self:
                raise ValueError(
                    f"overrides name unknown gpu id {gpu_id!r}; known ids: {self._known()}"
                )
            for name, value in changes.items():
                if name not in NUMERIC_FIELDS:
                    raise ValueError(
                        f"gpu {gpu_id!r}: field {name!r} cannot be overridden; numeric fields: "
                        f"{', '.join(NUMERIC_FIELDS)}"
                    )
                if _bounded(name, value) is None:
                    raise ValueError(
                        f"gpu {gpu_id!r}: field {name!r} override must be a number "
                        f"{_range_text(name)}, got {_short(value)}"
                    )
        models = []
        for model in self._models:
            changes = overrides.get(model.id, {})
            if changes:
                new_values = {name: _bounded(name, value) for name, value in changes.items()}
                new_sources = {**model.sources, **dict.fromkeys(changes, _OVERRIDE_SOURCE)}
                model = replace(model, **new_values, sources=new_sources)
            models.append(model)
        return GpuCatalog(models)

    def _known(self) -> str:
        return ", ".join(self._index)


def load_catalog(path: str | os.PathLike[str] | None = None) -> GpuCatalog:
    """Load a GPU catalog from a TOML file.

    Args:
        path: A catalog file in the format of ``market/data/gpus.toml``; None loads the
            built-in file from the installed package (parsed once, then cached).

    Raises:
        CatalogError: The file is not TOML or an entry is malformed (one line naming the
            gpu id and the field).
        OSError: The file cannot be read.
    """
    if path is None:
        return _builtin_catalog()
    # Not cached: a user file may change between calls.
    return _parse(Path(path).read_bytes(), origin=os.fspath(path))


@functools.cache
def _builtin_catalog() -> GpuCatalog:
    # importlib.resources so the file is found inside an installed wheel or zip too.
    resource = resources.files(_DATA_PACKAGE).joinpath(_DATA_FILE)
    return _parse(resource.read_bytes(), origin=f"{_DATA_PACKAGE}/{_DATA_FILE}")


def _parse(raw: bytes, origin: str) -> GpuCatalog:
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{origin}: not a valid TOML file: {exc}") from exc
    extra = sorted(set(document) - {"gpu"})
    if extra:
        raise CatalogError(f"{origin}: unknown top-level key(s) {', '.join(extra)}; expected gpu")
    tables = document.get("gpu")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise CatalogError(f"{origin}: expected one or more [[gpu]] tables")
    models = [_model_from_table(table, position, origin) for position, table in enumerate(tables)]
    seen: set[str] = set()
    for model in models:
        if model.id in seen:
            raise CatalogError(f"{origin}: gpu {model.id!r}: field 'id' is duplicated")
        seen.add(model.id)
    return GpuCatalog(models)


def _model_from_table(table: dict[str, Any], position: int, origin: str) -> GpuModel:
    raw_id = table.get("id")
    label = repr(raw_id) if isinstance(raw_id, str) and raw_id else f"#{position + 1}"

    def fail(name: str, problem: str) -> CatalogError:
        return CatalogError(f"{origin}: gpu {label}: field {name!r} {problem}")

    # Unknown keys are rejected so a misspelt optional field is not silently dropped.
    for key in table:
        if key not in _TABLE_KEYS:
            raise fail(key, "is not a catalog field")
    values: dict[str, Any] = {}
    for name in STRING_FIELDS:
        if name not in table:
            raise fail(name, "is missing")
        value = table[name]
        if not isinstance(value, str) or not value.strip():
            raise fail(name, f"must be a non-empty string, got {value!r}")
        values[name] = value
    for name in NUMERIC_FIELDS:
        if name not in table:
            if name in REQUIRED_NUMERIC_FIELDS:
                raise fail(name, "is missing")
            continue
        number = _bounded(name, table[name])
        if number is None:
            raise fail(name, f"must be a number {_range_text(name)}, got {_short(table[name])}")
        values[name] = number
    sources = table.get("sources")
    if not isinstance(sources, dict):
        raise fail("sources", "is missing (a [gpu.sources] table naming where each number is from)")
    # Every number in the data file must say where it comes from.
    for name in NUMERIC_FIELDS:
        if name in values:
            text = sources.get(name)
            if not isinstance(text, str) or not text.strip():
                raise fail(f"sources.{name}", "is missing: every number needs a source string")
    for name in sources:
        if name not in values or name not in NUMERIC_FIELDS:
            raise fail(f"sources.{name}", "names no numeric field of this gpu")
    return GpuModel(**values, sources=sources)


def _check_model(model: GpuModel) -> None:
    for name in STRING_FIELDS:
        value = getattr(model, name)
        if not isinstance(value, str) or not value.strip():
            raise CatalogError(f"gpu {model.id!r}: field {name!r} must be a non-empty string")
    for name in NUMERIC_FIELDS:
        value = getattr(model, name)
        if value is None and name in OPTIONAL_NUMERIC_FIELDS:
            continue
        if _bounded(name, value) is None:
            raise CatalogError(
                f"gpu {model.id!r}: field {name!r} must be a number {_range_text(name)}, "
                f"got {_short(value)}"
            )


def _bounded(name: str, value: object) -> float | None:
    """``value`` as a float if it is a finite real number within BOUNDS[name], else None."""
    # bool is an int subclass; True must not pass as 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    low, high = BOUNDS[name]
    return number if math.isfinite(number) and low <= number <= high else None


def _range_text(name: str) -> str:
    low, high = BOUNDS[name]
    return f"from {low:g} to {high:g}"


def _short(value: object) -> str:
    """`value` for an error message, cut short (a 5,000-digit integer has no repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

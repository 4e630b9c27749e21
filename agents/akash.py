"""Akash providers' own bid pricing, ported faithfully (quirks included).

Three pricing strategies an Akash provider runs, re-implemented from Akash's source:

* **The reference price script** (`script_rate`, `script_bid`, `AkashScript`): the GPU-aware
  shell script of the provider Helm chart, ``charts/akash-provider/scripts/
  price_script_generic.sh`` in akash-network/helm-charts (version "April-03-2024"). It turns
  USD/month targets per resource into a rate per block, using ``jq`` for the quantities,
  ``awk``/``printf`` for the printed values and ``bc -l`` (scale 20, truncating) for the sums.
* **The scale strategy** (`scale_rate`, `AkashScale`): the provider's built-in default,
  ``scalePricing`` in ``bidengine/pricing.go`` of akash-network/provider, with the chart's
  default scales (``bidprice*scale`` in ``charts/akash-provider/values.yaml``).
* **The random range** (`random_range_rate`, `AkashRandomRange`): ``randomRangePricing`` in
  the same ``bidengine/pricing.go``.

All three price in micro-units of the order's denomination per block; for a USD-pegged denom
that is micro-USD per block. The strategy classes bid in USD per GPU-hour for the whole order
divided by its GPUs, converting with the project's block time through `market.units`::

    usd_per_gpu_hour = per_gpu_hour_usd(per_block_to_per_hour_micro(micro_per_block), gpus)
                     = micro_per_block × (SECONDS_PER_HOUR / SECONDS_PER_BLOCK) / gpus / 10^6

(3600 / 6.117 ≈ 588.52 blocks an hour: the inverse of `market.units.usd_per_hour_to_per_block`);
the engine rounds that bid to whole micro-USD per hour of the whole order
(`market.units.order_rate_micro`), as any other bid. The order's max price goes the other way,
from the engine's own integer (`OrderView.max_price_micro_per_hour`), truncated to the chain's
18 decimals. A strategy
returns NaN where the real provider would not bid: the script refuses a rate above the max
price, the provider drops a zero price or one above the max price, and the Go strategies'
errors (`PricingError` here) end the provider's bid.

Quirks reproduced on purpose (see each function): the script and the scale strategy do not
multiply endpoints and leased IPs by the replica count; the script prints memory and storage
with 12 decimals before pricing, truncates its divisions at 20 decimals and rounds the final
rate from a double to 6 decimals; its jq filters drop the VRAM and interface of AMD GPUs; a GPU
model missing from the mapping costs the highest mapped price (at least 100 USD/month); the
scale strategy rounds its MiB divisions half away from zero at 16 decimals, and its default
storage scale prices only ephemeral and beta2 storage; the random range adds a stray ``/100``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any

import numpy as np

from market.catalog import GpuCatalog, load_catalog
from market.core.resources import ResourceUnit
from market.units import (
    BLOCKS_PER_MONTH,
    MICRO_USD_PER_USD,
    SECONDS_PER_BLOCK,
    SECONDS_PER_HOUR,
    per_block_to_per_hour_micro,
    per_gpu_hour_usd,
)

if TYPE_CHECKING:
    from market.strategy import MarketView, OrderView

__all__ = [
    "DEFAULT_GPU_MAPPINGS",
    "SCALE_DEFAULTS",
    "SCRIPT_TARGETS",
    "AkashRandomRange",
    "AkashScale",
    "AkashScript",
    "PricingError",
    "akash_resources",
    "max_price_per_block",
    "per_block_to_usd_per_gpu_hour",
    "random_range_rate",
    "scale_rate",
    "script_bid",
    "script_rate",
]


class PricingError(ValueError):
    """A pricing strategy's error: the real provider logs it and does not bid."""


# Exact arithmetic: far more digits than any price here needs, so only the roundings that
# Akash's code does explicitly ever round.
_EXACT = Context(prec=400, rounding=ROUND_HALF_EVEN)

_GIB = 2**30
_MIB = 2**20
_BC_SCALE = 20            # `bc -l` sets scale=20
_GO_DIV_PRECISION = 16    # shopspring/decimal DivisionPrecision
_DEC_PRECISION = 18       # cosmos LegacyDec decimals
_MAX_SORTABLE_DEC = Decimal(10) ** 18  # cosmos LegacyMaxSortableDec = 1 / 10^-18
_INT64_MAX = 2**63 - 1

#: Hours in the script's month: 429,909 blocks of 6.117 s (≈ 730.49 h, 30.437 days).
HOURS_PER_MONTH = BLOCKS_PER_MONTH * SECONDS_PER_BLOCK / SECONDS_PER_HOUR


def _dec(value: Any) -> Decimal:
    """A number as a Decimal; floats through their shortest repr (0.1 -> Decimal('0.1'))."""
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return Decimal(repr(value))
    if isinstance(value, int | str):
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except ArithmeticError:
            raise ValueError(f"not a number: {value!r}") from None
        if not number.is_finite():
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _decimals(value: Decimal) -> int:
    """Digits after the point as written (bc's `scale` of a number)."""
    exponent = value.as_tuple().exponent
    return max(0, -int(exponent))


# ------------------------------------------------------------------------------ the script

#: The script's USD/month targets, by the suffix of its environment variable
#: (``PRICE_TARGET_<NAME>``), with its defaults: per CPU thread (1000 millicores), per GiB of
#: memory, per GiB of ephemeral / beta1 (HDD) / beta2 (SSD) / beta3 (NVMe) storage, per
#: endpoint, per leased IP.
SCRIPT_TARGETS: Mapping[str, str] = {
    "cpu": "1.60",
    "memory": "0.80",
    "hd_ephemeral": "0.02",
    "hd_pers_hdd": "0.01",
    "hd_pers_ssd": "0.03",
    "hd_pers_nvme": "0.04",
    "endpoint": "0.05",
    "ip": "5",
}
_STORAGE_TARGET = {"ephemeral": "hd_ephemeral", "beta1": "hd_pers_hdd", "beta2": "hd_pers_ssd",
                   "beta3": "hd_pers_nvme"}


def _bc_mul(a: Decimal, b: Decimal) -> Decimal:
    """``a * b`` in ``bc -l``: scale min(sa + sb, max(20, sa, sb)), the rest truncated."""
    sa, sb = _decimals(a), _decimals(b)
    scale = min(sa + sb, max(_BC_SCALE, sa, sb))
    return (a * b).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_DOWN)


def _bc_div(a: Decimal, b: Decimal) -> Decimal:
    """``a / b`` in ``bc -l``: truncated to 20 decimals."""
    return (a / b).quantize(Decimal(1).scaleb(-_BC_SCALE), rounding=ROUND_DOWN)


def _printf(value: float, decimals: int) -> Decimal:
    """``printf "%.Nf"`` of a double: its exact binary value rounded half to even."""
    return Decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)


def _jq_sum(values: list[float]) -> float | None:
    """jq's ``add`` over doubles, left to right; None (jq's null) for an empty list."""
    if not values:
        return None
    total = values[0]
    for value in values[1:]:
        total += value
    return total


def _parse_gpu_mappings(gpu_mappings: str) -> tuple[dict[str, str], Decimal]:
    """The script's ``PRICE_TARGET_GPU_MAPPINGS``: ``key=price`` pairs split on ``,`` then
    ``=`` as bash ``read -ra`` does (spaces kept, later keys win, an empty price counts as
    missing; an empty key is a "bad array subscript" that ends bash's loop, so the pairs after
    it are dropped), and the catch-all price max(100, highest price)."""
    mappings: dict[str, str] = {}
    pairs = gpu_mappings.split(",") if gpu_mappings else []
    while pairs and pairs[-1] == "":  # `read -a` drops a trailing empty field
        pairs.pop()
    for pair in pairs:
        fields = pair.split("=")
        key = fields[0]
        value = fields[1] if len(fields) > 1 else ""
        if not key:
            break
        mappings[key] = value
    highest = Decimal(100)
    for key, value in mappings.items():
        if value == "":
            continue
        price = _dec(value)  # bc would choke on a non-number and the script would break
        if price < 0:
            raise ValueError(f"gpu_mappings: price of {key!r} must be >= 0, got {value!r}")
        if price > highest:
            highest = price
    return mappings, highest


def _gpu_key(resource: Mapping[str, Any]) -> str:
    """The mapping key the script builds for a resource's GPU: model, then ``.ram``, then
    ``.interface``. Its jq filter reads ram and interface only under ``nvidia`` (the
    ``//`` alternatives bind looser than ``|``), so an AMD GPU's key is its bare model."""
    gpu = resource.get("gpu") or {}
    attributes = gpu.get("attributes") or {}
    vendors = attributes.get("vendor") or {}
    nvidia, amd = vendors.get("nvidia"), vendors.get("amd")
    chosen = nvidia if nvidia not in (None, False) else amd
    model = chosen.get("model") if isinstance(chosen, dict) else None
    model_text = "0" if model in (None, False) else str(model)
    details = nvidia if isinstance(nvidia, dict) and nvidia.get("model") == model else {}
    key = model_text
    for name in ("ram", "interface"):
        value = details.get(name)
        text = "0" if value in (None, False) else str(value)
        if text != "0":
            key += f".{text}"
    return key


def _gpu_price(key: str, mappings: Mapping[str, str], catch_all: Decimal) -> Decimal:
    """Full key, then the key minus its last ``.part``, then the bare model, else catch-all."""
    for candidate in (key, key.rsplit(".", 1)[0], key.split(".", 1)[0]):
        value = mappings.get(candidate, "")
        if value != "":
            return _dec(value)
    return catch_all


def _targets(targets: Mapping[str, Any] | None) -> dict[str, Decimal]:
    merged = {name: Decimal(value) for name, value in SCRIPT_TARGETS.items()}
    for name, value in (targets or {}).items():
        if name not in SCRIPT_TARGETS:
            raise ValueError(f"unknown price target {name!r}; known: {', '.join(SCRIPT_TARGETS)}")
        merged[name] = _dec(value)
    return merged


def script_rate(resources: list[dict], gpu_mappings: str = "",
                targets: Mapping[str, Any] | None = None) -> Decimal:
    """The reference price script's rate for a USD-pegged denom: micro-units per block with
    6 decimals, as the script prints it.

    `resources` is the JSON the provider hands its script (one dict per resource unit:
    ``cpu`` millicores, ``memory`` bytes, ``storage`` list of ``{"class", "size"}``, ``gpu``
    ``{"units", "attributes": {"vendor": {"nvidia"|"amd": {"model", "ram", "interface"}}}}``,
    ``count``, ``endpoint_quantity``, ``ip_lease_quantity``). `gpu_mappings` is the
    ``PRICE_TARGET_GPU_MAPPINGS`` string (``"h100.80Gi=1700,a100=900"``, USD/month per GPU);
    `targets` overrides the USD/month targets of `SCRIPT_TARGETS` by name.

    Quantities: cpu = Σ cpu × count / 1000 (as jq prints it); memory and each storage class =
    Σ bytes × count / 2^30 printed with 12 decimals; endpoints = Σ endpoint_quantity and
    IPs = Σ ip_lease_quantity, *not* times count (``.x//0 * .count`` is ``.x // (0 *
    .count)``). GPU cost = Σ count × units × price of the unit's key. Total USD/month is their
    sum times the targets (bc, scale 20); rate = total / 429,909 (truncated at 20 decimals)
    × 10^6, printed with 6 decimals from a double. If no unit has any storage the real script's
    jq fails and it prints 0 (which the provider rejects); so does this.

    >>> script_rate([{"cpu": 1000, "memory": 2**30, "storage": [{"class": "ephemeral",
    ...     "size": 2**30}], "count": 1, "endpoint_quantity": 1, "ip_lease_quantity": 0}])
    Decimal('5.745402')
    """
    if not resources:
        raise ValueError("resources: expected at least one resource unit")
    prices = _targets(targets)
    mappings, catch_all = _parse_gpu_mappings(gpu_mappings)
    with localcontext(_EXACT):
        # jq works in doubles: products, sums (left to right) and divisions as below.
        cpu = _jq_sum([float(r["cpu"]) * float(r["count"]) for r in resources])
        memory = _jq_sum([float(r["memory"]) * float(r["count"]) for r in resources])
        quantities: list[tuple[Decimal, Decimal]] = [
            (Decimal(repr(cpu / 1000)), prices["cpu"]),
            (_printf(memory / _GIB, 12), prices["memory"]),
        ]
        for storage_class, target in _STORAGE_TARGET.items():
            sizes = [float(item["size"]) * float(r["count"]) if item.get("class") == storage_class
                     else 0.0 for r in resources for item in r.get("storage") or ()]
            total = _jq_sum(sizes)
            if total is None:  # `null / 2^30` fails in jq: the script prices nothing
                return Decimal("0.000000")
            quantities.append((_printf(total / _GIB, 12), prices[target]))
        endpoints = sum(int(r.get("endpoint_quantity") or 0) for r in resources)
        ips = sum(int(r.get("ip_lease_quantity") or 0) for r in resources)
        quantities += [(Decimal(endpoints), prices["endpoint"]), (Decimal(ips), prices["ip"])]
        gpu_total = Decimal(0)
        for r in resources:
            units = int((r.get("gpu") or {}).get("units") or 0)
            price = _gpu_price(_gpu_key(r), mappings, catch_all)
            gpu_total += _bc_mul(Decimal(int(r["count"]) * units), price)
        total_usd = sum((_bc_mul(q, t) for q, t in quantities), Decimal(0)) + gpu_total
        rate_usd = _bc_div(total_usd, Decimal(BLOCKS_PER_MONTH))
        micro = _bc_mul(rate_usd, Decimal(MICRO_USD_PER_USD))
        return _printf(float(micro), 6)


def script_bid(resources: list[dict], max_price_micro_per_block: Any, gpu_mappings: str = "",
               targets: Mapping[str, Any] | None = None) -> Decimal | None:
    """The script's bid, or None where the provider does not bid: the script refuses a rate
    above the order's max price ("requested rate is too low"), and the provider rejects a
    zero price."""
    rate = script_rate(resources, gpu_mappings, targets)
    if rate > _dec(max_price_micro_per_block) or rate == 0:
        return None
    return rate


def _default_gpu_mappings(catalog: GpuCatalog) -> str:
    pairs = []
    for gpu in catalog:
        if gpu.vendor not in ("nvidia", "amd"):
            continue  # not an Akash GPU vendor: the script prices it at the catch-all
        usd_per_hour = gpu.marketplace_usd_per_gpu_hour or gpu.specialty_usd_per_gpu_hour \
            or gpu.list_usd_per_gpu_hour
        month = (_dec(usd_per_hour) * _dec(HOURS_PER_MONTH)).quantize(Decimal(1), ROUND_HALF_UP)
        # AMD: the script looks up the bare model (its jq drops AMD ram and interface).
        key = gpu.akash_model if gpu.vendor == "amd" else f"{gpu.akash_model}.{gpu.akash_ram}"
        pairs.append(f"{key}={month}")
    return ",".join(pairs)


#: Default ``PRICE_TARGET_GPU_MAPPINGS`` of `AkashScript`, from the built-in catalog: each
#: NVIDIA GPU as ``model.ram`` (the script's fallback drops the interface), each AMD GPU as its
#: bare model, at its marketplace (Vast.ai) price per GPU-hour, or the specialty-cloud price
#: where the catalog has no marketplace price, or else the hyperscaler list price, times
#: `HOURS_PER_MONTH`, rounded to whole USD/month. GPUs of other vendors (Trainium2) are left out:
#: the script prices them at its catch-all, max(100, highest mapped price).
DEFAULT_GPU_MAPPINGS = _default_gpu_mappings(load_catalog())


# ------------------------------------------------------------------------- scale strategy

#: The provider Helm chart's default scales (values.yaml ``bidpricecpuscale`` ... ), in
#: micro-units per block: per millicore, per MiB of memory, per MiB of storage (flag format:
#: a bare number is the ephemeral class, ``class=scale`` the others; the chart prices only
#: ephemeral and beta2, so an order with beta1 or beta3 storage gets no bid), per endpoint,
#: per leased IP.
SCALE_DEFAULTS: Mapping[str, str] = {
    "cpu": "0.004",
    "memory": "0.0016",
    "storage": "0.00016,beta2=0.00016",
    "endpoint": "1",
    "ip": "60",
}
_SCALE_NAMES = ("cpu", "memory", "storage", "endpoint", "ip")


def _scale(name: str, value: Any) -> Decimal:
    try:
        number = _dec(value)
    except (TypeError, ValueError):
        raise PricingError(f"{name}: not a valid bid price: {value!r}") from None
    if number < 0:
        raise PricingError(f"{name}: bid price cannot be a negative number, got {value!r}")
    return number


def _storage_scales(value: Any) -> dict[str, Decimal]:
    """``--bid-price-storage-scale``: ``"0.00016,beta2=0.00016"`` (a bare number names the
    ephemeral class) or a mapping of class to scale."""
    if isinstance(value, Mapping):
        return {str(name): _scale(f"storage.{name}", v) for name, v in value.items()}
    if not isinstance(value, str):
        return {"ephemeral": _scale("storage", value)}
    scales: dict[str, Decimal] = {}
    for pair in value.split(","):
        fields = pair.split("=")
        name, text = (fields[0], fields[1]) if len(fields) == 2 else ("ephemeral", fields[0])
        scales[name] = _scale(f"storage.{name}", text)
    return scales


def _go_div(numerator: int, denominator: int) -> Decimal:
    """shopspring ``Div``: rounded half away from zero to 16 decimals (both >= 0 here)."""
    quotient, remainder = divmod(numerator * 10**_GO_DIV_PRECISION, denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return Decimal(quotient).scaleb(-_GO_DIV_PRECISION)


def scale_rate(resources: list[dict], scales: Mapping[str, Any]) -> Decimal:
    """The scale strategy's price, micro-units per block (exact decimal).

    ``cpu × count × cpu_scale + memory × count / MiB × memory_scale + Σ_class storage × count
    / MiB × storage_scale[class] + endpoints × endpoint_scale + IPs × ip_scale``, with
    endpoints = Σ endpoint_quantity and IPs = Σ ip_lease_quantity *not* times count (each
    leased IP counted once, as the provider counts distinct IP endpoints of the group). MiB
    divisions round half away from zero at 16 decimals, as shopspring/decimal does.

    `scales` takes ``cpu``, ``memory``, ``storage``, ``endpoint``, ``ip`` (see
    `SCALE_DEFAULTS`); a missing one is 0, like the provider's flag default. Raises
    `PricingError` for a negative scale or all-zero scales (the Go check counts storage as
    zero if any class scale is zero), storage of a class without a scale, a zero or negative
    price, one with more than 18 decimals (cosmos ``LegacyNewDecFromStr`` rejects it) or one
    above 10^18 (``LegacyMaxSortableDec``).
    """
    unknown = set(scales) - set(_SCALE_NAMES)
    if unknown:
        raise ValueError(f"unknown scale(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(_SCALE_NAMES)}")
    cpu_scale = _scale("cpu", scales.get("cpu", 0))
    memory_scale = _scale("memory", scales.get("memory", 0))
    storage_scale = _storage_scales(scales.get("storage", "0"))
    endpoint_scale = _scale("endpoint", scales.get("endpoint", 0))
    ip_scale = _scale("ip", scales.get("ip", 0))
    storage_any_zero = not storage_scale or any(v == 0 for v in storage_scale.values())
    if cpu_scale == 0 and memory_scale == 0 and storage_any_zero and endpoint_scale == 0 \
            and ip_scale == 0:
        raise PricingError("at least one bid price must be a non-zero number")
    if not resources:
        raise ValueError("resources: expected at least one resource unit")
    cpu = memory = endpoints = ips = 0
    storage = dict.fromkeys(storage_scale, 0)
    for r in resources:
        count = int(r["count"])
        cpu += int(r["cpu"]) * count
        memory += int(r["memory"]) * count
        for item in r.get("storage") or ():
            storage_class = item["class"]
            if storage_class == "ram":  # shared memory: not persistent, so "ephemeral"
                storage_class = "ephemeral"
            if storage_class not in storage:
                raise PricingError(f"no pricing configured for storage class: {storage_class}")
            storage[storage_class] += int(item["size"]) * count
        endpoints += int(r.get("endpoint_quantity") or 0)
        ips += int(r.get("ip_lease_quantity") or 0)
    with localcontext(_EXACT):
        total = Decimal(cpu) * cpu_scale + _go_div(memory, _MIB) * memory_scale
        for storage_class, size in storage.items():
            total += _go_div(size, _MIB) * storage_scale[storage_class]
        total += Decimal(endpoints) * endpoint_scale + Decimal(ips) * ip_scale
        if total < 0:
            raise PricingError("a bid quantity is invalid")
        if total == 0:
            raise PricingError("a bid of zero was produced")
        total = total.normalize(_EXACT)
        if _decimals(total) > _DEC_PRECISION:
            raise PricingError(f"value '{total:f}' exceeds max precision of {_DEC_PRECISION}"
                               " decimal places")
        if total > _MAX_SORTABLE_DEC:
            raise PricingError(f"a bid quantity is invalid: {total:f} > 10^18")
        return total


# ---------------------------------------------------------------------------- random range

_MIN_GROUP_MEM_PRICE = 50        # per GiB, the floor
_MAX_GROUP_MEM_PRICE = 1_048_576  # per GiB, the ceiling
_RANGE_SCALE = 10_000


def _price_range(resources: list[dict], max_price: Decimal) -> tuple[Decimal, Decimal]:
    """``calculatePriceRange``: floor = ⌊memory × 50 / GiB⌋, ceiling = min(⌊memory ×
    1,048,576 / GiB⌋, max price); a zero floor or ceiling becomes 1."""
    memory = sum(int(r["memory"]) * int(r["count"]) for r in resources)
    floor = Decimal(memory * _MIN_GROUP_MEM_PRICE // _GIB)
    ceiling = Decimal(memory * _MAX_GROUP_MEM_PRICE // _GIB)
    if ceiling > max_price:
        ceiling = max_price
    if floor == 0:
        floor = Decimal(1)
    if ceiling == 0:
        ceiling = Decimal(1)
    return floor, ceiling


def _range_bound(floor: Decimal, ceiling: Decimal) -> int:
    """``rand.Int``'s bound: ⌊(ceiling − floor) × 10,000⌋, at least 1."""
    bound = int(((ceiling - floor) * _RANGE_SCALE).to_integral_value(ROUND_DOWN))
    if bound > _INT64_MAX:
        raise PricingError("Int64() out of bound")  # LegacyDec.TruncateInt64 panics
    return max(bound, 1)


def _quantize_dec(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-_DEC_PRECISION), rounding=ROUND_DOWN)


def random_range_rate(resources: list[dict], max_price: Any, rng: np.random.Generator,
                      quirk: bool = True) -> Decimal:
    """The random-range strategy's price, micro-units per block.

    Draws ``k`` uniformly from [0, ⌊(ceiling − floor) × 10,000⌋) and returns ``floor +
    k / 10,000 / 100``: with `quirk` (the real code's stray ``/100``) every price lies in the
    lowest 1% of [floor, ceiling]; without it, ``floor + k / 10,000`` spans the whole range.
    Floor and ceiling are `calculatePriceRange`'s (memory-based, the ceiling capped at the
    order's `max_price`); equal bounds return the ceiling. A floor above the max price is
    returned as is (the provider then does not bid: "Price too high").
    """
    with localcontext(_EXACT):
        max_price = _quantize_dec(_dec(max_price))
        floor, ceiling = _price_range(resources, max_price)
        if floor == ceiling:
            return ceiling
        draw = int(rng.integers(0, _range_bound(floor, ceiling)))
        divisor = _RANGE_SCALE * 100 if quirk else _RANGE_SCALE
        return floor + Decimal(draw) / divisor


# ----------------------------------------------------------------------- our orders as JSON

def _interface(value: str) -> str:
    """The provider's ``FilterGPUInterface``: lower case, any ``sxm*`` is ``sxm``."""
    value = value.lower()
    return "sxm" if value.startswith("sxm") else value


def _gpu_attributes(gpu: Any) -> tuple[str, dict[str, str]]:
    return gpu.vendor.lower(), {"model": gpu.akash_model, "ram": gpu.akash_ram,
                                "interface": _interface(gpu.interface)}


def akash_resources(units: tuple[ResourceUnit, ...], catalog: GpuCatalog, *,
                    gpu_model: str | None = None) -> list[dict]:
    """An order's units in the JSON shape Akash hands its pricing scripts.

    GPU attributes come from the catalog entry of each accepted model, as a tenant's SDL
    writes them (``model``, ``ram``, ``interface`` with ``sxm4``/``sxm5`` written ``sxm``, as
    the provider's ``FilterGPUInterface`` matches them). Without `gpu_model` this is the
    order as posted: the SDL sorts a GPU's ``vendor/<v>/model/<m>/ram/<r>/interface/<i>``
    attributes by key and the provider's ``parseGPU`` keeps one model per vendor, so for
    several accepted models of one vendor the last in key order wins. With `gpu_model` (a
    catalog id) it is what a provider of that GPU prices: its reservation rewrites each GPU
    unit's attributes to the allocated model (with the ram and interface the tenant asked for).

    Endpoints: ``endpoint_quantity`` counts every endpoint of the unit, and each leased IP is
    one (kind LEASED_IP) besides the unit's `endpoints`; ``ip_lease_quantity`` is its IPs.
    """
    resources = []
    for unit in units:
        gpu: dict[str, Any] = {"units": 0, "attributes": {}}
        if unit.gpu is not None and unit.gpu.units:
            if gpu_model is not None:
                if gpu_model not in unit.gpu.models:
                    raise ValueError(f"gpu_model {gpu_model!r} does not serve a unit that "
                                     f"accepts {', '.join(unit.gpu.models)}")
                chosen = [_gpu_attributes(catalog[gpu_model])]
            else:
                def sort_key(entry: tuple[str, dict[str, str]]) -> str:
                    vendor, a = entry
                    return (f"vendor/{vendor}/model/{a['model']}/ram/{a['ram']}"
                            f"/interface/{a['interface']}")
                chosen = sorted((_gpu_attributes(catalog[m]) for m in unit.gpu.models),
                                key=sort_key)
            vendors: dict[str, dict[str, str]] = {}
            for vendor, attributes in chosen:
                vendors[vendor] = attributes  # later keys overwrite, as parseGPU does
            gpu = {"units": unit.gpu.units, "attributes": {"vendor": dict(sorted(vendors.items()))}}
        resources.append({
            "cpu": unit.cpu_millicores,
            "memory": unit.memory_bytes,
            "storage": [{"class": s.storage_class, "size": s.size_bytes} for s in unit.storage],
            "gpu": gpu,
            "count": unit.count,
            "endpoint_quantity": unit.endpoints + unit.ip_leases,
            "ip_lease_quantity": unit.ip_leases,
        })
    return resources


# ----------------------------------------------------------------------------- conversions

def per_block_to_usd_per_gpu_hour(micro_per_block: Any, gpus: int) -> float:
    """A whole-order rate in micro-USD per block as USD per GPU-hour."""
    return per_gpu_hour_usd(per_block_to_per_hour_micro(float(_dec(micro_per_block))), gpus)


def max_price_per_block(order: OrderView) -> Decimal:
    """The order's max price in micro-USD per block for the whole order, truncated to the
    chain's 18 decimals (from the engine's own whole micro-USD per hour)."""
    with localcontext(_EXACT):
        per_block = (Decimal(order.max_price_micro_per_hour) * _dec(SECONDS_PER_BLOCK)
                     / _dec(SECONDS_PER_HOUR))
        return _quantize_dec(per_block)


# ------------------------------------------------------------------------ strategy classes

class _OrderPriced:
    """Bids that depend on the order, converted from micro-USD per block."""

    _cache_limit = 4096

    def __init__(self) -> None:
        self._cache: dict[Any, float] = {}

    def _remember(self, key: Any, compute: Any) -> float:
        price = self._cache.get(key)
        if price is None:
            if len(self._cache) >= self._cache_limit:
                self._cache.clear()
            price = self._cache[key] = compute()
        return price


class AkashScript(_OrderPriced):
    """Bid with the reference price script (`script_bid`), GPU-aware.

    `gpu_mappings` is the script's ``PRICE_TARGET_GPU_MAPPINGS`` in USD/month per GPU
    (default `DEFAULT_GPU_MAPPINGS`, from the catalog's marketplace prices); keyword `targets`
    override its USD/month targets (`SCRIPT_TARGETS`: cpu, memory, hd_ephemeral, hd_pers_hdd,
    hd_pers_ssd, hd_pers_nvme, endpoint, ip). Each provider prices the order as its
    reservation shows it: with its own GPU model (see `akash_resources`).
    """

    def __init__(self, gpu_mappings: str = DEFAULT_GPU_MAPPINGS, **targets: Any) -> None:
        super().__init__()
        _parse_gpu_mappings(gpu_mappings)  # fail early on a malformed mapping
        self.gpu_mappings = gpu_mappings
        self.targets = {name: str(value) for name, value in _targets(targets).items()}
        self._catalog = load_catalog()

    def _price(self, order: OrderView, gpu_model: str) -> float:
        resources = akash_resources(order.units, self._catalog, gpu_model=gpu_model)
        rate = script_bid(resources, max_price_per_block(order), self.gpu_mappings,
                          self.targets)
        return math.nan if rate is None else per_block_to_usd_per_gpu_hour(rate, order.gpus)

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        out = np.full(len(providers), np.nan)
        if not len(providers) or order.gpus <= 0:
            return out
        models = np.asarray(view.models(providers))
        max_micro = order.max_price_micro_per_hour
        for model in np.unique(models).tolist():
            gpu_id = view.gpu_models[model]
            out[models == model] = self._remember(
                (order.units, gpu_id, max_micro), lambda gpu_id=gpu_id: self._price(order, gpu_id))
        return out


class AkashScale(_OrderPriced):
    """Bid with the provider's built-in scale strategy (`scale_rate`); no GPU term.

    Scales in micro-USD per block: `cpu` per millicore, `memory` per MiB, `storage` per MiB
    in the provider flag's format (``"0.00016,beta2=0.00016"``: a bare number is ephemeral),
    `endpoint` per endpoint, `ip` per leased IP; defaults `SCALE_DEFAULTS` (the Helm chart's).
    Every provider bids the same price: the strategy sees the order, not the provider.
    """

    def __init__(self, cpu: Any = SCALE_DEFAULTS["cpu"], memory: Any = SCALE_DEFAULTS["memory"],
                 storage: Any = SCALE_DEFAULTS["storage"],
                 endpoint: Any = SCALE_DEFAULTS["endpoint"], ip: Any = SCALE_DEFAULTS["ip"]):
        super().__init__()
        self.scales = {"cpu": cpu, "memory": memory, "storage": storage, "endpoint": endpoint,
                       "ip": ip}
        probe = [{"cpu": 0, "memory": 0, "storage": [], "count": 1}]
        try:  # the provider validates its scales at start-up
            scale_rate(probe, self.scales)
        except PricingError as error:
            if "zero was produced" not in str(error):
                raise

    def _price(self, order: OrderView) -> float:
        try:
            rate = scale_rate(akash_resources(order.units, load_catalog()), self.scales)
        except PricingError:
            return math.nan
        if rate > max_price_per_block(order):
            return math.nan
        return per_block_to_usd_per_gpu_hour(rate, order.gpus)

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        if not len(providers) or order.gpus <= 0:
            return np.full(len(providers), np.nan)
        max_micro = order.max_price_micro_per_hour
        price = self._remember((order.units, max_micro), lambda: self._price(order))
        return np.full(len(providers), price)


class AkashRandomRange:
    """Bid with the provider's random-range strategy (`random_range_rate`): each provider
    draws its own price. `quirk` keeps the real code's stray ``/100`` (every bid in the lowest
    1% of the range); `seed` seeds this strategy's own random generator."""

    def __init__(self, quirk: bool = True, seed: int = 0) -> None:
        self.quirk = bool(quirk)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        count = len(providers)
        if not count or order.gpus <= 0:
            return np.full(count, np.nan)
        resources = akash_resources(order.units, load_catalog())
        with localcontext(_EXACT):
            max_price = max_price_per_block(order)
            floor, ceiling = _price_range(resources, max_price)
            if floor > max_price:  # the floor is the bid, and it is above the max: no bid
                return np.full(count, np.nan)
            if floor == ceiling:  # the ceiling is the bid (above the max only if it was 0)
                price = math.nan if ceiling > max_price \
                    else per_block_to_usd_per_gpu_hour(ceiling, order.gpus)
                return np.full(count, price)
            try:
                bound = _range_bound(floor, ceiling)
            except PricingError:
                return np.full(count, np.nan)
        draws = self.rng.integers(0, bound, size=count)
        divisor = _RANGE_SCALE * 100 if self.quirk else _RANGE_SCALE
        micro_per_block = float(floor) + draws / divisor
        return per_gpu_hour_usd(per_block_to_per_hour_micro(micro_per_block), order.gpus)

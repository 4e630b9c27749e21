"""Akash providers' pricing ports (agents/akash.py), checked against hand-computed values.

Expected prices are written as the arithmetic Akash's code does, from the sources named in
agents/akash.py: the reference script's
USD/month targets over 429,909 blocks (bc truncates at 20 decimals, the final rate is printed
with 6), the scale strategy's exact decimals (MiB divisions rounded half away from zero at 16
decimals), and the random range's memory-based floor and ceiling.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

import numpy as np
import pytest

from agents.akash import (
    DEFAULT_GPU_MAPPINGS,
    SCALE_DEFAULTS,
    AkashRandomRange,
    AkashScale,
    AkashScript,
    PricingError,
    akash_resources,
    max_price_per_block,
    per_block_to_usd_per_gpu_hour,
    random_range_rate,
    scale_rate,
    script_bid,
    script_rate,
)
from market import Market, load_scenario
from market.catalog import load_catalog
from market.core.pool import ProviderRow
from market.core.resources import GpuRequest, ResourceUnit, Storage, gpu_units
from market.strategy import OrderView
from market.units import BLOCKS_PER_MONTH, MICRO_USD_PER_USD, SECONDS_PER_BLOCK, SECONDS_PER_HOUR

GIB = 2**30
MIB = 2**20
D = Decimal


# ----------------------------------------------------------------------------- helpers

def rate_of(total_usd_per_month: Decimal) -> Decimal:
    """The script's last steps: total / 429,909 truncated at 20 decimals (bc), times 10^6,
    printed with 6 decimals."""
    with localcontext() as ctx:
        ctx.prec = 100
        per_block = (total_usd_per_month / BLOCKS_PER_MONTH).quantize(D("1e-20"), ROUND_DOWN)
        return (per_block * MICRO_USD_PER_USD).quantize(D("1e-6"), ROUND_HALF_EVEN)


def unit(cpu: int = 0, memory: int = 0, storage: list | None = None, gpu: dict | None = None,
         count: int = 1, endpoints: int = 0, ips: int = 0) -> dict:
    """One resource unit in the JSON shape Akash hands its pricing scripts."""
    return {"cpu": cpu, "memory": memory,
            "storage": [{"class": "ephemeral", "size": 0}] if storage is None else storage,
            "gpu": gpu or {"units": 0, "attributes": {}}, "count": count,
            "endpoint_quantity": endpoints, "ip_lease_quantity": ips}


def gpu(units: int, model: str, ram: str | None = None, interface: str | None = None,
        vendor: str = "nvidia") -> dict:
    attributes = {"model": model}
    if ram is not None:
        attributes["ram"] = ram
    if interface is not None:
        attributes["interface"] = interface
    return {"units": units, "attributes": {"vendor": {vendor: attributes}}}


def gpu_price_seen(gpu_attrs: dict, mappings: str, count: int = 1) -> Decimal:
    """The rate of a unit that asks for nothing but GPUs."""
    return script_rate([unit(gpu=gpu_attrs, count=count)], mappings)


# ---------------------------------------------------------------------- the price script

def test_script_prices_each_quantity_at_its_target():
    resources = [unit(cpu=2500, memory=3 * GIB,
                      storage=[{"class": "ephemeral", "size": 10 * GIB},
                               {"class": "beta1", "size": 100 * GIB},
                               {"class": "beta2", "size": 20 * GIB},
                               {"class": "beta3", "size": 5 * GIB}],
                      endpoints=2, ips=1)]
    total = (D(2500) / 1000 * D("1.60") + 3 * D("0.80") + 10 * D("0.02") + 100 * D("0.01")
             + 20 * D("0.03") + 5 * D("0.04") + 2 * D("0.05") + 1 * D(5))
    assert script_rate(resources) == rate_of(total)


def test_script_default_targets_hetzner_example():
    # The script's own comment: 16 threads, 32 GB, 360 GB NVMe cost $65.60 a month.
    resources = [unit(cpu=16_000, memory=32 * GIB, storage=[{"class": "beta3", "size": 360 * GIB}])]
    assert script_rate(resources) == rate_of(D("1.60") * 16 + D("0.80") * 32 + D("0.04") * 360)
    assert rate_of(D("65.60")) == script_rate(resources)


def test_script_multiplies_by_count_except_endpoints_and_ips():
    resources = [unit(cpu=1500, memory=2 * GIB, storage=[{"class": "beta2", "size": 50 * GIB}],
                      count=3, endpoints=2, ips=1),
                 unit(cpu=500, memory=GIB, count=4, endpoints=1, ips=2)]
    cpu = D(1500 * 3 + 500 * 4) / 1000
    memory = D(2 * 3 + 1 * 4)
    beta2 = D(50 * 3)
    endpoints = D(2 + 1)   # not 2×3 + 1×4: `.endpoint_quantity//0 * .count` is `.x // (0 * .count)`
    ips = D(1 + 2)         # not 1×3 + 2×4
    total = cpu * D("1.60") + memory * D("0.80") + beta2 * D("0.03") + endpoints * D("0.05") \
        + ips * D(5)
    assert script_rate(resources) == rate_of(total)


def test_script_prints_memory_and_storage_with_12_decimals_before_pricing():
    # 1000 bytes = 9.31322574615478515625e-7 GiB, printed 0.000000931323
    memory = (D(1000) / GIB).quantize(D("1e-12"), ROUND_HALF_EVEN)
    assert memory == D("0.000000931323")
    storage = (D(3000) / GIB).quantize(D("1e-12"), ROUND_HALF_EVEN)
    resources = [unit(cpu=1000, memory=1000, storage=[{"class": "ephemeral", "size": 3000}])]
    assert script_rate(resources) == rate_of(D("1.60") + memory * D("0.80") + storage * D("0.02"))


def test_script_rounds_the_rate_to_6_decimals():
    # 1 thread: 1.60 / 429909 × 10^6 = 3.72171785...: 3.721718 micro-units per block
    rate = script_rate([unit(cpu=1000)])
    assert rate == D("3.721718")
    assert rate == (D("1.60") / 429_909 * 10**6).quantize(D("1e-6"), ROUND_HALF_EVEN)
    assert rate.as_tuple().exponent == -6


@pytest.mark.parametrize(("attrs", "mappings", "price"), [
    # full key: model.ram.interface
    (gpu(1, "h100", "80Gi", "sxm"), "h100.80Gi.sxm=1700,h100.80Gi=1600,h100=1500", D(1700)),
    # the key minus its last part (the interface)
    (gpu(1, "h100", "80Gi", "pcie"), "h100.80Gi.sxm=1700,h100.80Gi=1600,h100=1500", D(1600)),
    # model.interface without ram, then minus the interface
    (gpu(1, "a100", None, "sxm"), "a100.sxm=950,a100=900", D(950)),
    (gpu(1, "a100", None, "pcie"), "a100.sxm=950,a100=900", D(900)),
    # neither model.ram.interface nor model.ram: the bare model
    (gpu(1, "a100", "40Gi", "pcie"), "a100.80Gi=1000,a100=900", D(900)),
    # unknown model: the highest mapped price ...
    (gpu(1, "t4", "16Gi", "pcie"), "h100=1700,a100=900", D(1700)),
    # ... but at least 100, also when there is no mapping at all
    (gpu(1, "t4"), "a10=60,rtx3090=75.5", D(100)),
    (gpu(1, "t4"), "", D(100)),
    # AMD: the script's jq reads ram and interface only under nvidia, so the bare model
    (gpu(1, "mi300x", "192Gi", "oam", vendor="amd"), "mi300x.192Gi=2000,mi300x=1800", D(1800)),
    (gpu(1, "mi300x", "192Gi", vendor="amd"), "mi300x.192Gi=2000", D(2000)),
    # an empty price counts as missing
    (gpu(1, "h100", "80Gi"), "h100.80Gi=,h100=1500", D(1500)),
    # an empty key ends bash's loop: the pairs after it are never read
    (gpu(1, "h100"), "a100=900,=5,h100=1500", D(900)),
])
def test_script_gpu_key_fallback_chain(attrs, mappings, price):
    assert gpu_price_seen(attrs, mappings) == rate_of(price)


def test_script_gpu_cost_is_count_times_units_times_price():
    attrs = gpu(4, "a100", "80Gi", "sxm")
    assert gpu_price_seen(attrs, "a100=900.25", count=3) == rate_of(3 * 4 * D("900.25"))
    # a unit without GPUs adds nothing, whatever the catch-all price
    assert script_rate([unit(cpu=1000)], "h100=1700") == rate_of(D("1.60"))


def test_script_targets_override_by_name():
    resources = [unit(cpu=2000, memory=GIB, storage=[{"class": "beta2", "size": 10 * GIB}],
                      endpoints=1, ips=1)]
    targets = {"cpu": "2.5", "hd_pers_ssd": 0.05, "ip": 7}
    total = 2 * D("2.5") + 1 * D("0.80") + 10 * D("0.05") + 1 * D("0.05") + 1 * D(7)
    assert script_rate(resources, targets=targets) == rate_of(total)
    with pytest.raises(ValueError, match="unknown price target"):
        script_rate(resources, targets={"gpu": 1})


def test_script_refuses_a_rate_above_the_max_price():
    resources = [unit(cpu=4000, memory=16 * GIB, gpu=gpu(1, "h100", "80Gi", "sxm"))]
    rate = script_rate(resources, "h100=1500")
    assert rate == rate_of(4 * D("1.60") + 16 * D("0.80") + D(1500))
    assert script_bid(resources, rate, "h100=1500") == rate                  # equal: bids
    assert script_bid(resources, rate + D("0.000001"), "h100=1500") == rate
    assert script_bid(resources, rate - D("0.000001"), "h100=1500") is None  # too low
    assert script_bid(resources, "1000000.000000000000000000", "h100=1500") == rate


def test_script_without_any_storage_prints_zero_and_the_provider_does_not_bid():
    # jq fails on `null / 2^30`, bc on the empty terms: the script prints 0.000000, which the
    # provider rejects (ErrBidZero).
    resources = [unit(cpu=4000, memory=GIB, storage=[])]
    assert script_rate(resources) == 0
    assert script_bid(resources, 10**9) is None


# ------------------------------------------------------------------------- scale strategy

def test_scale_defaults_price_each_quantity():
    resources = [unit(cpu=4000, memory=32 * GIB,
                      storage=[{"class": "beta2", "size": 100 * GIB},
                               {"class": "ephemeral", "size": GIB}],
                      count=2, endpoints=1, ips=1)]
    expected = (4000 * 2 * D("0.004") + D(32 * GIB * 2) / MIB * D("0.0016")
                + D(100 * GIB * 2) / MIB * D("0.00016") + D(GIB * 2) / MIB * D("0.00016")
                + 1 * D(1) + 1 * D(60))
    assert scale_rate(resources, SCALE_DEFAULTS) == expected


def test_scale_does_not_multiply_endpoints_and_ips_by_count():
    scales = {"endpoint": "1", "ip": "60"}
    one = scale_rate([unit(endpoints=2, ips=1)], scales)
    assert one == 2 * D(1) + 1 * D(60)
    assert scale_rate([unit(endpoints=2, ips=1, count=33)], scales) == one


def test_scale_rounds_mib_divisions_half_away_from_zero_at_16_decimals():
    scales = {"memory": "1"}
    # 1 byte = 0.00000095367431640625 MiB
    assert scale_rate([unit(memory=1)], scales) == D("0.0000009536743164")
    # 2 MiB − 1 byte = 1.99999904632568359375 MiB
    assert scale_rate([unit(memory=2 * MIB - 1)], scales) == D("1.9999990463256836")
    # 1000 bytes = 0.00095367431640625 MiB exactly: a tie at the 17th decimal, rounded up
    exact = D(1000) / MIB
    assert exact == D("0.00095367431640625")
    assert scale_rate([unit(memory=1000)], scales) == exact.quantize(D("1e-16"), ROUND_HALF_UP)
    assert scale_rate([unit(memory=1000)], scales) == D("0.0009536743164063")


def test_scale_storage_scale_flag_format():
    # a bare number names the ephemeral class; `class=scale` the others
    scales = {"storage": "0.5,beta3=2"}
    resources = [unit(storage=[{"class": "ephemeral", "size": 3 * MIB},
                               {"class": "beta3", "size": 5 * MIB}], count=2)]
    assert scale_rate(resources, scales) == 3 * 2 * D("0.5") + 5 * 2 * D(2)
    assert scale_rate(resources, {"storage": {"ephemeral": "0.5", "beta3": "2"}}) == \
        3 * 2 * D("0.5") + 5 * 2 * D(2)


def test_scale_storage_class_without_a_scale_is_an_error():
    # the chart prices ephemeral and beta2 only
    with pytest.raises(PricingError, match="no pricing configured for storage class: beta3"):
        scale_rate([unit(storage=[{"class": "beta3", "size": GIB}])], SCALE_DEFAULTS)


def test_scale_zero_price_is_an_error():
    with pytest.raises(PricingError, match="zero"):
        scale_rate([unit(memory=GIB)], {"cpu": "1"})


def test_scale_overflow_is_an_error():
    # provider's Test_ScalePricingFailsOnOverflow: cpu scale MaxInt64 × 100, 11 millicores
    cpu_scale = D(2**63 - 1) * 100
    assert 11 * cpu_scale > D(10) ** 18
    with pytest.raises(PricingError, match="invalid"):
        scale_rate([unit(cpu=11)], {"cpu": cpu_scale})
    # the bound is LegacyMaxSortableDec = 10^18, inclusive
    assert scale_rate([unit(cpu=1000)], {"cpu": D(10) ** 15}) == D(10) ** 18
    with pytest.raises(PricingError, match="invalid"):
        scale_rate([unit(cpu=1001)], {"cpu": D(10) ** 15})


def test_scale_more_than_18_decimals_is_an_error():
    # 1000 bytes → 0.0009536743164063 MiB × 0.0016 = 0.00000152587890625008: 20 decimals
    assert D("0.0009536743164063") * D("0.0016") == D("0.00000152587890625008")
    with pytest.raises(PricingError, match="precision"):
        scale_rate([unit(memory=1000)], {"memory": "0.0016"})


def test_scale_all_zero_or_negative_scales_are_errors():
    with pytest.raises(PricingError, match="non-zero"):
        scale_rate([unit(cpu=1000)], {})
    with pytest.raises(PricingError, match="non-zero"):
        scale_rate([unit(cpu=1000)], {"cpu": 0, "memory": "0", "storage": "0"})
    # Go's check counts storage as zero if any class is: this is "all zero" too
    with pytest.raises(PricingError, match="non-zero"):
        scale_rate([unit(cpu=1000)], {"storage": "1,beta2=0"})
    with pytest.raises(PricingError, match="negative"):
        scale_rate([unit(cpu=1000)], {"cpu": "-0.004"})
    with pytest.raises(PricingError, match="negative"):
        AkashScale(memory=-1)
    with pytest.raises(PricingError, match="non-zero"):
        AkashScale(cpu=0, memory=0, storage="0", endpoint=0, ip=0)


# --------------------------------------------------------------------------- random range

def test_random_range_quirk_keeps_bids_in_the_lowest_percent():
    resources = [unit(memory=32 * GIB)]
    max_price = D(100_000)
    floor = D(32 * GIB * 50 // GIB)                                # 1,600
    ceiling = min(D(32 * GIB * 1_048_576 // GIB), max_price)       # min(33,554,432, max)
    rng = np.random.default_rng(7)
    draws = [random_range_rate(resources, max_price, rng) for _ in range(2000)]
    assert all(floor <= d < floor + (ceiling - floor) / 100 for d in draws)
    assert all((d - floor) * 10**6 == int((d - floor) * 10**6) for d in draws)  # k / 10^6
    assert max(draws) > floor + (ceiling - floor) / 200  # and spread over that 1%


def test_random_range_without_quirk_spans_the_range():
    resources = [unit(memory=8 * GIB, count=2)]
    max_price = D("5000.5")
    floor = D(16 * GIB * 50 // GIB)                                # 800
    ceiling = min(D(16 * GIB * 1_048_576 // GIB), max_price)       # the max price
    rng = np.random.default_rng(3)
    draws = [random_range_rate(resources, max_price, rng, quirk=False) for _ in range(2000)]
    assert all(floor <= d < ceiling for d in draws)
    assert all(d <= max_price for d in draws)
    midpoint = (floor + ceiling) / 2
    assert sum(d > midpoint for d in draws) > 800
    assert all((d - floor) * 10**4 == int((d - floor) * 10**4) for d in draws)  # k / 10^4


def test_random_range_ceiling_from_memory_when_the_max_is_high():
    resources = [unit(memory=3 * MIB)]           # 3 MiB: floor ⌊150/1024⌋ = 0 → 1
    floor = D(1)
    ceiling = D(3 * MIB * 1_048_576 // GIB)      # 3,072
    rng = np.random.default_rng(0)
    draws = [random_range_rate(resources, 10**9, rng, quirk=False) for _ in range(500)]
    assert all(floor <= d < ceiling for d in draws)
    assert max(draws) > ceiling * 3 / 4


def test_random_range_edge_cases():
    rng = np.random.default_rng(0)
    # no memory: floor and ceiling are both 1, returned as is
    assert random_range_rate([unit()], 100, rng) == 1
    # a max below the floor: the floor comes back (the provider then does not bid)
    assert random_range_rate([unit(memory=4 * GIB)], 150, rng) == 200
    # same seed, same draws
    a = [random_range_rate([unit(memory=GIB)], 10**6, np.random.default_rng(5)) for _ in "ab"]
    assert a[0] == a[1]


# ------------------------------------------------------------------------ our orders as JSON

def test_akash_resources_shape_of_a_gpu_order():
    catalog = load_catalog()
    units = gpu_units(10, ("h100",), cpu_millicores_per_gpu=4000, memory_bytes_per_gpu=32 * GIB,
                      storage_bytes_per_gpu=100 * GIB)
    h100 = {"nvidia": {"model": "h100", "ram": "80Gi", "interface": "sxm"}}
    assert akash_resources(units, catalog) == [
        {"cpu": 32_000, "memory": 256 * GIB, "storage": [{"class": "beta2", "size": 800 * GIB}],
         "gpu": {"units": 8, "attributes": {"vendor": h100}}, "count": 1,
         "endpoint_quantity": 1, "ip_lease_quantity": 0},
        {"cpu": 8_000, "memory": 64 * GIB, "storage": [{"class": "beta2", "size": 200 * GIB}],
         "gpu": {"units": 2, "attributes": {"vendor": h100}}, "count": 1,
         "endpoint_quantity": 1, "ip_lease_quantity": 0},
    ]


def test_akash_resources_several_models_and_allocation():
    catalog = load_catalog()
    units = (ResourceUnit(1000, GIB, (Storage("ephemeral", GIB),),
                          GpuRequest(2, ("a100-40gb", "a100-80gb", "l40s")), endpoints=1,
                          ip_leases=1, count=3),)
    posted = akash_resources(units, catalog)[0]
    # sorted attribute keys, the last per vendor: vendor/nvidia/model/l40s/...
    assert posted["gpu"]["attributes"]["vendor"] == \
        {"nvidia": {"model": "l40s", "ram": "48Gi", "interface": "pcie"}}
    assert posted["endpoint_quantity"] == 2 and posted["ip_lease_quantity"] == 1
    assert posted["count"] == 3
    mine = akash_resources(units, catalog, gpu_model="a100-40gb")[0]
    assert mine["gpu"] == {"units": 2, "attributes": {"vendor": {
        "nvidia": {"model": "a100", "ram": "40Gi", "interface": "sxm"}}}}
    mixed = (ResourceUnit(0, 0, gpu=GpuRequest(1, ("mi300x", "h100"))),)
    assert set(akash_resources(mixed, catalog)[0]["gpu"]["attributes"]["vendor"]) == \
        {"amd", "nvidia"}
    assert akash_resources((ResourceUnit(500, GIB),), catalog)[0]["gpu"] == \
        {"units": 0, "attributes": {}}
    with pytest.raises(ValueError, match="does not serve"):
        akash_resources(units, catalog, gpu_model="h100")


def test_default_gpu_mappings_come_from_catalog_prices_per_month():
    pairs = dict(pair.split("=") for pair in DEFAULT_GPU_MAPPINGS.split(","))
    hours_per_month = D(BLOCKS_PER_MONTH) * D(str(SECONDS_PER_BLOCK)) / D(3600)  # ≈ 730.49
    assert pairs["h100.80Gi"] == str((D("1.80") * hours_per_month).quantize(D(1), ROUND_HALF_UP))
    assert pairs["mi300x"] == str((D("6.00") * hours_per_month).quantize(D(1), ROUND_HALF_UP))
    assert not any(key.startswith("trainium2") for key in pairs)


# ------------------------------------------------------------------------ the conversions

def test_conversions_use_the_block_time():
    # 1,000 micro-USD per block for 2 GPUs: × 3600 / 6.117 blocks an hour / 10^6 / 2
    assert per_block_to_usd_per_gpu_hour(D(1000), 2) == \
        pytest.approx(1000 * 3600 / 6.117 / 1e6 / 2, rel=1e-15)
    order = OrderView.priced(1, 4, ("h100",), (), 2.5, 0.0)
    # 2.5 USD/GPU-h × 4 GPUs = 10,000,000 micro-USD an hour × 6.117 / 3600
    assert max_price_per_block(order) == (D(10_000_000) * D("6.117") / 3600).quantize(
        D("1e-18"), ROUND_DOWN)


# ------------------------------------------------------------------- strategies in a market

CPU_PER_GPU = 4_000
MEMORY_PER_GPU = 32 * GIB
STORAGE_PER_GPU = 100 * GIB


def bare_market() -> Market:
    scenario = load_scenario("default", ["market.manifest_failure_prob=0"])
    return Market(scenario, seed=0, populate=False)


def provider(market: Market, name: str, model: str, gpus: int = 8) -> ProviderRow:
    return ProviderRow(
        name=name, population=0, model=market.catalog.index(model), gpus=gpus,
        cpu_millicores=CPU_PER_GPU * gpus, memory_bytes=MEMORY_PER_GPU * gpus,
        storage_bytes=STORAGE_PER_GPU * gpus, ip_leases=0,
        storage_classes=("ephemeral", "beta2", "beta3"), audited=True,
        cost_full_usd_per_gpu_hour=1.0, cost_marginal_usd_per_gpu_hour=1.0,
        cost_idle_usd_per_gpu_hour=0.0, cost_fixed_usd_per_gpu_hour=0.0,
        cost_basis_usd_per_gpu_hour=1.0, latency_log_median=math.log(3.0), latency_sigma=0.0)


def order_units(gpus: int, models: tuple[str, ...]):
    return gpu_units(gpus, models, cpu_millicores_per_gpu=CPU_PER_GPU,
                     memory_bytes_per_gpu=MEMORY_PER_GPU, storage_bytes_per_gpu=STORAGE_PER_GPU)


def bids_by_provider(market: Market, order_id: int) -> dict[int, int]:
    order = market.orders[order_id]
    return dict(zip(order.bid_providers.tolist(), order.bid_prices.tolist(), strict=True))


def micro_per_hour(rate_micro_per_block: Decimal) -> int:
    """A whole-order bid the way the engine keeps it: micro-USD per hour."""
    return round(float(rate_micro_per_block) * SECONDS_PER_HOUR / SECONDS_PER_BLOCK)


def test_akash_script_bids_the_converted_script_rate_per_provider_model():
    market = bare_market()
    tenant = market.add_tenant("alice", 10_000)
    strategy = AkashScript(gpu_mappings="h100.80Gi=1500,a100=900")
    ids = market.add_providers([provider(market, "h1", "h100"), provider(market, "h2", "h100"),
                                provider(market, "a1", "a100-80gb")], strategy)
    order = market.post_order(tenant, order_units(2, ("h100", "a100-80gb")), 20.0,
                              deposit_usd=5.0)
    # per replica of 2 GPUs: 8 threads, 64 GiB, 200 GiB beta2, 1 endpoint
    base = 8 * D("1.60") + 64 * D("0.80") + 200 * D("0.03") + 1 * D("0.05")
    h100 = rate_of(base + 2 * D(1500))    # key h100.80Gi.sxm → h100.80Gi
    a100 = rate_of(base + 2 * D(900))     # key a100.80Gi.sxm → a100.80Gi → a100
    bids = bids_by_provider(market, order)
    assert bids == {int(ids[0]): micro_per_hour(h100), int(ids[1]): micro_per_hour(h100),
                    int(ids[2]): micro_per_hour(a100)}


def test_akash_script_does_not_bid_above_the_max_price():
    market = bare_market()
    tenant = market.add_tenant("alice", 10_000)
    rows = [provider(market, "h1", "h100"), provider(market, "a1", "a100-80gb")]
    ids = market.add_providers(rows, AkashScript(gpu_mappings="h100=1500,a100=900"))
    base = 4 * D("1.60") + 32 * D("0.80") + 100 * D("0.03") + 1 * D("0.05")
    a100 = rate_of(base + D(900))
    # a max price between the two rates: only the A100 provider bids
    between = per_block_to_usd_per_gpu_hour(rate_of(base + D(1200)), 1)
    order = market.post_order(tenant, order_units(1, ("h100", "a100-80gb")), between,
                              deposit_usd=5.0)
    assert bids_by_provider(market, order) == {int(ids[1]): micro_per_hour(a100)}
    view = OrderView.of(market.orders[order])
    prices = AkashScript(gpu_mappings="h100=1500,a100=900").prices(
        view, ids, market.views[0])
    assert np.isnan(prices[0]) and prices[1] > 0


def test_akash_scale_bids_the_converted_scale_rate():
    market = bare_market()
    tenant = market.add_tenant("alice", 10_000)
    ids = market.add_providers([provider(market, "h1", "h100"), provider(market, "l1", "l40s")],
                               AkashScale())
    order = market.post_order(tenant, order_units(1, ("h100", "l40s")), 5.0, deposit_usd=5.0)
    rate = (4000 * D("0.004") + D(32 * GIB) / MIB * D("0.0016")
            + D(100 * GIB) / MIB * D("0.00016") + 1 * D(1))
    assert bids_by_provider(market, order) == {int(i): micro_per_hour(rate) for i in ids}


def test_akash_scale_does_not_bid_on_unpriced_storage():
    market = bare_market()
    tenant = market.add_tenant("alice", 10_000)
    market.add_providers([provider(market, "h1", "h100")], AkashScale())
    units = gpu_units(1, ("h100",), cpu_millicores_per_gpu=CPU_PER_GPU,
                      memory_bytes_per_gpu=MEMORY_PER_GPU, storage_bytes_per_gpu=STORAGE_PER_GPU,
                      storage_class="beta3")
    order = market.post_order(tenant, units, 5.0, deposit_usd=5.0)
    assert bids_by_provider(market, order) == {}


def test_akash_random_range_bids_in_the_lowest_percent_of_the_range():
    market = bare_market()
    tenant = market.add_tenant("alice", 10_000)
    ids = market.add_providers([provider(market, f"h{i}", "h100") for i in range(6)],
                               AkashRandomRange(seed=11))
    order = market.post_order(tenant, order_units(1, ("h100",)), 3.0, deposit_usd=5.0)
    view = OrderView.of(market.orders[order])
    max_price = max_price_per_block(view)
    floor = D(32 * GIB * 50 // GIB)
    ceiling = min(D(32 * GIB * 1_048_576 // GIB), max_price)
    low, high = micro_per_hour(floor), micro_per_hour(floor + (ceiling - floor) / 100)
    bids = bids_by_provider(market, order)
    assert sorted(bids) == sorted(ids.tolist())
    assert all(low <= price <= high for price in bids.values())
    assert len(set(bids.values())) > 1  # each provider draws its own price


def test_akash_random_range_without_quirk_and_below_the_floor():
    market = bare_market()
    tenant = market.add_tenant("alice", 10_000)
    ids = market.add_providers([provider(market, f"h{i}", "h100") for i in range(8)],
                               AkashRandomRange(quirk=False, seed=2))
    order = market.post_order(tenant, order_units(1, ("h100",)), 3.0, deposit_usd=5.0)
    view = OrderView.of(market.orders[order])
    floor = D(32 * GIB * 50 // GIB)
    ceiling = min(D(32 * GIB * 1_048_576 // GIB), max_price_per_block(view))
    bids = bids_by_provider(market, order).values()
    assert all(micro_per_hour(floor) <= b <= market.orders[order].max_price for b in bids)
    assert max(bids) > micro_per_hour(floor + (ceiling - floor) / 100)
    # a max price below the memory floor (1,600 micro-USD per block): no bid
    tiny = per_block_to_usd_per_gpu_hour(D(1000), 1)
    prices = AkashRandomRange().prices(OrderView.priced(9, 1, ("h100",), view.units, tiny, 0.0),
                                       ids, market.views[0])
    assert np.isnan(prices).all()

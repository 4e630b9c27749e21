"""`Metrics` as a component: a bare market is fed a hand-made event stream through `emit`
(a fake sink, as in ABIDES) and its summary and price series are checked against numbers
worked out by hand from that stream.

Nothing runs the simulation: the market's clock stays at 0, so the summary sees only what the
events say. Every lease opened in a stream is closed in it (the summary looks still-open leases
up in `market.leases`, which only the engine fills).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from market import Market, load_scenario
from market.core.pool import ProviderRow
from market.events import (
    Event,
    LeaseClosed,
    LeaseCreated,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
    PaymentSettled,
    TenantLeft,
    Tick,
)

HOUR = 3600.0
MICRO = 1_000_000

# Population indices of the default scenario: its [[providers]] in file order.
DATACENTER, HOME_RIG, HYPERSCALER = 0, 1, 2


# ----------------------------------------------------------------------------- helpers

def row(market: Market, name: str, population: int, model: str, gpus: int) -> ProviderRow:
    return ProviderRow(
        name=name, population=population, model=market.catalog.index(model), gpus=gpus,
        cpu_millicores=4_000 * gpus, memory_bytes=32 * 2**30 * gpus,
        storage_bytes=100 * 2**30 * gpus, ip_leases=0, storage_classes=("beta2",),
        audited=True, cost_full_usd_per_gpu_hour=1.0, cost_marginal_usd_per_gpu_hour=1.0,
        cost_idle_usd_per_gpu_hour=0.0, cost_fixed_usd_per_gpu_hour=0.0,
        cost_basis_usd_per_gpu_hour=1.0)


# Provider ids, in the order `fake_market` adds them.
DC_H100, DC_A100, RIG_A, RIG_B, HYPER_H100 = range(5)


def fake_market() -> Market:
    """A bare one-day market with five hand-bidding providers and nothing else.

    GPUs by model: h100 8 + 8 = 16, a100-80gb 8, rtx4090 2 + 2 = 4.
    """
    market = Market(load_scenario("default", ["duration_days=1"]), seed=0, populate=False)
    ids = market.add_providers([
        row(market, "dc-h100", DATACENTER, "h100", 8),
        row(market, "dc-a100", DATACENTER, "a100-80gb", 8),
        row(market, "rig-a", HOME_RIG, "rtx4090", 2),
        row(market, "rig-b", HOME_RIG, "rtx4090", 2),
        row(market, "hyper-h100", HYPERSCALER, "h100", 8),
    ], None)
    assert ids.tolist() == [DC_H100, DC_A100, RIG_A, RIG_B, HYPER_H100]
    return market


def opened(t: float, order: int, job: int, gpus: int, models: tuple[str, ...] = ("h100",),
           attempt: int = 0, max_usd_per_gpu_hour: float = 20.0) -> OrderOpened:
    return OrderOpened(t, order, 0, job, "training", gpus, models,
                       round(max_usd_per_gpu_hour * gpus * MICRO), attempt)


def leased(t: float, lease: int, order: int, job: int, provider: int, model: str, gpus: int,
           usd_per_gpu_hour: float, waited_s: float, bids: int = 2) -> LeaseCreated:
    return LeaseCreated(t, lease, order, 100 + lease, 0, provider, job, model, gpus,
                        round(usd_per_gpu_hour * gpus * MICRO), bids, waited_s)


def closed(t: float, lease: int, order: int, job: int, provider: int, reason: str,
           paid_micro: int, work_left: float = 0.0) -> LeaseClosed:
    return LeaseClosed(t, lease, order, 0, provider, job, reason, paid_micro, work_left)


def feed(market: Market, events: list[Event]) -> None:
    for event in events:
        market.emit(event)


# ----------------------------------------------------------------------------- the stream
#
# job 0: order 0 (2 × h100) leased after 60 s on DC_H100 at 4.00/GPU-h, runs 1 h, closes owner;
#        paid 8.00 in two settlements.
# job 1: order 1 (1 × rtx4090) expires; order 2 (attempt 1) leased after 30 s on RIG_A at
#        0.30, runs 2 h, closes unstable with half the work left; order 3 (attempt 2, a work
#        re-post) leased after 100 s on RIG_B at 0.25, runs 1 h, closes owner.
# job 2: order 4 (8 × h100 or a100-80gb) leased after 200 s on DC_A100 at 1.50, runs 0.5 h,
#        closes decommission with work left; the tenant leaves ("failures"): no re-post.
# job 3: order 5 (4 × h100) leased after 20 s on HYPER_H100 at 3.00, runs 0.25 h, closes
#        insufficient_funds with work left, never re-posted.
# job 4: order 6 expires; the tenant leaves ("expired").
# job 5: orders 7 and 8 (attempt 1) expire; the tenant leaves ("expired").
# job 6: order 9 (1 × h100) leased after 10 s on DC_H100 at 5.00, closes manifest_timeout after
#        300 s with all the work left; order 10 (attempt 1, a work re-post) expires; the tenant
#        leaves ("expired").
# job 7: order 11 is cancelled.

MANIFEST_PAID = 5 * MICRO * 300 // 3600  # 5.00/h for 300 s, floored: 416_666


def stream() -> list[Event]:
    return [
        opened(0, 0, 0, 2),
        leased(60, 0, 0, 0, DC_H100, "h100", 2, 4.0, waited_s=60),
        opened(100, 1, 1, 1, ("rtx4090",)),
        opened(200, 4, 2, 8, ("h100", "a100-80gb")),
        OrderExpired(280, 1, 0, 1, 0),
        opened(300, 2, 1, 1, ("rtx4090",), attempt=1),
        leased(330, 1, 2, 1, RIG_A, "rtx4090", 1, 0.30, waited_s=30),
        leased(400, 3, 4, 2, DC_A100, "a100-80gb", 8, 1.50, waited_s=200),
        opened(500, 5, 3, 4),
        leased(520, 4, 5, 3, HYPER_H100, "h100", 4, 3.0, waited_s=20),
        opened(600, 6, 4, 1, ("rtx4090",)),
        opened(700, 7, 5, 1),
        OrderExpired(780, 6, 0, 4, 1),
        TenantLeft(780, 0, 4, "expired", 2.0, 800_000),
        OrderExpired(880, 7, 0, 5, 0),
        opened(900, 8, 5, 1, attempt=1),
        opened(1000, 9, 6, 1),
        leased(1010, 5, 9, 6, DC_H100, "h100", 1, 5.0, waited_s=10),
        OrderExpired(1080, 8, 0, 5, 0),
        TenantLeft(1080, 0, 5, "expired", 3.0, 36_870_000),
        PaymentSettled(1310, 5, DC_H100, MANIFEST_PAID, MANIFEST_PAID // 5),
        closed(1310, 5, 9, 6, DC_H100, "manifest_timeout", MANIFEST_PAID, work_left=1.0),
        opened(1400, 10, 6, 1, attempt=1),
        PaymentSettled(1420, 4, HYPER_H100, 3_000_000, 600_000),
        closed(1420, 4, 5, 3, HYPER_H100, "insufficient_funds", 3_000_000, work_left=0.9),
        opened(1500, 11, 7, 1),
        OrderCancelled(1550, 11, 0),
        OrderExpired(1580, 10, 0, 6, 0),
        TenantLeft(1580, 0, 6, "expired", 1.0, 12_290_000),
        PaymentSettled(1860, 0, DC_H100, 4_000_000, 800_000),
        PaymentSettled(2200, 3, DC_A100, 6_000_000, 1_200_000),
        closed(2200, 3, 4, 2, DC_A100, "decommission", 6_000_000, work_left=0.75),
        TenantLeft(2300, 0, 2, "failures", 6.0, 30_720_000),
        PaymentSettled(3660, 0, DC_H100, 4_000_000, 800_000),
        closed(3660, 0, 0, 0, DC_H100, "owner", 8_000_000),
        PaymentSettled(7530, 1, RIG_A, 600_000, 120_000),
        closed(7530, 1, 2, 1, RIG_A, "unstable", 600_000, work_left=0.5),
        opened(7600, 3, 1, 1, ("rtx4090",), attempt=2),
        leased(7700, 2, 3, 1, RIG_B, "rtx4090", 1, 0.25, waited_s=100),
        PaymentSettled(11_300, 2, RIG_B, 250_000, 50_000),
        closed(11_300, 2, 3, 1, RIG_B, "owner", 250_000),
    ]


@pytest.fixture
def summary() -> dict:
    market = fake_market()
    feed(market, stream())
    assert not market.metrics.open_leases  # every lease of the stream was closed
    return market.metrics.summary()


# ----------------------------------------------------------------------------- counts

def test_order_counts_and_fill_rate(summary):
    assert summary["orders_posted"] == 12          # orders 0..11
    assert summary["jobs_posted"] == 8             # attempt 0: orders 0, 1, 4, 5, 6, 7, 9, 11
    assert summary["orders_filled"] == 6           # leases 0..5
    assert summary["leases_created"] == 6
    assert summary["orders_expired"] == 5          # orders 1, 6, 7, 8, 10
    assert summary["orders_cancelled"] == 1        # order 11
    # Cancelled orders are neither filled nor expired.
    assert summary["fill_rate"] == pytest.approx(6 / (6 + 5))
    assert summary["orders_open"] == 0
    assert summary["leases_active"] == 0


def test_time_to_lease_is_described_like_numpy(summary):
    waits = np.array([60, 30, 200, 20, 10, 100], dtype=float)  # leases in creation order
    stats = summary["time_to_lease_s"]
    assert stats["count"] == 6
    assert stats["mean"] == pytest.approx(waits.mean())
    assert stats["median"] == pytest.approx(np.median(waits))
    assert stats["p90"] == pytest.approx(np.quantile(waits, 0.9))
    # Per job: from its first order to its first lease (job 1: 100 -> 330, across the expiry).
    job_waits = np.array([60, 230, 200, 20, 10], dtype=float)
    job_stats = summary["job_time_to_lease_s"]
    assert job_stats["count"] == 5
    assert job_stats["mean"] == pytest.approx(job_waits.mean())
    assert job_stats["median"] == pytest.approx(np.median(job_waits))
    assert job_stats["p90"] == pytest.approx(np.quantile(job_waits, 0.9))


def test_failures_count_unstable_and_decommission_only(summary):
    assert summary["leases_failed"] == 2
    assert summary["lease_close_reasons"] == {
        "decommission": 1, "insufficient_funds": 1, "manifest_timeout": 1, "owner": 2,
        "unstable": 1}


def test_work_reposted_counts_orders_after_a_lease_closed_with_work_left(summary):
    # job 1 (order 3 after the unstable close) and job 6 (order 10 after the manifest
    # timeout); not job 1's order 2 (after an expiry), not job 2 (its tenant left), not job 3
    # (never re-posted).
    assert summary["work_reposted"] == 2


def test_tenants_left(summary):
    assert summary["tenants_left_by_reason"] == {"expired": 3, "failures": 1}
    assert summary["tenants_left_for_hyperscaler"] == 4
    assert summary["hyperscaler_spend_usd"] == pytest.approx(0.80 + 36.87 + 12.29 + 30.72)


# ----------------------------------------------------------------------------- prices

def test_prices_per_gpu_hour_by_model(summary):
    by_model = summary["price_usd_per_gpu_hour"]
    assert set(by_model) == {"h100", "a100-80gb", "rtx4090"}  # only models that were leased
    expected = {"h100": [4.0, 3.0, 5.0], "a100-80gb": [1.5], "rtx4090": [0.30, 0.25]}
    for model, prices in expected.items():
        stats = by_model[model]
        assert stats["count"] == len(prices)
        assert stats["mean"] == pytest.approx(np.mean(prices))
        assert stats["median"] == pytest.approx(np.median(prices))
        assert stats["p90"] == pytest.approx(np.quantile(prices, 0.9))


def test_gpu_hours_and_savings_vs_list_price(summary):
    market = fake_market()
    list_price = {m.id: m.list_usd_per_gpu_hour for m in market.catalog}
    # GPUs × hours from lease start to close.
    gpu_hours = {"h100": 2 * 1.0 + 4 * 0.25 + 1 * 300 / 3600,
                 "a100-80gb": 8 * 0.5,
                 "rtx4090": 1 * 2.0 + 1 * 1.0}
    paid = {"h100": 8.0 + 3.0 + MANIFEST_PAID / MICRO, "a100-80gb": 6.0, "rtx4090": 0.60 + 0.25}
    by_model = summary["price_usd_per_gpu_hour"]
    for model in gpu_hours:
        stats = by_model[model]
        assert stats["list_usd_per_gpu_hour"] == list_price[model]
        assert stats["gpu_hours"] == pytest.approx(gpu_hours[model])
        assert stats["paid_usd"] == pytest.approx(paid[model])
        assert stats["savings_vs_list"] == pytest.approx(
            1 - paid[model] / (list_price[model] * gpu_hours[model]))
    total_paid = sum(paid.values())
    total_list = sum(list_price[m] * gpu_hours[m] for m in gpu_hours)
    assert summary["tenant_spend_usd"] == pytest.approx(total_paid)
    assert summary["tenant_savings_vs_list"] == pytest.approx(1 - total_paid / total_list)


def test_platform_and_provider_revenue_from_payments(summary):
    fees = [800_000, 800_000, 120_000, 50_000, 1_200_000, 600_000, MANIFEST_PAID // 5]
    assert summary["platform_revenue_usd"] == pytest.approx(sum(fees) / MICRO)
    providers = summary["providers"]
    assert set(providers) == {"datacenter", "home_rig", "hyperscaler"}
    # Amount less fee, by the archetype of the provider paid.
    assert providers["datacenter"]["revenue_usd"] == pytest.approx(
        (2 * (4_000_000 - 800_000) + (6_000_000 - 1_200_000)
         + (MANIFEST_PAID - MANIFEST_PAID // 5)) / MICRO)
    assert providers["home_rig"]["revenue_usd"] == pytest.approx(
        ((600_000 - 120_000) + (250_000 - 50_000)) / MICRO)
    assert providers["hyperscaler"]["revenue_usd"] == pytest.approx((3_000_000 - 600_000) / MICRO)
    assert {a: (p["providers"], p["gpus"]) for a, p in providers.items()} == {
        "datacenter": (2, 16), "home_rig": (2, 4), "hyperscaler": (1, 8)}


@pytest.mark.parametrize("reason", ["owner", "unstable", "insufficient_funds",
                                    "manifest_timeout", "decommission"])
def test_each_close_reason_counts_as_failed_only_if_the_provider_is_at_fault(reason):
    market = fake_market()
    feed(market, [
        opened(0, 0, 0, 1),
        leased(10, 0, 0, 0, HYPER_H100, "h100", 1, 2.0, waited_s=10),
        closed(20, 0, 0, 0, HYPER_H100, reason, 5_555),
    ])
    summary = market.metrics.summary()
    assert summary["leases_failed"] == (1 if reason in {"unstable", "decommission"} else 0)
    assert summary["lease_close_reasons"] == {reason: 1}


def test_empty_stream_gives_zeros():
    summary = fake_market().metrics.summary()
    assert summary["orders_posted"] == summary["orders_filled"] == 0
    assert summary["fill_rate"] == 0.0
    assert summary["time_to_lease_s"] == {"count": 0, "mean": 0.0, "median": 0.0, "p90": 0.0}
    assert summary["price_usd_per_gpu_hour"] == {}
    assert summary["tenant_savings_vs_list"] == 0.0
    assert summary["platform_revenue_usd"] == 0.0


# ----------------------------------------------------------------------------- price series

def test_ticks_write_volume_weighted_prices_and_utilization():
    market = fake_market()
    feed(market, [
        # bucket 1: two h100 leases (A open across the tick, B closed inside it), one rtx4090
        opened(0, 0, 0, 2),
        leased(100, 0, 0, 0, DC_H100, "h100", 2, 4.0, waited_s=100),
        opened(150, 1, 1, 4),
        leased(200, 1, 1, 1, HYPER_H100, "h100", 4, 3.0, waited_s=50),
        opened(250, 2, 2, 1, ("rtx4090",)),
        leased(300, 2, 2, 2, RIG_A, "rtx4090", 1, 0.30, waited_s=50),
        closed(1000, 1, 1, 1, HYPER_H100, "owner", 2_666_666),
        Tick(HOUR),
        # bucket 2: one a100-80gb lease filling the model; A closes
        opened(3700, 3, 3, 8, ("a100-80gb",)),
        leased(4000, 3, 3, 3, DC_A100, "a100-80gb", 8, 1.5, waited_s=300),
        closed(5000, 0, 0, 0, DC_H100, "owner", 10_888_888),
        Tick(2 * HOUR),
        # bucket 3: no new lease
        Tick(3 * HOUR),
    ])
    nan = math.nan
    # (time, model, price index, leases, utilization); models in catalog order, only those
    # with GPUs in the pool (the others have no rows).
    expected = [
        (HOUR, "h100", (4.0 * 2 + 3.0 * 4) / (2 + 4), 2, 2 / 16),
        (HOUR, "a100-80gb", nan, 0, 0 / 8),
        (HOUR, "rtx4090", 0.30, 1, 1 / 4),
        (2 * HOUR, "h100", nan, 0, 0 / 16),
        (2 * HOUR, "a100-80gb", 1.5, 1, 8 / 8),
        (2 * HOUR, "rtx4090", nan, 0, 1 / 4),
        (3 * HOUR, "h100", nan, 0, 0 / 16),
        (3 * HOUR, "a100-80gb", nan, 0, 8 / 8),
        (3 * HOUR, "rtx4090", nan, 0, 1 / 4),
    ]
    series = market.metrics.series
    assert [(r["time_s"], r["gpu_model"]) for r in series] == [e[:2] for e in expected]
    for got, (_t, model, price, leases, utilization) in zip(series, expected, strict=True):
        if math.isnan(price):
            assert math.isnan(got["price_index_usd_per_gpu_hour"]), model
        else:
            assert got["price_index_usd_per_gpu_hour"] == pytest.approx(price), model
        assert got["leases"] == leases, model
        assert got["utilization"] == pytest.approx(utilization), model
    feed(market, [closed(4 * HOUR, 2, 2, 2, RIG_A, "owner", 1_100_000),
                  closed(4 * HOUR, 3, 3, 3, DC_A100, "owner", 12_000_000)])
    assert not market.metrics.open_leases

"""The live page's chart buckets (api/series.py): demand and supply in GPUs, and the share
leased, time-averaged over a bucket — on a case small enough to work out by hand, and against
the engine's own state after every event of small random markets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.populate import populate
from api.live.series import LiveSeries
from market import Market, load_scenario
from market.core.records import OrderState
from market.events import (
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderExpired,
    OrderOpened,
    ProviderFailed,
    ProviderRecovered,
)
from tests.market.test_market_properties import small_markets


def _market(*gpus: int) -> SimpleNamespace:
    """What the series reads of a market: its providers' GPUs (column 0 of capacity)."""
    capacity = np.array([[g, 0] for g in gpus], np.int64)
    return SimpleNamespace(pool=SimpleNamespace(capacity=capacity, n=len(gpus)))


def _opened(t: float, order: int, gpus: int) -> OrderOpened:
    return OrderOpened(t, order, 0, order, "training", gpus, ("h100",), 10_000_000, 0)


def _leased(t: float, lease: int, order: int, provider: int, gpus: int,
            usd_per_gpu_hour: float = 1.0) -> LeaseCreated:
    return LeaseCreated(t, lease, order, lease, 0, provider, order, "h100", gpus,
                        round(usd_per_gpu_hour * gpus * 1e6), 1, 0.0)


def _closed(t: float, lease: int, order: int, provider: int) -> LeaseClosed:
    return LeaseClosed(t, lease, order, 0, provider, order, "owner", 0, 0.0)


def test_demand_supply_and_utilization_worked_by_hand():
    # Two providers, 8 + 4 GPUs, buckets of 100 s.
    series = LiveSeries(_market(8, 4), bucket_s=100.0)
    for event in (
        _opened(0, 1, 2),                 # order 1 wants 2 GPUs
        _leased(10, 1, 1, 0, 2),          # ... leased on provider 0 at t=10
        _opened(20, 2, 4),                # order 2 wants 4 GPUs
        OrderExpired(50, 2, 0, 2, 0),     # ... and expires unfilled at t=50
        ProviderFailed(60, 1, 150.0),     # provider 1 (4 GPUs) is down from t=60
        LeasePaused(80, 1, 1, 0, 0, 1),   # lease 1 frees its GPUs for 10 s
        LeaseResumed(90, 1, 1, 0, 0, 1, 10.0),
        _closed(120, 1, 1, 0),
        ProviderRecovered(150, 1),
    ):
        series.on_event(event)
    series.roll(200.0)
    first, second = series.closed
    # Wanted: 2 GPUs for 10 s + 4 GPUs for 30 s = 140 GPU-s over 100 s.
    assert first["gpus_wanted"] == pytest.approx(1.4)
    # Not free: 2 x 50 s (from 10 to 60) + (2 + 4) x 20 s + 4 x 10 s + 6 x 10 s = 320 GPU-s.
    assert first["gpus_free"] == pytest.approx((1200 - 320) / 100)
    # Leased: 2 GPUs for 70 s and again for 10 s = 160 GPU-s of 1,200.
    assert first["utilization"] == pytest.approx(160 / 1200, abs=1e-5)
    assert (first["orders_posted"], first["orders_filled"], first["orders_expired"]) == (2, 1, 1)
    assert first["prices"]["h100"]["median"] == 1.0
    # Second bucket: lease 1 runs 20 s more, provider 1 is down for 50 s.
    assert second["gpus_wanted"] == 0
    assert second["gpus_free"] == pytest.approx((1200 - (6 * 20 + 4 * 30)) / 100)
    assert second["utilization"] == pytest.approx(40 / 1200, abs=1e-5)
    assert second["gpus_leased"] == 0 and second["gpus_total"] == 12


def test_a_lease_on_a_provider_that_went_down_is_not_counted_twice():
    series = LiveSeries(_market(8), bucket_s=100.0)
    series.on_event(_opened(0, 1, 3))
    series.on_event(_leased(0, 1, 1, 0, 3))
    series.on_event(ProviderFailed(50, 0, 500.0))  # the lease runs on until the tenant notices
    series.on_event(_closed(70, 1, 1, 0))
    series.roll(100.0)
    [bucket] = series.closed
    # Not free: 3 GPUs leased for 50 s, then all 8 GPUs down for 50 s: 550 GPU-s of 800.
    assert bucket["gpus_free"] == pytest.approx((800 - 550) / 100)
    assert bucket["utilization"] == pytest.approx(3 * 70 / 800, abs=1e-5)


def test_a_partial_bucket_averages_over_the_time_it_has_run():
    series = LiveSeries(_market(4), bucket_s=900.0)
    series.on_event(_opened(0, 1, 6))   # more than there is: unmet demand
    [bucket] = series.tail(30.0)
    assert bucket["partial"] and bucket["gpus_wanted"] == 6 and bucket["gpus_free"] == 4


class _Check:
    """After every event that leaves none waiting: the series' GPU counts equal what the
    engine's state says."""

    def __init__(self, market: Market, series: LiveSeries) -> None:
        self.market, self.series, self.events = market, series, 0
        market.subscribe(self.on_event)

    def on_event(self, _event) -> None:
        market, series = self.market, self.series
        if market.bus.waiting:  # an earlier subscriber acted: the series has not heard yet
            return
        wanted = sum(int(order.need[0]) for order in market.orders.values()
                     if order.state is OrderState.OPEN)
        running = np.zeros(market.pool.n, np.int64)
        for lease in market.leases.values():
            if lease.running:
                running[lease.provider] += lease.gpus
        gpus = market.pool.capacity[:, 0]
        taken = np.where(market.pool.up, running, gpus).sum()
        assert series._wanted_gpus == wanted
        assert series._leased_gpus == running.sum()
        assert series._taken_gpus == taken
        self.events += 1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=small_markets(), seed=st.integers(0, 2**32 - 1))
def test_the_counts_follow_the_engine_in_small_random_markets(overrides, seed):
    market = Market(load_scenario("default", overrides), seed=seed, record=False,
                    populate=False)
    series = LiveSeries(market, bucket_s=600.0)
    market.subscribe(series.on_event)
    check = _Check(market, series)  # after the series, before the agents react
    populate(market)
    market.run()
    series.roll(market.now)
    for bucket in series.closed:
        assert 0 <= bucket["gpus_free"] <= bucket["gpus_total"]
        assert bucket["gpus_wanted"] >= 0
        assert 0 <= bucket["utilization"] <= 1
    assert check.events > 0 or not series.closed

"""Tests for market.units: USD <-> integer micro-USD, what a lease owes, Akash per-block rates.

Checks `usd_to_micro` rounds half away from zero and round-trips integer amounts, `owed_micro`
floors and never drifts (settling a lease in many small steps pays exactly what one settlement
pays, and no step pays a negative amount), and the per-block conversions use 6.117 s a block
and 429,909 blocks a month.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.units import (
    BLOCKS_PER_MONTH,
    MICRO_USD_PER_USD,
    SECONDS_PER_BLOCK,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    micro_to_usd,
    owed_micro,
    usd_per_hour_to_per_block,
    usd_per_month_to_per_block,
    usd_to_micro,
)

# --- usd_to_micro --------------------------------------------------------------------------

@pytest.mark.parametrize(("usd", "micro"), [
    (0.0, 0),
    (1.0, 1_000_000),
    (2.49, 2_490_000),
    (-2.49, -2_490_000),
    (0.1 + 0.2, 300_000),          # 0.30000000000000004: float noise must not leak through
    (1e-7, 0),
    (4e-7, 0),
    (6e-7, 1),
    (-6e-7, -1),
])
def test_usd_to_micro_rounds_to_the_nearest_micro_usd(usd, micro):
    assert usd_to_micro(usd) == micro
    assert isinstance(usd_to_micro(usd), int)


@pytest.mark.parametrize("odd", [1, 3, 5, 1001])
def test_usd_to_micro_rounds_exact_halves_away_from_zero(odd):
    # odd/128 USD is exactly odd × 7812.5 micro-USD in binary floating point: a true half.
    usd = odd / 128
    half = odd * 7_812.5
    assert usd * MICRO_USD_PER_USD == half
    assert usd_to_micro(usd) == math.floor(half) + 1
    assert usd_to_micro(-usd) == -(math.floor(half) + 1)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**50), 2**50))
def test_usd_to_micro_round_trips_integer_micro_amounts(micro):
    assert usd_to_micro(micro_to_usd(micro)) == micro


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e9, 1e9, allow_nan=False))
def test_usd_to_micro_is_odd_and_within_half_a_micro(usd):
    micro = usd_to_micro(usd)
    assert usd_to_micro(-usd) == -micro
    assert abs(micro - usd * MICRO_USD_PER_USD) <= 0.5


def test_usd_to_micro_keeps_integer_amounts_above_2_to_the_52():
    micro = 2**52 + 1                     # exactly representable as a float
    usd = micro / MICRO_USD_PER_USD
    assert usd * MICRO_USD_PER_USD == micro  # the conversion's input is exactly an integer
    assert usd_to_micro(usd) == micro


def test_micro_to_usd_divides_by_a_million():
    assert micro_to_usd(2_490_000) == 2.49
    assert micro_to_usd(-1) == -1e-6


# --- owed_micro ----------------------------------------------------------------------------

def test_owed_micro_is_rate_times_hours():
    assert owed_micro(2_000_000, SECONDS_PER_HOUR) == 2_000_000
    assert owed_micro(2_000_000, 90 * 60) == 3_000_000
    assert owed_micro(2_000_000, 0) == 0


def test_owed_micro_floors_partial_micro_usd():
    # 1 micro-USD an hour: nothing is owed until the whole hour has passed.
    assert owed_micro(1, SECONDS_PER_HOUR - 1e-6) == 0
    assert owed_micro(1, SECONDS_PER_HOUR) == 1
    assert owed_micro(3_599, 1.0) == 0
    assert owed_micro(3_601, 1.0) == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 2**22))
def test_owed_micro_is_the_exact_floor_for_whole_seconds(rate, seconds):
    # rate × seconds < 2**53: the float product is exact, so the floor must be too.
    assert owed_micro(rate, float(seconds)) == rate * seconds // 3600


def settle(rate: int, checkpoints: list[float]) -> list[int]:
    """Settle a lease at each elapsed time as the escrow does: pay what is owed minus what
    was already paid. Returns each payment."""
    paid, payments = 0, []
    for elapsed in checkpoints:
        due = owed_micro(rate, elapsed) - paid
        payments.append(due)
        paid += due
    return payments


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9),
       st.lists(st.floats(0, 30 * SECONDS_PER_DAY, allow_nan=False), min_size=1, max_size=200))
def test_settling_in_many_steps_pays_exactly_one_settlement(rate, times):
    checkpoints = sorted(times)
    payments = settle(rate, checkpoints)
    assert all(p >= 0 for p in payments)
    assert sum(payments) == owed_micro(rate, checkpoints[-1])


def test_settling_every_second_does_not_lose_the_fractions():
    # At 3,599 micro-USD an hour each one-second step owes less than one micro-USD: flooring
    # each step's own amount would pay nothing at all.
    rate = 3_599
    payments = settle(rate, [float(s) for s in range(1, 3 * 3600 + 1)])
    assert sum(payments) == owed_micro(rate, 3 * 3600.0) == 3 * rate
    assert sum(owed_micro(rate, 1.0) for _ in range(3 * 3600)) == 0  # the drift avoided


# --- Akash per-block rates -----------------------------------------------------------------

def test_block_constants():
    assert SECONDS_PER_BLOCK == 6.117
    assert BLOCKS_PER_MONTH == 429_909


def test_per_hour_to_per_block_uses_the_block_time():
    assert usd_per_hour_to_per_block(3.6) == pytest.approx(0.006117, rel=1e-12)
    assert usd_per_hour_to_per_block(SECONDS_PER_HOUR / SECONDS_PER_BLOCK) == pytest.approx(1.0)
    assert usd_per_hour_to_per_block(0.0) == 0.0


def test_per_month_to_per_block_uses_blocks_per_month():
    assert usd_per_month_to_per_block(429_909.0) == pytest.approx(1.0, rel=1e-12)
    assert usd_per_month_to_per_block(1.0) * BLOCKS_PER_MONTH == pytest.approx(1.0)


def test_a_month_of_blocks_is_an_average_calendar_month():
    # 429,909 blocks × 6.117 s ≈ 365.25 / 12 days: the two conversions agree to ~2e-5.
    month_s = 365.25 / 12 * SECONDS_PER_DAY
    month_of_blocks_s = BLOCKS_PER_MONTH * SECONDS_PER_BLOCK
    assert month_of_blocks_s == pytest.approx(month_s, rel=1e-4)
    usd_per_hour = 2.0
    via_hour = usd_per_hour_to_per_block(usd_per_hour)
    via_month = usd_per_month_to_per_block(usd_per_hour * month_s / SECONDS_PER_HOUR)
    assert via_hour == pytest.approx(via_month, rel=1e-4)

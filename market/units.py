"""Units and conversions: money is integer micro-USD, time is simulated seconds.

This module is the one place where money changes representation. People (the REST API, the
CLI, scenario files, strategies) speak USD per GPU-hour; the engine keeps a lease's rate as
integer micro-USD per hour for the whole order, and every amount in the ledger as integer
micro-USD; Akash's pricing speaks micro-USD per block (6.117 s).

The rounding rules, all in one place:

* People's units to the engine: `order_rate_micro` (and `usd_to_micro` for amounts) round
  ``usd_per_gpu_hour × gpus × 10^6`` to the nearest whole micro-USD per hour of the whole
  order, exact halves away from zero. It rounds the whole order's rate once, so a rate is off
  by at most half a micro-USD per hour of the whole order. `order_rates_micro` is the same
  rule over an array (bids priced many at a time), giving the same integers.
* The engine to people's units: `per_gpu_hour_usd` divides (a float, for display and for
  strategies); converting that back with `order_rate_micro` gives the same integer (the float
  is within a few ulps of the exact quotient, far from a half), so a figure survives any
  number of round trips without drift.
* Posted asks (`gpu_hour_micro`): a strategy's order-independent ask is a price per
  GPU-hour rounded once to whole micro-USD per GPU-hour; a bid on an order of g GPUs is g
  times that integer (within g/2 micro-USD per hour of `order_rate_micro` of the same ask).
* What a lease owes (`owed_micro`) is floored, and settlement pays differences, so rounding
  never accumulates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MICRO_USD_PER_USD = 1_000_000
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0
GIB = 2**30

#: Akash block time and blocks per month, as its pricing scripts use them.
SECONDS_PER_BLOCK = 6.117
BLOCKS_PER_MONTH = 429_909
#: Akash blocks in an hour (3600 / 6.117 ≈ 588.52).
BLOCKS_PER_HOUR = SECONDS_PER_HOUR / SECONDS_PER_BLOCK


def usd_to_micro(usd: float) -> int:
    """USD (float) to integer micro-USD, rounded half away from zero."""
    micro = abs(usd * MICRO_USD_PER_USD)
    whole = math.floor(micro)  # exact: no float addition that could round at large amounts
    whole += int(micro - whole >= 0.5)
    return whole if usd >= 0 else -whole


def micro_to_usd(micro_usd: int) -> float:
    """Integer micro-USD to USD (float), for display and reports only."""
    return micro_usd / MICRO_USD_PER_USD


def order_rate_micro(usd_per_gpu_hour: float, gpus: int) -> int:
    """A price in USD per GPU-hour as the engine's rate for a whole order of `gpus` GPUs:
    integer micro-USD per hour, rounded half away from zero (`usd_to_micro` of the order's
    USD per hour). Max prices, bids and interruptible bids all enter the engine this way."""
    return usd_to_micro(usd_per_gpu_hour * gpus)


def order_rates_micro(usd_per_gpu_hour: Any, gpus: int) -> np.ndarray:
    """`order_rate_micro` over an array of prices per GPU-hour: the same whole micro-USD per
    hour for the whole order, as floats (NaN stays NaN: no bid)."""
    micro = np.asarray(usd_per_gpu_hour, float) * gpus * MICRO_USD_PER_USD
    size = np.abs(micro)
    whole = np.floor(size)
    size -= whole  # the fraction, in place: bids are priced many at a time, every order
    whole += size >= 0.5
    return np.copysign(whole, micro)


def order_cost_micro(usd_per_gpu_hour: Any, gpus: int) -> Any:
    """A cost or value in USD per GPU-hour (a float, or an array of them) as unrounded
    micro-USD per hour for a whole order of `gpus` GPUs: for figures that are measured, not
    paid (serving costs, list prices in welfare and scoring), which are never rounded."""
    return usd_per_gpu_hour * gpus * MICRO_USD_PER_USD


def gpu_hour_micro(usd_per_gpu_hour: Any) -> Any:
    """A price per GPU-hour in whole micro-USD per GPU-hour, rounded half away from zero
    (posted asks and floors, and an interruptible order's priority). Scalar in, int out;
    array in, float array out (NaN stays NaN)."""
    if np.ndim(usd_per_gpu_hour) == 0:
        return usd_to_micro(float(usd_per_gpu_hour))
    return order_rates_micro(usd_per_gpu_hour, 1)


def per_gpu_hour_usd(rate_micro_per_hour: Any, gpus: Any) -> Any:
    """A whole order's rate in micro-USD per hour as USD per GPU-hour (a float, or an array
    of them): for display, reports and strategies. The inverse of `order_rate_micro` up to
    float rounding, which `order_rate_micro` undoes."""
    return rate_micro_per_hour / gpus / MICRO_USD_PER_USD


def owed_micro(rate_micro_usd_per_hour: int, elapsed_sim_seconds: float) -> int:
    """What a lease at `rate_micro_usd_per_hour` owes after `elapsed_sim_seconds`, floored.

    Settlement pays the difference between this and what was already paid, so rounding never
    accumulates however often a lease is settled.
    """
    return int(rate_micro_usd_per_hour * elapsed_sim_seconds // SECONDS_PER_HOUR)


def usd_per_hour_to_per_block(usd_per_hour: float) -> float:
    """A rate in USD per hour as USD per Akash block (6.117 s)."""
    return usd_per_hour * SECONDS_PER_BLOCK / SECONDS_PER_HOUR


def usd_per_month_to_per_block(usd_per_month: float) -> float:
    """A rate in USD per month as USD per Akash block (429,909 blocks a month)."""
    return usd_per_month / BLOCKS_PER_MONTH


def per_block_to_per_hour_micro(micro_per_block: Any) -> Any:
    """A rate in micro-USD per Akash block as micro-USD per hour (float, unrounded: Akash's
    per-block rates carry 18 decimals, so the hour rate is rounded once, where it enters the
    engine)."""
    return micro_per_block * BLOCKS_PER_HOUR

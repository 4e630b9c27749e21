"""Units and conversions: money is integer micro-USD, time is simulated seconds.

Prices shown to people are USD per GPU-hour; the engine keeps a lease's rate as integer
micro-USD per hour for the whole lease, and Akash compatibility converts to per-block rates.
"""

from __future__ import annotations

import math

MICRO_USD_PER_USD = 1_000_000
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0
GIB = 2**30

#: Akash block time and blocks per month, as its pricing scripts use them.
SECONDS_PER_BLOCK = 6.117
BLOCKS_PER_MONTH = 429_909


def usd_to_micro(usd: float) -> int:
    """USD (float) to integer micro-USD, rounded half away from zero."""
    micro = abs(usd * MICRO_USD_PER_USD)
    whole = math.floor(micro)  # exact: no float addition that could round at large amounts
    whole += int(micro - whole >= 0.5)
    return whole if usd >= 0 else -whole


def micro_to_usd(micro_usd: int) -> float:
    """Integer micro-USD to USD (float), for display and reports only."""
    return micro_usd / MICRO_USD_PER_USD


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

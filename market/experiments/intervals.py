"""Confidence intervals as people and programs read them: labelled, in a figure's range.

A bare `[mean, low, high]` says neither which bound is which nor how it was computed, and a
t interval around a utilization of 0.98 can reach 1.03. `labelled` turns an interval into
`{"mean", "ci_low", "ci_high", "method", "confidence", "n", ...}`, clips the bounds to the
figure's natural range (a share in [0, 1], a price or a count at least 0) and says so in the
record: `range` the range clipped to, `clipped` whether a bound moved. The mean is never
moved: it is an average of values that are all in the range.

Methods: `student_t` (the mean of n values: t(0.975, n − 1) standard errors), `normal` (1.96
standard errors of many draws), `fieller` (a ratio of two means).
"""

from __future__ import annotations

import math
import re
from typing import Any

UNIT: tuple[float, float] = (0.0, 1.0)
"""Shares, rates, utilization, efficiency."""
SIGNED_UNIT: tuple[float, float] = (-1.0, 1.0)
"""A difference of two shares."""
NON_NEGATIVE: tuple[float, float] = (0.0, math.inf)
"""Prices, counts, durations, amounts paid."""

CONFIDENCE = 0.95

# Sweep metric columns are dotted paths into a run summary; their last part says what they
# are. Only names whose range is certain are listed: a profit, a surplus, a saving against
# list, a Lerner index or a money flow can be negative and stay unclipped.
_SIGNED = re.compile(r"surplus|profit|savings|lerner|flows_micro|residual|money_")
_UNIT_NAMES = re.compile(r"(^|_)(rate|utilization|efficiency|share|busy|participation)$")
_COUNT_GROUPS = re.compile(r"(^|\.)(lease_close_reasons|welfare\.jobs|"
                           r"deadweight_loss_by_cause_usd)\.[^.]+$")
_NON_NEGATIVE_NAMES = re.compile(
    r"(^|_)(count|posted|filled|expired|cancelled|open|failed|created|active|reposted|"
    r"hyperscaler|leases|pauses|resumes|paused|closed_while_paused|gpus|providers|"
    r"tenants_count|providers_count|gpu_hours|paid_usd|revenue_usd|spend_usd|fees_usd|"
    r"cost_usd|capex_usd|held_micro|list_usd_per_gpu_hour|mean|median|p10|p90|cv|p90_p10|"
    r"elapsed_s|revenue|deadweight_loss_usd|simulated_days)$")


def natural_range(metric: str) -> tuple[float, float] | None:
    """The range a metric of a run summary (a dotted column name of runs.parquet) cannot
    leave, or None when it can take either sign.

    >>> natural_range("fill_rate"), natural_range("providers.datacenter.long_run_profit_usd")
    ((0.0, 1.0), None)
    >>> natural_range("price_usd_per_gpu_hour.h100.mean")
    (0.0, inf)
    """
    leaf = metric.rsplit(".", 1)[-1]
    if _SIGNED.search(metric):
        return None
    if _UNIT_NAMES.search(leaf):
        return UNIT
    if _NON_NEGATIVE_NAMES.search(leaf) or _COUNT_GROUPS.search(metric):
        return NON_NEGATIVE
    return None


def _number(x: float | None) -> float | None:
    """JSON has no NaN or infinity: a missing or unbounded figure is null."""
    return None if x is None or not math.isfinite(x) else float(x)


def labelled(mean: float | None, low: float | None, high: float | None, *, method: str,
             n: int | None, bounds: tuple[float, float] | None = None,
             confidence: float = CONFIDENCE) -> dict[str, Any]:
    """A mean and its interval as a labelled record, the bounds clipped to `bounds`.

    Bounds are null when there is no interval (fewer than two values) or it is unbounded
    (a Fieller interval whose denominator may be 0).

    >>> labelled(0.98, 0.95, 1.01, method="student_t", n=4, bounds=UNIT)["ci_high"]
    1.0
    """
    lo, hi = _number(low), _number(high)
    clipped = False
    if bounds is not None:
        if lo is not None and lo < bounds[0]:
            lo, clipped = bounds[0], True
        if hi is not None and hi > bounds[1]:
            hi, clipped = bounds[1], True
    record: dict[str, Any] = {"mean": _number(mean), "ci_low": lo, "ci_high": hi,
                              "method": method, "confidence": confidence, "n": n}
    if bounds is not None:
        record["range"] = [_number(bounds[0]), _number(bounds[1])]  # null: unbounded
        record["clipped"] = clipped
    return record


def clip(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    """An interval's bounds clipped to `bounds` (NaN stays NaN), for tables."""
    if bounds is None:
        return low, high
    return (max(low, bounds[0]) if low == low else low,
            min(high, bounds[1]) if high == high else high)


__all__ = ["CONFIDENCE", "NON_NEGATIVE", "SIGNED_UNIT", "UNIT", "clip", "labelled",
           "natural_range"]

"""A tenant's order as it comes in: its arguments checked, and the whole job's figures.

`post_order` takes people's units (USD, USD per GPU-hour); what it does with them, before the
engine opens the order: every argument is checked (nothing changes on a bad one), and the
job's value and outside option are set where the tenant did not state them.
"""

from __future__ import annotations

import math

import numpy as np

from market.catalog import GpuCatalog
from market.errors import MarketError
from market.units import SECONDS_PER_HOUR


def check_order(*, max_price_usd_per_gpu_hour: float, deposit_usd: float,
                job_value_usd: float | None, outside_usd: float | None,
                outside_cost_usd: float | None, work_left: float) -> None:
    """Raise MarketError naming the first argument that is not a valid number."""
    if not 0 < max_price_usd_per_gpu_hour < math.inf:
        raise MarketError("max_price_usd_per_gpu_hour must be a finite number > 0")
    if not 0 <= deposit_usd < math.inf:
        raise MarketError("deposit_usd must be a finite number >= 0")
    for name, value in (("job_value_usd", job_value_usd), ("outside_usd", outside_usd),
                        ("outside_cost_usd", outside_cost_usd)):
        if value is not None and not 0 <= value < math.inf:
            raise MarketError(f"{name} must be a finite number >= 0")
    if not 0 < work_left <= 1:
        raise MarketError(f"work_left must be in (0, 1], got {work_left}")


def check_work(work_s: np.ndarray | None, models: int) -> tuple[np.ndarray | None, float]:
    """`work_s` as floats and the job's shortest run, seconds (an open-ended lease: an hour).
    Raise MarketError unless there is one duration > 0 per catalog GPU model, one finite."""
    if work_s is None:
        return None, SECONDS_PER_HOUR
    work_s = np.asarray(work_s, dtype=float)
    # All > 0 and one finite: the shortest run, positive and finite (NaN fails too).
    shortest_s = float(work_s.min()) if work_s.shape == (models,) else math.nan
    if not 0 < shortest_s < math.inf:
        raise MarketError(f"work_s: expected {models} durations > 0 "
                          f"(seconds per catalog GPU model, inf where it never runs)")
    return work_s, shortest_s


class OutsideOption:
    """What the whole job costs at the outside option (a hyperscaler at list price)."""

    def __init__(self, catalog: GpuCatalog, cost_fraction: np.ndarray) -> None:
        self._list_price = catalog.array("list_usd_per_gpu_hour")
        self._fraction = cost_fraction  # what serving at list costs it, per GPU model

    def job_usd(self, gpus: int, model_mask: np.ndarray, work_s: np.ndarray | None,
                work_left: float) -> tuple[float, float]:
        """The whole job at the outside option (an open-ended lease: one hour of it), USD:
        what its cheapest acceptable GPU model costs the tenant at list price, and the
        lowest cost to a hyperscaler of serving it on any acceptable model."""
        list_price = self._list_price
        hours = np.ones(len(list_price)) if work_s is None \
            else work_s / work_left / SECONDS_PER_HOUR
        price = np.where(model_mask, list_price * hours * gpus, np.inf)
        cheapest = float(price.min())
        if not cheapest < math.inf:
            return 0.0, 0.0
        return cheapest, float((price * self._fraction).min())


def job_figures_usd(outside: OutsideOption, *, max_price_usd_per_gpu_hour: float, gpus: int,
                    model_mask: np.ndarray, work_s: np.ndarray | None, shortest_s: float,
                    work_left: float, job_value_usd: float | None, outside_usd: float | None,
                    outside_cost_usd: float | None) -> tuple[float, float, float]:
    """The whole job's value, outside price and outside cost, USD, each as stated or else
    by rule (a re-post carries the same ones with less work left).

    Without a stated value, the tenant's reserve is the value it reveals: its max price over
    the shortest run of the whole job. Without a stated outside option, the cheapest
    acceptable model at its list price, which costs the hyperscaler its opportunity cost
    (market/core/outside.py); a stated outside price with no stated cost has no known margin.
    """
    if job_value_usd is None:
        job_value_usd = max_price_usd_per_gpu_hour * gpus * shortest_s / SECONDS_PER_HOUR \
            / (work_left if work_s is not None else 1.0)
    if outside_usd is None:
        outside_usd, default_cost = outside.job_usd(gpus, model_mask, work_s, work_left)
        if outside_cost_usd is None:
            outside_cost_usd = default_cost
    if outside_cost_usd is None:
        outside_cost_usd = outside_usd
    return job_value_usd, outside_usd, outside_cost_usd

"""What the log does not carry of an order: the job's hours on every GPU model, and the
tenant's budget, read by rebuilding the logged run.

Per-job mechanisms (`tenant_pick`, `first_price`, ... see `market.mechanisms.rules`) compare
bids by what the whole job would cost on each bidder's GPU, and refuse a bid above the
tenant's budget for the work. Those hours are the tenant's own estimate: the chain shows only
the lease's (`LeaseCreated.planned_work_s`). Off-policy evaluation needs them for every
bidder, so `job_figures` runs the market again from `scenario.json` and the seed, which makes
the very same run (same scenario + seed ⇒ same events), and notes each order's figures as its
auction asks for them (`Engine.auction_context`, the public way the auction gets them).

It checks the rebuilt run against the log (the same leases, at the same prices, in the same
order): a log that does not rebuild (a live session driven by outside commands) gets None, and
the evaluation falls back on the hours of the lease (see `offpolicy_log.Auction.context`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from market.events import LeaseCreated
from market.units import SECONDS_PER_HOUR


@dataclass(frozen=True, slots=True)
class JobFigures:
    """One order's job as its auction weighed it: hours on each catalog GPU model (inf where
    the job does not run; None: open-ended, an hour per lease-hour) and the tenant's budget
    for the work, micro-USD."""

    hours_by_model: np.ndarray | None
    budget_micro: float


def job_figures(scenario: Any, seed: int, logged_leases: list[tuple[int, int, int]]
                ) -> dict[int, JobFigures] | None:
    """Each auctioned order's `JobFigures`, by order id, from the run rebuilt from `scenario`
    and `seed`; None if the rebuilt run's leases, (order id, provider, price micro-USD per
    hour) in order, are not `logged_leases`."""
    from market.builder import Market

    market = Market(scenario, seed=seed)
    figures: dict[int, JobFigures] = {}
    leases: list[tuple[int, int, int]] = []
    ask = market.auction_context

    def noted(order: Any, providers: np.ndarray) -> Any:
        context = ask(order, providers)
        if order.id not in figures:
            hours = None if order.work_s is None \
                else np.asarray(order.work_s, float) / SECONDS_PER_HOUR
            figures[order.id] = JobFigures(hours, float(context.budget_micro))
        return context

    market.auction_context = noted  # the engine asks its own attribute: this instance only
    market.subscribe(lambda e: leases.append((e.order_id, e.provider, e.price_micro_per_hour)),
                     kinds=(LeaseCreated,))
    market.run()
    return figures if leases == logged_leases else None

"""Orders, bids and leases: the market's records, with Akash's states and close reasons."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from market.core.resources import Requirement, ResourceUnit


class OrderState(StrEnum):
    OPEN = "open"        # collecting bids
    ACTIVE = "active"    # a lease runs
    CLOSED = "closed"    # leased and ended, expired, or cancelled


class BidState(StrEnum):
    OPEN = "open"
    ACTIVE = "active"    # won: its lease runs
    LOST = "lost"        # another bid won
    CLOSED = "closed"    # withdrawn, timed out, or its lease ended


class LeaseState(StrEnum):
    ACTIVE = "active"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CLOSED = "closed"


class CloseReason(StrEnum):
    """Why a lease ended (Akash's lease close reasons)."""

    OWNER = "owner"                          # the tenant closed it (or its job finished)
    UNSTABLE = "unstable"                    # the provider's health checks failed
    INSUFFICIENT_FUNDS = "insufficient_funds"  # escrow ran dry
    MANIFEST_TIMEOUT = "manifest_timeout"    # the tenant never sent its manifest
    DECOMMISSION = "decommission"            # the provider left the market


#: Close reasons that are the provider's fault: the work is re-posted and counted as failed.
PROVIDER_FAULTS = (CloseReason.UNSTABLE, CloseReason.DECOMMISSION)


class Order:
    """One Akash order (a deployment group) open for bids, with its escrow.

    Bids live as parallel arrays in arrival order. `work_s` (optional) is how long the job runs
    on each GPU model of the catalog, already scaled by `work_left`; the tenant closes the lease
    (reason owner) when it is done.
    """

    __slots__ = (
        "attempt",
        "audited_only",
        "auto",
        "best_cost_micro",
        "bid_arrivals",
        "bid_ids",
        "bid_lost",
        "bid_open",
        "bid_prices",
        "bid_providers",
        "created_s",
        "escrow",
        "id",
        "interruptible",
        "job_id",
        "job_kind",
        "job_value_micro",
        "lease",
        "max_price",
        "model_mask",
        "need",
        "no_bids",
        "outside_cost_micro",
        "outside_micro",
        "priority",
        "requirement",
        "shape_key",
        "state",
        "storage_mask",
        "tag",
        "tenant",
        "units",
        "view",
        "work_left",
        "work_s",
    )

    def __init__(self, order_id: int, tenant: int, units: tuple[ResourceUnit, ...],
                 requirement: Requirement, model_mask: np.ndarray, storage_mask: int,
                 max_price: int, job_value_micro: int, created_s: float, *,
                 job_id: int | None = None, job_kind: str = "",
                 work_s: np.ndarray | None = None, work_left: float = 1.0, attempt: int = 0,
                 auto: bool = True, audited_only: bool = False, tag: object = None,
                 shape_key: bytes = b"", outside_micro: int = 0,
                 outside_cost_micro: int = 0) -> None:
        self.id = order_id
        self.tenant = tenant
        self.job_id = order_id if job_id is None else job_id
        self.job_kind = job_kind
        self.units = units
        self.requirement = requirement
        self.model_mask = model_mask
        self.storage_mask = storage_mask
        self.need = requirement.capacity
        self.max_price = max_price          # micro-USD per hour, whole order
        # The whole job, micro-USD (an open-ended order: one hour of it): what serving it is
        # worth to the tenant, what the outside option charges, what serving it there costs
        # the hyperscaler (market/core/outside.py), and the cheapest way to serve it when it was
        # posted (a provider free to take it, or the outside option).
        self.job_value_micro = job_value_micro
        self.outside_micro = outside_micro
        self.outside_cost_micro = outside_cost_micro
        self.best_cost_micro = 0
        self.created_s = created_s
        self.state = OrderState.OPEN
        self.attempt = attempt
        self.escrow = 0                     # micro-USD held for it in the escrow account
        self.work_s = work_s
        self.work_left = work_left
        self.auto = auto
        self.audited_only = audited_only
        self.bid_ids: list[int] = []
        self.bid_providers = _EMPTY_INT
        self.bid_prices = _EMPTY_INT
        self.bid_arrivals = _EMPTY_FLOAT
        self.bid_open = _EMPTY_BOOL
        self.bid_lost = _EMPTY_BOOL         # bids still open when another one won
        self.lease: Lease | None = None
        self.shape_key = shape_key          # orders of one shape share eligibility masks
        self.tag = tag                      # free for the poster (tenant policies keep state)
        self.view: object = None            # as providers see it (market.bidding.order_view)
        # Providers that did not bid when its auction opened, per reason (market.core.no_bids;
        # None: not auctioned per order).
        self.no_bids: list[int] | None = None
        # Vast.ai-style interruptible: the tenant's bid, micro-USD per GPU-hour, ranks its
        # lease against the others on the provider; higher runs, lower is paused.
        self.interruptible = False
        self.priority = 0

    @property
    def gpus(self) -> int:
        return int(self.need[0])

    def bid_states(self, winning_bid: int | None) -> list[BidState]:
        """Each bid's Akash state, in arrival order."""
        states = []
        for position, bid_id in enumerate(self.bid_ids):
            if bid_id == winning_bid:
                states.append(BidState.ACTIVE)
            elif self.bid_open[position]:
                states.append(BidState.OPEN)
            elif self.bid_lost.size and self.bid_lost[position]:
                states.append(BidState.LOST)
            else:
                states.append(BidState.CLOSED)
        return states


_EMPTY_INT = np.zeros(0, np.int64)
_EMPTY_FLOAT = np.zeros(0)
_EMPTY_BOOL = np.zeros(0, bool)


class Lease:
    """A running agreement: `provider` serves `order` at `price` micro-USD per hour.

    An interruptible lease may be paused (its resources go back to the provider, it is not
    paid, its work does not advance) and resumed; `ran_s` is how long it has run.
    """

    __slots__ = (
        "bid_id",
        "deposit",
        "gpus",
        "id",
        "interruptible",
        "model",
        "order",
        "paid",
        "paused_s",
        "paused_since_s",
        "pauses",
        "plan",
        "planned_end_s",
        "planned_reason",
        "planned_work_s",
        "price",
        "priority",
        "provider",
        "run_start_s",
        "running",
        "start_s",
        "state",
        "worked_s",
    )

    def __init__(self, lease_id: int, order: Order, provider: int, bid_id: int, model: int,
                 price: int, start_s: float, deposit: int) -> None:
        self.id = lease_id
        self.order = order
        self.provider = provider
        self.bid_id = bid_id
        self.model = model
        self.gpus = order.gpus
        self.price = price
        self.start_s = start_s
        self.paid = 0
        self.state = LeaseState.ACTIVE
        self.planned_end_s = float("inf")
        self.planned_reason = CloseReason.OWNER
        self.planned_work_s = float("inf")   # how long the job needs on this provider
        self.deposit = deposit               # the winning bid's deposit, refunded at the end
        self.interruptible = order.interruptible
        self.priority = order.priority
        self.running = True
        self.run_start_s = start_s           # when the current run began
        self.worked_s = 0.0                  # run time before the current run
        self.paused_s = 0.0                  # time spent paused, finished pauses
        self.paused_since_s = float("nan")
        self.pauses = 0
        self.plan = 0                        # bumped on pause: the planned end no longer holds

    def ran_s(self, now_s: float) -> float:
        """Seconds this lease has run (paused time excluded) up to `now_s`."""
        return self.worked_s + (now_s - self.run_start_s if self.running else 0.0)

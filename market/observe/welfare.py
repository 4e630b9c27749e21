"""Welfare per job: who gained what from each job, and what was lost, counted once per job.

A job has a value V (what serving all of it is worth to its tenant), fixed when the job is
created, and a best cost C*: the lowest avoidable cost of serving all of it by anyone who could
have served it in time — the cheapest provider free to take it when it was first posted, the
outside option (a hyperscaler, at its opportunity cost: market/core/outside.py), or a provider that
did serve part of it later (it was there in time), whichever is cheapest.
Re-posts after an expiry or a failed lease are the same job: they add no potential welfare.
Its work is served in shares: by leases in the market (each at its provider's avoidable cost
of serving), by the outside option (a hyperscaler, after the tenant gives up), or not at
all. Every share s of the job realizes s·V of value at a cost, and the job splits
into (integer micro-USD, so the identity below holds exactly):

- consumer surplus   value of the work done here − what the tenant paid for it
- producer surplus   what providers kept (paid − fees) − their avoidable cost of serving
- platform fees      the take rate's share of every payment
- outside surplus    value of the work taken outside − the hyperscaler's cost of serving it:
                     the tenant's share (value − the list price it paid) plus the
                     hyperscaler's (list price − its opportunity cost), given apart
- deadweight loss    potential − realized, by cause: `unserved` (work never done that was worth
                     doing), `misallocated` (work done at a higher cost than C*), `wasted`
                     (work done that was worth less than its cost)

potential = max(0, V − C*) for the work decided by the end of the run; work still open or
running then is `pending` and left out of both sides. consumer + producer + fees + outside +
deadweight loss = potential, to the micro-USD, is checked in every run, together with the
fees and payments against the ledger.

An open-ended order (no work estimate) is a job whose value and cost are per hour: its share
is the hours it ran, and at least one hour counts as its potential.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from market.core.state import MarketState
from market.events import (
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
    PaymentSettled,
    TenantLeft,
)
from market.units import SECONDS_PER_HOUR, micro_to_usd

#: Parts of the decomposition, in the order the summary and the jobs table give them.
PARTS = ("consumer_surplus", "producer_surplus", "platform_fees", "outside_surplus",
         "deadweight_loss")
LOSSES = ("unserved", "misallocated", "wasted")


class _Job:
    __slots__ = ("attempts", "best", "cost_done", "cost_out", "created_s", "fees", "job_id",
                 "kind", "leases", "left", "list_out", "open_ended", "orders", "paid",
                 "remaining", "running", "tenant", "value", "work_done", "work_out")

    def __init__(self, job_id: int, tenant: int, kind: str, created_s: float, value: int,
                 best: int, open_ended: bool) -> None:
        self.job_id = job_id
        self.tenant = tenant
        self.kind = kind
        self.created_s = created_s
        self.value = value              # V, micro-USD, the whole job (open-ended: an hour)
        self.best = best                # C*, micro-USD, likewise
        self.open_ended = open_ended
        self.orders = 0                 # open orders (collecting bids)
        self.running = 0                # open leases
        self.leases = 0                 # leases ever
        self.attempts = 0               # orders ever
        self.remaining = 1.0            # share of the job not yet done or taken outside
        self.left = False               # the tenant took the rest outside
        # Shares of the job served here and outside, and what they cost and paid (micro-USD).
        self.work_done = 0.0
        self.cost_done = 0
        self.paid = 0
        self.fees = 0
        self.work_out = 0.0
        self.list_out = 0               # what the tenant paid the hyperscaler
        self.cost_out = 0               # what serving that cost the hyperscaler


class _Lease:
    __slots__ = ("cost_whole", "job", "planned_s", "ran_s", "running", "start_s", "work_before")

    def __init__(self, job: _Job, cost_whole: float, work_before: float, planned_s: float,
                 start_s: float) -> None:
        self.job = job
        self.cost_whole = cost_whole    # the whole job on this provider, micro-USD (float)
        self.work_before = work_before  # share of the job left when the lease started
        self.planned_s = planned_s      # how long that share takes here (inf: open-ended)
        self.ran_s = 0.0                # run time before the current run
        self.start_s = start_s
        self.running = True

    def ran_until(self, now_s: float) -> float:
        return self.ran_s + (now_s - self.start_s if self.running else 0.0)

    def share(self, now_s: float, work_after: float | None = None) -> float:
        """Share of the job this lease has done by `now_s` (an open-ended lease: hours)."""
        if self.job.open_ended:
            return self.ran_until(now_s) / SECONDS_PER_HOUR
        if work_after is not None:
            return max(self.work_before - work_after, 0.0)
        return self.work_before * min(self.ran_until(now_s) / self.planned_s, 1.0)


def _part(micro: int, share: float) -> int:
    return round(micro * share)


def _outside_cost(event: TenantLeft) -> int:
    """What the work a tenant took outside cost the hyperscaler, micro-USD."""
    return event.list_cost_micro if event.cost_micro is None else event.cost_micro


class Welfare:
    """Subscribes to a market and keeps each job's welfare account until the job is over.

    Finished jobs are folded into running totals (and handed to `sink`, one row each, for the
    jobs table), so memory is bounded by the jobs still open.
    """

    def __init__(self, market: MarketState) -> None:
        self.market = market
        self.jobs: dict[int, _Job] = {}
        self.leases: dict[int, _Lease] = {}
        self._order_job: dict[int, int] = {}
        self._order_work: dict[int, float] = {}   # open order -> share of its job it is for
        self.totals = dict.fromkeys((*PARTS, "potential", *LOSSES, "pending_potential",
                                     "paid", "outside_margin"), 0)
        self.statuses: dict[str, int] = {}
        self.sink: Callable[[tuple[Any, ...]], None] | None = None
        self._never_posted = -1  # job ids for jobs the market never saw (-1, -2, ...)
        for kind, handler in (
                (OrderOpened, self._opened), (LeaseCreated, self._leased),
                (OrderExpired, self._order_ended), (OrderCancelled, self._order_ended),
                (LeasePaused, self._paused), (LeaseResumed, self._resumed),
                (LeaseClosed, self._closed), (PaymentSettled, self._paid),
                (TenantLeft, self._left)):
            market.subscribe(handler, kinds=(kind,))

    # ------------------------------------------------------------------ events

    # An order event without the order's units (built by hand to test another component) has
    # no account to go to: it is passed over.
    def _opened(self, event: OrderOpened) -> None:
        if not event.units:
            return
        job = self.jobs.get(event.job_id)
        if job is None:
            job = self.jobs[event.job_id] = _Job(
                event.job_id, event.tenant, event.job_kind, event.time_s,
                event.job_value_micro, event.best_cost_micro, event.open_ended)
            if not job.open_ended:
                job.remaining = event.work_left
        job.orders += 1
        job.attempts += 1
        self._order_job[event.order_id] = event.job_id
        self._order_work[event.order_id] = event.work_left

    def _order_ended(self, event: OrderExpired | OrderCancelled) -> None:
        self._order_work.pop(event.order_id, None)
        job_id = self._order_job.pop(event.order_id, None)
        if job_id is not None:
            self.jobs[job_id].orders -= 1

    def _leased(self, event: LeaseCreated) -> None:
        job_id = self._order_job.pop(event.order_id, None)
        if job_id is None:
            return
        work_left = self._order_work.pop(event.order_id)
        job = self.jobs[job_id]
        job.orders -= 1
        job.running += 1
        job.leases += 1
        cost_whole = event.serving_cost_micro
        if job.open_ended:
            # Costed per hour, in whole micro-USD as its best cost is: over many hours, a
            # fraction of a micro-USD per hour would otherwise make a cheapest provider look
            # a few micro-USD cheaper than the best (a negative misallocation).
            cost_whole = float(round(cost_whole))
        job.best = min(job.best, round(cost_whole))  # it could serve the job in time
        self.leases[event.lease_id] = _Lease(job, cost_whole, work_left,
                                             event.planned_work_s, event.time_s)

    def _paused(self, event: LeasePaused) -> None:
        lease = self.leases.get(event.lease_id)
        if lease is None:
            return
        lease.ran_s += event.time_s - lease.start_s
        lease.running = False

    def _resumed(self, event: LeaseResumed) -> None:
        lease = self.leases.get(event.lease_id)
        if lease is None:
            return
        lease.start_s = event.time_s
        lease.running = True

    def _paid(self, event: PaymentSettled) -> None:
        lease = self.leases.get(event.lease_id)
        if lease is not None:
            lease.job.paid += event.amount_micro
            lease.job.fees += event.fee_micro

    def _closed(self, event: LeaseClosed) -> None:
        lease = self.leases.pop(event.lease_id, None)
        if lease is None:
            return
        job = lease.job
        share = lease.share(event.time_s, None if job.open_ended else event.work_left)
        self._book(job, lease, share)
        job.running -= 1
        if not job.open_ended:
            job.remaining = event.work_left
        if event.work_left <= 0 and not job.orders and not job.running:
            self._finish(job)

    def _left(self, event: TenantLeft) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:  # never posted here: the outside option is the only way it was served
            job_id = event.job_id
            if job_id < 0:  # each gets an id of its own in the jobs table
                job_id, self._never_posted = self._never_posted, self._never_posted - 1
            # Its best cost is the outside option's: the market never learned who else
            # could have served it.
            job = _Job(job_id, event.tenant, "", event.time_s, event.value_micro,
                       _outside_cost(event), open_ended=False)
            share = 1.0
        else:
            share = job.remaining
        job.work_out += share
        job.list_out += event.list_cost_micro
        job.cost_out += _outside_cost(event)
        job.remaining = 0.0
        job.left = True
        if not job.orders and not job.running:
            self._finish(job)

    # ------------------------------------------------------------------ accounts

    def _book(self, job: _Job, lease: _Lease, share: float) -> None:
        """Fold a lease's share of the job into the job's account."""
        job.work_done += share
        job.cost_done += round(lease.cost_whole * share)

    def _finish(self, job: _Job) -> None:
        self.jobs.pop(job.job_id, None)
        self._fold(self.account(job, pending=False))

    def _fold(self, account: dict[str, Any]) -> None:
        totals = self.totals
        for key in totals:
            totals[key] += account[key]
        self.statuses[account["status"]] = self.statuses.get(account["status"], 0) + 1
        if self.sink is not None:
            self.sink(_row(account))

    def account(self, job: _Job, pending: bool, open_share: float = 0.0,
                open_cost: int = 0) -> dict[str, Any]:
        """The job's decomposition, micro-USD. `pending`: it still has an open order or
        lease, so what is left of it is pending rather than unserved; `open_share`,
        `open_cost`: what its running leases have done so far, and its cost."""
        work_done = job.work_done + open_share
        cost_done = job.cost_done + open_cost
        # The whole job: an open-ended one is as many hours as it ran, at least one.
        scale = max(1.0, work_done + job.work_out) if job.open_ended else 1.0
        value, best = _part(job.value, scale), _part(job.best, scale)
        left = max(scale - work_done - job.work_out, 0.0)
        pending_share = left if pending else 0.0
        # Each share's value and best cost, rounded once per job and share.
        val_done, best_done = _part(job.value, work_done), _part(job.best, work_done)
        val_out, best_out = _part(job.value, job.work_out), _part(job.best, job.work_out)
        val_pending, best_pending = _part(job.value, pending_share), \
            _part(job.best, pending_share)
        consumer = val_done - job.paid
        producer = job.paid - job.fees - cost_done
        outside = val_out - job.cost_out
        unserved = misallocated = wasted = 0
        if value >= best:
            potential = (value - val_pending) - (best - best_pending)
            unserved = ((value - val_pending - val_done - val_out)
                        - (best - best_pending - best_done - best_out))
            misallocated = (cost_done - best_done) + (job.cost_out - best_out)
        else:
            potential = 0
            wasted = (cost_done - val_done) + (job.cost_out - val_out)
        if pending:
            status = "pending"
        elif left > 1e-9 and not job.open_ended:
            status = "unserved" if work_done + job.work_out <= 1e-9 else "partly_unserved"
        elif job.left:
            status = "outside" if work_done <= 1e-9 else "partly_outside"
        else:
            status = "served"
        return {
            "job_id": job.job_id, "tenant": job.tenant, "job_kind": job.kind,
            "created_s": job.created_s, "status": status, "orders": job.attempts,
            "leases": job.leases, "work_done": work_done, "work_outside": job.work_out,
            "value": value - val_pending, "best_cost": best - best_pending,
            "paid": job.paid, "potential": potential,
            "consumer_surplus": consumer, "producer_surplus": producer,
            "platform_fees": job.fees, "outside_surplus": outside,
            "outside_paid": job.list_out, "outside_margin": job.list_out - job.cost_out,
            "deadweight_loss": unserved + misallocated + wasted,
            "unserved": unserved, "misallocated": misallocated, "wasted": wasted,
            "pending_potential": (val_pending - best_pending) if value >= best else 0,
        }

    def open_accounts(self) -> list[dict[str, Any]]:
        """Every job not over yet, as it stands now (its running leases counted so far)."""
        now = self.market.now
        done: dict[int, tuple[float, int]] = {}  # job id -> share done and its cost, so far
        for lease in self.leases.values():
            part = lease.share(now)
            share, cost = done.get(lease.job.job_id, (0.0, 0))
            done[lease.job.job_id] = (share + part, cost + round(lease.cost_whole * part))
        accounts = []
        for job in self.jobs.values():
            share, cost = done.get(job.job_id, (0.0, 0))
            accounts.append(self.account(job, pending=bool(job.orders or job.running),
                                         open_share=share, open_cost=cost))
        return accounts

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict[str, Any]:
        """The decomposition over every job so far, USD, with the efficiency and the
        checks (the identity to the micro-USD; fees and payments against the ledger)."""
        totals = dict(self.totals)
        statuses = dict(self.statuses)
        for account in self.open_accounts():
            for key in totals:
                totals[key] += account[key]
            statuses[account["status"]] = statuses.get(account["status"], 0) + 1
        residual = (sum(totals[part] for part in PARTS) - totals["potential"])
        fees, paid = self.market.settlement.paid_micro()
        fees_match = totals["platform_fees"] == fees
        paid_match = totals["paid"] == paid
        realized = totals["potential"] - totals["deadweight_loss"]
        potential = totals["potential"]
        return {
            "potential_usd": micro_to_usd(potential),
            "realized_usd": micro_to_usd(realized),
            **{f"{part}_usd": micro_to_usd(totals[part]) for part in PARTS},
            "outside_surplus_by_side_usd": {
                "tenants": micro_to_usd(totals["outside_surplus"] - totals["outside_margin"]),
                "hyperscalers": micro_to_usd(totals["outside_margin"])},
            "deadweight_loss_by_cause_usd": {cause: micro_to_usd(totals[cause])
                                             for cause in LOSSES},
            "pending_potential_usd": micro_to_usd(totals["pending_potential"]),
            "allocative_efficiency": realized / potential if potential > 0 else 1.0,
            "jobs": dict(sorted(statuses.items())),
            "identity_residual_micro": residual,
            "identity_holds": residual == 0 and fees_match and paid_match,
        }


JOBS_COLUMNS = (
    ("job_id", "int64"), ("tenant", "int64"), ("job_kind", "string"), ("created_s", "float64"),
    ("status", "string"), ("orders", "int32"), ("leases", "int32"), ("work_done", "float64"),
    ("work_outside", "float64"), ("value_usd", "float64"), ("best_cost_usd", "float64"),
    ("paid_usd", "float64"), ("potential_usd", "float64"), ("consumer_surplus_usd", "float64"),
    ("producer_surplus_usd", "float64"), ("platform_fees_usd", "float64"),
    ("outside_surplus_usd", "float64"), ("outside_paid_usd", "float64"),
    ("deadweight_loss_usd", "float64"),
    ("unserved_usd", "float64"), ("misallocated_usd", "float64"), ("wasted_usd", "float64"),
    ("pending_potential_usd", "float64"),
)


def _row(account: dict[str, Any]) -> tuple[Any, ...]:
    """A job's account as a row of the jobs table (USD)."""
    row = []
    for name, _kind in JOBS_COLUMNS:
        key = name.removesuffix("_usd")
        value = account[key]
        row.append(micro_to_usd(value) if name.endswith("_usd") else value)
    return tuple(row)


def rows(accounts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [_row(account) for account in accounts]

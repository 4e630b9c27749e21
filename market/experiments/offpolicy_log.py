"""A run's event log read back as the auctions one provider population bid in.

Off-policy evaluation (`market.experiments.offpolicy`) asks what a population `L` would have
earned had it bid otherwise on the same orders. Its units are the orders on which L's
providers placed bids. `LogReader` walks a run's `events.parquet` once, in order, and keeps
what the chain showed at each moment: published lease prices (as `market.strategy.
PriceHistory` keeps them), which providers are up, each provider's public track record (for
scoring auctions), and L's GPUs under lease. For every unit it yields the moment L's bids
went in (`"open"`: the order, every bid so far) and the moment the auction closed
(`"close"`: which bids counted, the logged winner and price); when the log ends, every
unit's logged lease is settled (`finish`): how long it ran, what it paid L net of fees, and
L's lease profit on it (USD) = that pay − the serving provider's marginal cost × GPUs × hours.

L's provider ids come from the scenario's market rebuilt at t=0 with the run's seed (the same
draws as the logged run): `market.pool.population` says whose each provider is.

What the log does not carry is left out and said so: orders whose winner the tenant picks by
hand are not units (no model of the tenant's pick); a bid's job hours on another GPU model
than the lease's are taken equal to the lease's (the log gives only the winner's).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from market.core.auction import AuctionContext
from market.core.records import PROVIDER_FAULTS
from market.core.resources import ResourceUnit
from market.experiments.offpolicy_jobs import JobFigures
from market.observe.eventlog import read_events
from market.strategy import OrderView, mean_of_last
from market.units import SECONDS_PER_HOUR, micro_to_usd, order_cost_micro, per_gpu_hour_usd


class OffPolicyError(ValueError):
    """Input that cannot be evaluated: one line naming the argument and what is valid."""


_FAULTS = frozenset(reason.value for reason in PROVIDER_FAULTS)
#: Published prices kept per GPU model, as `market.strategy.PriceHistory` keeps them.
PRICES_KEPT = 256


@dataclass(slots=True)
class Auction:
    """One order on which the logging population bid: what the chain showed, and how the
    logged auction ended. Prices are whole micro-USD per hour for the whole order; bids are
    in arrival order (ties to the earlier, as the engine keeps them)."""

    order: OrderView
    job_kind: str
    open_ended: bool
    job_value_micro: int
    work_left: float
    providers: np.ndarray               # every bidder
    prices_micro: np.ndarray            # their bids
    arrivals_s: np.ndarray
    mine: np.ndarray                    # bool: the logging population's bidders
    closed_s: float = math.nan
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # counted at close
    held: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))   # held, provider up
    reliability: np.ndarray = field(default_factory=lambda: np.zeros(0))
    job: JobFigures | None = None       # the job's hours by GPU model, from the rebuilt run
    winner: int = -1                    # the logged winning provider (-1: expired)
    price_micro: int = 0                # the logged lease's rate
    lease_id: int = -1
    planned_work_s: float = math.inf    # the logged lease's planned work (inf: open-ended)
    duration_s: float = math.nan        # how long the logged lease ran (to the run's end)
    paid_net_micro: int = 0             # what the logged lease paid its provider, net of fees
    profit_usd: float = 0.0             # L's realized lease profit on this order

    @property
    def order_id(self) -> int:
        return self.order.order_id

    @property
    def gpus(self) -> int:
        return self.order.gpus

    @property
    def won(self) -> bool:
        """Whether one of the logging population's bidders won the logged auction."""
        return self.winner >= 0 and bool((self.providers[self.mine] == self.winner).any())

    def context(self, counted: np.ndarray, models: np.ndarray,
                list_usd: np.ndarray) -> AuctionContext:
        """What a scoring or per-job mechanism weighs besides the bids that counted, as
        `market.core.appraisal.Appraisal.context` builds it: the job's hours on each bidder's
        GPU, the bidders' track records at close, their list prices, and the tenant's budget.
        The log gives the hours only on the logged lease's GPU (`planned_work_s`): every
        bidder is given those; an open-ended order runs 1 hour a lease-hour; an expired
        order's hours and budget are unknown (1 hour each, no budget beyond the max price).
        `counted`: bool per bid, those that count; `models`: each provider's GPU model
        index; `list_usd`: list price per model. With `job` (the rebuilt run's figures)
        the hours and budget are the auction's own."""
        bidders = self.providers[counted]
        model = models[np.clip(bidders, 0, models.size - 1)]
        list_micro = order_cost_micro(list_usd[model], self.gpus)
        if self.job is not None:
            by_model = self.job.hours_by_model
            return AuctionContext(
                np.ones(bidders.size) if by_model is None else by_model[model],
                self.reliability[counted], list_micro, budget_micro=self.job.budget_micro,
                pays_reserve=self.order.interruptible)
        max_price = float(self.order.max_price_micro_per_hour)
        hours, budget = 1.0, math.inf
        if self.open_ended:
            budget = min(max_price, float(self.job_value_micro))
        elif math.isfinite(self.planned_work_s):
            hours = self.planned_work_s / SECONDS_PER_HOUR
            budget = min(max_price * hours, self.job_value_micro * self.work_left)
        return AuctionContext(np.full(bidders.size, hours), self.reliability[counted],
                              list_micro, budget_micro=budget,
                              pays_reserve=self.order.interruptible)


@dataclass(slots=True)
class _Lease:
    auction: Auction | None
    provider: int
    gpus: int
    start_s: float
    job_kind: str
    end_s: float = math.nan
    paid_net_micro: int = 0


class LogReader:
    """Walks an `events.parquet` once; `auctions()` yields ("open" | "close", Auction) for
    every order the logging population bid on, in the log's order; `finish()` then settles
    the logged leases. Meanwhile `now_s`, `clearing_prices`, `mean_clearing_price`,
    `free_gpus` and `is_up` say what the chain showed at that moment."""

    def __init__(self, path: str | Path, mine: np.ndarray, gpu_capacity: np.ndarray,
                 marginal_usd_per_gpu_hour: np.ndarray, *, sealed: bool, window_s: float,
                 bid_timeout_s: float, horizon_s: float,
                 jobs: dict[int, JobFigures] | None = None) -> None:
        self._path = Path(path)
        self._jobs = jobs or {}
        self._mine = np.asarray(mine, bool)          # by provider id: L's?
        self._capacity = np.asarray(gpu_capacity, np.int64)
        self._marginal = np.asarray(marginal_usd_per_gpu_hour, float)
        self._sealed = sealed
        self._window_s = window_s
        self._timeout_s = bid_timeout_s
        self.horizon_s = horizon_s
        self.now_s = 0.0
        self._prices: dict[str, deque[float]] = {}
        self._down_until: dict[int, float] = {}      # provider -> back at (inf: until told)
        self._ended: dict[int, int] = {}
        self._failed: dict[int, int] = {}
        self._leased = np.zeros(self._capacity.size, np.int64)  # L's GPUs under lease
        self._opened: dict[int, dict[str, Any]] = {}  # order id -> order_opened, until bid on
        self._units: dict[int, Auction] = {}          # open units by order id
        self._leases: dict[int, _Lease] = {}
        self.auctions_read: list[Auction] = []
        self.hand_picked = 0                          # units left out: the tenant picks
        self.last_s = 0.0

    # ------------------------------------------------------------------ what the chain showed

    def clearing_prices(self, gpu_model: str) -> np.ndarray:
        """Published lease prices of `gpu_model` so far, oldest first, USD per GPU-hour."""
        return np.fromiter(self._prices.get(gpu_model, ()), dtype=float)

    def mean_clearing_price(self, gpu_model: str, last: int) -> float:
        return mean_of_last(self._prices.get(gpu_model, ()), last)

    def free_gpus(self, providers: np.ndarray) -> np.ndarray:
        """L's providers' GPUs not under lease now (none while down). Bids held on other
        open orders are not counted: the log does not say what each holds."""
        providers = np.asarray(providers, np.int64)
        free = self._capacity[providers] - self._leased[providers]
        up = np.array([self.is_up(int(p)) for p in providers.tolist()], bool)
        return np.where(up, np.maximum(free, 0), 0)

    def is_up(self, provider: int) -> bool:
        return self._down_until.get(provider, -math.inf) <= self.now_s

    def _reliability(self, providers: np.ndarray) -> np.ndarray:
        ended = np.array([self._ended.get(p, 0) for p in providers.tolist()], float)
        failed = np.array([self._failed.get(p, 0) for p in providers.tolist()], float)
        return (ended - failed + 1) / (ended + 1)  # as `market.core.appraisal.Appraisal`

    # ------------------------------------------------------------------ the walk

    def auctions(self) -> Iterator[tuple[str, Auction]]:
        for event in read_events(self._path):
            kind = event["kind"]
            self.now_s = self.last_s = float(event["time_s"])
            if kind == "order_opened":
                self._opened[event["order_id"]] = event
            elif kind == "bids_placed":
                unit = self._bids(event)
                if unit is not None:
                    yield "open", unit
            elif kind in ("lease_created", "order_expired", "order_cancelled"):
                unit = self._closed(event)
                if unit is not None:
                    yield "close", unit
            elif kind == "payment_settled":
                lease = self._leases.get(event["lease_id"])
                if lease is not None:
                    lease.paid_net_micro += event["amount_micro"] - event["fee_micro"]
            elif kind == "lease_closed":
                self._lease_closed(event)
            elif kind == "provider_failed":
                self._down_until[event["provider"]] = math.inf
            elif kind == "provider_recovered":
                self._down_until.pop(event["provider"], None)
            elif kind == "provider_left":
                self._down_until[event["provider"]] = float(event["back_at_s"])
            elif kind == "provider_exited":
                self._down_until[event["provider"]] = math.inf
            elif kind in ("lease_paused", "lease_resumed"):
                raise OffPolicyError("RUN_DIR: the log has paused leases (mechanism "
                                     "'interruptible'): off-policy evaluation prices whole "
                                     "leases only")

    def _bids(self, event: dict[str, Any]) -> Auction | None:
        order_id = event["order_id"]
        providers = np.asarray(event["providers"], np.int64)
        prices = np.asarray(event["prices_micro_per_hour"], np.int64)
        arrivals = np.asarray(event["arrivals_s"], float)
        unit = self._units.get(order_id)
        if unit is not None:  # more bids (by hand) on an order L already bid on
            merged = np.concatenate([unit.arrivals_s, arrivals])
            by_arrival = np.argsort(merged, kind="stable")
            unit.providers = np.concatenate([unit.providers, providers])[by_arrival]
            unit.prices_micro = np.concatenate([unit.prices_micro, prices])[by_arrival]
            unit.arrivals_s = merged[by_arrival]
            unit.mine = self._is_mine(unit.providers)
            return None
        opened = self._opened.get(order_id)
        if opened is None:
            return None
        mine = self._is_mine(providers)
        if not mine.any():
            opened.setdefault("_others", []).append((providers, prices, arrivals))
            return None
        if opened["interruptible"]:
            raise OffPolicyError("RUN_DIR: the log has interruptible orders, whose bids are "
                                 "floors, not strategies' prices: off-policy evaluation does "
                                 "not apply")
        if not opened["auto_select"]:
            self.hand_picked += 1
            return None
        for other in opened.pop("_others", []):  # (bids placed before L's, by hand)
            providers = np.concatenate([other[0], providers])
            prices = np.concatenate([other[1], prices])
            arrivals = np.concatenate([other[2], arrivals])
        by_arrival = np.argsort(arrivals, kind="stable")
        providers, prices, arrivals = providers[by_arrival], prices[by_arrival], \
            arrivals[by_arrival]
        units = tuple(ResourceUnit(**unit) for unit in opened.get("units", ()))
        view = OrderView(order_id, int(opened["gpus"]), tuple(opened["gpu_models"]), units,
                         int(opened["max_price_micro_per_hour"]), float(opened["time_s"]),
                         False)
        unit = Auction(view, opened["job_kind"], bool(opened.get("open_ended", False)),
                       int(opened.get("job_value_micro", 0)),
                       float(opened.get("work_left", 1.0)), providers, prices, arrivals,
                       self._is_mine(providers))
        self._units[order_id] = unit
        return unit

    def _is_mine(self, providers: np.ndarray) -> np.ndarray:
        inside = providers < self._mine.size
        return inside & self._mine[np.where(inside, providers, 0)]

    def _closed(self, event: dict[str, Any]) -> Auction | None:
        kind = event["kind"]
        if kind == "lease_created":
            self._lease_created(event)
        self._opened.pop(event["order_id"], None)
        unit = self._units.pop(event["order_id"], None)
        if unit is None or kind == "order_cancelled":
            return None
        now = self.now_s
        unit.closed_s = now
        held = np.array([self.is_up(int(p)) for p in unit.providers.tolist()], bool)
        if self._window_s > self._timeout_s:
            held &= unit.arrivals_s >= now - self._timeout_s
        valid = held.copy()
        if not self._sealed:  # bids still on their way do not count
            valid &= unit.arrivals_s <= now
        if kind == "lease_created":
            unit.winner = int(event["provider"])
            unit.price_micro = int(event["price_micro_per_hour"])
            unit.lease_id = int(event["lease_id"])
            unit.planned_work_s = float(event.get("planned_work_s", math.inf))
            valid |= unit.providers == unit.winner  # it counted, whatever is reconstructed
            self._leases[unit.lease_id].auction = unit
        unit.valid = valid
        unit.held = held | valid
        unit.reliability = self._reliability(unit.providers)
        unit.job = self._jobs.get(unit.order_id)
        self.auctions_read.append(unit)
        return unit

    def _lease_created(self, event: dict[str, Any]) -> None:
        provider = int(event["provider"])
        if not event.get("interruptible", False):
            prices = self._prices.get(event["gpu_model"])
            if prices is None:
                prices = self._prices[event["gpu_model"]] = deque(maxlen=PRICES_KEPT)
            prices.append(per_gpu_hour_usd(event["price_micro_per_hour"], event["gpus"]))
        opened = self._opened.get(event["order_id"], {})
        self._leases[int(event["lease_id"])] = _Lease(None, provider, int(event["gpus"]),
                                                      float(event["time_s"]),
                                                      str(opened.get("job_kind", "")))
        if provider < self._leased.size:
            self._leased[provider] += int(event["gpus"])

    def _lease_closed(self, event: dict[str, Any]) -> None:
        provider = int(event["provider"])
        self._ended[provider] = self._ended.get(provider, 0) + 1
        if event["reason"] in _FAULTS:
            self._failed[provider] = self._failed.get(provider, 0) + 1
        lease = self._leases.get(event["lease_id"])
        if lease is not None:
            lease.end_s = float(event["time_s"])
            if provider < self._leased.size:
                self._leased[provider] -= lease.gpus

    def finish(self) -> list[Auction]:
        """Settle every unit's logged lease once the log is read: how long it ran (to the
        run's end if still active), what it paid its provider net of fees, and, when L won
        it, L's lease profit (USD). Returns the units in the order their auctions closed."""
        end_s = max(self.horizon_s, self.last_s)
        for lease in self._leases.values():
            unit = lease.auction
            if unit is None:
                continue
            ran_s = (lease.end_s if math.isfinite(lease.end_s) else end_s) - lease.start_s
            unit.duration_s = ran_s
            unit.paid_net_micro = lease.paid_net_micro
            if unit.won:
                cost_usd = self._marginal[lease.provider] * lease.gpus * ran_s / SECONDS_PER_HOUR
                unit.profit_usd = micro_to_usd(lease.paid_net_micro) - float(cost_usd)
        return self.auctions_read


class LeaseRuns:
    """Every logged lease, read in a pass before the walk: the leases in order (to check a
    rebuilt run against, `offpolicy_jobs.job_figures`) and how long each ran (to the run's
    end if still active), the data of the duration model."""

    def __init__(self, path: str | Path, horizon_s: float) -> None:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["kind", "time_s", "data"])
        kinds = table.column("kind")
        keep = pc.is_in(kinds, value_set=pa.array(["order_opened", "lease_created",
                                                   "lease_closed"]))
        table = table.filter(keep)
        end_s = max(horizon_s, float(pc.max(table.column("time_s")).as_py() or 0.0)) \
            if table.num_rows else horizon_s
        kind_of: dict[int, str] = {}
        started: dict[int, tuple[int, str, int, float]] = {}  # lease -> order, kind, gpus, t
        ended: dict[int, float] = {}
        self.leases: list[tuple[int, int, int]] = []  # (order id, provider, price)
        for data in table.column("data").to_pylist():
            event = json.loads(data)
            kind = event["kind"]
            if kind == "order_opened":
                kind_of[event["order_id"]] = event["job_kind"]
            elif kind == "lease_created":
                order_id = event["order_id"]
                self.leases.append((order_id, event["provider"], event["price_micro_per_hour"]))
                started[event["lease_id"]] = (order_id, kind_of.pop(order_id, ""),
                                              event["gpus"], event["time_s"])
            else:
                ended[event["lease_id"]] = event["time_s"]
        self.ran_s_by_order: dict[int, float] = {}
        self._by_shape: dict[tuple[str, int], list[float]] = {}
        self._by_kind: dict[str, list[float]] = {}
        runs = []
        for lease_id, (order_id, job_kind, gpus, start_s) in started.items():
            ran_s = ended.get(lease_id, end_s) - start_s
            self.ran_s_by_order[order_id] = ran_s
            self._by_shape.setdefault((job_kind, gpus), []).append(ran_s)
            self._by_kind.setdefault(job_kind, []).append(ran_s)
            runs.append(ran_s)
        self._overall = float(np.mean(runs)) if runs else 0.0

    def duration_s(self, order_id: int, job_kind: str, gpus: int) -> float:
        """The duration model: the order's own logged lease's run where it was leased, else
        the mean run of logged leases of the same job kind and GPUs, then of the job kind,
        then of all (0 with none)."""
        ran_s = self.ran_s_by_order.get(order_id)
        if ran_s is not None:
            return ran_s
        same = self._by_shape.get((job_kind, gpus)) or self._by_kind.get(job_kind)
        return float(np.mean(same)) if same else self._overall

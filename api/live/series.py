"""What a live market's frames carry besides events: its charts over simulated time (lease
prices by GPU model — p10, median, p90 —, orders posted and filled, demand against supply in
GPUs, and the share of GPUs leased, per bucket of simulated time), and the headline figures
(`figures`; on a market settled by Burn-Mint Equilibrium, also the AKT price, the oracle, the
mint status and the collateral ratio: `bme_figures`).

Built from the numbered event stream (and the providers' GPU counts), so a replay builds the
same buckets. A bucket closes when the market's clock passes its end (an event after it, or
the live driver's clock); what it holds does not depend on when that happens: events before its
end, and GPU counts integrated over its span.

Demand and supply, time-averaged over a bucket: `gpus_wanted` is the GPUs asked for by open
orders (an order counts from its opening until it gets a lease, expires or is cancelled);
`gpus_free` is the GPUs of providers that are up and not running a lease (a paused lease frees
its GPUs; a failed or departed provider's GPUs are not free). Wanted above free is unmet demand.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from market.bme.protocol import MICRO
from market.core.records import OrderState
from market.events import (
    Event,
    LeaseClosed,
    LeaseCreated,
    LeasePaused,
    LeaseResumed,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
    ProviderFailed,
    ProviderLeft,
    ProviderRecovered,
)
from market.units import micro_to_usd, owed_micro, per_gpu_hour_usd

if TYPE_CHECKING:
    from market.builder import Market
    from market.core.bme_settlement import BmeSettlement

#: Simulated seconds per bucket: at the default 60x a point every 15 wall seconds.
BUCKET_S = 900.0
#: Buckets kept (a week of 15-minute buckets is 672).
KEEP_BUCKETS = 2000
#: Percentiles of the lease prices in a bucket: the band's edges and its median line.
BAND = (10.0, 50.0, 90.0)


#: The events that change what a bucket counts; the rest (bids, payments, ticks) pass by.
_COUNTED = frozenset((OrderOpened, LeaseCreated, LeaseClosed, LeasePaused, LeaseResumed,
                      OrderExpired, OrderCancelled, ProviderFailed, ProviderLeft,
                      ProviderRecovered))


class LiveSeries:
    """Buckets of `bucket_s` simulated seconds, oldest first; `tail()` the newest ones with
    the bucket under way (marked `partial`)."""

    def __init__(self, market: Market, bucket_s: float = BUCKET_S,
                 keep: int = KEEP_BUCKETS) -> None:
        self.market = market
        self.bucket_s = bucket_s
        self.closed: deque[dict[str, Any]] = deque(maxlen=keep)
        self._start_s = 0.0
        self._prices: dict[str, list[float]] = {}   # USD per GPU-hour, leases this bucket
        self._posted = 0
        self._jobs = 0              # first posts of new jobs (re-posts excluded)
        self._filled = 0
        self._expired = 0
        self._leases: dict[int, tuple[int, int]] = {}  # lease id -> (provider, GPUs)
        self._paused: set[int] = set()              # lease ids paused (their GPUs are free)
        self._running: dict[int, int] = {}          # provider -> GPUs running its leases
        self._order_gpus: dict[int, int] = {}       # open order id -> GPUs it asks for
        self._down: dict[int, int] = {}             # provider down -> its GPUs
        # GPUs now: running a lease; asked for by open orders; not free (running a lease on
        # a provider that is up, or on a provider that is down — a lease there runs on until
        # its tenant notices, so the two overlap).
        self._leased_gpus = self._wanted_gpus = self._taken_gpus = 0
        # ... and integrated over this bucket so far (GPU-seconds), up to `_since_s`.
        self._leased_gpu_s = self._wanted_gpu_s = self._taken_gpu_s = 0.0
        self._since_s = 0.0
        self.on_close: list[Any] = []  # callbacks(bucket) when a bucket closes

    # ------------------------------------------------------------------ events

    def on_event(self, event: Event) -> None:
        self.roll(event.time_s)
        kind = type(event)
        if kind not in _COUNTED:
            return
        self._integrate(event.time_s)
        if kind is OrderOpened:
            self._posted += 1
            self._jobs += event.attempt == 0
            self._order_gpus[event.order_id] = event.gpus
            self._wanted_gpus += event.gpus
        elif kind is LeaseCreated:
            self._filled += 1
            self._order_closed(event.order_id)
            self._leases[event.lease_id] = (event.provider, event.gpus)
            self._run(event.provider, event.gpus)
            if not event.interruptible:  # they pay a bid of another kind: not the price index
                self._prices.setdefault(event.gpu_model, []).append(
                    per_gpu_hour_usd(event.price_micro_per_hour, event.gpus))
        elif kind is LeaseClosed:
            provider, gpus = self._leases.pop(event.lease_id, (0, 0))
            if event.lease_id in self._paused:
                self._paused.discard(event.lease_id)
            elif gpus:
                self._run(provider, -gpus)
        elif kind is LeasePaused:
            if event.lease_id in self._leases and event.lease_id not in self._paused:
                self._paused.add(event.lease_id)
                provider, gpus = self._leases[event.lease_id]
                self._run(provider, -gpus)
        elif kind is LeaseResumed:
            if event.lease_id in self._paused:
                self._paused.discard(event.lease_id)
                self._run(*self._leases[event.lease_id])
        elif kind is OrderExpired:
            self._expired += 1
            self._order_closed(event.order_id)
        elif kind is OrderCancelled:
            self._order_closed(event.order_id)
        elif kind is ProviderRecovered:
            if event.provider in self._down:
                gpus = self._down.pop(event.provider)
                self._taken_gpus -= gpus - self._running.get(event.provider, 0)
        elif event.provider not in self._down:  # failed or left; down already: no change
            gpus = int(self.market.pool.capacity[event.provider, 0])
            self._down[event.provider] = gpus
            self._taken_gpus += gpus - self._running.get(event.provider, 0)

    def _run(self, provider: int, gpus: int) -> None:
        """`gpus` more (or fewer, when negative) GPUs of `provider` run a lease."""
        self._running[provider] = self._running.get(provider, 0) + gpus
        self._leased_gpus += gpus
        if provider not in self._down:
            self._taken_gpus += gpus

    def _order_closed(self, order_id: int) -> None:
        self._wanted_gpus -= self._order_gpus.pop(order_id, 0)

    def _integrate(self, now_s: float) -> None:
        span_s = max(now_s - self._since_s, 0.0)
        self._leased_gpu_s += self._leased_gpus * span_s
        self._wanted_gpu_s += self._wanted_gpus * span_s
        self._taken_gpu_s += self._taken_gpus * span_s
        self._since_s = max(now_s, self._since_s)

    def roll(self, now_s: float) -> None:
        """Close every bucket that ends at or before `now_s`."""
        while now_s >= self._start_s + self.bucket_s:
            end_s = self._start_s + self.bucket_s
            self._integrate(end_s)
            bucket = self._bucket(end_s, partial=False)
            self.closed.append(bucket)
            self._start_s = end_s
            self._prices = {}
            self._posted = self._jobs = self._filled = self._expired = 0
            self._leased_gpu_s = self._wanted_gpu_s = self._taken_gpu_s = 0.0
            for callback in self.on_close:
                callback(bucket)

    def _bucket(self, end_s: float, *, partial: bool) -> dict[str, Any]:
        span_s = max(end_s - self._start_s, 1e-9)
        rest_s = max(end_s - self._since_s, 0.0)  # not yet integrated: nothing changed in it
        leased_gpu_s = self._leased_gpu_s + self._leased_gpus * rest_s
        wanted_gpu_s = self._wanted_gpu_s + self._wanted_gpus * rest_s
        taken_gpu_s = self._taken_gpu_s + self._taken_gpus * rest_s
        # The providers' GPUs at the bucket's end (providers join rarely, never mid-event).
        capacity = float(self.market.pool.capacity[:, 0].sum()) if self.market.pool.n else 0.0
        prices = {}
        for model, values in sorted(self._prices.items()):
            low, median, high = np.percentile(values, BAND).tolist()
            # Rounded to a hundredth of a cent: what a person reads, and a smaller frame.
            prices[model] = {"p10": round(low, 4), "median": round(median, 4),
                             "p90": round(high, 4), "leases": len(values)}
        per_hour = 3600.0 / span_s
        return {"start_s": self._start_s, "end_s": end_s, "partial": partial,
                "orders_posted": self._posted, "jobs_posted": self._jobs,
                "orders_filled": self._filled, "orders_expired": self._expired,
                "orders_posted_per_hour": round(self._posted * per_hour, 3),
                "orders_filled_per_hour": round(self._filled * per_hour, 3),
                "gpus_leased": self._leased_gpus, "gpus_total": int(capacity),
                "gpus_wanted": round(wanted_gpu_s / span_s, 3),
                "gpus_free": round(max(capacity * span_s - taken_gpu_s, 0.0) / span_s, 3),
                "utilization": round(leased_gpu_s / (capacity * span_s), 5) if capacity
                else 0.0,
                "prices": prices}

    # ------------------------------------------------------------------ views

    def tail(self, now_s: float, closed: int = 2) -> list[dict[str, Any]]:
        """The last `closed` closed buckets and the one under way up to `now_s` (if any time
        has passed in it): what a live frame carries, merged by `start_s` on the page."""
        self.roll(now_s)
        tail = list(self.closed)[-closed:] if closed else []
        if now_s > self._start_s:
            tail.append(self._bucket(now_s, partial=True))
        return tail

    def recent(self, now_s: float, closed: int = 96) -> list[dict[str, Any]]:
        """The last `closed` closed buckets (default: a simulated day, the chart's default
        window) and the one under way: what a snapshot carries; the page keeps what the
        stream adds after it."""
        self.roll(now_s)
        return self.tail(now_s, closed=min(closed, len(self.closed)))


def figures(market: Market) -> dict[str, Any]:
    """The headline figures, cheap enough for every frame: counts, and money both settled
    (paid out of escrow so far) and accrued (what running leases owe since their last
    settlement, paid at the next one). A frame's figures and its events describe the market
    at the same sequence number, so the page's headline and tables agree."""
    metrics = market.metrics
    counts = metrics.counts
    now = market.now
    decided = counts["leases_created"] + counts["orders_expired"]
    # Paid out of escrow so far, to the micro-USD: the ledger's payouts and fees (summing the
    # metrics' USD floats back into micro-USD would drift).
    settled = market.settlement.paid_micro()[1]
    accrued = 0
    for lease in market.leases.values():
        accrued += max(owed_micro(lease.price, lease.ran_s(now)) - lease.paid, 0)
    take = market.rules.fee_rate
    open_count = sum(order.state is OrderState.OPEN for order in market.orders.values())
    shown = {"orders_posted": counts["orders_posted"],
            "orders_filled": counts["leases_created"],
            "orders_expired": counts["orders_expired"],
            "orders_open": open_count,
            "fill_rate": counts["leases_created"] / decided if decided else 0.0,
            "leases_active": len(market.leases),
            "tenant_spend_usd": micro_to_usd(settled),
            "tenant_accrued_usd": micro_to_usd(accrued),
            "platform_revenue_usd": metrics.platform_usd,
            "platform_accrued_usd": micro_to_usd(accrued * take)}
    if market.rules.settlement == "bme":  # AEP-23 markets' frames stay as they were
        shown["bme"] = bme_figures(market.settlement, now)
    return shown


def bme_figures(settlement: BmeSettlement, now_s: float) -> dict[str, Any]:
    """Burn-Mint Equilibrium at `now_s`, as everyone sees it: AKT's spot price and the oracle's
    TWAP (USD per AKT, and integer micro-USD per AKT), whether the oracle is healthy, the mint
    status as the protocol last decided it (at its periodic checks and at each top-up: it is
    what governs mints), the collateral ratio at the TWAP (None while no ACT is outstanding),
    the ACT outstanding (USD; integer uACT) and the AKT in the vault (integer uAKT), and the
    AKT burned and minted so far.

    Cheap enough for every frame: a few look-ups on the price path and ledger balances."""
    spot = settlement.spot_micro(now_s)
    twap, healthy = settlement.oracle_micro(now_s)
    protocol = settlement.protocol
    ratio = protocol.collateral_ratio(twap)
    outstanding = protocol.outstanding_act_uact()
    vault = protocol.vault_uakt()
    burned = protocol.burned_uakt()
    minted = protocol.minted_uakt()
    return {"akt_spot_usd": spot / MICRO, "akt_spot_micro": spot,
            "akt_twap_usd": twap / MICRO, "akt_twap_micro": twap,
            "oracle_healthy": healthy, "mint_status": settlement.status,
            "collateral_ratio": ratio if math.isfinite(ratio) else None,
            "outstanding_act_usd": outstanding / MICRO, "outstanding_act_uact": outstanding,
            "vault_akt": vault / MICRO, "vault_uakt": vault,
            "akt_burned": burned / MICRO, "akt_burned_uakt": burned,
            "akt_minted": minted / MICRO, "akt_minted_uakt": minted}

"""What a live market's frames carry besides events: its charts over simulated time (lease
prices by GPU model — p10, median, p90 —, orders posted and filled, and the share of GPUs
leased, per bucket of simulated time), and the headline figures (`figures`).

Built from the numbered event stream alone, so a replay builds the same buckets. A bucket
closes when the market's clock passes its end (an event after it, or the live driver's clock);
what it holds does not depend on when that happens: events before its end, and GPUs leased
integrated over its span.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from market.events import Event, LeaseClosed, LeaseCreated, OrderExpired, OrderOpened
from market.records import OrderState
from market.units import MICRO_USD_PER_USD, owed_micro

if TYPE_CHECKING:
    from market.engine import Market

#: Simulated seconds per bucket: at the default 60x a point every 15 wall seconds.
BUCKET_S = 900.0
#: Buckets kept (a week of 15-minute buckets is 672).
KEEP_BUCKETS = 2000
#: Percentiles of the lease prices in a bucket: the band's edges and its median line.
BAND = (10.0, 50.0, 90.0)


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
        self._lease_gpus: dict[int, int] = {}       # lease id -> GPUs, while it runs
        self._leased_gpus = 0
        self._leased_gpu_s = 0.0    # GPU-seconds leased so far this bucket
        self._since_s = 0.0         # ... integrated up to here
        self.on_close: list[Any] = []  # callbacks(bucket) when a bucket closes

    # ------------------------------------------------------------------ events

    def on_event(self, event: Event) -> None:
        self.roll(event.time_s)
        kind = type(event)
        if kind is OrderOpened:
            self._posted += 1
            self._jobs += event.attempt == 0
        elif kind is LeaseCreated:
            self._filled += 1
            self._integrate(event.time_s)
            self._lease_gpus[event.lease_id] = event.gpus
            self._leased_gpus += event.gpus
            if not event.interruptible:  # they pay a bid of another kind: not the price index
                self._prices.setdefault(event.gpu_model, []).append(
                    event.price_micro_per_hour / event.gpus / MICRO_USD_PER_USD)
        elif kind is LeaseClosed:
            gpus = self._lease_gpus.pop(event.lease_id, 0)
            if gpus:
                self._integrate(event.time_s)
                self._leased_gpus -= gpus
        elif kind is OrderExpired:
            self._expired += 1

    def _integrate(self, now_s: float) -> None:
        self._leased_gpu_s += self._leased_gpus * max(now_s - self._since_s, 0.0)
        self._since_s = now_s

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
            self._leased_gpu_s = 0.0
            for callback in self.on_close:
                callback(bucket)

    def _bucket(self, end_s: float, *, partial: bool) -> dict[str, Any]:
        span_s = max(end_s - self._start_s, 1e-9)
        leased_gpu_s = self._leased_gpu_s + self._leased_gpus * max(end_s - self._since_s, 0.0)
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
    settled = sum(metrics.paid_usd.values()) * MICRO_USD_PER_USD
    accrued = 0
    for lease in market.leases.values():
        settled += lease.paid
        accrued += max(owed_micro(lease.price, lease.ran_s(now)) - lease.paid, 0)
    take = market.rules.take_rate
    open_count = sum(order.state is OrderState.OPEN for order in market.orders.values())
    return {"orders_posted": counts["orders_posted"],
            "orders_filled": counts["leases_created"],
            "orders_expired": counts["orders_expired"],
            "orders_open": open_count,
            "fill_rate": counts["leases_created"] / decided if decided else 0.0,
            "leases_active": len(market.leases),
            "tenant_spend_usd": settled / MICRO_USD_PER_USD,
            "tenant_accrued_usd": accrued / MICRO_USD_PER_USD,
            "platform_revenue_usd": metrics.platform_usd,
            "platform_accrued_usd": accrued * take / MICRO_USD_PER_USD}

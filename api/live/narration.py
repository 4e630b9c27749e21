"""Captions that tell an audience what a live market is doing, for the page's caption strip.

Each caption is tied to a simulated time and written when the market reaches it: the opening,
the first lease, the scenario's demand spikes (announced an hour ahead, then hour by hour,
then summed up) with the prices and utilization the market really showed. Everything comes
from the scenario, the seed and the event stream, so a replay tells the same story; nothing
is timed by the wall clock.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from market.errors import MarketError
from market.events import Event, LeaseCreated, MintStatusChanged
from market.units import SECONDS_PER_HOUR, per_gpu_hour_usd

if TYPE_CHECKING:
    from api.live.series import LiveSeries
    from market.builder import Market
    from market.scenario import Scenario

#: Captions kept per market (the page shows the newest and a few before it).
KEEP_CAPTIONS = 200
#: Simulated seconds between status captions while no spike is under way.
STATUS_EVERY_S = 6 * SECONDS_PER_HOUR


def spike_starts_s(scenario: Scenario, seed: int) -> np.ndarray:
    """When the scenario's demand spikes start with this seed, simulated seconds: read from
    the tenants' own schedule, on a market built without anyone in it."""
    from agents.tenants import Tenants
    from market.builder import Market

    return np.asarray(Tenants(Market(scenario, seed, populate=False)).spikes, dtype=float)


def demo_seed(scenario: Scenario, earliest_h: float = 3.0, latest_h: float = 8.0,
              tries: int = 500) -> int:
    """The first seed (from 1) whose first demand spike starts between `earliest_h` and
    `latest_h` simulated hours: an audience sees a calm market, then the spike, in minutes.
    Raises ValueError if none of `tries` seeds has one (a scenario without spikes)."""
    for seed in range(1, tries + 1):
        starts = spike_starts_s(scenario, seed)
        if starts.size and earliest_h * SECONDS_PER_HOUR <= starts[0] \
                <= latest_h * SECONDS_PER_HOUR:
            return seed
    raise ValueError(f"tenants.spikes: no seed in 1-{tries} has a demand spike between hour "
                     f"{earliest_h:g} and {latest_h:g}; raise tenants.spikes.per_week")


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.2f}"


class Narrator:
    """Writes captions as the market's events and chart buckets come in."""

    def __init__(self, market: Market, series: LiveSeries) -> None:
        scenario = market.scenario
        spikes = scenario.tenants.spikes
        self.multiplier = spikes.multiplier
        self.duration_s = spikes.duration_h * SECONDS_PER_HOUR
        try:
            self.spikes = spike_starts_s(scenario, market.seed).tolist()
        except (MarketError, ValueError):  # a population whose tenants cannot be read: no spikes
            self.spikes = []
        self.captions: list[dict[str, Any]] = []
        self.leases_by_model: Counter[str] = Counter()
        self.first_lease = True
        self._next = 0                  # the next spike to announce
        self._announced = False         # ... an hour ahead
        self._spike: dict[str, Any] | None = None   # the spike under way
        series.on_close.append(self._bucket_closed)
        self._series = series
        self._rules = market.rules
        pool = market.pool
        gpus = int(pool.capacity[:, 0].sum()) if pool.n else 0
        self._say(0.0, "open",
                  f"The market opens: {pool.n:,} providers offer {gpus:,} GPUs, and tenants "
                  f"post about {scenario.tenants.arrivals_per_hour:g} jobs an hour. Providers "
                  "bid on each job; the tenant's pick sets the price.")

    def _say(self, time_s: float, kind: str, text: str) -> None:
        self.captions.append({"time_s": time_s, "kind": kind, "text": text})
        del self.captions[:-KEEP_CAPTIONS]

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.captions[-1] if self.captions else None

    def _watched_model(self) -> str | None:
        """The GPU model with the most leases so far: the one whose prices the audience
        has seen most of."""
        if not self.leases_by_model:
            return None
        return max(sorted(self.leases_by_model), key=self.leases_by_model.__getitem__)

    def _recent_median(self, model: str | None, buckets: int = 4) -> float | None:
        """The median lease price of `model` over the last `buckets` closed buckets."""
        if model is None:
            return None
        medians = [b["prices"][model]["median"] for b in list(self._series.closed)[-buckets:]
                   if model in b["prices"]]
        return float(np.median(medians)) if medians else None

    # ------------------------------------------------------------------ events

    def on_event(self, event: Event) -> None:
        time_s = event.time_s
        if type(event) is MintStatusChanged:  # settled in AKT: a breaker tripped or reset
            self._say(time_s, "mint", self._mint_text(event))
        if type(event) is LeaseCreated and not event.interruptible:
            self.leases_by_model[event.gpu_model] += 1
            if self.first_lease:
                self.first_lease = False
                price = per_gpu_hour_usd(event.price_micro_per_hour, event.gpus)
                self._say(time_s, "lease",
                          f"First lease: {event.gpus} × {event.gpu_model} at {_usd(price)} "
                          "per GPU-hour — the tenant took a provider's bid.")
        if self._next < len(self.spikes):
            start_s = self.spikes[self._next]
            if not self._announced and time_s >= start_s - SECONDS_PER_HOUR:
                self._announced = True
                if time_s < start_s:
                    self._say(time_s, "soon",
                              f"In about an hour: a demand spike — {self.multiplier:g}× the "
                              f"usual arrivals for {self.duration_s / 3600:g} h.")
            if time_s >= start_s:
                self._start_spike(start_s)

    def _mint_text(self, event: MintStatusChanged) -> str:
        """What a change of the mint status means, in words (README "Settlement")."""
        ratio = event.collateral_ratio
        backed = "" if ratio is None else \
            f"the vault's AKT backs {ratio:.0%} of the ACT outstanding"
        bme = self._rules.bme
        if event.status == "halt_oracle":
            return ("Mints halted: the AKT price oracle is stale or disagrees with the market. "
                    "Payments to providers wait for it; new deposits are paid in AKT.")
        if event.status == "halt_cr":
            return (f"Mints halted: AKT fell and {backed} (below {bme.cr_halt:.0%}). New "
                    "deposits are paid in AKT directly until it recovers.")
        if event.status == "warning":
            return (f"AKT fell: {backed} (below {bme.cr_warning:.0%}). Mints slow: each must "
                    f"cover at least {bme.min_topup_days:g} days of a tenant's spending.")
        return f"Mints are back to normal: {backed or 'no ACT is outstanding'}."

    def _status(self, bucket: dict[str, Any]) -> None:
        """Where the market stands, every `STATUS_EVERY_S` outside a spike."""
        buckets = list(self._series.closed)[-int(STATUS_EVERY_S // self._series.bucket_s):]
        posted = sum(b["orders_posted"] for b in buckets)
        filled = sum(b["orders_filled"] for b in buckets)
        model = self._watched_model()
        price = self._recent_median(model)
        watched = f"; {model} median {_usd(price)} per GPU-hour" if price is not None else ""
        self._say(bucket["end_s"], "status",
                  f"The last {STATUS_EVERY_S / 3600:g} h: {posted:,} orders posted, "
                  f"{filled:,} filled{watched}; {bucket['utilization']:.0%} of GPUs leased.")

    def _start_spike(self, start_s: float) -> None:
        self._next += 1
        self._announced = False
        model = self._watched_model()
        before = self._recent_median(model)
        recent = list(self._series.closed)[-4:]
        jobs_per_h = (sum(b["jobs_posted"] for b in recent) * SECONDS_PER_HOUR
                      / (len(recent) * self._series.bucket_s)) if recent else None
        self._spike = {"start_s": start_s, "end_s": start_s + self.duration_s, "model": model,
                       "before": before, "peak": before, "jobs_before": jobs_per_h,
                       "peak_utilization": 0.0, "hour": 0}
        watch = f" — watch {model} prices rise" if model else ""
        self._say(start_s, "spike",
                  f"Demand spike: {self.multiplier:g}× arrivals for "
                  f"{self.duration_s / 3600:g} h{watch}.")

    def _bucket_closed(self, bucket: dict[str, Any]) -> None:
        spike = self._spike
        if spike is None:
            if bucket["end_s"] % STATUS_EVERY_S == 0:
                self._status(bucket)
            return
        model = spike["model"] or self._watched_model()
        spike["model"] = model
        price = bucket["prices"].get(model, {}).get("median") if model else None
        if price is not None:
            spike["peak"] = price if spike["peak"] is None else max(spike["peak"], price)
        spike["peak_utilization"] = max(spike["peak_utilization"], bucket["utilization"])
        end_s = bucket["end_s"]
        if end_s >= spike["end_s"]:
            self._spike = None
            self._say(spike["end_s"], "spike_over",
                      f"Spike over: {model or 'the'} median price went from "
                      f"{_usd(spike['before'])} to a high of {_usd(spike['peak'])} per "
                      f"GPU-hour, and up to {spike['peak_utilization']:.0%} of GPUs were "
                      "leased. Watch prices settle as demand falls back.")
            return
        hour = int((end_s - spike["start_s"]) // SECONDS_PER_HOUR)
        if hour > spike["hour"]:  # the first bucket to close past each full hour
            spike["hour"] = hour
            recent = list(self._series.closed)[-int(SECONDS_PER_HOUR // self._series.bucket_s):]
            jobs = sum(b["jobs_posted"] for b in recent)
            before = spike["jobs_before"]
            usual = f" (before: {before:.0f})" if before is not None else ""
            self._say(end_s, "spike_hour",
                      f"Spike, hour {hour} of {self.duration_s / 3600:g}: {jobs} new jobs in "
                      f"the last hour{usual}; {model} median {_usd(price)} per GPU-hour "
                      f"(before: {_usd(spike['before'])}); {bucket['utilization']:.0%} of "
                      "GPUs leased.")

"""Interruptible leases (Vast.ai): the scheduler that pauses and resumes them on each provider.

Owned by the `interruptible` mechanism, which attaches it to the engine. The engine tells it
when a lease starts or stops and when bids give capacity back; it ranks each provider's
interruptible leases (`market.mechanisms.clearing.interruptible_schedule`, with backfilling) in what
the on-demand leases and open bids leave, pausing the ones that no longer fit and resuming the
ones that fit again. A paused lease is settled for what ran and is not paid while paused.
"""

from __future__ import annotations

import math

import numpy as np

from market.core.engine import Engine
from market.core.records import Lease, Order
from market.core.resources import CAPACITY
from market.events import LeasePaused, LeaseResumed, ProviderRecovered


class InterruptibleScheduler:
    """Each provider's interruptible leases, running or paused, in lease order, and what the
    running ones hold (per provider and resource)."""

    def __init__(self, market: Engine) -> None:
        self._market = market
        self._pool = market.pool
        self.on: dict[int, list[Lease]] = {}
        self.held = np.zeros((market.pool.n, len(CAPACITY)), np.int64)
        self.running = 0
        market.subscribe(self._recovered, kinds=(ProviderRecovered,))

    def providers_added(self, count: int) -> None:
        self.held = np.concatenate([self.held, np.zeros((count, len(CAPACITY)), np.int64)])

    def headroom(self, order: Order) -> np.ndarray | None:
        """What running interruptible leases hold that `order` may take, per provider and
        resource: all of it for an on-demand order, what lower bids hold for an interruptible
        one; None when no interruptible lease runs."""
        if not self.running:
            return None
        if not order.interruptible:
            return self.held
        headroom = np.zeros_like(self.held)
        for provider, leases in self.on.items():
            for lease in leases:
                if lease.running and lease.priority < order.priority:
                    headroom[provider] += lease.order.need
        return headroom

    # ------------------------------------------------------------------ the engine's calls

    def capacity_back(self, providers: np.ndarray) -> None:
        """Bids on `providers` closed: paused leases there may resume."""
        if self.on:
            for provider in providers.tolist():
                if provider in self.on:
                    self.reschedule(provider)

    def leased(self, lease: Lease) -> None:
        """A lease started on its provider (announced already): an interruptible one joins
        the ranking; an on-demand one may take what lower leases hold."""
        provider = lease.provider
        if lease.interruptible:
            self.on.setdefault(provider, []).append(lease)
            self.held[provider] += lease.order.need
            self.running += 1
        if provider in self.on:
            self.reschedule(provider)

    def stopping(self, lease: Lease) -> None:
        """A lease is closing while it runs: what it holds is no longer held."""
        if lease.interruptible:
            self.held[lease.provider] -= lease.order.need
            self.running -= 1

    def closed(self, lease: Lease) -> None:
        """A lease closed (announced already): it leaves the ranking; others may resume."""
        provider = lease.provider
        if lease.interruptible:
            held = self.on[provider]
            held.remove(lease)
            if not held:
                del self.on[provider]
        if provider in self.on:
            self.reschedule(provider)

    # ------------------------------------------------------------------ scheduling

    def reschedule(self, provider: int) -> None:
        """Run `provider`'s interruptible leases by rank in what on-demand leases and open
        bids leave (backfilling): pause the ones that no longer fit, resume the paused ones
        that fit again. Nothing resumes while the provider is down."""
        from market.mechanisms.clearing import (
            interruptible_schedule,  # scipy: only where it is used
        )

        leases = self.on.get(provider)
        if not leases or not self._pool.up[provider]:
            return
        room = np.maximum(self._pool.free[provider] + self.held[provider], 0)
        running = interruptible_schedule(
            np.array([lease.priority for lease in leases], np.int64),
            np.zeros(len(leases), bool), room,
            np.array([lease.order.need for lease in leases]), backfill=True)
        # Pauses first: what they give back is what the resumed leases take.
        for lease, runs in zip(list(leases), running.tolist(), strict=True):
            if lease.running and not runs:
                self._pause(lease)
        for lease, runs in zip(list(leases), running.tolist(), strict=True):
            if runs and not lease.running:
                self._resume(lease)

    def _pause(self, lease: Lease) -> None:
        market = self._market
        now = market.now
        market.settle(lease)  # paid for what ran; nothing accrues while paused
        provider, need = lease.provider, lease.order.need
        self._pool.busy_gpu_s[provider] += lease.gpus * (now - lease.run_start_s)
        lease.worked_s += now - lease.run_start_s
        lease.running = False
        lease.paused_since_s = now
        lease.pauses += 1
        lease.plan += 1  # the planned end no longer holds
        self._pool.free[provider] += need
        self.held[provider] -= need
        self.running -= 1
        order = lease.order
        market.emit(LeasePaused(now, lease.id, order.id, order.tenant, provider, order.job_id))

    def _resume(self, lease: Lease) -> None:
        market = self._market
        now = market.now
        provider, need = lease.provider, lease.order.need
        paused_s = now - lease.paused_since_s
        lease.paused_s += paused_s
        lease.paused_since_s = math.nan
        lease.running = True
        lease.run_start_s = now
        self._pool.free[provider] -= need
        self.held[provider] += need
        self.running += 1
        market.plan_end(lease, resumed=True)
        order = lease.order
        market.emit(LeaseResumed(now, lease.id, order.id, order.tenant, provider, order.job_id,
                                 paused_s))

    def _recovered(self, event: ProviderRecovered) -> None:
        self.reschedule(event.provider)

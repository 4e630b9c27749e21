"""Interruptible leases (Vast.ai): the scheduler that pauses and resumes them on each provider.

Owned by the `interruptible` mechanism, which attaches it to the engine. The engine tells it
when a lease starts or stops and when bids give capacity back; it ranks each provider's
interruptible leases (`market.mechanisms.clearing.interruptible_schedule`, with backfilling) in what
the on-demand leases and open bids leave, pausing the ones that no longer fit and resuming the
ones that fit again. A paused lease is settled for what ran and is not paid while paused.

On a provider with nodes (`market.core.nodes`) the ranking is node by node: from the top, a
running lease keeps running where its replicas still fit on their nodes, a paused one resumes
where its replicas fit first fit, in what on-demand leases and open bids leave on each node.
A paused lease gives its nodes back.
"""

from __future__ import annotations

import math

import numpy as np

from market.core.engine import Engine
from market.core.nodes import NODE_CAPACITY, place_first_fit, take
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
        # What running interruptible leases hold on each node (rows of `pool.nodes`).
        self.node_held = np.zeros((0, len(NODE_CAPACITY)), np.int64)
        market.pool.nodes.headroom = self.node_headroom
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

    def node_headroom(self, order: Order) -> np.ndarray | None:
        """`headroom`, node by node (rows of `pool.nodes`); None when no interruptible lease
        holds a node."""
        if not self.running or not self._hold_nodes():
            return None
        if not order.interruptible:
            return self.node_held
        headroom = np.zeros_like(self.node_held)
        placed = self._pool.nodes.placed
        for provider, leases in self.on.items():
            for lease in leases:
                if lease.running and lease.priority < order.priority:
                    held = placed.get((lease.order.id, provider))
                    if held is not None:
                        take(headroom, held[0], held[1], 1)
        return headroom

    def _hold_nodes(self) -> bool:
        """Whether any provider has nodes; sizes `node_held` to the node table."""
        nodes = self._pool.nodes
        grown = nodes.free.shape[0] - self.node_held.shape[0]
        if grown:
            self.node_held = np.concatenate([self.node_held,
                                             np.zeros((grown, len(NODE_CAPACITY)), np.int64)])
        return nodes.any

    def _nodes_held(self, lease: Lease, sign: int) -> None:
        """Count (sign 1) or stop counting (-1) what `lease` holds on its nodes."""
        if self._hold_nodes():
            held = self._pool.nodes.placed.get((lease.order.id, lease.provider))
            if held is not None:
                take(self.node_held, held[0], held[1], sign)

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
            self._nodes_held(lease, 1)
            self.running += 1
        if provider in self.on:
            self.reschedule(provider)

    def stopping(self, lease: Lease) -> None:
        """A lease is closing while it runs: what it holds is no longer held."""
        if lease.interruptible:
            self.held[lease.provider] -= lease.order.need
            self._nodes_held(lease, -1)
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
        if self._pool.nodes.count[provider]:
            running, rows = self._rank_on_nodes(provider, leases)
        else:
            room = np.maximum(self._pool.free[provider] + self.held[provider], 0)
            running = interruptible_schedule(
                np.array([lease.priority for lease in leases], np.int64),
                np.zeros(len(leases), bool), room,
                np.array([lease.order.need for lease in leases]), backfill=True).tolist()
            rows = [None] * len(leases)
        # Pauses first: what they give back is what the resumed leases take. A running lease
        # given other nodes (`rows`) moves there: it is paused and resumed at once.
        for lease, runs, where in zip(list(leases), running, rows, strict=True):
            if lease.running and (not runs or where is not None):
                self._pause(lease)
        for lease, runs, where in zip(list(leases), running, rows, strict=True):
            if runs and not lease.running:
                if where is not None:
                    self._pool.nodes.assign(lease.order, provider, where)
                self._resume(lease)

    def _rank_on_nodes(self, provider: int, leases: list[Lease]
                       ) -> tuple[list[bool], list[np.ndarray | None]]:
        """Which of `provider`'s interruptible leases run, ranked as `interruptible_schedule`
        ranks them (highest bid first, ties to the earlier lease) with backfilling, node by
        node; and the node rows where each lease that starts again (paused, or outranked
        where it ran) resumes."""
        nodes = self._pool.nodes
        mine = nodes.of(provider)
        running = [lease.running for lease in leases]
        rows: list[np.ndarray | None] = [None] * len(leases)
        free = nodes.free[mine]
        if (free >= 0).all():
            paused = [i for i, runs in enumerate(running) if not runs]
            lowest = min((lease.priority for lease in leases if lease.running),
                         default=math.inf)
            if not paused or max(leases[i].priority for i in paused) < lowest:
                # Nothing overdrawn, and no waiting lease outranks a running one: the running
                # keep their nodes, and the waiting may start in what is free, by rank.
                free = free.copy()
                for i in sorted(paused, key=lambda i: -leases[i].priority):
                    shape = nodes.shape(leases[i].order)
                    if free[:, 0].max() < shape[0, 0]:
                        continue
                    where = place_first_fit(free.copy(), shape)  # a failure takes nothing
                    if where is not None:
                        take(free, where, shape, -1)
                        running[i], rows[i] = True, where + mine.start
                return running, rows
        # What its nodes would have free if no interruptible lease ran, and what the running
        # ones not yet ranked (lower ones, as the ranking goes down) hold.
        room = nodes.free[mine].copy()
        lower = np.zeros_like(room)
        held = [nodes.placed.get((lease.order.id, provider)) if lease.running else None
                for lease in leases]
        for where in held:
            if where is not None:
                take(room, where[0] - mine.start, where[1], 1)
                take(lower, where[0] - mine.start, where[1], 1)
        running = [False] * len(leases)
        for i in sorted(range(len(leases)), key=lambda i: -leases[i].priority):
            shape = nodes.shape(leases[i].order)
            if held[i] is not None:
                local = held[i][0] - mine.start
                take(lower, local, shape, -1)
                take(room, local, shape, -1)
                if (room[local] >= 0).all():  # it keeps its nodes
                    running[i] = True
                    continue
                take(room, local, shape, 1)
            # Paused, or outranked where it runs: the first nodes with room, those no lower
            # lease runs on first (not to move one needlessly).
            if room[:, 0].max() < shape[0, 0]:  # no node has the GPUs of its largest replica
                continue
            for free in (room - lower, room):
                where = place_first_fit(free.copy(), shape)  # a failure takes nothing
                if where is not None:
                    take(room, where, shape, -1)
                    running[i], rows[i] = True, where + mine.start
                    break
        return running, rows

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
        self._nodes_held(lease, -1)
        self._pool.nodes.release(lease.order, np.array([provider]))  # its nodes go back
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
        self._nodes_held(lease, 1)
        self.running += 1
        market.plan_end(lease, resumed=True)
        order = lease.order
        market.emit(LeaseResumed(now, lease.id, order.id, order.tenant, provider, order.job_id,
                                 paused_s))

    def _recovered(self, event: ProviderRecovered) -> None:
        self.reschedule(event.provider)

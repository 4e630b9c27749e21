"""When a lease ends: whichever comes first of its work done, its provider failing (and the
tenant noticing), its provider leaving, its escrow running out, or its manifest never starting.

Failures and departures are drawn ahead (`market.core.reliability`), so the end is known when
the lease starts and is scheduled once, as one event; a pause voids the plan and a resume makes
a new one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import simpy

from market.core.pool import ProviderPool
from market.core.records import CloseReason, Lease, LeaseState
from market.units import SECONDS_PER_HOUR


class LeaseEnds:
    """Plans each lease's end and closes it then (through `close(lease, reason)`)."""

    def __init__(self, env: simpy.Environment, pool: ProviderPool, rules: object,
                 rng: np.random.Generator, normals: Callable[[int], np.ndarray],
                 close: Callable[[Lease, CloseReason], None]) -> None:
        self._env = env
        self._pool = pool
        self._rng = rng                  # the "market.engine" stream: manifest failures
        self._normals = normals          # standard normals: failure detection delays
        self._close = close
        self._manifest_failure_prob = rules.manifest_failure_prob
        self._manifest_timeout_s = rules.manifest_timeout_s
        checks = rules.health_check_failures
        low, high = rules.health_check_interval_s
        # The tenant notices a failure after `checks` failed health checks at uniform
        # intervals: their sum's mean and standard deviation (CLT, n ≈ 40).
        self._detect_mean_s = checks * (low + high) / 2
        self._detect_sd_s = math.sqrt(checks * (high - low) ** 2 / 12)

    def plan(self, lease: Lease, resumed: bool = False) -> None:
        """Schedule the one event that ends this lease, whichever cause comes first (when it
        starts, and again when it resumes after a pause)."""
        now = self._env.now
        order = lease.order
        pool = self._pool
        end_s, reason = math.inf, CloseReason.OWNER
        if order.work_s is not None:
            if not resumed:
                lease.planned_work_s = float(order.work_s[lease.model])
            end_s = now + lease.planned_work_s - lease.worked_s
        # Each later cause replaces the earlier one only if strictly sooner.
        failure = float(pool.next_failure_s[lease.provider])
        if failure < end_s:
            detect = self._detect_mean_s + self._detect_sd_s * float(self._normals(1)[0])
            if failure + max(detect, 0.0) < end_s:
                end_s, reason = failure + max(detect, 0.0), CloseReason.UNSTABLE
        leave = float(pool.next_leave_s[lease.provider])
        if leave < end_s:
            end_s, reason = leave, CloseReason.DECOMMISSION
        runout = now + order.escrow * SECONDS_PER_HOUR / lease.price
        if runout < end_s:
            end_s, reason = runout, CloseReason.INSUFFICIENT_FUNDS
        if not resumed and self._rng.random() < self._manifest_failure_prob \
                and now + self._manifest_timeout_s < end_s:
            end_s, reason = now + self._manifest_timeout_s, CloseReason.MANIFEST_TIMEOUT
        lease.planned_end_s, lease.planned_reason = end_s, reason
        if end_s < math.inf:
            self._env.timeout(end_s - now).callbacks.append(
                lambda _e, lease=lease, plan=lease.plan: self._planned(lease, plan))

    def _planned(self, lease: Lease, plan: int) -> None:
        # Not if the tenant closed it earlier, or a pause made the plan void.
        if lease.state is LeaseState.ACTIVE and lease.plan == plan:
            self._close(lease, lease.planned_reason)

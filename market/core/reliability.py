"""Provider reliability: failures and repairs, churn (leaving and coming back).

Each provider's next failure and next departure are drawn ahead (exponential times), so a lease
starting now knows when its provider will fail or leave and can schedule its own end once. A
provider is up while nothing holds it down: failures and absences count separately, so a rig
that fails while its owner has it offline comes back only when both are over. A provider that
retires (exits the market for good) is held down by one reason that never ends: no failure or
absence brings it back, no new one is drawn for it, and once it is gone none already drawn
happens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import simpy

from market.core.pool import ProviderPool, ProviderRow
from market.errors import MarketError
from market.events import Event, ProviderFailed, ProviderLeft, ProviderRecovered


class _Absence(NamedTuple):
    """A way a provider goes away: the pool columns that time it, and its event."""

    rate: str      # events per simulated second
    next_at: str   # when the next one happens (simulated seconds; inf: never)
    away: str      # [min, max] seconds away, sampled uniformly
    event: type[ProviderFailed] | type[ProviderLeft]


FAILURE = _Absence("failure_rate_per_s", "next_failure_s", "repair_s", ProviderFailed)
CHURN = _Absence("churn_rate_per_s", "next_leave_s", "offline_s", ProviderLeft)

#: A provider's failure (or departure) cycle, the mean time to the next one plus the shortest
#: time away, lasts at least a simulated minute: shorter cycles would fill the run with
#: outages between two events of anything else. (A clock that fires at once and keeps the
#: provider down for days is fine: it is one outage. The scenario's `failure_rate_per_day`
#: and `churn_per_day` are bounded by 1,440 a day, which always passes.)
MIN_CYCLE_S = 60.0


class Reliability:
    """Schedules every provider's failures and absences on the market's clock."""

    def __init__(self, env: simpy.Environment, pool: ProviderPool, rng: np.random.Generator,
                 emit: Callable[[Event], None]) -> None:
        self.pool = pool
        self.env = env
        self.rng = rng  # the "providers.reliability" stream
        self._emit = emit
        self._down = np.zeros(0, np.int32)  # reasons each provider is down
        self._retired = np.zeros(0, bool)   # leaving for good (or gone): never up again
        self._gone = np.zeros(0, bool)      # left: its pending outages no longer happen

    @staticmethod
    def check(rows: Sequence[ProviderRow]) -> None:
        """Raise MarketError (before anything is added) if a provider's failure or churn
        clock is not a number >= 0, or its cycle is shorter than MIN_CYCLE_S."""
        for row in rows:
            for rate, away, field in (
                    ("failure_rate_per_s", "repair_s", "failure_rate_per_day"),
                    ("churn_rate_per_s", "offline_s", "churn_per_day")):
                value, shortest = getattr(row, rate), min(getattr(row, away))
                if value == 0:
                    continue
                cycle_s = 1 / value + shortest if value > 0 else math.nan
                if not cycle_s >= MIN_CYCLE_S:  # NaN fails too
                    raise MarketError(
                        f"providers.{row.population}.{field}: {value * 86_400:g} a day with "
                        f"at least {shortest:g} s away is an outage every {cycle_s:.3g} s "
                        f"(provider {row.name!r}); expected at least {MIN_CYCLE_S:g} s "
                        "between outages")

    def add(self, providers: np.ndarray) -> None:
        """Start the failure and churn clocks of newly added `providers` (see `check`)."""
        self._down = np.concatenate([self._down, np.zeros(len(providers), np.int32)])
        self._retired = np.concatenate([self._retired, np.zeros(len(providers), bool)])
        self._gone = np.concatenate([self._gone, np.zeros(len(providers), bool)])
        for provider in providers.tolist():
            self._schedule(provider, FAILURE)
            self._schedule(provider, CHURN)

    def retire(self, provider: int) -> None:
        """`provider` leaves the market for good: down from now on, whatever its clocks do.
        Failures and absences already drawn still happen while it serves its last leases
        (their ends were planned on them); `gone` stops them once it has left."""
        self._retired[provider] = True
        self._hold_down(provider)

    def retired(self, provider: int) -> bool:
        """Whether `provider` has retired (it may still be serving its last leases)."""
        return bool(self._retired[provider])

    def gone(self, provider: int) -> None:
        """A retired `provider` has left: nothing of its reliability happens any more."""
        self._gone[provider] = True
        self.pool.next_failure_s[provider] = self.pool.next_leave_s[provider] = math.inf

    def _hold_down(self, provider: int) -> None:
        self._down[provider] += 1
        self.pool.up[provider] = False

    def _release_down(self, provider: int) -> None:
        """One reason less to be down; announce the provider once it is up again."""
        self._down[provider] -= 1
        if self._down[provider] == 0:
            self.pool.up[provider] = True
            self._emit(ProviderRecovered(self.env.now, provider))

    def _schedule(self, provider: int, absence: _Absence) -> None:
        """Draw when `provider` next goes away for `absence`, and schedule it."""
        rate = getattr(self.pool, absence.rate)[provider]
        next_at = getattr(self.pool, absence.next_at)
        if rate <= 0 or self._retired[provider]:
            next_at[provider] = math.inf
            return
        delay = self.rng.exponential(1.0 / rate)
        next_at[provider] = self.env.now + delay
        self.env.timeout(delay).callbacks.append(lambda _e: self._go(provider, absence))

    def _go(self, provider: int, absence: _Absence) -> None:
        if self._gone[provider]:
            return
        low, high = getattr(self.pool, absence.away)[provider]
        away = self.rng.uniform(low, high)
        getattr(self.pool, absence.next_at)[provider] = math.inf
        self._hold_down(provider)
        self._emit(absence.event(self.env.now, provider, self.env.now + away))
        self.env.timeout(away).callbacks.append(lambda _e: self._back(provider, absence))

    def _back(self, provider: int, absence: _Absence) -> None:
        self._release_down(provider)  # a retired provider stays down: its reason never ends
        self._schedule(provider, absence)

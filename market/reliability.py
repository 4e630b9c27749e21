"""Provider reliability: failures and repairs, churn (leaving and coming back).

Each provider's next failure and next departure are drawn ahead (exponential times), so a lease
starting now knows when its provider will fail or leave and can schedule its own end once. A
provider is up while nothing holds it down: failures and absences count separately, so a rig
that fails while its owner has it offline comes back only when both are over.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from market.events import ProviderFailed, ProviderLeft, ProviderRecovered

if TYPE_CHECKING:
    from market.engine import Market


class Reliability:
    """Schedules every provider's failures and absences on the market's clock."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.pool = market.pool
        self.env = market.env
        self.rng = market.streams.get("providers.reliability")
        self._down = np.zeros(0, np.int32)  # reasons each provider is down

    def add(self, providers: np.ndarray) -> None:
        """Start the failure and churn clocks of newly added `providers`."""
        self._down = np.concatenate([self._down, np.zeros(len(providers), np.int32)])
        for provider in providers.tolist():
            self._schedule_failure(provider)
            self._schedule_leave(provider)

    def _hold_down(self, provider: int) -> None:
        self._down[provider] += 1
        self.pool.up[provider] = False

    def _release_down(self, provider: int) -> None:
        """One reason less to be down; announce the provider once it is up again."""
        self._down[provider] -= 1
        if self._down[provider] == 0:
            self.pool.up[provider] = True
            self.market.emit(ProviderRecovered(self.env.now, provider))

    def _schedule_failure(self, provider: int) -> None:
        rate = self.pool.failure_rate_per_s[provider]
        if rate <= 0:
            self.pool.next_failure_s[provider] = math.inf
            return
        delay = self.rng.exponential(1.0 / rate)
        self.pool.next_failure_s[provider] = self.env.now + delay
        self.env.timeout(delay).callbacks.append(lambda _e: self._fail(provider))

    def _fail(self, provider: int) -> None:
        low, high = self.pool.repair_s[provider]
        repair = self.rng.uniform(low, high)
        self.pool.next_failure_s[provider] = math.inf
        self._hold_down(provider)
        self.market.emit(ProviderFailed(self.env.now, provider, self.env.now + repair))
        self.env.timeout(repair).callbacks.append(lambda _e: self._recover(provider))

    def _recover(self, provider: int) -> None:
        self._release_down(provider)
        self._schedule_failure(provider)

    def _schedule_leave(self, provider: int) -> None:
        rate = self.pool.churn_rate_per_s[provider]
        if rate <= 0:
            self.pool.next_leave_s[provider] = math.inf
            return
        delay = self.rng.exponential(1.0 / rate)
        self.pool.next_leave_s[provider] = self.env.now + delay
        self.env.timeout(delay).callbacks.append(lambda _e: self._leave(provider))

    def _leave(self, provider: int) -> None:
        low, high = self.pool.offline_s[provider]
        away = self.rng.uniform(low, high)
        self.pool.next_leave_s[provider] = math.inf
        self._hold_down(provider)
        self.market.emit(ProviderLeft(self.env.now, provider, self.env.now + away))
        self.env.timeout(away).callbacks.append(lambda _e: self._rejoin(provider))

    def _rejoin(self, provider: int) -> None:
        self._release_down(provider)
        self._schedule_leave(provider)

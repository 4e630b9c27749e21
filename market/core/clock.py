"""The run's time: SimPy's clock, the market's periodic processes, and advancing to a time.

Two processes run for the whole horizon: providers withdraw their earnings every
`withdraw_interval_s` (Akash: 24 h), and a `Tick` is announced every `price_index_interval_s`
(the price index, progress bars and live charts follow it). A mechanism with a periodic process
of its own (batch clearing) names its interval in `periods()`, so that all are guarded alike.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from market.errors import MarketError
from market.events import Event, Tick
from market.scenario import MarketRules

#: A periodic process (withdrawals, price index ticks, batch clearings) ticks at most this
#: many times over a run: finer intervals are refused when the market is built.
MAX_PERIODIC_TICKS = 10_000_000


def check_periods(rules: MarketRules, mechanism_periods: list[tuple[str, float]],
                  horizon_s: float) -> None:
    """Refuse a periodic process (the market's own, or the mechanism's, named with its
    interval in seconds) that would tick more than MAX_PERIODIC_TICKS times in `horizon_s`:
    each tick is an event, so a tiny interval would spin in place of the run."""
    periods = [("market.withdraw_interval_s", rules.withdraw_interval_s),
               ("market.price_index_interval_s", rules.price_index_interval_s),
               *mechanism_periods]
    for name, interval_s in periods:
        if not interval_s * MAX_PERIODIC_TICKS >= horizon_s:  # NaN and 0 too
            raise MarketError(
                f"{name}: every {interval_s:g} s over {horizon_s:g} s is more than "
                f"{MAX_PERIODIC_TICKS:.0e} ticks; expected at least "
                f"{horizon_s / MAX_PERIODIC_TICKS:.3g} s")


class Clock:
    """Runs `env` to a time and ends the run at `horizon_s` (intervals checked first with
    `check_periods`, before anything of the market is built).

    `settle_active()` pays every active lease what it owes now (withdrawals); `finish()` ends
    the run (the engine's, which a market with result files extends).
    """

    def __init__(self, env: simpy.Environment, horizon_s: float, rules: MarketRules,
                 emit: Callable[[Event], None], subscribe: Callable[..., Callable[[], None]],
                 settle_active: Callable[[], None], finish: Callable[[], None]) -> None:
        self.env = env
        self.horizon_s = horizon_s
        self._emit = emit
        self._subscribe = subscribe
        self._settle_active = settle_active
        self._finish = finish
        self.finished = False
        env.process(self._withdrawals(rules.withdraw_interval_s))
        env.process(self._ticks(rules.price_index_interval_s))

    def _withdrawals(self, interval_s: float):
        while True:
            yield self.env.timeout(interval_s)
            self._settle_active()

    def _ticks(self, interval_s: float):
        while True:
            yield self.env.timeout(interval_s)
            self._emit(Tick(self.env.now))

    def advance(self, until: float | None = None,
                progress: Callable[[float, float], None] | None = None) -> bool:
        """Run to `until` simulated seconds (default and at most: the horizon); at the horizon,
        end the run (`finish`). Returns whether the run is over. `progress(now_s, horizon_s)`
        is called on every tick."""
        env = self.env
        target = self.horizon_s if until is None else min(until, self.horizon_s)
        unsubscribe = None
        if progress is not None:
            def on_tick(event: Event) -> None:
                progress(event.time_s, self.horizon_s)
            unsubscribe = self._subscribe(on_tick, kinds=(Tick,))
        try:
            if target > env.now:
                env.run(until=target)
                # SimPy lands on `until` as now + (until − now), which can miss it by a
                # rounding step; a replay reaching the same time in other steps must land on
                # the same float, so the clock is set to it exactly.
                env._now = target
            if target >= self.horizon_s and not self.finished:
                # SimPy stops before events due at `until`: let the last tick (the final
                # price interval) and anything else due at the very end happen.
                while env.peek() <= self.horizon_s:
                    env.step()
        finally:
            if unsubscribe is not None:
                unsubscribe()
        if target >= self.horizon_s:
            self._finish()
        return self.finished

"""The AKT/USD price path and the oracle that reads it.

The path is piecewise constant: a price holds from its time to the next one. Geometric
Brownian motion draws a price every `step_s` seconds on its own seeded stream,
P(t) = P0 · exp((μ − σ²/2)·t + σ·W(t)) with t in years; a CSV series replays given prices at
given times. Before the first price, the first price holds.

The oracle's price is the TWAP: the path's exact time-weighted mean over the last
`twap_window_s` seconds (an integral of the steps, not a sample mean). The oracle is healthy
while its newest price is at most `max_staleness_s` old and the TWAP stays within
`max_deviation` of the spot price, the second source it is checked against (AEP-76 pauses
on disagreement).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from market.errors import MarketError

SECONDS_PER_YEAR = 365.25 * 86_400
_BLOCK = 4_096  # GBM steps drawn at a time


class PricePath:
    """Prices `values[i]` (USD per AKT) from `times[i]` (simulated seconds) to the next time.

    >>> path = PricePath.from_points([0.0, 60.0], [1.0, 2.0])
    >>> path.spot(30.0), path.spot(90.0), path.mean(0.0, 120.0)
    (1.0, 2.0, 1.5)
    """

    def __init__(self, times: np.ndarray, values: np.ndarray) -> None:
        self.times = times
        self.values = values
        self._integral = np.concatenate([[0.0], np.cumsum(values[:-1] * np.diff(times))])

    @classmethod
    def from_points(cls, times: list[float], values: list[float]) -> PricePath:
        return cls(np.asarray(times, float), np.asarray(values, float))

    def _extend_to(self, time_s: float) -> None:
        """Generated paths draw more steps here; a replayed series has them all."""

    def _index(self, time_s: float) -> int:
        self._extend_to(time_s)
        return int(np.searchsorted(self.times, time_s, side="right")) - 1

    def spot(self, time_s: float) -> float:
        """The price at `time_s`, USD per AKT."""
        i = max(self._index(time_s), 0)  # first: it may draw more of the path
        return float(self.values[i])

    def sampled_s(self, time_s: float) -> float:
        """When the price holding at `time_s` was set (its age is `time_s` minus this)."""
        i = max(self._index(time_s), 0)
        return float(self.times[i])

    def _area(self, time_s: float) -> float:
        """∫ price dt from the first time to `time_s` (negative before it)."""
        i = self._index(time_s)
        if i < 0:
            return float(self.values[0] * (time_s - self.times[0]))
        return float(self._integral[i] + self.values[i] * (time_s - self.times[i]))

    def mean(self, start_s: float, end_s: float) -> float:
        """The time-weighted mean price over [start_s, end_s] (the spot price if empty)."""
        if end_s <= start_s:
            return self.spot(end_s)
        return (self._area(end_s) - self._area(start_s)) / (end_s - start_s)


class GbmPath(PricePath):
    """Geometric Brownian motion, a new price every `step_s` seconds, drawn in blocks from
    `rng` as the run reaches them (the same seed gives the same path however far it runs).

    >>> path = GbmPath(1.0, 0.0, 0.0, 60.0, np.random.default_rng(0))
    >>> path.spot(1e6), path.mean(0.0, 1e6)
    (1.0, 1.0)
    """

    def __init__(self, start_usd: float, drift_per_year: float, volatility_per_year: float,
                 step_s: float, rng: np.random.Generator) -> None:
        self._step_s = step_s
        self._rng = rng
        dt = step_s / SECONDS_PER_YEAR
        self._mu = (drift_per_year - volatility_per_year ** 2 / 2) * dt
        self._sigma = volatility_per_year * math.sqrt(dt)
        self._log = math.log(start_usd)
        super().__init__(np.array([0.0]), np.array([start_usd]))

    def _extend_to(self, time_s: float) -> None:
        while self.times[-1] + self._step_s <= time_s:
            steps = self._mu + self._sigma * self._rng.standard_normal(_BLOCK)
            logs = self._log + np.cumsum(steps)
            self._log = float(logs[-1])
            values = np.exp(logs)
            times = self.times[-1] + self._step_s * np.arange(1, _BLOCK + 1)
            last = self._integral[-1] + self.values[-1] * self._step_s
            integral = last + np.concatenate([[0.0], np.cumsum(values[:-1] * self._step_s)])
            self.times = np.concatenate([self.times, times])
            self.values = np.concatenate([self.values, values])
            self._integral = np.concatenate([self._integral, integral])


def read_price_csv(path: str | Path) -> PricePath:
    """A price series from a CSV file with columns `time_s` (seconds from the run's start,
    strictly ascending) and `price_usd` (> 0). Errors name the line and the column."""
    times: list[float] = []
    prices: list[float] = []
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = {"time_s", "price_usd"} - set(reader.fieldnames or ())
        if missing:
            raise MarketError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                              "expected time_s, price_usd")
        for line, row in enumerate(reader, start=2):
            try:
                time_s, price = float(row["time_s"]), float(row["price_usd"])
            except (TypeError, ValueError):
                raise MarketError(f"{path}:{line}: time_s and price_usd must be numbers, got "
                                  f"{row.get('time_s')!r}, {row.get('price_usd')!r}") from None
            if not (math.isfinite(price) and 0 < price <= 1e6):
                raise MarketError(f"{path}:{line}: price_usd must be in (0, 1e6], got {price}")
            if not math.isfinite(time_s) or (times and time_s <= times[-1]):
                raise MarketError(f"{path}:{line}: time_s must be finite and above the "
                                  f"previous line's, got {time_s}")
            times.append(time_s)
            prices.append(price)
    if not times:
        raise MarketError(f"{path}: no prices; expected at least one row")
    return PricePath.from_points(times, prices)


class Oracle:
    """The protocol's price: the TWAP of `path`, and whether it may be trusted."""

    def __init__(self, path: PricePath, twap_window_s: float, max_staleness_s: float,
                 max_deviation: float) -> None:
        self.path = path
        self.window_s = twap_window_s
        self.max_staleness_s = max_staleness_s
        self.max_deviation = max_deviation

    def twap(self, time_s: float) -> float:
        """The mean price over the window ending at `time_s`, USD per AKT."""
        return self.path.mean(time_s - self.window_s, time_s)

    def healthy(self, time_s: float) -> bool:
        """Fresh (newest price at most max_staleness_s old) and agreeing with the spot price."""
        return self.read(time_s)[2]

    def read(self, time_s: float) -> tuple[float, float, bool]:
        """(TWAP, spot price, healthy) at `time_s`, each computed once."""
        twap, spot = self.twap(time_s), self.path.spot(time_s)
        fresh = time_s - self.path.sampled_s(time_s) <= self.max_staleness_s
        return twap, spot, fresh and abs(twap - spot) <= self.max_deviation * spot

"""A market as people use it: the lifecycle engine with its observers attached.

The engine (`market.core.engine`) runs the lifecycle and announces it on its bus; this module
attaches what measures and records it — welfare accounts, metrics, the result recorder — and
the built-in population of agents, in that order, so that observers see each event before any
agent reacts to it. The observers read the market through `market.core.state.MarketState` only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from market.core.engine import Engine
from market.observe.metrics import Metrics
from market.observe.result import RunResult
from market.observe.tables import Recorder
from market.observe.welfare import Welfare
from market.registry import load
from market.scenario import Scenario


class Market(Engine):
    """A simulated GPU marketplace for one scenario and seed.

    >>> from market import Market, load_scenario
    >>> result = Market(load_scenario("default", ["duration_days=0.25"]), seed=1).run()
    >>> result.summary["money_conserved"]
    True

    `out`: a folder the result tables stream to as the run goes; `record=False` keeps only the
    summary and the price series; `populate=False` leaves out the scenario's built-in tenants
    and providers (add your own with `add_tenant`, `add_providers`, or the agents).
    """

    def __init__(self, scenario: Scenario, seed: int = 0, *, out: str | Path | None = None,
                 populate: bool = True, record: bool = True) -> None:
        super().__init__(scenario, seed)
        self.welfare = Welfare(self)
        self.metrics = Metrics(self, self.welfare)
        self.recorder = Recorder(self, self.welfare, self.metrics, out) if record else None
        if populate:
            load("populations", scenario.population)(self)

    def run(self, until: float | None = None,
            progress: Callable[[float, float], None] | None = None) -> RunResult:
        """Advance to `until` simulated seconds (default: the scenario's end) and return the
        result so far; at the scenario's end, active leases are settled once more.
        `progress(now_s, horizon_s)` is called on every tick."""
        self.advance(until, progress)
        return self.result()

    def finish(self) -> None:
        """End the run here (at the scenario's end, or earlier when a live market stops):
        settle active leases once more and close the result files. Idempotent."""
        if self.finished:
            return
        super().finish()
        if self.recorder is not None:
            self.recorder.close()

    def result(self) -> RunResult:
        """The summary and tables as they stand (complete once the run is over)."""
        return RunResult(self, self.metrics, self.recorder)

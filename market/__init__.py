"""gpumarket's engine: a discrete-event simulator of a decentralized GPU compute marketplace.

>>> from market import Market, load_scenario
>>> result = Market(load_scenario("default"), seed=1).run()   # doctest: +SKIP
>>> runs = batch_run(load_scenario("default"), {"market.take_rate": [0.0, 0.1]},
...                  replications=4)                          # doctest: +SKIP
"""

from typing import TYPE_CHECKING, Any

from market.builder import Market
from market.errors import MarketError
from market.observe.result import RunResult
from market.scenario import Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:
    from market.experiments.batch import batch_run


def __getattr__(name: str) -> Any:
    # Batch runs bring in the sweep and execution machinery: only for those who ask for it.
    if name == "batch_run":
        from market.experiments.batch import batch_run

        return batch_run
    raise AttributeError(f"module 'market' has no attribute {name!r}")


__all__ = ["Market", "MarketError", "RunResult", "Scenario", "ScenarioError", "batch_run",
           "load_scenario"]

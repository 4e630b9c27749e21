"""gpumarket's engine: a discrete-event simulator of a decentralized GPU compute marketplace.

>>> from market import Market, load_scenario
>>> result = Market(load_scenario("default"), seed=1).run()   # doctest: +SKIP
"""

from market.engine import Market, MarketError
from market.result import RunResult
from market.scenario import Scenario, ScenarioError, load_scenario

__all__ = ["Market", "MarketError", "RunResult", "Scenario", "ScenarioError", "load_scenario"]

"""One episode of a market in which some provider populations are controlled from outside,
one decision at a time: the engine behind the Gymnasium and PettingZoo environments.

The market runs as it always runs, inside a greenlet. A controlled population's strategy
(`Controlled`) is asked to price an order exactly where any strategy is (`market.core.bidding`);
at a decision point it hands the decision out to the caller (the environment) and waits for
the action, then returns the bids that action makes (`features.BidSpace`). So a policy
acting through the environment bids as the same policy does as an ordinary strategy, with
the same bid latencies and the same draws, and the market needs no hook for it.

Decision points: with `decision="order"`, every order a controlled population is asked to
price (the decision carries the order); with `decision="interval"`, the first order it is
asked to price in each interval of `interval_s` simulated seconds, counted from the start
(the decision carries no order: the action prices every order until the next decision).
Both are exactly where the strategy `learned` (`agents.rl.policy`) decides, so that a policy
trained here runs the same market as a strategy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from greenlet import GreenletExit, greenlet

from agents.rl.features import DECISIONS, BidSpace, Decision
from agents.rl.reward import ProfitMeter
from market.builder import Market
from market.scenario import Scenario
from market.strategy import MarketView, OrderView


@dataclass(frozen=True, slots=True)
class DecisionPoint:
    """Where the market waits for actions: the time, and the order to price (None at an
    interval's end) with the controlled population asked to price it."""

    time_s: float
    order: OrderView | None = None
    agent: str | None = None


class Controlled:
    """The strategy of a population the session controls: its bids come from the action
    given at the last decision point."""

    def __init__(self, session: Session, agent: str) -> None:
        self._session = session
        self._agent = agent

    def prices(self, order: OrderView, providers: np.ndarray, view: MarketView) -> np.ndarray:
        action = self._session.action_for(self._agent, order)
        return self._session.space.bids(action, providers, view)


def check_session(scenario: Scenario, agents: tuple[str, ...], decision: str,
                  interval_s: float) -> None:
    """Raise ValueError (one line naming the argument) unless a `Session` can be built with
    these: the agents are populations of `scenario`, and the decision mode is known."""
    if decision not in DECISIONS:
        raise ValueError(f"decision: expected one of {', '.join(DECISIONS)}, got {decision!r}")
    if decision == "interval" and not 0 < interval_s < math.inf:
        raise ValueError(f"interval_s: expected a number of seconds > 0, got {interval_s}")
    names = [population.name for population in scenario.providers]
    for agent in agents:
        if agent not in names:
            raise ValueError(f"population: expected one of {', '.join(names)}, got {agent!r}")


def most_gpus(scenario: Scenario, agent: str) -> float:
    """An upper bound of the GPUs population `agent` of `scenario` can have of one GPU model,
    whatever the seed: every provider drawn at the most GPUs a draw gives one (the range's
    top, or the step above it); no bound (inf) for machines from a node list."""
    population = next(p for p in scenario.providers if p.name == agent)
    if population.nodes is not None:
        return math.inf
    return float(population.count * max(population.gpus_per_provider[1], population.gpu_step))


class _Abandoned(BaseException):
    """The episode was dropped mid-run (reset or close): unwind the market's greenlet. A
    BaseException, so that nothing on the way mistakes it for an error to handle."""


class Session:
    """A market of `scenario` and `seed` whose populations named in `agents` are controlled.

    `start()` runs it to the first decision point; `act(actions)` (agent -> action) gives the
    actions and runs to the next one. Both return the decision point, or None once the run
    is over (the scenario's end: every lease settled, as `Market.run` ends).
    """

    def __init__(self, scenario: Scenario, seed: int, agents: tuple[str, ...], space: BidSpace,
                 decision: Decision = "order", interval_s: float = 3600.0) -> None:
        check_session(scenario, agents, decision, interval_s)
        names = [population.name for population in scenario.providers]
        self.space = space
        self.decision = decision
        self.interval_s = interval_s
        self.agents = agents
        self.market = market = Market(scenario, seed, record=False)
        self.views: dict[str, MarketView] = {}
        self.meters: dict[str, ProfitMeter] = {}
        for agent in agents:
            index = names.index(agent)  # a scenario population's strategy index is its own
            market.bidding.replace(index, Controlled(self, agent))
            view = self.views[agent] = market.views[index]
            first, end = view.members if view.members is not None else (0, 0)
            self.meters[agent] = ProfitMeter(market, first, end)
        self._actions: dict[str, Any] = {}
        self._decided_order: int | None = None   # the order the last actions were given for
        self._interval = -1                      # ... the interval they were given in
        self.decisions = 0                       # decision points so far
        self._greenlet: greenlet | None = None
        self._caller: greenlet | None = None
        self._closing = False

    def start(self) -> DecisionPoint | None:
        """Run to the first decision point."""
        if self._greenlet is not None:
            raise RuntimeError("Session.start: already started")
        self._greenlet = greenlet(self._run)
        return self._resume(None)

    def act(self, actions: dict[str, Any]) -> DecisionPoint | None:
        """Take `actions` for the decision point the market waits at; run to the next."""
        if self._greenlet is None or self._greenlet.dead:
            raise RuntimeError("Session.act: the episode is over; start another")
        return self._resume(actions)

    def _resume(self, actions: dict[str, Any] | None) -> DecisionPoint | None:
        self._caller = greenlet.getcurrent()
        assert self._greenlet is not None
        point = self._greenlet.switch(actions)
        return point if isinstance(point, DecisionPoint) else None

    def close(self) -> None:
        """Drop the episode (the market stops where it is)."""
        if self._greenlet is not None and not self._greenlet.dead:
            self._closing = True
            self._greenlet.throw(_Abandoned)
        self._greenlet = None

    # ------------------------------------------------------------------ inside the market

    def _run(self, _first: None) -> None:
        market = self.market
        try:
            market.advance()
        except (_Abandoned, GreenletExit):
            return

    def _wait(self, point: DecisionPoint) -> None:
        """Hand `point` out and keep the actions given for it."""
        if self._closing:  # dropped: do not hand anything out, unwind
            raise _Abandoned
        self.decisions += 1
        assert self._caller is not None
        try:
            actions = self._caller.switch(point)
        except GreenletExit:  # the session was dropped without close(): unwind quietly
            self._closing = True
            raise
        if not isinstance(actions, dict):
            raise RuntimeError("Session: expected the actions as a dict of agent -> action")
        self._actions = actions

    def action_for(self, agent: str, order: OrderView) -> Any:
        """The action `agent` prices `order` with (asked by its `Controlled` strategy)."""
        now = self.market.now
        if self.decision == "order":
            if self._decided_order != order.order_id:
                self._decided_order = order.order_id
                self._wait(DecisionPoint(now, order, agent))
        elif self._interval != (interval := math.floor(now / self.interval_s)):
            self._interval = interval
            self._wait(DecisionPoint(now, None, agent))
        return self._actions[agent]


class EpisodeHolder:
    """What an environment holding one `Session` at a time shares: `close` stops its market,
    and so does dropping the environment."""

    session: Session | None
    _point: DecisionPoint | None

    def __del__(self) -> None:
        # The market's greenlet refers to its session, which garbage collection alone would
        # not unwind.
        session = getattr(self, "session", None)
        if session is not None:
            session.close()

    def close(self) -> None:
        """Stop the episode under way, if any (its market stops where it is)."""
        if self.session is not None:
            self.session.close()
            self.session = None
        self._point = None


ShapingFunction = Callable[[dict[str, np.ndarray], dict[str, Any]], float]
"""Optional reward shaping: (observation, info) -> USD added to the step's reward."""

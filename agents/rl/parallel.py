"""`ProviderBiddingParallel`: a PettingZoo `ParallelEnv` in which several provider
populations of one scenario learn to bid at once, each an agent with its own observation
and reward.

>>> from agents.rl.parallel import ProviderBiddingParallel
>>> env = ProviderBiddingParallel("learn", ("learner", "datacenter"),
...                               overrides=["duration_days=0.05"], decision="interval")
>>> observations, infos = env.reset(seed=1)
>>> sorted(observations)
['datacenter', 'learner']

Each agent's observation, action and reward are those of `agents.rl.env.ProviderBidding`
for its population. Decision points are shared: with `decision="interval"`, every agent acts
once per interval of `interval_s` (at the first order one of them is asked to price in it);
with `decision="order"`, every agent acts whenever an order opens that any of them is asked
to price (orders are public, so every agent sees it), and an agent's action prices that
order only if its own population was asked to (its providers can serve it): the others'
actions are not used. All agents are truncated together at the scenario's horizon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from agents.rl.env import action_space, bid_space, horizon_s, observation_space, resolve
from agents.rl.features import DEFAULT_GRID, Decision, observe
from agents.rl.session import (
    DecisionPoint,
    EpisodeHolder,
    Session,
    ShapingFunction,
    check_session,
    most_gpus,
)
from market.scenario import Scenario


class ProviderBiddingParallel(EpisodeHolder, ParallelEnv):  # type: ignore[misc]
    """Populations `agents` of `scenario` learn to bid at once (the module's docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"name": "gpumarket_provider_bidding_v0",
                                          "render_modes": []}

    def __init__(self, scenario: str | Scenario = "learn",
                 agents: Sequence[str] = ("learner", "datacenter"), *,
                 overrides: Sequence[str] = (), decision: Decision = "interval",
                 interval_s: float = 3600.0, action: str = "markup", markup_low: float = 0.0,
                 markup_high: float = 3.0, markup_grid: Sequence[float] = DEFAULT_GRID,
                 shaping: ShapingFunction | None = None) -> None:
        if not agents or len(set(agents)) != len(agents):
            raise ValueError("agents: expected one or more distinct population names")
        self.scenario = resolve(scenario, overrides)
        self.possible_agents = list(agents)
        self.agents: list[str] = []
        self.decision = decision
        self.interval_s = interval_s
        self.shaping = shaping
        self.render_mode = None
        self.space = bid_space(self.scenario, action, markup_low, markup_high, markup_grid)
        check_session(self.scenario, tuple(agents), decision, interval_s)
        horizon = horizon_s(self.scenario)
        self._observation_spaces = {
            agent: observation_space(self.space.gpu_models, horizon,
                                     most_gpus(self.scenario, agent))
            for agent in agents}
        self._action_spaces = {agent: action_space(self.space) for agent in agents}
        self.session: Session | None = None
        self._point: DecisionPoint | None = None
        self._profit_usd: dict[str, float] = {}
        self._np_random = np.random.default_rng()

    def _session(self, seed: int) -> Session:
        return Session(self.scenario, seed, tuple(self.possible_agents), self.space,
                       self.decision, self.interval_s)

    def observation_space(self, agent: str) -> spaces.Space[Any]:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space[Any]:
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Start the market of `seed` (None: the next seed of the environment's own
        generator) and run it to the first decision point."""
        if seed is not None:
            self._np_random = np.random.default_rng(seed)
            for agent_space in (*self._observation_spaces.values(),
                                *self._action_spaces.values()):
                agent_space.seed(seed)
        market_seed = seed if seed is not None else int(self._np_random.integers(0, 2**31 - 1))
        self.close()
        self.session = self._session(market_seed)
        self.agents = list(self.possible_agents)
        self._profit_usd = dict.fromkeys(self.agents, 0.0)
        self._point = self.session.start()
        return self._observations(), self._infos()

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float],
                                                     dict[str, bool], dict[str, bool],
                                                     dict[str, dict[str, Any]]]:
        if self.session is None or self._point is None:
            raise RuntimeError("step: call reset() first (the episode is over or not begun)")
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise ValueError(f"actions: expected one for every agent; missing {missing}")
        for agent in self.agents:
            self.space.check(actions[agent])
        self._point = self.session.act({agent: actions[agent] for agent in self.agents})
        observations = self._observations()
        infos = self._infos()
        rewards = {}
        for agent in self.agents:
            profit = self.session.meters[agent].profit_usd()
            rewards[agent] = profit - self._profit_usd[agent]
            self._profit_usd[agent] = profit
            infos[agent]["profit_usd"] = profit
            if self.shaping is not None:
                rewards[agent] += float(self.shaping(observations[agent], infos[agent]))
        over = self._point is None
        terminations = dict.fromkeys(self.agents, False)
        truncations = dict.fromkeys(self.agents, over)
        if over:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _observations(self) -> dict[str, Any]:
        assert self.session is not None
        order = None if self._point is None else self._point.order
        return {agent: observe(self.session.views[agent], order) for agent in self.agents}

    def _infos(self) -> dict[str, dict[str, Any]]:
        assert self.session is not None
        point = self._point
        order_id = -1 if point is None or point.order is None else point.order.order_id
        return {agent: {"time_s": self.session.market.now, "order_id": order_id,
                        "profit_usd": self._profit_usd[agent],
                        "decisions": self.session.decisions}
                for agent in self.agents}

"""`gpumarket/ProviderBidding-v0`: a Gymnasium environment in which an agent bids for one
provider population of any scenario (importing this module registers it).

>>> import gymnasium as gym
>>> import agents.rl.env
>>> env = gym.make("gpumarket/ProviderBidding-v0", overrides=["duration_days=0.05"])
>>> obs, info = env.reset(seed=1)
>>> bool(obs["order_gpus"][0] > 0)    # a step ends when the population must price an order
True
>>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
>>> sorted(info)[:3]
['decisions', 'order_id', 'profit_usd']

**Observation**: `agents.rl.features` (a `Dict` of `Box`es, units in the keys: what the
population's strategy may see through `MarketView`; nothing private of others).
**Action**: `action="markup"`: a `Box` of one markup over cost per GPU model of the
catalog, in [`markup_low`, `markup_high`]; `"price"`: a `Box` of one price per GPU-hour per
model, USD, up to twice its list price; `"discrete"`: `Discrete(len(markup_grid))`, one
markup for every model. Models the population does not have are ignored.
**Step**: to the next decision point (`decision="order"`: the next order the population is
asked to price; `"interval"`: the first order it is asked to price in each interval of
`interval_s` simulated seconds, where the strategy `learned` decides too).
**Reward**: the change of the population's short-run profit over the step, USD
(`agents.rl.reward`: the episode's return is the population's short-run profit of the run,
the providers table's figure; the first step's also counts the costs run up before the first
decision), plus `shaping(obs, info)` if given.
**Episode**: the scenario's horizon; it is then truncated (the market would go on: a value
estimate should bootstrap), never terminated. `reset(seed=s)` runs the market of seed `s`:
the same seed and actions give the same episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.rl.features import DEFAULT_GRID, BidSpace, Decision, observe
from agents.rl.session import (
    DecisionPoint,
    EpisodeHolder,
    Session,
    ShapingFunction,
    check_session,
    most_gpus,
)
from market.scenario import Scenario, load_scenario
from market.units import SECONDS_PER_DAY

ENV_ID = "gpumarket/ProviderBidding-v0"

#: Ceiling of the "price" action, as a multiple of the model's list price.
PRICE_CEILING_OF_LIST = 2.0


def observation_space(gpu_models: Sequence[str], horizon_s: float,
                      max_gpus: float) -> spaces.Dict:
    """The space of `features.observe` for a market of `gpu_models`, `horizon_s` long,
    whose population has at most `max_gpus` GPUs of one model."""
    models = len(gpu_models)

    def box(size: int, high: float) -> spaces.Box:
        return spaces.Box(0.0, high, (size,), np.float32)

    return spaces.Dict({
        "clearing_usd_per_gpu_hour": box(models, np.inf),
        "cost_usd_per_gpu_hour": box(models, np.inf),
        "free_gpus": box(models, max_gpus),
        "gpus": box(models, max_gpus),
        "order_gpus": box(1, np.inf),
        "order_max_usd_per_gpu_hour": box(1, np.inf),
        "order_models": box(models, 1.0),
        "time_s": box(1, horizon_s),
    })


def action_space(space: BidSpace) -> spaces.Space[Any]:
    """The Gymnasium space of `space`'s actions."""
    models = len(space.gpu_models)
    if space.kind == "discrete":
        return spaces.Discrete(len(space.markup_grid))
    if space.kind == "price":
        return spaces.Box(0.0, np.asarray(space.price_high_usd_per_gpu_hour, np.float32),
                          (models,), np.float32)
    return spaces.Box(np.float32(space.markup_low), np.float32(space.markup_high), (models,),
                      np.float32)


def bid_space(scenario: Scenario, action: str, markup_low: float, markup_high: float,
              markup_grid: Sequence[float]) -> BidSpace:
    """The `BidSpace` of `scenario`'s catalog for an `action` kind."""
    catalog = scenario.catalog()
    ceilings = tuple(PRICE_CEILING_OF_LIST * catalog[m].list_usd_per_gpu_hour
                     for m in catalog.ids)
    return BidSpace(catalog.ids, action, markup_low, markup_high,  # type: ignore[arg-type]
                    tuple(markup_grid), ceilings)


def horizon_s(scenario: Scenario) -> float:
    """How long `scenario`'s market runs, simulated seconds (an episode)."""
    return scenario.duration_days * SECONDS_PER_DAY


def resolve(scenario: str | Scenario, overrides: Sequence[str]) -> Scenario:
    """A scenario by built-in name or file path, with `--set` style overrides."""
    if isinstance(scenario, Scenario):
        if overrides:
            raise ValueError("overrides: give them with a scenario's name or path, not with "
                             "a Scenario (set its fields instead)")
        return scenario
    return load_scenario(scenario, list(overrides))


class ProviderBidding(EpisodeHolder, gym.Env):  # type: ignore[type-arg]
    """An agent bids for population `population` of `scenario` (the module's docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(self, scenario: str | Scenario = "learn", population: str = "learner", *,
                 overrides: Sequence[str] = (), decision: Decision = "order",
                 interval_s: float = 3600.0, action: str = "markup", markup_low: float = 0.0,
                 markup_high: float = 3.0, markup_grid: Sequence[float] = DEFAULT_GRID,
                 shaping: ShapingFunction | None = None, render_mode: str | None = None) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode: expected None or 'ansi', got {render_mode!r}")
        self.scenario = resolve(scenario, overrides)
        self.population = population
        self.decision = decision
        self.interval_s = interval_s
        self.shaping = shaping
        self.render_mode = render_mode
        self.space = bid_space(self.scenario, action, markup_low, markup_high, markup_grid)
        check_session(self.scenario, (population,), decision, interval_s)
        self.session: Session | None = None
        self.observation_space = observation_space(
            self.space.gpu_models, horizon_s(self.scenario), most_gpus(self.scenario, population))
        self.action_space = action_space(self.space)
        self._profit_usd = 0.0
        self._point: DecisionPoint | None = None
        self._last_obs: dict[str, np.ndarray] | None = None

    def _session(self, seed: int) -> Session:
        return Session(self.scenario, seed, (self.population,), self.space, self.decision,
                       self.interval_s)

    @property
    def market(self) -> Any:
        """The market of the episode under way (None before the first reset)."""
        return None if self.session is None else self.session.market

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray],
                                                             dict[str, Any]]:
        """Start the market of `seed` (None: the next seed of the environment's own
        generator) and run it to the first decision point."""
        super().reset(seed=seed)
        market_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        self.close()
        self.session = self._session(market_seed)
        self._profit_usd = 0.0
        self._point = self.session.start()
        obs = self._observe()
        return obs, self._info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool,
                                         dict[str, Any]]:
        if self.session is None or self._point is None:
            raise RuntimeError("step: call reset() first (the episode is over or not begun)")
        self.space.check(action)  # before the market sees it: a bad action changes nothing
        self._point = self.session.act({self.population: action})
        obs = self._observe()
        profit = self.session.meters[self.population].profit_usd()
        reward = profit - self._profit_usd
        self._profit_usd = profit
        info = self._info()
        if self.shaping is not None:
            reward += float(self.shaping(obs, info))
        return obs, float(reward), False, self._point is None, info

    def _observe(self) -> dict[str, np.ndarray]:
        assert self.session is not None
        order = None if self._point is None else self._point.order
        obs = observe(self.session.views[self.population], order)
        self._last_obs = obs
        return obs

    def _info(self) -> dict[str, Any]:
        assert self.session is not None
        point = self._point
        return {"time_s": self.session.market.now,
                "order_id": -1 if point is None or point.order is None else point.order.order_id,
                "profit_usd": self._profit_usd, "decisions": self.session.decisions}

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.session is None:
            return None
        obs = self._last_obs or {}
        order = self._point.order if self._point is not None else None
        what = "the run is over" if self._point is None else (
            f"order {order.order_id}: {order.gpus} GPUs, max "
            f"{order.max_price_usd_per_gpu_hour:.3f} USD/GPU-h" if order is not None
            else "interval")
        return (f"t={self.session.market.now / 3600:.2f} h  {what}  profit so far "
                f"{self._profit_usd:,.2f} USD  free GPUs {obs.get('free_gpus')}")


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="agents.rl.env:ProviderBidding")

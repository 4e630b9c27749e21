"""The Gymnasium and PettingZoo environments (agents.rl): the API checkers, the reward's
accounting (an episode's return is the population's short-run profit), bids as the action
says, determinism, bad actions, vectors, and the `learn` scenario."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test

import agents.rl.env  # noqa: F401  (registers the environment)
from agents.rl.env import ENV_ID, ProviderBidding
from agents.rl.parallel import ProviderBiddingParallel
from market import load_scenario
from market.events import BidsPlaced
from market.units import SECONDS_PER_HOUR, per_gpu_hour_usd

SHORT = ["duration_days=0.05"]
LEARNER = 3  # the learn scenario's learner population index


def _table_profit(market, population: int = LEARNER) -> float:
    accounts = market.metrics.provider_accounts()
    return float(accounts["short_run_profit_usd"][market.pool.population == population].sum())


def _episode(env, action, seed=1):
    obs, info = env.reset(seed=seed)
    rewards, observations = [], [obs]
    while True:
        obs, reward, terminated, truncated, info = env.step(action)
        assert not terminated
        rewards.append(reward)
        observations.append(obs)
        if truncated:
            return rewards, observations, info


@pytest.mark.parametrize(("action", "decision"), [("markup", "order"), ("price", "order"),
                                                  ("discrete", "interval")])
def test_passes_gymnasiums_checker(action, decision):
    env = ProviderBidding(overrides=SHORT, action=action, decision=decision, interval_s=600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice (normalized boxes, render fps), not errors
        check_env(env, skip_render_check=True)


def test_return_is_the_populations_short_run_profit():
    env = ProviderBidding(overrides=["duration_days=0.25"])
    rewards, _, info = _episode(env, np.full(len(env.space.gpu_models), 0.3, np.float32))
    market = env.market
    assert market.finished
    assert sum(rewards) == pytest.approx(_table_profit(market), abs=1e-6)
    assert info["profit_usd"] == pytest.approx(_table_profit(market), abs=1e-6)
    # Something happened to measure: the learner won leases and paid costs.
    assert market.metrics.revenue_by_provider()[market.pool.population == LEARNER].sum() > 0


def test_a_step_without_leases_costs_idle_power_and_operations_by_hand():
    # Bid far above any max price: the learner never leases, so each step's reward is minus
    # its GPUs' idle power and operations over the step's hours, nothing else.
    env = ProviderBidding(overrides=SHORT, decision="interval", interval_s=900)
    _, info = env.reset(seed=2)
    pool = env.market.pool
    own = pool.population == LEARNER
    per_hour = float(((pool.cost_idle_usd_per_gpu_hour[own] + pool.cost_fixed_usd_per_gpu_hour[own])
                      * pool.capacity[own, 0]).sum())
    before = info["time_s"]
    _, reward, _, _, info = env.step(np.full(len(env.space.gpu_models), 3.0, np.float32))
    # The step ran to the first order of a later quarter-hour (`decision="interval"`); the
    # first step's reward also counts the time before the first decision (returns add up to
    # the run's profit).
    assert info["time_s"] // 900 > before // 900
    hours = info["time_s"] / SECONDS_PER_HOUR
    assert reward == pytest.approx(-per_hour * hours, rel=1e-12)


def test_the_action_prices_the_order_it_was_given_for():
    env = ProviderBidding(overrides=SHORT, action="discrete")
    obs, info = env.reset(seed=1)
    seen: list[BidsPlaced] = []
    env.market.subscribe(seen.append, kinds=(BidsPlaced,))
    view = env.session.views["learner"]
    population = env.market.pool.population
    grid = env.space.markup_grid
    checked = 0
    for step in range(40):
        order_id, gpus = info["order_id"], int(obs["order_gpus"][0])
        index = step % len(grid)
        obs, _, _, truncated, info = env.step(np.int64(index))
        for event in seen:
            for provider, price in zip(event.providers, event.prices_micro_per_hour,
                                       strict=True):
                if event.order_id == order_id and population[provider] == LEARNER:
                    cost = float(view.costs(np.array([provider]))[0])
                    assert per_gpu_hour_usd(price, gpus) == pytest.approx(
                        cost * (1 + grid[index]), abs=1e-6)
                    checked += 1
        seen.clear()
        if truncated:
            break
    assert checked > 5


def test_same_seed_and_actions_same_episode():
    env = ProviderBidding(overrides=SHORT)
    action = np.full(len(env.space.gpu_models), 0.6, np.float32)
    first = _episode(env, action, seed=5)
    second = _episode(env, action, seed=5)
    assert first[0] == second[0]
    for a, b in zip(first[1], second[1], strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_a_bad_action_changes_nothing():
    env = ProviderBidding(overrides=SHORT)
    env.reset(seed=1)
    now = env.market.now
    with pytest.raises(ValueError, match="action: expected 9 values"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full(9, np.nan, np.float32))
    assert env.market.now == now
    env.step(np.zeros(9, np.float32))  # the episode goes on
    assert env.market.now >= now


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="population: expected one of"):
        ProviderBidding(overrides=SHORT, population="nobody")
    with pytest.raises(ValueError, match="decision: expected one of"):
        ProviderBidding(overrides=SHORT, decision="sometimes")
    with pytest.raises(ValueError, match="action: expected one of"):
        ProviderBidding(overrides=SHORT, action="haggle")
    with pytest.raises(RuntimeError, match="reset"):
        ProviderBidding(overrides=SHORT).step(np.zeros(9, np.float32))


def test_reset_mid_episode_starts_afresh():
    env = ProviderBidding(overrides=SHORT)
    action = np.full(9, 0.3, np.float32)
    env.reset(seed=1)
    for _ in range(5):
        env.step(action)
    old = env.session
    rewards, _, _ = _episode(env, action, seed=1)
    assert old._greenlet is None  # the abandoned market's greenlet was unwound
    fresh = _episode(ProviderBidding(overrides=SHORT), action, seed=1)[0]
    assert rewards == fresh


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_of_seeds(mode):
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode=mode, overrides=SHORT)
    obs, _ = envs.reset(seed=[1, 2])
    assert obs["order_gpus"].shape == (2, 1)
    _, reward, terminated, truncated, _ = envs.step(np.full((2, 9), 0.3, np.float32))
    assert reward.shape == (2,) and not terminated.any() and not truncated.any()
    envs.close()
    # Each seed's market is the one a single environment runs.
    single = ProviderBidding(overrides=SHORT)
    single.reset(seed=2)
    assert single.step(np.full(9, 0.3, np.float32))[1] == reward[1]


def test_parallel_env_passes_pettingzoos_test_and_pays_each_agent_its_profit():
    for decision in ("interval", "order"):
        env = ProviderBiddingParallel("learn", ("learner", "datacenter"), overrides=SHORT,
                                      decision=decision, interval_s=900)
        parallel_api_test(env, num_cycles=100)
    totals = {"learner": 0.0, "datacenter": 0.0}
    env.reset(seed=4)
    while env.agents:
        _, rewards, _, _, _ = env.step({agent: np.full(9, 0.4, np.float32)
                                        for agent in env.agents})
        for agent, reward in rewards.items():
            totals[agent] += reward
    market = env.session.market
    assert totals["learner"] == pytest.approx(_table_profit(market, LEARNER), abs=1e-6)
    assert totals["datacenter"] == pytest.approx(_table_profit(market, 0), abs=1e-6)


def test_learn_scenarios_rivals_are_the_default_market():
    learn, default = load_scenario("learn"), load_scenario("default")
    assert learn.providers[:-1] == default.providers
    assert learn.tenants == default.tenants and learn.market == default.market
    assert learn.providers[-1].name == "learner"
    assert learn.providers[-1].strategy.name == "cost_plus"


def test_dropped_environments_unwind_their_markets():
    import gc

    from greenlet import greenlet

    for seed in range(3):
        env = ProviderBidding(overrides=SHORT)
        env.reset(seed=seed)
        env.step(np.full(9, 0.3, np.float32))
        del env  # never closed
    gc.collect()
    assert not [g for g in gc.get_objects() if isinstance(g, greenlet) and g
                and g is not greenlet.getcurrent()]


def test_the_readmes_environment_example_runs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                if 'gym.make("gpumarket/ProviderBidding-v0"' in b]
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md environment example", "exec"), namespace)
    assert not namespace["terminated"] and isinstance(namespace["reward"], float)
    namespace["env"].close()


def test_observations_stay_in_the_space_whatever_the_seed():
    # The population's GPUs are drawn per seed: the space bounds them from the scenario (every
    # provider at the most GPUs a draw gives), not from one seed's draw.
    env = ProviderBidding(population="datacenter", overrides=["duration_days=0.01"])
    population = load_scenario("learn").providers[0]
    most = population.count * population.gpus_per_provider[1]
    assert env.observation_space["gpus"].high[0] == most
    for seed in range(1, 10):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs), seed
    env.close()

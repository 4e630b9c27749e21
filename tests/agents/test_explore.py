"""`explore`: cost-plus with a Uniform[markup_low, markup_high] markup per (order, provider),
whose bid density is known (the logging strategy of off-policy evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from agents.explore import Explore
from market.registry import load
from market.scenario import load_scenario
from market.strategy import OrderView


class _View:
    """What `explore` reads of a market view: its providers' cost basis and the fee rule."""

    def __init__(self, costs: list[float], take_rate: float = 0.2, net: bool = True) -> None:
        self._costs = np.asarray(costs, float)
        self.take_rate = take_rate
        self._net = net

    def costs(self, providers: np.ndarray, basis: str = "basis") -> np.ndarray:
        return self._costs[np.asarray(providers, np.int64)]

    def fee_gross_up(self) -> float:
        return 1.0 / (1.0 - self.take_rate) if self._net else 1.0


def _order(max_usd_per_gpu_hour: float = 100.0, gpus: int = 2) -> OrderView:
    return OrderView.priced(7, gpus, ("h100",), (), max_usd_per_gpu_hour, 0.0)


def test_bids_are_uniform_on_the_cost_plus_range() -> None:
    view = _View([2.0, 0.5])
    strategy = Explore(markup_low=0.2, markup_high=1.0, seed=11)
    gross = 1.25
    draws = np.array([strategy.prices(_order(), np.array([0, 1]), view) for _ in range(4000)])
    for provider, cost in enumerate((2.0, 0.5)):
        low, high = cost * gross * 1.2, cost * gross * 2.0
        bids = draws[:, provider]
        assert bids.min() >= low and bids.max() <= high
        # Kolmogorov-Smirnov against Uniform[low, high]: a wrong range or shape fails.
        assert stats.kstest(bids, stats.uniform(low, high - low).cdf).pvalue > 0.001
        # The mean within 4 standard errors of the uniform's (variance (h - l)^2 / 12).
        se = (high - low) / math.sqrt(12 * bids.size)
        assert abs(bids.mean() - (low + high) / 2) < 4 * se
    # Draws are independent across providers.
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.06


def test_density_integrates_to_one_and_is_zero_outside_the_support() -> None:
    view = _View([1.6])
    strategy = Explore(markup_low=0.5, markup_high=2.5)
    low, high = strategy.support(np.array([0]), view)
    grid = np.linspace(0.0, 10.0, 200_001)
    density = strategy.bid_density(_order(), np.zeros(grid.size, np.int64), grid, view)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    assert density[grid < low[0]].max() == 0 and density[grid > high[0]].max() == 0
    inside = density[(grid > low[0]) & (grid < high[0])]
    assert np.allclose(inside, 1.0 / (1.6 * 1.25 * 2.0))
    # The tolerance widens the edges only by itself.
    edge = strategy.bid_density(_order(), np.array([0]), high + 1e-7, view, 1e-6)
    assert edge[0] > 0
    assert strategy.bid_density(_order(), np.array([0]), np.array([np.nan]), view)[0] == 0


def test_above_max_probability_is_the_share_of_draws_the_engine_drops() -> None:
    view = _View([1.0], net=False)
    strategy = Explore(markup_low=0.0, markup_high=1.0, seed=3)
    order = _order(max_usd_per_gpu_hour=1.3)
    assert strategy.above_max_probability(order, np.array([0]), view)[0] == pytest.approx(0.7)
    bids = np.concatenate([strategy.prices(order, np.array([0]), view) for _ in range(5000)])
    share = float((bids > 1.3).mean())
    assert abs(share - 0.7) < 4 * math.sqrt(0.7 * 0.3 / bids.size)
    assert strategy.above_max_probability(_order(0.5), np.array([0]), view)[0] == 1.0
    assert strategy.above_max_probability(_order(5.0), np.array([0]), view)[0] == 0.0


def test_same_seed_same_bids_other_seed_other_bids() -> None:
    view = _View([1.0, 2.0, 3.0])
    ids = np.arange(3)

    def bids(seed: int) -> np.ndarray:
        strategy = Explore(seed=seed)
        return np.array([strategy.prices(_order(), ids, view) for _ in range(5)])

    assert np.array_equal(bids(4), bids(4))
    assert not np.array_equal(bids(4), bids(5))


@pytest.mark.parametrize(("params", "named"), [
    ({"markup_low": -0.1}, "markup_low"),
    ({"markup_high": math.nan}, "markup_high"),
    ({"markup_low": 1.0, "markup_high": 1.0}, "markup_high"),
    ({"markup_low": 2.0, "markup_high": 1.0}, "markup_high"),
    ({"markup_low": True}, "markup_low"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"net_of_fee": "yes"}, "net_of_fee"),
])
def test_bad_parameters_are_one_line_naming_the_parameter(params, named) -> None:
    with pytest.raises(ValueError) as error:
        Explore(**params)
    message = str(error.value)
    assert message.startswith(named) and "\n" not in message


def test_registered_and_usable_in_a_scenario() -> None:
    assert load("strategies", "explore") is Explore
    scenario = load_scenario("default", [
        'providers.1.strategy={name="explore", params={markup_low=0.1, markup_high=0.9}}'])
    assert isinstance(scenario.providers[1].strategy.build(), Explore)
    with pytest.raises(ValueError, match="markup_high"):
        load_scenario("default", [
            'providers.1.strategy={name="explore", params={markup_low=0.9, markup_high=0.1}}'])

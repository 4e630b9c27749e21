"""The short cuts of per-order pricing give the very numbers of the plain computations.

With many providers, pricing an order runs over every eligible one; the engine takes short
cuts there (each strategy's bidders as one slice of the ascending eligible ids, a range check
of a strategy's own providers, margins kept in logs, the best serving cost divided once). Each
test here checks one short cut against the plain computation it replaces, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.learning import AdaptiveMargin
from agents.markups import CostPlus
from market.strategy import OrderView, Outcome
from market.units import order_cost_micro, order_rates_micro
from tests.market.test_engine import bare_market, provider, units

MODELS = ("h100", "a100-80gb", "l40s")


class Scaled:
    """Prices every order at cost × `factor` (per order, no state); no bid (NaN) for
    providers whose id is a multiple of `skip`, and a negative price for those one above."""

    def __init__(self, factor: float, skip: int = 0) -> None:
        self.factor, self.skip = factor, skip
        self.calls: list[np.ndarray] = []

    def prices(self, order, providers, view):
        self.calls.append(np.array(providers))
        bids = view.costs(providers) * self.factor
        if self.skip:
            bids[providers % self.skip == 0] = math.nan
            bids[providers % self.skip == 1] = -1.0
        return bids


class PartlyPosted(Scaled):
    """Posts an ask for even ids only: the odd ones are asked per order."""

    def asks(self, providers, view):
        return np.where(providers % 2 == 0, view.costs(providers) * 1.1, math.nan)


def _market(seed: int = 0):
    """Five populations, each on its own strategy: posted asks, per-order prices (one with
    NaN and negative bids), partly posted asks, and per-order again."""
    market = bare_market(seed=seed)
    rng = np.random.default_rng(seed)
    strategies = [CostPlus(markup=0.2), Scaled(1.3, skip=5), PartlyPosted(1.4), CostPlus(0.5),
                  Scaled(1.6)]
    for index, strategy in enumerate(strategies):
        rows = [provider(market, f"p{index}-{i}", model=MODELS[i % 3],
                         cost=float(rng.uniform(0.5, 3.0)), gpus=int(rng.integers(1, 9)))
                for i in range(int(rng.integers(5, 30)))]
        market.add_providers(rows, strategy)
    market.add_tenant("t", 1e9)
    return market, strategies


def _plain_price(market, order, ids):
    """`Bidding.price` as computed per provider: its strategy looked up, one call per
    strategy over a mask."""
    bidding = market.bidding
    prices = bidding._static_ask_micro[ids] * order.gpus
    dynamic = prices < 0
    if not dynamic.any():
        return prices
    prices = prices.astype(float)
    strategy_of = bidding.strategy_of(ids)
    view = OrderView.of(order)
    for index in np.unique(strategy_of[dynamic]).tolist():
        members = dynamic & (strategy_of == index)
        asked = np.asarray(bidding.strategies[index].prices(view, ids[members],
                                                            bidding.views[index]), float)
        prices[members] = order_rates_micro(asked, order.gpus)
    prices[~(prices > 0)] = np.nan
    return prices


@pytest.mark.parametrize("seed", range(4))
def test_bids_are_those_of_a_per_provider_lookup(seed: int) -> None:
    market, strategies = _market(seed)
    rng = np.random.default_rng(seed)
    order_id = market.post_order(0, units(2, MODELS), 50.0, deposit_usd=1.0)
    order = market.orders[order_id]
    everyone = np.arange(market.pool.n)
    for _ in range(30):  # ascending subsets of every size, some populations absent
        ids = np.sort(rng.choice(everyone, int(rng.integers(0, everyone.size + 1)),
                                 replace=False))
        for strategy in strategies:
            if isinstance(strategy, Scaled):
                strategy.calls.clear()
        fast = market.bidding.price(order, ids)
        calls = [list(map(list, s.calls)) for s in strategies if isinstance(s, Scaled)]
        plain = _plain_price(market, order, ids)
        plain_calls = [list(map(list, s.calls[len(c):])) for s, c in
                       zip([s for s in strategies if isinstance(s, Scaled)], calls,
                           strict=True)]
        assert fast.dtype == plain.dtype
        np.testing.assert_array_equal(fast, plain)
        # Each strategy was asked once, for the same providers, as before.
        assert calls == plain_calls


def test_a_strategy_reads_only_its_own_providers() -> None:
    market, _ = _market()
    view = market.bidding.views[1]
    low, high = view.members
    mine = np.arange(low, high)
    np.testing.assert_array_equal(view.costs(mine),
                                  market.pool.cost_basis_usd_per_gpu_hour[mine])
    for intruder in (low - 1, high, market.pool.n + 5, -1):
        with pytest.raises(PermissionError):
            view.costs(np.array([*mine[:2], intruder]))
    assert view.costs(np.zeros(0, np.int64)).size == 0


@pytest.mark.parametrize("seed", range(3))
def test_best_serving_cost_is_the_least_of_each_providers(seed: int) -> None:
    market, _ = _market(seed)
    rng = np.random.default_rng(seed)
    appraisal, pool = market.appraisal, market.pool
    for gpus in (1, 3, 8):
        for work in (None, rng.uniform(100.0, 1e6, len(market.catalog))):
            work_left = float(rng.uniform(0.01, 1.0)) if work is not None else 1.0
            order_id = market.post_order(0, units(gpus, MODELS), 80.0, deposit_usd=1.0,
                                         work_s=work, work_left=work_left)
            order = market.orders[order_id]
            for _ in range(10):
                ids = np.sort(rng.choice(pool.n, int(rng.integers(1, pool.n + 1)),
                                         replace=False))
                rate = order_cost_micro(pool.cost_marginal_usd_per_gpu_hour[ids], gpus)
                plain = rate if work is None else \
                    rate * order.work_s[pool.model[ids]] / order.work_left / 3600.0
                expected = min(order.outside_cost_micro, round(float(plain.min())))
                assert appraisal.best_cost_micro(order, ids) == expected


class PlainMargin:
    """AdaptiveMargin's margins as first written: margins stored, their log taken per bid,
    priced-out margins computed again."""

    def __init__(self, strategy: AdaptiveMargin, size: int) -> None:
        self.s = strategy
        self.margin = np.full(size, strategy.initial_margin)
        self.since = np.full(size, math.nan)
        self.busy = np.zeros(size, bool)

    def margins(self, providers, now_s):
        s = self.s
        elapsed = now_s - self.since[providers]
        elapsed = np.where(elapsed > 0.0, elapsed, 0.0)
        rate = np.where(self.busy[providers], s.beta, -s.alpha)
        log_margin = np.log(self.margin[providers]) + rate * elapsed
        return np.exp(np.minimum(np.maximum(log_margin, s._log_low), s._log_high))

    def commit(self, providers, now_s, busy):
        self.margin[providers] = self.margins(providers, now_s)
        self.since[providers] = now_s
        self.busy[providers] = busy

    def prices(self, costs, providers, now_s, cap):
        bids = (1.0 + self.margins(providers, now_s)) * costs
        priced_out = (bids > cap) & (costs <= cap)
        if priced_out.any():
            self.commit(providers[priced_out], now_s, False)
        return bids


@pytest.mark.parametrize("params", [
    {}, {"beta": 5e-5, "alpha": 5e-6, "min_margin": 0.4, "max_margin": 2.0,
         "initial_margin": 0.75},
    {"beta": 1e-3, "alpha": 2e-3, "min_margin": 0.0, "max_margin": 3.0, "initial_margin": 0.1}])
def test_adaptive_margin_bids_as_first_written(params) -> None:
    market, _ = _market()
    view = market.bidding.views[1]  # any view: its clock and costs are what both read
    low, high = view.members
    rng = np.random.default_rng(7)
    strategy = AdaptiveMargin(**params)
    plain = PlainMargin(strategy, high)
    now = 0.0
    for step in range(300):
        now += float(rng.exponential(2_000.0)) if step % 7 else 0.0
        market.env._now = now  # the view's clock: stepped by hand, no events run
        providers = np.sort(rng.choice(np.arange(low, high), int(rng.integers(1, high - low)),
                                       replace=False))
        gross_costs = view.costs(providers) * view.fee_gross_up()
        cap = float(np.quantile(gross_costs, 0.5) * rng.uniform(1.0, 3.0))
        order = OrderView.priced(step, 1, ("h100",), (), cap, now)
        bids = strategy.prices(order, providers, view)
        np.testing.assert_array_equal(bids, plain.prices(gross_costs, providers, now, cap))
        if step % 3 == 0:  # an auction outcome: one winner at most, the others lost
            won = rng.random(providers.size) < 0.2
            strategy.observe(Outcome(order, providers, bids, won, math.nan, now))
            plain.commit(providers, now, won)
    np.testing.assert_array_equal(strategy.margins(np.arange(low, high), now + 1e4),
                                  plain.margins(np.arange(low, high), now + 1e4))

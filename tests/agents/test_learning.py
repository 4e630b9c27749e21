"""Learning and theory-based bid strategies (agents.learning), driven by hand and in a market.

Unit tests call `prices` and `observe` directly with hand-made `OrderView`s and `Outcome`s, on
the real `MarketView` of a bare market whose providers have known costs. Those markets charge
no fee (take rate 0), so that bids are the textbook's; how every strategy prices a take rate in
(c / (1 − t) where it priced c) is tested on its own, with a 20% take rate: a gross-up of 1.25.
Hedge runs in a stationary synthetic first-price market: one rival whose bid is
U[cost, 2·cost], so that markup m wins with probability 1 − m and earns m·(1 − m)·cost per
round, best at m = 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from agents.equilibrium import Equilibrium, Truthful
from agents.learning import AdaptiveMargin, Hedge, Undercut
from agents.markups import CostPlus, ListPrice
from agents.providers import build_rows
from agents.tenants import Tenants
from market import Market, load_scenario
from market.core.pool import ProviderRow
from market.core.resources import gpu_units
from market.events import BidsPlaced, Event, LeaseCreated, OrderOpened
from market.strategy import OrderView, Outcome
from market.units import GIB, MICRO_USD_PER_USD

HOUR = 3600.0


# ----------------------------------------------------------------------------- helpers

def row(market: Market, name: str, cost: float, model: str = "h100", gpus: int = 8,
        latency_s: float = 3.0) -> ProviderRow:
    """A reliable provider costing `cost` USD per GPU-hour (every basis)."""
    return ProviderRow(
        name=name, population=0, model=market.catalog.index(model), gpus=gpus,
        cpu_millicores=4000 * gpus, memory_bytes=32 * GIB * gpus,
        storage_bytes=100 * GIB * gpus, ip_leases=0,
        storage_classes=("ephemeral", "beta2", "beta3"), audited=True,
        cost_full_usd_per_gpu_hour=cost, cost_marginal_usd_per_gpu_hour=cost,
        cost_idle_usd_per_gpu_hour=0.0, cost_fixed_usd_per_gpu_hour=0.0,
        cost_basis_usd_per_gpu_hour=cost, latency_log_median=math.log(latency_s),
        latency_sigma=0.0, failure_rate_per_s=0.0, repair_s=(HOUR, HOUR),
        churn_rate_per_s=0.0, offline_s=(86_400.0, 86_400.0))


def bare_market(*overrides: str) -> Market:
    """A market without agents and, unless `overrides` set one, without a take rate (AEP-23
    settlement, whose take rate these tests vary)."""
    scenario = load_scenario("default", ["market.manifest_failure_prob=0",
                                         'market.settlement="aep23"', "market.take_rate=0",
                                         *overrides])
    return Market(scenario, seed=0, populate=False, record=False)


def market_with(strategy, costs, models=None, overrides=()):
    """A bare market whose providers (costs in USD per GPU-hour) all bid with `strategy`;
    returns the market, their ids and their strategy's view."""
    market = bare_market(*overrides)
    models = models or ["h100"] * len(costs)
    rows = [row(market, f"p{i}", c, m) for i, (c, m) in enumerate(zip(costs, models,
                                                                       strict=True))]
    ids = market.add_providers(rows, strategy)
    return market, ids, market.views[len(market.strategies) - 1]


def order(order_id: int = 0, max_price: float = 100.0, gpus: int = 1,
          models: tuple[str, ...] = ("h100",), created_s: float = 0.0) -> OrderView:
    return OrderView.priced(order_id, gpus, models, (), max_price, created_s)


def outcome(the_order: OrderView, providers, bids, won, clearing: float,
            time_s: float) -> Outcome:
    return Outcome(the_order, np.asarray(providers, np.int64), np.asarray(bids, float),
                   np.asarray(won, bool), clearing, time_s)


def units(gpus: int = 1, models: tuple[str, ...] = ("h100",)):
    return gpu_units(gpus, models, cpu_millicores_per_gpu=4000, memory_bytes_per_gpu=32 * GIB,
                     storage_bytes_per_gpu=100 * GIB)


# ----------------------------------------------------------------------------- Truthful

def test_truthful_bids_exactly_its_cost_basis_in_a_market():
    costs = [0.5, 1.25, 2.0]
    market, ids, view = market_with(Truthful(), costs)
    assert Truthful().asks(ids, view) == pytest.approx(costs)
    assert Truthful().prices(order(), ids, view) == pytest.approx(costs)
    tenant = market.add_tenant("alice", 1_000.0)
    events: list[Event] = []
    market.subscribe(events.append)
    market.post_order(tenant, units(2), 5.0, deposit_usd=100.0)
    (placed,) = [e for e in events if isinstance(e, BidsPlaced)]
    by_provider = dict(zip(placed.providers, placed.prices_micro_per_hour, strict=True))
    assert by_provider == {int(p): round(c * 2 * MICRO_USD_PER_USD)
                           for p, c in zip(ids, costs, strict=True)}


# ----------------------------------------------------------------------------- AdaptiveMargin

def test_adaptive_margin_matches_golem_des_over_1000_seconds():
    # golem-des's own unit tests: margin 1.0 → 1.01005 after 1,000 s busy, 0.99004 idle.
    strategy = AdaptiveMargin()
    _, ids, view = market_with(strategy, [1.0, 1.0])
    the_order = order()
    strategy.prices(the_order, ids, view)
    strategy.observe(outcome(the_order, ids, [2.0, 2.0], [True, False], 2.0, 0.0))
    assert strategy.margins(ids, 1000.0) == pytest.approx([1.01005, 0.99004], abs=1e-5)


def test_adaptive_margin_rises_after_wins_and_falls_after_losses():
    strategy = AdaptiveMargin(beta=1e-4, alpha=2e-4, initial_margin=0.5)
    market, ids, view = market_with(strategy, [1.0, 2.0])
    (p, q) = ids.tolist()
    first = strategy.prices(order(0), ids, view)
    assert first == pytest.approx([1.5, 3.0])
    strategy.observe(outcome(order(0), [p, q], first, [True, False], 1.5, 0.0))
    # Busy since t=0 for p, idle for q: the margins move with time until the next outcome.
    market.env.run(until=HOUR)
    later = strategy.prices(order(1, created_s=HOUR), ids, view)
    assert later == pytest.approx([1 + 0.5 * math.exp(1e-4 * HOUR),
                                   2 * (1 + 0.5 * math.exp(-2e-4 * HOUR))])
    # A loss now turns p idle: from here its margin shrinks.
    strategy.observe(outcome(order(1), [p], later[:1], [False], 1.0, HOUR))
    top = strategy.margins([p], HOUR)[0]
    assert strategy.margins([p], 2 * HOUR)[0] == pytest.approx(top * math.exp(-2e-4 * HOUR))
    # An expired order (no clearing price) is a loss too; a win after it makes it rise.
    strategy.observe(outcome(order(2), [q], [3.0], [False], math.nan, HOUR))
    strategy.observe(outcome(order(3), [q], [3.0], [True], 3.0, 2 * HOUR))
    low = strategy.margins([q], 2 * HOUR)[0]
    assert low == pytest.approx(0.5 * math.exp(-2e-4 * 2 * HOUR))
    assert strategy.margins([q], 3 * HOUR)[0] == pytest.approx(low * math.exp(1e-4 * HOUR))


def test_adaptive_margin_stays_in_its_bounds_and_never_bids_below_cost():
    strategy = AdaptiveMargin(beta=1e-3, alpha=1e-3, min_margin=0.0, max_margin=2.0)
    market, ids, view = market_with(strategy, [0.8])
    strategy.observe(outcome(order(0), ids, [1.6], [True], 1.6, 0.0))
    assert strategy.margins(ids, 1e6)[0] == pytest.approx(2.0)
    strategy.observe(outcome(order(1), ids, [2.4], [False], 2.0, 1e6))
    assert strategy.margins(ids, 1e6)[0] == pytest.approx(2.0)
    market.env.run(until=2e6)
    assert strategy.margins(ids, 2e6)[0] == pytest.approx(1e-9)  # near zero, not zero
    bid = strategy.prices(order(2), ids, view)[0]
    assert bid >= 0.8 and bid == pytest.approx(0.8)
    strategy.observe(outcome(order(2), ids, [0.8], [True], 0.8, 2e6))
    assert strategy.margins(ids, 2e6 + 1000)[0] == pytest.approx(1e-9 * math.exp(1.0))
    floored = AdaptiveMargin(alpha=1e-3, min_margin=0.2, initial_margin=0.5)
    floored.observe(outcome(order(0), ids, [1.0], [False], 0.9, 0.0))
    assert floored.margins(ids, 1e6)[0] == pytest.approx(0.2)


def test_adaptive_margin_counts_an_order_it_prices_out_of_as_a_loss():
    strategy = AdaptiveMargin(beta=1e-4, alpha=1e-4, initial_margin=1.0)
    market, ids, view = market_with(strategy, [1.0])
    strategy.observe(outcome(order(0), ids, [2.0], [True], 2.0, 0.0))  # busy from t=0
    market.env.run(until=HOUR)
    margin = strategy.margins(ids, HOUR)[0]
    assert strategy.prices(order(1, max_price=1.5), ids, view)[0] > 1.5  # refused
    # Idle from the refused order on, as if it had lost.
    assert strategy.margins(ids, 2 * HOUR)[0] == pytest.approx(margin * math.exp(-1e-4 * HOUR))
    # An order it cannot serve even at cost says nothing about its margin.
    other = AdaptiveMargin(beta=1e-4, alpha=1e-4, initial_margin=1.0)
    _, ids2, view2 = market_with(other, [1.0])
    other.observe(outcome(order(0), ids2, [2.0], [True], 2.0, 0.0))
    other.prices(order(1, max_price=0.5), ids2, view2)
    assert other.margins(ids2, 2 * HOUR)[0] == pytest.approx(math.exp(1e-4 * 2 * HOUR))


# ----------------------------------------------------------------------------- Undercut

class FakeView:
    """A MarketView stand-in: own costs and models, published prices by model."""

    def __init__(self, costs, models, published: dict[str, list[float]],
                 gross_up: float = 1.0) -> None:
        self._costs = np.asarray(costs, float)
        self.gpu_models = ("h100", "rtx4090")
        self._models = np.array([self.gpu_models.index(m) for m in models])
        self._published = published
        self._gross_up = gross_up
        self.now_s = 0.0

    def fee_gross_up(self) -> float:
        return self._gross_up

    def costs(self, providers, basis: str = "basis"):
        return self._costs[np.asarray(providers)]

    def models(self, providers):
        return self._models[np.asarray(providers)]

    def clearing_prices(self, gpu_model: str):
        return np.asarray(self._published.get(gpu_model, []), float)


def test_undercut_bids_below_the_mean_of_recent_prices_of_its_own_model():
    published = {"h100": [9.0] * 5 + [2.0, 2.2, 2.4, 2.6], "rtx4090": [0.3]}
    view = FakeView([1.0, 1.0, 0.1, 0.5], ["h100", "h100", "rtx4090", "rtx4090"], published)
    providers = np.arange(4)
    bids = Undercut(fraction=0.1, window=4).prices(order(models=("h100", "rtx4090")),
                                                  providers, view)
    # The h100 window is the last four prices, mean 2.3; the rtx4090 window its one price;
    # a provider whose cost is above the going rate bids its cost.
    assert bids == pytest.approx([0.9 * 2.3, 0.9 * 2.3, 0.9 * 0.3, 0.5])


def test_undercut_falls_back_to_a_markup_without_published_prices():
    view = FakeView([1.0, 0.2], ["h100", "rtx4090"], {"h100": [3.0]})
    bids = Undercut(fraction=0.05, fallback_markup=0.4).prices(order(), np.arange(2), view)
    assert bids == pytest.approx([0.95 * 3.0, 0.2 * 1.4])


def test_undercut_follows_the_prices_the_market_publishes():
    """Leases made by hand at known prices in a real market move Undercut's bid."""
    market = bare_market("market.bid_deposit_usd=0")
    strategy = Undercut(fraction=0.05, window=3)
    ids = market.add_providers([row(market, "u", 1.0, latency_s=1e6)], strategy)  # never bids
    hand = market.add_providers([row(market, f"h{i}", 0.5) for i in range(4)], None)
    view = market.views[0]
    tenant = market.add_tenant("alice", 10_000.0)
    assert strategy.prices(order(), ids, view)[0] == pytest.approx(1.3)
    quotes = []
    for i, price in enumerate([4.0, 0.8, 0.7, 0.6]):
        order_id = market.post_order(tenant, units(1), 10.0, deposit_usd=100.0,
                                     auto_select=False)
        bid = market.submit_bid(order_id, int(hand[i]), price)
        market.accept_bid(order_id, bid)
        quotes.append(strategy.prices(order(100 + i), ids, view)[0])
    assert view.clearing_prices("h100") == pytest.approx([4.0, 0.8, 0.7, 0.6])
    # The mean of the last three prices falls to 0.7, below cost: then it bids its cost.
    assert quotes == pytest.approx([0.95 * 4.0, 0.95 * 2.4, 0.95 * 5.5 / 3, 1.0])


# ----------------------------------------------------------------------------- Equilibrium

@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_equilibrium_for_uniform_costs_is_c_plus_one_minus_c_over_n(n):
    strategy = Equilibrium(n=n)
    costs = np.linspace(0.0, 1.0, 11)
    view = FakeView(costs, ["h100"] * costs.size, {})
    assert strategy.asks(np.arange(costs.size), view) == pytest.approx(costs + (1 - costs) / n)
    shifted = Equilibrium(n=n, low=2.0, high=6.0)
    assert shifted.bid(3.0) == pytest.approx(3.0 + 3.0 / n)
    assert shifted.bid(1.0) == pytest.approx(shifted.bid(2.0))  # below the support
    assert shifted.bid(7.0) == 7.0                              # above it: bid the cost


def test_equilibrium_is_a_best_response_to_itself_for_uniform_costs():
    """Against n − 1 rivals bidding b(C), C ~ U[0,1], bidding b(c) maximizes expected profit
    (x − c) · P(every rival bids above x)."""
    n, strategy = 4, Equilibrium(n=4)
    x = np.linspace(0.0, 1.0, 100_001)
    rival_cost_above = np.clip(1 - (n * x - 1) / (n - 1), 0.0, 1.0)  # b(C) > x ⟺ C > that
    for c in [0.0, 0.3, 0.7]:
        profit = (x - c) * rival_cost_above ** (n - 1)
        assert strategy.bid(c) == pytest.approx(x[np.argmax(profit)], abs=1e-4)


def test_equilibrium_pays_two_over_n_plus_one_on_average_for_uniform_costs():
    """Revenue equivalence: the expected lowest equilibrium bid is 2/(n+1)."""
    n, rounds = 5, 20_000
    costs = np.random.default_rng(7).uniform(size=(rounds, n))
    view = FakeView(costs.ravel(), ["h100"] * costs.size, {})
    bids = Equilibrium(n=n).asks(np.arange(costs.size), view).reshape(rounds, n)
    paid = bids.min(axis=1)
    assert abs(paid.mean() - 2 / (n + 1)) < 4 * paid.std() / math.sqrt(rounds)


def test_equilibrium_for_exponential_costs_is_the_memoryless_markup():
    strategy = Equilibrium(n=4, distribution="exponential", low=0.5, scale=2.0)
    for c in [0.0, 0.5, 1.0, 3.0, 12.0]:
        # b(c) = c + scale/(n − 1) above `low`; below it, b(low).
        assert strategy.bid(c) == pytest.approx(max(c, 0.5) + 2.0 / 3, rel=1e-7)


def test_equilibrium_for_lognormal_costs_matches_the_integral_and_a_simulation():
    n, sigma, scale = 4, 0.5, 1.0
    strategy = Equilibrium(n=n, distribution="lognormal", sigma=sigma, scale=scale)
    dist = stats.lognorm(sigma, scale=scale)
    # The lowest of the n − 1 rivals' costs, for the expectation check below.
    rivals = np.random.default_rng(3).lognormal(0.0, sigma, size=(400_000, n - 1)).min(axis=1)
    for c in [0.3, 1.0, 2.0]:
        grid = np.linspace(c, dist.ppf(1 - 1e-12), 200_001)
        tail = integrate.trapezoid(dist.sf(grid) ** (n - 1), grid) / dist.sf(c) ** (n - 1)
        assert strategy.bid(c) == pytest.approx(c + tail, rel=1e-6)
        # b(c) is the expected lowest rival cost, given that it is above c.
        above = rivals[rivals > c]
        assert abs(strategy.bid(c) - above.mean()) < 4 * above.std() / math.sqrt(above.size)
    assert 1e9 < strategy.bid(1e9) < 1.01e9  # far in the tail the integral still holds


def test_equilibrium_needs_the_number_of_bidders():
    with pytest.raises(ValueError, match=r"^n: the number of bidders") as caught:
        Equilibrium()
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"^n: "):
        Equilibrium(n=1)


# ----------------------------------------------------------------------------- Hedge

def first_price_rounds(strategy: Hedge, view, providers: np.ndarray, rounds: int, seed: int,
                       checkpoints=(), max_price: float = 100.0):
    """Run `rounds` first-price auctions per provider against one rival bidding
    U[cost, 2·cost]; returns the bids and the strategy's regret per round at `checkpoints`."""
    rng = np.random.default_rng(seed)
    costs = view.costs(providers)
    bids, regret_per_round, order_id = [], {}, 0
    for t in range(1, rounds + 1):
        rival = costs * rng.uniform(1.0, 2.0, size=providers.size)
        for i, p in enumerate(providers.tolist()):
            the_order = order(order_id, max_price=max_price)
            order_id += 1
            bid = strategy.prices(the_order, np.array([p]), view)[0]
            bids.append(bid)
            if math.isnan(bid):
                continue
            won = bid < rival[i]
            strategy.observe(outcome(the_order, [p], [bid], [won],
                                     bid if won else rival[i], 0.0))
        if t in checkpoints:
            regret_per_round[t] = strategy.regret() / providers.size / t
    return np.array(bids), regret_per_round


@pytest.fixture(scope="module")
def unit_cost_view():
    market = bare_market()
    ids = market.add_providers([row(market, f"p{i}", 1.0) for i in range(8)], Truthful())
    return ids, market.views[0]


def test_hedge_is_deterministic_for_a_seed(unit_cost_view):
    ids, view = unit_cost_view
    runs = [first_price_rounds(Hedge(seed=seed), view, ids, 30, seed=1)[0]
            for seed in (5, 5, 6)]
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_hedge_bids_between_cost_and_max_price(unit_cost_view):
    ids, view = unit_cost_view
    strategy = Hedge(seed=2)
    bids, _ = first_price_rounds(strategy, view, ids, 50, seed=2, max_price=1.55)
    assert ((bids >= 1.0) & (bids <= 1.55)).all()
    assert set(np.round(bids, 9)) <= {1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.55}
    assert np.isnan(strategy.prices(order(10**6, max_price=0.9), ids, view)).all()


class FixedDraw:
    """Stands in for Hedge's generator: every draw is `u`, so with (nearly) uniform weights
    over three arms, u = 0.1, 0.5, 0.9 plays arm 0, 1, 2."""

    def __init__(self) -> None:
        self.u = 0.5

    def random(self, size: int) -> np.ndarray:
        return np.full(size, self.u)


def test_hedge_reads_each_arm_from_the_outcome_and_imputes_what_it_cannot_see(
        unit_cost_view):
    ids, view = unit_cost_view
    p = int(ids[0])
    # Arms bid 1.0, 1.5, 2.0 at cost 1; a tiny fixed rate keeps the weights uniform.
    hedge = Hedge(markups=(1.0, 0.0, 0.5), eta=1e-12, bandit=False)
    assert hedge.markups.tolist() == [0.0, 0.5, 1.0]  # sorted
    assert Hedge(markups="1, 0, 0.5").markups.tolist() == [0.0, 0.5, 1.0]  # from a scenario
    draw = hedge._rng = FixedDraw()
    order_ids = iter(range(100))

    def play(arm: int, won: bool, clearing: float) -> np.ndarray:
        before = hedge.arm_payoffs(p)
        draw.u = (0.1, 0.5, 0.9)[arm]
        the_order = order(next(order_ids))
        bid = hedge.prices(the_order, np.array([p]), view)[0]
        assert bid == 1.0 + hedge.markups[arm]
        hedge.observe(outcome(the_order, [p], [bid], [won], clearing, 0.0))
        return hedge.arm_payoffs(p) - before

    # Bid 2.0, lost at 1.6 (the winner's bid): arms bidding below it would have won.
    assert play(2, False, 1.6) == pytest.approx([0.0, 0.5, 0.0])
    # Expired: nothing for anyone.
    assert play(1, False, math.nan) == pytest.approx([0.0, 0.0, 0.0])
    # Bid 1.0, won and paid 1.8 (second price): arms bidding at most 1.8 are paid 1.8.
    assert play(0, True, 1.8) == pytest.approx([0.8, 0.8, 0.0])
    assert hedge.payoff(p) == pytest.approx(0.8)
    # Bid 2.0, lost at 1.2.
    assert play(2, False, 1.2) == pytest.approx([0.0, 0.0, 0.0])
    # Bid 1.0, won at 1.0 (pay as bid): the price to beat was above 1.0, by how much unseen.
    # Prices to beat seen: 1.6, 1.8, 1.2, all above 1.0; one of three fell at or below 1.5,
    # both left fell at or below 2.0: imputed (1.5 − 1)·2/3 and (2.0 − 1)·0.
    assert play(0, True, 1.0) == pytest.approx([0.0, 0.5 * 2 / 3, 0.0])
    assert hedge.regret(p) == pytest.approx(hedge.arm_payoffs(p).max() - 0.8)
    # With nothing seen yet above the winning bid, higher arms are assumed to win as well.
    fresh = Hedge(markups=(0.0, 0.5, 1.0), eta=1e-12, bandit=False)
    fresh._rng = FixedDraw()
    fresh._rng.u = 0.1
    bid = fresh.prices(order(0), np.array([p]), view)[0]
    fresh.observe(outcome(order(0), [p], [bid], [True], bid, 0.0))
    assert fresh.arm_payoffs(p) == pytest.approx([0.0, 0.5, 1.0])


def test_hedge_reads_the_price_to_beat_from_public_bids_without_imputing(unit_cost_view):
    ids, view = unit_cost_view
    p = int(ids[0])
    hedge = Hedge(markups=(0.0, 0.5, 1.0), eta=1e-12, bandit=False)
    draw = hedge._rng = FixedDraw()
    order_ids = iter(range(100))

    def play(arm: int, won: bool, clearing: float, public: list[float]) -> np.ndarray:
        before = hedge.arm_payoffs(p)
        draw.u = (0.1, 0.5, 0.9)[arm]
        the_order = order(next(order_ids))
        bid = hedge.prices(the_order, np.array([p]), view)[0]
        hedge.observe(Outcome(the_order, np.array([p]), np.array([bid]), np.array([won]),
                              clearing, 0.0, np.array(public)))
        return hedge.arm_payoffs(p) - before

    # Bid 1.0, won at 1.0 (pay as bid); the chain shows rivals at 1.8 and 1.6: an arm
    # bidding 1.5 would have won too, one bidding 2.0 would not. Nothing imputed.
    assert play(0, True, 1.0, [1.8, 1.0, 1.6]) == pytest.approx([0.0, 0.5, 0.0])
    # Bid 1.0, won at 1.8 (second price) against one rival at 1.8: arms up to 1.8 paid 1.8.
    assert play(0, True, 1.8, [1.0, 1.8]) == pytest.approx([0.8, 0.8, 0.0])
    # Alone on the order, paid the max price (100) under second price: every arm wins it.
    assert play(0, True, 100.0, [1.0]) == pytest.approx([99.0, 99.0, 99.0])
    # Lost at 1.6 with the own bid 2.0 public too: the price to beat is 1.6.
    assert play(2, False, 1.6, [2.0, 1.6, 1.7]) == pytest.approx([0.0, 0.5, 0.0])


def test_hedge_weights_concentrate_on_the_best_markup(unit_cost_view):
    """m·(1 − m) is largest at m = 0.5: full information puts nearly all weight there, the
    bandit most of it, after 2,000 rounds."""
    ids, view = unit_cost_view
    markups = (0.0, 0.25, 0.5, 0.75, 1.0)
    full = Hedge(markups=markups, bandit=False, seed=0)
    first_price_rounds(full, view, ids[:4], 2000, seed=10)
    assert (full.weights()[ids[:4], 2] > 0.95).all()
    bandit = Hedge(markups=markups, bandit=True, seed=0)
    first_price_rounds(bandit, view, ids[:4], 2000, seed=10)
    mean = bandit.weights()[ids[:4]].mean(axis=0)
    assert np.argmax(mean) == 2 and mean[2] > 0.5
    assert full.weights(int(ids[0])).shape == (5,)


@pytest.mark.parametrize("bandit", [True, False])
def test_hedge_regret_per_round_shrinks_as_rounds_grow(unit_cost_view, bandit):
    """Regret is O(sqrt(T K ln K)) (EXP3) or O(sqrt(T ln K)) (Hedge): regret/T falls like
    1/sqrt(T), by sqrt(10) ≈ 3.2 from T=200 to T=2,000 at the bound. At T=200 the regret is
    still capped by near-uniform play, so the bandit's fall is smaller: we ask for a fall by
    a third (bandit) or by half (full information), and for both to be under the bound (in
    units of the most an arm earns, cost × max markup = 1)."""
    ids, view = unit_cost_view
    strategy = Hedge(bandit=bandit, seed=1)
    k = strategy.markups.size
    _, per_round = first_price_rounds(strategy, view, ids, 2000, seed=20,
                                      checkpoints=(200, 2000))
    assert per_round[2000] < (0.75 if bandit else 0.5) * per_round[200]
    for t, regret in per_round.items():
        bound = (2 * math.sqrt(2 * t * k * math.log(k)) if bandit
                 else 2 * math.sqrt(t * math.log(k) / 2) + math.sqrt(math.log(k) / 8))
        assert 0 < regret * t < bound
    per_provider = [strategy.regret(int(p)) for p in ids]
    assert sum(per_provider) == pytest.approx(strategy.regret())


def test_hedge_forgets_draws_whose_outcome_never_comes(unit_cost_view):
    ids, view = unit_cost_view
    strategy = Hedge(seed=0)
    last = Hedge.PENDING_ORDERS + 10
    bids = [strategy.prices(order(i), ids[:1], view)[0] for i in range(last + 1)]
    strategy.observe(outcome(order(0), ids[:1], [bids[0]], [True], bids[0], 0.0))
    assert strategy.payoff() == 0.0  # forgotten: the outcome is ignored
    strategy.observe(outcome(order(last), ids[:1], [bids[-1]], [True], bids[-1], 0.0))
    assert strategy.payoff() == pytest.approx(bids[-1] - 1.0)


# ----------------------------------------------------------------------------- the take rate

FEE = ("market.take_rate=0.2",)          # a gross-up of 1 / (1 − 0.2) = 1.25
NO_FEE_PRICING = ("market.take_rate=0.2", "market.bids_net_of_fee=false")

FEE_STRATEGIES = {
    "truthful": Truthful,
    "adaptive_margin": lambda: AdaptiveMargin(initial_margin=0.3),
    "undercut": Undercut,
    "equilibrium": lambda: Equilibrium(n=3, high=5.0),
    "hedge": lambda: Hedge(seed=3),
    "cost_plus": lambda: CostPlus(markup=0.2),
    "list_price": lambda: ListPrice(factor=0.5),
}


@pytest.mark.parametrize("name", list(FEE_STRATEGIES))
def test_every_builtin_strategy_grosses_its_bid_up_by_one_over_one_minus_the_take_rate(name):
    """Priced net of a 20% fee, each strategy bids 1.25 × what it bids when it ignores the
    fee; with the switch off it bids what it would without any fee."""
    costs, models = [0.5, 1.0, 2.0, 0.3], ["h100", "h100", "a100-80gb", "rtx4090"]
    bids = {}
    for label, overrides in (("fee", FEE), ("ignored", NO_FEE_PRICING), ("none", ())):
        market, ids, view = market_with(FEE_STRATEGIES[name](), costs, models, overrides)
        the_order = order(max_price=100.0, models=("h100", "a100-80gb", "rtx4090"))
        bids[label] = market.strategies[0].prices(the_order, ids, view)
    assert bids["fee"] == pytest.approx(1.25 * bids["ignored"])
    assert bids["ignored"] == pytest.approx(bids["none"])


def test_truthful_and_equilibrium_bids_for_two_bidders_at_a_20_percent_fee():
    """By hand, cost 0.4 of U[0, 1], n = 2, t = 0.2: truthful 0.4 / 0.8 = 0.5; the first-price
    equilibrium (0.4 + (1 − 0.4)/2) / 0.8 = 0.875; each keeps its cost (or the fee-free
    equilibrium bid 0.7) after the fee."""
    _, ids, view = market_with(Truthful(), [0.4], overrides=FEE)
    assert Truthful().asks(ids, view) == pytest.approx([0.5])
    _, ids, view = market_with(Equilibrium(n=2), [0.4], overrides=FEE)
    assert Equilibrium(n=2).asks(ids, view) == pytest.approx([0.875])
    assert Equilibrium(n=2).bid(0.4) == pytest.approx(0.8 * 0.875)


def test_adaptive_margin_counts_a_price_out_only_when_it_could_serve_after_the_fee():
    """Cost 1, 20% fee: the floor is 1.25. A max price of 1.1 covers the cost but not the
    fee: the order says nothing about the margin. One of 1.5 could be served: a loss."""
    strategy = AdaptiveMargin(beta=1e-4, alpha=1e-4, initial_margin=1.0)
    market, ids, view = market_with(strategy, [1.0], overrides=FEE)
    strategy.observe(outcome(order(0), ids, [2.5], [True], 2.5, 0.0))  # busy from t=0
    market.env.run(until=HOUR)
    assert strategy.prices(order(1, max_price=1.1), ids, view)[0] == pytest.approx(
        1.25 * (1 + math.exp(1e-4 * HOUR)))
    assert strategy.margins(ids, 2 * HOUR)[0] == pytest.approx(math.exp(1e-4 * 2 * HOUR))
    margin = strategy.margins(ids, HOUR)[0]
    strategy.prices(order(2, max_price=1.5), ids, view)
    assert strategy.margins(ids, 2 * HOUR)[0] == pytest.approx(margin * math.exp(-1e-4 * HOUR))


def test_undercut_never_bids_below_the_fee_grossed_cost():
    view = FakeView([1.0, 2.0], ["h100", "h100"], {"h100": [2.0]}, gross_up=1.25)
    bids = Undercut(fraction=0.1).prices(order(), np.arange(2), view)
    assert bids == pytest.approx([0.9 * 2.0, 2.0 * 1.25])  # the going rate, or the floor
    empty = FakeView([1.0], ["h100"], {}, gross_up=1.25)
    assert Undercut(fallback_markup=0.3).prices(order(), np.arange(1), empty) == \
        pytest.approx([1.0 * 1.3 * 1.25])


def test_hedge_bids_on_the_fee_grossed_cost_and_counts_what_it_keeps():
    """Cost 1, 20% fee: arms bid 1.25 × (1 + markup) = 1.25, 1.875, 2.5. Winning with the
    lowest at a second price of 2.0 keeps 0.8 × 2.0 − 1 = 0.6; the arm bidding 1.875 would
    have won as well, and kept as much."""
    _, ids, view = market_with(Truthful(), [1.0], overrides=FEE)
    p = int(ids[0])
    hedge = Hedge(markups=(0.0, 0.5, 1.0), eta=1e-12, bandit=False)
    hedge._rng = FixedDraw()
    hedge._rng.u = 0.1
    bid = hedge.prices(order(0), ids, view)[0]
    assert bid == pytest.approx(1.25)
    hedge.observe(outcome(order(0), [p], [bid], [True], 2.0, 0.0))
    assert hedge.payoff(p) == pytest.approx(0.6)
    assert hedge.arm_payoffs(p) == pytest.approx([0.6, 0.6, 0.0])
    # An order whose max price is below the floor (1.2 < 1.25) gets no bid.
    assert np.isnan(hedge.prices(order(1, max_price=1.2), ids, view)).all()


# ----------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("make", [
    lambda: AdaptiveMargin(beta=-1.0),
    lambda: AdaptiveMargin(min_margin=-0.1),
    lambda: AdaptiveMargin(min_margin=2.0, max_margin=1.0),
    lambda: AdaptiveMargin(initial_margin=0.0),
    lambda: Undercut(fraction=1.0),
    lambda: Undercut(window=0),
    lambda: Undercut(fallback_markup=-0.1),
    lambda: Equilibrium(n=3, distribution="pareto"),
    lambda: Equilibrium(n=3, low=1.0, high=1.0),
    lambda: Equilibrium(n=3, distribution="lognormal", sigma=0.0),
    lambda: Hedge(markups=()),
    lambda: Hedge(markups=(-0.1, 0.2)),
    lambda: Hedge(markups="0, lots"),
    lambda: Hedge(eta=0.0),
])
def test_invalid_parameters_raise_one_line_value_errors(make):
    with pytest.raises(ValueError) as caught:
        make()
    assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- in a market

STRATEGIES = {
    "truthful": Truthful,
    "adaptive_margin": lambda: AdaptiveMargin(initial_margin=0.3),
    "undercut": Undercut,
    "equilibrium": lambda: Equilibrium(n=5, high=5.0),
    "hedge": lambda: Hedge(seed=3),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_runs_a_market_that_leases_and_conserves_money(name):
    # AEP-23's 20% take rate: the strongest test of pricing the fee in.
    scenario = load_scenario("default", ["duration_days=0.25", 'market.settlement="aep23"'])
    market = Market(scenario, seed=4, populate=False, record=False)
    strategies = []
    for index, population in enumerate(scenario.providers):
        rng = market.streams.get(f"providers.{population.name}.inventory")
        strategies.append(STRATEGIES[name]())
        market.add_providers(build_rows(population, index, market.catalog, rng),
                             strategies[-1])
    Tenants(market).start()
    events: list[Event] = []
    market.subscribe(events.append, kinds=(OrderOpened, BidsPlaced, LeaseCreated))
    summary = market.run().summary
    assert summary["money_conserved"]
    assert summary["leases_created"] > 0
    gpus = {e.order_id: e.gpus for e in events if isinstance(e, OrderOpened)}
    cost = market.pool.cost_basis_usd_per_gpu_hour
    placed = [e for e in events if isinstance(e, BidsPlaced)]
    assert placed
    for event in placed:
        per_gpu_hour = (np.array(event.prices_micro_per_hour)
                        / gpus[event.order_id] / MICRO_USD_PER_USD)
        # The fee, if any, is priced in: no bid keeps less than its cost after it. Bids are
        # kept in whole micro-USD per order-hour: at most half a micro below.
        kept = (1 - scenario.market.fee_rate) * per_gpu_hour
        assert (kept >= cost[list(event.providers)] - 1e-6).all()
    if name == "hedge":
        assert sum(int(s._rounds.sum()) for s in strategies) > 0
        assert all(s.payoff() >= 0 and np.isfinite(s.regret()) for s in strategies)
    if name == "adaptive_margin":
        heard = np.flatnonzero(~np.isnan(strategies[0]._since_s))
        assert heard.size and (strategies[0].margins(heard, market.now) != 0.3).any()

"""Learning bidders in the textbook market move toward the first-price equilibrium.

With i.i.d. U[0, 1] costs, n bidders and a take rate t priced in, the symmetric equilibrium
bid is (c + (1 − c)/n) / (1 − t): each bidder asks a share 1/n of the headroom between its
fee-grossed cost c / (1 − t) and the reserve 1 / (1 − t). Hedge over shares of the headroom
(form "shade"), playing against copies of itself in the real market, should learn shares near
1/n, and the price the buyer pays should approach the equilibrium's 2/(n + 1) / (1 − t).
"""

from __future__ import annotations

import numpy as np

from market import Market, load_scenario

BIDDERS = 3
AUCTIONS = 8000


def test_hedge_self_play_approaches_the_first_price_equilibrium():
    grid = ",".join(f"{x:.2f}" for x in np.arange(0, 1.0001, 0.05))
    scenario = load_scenario("textbook", [
        "market.mechanism=first_price", f"textbook.bidders={BIDDERS}",
        f"textbook.auctions={AUCTIONS}", "duration_days=1.3",
        f'textbook.strategy={{ name = "hedge", params = {{ bandit = false, form = "shade", '
        f'markups = "{grid}" }} }}'])
    market = Market(scenario, seed=4)
    result = market.run()
    hedge = market.strategies[0]
    learned = (hedge.weights() * hedge.markups).sum(axis=1)  # each bidder's expected share
    equilibrium_share = 1 / BIDDERS
    # Arms are 0.05 apart: every bidder ends within two grid steps of the equilibrium share,
    # far from where it started (uniform weights: a mean share of 0.5).
    assert np.all(np.abs(learned - equilibrium_share) < 0.1), learned
    prices = np.asarray(result.leases.column("price_usd_per_gpu_hour").to_pylist())
    theory = 2 / (BIDDERS + 1) / (1 - scenario.market.take_rate)
    quarter = prices.size // 4
    first, last = prices[:quarter], prices[-quarter:]
    # The buyer's price moves toward the equilibrium's: the gap shrinks by more than the
    # noise of the two quarter means (2 standard errors of their difference).
    noise = 2 * np.sqrt(first.var(ddof=1) / first.size + last.var(ddof=1) / last.size)
    assert abs(first.mean() - theory) - abs(last.mean() - theory) > noise
    assert result.summary["allocative_efficiency"] > 0.9


def test_shade_form_is_checked():
    import pytest

    from agents.learning import Hedge

    with pytest.raises(ValueError, match="form"):
        Hedge(form="multiply")
    with pytest.raises(ValueError, match="headroom"):
        Hedge(form="shade", markups=(0.0, 1.5))
    assert Hedge(form="shade", markups="0, 0.5, 1").markups.tolist() == [0.0, 0.5, 1.0]


def test_outcomes_carry_every_public_bid():
    from market.strategy import Outcome

    heard: list[Outcome] = []

    class Listener:
        def asks(self, providers, view):
            return view.costs(providers)

        def prices(self, order, providers, view):
            return view.costs(providers)

        def observe(self, outcome):
            heard.append(outcome)

    from market import registry

    registry.register("strategies", "listener_for_test", Listener)
    try:
        scenario = load_scenario("textbook", [
            "market.mechanism=second_price", "textbook.bidders=4", "textbook.auctions=20",
            "duration_days=0.1", 'textbook.strategy={ name = "listener_for_test" }'])
        Market(scenario, seed=1).run()
    finally:
        registry._registered["strategies"].pop("listener_for_test")
    assert len(heard) == 20
    for outcome in heard:
        bids = np.sort(outcome.public_bids_usd_per_gpu_hour)
        assert bids.size == 4
        # second price: the winner is paid the second-lowest public bid
        assert outcome.clearing_usd_per_gpu_hour == bids[1]

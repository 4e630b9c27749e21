"""Auction theory: the formulas `validate` compares the market with, checked by Monte Carlo on
order statistics (no market involved), by hand for two bidders and a 20% take rate, and second
price's strategy-proofness."""

from __future__ import annotations

import numpy as np
import pytest

from market.experiments.theory import (
    deviation_gain,
    equilibrium_bid,
    expected_price,
    expected_profit,
    price_variance,
)
from market.mechanisms.rules import second_price

AUCTIONS = 200_000


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize(("low", "high", "take_rate"),
                         [(0.0, 1.0, 0.0), (0.5, 2.5, 0.0), (0.5, 2.5, 0.2)])
def test_formulas_match_order_statistics(n, low, high, take_rate):
    rng = np.random.default_rng(n)
    costs = np.sort(rng.uniform(low, high, size=(AUCTIONS, n)), axis=1)
    # second price, truthful bids of the fee-grossed costs c / (1 − t)
    second = costs[:, 1] / (1 - take_rate)
    first = equilibrium_bid(costs[:, 0], n, low, high, take_rate)  # first price, equilibrium
    for prices, mechanism in ((second, "second_price"), (first, "first_price")):
        se = prices.std(ddof=1) / np.sqrt(AUCTIONS)
        assert abs(prices.mean() - expected_price(n, low, high, take_rate)) <= 4 * se
        # the sample variance's standard error, from the sample's fourth central moment
        centered = prices - prices.mean()
        se_var = np.sqrt(((centered**4).mean() - prices.var() ** 2) / AUCTIONS)
        var = price_variance(mechanism, n, low, high, take_rate)
        assert abs(prices.var(ddof=1) - var) <= 4 * se_var


def test_two_bidders_at_a_20_percent_fee_by_hand():
    """n = 2, costs U[0, 1], t = 0.2, gross-up 1.25. Prices: 1.25 × 2/3 = 5/6 for both
    mechanisms; variances 1.25² × 2/36 (second) and 1.25² × (1/2)² × 2/36 (first). Bids:
    truthful 0.4 → 0.5, equilibrium 0.4 → 1.25 × 0.7 = 0.875. Each bidder keeps
    ∫(1 − c)²/2 dc = 1/6 per auction, as without a fee."""
    assert expected_price(2, 0.0, 1.0, 0.2) == pytest.approx(5 / 6)
    assert price_variance("second_price", 2, 0.0, 1.0, 0.2) == pytest.approx(1.5625 / 18)
    assert price_variance("first_price", 2, 0.0, 1.0, 0.2) == pytest.approx(1.5625 / 72)
    assert equilibrium_bid(0.4, 2, 0.0, 1.0, 0.2) == pytest.approx(0.875)
    assert expected_profit(2, 0.0, 1.0) == pytest.approx(1 / 6)


@pytest.mark.parametrize(("mechanism", "factor", "by_hand"), [
    # First price, deviator bids m(1 + c)/2 in kept units, wins with 2 − m(1 + c) ∧ 1:
    # m = 1.2: ∫_0^(2/3) (0.6 − 0.4c)(0.8 − 1.2c) dc − 1/6 = 92/675 − 1/6 = −123/4050;
    # m = 0.8: ∫_0^(1/4) (0.4 − 0.6c) dc + ∫_(1/4)^1 (0.4 − 0.6c)(1.2 − 0.8c) dc − 1/6
    #        = 89/800 − 1/6 = −133/2400.
    ("first_price", 1.2, -123 / 4050),
    ("first_price", 0.8, -133 / 2400),
    # Second price, truthful rival R ~ U[0, 1]: bidding mc loses ∫ |r − c| dr between c and
    # mc ∧ 1: m = 1.2: −∫_0^(5/6) 0.02c² dc − ∫_(5/6)^1 (1 − c)²/2 dc = −1/216;
    # m = 0.8: −∫ (0.2c)²/2 dc = −1/150.
    ("second_price", 1.2, -1 / 216),
    ("second_price", 0.8, -1 / 150),
])
def test_deviation_gain_for_two_bidders_at_a_20_percent_fee_by_hand(mechanism, factor, by_hand):
    assert deviation_gain(mechanism, factor, 2, 0.0, 1.0, 0.2) == pytest.approx(by_hand,
                                                                              abs=1e-8)
    # What bidders keep does not depend on the fee they price in.
    assert deviation_gain(mechanism, factor, 2, 0.0, 1.0, 0.0) == pytest.approx(by_hand,
                                                                              abs=1e-8)


@pytest.mark.parametrize("mechanism", ["first_price", "second_price"])
@pytest.mark.parametrize("factor", [0.9, 1.15])
def test_deviation_gain_matches_a_simulation_of_order_statistics(mechanism, factor):
    """n = 4, costs U[0.5, 2.5], t = 0.2: one bidder multiplies its prescribed bid by
    `factor`, bids above the reserve 2.5 / 0.8 are refused; the paired difference of what it
    keeps, averaged, is theory's gain within 4 standard errors."""
    n, low, high, t, auctions = 4, 0.5, 2.5, 0.2, 400_000
    costs = np.random.default_rng(11).uniform(low, high, size=(auctions, n)) / (1 - t)
    reserve = high / (1 - t)
    first = mechanism == "first_price"
    bids = costs + (reserve - costs) / n if first else costs.copy()  # prescribed bids
    rivals = bids[:, 1:].min(axis=1)

    def kept(own: np.ndarray) -> np.ndarray:
        wins = (own < rivals) & (own <= reserve)
        paid = own if mechanism == "first_price" else rivals
        return np.where(wins, (1 - t) * (paid - costs[:, 0]), 0.0)

    difference = kept(factor * bids[:, 0]) - kept(bids[:, 0])
    se = difference.std(ddof=1) / np.sqrt(auctions)
    theory = deviation_gain(mechanism, factor, n, low, high, t)
    assert theory < 0
    assert abs(difference.mean() - theory) <= 4 * se


def test_theory_rejects_what_it_does_not_cover():
    with pytest.raises(ValueError, match="n >= 2"):
        expected_price(1, 0.0, 1.0)
    with pytest.raises(ValueError, match="high"):
        expected_price(3, 1.0, 1.0)
    with pytest.raises(ValueError, match="mechanism"):
        price_variance("dutch", 3, 0.0, 1.0)
    with pytest.raises(ValueError, match="take_rate"):
        expected_price(3, 0.0, 1.0, take_rate=1.0)
    with pytest.raises(ValueError, match="mechanism"):
        deviation_gain("dutch", 1.1, 3, 0.0, 1.0)
    with pytest.raises(ValueError, match="factor"):
        deviation_gain("first_price", 0.0, 3, 0.0, 1.0)
    assert deviation_gain("first_price", 1.0, 3, 0.0, 1.0, 0.2) == 0.0


@pytest.mark.parametrize("shade", [-0.3, -0.1, 0.1, 0.3])
def test_second_price_is_strategy_proof(shade):
    """Against truthful rivals, bidding cost × (1 + shade) never earns more than the cost."""
    rng = np.random.default_rng(7)
    n, auctions = 4, 40_000
    costs = rng.uniform(0.0, 1.0, size=(auctions, n))
    scale = 1_000_000

    def profits(markup: float) -> np.ndarray:
        out = np.zeros(auctions)
        for k in range(auctions):
            bids = costs[k].copy()
            bids[0] = costs[k, 0] * (1 + markup)
            winner, price = second_price(np.round(bids * scale).astype(np.int64), 10 * scale)
            if winner == 0:
                out[k] = price / scale - costs[k, 0]
        return out

    truthful, deviating = profits(0.0), profits(shade)
    # Same cost draws for both: the paired difference is what deviating changes, and it is
    # never positive auction by auction (dominance), so its mean is <= 0 up to rounding.
    difference = deviating - truthful
    assert (difference <= 1e-6).all()
    assert difference.mean() < 0

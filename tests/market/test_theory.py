"""Auction theory: the formulas `validate` compares the market with, checked by Monte Carlo on
order statistics (no market involved), and second price's strategy-proofness."""

from __future__ import annotations

import numpy as np
import pytest

from market.mechanisms import second_price
from market.theory import equilibrium_bid, expected_price, price_variance

AUCTIONS = 200_000


@pytest.mark.parametrize("n", [2, 3, 5, 10])
@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (0.5, 2.5)])
def test_formulas_match_order_statistics(n, low, high):
    rng = np.random.default_rng(n)
    costs = np.sort(rng.uniform(low, high, size=(AUCTIONS, n)), axis=1)
    second = costs[:, 1]                                      # second price, truthful bids
    first = equilibrium_bid(costs[:, 0], n, low, high)         # first price, equilibrium bids
    for prices, mechanism in ((second, "second_price"), (first, "first_price")):
        se = prices.std(ddof=1) / np.sqrt(AUCTIONS)
        assert abs(prices.mean() - expected_price(n, low, high)) <= 4 * se
        # the sample variance's standard error, from the sample's fourth central moment
        centered = prices - prices.mean()
        se_var = np.sqrt(((centered**4).mean() - prices.var() ** 2) / AUCTIONS)
        var = price_variance(mechanism, n, low, high)
        assert abs(prices.var(ddof=1) - var) <= 4 * se_var


def test_theory_rejects_what_it_does_not_cover():
    with pytest.raises(ValueError, match="n >= 2"):
        expected_price(1, 0.0, 1.0)
    with pytest.raises(ValueError, match="high"):
        expected_price(3, 1.0, 1.0)
    with pytest.raises(ValueError, match="mechanism"):
        price_variance("dutch", 3, 0.0, 1.0)


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

"""What auction theory predicts for the textbook procurement auction, with a take rate.

`n` risk-neutral providers with i.i.d. private costs c ~ U[low, high] compete for one unit;
the lowest bid wins. The platform keeps a share t (the take rate) of every payout, so a winner
paid x keeps (1 − t)·x − c = (1 − t)·(x − c'), with c' = c / (1 − t) its *fee-grossed cost*:
the auction with fees is the fee-free one played with costs c' ~ U[low', high'] (every bound
times the gross-up g = 1 / (1 − t)). Hence, in terms of c':
- second price: bidding c' is dominant and the buyer pays the second-lowest c';
- first price: the symmetric equilibrium bid is b(c) = c' + (high' − c') / n;
- both allocate efficiently and cost the buyer the same in expectation (revenue
  equivalence): low' + (high' − low') · 2 / (n + 1).
What a bidder keeps, (1 − t)·(x − c'), does not depend on t: the fee is passed on in full.
The tenant's reserve is high' (textbook scenario), which no such bid exceeds.

>>> round(expected_price(4, 0.0, 1.0), 6)
0.4
>>> [round(price_variance(m, 4, 0.0, 1.0), 6) for m in ("second_price", "first_price")]
[0.04, 0.015]
>>> round(expected_price(2, 0.0, 1.0, take_rate=0.2), 6)  # 2/3 grossed up by 1/0.8
0.833333
"""

from __future__ import annotations

import numpy as np

#: Points of the grid over costs on which `deviation_gain` integrates (trapezoid rule).
_GRID = 200_001


def _check(n: int, low: float, high: float, take_rate: float = 0.0) -> None:
    if n < 2:
        raise ValueError(f"bidders: theory needs n >= 2, got {n}")
    if not high > low:
        raise ValueError(f"cost range: high {high} must be above low {low}")
    if not 0 <= take_rate < 1:
        raise ValueError(f"take_rate: expected a number in [0, 1), got {take_rate}")


def gross_up(take_rate: float) -> float:
    """1 / (1 − take_rate): multiply a price the provider must keep by this to get its bid."""
    return 1.0 / (1.0 - take_rate)


def expected_price(n: int, low: float, high: float, take_rate: float = 0.0) -> float:
    """Expected price paid (USD per unit) under first or second price, costs U[low, high],
    bidders pricing the take rate in."""
    _check(n, low, high, take_rate)
    return gross_up(take_rate) * (low + (high - low) * 2 / (n + 1))


def price_variance(mechanism: str, n: int, low: float, high: float,
                   take_rate: float = 0.0) -> float:
    """Variance of the price paid, costs U[low, high], bidders pricing the take rate in.

    Second price pays the second-lowest fee-grossed cost, a Beta(2, n − 1) draw on the range:
    variance 2(n − 1) / ((n + 1)²(n + 2)). First price pays b(c_min) = c_min (n − 1)/n + 1/n
    (on [0, 1]) with c_min ~ Beta(1, n): variance ((n − 1)/n)² · n / ((n + 1)²(n + 2)). Both
    scale with the squared width of the fee-grossed range.
    """
    _check(n, low, high, take_rate)
    width2 = ((high - low) * gross_up(take_rate)) ** 2
    if mechanism == "second_price":
        return width2 * 2 * (n - 1) / ((n + 1) ** 2 * (n + 2))
    if mechanism == "first_price":
        return width2 * ((n - 1) / n) ** 2 * n / ((n + 1) ** 2 * (n + 2))
    raise ValueError(f"mechanism: expected first_price or second_price, got {mechanism!r}")


def equilibrium_bid(cost: float, n: int, low: float, high: float,
                    take_rate: float = 0.0) -> float:
    """The symmetric first-price equilibrium bid for cost `cost`, costs U[low, high]:
    (c + (high − c) / n) / (1 − take_rate)."""
    _check(n, low, high, take_rate)
    return gross_up(take_rate) * (cost + (high - cost) / n)


def expected_profit(n: int, low: float, high: float) -> float:
    """What each bidder keeps over its cost per auction, in expectation, under first price
    (equilibrium) or second price (truthful): (high − low) / (n (n + 1)), USD per unit, the
    same whatever the take rate when bidders price it in."""
    _check(n, low, high)
    return (high - low) / (n * (n + 1))


def deviation_gain(mechanism: str, factor: float, n: int, low: float, high: float,
                   take_rate: float = 0.0) -> float:
    """Expected gain per auction of one bidder who multiplies its prescribed bid by `factor`
    while the n − 1 others keep theirs: first price (equilibrium bids) or second price
    (truthful bids), costs U[low, high], reserve high / (1 − take_rate) (a bid above it is
    refused). In what the bidder keeps, (1 − t)·price − cost, USD per unit; never positive.

    In fee-grossed units (costs c' on [L, H], payoff x − c'; the fee only scales both):
    - first price: the deviator at c' bids x = factor · b(c') and wins when every rival's
      cost is above b⁻¹(x) = (n x − H)/(n − 1), with probability ((H − b⁻¹(x)) / (H − L))^(n−1)
      clipped to [0, 1];
    - second price: the deviator bidding a wins when the lowest rival cost R is above a and
      is paid R: E[(R − c')·1{R > a}] = (a − c')·S(a) + (H − a)^n / (n (H − L)^(n−1)), with
      S(a) = ((H − a)/(H − L))^(n−1) and a clipped to [L, H].
    The expectation over c' is a trapezoid rule on a fine grid (error far below 1e-6).
    """
    _check(n, low, high, take_rate)
    if not factor > 0:
        raise ValueError(f"factor: expected a number > 0, got {factor}")
    g = gross_up(take_rate)
    lo, hi = low * g, high * g
    cost = np.linspace(lo, hi, _GRID)
    if mechanism == "first_price":
        def kept(bid: np.ndarray) -> np.ndarray:
            lowest_rival_above = (n * bid - hi) / (n - 1)
            win = np.clip((hi - lowest_rival_above) / (hi - lo), 0.0, 1.0) ** (n - 1)
            return (bid - cost) * win

        prescribed = cost + (hi - cost) / n
    elif mechanism == "second_price":
        def kept(bid: np.ndarray) -> np.ndarray:
            a = np.clip(bid, lo, hi)
            survival = ((hi - a) / (hi - lo)) ** (n - 1)
            return (a - cost) * survival + (hi - a) ** n / (n * (hi - lo) ** (n - 1))

        prescribed = cost
    else:
        raise ValueError(f"mechanism: expected first_price or second_price, got {mechanism!r}")
    gain = kept(factor * prescribed) - kept(prescribed)
    # Mean over c' ~ U[lo, hi], then back to what the bidder keeps: times (1 − t).
    return float(np.trapezoid(gain, cost) / (hi - lo) / g)

"""What auction theory predicts for the textbook procurement auction.

`n` risk-neutral providers with i.i.d. private costs c ~ U[low, high] compete for one unit;
the lowest bid wins. Under second price, bidding one's cost is dominant and the buyer pays the
second-lowest cost; under first price, the symmetric equilibrium bid is
b(c) = c + (high − c) / n. Both allocate efficiently, and both cost the buyer the same in
expectation (revenue equivalence): low + (high − low) · 2 / (n + 1).

>>> round(expected_price(4, 0.0, 1.0), 6)
0.4
>>> [round(price_variance(m, 4, 0.0, 1.0), 6) for m in ("second_price", "first_price")]
[0.04, 0.015]
"""

from __future__ import annotations


def _check(n: int, low: float, high: float) -> None:
    if n < 2:
        raise ValueError(f"bidders: theory needs n >= 2, got {n}")
    if not high > low:
        raise ValueError(f"cost range: high {high} must be above low {low}")


def expected_price(n: int, low: float, high: float) -> float:
    """Expected price paid (USD per unit) under first or second price, costs U[low, high]."""
    _check(n, low, high)
    return low + (high - low) * 2 / (n + 1)


def price_variance(mechanism: str, n: int, low: float, high: float) -> float:
    """Variance of the price paid, costs U[low, high].

    Second price pays the second-lowest cost, a Beta(2, n − 1) draw on the range:
    variance 2(n − 1) / ((n + 1)²(n + 2)). First price pays b(c_min) = c_min (n − 1)/n + 1/n
    (on [0, 1]) with c_min ~ Beta(1, n): variance ((n − 1)/n)² · n / ((n + 1)²(n + 2)).
    """
    _check(n, low, high)
    width2 = (high - low) ** 2
    if mechanism == "second_price":
        return width2 * 2 * (n - 1) / ((n + 1) ** 2 * (n + 2))
    if mechanism == "first_price":
        return width2 * ((n - 1) / n) ** 2 * n / ((n + 1) ** 2 * (n + 2))
    raise ValueError(f"mechanism: expected first_price or second_price, got {mechanism!r}")


def equilibrium_bid(cost: float, n: int, low: float, high: float) -> float:
    """The symmetric first-price equilibrium bid for cost `cost`, costs U[low, high]."""
    _check(n, low, high)
    return cost + (high - cost) / n

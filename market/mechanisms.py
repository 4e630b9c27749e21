"""Auction mechanisms: pure functions over arrays of bids, and the adapters the engine calls.

A reverse auction: providers offer to run an order, the lowest acceptable offer wins. Every
allocation function takes the bids of one order **in arrival order** (ties go to the earlier
bid) as integer micro-USD per hour, and the order's max price (the tenant's reserve), and
returns ``(winner_index, price_micro)``, with ``(NO_WINNER, 0)`` when no bid is acceptable.

>>> import numpy as np
>>> bids = np.array([900, 700, 800])
>>> first_price(bids, 1000), second_price(bids, 1000), first_arrival(bids, 1000)
((1, 700), (1, 800), (0, 900))
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

NO_WINNER = -1


def _acceptable(prices_micro: np.ndarray, max_price_micro: int) -> np.ndarray:
    return (prices_micro <= max_price_micro).nonzero()[0]


def first_price(prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
    """Lowest acceptable bid wins and is paid its own bid (Akash's tenant pick, `cheapest`)."""
    ok = _acceptable(prices_micro, max_price_micro)
    if ok.size == 0:
        return NO_WINNER, 0
    # argmin returns the first minimum: bids are in arrival order, so ties go to the earliest.
    winner = int(ok[np.argmin(prices_micro[ok])])
    return winner, int(prices_micro[winner])


def second_price(prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
    """Vickrey: lowest acceptable bid wins, paid the second-lowest bid, or the max price
    (the reserve) when it is the only acceptable bid. Bidding one's cost is dominant."""
    ok = _acceptable(prices_micro, max_price_micro)
    if ok.size == 0:
        return NO_WINNER, 0
    order = ok[np.argsort(prices_micro[ok], kind="stable")]
    winner = int(order[0])
    price = int(prices_micro[order[1]]) if order.size > 1 else int(max_price_micro)
    return winner, price


def first_arrival(prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
    """The first acceptable bid to arrive wins at its own price (Akash's web console, `first`)."""
    ok = _acceptable(prices_micro, max_price_micro)
    if ok.size == 0:
        return NO_WINNER, 0
    winner = int(ok[0])
    return winner, int(prices_micro[winner])


@runtime_checkable
class Mechanism(Protocol):
    """What the engine needs of a mechanism: when an order's auction closes, who wins, at what.

    `sealed` mechanisms close when the bidding window ends; the others close when the first
    acceptable bid arrives (or at the window's end if none does).
    """

    name: ClassVar[str]
    sealed: bool

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]: ...


class TenantPick:
    """Akash today: the chain picks no winner, the tenant accepts a bid.

    ``selection="cheapest"`` waits for the bidding window and takes the cheapest bid (as
    Akash's CI action does); ``selection="first"`` takes the first bid that arrives (as the
    web console does). The lease is priced at the accepted bid.
    """

    name: ClassVar[str] = "tenant_pick"

    def __init__(self, selection: str = "cheapest") -> None:
        if selection not in ("cheapest", "first"):
            raise ValueError(f"selection: expected 'cheapest' or 'first', got {selection!r}")
        self.selection = selection
        self.sealed = selection == "cheapest"
        self.allocate = first_price if self.sealed else first_arrival


class FirstPrice:
    """Sealed-bid first price: bids are opened when the window ends; lowest wins, paid its bid."""

    name: ClassVar[str] = "first_price"
    sealed = True

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
        return first_price(prices_micro, max_price_micro)


class SecondPrice:
    """Sealed-bid second price (Vickrey) capped at the max price; truthful bidding is dominant."""

    name: ClassVar[str] = "second_price"
    sealed = True

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
        return second_price(prices_micro, max_price_micro)

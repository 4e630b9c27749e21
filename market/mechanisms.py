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

from dataclasses import dataclass
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


def best_score(prices_micro: np.ndarray, max_price_micro: int,
               cost_per_job: np.ndarray) -> tuple[int, int]:
    """Golem-style scoring: among acceptable bids, the lowest `cost_per_job` wins (what the
    whole job would cost the tenant on that bid, weighed by the provider's reliability); it is
    paid its own bid. Ties go to the earlier bid."""
    ok = _acceptable(prices_micro, max_price_micro)
    if ok.size == 0:
        return NO_WINNER, 0
    winner = int(ok[np.argmin(cost_per_job[ok])])
    return winner, int(prices_micro[winner])


def first_arrival(prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
    """The first acceptable bid to arrive wins at its own price (Akash's web console, `first`)."""
    ok = _acceptable(prices_micro, max_price_micro)
    if ok.size == 0:
        return NO_WINNER, 0
    winner = int(ok[0])
    return winner, int(prices_micro[winner])


@dataclass(frozen=True, slots=True)
class AuctionContext:
    """What the market knows about each bid besides its price, for mechanisms that need it:
    how many hours the job runs on the bidder's GPU (1 for an open-ended lease), the bidder's
    reliability (the share of its past leases that ended without a provider fault, smoothed
    so that a newcomer starts near 1), and the hyperscaler list price of the bidder's GPU for
    the whole order (micro-USD per hour)."""

    job_hours: np.ndarray
    reliability: np.ndarray
    list_micro: np.ndarray


@runtime_checkable
class Mechanism(Protocol):
    """What the engine needs of a mechanism: when an order's auction closes, who wins, at what.

    `sealed` mechanisms close when the bidding window ends; the others close when the first
    acceptable bid arrives (or at the window's end if none does). A mechanism with
    `uses_context = True` is called as `allocate(prices, max_price, context)` with an
    `AuctionContext` for the bids.
    """

    name: ClassVar[str]
    sealed: bool

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]: ...


class TenantPick:
    """Akash today: the chain picks no winner, the tenant accepts a bid.

    ``selection="cheapest"`` waits for the bidding window and takes the cheapest bid (as
    Akash's CI action does); ``selection="first"`` takes the first bid that arrives (as the
    web console does); ``selection="score"`` waits for the window and takes the bid with the
    lowest price per job, given the bidder's GPU speed and reliability (as Golem requestors
    score offers). The lease is priced at the accepted bid.
    """

    name: ClassVar[str] = "tenant_pick"
    SELECTIONS = ("cheapest", "first", "score")

    def __init__(self, selection: str = "cheapest") -> None:
        if selection not in self.SELECTIONS:
            raise ValueError(f"selection: expected one of {', '.join(self.SELECTIONS)}, "
                             f"got {selection!r}")
        self.selection = selection
        self.sealed = selection != "first"
        self.uses_context = selection == "score"

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        if self.selection == "first":
            return first_arrival(prices_micro, max_price_micro)
        if self.selection == "score" and context is not None:
            per_job = prices_micro * context.job_hours / np.maximum(context.reliability, 1e-9)
            return best_score(prices_micro, max_price_micro, per_job)
        return first_price(prices_micro, max_price_micro)


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


# ------------------------------------------------------------------ more mechanisms
# Engine adapters over the pure functions of `market.clearing`. Clock steps are given as a
# fraction of the order's max price, so that one setting suits orders of every size.


def _step(max_price_micro: int, fraction: float) -> int:
    return max(1, int(max_price_micro * fraction))


def _fraction(name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    if not low < value <= high:
        raise ValueError(f"{name}: expected a number in ({low}, {high}], got {value}")
    return value


class DescendingClock:
    """Reverse English auction: the price falls from the max price by `step` (a fraction of
    it) until one provider is left, who is paid where the last rival dropped: the Vickrey
    price rounded up to the clock grid. Providers' bids act as their reservations (bidding
    one's cost is optimal up to one step)."""

    name: ClassVar[str] = "reverse_english"
    sealed = True

    def __init__(self, step: float = 0.01) -> None:
        self.step = _fraction("step", step)

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
        from market.clearing import descending_clock

        winner, price, _ = descending_clock(prices_micro, max_price_micro,
                                            _step(max_price_micro, self.step))
        return winner, price


class AscendingClock:
    """Procurement Dutch auction: the price rises from `start` (a fraction of the max price)
    by `step` until a provider takes it, and is paid that price: a first-price outcome, so
    strategic providers shade their reservations as in first price."""

    name: ClassVar[str] = "dutch"
    sealed = True

    def __init__(self, start: float = 0.05, step: float = 0.01) -> None:
        self.start = _fraction("start", start, low=-1e-12)
        self.step = _fraction("step", step)

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
        from market.clearing import ascending_clock

        winner, price, _ = ascending_clock(prices_micro, int(max_price_micro * self.start),
                                           max_price_micro, _step(max_price_micro, self.step))
        return winner, price


class PostedPrice:
    """The hyperscaler model: the platform posts `fraction` × the list price of each GPU; the
    first provider to arrive whose bid (its reservation) is at or below the posted price of
    its GPU serves the order at that posted price, if the tenant's max price allows it."""

    name: ClassVar[str] = "posted_price"
    sealed = True
    uses_context = True

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = _fraction("fraction", fraction, high=10.0)

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        if context is None:
            raise ValueError("posted_price needs the bids' context (list prices)")
        posted = np.floor(context.list_micro * self.fraction).astype(np.int64)
        takers = ((prices_micro <= posted) & (posted <= max_price_micro)).nonzero()[0]
        if takers.size == 0:
            return NO_WINNER, 0
        return int(takers[0]), int(posted[takers[0]])


class ScoringAuction:
    """A scoring auction: the best price per unit of quality wins, quality being the
    bidder's reliability over the job's hours on its GPU (faster, steadier is better);
    `rule="first"` pays the winner's bid, `rule="second"` the bid that would have tied the
    runner-up's score (truthful bidding is then dominant for a provider of known quality)."""

    name: ClassVar[str] = "scoring"
    sealed = True
    uses_context = True

    def __init__(self, rule: str = "second") -> None:
        if rule not in ("first", "second"):
            raise ValueError(f"rule: expected 'first' or 'second', got {rule!r}")
        self.rule = rule

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        from market.clearing import scoring_auction

        if context is None:
            raise ValueError("scoring needs the bids' context (job hours, reliability)")
        quality = np.maximum(context.reliability, 1e-9) / np.maximum(context.job_hours, 1e-12)
        return scoring_auction(prices_micro, quality, max_price_micro, self.rule)


class BatchClearing:
    """A periodic batch market (iExec/SONM-style order book): every `interval_s` the orders
    opened since the last clearing are matched at once to providers' standing offers, one
    ask per provider (what its strategy asks per GPU-hour for the first order of the batch it
    can serve) with its free GPUs, by the welfare-maximizing assignment
    (`market.clearing.batch_clear`); each order goes to one provider, no provider over its
    free GPUs. `pricing="pay_as_bid"` pays each provider its ask; `"uniform"` pays every trade
    one clearing price between the highest accepted ask and the lowest accepted max price.
    An order left unmatched by its clearing expires. Providers place no per-order bids, hold
    no reservations and lock no bid deposits."""

    name: ClassVar[str] = "batch_clearing"
    sealed = True
    batch = True

    def __init__(self, interval_s: float = 300.0, pricing: str = "pay_as_bid") -> None:
        if not 0 < interval_s < float("inf"):
            raise ValueError(f"interval_s: expected a number > 0, got {interval_s}")
        if pricing not in ("pay_as_bid", "uniform"):
            raise ValueError(f"pricing: expected 'pay_as_bid' or 'uniform', got {pricing!r}")
        self.interval_s = interval_s
        self.pricing = pricing

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int) -> tuple[int, int]:
        """One order alone: the cheapest acceptable ask, paid as bid."""
        return first_price(prices_micro, max_price_micro)


class Interruptible(TenantPick):
    """Vast.ai's market: on-demand and interruptible orders side by side.

    Every order is won as in a tenant pick (`selection`: the cheapest bid when the window
    ends, the first to arrive, or the best score). An on-demand order pays the winning bid.
    An interruptible order states its bid per GPU-hour as its max price; providers bid their
    minimum (their ask), the selection picks a provider among asks at or below the bid, and
    the lease pays the tenant's bid, as on Vast. On each provider, leases are ranked
    on-demand first, then interruptible by bid (ties to the earlier lease); the ranking runs
    from the top while it fits (`market.clearing.interruptible_schedule`): a lower bid is
    paused, not closed, and resumes when capacity comes back. A paused lease is not paid and
    its work waits, so the tenant pays only for what ran. Providers bid on an interruptible
    order with the capacity that lower bids hold, and on an on-demand order with the capacity
    that any interruptible lease holds.

    Guarantees: an on-demand lease is never paused; an interruptible lease never waits while
    a lower-ranked one runs on its provider; a tenant never pays more than its bid.
    """

    name: ClassVar[str] = "interruptible"
    interruptible = True

"""Auction mechanisms: pure functions over arrays of bids, and the adapters the engine calls.

A reverse auction: providers offer to run an order, the lowest acceptable offer wins. Every
allocation function takes the bids of one order **in arrival order** (ties go to the earlier
bid) as integer micro-USD per hour, and the order's max price (the tenant's reserve), and
returns ``(winner_index, price_micro)``, with ``(NO_WINNER, 0)`` when no bid is acceptable.

>>> import numpy as np
>>> bids = np.array([900, 700, 800])
>>> first_price(bids, 1000), second_price(bids, 1000), first_arrival(bids, 1000)
((1, 700), (1, 800), (0, 900))

**Price per job.** An order may accept several GPU models, and a job takes longer on a slower
one: a bid per GPU-hour says little until it is multiplied by the hours the job runs on the
bidder's GPU. The adapters below therefore compare bids by what the whole job would cost
(`AuctionContext.job_hours`), and refuse a bid whose job cost is above the tenant's budget
for the job (`AuctionContext.budget_micro`: its max price over the job's shortest run, never
above what the job is worth to it). :func:`per_job` restates bids in those terms, so the pure
per-GPU-hour functions rank and price them unchanged: with a single GPU model (equal hours)
nothing changes. A slow, cheap GPU wins when it is cheaper per job:

>>> context = AuctionContext(job_hours=np.array([1.0, 4.0]), reliability=np.ones(2),
...                          list_micro=np.zeros(2), budget_micro=2_500)
>>> TenantPick().allocate(np.array([2_000, 450]), 2_500, context)  # 2,000 vs 1,800 a job
(1, 450)
>>> TenantPick().allocate(np.array([2_000, 550]), 2_500, context)  # 2,000 vs 2,200 a job
(0, 2000)
>>> from dataclasses import replace  # a job worth 1,900: neither bid is
>>> TenantPick().allocate(np.array([2_000, 500]), 2_500, replace(context, budget_micro=1_900))
(-1, 0)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from market.core.auction import NO_WINNER, ROUND_OFF, AuctionContext


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


def per_job(prices_micro: np.ndarray, max_price_micro: int,
            context: AuctionContext | None) -> tuple[np.ndarray, int, np.ndarray]:
    """Bids restated so that a rule over prices per GPU-hour ranks them by price per job.

    Each bid becomes what its whole job costs per GPU-hour of the shortest run among the
    bidders: ``price × hours / shortest``, rounded up to a micro-USD (so bids whose jobs cost
    within a micro-USD per GPU-hour of that run of each other rank as ties); the reserve becomes the
    tenant's budget in the same terms, never above the max price, so a bid is within the
    reserve exactly when its job is within the budget. A bid on a GPU the job cannot run on
    (no finite hours), and with `pays_reserve` a bid on whose GPU the max price over the job
    is above the budget, is put above the reserve. Returns ``(scores, reserve, ratio)`` with
    ``ratio = hours / shortest`` (at least 1), which :func:`per_gpu_hour` uses to restate a
    payment per GPU-hour of the winner. Without a context, or with equal hours and a budget
    that does not bind, the scores are the bids and the reserve is the max price.
    """
    prices = np.asarray(prices_micro, dtype=np.int64)
    max_price = int(max_price_micro)
    if context is None or prices.size == 0:
        return prices, max_price, np.ones(prices.size)
    hours = np.asarray(context.job_hours, dtype=float)
    shortest, longest = float(hours.min()), float(hours.max())
    runs = None  # every bidder's GPU runs the job (the usual case: skip the mask)
    if not 0 < shortest <= longest < math.inf:
        runs = np.isfinite(hours) & (hours > 0)  # a GPU the job cannot run on is refused
        if not runs.any():
            return np.full(prices.size, max_price + 1, np.int64), max_price, \
                np.ones(prices.size)
        shortest = float(hours[runs].min())
    reserve = max_price
    if math.isfinite(context.budget_micro):
        budget_rate = context.budget_micro / shortest * (1 + ROUND_OFF)
        reserve = max(min(max_price, math.floor(budget_rate)), 0)
    if longest == shortest:  # one run time (one GPU model): the bids as they are
        scores, ratio = prices, np.ones(prices.size)
    else:
        ratio = hours / shortest if runs is None else np.where(runs, hours / shortest, 1.0)
        # Rounded up; a ratio of 1 leaves a bid below 1e12 micro-USD as it is.
        scores = np.ceil(prices * ratio * (1 - ROUND_OFF)).astype(np.int64)
    refused = None if runs is None else ~runs
    if context.pays_reserve:
        unaffordable = ~context.affordable(prices, max_price)
        refused = unaffordable if refused is None else refused | unaffordable
    if refused is not None and refused.any():
        scores = np.where(refused, np.maximum(scores, reserve + 1), scores)
    return scores, reserve, ratio


def per_gpu_hour(prices_micro: np.ndarray, winner: int, pay_micro: int,
                 ratio: np.ndarray) -> int:
    """A payment in :func:`per_job` terms restated per GPU-hour of the winner's GPU: rounded
    down (the job then costs no more than the payment said), never below the winner's bid."""
    if ratio[winner] == 1.0:
        return int(pay_micro)
    restated = math.floor(pay_micro / ratio[winner] * (1 + ROUND_OFF))
    return max(int(prices_micro[winner]), restated)


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


def _pay_as_bid(prices_micro: np.ndarray, winner: int) -> tuple[int, int]:
    return (winner, int(prices_micro[winner])) if winner != NO_WINNER else (NO_WINNER, 0)


class TenantPick:
    """Akash today: the chain picks no winner, the tenant accepts a bid.

    ``selection="cheapest"`` waits for the bidding window and takes the bid with the lowest
    price per job: the bid per GPU-hour × the hours the job takes on the bidder's GPU (as
    Akash's CI action takes the cheapest; with one GPU model, simply the cheapest bid);
    ``selection="first"`` takes the first bid that arrives (as the web console does);
    ``selection="score"`` waits for the window and takes the lowest price per job weighed by
    the bidder's reliability (as Golem requestors score offers). Whatever the selection, the
    tenant refuses a bid whose cost for the whole job is above its budget (see
    `AuctionContext`). The lease is priced at the accepted bid.
    """

    name: ClassVar[str] = "tenant_pick"
    SELECTIONS = ("cheapest", "first", "score")
    uses_context = True

    def __init__(self, selection: str = "cheapest") -> None:
        if selection not in self.SELECTIONS:
            raise ValueError(f"selection: expected one of {', '.join(self.SELECTIONS)}, "
                             f"got {selection!r}")
        self.selection = selection
        self.sealed = selection != "first"

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        scores, reserve, _ = per_job(prices_micro, max_price_micro, context)
        if self.selection == "first":
            winner, _ = first_arrival(scores, reserve)
        elif self.selection == "score" and context is not None:
            weighed = scores / np.maximum(context.reliability, 1e-9)
            winner, _ = best_score(scores, reserve, weighed)
        else:
            winner, _ = first_price(scores, reserve)
        return _pay_as_bid(prices_micro, winner)


class FirstPrice:
    """Sealed-bid first price: bids are opened when the window ends; the lowest price per job
    wins (with one GPU model, the lowest bid), paid its bid."""

    name: ClassVar[str] = "first_price"
    sealed = True
    uses_context = True

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        scores, reserve, _ = per_job(prices_micro, max_price_micro, context)
        return _pay_as_bid(prices_micro, first_price(scores, reserve)[0])


class SecondPrice:
    """Sealed-bid second price (Vickrey) capped at the max price; truthful bidding is dominant.

    The lowest price per job wins and is paid, per GPU-hour of its own GPU, what makes its job
    cost what the runner-up's would have (or the tenant's budget when it is alone): with one
    GPU model, the second-lowest bid or the max price. Bidding one's cost per GPU-hour stays
    dominant, as in a scoring auction whose quality is the job's speed on one's GPU.
    """

    name: ClassVar[str] = "second_price"
    sealed = True
    uses_context = True

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        scores, reserve, ratio = per_job(prices_micro, max_price_micro, context)
        winner, pay = second_price(scores, reserve)
        if winner == NO_WINNER:
            return NO_WINNER, 0
        return winner, per_gpu_hour(prices_micro, winner, pay, ratio)


# ------------------------------------------------------------------ more mechanisms
# Engine adapters over the pure functions of `market.mechanisms.clearing`. Clock steps are given as
# a fraction of the order's max price, so that one setting suits orders of every size.


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
    one's cost is optimal up to one step). The clock runs on the price per job (per GPU-hour
    of the job's shortest run, see `per_job`), from the tenant's budget down."""

    name: ClassVar[str] = "reverse_english"
    sealed = True
    uses_context = True

    def __init__(self, step: float = 0.01) -> None:
        self.step = _fraction("step", step)

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        from market.mechanisms.clearing import descending_clock

        scores, reserve, ratio = per_job(prices_micro, max_price_micro, context)
        winner, price, _ = descending_clock(scores, reserve, _step(reserve, self.step))
        if winner == NO_WINNER:
            return NO_WINNER, 0
        return winner, per_gpu_hour(prices_micro, winner, price, ratio)


class AscendingClock:
    """Procurement Dutch auction: the price rises from `start` (a fraction of the max price)
    by `step` until a provider takes it, and is paid that price: a first-price outcome, so
    strategic providers shade their reservations as in first price. The clock runs on the
    price per job, up to the tenant's budget (see `per_job`)."""

    name: ClassVar[str] = "dutch"
    sealed = True
    uses_context = True

    def __init__(self, start: float = 0.05, step: float = 0.01) -> None:
        self.start = _fraction("start", start, low=-1e-12)
        self.step = _fraction("step", step)

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        from market.mechanisms.clearing import ascending_clock

        scores, reserve, ratio = per_job(prices_micro, max_price_micro, context)
        winner, price, _ = ascending_clock(scores, int(reserve * self.start), reserve,
                                           _step(reserve, self.step))
        if winner == NO_WINNER:
            return NO_WINNER, 0
        return winner, per_gpu_hour(prices_micro, winner, price, ratio)


class PostedPrice:
    """The hyperscaler model: the platform posts `fraction` × the list price of each GPU; the
    first provider to arrive whose bid (its reservation) is at or below the posted price of
    its GPU serves the order at that posted price, if the tenant's max price allows it and
    the job at that price is within the tenant's budget."""

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
        takers = ((prices_micro <= posted) & context.affordable(posted, max_price_micro)
                  ).nonzero()[0]
        if takers.size == 0:
            return NO_WINNER, 0
        return int(takers[0]), int(posted[takers[0]])


class ScoringAuction:
    """A scoring auction: the best price per unit of quality wins, quality being the
    bidder's reliability over the job's hours on its GPU (faster, steadier is better);
    `rule="first"` pays the winner's bid, `rule="second"` the bid that would have tied the
    runner-up's score (truthful bidding is then dominant for a provider of known quality),
    never more than the tenant's budget for the job allows."""

    name: ClassVar[str] = "scoring"
    sealed = True
    uses_context = True

    def __init__(self, rule: str = "second") -> None:
        if rule not in ("first", "second"):
            raise ValueError(f"rule: expected 'first' or 'second', got {rule!r}")
        self.rule = rule

    def allocate(self, prices_micro: np.ndarray, max_price_micro: int,
                 context: AuctionContext | None = None) -> tuple[int, int]:
        from market.mechanisms.clearing import scoring_auction

        if context is None:
            raise ValueError("scoring needs the bids' context (job hours, reliability)")
        # Per job, the hours are in the scores: what is left of quality is reliability.
        scores, reserve, ratio = per_job(prices_micro, max_price_micro, context)
        winner, price = scoring_auction(scores, np.maximum(context.reliability, 1e-9),
                                        reserve, self.rule)
        if winner == NO_WINNER:
            return NO_WINNER, 0
        return winner, per_gpu_hour(prices_micro, winner, price, ratio)


class BatchClearing:
    """A periodic batch market (iExec/SONM-style order book): every `interval_s` the orders
    opened since the last clearing are matched at once to providers' standing offers, one
    ask per provider (what its strategy asks per GPU-hour for the first order of the batch it
    can serve) with its free GPUs, by the welfare-maximizing assignment
    (`market.mechanisms.clearing.batch_clear`); each order goes to one provider, no provider over
    its free GPUs. `pricing="pay_as_bid"` pays each provider its ask; `"uniform"` pays every trade
    one clearing price between the highest accepted ask and the lowest accepted max price.
    An order left unmatched by its clearing expires. Providers place no per-order bids, hold
    no reservations and lock no bid deposits."""

    name: ClassVar[str] = "batch_clearing"
    sealed = True

    def __init__(self, interval_s: float = 300.0, pricing: str = "pay_as_bid") -> None:
        if not 0 < interval_s < float("inf"):
            raise ValueError(f"interval_s: expected a number > 0, got {interval_s}")
        if pricing not in ("pay_as_bid", "uniform"):
            raise ValueError(f"pricing: expected 'pay_as_bid' or 'uniform', got {pricing!r}")
        self.interval_s = interval_s
        self.pricing = pricing

    def periods(self) -> list[tuple[str, float]]:
        """Its periodic process, for the engine's check on tick counts."""
        return [("market.mechanism_params.interval_s", self.interval_s)]

    def attach(self, market: Any) -> None:
        """Give `market` (the engine) its clearing process: orders the market picks for wait
        for the next clearing instead of getting per-order bids."""
        from market.mechanisms.batching import BatchClearer

        market.clearing = BatchClearer(market, self.interval_s, self.pricing)

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
    from the top while it fits (`market.mechanisms.clearing.interruptible_schedule`): a lower bid is
    paused, not closed, and resumes when capacity comes back. A paused lease is not paid and
    its work waits, so the tenant pays only for what ran. Providers bid on an interruptible
    order with the capacity that lower bids hold, and on an on-demand order with the capacity
    that any interruptible lease holds.

    Guarantees: an on-demand lease is never paused; an interruptible lease never waits while
    a lower-ranked one runs on its provider; a tenant never pays more than its bid.
    """

    name: ClassVar[str] = "interruptible"
    interruptible = True

    def attach(self, market: Any) -> None:
        """Give `market` (the engine) the scheduler that pauses and resumes leases."""
        from market.mechanisms.interruptible import InterruptibleScheduler

        market.scheduler = InterruptibleScheduler(market)

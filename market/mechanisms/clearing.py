"""Clearing rules beyond the sealed bid: clocks, a posted price, scoring, batch markets and
interruptible rentals, as pure functions over arrays (the conventions of `market.mechanisms.rules`).

Money is integer micro-USD per hour (per GPU-hour for `batch_clear` and
`interruptible_schedule`); bids come in arrival order and ties go to the earlier bid. The
single-order rules return ``(winner_index, price_micro)``, or ``(NO_WINNER, 0)`` when nobody
acceptable takes the order; the two clocks add the number of clock steps as a third item.

>>> import numpy as np
>>> reservations = np.array([900, 700, 800])
>>> descending_clock(reservations, 1_000, 50), ascending_clock(reservations, 500, 1_000, 50)
((1, 800, 4), (1, 700, 4))
>>> posted_price(reservations, None, 850)
(1, 850)
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from market.core.auction import NO_WINNER

__all__ = [
    "NO_WINNER",
    "ascending_clock",
    "batch_clear",
    "descending_clock",
    "interruptible_schedule",
    "posted_price",
    "preempted",
    "scoring_auction",
]


def _positive(name: str, value: int) -> int:
    if int(value) <= 0:
        raise ValueError(f"{name}: expected a positive number of micro-USD, got {value!r}")
    return int(value)


def _first_lowest(values: np.ndarray, candidates: np.ndarray) -> int:
    # argmin returns the first minimum and candidates are in arrival order: ties go earliest.
    return int(candidates[np.argmin(values[candidates])])


# --- single-order clocks and posted prices ------------------------------------------------

def descending_clock(
    reservations_micro: np.ndarray, max_price_micro: int, decrement_micro: int
) -> tuple[int, int, int]:
    """Reverse English auction: the clock price falls from the max price until one is left.

    Rules: the clock shows ``max_price_micro``, then falls by ``decrement_micro`` per step. A
    provider is in while the clock is at or above its reservation (the lowest price it
    accepts, micro-USD per hour). The clock stops at the last price where two or more
    providers are in, that is when the next step would leave one (the winner; the last rival
    drops there) or none (every survivor's reservation lies within that step: the lowest
    reservation wins, ties to the earlier bid). A provider alone at the max price wins at once;
    with nobody in at the max price there is no winner.

    Payment: the winner is paid the clock price where it stopped (where the last rival
    dropped), or the max price when it was alone.

    Guarantees: the lowest acceptable reservation wins (the same winner as
    `market.mechanisms.rules.second_price`) and is paid the second-lowest acceptable reservation
    rounded up to the clock grid ``max_price − k × decrement``, capped at the max price: at
    least the Vickrey price and less than one decrement above it, so every trade is
    individually rational. Reporting one's cost is optimal up to one decrement (a misreport
    can gain less than ``decrement_micro``); it is exactly dominant in the limit.

    Returns ``(winner, price_micro, steps)``: ``steps`` is the number of decrements made
    before the clock stopped (0 when the winner was alone or there was no winner). Computed in
    closed form, not by ticking the clock, so it costs the same whatever the decrement.

    >>> descending_clock(np.array([900, 700, 800]), 1_000, 150)
    (1, 850, 1)
    >>> descending_clock(np.array([1_200, 600]), 1_000, 150)  # alone: paid the max price
    (1, 1000, 0)
    """
    decrement = _positive("decrement_micro", decrement_micro)
    max_price = int(max_price_micro)
    reservations = np.asarray(reservations_micro, dtype=np.int64)
    acceptable = np.flatnonzero(reservations <= max_price)
    if acceptable.size == 0:
        return NO_WINNER, 0, 0
    winner = _first_lowest(reservations, acceptable)
    if acceptable.size == 1:
        return winner, max_price, 0
    second = int(np.partition(reservations[acceptable], 1)[1])
    steps = (max_price - second) // decrement  # the last step the second-lowest stays in
    return winner, max_price - steps * decrement, steps


def ascending_clock(
    reservations_micro: np.ndarray,
    start_price_micro: int,
    max_price_micro: int,
    increment_micro: int,
) -> tuple[int, int, int]:
    """Procurement Dutch auction: the clock price rises from a low start until someone takes it.

    Rules: the clock shows ``start_price_micro``, then rises by ``increment_micro`` per step;
    a step that would pass the max price shows the max price instead, and it is the last. At
    each price every provider whose reservation is at or below the clock accepts; the first
    price anyone accepts ends the auction, and among providers accepting at the same price the
    earlier bid wins (the clock cannot tell their reservations apart). If nobody accepts by the
    max price there is no winner.

    Payment: the winner is paid the clock price it accepted: its reservation rounded up to the
    grid ``start + k × increment`` (or the max price, or the start price if it lies below it).

    Guarantees: a first-price outcome: with reservations on the grid (and at least the start
    price) winner and price equal `market.mechanisms.rules.first_price`; otherwise the winner's
    reservation is within one increment of the lowest and the price is within one increment of
    the winner's reservation. Accepting commits a provider to the price shown, so a strategic
    provider waits above its cost (shades its bid) exactly as in first price; the trade is
    individually rational for the reservation it acts on.

    Returns ``(winner, price_micro, steps)``: ``steps`` is the number of increments made before
    the auction ended, including the climb to the max price when nobody accepted.

    >>> ascending_clock(np.array([900, 730, 720]), 500, 1_000, 100)  # 730, 720 accept at 800
    (1, 800, 3)
    >>> ascending_clock(np.array([1_200]), 500, 1_000, 200)  # 500, 700, 900, 1000: no taker
    (-1, 0, 3)
    """
    increment = _positive("increment_micro", increment_micro)
    start, max_price = int(start_price_micro), int(max_price_micro)
    if start > max_price:
        raise ValueError(
            f"start_price_micro: expected at most max_price_micro ({max_price}), got {start}"
        )
    reservations = np.asarray(reservations_micro, dtype=np.int64)
    if reservations.size == 0 or int(reservations.min()) > max_price:
        return NO_WINNER, 0, -((start - max_price) // increment)
    steps = max(0, -((start - int(reservations.min())) // increment))  # ceil division
    price = min(start + steps * increment, max_price)
    winner = int(np.flatnonzero(reservations <= price)[0])
    return winner, price, steps


def posted_price(
    reservations_micro: np.ndarray, arrivals_order_ok: np.ndarray | None, price_micro: int
) -> tuple[int, int]:
    """Hyperscaler model: a fixed posted price, taken by the first provider willing to.

    Rules: the price is posted, not bid; providers arrive in order and the first one that may
    serve the order (``arrivals_order_ok[i]``, a boolean mask in arrival order, e.g. GPU model
    matching; ``None`` means everyone may) and whose reservation is at or below the price wins.

    Payment: the posted ``price_micro``, whoever wins.

    Guarantees: individually rational for the winner (reservation ≤ price); no price discovery,
    so the buyer pays the posted price even when costs are far below it, and the order goes
    unserved when every reservation is above it.

    >>> posted_price(np.array([900, 700, 800]), np.array([True, False, True]), 850)
    (2, 850)
    """
    reservations = np.asarray(reservations_micro, dtype=np.int64)
    willing = reservations <= int(price_micro)
    if arrivals_order_ok is not None:
        ok = np.asarray(arrivals_order_ok, dtype=bool)
        if ok.shape != reservations.shape:
            raise ValueError(
                f"arrivals_order_ok: expected shape {reservations.shape} like the "
                f"reservations, got {ok.shape}"
            )
        willing &= ok
    takers = np.flatnonzero(willing)
    if takers.size == 0:
        return NO_WINNER, 0
    return int(takers[0]), int(price_micro)


def scoring_auction(
    prices_micro: np.ndarray, quality: np.ndarray, max_price_micro: int, rule: str = "first"
) -> tuple[int, int]:
    """Scoring auction: the best price per unit of quality wins, not the lowest price.

    Rules: ``quality[i] > 0`` is what bid ``i`` delivers per unit of price, higher better
    (e.g. throughput on that GPU × reliability); its score is ``price / quality``, lower
    better. Bids above the max price are not acceptable; the best score among the acceptable
    bids wins, ties to the earlier bid (scores compared in floating point).

    Payment: ``rule="first"``: the winner's own bid. ``rule="second"``: the highest bid that
    would still have tied the second-best acceptable score, ``second_score × own quality``
    (rounded down to a micro-USD, computed exactly), capped at the max price; the max price
    when the winner is the only acceptable bid.

    Guarantees: both rules pick the best score. Under ``"second"`` the payment does not depend
    on the winner's own bid and is at least that bid, so bidding one's cost is a dominant
    strategy for a provider whose quality is fixed and known to the buyer (it cannot misreport
    quality). With all qualities equal the rules are `first_price` and `second_price`.

    >>> prices, quality = np.array([900, 700, 800]), np.array([1.0, 0.5, 1.0])
    >>> scoring_auction(prices, quality, 1_000), scoring_auction(prices, quality, 1_000, "second")
    ((2, 800), (2, 900))
    """
    if rule not in ("first", "second"):
        raise ValueError(f"rule: expected 'first' or 'second', got {rule!r}")
    prices = np.asarray(prices_micro, dtype=np.int64)
    quality = np.asarray(quality, dtype=np.float64)
    if quality.shape != prices.shape:
        raise ValueError(
            f"quality: expected shape {prices.shape} like the prices, got {quality.shape}"
        )
    if not np.all(np.isfinite(quality) & (quality > 0)):
        raise ValueError("quality: expected finite values above 0 (higher is better)")
    max_price = int(max_price_micro)
    acceptable = np.flatnonzero(prices <= max_price)
    if acceptable.size == 0:
        return NO_WINNER, 0
    scores = prices / quality
    order = acceptable[np.argsort(scores[acceptable], kind="stable")]
    winner = int(order[0])
    own = int(prices[winner])
    if rule == "first":
        return winner, own
    if order.size == 1:
        return winner, max_price
    runner_up = int(order[1])
    # Exact rational arithmetic: a 1-ulp error must not drop the threshold below the bid.
    threshold = Fraction(int(prices[runner_up])) * Fraction(float(quality[winner])) / Fraction(
        float(quality[runner_up])
    )
    return winner, max(own, min(max_price, int(threshold)))


# --- batch market --------------------------------------------------------------------------

def batch_clear(
    order_gpus: np.ndarray,
    order_max_prices: np.ndarray,
    offer_gpus: np.ndarray,
    offer_prices: np.ndarray,
    pricing: str = "pay_as_bid",
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Periodic batch market: match many open orders to many provider offers at once.

    Rules: order ``i`` needs ``order_gpus[i]`` GPUs from ONE provider and pays at most
    ``order_max_prices[i]`` micro-USD per GPU-hour; provider ``j`` has ``offer_gpus[j]`` free
    GPUs at an ask of ``offer_prices[j]`` micro-USD per GPU-hour; ``eligible[i, j]`` (optional,
    default all True) says whether provider ``j`` can serve order ``i`` (GPU model matching).
    A pair can trade when eligible and ``ask_j ≤ max_price_i``. The assignment maximizes
    welfare ``Σ (max_price_i − ask_j) × gpus_i`` over the matched pairs, each order to at
    most one provider, no provider over its free GPUs. Then unmatched orders are added, in
    arrival order, to the first provider (in offer order) that still has room (and, under
    uniform pricing, keeps one price acceptable to every trade): at a welfare optimum these
    are zero-surplus trades (max price = ask), which the optimum alone would leave to chance.

    Method: an integer program (a binary variable per tradeable pair; one row per order, one
    capacity row per provider) solved exactly with HiGHS via `scipy.optimize.milp`. Its LP
    relaxation is solved first and used directly when its solution is integral, which it
    always is when every order needs one GPU (the constraint matrix is then totally
    unimodular: a transportation problem); otherwise branch and bound at zero optimality
    gap. Exact up to HiGHS's numerical tolerances. Orders are indivisible, so in general this
    is a multiple-knapsack problem (NP-hard): expanding providers into one-GPU slots for
    `linear_sum_assignment` would be exact only for one-GPU orders, and batches of hundreds
    of multi-GPU orders can take the solver seconds.

    Payment (micro-USD per GPU-hour): ``pricing="pay_as_bid"``: each matched order pays its
    provider's ask (iExec/SONM's deal-at-the-ask rule). ``pricing="uniform"``: one price for
    every trade, the midpoint (rounded down) of the highest accepted ask and the lowest
    accepted max price. Any price between them keeps every trade individually rational (no
    provider paid below its ask, no order above its max price), and splitting the spread
    evenly favours neither side. With eligibility and indivisible orders the welfare optimum
    need not admit such a price (its highest ask may exceed its lowest max price); uniform
    pricing then maximizes welfare over the assignments that do, solving for each candidate
    price (each distinct ask: other prices are dominated) only the pairs with
    ``ask_j ≤ price ≤ max_price_i``, best LP bound first, stopping when no remaining bound
    can win. It may therefore trade less than pay-as-bid.

    Returns ``(provider_of_order, price_of_order)``, int64 arrays over orders:
    ``NO_WINNER`` (-1) and price 0 for unmatched orders.

    >>> provider, price = batch_clear(
    ...     np.array([2, 1, 1]), np.array([1_000, 900, 500]), np.array([2, 1]), np.array([600, 800])
    ... )
    >>> provider.tolist(), price.tolist()
    ([0, 1, -1], [600, 800, 0])
    >>> batch_clear(np.array([2, 1, 1]), np.array([1_000, 900, 500]), np.array([2, 1]),
    ...             np.array([600, 800]), pricing="uniform")[1].tolist()
    [850, 850, 0]
    """
    if pricing not in ("pay_as_bid", "uniform"):
        raise ValueError(f"pricing: expected 'pay_as_bid' or 'uniform', got {pricing!r}")
    gpus = np.asarray(order_gpus, dtype=np.int64)
    bids = np.asarray(order_max_prices, dtype=np.int64)
    capacity = np.asarray(offer_gpus, dtype=np.int64)
    asks = np.asarray(offer_prices, dtype=np.int64)
    if gpus.ndim != 1 or bids.shape != gpus.shape:
        raise ValueError(
            f"order_max_prices: expected shape {gpus.shape} like order_gpus, got {bids.shape}"
        )
    if capacity.ndim != 1 or asks.shape != capacity.shape:
        raise ValueError(
            f"offer_prices: expected shape {capacity.shape} like offer_gpus, got {asks.shape}"
        )
    if np.any(gpus <= 0):
        raise ValueError("order_gpus: expected at least 1 GPU per order")
    if np.any(capacity < 0):
        raise ValueError("offer_gpus: expected 0 or more free GPUs per offer")
    shape = (gpus.size, capacity.size)
    if eligible is None:
        tradeable = np.ones(shape, dtype=bool)
    else:
        tradeable = np.array(eligible, dtype=bool)
        if tradeable.shape != shape:
            raise ValueError(
                f"eligible: expected shape {shape} (orders, offers), got {tradeable.shape}"
            )
    tradeable &= (asks[None, :] <= bids[:, None]) & (gpus[:, None] <= capacity[None, :])

    price = np.zeros(gpus.size, dtype=np.int64)
    if gpus.size == 1:  # one order: the cheapest ask it can take is the whole optimum
        provider = np.full(1, NO_WINNER, dtype=np.int64)
        candidates = np.flatnonzero(tradeable[0])
        if candidates.size:
            provider[0] = candidates[np.argmin(asks[candidates])]  # the first of equal asks
            ask = int(asks[provider[0]])
            price[0] = ask if pricing == "pay_as_bid" else (ask + int(bids[0])) // 2
        return provider, price
    market = _Batch(gpus, bids, capacity, asks)
    provider = market.solve(tradeable)
    if pricing == "pay_as_bid":
        market.fill(provider, tradeable, uniform=False)
        matched = provider != NO_WINNER
        price[matched] = asks[provider[matched]]
        return provider, price

    matched = provider != NO_WINNER
    if matched.any() and asks[provider[matched]].max() > bids[matched].min():
        provider = market.solve_uniform(tradeable)
    market.fill(provider, tradeable, uniform=True)
    matched = provider != NO_WINNER
    if matched.any():
        price[matched] = (int(asks[provider[matched]].max()) + int(bids[matched].min())) // 2
    return provider, price


class _Batch:
    """One batch market's arrays and its welfare program over a mask of tradeable pairs."""

    def __init__(
        self, gpus: np.ndarray, bids: np.ndarray, capacity: np.ndarray, asks: np.ndarray
    ) -> None:
        self.gpus, self.bids, self.capacity, self.asks = gpus, bids, capacity, asks

    def welfare(self, provider: np.ndarray) -> int:
        matched = provider != NO_WINNER
        surplus = (self.bids[matched] - self.asks[provider[matched]]) * self.gpus[matched]
        return int(surplus.sum())

    def _solve_program(
        self, tradeable: np.ndarray, capacity: np.ndarray, integral: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Solve the program (or its LP relaxation): pairs ``(rows, cols)``, ``x``, welfare."""
        rows, cols = tradeable.nonzero()
        if rows.size == 0:
            return rows, cols, np.zeros(0), 0.0
        pairs = np.arange(rows.size)
        one_provider_per_order = sparse.csr_array(
            (np.ones(rows.size), (rows, pairs)), shape=(self.gpus.size, rows.size)
        )
        gpus_per_provider = sparse.csr_array(
            (self.gpus[rows].astype(np.float64), (cols, pairs)),
            shape=(self.capacity.size, rows.size),
        )
        welfare = (self.bids[rows] - self.asks[cols]) * self.gpus[rows]
        result = milp(
            -welfare.astype(np.float64),
            constraints=[
                LinearConstraint(one_provider_per_order, -np.inf, 1),
                LinearConstraint(gpus_per_provider, -np.inf, capacity.astype(np.float64)),
            ],
            integrality=np.full(rows.size, int(integral)),
            bounds=Bounds(0, 1),
            options={"mip_rel_gap": 0.0},
        )
        if not result.success:  # the empty assignment is feasible: this is a solver fault
            raise RuntimeError(f"batch_clear: HiGHS failed: {result.message}")
        return rows, cols, result.x, -float(result.fun)

    def _assign(self, rows: np.ndarray, cols: np.ndarray, x: np.ndarray) -> np.ndarray:
        provider = np.full(self.gpus.size, NO_WINNER, dtype=np.int64)
        chosen = x > 0.5
        provider[rows[chosen]] = cols[chosen]
        return provider

    def relax(self, tradeable: np.ndarray) -> tuple:
        """The LP relaxation over the tradeable pairs; its last item is the welfare bound."""
        return (tradeable, *self._solve_program(tradeable, self.capacity, integral=False))

    def finish(
        self, tradeable: np.ndarray, rows: np.ndarray, cols: np.ndarray, x: np.ndarray
    ) -> np.ndarray:
        """An optimal assignment from a relaxation: the LP's own if it is integral, else by
        branch and bound."""
        if np.all((x < 1e-9) | (x > 1 - 1e-9)):
            return self._assign(rows, cols, x)
        return self._assign(*self._solve_program(tradeable, self.capacity, integral=True)[:3])

    def solve(self, tradeable: np.ndarray) -> np.ndarray:
        """Welfare-maximizing provider of each order (or NO_WINNER) over the tradeable pairs."""
        return self.finish(*self.relax(tradeable)[:-1])

    def solve_uniform(self, tradeable: np.ndarray) -> np.ndarray:
        """Best assignment over those with one price between every accepted ask and max price."""
        candidates = []
        for price in np.unique(self.asks):
            narrowed = tradeable & (self.asks[None, :] <= price) & (self.bids[:, None] >= price)
            candidates.append(self.relax(narrowed))
        best, best_welfare = None, -1
        for relaxation in sorted(candidates, key=lambda c: -c[-1]):
            # Welfare is an integer: a candidate whose bound is below best + 1 cannot beat it.
            bound = relaxation[-1]
            if bound + 1e-6 * max(1.0, abs(bound)) < best_welfare + 1:
                break
            provider = self.finish(*relaxation[:-1])
            welfare = self.welfare(provider)
            if welfare > best_welfare:
                best, best_welfare = provider, welfare
        assert best is not None  # there is at least one ask whenever this is called
        return best

    def fill(self, provider: np.ndarray, tradeable: np.ndarray, uniform: bool) -> None:
        """Add unmatched orders where they still fit, in arrival order, first provider first."""
        matched = provider != NO_WINNER
        free = self.capacity - np.bincount(
            provider[matched], weights=self.gpus[matched], minlength=self.capacity.size
        ).astype(np.int64)
        if uniform and matched.any():
            highest_ask, lowest_bid = self.asks[provider[matched]].max(), self.bids[matched].min()
        else:
            highest_ask, lowest_bid = np.iinfo(np.int64).min, np.iinfo(np.int64).max
        for i in np.flatnonzero(~matched):
            room = tradeable[i] & (free >= self.gpus[i])
            if uniform:
                room &= np.maximum(self.asks, highest_ask) <= min(lowest_bid, self.bids[i])
            fits = np.flatnonzero(room)
            if fits.size:
                j = int(fits[0])
                provider[i] = j
                free[j] -= self.gpus[i]
                if uniform:
                    highest_ask = max(highest_ask, self.asks[j])
                    lowest_bid = min(lowest_bid, self.bids[i])


# --- interruptible rentals -----------------------------------------------------------------

def interruptible_schedule(
    bids: np.ndarray,
    on_demand: np.ndarray,
    capacity: int | np.ndarray,
    gpus: np.ndarray | None = None,
    backfill: bool = False,
) -> np.ndarray:
    """Vast.ai-style interruptible rentals on one machine: who runs, who is paused.

    Rules: request ``i`` (in arrival order) needs ``gpus[i]`` GPUs (default 1 each) and either
    is on-demand (``on_demand[i]``: it pays the host's on-demand price and outranks every
    interruptible request; its bid is ignored) or bids ``bids[i]`` micro-USD per GPU-hour.
    Requests are ranked on-demand first (by arrival), then interruptible by bid, highest first,
    ties to the earlier arrival; the machine runs the ranking from the top while the requests
    fit in ``capacity`` and stops at the first request that does not fit (no backfilling). The
    rest are paused, not killed: they resume when the ranking changes in their favour.

    Several resources: ``gpus`` may be a ``[requests, resources]`` array of needs with
    ``capacity`` a vector of the same resources; a request fits when every resource does.
    With ``backfill``, a request that does not fit is skipped and the ranking goes on, so a
    smaller, lower-ranked request may use what a larger one cannot.

    Payment: not decided here; a running interruptible request pays its bid per GPU-hour.

    Guarantees: running needs ≤ capacity; an on-demand request is never paused while any
    interruptible one runs; a request is never paused while a lower-ranked one (a lower bid,
    or an equal bid that arrived later) runs; with ``backfill``, instead, a paused request
    does not fit beside the higher-ranked ones that run.

    Returns ``running``, a boolean array over requests.

    >>> interruptible_schedule(np.array([300, 500, 0, 400]), np.array([0, 0, 1, 0], bool), 2)
    array([False,  True,  True, False])
    """
    bids = np.asarray(bids, dtype=np.int64)
    on_demand = np.asarray(on_demand, dtype=bool)
    need = np.ones(bids.shape, dtype=np.int64) if gpus is None else np.asarray(gpus, np.int64)
    room = np.asarray(capacity, dtype=np.int64)
    if bids.ndim != 1 or on_demand.shape != bids.shape or need.shape[:1] != bids.shape:
        raise ValueError(
            f"on_demand, gpus: expected {bids.size} requests like the bids, "
            f"got shapes {on_demand.shape} and {need.shape}"
        )
    if need.ndim != room.ndim + 1 or need.shape[1:] != room.shape:
        raise ValueError(f"capacity: expected one number per resource {need.shape[1:]}, "
                         f"got shape {room.shape}")
    if np.any(need < 0) or (need.ndim == 1 and np.any(need == 0)):
        raise ValueError("gpus: expected at least 1 GPU per request")
    if np.any(room < 0):
        raise ValueError(f"capacity: expected 0 or more, got {capacity!r}")
    arrival = np.arange(bids.size)
    # lexsort's last key is the primary one: on-demand first, then highest bid, then arrival.
    ranking = np.lexsort((arrival, np.where(on_demand, 0, -bids), ~on_demand))
    running = np.zeros(bids.size, dtype=bool)
    if backfill:
        left = room.copy()
        for i in ranking.tolist():
            if np.all(need[i] <= left):
                running[i] = True
                left = left - need[i]
        return running
    used = np.cumsum(need[ranking], axis=0)
    # Needs are not negative, so the running totals only grow: what fits is a prefix.
    fits = used <= room if need.ndim == 1 else (used <= room).all(axis=1)
    running[ranking[fits]] = True
    return running


def preempted(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Which requests a change paused: running ``before`` and not running ``after``.

    >>> preempted(np.array([True, True, False]), np.array([False, True, True]))
    array([ True, False, False])
    """
    return np.asarray(before, dtype=bool) & ~np.asarray(after, dtype=bool)

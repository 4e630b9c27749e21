"""Proof that the economics is right: the textbook auction, run through the real market,
against what auction theory predicts, fee included.

`validate` runs the built-in `textbook` scenario (a 20% take rate, bidders pricing it in) for
each mechanism and number of bidders `n` (first price with `equilibrium` bidders, second price
with `truthful` ones) and reports the simulated mean and variance of the price with a 95%
confidence interval, the theory values in terms of the fee-grossed costs c / (1 − t), the
allocative efficiency and the lowest margin any winner kept. They agree when the theory mean
lies within 3.29 standard errors of the simulated one (a 99.9% interval: with eight rows, a
false alarm stays rare), every auction went to the lowest-cost bidder (efficiency 1) and no
winner kept less than its cost after the fee.

`deviations` is the incentive check: for each mechanism, one bidder multiplies its prescribed
bid by each shading of a grid while the others keep theirs, on the same cost draws as a run
where it does not (common random numbers), and the gain in what it keeps per auction is
reported as a paired difference with its 95% CI.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from market.builder import Market
from market.events import LeaseCreated, OrderOpened
from market.experiments.fanout import map_in_order
from market.experiments.intervals import NON_NEGATIVE, labelled
from market.experiments.theory import (
    deviation_gain,
    expected_price,
    expected_profit,
    price_variance,
)
from market.scenario import load_scenario
from market.units import SECONDS_PER_DAY, per_gpu_hour_usd

#: (mechanism, the strategy its bidders use in equilibrium)
SETTINGS = (("first_price", "equilibrium"), ("second_price", "truthful"))
DEFAULT_BIDDERS = (2, 3, 5, 10)
Z_95 = 1.959964
Z_AGREE = 3.290527
#: Bids are kept in whole micro-USD per GPU-hour: a truthful winner may keep up to half a
#: micro-USD less than its cost. A margin below minus this is a real loss.
MARGIN_TOLERANCE_USD = 1e-6

#: Incentive checks, per mechanism: the strategy prescribed to its bidders, and why.
#: Pay-as-bid rules get the first-price equilibrium; rules whose price does not depend on
#: the winner's own bid (second price, clocks that stop where the last rival drops, scoring
#: at the runner-up's score) get truthful bidding.
PRESCRIBED = (
    ("second_price", "truthful", "dominant: paid the second-lowest bid"),
    ("first_price", "equilibrium", "symmetric equilibrium of pay as bid"),
    ("tenant_pick", "equilibrium", "the cheapest bid wins, paid its bid: first price"),
    ("dutch", "equilibrium", "rising clock taken at the bid: a first-price outcome"),
    ("reverse_english", "truthful", "falling clock stops where the last rival drops"),
    ("scoring", "truthful", "paid the runner-up's score: truthful for known quality"),
    ("batch_clearing", "equilibrium", "one order per clearing, pay as bid"),
)
#: Mechanisms whose best deviation theory says is no gain (the others are measured).
THEORY_CASES = ("second_price", "first_price")
DEFAULT_SHADINGS = (0.8, 0.9, 0.95, 1.05, 1.1, 1.2)
DEVIATION_BIDDERS = 3
DEVIATION_AUCTIONS = 3000
NO_GAIN, GAIN, MEASURED = "no profitable deviation", "profitable deviation", "measured"


@dataclass(frozen=True, slots=True)
class ValidationRow:
    mechanism: str
    strategy: str
    bidders: int
    auctions: int
    take_rate: float
    mean_price: float
    variance: float
    ci_low: float
    ci_high: float
    theory_mean: float
    theory_variance: float
    efficiency: float
    min_margin_usd_per_gpu_hour: float   # lowest (1 − t) × price − cost of any winner
    agrees: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the mean price as a labelled interval (normal, 1.96 standard errors of
        `auctions` prices, clipped at 0), the other figures as they are, NaN as null."""
        record = {key: (None if isinstance(value, float) and math.isnan(value) else value)
                  for key, value in asdict(self).items()
                  if key not in ("mean_price", "ci_low", "ci_high")}
        record["mean_price"] = labelled(self.mean_price, self.ci_low, self.ci_high,
                                        method="normal", n=self.auctions, bounds=NON_NEGATIVE)
        return record


@dataclass(frozen=True, slots=True)
class Auctions:
    """One textbook run, auction by auction (USD per GPU-hour): the price paid (NaN: no
    lease), the winning bidder (−1: none) and the winner's cost as drawn for that auction."""

    prices: np.ndarray
    winners: np.ndarray
    winner_costs: np.ndarray
    take_rate: float
    efficiency: float

    def kept(self, bidder: int) -> np.ndarray:
        """What `bidder` kept over its cost in each auction: (1 − t) × price − cost when it
        won, else 0, USD per GPU-hour."""
        won = self.winners == bidder
        return np.where(won, (1.0 - self.take_rate) * np.nan_to_num(self.prices)
                        - self.winner_costs, 0.0)

    def margins(self) -> np.ndarray:
        """Every winner's (1 − t) × price − cost, USD per GPU-hour."""
        won = self.winners >= 0
        return (1.0 - self.take_rate) * self.prices[won] - self.winner_costs[won]


def _strategy(strategy: str, bidders: int, low: float, high: float) -> str:
    """The strategy as a scenario value: equilibrium bidders know n and the cost range."""
    params = f"{{ n = {bidders}, low = {low}, high = {high} }}" if strategy == "equilibrium" \
        else "{}"
    return f'{{ name = "{strategy}", params = {params} }}'


def textbook_overrides(mechanism: str, strategy: str, bidders: int,
                       auctions: int) -> list[str]:
    """Overrides of the `textbook` scenario for `auctions` auctions of `mechanism` among
    `bidders` bidders playing `strategy`."""
    base = load_scenario("textbook")
    book = base.textbook
    assert book is not None
    window_s = base.market.bidding_window_s
    # Each auction takes the bidding window plus the textbook's spacing (agents/textbook.py).
    days = auctions * (window_s + 3) / SECONDS_PER_DAY * 1.01
    overrides = [
        f"market.mechanism={mechanism}", f"textbook.bidders={bidders}",
        f"textbook.auctions={auctions}", f"duration_days={days}",
        "textbook.strategy=" + _strategy(strategy, bidders, book.cost_low_usd_per_gpu_hour,
                                         book.cost_high_usd_per_gpu_hour)]
    if mechanism == "batch_clearing":  # one clearing per bidding window: one order each
        overrides.append(f"market.mechanism_params={{ interval_s = {window_s} }}")
    if mechanism == "tenant_pick":
        overrides.append('market.selection="cheapest"')
    return overrides


def run_auctions(overrides: list[str], seed: int) -> Auctions:
    """Run the textbook scenario with `overrides` and return it auction by auction."""
    scenario = load_scenario("textbook", overrides)
    market = Market(scenario, seed=seed, record=False)
    opened: dict[int, int] = {}           # order id -> auction index
    won: list[tuple[int, int, float, float]] = []

    def on_open(event: OrderOpened) -> None:
        opened[event.order_id] = len(opened)

    def on_lease(event: LeaseCreated) -> None:
        # Costs stay as drawn until the next auction, long after its lease was made.
        cost = float(market.pool.cost_basis_usd_per_gpu_hour[event.provider])
        price = per_gpu_hour_usd(event.price_micro_per_hour, event.gpus)
        won.append((opened[event.order_id], event.provider, price, cost))

    market.subscribe(on_open, kinds=(OrderOpened,))
    market.subscribe(on_lease, kinds=(LeaseCreated,))
    result = market.run()
    count = len(opened)
    prices, winners, costs = np.full(count, np.nan), np.full(count, -1), np.zeros(count)
    for index, provider, price, cost in won:
        prices[index], winners[index], costs[index] = price, provider, cost
    return Auctions(prices, winners, costs, scenario.market.take_rate,
                    float(result.summary["allocative_efficiency"]))


def run_textbook(mechanism: str, strategy: str, bidders: int, auctions: int,
                 seed: int, overrides: tuple[str, ...] = ()) -> ValidationRow:
    """Run `auctions` textbook auctions (the `textbook` scenario with `overrides` on top) and
    compare them with theory."""
    every = [*textbook_overrides(mechanism, strategy, bidders, auctions), *overrides]
    scenario = load_scenario("textbook", every)
    book = scenario.textbook
    assert book is not None
    run = run_auctions(every, seed)
    prices = run.prices[~np.isnan(run.prices)]
    low, high = book.cost_low_usd_per_gpu_hour, book.cost_high_usd_per_gpu_hour
    # Theory prices the fee-grossed costs c / (1 − t) when the bidders price the fee in.
    priced_in = scenario.market.take_rate if scenario.market.bids_net_of_fee else 0.0
    mean = float(prices.mean()) if prices.size else math.nan
    variance = float(prices.var(ddof=1)) if prices.size > 1 else math.nan
    se = math.sqrt(variance / prices.size) if prices.size > 1 else math.nan
    theory = expected_price(bidders, low, high, priced_in)
    margins = run.margins()
    min_margin = float(margins.min()) if margins.size else math.nan
    agrees = (prices.size == auctions and abs(mean - theory) <= Z_AGREE * se
              and run.efficiency > 1 - 1e-9 and min_margin >= -MARGIN_TOLERANCE_USD)
    return ValidationRow(mechanism, strategy, bidders, int(prices.size), run.take_rate, mean,
                         variance, mean - Z_95 * se, mean + Z_95 * se, theory,
                         price_variance(mechanism, bidders, low, high, priced_in),
                         run.efficiency, min_margin, agrees)


def _seeds(seed: int, count: int) -> list[int]:
    """`count` independent run seeds, children of the root `seed`."""
    return [int(child.generate_state(1)[0])
            for child in np.random.SeedSequence(seed).spawn(count)]


def validate(bidders: tuple[int, ...] = DEFAULT_BIDDERS, auctions: int = 2000,
             seed: int = 1) -> list[ValidationRow]:
    """Every mechanism × number of bidders; each run has its own seed derived from `seed`."""
    runs = [(mechanism, strategy, n) for mechanism, strategy in SETTINGS for n in bidders]
    return [run_textbook(mechanism, strategy, n, auctions, run_seed)
            for (mechanism, strategy, n), run_seed in zip(runs, _seeds(seed, len(runs)),
                                                          strict=True)]


# ------------------------------------------------------------------ incentive checks

@dataclass(frozen=True, slots=True)
class ShadingGain:
    """What one shading of the prescribed bid gains the deviator per auction, USD per
    GPU-hour kept: the mean paired difference, its standard error and 95% CI, and theory's
    value where theory has one (None elsewhere)."""

    shading: float
    gain: float
    se: float
    ci_low: float
    ci_high: float
    theory_gain: float | None

    def to_dict(self, auctions: int) -> dict[str, object]:
        return {"shading": self.shading,
                "gain": labelled(self.gain, self.ci_low, self.ci_high, method="normal",
                                 n=auctions),
                "se": self.se, "theory_gain": self.theory_gain}


@dataclass(frozen=True, slots=True)
class DeviationRow:
    """The best unilateral deviation from a mechanism's prescribed strategy."""

    mechanism: str
    strategy: str                 # prescribed to every bidder
    bidders: int
    auctions: int
    profit: float                 # the deviator's mean kept profit per auction, prescribed
    theory_profit: float | None   # theory's, where theory covers the case
    best: ShadingGain             # the shading with the largest mean gain
    verdict: str                  # NO_GAIN / GAIN for the theory cases, else MEASURED
    shadings: tuple[ShadingGain, ...] = field(default=())

    @property
    def holds(self) -> bool:
        """False when theory says no deviation pays and one does, significantly."""
        return self.verdict != GAIN

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: each shading's gain a labelled interval (normal, 1.96 standard errors
        of the `auctions` paired differences; a gain can take either sign)."""
        record = asdict(self)
        record["best"] = self.best.to_dict(self.auctions)
        record["shadings"] = [gain.to_dict(self.auctions) for gain in self.shadings]
        return record


def _paired(shading: float, deviated: np.ndarray, prescribed: np.ndarray,
            theory_gain: float | None) -> ShadingGain:
    difference = deviated - prescribed
    gain = float(difference.mean())
    se = float(difference.std(ddof=1) / math.sqrt(difference.size))
    return ShadingGain(shading, gain, se, gain - Z_95 * se, gain + Z_95 * se, theory_gain)


def _kept_by_bidder_0(task: tuple[list[str], int]) -> np.ndarray:
    """What bidder 0 kept per auction in the textbook run with these overrides and seed."""
    overrides, seed = task
    return run_auctions(overrides, seed).kept(0)


def _run_all(tasks: list[tuple[list[str], int]], workers: int,
             on_progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """`_kept_by_bidder_0` of every task, in order, on up to `workers` processes (the runs
    are independent and seeded: the answer does not depend on `workers`);
    `on_progress(done, total)` as they finish."""
    return map_in_order(_kept_by_bidder_0, tasks, max(workers, 1), on_progress)


def _check_inputs(bidders: int, auctions: int, shadings: tuple[float, ...]) -> None:
    if bidders < 2:
        raise ValueError(f"bidders: a deviation needs rivals, n >= 2, got {bidders}")
    if auctions < 2:
        raise ValueError(f"auctions: a standard error needs at least 2, got {auctions}")
    if not shadings or not all(0 < s < math.inf for s in shadings):
        raise ValueError(f"shadings: expected numbers > 0, got {shadings!r}")


def _tasks(mechanism: str, strategy: str, bidders: int, auctions: int,
           shadings: tuple[float, ...], seed: int) -> list[tuple[list[str], int]]:
    """The runs of one check: without the deviation, then with each shading; one seed for
    all, so the costs are drawn alike in every run (common random numbers)."""
    overrides = textbook_overrides(mechanism, strategy, bidders, auctions)
    return [(overrides, seed)] + [
        ([*overrides, f"textbook.deviator={{ shading = {shading} }}"], seed)
        for shading in shadings]


def _row(mechanism: str, strategy: str, bidders: int, shadings: tuple[float, ...],
         kept: list[np.ndarray], theory: bool | None) -> DeviationRow:
    """The check's row from what bidder 0 kept: `kept[0]` prescribed, then per shading."""
    covered = (mechanism, strategy) in SETTINGS
    theory = covered if theory is None else theory
    base = load_scenario("textbook")
    book = base.textbook
    assert book is not None
    low, high = book.cost_low_usd_per_gpu_hour, book.cost_high_usd_per_gpu_hour
    prescribed = kept[0]
    gains = [_paired(shading, deviated, prescribed,
                     deviation_gain(mechanism, shading, bidders, low, high,
                                    base.market.take_rate) if covered else None)
             for shading, deviated in zip(shadings, kept[1:], strict=True)]
    best = max(gains, key=lambda g: g.gain)
    significant = best.gain > Z_AGREE * best.se
    verdict = (GAIN if significant else NO_GAIN) if theory else MEASURED
    return DeviationRow(mechanism, strategy, bidders, prescribed.size,
                        float(prescribed.mean()),
                        expected_profit(bidders, low, high) if covered else None, best,
                        verdict, tuple(gains))


def deviation_check(mechanism: str, strategy: str, bidders: int = DEVIATION_BIDDERS,
                    auctions: int = DEVIATION_AUCTIONS,
                    shadings: tuple[float, ...] = DEFAULT_SHADINGS, seed: int = 1,
                    theory: bool | None = None, workers: int = 1) -> DeviationRow:
    """Measure the gain of bidder 0 from multiplying its `strategy` bid by each shading
    while the other bidders keep `strategy`, against its own profit when it keeps it too,
    auction by auction on the same seed and cost draws (a paired difference).

    `theory` (default: whether `mechanism` is first or second price and `strategy` the one
    theory prescribes there) says whether no deviation should pay, and so the verdict: then
    "profitable deviation" when the best shading's gain is above 3.29 standard errors (a
    one-sided 99.9% bound, strict because the best of several shadings is picked) and "no
    profitable deviation" otherwise; else "measured". Theory's gains and profit are
    reported for the two cases it covers (first price with equilibrium bidders, second price
    with truthful ones).
    """
    _check_inputs(bidders, auctions, shadings)
    kept = _run_all(_tasks(mechanism, strategy, bidders, auctions, shadings, seed), workers)
    return _row(mechanism, strategy, bidders, shadings, kept, theory)


def deviations(bidders: int = DEVIATION_BIDDERS, auctions: int = DEVIATION_AUCTIONS,
               shadings: tuple[float, ...] = DEFAULT_SHADINGS, seed: int = 1,
               workers: int | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> list[DeviationRow]:
    """The incentive check for every mechanism of `PRESCRIBED`, all on one seed (common
    random numbers across mechanisms too: equivalent rules give equal rows), on `workers`
    processes (default: one per CPU); `on_progress(done, total)` counts its markets."""
    _check_inputs(bidders, auctions, shadings)
    # Batch clearing solves an assignment at every clearing: its runs are the slowest, so
    # they go first and the processes finish together.
    order = sorted(range(len(PRESCRIBED)), key=lambda i: PRESCRIBED[i][0] != "batch_clearing")
    tasks = [task for i in order
             for task in _tasks(*PRESCRIBED[i][:2], bidders, auctions, shadings, seed)]
    kept = _run_all(tasks, workers if workers is not None else (os.cpu_count() or 1),
                    on_progress)
    runs = len(shadings) + 1
    by_check = {i: kept[k * runs:(k + 1) * runs] for k, i in enumerate(order)}
    return [_row(mechanism, strategy, bidders, shadings, by_check[i], mechanism in THEORY_CASES)
            for i, (mechanism, strategy, _) in enumerate(PRESCRIBED)]

"""Off-policy evaluation: what another bid strategy would have earned on a logged market.

From a run's folder (`events.parquet`, `scenario.json`, `summary.json`: `gpumarket run --out
DIR --events`, or a live session's replay) and a logging population L, estimate **L's lease
profit** had L bid with a target strategy: revenue net of fees − serving cost (marginal cost
× GPU-hours served), summed over L's providers, USD (the providers table's `revenue_usd −
serving_cost_usd`). Idle power, operations and capex are paid per hour on the market whatever
L bids: they cancel between strategies and are left out.

Units are the orders on which L's providers placed bids (`market.experiments.offpolicy_log`).
For each, the target is asked to price the order for the same L bidders, through a view that
shows what the logged market showed then (`LoggedView`: the order's time, the published lease
prices so far, L's own costs). Three estimators, each a total over the units (USD) with a 95%
interval from a normal approximation on the sum of per-unit contributions (n × their sample
variance), and per order:

- **DM (direct method).** The outcome model is the mechanism itself: L's bids are replaced by
  the target's (a bid above the max price is dropped, as the engine drops it), the other bids
  are held as logged (they are public), and the mechanism's own `allocate` clears the bids
  that counted at close (with the auction context the log allows: see `Auction.context`).
  If L wins, revenue = the price × the lease's duration × (1 − fee rate): the logged lease's
  run when the order was leased, else the mean run of logged leases of the same job kind and
  GPUs (then job kind, then all); serving cost = the winner's marginal cost × GPUs × that
  duration. By default the leases DM gives L hold their provider's GPUs for that duration: a
  bidder they leave too few free GPUs does not bid (`crowded`); `capacity_aware=False` keeps
  L's capacity as logged. Capacity the target frees (orders it loses) cannot add bids: the
  log never shows what L did not bid on. Assumes others do not react and durations do not
  depend on who serves. Its interval is over the orders only: the model's own error is not in
  it (see the fidelity figure: the share of logged outcomes DM reproduces at the logged bids).
- **IPS (inverse propensity).** Needs the logging strategy's bid density (`bid_density`, as
  `explore` has). Weight per unit = Π over L's bidders of p_T(b) / p_L(b) at the logged bid b:
  p_T is the target's own density if it has one (a stochastic target: the logging strategy
  itself gives weights ≡ 1), else a box kernel of half-width h = `bandwidth` × the bidder's
  cost basis around the target's bid, 1 / (2h) inside, 0 outside (a target that does not bid
  where L bid: 0). Estimate Σ w × realized profit. Assumes the propensity is known and
  overlap (target bids inside the logging support, kernel window included; the share outside
  is reported); the kernel makes it the value of the target's bid jittered by ±h.
  **SNIPS** divides by the weights' mean instead (Σ w r / Σ w × n): biased but far steadier
  when few units carry large weights; its interval is the delta method's.
- **DR (doubly robust).** DM + w × (realized − DM's prediction at the logged bids), per unit:
  right if either the outcome model or the propensity is. Where DM reproduces every logged
  outcome (fidelity 100%, the logged leases' own durations) the residuals vanish and DR is DM;
  it departs from DM where the model misses (a lease its escrow underpaid, contexts the log
  only approximates).

L's providers whose draw was above an order's max price never reach the log (the engine drops
the bid; `Explore.above_max_probability` is how likely that was): the target is not asked for
providers that did not bid. IPS's weights use the unconditional density of the logged bids,
which stays right for the total: a dropped draw earns L nothing, so the units it leaves out
add 0 to Σ w r. DM cannot see what the target would have won there. Adaptive targets
(`observe`) are told the counterfactual outcome DM gives them, in the log's order (closed
loop on the model, not on the market). Tenants' re-posts after an expiry that the target
would have avoided are not modelled: each order is its own unit.

**Check.** The market is run again with L's strategy replaced by the target on the same seed:
its L lease profit is the realized value, beside the logged one. The gap between an estimate
and the realized value is the market's feedback OPE leaves out: capacity taken by extra wins,
tenants re-posting, others adapting.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from market.core.auction import NO_WINNER
from market.experiments.offpolicy_figures import (
    Evaluation,
    RunEvaluation,
    UnitFigures,
    pool_runs,
)
from market.experiments.offpolicy_jobs import job_figures
from market.experiments.offpolicy_log import Auction, LeaseRuns, LogReader, OffPolicyError
from market.observe.eventlog import EVENTS_FILE, SCENARIO_FILE, read_scenario
from market.strategy import MarketView, Outcome, ProviderView
from market.units import (
    MICRO_USD_PER_USD,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    gpu_hour_micro,
    order_rates_micro,
    per_gpu_hour_usd,
)

#: Default kernel half-width, as a fraction of each bidder's cost basis per GPU-hour.
BANDWIDTH = 0.05


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class TargetStrategy:
    """The strategy to evaluate: a registered name and its parameters."""

    name: str
    params: dict[str, Any]

    @property
    def label(self) -> str:
        """Its name in results, as tournaments name it (`StrategyRef.label`)."""
        from market.scenario import StrategyRef

        return StrategyRef.model_construct(name=self.name, params=self.params).label()

    def build(self) -> Any:
        from market.scenario import StrategyRef

        return StrategyRef.model_validate({"name": self.name, "params": self.params}).build()


def parse_target(text: str, option: str = "--strategy") -> TargetStrategy:
    """`"cost_plus{markup=0.5}"` as a TargetStrategy (the tournament's syntax, one strategy);
    OffPolicyError naming `option` if it is malformed, unknown or its parameters are wrong."""
    from pydantic import ValidationError

    from market.experiments.tournament import parse_lineup
    from market.scenario import ScenarioError, StrategyRef

    if len(text) > 1_000:
        raise OffPolicyError(f"{option}: expected one strategy, e.g. cost_plus{{markup=0.5}}; "
                             f"got {len(text):,} characters")
    try:
        lineup = parse_lineup(text, option)
    except ScenarioError as error:
        raise OffPolicyError(str(error)) from None
    if len(lineup) != 1:
        raise OffPolicyError(f"{option}: name one strategy, e.g. cost_plus{{markup=0.5}}; "
                             f"got {len(lineup)}")
    try:
        StrategyRef.model_validate(lineup[0])
    except ValidationError as error:
        message = str(error.errors(include_url=False)[0]["msg"])
        raise OffPolicyError(f"{option}: {message.removeprefix('Value error, ')}") from None
    except ValueError as error:  # an unknown name (the registry lists the known ones)
        raise OffPolicyError(f"{option}: {error}") from None
    return TargetStrategy(lineup[0]["name"], dict(lineup[0]["params"]))


@dataclass(slots=True)
class LoggedRun:
    """A run folder opened for evaluation: its scenario, seed, the market rebuilt at t=0 (the
    same providers and costs as the logged run), and the logging population."""

    folder: Path
    scenario: Any
    seed: int
    population: str
    index: int                  # the population's index in the scenario
    market: Any
    providers: np.ndarray       # L's provider ids, ascending
    strategy_index: int         # L's strategy in the market's bidding
    horizon_s: float


def open_run(folder: str | Path, population: str) -> LoggedRun:
    """Open run folder `folder` for population `population`; OffPolicyError (naming RUN_DIR
    or --population and what is valid) if it cannot be evaluated."""
    from market.builder import Market
    from market.scenario import ScenarioError

    folder = Path(folder)
    if not folder.is_dir():
        raise OffPolicyError(f"RUN_DIR: {str(folder)!r} is not a directory")
    for name, how in ((EVENTS_FILE, "gpumarket run --out DIR --events"),
                      (SCENARIO_FILE, "gpumarket run --out DIR"),
                      ("summary.json", "gpumarket run --out DIR")):
        if not (folder / name).is_file():
            raise OffPolicyError(f"RUN_DIR: {str(folder)!r} has no {name}; write the run "
                                 f"with `{how}` (or `gpumarket replay ... --out DIR --events`)")
    try:
        scenario = read_scenario(folder)
        summary = json.loads((folder / "summary.json").read_text("utf-8"))
        seed = summary.get("seed") if isinstance(summary, dict) else None
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"summary.json: expected a seed (an integer >= 0), got {seed!r}")
    except (ScenarioError, OSError, ValueError) as error:
        raise OffPolicyError(f"RUN_DIR: {str(folder)!r}: cannot read its scenario and seed: "
                             f"{error}") from None
    _check_events(folder)
    names = [p.name for p in scenario.providers]
    if population not in names:
        raise OffPolicyError(f"--population: {population!r} is not a provider population of "
                             f"{str(folder)!r}; expected one of {', '.join(names)}")
    mechanism = scenario.market.mechanism
    if mechanism in ("batch", "interruptible"):
        raise OffPolicyError(f"RUN_DIR: {str(folder)!r}: mechanism {mechanism!r} clears "
                             "orders together or pauses leases; off-policy evaluation prices "
                             "one order's auction at a time")
    index = names.index(population)
    market = Market(scenario, seed=seed)
    providers = (market.pool.population[: market.pool.n] == index).nonzero()[0].astype(np.int64)
    if not providers.size:
        raise OffPolicyError(f"--population: {population!r} has no providers in "
                             f"{str(folder)!r}")
    strategy_index = int(market.bidding.strategy_of(providers[:1])[0])
    horizon_s = float(summary.get("simulated_days", scenario.duration_days)) * SECONDS_PER_DAY
    return LoggedRun(folder, scenario, seed, population, index, market, providers,
                     strategy_index, horizon_s)


def _check_events(folder: Path) -> None:
    """OffPolicyError unless `folder/events.parquet` is an event log (`EventLog.SCHEMA`)."""
    import pyarrow.parquet as pq

    from market.observe.eventlog import EventLog

    try:
        names = set(pq.ParquetFile(folder / EVENTS_FILE).schema_arrow.names)
    except (OSError, ValueError) as error:  # pyarrow's errors are both
        raise OffPolicyError(f"RUN_DIR: {str(folder)!r}: {EVENTS_FILE} is not a Parquet "
                             f"file: {str(error).splitlines()[0]}") from None
    if not set(EventLog.SCHEMA.names) <= names:
        raise OffPolicyError(f"RUN_DIR: {str(folder)!r}: {EVENTS_FILE} is not an event log "
                             f"(expected columns {', '.join(EventLog.SCHEMA.names)})")


class LoggedView(MarketView):
    """What L's strategy could see at a logged moment: the log's clock and published prices,
    L's own costs (from the market rebuilt at t=0) and its GPUs not under lease."""

    def __init__(self, run: LoggedRun, reader: LogReader) -> None:
        super().__init__(run.market, run.strategy_index, run.market.bidding.history)
        self._reader = reader
        ids = run.providers
        consecutive = ids[-1] - ids[0] + 1 == ids.size
        self.members = (int(ids[0]), int(ids[-1]) + 1) if consecutive else None

    @property
    def now_s(self) -> float:
        return self._reader.now_s

    def clearing_prices(self, gpu_model: str) -> np.ndarray:
        return self._reader.clearing_prices(gpu_model)

    def mean_clearing_price(self, gpu_model: str, last: int) -> float:
        return self._reader.mean_clearing_price(gpu_model, last)

    def free_gpus(self, providers: np.ndarray) -> np.ndarray:
        return self._reader.free_gpus(self._check(providers))

    def provider(self, provider: int) -> ProviderView:
        own = super().provider(provider)
        free = int(self.free_gpus(np.array([provider]))[0])
        return ProviderView(own.provider, own.gpu_model, own.gpus, free,
                            own.cost_full_usd_per_gpu_hour, own.cost_marginal_usd_per_gpu_hour,
                            own.cost_basis_usd_per_gpu_hour)


# ----------------------------------------------------------------------------- the walk


class _Evaluator:
    """One run's pass over the log: the target's bids at each open, DM's outcomes at each
    close, and the per-unit figures the estimators sum."""

    def __init__(self, run: LoggedRun, target: Any, bandwidth: float,
                 capacity_aware: bool = True) -> None:
        market = run.market
        rules = run.scenario.market
        self.run = run
        self.target = target
        self.bandwidth = bandwidth
        self.logging = market.bidding.strategies[run.strategy_index]
        self.density = getattr(self.logging, "bid_density", None)
        self.target_density = getattr(target, "bid_density", None)
        self.observes = callable(getattr(target, "observe", None))
        self.mechanism = market.mechanism
        self.uses_context = bool(getattr(self.mechanism, "uses_context", False))
        pool = market.pool
        self.models = pool.model[: pool.n].astype(np.int64)
        self.list_usd = market.catalog.array("list_usd_per_gpu_hour")
        self.marginal = pool.cost_marginal_usd_per_gpu_hour[: pool.n].copy()
        self.fee_rate = rules.fee_rate
        mine = np.zeros(pool.n, bool)
        mine[run.providers] = True
        events = run.folder / EVENTS_FILE
        # The jobs' hours on every GPU model, which per-job auctions weigh, from the run
        # rebuilt (None: it does not rebuild; the lease's hours stand in).
        self.runs = LeaseRuns(events, run.horizon_s)
        self.jobs = job_figures(run.scenario, run.seed, self.runs.leases) \
            if self.uses_context else None
        self.reader = LogReader(events, mine, pool.capacity[: pool.n, 0],
                                self.marginal, sealed=bool(self.mechanism.sealed),
                                window_s=rules.bidding_window_s,
                                bid_timeout_s=rules.bid_timeout_s, horizon_s=run.horizon_s,
                                jobs=self.jobs)
        self.view = LoggedView(run, self.reader)
        # Asks of an order-independent target, read once as the engine reads them (whole
        # micro-USD per GPU-hour; -1: asked per order).
        self.static_ask = np.full(pool.n, -1, np.int64)
        asks = getattr(target, "asks", None)
        if asks is not None:
            micro = gpu_hour_micro(np.nan_to_num(np.asarray(
                asks(run.providers.copy(), self.view), float), nan=-1.0))
            micro[~(micro > 0)] = -1
            self.static_ask[run.providers] = micro.astype(np.int64)
        self.target_micro: dict[int, np.ndarray] = {}   # order -> target bids of L's bidders
        self.weight: dict[int, float] = {}
        self.outside: list[bool] = []
        self.dm_target: dict[int, tuple[int, int]] = {}  # order -> (winner, price)
        self.dm_logged: dict[int, tuple[int, int]] = {}
        # DM's own leases of L under the target: (end s, provider, GPUs), soonest first, and
        # the GPUs they hold per provider. A bidder they leave too few free GPUs does not bid.
        self.capacity_aware = capacity_aware
        self.capacity = pool.capacity[: pool.n, 0].astype(np.int64)
        self.dm_leases: list[tuple[float, int, int]] = []
        self.dm_held = np.zeros(pool.n, np.int64)
        self.dm_bids: dict[int, np.ndarray] = {}        # order -> DM's target bids of L
        self.crowded = 0                                # target bids left out for capacity

    # -------------------------------------------------------------- one order

    def priced(self, unit: Auction) -> None:
        """The target's bids for L's bidders on `unit` (NaN: no bid), and the unit's weight."""
        order = unit.order
        bidders = unit.providers[unit.mine]
        static = self.static_ask[bidders]
        micro = static.astype(float) * order.gpus
        asked = static <= 0
        if asked.any():
            prices = np.asarray(self.target.prices(order, bidders[asked].copy(), self.view),
                                dtype=float)
            rates = order_rates_micro(prices, order.gpus)
            rates[~(rates > 0)] = np.nan
            micro[asked] = rates
        micro[micro > order.max_price_micro_per_hour] = np.nan  # the engine drops it
        self.target_micro[order.order_id] = micro
        dm_bids = micro
        if self.capacity_aware:
            now = self.reader.now_s
            while self.dm_leases and self.dm_leases[0][0] <= now:
                _, provider, gpus = heapq.heappop(self.dm_leases)
                self.dm_held[provider] -= gpus
            full = self.dm_held[bidders] + order.gpus > self.capacity[bidders]
            if full.any():
                self.crowded += int((full & ~np.isnan(micro)).sum())
                dm_bids = np.where(full, np.nan, micro)
        self.dm_bids[order.order_id] = dm_bids
        if self.density is not None:
            self.weight[order.order_id] = self._weight(unit, bidders, micro)

    def _weight(self, unit: Auction, bidders: np.ndarray, target_micro: np.ndarray) -> float:
        order = unit.order
        logged = per_gpu_hour_usd(unit.prices_micro[unit.mine], order.gpus)
        # A logged bid is the strategy's price rounded to whole micro-USD per order-hour.
        slack = 1.0 / (order.gpus * MICRO_USD_PER_USD)
        p_logged = np.asarray(self.density(order, bidders, logged, self.view, slack), float)
        if not (p_logged > 0).all():
            raise OffPolicyError(f"--population: {self.run.population!r}'s logged bids on "
                                 f"order {order.order_id} are outside its strategy's bid "
                                 "distribution: the log was not made with this strategy")
        if self.target_density is not None:
            # A stochastic target: the ratio of the two densities, no kernel.
            p_target = np.asarray(self.target_density(order, bidders, logged, self.view, slack),
                                  float)
            if hasattr(self.target, "support") and hasattr(self.logging, "support"):
                t_low, t_high = self.target.support(bidders, self.view)
                l_low, l_high = self.logging.support(bidders, self.view)
                self.outside.extend(((t_low < l_low) | (t_high > l_high)).tolist())
            return float(np.prod(p_target / p_logged))
        target = per_gpu_hour_usd(target_micro, order.gpus)
        half = self.bandwidth * self.view.costs(bidders)
        low, high = self.logging.support(bidders, self.view) \
            if hasattr(self.logging, "support") else (np.full(bidders.size, -np.inf),
                                                      np.full(bidders.size, np.inf))
        self.outside.extend(((target - half < low) | (target + half > high)
                             | np.isnan(target)).tolist())
        kernel = np.where(np.abs(logged - target) <= half, 0.5 / half, 0.0)  # NaN: 0
        return float(np.prod(kernel / p_logged))

    def closed(self, unit: Auction) -> None:
        """DM's outcome of `unit` at the logged bids and at the target's; the target hears
        its counterfactual outcome."""
        order_id = unit.order_id
        self.dm_logged[order_id] = self._clear(unit, unit.prices_micro.astype(float))
        prices = unit.prices_micro.astype(float)
        prices[unit.mine] = self.dm_bids.pop(order_id)
        winner, price = self.dm_target[order_id] = self._clear(unit, prices)
        if self.capacity_aware and winner >= 0 and self.is_mine(winner):
            end_s = unit.closed_s + self.runs.duration_s(order_id, unit.job_kind, unit.gpus)
            heapq.heappush(self.dm_leases, (end_s, winner, unit.gpus))
            self.dm_held[winner] += unit.gpus
        if self.observes:
            bid = unit.mine & ~np.isnan(prices)
            mine_bids = prices[bid]
            public = prices[~np.isnan(prices)]
            gpus = unit.gpus
            self.target.observe(Outcome(
                unit.order, unit.providers[bid].copy(), per_gpu_hour_usd(mine_bids, gpus),
                unit.providers[bid] == winner,
                per_gpu_hour_usd(price, gpus) if winner >= 0 else math.nan, unit.closed_s,
                per_gpu_hour_usd(public, gpus), mine_bids.astype(np.int64),
                int(price) if winner >= 0 else -1, public.astype(np.int64)))

    def _clear(self, unit: Auction, prices: np.ndarray) -> tuple[int, int]:
        """(winning provider or -1, price micro-USD per hour) of the mechanism over `prices`
        (NaN: no bid): the bids that counted at the logged close, or, for a mechanism that
        closes at the first acceptable arrival, those arrived by each arrival in turn."""
        if self.mechanism.sealed:
            return self._allocate(unit, unit.valid & ~np.isnan(prices), prices)
        held = unit.held & ~np.isnan(prices)
        for at in np.unique(unit.arrivals_s[held]).tolist():
            winner = self._allocate(unit, held & (unit.arrivals_s <= at), prices)
            if winner[0] >= 0:
                return winner
        return -1, 0

    def _allocate(self, unit: Auction, counted: np.ndarray, prices: np.ndarray
                  ) -> tuple[int, int]:
        where = counted.nonzero()[0]
        if not where.size:
            return -1, 0
        bids = prices[where].astype(np.int64)
        max_price = unit.order.max_price_micro_per_hour
        if self.uses_context:
            winner, price = self.mechanism.allocate(
                bids, max_price, unit.context(counted, self.models, self.list_usd))
        else:
            winner, price = self.mechanism.allocate(bids, max_price)
        if winner == NO_WINNER:
            return -1, 0
        return int(unit.providers[where[winner]]), int(price)

    # -------------------------------------------------------------- the run

    def walk(self) -> list[Auction]:
        for moment, unit in self.reader.auctions():
            if moment == "open":
                self.priced(unit)
            else:
                self.closed(unit)
        return self.reader.finish()

    def durations_s(self, units: list[Auction]) -> np.ndarray:
        """Each unit's lease duration for DM (`LeaseRuns.duration_s`), seconds."""
        return np.array([self.runs.duration_s(u.order_id, u.job_kind, u.gpus) for u in units])

    def is_mine(self, provider: int) -> bool:
        return provider < self.capacity.size \
            and int(self.run.market.pool.population[provider]) == self.run.index

    def lease_profit_usd(self, winner: int, price_micro: int, gpus: int,
                         duration_s: float) -> float:
        """L's lease profit if `winner` is L's and serves for `duration_s` at `price_micro`
        per hour: pay net of the fee − marginal cost × GPU-hours (0 for anyone else)."""
        if winner < 0 or not self.is_mine(winner):
            return 0.0
        hours = duration_s / SECONDS_PER_HOUR
        revenue = price_micro * hours * (1.0 - self.fee_rate) / MICRO_USD_PER_USD
        return float(revenue - self.marginal[winner] * gpus * hours)


def _check_bandwidth(bandwidth: float) -> None:
    if not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise OffPolicyError(f"--bandwidth: expected a number > 0 (a fraction of each "
                             f"bidder's cost basis), got {bandwidth}")


def evaluate_run(folder: str | Path | LoggedRun, population: str, target: TargetStrategy, *,
                 bandwidth: float = BANDWIDTH, rerun: bool = True,
                 capacity_aware: bool = True,
                 note: Callable[[str], None] | None = None) -> RunEvaluation:
    """Every estimator's figure for `target` in run folder `folder` (or a run already
    opened) of logging population `population`, with the re-run's realized value unless
    `rerun` is false. With `capacity_aware` (the default) DM's own leases under the target
    hold their providers' GPUs; without, L's capacity is as logged. `note` hears a line as
    each long step starts (the run rebuilt, the re-run)."""
    _check_bandwidth(bandwidth)
    run = folder if isinstance(folder, LoggedRun) else open_run(folder, population)
    if note is not None:
        note(f"{run.folder}: reading the log (the run is rebuilt once for its jobs' hours)")
    evaluator = _Evaluator(run, target.build(), bandwidth, capacity_aware)
    units = evaluator.walk()
    n = len(units)
    durations = evaluator.durations_s(units)
    realized_r = np.array([unit.profit_usd for unit in units])
    dm = np.zeros(n)
    dm_logged = np.zeros(n)
    reproduced = 0
    won_dm = 0
    for i, unit in enumerate(units):
        winner, price = evaluator.dm_target[unit.order_id]
        dm[i] = evaluator.lease_profit_usd(winner, price, unit.gpus, durations[i])
        won_dm += winner >= 0 and evaluator.is_mine(winner)
        logged_winner, logged_price = evaluator.dm_logged[unit.order_id]
        dm_logged[i] = evaluator.lease_profit_usd(logged_winner, logged_price, unit.gpus,
                                                  durations[i])
        reproduced += (logged_winner, logged_price) == (unit.winner, unit.price_micro)
    logging_name = type(evaluator.logging).__name__
    for population in run.scenario.providers:
        if population.name == run.population:
            logging_name = population.strategy.name
    if evaluator.density is None:
        weights = None
        no_density = (f"the logging strategy {logging_name!r} does not expose its bid "
                      "distribution (bid_density); log with `explore` for IPS and DR")
    else:
        weights = np.array([evaluator.weight[unit.order_id] for unit in units])
        no_density = ""
    figures = UnitFigures(dm, realized_r, dm_logged, weights)
    if rerun and note is not None:
        note(f"{run.folder}: running the market again with {target.label} (seed {run.seed})")
    realized = realized_value(run, target) if rerun else math.nan
    return RunEvaluation(
        run=str(run.folder), seed=run.seed, population=run.population, target=target.label,
        logging=logging_name, units=n, bidders=int(sum(int(u.mine.sum()) for u in units)),
        won_logged=int(sum(u.won for u in units)), won_dm=won_dm,
        fidelity=reproduced / n if n else math.nan, hand_picked=evaluator.reader.hand_picked,
        overlap_violations=float(np.mean(evaluator.outside)) if evaluator.outside else math.nan,
        mean_weight=figures.mean_weight(), effective_units=figures.effective_units(),
        job_hours="lease only" if evaluator.uses_context and evaluator.jobs is None
        else "rebuilt run",
        capacity="less DM's own leases" if capacity_aware else "as logged",
        crowded=evaluator.crowded,
        logged_usd=float(realized_r.sum()), realized_usd=realized,
        estimates=figures.estimates(no_density), figures=figures)


def lease_profit_of(market: Any, providers: np.ndarray) -> float:
    """L's lease profit in a finished market: revenue net of fees − serving cost, USD."""
    accounts = market.metrics.provider_accounts()
    return float((accounts["revenue_usd"][providers]
                  - accounts["serving_cost_usd"][providers]).sum())


def realized_value(run: LoggedRun, target: TargetStrategy) -> float:
    """L's lease profit when the market runs again on the same seed with L's strategy
    replaced by `target` (USD)."""
    from market.builder import Market
    from market.scenario import validate_scenario

    data = run.scenario.model_dump(mode="json")
    data["providers"][run.index]["strategy"] = {"name": target.name, "params": target.params}
    market = Market(validate_scenario(data, "evaluate"), seed=run.seed)
    market.run()
    return lease_profit_of(market, run.providers)


# ----------------------------------------------------------------------------- many runs


def evaluate(folders: list[str | Path], population: str, target: TargetStrategy, *,
             bandwidth: float = BANDWIDTH, rerun: bool = True, capacity_aware: bool = True,
             note: Callable[[str], None] | None = None) -> Evaluation:
    """`evaluate_run` on each folder; pooled figures when there are several. Every folder
    is opened (and checked) before any is evaluated: bad input fails at once."""
    _check_bandwidth(bandwidth)
    opened = [open_run(folder, population) for folder in folders]
    runs = [evaluate_run(run, population, target, bandwidth=bandwidth, rerun=rerun,
                         capacity_aware=capacity_aware, note=note)
            for run in opened]
    return Evaluation(runs, pool_runs(runs) if len(runs) > 1 else None)

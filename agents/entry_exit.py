"""Entry and exit: providers leave when their avoidable costs go uncovered, and new capacity
enters when the expected long-run profit of a new provider beats a hurdle.

Every `review_days` (the review clock) the market is reviewed over the last `window_days` (a
whole number of reviews), once a whole window has passed:

- **Exit.** A provider of a population that may exit, on the market for the whole window,
  whose revenue over the window (net of fees) was below its avoidable costs over it (serving,
  idle power and operations, as `Metrics.provider_accounts` counts them) retires: it bids no
  more from this review on, serves its running leases to their planned ends, and leaves when
  the last one ends (`Market.retire_provider`). Draining, not closing, keeps the tenants' work
  running and every payment as it was: money is conserved as for any lease.
- **Entry.** For each population that may enter and each GPU model of its mix: expected
  revenue per GPU-hour = the model's mean price over the window (GPU-weighted, of the leases
  that started in it; without one, the last window's) × (1 − take rate) × the recent
  utilization of the population's providers of that model (busy GPU-hours over GPU-hours
  present in the window; committed GPUs not yet arrived count as idle capacity; all
  populations' providers of the model when the population has none). Expected long-run
  profit per GPU-hour = that − the entrant's cost of a GPU-hour on the market at that
  utilization (capex + operations + idle power + serving × utilization,
  `agents.providers.gpu_costs` at the middle of its electricity range). The population
  commits to one new provider of the model when profit / full cost > `hurdle`, at most
  `max_entrants_per_review` a population per review (best ratios first) and `max_entrants`
  over the run. It arrives `investment_lag_days` later, drawn as its population draws its
  providers (GPU count and electricity price) from its own stream
  (`providers.<population>.entry`, so no other stream shifts), and bids with its
  population's strategy (the same instance).

The agent keeps one row per population per review (`series`, the `entry_exit` table,
`market.observe.tables.ENTRY_EXIT_SCHEMA`) and the run's totals (`summary`, the summary's
`entry_exit`). `agents.populate` starts it where the scenario has an `[entry_exit]` table; a
market built with `populate=False` starts it with `start_entry_exit`.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.providers import build_rows, gpu_costs
from market import registry
from market.events import LeaseCreated, ProviderEntered, ProviderExited
from market.units import SECONDS_PER_DAY, SECONDS_PER_HOUR, per_gpu_hour_usd

if TYPE_CHECKING:
    from market.builder import Market
    from market.scenario import EntryExit as EntryExitConfig
    from market.scenario import ProviderPopulation

class _Snapshot:
    """Each provider's running totals at a review (`Metrics.provider_accounts`)."""

    __slots__ = ("avoidable", "busy_h", "long_run", "market_gpu_h", "present_gpu_h", "revenue")

    def __init__(self, market: Market) -> None:
        accounts = market.metrics.provider_accounts()
        gpus = market.pool.capacity[:, 0].astype(float)
        self.revenue = accounts["revenue_usd"]
        self.avoidable = accounts["avoidable_cost_usd"]
        self.long_run = accounts["long_run_profit_usd"]
        self.busy_h = accounts["busy_gpu_hours"]
        self.present_gpu_h = accounts["on_market_hours"] * gpus
        self.market_gpu_h = market.metrics.on_market_span_h() * gpus

    def since(self, earlier: _Snapshot, name: str) -> np.ndarray:
        """This total less the `earlier` one, per provider (zero before a provider came)."""
        now, then = getattr(self, name), getattr(earlier, name)
        return now - np.pad(then, (0, now.size - then.size))


class EntryExit:
    """Reviews the market on a clock; retires providers and brings in new ones."""

    def __init__(self, market: Market, config: EntryExitConfig) -> None:
        self.market = market
        self.config = config
        populations = market.scenario.providers
        self.review_s = config.review_days * SECONDS_PER_DAY
        self.window_s = config.window_days * SECONDS_PER_DAY
        self.window_reviews = round(config.window_days / config.review_days)
        self.lag_s = config.investment_lag_days * SECONDS_PER_DAY
        names = [p.name for p in populations]
        self.may_enter = [i for i, name in enumerate(names)
                          if config.entrants is None or name in config.entrants]
        self.may_exit = np.array([config.exiters is None or name in config.exiters
                                  for name in names] + [False])  # outside groups never
        self._rng = {i: market.streams.get(f"providers.{names[i]}.entry") for i in self.may_enter}
        self._numbers = {i: populations[i].count for i in self.may_enter}
        self._one_of: dict[tuple[int, str], ProviderPopulation] = {}
        self._new_strategies: dict[int, Any] = {}
        self._snapshots: deque[_Snapshot] = deque(maxlen=self.window_reviews + 1)
        self._prices: deque[tuple[Counter[str], Counter[str]]] = deque(
            maxlen=self.window_reviews)
        self._last_prices: dict[str, float] = {}  # each model's last window price
        self._value: Counter[str] = Counter()   # Σ price × GPUs of leases since the review
        self._gpus: Counter[str] = Counter()
        self.pipeline: list[tuple[int, str, int]] = []  # committed: population, model, GPUs
        self.entered: Counter[str] = Counter()
        self.exited: Counter[str] = Counter()
        self.committed = 0
        self.series: list[dict[str, Any]] = []
        market.subscribe(self._leased, kinds=(LeaseCreated,))
        market.subscribe(self._gone, kinds=(ProviderExited,))
        market.env.process(self._reviews())

    # ------------------------------------------------------------------ events

    def _leased(self, event: LeaseCreated) -> None:
        self._value[event.gpu_model] += \
            per_gpu_hour_usd(event.price_micro_per_hour, event.gpus) * event.gpus
        self._gpus[event.gpu_model] += event.gpus

    def _gone(self, event: ProviderExited) -> None:
        pool = self.market.pool
        self.exited[pool.population_names[pool.population[event.provider]]] += 1

    # ------------------------------------------------------------------ the review clock

    def _reviews(self):
        self._snapshots.append(_Snapshot(self.market))
        while True:
            yield self.market.env.timeout(self.review_s)
            self.review()

    def review(self) -> None:
        """One review: note the prices and accounts; after a whole window, retire the
        providers that did not cover their avoidable costs and commit to new ones."""
        self._prices.append((self._value, self._gpus))
        self._value, self._gpus = Counter(), Counter()
        now_snapshot = _Snapshot(self.market)
        previous = self._snapshots[-1]
        self._snapshots.append(now_snapshot)
        if len(self._snapshots) > self.window_reviews:
            window_start = self._snapshots[0]
            self._exits(now_snapshot, window_start)
            self._entries(now_snapshot, window_start)
        self._record(now_snapshot, previous)

    def _exits(self, now: _Snapshot, start: _Snapshot) -> None:
        market = self.market
        pool = market.pool
        revenue = now.since(start, "revenue")
        avoidable = now.since(start, "avoidable")
        # On the market for the whole window (a small tolerance for the clock's float steps).
        whole = market.arrived_s <= market.now - self.window_s + 1e-6
        allowed = self.may_exit[np.minimum(pool.population, self.may_exit.size - 1)]
        losing = market.on_market() & whole & allowed & (revenue < avoidable)
        for provider in losing.nonzero()[0].tolist():
            if not market.reliability.retired(provider):
                market.retire_provider(provider)

    def _entries(self, now: _Snapshot, start: _Snapshot) -> None:
        config = self.config
        if self.committed >= config.max_entrants or config.max_entrants_per_review == 0:
            return
        prices = self._window_prices()
        candidates = []
        for index in self.may_enter:
            population = self.market.scenario.providers[index]
            found = []
            for model, share in population.gpu_mix.items():
                if share <= 0 or model not in prices:
                    continue
                ratio = self.expected_return(index, model, prices[model], now, start)
                if ratio is not None and ratio > config.hurdle:
                    found.append((-ratio, model))
            found.sort()
            candidates.extend((index, model) for _ratio, model in
                              found[:config.max_entrants_per_review])
        for index, model in candidates:
            if self.committed >= config.max_entrants:
                break
            self._commit(index, model)

    def _window_prices(self) -> dict[str, float]:
        """Each GPU model's mean price over the window, USD per GPU-hour (GPU-weighted, of
        the leases that started in it). A model without a lease in the window keeps its last
        window's price (as the price index holds through an hour without a lease: a model
        whose GPUs are all on long leases still has a price); one never leased has none."""
        value, gpus = Counter(), Counter()
        for bucket_value, bucket_gpus in self._prices:
            value.update(bucket_value)
            gpus.update(bucket_gpus)
        self._last_prices.update(
            {model: value[model] / gpus[model] for model in gpus if gpus[model] > 0})
        return dict(self._last_prices)

    def expected_return(self, index: int, model: str, price_usd_per_gpu_hour: float,
                        now: _Snapshot, start: _Snapshot) -> float | None:
        """Expected long-run profit per GPU-hour of a new provider of population `index`
        with `model` GPUs, over its full cost per GPU-hour (None: no incumbent to judge the
        utilization by)."""
        market = self.market
        pool = market.pool
        model_index = market.catalog.index(model)
        of_model = pool.model == model_index
        members = of_model & (pool.population == index)
        present = now.since(start, "present_gpu_h")
        if not present[members].sum() > 0:
            members = of_model  # none of its own: judge by everyone's providers of the model
        capacity_h = float(present[members].sum())
        if not capacity_h > 0:
            return None
        window_h = self.window_s / SECONDS_PER_HOUR
        capacity_h += window_h * sum(gpus for i, m, gpus in self.pipeline
                                     if i == index and m == model)
        utilization = float(now.since(start, "busy_h")[members].sum()) / capacity_h
        costs = self._costs(index, model)
        revenue = price_usd_per_gpu_hour * (1.0 - market.rules.fee_rate) * utilization
        cost = costs["capex"] + costs["fixed"] + costs["idle"] + costs["marginal"] * utilization
        return (revenue - cost) / costs["full"] if costs["full"] > 0 else None

    def _costs(self, index: int, model: str) -> dict[str, float]:
        population = self.market.scenario.providers[index]
        low, high = population.electricity_usd_per_kwh
        return gpu_costs(self.market.catalog, model, population, (low + high) / 2)

    def _commit(self, index: int, model: str) -> None:
        """Population `index` invests in one provider of `model` GPUs: drawn now from its
        entry stream, on the market after the investment lag."""
        market = self.market
        key = (index, model)
        if key not in self._one_of:
            self._one_of[key] = market.scenario.providers[index].model_copy(
                update={"count": 1, "gpu_mix": {model: 1.0}})
        (row,) = build_rows(self._one_of[key], index, market.catalog, self._rng[index])
        row.name = f"{market.scenario.providers[index].name}-{self._numbers[index]}"
        self._numbers[index] += 1
        committed_s = market.now
        entry = (index, model, row.gpus)
        self.pipeline.append(entry)
        self.committed += 1
        market.env.timeout(self.lag_s).callbacks.append(
            lambda _e: self._arrive(entry, row, committed_s))

    def _arrive(self, entry: tuple[int, str, int], row: Any, committed_s: float) -> None:
        market = self.market
        if market.finished:
            return
        self.pipeline.remove(entry)
        population = market.scenario.providers[entry[0]]
        (provider,) = market.add_providers([row], self._strategy(entry[0]))
        self.entered[population.name] += 1
        market.emit(ProviderEntered(market.now, int(provider), population.name, entry[1],
                                    row.gpus, committed_s))

    def _strategy(self, index: int) -> Any:
        """The strategy of population `index`: its providers' own instance (strategies keep
        per-provider state by provider id, `market.strategy`, so one instance serves the
        entrants too), or a new one from the scenario when it has no provider."""
        market = self.market
        members = np.flatnonzero(market.pool.population == index)
        if members.size:
            return market.strategies[int(market.strategy_of(members[:1])[0])]
        if index not in self._new_strategies:
            config = market.scenario.providers[index].strategy
            self._new_strategies[index] = registry.load("strategies", config.name)(
                **config.params)
        return self._new_strategies[index]

    # ------------------------------------------------------------------ what it shows

    def _record(self, now: _Snapshot, previous: _Snapshot) -> None:
        market = self.market
        pool = market.pool
        on = market.on_market()
        gpus = pool.capacity[:, 0]
        profit = now.since(previous, "long_run")
        market_gpu_h = now.since(previous, "market_gpu_h")
        for index, name in enumerate(pool.population_names[:len(market.scenario.providers)]):
            mine = pool.population == index
            hours = float(market_gpu_h[mine].sum())
            self.series.append({
                "time_s": market.now, "population": name,
                "providers_on_market": int((on & mine).sum()),
                "gpus_on_market": int(gpus[on & mine].sum()),
                "entered": self.entered[name], "exited": self.exited[name],
                "committed": sum(1 for i, _m, _g in self.pipeline if i == index),
                "long_run_profit_usd_per_gpu_hour":
                    float(profit[mine].sum()) / hours if hours > 0 else math.nan,
            })

    def summary(self) -> dict[str, Any]:
        """Entries and exits so far: totals, providers on the market now, by population."""
        market = self.market
        pool = market.pool
        on = market.on_market()
        leaving = sum(1 for p in np.flatnonzero(on).tolist() if market.reliability.retired(p))
        by_population = {}
        for index, name in enumerate(pool.population_names[:len(market.scenario.providers)]):
            mine = pool.population == index
            by_population[name] = {
                "entered": self.entered[name], "exited": self.exited[name],
                "providers_on_market": int((on & mine).sum()),
                "gpus_on_market": int(pool.capacity[on & mine, 0].sum()),
            }
        return {
            "entered": sum(self.entered.values()),
            "exited": sum(self.exited.values()),
            "leaving": leaving,
            "committed": len(self.pipeline),
            "providers_on_market": int(on.sum()),
            "by_population": by_population,
        }


def start_entry_exit(market: Market) -> EntryExit | None:
    """Start entry and exit on `market` if its scenario has an `entry_exit` table; the
    agent is kept as `market.entry_exit`."""
    config = market.scenario.entry_exit
    agent = None if config is None else EntryExit(market, config)
    market.entry_exit = agent
    return agent

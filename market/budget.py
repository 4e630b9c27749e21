"""What a run would cost, from its scenario alone, before anything is built.

`estimate(scenario)` adds up the work a run does: new jobs (a Poisson process with a daily
cycle, weekly growth and demand spikes, integrated in closed form; a trace's rows, times its
sampling fraction, instead or besides), the orders they post with
re-posts, the bids placed and the provider × order pairs priced to place them, the periodic
ticks (price index, withdrawals settling every active lease, batch clearings), provider
failures and departures, the candidate arrivals that thinning draws, and building the
tenants and providers. Work is counted in engine events (one event ≈ 80 µs of one core on the
reference machine); numpy work per candidate or per provider-order pair is a small fraction of
one. Memory is bytes held at the end: a fixed base, per tenant, per provider, per order.

`check_budget(scenario)` refuses, in one line naming the field that drives the cost most (of
the fields whose value, put back to the built-in default's, brings the estimate within the
limit, the one that lowers it most; the run's length only when no other field alone does), a
run whose estimate exceeds `MAX_EVENTS` or `MAX_MEMORY_BYTES`.

Calibration (seed 1, one core of the reference machine; `Estimate.seconds` = events x 80 µs):

    run                                    estimated               measured
    default week                           72,000 events, 5.8 s    76,061 events, 5.7 s
    bench week                             482,000 events, 39 s    475,238 events, 40 s
    bench, 19,800 providers, half a day    12.9 s                  12.9 s
    default, 100,000 home rigs, 0.1 day    8.9 s (20 ms an order)  7 s (18 ms an order)
    default, 2 days, withdrawals a minute  18 s                    8.5 s (1.3e6 settlements)

Orders per job and bids per order are the built-in scenarios' own (2.0 and 13-15), and a
demand spike's share of a short run is luck, so a run is estimated within a factor of about 2
(tests/market/test_budget.py holds two scenarios to that); errors lean towards refusing.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from market.scenario import Scenario, ScenarioError
from market.units import SECONDS_PER_DAY, SECONDS_PER_HOUR

__all__ = ["MAX_EVENTS", "MAX_MEMORY_BYTES", "Estimate", "check_budget", "estimate"]

#: Refused above this many estimated engine events: about 6 minutes of one core (80 µs an
#: event). The bench week (the largest built-in scenario) is about 10x below it.
MAX_EVENTS = 5_000_000
#: Refused above this many estimated bytes held by one run (several runs share a machine in a
#: sweep or on a server). The bench week holds about 300 MB.
MAX_MEMORY_BYTES = 2_000_000_000

SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY

# Calibrated on the built-in scenarios (see the module docstring).
ORDERS_PER_JOB = 2.0            # default 2.01, bench 2.07: re-posts after expiries and failures
EVENTS_PER_ORDER = 3.75         # opened, bids placed, lease or expiry, payment, close: 3.7-3.8
BID_SHARE = 0.7                 # bids placed per order / min(order_max_bids, providers)
PAIR_EVENTS = 5e-4              # one provider priced for one order: ~40 ns against ~80 µs,
PAIR_SCALE_PROVIDERS = 25_000   # ... growing with the pool (arrays outgrow the caches): x5 at
                                # 100,000 providers (measured 55 ns at 19,800, 180 at 100,000)
CANDIDATE_EVENTS = 1e-3         # one candidate arrival drawn and thinned (numpy, chunks of 1024)
TENANT_EVENTS = 0.0125          # building one tenant (an account and a name): ~1 µs
PROVIDER_EVENTS = 0.65          # building one provider (account, pool row, clocks): ~52 µs
LEASES_PER_PROVIDER = 2.0       # leases active at once per provider, for withdrawals
SETTLEMENT_EVENTS = 0.1         # one lease settled by a withdrawal: ~6 µs
BASE_BYTES = 150e6              # the interpreter, numpy, pandas, pyarrow, SimPy
TENANT_BYTES = 260.0
PROVIDER_BYTES = 3_500.0
ORDER_BYTES = 1_300.0           # what finished orders leave behind (metrics, records)


@dataclass(frozen=True)
class Estimate:
    """What a run would do and hold, from its scenario alone (expected values)."""

    jobs: float                 # new jobs arriving (textbook: auctions)
    orders: float               # orders posted, re-posts included
    bids: float                 # bids placed
    pairs: float                # provider × order pairs priced
    candidates: float           # candidate arrivals thinning draws
    ticks: float                # price index ticks, withdrawals and batch clearings
    settlements: float          # leases settled by periodic withdrawals
    outages: float              # provider failures and departures (each also a recovery)
    tenants: int
    providers: int
    events: float               # total work, in engine events
    memory_bytes: float

    @property
    def seconds(self) -> float:
        """Rough wall-clock seconds on one core of the reference machine (80 µs an event)."""
        return self.events * 80e-6

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (
            "jobs", "orders", "bids", "pairs", "candidates", "ticks", "settlements", "outages",
            "tenants", "providers", "events", "memory_bytes")} | {"seconds": self.seconds}


def _growth_integral_s(growth: float, horizon_s: float) -> float:
    """∫ (1 + growth)^(t / week) dt over [0, horizon_s], seconds."""
    rate = math.log1p(growth)
    if abs(rate) < 1e-12:
        return horizon_s
    exponent = rate * horizon_s / SECONDS_PER_WEEK
    if exponent > 700:  # beyond a float: the estimate is "too much" anyway
        return math.inf
    return SECONDS_PER_WEEK / rate * math.expm1(exponent)


def _numbers(scenario: Scenario) -> dict[str, Any]:
    """The fields the estimate reads, by dotted path, so that any one can be put back to the
    default's to see how much it drives the cost."""
    tenants, rules = scenario.tenants, scenario.market
    values: dict[str, Any] = {
        "population": scenario.population,
        "duration_days": scenario.duration_days,
        "tenants.count": tenants.count,
        "tenants.arrivals_per_hour": tenants.arrivals_per_hour,
        "tenants.daily_amplitude": tenants.daily_amplitude,
        "tenants.peak_hour": tenants.peak_hour,
        "tenants.weekly_growth": tenants.weekly_growth,
        "tenants.spikes.per_week": tenants.spikes.per_week,
        "tenants.spikes.multiplier": tenants.spikes.multiplier,
        "tenants.spikes.duration_h": tenants.spikes.duration_h,
        "tenants.max_reposts": tenants.max_reposts,
        "tenants.max_failures": tenants.max_failures,
        "tenants.price_elasticity": tenants.price_elasticity,
        "tenants.max_demand_multiplier": tenants.max_demand_multiplier,
        "market.order_max_bids": rules.order_max_bids,
        "market.price_index_interval_s": rules.price_index_interval_s,
        "market.withdraw_interval_s": rules.withdraw_interval_s,
        "market.mechanism_params.interval_s": None,
    }
    # A trace's jobs: at most its rows (each kept with the sampling fraction), counted
    # without parsing; None without a trace.
    trace = tenants.trace
    values["tenants.trace.jobs"] = None if trace is None else \
        _trace_rows(trace.tasks_path or trace.path) * trace.sample_fraction
    values["tenants.trace.replace"] = None if trace is None else trace.mode == "replace"
    interval = rules.mechanism_params.get("interval_s")
    if rules.mechanism == "batch_clearing":
        values["market.mechanism_params.interval_s"] = (
            float(interval) if isinstance(interval, int | float) else 300.0)
    for index, population in enumerate(scenario.providers):
        values[f"providers.{index}.count"] = population.count
        values[f"providers.{index}.failure_rate_per_day"] = population.failure_rate_per_day
        values[f"providers.{index}.churn_per_day"] = population.churn_per_day
    # Entry can grow the market: at most this many providers more (0 without entry).
    entry_exit = scenario.entry_exit
    values["entry_exit.max_entrants"] = 0 if entry_exit is None else entry_exit.max_entrants
    if scenario.textbook is not None:
        values["textbook.auctions"] = scenario.textbook.auctions
        values["textbook.bidders"] = scenario.textbook.bidders
    return values


def _trace_rows(path: str) -> int:
    """Lines of a trace file, counted in blocks (100 MB in a tenth of a second): an upper
    bound on its jobs; 0 where it cannot be read (its reader says why)."""
    lines = 0
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                lines += block.count(b"\n")
    except OSError:
        return 0
    return lines


def _pair_events(providers: float) -> float:
    """Engine events one provider × order pair costs, in a pool of `providers`."""
    return PAIR_EVENTS * (1 + providers / PAIR_SCALE_PROVIDERS)


def _estimate(values: dict[str, Any]) -> Estimate:
    horizon_s = values["duration_days"] * SECONDS_PER_DAY
    days = values["duration_days"]
    indexes = sorted({int(key.split(".")[1]) for key in values
                      if key.startswith("providers.") and key.endswith(".count")})
    # Entrants count as if on the market all along: an upper bound.
    providers = sum(values[f"providers.{i}.count"] for i in indexes) \
        + values.get("entry_exit.max_entrants", 0)
    tenants = values["tenants.count"]
    candidates = 0.0
    if values["population"] == "textbook" and "textbook.auctions" in values:
        jobs = float(values["textbook.auctions"])
        orders = jobs
        providers = bidders = values["textbook.bidders"]
        bids = orders * min(values["market.order_max_bids"], bidders)
        pairs = orders * bidders
        tenants = 1
    else:
        per_s = values["tenants.arrivals_per_hour"] / SECONDS_PER_HOUR
        growth = values["tenants.weekly_growth"]
        grown_s = _growth_integral_s(growth, horizon_s)
        mean_growth = grown_s / horizon_s
        # The daily cycle integrates to zero over whole days; what is left of a part day.
        amplitude, peak_h = values["tenants.daily_amplitude"], values["tenants.peak_hour"]
        phase = 2 * math.pi / 24
        cycle_s = amplitude * SECONDS_PER_HOUR / phase * (
            math.sin(phase * (horizon_s / SECONDS_PER_HOUR - peak_h)) - math.sin(-phase * peak_h))
        spikes = values["tenants.spikes.per_week"] * horizon_s / SECONDS_PER_WEEK
        spike_s = min(values["tenants.spikes.duration_h"] * SECONDS_PER_HOUR, horizon_s)
        extra_s = spikes * (values["tenants.spikes.multiplier"] - 1) * spike_s * mean_growth
        jobs = per_s * (grown_s + cycle_s * mean_growth + extra_s)
        replaced = bool(values.get("tenants.trace.replace"))
        if values.get("tenants.trace.jobs") is not None:  # a trace replaces or adds jobs
            jobs = (0.0 if replaced else jobs) + values["tenants.trace.jobs"]
        reposts = 1 + values["tenants.max_reposts"] + values["tenants.max_failures"]
        orders = jobs * min(ORDERS_PER_JOB, reposts)
        bids = orders * BID_SHARE * min(values["market.order_max_bids"], providers)
        pairs = orders * providers
        # Thinning draws candidates at the peak rate over the whole horizon.
        weeks = horizon_s / SECONDS_PER_WEEK
        peak_growth = max(1.0, math.exp(min(700.0, math.log1p(growth) * weeks)))
        peak = per_s * (1 + amplitude) * peak_growth * values["tenants.spikes.multiplier"]
        # A demand curve (price elasticity) draws its candidates at up to its cap times that;
        # the jobs themselves are estimated at the reference price.
        cap = values["tenants.max_demand_multiplier"] if values["tenants.price_elasticity"] \
            else 1.0
        candidates = 0.0 if replaced else peak * cap * horizon_s  # no thinning, no arrivals
    ticks = horizon_s / values["market.price_index_interval_s"]
    withdrawals = horizon_s / values["market.withdraw_interval_s"]
    batch = values["market.mechanism_params.interval_s"]
    if batch:
        ticks += horizon_s / batch
    ticks += withdrawals
    settlements = withdrawals * min(orders / 2, LEASES_PER_PROVIDER * providers)
    outages = sum(values[f"providers.{i}.count"] * days
                  * (values[f"providers.{i}.failure_rate_per_day"]
                     + values[f"providers.{i}.churn_per_day"]) for i in indexes)
    events = (orders * EVENTS_PER_ORDER + pairs * _pair_events(providers)
              + candidates * CANDIDATE_EVENTS
              + ticks + settlements * SETTLEMENT_EVENTS + 2 * outages + tenants * TENANT_EVENTS
              + providers * PROVIDER_EVENTS)
    memory = (BASE_BYTES + tenants * TENANT_BYTES + providers * PROVIDER_BYTES
              + orders * ORDER_BYTES)
    return Estimate(jobs=jobs, orders=orders, bids=bids, pairs=pairs, candidates=candidates,
                    ticks=ticks, settlements=settlements, outages=outages, tenants=int(tenants),
                    providers=int(providers), events=events, memory_bytes=memory)


def estimate(scenario: Scenario) -> Estimate:
    """Expected work and memory of a run of `scenario`, from its fields alone (microseconds)."""
    return _estimate(_numbers(scenario))


@functools.cache
def _reference() -> dict[str, Any]:
    """The built-in default's numbers: what a field is put back to when looking for the one
    that drives the cost."""
    from market.scenario import load_scenario

    return _numbers(load_scenario("default"))


#: Usual values of the fields the default scenario does not have (the built-in sweeps' batch
#: interval and the textbook's auction).
_USUAL = {"market.mechanism_params.interval_s": 300.0, "textbook.auctions": 2000,
          "textbook.bidders": 5}


def _usual(key: str) -> float | None:
    """What field `key` is put back to when looking for the field that drives the cost."""
    reference = _reference()
    if reference.get(key) is not None:
        return reference[key]
    if key in _USUAL:
        return _USUAL[key]
    if key.startswith("providers."):
        return 0  # a population the default does not have: none of it, no outages
    return None


def _driver(values: dict[str, Any], measure: str, limit: float) -> str:
    """The field that drives `measure` most: of those whose value, put back to the default's,
    brings it within `limit`, the one that lowers it most, the run's length last (shortening
    a run is always possible and says little); if none does, the one that lowers it most."""
    trials: dict[str, float] = {}
    for key, value in values.items():
        normal = None if key == "population" or value is None else _usual(key)
        if normal is None or normal == value:
            continue
        trials[key] = getattr(_estimate({**values, key: normal}), measure)
    within = {key: trial for key, trial in trials.items()
              if trial <= limit and key != "duration_days"}
    pool = within or trials
    return min(pool, key=lambda key: pool[key]) if pool else "duration_days"


def _sci(number: float) -> str:
    """1,234 or 3.1e9: counts in a message."""
    if number < 1e5:
        return f"{number:,.0f}"
    return f"{number:.1e}".replace("e+0", "e").replace("e+", "e")


def check_budget(scenario: Scenario, *, allow_large: bool = False,
                 bypass: str | None = "pass --allow-large") -> Estimate:
    """The run's estimate; raises ScenarioError (one line naming the field that drives the cost
    most) if it exceeds MAX_EVENTS or MAX_MEMORY_BYTES, unless `allow_large`. `bypass` is how
    the caller lets a large run through, said at the end of the line (None: it cannot)."""
    values = _numbers(scenario)
    found = _estimate(values)
    if allow_large:
        return found
    if not found.events <= MAX_EVENTS:
        key = _driver(values, "events", MAX_EVENTS)
        parts = {"orders": found.orders * EVENTS_PER_ORDER,
                 "candidates": found.candidates * CANDIDATE_EVENTS,
                 "pairs": found.pairs * _pair_events(found.providers),
                 "ticks": found.ticks + found.settlements * SETTLEMENT_EVENTS,
                 "outages": 2 * found.outages}
        main = max(parts, key=lambda name: parts[name])
        said = {"orders": f"post about {_sci(found.orders)} orders",
                "candidates": f"draw about {_sci(found.candidates)} candidate arrivals",
                "pairs": f"price about {_sci(found.pairs)} provider-order pairs",
                "ticks": f"tick about {_sci(found.ticks)} times (price index, withdrawals, "
                         f"clearings), settling {_sci(found.settlements)} leases",
                "outages": f"simulate about {_sci(found.outages)} provider outages"}[main]
        what = (f"{said}: about {_sci(found.events)} engine events, some "
                f"{_sci(found.seconds / 60)} minutes (limit {_sci(MAX_EVENTS)} events)")
    elif not found.memory_bytes <= MAX_MEMORY_BYTES:
        key = _driver(values, "memory_bytes", MAX_MEMORY_BYTES)
        what = (f"hold about {found.memory_bytes / 1e9:.3g} GB "
                f"(limit {MAX_MEMORY_BYTES / 1e9:.3g} GB)")
    else:
        return found
    if key == "duration_days":
        advice = "shorten it"
    else:
        normal = _usual(key)
        finer = normal is not None and normal > values[key]  # an interval
        advice = ("raise it" if finer else "lower it") + ", shorten duration_days"
    raise ScenarioError(f"{key}: the run would {what}; {advice}"
                        + (f", or {bypass}" if bypass else ""))

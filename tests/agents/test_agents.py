"""Behaviour of the built-in agents: provider cost models and inventories, bid strategies,
and tenants (arrivals, re-posting expired orders, leaving for a hyperscaler).

Statistical checks use fixed seeds and tolerances of Z standard deviations of the quantity's
own sampling distribution (binomial for shares, Poisson for arrival counts).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.markups import CostPlus, ListPrice
from agents.populate import populate
from agents.providers import HOURS_PER_YEAR, build_rows, gpu_costs, model_quota
from agents.tenants import Tenants
from market import Market, load_scenario
from market.core.pool import ProviderRow
from market.core.records import PROVIDER_FAULTS
from market.core.resources import gpu_units
from market.events import (
    BidsPlaced,
    Event,
    LeaseClosed,
    OrderExpired,
    OrderOpened,
    TenantLeft,
)
from market.units import GIB, MICRO_USD_PER_USD, SECONDS_PER_DAY, SECONDS_PER_HOUR

Z = 4.0  # standard deviations: a false alarm about once in 16,000 checks
FAULTS = {reason.value for reason in PROVIDER_FAULTS}


def scenario(*overrides: str):
    """The default scenario with AEP-23's USD escrow and take rate: these tests check how
    strategies price the fee in (BME has none; tests/market/test_bme.py)."""
    return load_scenario("default", ['market.settlement="aep23"', *overrides])


def population(name: str = "datacenter", **changes):
    """A provider population of the default scenario (its archetype preset filled in)."""
    (found,) = [p for p in scenario().providers if p.name == name]
    return found.model_copy(update=changes)


def record(market: Market) -> list[Event]:
    events: list[Event] = []
    market.subscribe(events.append)
    return events


# ----------------------------------------------------------------------------- cost model

def test_h100_costs_match_a_hand_computation():
    catalog = scenario().catalog()
    datacenter = population("datacenter")  # 5-year life, PUE 1.56, idle 20 %, ops 0.15
    costs = gpu_costs(catalog, "h100", datacenter, electricity_usd_per_kwh=0.08)
    # H100 SXM: 37,500 USD (an 8-GPU server at ~300k), 700 W board power
    capex_per_hour = 37_500 / (5 * 365.25 * 24)
    power_per_hour = 0.700 * 1.56 * 0.08
    assert costs["capex"] == pytest.approx(capex_per_hour)
    assert costs["fixed"] == pytest.approx(0.15)
    assert costs["idle"] == pytest.approx(0.2 * power_per_hour)
    assert costs["marginal"] == pytest.approx(0.8 * power_per_hour)  # no wear charge
    assert costs["full"] == pytest.approx(capex_per_hour + 0.15 + power_per_hour)
    assert costs["full"] == pytest.approx(costs["capex"] + costs["fixed"] + costs["idle"]
                                          + costs["marginal"])
    assert costs["basis"] == costs["full"]  # data centers price on full cost
    assert costs["full"] == pytest.approx(1.0930, abs=1e-4)
    assert HOURS_PER_YEAR == 8766.0


def test_marginal_cost_excludes_capex_and_operations():
    catalog = scenario().catalog()
    base = gpu_costs(catalog, "h100", population(), 0.08)
    dearer = gpu_costs(catalog, "h100", population(capex_factor=3.0, ops_usd_per_gpu_hour=1.0,
                                                   lifetime_years=2.0), 0.08)
    assert dearer["marginal"] == base["marginal"]
    assert dearer["idle"] == base["idle"]
    assert dearer["capex"] > base["capex"] and dearer["fixed"] > base["fixed"]
    assert dearer["full"] > base["full"]
    marginal_basis = gpu_costs(catalog, "h100", population(cost_basis="marginal"), 0.08)
    assert marginal_basis["basis"] == marginal_basis["marginal"] < marginal_basis["full"]


def test_wear_is_a_cost_of_serving_and_sunk_capex_is_not_charged():
    catalog = scenario().catalog()
    rig = population("home_rig")  # capex sunk, 0.02 USD of wear per busy GPU-hour
    costs = gpu_costs(catalog, "rtx4090", rig, 0.20)
    assert costs["capex"] == 0.0
    assert costs["marginal"] == pytest.approx(0.450 * 1.0 * 0.20 * 0.95 + 0.02)
    counted = gpu_costs(catalog, "rtx4090", population("home_rig", count_capex=True), 0.20)
    assert counted["capex"] == pytest.approx(1599 / (3 * HOURS_PER_YEAR))
    assert counted["full"] == pytest.approx(costs["full"] + counted["capex"])
    assert counted["marginal"] == costs["marginal"]  # sunk or not, serving costs the same


def test_a_hyperscaler_is_charged_what_its_capacity_fetches_elsewhere_and_nothing_else():
    catalog = scenario().catalog()
    list_price = catalog["h100"].list_usd_per_gpu_hour
    # Sold on demand elsewhere (fraction 1): a GPU-hour served here costs it the list price.
    on_demand = gpu_costs(catalog, "h100", population("hyperscaler",
                                                      elsewhere_fraction_of_list=1.0), 0.06)
    assert on_demand == {"marginal": list_price, "idle": 0.0, "fixed": 0.0, "capex": 0.0,
                         "full": list_price, "basis": list_price}
    # Spare capacity sold as spot at 40% of list: that is its opportunity cost.
    spot = gpu_costs(catalog, "h100", population("hyperscaler",
                                                 elsewhere_fraction_of_list=0.4), 0.06)
    assert spot == {"marginal": 0.4 * list_price, "idle": 0.0, "fixed": 0.0, "capex": 0.0,
                    "full": 0.4 * list_price, "basis": 0.4 * list_price}


def test_dearer_electricity_raises_marginal_cost_in_proportion():
    catalog = scenario().catalog()
    rig = population("home_rig", wear_usd_per_gpu_hour=0.0)
    costs = [gpu_costs(catalog, "rtx4090", rig, price) for price in (0.10, 0.20, 0.40)]
    marginal = [c["marginal"] for c in costs]
    assert marginal[0] < marginal[1] < marginal[2]
    assert marginal[2] == pytest.approx(4 * marginal[0])  # power cost is linear in the price
    assert costs[0]["fixed"] == costs[2]["fixed"]
    # 450 W, no facility overhead (PUE 1), 95 % of the draw only while leased
    assert marginal[0] == pytest.approx(0.450 * 1.0 * 0.10 * 0.95)


# ----------------------------------------------------------------------------- inventories

def _binomial_ok(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= Z * math.sqrt(n * p * (1 - p))


def test_build_rows_follows_gpu_mix_and_sizes():
    catalog = scenario().catalog()
    n = 4_000
    datacenter = population("datacenter", count=n)
    rows = build_rows(datacenter, 0, catalog, np.random.default_rng(1))
    assert len(rows) == n
    shares = {g: s / sum(datacenter.gpu_mix.values()) for g, s in datacenter.gpu_mix.items()}
    counts = Counter(catalog.ids[row.model] for row in rows)
    assert set(counts) == set(shares)
    for gpu, share in shares.items():  # allotted by quota: within one of its share
        assert abs(counts[gpu] - n * share) < 1, (gpu, counts[gpu], n * share)
    # 8 to 64 GPUs in whole servers of 8, every size about equally often
    sizes = Counter(row.gpus for row in rows)
    assert sorted(sizes) == list(range(8, 65, 8))
    for size in sizes:
        assert _binomial_ok(sizes[size], n, 1 / 8), (size, sizes[size])
    for row in rows:
        assert row.cpu_millicores == datacenter.cpu_millicores_per_gpu * row.gpus
        assert row.memory_bytes == int(datacenter.memory_gib_per_gpu * GIB) * row.gpus
        assert row.storage_classes == tuple(datacenter.storage_classes)
        assert row.cost_full_usd_per_gpu_hour == pytest.approx(
            row.cost_capex_usd_per_gpu_hour + row.cost_fixed_usd_per_gpu_hour
            + row.cost_idle_usd_per_gpu_hour + row.cost_marginal_usd_per_gpu_hour)
        assert row.failure_rate_per_s == pytest.approx(0.01 / SECONDS_PER_DAY)
    # electricity drawn in its range: H100 marginal cost between the two ends
    low, high = (gpu_costs(catalog, "h100", datacenter, e)["marginal"]
                 for e in datacenter.electricity_usd_per_kwh)
    h100 = [r.cost_marginal_usd_per_gpu_hour for r in rows if catalog.ids[r.model] == "h100"]
    assert low <= min(h100) < max(h100) <= high


@pytest.mark.parametrize("shares, count, expected", [
    # in proportion where the shares divide evenly
    ([0.5, 0.25, 0.25], 8, [4, 2, 2]),
    # one of each model first, the other four by largest remainder of what each still lacks
    # (ideal 3.5, 1.75, 1.75 less the one each has: 2.5, 0.75, 0.75 -> 4 x 2.5/4, ...)
    ([0.5, 0.25, 0.25], 7, [3, 2, 2]),
    # the hyperscaler's mix with one provider per model: a 5% model is not left out
    ([0.35, 0.25, 0.10, 0.10, 0.10, 0.05, 0.05], 7, [1, 1, 1, 1, 1, 1, 1]),
    # fewer providers than models: by share alone, the largest first
    ([0.6, 0.3, 0.1], 2, [1, 1, 0]),
    # a model with no share gets no provider
    ([0.5, 0.0, 0.5], 5, [3, 0, 2]),
])
def test_model_quota_gives_shares_by_largest_remainder_and_every_model_one(shares, count,
                                                                            expected):
    assert model_quota(np.array(shares), count).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=1, max_size=9).filter(any), st.integers(0, 400))
def test_model_quota_adds_up_and_leaves_no_model_out(weights, count):
    shares = np.array(weights, dtype=float)
    quota = model_quota(shares, count)
    assert quota.sum() == count and (quota >= 0).all()
    assert (quota[shares == 0] == 0).all()
    present = shares > 0
    if count >= present.sum():
        assert (quota[present] >= 1).all()
    else:  # too few for one each: by share alone, within one of the proportional share
        assert (np.abs(quota - shares / shares.sum() * count) < 1).all()
    # A larger share never gets fewer providers.
    for i, j in itertools.permutations(range(len(shares)), 2):
        if shares[i] < shares[j]:
            assert quota[i] <= quota[j], (i, j)


@pytest.mark.parametrize("gpus_per_provider, step, expected", [
    ((1, 4), 1, [1, 2, 3, 4]),
    ((2, 10), 3, [3, 6, 9]),
    ((5, 5), 1, [5]),
    ((8, 8), 8, [8]),
])
def test_build_rows_respects_gpus_per_provider_and_step(gpus_per_provider, step, expected):
    rig = population("home_rig", count=600, gpus_per_provider=gpus_per_provider, gpu_step=step)
    rows = build_rows(rig, 1, scenario().catalog(), np.random.default_rng(2))
    assert sorted({row.gpus for row in rows}) == expected
    assert all(row.population == 1 for row in rows)


def test_build_rows_of_an_empty_population():
    assert build_rows(population(count=0), 0, scenario().catalog(),
                      np.random.default_rng(0)) == []


# ----------------------------------------------------------------------------- strategies

def _rows(market: Market) -> list[ProviderRow]:
    rows = build_rows(population("datacenter", count=12), 0, market.catalog,
                      np.random.default_rng(3))
    for row in rows:
        row.latency_sigma = 0.0
        row.failure_rate_per_s = 0.0
    return rows


def _units(gpus: int, models: tuple[str, ...]):
    return gpu_units(gpus, models, cpu_millicores_per_gpu=4000, memory_bytes_per_gpu=32 * GIB,
                     storage_bytes_per_gpu=100 * GIB)


def test_cost_plus_bids_cost_basis_times_one_plus_markup_kept_after_the_fee():
    # The default take rate is 20%: the ask is grossed up by 1 / 0.8 = 1.25.
    market = Market(scenario("market.manifest_failure_prob=0"), populate=False, record=False)
    ids = market.add_providers(_rows(market), CostPlus(markup=0.3))
    basis = market.pool.cost_basis_usd_per_gpu_hour[ids]
    assert CostPlus(markup=0.3).asks(ids, market.views[0]) == pytest.approx(basis * 1.3 * 1.25)
    tenant = market.add_tenant("alice", 1_000_000.0)
    events = record(market)
    market.post_order(tenant, _units(8, market.catalog.ids), 100.0, deposit_usd=1_000.0)
    (placed,) = [e for e in events if isinstance(e, BidsPlaced)]
    assert len(placed.providers) == len(ids)
    for who, price in zip(placed.providers, placed.prices_micro_per_hour, strict=True):
        expected = (market.pool.cost_basis_usd_per_gpu_hour[who] * 1.3 * 1.25 * 8
                    * MICRO_USD_PER_USD)
        # the ask is kept in whole micro-USD per GPU-hour: at most half a micro per GPU off
        assert abs(price - expected) <= 0.5 * 8
        # what the provider keeps after the 20% fee is its cost plus the markup
        kept = 0.8 * price / 8 / MICRO_USD_PER_USD
        assert kept == pytest.approx(market.pool.cost_basis_usd_per_gpu_hour[who] * 1.3,
                                     abs=1e-6)


@pytest.mark.parametrize(("switch", "net_of_fee", "gross_up"), [
    ("true", None, 1.25), ("false", None, 1.0),     # None follows the scenario
    ("false", True, 1.25), ("true", False, 1.0),    # an explicit choice wins
])
def test_cost_plus_follows_the_scenario_unless_told(switch, net_of_fee, gross_up):
    market = Market(scenario(f"market.bids_net_of_fee={switch}"), populate=False,
                    record=False)
    strategy = CostPlus(markup=0.5, net_of_fee=net_of_fee)
    ids = market.add_providers(_rows(market), strategy)
    basis = market.pool.cost_basis_usd_per_gpu_hour[ids]
    assert strategy.asks(ids, market.views[0]) == pytest.approx(basis * 1.5 * gross_up)


def test_list_price_bids_the_catalog_list_price_times_factor_kept_after_the_fee():
    # Take rate 20%, priced in: the ask is list × factor / 0.8, so list × factor is kept.
    market = Market(scenario(), populate=False, record=False)
    ids = market.add_providers(_rows(market), ListPrice(factor=0.8))
    list_price = market.catalog.array("list_usd_per_gpu_hour")
    asks = ListPrice(factor=0.8).asks(ids, market.views[0])
    for provider, ask in zip(ids, asks, strict=True):
        model = market.catalog.ids[market.pool.model[provider]]
        assert ask == pytest.approx(0.8 * market.catalog[model].list_usd_per_gpu_hour / 0.8)
    assert asks == pytest.approx(list_price[market.pool.model[ids]] * 0.8 * 1.25)
    order_units = _units(2, ("h100",))
    tenant = market.add_tenant("alice", 1_000_000.0)
    events = record(market)
    market.post_order(tenant, order_units, 15.0, deposit_usd=1_000.0)
    h100s = [int(p) for p in ids if market.catalog.ids[market.pool.model[p]] == "h100"]
    (placed,) = [e for e in events if isinstance(e, BidsPlaced)]
    assert sorted(placed.providers) == h100s
    assert set(placed.prices_micro_per_hour) == {round(12.29 * 2 * MICRO_USD_PER_USD)}
    # Without fee pricing a hyperscaler posts list × factor itself.
    plain = Market(scenario("market.bids_net_of_fee=false"), populate=False, record=False)
    ids = plain.add_providers(_rows(plain), ListPrice(factor=0.8))
    assert ListPrice(factor=0.8).asks(ids, plain.views[0]) == pytest.approx(
        list_price[plain.pool.model[ids]] * 0.8)


def test_strategies_reject_invalid_parameters():
    with pytest.raises(ValueError):
        CostPlus(markup=-0.1)
    with pytest.raises(ValueError):
        ListPrice(factor=0.0)
    with pytest.raises(ValueError, match="net_of_fee"):
        CostPlus(net_of_fee="yes")


# ----------------------------------------------------------------------------- tenants

def tenant_market(*overrides: str, seed: int = 0) -> tuple[Market, Tenants, list[Event]]:
    """Tenants posting into a market without providers: every order expires."""
    market = Market(scenario(*overrides), seed=seed, populate=False, record=False)
    events = record(market)
    tenants = Tenants(market)
    tenants.start()
    return market, tenants, events


def _expected(tenants: Tenants, start_s: float, end_s: float) -> float:
    """Expected arrivals in [start_s, end_s): the rate integrated at one-second resolution."""
    grid = np.linspace(start_s, end_s, int(end_s - start_s) + 1)
    return float(np.trapezoid(tenants.rate_per_s(grid), grid))


@pytest.mark.parametrize("seed, extra", [
    (0, ()),
    (1, ("tenants.spikes.per_week=7", "tenants.spikes.multiplier=5")),
    (2, ("tenants.weekly_growth=3.0", "tenants.daily_amplitude=0.9")),
])
def test_arrivals_follow_the_configured_rate(seed, extra):
    days = 3
    market, tenants, events = tenant_market(
        f"duration_days={days}", "tenants.arrivals_per_hour=40", "tenants.max_reposts=0", *extra,
        seed=seed)
    market.run()
    new_jobs = np.array([e.time_s for e in events if isinstance(e, OrderOpened)
                         and e.attempt == 0])
    horizon = days * SECONDS_PER_DAY
    total = _expected(tenants, 0.0, horizon)
    assert abs(new_jobs.size - total) <= Z * math.sqrt(total), (new_jobs.size, total)
    # and the daily cycle: each quarter of the day, summed over the days
    quarter = SECONDS_PER_DAY / 4
    for q in range(4):
        expected = sum(_expected(tenants, d * SECONDS_PER_DAY + q * quarter,
                                 d * SECONDS_PER_DAY + (q + 1) * quarter) for d in range(days))
        seen = int(((new_jobs % SECONDS_PER_DAY) // quarter == q).sum())
        assert abs(seen - expected) <= Z * math.sqrt(expected), (q, seen, expected)


def test_rate_follows_the_daily_cycle_and_growth():
    market = Market(scenario("tenants.spikes.per_week=0", "tenants.weekly_growth=0.5",
                             "tenants.daily_amplitude=0.4", "tenants.peak_hour=15",
                             "tenants.arrivals_per_hour=24"), populate=False, record=False)
    tenants = Tenants(market)
    hour = SECONDS_PER_HOUR
    week = 7 * SECONDS_PER_DAY
    times = np.array([15 * hour, 27 * hour, 33 * hour])  # peak, trough, in between
    per_hour = tenants.rate_per_s(times) * hour
    growth = 1.5 ** (times / week)
    assert per_hour == pytest.approx(np.array([24 * 1.4, 24 * 0.6, 24 * 1.0]) * growth)
    assert tenants.rate_per_s(15 * hour + week) == pytest.approx(
        1.5 * tenants.rate_per_s(15 * hour))


def _value_rate_micro(order) -> tuple[float, float]:
    """The job's value per hour of the order on its fastest acceptable GPU, micro-USD: the
    anchor of the tenant's max price (exact when durations are estimated without error);
    and its round-off, from the value's rounding to a micro-USD."""
    hours = float(order.work_s.min()) / SECONDS_PER_HOUR
    return order.job_value_micro / hours, 0.5 / hours


def test_expired_orders_are_reposted_higher_until_the_tenant_leaves():
    max_reposts = 2
    market, _, events = tenant_market(
        "duration_days=0.5", "tenants.arrivals_per_hour=20", f"tenants.max_reposts={max_reposts}",
        'tenants.policy={ name = "fraction", params = { reprice = 1.5, cap = 0.5 } }',
        "tenants.max_price_factor=[0.3, 0.45]", "market.bidding_window_s=120",
        "tenants.duration_error_sigma=0")
    value: dict[int, tuple[float, float]] = {}  # order id -> the job's value, micro-USD per
    # hour of the order, and its round-off
    worth_outside: dict[int, bool] = {}  # job id -> worth the outside option's list price
    def opened(event: OrderOpened) -> None:
        order = market.orders[event.order_id]
        value[event.order_id] = _value_rate_micro(order)
        worth_outside[event.job_id] = order.job_value_micro >= order.outside_micro

    market.subscribe(opened, kinds=[OrderOpened])
    market.run()
    by_job: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        if isinstance(event, OrderOpened | OrderExpired | TenantLeft):
            by_job[event.job_id].append(event)
    capped = raised = finished = 0
    for job, story in by_job.items():
        opened = [e for e in story if isinstance(e, OrderOpened)]
        expired = [e for e in story if isinstance(e, OrderExpired)]
        assert [e.attempt for e in opened] == list(range(len(opened)))
        assert len(opened) <= max_reposts + 1
        for before, after in itertools.pairwise(opened):
            # re-posted when the previous order expired, at a price raised 1.5x up to the cap
            assert after.time_s == expired[before.attempt].time_s
            assert after.gpus == before.gpus and after.gpu_models == before.gpu_models
            rate, round_off = value[before.order_id]
            target = min(1.5 * before.max_price_micro_per_hour, 0.5 * rate)
            assert abs(after.max_price_micro_per_hour - target) <= 2 + round_off, (job, after)
            assert after.max_price_micro_per_hour >= before.max_price_micro_per_hour
            if 0.5 * rate < 1.5 * before.max_price_micro_per_hour:
                capped += 1
            else:
                raised += 1
        left = [e for e in story if isinstance(e, TenantLeft)]
        if len(expired) == max_reposts + 1 and worth_outside[job]:
            (gone,) = left  # to a hyperscaler, at a list price the job is worth
            assert (gone.reason, gone.time_s) == ("expired", expired[-1].time_s)
            assert 0 < gone.list_cost_micro <= gone.value_micro and gone.gpu_hours > 0
            finished += 1
        else:
            assert not left  # still trying, or dropped: not worth the list price
    assert finished >= 50 and capped >= 20 and raised >= 20


def test_tenants_leave_after_max_failures_provider_faults():
    max_failures = 2
    market = Market(scenario(
        "duration_days=1", "tenants.count=10", "tenants.arrivals_per_hour=12",
        f"tenants.max_failures={max_failures}", "tenants.max_reposts=20",
        "providers.0.count=6", "providers.1.count=30", "providers.2.count=2",
        "providers.0.failure_rate_per_day=24", "providers.1.failure_rate_per_day=24",
        "providers.2.failure_rate_per_day=24", "providers.0.repair_hours=[0.05, 0.1]",
        "providers.1.repair_hours=[0.05, 0.1]", "providers.2.repair_hours=[0.05, 0.1]"),
        seed=4, populate=False, record=False)
    events = record(market)
    worth_outside: dict[int, bool] = {}  # job id -> worth the outside option's list price
    market.subscribe(lambda e: worth_outside.setdefault(
        e.job_id, market.orders[e.order_id].job_value_micro
        >= market.orders[e.order_id].outside_micro), kinds=(OrderOpened,))
    populate(market)
    summary = market.run().summary
    assert summary["money_conserved"]
    faults: Counter[int] = Counter()
    last_fault: dict[int, LeaseClosed] = {}
    left: dict[int, TenantLeft] = {}
    for event in events:
        if isinstance(event, LeaseClosed) and event.reason in FAULTS:
            assert event.job_id not in left  # no lease after the tenant left
            faults[event.job_id] += 1
            last_fault[event.job_id] = event
        elif isinstance(event, TenantLeft):
            assert event.job_id not in left
            left[event.job_id] = event
    assert max(faults.values()) == max_failures
    quitters = {job for job, event in left.items() if event.reason == "failures"}
    assert len(quitters) >= 5
    for job in quitters:
        assert faults[job] == max_failures
        gone = left[job]
        assert gone.time_s == last_fault[job].time_s
        # what was left of the job goes to the hyperscaler
        assert gone.gpu_hours > 0 and gone.list_cost_micro > 0
    # the rest is dropped where the job is not worth its list price at a hyperscaler
    for job, count in faults.items():
        if count == max_failures and last_fault[job].work_left > 0:
            assert (job in quitters) == worth_outside[job]
    assert summary["tenants_left_by_reason"]["failures"] == len(quitters)

"""Money from the edge to the ledger and back, without drift (`market.units`).

A price in USD per GPU-hour enters the engine once, as whole micro-USD per hour for the whole
order (`order_rate_micro`: half away from zero), whichever edge it comes through: a REST body,
a strategy's bid, an Akash port's per-block rate; amounts set on the command line
(`--set`) round as the engine rounds (`usd_to_micro`). The bound, derived: the rounding is at most
half a micro-USD per hour of the order, plus the float product's own error (two roundings of
2^-53 relative); both together stay below one micro-USD per hour of the whole order for any
price the REST edge accepts (below 10^6 USD per GPU-hour, 64 GPUs: 6.4 × 10^13 micro-USD an
hour, whose float error is under 0.03). Shown back to people (`per_gpu_hour_usd`) the figure
is within that same micro-USD of what they typed, and converting the shown figure back gives
the very same integer, however many times: nothing drifts.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agents.akash import max_price_per_block, per_block_to_usd_per_gpu_hour
from api.live.commands import COMMANDS, JoinProvider, JoinTenant
from api.live.session import Session
from api.live.views import lease_view
from api.remote.view import order_view as remote_order_view
from market import Market, load_scenario
from market.core.pool import ProviderRow
from market.core.resources import gpu_units
from market.events import BidsPlaced, LeaseClosed, LeaseCreated, OrderOpened, PaymentSettled
from market.strategy import OrderView
from market.units import (
    GIB,
    MICRO_USD_PER_USD,
    SECONDS_PER_BLOCK,
    SECONDS_PER_HOUR,
    gpu_hour_micro,
    order_cost_micro,
    order_rate_micro,
    order_rates_micro,
    owed_micro,
    per_gpu_hour_usd,
    usd_to_micro,
)

#: What the REST edge accepts (`api.live.commands.PositiveUsd`: > 0, < 10^6), from one
#: micro-USD per GPU-hour up.
PRICES = st.floats(min_value=1e-6, max_value=999_999.0, allow_nan=False)
GPUS = st.integers(1, 64)


def exact_micro(usd_per_gpu_hour: float, gpus: int) -> Fraction:
    """The exact whole-order rate, micro-USD per hour, of a float price."""
    return Fraction(usd_per_gpu_hour) * gpus * MICRO_USD_PER_USD


def within_the_bound(rate_micro: int, usd_per_gpu_hour: float, gpus: int) -> bool:
    """Off by less than one micro-USD per hour of the whole order (see the module doc)."""
    return abs(rate_micro - exact_micro(usd_per_gpu_hour, gpus)) < 1


# ------------------------------------------------------------------- the conversions alone

@settings(max_examples=400, deadline=None)
@given(price=PRICES, gpus=GPUS)
def test_a_price_round_trips_between_people_and_the_engine_without_drift(price, gpus):
    rate = order_rate_micro(price, gpus)
    assert isinstance(rate, int)
    exact = exact_micro(price, gpus)
    # half a micro-USD of rounding, plus the float product's error
    assert abs(rate - exact) <= Fraction(1, 2) + exact * Fraction(1, 2**51)
    assert within_the_bound(rate, price, gpus)
    shown = price
    for _ in range(5):  # shown to people and typed back in, again and again
        shown = per_gpu_hour_usd(rate, gpus)
        assert order_rate_micro(shown, gpus) == rate
    assert abs(Fraction(shown) * gpus * MICRO_USD_PER_USD - exact) < 1
    # many bids at once round exactly as one does
    assert order_rates_micro(np.array([price, shown]), gpus).tolist() == [rate, rate]


@pytest.mark.parametrize(("usd", "gpus", "micro"), [
    (2.5, 4, 10_000_000),
    (0.1, 3, 300_000),              # 0.30000000000000004 USD an hour: noise does not leak
    (1.0000004, 4, 4_000_002),      # the whole order is rounded, once
    (0.0000005, 1, 1),              # an exact half, away from zero
    (0.0000025, 1, 3),
    (0.0000004, 1, 0),
])
def test_order_rates_round_the_whole_order_half_away_from_zero(usd, gpus, micro):
    assert order_rate_micro(usd, gpus) == micro
    assert order_rates_micro(np.array([usd]), gpus)[0] == micro


def test_posted_asks_are_rounded_per_gpu_hour():
    # An order-independent ask is a posted price per GPU-hour in whole micro-USD: g times it.
    assert gpu_hour_micro(1.0000004) == 1_000_000
    assert gpu_hour_micro(np.array([1.0000004, 0.0000005, math.nan])).tolist()[:2] == \
        [1_000_000, 1]
    assert math.isnan(gpu_hour_micro(np.array([math.nan]))[0])


# ------------------------------------------------------ the REST edge, through to the ledger

SCENARIO = load_scenario("default", ["duration_days=60", "market.manifest_failure_prob=0",
                                     "market.order_max_bids=1000",
                                     "tenants.arrivals_per_hour=1"])


@pytest.fixture(scope="module")
def session():
    live = Session(SCENARIO, seed=5)
    live.apply("join_tenant", JoinTenant(role="tenant", name="alice", wallet_usd=1e9), None)
    return live


def _body(kind: str, data: dict):
    """A command body as the REST edge reads it: JSON text, validated."""
    return COMMANDS[kind].model_validate_json(json.dumps(data))


@settings(max_examples=40, deadline=None)
@given(max_price=st.floats(1e-5, 50_000.0), share=st.floats(0.01, 1.0),
       gpus=st.integers(1, 8), ran_s=st.floats(1.0, 7_200.0))
def test_rest_prices_reach_the_ledger_and_come_back_without_drift(session, max_price, share,
                                                                  gpus, ran_s):
    market = session.market
    bid = max_price * share
    assume(order_rate_micro(bid, gpus) >= 1)
    events: list = []
    unsubscribe = market.subscribe(events.append)
    alice = session.participant(0)
    provider = session.participant(session.apply("join_provider", JoinProvider(
        role="provider", name=f"p{len(session.participants)}", gpu_model="h100", gpus=8,
        wallet_usd=1e6), None)["participant_id"])
    hours = 4.0
    order_id = session.apply("post_order", _body("post_order", {
        "gpus": gpus, "gpu_models": ["h100"], "max_price_usd_per_gpu_hour": max_price,
        "hours": hours, "auto_select": False}), alice)["order_id"]
    max_micro = order_rate_micro(max_price, gpus)
    assert market.orders[order_id].max_price == max_micro
    bid_id = session.apply("bid", _body("bid", {
        "order_id": order_id, "price_usd_per_gpu_hour": bid}), provider)["bid_id"]
    rate = order_rate_micro(bid, gpus)
    assert within_the_bound(rate, bid, gpus)
    (mine,) = [b for b in market.bids(order_id) if b["bid_id"] == bid_id]
    assert mine["price_micro_per_hour"] == rate
    assert order_rate_micro(mine["price_usd_per_gpu_hour"], gpus) == rate
    lease_id = session.apply("accept", _body("accept", {"order_id": order_id,
                                                        "bid_id": bid_id}), alice)["lease_id"]
    shown = lease_view(market, market.leases[lease_id])
    assert shown["price_micro_per_hour"] == rate
    assert order_rate_micro(shown["price_usd_per_gpu_hour"], gpus) == rate

    session.advance(market.now + ran_s)
    reopened = session.apply("close_lease", _body("close_lease", {
        "lease_id": lease_id, "reopen": True}), alice)["reopened_order_id"]
    (created,) = [e for e in events if isinstance(e, LeaseCreated) and e.lease_id == lease_id]
    (closed,) = [e for e in events if isinstance(e, LeaseClosed) and e.lease_id == lease_id]
    assert created.price_micro_per_hour == rate
    # The ledger: exactly what the integer rate owes for the time the lease ran, paid out of
    # escrow (payout plus fee), however the settlements were cut.
    owed = owed_micro(rate, closed.time_s - created.time_s) if closed.reason == "owner" \
        else closed.paid_micro
    assert closed.paid_micro == owed
    assert sum(e.amount_micro for e in events if isinstance(e, PaymentSettled)
               and e.lease_id == lease_id) == owed
    # The rest of the work is auctioned again (Akash keeps the group open), at the very
    # integer max price the tenant's REST body gave, after its round trip through USD.
    unsubscribe()
    if closed.reason == "owner" and closed.work_left > 0:
        (reposted,) = [e for e in events if isinstance(e, OrderOpened)
                       and e.order_id == reopened]
        assert reposted.attempt == 1 and reposted.max_price_micro_per_hour == max_micro
        assert market.orders[reopened].max_price == max_micro
        market.cancel_order(reopened)


# ------------------------------------------- a strategy's bid and an Akash port, offline

HOUR = SECONDS_PER_HOUR


def _row(market: Market, name: str) -> ProviderRow:
    return ProviderRow(
        name=name, population=0, model=market.catalog.index("h100"), gpus=64,
        cpu_millicores=4000 * 64, memory_bytes=32 * GIB * 64, storage_bytes=100 * GIB * 64,
        ip_leases=0, storage_classes=("ephemeral", "beta2", "beta3"), audited=True,
        cost_full_usd_per_gpu_hour=1.0, cost_marginal_usd_per_gpu_hour=1.0,
        cost_idle_usd_per_gpu_hour=0.0, cost_fixed_usd_per_gpu_hour=0.0,
        cost_basis_usd_per_gpu_hour=1.0, latency_log_median=0.0, latency_sigma=0.0,
        failure_rate_per_s=0.0, repair_s=(HOUR, HOUR), churn_rate_per_s=0.0,
        offline_s=(86_400.0, 86_400.0))


class _Quoted:
    """Bids the price it is told, per order (`prices`) or posted (`asks`)."""

    def __init__(self) -> None:
        self.usd_per_gpu_hour = 1.0

    def prices(self, order, providers, view):
        return np.full(len(providers), self.usd_per_gpu_hour)


class _Posted(_Quoted):
    def asks(self, providers, view):
        return np.full(len(providers), self.usd_per_gpu_hour)


@pytest.fixture(scope="module")
def offline():
    scenario = load_scenario("default", ["market.manifest_failure_prob=0",
                                         "market.take_rate=0", "duration_days=60"])
    market = Market(scenario, seed=0, populate=False, record=False)
    quoted, posted = _Quoted(), _Posted()
    quoted_id = int(market.add_providers([_row(market, "quoted")], quoted)[0])
    posted_id = int(market.add_providers([_row(market, "posted")], posted)[0])
    tenant = market.add_tenant("alice", 1e12)
    return market, quoted, posted, quoted_id, posted_id, tenant


def _bids(market: Market, order_id: int, events: list) -> dict[int, int]:
    placed = [e for e in events if isinstance(e, BidsPlaced) and e.order_id == order_id]
    return {int(p): int(price) for e in placed
            for p, price in zip(e.providers, e.prices_micro_per_hour, strict=True)}


@settings(max_examples=100, deadline=None)
@given(price=st.floats(1e-6, 10_000.0), gpus=st.integers(1, 64), whole=st.booleans())
def test_every_edge_gives_the_same_integer(offline, price, gpus, whole):
    market, quoted, posted, quoted_id, posted_id, tenant = offline
    if whole:  # a price in whole micro-USD per GPU-hour, as a posted ask is kept
        price = gpu_hour_micro(price) / MICRO_USD_PER_USD
    assume(price > 0 and order_rate_micro(price, gpus) >= 1)
    rate = order_rate_micro(price, gpus)
    quoted.usd_per_gpu_hour = posted.usd_per_gpu_hour = price
    market.refresh_asks(np.array([posted_id]))
    events: list = []
    unsubscribe = market.subscribe(events.append)
    units = gpu_units(gpus, ("h100",), cpu_millicores_per_gpu=4000,
                      memory_bytes_per_gpu=32 * GIB, storage_bytes_per_gpu=100 * GIB)
    # The tenant's max price, here twice the bids (a posted ask may round above the price).
    order_id = market.post_order(tenant, units, 2 * price, deposit_usd=0.0, auto_select=False)
    unsubscribe()
    (opened,) = [e for e in events if isinstance(e, OrderOpened)]
    order = market.orders[order_id]
    max_micro = order_rate_micro(2 * price, gpus)
    assert order.max_price == max_micro  # the REST edge's integer
    view = OrderView.of(order)
    assert view.max_price_micro_per_hour == max_micro
    assert order_rate_micro(view.max_price_usd_per_gpu_hour, gpus) == max_micro
    # A remote bot reads the order from the stream's event: the same integer, the same float.
    remote = remote_order_view(opened.to_dict())
    assert remote.max_price_micro_per_hour == max_micro
    assert remote.max_price_usd_per_gpu_hour == view.max_price_usd_per_gpu_hour
    # A strategy's bid, priced for the order: the same integer as a REST bid.
    bids = _bids(market, order_id, events)
    assert bids[quoted_id] == rate
    # A posted ask: whole micro-USD per GPU-hour times the GPUs; the same integer for a price
    # in whole micro-USD per GPU-hour, else within half a micro-USD per GPU of the order.
    assert bids[posted_id] == gpu_hour_micro(price) * gpus
    if whole:
        assert bids[posted_id] == rate
    assert abs(bids[posted_id] - exact_micro(price, gpus)) <= Fraction(gpus, 2) + Fraction(1,
                                                                                          100)
    # An Akash port starts from the order's integer, per block (18 decimals), and bidding
    # that max price per block comes back to the same integer.
    per_block = max_price_per_block(view)
    exact_per_block = Fraction(max_micro) * Fraction(Decimal(str(SECONDS_PER_BLOCK))) / 3600
    assert 0 <= exact_per_block - Fraction(per_block) < Fraction(1, 10**18)
    assert order_rate_micro(per_block_to_usd_per_gpu_hour(per_block, gpus), gpus) == max_micro
    market.cancel_order(order_id)


@settings(max_examples=200, deadline=None)
@given(micro_per_block=st.decimals(Decimal("0.000001"), Decimal(10**9), places=18),
       gpus=GPUS)
def test_an_akash_rate_per_block_enters_the_engine_rounded_once(micro_per_block, gpus):
    """An Akash port's bid (micro-USD per block, 18 decimals) becomes the whole order's
    micro-USD per hour rounded once, within the bound of the exact hour rate."""
    exact = Fraction(micro_per_block) * 3600 / Fraction(Decimal(str(SECONDS_PER_BLOCK)))
    usd = per_block_to_usd_per_gpu_hour(micro_per_block, gpus)
    assert abs(order_rate_micro(usd, gpus) - exact) < 1


# ------------------------------------------------------------------ the CLI's --set overrides

@settings(max_examples=15, deadline=None)
@given(deposit=st.floats(1e-6, 999_999.0), wallet=st.floats(1e-6, 1e9))
def test_amounts_set_on_the_command_line_round_as_the_engine_rounds(deposit, wallet):
    """`gpumarket run --set PATH=VALUE` reads the value as TOML into the scenario: the
    amounts reach the ledger through `usd_to_micro`, as REST bodies do."""
    scenario = load_scenario("default", [f"market.bid_deposit_usd={deposit!r}",
                                         f"tenants.wallet_usd={wallet!r}"])
    market = Market(scenario, seed=0, populate=False, record=False)
    assert market.settlement.deposit_micro == usd_to_micro(deposit)
    tenant = market.add_tenant("alice", scenario.tenants.wallet_usd)
    assert market.ledger.balance(market.tenant_accounts[tenant]) == usd_to_micro(wallet)
    assert abs(market.settlement.deposit_micro - Fraction(deposit) * MICRO_USD_PER_USD) < 1


def test_measured_costs_convert_without_rounding():
    # What the engine's serving costs and list prices per order compute, unrounded.
    costs = np.array([0.1234567891, 2.5])
    assert order_cost_micro(costs, 3).tolist() == (costs * 3 * MICRO_USD_PER_USD).tolist()
    assert order_cost_micro(0.1234567891, 3) == 0.1234567891 * 3 * 1e6


class _Observing(_Quoted):
    """Bids the price it is told, and keeps the outcomes it hears."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list = []

    def observe(self, outcome) -> None:
        self.outcomes.append(outcome)


def test_outcomes_carry_the_engine_integers_behind_their_floats():
    scenario = load_scenario("default", ["market.manifest_failure_prob=0", "market.take_rate=0",
                                         "market.mechanism=first_price"])
    market = Market(scenario, seed=0, populate=False, record=False)
    strategy = _Observing()
    strategy.usd_per_gpu_hour = 1.0000004  # 3 GPUs: 3,000,001.2 micro-USD an hour
    market.add_providers([_row(market, "a")], strategy)
    tenant = market.add_tenant("alice", 1e6)
    units = gpu_units(3, ("h100",), cpu_millicores_per_gpu=4000,
                      memory_bytes_per_gpu=32 * GIB, storage_bytes_per_gpu=100 * GIB)
    market.post_order(tenant, units, 2.0, deposit_usd=100.0)
    market.run(until=market.now + 600)
    (outcome,) = strategy.outcomes
    assert outcome.bids_micro_per_hour.tolist() == [3_000_001]
    assert outcome.clearing_micro_per_hour == 3_000_001
    assert outcome.public_bids_micro_per_hour.tolist() == [3_000_001]
    assert outcome.order.max_price_micro_per_hour == 6_000_000
    assert outcome.bids_usd_per_gpu_hour.tolist() == [per_gpu_hour_usd(3_000_001, 3)]
    assert outcome.clearing_usd_per_gpu_hour == per_gpu_hour_usd(3_000_001, 3)

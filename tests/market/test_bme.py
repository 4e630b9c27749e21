"""Burn-Mint Equilibrium (AEP-76): the worked example to the micro-AKT, the oracle's TWAP and
health rule, the price path against GBM theory, the circuit breakers on a constructed crash,
and conservation per denomination on random markets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.markups import CostPlus
from market import Market, load_scenario
from market.bme.price import GbmPath, Oracle, PricePath, read_price_csv
from market.bme.protocol import HALT_CR, HEALTHY, WARNING, Protocol
from market.errors import MarketError
from market.events import ActMinted, AktSettled, MintStatusChanged, PaymentSettled
from market.scenario import ScenarioError
from tests.market.test_engine import of, provider, record, units

AKT = 1_000_000  # uAKT per AKT; also uACT per ACT and micro-USD per USD


# ---------------------------------------------------------------------- the AEP's example

@pytest.mark.parametrize(("settle_usd", "paid_uakt", "minted_uakt", "net_uakt"), [
    # The AEP prints 666.666667 (rounded to nearest); the protocol pays floor(ACT / P), and
    # the net it prints, -210.526316, is that floor's.
    (1.50, 666_666_666, 0, -210_526_316),
    (0.90, 1_111_111_111, 233_918_129, 233_918_129),
])
def test_the_aep76_worked_example(settle_usd, paid_uakt, minted_uakt, net_uakt):
    bme = Protocol(mint_spread_ppm=0, settle_spread_ppm=0)
    tenant_akt, provider_akt = bme.akt.open("tenant"), bme.akt.open("provider")
    tenant_act = bme.act.open("tenant")
    # A 1,000 USD top-up at 1.14: the dollars buy floor(1000 / 1.14) AKT, all burned.
    burned = 1_000 * AKT * AKT // 1_140_000
    assert burned == 877_192_982
    bme.akt.transfer(bme.akt.external, tenant_akt, burned, "akt_purchase")
    assert bme.mint_act(tenant_akt, tenant_act, burned, 1_140_000) == 999_999_999
    assert bme.vault_uakt() == burned and bme.burned_uakt() == burned
    # The example settles the whole 1,000 USD of usage; the micro-ACT the mint rounded away
    # is added by hand, so the settlement is the AEP's.
    bme.act.transfer(bme.act.external, tenant_act, 1, "mint")
    payout = bme.settle(tenant_act, provider_akt, 1_000 * AKT, round(settle_usd * AKT))
    assert payout.akt_out_uakt == paid_uakt == bme.akt.balance(provider_akt)
    assert payout.vault_paid_uakt == min(paid_uakt, burned)
    assert payout.minted_uakt == minted_uakt == bme.minted_uakt()
    assert bme.net_supply_change_uakt() == net_uakt
    assert bme.outstanding_act_uact() == 0
    books = bme.audit()
    assert books["uact_conserved"] and books["uakt_conserved"]


def test_spreads_keep_back_their_share():
    bme = Protocol(mint_spread_ppm=2_500, settle_spread_ppm=2_500)  # 25 bps each
    assert bme.act_for(1_000 * AKT, AKT) == 997_500_000
    assert bme.akt_for(1_000 * AKT, AKT) == 997_500_000
    # The fewest AKT minting at least what is asked, and one less mints less.
    need = bme.akt_to_burn(997_500_000, 2 * AKT)
    assert bme.act_for(need, 2 * AKT) >= 997_500_000 > bme.act_for(need - 1, 2 * AKT)


def test_collateral_ratio_and_status():
    bme = Protocol(0, 0)
    assert math.isinf(bme.collateral_ratio(AKT))
    akt, act = bme.akt.open("t"), bme.act.open("t")
    bme.akt.transfer(bme.akt.external, akt, 100 * AKT, "akt_purchase")
    bme.mint_act(akt, act, 100 * AKT, AKT)  # 100 ACT backed by 100 AKT at 1 USD
    assert bme.collateral_ratio(940_000) == pytest.approx(0.94)
    assert bme.status(960_000, True, 0.95, 0.90) == HEALTHY
    assert bme.status(940_000, True, 0.95, 0.90) == WARNING
    assert bme.status(890_000, True, 0.95, 0.90) == HALT_CR
    assert bme.status(AKT, False, 0.95, 0.90) == "halt_oracle"


# ---------------------------------------------------------------------- price and oracle

def test_twap_is_the_exact_time_weighted_mean():
    path = PricePath.from_points([0.0, 600.0, 1_200.0], [1.0, 2.0, 4.0])
    oracle = Oracle(path, twap_window_s=1_800, max_staleness_s=1e9, max_deviation=10)
    assert oracle.twap(1_800.0) == pytest.approx((600 * 1 + 600 * 2 + 600 * 4) / 1_800)
    # Before the first price, the first price holds.
    assert oracle.twap(300.0) == pytest.approx(1.0)
    assert oracle.twap(900.0) == pytest.approx((1_500 * 1 + 300 * 2) / 1_800)


def test_oracle_health_rule():
    path = PricePath.from_points([0.0, 3_600.0], [1.0, 1.2])
    stale = Oracle(path, 1_800, max_staleness_s=600, max_deviation=0.5)
    assert stale.healthy(500.0) and not stale.healthy(700.0)  # no new price for 700 s
    agreeing = Oracle(path, 1_800, max_staleness_s=1e9, max_deviation=0.10)
    # Right after the jump the TWAP lags the spot by 1/6 of it: the sources disagree.
    assert not agreeing.healthy(3_600.0)
    assert agreeing.healthy(3_600.0 + 1_800.0)  # the window has caught up


def test_gbm_log_returns_match_theory():
    """log(P(t+Δ)/P(t)) ~ N((μ − σ²/2)Δ, σ²Δ): the mean within 4 standard errors, the
    variance within 4 standard errors of a normal sample's variance (σ²Δ·√(2/(n−1)))."""
    sigma, mu, day = 1.08, 0.3, 86_400.0
    path = GbmPath(0.5, mu, sigma, 3_600.0, np.random.default_rng(7))
    n = 2_000
    prices = np.array([path.spot(i * day) for i in range(n + 1)])
    logs = np.diff(np.log(prices))
    delta = day / (365.25 * 86_400)
    mean, var = (mu - sigma ** 2 / 2) * delta, sigma ** 2 * delta
    assert abs(logs.mean() - mean) < 4 * math.sqrt(var / n)
    assert abs(logs.var(ddof=1) - var) < 4 * var * math.sqrt(2 / (n - 1))


def test_the_same_seed_draws_the_same_path_however_far_it_runs():
    near = GbmPath(1.0, 0.0, 1.0, 60.0, np.random.default_rng(3))
    far = GbmPath(1.0, 0.0, 1.0, 60.0, np.random.default_rng(3))
    far.spot(1e7)
    assert [near.spot(t) for t in (0.0, 59.0, 60.0, 5e5)] == \
        [far.spot(t) for t in (0.0, 59.0, 60.0, 5e5)]


def test_price_csv_errors_name_the_line(tmp_path):
    bad = tmp_path / "akt.csv"
    bad.write_text("time_s,price_usd\n0,1.0\n0,1.1\n")
    with pytest.raises(MarketError, match=r"akt.csv:3: time_s must be finite and above"):
        read_price_csv(bad)
    bad.write_text("time_s,price\n0,1.0\n")
    with pytest.raises(MarketError, match="missing column"):
        read_price_csv(bad)
    bad.write_text("time_s,price_usd\n0,-1\n")
    with pytest.raises(MarketError, match=r"akt.csv:2: price_usd must be in"):
        read_price_csv(bad)


def test_scenario_errors_name_the_field(tmp_path):
    with pytest.raises(ScenarioError, match=r"market\.settlement"):
        load_scenario("default", ['market.settlement="usdc"'])
    with pytest.raises(ScenarioError, match="cr_halt"):
        load_scenario("default", ["market.bme.cr_halt=0.97"])
    with pytest.raises(ScenarioError, match="path"):
        load_scenario("default", ['market.bme.akt_price.model="csv"'])


# ---------------------------------------------------------------------- in a market

def bme_market(tmp_path, points: list[tuple[float, float]], *overrides: str,
               seed: int = 0) -> Market:
    """A bare default market settled in AKT, the AKT price replayed from `points`."""
    prices = tmp_path / "akt.csv"
    prices.write_text("time_s,price_usd\n" + "".join(f"{t},{p}\n" for t, p in points))
    scenario = load_scenario("default", [
        "market.manifest_failure_prob=0", "market.bids_net_of_fee=false",
        'market.settlement="bme"', 'market.bme.akt_price.model="csv"',
        f'market.bme.akt_price.path="{prices}"', "market.bme.oracle_max_staleness_s=1e7",
        "market.bme.oracle_max_deviation=0.5", "market.bme.mint_spread_bps=0",
        "market.bme.runway_days=1", "market.bme.min_topup_days=10", *overrides])
    return Market(scenario, seed=seed, populate=False)


def test_breakers_on_a_constructed_crash(tmp_path):
    """AKT at 1.00, then 0.93 (CR below 0.95: mints must cover 10 days), then 0.85 (below
    0.90: no mints, deposits in AKT), then 1.00 again (mints resume)."""
    market = bme_market(tmp_path, [(0, 1.0), (20_000, 0.93), (40_000, 0.85), (60_000, 1.0)])
    events = record(market)
    tenant = market.add_tenant("alice", 1_000_000.0)
    market.add_providers([provider(market, "p", gpus=8, cost=1.0)], CostPlus(markup=0))
    settlement = market.settlement
    market.run(until=100)
    first = market.post_order(tenant, units(1), 2.0, deposit_usd=500.0)
    (mint,) = of(events, ActMinted)
    assert mint.act_minted_uact == 500 * AKT  # no run-rate yet: just the deposit
    assert settlement.protocol.collateral_ratio(AKT) == pytest.approx(1.0, abs=1e-6)
    market.run(until=1_000)  # the lease runs: a day's runway (24 USD at 1 USD/h) refilled
    rate_per_s = market.leases[market.orders[first].lease.id].price / 3_600
    assert of(events, ActMinted)[1].act_minted_uact == round(rate_per_s * 86_400) == 24 * AKT
    market.run(until=30_000)  # TWAP at 0.93 (window 1,800 s): warning
    assert settlement.status == WARNING
    minted = len(of(events, ActMinted))
    market.post_order(tenant, units(1), 2.0, deposit_usd=100.0)
    # It needs 76 (its deposit's 100 less its 24, plus a day's runway): while slow, a mint
    # covers at least 10 days of run-rate, 240.
    (warned,) = of(events, ActMinted)[minted:]
    assert warned.act_minted_uact == round(rate_per_s * 10 * 86_400) == 240 * AKT
    market.run(until=50_000)  # TWAP at 0.85: halt
    assert settlement.status == HALT_CR
    minted = len(of(events, ActMinted))
    held_order = market.post_order(tenant, units(1), 2.0, deposit_usd=200_000.0)
    assert len(of(events, ActMinted)) == minted  # no mint while halted
    assert held_order in settlement._akt_held and settlement.counts["direct_orders"] == 1
    market.run(until=70_000)  # back at 1.00
    assert settlement.status == HEALTHY
    statuses = [e.status for e in of(events, MintStatusChanged)]
    # The mint at 0.93 is backed at 0.93: it lifts the ratio back over 0.95 for a while.
    assert statuses == [WARNING, HEALTHY, WARNING, HALT_CR, WARNING, HEALTHY]
    assert settlement.activations[HALT_CR] == 1
    market.run()
    direct = [e for e in of(events, AktSettled) if e.direct]
    assert direct and all(e.act_burn_uact == 0 and e.minted_uakt == 0 for e in direct)
    summary = market.result().summary
    assert summary["money_conserved"]
    assert summary["bme"]["orders_paid_in_akt"] == 1
    assert summary["bme"]["breaker_activations"]["halt_cr"] == 1


def test_payments_wait_for_a_healthy_oracle(tmp_path):
    market = bme_market(tmp_path, [(0, 1.0), (3_000, 2.0)],
                        "market.bme.oracle_max_deviation=0.1", "market.withdraw_interval_s=3600")
    events = record(market)
    tenant = market.add_tenant("alice", 1_000_000.0)
    market.add_providers([provider(market, "p")], CostPlus(markup=0))
    market.post_order(tenant, units(1), 2.0, deposit_usd=500.0)
    market.run(until=3_700)  # the withdrawal at 3,600 s: the TWAP lags the jump by far
    assert of(events, PaymentSettled) and not of(events, AktSettled)
    assert market.settlement.status == "halt_oracle"
    market.run(until=7_200)  # the window caught up: the waiting payment is made
    (paid,) = of(events, AktSettled)[:1]
    assert paid.time_s > 3_600 and paid.price_micro == 2 * AKT
    assert market.result().summary["money_conserved"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(prices=st.lists(st.floats(0.2, 3.0), min_size=1, max_size=6),
       deposits=st.lists(st.floats(1.0, 5_000.0), min_size=1, max_size=5),
       spread=st.sampled_from([0, 25, 300]))
def test_money_is_conserved_per_denomination(tmp_path, prices, deposits, spread):
    points = [(i * 9_000.0, p) for i, p in enumerate(prices)]
    market = bme_market(tmp_path, points, f"market.bme.mint_spread_bps={spread}",
                        f"market.bme.settle_spread_bps={spread}", "duration_days=1")
    events = record(market)
    tenants = [market.add_tenant(f"t{i}", 50_000.0) for i in range(2)]
    market.add_providers([provider(market, f"p{i}", gpus=4) for i in range(2)],
                         CostPlus(markup=0.2))
    for i, deposit in enumerate(deposits):
        market.run(until=i * 7_000.0)
        market.post_order(tenants[i % 2], units(1), 3.0, deposit_usd=deposit)
    result = market.run()
    bme = market.settlement.protocol
    assert result.summary["money_conserved"], result.summary["money_by_denomination"]
    # AKT's supply moved only by recorded burns and mints.
    assert bme.net_supply_change_uakt() == bme.minted_uakt() - bme.burned_uakt() + \
        bme.akt.flows.get("vault_paid", 0)
    burned = sum(e.act_burn_uact for e in of(events, AktSettled))
    assert burned == bme.act.flows.get("settle_burn", 0)
    # ACT outstanding is exactly what tenants hold, escrow, and payments awaiting the oracle.
    settlement = market.settlement
    held = sum(settlement.act_balance(market.tenant_accounts[t]) for t in tenants)
    assert bme.outstanding_act_uact() == held + bme.act.balance(settlement.act_escrow) + \
        bme.act.balance(settlement.act_waiting)


def test_a_default_week_day_under_bme_is_deterministic_and_fee_free():
    overrides = ["duration_days=0.5", 'market.settlement="bme"']
    runs = [Market(load_scenario("default", overrides), seed=4, record=False).run()
            for _ in range(2)]
    assert runs[0].to_json() == runs[1].to_json()
    summary = json.loads(runs[0].to_json())
    assert summary["money_conserved"] and summary["platform_revenue_usd"] == 0
    bme = summary["bme"]
    assert bme["act_burned_usd"] == pytest.approx(summary["tenant_spend_usd"], abs=1e-6)
    assert bme["topups"] > 0 and bme["akt_burned"] > 0

"""A live market settled by Burn-Mint Equilibrium (`market.settlement = "bme"`) shows everyone
the AKT price, the oracle, the mint status and the collateral ratio (snapshot, frames, `/me`);
a tenant its ACT balance and top-ups, and its orders paid in AKT while mints are halted; a
provider the AKT its leases paid. An AEP-23 market's views are as they were."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.live import views
from api.live.commands import Accept, Bid, JoinProvider, JoinTenant, PostOrder
from api.live.driver import Limits
from api.live.server import create_app
from api.live.session import Session
from market.bme.protocol import STATUSES, usd_value_micro
from market.scenario import load_scenario
from tests.api.test_server import auth, join, wait_for

BME = ["market.settlement=bme"]
#: What everyone sees of BME, in the snapshot, every frame's figures and `/me`.
FIGURES = {"akt_spot_usd", "akt_spot_micro", "akt_twap_usd", "akt_twap_micro",
           "oracle_healthy", "mint_status", "collateral_ratio", "outstanding_act_usd",
           "outstanding_act_uact", "vault_akt", "vault_uakt", "akt_burned", "akt_burned_uakt",
           "akt_minted", "akt_minted_uakt"}
RULES = {"twap_window_s", "cr_warning", "cr_halt", "mint_spread_bps", "runway_days",
         "min_topup_days"}
#: `/me`'s keys before BME: an AEP-23 market keeps exactly these.
ME_KEYS = {"participant_id", "role", "name", "tenant", "provider", "wallet_usd", "wallet_micro",
           "provider_facts", "open_orders", "active_leases", "expired_orders"}
#: One lease of one H100 for half an hour at 1.25 USD per GPU-hour: what the provider's AKT
#: must be worth when paid, micro-USD (less the rounding down of floor(ACT / price)).
LEASE_PAID_MICRO = 625_000


@pytest.fixture
def client(tmp_path):
    # Polling /me is many requests from one address: generous rates, so none is refused.
    limits = Limits(rate_per_s=1000, rate_burst=1000, address_rate_per_s=1000,
                    address_burst=1000, anonymous_rate_per_s=1000, anonymous_burst=1000)
    with TestClient(create_app(tmp_path / "sessions.db", limits)) as client:
        yield client


def _create(client: TestClient, overrides: list[str]) -> dict[str, Any]:
    response = client.post("/api/markets", json={"speed": 3000, "seed": 3,
                                                 "overrides": overrides},
                           headers=auth(client.app.state.operator_token))
    assert response.status_code == 201, response.text
    return response.json()


def _first_figures(client: TestClient, market_id: str) -> dict[str, Any]:
    """The headline figures of the first frame of the market's stream that has them."""
    with client.websocket_connect(f"/api/markets/{market_id}/stream") as socket:
        assert socket.receive_json()["type"] == "hello"
        for _ in range(50):
            frame = socket.receive_json()
            if "figures" in frame:
                return frame["figures"]
    raise AssertionError("no frame with figures in the stream's first 50")


def _me(client: TestClient, market_id: str, token: str) -> dict[str, Any]:
    response = client.get(f"/api/markets/{market_id}/me", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


def _check_figures(bme: dict[str, Any]) -> None:
    assert set(bme) >= FIGURES
    assert bme["mint_status"] in STATUSES
    assert bme["akt_spot_usd"] == bme["akt_spot_micro"] / 1e6 > 0
    assert bme["akt_twap_usd"] == bme["akt_twap_micro"] / 1e6 > 0
    if bme["outstanding_act_uact"] > 0:  # CR = vault AKT x TWAP / outstanding ACT
        value = usd_value_micro(bme["vault_uakt"], bme["akt_twap_micro"])
        assert bme["collateral_ratio"] == pytest.approx(value / bme["outstanding_act_uact"])
    else:
        assert bme["collateral_ratio"] is None


def test_a_bme_market_shows_akt_to_everyone_and_each_participant_its_money(client):
    created = _create(client, BME)
    market_id, control = created["market_id"], auth(created["control_token"])
    # Paused, the clock stands still while commands apply: the bid stays open to be accepted.
    assert client.post(f"/api/markets/{market_id}/pause", headers=control).status_code == 200
    alice = join(client, market_id, role="tenant", name="alice", wallet_usd=500)
    bob = join(client, market_id, role="provider", name="bob", gpu_model="h100", gpus=8)

    snapshot = client.get(f"/api/markets/{market_id}").json()
    assert snapshot["settlement"] == "bme" and snapshot["take_rate"] == 0.0
    _check_figures(snapshot["bme"])
    assert set(snapshot["bme"]) >= RULES and snapshot["bme"]["cr_halt"] == 0.9
    _check_figures(snapshot["metrics"]["bme"])  # the headline's figures, as frames carry

    before = _me(client, market_id, alice["token"])["bme"]
    assert before["topups"] == [] and before["act_balance_uact"] == 0
    posted = client.post(f"/api/markets/{market_id}/orders", headers=auth(alice["token"]),
                         json={"gpu_models": ["h100"], "gpus": 1, "hours": 0.5,
                               "max_price_usd_per_gpu_hour": 4.0})
    assert posted.status_code == 201, posted.text
    order_id = posted.json()["result"]["order_id"]

    # Her ACT fell short of the deposit (4 USD x 1 GPU x 0.5 h): she topped up at once.
    mine = _me(client, market_id, alice["token"])
    assert set(mine) == ME_KEYS | {"bme"}
    (topup,) = mine["bme"]["topups"]
    minted = [e for e in client.get(f"/api/markets/{market_id}/events").json()["events"]
              if e["kind"] == "act_minted" and e["tenant"] == alice["tenant"]]
    assert len(minted) == 1 and topup["seq"] == minted[0]["seq"]
    for key in ("usd_spent_micro", "akt_burned_uakt", "act_minted_uact", "price_micro"):
        assert topup[key] == minted[0][key]
    assert topup["act_minted_uact"] >= 2_000_000 and topup["usd_spent"] > 0
    assert topup["usd_spent"] == topup["usd_spent_micro"] / 1e6
    assert mine["bme"]["topups_total"] == 1
    assert mine["bme"]["topup_spend_micro"] == topup["usd_spent_micro"]
    # What she holds outside escrow: minted less the deposit locked.
    assert mine["bme"]["act_balance_uact"] == topup["act_minted_uact"] - 2_000_000
    assert mine["wallet_micro"] == 500_000_000 - topup["usd_spent_micro"]
    assert mine["bme"]["orders_paid_in_akt"] == []

    bid = client.post(f"/api/markets/{market_id}/orders/{order_id}/bids",
                      headers=auth(bob["token"]), json={"price_usd_per_gpu_hour": 1.25})
    assert bid.status_code == 201, bid.text
    accepted = client.post(f"/api/markets/{market_id}/orders/{order_id}/accept",
                           headers=auth(alice["token"]),
                           json={"bid_id": bid.json()["result"]["bid_id"]})
    assert accepted.status_code == 200, accepted.text
    lease_id = accepted.json()["result"]["lease_id"]
    assert _me(client, market_id, bob["token"])["bme"]["akt_earned_uakt"] == 0

    # The half-hour lease ends and settles: Bob is paid in AKT at the oracle's price.
    assert client.post(f"/api/markets/{market_id}/resume", headers=control).status_code == 200
    paid = wait_for(lambda: (lambda me: me if me["bme"]["payouts"] else None)(
        _me(client, market_id, bob["token"])), "the provider's AKT payout")
    bme = paid["bme"]
    _check_figures(bme)
    assert set(paid) == ME_KEYS | {"bme"}
    (payout,) = [p for p in bme["payouts"] if p["lease_id"] == lease_id]
    assert not payout["direct"]
    assert bme["akt_earned_uakt"] == sum(p["akt_uakt"] for p in bme["payouts"]) > 0
    assert bme["usd_at_settlement_micro"] == sum(p["usd_value_micro"] for p in bme["payouts"])
    assert payout["usd_value_micro"] == usd_value_micro(payout["akt_uakt"],
                                                        payout["price_micro"])
    assert LEASE_PAID_MICRO - payout["price_micro"] // 10**6 - 1 <= payout["usd_value_micro"] \
        <= LEASE_PAID_MICRO
    # Providers sell weekly: nothing sold yet, all of it held.
    assert bme["usd_at_sale_micro"] == 0 and bme["akt_held_uakt"] == bme["akt_earned_uakt"]
    assert bme["akt_held_value_micro"] == usd_value_micro(bme["akt_held_uakt"],
                                                          bme["akt_spot_micro"])
    for key in ("topups", "act_balance_usd", "orders_paid_in_akt"):
        assert key not in bme
    # Bids and prices keep their USD view.
    assert paid["wallet_usd"] == paid["wallet_micro"] / 1e6

    # Every frame's figures carry it too.
    _check_figures(_first_figures(client, market_id)["bme"])


def test_an_aep23_market_shows_no_bme(client):
    created = _create(client, ["market.settlement=aep23"])
    market_id = created["market_id"]
    alice = join(client, market_id, role="tenant", name="alice")
    bob = join(client, market_id, role="provider", name="bob", gpu_model="h100", gpus=8)
    snapshot = client.get(f"/api/markets/{market_id}").json()
    assert snapshot["settlement"] == "aep23"
    assert "bme" not in snapshot and "bme" not in snapshot["metrics"]
    for token in (alice["token"], bob["token"]):
        assert set(_me(client, market_id, token)) == ME_KEYS
    figures = _first_figures(client, market_id)
    assert "orders_posted" in figures and "bme" not in figures


# An oracle that must agree with the spot price to a hundredth of a percent is unhealthy almost
# always: mints halt, and deposits are paid in AKT directly.
HALTED = load_scenario("default", ["duration_days=0.5", *BME,
                                   "market.bme.oracle_max_deviation=0.0001"])


def _halted_market_trades() -> dict[str, Any]:
    """Alice's one-hour job on Bob's H100 in a halted market: her view once she posted it,
    both views two hours later, the ids, and the session."""
    session = Session(HALTED, seed=1)
    session.apply("join_tenant", JoinTenant(role="tenant", name="alice"), None)
    session.apply("join_provider", JoinProvider(role="provider", name="bob", gpu_model="h100",
                                                gpus=8, archetype="datacenter"), None)
    alice, bob = session.participants
    session.advance(1200.0)
    live = SimpleNamespace(session=session)
    halted = views.me(live, alice)["bme"]["mint_status"]
    order_id = session.apply("post_order", PostOrder(
        gpu_models=["h100"], gpus=1, hours=1, max_price_usd_per_gpu_hour=5.0), alice)["order_id"]
    posted = views.me(live, alice)
    bid_id = session.apply("bid", Bid(order_id=order_id, price_usd_per_gpu_hour=2.0),
                           bob)["bid_id"]
    lease_id = session.apply("accept", Accept(order_id=order_id, bid_id=bid_id),
                             alice)["lease_id"]
    session.advance(session.market.now + 2 * 3600.0)
    return {"session": session, "halted": halted, "posted": posted, "order_id": order_id,
            "lease_id": lease_id, "alice": views.me(live, alice), "bob": views.me(live, bob)}


def test_the_same_commands_give_the_same_views():
    first, second = _halted_market_trades(), _halted_market_trades()
    for key in ("posted", "alice", "bob"):
        assert first[key] == second[key]


def test_a_tenant_pays_in_akt_while_mints_are_halted():
    run = _halted_market_trades()
    order_id, lease_id = run["order_id"], run["lease_id"]
    assert run["halted"] in ("halt_oracle", "halt_cr")
    # She sees at once that her deposit (5 USD) was bought as AKT, not minted as ACT.
    me = run["posted"]
    (posted,) = me["bme"]["orders_paid_in_akt"]
    assert posted["order_id"] == order_id and posted["payments"] == 0
    assert posted["lease_id"] is None and posted["akt_paid_uakt"] == 0
    assert me["wallet_micro"] == 10_000_000_000 - posted["deposit_usd_spent_micro"]
    spot = me["bme"]["akt_spot_micro"]  # bought at the spot price, rounded up to the uAKT
    assert posted["deposit_uakt"] == -(-5_000_000 * 10**6 // spot)
    assert posted["deposit_usd_spent_micro"] == -(-posted["deposit_uakt"] * spot // 10**6)

    mine = run["alice"]["bme"]
    assert mine["topups"] == [] and mine["act_balance_uact"] == 0  # no ACT was minted
    (order,) = mine["orders_paid_in_akt"]
    assert order["deposit_uakt"] == posted["deposit_uakt"] > order["akt_paid_uakt"]
    theirs = run["bob"]["bme"]
    (payout,) = theirs["payouts"]
    assert payout["direct"] and payout["lease_id"] == lease_id
    assert order["order_id"] == order_id and order["lease_id"] == lease_id
    assert order["akt_paid_uakt"] == payout["akt_uakt"] == theirs["akt_earned_uakt"] > 0
    assert order["usd_value_micro"] == payout["usd_value_micro"]
    # The hour at 2 USD, at the price it was paid at (rounded down to the uAKT).
    assert 2_000_000 - payout["price_micro"] // 10**6 - 1 <= payout["usd_value_micro"] \
        <= 2_000_000
    settled = [e for e in run["session"].history if e["kind"] == "akt_settled"
               and e["lease_id"] == lease_id]
    assert [e["seq"] for e in settled] == [payout["seq"]]
    assert settled[0]["act_burn_uact"] == 0 and settled[0]["minted_uakt"] == 0


def test_the_captions_say_when_mints_halt():
    session = _halted_market_trades()["session"]
    said = [c for c in session.narrator.captions if c["kind"] == "mint"]
    assert said and said[0]["text"].startswith("Mints halted: the AKT price oracle is stale")
    halts = [c for c in said if c["text"].startswith("Mints halted")]
    resets = [c for c in said if c["text"].startswith("Mints are back to normal")]
    # One caption per breaker tripped, and one each time mints came back.
    assert len(halts) + len(resets) == len(said)
    assert len(halts) == session.market.settlement.activations["halt_oracle"]

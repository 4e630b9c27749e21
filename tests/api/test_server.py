"""The REST API through the ASGI test client: markets, participants, trading, tokens and
rights, limits, and bad input (one line naming the field; nothing half-applied)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.live.driver import Limits
from api.live.server import create_app

WAIT_S = 30.0


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll `check` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def make_client(tmp_path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**limits: Any) -> TestClient:
        client = TestClient(create_app(tmp_path / "sessions.db", Limits(**limits)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def operator(client: TestClient) -> dict[str, str]:
    """The operator's Authorization header: the token the app generated at its start."""
    return auth(client.app.state.operator_token)


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/markets", json={"speed": 3000, **body},
                           headers=operator(client))
    assert response.status_code == 201, response.text
    return response.json()


def join(client: TestClient, market_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/markets/{market_id}/participants", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_list_and_snapshot(client):
    created = create(client, name="demo", seed=7)
    assert created["control_token"].startswith("gmc_")
    market_id = created["market_id"]
    assert [m["market_id"] for m in client.get("/api/markets").json()] == [market_id]
    wait_for(lambda: client.get(f"/api/markets/{market_id}").json()["seq"] > 0, "events")
    snapshot = client.get(f"/api/markets/{market_id}").json()
    assert snapshot["name"] == "demo" and snapshot["seed"] == 7
    assert snapshot["state"] == "running" and snapshot["clock_s"] > 0
    assert {m["id"] for m in snapshot["gpu_models"]} >= {"h100", "rtx4090"}
    assert snapshot["providers"] > 0 and snapshot["mechanism"] == "tenant_pick"
    for order in snapshot["open_orders"]:
        assert order["max_price_usd_per_gpu_hour"] > 0 and isinstance(order["bids"], list)
    events = client.get(f"/api/markets/{market_id}/events", params={"since": 0}).json()
    seqs = [e["seq"] for e in events["events"]]
    assert seqs == list(range(1, len(seqs) + 1)) and events["oldest_seq"] == 1


def test_scenarios_and_uploaded_scenario(client):
    names = {s["name"] for s in client.get("/api/scenarios").json()}
    assert {"default", "interruptible"} <= names
    created = create(client, scenario_toml="name = \"tiny\"\nduration_days = 0.5\n",
                     overrides=['market.settlement="aep23"', "market.take_rate=0.1"])
    snapshot = client.get(f"/api/markets/{created['market_id']}").json()
    assert snapshot["scenario"] == "tiny" and snapshot["horizon_s"] == 43_200
    assert snapshot["take_rate"] == 0.1


@pytest.mark.parametrize(("body", "field"), [
    ({"scenario": "nope"}, "scenario"),
    ({"scenario_toml": "duration_days = -1"}, "scenario"),
    ({"scenario_toml": "base = \"/etc/passwd\""}, "scenario"),
    ({"scenario_toml": "not toml ["}, "scenario"),
    ({"overrides": ["market.take_rate=2"]}, "scenario"),
    ({"overrides": ["tenants.spikes.multiplier=1e300"]}, "tenants.spikes.multiplier"),
    # within every bound, but too large a run for a server: refused before it is built
    ({"overrides": ["tenants.arrivals_per_hour=50000", "duration_days=300"]},
     "tenants.arrivals_per_hour"),
    ({"speed": 0}, "speed"),
    ({"speed": 1e12}, "speed"),
    ({"seed": -1}, "seed"),
    ({"colour": "red"}, "colour"),
])
def test_bad_market_bodies_name_the_field(client, body, field):
    response = client.post("/api/markets", json=body, headers=operator(client))
    assert response.status_code == 422
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(
        ".".join(map(str, d["loc"])) for d in detail)
    assert field in text and "\n" not in str(detail)
    assert "--allow-large" not in str(detail)  # a CLI option: no use to an HTTP client
    assert client.get("/api/markets").json() == []  # nothing was created


def test_tenant_posts_provider_bids_tenant_accepts_and_closes(client):
    created = create(client, overrides=["market.order_max_bids=1000"])
    market_id = created["market_id"]
    # Paused, the clock stands still while commands still apply: no bid times out meanwhile.
    assert client.post(f"/api/markets/{market_id}/pause",
                       headers=auth(created["control_token"])).status_code == 200
    tenant = join(client, market_id, role="tenant", name="alice", wallet_usd=500)
    provider = join(client, market_id, role="provider", name="bob", gpu_model="h100", gpus=8)
    assert tenant["token"].startswith("gmp_") and provider["provider"] is not None
    posted = client.post(f"/api/markets/{market_id}/orders", headers=auth(tenant["token"]),
                         json={"gpu_models": ["h100"], "gpus": 2, "hours": 2,
                               "max_price_usd_per_gpu_hour": 4.0})
    assert posted.status_code == 201, posted.text
    order_id = posted.json()["result"]["order_id"]
    bid = client.post(f"/api/markets/{market_id}/orders/{order_id}/bids",
                      headers=auth(provider["token"]), json={"price_usd_per_gpu_hour": 1.25})
    assert bid.status_code == 201, bid.text
    bid_id = bid.json()["result"]["bid_id"]
    too_dear = client.post(f"/api/markets/{market_id}/orders/{order_id}/bids",
                           headers=auth(provider["token"]), json={"price_usd_per_gpu_hour": 9})
    assert too_dear.status_code == 409
    accepted = client.post(f"/api/markets/{market_id}/orders/{order_id}/accept",
                           headers=auth(tenant["token"]), json={"bid_id": bid_id})
    assert accepted.status_code == 200, accepted.text
    lease_id = accepted.json()["result"]["lease_id"]
    me = client.get(f"/api/markets/{market_id}/me", headers=auth(tenant["token"])).json()
    (lease,) = [le for le in me["active_leases"] if le["lease_id"] == lease_id]
    assert lease["provider"] == provider["provider"]
    assert lease["price_usd_per_gpu_hour"] == pytest.approx(1.25)
    closed = client.post(f"/api/markets/{market_id}/leases/{lease_id}/close",
                         headers=auth(tenant["token"]), json={"reopen": False})
    assert closed.status_code == 200 and closed.json()["result"]["reopened_order_id"] is None
    again = client.post(f"/api/markets/{market_id}/leases/{lease_id}/close",
                        headers=auth(tenant["token"]), json={})
    assert again.status_code == 409
    mine = client.get(f"/api/markets/{market_id}/me", headers=auth(provider["token"])).json()
    assert mine["provider_facts"]["gpu_model"] == "h100" and mine["wallet_usd"] > 0


def test_tokens_act_only_within_their_rights(client):
    first = create(client)
    other = create(client)
    market_id = first["market_id"]
    alice = join(client, market_id, role="tenant", name="alice")
    carol = join(client, market_id, role="tenant", name="carol")
    bob = join(client, market_id, role="provider", name="bob", gpu_model="h100")
    stranger = join(client, other["market_id"], role="tenant", name="eve")
    order = {"gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 2.0}
    url = f"/api/markets/{market_id}/orders"
    assert client.post(url, json=order).status_code == 401
    assert client.post(url, json=order, headers=auth("gmp_forged")).status_code == 401
    assert client.post(url, json=order, headers={"Authorization": "Basic x"}).status_code == 401
    assert client.post(url, json=order, headers=auth(bob["token"])).status_code == 403
    assert client.post(url, json=order, headers=auth(first["control_token"])).status_code == 403
    assert client.post(url, json=order, headers=auth(stranger["token"])).status_code == 403
    assert client.post("/api/markets/m-none/orders", json=order,
                       headers=auth(alice["token"])).status_code == 404
    order_id = client.post(url, json=order, headers=auth(alice["token"])).json()[
        "result"]["order_id"]
    cancel = f"{url}/{order_id}"
    assert client.delete(cancel, headers=auth(carol["token"])).status_code == 403
    assert client.delete(f"{url}/999999", headers=auth(alice["token"])).status_code == 404
    assert client.delete(cancel, headers=auth(alice["token"])).status_code == 200
    assert client.delete(cancel, headers=auth(alice["token"])).status_code == 409
    control = f"/api/markets/{market_id}/pause"
    assert client.post(control, headers=auth(alice["token"])).status_code == 403
    assert client.post(control, headers=auth(other["control_token"])).status_code == 403
    assert client.post(control).status_code == 401


def test_pause_resume_speed_and_stop(client):
    created = create(client)
    market_id, token = created["market_id"], created["control_token"]
    base = f"/api/markets/{market_id}"
    paused = client.post(f"{base}/pause", headers=auth(token)).json()
    assert paused["state"] == "paused"
    clock = client.get(base).json()["clock_s"]
    alice = join(client, market_id, role="tenant", name="alice")  # applied while paused
    assert client.get(base).json()["clock_s"] == clock
    assert alice["tenant"] is not None
    assert client.put(f"{base}/speed", headers=auth(token), json={"speed": 0}).status_code \
        == 422
    assert client.put(f"{base}/speed", headers=auth(token),
                      json={"speed": 5000}).json()["speed"] == 5000
    assert client.post(f"{base}/resume", headers=auth(token)).json()["state"] == "running"
    wait_for(lambda: client.get(base).json()["clock_s"] > clock, "the clock to move")
    stopped = client.post(f"{base}/stop", headers=auth(token)).json()
    assert stopped["state"] == "stopped"
    # Tokens end with their market: they no longer act, and say why.
    refused = client.post(f"{base}/orders", headers=auth(alice["token"]),
                          json={"gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 1.0})
    assert refused.status_code == 403 and "stopped" in refused.json()["detail"]
    assert client.post(f"{base}/resume", headers=auth(token)).status_code == 403
    # The operator is refused by the market itself: a stopped market does not resume.
    assert client.post(f"{base}/resume", headers=operator(client)).status_code == 409


@pytest.mark.parametrize(("body", "field"), [
    ({"max_price_usd_per_gpu_hour": 1.0}, "gpu_models"),
    ({"gpu_models": [], "max_price_usd_per_gpu_hour": 1.0}, "gpu_models"),
    ({"gpu_models": ["h100"], "max_price_usd_per_gpu_hour": -1}, "max_price_usd_per_gpu_hour"),
    ({"gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 1, "gpus": 0}, "gpus"),
    ({"gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 1, "hours": "long"}, "hours"),
    ({"gpu_models": ["h999"], "max_price_usd_per_gpu_hour": 1.0}, "gpu_models"),
])
def test_bad_orders_name_the_field_and_change_nothing(client, body, field):
    market_id = create(client)["market_id"]
    alice = join(client, market_id, role="tenant", name="alice")
    response = client.post(f"/api/markets/{market_id}/orders", json=body,
                           headers=auth(alice["token"]))
    assert response.status_code == 422
    assert field in str(response.json()["detail"]) + str(response.json().get("field"))
    me = client.get(f"/api/markets/{market_id}/me", headers=auth(alice["token"])).json()
    assert me["open_orders"] == [] and me["wallet_usd"] == 10_000


def test_bad_joins(client):
    market_id = create(client)["market_id"]
    url = f"/api/markets/{market_id}/participants"
    assert client.post(url, json={"role": "landlord", "name": "x"}).status_code == 422
    assert client.post(url, json={"role": "tenant", "name": ""}).status_code == 422
    assert client.post(url, json={"role": "tenant", "name": "<script>"}).status_code == 422
    bad_gpu = client.post(url, json={"role": "provider", "name": "p", "gpu_model": "h999"})
    assert bad_gpu.status_code == 422 and bad_gpu.json()["field"] == "gpu_model"
    assert client.post("/api/markets/m-none/participants",
                       json={"role": "tenant", "name": "x"}).status_code == 404
    assert client.get(f"/api/markets/{market_id}").json()["participants"] == []


def test_limits(make_client):
    client = make_client(max_markets=1, max_participants_per_market=1, rate_per_s=0.5,
                         rate_burst=3, max_message_bytes=2048)
    created = create(client)
    market_id = created["market_id"]
    full = client.post("/api/markets", json={}, headers=operator(client))
    assert full.status_code == 503 and "maximum" in full.json()["detail"]
    alice = join(client, market_id, role="tenant", name="alice")
    assert client.post(f"/api/markets/{market_id}/participants",
                       json={"role": "tenant", "name": "bob"}).status_code == 503
    big = client.post(f"/api/markets/{market_id}/orders",
                      headers={**auth(alice["token"]), "content-type": "application/json"},
                      content=b'{"gpu_models": ["' + b"x" * 4096 + b'"]}')
    assert big.status_code == 413
    statuses = [client.get(f"/api/markets/{market_id}/me", headers=auth(alice["token"]))
                for _ in range(4)]
    assert [s.status_code for s in statuses][:3] == [200, 200, 200]
    assert statuses[3].status_code == 429 and int(statuses[3].headers["Retry-After"]) >= 1
    # Another token has its own budget; the market went on serving.
    assert client.post(f"/api/markets/{market_id}/pause",
                       headers=auth(created["control_token"])).status_code == 200

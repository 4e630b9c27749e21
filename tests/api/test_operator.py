"""Who may do what, and how much: the operator creates and controls markets, participants
join (with the invite code when there is one), every request spends from budgets that
joining more participants cannot multiply, tokens end with their market, and ended markets
leave memory."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.live.driver import Limits
from api.live.server import create_app
from tests.api.test_server import wait_for

SPEED = 3000


@pytest.fixture
def make_client(tmp_path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(db: str = "sessions.db", trusted_proxies: tuple[str, ...] = (),
             **limits: Any) -> TestClient:
        client = TestClient(create_app(tmp_path / db, Limits(**limits),
                                       trusted_proxies=trusted_proxies))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def operator(client: TestClient) -> dict[str, str]:
    return auth(client.app.state.operator_token)


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/markets", json={"speed": SPEED, **body},
                           headers=operator(client))
    assert response.status_code == 201, response.text
    return response.json()


def join(client: TestClient, market_id: str, name: str, **extra: Any) -> httpx.Response:
    return client.post(f"/api/markets/{market_id}/participants",
                       json={"role": "tenant", "name": name, **extra})


def one_line(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    return detail


def test_creating_and_controlling_need_the_operator(make_client):
    client = make_client()
    anonymous = client.post("/api/markets", json={"speed": SPEED})
    assert anonymous.status_code == 401 and "operator token" in one_line(anonymous)
    assert client.get("/api/markets").json() == []  # nothing was created
    created = create(client)
    market_id, control = created["market_id"], created["control_token"]
    alice = join(client, market_id, "alice").json()
    refused = client.post("/api/markets", json={"speed": SPEED}, headers=auth(alice["token"]))
    assert refused.status_code == 403 and "operator token" in one_line(refused)
    base = f"/api/markets/{market_id}"
    for method, path, body in (("post", "pause", None), ("post", "resume", None),
                               ("put", "speed", {"speed": 10}), ("post", "stop", None)):
        assert client.request(method, f"{base}/{path}", json=body).status_code == 401
        assert client.request(method, f"{base}/{path}", json=body,
                              headers=auth(alice["token"])).status_code == 403
    # The operator controls any market; the market's own control token keeps working for it.
    assert client.post(f"{base}/pause", headers=operator(client)).json()["state"] == "paused"
    assert client.put(f"{base}/speed", json={"speed": 42},
                      headers=operator(client)).json()["speed"] == 42
    assert client.post(f"{base}/resume", headers=auth(control)).json()["state"] == "running"
    other = create(client)
    assert client.post(f"/api/markets/{other['market_id']}/pause",
                       headers=auth(control)).status_code == 403
    assert client.post(f"{base}/stop", headers=operator(client)).json()["state"] == "stopped"


def test_invite_codes_gate_joins_and_are_never_logged(make_client, tmp_path):
    client = make_client()
    market_id = create(client, invite_code="open-sesame")["market_id"]
    summary = client.get(f"/api/markets/{market_id}").json()
    assert summary["invite_required"] is True
    missing = join(client, market_id, "eve")
    assert missing.status_code == 403 and missing.json()["field"] == "invite_code"
    wrong = join(client, market_id, "eve", invite_code="open-sesamE")
    assert wrong.status_code == 403 and "wrong invite code" in one_line(wrong)
    assert join(client, market_id, "alice", invite_code="open-sesame").status_code == 201
    assert [p["name"] for p in client.get(f"/api/markets/{market_id}").json()[
        "participants"]] == ["alice"]
    bad = client.post("/api/markets", json={"invite_code": "a b"}, headers=operator(client))
    assert bad.status_code == 422
    open_market = create(client)["market_id"]
    assert join(client, open_market, "bob").status_code == 201
    client.__exit__(None, None, None)
    logged = b"".join(path.read_bytes() for path in tmp_path.glob("sessions.db*"))
    assert b'"alice"' in logged and b"open-sesame" not in logged
    # A market restarted from the log still asks for its code.
    again = make_client()
    assert join(again, market_id, "eve").status_code == 403
    assert join(again, market_id, "carol", invite_code="open-sesame").status_code == 201


def test_joins_beyond_the_address_budget_are_refused(make_client):
    client = make_client(join_rate_per_s=0.01, join_burst=3)
    market_id = create(client)["market_id"]
    statuses = [join(client, market_id, f"p{i}").status_code for i in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    refused = join(client, market_id, "late")
    assert int(refused.headers["Retry-After"]) >= 1 and "joins per client address" in \
        one_line(refused)
    # A forged X-Forwarded-For buys nothing: this peer is no trusted proxy.
    forged = client.post(f"/api/markets/{market_id}/participants",
                         json={"role": "tenant", "name": "forged"},
                         headers={"X-Forwarded-For": "203.0.113.9"})
    assert forged.status_code == 429
    assert len(client.get(f"/api/markets/{market_id}").json()["participants"]) == 3


def test_a_trusted_proxy_counts_each_client_and_the_market_has_its_own_budget(make_client):
    client = make_client(trusted_proxies=("testclient",), join_rate_per_s=0.01, join_burst=1,
                         market_join_rate_per_s=0.01, market_join_burst=3)
    market_id = create(client, invite_code="letmein")["market_id"]

    def join_from(address: str, code: str = "letmein") -> int:
        return client.post(f"/api/markets/{market_id}/participants", json={
            "role": "tenant", "name": f"from {address}", "invite_code": code},
            headers={"X-Forwarded-For": f"198.51.100.1, {address}"}).status_code

    assert join_from("192.0.2.1") == 201
    assert join_from("192.0.2.1") == 429          # that client's budget
    assert join_from("192.0.2.2", "guess") == 403  # a wrong code spends the client's budget,
    assert join_from("192.0.2.3") == 201          # not the market's
    assert join_from("192.0.2.4") == 201
    assert join_from("192.0.2.5") == 429          # the market's budget: 3 joins
    assert len(client.get(f"/api/markets/{market_id}").json()["participants"]) == 3


def test_more_participants_buy_no_more_requests(make_client):
    # Each token may make 5 requests; the address may make 12, whatever its tokens.
    client = make_client(rate_per_s=0.01, rate_burst=5, address_rate_per_s=0.01,
                         address_burst=12)
    market_id = create(client)["market_id"]
    tokens = [join(client, market_id, f"p{i}").json()["token"] for i in range(10)]
    served = 0
    for _ in range(5):
        for token in tokens:
            response = client.get(f"/api/markets/{market_id}/me", headers=auth(token))
            assert response.status_code in (200, 429)
            served += response.status_code == 200
    assert served <= 12
    refused = client.get(f"/api/markets/{market_id}/me", headers=auth(tokens[0]))
    assert refused.status_code == 429 and "client address" in one_line(refused)
    # Unknown tokens spend the same budget: guessing is no way around it.
    assert client.get(f"/api/markets/{market_id}/me",
                      headers=auth("gmp_guess")).status_code == 429


def test_creates_and_anonymous_requests_have_address_budgets(make_client):
    client = make_client(create_rate_per_s=0.001, create_burst=2, anonymous_rate_per_s=0.01,
                         anonymous_burst=5)
    create(client)
    create(client)
    third = client.post("/api/markets", json={}, headers=operator(client))
    assert third.status_code == 429 and "market creations" in one_line(third)
    statuses = [client.get("/api/markets").status_code for _ in range(6)]
    assert statuses.count(200) == 5 and statuses[-1] == 429


def test_tokens_end_with_their_market(make_client):
    client = make_client()
    created = create(client, overrides=["market.order_max_bids=1000"])
    market_id, control = created["market_id"], created["control_token"]
    base = f"/api/markets/{market_id}"
    alice = join(client, market_id, "alice").json()
    assert client.post(f"{base}/stop", headers=auth(control)).status_code == 200
    order = client.post(f"{base}/orders", headers=auth(alice["token"]), json={
        "gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 1.0})
    assert order.status_code == 403 and "no longer act" in one_line(order)
    assert client.put(f"{base}/speed", json={"speed": 5},
                      headers=auth(control)).status_code == 403
    with client.websocket_connect(f"{base}/stream", headers=auth(alice["token"])) as socket:
        refused = socket.receive_json()
        assert refused["type"] == "error" and refused["code"] == "forbidden"
    # Reading one's own final account still works until the market leaves memory.
    assert client.get(f"{base}/me", headers=auth(alice["token"])).status_code == 200


def test_ended_markets_are_evicted_and_then_gone(make_client):
    client = make_client(evict_after_s=0.2)
    created = create(client)
    market_id, control = created["market_id"], created["control_token"]
    alice = join(client, market_id, "alice").json()
    kept = create(client)["market_id"]
    hub = client.app.state.markets
    evicted = weakref.ref(hub.markets[market_id])
    with client.websocket_connect(f"/api/markets/{market_id}/stream") as watcher:
        assert watcher.receive_json()["type"] == "hello"
        client.post(f"/api/markets/{market_id}/stop", headers=auth(control))
        wait_for(lambda: market_id not in hub.markets, "the stopped market to be evicted")
        with pytest.raises(WebSocketDisconnect):  # its watchers are let go
            while True:
                watcher.receive_json()
    assert kept in hub.markets  # a running market stays
    gc.collect()
    assert evicted() is None  # nothing holds on to it: its memory is free
    gone = client.get(f"/api/markets/{market_id}")
    assert gone.status_code == 410 and "gpumarket replay" in one_line(gone)
    assert gone.json()["code"] == "gone"
    assert client.get(f"/api/markets/{market_id}/me",
                      headers=auth(alice["token"])).status_code == 410
    assert [m["market_id"] for m in client.get("/api/markets").json()] == [kept]
    assert client.get("/api/markets/m-none").status_code == 404  # unknown is still 404


def _serve(tmp_path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from api.cli.main import main; main()", "serve", "--host",
         "127.0.0.1", "--port", "0", "--db", str(tmp_path / "op.db"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**(env or {k: v for k, v in os.environ.items()
                        if k != "GPUMARKET_OPERATOR_TOKEN"}), "PYTHONUNBUFFERED": "1"})


def test_serve_prints_a_generated_operator_token_once(tmp_path):
    process = _serve(tmp_path)
    watchdog = threading.Timer(60, process.kill)  # a server that never prints fails the test
    watchdog.start()
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.fullmatch(r"operator page: (http://127\.0\.0\.1:\d+)/#operator=(gmo_\S+)\n",
                             line)
        assert found, line
        url, token = found.groups()
        response = httpx.post(f"{url}/api/markets", json={"speed": 10}, timeout=30,
                              headers=auth(token))
        assert response.status_code == 201, response.text
        assert httpx.post(f"{url}/api/markets", json={}, timeout=30).status_code == 401
    finally:
        watchdog.cancel()
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert token not in stderr  # printed once, on stdout only


def test_serve_refuses_a_weak_operator_token(tmp_path):
    process = _serve(tmp_path, "--operator-token", "short")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        "error: --operator-token: expected 16 to 256 printable characters without spaces"]


def test_the_server_answers_while_a_large_market_is_built(serve):
    """A market of 100,000 data centers takes seconds to build: it is built in a worker
    thread, and the server keeps answering within a second meanwhile."""
    server = serve()
    created: dict[str, httpx.Response] = {}

    def create() -> None:
        created["reply"] = httpx.post(
            f"{server.url}/api/markets", headers=server.operator, timeout=120,
            json={"overrides": ["providers.0.count=100000", "duration_days=0.2"],
                  "speed": 1})

    builder = threading.Thread(target=create)
    builder.start()
    slowest_s = 0.0
    while builder.is_alive():
        started = time.monotonic()
        assert httpx.get(f"{server.url}/api/health", timeout=5).status_code == 200
        slowest_s = max(slowest_s, time.monotonic() - started)
        builder.join(0.05)
    assert created["reply"].status_code == 201, created["reply"].text
    assert slowest_s < 1.0, f"/api/health took {slowest_s:.2f} s while the market was built"

"""What the server shows the network: the Host names it answers to, the pages that may open
its websockets, security headers on every answer, bodies that must arrive in time, and
websocket messages (pings too) that spend a budget."""

from __future__ import annotations

import json
import re
import socket
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.live.driver import Limits
from api.live.exposure import client_address, default_hosts
from api.live.server import FLOOD_MESSAGES, create_app

STATIC = Path(__file__).resolve().parents[2] / "api" / "live" / "static"


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "sessions.db", Limits(rate_per_s=1, rate_burst=5),
                               allowed_hosts=["testserver", "market.example.org"])) as client:
        yield client


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/markets", json={"speed": 600, **body},
                           headers={"Authorization": f"Bearer {client.app.state.operator_token}"})
    assert response.status_code == 201, response.text
    return response.json()


def test_other_host_names_are_refused_in_one_line(client):
    refused = client.get("/api/health", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    body = refused.json()
    assert body["code"] == "invalid_host" and body["field"] == "Host"
    assert "evil.example" in body["detail"] and "\n" not in body["detail"]
    assert client.get("/", headers={"Host": "evil.example:8000"}).status_code == 400
    assert client.get("/api/health", headers={"Host": "market.example.org:443"}).status_code \
        == 200


def test_default_hosts_follow_the_bind_address():
    assert set(default_hosts("127.0.0.1")) == {"127.0.0.1", "localhost", "::1"}
    assert default_hosts("192.0.2.10") == ["192.0.2.10"]
    assert "0.0.0.0" not in default_hosts("0.0.0.0")


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/health", "/api/markets/m-none",
                                  "/nowhere"])
def test_every_answer_carries_the_security_headers(client, path):
    response = client.get(path)
    headers = response.headers
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    if not path.startswith("/static/"):
        assert headers["Cache-Control"] == "no-store"
    refused = client.get(path, headers={"Host": "evil.example"})
    assert refused.headers["X-Frame-Options"] == "DENY"


class _Inline(HTMLParser):
    """What a `script-src 'self'; style-src 'self'` policy would block in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self._in_script = True
            if not (names.get("src") or "").startswith("/static/"):
                self.blocked.append("a script that is not one of the page's files")
        if tag == "style" or "style" in names:
            self.blocked.append(f"inline style on <{tag}>")
        if tag == "link" and not (names.get("href") or "").startswith(("/static/",
                                                                         "data:image/")):
            self.blocked.append(f"a link to {names.get('href')}")
        self.blocked += [f"{name} handler on <{tag}>" for name in names
                         if name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.blocked.append("an inline script")


def test_the_page_satisfies_its_content_security_policy():
    parser = _Inline()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.blocked == []
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/)|\beval\(|new Function|innerHTML\s*=|"
                             r"setAttribute\(\s*[\"']style", text), script.name


def test_a_websocket_from_another_origin_is_refused(client):
    market_id = create(client)["market_id"]
    url = f"/api/markets/{market_id}/stream"
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(
            url, headers={"Origin": "https://evil.example"}):
        pass
    assert refused.value.code == 1008
    with client.websocket_connect(url, headers={"Origin": "https://market.example.org"}) as ws:
        assert ws.receive_json()["type"] == "hello"
    # A page from elsewhere cannot make a visitor's browser join either.
    joined = client.post(f"/api/markets/{market_id}/participants",
                         json={"role": "tenant", "name": "x"},
                         headers={"Origin": "https://evil.example"})
    assert joined.status_code == 403 and joined.json()["field"] == "Origin"


def test_a_websocket_ping_flood_is_limited_then_cut_off(client):
    market_id = create(client)["market_id"]
    with client.websocket_connect(f"/api/markets/{market_id}/stream") as ws:
        assert ws.receive_json()["type"] == "hello"
        for n in range(200):
            ws.send_json({"type": "ping", "id": n})
        answered, limited = [], []
        with pytest.raises(WebSocketDisconnect) as cut:
            while True:
                frame = ws.receive_json()
                if frame["type"] == "reply":
                    answered.append(frame["id"])
                elif frame["type"] == "error":
                    assert frame["code"] == "rate_limited" and frame["retry_after_s"] > 0
                    limited.append(frame["id"])
    assert cut.value.code == 1008
    # The burst (5) is answered, a flood's worth refused, each by its id, and then the socket
    # is cut before the rest is even read.
    assert answered[:5] == [0, 1, 2, 3, 4] and len(answered) <= 7
    assert limited == sorted(limited) and not set(limited) & set(answered)
    assert len(limited) >= FLOOD_MESSAGES and len(answered) + len(limited) < 200


def test_a_body_that_dribbles_in_is_cut_off(serve):
    server = serve(None, "--body-timeout", "0.5")
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"POST /api/markets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"spe")
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = raw.recv(4096)
            if not chunk:
                break
            answer += chunk
        waited_s = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "timeout"
    assert waited_s < 5
    # Meanwhile, and after, the server serves everyone else.
    assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200


def test_serve_answers_only_its_host_names(serve):
    server = serve(None, "--allowed-host", "market.example.org")
    for name, status in (("127.0.0.1", 200), ("localhost", 200), ("market.example.org", 200),
                         ("evil.example", 400)):
        response = httpx.get(f"{server.url}/api/health", headers={"Host": name}, timeout=10)
        assert response.status_code == status, name


def test_forwarded_addresses_count_only_behind_a_trusted_proxy():
    scope = {"client": ("10.0.0.2", 5000), "headers": [
        (b"x-forwarded-for", b"6.6.6.6, 192.0.2.7"), (b"x-forwarded-for", b"10.0.0.3")]}
    assert client_address(scope, frozenset()) == "10.0.0.2"
    # The proxy (10.0.0.2) appended what it saw; what the client wrote before it is ignored.
    assert client_address(scope, frozenset({"10.0.0.2", "10.0.0.3"})) == "192.0.2.7"

"""Hostile JSON at a real server's edge (uvicorn on 127.0.0.1, in this process): NaN,
infinities, numbers that overflow, integers of thousands of digits, nests hundreds deep, values
of the wrong type, long strings, unknown and repeated keys, lone surrogates and text that is not
JSON, in the bodies of every command and in websocket messages.

Whatever arrives: no 5xx; every refusal is JSON that names the field, in one line; a websocket
gets one error frame and stays open; the server's log holds no traceback; /api/health answers
within 1 s between any two examples; and every order acknowledged (201, or a reply frame) is
still there when the app is restarted on the same session log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from api.live.driver import Limits
from api.live.edge import MAX_DEPTH, MAX_INT_DIGITS
from api.live.markets import LiveMarkets
from api.live.server import create_app

# Generous rate limits: the examples come faster than a client's budget allows.
LIMITS = Limits(rate_per_s=1e6, rate_burst=1_000_000, create_rate_per_s=1e6,
                create_burst=1_000_000, max_markets=64, max_participants_per_market=10_000)
WAIT_S = 10.0
HEALTH_S = 1.0  # the most /api/health may take between two examples, wall seconds


@dataclass
class Live:
    """The server under test, what the test made on it, and what it saw."""

    url: str
    app: Any
    db: Path
    market_id: str = ""
    tokens: dict[str, str] = field(default_factory=dict)   # operator, control, tenant, provider
    tenant: int = -1                                       # the tenant's market-wide id
    ids: dict[str, int] = field(default_factory=dict)      # order, bid, lease
    acknowledged: list[int] = field(default_factory=list)  # order ids answered 201 or ok
    health_s: list[float] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def stop(self) -> None:
        """Stop the server as SIGTERM would (the app's shutdown runs), bounded."""
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=30)
            assert not self.thread.is_alive(), "the server did not stop"


class _Tracebacks(logging.Handler):
    """Every log record that carries an exception, or is an error: a bug at the edge."""

    def __init__(self, found: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.found.append(self.format(record))


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("edge") / "sessions.db"
    app = create_app(db, LIMITS)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                           lifespan="on"))
    found: list[str] = []
    handler = _Tracebacks(found)
    logging.getLogger().addHandler(handler)
    thread = threading.Thread(target=server.run, name="edge server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    state = Live(f"http://127.0.0.1:{port}", app, db, tracebacks=found, server=server,
                 thread=thread)
    try:
        _set_up(state)
        yield state
    finally:
        state.stop()
        logging.getLogger().removeHandler(handler)


def _call(live: Live, method: str, path: str, body: Any = None, token: str | None = None,
          expect: int | None = None) -> httpx.Response:
    response = httpx.request(method, f"{live.url}{path}", json=body, headers=_auth(token),
                             timeout=WAIT_S)
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


def _set_up(live: Live) -> None:
    """A running market with a tenant and a provider, an open order with a bid, and a
    lease: real ids for the routes to meet."""
    operator = getattr(live.app.state, "operator_token", None)
    created = _call(live, "POST", "/api/markets", {
        "name": "edge", "speed": 300, "seed": 5, "overrides": ["duration_days=1"]},
        operator, 201).json()
    live.market_id = created["market_id"]
    live.tokens.update(operator=operator or "", control=created["control_token"])
    m = f"/api/markets/{live.market_id}"
    tenant = _call(live, "POST", f"{m}/participants",
                   {"role": "tenant", "name": "edge tenant", "wallet_usd": 1e6}, None, 201)
    provider = _call(live, "POST", f"{m}/participants",
                     {"role": "provider", "name": "edge provider", "gpu_model": "h100",
                      "gpus": 64}, None, 201)
    live.tokens.update(tenant=tenant.json()["token"], provider=provider.json()["token"])
    live.tenant = tenant.json()["tenant"]
    orders = [_post_order(live) for _ in range(2)]
    bids = [_call(live, "POST", f"{m}/orders/{order}/bids", {"price_usd_per_gpu_hour": 2.0},
                  live.tokens["provider"], 201).json()["result"]["bid_id"] for order in orders]
    lease = _call(live, "POST", f"{m}/orders/{orders[1]}/accept", {"bid_id": bids[1]},
                  live.tokens["tenant"], 200).json()["result"]["lease_id"]
    live.ids.update(order=orders[0], bid=bids[0], lease=lease)


def _post_order(live: Live, **body: Any) -> int:
    reply = _call(live, "POST", f"/api/markets/{live.market_id}/orders", {
        "gpus": 1, "gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 9.0, "hours": 1,
        **body}, live.tokens["tenant"], 201).json()
    live.acknowledged.append(reply["result"]["order_id"])
    return reply["result"]["order_id"]


# ---------------------------------------------------------------------- hostile documents

#: Number tokens no command can hold: not JSON, beyond floats, or integers too long.
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", "1E400", "2e308",
           "9" * (MAX_INT_DIGITS + 1), "-" + "9" * 60, "9" * 5000, "-" + "1" * 4400]
_MARK = "\x00hostile\x00"


def _deep(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth if kind == "array"
            else '{"a": ' * depth + "1" + "}" * depth)


@dataclass(frozen=True)
class Route:
    """A command route: its method, path (with ids to fill), token and a valid body."""

    method: str
    path: str
    token: str
    body: dict[str, Any]


M = "/api/markets/{market_id}"
ROUTES = {
    "create": Route("POST", "/api/markets", "operator",
                    {"name": "x", "seed": 1, "speed": 60, "overrides": ["duration_days=1"],
                     "scenario": "default"}),
    "speed": Route("PUT", f"{M}/speed", "control", {"speed": 300}),
    "join": Route("POST", f"{M}/participants", "",
                  {"role": "provider", "name": "p", "gpu_model": "h100", "gpus": 8,
                   "archetype": "datacenter", "wallet_usd": 1000.0}),
    "orders": Route("POST", f"{M}/orders", "tenant",
                    {"gpus": 1, "gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 9.0,
                     "hours": 1, "deposit_usd": 20, "auto_select": True,
                     "interruptible": False}),
    "bids": Route("POST", f"{M}/orders/{{order}}/bids", "provider",
                  {"price_usd_per_gpu_hour": 2.5}),
    "accept": Route("POST", f"{M}/orders/{{order}}/accept", "tenant", {"bid_id": 0}),
    "close": Route("POST", f"{M}/leases/{{lease}}/close", "tenant", {"reopen": False}),
}


def _wrong_type(value: Any) -> st.SearchStrategy[str]:
    """JSON text of a value of another type than `value`'s, that no strict reader takes for
    it (an integer where a float is expected is right, so it is not offered)."""
    options = ['{"a": 1}', "[1]"]
    if isinstance(value, bool):
        options += ["1", "0", '"true"']
    elif isinstance(value, int | float):
        options += [json.dumps(str(value)), "true", "false"]
    elif isinstance(value, str):
        options += ["1", "true"]
    elif isinstance(value, list):
        options += [json.dumps("h100"), "1"]
    return st.sampled_from(options)


@dataclass(frozen=True)
class Hostile:
    """A hostile document: its text, what is wrong with it, and the field a refusal must
    name (None: the document as a whole)."""

    text: str
    kind: str
    field: str | None


@st.composite
def hostile(draw: st.DrawFn, body: dict[str, Any], any_value: tuple[str, ...] = ()) -> Hostile:
    """`body` with one thing wrong; the keys in `any_value` (a websocket message's `id`) only
    get what no field takes."""
    kind = draw(st.sampled_from(["number", "deep", "wrong_type", "long", "unknown_key",
                                 "repeated_key", "surrogate", "not_json", "not_object"]),
                label="kind")
    if kind in ("not_json", "not_object", "repeated_key"):
        text = json.dumps(body)
        if kind == "not_json":  # a cut object: never JSON, never empty
            return Hostile(text[:draw(st.integers(1, len(text) - 1))], kind, None)
        if kind == "not_object":
            return Hostile(draw(st.sampled_from(["[]", "1", '"x"', "null", "true"])), kind,
                           None)
        key = draw(st.sampled_from(sorted(body)))
        return Hostile("{" + f"{json.dumps(key)}: {json.dumps(body[key])}, " + text[1:],
                       kind, None)
    keys = sorted(body) if kind in ("number", "deep", "surrogate") else \
        sorted(set(body) - set(any_value))
    key = draw(st.sampled_from([*keys, "unlisted"]))
    at: list[Any] = [key]
    if isinstance(body.get(key), list) and draw(st.booleans()):
        at.append(0)  # inside a list: gpu_models.0, overrides.0
    value = body.get(key)
    if kind == "number":
        token = draw(st.sampled_from(NUMBERS))
    elif kind == "deep":
        token = _deep(draw(st.integers(MAX_DEPTH + 1, 1000)),
                      draw(st.sampled_from(["array", "object"])))
    elif kind == "wrong_type":
        token = draw(_wrong_type(value[0] if len(at) > 1 else value))
    elif kind == "long":
        token = json.dumps(draw(st.sampled_from(["x", "9", "é", " "])) * draw(
            st.integers(201, 20_000)))
    elif kind == "surrogate":
        token = '"\\ud800"'
    else:  # unknown_key
        key, at = "unlisted", ["unlisted"]
        token = draw(st.sampled_from(["1", '"x"', "null"]))
    document = dict(body)
    if len(at) == 1:
        document[key] = _MARK
    else:
        document[key] = [_MARK, *body[key][1:]]
    text = json.dumps(document).replace(json.dumps(_MARK), token)
    return Hostile(text, kind, ".".join(str(part) for part in at))


# ---------------------------------------------------------------------- checks

def _strict_json(text: str) -> Any:
    """`text` as JSON that any parser reads alike: no NaN or Infinity."""
    def refuse(name: str) -> None:
        raise AssertionError(f"the answer holds {name}: {text[:200]}")
    return json.loads(text, parse_constant=refuse)


def _names(answer: Any) -> list[str]:
    """The field a 422 body names (every 4xx is a Problem: one line, a code, a field)."""
    detail = answer["detail"]
    assert isinstance(detail, str) and "\n" not in detail, answer
    return [answer["field"]] if answer.get("field") else []


def _healthy(live: Live) -> None:
    """/api/health answers, and within HEALTH_S."""
    started = time.monotonic()
    response = httpx.get(f"{live.url}/api/health", timeout=WAIT_S)
    elapsed = time.monotonic() - started
    live.health_s.append(elapsed)
    assert response.status_code == 200 and response.json()["ok"] is True
    assert elapsed < HEALTH_S, f"/api/health took {elapsed:.3f} s"


def _names_the_place(names: list[str], document: Hostile, whole: str) -> bool:
    """Whether a refusal naming `names` names where `document` is wrong. A nest too deep for
    the parser's stack is refused as a whole; a bad `role` or `type` (what says which command
    it is) is refused as a body that is no command."""
    named = document.field
    if named is None or named in ("role", "type"):
        return True
    if document.kind == "deep" and whole in names:
        return True
    return any(name == named or name.startswith(f"{named}.") for name in names)


def _refused_where(answer_text: str, status: int, size: int, document: Hostile) -> None:
    if size > LIMITS.max_message_bytes:
        assert status == 413, answer_text
        return
    assert status == 422, answer_text
    answer = _strict_json(answer_text)
    names = _names(answer)
    assert names and all(names), answer  # it names a field
    assert _names_the_place(names, document, "body"), (document.field, answer)


# ---------------------------------------------------------------------- tests

UNHURRIED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=120, deadline=None, suppress_health_check=UNHURRIED)
@given(data=st.data())
def test_hostile_bodies_are_refused_naming_the_field(live: Live, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(ROUTES)), label="route")
    route = ROUTES[name]
    path = route.path.format(market_id=live.market_id, order=live.ids["order"],
                             lease=live.ids["lease"])
    if data.draw(st.integers(0, 4), label="valid order first") == 0:
        _post_order(live)  # valid orders among the hostile ones: acknowledged, kept
    document = data.draw(hostile(route.body), label="document")
    raw = document.text.encode()
    response = httpx.request(route.method, f"{live.url}{path}", content=raw,
                             headers={"Content-Type": "application/json",
                                      **_auth(live.tokens.get(route.token))},
                             timeout=WAIT_S)
    _refused_where(response.text, response.status_code, len(raw), document)
    _healthy(live)


@pytest.fixture(scope="module")
def socket(live: Live) -> Iterator[ClientConnection]:
    with connect(f"{live.ws_url}/api/markets/{live.market_id}/stream",
                 open_timeout=WAIT_S, max_size=None) as ws:
        ws.send(json.dumps({"type": "auth", "id": "auth", "token": live.tokens["tenant"]}))
        _until(ws, "auth")
        yield ws


def _until(ws: ClientConnection, request_id: str) -> list[dict[str, Any]]:
    """The reply and error frames up to the one answering `request_id` (bounded wait)."""
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_S
    while True:
        frame = _strict_json(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if frame["type"] in ("reply", "error"):
            answers.append(frame)
            if frame.get("id") == request_id:
                return answers


COMMANDS = {  # websocket commands with valid fields (the ids are filled in)
    "post_order": {"gpus": 1, "gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 9.0,
                   "hours": 1, "auto_select": True},
    "bid": {"order_id": 0, "price_usd_per_gpu_hour": 2.5},
    "accept": {"order_id": 0, "bid_id": 0},
    "close_lease": {"lease_id": 0, "reopen": False},
    "cancel_order": {"order_id": 0},
}


@settings(max_examples=80, deadline=None, suppress_health_check=UNHURRIED)
@given(data=st.data())
def test_hostile_messages_get_one_error_frame_and_the_socket_goes_on(
        live: Live, socket: ClientConnection, data: st.DataObject) -> None:
    n = len(live.health_s)
    kind = data.draw(st.sampled_from(sorted(COMMANDS)), label="type")
    body = {"type": kind, "id": n, **COMMANDS[kind]}
    for key in ("order_id", "lease_id", "bid_id"):
        if key in body:
            body[key] = live.ids[key.removesuffix("_id")]
    if data.draw(st.integers(0, 4), label="valid order first") == 0:
        order = {"type": "post_order", "id": f"order {n}", **COMMANDS["post_order"]}
        socket.send(json.dumps(order))
        (reply,) = _until(socket, f"order {n}")
        assert reply["type"] == "reply" and reply["ok"] is True, reply
        live.acknowledged.append(reply["result"]["order_id"])
    document = data.draw(hostile(body, any_value=("id",)), label="message")
    socket.send(document.text)
    socket.send(json.dumps({"type": "ping", "id": f"ping {n}"}))
    answers = _until(socket, f"ping {n}")
    errors = [a for a in answers if a["type"] == "error"]
    assert len(errors) == 1 and answers[-1]["type"] == "reply", answers  # the socket goes on
    (error,) = errors
    assert error["code"] in ("invalid", "too_large") and error["field"], error
    assert "\n" not in error["message"], error
    if error["code"] == "invalid":
        assert _names_the_place([error["field"]], document, "message"), (document.field, error)
    _healthy(live)


@pytest.mark.parametrize("scenario", [
    {"scenario_toml": "seed = " + "9" * 5000},
    {"scenario_toml": "duration_days = " + "9" * 400 + ".0"},
    {"scenario_toml": "[market]\ntake_rate = nan"},
    {"overrides": ["seed=" + "9" * 190]},
    {"overrides": ["duration_days=inf"]},
], ids=["5000-digit integer", "float beyond the largest", "nan", "190-digit override",
        "inf override"])
def test_numbers_inside_a_scenario_are_refused_too(live: Live, scenario: dict[str, Any]
                                                   ) -> None:
    """The JSON is fine, the scenario text in it is not: still a 422 in one line, naming a
    field, and no market made."""
    markets = len(_call(live, "GET", "/api/markets", expect=200).json())
    response = _call(live, "POST", "/api/markets", {"name": "scenario", **scenario},
                     live.tokens["operator"] or None)
    assert response.status_code == 422, response.text
    answer = _strict_json(response.text)
    assert _names(answer) and "\n" not in answer["detail"], answer
    assert len(_call(live, "GET", "/api/markets", expect=200).json()) == markets
    _healthy(live)


def test_after_the_fuzzing_no_traceback_health_was_prompt_and_acknowledged_orders_survive(
        live: Live, socket: ClientConnection) -> None:
    """Last in this file: the server logged no traceback, answered /api/health within 1 s
    throughout, and, restarted on the same session log, has every acknowledged order."""
    assert len(live.health_s) >= 100, "the fuzz tests did not run"
    assert httpx.get(f"{live.url}/api/markets/{live.market_id}", timeout=WAIT_S).json()[
        "state"] == "running"
    socket.close()
    live.stop()
    assert not live.tracebacks, "\n".join(live.tracebacks[:3])
    assert max(live.health_s) < HEALTH_S

    async def recovered() -> list[int]:
        markets = LiveMarkets(live.db, LIMITS)
        try:
            assert live.market_id in markets.recover()
            session = markets.get(live.market_id).session
            return [session.order_tenant[order_id] for order_id in live.acknowledged]
        finally:
            await markets.shutdown()

    owners = asyncio.run(recovered())
    assert owners == [live.tenant] * len(live.acknowledged)
    assert len(live.acknowledged) >= 10

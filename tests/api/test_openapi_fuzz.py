"""Fuzz the REST API against its own OpenAPI document (schemathesis): whatever a client sends,
the server answers below 500, with a status code the document declares for the route, the
declared content type, and a body that matches the declared model. The document is the API's
contract (the /docs page shows it, clients are written to it): an answer outside it is a bug
even when it is a 4xx.

The checks include schemathesis's negative-data rejection: a request the document says is
invalid (a string where it says integer, `true` where it says number, a key it does not list)
is never accepted. A second test sends what JSON parsers disagree on or cannot hold (NaN,
Infinity, 1e309, a 5,000-digit integer, nesting 40 deep) in every position of every route's
body, path and query: each is a 422 naming where it was, in a body the document declares.

Random input alone mostly stops at the door (an unknown market is a 404, a missing token a 401)
and would leave the handlers untested. So every generated request to a market's route is sent
twice: once as it was generated, and once aimed at real state with the token of the role the
route needs, ids that exist and GPU models from the catalog. That
state is a paused market (its clock stands still, so what a request meets depends only on the
requests before it) with a tenant and a provider, open orders, a bid and a lease, plus a
running market for the clock controls and one to stop; they are made through the API itself,
and every answer on the way is checked like the fuzzer's.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from api.live.commands import CommandError
from api.live.driver import Limits
from api.live.edge import field_name, read_json
from api.live.server import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# For requests sent as generated. A request aimed at real state has its ids, GPU models and
# token replaced, which can make an invalid request valid: `refuses_if_invalid` checks those.
GENERATED_CHECKS = [*CHECKS, negative_data_rejection]
# What counts as refusing a request: schemathesis's list, and 413 for a body over the limit.
REFUSED = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
# Generous, so that the fuzzer meets the handlers rather than the limits (test_server checks
# those); the speed cap is low so that a market the fuzzer speeds up stays cheap to replay.
LIMITS = Limits(max_markets=64, max_participants_per_market=100_000, rate_per_s=1e6,
                rate_burst=1_000_000, max_speed=600.0)
# The setup's orders take any bid the body's type allows: a provider bids once on an order, so
# each order can take one of the fuzzer's bids, whatever its price.
MAX_PRICE = 999_999.0
# A command that never got its answer would hang the test; with this, it fails it.
TIMEOUT_S = 20.0

# The document as the app serves it at /openapi.json. Serving it runs no lifespan, so no session
# log is opened; it is read at import because the tests are parametrized by its operations.
DOCUMENT = TestClient(create_app("never-opened.db")).get("/openapi.json").json()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSED}}}))
# Requests the document allows, for the test that puts one hostile value in each: the value
# is then the only thing wrong, and the answer must name it.
valid = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict(
    {"generation": {"mode": "positive"}}))

# Where a request aimed at real state goes (the trading market unless named here), and with
# whose token (one of them, the same for the same request; routes not named take none).
M = "/api/markets/{market_id}"
MARKET = {f"POST {M}/pause": "clock", f"POST {M}/resume": "clock", f"PUT {M}/speed": "clock",
          f"POST {M}/stop": "doomed"}
ROLE = {f"POST {M}/pause": ("clock",), f"POST {M}/resume": ("clock",),
        f"PUT {M}/speed": ("clock",), f"POST {M}/stop": ("doomed",),
        f"GET {M}/me": ("tenant", "provider"), f"POST {M}/orders": ("tenant",),
        f"DELETE {M}/orders/{{order_id}}": ("canceller",),
        f"POST {M}/orders/{{order_id}}/bids": ("provider",),
        f"POST {M}/orders/{{order_id}}/accept": ("tenant",),
        f"POST {M}/orders/{{order_id}}/hold": ("tenant",),
        f"POST {M}/orders/{{order_id}}/release": ("tenant",),
        f"POST {M}/leases/{{lease_id}}/close": ("tenant",)}


@dataclass
class World:
    """The app under test and the real state requests are aimed at."""

    app: FastAPI
    markets: dict[str, str]             # trade / clock / doomed -> market id
    tokens: dict[str, str]              # role (tenant, provider, ...) or market -> token
    ids: dict[str, dict[str, list[int]]]  # route -> field -> ids that exist
    gpu_models: list[str]


# Status codes of the requests aimed at real state, by operation: the last test reads them.
REACHED: dict[str, Counter[int]] = defaultdict(Counter)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def operator(app: FastAPI) -> str | None:
    """The token that creates markets, on servers that have one."""
    return getattr(app.state, "operator_token", None)


def send(app: FastAPI, method: str, path: str, expect: int, token: str | None = None,
         **parts: Any) -> dict[str, Any]:
    """Send one request the test composed, check it like a generated one, and return its
    body."""
    if token is None and (method, path) == ("POST", "/api/markets"):
        token = operator(app)
    case = schema[path][method].Case(headers=auth(token) if token else None, **parts)
    response = case.call_and_validate(app=app, checks=CHECKS, timeout=TIMEOUT_S)
    assert response.status_code == expect, response.text
    return response.json()


def new_market(app: FastAPI, name: str, **body: Any) -> tuple[str, str]:
    created = send(app, "POST", "/api/markets", 201, body={"name": name, **body})
    return created["market_id"], created["control_token"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    # Schemathesis runs the app's lifespan for the requests of one test and ends it after; the
    # next test's first request starts it again, and the markets come back from the session
    # log with their tokens. So this state outlives the tests, as a restarted server's does.
    app = create_app(tmp_path_factory.mktemp("fuzz") / "sessions.db", LIMITS)
    trade, control = new_market(app, "trade", overrides=["duration_days=1",
                                                         "market.order_max_bids=100000"])
    send(app, "POST", "/api/markets/{market_id}/pause", 200, control,
         path_parameters={"market_id": trade})
    clock, clock_token = new_market(app, "clock")
    doomed, doomed_token = new_market(app, "doomed")

    def trade_send(method: str, path: str, expect: int, token: str | None = None,
                   **parts: Any) -> dict[str, Any]:
        parameters = {"market_id": trade, **parts.pop("path_parameters", {})}
        return send(app, method, path, expect, token, path_parameters=parameters, **parts)

    gpu_models = [m["id"] for m in trade_send("GET", "/api/markets/{market_id}", 200)[
        "gpu_models"]]
    tenant = trade_send("POST", "/api/markets/{market_id}/participants", 201, body={
        "role": "tenant", "name": "fuzz tenant", "wallet_usd": 1e9})["token"]
    # Cancelling is done by a tenant of its own: an id the fuzzer makes up then cancels no
    # order that a later route needs.
    canceller = trade_send("POST", "/api/markets/{market_id}/participants", 201, body={
        "role": "tenant", "name": "fuzz canceller", "wallet_usd": 1e9})["token"]
    provider = trade_send("POST", "/api/markets/{market_id}/participants", 201, body={
        "role": "provider", "name": "fuzz provider", "gpu_model": "h100", "gpus": 1024})["token"]

    def post_order(token: str = tenant) -> int:
        reply = trade_send("POST", "/api/markets/{market_id}/orders", 201, token, body={
            "gpu_models": ["h100"], "gpus": 1, "hours": 1,
            "max_price_usd_per_gpu_hour": MAX_PRICE})
        return reply["result"]["order_id"]

    def place_bid(order_id: int) -> int:
        reply = trade_send("POST", "/api/markets/{market_id}/orders/{order_id}/bids", 201,
                           provider, path_parameters={"order_id": order_id},
                           body={"price_usd_per_gpu_hour": 2.5})
        return reply["result"]["bid_id"]

    # Each route gets orders of its own, or the routes before it in the document would have
    # cancelled or filled them all before it runs.
    to_cancel = post_order(canceller)
    to_bid = [post_order(), post_order()]
    to_accept, to_lease, to_hold = post_order(), post_order(), post_order()
    bid = place_bid(to_accept)
    accepted = trade_send("POST", "/api/markets/{market_id}/orders/{order_id}/accept", 200,
                          tenant, path_parameters={"order_id": to_lease},
                          body={"bid_id": place_bid(to_lease)})
    ids = {f"DELETE {M}/orders/{{order_id}}": {"order_id": [to_cancel]},
           f"POST {M}/orders/{{order_id}}/bids": {"order_id": [*to_bid, to_accept]},
           f"POST {M}/orders/{{order_id}}/accept": {"order_id": [to_accept], "bid_id": [bid]},
           f"POST {M}/orders/{{order_id}}/hold": {"order_id": [to_hold]},
           f"POST {M}/orders/{{order_id}}/release": {"order_id": [to_hold]},
           f"POST {M}/leases/{{lease_id}}/close": {"lease_id": [
               accepted["result"]["lease_id"]]}}
    return World(app, {"trade": trade, "clock": clock, "doomed": doomed},
                 {"tenant": tenant, "canceller": canceller, "provider": provider,
                  "clock": clock_token, "doomed": doomed_token}, ids, gpu_models)


def stable_choice(case: schemathesis.Case, options: Sequence[Any]) -> Any:
    """One of `options`, always the same for the same request (Hypothesis replays a failing
    example and must meet the same choice again)."""
    body = case.body if isinstance(case.body, dict | list | str | int | float | bool) else None
    key = json.dumps([case.path_parameters, case.query, body], sort_keys=True, default=str)
    return options[zlib.crc32(key.encode()) % len(options)]


def aimed_at_real_state(case: schemathesis.Case, world: World) -> schemathesis.Case:
    """`case` with a real market, the token its route needs, ids that exist (or the generated
    one, which mostly does not) and GPU models from the catalog; the rest as generated."""
    route = case.operation.label
    real = case.derive()
    if "market_id" in real.path_parameters:
        real.path_parameters["market_id"] = world.markets[MARKET.get(route, "trade")]
    if route in ROLE:
        real.headers.update(auth(world.tokens[stable_choice(case, ROLE[route])]))
    elif route == "POST /api/markets" and operator(world.app):
        real.headers.update(auth(operator(world.app)))  # type: ignore[arg-type]
    known = world.ids.get(route, {})
    for name in ("order_id", "lease_id"):
        generated = real.path_parameters.get(name)
        if name in known and isinstance(generated, int):
            real.path_parameters[name] = stable_choice(case, [*known[name], generated])
    if isinstance(real.body, dict):
        body = real.body
        if "bid_id" in known and isinstance(body.get("bid_id"), int):
            body["bid_id"] = stable_choice(case, [*known["bid_id"], body["bid_id"]])
        if isinstance(body.get("gpu_model"), str):
            body["gpu_model"] = stable_choice(case, world.gpu_models)
        if isinstance(body.get("gpu_models"), list) and body["gpu_models"]:
            body["gpu_models"] = [stable_choice(case, world.gpu_models)]
    return real


def stop_if_created(world: World, case: schemathesis.Case, response: Any) -> None:
    """Stop every market the fuzzer makes: live ones would run, and be replayed at every
    restart, for the rest of the module. This also stops markets with their own token."""
    if response.status_code == 201 and case.operation.path == "/api/markets":
        created = response.json()
        stopped = send(world.app, "POST", "/api/markets/{market_id}/stop", 200,
                       created["control_token"],
                       path_parameters={"market_id": created["market_id"]})
        assert stopped["state"] == "stopped"


_BODY_SCHEMAS: dict[str, Any] = {}


def refuses_if_invalid(case: schemathesis.Case, response: Any) -> None:
    """A request aimed at real state whose body still breaks the document's schema (a string
    where it says integer, `true` where it says number, a key it does not list) is refused:
    types are strict, as the document says."""
    body = case.body
    if not isinstance(body, dict | list | str | int | float | bool):
        return
    label = case.operation.label
    if label not in _BODY_SCHEMAS:
        declared = case.operation.get_body_for_media_type("application/json")
        _BODY_SCHEMAS[label] = None if declared is None else jsonschema_rs.validator_for(
            declared.validation_schema)
    validator = _BODY_SCHEMAS[label]
    if validator is not None and not validator.is_valid(body):
        assert response.status_code in REFUSED, \
            f"{label}: accepted a body the document refuses: {body!r} -> {response.text}"


@settings(max_examples=25, deadline=None)
@schema.parametrize()
def test_answers_conform_to_the_openapi_document(case: schemathesis.Case, world: World) -> None:
    response = case.call_and_validate(app=world.app, checks=GENERATED_CHECKS,
                                      timeout=TIMEOUT_S)
    if case.method.upper() != case.operation.method.upper():
        return  # a probe with a method the route does not take: 405 wherever it is aimed
    stop_if_created(world, case, response)
    creates = case.operation.label == "POST /api/markets" and operator(world.app) is not None
    if "market_id" in case.path_parameters or creates:
        real = aimed_at_real_state(case, world)
        answer = real.call_and_validate(app=world.app, checks=CHECKS, timeout=TIMEOUT_S)
        refuses_if_invalid(real, answer)
        stop_if_created(world, real, answer)
        REACHED[case.operation.label][answer.status_code] += 1


#: JSON numbers that parsers disagree on or cannot hold, and a nest deeper than any command:
#: raw text put in a body, where each must be a 422 naming its place.
HOSTILE_JSON = ["NaN", "Infinity", "-Infinity", "1e309", "-1e400", "9" * 5000, "-" + "9" * 31,
                "[" * 40 + "]" * 40]
#: The same, and what a lax reader would take for an integer, as path or query text.
HOSTILE_TEXT = ["1e309", "NaN", "Infinity", "9" * 5000, "1.5", "true", "0x10", "1_000"]
#: The routes that take a body, or numbers in their path or query.
HOSTILE_ROUTES = ["POST /api/markets", f"PUT {M}/speed", f"POST {M}/participants",
                  f"POST {M}/orders", f"DELETE {M}/orders/{{order_id}}",
                  f"POST {M}/orders/{{order_id}}/bids", f"POST {M}/orders/{{order_id}}/accept",
                  f"POST {M}/leases/{{lease_id}}/close", f"GET {M}/events"]
_MARK = "\x00hostile\x00"


def places(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a JSON document a value can go: each value, and a new key of each
    object."""
    found = [path]
    if isinstance(value, dict):
        found.append((*path, "unlisted"))
        for key, child in value.items():
            found.extend(places(child, (*path, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(places(child, (*path, index)))
    return found


def put(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A copy of `document` with `value` at `path`."""
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    head, rest = path[0], path[1:]
    copy[head] = put(copy[head], rest, value) if rest else value  # type: ignore[index]
    return copy


@settings(max_examples=15, deadline=None)
@valid.include(name=HOSTILE_ROUTES).parametrize()
@valid.given(data=st.data())
def test_hostile_numbers_are_refused_where_they_are(case: schemathesis.Case, data: Any,
                                                    world: World) -> None:
    """NaN, infinities, 1e309, huge integers and deep nests, in any place of any body, path
    or query: a 422 the document declares, that says where (never a 500 or an error body
    that cannot be written, as when the body echoed the NaN back)."""
    if case.method.upper() != case.operation.method.upper():
        return
    real = aimed_at_real_state(case, world)
    real.query = {}  # parameters the generator added would be refused first, as unknown
    body = real.body if isinstance(real.body, dict | list) else None
    if body is None and case.operation.get_body_for_media_type("application/json"):
        body = {}  # a body left out (CreateMarket's fields all have defaults): send one
    params = [("path", name) for name in ("order_id", "lease_id")
              if name in real.path_parameters]
    params += [("query", parameter.name) for parameter in case.operation.query]
    targets = [("body", place) for place in places(body)] if body is not None else []
    if not targets and not params:
        return  # a route whose path ids the generator left out: nothing hostile to put
    target = data.draw(st.sampled_from([*targets, *params]), label="target")
    if target[0] == "body":
        place = target[1]
        token = data.draw(st.sampled_from(HOSTILE_JSON), label="token")
        raw = json.dumps(put(body, place, _MARK)).replace(json.dumps(_MARK), token)
        response = real.call_and_validate(app=world.app, checks=CHECKS, timeout=TIMEOUT_S,
                                          data=raw.encode())
        if len(raw.encode()) > LIMITS.max_message_bytes:
            assert response.status_code == 413, response.text  # the limit comes first
            return
        assert response.status_code == 422, response.text
        refused = response.json()
        assert refused["code"] == "invalid"
        try:  # the rest of the body is clean: the hostile value is what the answer names
            read_json(json.dumps(put(body, place, 0)), "body")
        except CommandError:
            return
        if token.startswith("["):
            assert "nested deeper than" in refused["detail"], refused
        else:
            assert refused["field"] == (field_name(place) or "body"), refused
        return
    where, name = target
    token = data.draw(st.sampled_from(HOSTILE_TEXT), label="token")
    (real.path_parameters if where == "path" else real.query)[name] = token
    response = real.call_and_validate(app=world.app, checks=CHECKS, timeout=TIMEOUT_S)
    assert response.status_code == 422, response.text
    refused = response.json()
    # Refused by the edge's reading of parameters or by the route's declared type, alike.
    assert refused["code"] == "invalid" and refused["field"] == name, refused


def test_requests_aimed_at_real_state_reached_the_handlers() -> None:
    """Each route answered a request aimed at real state with a success at least once: the
    fuzzer got past the tokens and the ids into the routes' own code."""
    if not REACHED:
        pytest.skip("the fuzz test did not run in this session")
    operations = [op.ok().label for op in schema.get_all_operations()
                  if "{market_id}" in op.ok().path]
    missed = {label: dict(REACHED[label]) for label in operations
              if not any(200 <= status < 300 for status in REACHED[label])}
    assert not missed, f"no success aimed at real state: {missed}"


def test_bodies_that_cannot_be_read_get_declared_answers(tmp_path: Path) -> None:
    """FastAPI answers a body it cannot read with a 400 that no route declares. Not UTF-8 (the
    fuzzer's find), it is a bad body like any other; streamed without a length past the limit
    (which the fuzzer, always sending a length, does not try), it is the 413 the limit gives."""
    case = schema["/api/markets"]["POST"].Case(body={})

    def streamed():  # no Content-Length: the limit can only count what arrives
        yield b'{"name": "'
        yield b"x" * 2048
        yield b'"}'

    json_body = {"content-type": "application/json"}
    with TestClient(create_app(tmp_path / "sessions.db", Limits(max_message_bytes=1024))) as client:
        latin1 = client.post("/api/markets", headers=json_body, content='{"name": "é"}'.encode(
            "latin-1"))
        too_large = client.post("/api/markets", headers=json_body, content=streamed())
        assert client.get("/api/markets").json() == []  # nothing was created
    assert latin1.status_code == 422 and latin1.json()["field"] == "body"
    assert too_large.status_code == 413 and too_large.json()["code"] == "too_large"
    for response in (latin1, too_large):
        case.validate_response(response, checks=CHECKS)

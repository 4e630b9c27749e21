"""Every 4xx answer has the documented shape, `{"detail": one line, "code", "field"}`: FastAPI's
request-validation errors (a negative price, `gpus: 0`, an unknown key, a string for a
number), a body that is not JSON, an unknown route, a method a route does not take, a body too
large, a rate exceeded, a wrong Host, a missing token; and the OpenAPI document declares that
shape, and no other, for every 4xx of every route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.live.driver import Limits
from api.live.server import create_app

ORDER = {"gpus": 1, "gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 5.0, "hours": 1.0,
         "deposit_usd": 100.0}


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    with TestClient(create_app(tmp_path / "sessions.db", Limits(max_message_bytes=4096))) as c:
        yield c


@pytest.fixture
def market(client) -> dict[str, Any]:
    """A paused market (nothing moves while the test looks) with a tenant, a provider and an
    open order of the tenant's."""
    headers = {"Authorization": f"Bearer {client.app.state.operator_token}"}
    created = client.post("/api/markets", json={"speed": 1}, headers=headers).json()
    market_id = created["market_id"]
    assert client.post(f"/api/markets/{market_id}/pause", headers=headers).status_code == 200
    path = f"/api/markets/{market_id}"
    tenant = client.post(f"{path}/participants", json={
        "role": "tenant", "name": "t", "wallet_usd": 1000.0}).json()["token"]
    provider = client.post(f"{path}/participants", json={
        "role": "provider", "name": "p", "gpu_model": "h100", "gpus": 8}).json()["token"]
    posted = client.post(f"{path}/orders", json=ORDER,
                         headers={"Authorization": f"Bearer {tenant}"})
    assert posted.status_code == 201, posted.text
    return {"path": path, "tenant": {"Authorization": f"Bearer {tenant}"},
            "provider": {"Authorization": f"Bearer {provider}"},
            "order": posted.json()["result"]["order_id"]}


def problem(response: Any, status: int, code: str, field: str | None) -> str:
    """Check `response` is a `status` with the documented body; its detail line."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail", "code", "field"}, body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert "\n" not in body["detail"] and len(body["detail"]) <= 400, body
    assert (body["code"], body["field"]) == (code, field), body
    return body["detail"]


@pytest.mark.parametrize(("body", "field", "says"), [
    ({**ORDER, "gpus": 0}, "gpus", "greater than or equal to 1"),
    ({**ORDER, "max_price_usd_per_gpu_hour": -1.0}, "max_price_usd_per_gpu_hour", "greater"),
    ({**ORDER, "gpus": "1"}, "gpus", "integer"),
    ({**ORDER, "gpus": 1.5}, "gpus", "integer"),
    ({**ORDER, "colour": "red"}, "colour", "Extra inputs are not permitted"),
    ({**ORDER, "gpu_models": ["h100", 7]}, "gpu_models.1", "string"),
    ({key: value for key, value in ORDER.items() if key != "gpu_models"}, "gpu_models",
     "required"),
])
def test_an_order_the_declared_types_refuse_is_one_line_naming_the_field(
        client, market, body, field, says):
    detail = problem(client.post(f"{market['path']}/orders", json=body,
                                 headers=market["tenant"]), 422, "invalid", field)
    assert detail.startswith(f"{field}: ") and says in detail, detail
    mine = client.get(f"{market['path']}/me", headers=market["tenant"]).json()
    assert len(mine["open_orders"]) == 1  # nothing was posted


def test_a_negative_bid_names_the_price(client, market):
    detail = problem(client.post(f"{market['path']}/orders/{market['order']}/bids",
                                 json={"price_usd_per_gpu_hour": -0.5},
                                 headers=market["provider"]),
                     422, "invalid", "price_usd_per_gpu_hour")
    assert "-0.5" not in detail  # refusals do not echo the input


def test_several_bad_fields_are_counted_and_named_after_the_first(client, market):
    detail = problem(client.post(f"{market['path']}/orders", json={
        **ORDER, "gpus": 0, "hours": -1, "colour": 1}, headers=market["tenant"]),
        422, "invalid", "gpus")
    assert "(and 2 more: hours, colour)" in detail, detail


def test_a_join_names_the_field_without_the_roles_tag(client, market):
    detail = problem(client.post(f"{market['path']}/participants", json={
        "role": "provider", "name": "p2", "gpu_model": "h100", "gpus": 0}),
        422, "invalid", "gpus")
    assert "provider" not in detail.split(":")[0], detail


@pytest.mark.parametrize("role", ["landlord" * 20, 5, None])
def test_a_join_without_a_known_role_names_the_role(client, market, role):
    body = {"name": "x"} if role is None else {"role": role, "name": "x"}
    detail = problem(client.post(f"{market['path']}/participants", json=body), 422, "invalid",
                     "role")
    assert "landlord" not in detail  # the refused tag is not quoted back
    assert detail == ("role: required" if role is None
                      else "role: expected one of 'tenant', 'provider'"), detail


@pytest.mark.parametrize(("content", "headers", "says"), [
    (b'{"gpus": 1,', {"content-type": "application/json"}, "not JSON"),
    (b"[1, 2]", {"content-type": "application/json"}, "expected a JSON object"),
    (b'{"gpus": NaN}', {"content-type": "application/json"}, "finite number"),
    (b"gpus=1", {"content-type": "application/x-www-form-urlencoded"}, "Content-Type"),
])
def test_a_body_that_is_not_a_json_object_names_the_body(client, market, content, headers,
                                                         says):
    detail = problem(client.post(f"{market['path']}/orders", content=content,
                                 headers={**market["tenant"], **headers}),
                     422, "invalid", "gpus" if b"NaN" in content else "body")
    assert says in detail, detail


def test_bad_query_and_path_parameters_name_themselves(client, market):
    problem(client.get(f"{market['path']}/events", params={"since": -1}), 422, "invalid",
            "since")
    problem(client.get(f"{market['path']}/events", params={"snce": 1}), 422, "invalid", "snce")
    problem(client.delete(f"{market['path']}/orders/1.0", headers=market["tenant"]), 422,
            "invalid", "order_id")


@pytest.mark.parametrize("path", ["/nope", "/api/nope", "/static/nope.js",
                                  "/docs-assets/nope.js", "/api/markets/m-1/nope"])
def test_an_unknown_route_is_a_404_in_the_same_shape(client, path):
    detail = problem(client.get(path), 404, "not_found", None)
    assert "nope" not in detail  # the path is not echoed back


def test_a_method_a_route_does_not_take_is_a_405_that_says_which_it_does(client):
    response = client.delete("/api/health")
    problem(response, 405, "method_not_allowed", None)
    assert response.headers["allow"] == "GET"


def test_limits_refuse_in_the_same_shape(client, market):
    problem(client.post(f"{market['path']}/orders", content=b"{" + b" " * 5000 + b"}",
                        headers={**market["tenant"], "content-type": "application/json"}),
            413, "too_large", "body")
    answers = [client.get("/api/health") for _ in range(120)]  # over the anonymous burst
    limited = [answer for answer in answers if answer.status_code == 429]
    assert limited, [answer.status_code for answer in answers]
    problem(limited[0], 429, "rate_limited", None)
    assert int(limited[0].headers["Retry-After"]) >= 1


def test_tokens_hosts_and_conflicts_refuse_in_the_same_shape(client, market):
    problem(client.post(f"{market['path']}/orders", json=ORDER), 401, "unauthorized", None)
    problem(client.post(f"{market['path']}/orders", json=ORDER, headers=market["provider"]),
            403, "forbidden", None)
    problem(client.get("/api/markets/m-00000000"), 404, "not_found", None)
    problem(client.get("/api/health", headers={"host": "evil.example"}), 400, "invalid_host",
            "Host")
    problem(client.post(f"{market['path']}/orders/{market['order']}/bids",
                        json={"price_usd_per_gpu_hour": 50.0}, headers=market["provider"]),
            409, "conflict", None)


def test_the_document_declares_the_problem_shape_for_every_4xx(client):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    problem_schema = schemas["Problem"]
    assert set(problem_schema["required"]) == {"detail", "code", "field"}
    declared = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith("4"):
                    continue
                declared += 1
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (
                    method, path, status, schema)
    assert declared > 50  # every route declares its refusals

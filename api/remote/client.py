"""An async Python client for the live-market API: its routes over HTTP, and the way into
its event stream.

`Client(url)` mirrors every route of the server (`gpumarket serve`): markets, participants,
orders, bids, leases and event history. `Client.stream(market_id)` opens a `Stream`
(`api.remote.stream`), which follows a market's numbered events over a websocket, in order,
with no gap and no duplicate, and carries commands too.

Units follow the server: times in simulated seconds (`*_s`), money in USD (`*_usd`), prices in
USD per GPU-hour (`*_usd_per_gpu_hour`); events keep the engine's integer micro-USD (`*_micro`,
`*_micro_per_hour` for a whole order). Every refusal is an `ApiError` (`api.remote.replies`).

    async with Client("http://127.0.0.1:8000", operator_token=OPERATOR_TOKEN) as client:
        created = await client.create_market(speed=600)
        market_id = created["market_id"]
        tenant = await client.join_tenant(market_id, "alice")
        order = await client.post_order(market_id, tenant["token"], gpu_models=["h100"],
                                        max_price_usd_per_gpu_hour=4.0)
        async with client.stream(market_id) as stream:
            async for event in stream:
                print(event["seq"], event["kind"])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx

from api.remote.replies import ApiError, CommandResult
from api.remote.stream import Stream


def _ws_base(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url[len("https://"):]
    if url.startswith("http://"):
        return "ws://" + url[len("http://"):]
    return url


def _path(*parts: object) -> str:
    return "/api/" + "/".join(quote(str(part), safe="") for part in parts)


class Client:
    """The live-market API over HTTP (`httpx`) and websockets, as an async context manager.

    `url` is the server's base, e.g. ``http://127.0.0.1:8000``; `operator_token` is the
    server's operator token, which creating markets needs and which controls any market (the
    one `gpumarket serve` printed or was given; None: this client only joins, trades and
    watches); `timeout_s` bounds every HTTP request, websocket handshake and command reply
    (wall seconds).
    """

    def __init__(self, url: str, *, operator_token: str | None = None, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.operator_token = operator_token
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s,
                                       transport=transport)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ transport

    async def _request(self, method: str, path: str, *, token: str | None = None,
                       body: Any = None, params: dict[str, Any] | None = None,
                       tag: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            response = await self._http.request(method, path, json=body, params=params,
                                                 headers=headers)
        except httpx.TimeoutException as error:
            raise ApiError(0, "timeout", f"{method} {path}: no answer from {self.url} within "
                           f"{self.timeout_s:g} s ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise ApiError(0, "unreachable", f"cannot reach {self.url}: "
                           f"{error or type(error).__name__}") from None
        if not response.is_success:
            raise ApiError.from_response(response, tag)
        return response.json()

    async def _command(self, method: str, path: str, token: str, body: Any = None
                       ) -> CommandResult:
        return CommandResult.of(await self._request(method, path, token=token, body=body))

    # ------------------------------------------------------------------ server

    async def health(self) -> dict[str, Any]:
        """{"ok": true, "markets": int}."""
        return await self._request("GET", "/api/health")

    async def scenarios(self) -> list[dict[str, str]]:
        """The built-in scenarios: [{"name", "description"}]."""
        return await self._request("GET", "/api/scenarios")

    # ------------------------------------------------------------------ markets

    async def create_market(self, scenario: str = "default", *, seed: int = 1,
                            speed: float = 60.0, name: str | None = None,
                            scenario_toml: str | None = None,
                            overrides: Iterable[str] = (),
                            invite_code: str | None = None) -> dict[str, Any]:
        """Start a live market running at `speed` simulated seconds per wall second (needs
        the operator token); with `invite_code`, joining it needs that code. Returns
        {"market_id", "control_token" (shown once), "market": MarketSummary}."""
        body = {"scenario": scenario, "scenario_toml": scenario_toml,
                "overrides": list(overrides), "seed": seed, "speed": speed, "name": name}
        if invite_code is not None:
            body["invite_code"] = invite_code
        return await self._request("POST", _path("markets"), body=body,
                                   token=self.operator_token)

    async def markets(self) -> list[dict[str, Any]]:
        """Every market on the server, as MarketSummary dicts."""
        return await self._request("GET", _path("markets"))

    async def snapshot(self, market_id: str) -> dict[str, Any]:
        """The market now: clock, open orders and their bids, active leases, prices (USD per
        GPU-hour), metrics, leaderboard and participants."""
        return await self._request("GET", _path("markets", market_id))

    # Control takes the market's control token, or else the client's operator token.

    async def pause(self, market_id: str, control_token: str | None = None
                    ) -> dict[str, Any]:
        """Pause the simulated clock (commands still apply); returns the MarketSummary."""
        return await self._request("POST", _path("markets", market_id, "pause"),
                                   token=control_token or self.operator_token)

    async def resume(self, market_id: str, control_token: str | None = None
                     ) -> dict[str, Any]:
        return await self._request("POST", _path("markets", market_id, "resume"),
                                   token=control_token or self.operator_token)

    async def stop(self, market_id: str, control_token: str | None = None) -> dict[str, Any]:
        """End the market: active leases are settled; it takes no more commands, and its
        tokens no longer act."""
        return await self._request("POST", _path("markets", market_id, "stop"),
                                   token=control_token or self.operator_token)

    async def set_speed(self, market_id: str, control_token: str | None, speed: float
                        ) -> dict[str, Any]:
        """Run at `speed` simulated seconds per wall second; returns the MarketSummary."""
        return await self._request("PUT", _path("markets", market_id, "speed"),
                                   token=control_token or self.operator_token,
                                   body={"speed": speed})

    async def events(self, market_id: str, since: int = 0, limit: int = 1000
                     ) -> dict[str, Any]:
        """Kept events with seq > `since`, oldest first (at most `limit`, up to 10,000):
        {"events", "last_seq", "oldest_seq", "more"}."""
        return await self._request("GET", _path("markets", market_id, "events"),
                                   params={"since": since, "limit": limit})

    # ------------------------------------------------------------------ participants

    async def join_tenant(self, market_id: str, name: str, *, wallet_usd: float = 10_000.0,
                          invite_code: str | None = None) -> dict[str, Any]:
        """Join as a tenant with `wallet_usd` (and the market's `invite_code`, if it has
        one). Returns {"participant_id", "role", "name", "token" (shown once), "tenant",
        "provider"}."""
        body = {"role": "tenant", "name": name, "wallet_usd": wallet_usd}
        if invite_code is not None:
            body["invite_code"] = invite_code
        return await self._request("POST", _path("markets", market_id, "participants"),
                                   body=body, tag="tenant")

    async def join_provider(self, market_id: str, name: str, gpu_model: str, gpus: int = 8,
                            archetype: str = "datacenter", *, wallet_usd: float = 1_000.0,
                            invite_code: str | None = None) -> dict[str, Any]:
        """Join as a provider with one machine of `gpus` × `gpu_model` (a catalog id), costed
        as `archetype` (with the market's `invite_code`, if it has one). Returns the join
        reply, with the token (shown once)."""
        body = {"role": "provider", "name": name, "gpu_model": gpu_model, "gpus": gpus,
                "archetype": archetype, "wallet_usd": wallet_usd}
        if invite_code is not None:
            body["invite_code"] = invite_code
        return await self._request("POST", _path("markets", market_id, "participants"),
                                   body=body, tag="provider")

    async def me(self, market_id: str, token: str) -> dict[str, Any]:
        """The participant's own view: wallet (USD), provider facts (USD per GPU-hour), own
        open orders and active leases."""
        return await self._request("GET", _path("markets", market_id, "me"), token=token)

    # ------------------------------------------------------------------ trading

    async def post_order(self, market_id: str, token: str, *, gpu_models: Iterable[str],
                         max_price_usd_per_gpu_hour: float, gpus: int = 1,
                         hours: float | None = 1.0, deposit_usd: float | None = None,
                         auto_select: bool = False, interruptible: bool = False
                         ) -> CommandResult:
        """Post a job (tenants): `gpus` of any of `gpu_models` for `hours` (None: until
        closed), at most `max_price_usd_per_gpu_hour`. Returns {"order_id"}."""
        body = {"gpus": gpus, "gpu_models": list(gpu_models),
                "max_price_usd_per_gpu_hour": max_price_usd_per_gpu_hour, "hours": hours,
                "deposit_usd": deposit_usd, "auto_select": auto_select,
                "interruptible": interruptible}
        return await self._command("POST", _path("markets", market_id, "orders"), token, body)

    async def cancel_order(self, market_id: str, token: str, order_id: int) -> CommandResult:
        """Withdraw an own open order; returns {"order_id"}."""
        return await self._command("DELETE", _path("markets", market_id, "orders", order_id),
                                   token)

    async def hold(self, market_id: str, token: str, order_id: int) -> CommandResult:
        """Keep the bids on an own hand-picked order open while choosing, for the server's
        `--hold-s` wall seconds; returns the server's reply."""
        return await self._command("POST", _path("markets", market_id, "orders", order_id,
                                                 "hold"), token)

    async def release(self, market_id: str, token: str, order_id: int) -> CommandResult:
        """End the hold on an own order: bids older than the bid timeout are dropped now."""
        return await self._command("POST", _path("markets", market_id, "orders", order_id,
                                                 "release"), token)

    async def bid(self, market_id: str, token: str, order_id: int,
                  price_usd_per_gpu_hour: float) -> CommandResult:
        """Bid on an open order (providers); returns {"bid_id"}."""
        return await self._command(
            "POST", _path("markets", market_id, "orders", order_id, "bids"), token,
            {"price_usd_per_gpu_hour": price_usd_per_gpu_hour})

    async def accept(self, market_id: str, token: str, order_id: int, bid_id: int
                     ) -> CommandResult:
        """Accept a bid on an own order (tenants who pick by hand); returns {"lease_id"}."""
        return await self._command(
            "POST", _path("markets", market_id, "orders", order_id, "accept"), token,
            {"bid_id": bid_id})

    async def close_lease(self, market_id: str, token: str, lease_id: int,
                          reopen: bool = False) -> CommandResult:
        """Close an own lease (tenants); `reopen` re-auctions the rest of the job. Returns
        {"lease_id", "reopened_order_id"}."""
        return await self._command(
            "POST", _path("markets", market_id, "leases", lease_id, "close"), token,
            {"reopen": reopen})

    # ------------------------------------------------------------------ the stream

    def stream(self, market_id: str, *, since: int | None = None, token: str | None = None,
               max_retries: int = 5, allow_gaps: bool = False) -> Stream:
        """The market's events from seq `since` + 1 (None: from now on), as a `Stream` (an
        async context manager and async iterator). With `token` the socket acts as that
        participant (commands over `Stream.command`)."""
        return Stream(f"{_ws_base(self.url)}{_path('markets', market_id, 'stream')}",
                      market_id, since=since, token=token, timeout_s=self.timeout_s,
                      max_retries=max_retries, allow_gaps=allow_gaps)

"""An async Python client for the live-market API: REST calls and the event stream.

`Client(url)` mirrors every route of the server (`gpumarket serve`): markets, participants,
orders, bids, leases and event history. `Client.stream(market_id)` follows a market's numbered
events over a websocket, in order, with no gap and no duplicate: it remembers the last sequence
number it received and, when the connection drops or the server cuts it off as too slow,
reconnects with `?since=` that number. Commands may also go over the socket
(`Stream.command`), which is how a bot bids without a round of HTTP per order.

Units follow the server: times in simulated seconds (`*_s`), money in USD (`*_usd`), prices in
USD per GPU-hour (`*_usd_per_gpu_hour`); events keep the engine's integer micro-USD (`*_micro`,
`*_micro_per_hour` for a whole order). Every refusal is an `ApiError`.

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

import asyncio
import contextlib
import json
import math
from collections import deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from api.live.commands import CommandError

#: HTTP status of each error code the server uses (websocket error frames carry only the code).
STATUS = CommandError.STATUS
CODES = {status: code for code, status in STATUS.items()}
#: Market states in which the clock still runs (or may run again).
LIVE_STATES = ("running", "paused")
#: Where FastAPI says a bad input was; dropped from the field name.
_LOCATIONS = ("body", "query", "path", "header", "cookie")


class ApiError(Exception):
    """The server refused a request, or could not be reached.

    `status` is the HTTP status (0 when there was no HTTP answer: unreachable, timeout, a
    websocket-only condition); `code` names the kind (`invalid`, `unauthorized`, `forbidden`,
    `not_found`, `conflict`, `gone` (410: the market ended and left the server's memory),
    `rate_limited`, ...; `unreachable`, `timeout`, `disconnected`,
    `history_gone` on the client side); `field` is the offending input field if known;
    `retry_after_s` is how long to wait before retrying a rate-limited request, wall seconds.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 retry_after_s: float | None = None) -> None:
        self.status = status
        self.code = code
        self.message = " ".join(str(message).split())  # one line, whatever the server sent
        self.field = field
        self.retry_after_s = retry_after_s
        super().__init__(self.message)

    def __str__(self) -> str:
        status = f" {self.status}" if self.status else ""
        return f"{self.code}{status}: {self.message}"

    @classmethod
    def from_response(cls, response: httpx.Response, tag: str | None = None) -> ApiError:
        """The error a non-2xx response describes. `tag`: the discriminator value of a union
        body (a join's role), which FastAPI puts in the location of a bad field."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = body.get("detail") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        code = code if isinstance(code, str) else CODES.get(status, f"http_{status}")
        field = body.get("field") if isinstance(body, dict) else None
        if isinstance(detail, list) and detail:  # FastAPI's validation list: name the first
            field, message = _first_invalid(detail, tag)
        elif isinstance(detail, str):
            message = detail
        else:
            message = response.reason_phrase or f"HTTP {status}"
        retry = response.headers.get("retry-after")
        try:
            retry_after_s = float(retry) if retry is not None else None
        except ValueError:
            retry_after_s = None
        return cls(status, code, message, field if isinstance(field, str) else None,
                   retry_after_s)

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> ApiError:
        """The error a websocket error frame describes."""
        code = str(frame.get("code") or "error")
        field = frame.get("field")
        retry = frame.get("retry_after_s")
        return cls(STATUS.get(code, 0), code, str(frame.get("message") or code),
                   field if isinstance(field, str) else None,
                   float(retry) if isinstance(retry, int | float) else None)


def _first_invalid(detail: list[Any], tag: str | None) -> tuple[str | None, str]:
    """(field, one-line message) of the first item of FastAPI's 422 list."""
    first = detail[0] if isinstance(detail[0], dict) else {}
    loc = [str(part) for part in first.get("loc", ())]
    while loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    if tag is not None and loc and loc[0] == tag:
        loc = loc[1:]
    field = ".".join(loc) or None
    more = len(detail) - 1
    tail = f" (and {more} more)" if more else ""
    return field, f"{field or 'body'}: {first.get('msg', 'invalid')}{tail}"


class CommandResult(dict):
    """A command's `result` (e.g. ``{"order_id": 3}``), with the rest of its reply:
    `seq` (the market's last event when it was applied) and `clock_s` (simulated seconds)."""

    seq: int
    clock_s: float

    @classmethod
    def of(cls, reply: dict[str, Any]) -> CommandResult:
        result = cls(reply.get("result") or {})
        result.seq = int(reply.get("seq", 0))
        result.clock_s = float(reply.get("clock_s", math.nan))
        return result


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


class Stream:
    """A market's events over a websocket, in order, never duplicated and never skipped.

    Iterate it (``async for event in stream``) or take what has arrived in one go
    (`next_batch`). It ends when the market has stopped, finished or failed and every event
    has been delivered. It tracks the last seq received: when the connection drops, goes quiet
    for `idle_timeout_s` (the server sends a frame at least once a wall second), or the server
    says `too_slow`, it reconnects with ``?since=<last seq>``, waiting `backoff_s`, doubled
    each try (at most `max_backoff_s`), and gives up with ApiError after `max_retries`
    failures in a row without progress. If the server no longer keeps the events needed
    (`history_gone`), it raises ApiError, or with `allow_gaps` carries on from the oldest
    kept event (counting the lost ones in `skipped_events`).

    `clock_s`, `state`, `speed` and `sent_at` are the latest the server told (simulated
    seconds, market state, simulated seconds per wall second, unix seconds);
    `participant` is who the socket acts as (None: a watcher).
    """

    def __init__(self, url: str, market_id: str, *, since: int | None = None,
                 token: str | None = None, timeout_s: float = 10.0, max_retries: int = 5,
                 backoff_s: float = 0.1, max_backoff_s: float = 2.0,
                 idle_timeout_s: float = 15.0, allow_gaps: bool = False,
                 max_frame_bytes: int = 64 * 2**20) -> None:
        self.url = url
        self.market_id = market_id
        self.token = token
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.idle_timeout_s = idle_timeout_s
        self.allow_gaps = allow_gaps
        self.max_frame_bytes = max_frame_bytes
        self.last_seq: int | None = since   # the last event received (None: not known yet)
        self.clock_s = math.nan
        self.state = ""
        self.speed = math.nan
        self.sent_at = math.nan
        self.participant: dict[str, Any] | None = None
        self.reconnects = 0
        self.skipped_events = 0
        self.hello: dict[str, Any] | None = None   # the current connection's hello frame
        self._final_seq = 0          # the last event the market has published, as last told
        self._events: deque[dict[str, Any]] = deque()
        self._socket: ClientConnection | None = None
        self._lock = asyncio.Lock()  # one reader of the socket at a time
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._failures = 0           # in a row, without an event or clock frame since
        self._gap_allowed_to: int | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Stream:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection now (otherwise the first read does)."""
        async with self._lock:
            if self._socket is None:
                await self._connect()

    async def close(self) -> None:
        """Close the socket; commands still waiting fail with ApiError."""
        self._closed = True
        socket, self._socket = self._socket, None
        self._fail_waiting("the stream was closed")
        if socket is not None:
            with contextlib.suppress(TimeoutError, OSError, ConnectionClosed):
                await asyncio.wait_for(socket.close(), self.timeout_s)

    @property
    def ended(self) -> bool:
        """The market no longer runs and every event it published has been received."""
        return (self.state != "" and self.state not in LIVE_STATES
                and self.last_seq is not None and self.last_seq >= self._final_seq)

    # ------------------------------------------------------------------ events

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._events:
            if self.ended or self._closed:
                raise StopAsyncIteration
            await self._read()
        return self._events.popleft()

    async def next_batch(self) -> list[dict[str, Any]]:
        """Every event received and not yet taken, waiting for at least one (a frame holds
        one tick of the market); [] once the stream has ended."""
        while not self._events:
            if self.ended or self._closed:
                return []
            await self._read()
        batch = list(self._events)
        self._events.clear()
        return batch

    async def _read(self) -> None:
        async with self._lock:
            if not self._events and not self.ended and not self._closed:
                await self._pump()

    # ------------------------------------------------------------------ commands

    async def command(self, kind: str, /, **fields: Any) -> CommandResult:
        """Send one command over the socket (`post_order`, `cancel_order`, `bid`, `accept`,
        `close_lease`, `auth`, `ping`, with the fields of its REST body) and return the
        reply's result; raises ApiError for the error frame answering it, or after
        `timeout_s` wall seconds without a reply."""
        return CommandResult.of(await self.command_reply(kind, **fields))

    async def command_reply(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Like `command`, returning the whole reply frame ({"ok", "seq", "clock_s",
        "result", ...})."""
        if self._socket is None and not self._closed:  # a closed stream stays closed
            await self.connect()
        socket = self._socket
        if socket is None:
            raise ApiError(0, "disconnected", f"{kind}: the stream is closed")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            try:
                await socket.send(json.dumps({"type": kind, "id": request_id, **fields},
                                             allow_nan=False))
            except ConnectionClosed:
                raise ApiError(0, "disconnected", f"{kind}: the connection closed before "
                               "the command was sent") from None
            try:
                reply = await asyncio.wait_for(self._until(future), self.timeout_s)
            except TimeoutError:
                raise ApiError(0, "timeout", f"{kind}: no reply within {self.timeout_s:g} s"
                               ) from None
        finally:
            self._waiting.pop(request_id, None)
        if kind == "auth":  # reconnect as this participant from now on
            self.token = fields.get("token")
            self.participant = reply.get("result")
        return reply

    async def _until(self, future: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        # Whoever holds the lock reads frames, and files the reply it meets: wait for it.
        while not future.done():
            async with self._lock:
                if not future.done():
                    if self._closed:
                        raise ApiError(0, "disconnected", "the stream is closed")
                    await self._pump()
        return future.result()

    def _fail_waiting(self, why: str) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ApiError(0, "disconnected", why))

    # ------------------------------------------------------------------ the socket

    async def _pump(self) -> None:
        """Read and file one frame, first (re)connecting if there is no connection."""
        if self._socket is None:
            await self._connect()
            return
        try:
            text = await asyncio.wait_for(self._socket.recv(), self.idle_timeout_s)
        except (ConnectionClosed, OSError) as error:
            await self._lost(f"the connection closed ({error})")
            return
        except TimeoutError:
            await self._lost(f"nothing received for {self.idle_timeout_s:g} s")
            return
        frame = json.loads(text)
        if isinstance(frame, dict):
            await self._file(frame)

    async def _lost(self, why: str) -> None:
        """Drop the connection: commands awaiting a reply fail; the next read reconnects."""
        socket, self._socket = self._socket, None
        self._fail_waiting(f"{why} before the reply")
        self._failures += 1
        if socket is not None:
            with contextlib.suppress(TimeoutError, OSError, ConnectionClosed):
                await asyncio.wait_for(socket.close(), 1.0)
        if self.ended:
            return
        if self._failures > self.max_retries:
            raise ApiError(0, "disconnected", f"stream of {self.market_id}: {why}; gave up "
                           f"after {self.max_retries} tries")

    def _url(self) -> str:
        return self.url if self.last_seq is None else f"{self.url}?since={self.last_seq}"

    async def _connect(self) -> None:
        """Connect (resuming after `last_seq`) and read the hello, retrying with backoff."""
        while True:
            if self._failures:
                await asyncio.sleep(min(self.backoff_s * 2 ** (self._failures - 1),
                                        self.max_backoff_s))
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
            try:
                socket = await connect(self._url(), additional_headers=headers,
                                       open_timeout=self.timeout_s,
                                       max_size=self.max_frame_bytes)
            except InvalidURI as error:
                raise ApiError(0, "invalid", f"url: {error}", "url") from None
            except (OSError, InvalidHandshake, TimeoutError) as error:
                self._failures += 1
                if self._failures > self.max_retries:
                    raise ApiError(0, "unreachable", f"cannot open the stream of "
                                   f"{self.market_id} at {self.url}: {error}") from None
                continue
            try:
                hello = json.loads(await asyncio.wait_for(socket.recv(), self.timeout_s))
            except (ConnectionClosed, OSError, TimeoutError, ValueError) as error:
                await socket.close()
                self._failures += 1
                if self._failures > self.max_retries:
                    raise ApiError(0, "unreachable", f"the stream of {self.market_id} "
                                   f"sent no hello: {error}") from None
                continue
            if hello.get("type") == "error":  # refused: unknown market, bad token, full
                await socket.close()
                error = ApiError.from_frame(hello)
                self._failures += 1
                # Full or over the handshake rate: worth another try after the backoff.
                if error.code not in ("unavailable", "rate_limited") or \
                        self._failures > self.max_retries:
                    raise error
                continue
            if self.hello is not None:
                self.reconnects += 1
            self._socket = socket
            self._on_hello(hello)
            return

    def _on_hello(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        self.participant = hello.get("participant")
        self._final_seq = int(hello.get("seq", 0))
        if self.last_seq is None:  # from now on: the server starts after its last event
            self.last_seq = self._final_seq
        self._gap_allowed_to = None
        self._clock(hello)

    def _clock(self, frame: dict[str, Any]) -> None:
        self.clock_s = float(frame.get("clock_s", self.clock_s))
        self.state = str(frame.get("state", self.state))
        self.speed = float(frame.get("speed", self.speed))
        self.sent_at = float(frame.get("sent_at", self.sent_at))

    async def _file(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "events":
            await self._on_events(frame)
        elif kind == "clock":
            self._clock(frame)
            self._final_seq = max(self._final_seq, int(frame.get("seq", 0)))
            self._failures = 0
        elif kind == "reply":
            future = self._waiting.get(frame.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == "error":
            await self._on_error(frame)

    async def _on_events(self, frame: dict[str, Any]) -> None:
        self._clock(frame)
        self._final_seq = max(self._final_seq, int(frame.get("last_seq", 0)))
        for event in frame.get("events", ()):
            seq = event["seq"]
            last = self.last_seq or 0
            if seq <= last:
                continue  # delivered already (a resumed connection may overlap)
            if seq > last + 1:
                if self._gap_allowed_to is not None and seq <= self._gap_allowed_to:
                    self.skipped_events += seq - last - 1
                else:  # never expected: resume from the last event rather than skip
                    await self._lost(f"events {last + 1}..{seq - 1} missing")
                    return
            self.last_seq = seq
            self._events.append(event)
            self._failures = 0

    async def _on_error(self, frame: dict[str, Any]) -> None:
        error = ApiError.from_frame(frame)
        future = self._waiting.get(frame.get("id"))  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_exception(error)
        elif error.code == "history_gone":
            if not self.allow_gaps:
                raise error
            self._gap_allowed_to = int(frame.get("oldest_seq", 0))
        elif error.code == "too_slow":
            await self._lost("the server cut the stream off as too slow")

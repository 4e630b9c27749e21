"""The HTTP and websocket API of live markets (FastAPI), and the browser page.

`create_app(db, limits)` builds the app; `gpumarket serve` runs it under uvicorn. Every route is
under `/api`; the page is at `/`, the OpenAPI docs at `/docs`. Input is validated here, at the
edge: a bad body is a 422 naming the field, a bad websocket message an error frame on a
connection that stays open; nothing reaches the market half-checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from api import views
from api.commands import (
    COMMANDS,
    Accept,
    AcceptBody,
    Bid,
    BidBody,
    CancelOrder,
    CloseBody,
    CloseLease,
    CommandError,
    CreateMarket,
    Join,
    JoinTenant,
    PostOrder,
    Speed,
    first_error,
)
from api.live import Connection, Limits, LiveMarket, dumps
from api.markets import Actor, LiveMarkets, new_token, token_hash
from market.scenario import builtin_scenarios, load_scenario

STATIC = Path(__file__).parent / "static"
MarketId = Annotated[str, PathParam(max_length=64, description="the market's id, m-xxxxxxxx")]
Seq = Annotated[int, Query(ge=0, lt=2**53)]


def bearer(authorization: Annotated[str | None, Header(
        description="Bearer TOKEN: a market's control token or a participant's")] = None,
) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


Token = Annotated[str | None, Depends(bearer)]


class CommandReply(BaseModel):
    ok: bool
    seq: int
    clock_s: float
    result: dict[str, Any]


class Problem(BaseModel):
    detail: str
    code: str
    field: str | None = None


class FieldError(BaseModel):
    """One item of FastAPI's list of request-validation errors."""

    loc: list[str | int]
    msg: str
    type: str


class FieldErrors(BaseModel):
    detail: list[FieldError]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": code}
    for code, status in CommandError.STATUS.items()}
# A 422 comes in two shapes: FastAPI's list when a request breaks its declared types, a Problem
# when a check beyond them refuses it (an unknown scenario or GPU model, a speed over the limit).
ERRORS[422] = {"model": FieldErrors | Problem, "description": "invalid"}
#: What a route that takes no input can still answer: any request may carry a body too large.
TOO_LARGE: dict[int | str, dict[str, Any]] = {413: ERRORS[413]}


class BodyLimit:
    """Refuse request bodies over `max_bytes` (413) before they are read into memory,
    whether or not they declare their length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit()
                                              or int(value) > self.max_bytes):
                await _too_large(self.max_bytes, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes, send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(max_bytes: int, send: Send) -> None:
    body = json.dumps({"detail": f"body: larger than {max_bytes} bytes", "code": "too_large",
                       "field": "body"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(db: str | Path, limits: Limits | None = None) -> FastAPI:
    """The app over the session log `db` (created if missing); live markets in it are
    replayed and resumed when the app starts."""
    limits = limits or Limits()
    state: dict[str, LiveMarkets] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        markets = LiveMarkets(db, limits)
        markets.recover()
        state["markets"] = markets
        yield
        await markets.shutdown()

    app = FastAPI(title="gpumarket live markets", version="1",
                  description="Live simulated GPU marketplaces: create a market, join it as a "
                              "tenant or a provider, trade, and stream its events.",
                  lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_message_bytes)

    def hub() -> LiveMarkets:
        return state["markets"]


    @app.exception_handler(CommandError)
    async def command_error(request: Request, error: CommandError) -> JSONResponse:
        headers = {}
        if error.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after_s + 0.5)))
        return JSONResponse({"detail": error.message, "code": error.code,
                             "field": error.field}, error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def unreadable_body(request: Request, error: HTTPException) -> Response:
        # FastAPI answers a body it cannot read with a bare 400, which no route declares: a body
        # streamed past the limit (BodyLimit raises inside the read) is a 413, any other (not
        # UTF-8) a bad body, 422, like every bad body.
        if error.status_code != 400:
            return await http_exception_handler(request, error)
        if isinstance(error.__cause__, _BodyTooLarge):
            refused = CommandError("too_large", f"body: larger than {limits.max_message_bytes} "
                                   "bytes", "body")
        else:
            refused = CommandError("invalid", "body: expected JSON text in UTF-8", "body")
        return await command_error(request, refused)

    def actor_for(market_id: str, token: str | None, role: str | None) -> Actor:
        actor = hub().actor(market_id, token)
        if role == "control" and actor.participant is not None:
            raise CommandError("forbidden", "this needs the market's control token")
        if role in ("tenant", "provider"):
            if actor.participant is None:
                raise CommandError("forbidden", f"this needs a {role}'s participant token")
            if actor.participant.role != role:
                raise CommandError("forbidden", f"only a {role} may do this; this token "
                                   f"is a {actor.participant.role}'s")
        return actor

    async def command(live: LiveMarket, kind: str, body: Any, actor: Actor) -> dict[str, Any]:
        return await live.enqueue(kind, body, actor.participant)

    # ------------------------------------------------------------------ the page

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------ markets

    @app.get("/api/health", tags=["server"], responses=TOO_LARGE)
    async def health() -> dict[str, Any]:
        return {"ok": True, "markets": len(hub().markets)}

    @app.get("/api/scenarios", tags=["server"], responses=TOO_LARGE)
    async def scenarios() -> list[dict[str, str]]:
        """The built-in scenarios a market can start from."""
        return [{"name": name, "description": load_scenario(name).description}
                for name in builtin_scenarios()]

    @app.post("/api/markets", status_code=201, tags=["markets"], responses=ERRORS)
    async def create_market(body: CreateMarket) -> dict[str, Any]:
        """Start a live market. The control token in the reply is shown once."""
        live, token = hub().create(body)
        return {"market_id": live.market_id, "control_token": token, "market": live.summary()}

    @app.get("/api/markets", tags=["markets"], responses=TOO_LARGE)
    async def list_markets() -> list[dict[str, Any]]:
        return [live.summary() for live in hub().markets.values()]

    @app.get("/api/markets/{market_id}", tags=["markets"], responses=ERRORS)
    async def market_snapshot(market_id: MarketId) -> dict[str, Any]:
        """The market now: clock, open orders with their bids, active leases, prices,
        headline metrics, the provider leaderboard and who joined."""
        return views.snapshot(hub().get(market_id))

    async def control(market_id: str, token: str | None, action: str,
                      speed: float | None = None) -> dict[str, Any]:
        actor = actor_for(market_id, token, "control")
        return await actor.market.control(action, speed)

    @app.post("/api/markets/{market_id}/pause", tags=["control"], responses=ERRORS)
    async def pause(market_id: MarketId, token: Token) -> dict[str, Any]:
        return await control(market_id, token, "pause")

    @app.post("/api/markets/{market_id}/resume", tags=["control"], responses=ERRORS)
    async def resume(market_id: MarketId, token: Token) -> dict[str, Any]:
        return await control(market_id, token, "resume")

    @app.post("/api/markets/{market_id}/stop", tags=["control"], responses=ERRORS)
    async def stop(market_id: MarketId, token: Token) -> dict[str, Any]:
        """End the market: active leases are settled and it takes no more commands."""
        return await control(market_id, token, "stop")

    @app.put("/api/markets/{market_id}/speed", tags=["control"], responses=ERRORS)
    async def speed(market_id: MarketId, body: Speed, token: Token) -> dict[str, Any]:
        return await control(market_id, token, "speed", body.speed)

    @app.get("/api/markets/{market_id}/events", tags=["markets"], responses=ERRORS)
    async def events(market_id: MarketId, since: Seq = 0,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
        """Events with a sequence number above `since`, oldest first."""
        live = hub().get(market_id)
        kept = [e for e in live.session.since(since, limit + 1)
                if e["seq"] <= live.published_seq]
        return {"events": kept[:limit], "last_seq": live.published_seq,
                "oldest_seq": live.session.oldest_seq, "more": len(kept) > limit}

    # ------------------------------------------------------------------ participants

    @app.post("/api/markets/{market_id}/participants", status_code=201,
              tags=["participants"], responses=ERRORS)
    async def join(market_id: MarketId, body: Annotated[Join, Body()]) -> dict[str, Any]:
        """Join as a tenant, or as a provider with one machine's GPUs. The token in the reply
        is shown once: it acts as this participant from now on."""
        live = hub().get(market_id)
        token = new_token("gmp")
        kind = "join_tenant" if isinstance(body, JoinTenant) else "join_provider"
        reply = await live.enqueue(kind, body, None, token_hash(token))
        return {**reply["result"], "token": token}

    @app.get("/api/markets/{market_id}/me", tags=["participants"], responses=ERRORS)
    async def whoami(market_id: MarketId, token: Token) -> dict[str, Any]:
        actor = actor_for(market_id, token, None)
        if actor.participant is None:
            raise CommandError("forbidden", "this needs a participant token")
        return views.me(actor.market, actor.participant)

    @app.post("/api/markets/{market_id}/orders", status_code=201, tags=["trading"],
              responses=ERRORS)
    async def post_order(market_id: MarketId, body: PostOrder, token: Token) -> CommandReply:
        """Post a job for bids (tenants)."""
        actor = actor_for(market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "post_order", body, actor))

    @app.delete("/api/markets/{market_id}/orders/{order_id}", tags=["trading"],
                responses=ERRORS)
    async def cancel_order(market_id: MarketId, order_id: Annotated[int, PathParam(
            ge=0, lt=2**53)], token: Token) -> CommandReply:
        actor = actor_for(market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "cancel_order",
                                            CancelOrder(order_id=order_id), actor))

    @app.post("/api/markets/{market_id}/orders/{order_id}/bids", status_code=201,
              tags=["trading"], responses=ERRORS)
    async def bid(market_id: MarketId, order_id: Annotated[int, PathParam(ge=0, lt=2**53)],
                  body: BidBody, token: Token) -> CommandReply:
        """Bid on an open order (providers), USD per GPU-hour."""
        actor = actor_for(market_id, token, "provider")
        return CommandReply(**await command(actor.market, "bid", Bid(
            order_id=order_id, price_usd_per_gpu_hour=body.price_usd_per_gpu_hour), actor))

    @app.post("/api/markets/{market_id}/orders/{order_id}/accept", tags=["trading"],
              responses=ERRORS)
    async def accept(market_id: MarketId, order_id: Annotated[int, PathParam(ge=0, lt=2**53)],
                     body: AcceptBody, token: Token) -> CommandReply:
        """Accept a bid on your order (tenants who pick by hand)."""
        actor = actor_for(market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "accept", Accept(
            order_id=order_id, bid_id=body.bid_id), actor))

    @app.post("/api/markets/{market_id}/leases/{lease_id}/close", tags=["trading"],
              responses=ERRORS)
    async def close_lease(market_id: MarketId,
                          lease_id: Annotated[int, PathParam(ge=0, lt=2**53)],
                          body: CloseBody, token: Token) -> CommandReply:
        actor = actor_for(market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "close_lease", CloseLease(
            lease_id=lease_id, reopen=body.reopen), actor))

    # ------------------------------------------------------------------ the stream

    @app.websocket("/api/markets/{market_id}/stream")
    async def stream(websocket: WebSocket, market_id: str) -> None:
        await websocket.accept()
        markets = hub()
        try:
            since = _since(websocket.query_params.get("since"))
            live = markets.get(market_id)
        except CommandError as error:
            await websocket.send_text(dumps(error.frame()))
            await websocket.close(4000 + error.status, error.code)
            return
        connection = Connection(websocket.send_text, _closer(websocket),
                                limits.queue_frames, live.published_seq, live.clock)
        token = bearer(websocket.headers.get("authorization"))
        if token:
            try:
                _authenticate(markets, live, connection, token)
            except CommandError as error:
                await websocket.send_text(dumps(error.frame()))
                await websocket.close(4000 + error.status, error.code)
                return
        try:
            history = live.connect(connection, since)
        except CommandError as error:
            await websocket.send_text(dumps(error.frame()))
            await websocket.close(1013, error.code)
            return
        hello = {"type": "hello", "market_id": market_id, "seq": live.published_seq,
                 "oldest_seq": live.session.oldest_seq, **live.clock(),
                 "participant": None if connection.participant is None
                 else connection.participant.to_dict()}
        await websocket.send_text(dumps(hello))
        if since is not None and since + 1 < live.session.oldest_seq:
            gone = CommandError("invalid", f"since: events before {live.session.oldest_seq} "
                                "are no longer kept; streaming from there", "since")
            await websocket.send_text(dumps({**gone.frame(), "code": "history_gone",
                                             "oldest_seq": live.session.oldest_seq}))
        pump = connection.task = asyncio.create_task(connection.pump(history))
        try:
            await _receive(websocket, markets, live, connection, limits, pump)
        finally:
            live.disconnect(connection)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    return app


def _since(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 15:
        raise CommandError("invalid", f"since: expected a sequence number >= 0, got {text!r}",
                           "since")
    return int(text)


def _closer(websocket: WebSocket):
    async def close(code: int, reason: str) -> None:
        await websocket.close(code, reason)
    return close


def _authenticate(markets: LiveMarkets, live: LiveMarket, connection: Connection,
                  token: str) -> dict[str, Any]:
    actor = markets.actor(live.market_id, token)
    if actor.participant is None:
        raise CommandError("forbidden", "a control token cannot trade; use a participant token")
    connection.participant = actor.participant
    connection.token_hash = actor.token_hash
    return actor.participant.to_dict()


_MESSAGE = TypeAdapter(dict[str, Any])


async def _receive(websocket: WebSocket, markets: LiveMarkets, live: LiveMarket,
                   connection: Connection, limits: Limits, pump: asyncio.Task[None]) -> None:
    """Read the client's messages until it goes (or its pump ends); answer each with a reply
    or an error frame."""
    replies: set[asyncio.Task[None]] = set()
    receiving = asyncio.ensure_future(websocket.receive())
    try:
        while True:
            done, _ = await asyncio.wait({receiving, pump}, return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                return  # cut off as too slow, or the socket failed
            message = receiving.result()
            if message["type"] == "websocket.disconnect":
                return
            receiving = asyncio.ensure_future(websocket.receive())
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8", "replace")
            request_id = None
            try:
                if len(raw.encode("utf-8")) > limits.max_message_bytes:
                    raise CommandError("too_large", f"message: larger than "
                                       f"{limits.max_message_bytes} bytes")
                try:
                    data = _MESSAGE.validate_json(raw)
                except ValidationError:
                    raise CommandError("invalid", "message: expected a JSON object with a "
                                       "`type`") from None
                request_id = data.pop("id", None)
                if not isinstance(request_id, str | int | float | None) or \
                        isinstance(request_id, bool):
                    request_id = None
                    raise CommandError("invalid", "id: expected a string or a number", "id")
                kind = data.pop("type", None)
                if kind == "ping":
                    _reply(connection, request_id, live, {})
                    continue
                markets.rate.check(connection.token_hash or f"socket:{id(connection)}")
                if kind == "auth":
                    token = data.get("token")
                    if not isinstance(token, str):
                        raise CommandError("invalid", "token: expected a string", "token")
                    _reply(connection, request_id, live,
                           _authenticate(markets, live, connection, token))
                    continue
                model = COMMANDS.get(kind) if isinstance(kind, str) else None
                if model is None:
                    raise CommandError("invalid", f"type: expected one of auth, ping, "
                                       f"{', '.join(COMMANDS)}; got {kind!r}", "type")
                try:
                    body = model.model_validate(data)
                except ValidationError as error:
                    raise first_error(error) from None
                if connection.participant is None:
                    raise CommandError("unauthorized", "send {\"type\": \"auth\", \"token\": "
                                       "...} first: commands need a participant token")
                future = live.enqueue(kind, body, connection.participant)
                task = asyncio.create_task(_answer(connection, request_id, future))
                replies.add(task)
                task.add_done_callback(replies.discard)
            except CommandError as error:
                connection.offer(dumps(error.frame(request_id)))
    except WebSocketDisconnect:
        return
    finally:
        receiving.cancel()
        for task in replies:
            task.cancel()


def _reply(connection: Connection, request_id: Any, live: LiveMarket,
           result: dict[str, Any]) -> None:
    connection.offer(dumps({"type": "reply", "id": request_id, "ok": True,
                            "seq": live.published_seq, "clock_s": live.session.market.now,
                            "result": result}))


async def _answer(connection: Connection, request_id: Any,
                  future: asyncio.Future[dict[str, Any]]) -> None:
    try:
        reply = await future
    except CommandError as error:
        connection.offer(dumps(error.frame(request_id)))
        return
    connection.offer(dumps({"type": "reply", "id": request_id, **reply}))

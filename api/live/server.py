"""The HTTP and websocket API of live markets (FastAPI), and the browser page.

`create_app(db, limits, operator_token=..., allowed_hosts=...)` builds the app; `gpumarket
serve` runs it under uvicorn. Every route is under `/api`; the page is at `/`, the OpenAPI docs
at `/docs`. Input is validated here, at the edge: a bad body is a 422 naming the field, a bad
websocket message an error frame on a connection that stays open; nothing reaches the market
half-checked.

Who may do what: the operator (one token per server) creates markets and controls any of
them; a market's control token controls that market; participants join the markets the
operator opened (with its invite code, if it set one) and act as themselves; anyone may list
and watch. Every request spends from rate budgets keyed by its token and its client address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from api.live import views
from api.live.commands import (
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
    HoldOrder,
    JoinProvider,
    JoinTenant,
    PostOrder,
    ReleaseOrder,
    Speed,
    first_error,
)
from api.live.docs import add_docs
from api.live.driver import Connection, Limits, LiveMarket, dumps, take
from api.live.edge import EdgeRoute, field_name, http_problem, read_json, validation_refusal
from api.live.exposure import (
    DEFAULT_HOSTS,
    HostAllowList,
    HostGuard,
    SecurityHeaders,
    client_address,
    send_json,
)
from api.live.markets import Actor, LiveMarkets, new_token, same_secret, token_hash
from market.scenario import builtin_scenarios, load_scenario

STATIC = Path(__file__).parent / "static"
MarketId = Annotated[str, PathParam(max_length=64, description="the market's id, m-xxxxxxxx")]
Seq = Annotated[int, Query(ge=0, lt=2**53)]
ItemId = Annotated[int, PathParam(ge=0, lt=2**53)]   # an order's or a lease's id


def bearer(authorization: Annotated[str | None, Header(
        description="Bearer TOKEN: the operator's, a market's control token or a "
                    "participant's")] = None,
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
    """Every 4xx answer: one line that names the field and what is valid."""

    detail: str = Field(description="one line: the field, what was wrong and what is valid",
                        examples=["gpus: Input should be greater than or equal to 1"])
    code: str = Field(description="the kind of refusal: invalid, unauthorized, forbidden, "
                                  "not_found, conflict, gone, too_large, rate_limited, ...",
                      examples=["invalid"])
    field: str | None = Field(description="the offending field as a dotted path "
                                          "(`gpu_models.1`), a header's name, or null",
                              examples=["gpus"])


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": code}
    for code, status in CommandError.STATUS.items()}
ERRORS[410] = {"model": Problem, "description": "gone: the market ended and left memory"}
#: What a route that takes no input can still answer: any request may carry a body too large.
TOO_LARGE: dict[int | str, dict[str, Any]] = {413: ERRORS[413]}
#: ... and one without a token may be over its client address's rate.
ANONYMOUS: dict[int | str, dict[str, Any]] = {**TOO_LARGE, 429: ERRORS[429]}

InviteCode = Annotated[str, Field(min_length=4, max_length=128, pattern=r"^[\x21-\x7e]+$")]


class CreateMarketBody(CreateMarket):
    invite_code: InviteCode | None = Field(
        None, description="a code joining the market then needs (printable ASCII, 4 to 128 "
                          "characters); kept only as a hash")


class JoinTenantBody(JoinTenant):
    invite_code: InviteCode | None = Field(None, description="the market's invite code, if "
                                                             "it has one")


class JoinProviderBody(JoinProvider):
    invite_code: InviteCode | None = Field(None, description="the market's invite code, if "
                                                             "it has one")


JoinBody = Annotated[JoinTenantBody | JoinProviderBody, Field(discriminator="role")]


class BodyLimit:
    """Refuse request bodies over `max_bytes` (413) before they are read into memory,
    whether or not they declare their length, and bodies that take more than `timeout_s`
    wall seconds to arrive (408): a client dribbling a body holds no connection for long."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

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
        complete = False
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def limited() -> Message:
            nonlocal seen, complete
            if complete:  # past the body, a receive waits for the disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(
                    receive(), max(deadline - asyncio.get_running_loop().time(), 0.0))
            except TimeoutError:
                raise _BodySlow(self.timeout_s) from None
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _BodyTooLarge
            complete = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes, send)
        except _BodySlow as slow:
            await send_json(send, 408, {"detail": slow.message, "code": slow.code,
                                        "field": slow.field}, [(b"connection", b"close")])


class _BodyTooLarge(Exception):
    pass


class _BodySlow(CommandError):
    """A body that did not arrive in time; a CommandError so that, raised inside FastAPI's
    read of a body, it still answers as itself (408)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__("timeout", f"body: not received within {timeout_s:g} s", "body")

    @property
    def status(self) -> int:
        return 408


async def _too_large(max_bytes: int, send: Send) -> None:
    body = json.dumps({"detail": f"body: larger than {max_bytes} bytes", "code": "too_large",
                       "field": "body"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(db: str | Path, limits: Limits | None = None, *,
               operator_token: str | None = None,
               allowed_hosts: Iterable[str] | None = None,
               trusted_proxies: Iterable[str] = (),
               markets: LiveMarkets | None = None) -> FastAPI:
    """The app over the session log `db` (created if missing); live markets in it are
    replayed and resumed when the app starts. `markets`, when given, is that log already
    opened (so that a caller can refuse a locked or unreadable log before serving).

    `operator_token` creates and controls markets (None: a new random one, on
    `app.state.operator_token`); `allowed_hosts` are the Host names it answers to (None:
    the loopback names and the test client's `testserver`); requests from `trusted_proxies`
    (addresses) are counted against the client their `X-Forwarded-For` names."""
    limits = limits or Limits()
    state: dict[str, LiveMarkets] = {}
    opened = [markets] if markets is not None else []  # used by the first start only
    operator_token = operator_token or new_token("gmo")
    operator_hash = token_hash(operator_token)
    proxies = frozenset(trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = opened.pop() if opened else LiveMarkets(db, limits)
        hub.recover()
        state["markets"] = app.state.markets = hub
        hub.start_evicting()
        yield
        await hub.shutdown()

    app = FastAPI(title="gpumarket live markets", version="1",
                  description="Live simulated GPU marketplaces: create a market, join it as a "
                              "tenant or a provider, trade, and stream its events.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.operator_token = operator_token
    app.add_middleware(BodyLimit, max_bytes=limits.max_message_bytes,
                       timeout_s=limits.body_timeout_s)
    # Outermost last: the Host check refuses before anything is read, and every answer,
    # refusals included, carries the security headers.
    app.add_middleware(HostGuard, allowed=HostAllowList(
        DEFAULT_HOSTS if allowed_hosts is None else allowed_hosts))
    app.add_middleware(SecurityHeaders)
    app.router.route_class = EdgeRoute  # bodies read by api.live.edge: no NaN, inf, huge numbers
    add_docs(app)  # /docs and /redoc from this machine's files, not a CDN

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
    async def http_error(request: Request, error: HTTPException) -> Response:
        # FastAPI answers a body it cannot read with a bare 400, which no route declares: a body
        # streamed past the limit (BodyLimit raises inside the read) is a 413; one the edge's
        # reader refused (not UTF-8 or not JSON, NaN, 1e309, ...) is a 422 naming the field,
        # like every bad body. Any other (an unknown route's 404, a 405) keeps its status and
        # headers (405's Allow) in the documented shape.
        if error.status_code != 400:
            code, line = http_problem(error.status_code, error.detail)
            return JSONResponse({"detail": line, "code": code, "field": None},
                                error.status_code, headers=error.headers)
        if isinstance(error.__cause__, _BodyTooLarge):
            refused = CommandError("too_large", f"body: larger than {limits.max_message_bytes} "
                                   "bytes", "body")
        elif isinstance(error.__cause__, CommandError):
            refused = error.__cause__
        else:
            refused = CommandError("invalid", "body: expected JSON text in UTF-8", "body")
        return await command_error(request, refused)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer is a list that echoes each bad `input` (a body again, a 5,000-digit
        # id, a number JSON cannot write): one line naming the first field instead, like every
        # other refusal.
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        json_body = kind == "application/json" or kind.endswith("+json")
        return await command_error(request, validation_refusal(error.errors(), error.body,
                                                               json_body=json_body))

    def address(request: Request) -> str:
        return client_address(request.scope, proxies)

    def anonymous(request: Request) -> None:
        """Spend the client address's budget for requests without a token."""
        hub().budgets.anonymous_request(address(request))

    Anonymous = Depends(anonymous)

    def is_operator(token: str | None) -> bool:
        return same_secret(token, operator_hash)

    def operator(request: Request, token: str | None, what: str) -> None:
        """Let the operator through (after its rate budgets), or raise 401/403."""
        if not token:
            raise CommandError("unauthorized", f"{what} needs the operator token: send "
                               "'Authorization: Bearer TOKEN' with the token `gpumarket serve` "
                               "printed or was given")
        hub().budgets.acting(operator_hash if is_operator(token) else token_hash(token),
                             address(request))
        if not is_operator(token):
            raise CommandError("forbidden", f"{what} needs the operator token; this is not it")

    def actor_for(request: Request, market_id: str, token: str | None, role: str | None, *,
                  acting: bool = True) -> Actor:
        actor = hub().actor(market_id, token, address(request), acting=acting)
        if role == "control" and actor.participant is not None:
            raise CommandError("forbidden", "this needs the operator token or the market's "
                               "control token")
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

    @app.get("/api/health", tags=["server"], responses=ANONYMOUS, dependencies=[Anonymous])
    async def health() -> dict[str, Any]:
        return {"ok": True, "markets": len(hub().markets)}

    @app.get("/api/scenarios", tags=["server"], responses=ANONYMOUS, dependencies=[Anonymous])
    async def scenarios() -> list[dict[str, str]]:
        """The built-in scenarios a market can start from."""
        return [{"name": name, "description": load_scenario(name).description}
                for name in builtin_scenarios()]

    # Who may create and control is settled in dependencies, which run before the body is
    # read: an anonymous caller learns nothing from a 422.

    def creator(request: Request, token: Token) -> None:
        take((hub().budgets.creates, address(request)))
        operator(request, token, "creating a market")

    def controller(request: Request, market_id: MarketId, token: Token) -> LiveMarket:
        """The market, for the operator or the market's own control token."""
        if is_operator(token):
            operator(request, token, "control")
            return hub().get(market_id)
        return actor_for(request, market_id, token, "control").market

    # A default, not an Annotated alias: this module's annotations are strings, read in its
    # globals, where a name local to create_app is not.
    controlled = Depends(controller)

    @app.post("/api/markets", status_code=201, tags=["markets"], responses=ERRORS,
              dependencies=[Depends(creator)])
    async def create_market(body: CreateMarketBody) -> dict[str, Any]:
        """Start a live market (the operator). The control token in the reply is shown once;
        with `invite_code`, joining the market needs that code."""
        invite_code = body.invite_code
        live, control_token = await hub().create(
            CreateMarket.model_validate(body.model_dump(exclude={"invite_code"})), invite_code)
        return {"market_id": live.market_id, "control_token": control_token,
                "market": live.summary()}

    @app.get("/api/markets", tags=["markets"], responses=ANONYMOUS, dependencies=[Anonymous])
    async def list_markets() -> list[dict[str, Any]]:
        return hub().listing()

    @app.get("/api/markets/{market_id}", tags=["markets"], responses=ERRORS,
             dependencies=[Anonymous])
    async def market_snapshot(market_id: MarketId) -> dict[str, Any]:
        """The market now: clock, open orders with their bids, active leases, prices,
        headline metrics, the provider leaderboard and who joined."""
        return views.snapshot(hub().get(market_id))

    @app.post("/api/markets/{market_id}/pause", tags=["control"], responses=ERRORS)
    async def pause(live: LiveMarket = controlled) -> dict[str, Any]:
        """Pause the clock (the operator, or the market's control token)."""
        return await live.control("pause")

    @app.post("/api/markets/{market_id}/resume", tags=["control"], responses=ERRORS)
    async def resume(live: LiveMarket = controlled) -> dict[str, Any]:
        return await live.control("resume")

    @app.post("/api/markets/{market_id}/stop", tags=["control"], responses=ERRORS)
    async def stop(live: LiveMarket = controlled) -> dict[str, Any]:
        """End the market: active leases are settled and it takes no more commands; its
        tokens stop acting, and it leaves memory after the server's eviction grace."""
        return await live.control("stop")

    @app.put("/api/markets/{market_id}/speed", tags=["control"], responses=ERRORS)
    async def speed(body: Speed, live: LiveMarket = controlled) -> dict[str, Any]:
        return await live.control("speed", body.speed)

    @app.get("/api/markets/{market_id}/events", tags=["markets"], responses=ERRORS,
             dependencies=[Anonymous])
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
    async def join(request: Request, market_id: MarketId,
                   body: Annotated[JoinBody, Body()]) -> dict[str, Any]:
        """Join as a tenant, or as a provider with one machine's GPUs, with the market's
        `invite_code` if it has one. The token in the reply is shown once: it acts as this
        participant from now on."""
        live = hub().get(market_id)
        hub().admit(live, body.invite_code, address(request))
        token = new_token("gmp")
        tenant = isinstance(body, JoinTenantBody)
        command = (JoinTenant if tenant else JoinProvider).model_validate(
            body.model_dump(exclude={"invite_code"}))  # the code is never logged
        reply = await live.enqueue("join_tenant" if tenant else "join_provider", command,
                                   None, token_hash(token))
        return {**reply["result"], "token": token}

    @app.get("/api/markets/{market_id}/me", tags=["participants"], responses=ERRORS)
    async def whoami(request: Request, market_id: MarketId, token: Token) -> dict[str, Any]:
        """The participant's own view; it stays readable after the market ends (the final
        wallet), until the market leaves memory."""
        actor = actor_for(request, market_id, token, None, acting=False)
        if actor.participant is None:
            raise CommandError("forbidden", "this needs a participant token")
        return views.me(actor.market, actor.participant)

    @app.post("/api/markets/{market_id}/orders", status_code=201, tags=["trading"],
              responses=ERRORS)
    async def post_order(request: Request, market_id: MarketId, body: PostOrder,
                         token: Token) -> CommandReply:
        """Post a job for bids (tenants)."""
        actor = actor_for(request, market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "post_order", body, actor))

    @app.delete("/api/markets/{market_id}/orders/{order_id}", tags=["trading"],
                responses=ERRORS)
    async def cancel_order(request: Request, market_id: MarketId, order_id: ItemId,
                           token: Token) -> CommandReply:
        actor = actor_for(request, market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "cancel_order",
                                            CancelOrder(order_id=order_id), actor))

    @app.post("/api/markets/{market_id}/orders/{order_id}/bids", status_code=201,
              tags=["trading"], responses=ERRORS)
    async def bid(request: Request, market_id: MarketId, order_id: ItemId, body: BidBody,
                  token: Token) -> CommandReply:
        """Bid on an open order (providers), USD per GPU-hour."""
        actor = actor_for(request, market_id, token, "provider")
        return CommandReply(**await command(actor.market, "bid", Bid(
            order_id=order_id, price_usd_per_gpu_hour=body.price_usd_per_gpu_hour), actor))

    @app.post("/api/markets/{market_id}/orders/{order_id}/accept", tags=["trading"],
              responses=ERRORS)
    async def accept(request: Request, market_id: MarketId, order_id: ItemId,
                     body: AcceptBody, token: Token) -> CommandReply:
        """Accept a bid on your order (tenants who pick by hand)."""
        actor = actor_for(request, market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "accept", Accept(
            order_id=order_id, bid_id=body.bid_id), actor))

    @app.post("/api/markets/{market_id}/orders/{order_id}/hold", tags=["trading"],
              responses=ERRORS)
    async def hold_order(request: Request, market_id: MarketId, order_id: ItemId,
                         token: Token) -> CommandReply:
        """Keep the bids on your hand-picked order open while you choose, for the server's
        `--hold-s` wall seconds (an order posted with `auto_select` false is held at once)."""
        actor = actor_for(request, market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "hold_order",
                                            HoldOrder(order_id=order_id), actor))

    @app.post("/api/markets/{market_id}/orders/{order_id}/release", tags=["trading"],
              responses=ERRORS)
    async def release_order(request: Request, market_id: MarketId, order_id: ItemId,
                            token: Token) -> CommandReply:
        """End the hold on your order: bids older than the bid timeout are dropped now."""
        actor = actor_for(request, market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "release_order",
                                            ReleaseOrder(order_id=order_id), actor))

    @app.post("/api/markets/{market_id}/leases/{lease_id}/close", tags=["trading"],
              responses=ERRORS)
    async def close_lease(request: Request, market_id: MarketId, lease_id: ItemId,
                          body: CloseBody, token: Token) -> CommandReply:
        actor = actor_for(request, market_id, token, "tenant")
        return CommandReply(**await command(actor.market, "close_lease", CloseLease(
            lease_id=lease_id, reopen=body.reopen), actor))

    # ------------------------------------------------------------------ the stream

    @app.websocket("/api/markets/{market_id}/stream")
    async def stream(websocket: WebSocket, market_id: str) -> None:
        await websocket.accept()
        markets = hub()
        where = client_address(websocket.scope, proxies)
        try:
            markets.budgets.anonymous_request(where)  # a handshake costs what a request does
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
                _authenticate(markets, live, connection, token, where)
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
            await _receive(websocket, markets, live, connection, limits, pump, where)
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
                  token: str, address: str) -> dict[str, Any]:
    actor = markets.actor(live.market_id, token, address)
    if actor.participant is None:
        raise CommandError("forbidden", "a control token cannot trade; use a participant token")
    connection.participant = actor.participant
    connection.token_hash = actor.token_hash
    return actor.participant.to_dict()


#: Messages a websocket client may send in a row over its rate before it is disconnected: a
#: client that ignores the refusals (and their retry_after_s) is flooding.
FLOOD_MESSAGES = 100


async def _receive(websocket: WebSocket, markets: LiveMarkets, live: LiveMarket,
                   connection: Connection, limits: Limits, pump: asyncio.Task[None],
                   address: str) -> None:
    """Read the client's messages until it goes (or its pump ends); answer each with a reply
    or an error frame. Every message, pings too, spends the socket's budget (its token's,
    once authenticated) and its client address's; over it, a message is answered with a
    rate_limited error frame (with its id), and a client that sends FLOOD_MESSAGES in a row
    that way is disconnected (1008)."""
    replies: set[asyncio.Task[None]] = set()
    refused_in_a_row = 0
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
            limited: CommandError | None = None
            try:
                markets.budgets.acting(connection.token_hash or f"socket:{id(connection)}",
                                       address)
                refused_in_a_row = 0
            except CommandError as error:
                limited = error
                refused_in_a_row += 1
                if refused_in_a_row > FLOOD_MESSAGES:
                    await websocket.close(1008, "rate limit: too many messages")
                    return
            try:
                if len(raw.encode("utf-8")) > limits.max_message_bytes:
                    raise CommandError("too_large", f"message: larger than "
                                       f"{limits.max_message_bytes} bytes", "message")
                data = read_json(raw, "message")  # refuses NaN, 1e309, huge ints, deep nests
                if not isinstance(data, dict):
                    raise CommandError("invalid", "message: expected a JSON object with a "
                                       "`type`", "message")
                request_id = data.pop("id", None)
                if not isinstance(request_id, str | int | float | None) or \
                        isinstance(request_id, bool):
                    request_id = None
                    raise CommandError("invalid", "id: expected a string or a number", "id")
                if limited is not None:
                    raise limited
                kind = data.pop("type", None)
                if kind == "ping":
                    _reply(connection, request_id, live, {})
                    continue
                if kind == "auth":
                    token = data.get("token")
                    if not isinstance(token, str):
                        raise CommandError("invalid", "token: expected a string", "token")
                    _reply(connection, request_id, live,
                           _authenticate(markets, live, connection, token, address))
                    continue
                model = COMMANDS.get(kind) if isinstance(kind, str) else None
                if model is None:
                    raise CommandError("invalid", f"type: expected one of auth, ping, "
                                       f"{', '.join(COMMANDS)}; got {field_name([str(kind)])!r}",
                                       "type")
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

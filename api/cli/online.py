"""The commands around live markets: `serve` them (the API, the browser page, the session
log), `replay` a recorded one into the outputs of `gpumarket run`, and trade in one as a remote
provider `bot`. The live server and the remote bot are imported when a command runs, so that
`gpumarket --help` stays quick.

Exit codes beyond 0 and 2 (bad input): `bot` 130 when interrupted and 1 when the server failed
it mid-run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from api.cli.shared import INTERRUPTED, FormatOption, fail, output_format
from market.scenario import ScenarioError

if TYPE_CHECKING:
    from api.remote.replies import ApiError

def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=0, max=65535)] = 8000,
    db: Annotated[Path, typer.Option(help="session log (SQLite); live markets in it resume "
                                     "where they were")] = Path("gpumarket-sessions.db"),
    operator_token: Annotated[str | None, typer.Option(
        envvar="GPUMARKET_OPERATOR_TOKEN", show_envvar=True,
        help="the token that creates and controls markets (16+ printable characters); "
             "prefer the environment variable, which `ps` does not show; default: a new "
             "one, printed at start")] = None,
    allowed_hosts: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="a Host name the server answers to, besides the bind "
        "address and, bound to loopback, localhost and 127.0.0.1 (repeatable; *.example.org "
        "for subdomains)")] = None,
    trusted_proxies: Annotated[list[str] | None, typer.Option(
        "--trusted-proxy", help="the address of a reverse proxy whose X-Forwarded-For names "
        "the client (repeatable)")] = None,
    max_markets: Annotated[int, typer.Option(help="live markets per server", min=1)] = 16,
    max_connections: Annotated[int, typer.Option(
        help="websocket connections per market", min=1)] = 2000,
    max_participants: Annotated[int, typer.Option(
        help="participants per market", min=1)] = 200,
    max_message_bytes: Annotated[int, typer.Option(
        help="largest HTTP body or websocket message", min=256)] = 16_384,
    rate: Annotated[float, typer.Option(
        help="requests per second per token or websocket", min=0.01)] = 20.0,
    burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 40,
    address_rate: Annotated[float, typer.Option(
        help="requests per second per client address, all its tokens and sockets together",
        min=0.01)] = 50.0,
    address_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 100,
    anonymous_rate: Annotated[float, typer.Option(
        help="requests without a token (lists, snapshots, events, websocket handshakes) "
             "per second per client address", min=0.01)] = 10.0,
    anonymous_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 100,
    join_rate: Annotated[float, typer.Option(
        help="joins per second per client address", min=0.001)] = 0.5,
    join_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 20,
    market_join_rate: Annotated[float, typer.Option(
        help="joins per second per market, from everyone", min=0.001)] = 2.0,
    market_join_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 50,
    creates_per_minute: Annotated[float, typer.Option(
        help="market creations per minute per client address", min=0.001)] = 6.0,
    create_burst: Annotated[int, typer.Option(help="... in a burst", min=1)] = 20,
    evict_after: Annotated[float, typer.Option(
        help="wall seconds a stopped or finished market stays in memory (its log stays)",
        min=0.0)] = 600.0,
    body_timeout: Annotated[float, typer.Option(
        help="wall seconds a request body may take to arrive", min=0.1)] = 10.0,
    keep_alive_timeout: Annotated[int, typer.Option(
        help="wall seconds an idle HTTP connection is kept open", min=1)] = 5,
    max_concurrency: Annotated[int, typer.Option(
        help="connections and requests at once, websockets included; then 503", min=1)] = 10_000,
    max_header_bytes: Annotated[int, typer.Option(
        help="largest request line and headers", min=1024)] = 16_384,
    queue_frames: Annotated[int, typer.Option(
        help="frames a websocket client may fall behind before it is cut off", min=1)] = 256,
    history_events: Annotated[int, typer.Option(
        help="events kept per market for clients that resume", min=1)] = 200_000,
    tick: Annotated[float, typer.Option(
        help="wall seconds between tick boundaries", min=0.005, max=5.0)] = 0.1,
    ws_deflate: Annotated[bool, typer.Option(
        "--ws-deflate/--no-ws-deflate",
        help="compress websocket frames (per client: less bandwidth, much more CPU)")] = False,
    hold_s: Annotated[float, typer.Option(
        "--hold-s", help="wall seconds the bids on a hand-picked order stay open for its "
        "tenant to choose, at any speed (0: bids expire after the scenario's bid_timeout_s "
        "of simulated time)", min=0.0, max=3600.0)] = 60.0,
    demo: Annotated[bool, typer.Option(
        "--demo", help="open a guided demo market at start: the default week from a seed "
        "whose demand spike comes within hours, with captions saying what happens")] = False,
    demo_speed: Annotated[float, typer.Option(
        help="the demo market's speed, simulated seconds per wall second", min=1.0,
        max=100_000.0)] = 300.0,
) -> None:
    """Serve live markets: the browser page at /, the API under /api, docs at /docs."""
    import ipaddress
    import re
    import secrets
    import sqlite3

    import uvicorn

    from api.live.driver import Limits
    from api.live.exposure import default_hosts, is_loopback
    from api.live.markets import LiveMarkets
    from api.live.server import create_app
    from api.live.sessionlog import SessionLogError

    if operator_token is not None and not re.fullmatch(r"[\x21-\x7e]{16,256}", operator_token):
        raise fail("--operator-token: expected 16 to 256 printable characters without spaces")
    for proxy in trusted_proxies or []:
        try:
            ipaddress.ip_address(proxy)
        except ValueError:
            raise fail(f"--trusted-proxy: expected an IP address, got {proxy!r}") from None
    for name in allowed_hosts or []:
        if not re.fullmatch(r"(\*|(\*\.)?[A-Za-z0-9.:\[\]-]{1,253})", name):
            raise fail(f"--allowed-host: expected a host name, an address, *.domain or *; "
                       f"got {name!r}")
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with db.open("ab"):
            pass
    except OSError as error:
        raise fail(f"--db: cannot write {str(db)!r}: {error.strerror or error}") from None
    limits = Limits(max_markets=max_markets, max_connections_per_market=max_connections,
                    max_participants_per_market=max_participants,
                    max_message_bytes=max_message_bytes, rate_per_s=rate, rate_burst=burst,
                    address_rate_per_s=address_rate, address_burst=address_burst,
                    anonymous_rate_per_s=anonymous_rate, anonymous_burst=anonymous_burst,
                    join_rate_per_s=join_rate, join_burst=join_burst,
                    market_join_rate_per_s=market_join_rate,
                    market_join_burst=market_join_burst,
                    create_rate_per_s=creates_per_minute / 60, create_burst=create_burst,
                    evict_after_s=evict_after, body_timeout_s=body_timeout,
                    queue_frames=queue_frames, history_events=history_events, tick_s=tick,
                    hold_s=hold_s)
    hosts = [*default_hosts(host), *(allowed_hosts or [])]
    if not allowed_hosts and not is_loopback(host):
        Console(stderr=True, highlight=False).print(
            f"[bold yellow]warning:[/] only requests for {', '.join(hosts)} are answered; "
            "name the host clients use with --allowed-host")
    # A busy port is the commonest start-up failure: one line, before uvicorn logs anything.
    if port:
        problem = _check_port_free(host, port)
        if problem:
            raise fail(f"--port: {problem}")
    # Open the log before serving: a log another server holds, or one that is not a
    # session log, is refused here in one line rather than inside uvicorn's start-up.
    try:
        markets = LiveMarkets(db, limits)
    except (SessionLogError, sqlite3.DatabaseError) as error:
        raise fail(f"--db: {error}") from None
    generated = operator_token is None
    token = operator_token or f"gmo_{secrets.token_urlsafe(32)}"
    served = create_app(db, limits, operator_token=token, allowed_hosts=hosts,
                        trusted_proxies=trusted_proxies or (), markets=markets)
    # The websocket layer's own cap sits above ours: an oversized message gets an error frame
    # from the app and the connection stays open. Compression is per connection, so a frame
    # sent to 1,000 watchers would be deflated 1,000 times: off unless asked for.
    config = uvicorn.Config(
        served, host=host, port=port, log_level="info",
        ws_max_size=max(4 * max_message_bytes, 1 << 20), ws_ping_interval=20.0,
        ws_per_message_deflate=ws_deflate, timeout_keep_alive=keep_alive_timeout,
        limit_concurrency=max_concurrency, h11_max_incomplete_event_size=max_header_bytes)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            if not (generated and self.started and self.servers):
                return
            # Once listening, the real port is known (--port 0). The token goes to stdout
            # once, in the page's address (its fragment never reaches a server or a log).
            bound = self.servers[0].sockets[0].getsockname()
            name = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            name = f"[{name}]" if ":" in name else name
            sys.stdout.write(f"operator page: http://{name}:{bound[1]}/#operator={token}\n")
            sys.stdout.flush()

    async def open_demo(server: uvicorn.Server) -> None:
        from api.live.commands import CreateMarket
        from api.live.narration import demo_seed
        from market.scenario import load_scenario

        seed = demo_seed(load_scenario("default"))
        live, control = await markets.create(CreateMarket(
            scenario="default", seed=seed, speed=demo_speed, name="Guided demo"))
        bound = server.servers[0].sockets[0].getsockname()
        name = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        name = f"[{name}]" if ":" in name else name
        sys.stdout.write(f"demo market: http://{name}:{bound[1]}/#/m/{live.market_id} "
                         f"(control token {control})\n")
        sys.stdout.flush()

    class DemoServer(Server):
        async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            if self.started and self.servers:
                await open_demo(self)

    (DemoServer if demo else Server)(config).run()


def _check_port_free(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on, in one line, or None if it can."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a server just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return (f"{host}:{port} is already in use (another server?); stop it or "
                        "choose another --port")
            return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None


def replay(
    db: Annotated[Path, typer.Argument(help="a session log written by `gpumarket serve`")],
    market: Annotated[str, typer.Option(help="the market id, m-xxxxxxxx")],
    out: Annotated[Path | None, typer.Option(
        help="write summary.json and orders/leases/prices Parquet files here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON "
                                          "object on stdout")] = False,
    events: Annotated[bool, typer.Option(
        "--events", help="with --out: also write every event to events.parquet (what "
        "`gpumarket evaluate` reads)")] = False,
    fmt: FormatOption = None,
) -> None:
    """Replay a recorded live market to where it was, into the outputs of `gpumarket run`.

    Reads the log without locking it (a server may be writing it) and replays only what its
    checksums verify: a damaged or mixed log is refused naming the market and the command."""
    from api.live.replay import ReplayError, replay_market
    from api.live.sessionlog import SessionLogError

    shape = output_format(fmt, as_json)
    if events and out is None:
        raise fail("--events: needs --out DIR, the folder events.parquet is written to")
    if not db.is_file():
        raise fail(f"DB: {str(db)!r} is not a file")

    def note(message: str) -> None:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[yellow]note:[/] {escape(message)}")

    try:
        result = replay_market(db, market, out, note, events=events)
    except SessionLogError as error:
        raise fail(f"DB: {error}") from None
    except (ReplayError, LookupError, ScenarioError) as error:
        raise fail(str(error.args[0] if isinstance(error, LookupError) else error)) from None
    if shape == "json":
        sys.stdout.write(result.to_json() + "\n")
    else:
        from api.cli.report import show_run

        show_run(result.summary, shape, out)


def bot(
    url: Annotated[str, typer.Option(help="the server, e.g. http://127.0.0.1:8000")],
    market: Annotated[str, typer.Option(help="the market id, m-xxxxxxxx")],
    strategy: Annotated[str, typer.Option(help="a registered bid strategy, e.g. cost_plus")],
    params: Annotated[list[str] | None, typer.Option(
        "--param", help="a strategy parameter: NAME=VALUE, value read as TOML (repeatable)",
        metavar="NAME=VALUE")] = None,
    name: Annotated[str, typer.Option(help="the provider's name in the market")] = "bot",
    gpu_model: Annotated[str, typer.Option(help="a catalog GPU id (gpumarket's GPU "
                                           "catalog, e.g. h100)")] = "h100",
    gpus: Annotated[int, typer.Option(help="GPUs in the machine", min=1, max=1024)] = 8,
    archetype: Annotated[str, typer.Option(
        help="cost model: datacenter, home_rig or hyperscaler")] = "datacenter",
    wallet_usd: Annotated[float, typer.Option(help="starting wallet, USD", min=0)] = 1000.0,
    token: Annotated[str | None, typer.Option(
        help="act as the provider that joined with this token instead of joining")] = None,
    stop_after: Annotated[float | None, typer.Option(
        help="stop after this many wall seconds")] = None,
    max_orders: Annotated[int | None, typer.Option(
        help="stop after pricing this many orders")] = None,
    invite_code: Annotated[str | None, typer.Option(
        help="the market's invite code, if it has one")] = None,
    status_every: Annotated[float, typer.Option(
        help="wall seconds between status lines (bids sent, accepted, refused by reason, "
             "leases, revenue); 0: none", min=0)] = 10.0,
) -> None:
    """Run a bid strategy as a remote provider in a live market (the same strategy classes
    as offline runs and tournaments)."""
    try:
        code = bot_command(url, market, strategy, params or [], name=name, gpu_model=gpu_model,
                           gpus=gpus, archetype=archetype, wallet_usd=wallet_usd, token=token,
                           stop_after=stop_after, max_orders=max_orders,
                           invite_code=invite_code, status_every_s=status_every or None,
                           log=lambda line: typer.echo(line))
    except ValueError as error:
        raise fail(str(error)) from None
    raise typer.Exit(code)


#: Bot options by the server's field names, as the command line spells them.
_OPTIONS = {"name": "--name", "gpu_model": "--gpu-model", "gpus": "--gpus",
            "archetype": "--archetype", "wallet_usd": "--wallet-usd",
            "invite_code": "--invite-code"}


def bot_command(url: str, market_id: str, strategy_name: str, params: list[str], *,
                name: str, gpu_model: str, gpus: int, archetype: str, wallet_usd: float,
                token: str | None, stop_after: float | None, max_orders: int | None,
                log: Callable[[str], Any], invite_code: str | None,
                status_every_s: float | None) -> int:
    """`gpumarket bot`: run strategy `strategy_name` with `params` (``NAME=VALUE``, values
    TOML-typed) as a provider bot. Returns the exit code (0; 130 after Ctrl-C; 1 when the
    server failed mid-run). Bad input (unknown strategy, bad parameter, unreachable server,
    unknown market, refused join or token) raises ValueError with one line naming the
    argument."""
    from api.remote.bot import Bot
    from api.remote.replies import ApiError
    from api.remote.strategy_args import make_strategy, parse_params

    strategy = make_strategy(strategy_name, parse_params(params))
    if stop_after is not None and not stop_after > 0:
        raise ValueError(f"--stop-after: expected wall seconds > 0, got {stop_after}")
    if max_orders is not None and not max_orders > 0:
        raise ValueError(f"--max-orders: expected a count > 0, got {max_orders}")
    bot = Bot(url, market_id, strategy, name=name, gpu_model=gpu_model, gpus=gpus,
              archetype=archetype, wallet_usd=wallet_usd, token=token, max_orders=max_orders,
              stop_after_s=stop_after, log=log, invite_code=invite_code,
              status_every_s=status_every_s)
    try:
        summary = bot.run_blocking()
    except ApiError as error:
        if not bot.started:
            raise ValueError(_argument_error(error, url, market_id, token)) from None
        log(f"{name}: {error}")
        return 1
    return INTERRUPTED if summary["stopped_by"] == "interrupted" else 0


def _argument_error(error: ApiError, url: str, market_id: str, token: str | None) -> str:
    """An error met while starting, as one line naming the argument at fault."""
    if error.code in ("unreachable", "timeout"):
        return f"--url: cannot reach a gpumarket server at {url} ({error.message})"
    if error.code == "not_found":
        return f"--market: no market {market_id!r} on {url}"
    if error.code == "gone":
        return f"--market: {error.message}"
    if error.field in _OPTIONS:
        message = error.message.removeprefix(f"{error.field}: ")
        return f"{_OPTIONS[error.field]}: {message}"
    if token is not None and error.code in ("unauthorized", "forbidden"):
        return f"--token: {error.message}"
    if error.code in ("conflict", "unavailable"):
        return f"--market: {error.message}"
    return f"--url: {error}"

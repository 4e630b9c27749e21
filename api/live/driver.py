"""Live markets: one asyncio task per market advances its simulated clock at a chosen speed,
applies queued outside commands at tick boundaries, and fans the numbered events out to
websocket connections.

A tick is `Limits.tick_s` of wall time. At each boundary the driver
1. applies the commands queued since the last one, at the current simulated time, and commits
   them to the session log before acknowledging them (a single writer: no locks);
2. advances the market by `speed` × the wall time that passed, in slices that give the event
   loop back every few milliseconds, so HTTP and sockets stay responsive;
3. records the clock, then publishes the tick's events as one frame to every connection.
Because every event a client has seen comes from logged commands and a logged clock, a server
killed at any moment replays to the same events with the same sequence numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from api.live.commands import CommandError, HoldOrder, ReleaseOrder
from api.live.series import figures
from api.live.session import Participant, Session
from api.live.sessionlog import SessionLog
from api.wire import LIVE_STATES

log = logging.getLogger("gpumarket.live")

CONTROLS = ("pause", "resume", "stop", "speed")
#: States a market can be in; the first two (`LIVE_STATES`) are live (they have a driver task).
STATES = (*LIVE_STATES, "stopped", "finished", "failed", "damaged")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one server allows; every limit is configurable (`gpumarket serve --help`).

    Rates are token buckets: `*_per_s` sustained, `*_burst` at once; over them a request gets
    429 with `Retry-After`. A "client address" is the peer's IP address, or behind a trusted
    proxy the one it forwards (`--trusted-proxy`)."""

    max_markets: int = 16                  # live (running or paused) markets per server
    max_connections_per_market: int = 2000
    max_participants_per_market: int = 200
    max_message_bytes: int = 16_384        # HTTP bodies and websocket messages
    rate_per_s: float = 20.0               # requests per second per token or websocket
    rate_burst: int = 40                   # ... and in a burst
    # Every token and socket of one client address together: joining more participants buys
    # no more requests.
    address_rate_per_s: float = 50.0
    address_burst: int = 100
    # Requests without a token (lists, snapshots, events, websocket handshakes), per address.
    anonymous_rate_per_s: float = 10.0
    anonymous_burst: int = 100
    join_rate_per_s: float = 0.5           # joins per client address
    join_burst: int = 20
    market_join_rate_per_s: float = 2.0    # joins per market, whoever asks
    market_join_burst: int = 50
    create_rate_per_s: float = 0.1         # market creations per client address
    create_burst: int = 20
    queue_frames: int = 256                # frames a connection may fall behind before it is cut
    history_events: int = 200_000          # events kept per market for resuming clients
    max_speed: float = 1_000_000.0         # simulated seconds per wall second
    tick_s: float = 0.1                    # wall seconds between tick boundaries
    evict_after_s: float = 600.0           # wall seconds an ended market stays in memory
    body_timeout_s: float = 10.0           # wall seconds a request body may take to arrive
    # Wall seconds a hand-picked order's bids stay open for its tenant to choose (0: no holds):
    # at 600x, 300 simulated seconds of bid timeout would be half a wall second.
    hold_s: float = 60.0


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


class RateLimiter:
    """Token buckets by key: `rate_per_s` sustained, `burst` at once; `what` names what is
    counted, for the refusal's message ("requests per token")."""

    def __init__(self, rate_per_s: float, burst: int, what: str = "requests") -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.what = what
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def check(self, key: str) -> None:
        """Take one token for `key`, or raise CommandError rate_limited."""
        take((self, key))

    def refusal(self, level: float) -> CommandError:
        wait_s = (1.0 - level) / self.rate
        return CommandError("rate_limited", f"rate limit: {self.rate:g} {self.what} per second "
                            f"(burst {self.burst:g}); retry in {wait_s:.2f} s",
                            retry_after_s=wait_s)

    def _set(self, key: str, level: float, now: float) -> None:
        self._buckets[key] = (level, now)
        if len(self._buckets) > 100_000:  # forget idle keys: a full bucket is no state
            self._buckets = {k: v for k, v in self._buckets.items()
                             if v[0] + (now - v[1]) * self.rate < self.burst}


def take(*buckets: tuple[RateLimiter, str]) -> None:
    """Take one token from each (limiter, key), or from none: raises CommandError
    rate_limited (with the longest wait) when any of them is empty."""
    now = time.monotonic()
    levels = [limiter._level(key, now) for limiter, key in buckets]
    refused = [limiter.refusal(level) for (limiter, _), level in zip(buckets, levels,
                                                                      strict=True)
               if level < 1.0]
    if refused:
        raise max(refused, key=lambda error: error.retry_after_s or 0.0)
    for (limiter, key), level in zip(buckets, levels, strict=True):
        limiter._set(key, level - 1.0, now)


class Budgets:
    """Every rate limit of one server (see `Limits`), by what they count."""

    def __init__(self, limits: Limits) -> None:
        self.token = RateLimiter(limits.rate_per_s, limits.rate_burst,
                                 "requests per token or websocket")
        self.address = RateLimiter(limits.address_rate_per_s, limits.address_burst,
                                   "requests per client address (all its tokens together)")
        self.anonymous = RateLimiter(limits.anonymous_rate_per_s, limits.anonymous_burst,
                                     "requests without a token per client address")
        self.joins = RateLimiter(limits.join_rate_per_s, limits.join_burst,
                                 "joins per client address")
        self.market_joins = RateLimiter(limits.market_join_rate_per_s,
                                        limits.market_join_burst, "joins per market")
        self.creates = RateLimiter(limits.create_rate_per_s, limits.create_burst,
                                   "market creations per client address")

    def acting(self, token_key: str, address: str) -> None:
        """A request or socket message acting as `token_key` (a token's hash, a socket's id)
        from `address`: its own budget and its address's."""
        take((self.token, token_key), (self.address, address))

    def anonymous_request(self, address: str) -> None:
        take((self.anonymous, address))


class Connection:
    """One websocket client: a bounded queue of frames and the task that sends them.

    `offer` never waits: a client that falls `queue_frames` behind is told (`too_slow`, with
    the sequence number to resume from) and disconnected, so it never slows the market.
    """

    GRACE_S = 2.0  # how long a cut-off client has to take the notice before the socket goes

    def __init__(self, send: Callable[[str], Awaitable[None]],
                 close: Callable[[int, str], Awaitable[None]], queue_frames: int,
                 sent_seq: int, clock: Callable[[], dict[str, Any]]) -> None:
        self._send = send
        self._clock = clock
        self._close = close
        self.queue: asyncio.Queue[tuple[str, dict[str, Any] | None] | None] = \
            asyncio.Queue(queue_frames)
        self.sent_seq = sent_seq   # the last event seq handed to the socket
        self.closing = False
        self.participant: Participant | None = None
        self.token_hash: str | None = None
        self.task: asyncio.Task[None] | None = None   # the pump, once started
        self._closer: asyncio.Task[None] | None = None

    def offer(self, text: str, frame: dict[str, Any] | None = None) -> None:
        """Queue one frame (`frame`: its data, for an events frame)."""
        if self.closing:
            return
        try:
            self.queue.put_nowait((text, frame))
        except asyncio.QueueFull:
            self.closing = True
            while not self.queue.empty():  # what it has not got, it resumes with `since`
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            # A client that reads nothing at all leaves the pump stuck in a send: give the
            # notice a moment to go out, then cut the connection anyway.
            asyncio.get_running_loop().call_later(self.GRACE_S, self._abort)

    def _abort(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def cut(self, code: int = 1001, reason: str = "the market has ended and left memory"
            ) -> None:
        """End the connection now (its market is going away): stop sending, and close the
        socket with `code` and `reason`."""
        self.closing = True
        self._abort()
        self._closer = asyncio.get_running_loop().create_task(self._close_quietly(code, reason))

    async def _close_quietly(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._close(code, reason)

    async def pump(self, history: list[dict[str, Any]], chunk: int = 1000) -> None:
        """Send the missed `history` first, then the live frames, until closed."""
        for start in range(0, len(history), chunk):
            events = history[start:start + chunk]
            await self._send(dumps(_events_frame(events, self._clock())))
            self.sent_seq = events[-1]["seq"]
        while True:
            item = await self.queue.get()
            if item is None:
                notice = {"type": "error", "id": None, "code": "too_slow",
                          "message": "the connection fell too far behind; reconnect with "
                                     f"?since={self.sent_seq}",
                          "field": None, "resume_since": self.sent_seq}
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._send(dumps(notice)), self.GRACE_S)
                with contextlib.suppress(Exception):
                    await self._close(4008, "too slow")
                return
            text, frame = item
            if frame is not None:
                if frame["last_seq"] <= self.sent_seq:
                    continue  # delivered with the history already
                if frame["first_seq"] <= self.sent_seq:  # partly: send only what is new
                    text = dumps({**frame, "first_seq": self.sent_seq + 1, "events": [
                        e for e in frame["events"] if e["seq"] > self.sent_seq]})
                await self._send(text)
                self.sent_seq = frame["last_seq"]
            else:
                await self._send(text)


def _events_frame(events: list[dict[str, Any]], clock: dict[str, Any]) -> dict[str, Any]:
    return {"type": "events", "first_seq": events[0]["seq"], "last_seq": events[-1]["seq"],
            **clock, "events": events}


@dataclass
class _Queued:
    kind: str
    body: Any
    actor: Participant | None
    token_hash: str | None
    future: asyncio.Future[dict[str, Any]]


@dataclass
class LiveMarket:
    """A market that runs in wall time, with people, bots and watchers attached."""

    market_id: str
    name: str
    scenario_name: str
    session: Session
    log: SessionLog
    limits: Limits
    speed: float
    state: str
    control_hash: str
    on_token: Callable[[str, str, int], None]   # (token hash, market id, participant id)
    invite_hash: str | None = None   # SHA-256 of the invite code joins need; None: open
    connections: set[Connection] = field(default_factory=set)
    published_seq: int = 0
    error: str | None = None
    lagging: bool = False     # the machine cannot simulate as fast as `speed` asks
    _queue: list[_Queued] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _state_changed: bool = False
    # Held orders (see `Market.hold_order`) -> the wall time (time.monotonic) their hold ends.
    hold_deadlines: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.published_seq = self.session.seq
        # A market rebuilt from its log (a restart) may hold orders whose wall-clock time
        # went with the old process: each gets a full hold again, then ends as usual.
        restart = time.monotonic() + self.limits.hold_s
        for order_id in self.session.market.held_orders():
            self.hold_deadlines[order_id] = restart

    # ------------------------------------------------------------------ views

    @property
    def horizon_s(self) -> float:
        return self.session.market.horizon_s

    def clock(self) -> dict[str, Any]:
        return {"clock_s": self.session.market.now, "state": self.state, "speed": self.speed,
                "sent_at": time.time()}

    def live_view(self) -> dict[str, Any]:
        """What every frame carries besides events, as of its last event: the headline
        figures, the newest chart buckets, the newest caption and the holds' countdowns."""
        market = self.session.market
        return {"figures": figures(market), "series": self.session.series.tail(market.now),
                "caption": self.session.narrator.latest, "holds": self.hold_countdowns()}

    def hold_countdowns(self) -> dict[str, float]:
        """Held orders (by id, as strings: JSON keys) and the wall seconds each has left."""
        now = time.monotonic()
        return {str(order_id): max(deadline - now, 0.0)
                for order_id, deadline in self.hold_deadlines.items()}

    def summary(self) -> dict[str, Any]:
        return {"market_id": self.market_id, "name": self.name,
                "scenario": self.scenario_name, "seed": self.session.market.seed,
                "state": self.state, "clock_s": self.session.market.now,
                "horizon_s": self.horizon_s, "speed": self.speed, "seq": self.published_seq,
                "participants": len(self.session.participants),
                "connections": len(self.connections), "lagging": self.lagging,
                "error": self.error, "invite_required": self.invite_hash is not None}

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        if self.state in LIVE_STATES and self._task is None:
            self._task = asyncio.create_task(self._drive(), name=f"market {self.market_id}")

    async def shutdown(self) -> None:
        """Stop driving (the server is going down); the log keeps the market live."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(CommandError("unavailable", "the server is stopping"))
        self._queue.clear()

    def control(self, action: str, speed: float | None = None) -> asyncio.Future[dict[str, Any]]:
        """Queue `action` (pause, resume, stop, speed) for the next tick boundary, like any
        command: a stop then ends the run at a boundary, where a replay can end it too."""
        if action == "speed" and not (speed is not None and 0 < speed <= self.limits.max_speed):
            raise CommandError("invalid", f"speed: must be > 0 and <= {self.limits.max_speed:g}"
                               " simulated seconds per wall second", "speed")
        future = self.enqueue(action, speed, None)
        self._wake.set()  # control acts at once, not at the end of the tick
        return future

    def _control(self, action: str, speed: float | None) -> None:
        if action == "speed":
            self.speed = float(speed)  # type: ignore[arg-type]
            self.log.update(self.market_id, speed=self.speed)
        else:
            if action == "stop":
                self.session.market.finish()  # settle active leases: the run ends here
            self.state = {"pause": "paused", "resume": "running", "stop": "stopped"}[action]
            self.log.update(self.market_id, state=self.state, clock_s=self.session.market.now)
        self._state_changed = True

    # ------------------------------------------------------------------ commands

    def enqueue(self, kind: str, body: Any, actor: Participant | None,
                token_hash: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """Queue a validated command for the next tick boundary; the future gets its reply
        (or a CommandError) once it is applied and logged."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.state not in LIVE_STATES:
            future.set_exception(CommandError("conflict",
                                              f"market {self.market_id} is {self.state}"))
            return future
        if kind.startswith("join_") and \
                len(self.session.participants) + sum(q.kind.startswith("join_")
                                                     for q in self._queue) \
                >= self.limits.max_participants_per_market:
            future.set_exception(CommandError(
                "unavailable", f"market {self.market_id} has its maximum of "
                f"{self.limits.max_participants_per_market} participants"))
            return future
        self._queue.append(_Queued(kind, body, actor, token_hash, future))
        if self.state == "paused":
            self._wake.set()  # a paused market applies commands at once
        return future

    def _apply_commands(self) -> None:
        queued, self._queue = self._queue, []
        if not queued:
            return
        session = self.session
        now = session.market.now
        accepted: list[tuple[_Queued, dict[str, Any]]] = []
        for item in queued:
            if item.future.done():  # the caller went away: it was never acknowledged
                continue
            if item.kind in CONTROLS:
                self._control(item.kind, item.body)
                item.future.set_result(self.summary())
                continue
            try:
                result = self._apply_one(item)
            except CommandError as error:
                item.future.set_exception(error)
                continue
            accepted.append((item, result))
            hold = self._hold_for(item, result)
            if hold is not None:
                accepted.append(hold)
        if not accepted:
            return
        rows = [(now, None if item.actor is None else item.actor.participant_id, item.kind,
                 item.body.model_dump(mode="json"), item.token_hash)
                for item, _ in accepted]
        try:
            self.log.append(self.market_id, rows, now)
        except Exception as error:  # the market is ahead of its log: it cannot go on
            for item, _ in accepted:
                item.future.set_exception(CommandError("unavailable",
                                                       "the session log cannot be written"))
            raise RuntimeError(f"session log write failed: {error}") from error
        for item, result in accepted:
            if item.token_hash is not None:
                self.on_token(item.token_hash, self.market_id, result["participant_id"])
            if not item.future.done():
                item.future.set_result({"ok": True, "seq": session.seq, "clock_s": now,
                                        "result": result})

    # ------------------------------------------------------------------ holds

    def _apply_one(self, item: _Queued) -> dict[str, Any]:
        if item.kind == "hold_order":
            if self.limits.hold_s <= 0:
                raise CommandError("conflict", "this server keeps no holds (serve --hold-s 0)")
            result = self.session.apply(item.kind, item.body, item.actor)
            self.hold_deadlines.setdefault(item.body.order_id,
                                           time.monotonic() + self.limits.hold_s)
            return result
        result = self.session.apply(item.kind, item.body, item.actor)
        if item.kind == "release_order":
            self.hold_deadlines.pop(item.body.order_id, None)
        return result

    def _hold_for(self, item: _Queued, result: dict[str, Any]
                  ) -> tuple[_Queued, dict[str, Any]] | None:
        """A person or bot that posts a hand-picked order gets `hold_s` wall seconds to pick
        a bid, whatever the speed: the hold is a command of its own, logged with the post, so
        a replay holds the order at the same simulated time."""
        if item.kind != "post_order" or item.body.auto_select or self.limits.hold_s <= 0:
            return None
        hold = _Queued("hold_order", HoldOrder(order_id=result["order_id"]), item.actor, None,
                       asyncio.get_running_loop().create_future())
        try:
            return hold, self._apply_one(hold)
        except CommandError:  # not holdable (closed at once): its bids expire as usual
            return None

    def _release_expired_holds(self, paused_s: float) -> None:
        """Queue the release of every hold whose wall time is up (a paused market's holds
        wait: their deadlines move on by the pause). The release is the market's own
        command, logged like any other."""
        if not self.hold_deadlines:
            return
        market = self.session.market
        now = time.monotonic()
        for order_id, deadline in list(self.hold_deadlines.items()):
            if not market.held(order_id):  # leased, cancelled or closed meanwhile
                del self.hold_deadlines[order_id]
            elif paused_s > 0:
                self.hold_deadlines[order_id] = deadline + paused_s
            elif deadline <= now and not any(q.kind == "release_order"
                                             and q.body.order_id == order_id
                                             for q in self._queue):
                self._queue.append(_Queued(
                    "release_order", ReleaseOrder(order_id=order_id), None, None,
                    asyncio.get_running_loop().create_future()))

    # ------------------------------------------------------------------ the driver

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        last_wall = loop.time()
        last_frame = last_wall
        market = self.session.market
        try:
            while self.state in LIVE_STATES:
                self._wake.clear()
                if self.state == "paused":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.limits.tick_s)
                now_wall = loop.time()
                elapsed_s, last_wall = now_wall - last_wall, now_wall
                self._release_expired_holds(elapsed_s if self.state == "paused" else 0.0)
                self._apply_commands()
                if self.state == "running":
                    target = min(market.now + self.speed * elapsed_s, self.horizon_s)
                    await self._advance(target)
                    if market.finished:
                        self.state = "finished"
                        self._state_changed = True
                    if market.finished:
                        self.log.update(self.market_id, clock_s=market.now, state=self.state)
                    else:
                        self.log.record_clock(self.market_id, market.now)
                published = self._publish()
                if published or self._state_changed or now_wall - last_frame >= 1.0:
                    if not published:
                        self._broadcast(dumps({"type": "clock", "seq": self.published_seq,
                                               **self.clock(), **self.live_view()}))
                    last_frame = now_wall
                    self._state_changed = False
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("market %s failed", self.market_id)
            self.error = f"{type(error).__name__}: {error}"
            self.state = "failed"
            with contextlib.suppress(Exception):
                self.log.update(self.market_id, state="failed", failure=self.error)
            self._broadcast(dumps({"type": "clock", "seq": self.published_seq,
                                   **self.clock()}))
        finally:
            for item in self._queue:
                if not item.future.done():
                    item.future.set_exception(CommandError(
                        "conflict", f"market {self.market_id} is {self.state}"))
            self._queue.clear()

    async def _advance(self, target_s: float, slice_s: float = 0.02) -> None:
        """Run the market to `target_s`, giving the event loop back every `slice_s` wall
        seconds, and for at most one tick of wall time: a market asked to go faster than
        this machine can simulate runs as fast as it can, in ticks that stay short.

        The tick then ends just before the next event's time, once every event at the current
        time is done. Either way all events before the boundary and none at or after it have
        happened, which is what a replay's `run(until=boundary)` meets too."""
        env = self.session.market.env
        clock = time.perf_counter
        started = clock()
        while env.peek() < target_s:
            slice_started = clock()
            steps = 0
            while env.peek() < target_s:
                env.step()
                steps += 1
                if steps % 64 == 0 and clock() - slice_started > slice_s:
                    break
            if clock() - started > self.limits.tick_s and env.peek() < target_s:
                now = env.now
                while env.peek() == now:  # finish this instant: a boundary falls between
                    env.step()
                target_s = min(env.peek(), target_s)
                self.lagging = True
                break
            if env.peek() < target_s:
                await asyncio.sleep(0)
        else:
            self.lagging = False
        self.session.advance(target_s)

    def _publish(self) -> bool:
        """Send the events since the last frame as one frame; False if there were none."""
        events = self.session.take_pending()
        if not events:
            return False
        frame = _events_frame(events, self.clock())
        if self.connections:  # nobody watching: no figures to build
            frame.update(self.live_view())
        self.published_seq = frame["last_seq"]
        text = dumps(frame)
        for connection in list(self.connections):
            connection.offer(text, frame)
        return True

    def _broadcast(self, text: str) -> None:
        for connection in list(self.connections):
            connection.offer(text)

    # ------------------------------------------------------------------ connections

    def connect(self, connection: Connection, since: int | None) -> list[dict[str, Any]]:
        """Attach `connection`; returns the kept events it missed (seq > `since`, up to the
        last published frame). Synchronous: nothing is published between the two."""
        if len(self.connections) >= self.limits.max_connections_per_market:
            raise CommandError("unavailable", f"market {self.market_id} has its maximum of "
                               f"{self.limits.max_connections_per_market} connections")
        self.connections.add(connection)
        if since is None or since >= self.published_seq:
            connection.sent_seq = self.published_seq if since is None else since
            return []
        connection.sent_seq = since
        missed = self.session.since(since)
        return [e for e in missed if e["seq"] <= self.published_seq]

    def disconnect(self, connection: Connection) -> None:
        self.connections.discard(connection)


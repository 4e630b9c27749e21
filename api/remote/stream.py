"""A live market's numbered events over a websocket, in order, never duplicated and never
skipped: `Stream` resumes with `?since=` after a dropped connection or a cut-off as too slow,
and carries commands over the same socket (`Stream.command`), which is how a bot bids without a
round of HTTP per order. `Client.stream(market_id)` opens one.

Events keep the engine's integer micro-USD (`*_micro`, `*_micro_per_hour` for a whole order);
times are simulated seconds (`*_s`). Every refusal is an `ApiError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections import deque
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from api.remote.replies import ApiError, CommandResult
from api.wire import LIVE_STATES


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

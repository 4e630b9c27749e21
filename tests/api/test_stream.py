"""The websocket stream against a real uvicorn on 127.0.0.1: numbered events with no gap or
duplicate, resuming with `since`, commands over the socket with typed replies and errors,
bad messages that leave the connection open, and slow clients cut off without slowing the
market."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.live.driver import Connection, dumps

if TYPE_CHECKING:
    from tests.conftest import Server

WAIT_S = 30.0


def _create(server: Server, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/markets", json={"speed": 3000, **body},
                          headers=server.operator, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def _join(url: str, market_id: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/api/markets/{market_id}/participants", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


async def _frames_until(ws, done, timeout_s: float = WAIT_S) -> list[dict[str, Any]]:
    """Receive frames until `done(frames)` (bounded)."""
    frames: list[dict[str, Any]] = []

    async def collect() -> None:
        while not done(frames):
            frames.append(json.loads(await ws.recv()))

    await asyncio.wait_for(collect(), timeout_s)
    return frames


def _events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for f in frames if f["type"] == "events" for e in f["events"]]


def _last_seq(frames: list[dict[str, Any]]) -> int:
    events = _events(frames)
    return events[-1]["seq"] if events else 0


def test_events_are_numbered_and_resume_without_gap_or_duplicate(serve):
    server = serve()
    market_id = _create(server)["market_id"]
    stream = f"{server.ws_url}/api/markets/{market_id}/stream"

    async def scenario() -> None:
        async with connect(f"{stream}?since=0") as ws:
            frames = await _frames_until(ws, lambda f: _last_seq(f) >= 60)
        assert frames[0]["type"] == "hello" and frames[0]["market_id"] == market_id
        first = _events(frames)
        assert [e["seq"] for e in first] == list(range(1, len(first) + 1))
        for frame in frames[1:]:
            if frame["type"] == "events":
                assert frame["first_seq"] == frame["events"][0]["seq"]
                assert frame["last_seq"] == frame["events"][-1]["seq"]
                assert frame["clock_s"] >= frame["events"][-1]["time_s"]
        async with connect(f"{stream}?since=30") as ws:
            again = _events(await _frames_until(ws, lambda f: _last_seq(f) >= 60))
        assert again[0]["seq"] == 31
        assert again[:30] == first[30:60]  # the same events, byte for byte as data
        async with connect(stream) as ws:  # no since: from now on, no history
            frames = await _frames_until(ws, lambda f: len(_events(f)) > 0)
        assert _events(frames)[0]["seq"] == frames[0]["seq"] + 1

    asyncio.run(scenario())


def test_commands_over_the_socket_get_typed_replies_and_errors(serve):
    server = serve(None, "--max-message-bytes", "1024")
    market_id = _create(server, speed=600)["market_id"]
    alice = _join(server.url, market_id, role="tenant", name="alice")
    stream = f"{server.ws_url}/api/markets/{market_id}/stream"

    async def ask(ws, message: dict[str, Any] | str) -> dict[str, Any]:
        await ws.send(message if isinstance(message, str) else json.dumps(message))
        frames = await _frames_until(ws, lambda f: f and f[-1]["type"] in ("reply", "error"))
        return frames[-1]

    async def scenario() -> None:
        async with connect(stream) as ws:  # a watcher: it may look, not trade
            refused = await ask(ws, {"type": "post_order", "id": 1, "gpu_models": ["h100"],
                                     "max_price_usd_per_gpu_hour": 2.0})
            assert refused["code"] == "unauthorized" and refused["id"] == 1
            bad_token = await ask(ws, {"type": "auth", "id": 2, "token": "gmp_nope"})
            assert bad_token["code"] == "unauthorized"
            authed = await ask(ws, {"type": "auth", "id": 3, "token": alice["token"]})
            assert authed["ok"] and authed["result"]["role"] == "tenant"
            posted = await ask(ws, {"type": "post_order", "id": "a", "gpu_models": ["h100"],
                                    "max_price_usd_per_gpu_hour": 2.0, "auto_select": True})
            assert posted["type"] == "reply" and posted["id"] == "a"
            order_id = posted["result"]["order_id"]
            cases = [
                ("not json", "invalid", None),
                (json.dumps([1, 2]), "invalid", None),
                ({"type": "launch", "id": 4}, "invalid", "type"),
                ({"type": "bid", "id": 5, "order_id": order_id, "price_usd_per_gpu_hour": 1},
                 "forbidden", None),
                ({"type": "post_order", "id": 6, "gpu_models": ["h100"],
                  "max_price_usd_per_gpu_hour": -3}, "invalid", "max_price_usd_per_gpu_hour"),
                ({"type": "cancel_order", "id": 7, "order_id": 10**9}, "not_found", "order_id"),
                ({"type": "ping", "id": 8, "pad": "x" * 2000}, "too_large", None),
            ]
            for message, code, field in cases:
                error = await ask(ws, message)
                assert error["type"] == "error" and error["code"] == code, (message, error)
                if field:
                    assert error["field"] == field
                assert "\n" not in error["message"]
            pong = await ask(ws, {"type": "ping", "id": 9})  # still open after all that
            assert pong["ok"] and pong["id"] == 9
        headers = {"Authorization": f"Bearer {alice['token']}"}
        async with connect(stream, additional_headers=headers) as ws:
            hello = json.loads(await ws.recv())
            assert hello["participant"]["name"] == "alice"
            cancelled = await ask(ws, {"type": "cancel_order", "id": 10, "order_id": order_id})
            assert cancelled["type"] in ("reply", "error")  # it may have been leased already

    asyncio.run(scenario())


def test_unknown_market_and_bad_since_get_an_error_frame(serve):
    server = serve()

    async def scenario() -> None:
        for path, code in (("/api/markets/m-none/stream", "not_found"),
                           ("/api/markets/m-none/stream?since=-4", "invalid")):
            async with connect(f"{server.ws_url}{path}") as ws:
                frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                assert frame["type"] == "error" and frame["code"] == code
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), WAIT_S)

    asyncio.run(scenario())


def test_a_client_that_reads_nothing_is_cut_off_and_resumes(serve):
    server = serve(None, "--queue-frames", "3", "--tick", "0.02")
    # Two months at high speed: more data than the socket buffers on both sides hold.
    market_id = _create(server, speed=500_000, overrides=["duration_days=60"])["market_id"]
    stream = f"{server.ws_url}/api/markets/{market_id}/stream"
    snapshot_url = f"{server.url}/api/markets/{market_id}"

    async def connections() -> int:
        async with httpx.AsyncClient() as client:
            return (await client.get(snapshot_url, timeout=30)).json()["connections"]

    async def scenario() -> None:
        # A tiny receive buffer and a client that reads nothing: the server's sends block,
        # the connection's queue fills, and the server cuts it off.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
        async with connect(f"{stream}?since=0", sock=sock, max_queue=1) as ws:
            async with asyncio.timeout(WAIT_S):
                while await connections():
                    await asyncio.sleep(0.1)  # polling the server's own count, bounded
            frames = []
            with pytest.raises(ConnectionClosed):  # what got through, then the close
                async with asyncio.timeout(WAIT_S):
                    while True:
                        frames.append(json.loads(await ws.recv()))
        received = _events(frames)
        resume = received[-1]["seq"] if received else 0
        assert [e["seq"] for e in received] == list(range(1, resume + 1))
        for notice in (f for f in frames if f.get("code") == "too_slow"):
            assert notice["resume_since"] == resume  # it says where to resume, if it got out
        async with connect(f"{stream}?since={resume}") as ws:
            frames = await _frames_until(ws, lambda f: _last_seq(f) > resume)
        assert _events(frames)[0]["seq"] == resume + 1
        # The market never waited for the slow client.
        snapshot = httpx.get(snapshot_url, timeout=30).json()
        assert snapshot["state"] == "running" and snapshot["seq"] > resume

    asyncio.run(scenario())


def test_connection_cuts_off_a_client_that_never_reads():
    """The bounded queue: offer never waits; past the bound the pump is told to stop, and a
    send that never returns is abandoned after the grace period."""

    async def scenario() -> None:
        sent: list[str] = []
        closed: list[int] = []
        stuck = asyncio.Event()

        async def send(text: str) -> None:
            if sent:  # the first frame goes out, then the client stops reading
                await stuck.wait()
            sent.append(text)

        async def close(code: int, reason: str) -> None:
            closed.append(code)

        connection = Connection(send, close, queue_frames=2, sent_seq=0, clock=dict)
        Connection.GRACE_S = 0.05
        connection.task = asyncio.create_task(connection.pump([]))
        for seq in range(1, 6):
            frame = {"type": "events", "first_seq": seq, "last_seq": seq,
                     "events": [{"seq": seq}]}
            connection.offer(dumps(frame), frame)
            await asyncio.sleep(0)
        assert connection.closing
        await asyncio.wait_for(asyncio.gather(connection.task, return_exceptions=True), 5)
        assert connection.task.cancelled() and len(sent) == 1 and connection.sent_seq == 1

    try:
        asyncio.run(scenario())
    finally:
        Connection.GRACE_S = 2.0

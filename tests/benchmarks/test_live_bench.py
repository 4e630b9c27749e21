"""Benchmark: 1,000 websocket clients watching one live market that produces about 1,000
events per wall second, against the same frames sent by a bare `websockets` server.

The clients run in a separate process, all in one asyncio loop, each from the same starting
sequence number (`?since=`). Each checks that its sequence numbers are contiguous (no gap, no
duplicate, also across a reconnection after being cut off as too slow) and records, for every
events frame, the receive time minus the frame's `sent_at` (one machine, one clock). The
baseline then sends the same events, grouped into the same ticks, from a `websockets` server
with no market and no web framework to the same client process: the ratio of the two
latencies survives a noisy, shared machine better than either alone. The latency goal is
printed, not asserted; a lost or duplicated event fails. Run with `make bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from api.live.session import Session
from market import load_scenario

CLIENTS = int(os.environ.get("BENCH_CLIENTS", 1000))
EVENTS_PER_S = 1000.0
GOAL_P99_MS = 250.0
MEASURE_S = 20.0                 # wall seconds of each measured window
SCENARIO = "default"
# Long enough that the market outlives the benchmark; no demand spikes, so that the rate is
# 1,000 events/s throughout the window rather than on average (a spike quadruples it).
OVERRIDES = ["duration_days=30", "tenants.spikes.per_week=0"]
SEED = 1
WARM_UP_S = 86_400.0             # simulated: past the empty start of the market
WARM_UP_SPEED = 100_000.0
TICK_S = 0.1                     # the server's default tick, which the baseline copies
FULL_CHECK_EVERY = 50            # every 50th client parses every event of every frame
HANDSHAKES_AT_ONCE = 50          # per client process
# The clients' side costs more CPU than the server's: one process for 1,000 websockets would
# run near a whole core and its own queueing would be what the latencies measure.
CLIENT_PROCESSES = 2
COMPRESSION = "deflate"          # what the clients offer, as browsers do
SERVER_COMPRESSION = None        # what both servers accept: `gpumarket serve`'s default
RECONNECTS = 5                   # per client, after a cut-off or a lost connection
CONNECT_S = 60.0                 # bound on connecting every client
RESULT_S = MEASURE_S + 60.0      # bound on a client process reporting its window
REST_S = 30.0

EVENTS_PREFIX = '{"type":"events",'
EVENTS_KEY = ',"events":['       # what follows a frame's header fields (see api/live/driver.py)
EVENT_START = '{"seq":'          # how every event of a frame begins


# ---------------------------------------------------------------- the client process


@dataclass
class Tally:
    """What every client of one process saw; one loop, so plain counters."""

    clients: int = 0
    connected: int = 0
    compressed: int = 0      # connections that negotiated permessage-deflate
    frames: int = 0          # events frames received in the window
    events: int = 0          # ... and the events in them
    gaps: int = 0            # events never received between two frames
    duplicates: int = 0      # events received twice
    malformed: int = 0       # frames whose events are not exactly first_seq..last_seq
    cut_off: int = 0         # too_slow notices (each followed by a reconnection with since)
    bad_resume: int = 0      # too_slow notices whose resume_since is not the last seq received
    lost: int = 0            # connections lost otherwise (then reconnected with since)
    errors: int = 0          # other error frames
    gave_up: int = 0         # clients out of reconnections
    cpu_s: float = 0.0       # CPU seconds the client process used in the window
    latencies_s: array = field(default_factory=lambda: array("d"))
    sent_at_s: array = field(default_factory=lambda: array("d"))   # unix time of each frame
    last_seqs: list[int] = field(default_factory=list)   # per client, at the window's end


@dataclass
class Window:
    measuring: bool = False
    closed: bool = False


def check_frame(text: str, received_s: float, next_seq: int, full: bool, tally: Tally,
                window: Window) -> int:
    """Account for one events frame; returns the next sequence number the client expects.

    Only the frame's header is parsed (what precedes its events): parsing 1,000 copies of
    every event would make the client process, not the server, the bottleneck. The events are
    counted by how each begins, and every `FULL_CHECK_EVERY`th client parses them all."""
    head = json.loads(text[:text.index(EVENTS_KEY)] + "}")
    first, last = head["first_seq"], head["last_seq"]
    count = text.count(EVENT_START)
    if full:
        seqs = [event["seq"] for event in json.loads(text)["events"]]
        exact = seqs == list(range(first, last + 1))
    else:
        exact = count == last - first + 1
    tally.malformed += not exact
    if first > next_seq:
        tally.gaps += first - next_seq
    elif first < next_seq:
        tally.duplicates += min(last, next_seq - 1) - first + 1
    if window.measuring:
        tally.latencies_s.append(received_s - head["sent_at"])
        tally.sent_at_s.append(head["sent_at"])
        tally.frames += 1
        tally.events += count
    return max(next_seq, last + 1)


async def watch(url: str, since: int, full: bool, compression: str | None, tally: Tally,
                window: Window, handshakes: asyncio.Semaphore, everyone: asyncio.Event) -> None:
    """One client: from `since`, every event once and in order, until the window closes;
    cut off or disconnected, it resumes from the last event it got, as the protocol says."""
    next_seq = since + 1
    index = len(tally.last_seqs)
    tally.last_seqs.append(since)
    reconnects = 0
    while not window.closed:
        try:
            async with handshakes:
                ws: ClientConnection = await connect(
                    f"{url}?since={next_seq - 1}", compression=compression, max_size=None,
                    ping_interval=None, open_timeout=CONNECT_S, close_timeout=2.0)
        except (OSError, TimeoutError, InvalidHandshake):
            if reconnects == 0:
                return  # never connected: counted by `connected`
            tally.gave_up += 1
            return
        if reconnects == 0:
            tally.connected += 1
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "") \
                if ws.response else ""
            tally.compressed += "permessage-deflate" in extensions
            if tally.connected == tally.clients:
                everyone.set()
        try:
            async with ws:
                async for text in ws:
                    received_s = time.time()
                    if text.startswith(EVENTS_PREFIX):
                        next_seq = check_frame(text, received_s, next_seq, full, tally, window)
                        tally.last_seqs[index] = next_seq - 1
                    elif text.startswith('{"type":"error"'):
                        error = json.loads(text)
                        if error["code"] == "too_slow":
                            tally.cut_off += 1
                            tally.bad_resume += error["resume_since"] != next_seq - 1
                        else:
                            tally.errors += 1
        except ConnectionClosed as closed:
            if closed.rcvd is None or closed.rcvd.code != 4008:
                tally.lost += 1
        reconnects += 1
        if reconnects > RECONNECTS:
            tally.gave_up += 1
            return


async def watch_all(url: str, since: int, clients: int, measure_s: float,
                    compression: str | None, ready: multiprocessing.Queue, go: Any,
                    out: multiprocessing.Queue) -> None:
    tally, window = Tally(clients=clients), Window()
    handshakes, everyone = asyncio.Semaphore(HANDSHAKES_AT_ONCE), asyncio.Event()
    tasks = [asyncio.create_task(watch(url, since, i % FULL_CHECK_EVERY == 0, compression,
                                       tally, window, handshakes, everyone))
             for i in range(clients)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(everyone.wait(), CONNECT_S)
    ready.put(tally.connected)
    loop = asyncio.get_running_loop()
    if await loop.run_in_executor(None, go.wait, CONNECT_S):
        window.measuring = True
        cpu_s = time.process_time()
        await asyncio.sleep(measure_s)  # the measured window itself
        tally.cpu_s = time.process_time() - cpu_s
    window.measuring, window.closed = False, True
    out.put(asdict(tally))
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=5.0)


def run_clients(*args: Any) -> None:
    """The client process (spawned): see `watch_all`."""
    run_loop(watch_all(*args))


# ---------------------------------------------------------------- the baseline process


def events_text(events: list[dict[str, Any]], clock_s: float, speed: float) -> str:
    """An events frame as the server sends it (api/live/driver.py), sent now."""
    return json.dumps({"type": "events", "first_seq": events[0]["seq"],
                       "last_seq": events[-1]["seq"], "clock_s": clock_s, "state": "running",
                       "speed": speed, "sent_at": time.time(), "events": events},
                      separators=(",", ":"), allow_nan=False)


async def send_ticks(ticks: list[list[dict[str, Any]]], since: int, speed: float,
                     compression: str | None, port: multiprocessing.Queue, go: Any) -> None:
    """Serve every client a hello, then, once `go` is set, one frame per tick to all of them,
    on the server's schedule (with `websockets.broadcast`, its own fastest path)."""
    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "hello", "seq": since, "state": "running"}))
        connections.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connections.discard(ws)

    loop = asyncio.get_running_loop()
    async with serve(handler, "127.0.0.1", 0, compression=compression, max_size=None,
                     backlog=2048) as server:
        port.put(next(iter(server.sockets)).getsockname()[1])
        if not await loop.run_in_executor(None, go.wait, CONNECT_S * 2):
            return
        start_s = loop.time()
        for number, events in enumerate(ticks, 1):
            await asyncio.sleep(max(start_s + number * TICK_S - loop.time(), 0.0))
            if events:
                broadcast(connections, events_text(events, 0.0, speed))
        await asyncio.sleep(RESULT_S)  # serve until the test ends this process


def run_baseline(*args: Any) -> None:
    """The baseline server process (spawned): see `send_ticks`."""
    run_loop(send_ticks(*args))


def run_loop(main: Any) -> None:
    """Run `main` on uvloop where it is installed (as `gpumarket serve` does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


# ---------------------------------------------------------------- the test process


@dataclass
class Calibration:
    """The speed at which the market, from `start_s`, produces `events_per_s` on average over
    `wall_s` wall seconds, and the events it then produces in that span: with no commands the
    market is deterministic, so an offline run of the scenario meets the server's events."""

    start_s: float
    speed: float
    per_sim_s: float                  # events per simulated second in the span
    events: list[dict[str, Any]]

    @classmethod
    def of(cls, events_per_s: float, start_s: float, wall_s: float) -> Calibration:
        session = Session(load_scenario(SCENARIO, OVERRIDES), SEED)
        session.advance(start_s)
        session.take_pending()
        events: list[dict[str, Any]] = []
        times: list[float] = []
        speed = 20_000.0
        for _ in range(4):  # a fixed point: the span depends on the speed, the rate on the span
            end_s = start_s + speed * wall_s
            if end_s > session.market.now:
                session.advance(end_s)
                events.extend(session.take_pending())
                times = [event["time_s"] for event in events]
            per_sim_s = max(bisect_left(times, end_s), 1) / (speed * wall_s)
            speed = events_per_s / per_sim_s
        return cls(start_s, speed, per_sim_s, events)

    def ticks(self, count: int) -> list[list[dict[str, Any]]]:
        """The events in the frames the server's ticks make of them: `speed * TICK_S`
        simulated seconds each."""
        ticks: list[list[dict[str, Any]]] = [[] for _ in range(count)]
        for event in self.events:
            number = int((event["time_s"] - self.start_s) / (self.speed * TICK_S))
            if 0 <= number < count:
                ticks[number].append(event)
        return ticks


@dataclass
class Run:
    """One measured window, as the client process saw it."""

    tally: dict[str, Any]
    events_per_s: float      # produced by the server
    server_cpu: float        # CPU seconds the server used per wall second
    measure_s: float

    @property
    def latencies_ms(self) -> np.ndarray:
        return np.frombuffer(self.tally["latencies_s"], dtype=np.float64) * 1000.0

    def worst_second(self) -> tuple[float, float]:
        """(seconds into the window, p99 latency in ms) of the second whose frames fared
        worst: a steady tail and a stall look alike in the p99, not here."""
        sent = np.frombuffer(self.tally["sent_at_s"], dtype=np.float64)
        if not sent.size:
            return float("nan"), float("nan")
        second = np.floor(sent - sent.min()).astype(np.int64)
        latencies = self.latencies_ms
        worst = max(range(second.max() + 1), key=lambda s: np.percentile(
            latencies[second == s], 99) if (second == s).any() else -1.0)
        return float(worst), float(np.percentile(latencies[second == worst], 99))

    def percentile_ms(self, q: float) -> float:
        latencies = self.latencies_ms
        return float(np.percentile(latencies, q)) if latencies.size else float("nan")

    def report(self, label: str) -> None:
        t = self.tally
        last = t["last_seqs"]
        print(f"{label}: {t['connected']:,} of {t['clients']:,} clients connected "
              f"({t['compressed']:,} with permessage-deflate)")
        print(f"  events produced   {self.events_per_s:10,.0f} /s")
        print(f"  frames delivered  {t['frames'] / self.measure_s:10,.0f} /s in total "
              f"({t['events'] / self.measure_s:,.0f} events/s)")
        print(f"  CPU per wall second: server {self.server_cpu:.2f}, clients "
              f"{t['cpu_s'] / self.measure_s:.2f}")
        print(f"  latency p50 {self.percentile_ms(50):8.1f} ms   p90 {self.percentile_ms(90):8.1f}"
              f" ms   p99 {self.percentile_ms(99):8.1f} ms   max {self.percentile_ms(100):8.1f} ms")
        at_s, worst_ms = self.worst_second()
        print(f"  worst second of the window: p99 {worst_ms:.1f} ms ({at_s:.0f} s in)")
        print(f"  gaps {t['gaps']}   duplicates {t['duplicates']}   malformed {t['malformed']}"
              f"   cut off as too slow {t['cut_off']}   lost {t['lost']}   gave up "
              f"{t['gave_up']}   error frames {t['errors']}")
        if last:
            print(f"  at the window's end, clients were {max(last) - min(last):,} events "
                  f"apart (newest {max(last):,})")


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) process `pid` has used so far; NaN where /proc is not."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(ctx: Any, url: str, since: int, start: Callable[[], Callable[[], float]],
            server_pid: int, clients: int = CLIENTS, compression: str | None = COMPRESSION,
            measure_s: float = MEASURE_S) -> Run:
    """Connect the clients (bounded), call `start()`, which sets the server going and returns
    a function giving the events per second it produced, and measure one window."""
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES)
              for i in range(CLIENT_PROCESSES)]
    processes = [ctx.Process(target=run_clients, args=(url, since, share, measure_s,
                                                       compression, ready, go, out))
                 for share in shares if share]
    for process in processes:
        process.start()
    try:
        connected = sum(ready.get(timeout=CONNECT_S + 30) for _ in processes)
        assert connected > 0, "no client connected"
        produced = start()
        server_cpu_s = cpu_s(server_pid)
        go.set()
        tallies = [out.get(timeout=measure_s + RESULT_S) for _ in processes]
        server_cpu_s = cpu_s(server_pid) - server_cpu_s
        return Run(merge(tallies), produced(), server_cpu_s / measure_s, measure_s)
    finally:
        for process in processes:
            process.join(timeout=15)
            if process.is_alive():
                process.kill()
                process.join()


def merge(tallies: list[dict[str, Any]]) -> dict[str, Any]:
    """The client processes' tallies as one: counts and CPU added, samples joined."""
    merged = dict(tallies[0])
    merged["latencies_s"] = array("d", tallies[0]["latencies_s"])
    merged["sent_at_s"] = array("d", tallies[0]["sent_at_s"])
    merged["last_seqs"] = list(tallies[0]["last_seqs"])
    for tally in tallies[1:]:
        for key, value in tally.items():
            if key in ("latencies_s", "sent_at_s", "last_seqs"):
                merged[key].extend(value)
            else:
                merged[key] += value
    return merged


@dataclass
class BenchMarket:
    """A market on a `gpumarket serve`, paused at `start_s` after its warm-up."""

    rest: httpx.Client
    market_id: str
    control: dict[str, str]
    since: int
    start_s: float

    @classmethod
    def create(cls, url: str, operator: dict[str, str]) -> BenchMarket:
        rest = httpx.Client(base_url=url, timeout=REST_S)
        created = rest.post("/api/markets", json={
            "scenario": SCENARIO, "overrides": OVERRIDES, "seed": SEED,
            "speed": WARM_UP_SPEED}, headers=operator).json()
        market_id = created["market_id"]
        control = {"Authorization": f"Bearer {created['control_token']}"}
        deadline = time.monotonic() + REST_S
        while rest.get(f"/api/markets/{market_id}").json()["clock_s"] < WARM_UP_S:
            assert time.monotonic() < deadline, "the market did not warm up"
            time.sleep(0.05)
        paused = rest.post(f"/api/markets/{market_id}/pause", headers=control).json()
        return cls(rest, market_id, control, paused["seq"], paused["clock_s"])

    def set_speed(self, speed: float) -> None:
        response = self.rest.put(f"/api/markets/{self.market_id}/speed",
                                 json={"speed": speed}, headers=self.control)
        assert response.status_code == 200, response.text

    def resume(self) -> Callable[[], float]:
        """Resume; returns a function giving the events per second produced since."""
        resumed_s = time.time()
        response = self.rest.post(f"/api/markets/{self.market_id}/resume",
                                  headers=self.control)
        assert response.status_code == 200, response.text

        def produced() -> float:
            seq = self.rest.get(f"/api/markets/{self.market_id}").json()["seq"]
            return (seq - self.since) / (time.time() - resumed_s)
        return produced


def measure_live(ctx: Any, server: Any, calibration: Calibration | None = None,
                 **options: Any) -> tuple[Run, Calibration, BenchMarket]:
    market = BenchMarket.create(server.url, server.operator)
    calibration = calibration or Calibration.of(EVENTS_PER_S, market.start_s, MEASURE_S)
    market.set_speed(calibration.speed)
    run = measure(ctx, f"{server.ws_url}/api/markets/{market.market_id}/stream", market.since,
                  market.resume, server.process.pid, **options)
    market.rest.close()
    return run, calibration, market


def measure_baseline(ctx: Any, calibration: Calibration, since: int,
                     compression: str | None = SERVER_COMPRESSION, **options: Any) -> Run:
    """The same events in the same ticks from a bare `websockets` server."""
    measure_s = options.get("measure_s", MEASURE_S)
    ticks = calibration.ticks(round(measure_s / TICK_S))
    port, go = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=run_baseline,
                         args=(ticks, since, calibration.speed, compression, port, go))
    server.start()
    try:
        url = f"ws://127.0.0.1:{port.get(timeout=CONNECT_S)}"
        sent_per_s = sum(map(len, ticks)) / measure_s

        def release() -> Callable[[], float]:
            go.set()
            return lambda: sent_per_s
        return measure(ctx, url, since, release, server.pid, **options)
    finally:
        server.kill()
        server.join()


def test_thousand_clients_against_bare_websockets(serve, tmp_path) -> None:
    ctx = multiprocessing.get_context("spawn")
    # The thousand clients all come from this machine's one address: its budgets opened up.
    server = serve(tmp_path / "bench.db", "--max-connections", str(CLIENTS + 200),
                   "--queue-frames", "1000", "--tick", str(TICK_S),
                   "--anonymous-rate", "10000", "--anonymous-burst", "10000",
                   "--address-rate", "10000", "--address-burst", "10000")
    live, calibration, market = measure_live(ctx, server)
    server.kill(signal.SIGTERM)  # the baseline gets the machine to itself, like the server
    baseline = measure_baseline(ctx, calibration, market.since)

    print(f"\nlive market: {SCENARIO} scenario from {calibration.start_s / 3600:.0f} h at speed "
          f"{calibration.speed:,.0f} ({calibration.per_sim_s:.3f} events per simulated second;"
          f" goal {EVENTS_PER_S:,.0f} events/s), {MEASURE_S:.0f} s windows, {TICK_S} s ticks")
    live.report("gpumarket serve")
    baseline.report("bare websockets server, the same events in the same ticks")
    p50, p99 = live.percentile_ms(50), live.percentile_ms(99)
    print(f"ratio to the baseline: p50 {p50 / baseline.percentile_ms(50):.1f} x, "
          f"p99 {p99 / baseline.percentile_ms(99):.1f} x")
    met = live.tally["connected"] == CLIENTS and p99 <= GOAL_P99_MS and \
        live.events_per_s >= 0.9 * EVENTS_PER_S
    print(f"goal: p99 <= {GOAL_P99_MS:.0f} ms with {CLIENTS:,} clients at "
          f"{EVENTS_PER_S:,.0f} events/s: {'met' if met else 'NOT met'} (p99 {p99:.0f} ms at "
          f"{live.events_per_s:,.0f} events/s)")

    for run in (live, baseline):
        t = run.tally
        assert t["connected"] == CLIENTS
        assert (t["gaps"], t["duplicates"], t["malformed"], t["bad_resume"]) == (0, 0, 0, 0)
        assert t["gave_up"] == 0
    assert live.tally["errors"] == 0

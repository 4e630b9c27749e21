"""The Python client (`api.remote.client`) against a real `gpumarket serve` on 127.0.0.1: the
trading flow through `Client` (orders, bids, leases and the money they move), refusals as `ApiError`
(status, code, field, retry-after; rate limits over HTTP and the socket; an unreachable
server), and the event `Stream`: every event once and in order, by iteration or in batches;
resuming after a dropped socket or a cut-off as too slow; ending with a stopped market; history
no longer kept (an error, or a counted gap); commands over the socket, concurrent ones
included, and their errors; a closed stream staying closed."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from api.remote.client import Client
from api.remote.replies import ApiError, CommandResult
from api.remote.stream import Stream

WAIT_S = 30.0
#: A cheap market: one simulated day, at a speed that gives tens of events a wall second.
SMALL = ["duration_days=1", 'market.settlement="aep23"']  # USD escrow and a take rate
SPEED = 3000.0
ORDER = {"gpu_models": ["h100"], "max_price_usd_per_gpu_hour": 2.0}


def run(scenario: Coroutine[Any, Any, None]) -> None:
    """Run one test's scenario on a fresh event loop, bounded in wall time."""
    asyncio.run(asyncio.wait_for(scenario, WAIT_S))


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll `check` until it returns something truthy (bounded)."""
    try:
        async with asyncio.timeout(WAIT_S):
            while not (value := await check()):
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
    return value


async def refused(call: Awaitable[Any]) -> ApiError:
    """The ApiError that `call` must raise."""
    with pytest.raises(ApiError) as raised:
        await call
    return raised.value


async def new_market(client: Client) -> tuple[str, str]:
    """A fresh small market: (market id, control token)."""
    created = await client.create_market(speed=SPEED, overrides=SMALL)
    return created["market_id"], created["control_token"]


async def read_until(stream: Stream, done: Callable[[list[dict[str, Any]]], bool]
                     ) -> list[dict[str, Any]]:
    """Iterate `stream` until `done(events so far)` (or until it ends)."""
    events: list[dict[str, Any]] = []
    async for event in stream:
        events.append(event)
        if done(events):
            break
    return events


async def take(stream: Stream, count: int) -> list[dict[str, Any]]:
    return await read_until(stream, lambda events: len(events) >= count)


def assert_contiguous(events: list[dict[str, Any]], first: int) -> None:
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(first, first + len(seqs))), seqs


async def events_through(client: Client, market_id: str, since: int, last: int
                         ) -> list[dict[str, Any]]:
    """The market's events since+1..last, paging through the history endpoint; waits until
    `last` has been published (a command's reply comes before its tick's events go out)."""
    await until(lambda: _published(client, market_id, last), f"event {last} to be published")
    events: list[dict[str, Any]] = []
    while since < last:
        page = await client.events(market_id, since=since, limit=1000)
        events += page["events"]
        since = page["events"][-1]["seq"]
    return [event for event in events if event["seq"] <= last]


async def _published(client: Client, market_id: str, seq: int) -> bool:
    return (await client.events(market_id, since=seq, limit=1))["last_seq"] >= seq


def test_trading_flow_moves_the_lease_price_from_tenant_to_provider(serve):
    server = serve()
    url = server.url

    async def scenario() -> None:
        async with Client(url, operator_token=server.operator_token) as client:
            created = await client.create_market(
                speed=SPEED, name="flow",
                # No lease may end by chance (a tenant's lost manifest) before the tenant
                # closes it.
                overrides=[*SMALL, "market.manifest_failure_prob=0"])
            market_id, control = created["market_id"], created["control_token"]
            assert created["market"]["market_id"] == market_id
            assert created["market"]["state"] == "running"
            listed = {market["market_id"]: market for market in await client.markets()}
            assert listed[market_id]["name"] == "flow"
            # Paused, the clock stands still while commands still apply: the bid cannot time
            # out before it is accepted, and the lease starts at a known time.
            paused = await client.pause(market_id, control)
            assert paused["state"] == "paused"
            alice = await client.join_tenant(market_id, "alice", wallet_usd=500)
            bob = await client.join_provider(market_id, "bob", "h100", gpus=8)
            assert alice["role"] == "tenant" and alice["token"].startswith("gmp_")
            assert bob["role"] == "provider" and bob["provider"] is not None
            alice_me = await client.me(market_id, alice["token"])
            bob_me = await client.me(market_id, bob["token"])
            assert alice_me["wallet_usd"] == 500 and alice_me["provider_facts"] is None
            assert alice_me["wallet_micro"] == 500_000_000  # the engine's own integer
            assert bob_me["provider_facts"]["gpu_model"] == "h100"
            alice_before, bob_before = alice_me["wallet_usd"], bob_me["wallet_usd"]

            order = await client.post_order(market_id, alice["token"], gpu_models=["h100"],
                                            gpus=2, hours=None, auto_select=False,
                                            max_price_usd_per_gpu_hour=4.0)
            assert isinstance(order, CommandResult) and set(order) == {"order_id"}
            assert order.seq >= 1 and order.clock_s == paused["clock_s"]
            snapshot = await client.snapshot(market_id)
            (posted,) = [o for o in snapshot["open_orders"] if o["order_id"] == order["order_id"]]
            assert posted["gpus"] == 2 and posted["auto_select"] is False
            assert posted["max_price_usd_per_gpu_hour"] == pytest.approx(4.0)
            assert posted["max_price_micro_per_hour"] == 8_000_000  # 4 USD/GPU-h × 2 GPUs
            assert posted["tenant"] == alice["tenant"]
            # A hand-picked order is held as it is posted; the tenant may end and renew it.
            assert await client.release(market_id, alice["token"], order["order_id"]) == \
                {"order_id": order["order_id"], "released": True}
            assert await client.hold(market_id, alice["token"], order["order_id"]) == \
                {"order_id": order["order_id"], "held": True}
            with pytest.raises(ApiError) as other:  # only its own tenant holds an order
                await client.hold(market_id, bob["token"], order["order_id"])
            assert (other.value.status, other.value.code) == (403, "forbidden")

            bid = await client.bid(market_id, bob["token"], order["order_id"], 1.25)
            assert set(bid) == {"bid_id"} and bid.seq >= order.seq
            accepted = await client.accept(market_id, alice["token"], order["order_id"],
                                           bid["bid_id"])
            lease_id = accepted["lease_id"]
            snapshot = await client.snapshot(market_id)
            (lease,) = [le for le in snapshot["active_leases"] if le["lease_id"] == lease_id]
            assert (lease["tenant"], lease["provider"], lease["gpus"]) == \
                (alice["tenant"], bob["provider"], 2)
            assert lease["price_usd_per_gpu_hour"] == pytest.approx(1.25)
            assert lease["price_micro_per_hour"] == 2_500_000 and lease["paid_micro"] == 0
            assert lease["started_s"] == accepted.clock_s == paused["clock_s"]
            alice_me = await client.me(market_id, alice["token"])
            assert [le["lease_id"] for le in alice_me["active_leases"]] == [lease_id]
            assert alice_me["open_orders"] == []
            # An open-ended job locks 24 hours at its max price in escrow.
            assert alice_me["wallet_usd"] == pytest.approx(alice_before - 4.0 * 2 * 24)
            assert alice_me["wallet_micro"] == 500_000_000 - 8_000_000 * 24
            bob_me = await client.me(market_id, bob["token"])
            assert [le["lease_id"] for le in bob_me["active_leases"]] == [lease_id]
            assert bob_me["provider_facts"]["free_gpus"] == 6

            await client.resume(market_id, control)
            half_hour = lease["started_s"] + 1800

            async def ran_half_an_hour() -> bool:
                return (await client.snapshot(market_id))["clock_s"] >= half_hour

            await until(ran_half_an_hour, "the lease to run half a simulated hour")
            closed = await client.close_lease(market_id, alice["token"], lease_id)
            assert closed == {"lease_id": lease_id, "reopened_order_id": None}
            ran_s = closed.clock_s - lease["started_s"]
            assert ran_s >= 1800 and closed.seq > accepted.seq

            events = await events_through(client, market_id, bid.seq, closed.seq)
            mine = [e for e in events if e.get("lease_id") == lease_id]
            (started,) = [e for e in mine if e["kind"] == "lease_created"]
            (ended,) = [e for e in mine if e["kind"] == "lease_closed"]
            settled = [e for e in mine if e["kind"] == "payment_settled"]
            assert started["price_micro_per_hour"] == 2_500_000  # 1.25 USD × 2 GPUs
            assert ended["reason"] == "owner" and ended["time_s"] == closed.clock_s
            paid, fee = ended["paid_micro"], sum(e["fee_micro"] for e in settled)
            # What the lease's price and its running time imply, to the micro-USD.
            assert abs(paid - started["price_micro_per_hour"] * ran_s / 3600) <= 1
            assert paid == sum(e["amount_micro"] for e in settled) > 0
            assert fee == pytest.approx(paid * snapshot["take_rate"], abs=len(settled))
            assert 0 < fee < paid

            alice_me = await client.me(market_id, alice["token"])
            bob_me = await client.me(market_id, bob["token"])
            # The escrow's rest and the bid deposit went back: the tenant is down what the lease
            # paid, the provider up the same less the platform's fee.
            assert alice_me["wallet_usd"] == pytest.approx(alice_before - paid / 1e6, abs=1e-6)
            assert bob_me["wallet_usd"] == pytest.approx(bob_before + (paid - fee) / 1e6,
                                                         abs=1e-6)
            assert alice_me["active_leases"] == bob_me["active_leases"] == []
            snapshot = await client.snapshot(market_id)
            assert lease_id not in [le["lease_id"] for le in snapshot["active_leases"]]

    run(scenario())


def test_refusals_are_api_errors_with_status_code_and_field(serve):
    server = serve(None, "--rate", "1", "--burst", "2")
    url = server.url

    async def scenario() -> None:
        async with Client(url, operator_token=server.operator_token) as client:
            market_id, _ = await new_market(client)
            alice = await client.join_tenant(market_id, "alice")
            bob = await client.join_provider(market_id, "bob", "h100")

            error = await refused(client.snapshot("m-none"))
            assert (error.status, error.code) == (404, "not_found")
            assert "m-none" in error.message and str(error).startswith("not_found 404: ")
            error = await refused(client.post_order("m-none", alice["token"], **ORDER))
            assert (error.status, error.code) == (404, "not_found")
            for token in ("", "gmp_forged"):  # no Authorization header; a token never issued
                error = await refused(client.me(market_id, token))
                assert (error.status, error.code) == (401, "unauthorized"), token
            error = await refused(client.post_order(market_id, bob["token"], **ORDER))
            assert (error.status, error.code) == (403, "forbidden")

            # Refused by FastAPI's validation (a list of problems) and by the market (one
            # problem): either way one line, naming the field.
            token = alice["token"]
            for call, field in [
                (lambda: client.post_order(market_id, token, **ORDER, gpus=0), "gpus"),
                (lambda: client.post_order(market_id, token, gpu_models=["h100"],
                                           max_price_usd_per_gpu_hour=-1),
                 "max_price_usd_per_gpu_hour"),
                (lambda: client.post_order(market_id, token, gpu_models=["h999"],
                                           max_price_usd_per_gpu_hour=1.0), "gpu_models"),
                (lambda: client.join_provider(market_id, "pat", "h100", gpus=0), "gpus"),
                (lambda: client.join_provider(market_id, "pat", "h100", archetype="castle"),
                 "archetype"),
                (lambda: client.join_provider(market_id, "pat", "h999"), "gpu_model"),
                (lambda: client.join_tenant(market_id, "<script>"), "name"),
                (lambda: client.join_tenant(market_id, "eve", wallet_usd=-1), "wallet_usd"),
            ]:
                error = await refused(call())
                assert (error.status, error.code, error.field) == (422, "invalid", field)
                assert error.message.startswith(f"{field}: ") and "\n" not in str(error)
            me = await client.me(market_id, alice["token"])
            assert me["open_orders"] == [] and me["wallet_usd"] == 10_000  # nothing applied
            snapshot = await client.snapshot(market_id)
            assert [p["name"] for p in snapshot["participants"]] == ["alice", "bob"]

            carol = await client.join_tenant(market_id, "carol")  # a full budget of her own
            outcomes = await asyncio.gather(
                *(client.me(market_id, carol["token"]) for _ in range(5)),
                return_exceptions=True)
            limited = [o for o in outcomes if isinstance(o, ApiError)]
            assert sum(isinstance(o, dict) for o in outcomes) >= 2  # the burst goes through
            assert limited and len(limited) + sum(isinstance(o, dict) for o in outcomes) == 5
            for error in limited:
                assert (error.status, error.code) == (429, "rate_limited")
                assert error.retry_after_s is not None and error.retry_after_s >= 1
            # A socket has a budget too (a watcher's is its own): commands over it beyond
            # the burst are refused as rate limited before anything else is checked.
            async with client.stream(market_id) as watcher:
                outcomes = await asyncio.gather(
                    *(watcher.command("post_order", **ORDER) for _ in range(5)),
                    return_exceptions=True)
            codes = [o.code if isinstance(o, ApiError) else o for o in outcomes]
            assert set(codes) == {"unauthorized", "rate_limited"}, codes
            assert codes.count("unauthorized") >= 2, codes
            for error in outcomes:  # the frame says when to retry, as Retry-After does
                if error.code == "rate_limited":
                    assert error.retry_after_s is not None and 0 < error.retry_after_s <= 1

    run(scenario())


def test_an_unreachable_server_is_an_api_error():
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        async with Client(f"http://127.0.0.1:{port}", timeout_s=5) as client:
            error = await refused(client.health())
            assert (error.status, error.code) == (0, "unreachable")
            assert str(error).startswith("unreachable: ") and str(port) in error.message
            stream = client.stream("m-none", since=0, max_retries=1)
            error = await refused(stream.connect())
            assert (error.status, error.code) == (0, "unreachable")
            await stream.close()

    run(scenario())


def test_stream_delivers_every_event_once_in_order(serve):
    server = serve()
    url = server.url

    async def scenario() -> None:
        async with Client(url, operator_token=server.operator_token) as client:
            market_id, _ = await new_market(client)
            async with client.stream(market_id, since=0) as stream:
                assert stream.hello is not None and stream.hello["market_id"] == market_id
                assert stream.participant is None  # a watcher
                iterated = await take(stream, 30)
                batched: list[dict[str, Any]] = []
                while len(batched) < 30:
                    batch = await stream.next_batch()
                    assert batch  # it waits for at least one event
                    batched += batch
                # What iteration left behind comes in the next batch, not twice, not lost.
                assert_contiguous(iterated + batched, 1)
                assert stream.last_seq == batched[-1]["seq"]
                assert stream.state == "running" and stream.speed == SPEED
                assert stream.clock_s >= batched[-1]["time_s"]
                seen = stream.last_seq
            async with client.stream(market_id) as stream:  # since None: from now on
                start = stream.hello["seq"]
                assert start >= seen and stream.last_seq == start
                assert_contiguous(await take(stream, 5), start + 1)

    run(scenario())


def test_stream_resumes_after_its_socket_drops(serve):
    server = serve()
    url = server.url

    async def scenario() -> None:
        async with Client(url, operator_token=server.operator_token) as client:
            market_id, _ = await new_market(client)
            async with client.stream(market_id, since=0) as stream:
                events = await take(stream, 10)
                for drop in ("close", "abort"):
                    reconnects, dropped_at = stream.reconnects, stream.last_seq
                    assert stream._socket is not None
                    if drop == "close":  # a closing handshake, as a server going away
                        await stream._socket.close()
                    else:  # no close frame at all, as a network failure
                        stream._socket.transport.abort()
                    events += await read_until(stream, lambda got, at=dropped_at: (
                        got[-1]["seq"] >= at + 10))
                    assert stream.reconnects == reconnects + 1, drop
                    # The new connection resumed after the last event received.
                    assert stream.hello is not None and stream.hello["seq"] >= dropped_at
                assert_contiguous(events, 1)

    run(scenario())


def test_stream_cut_off_as_too_slow_resumes_and_loses_no_command(serve):
    # A queue of one frame: a command's reply, offered right after the frame with the
    # command's own events in the same tick, overflows it, and the server cuts the socket off
    # as too slow (dropping that frame: the client must resume from before it).
    server = serve(None, "--queue-frames", "1")
    url = server.url

    async def scenario() -> None:
        async with Client(url, operator_token=server.operator_token) as client:
            market_id, _ = await new_market(client)
            alice = await client.join_tenant(market_id, "alice")
            async with client.stream(market_id, since=0, token=alice["token"]) as stream:
                sent, replied, cut = 0, [], False
                while not cut and sent < 10:
                    sent += 1
                    try:
                        replied.append((await stream.command("post_order", **ORDER))["order_id"])
                    except ApiError as error:  # applied or not, its reply was lost
                        assert error.code == "disconnected" and "too slow" in error.message
                        cut = True
                assert cut, "the server never cut the stream off"
                last = (await client.snapshot(market_id))["seq"]
                events = await read_until(stream, lambda got: got[-1]["seq"] >= last)
                assert stream.reconnects >= 1
                assert_contiguous(events, 1)
                opened = [e["order_id"] for e in events
                          if e["kind"] == "order_opened" and e["tenant"] == alice["tenant"]]
                # Each command the server applied shows up once, even the one whose reply the
                # cut-off took away.
                assert len(opened) == len(set(opened)) == sent
                assert set(replied) < set(opened)

    run(scenario())


def test_stream_ends_once_a_stopped_market_delivered_everything(serve):
    server = serve()
    url = server.url

    async def scenario() -> None:
        async with Client(url, operator_token=server.operator_token) as client:
            market_id, control = await new_market(client)
            async with client.stream(market_id, since=0) as live:
                head = await take(live, 10)
                assert not live.ended
                assert (await client.stop(market_id, control))["state"] == "stopped"
                rest = [event async for event in live]  # ends by itself
                assert live.ended and live.state == "stopped"
                assert await live.next_batch() == []
            everything = head + rest
            assert_contiguous(everything, 1)
            assert everything[-1]["seq"] == (await client.snapshot(market_id))["seq"]
            async with client.stream(market_id, since=0) as late:  # the whole history, then
                assert [event async for event in late] == everything  # the end
            async with client.stream(market_id) as now:
                assert [event async for event in now] == [] and now.ended

    run(scenario())


def test_commands_over_the_stream(serve):
    server = serve()
    url = server.url

    async def scenario() -> None:
        async with Client(url, operator_token=server.operator_token) as client:
            market_id, _ = await new_market(client)
            alice = await client.join_tenant(market_id, "alice")
            async with client.stream(market_id, since=0, token=alice["token"]) as stream:
                assert stream.participant is not None
                assert stream.participant["participant_id"] == alice["participant_id"]
                posted = await stream.command("post_order", **ORDER, hours=None)
                assert isinstance(posted, CommandResult) and set(posted) == {"order_id"}
                assert posted.seq >= 1 and math.isfinite(posted.clock_s)
                error = await refused(stream.command("post_order", **ORDER, gpus=0))
                assert (error.status, error.code, error.field) == (422, "invalid", "gpus")
                assert error.message.startswith("gpus: ")
                error = await refused(stream.command("cancel_order", order_id=10**9))
                assert (error.status, error.code, error.field) == (404, "not_found", "order_id")
                pong = await stream.command_reply("ping")  # the socket stayed open
                assert pong["type"] == "reply" and pong["ok"] is True
                # Concurrent commands: each gets the answer to its own request.
                mixed = await asyncio.gather(
                    stream.command("post_order", **ORDER), stream.command("ping"),
                    stream.command("cancel_order", order_id=10**9),
                    stream.command("post_order", **ORDER, gpus=0),
                    stream.command("post_order", **ORDER), return_exceptions=True)
                first, pinged, *errors, second = mixed
                assert pinged == {} and set(first) == set(second) == {"order_id"}
                assert len({posted["order_id"], first["order_id"], second["order_id"]}) == 3
                assert [(e.code, e.field) for e in errors] == \
                    [("not_found", "order_id"), ("invalid", "gpus")]
                last = max(posted.seq, first.seq, second.seq)
                # The commands' events come in the stream, in order, whichever frames the
                # replies were read among.
                events = await read_until(stream, lambda got: got[-1]["seq"] >= last)
                assert_contiguous(events, 1)
                opened = {e["order_id"]: e for e in events if e["kind"] == "order_opened"}
                for result in (posted, first, second):
                    event = opened[result["order_id"]]
                    assert event["tenant"] == alice["tenant"] and event["seq"] <= result.seq

            async with client.stream(market_id) as watcher:
                error = await refused(watcher.command("post_order", **ORDER))
                assert (error.status, error.code) == (401, "unauthorized")
                who = await watcher.command("auth", token=alice["token"])
                assert who["name"] == "alice" and watcher.participant == who
                again = await watcher.command("post_order", **ORDER)
                assert again["order_id"] > posted["order_id"]

            for stream, status, code in [
                (client.stream("m-none", since=0), 404, "not_found"),
                (client.stream(market_id, token="gmp_forged"), 401, "unauthorized"),
            ]:
                error = await refused(stream.connect())
                assert (error.status, error.code) == (status, code)
                await stream.close()
            error = await refused(anext(client.stream("m-none")))  # the first read connects
            assert error.code == "not_found"

            async with client.stream(market_id) as closed:
                pass
            error = await refused(closed.command("ping"))
            assert error.code == "disconnected"
            # A closed stream stays closed: no connection is opened behind the caller's back.
            assert closed._socket is None

            async def no_connections() -> bool:
                return (await client.snapshot(market_id))["connections"] == 0

            await until(no_connections, "every stream to be closed")

    run(scenario())


def test_stream_past_the_kept_history_raises_or_counts_the_gap(serve):
    server = serve(None, "--history-events", "20")
    url = server.url

    async def scenario() -> None:
        async with Client(url, operator_token=server.operator_token) as client:
            market_id, _ = await new_market(client)

            async def history_overflowed() -> bool:
                return (await client.events(market_id, since=0, limit=1))["oldest_seq"] > 10

            await until(history_overflowed, "the kept history to overflow")
            async with client.stream(market_id, since=0) as strict:
                error = await refused(anext(strict))
                assert error.code == "history_gone"
            async with client.stream(market_id, since=0, allow_gaps=True) as lenient:
                oldest = lenient.hello["oldest_seq"]
                events = await take(lenient, 30)
                assert_contiguous(events, oldest)
                assert lenient.skipped_events == oldest - 1

    run(scenario())

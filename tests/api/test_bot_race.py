"""The latency race under the 20-bid cap: a remote bot with a competitive price gets at least
half of its bids into their orders' caps in the default market at 60x.

An order keeps its first `order_max_bids` (20) bids to arrive; the simulated providers bid
within seconds of simulated time (data centers in ~3 s), and a remote bid lands at the
market's next tick (6 simulated seconds at 60x). The bot bids the moment an `order_opened`
event reaches it, without a round of HTTP, and passes over orders whose cap is already
full, so most of what it sends is accepted."""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Any

import httpx

from api.remote.bot import Bot
from api.remote.strategy_args import make_strategy
from tests.api.live_helpers import all_events

if TYPE_CHECKING:
    from tests.conftest import Server

#: The clock the market is run to before the bot joins, simulated hours: mid-day, near the
#: daily peak of demand (15 h), when orders come fastest and their caps fill fastest.
BUSY_FROM_H = 14.0
#: A live market's tick at 60x, simulated seconds (0.1 wall seconds).
TICK_S = 6.0
#: Wall seconds the bot trades.
TRADING_S = 18.0
#: Bids the claim needs. With n answered bids, the binomial standard error of a rate near
#: 50% is sqrt(0.25 / n); the test asks the measured rate to be at least two of them above
#: 50% (under a true rate of 50% or less it would pass about 2% of the time). 10 bids make
#: the margin 32 points (a rate of at least 82%); more bids make it smaller (16 to 20 bids
#: come in the time it trades: 22 to 25 points).
MIN_BIDS = 10


def _landing_delays_s(server: Server, market_id: str, provider: int) -> list[float]:
    """Simulated seconds from each order's opening to the arrival of `provider`'s bid."""
    events = all_events(server.url, market_id)
    opened_s = {e["order_id"]: e["time_s"] for e in events if e["kind"] == "order_opened"}
    return [arrival_s - opened_s[e["order_id"]] for e in events if e["kind"] == "bids_placed"
            for bidder, arrival_s in zip(e["providers"], e["arrivals_s"], strict=True)
            if bidder == provider]


def _operator(server: Server, method: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.request(method, f"{server.url}{path}", json=body, headers=server.operator,
                             timeout=30)
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_a_prompt_bot_gets_most_of_its_bids_into_the_cap_at_60x(serve) -> None:
    server = serve()
    market_id = _operator(server, "POST", "/api/markets", {"speed": 100_000})["market_id"]
    deadline = time.monotonic() + 30.0
    while httpx.get(f"{server.url}/api/markets/{market_id}",
                    timeout=30).json()["clock_s"] < BUSY_FROM_H * 3600:
        assert time.monotonic() < deadline, "the market did not reach mid-day"
        time.sleep(0.05)
    _operator(server, "PUT", f"/api/markets/{market_id}/speed", {"speed": 60.0})

    # A competitive price: an H100 home rig's cost plus 10%, kept after the fee (cheaper
    # than the data centers'), with enough GPUs that capacity does not hold its bids back.
    lines: list[str] = []
    bot = Bot(server.url, market_id, make_strategy("cost_plus", {"markup": 0.1}),
              gpu_model="h100", gpus=512, archetype="home_rig", stop_after_s=TRADING_S,
              log=lines.append, status_every_s=5.0)
    summary = bot.run_blocking()

    answered = summary["bids_placed"] + summary["bids_refused"]
    rate = summary["acceptance_rate"]
    print(f"\nat 60x: {summary['bids_placed']} of {answered} bids accepted into the cap "
          f"({rate:.0%}); refused {summary['refused_by_reason']}; passed over "
          f"{summary['passed_over']}; {summary['leases_won']} leases won")
    assert summary["stopped_by"] == "stop_after_s"
    assert summary["bids_sent"] == answered  # every bid sent got its answer
    assert answered >= MIN_BIDS, summary
    assert rate >= 0.5 + 2 * math.sqrt(0.25 / answered), summary
    assert sum(summary["refused_by_reason"].values()) == summary["bids_refused"]
    # It bid at once: its bids landed at the first tick after their orders opened (a tick
    # is 6 simulated seconds at 60x), not a tick or a round trip later.
    landed_after_s = _landing_delays_s(server, market_id, summary["provider"])
    assert len(landed_after_s) == summary["bids_placed"]
    assert statistics.median(landed_after_s) <= TICK_S, landed_after_s
    # It told its author as it ran: status lines with the counts, and the summary.
    status = [line for line in lines if ": after " in line and " bids sent, " in line]
    assert status, lines[-5:]
    assert f"{summary['bids_sent']} bids sent, {summary['bids_placed']} accepted into the " \
        "cap" in lines[-1]

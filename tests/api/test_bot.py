"""Remote provider bots against a real server: the strategy class that runs offline prices the
live market's orders the same way, sees only what `MarketView` would show it, learns how its
auctions ended, wins leases and is paid; `gpumarket bot` names the argument at fault on bad
input."""

from __future__ import annotations

import asyncio
import math
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from agents.markups import CostPlus
from api.remote.bot import Bot, _Order
from api.remote.replies import ApiError
from api.remote.strategy_args import make_strategy, parse_params
from api.remote.view import RemoteView
from market.strategy import ProviderView
from tests.api.live_helpers import all_events, post_json

if TYPE_CHECKING:
    from tests.conftest import Server

WAIT_S = 60.0
#: No simulated provider of the default market has this GPU: a bot that offers it is the only
#: bidder on orders for it, so it must win every one it bids on below the max price.
LONE_GPU = "rtx3090"


def _market(server: Server, speed: float = 60.0, *overrides: str) -> tuple[str, str]:
    created = post_json(server.url, "/api/markets", {"overrides": ["duration_days=1", *overrides],
                                                     "speed": speed}, server.operator_token)
    return created["market_id"], created["control_token"]


async def _until(condition, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `condition()` every 20 ms, at most `timeout_s` wall seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class Recording(CostPlus):
    """cost_plus that keeps every outcome it is told of."""

    def __init__(self, markup: float) -> None:
        super().__init__(markup)
        self.outcomes: list[Any] = []

    def observe(self, outcome: Any) -> None:
        self.outcomes.append(outcome)


@dataclass
class Lone:
    """A quiet market (no simulated tenants) where no simulated provider has the bot's GPU,
    a tenant, and a bot with three such GPUs: the bot is the only bidder on the tenant's
    orders, so every bid under the cap wins."""

    market_id: str
    control: str
    tenant: dict[str, Any]
    strategy: Recording
    lines: list[str]
    bot: Bot

    @classmethod
    def open(cls, server: Server) -> Lone:
        url = server.url
        # AEP-23's USD escrow: the bot keeps all but the take rate, in dollars.
        market_id, control = _market(server, 60.0, "tenants.arrivals_per_hour=1e-6",
                                     'market.settlement="aep23"',
                                     "providers.1.gpu_mix={ rtx4090 = 1.0 }")
        tenant = post_json(url, f"/api/markets/{market_id}/participants",
                           {"role": "tenant", "name": "carol"})
        strategy, lines = Recording(markup=0.25), []
        bot = Bot(url, market_id, strategy, name="lone", gpu_model=LONE_GPU, gpus=3,
                  archetype="home_rig", log=lines.append)
        return cls(market_id, control, tenant, strategy, lines, bot)


def test_bot_bids_its_strategys_price_wins_and_is_paid(serve) -> None:
    server = serve()
    lone = Lone.open(server)
    market_id, control, tenant = lone.market_id, lone.control, lone.tenant
    strategy, lines, bot = lone.strategy, lone.lines, lone.bot
    orders = f"/api/markets/{market_id}/orders"
    job = {"gpus": 1, "gpu_models": [LONE_GPU], "hours": 0.05, "auto_select": True}

    async def scenario() -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {tenant['token']}"}
        task = asyncio.create_task(bot.run())
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            await _until(lambda: bot.started or task.done(), "the bot to start")
            assert bot.started, task.exception()
            # One GPU each: a bid holds its GPUs, so the bot's three serve the three at once.
            for _ in range(3):
                posted = await http.post(orders, headers=auth, json={
                    **job, "max_price_usd_per_gpu_hour": 5.0})
                assert posted.status_code == 201, posted.text
            await _until(lambda: len(strategy.outcomes) >= 3, "three auctions to end")
            deadline = time.monotonic() + WAIT_S
            while (await http.get(f"/api/markets/{market_id}/me", headers={
                    "Authorization": f"Bearer {bot.token}"})).json()["active_leases"]:
                assert time.monotonic() < deadline, "the leases did not end"
                await asyncio.sleep(0.05)
            # With its GPUs free again, one order it cannot serve under the cap: priced, but
            # no bid and no outcome.
            posted = await http.post(orders, headers=auth, json={
                **job, "max_price_usd_per_gpu_hour": 0.001})
            assert posted.status_code == 201, posted.text
            await _until(lambda: bot.orders_priced >= 4, "the fourth order to be priced")
            stopped = await http.post(f"/api/markets/{market_id}/stop",
                                      headers={"Authorization": f"Bearer {control}"})
            assert stopped.status_code == 200, stopped.text
        return await asyncio.wait_for(task, WAIT_S)

    summary = asyncio.run(scenario())
    assert summary["stopped_by"] == "market stopped"
    assert (summary["orders_priced"], summary["bids_placed"], summary["leases_won"]) == (4, 3, 3)
    assert summary["bids_refused"] == 0

    # The bids on the market are the strategy's own price for this provider, as offline.
    cost = bot.view.me.cost_basis_usd_per_gpu_hour
    expected = float(CostPlus(0.25).asks(np.array([bot.provider]), bot.view)[0])
    assert expected == pytest.approx(cost * 1.25 / (1 - bot.view.take_rate))
    events = all_events(server.url, market_id)
    bids = [price / 1e6 for e in events if e["kind"] == "bids_placed"
            for provider, price in zip(e["providers"], e["prices_micro_per_hour"], strict=True)
            if provider == bot.provider]
    assert bids == pytest.approx([expected] * 3, abs=1e-6)  # micro-USD rounding
    leases = [e for e in events if e["kind"] == "lease_created" and e["provider"] == bot.provider]
    assert len(leases) == 3
    # Every auction it bid in was reported, won, at its own bid (tenant pick pays the bid).
    for outcome in strategy.outcomes:
        assert outcome.won.tolist() == [True]
        assert outcome.providers.tolist() == [bot.provider]
        assert outcome.clearing_usd_per_gpu_hour == pytest.approx(expected, abs=1e-6)
        assert outcome.public_bids_usd_per_gpu_hour.tolist() == pytest.approx([expected], abs=1e-6)
        assert outcome.order.gpu_models == (LONE_GPU,)
        assert outcome.order.units  # the resource units came with the stream
    # Paid for three jobs of 0.05 GPU-hours at its price; it keeps all but the take rate.
    payments = [e for e in events
                if e["kind"] == "payment_settled" and e["provider"] == bot.provider]
    paid = sum(e["amount_micro"] for e in payments) / 1e6
    kept = sum(e["amount_micro"] - e["fee_micro"] for e in payments) / 1e6
    assert paid == pytest.approx(3 * 0.05 * expected, abs=3e-6)
    assert kept == pytest.approx(paid * (1 - bot.view.take_rate), abs=3e-6)
    assert summary["earned_usd"] == pytest.approx(kept, abs=1e-6)  # bid deposits came back
    assert sum("won order" in line for line in lines) == 3
    assert lines[-1].startswith("lone: stopped (market stopped): 4 orders priced")


def test_remote_view_shows_only_the_bots_own_provider() -> None:
    me = ProviderView(7, "h100", 8, 8, 3.0, 1.0, 2.0)
    view = RemoteView(me, ("h100", "a10"), 0.2, {"h100": 12.29, "a10": 0.75}, now_s=100.0)
    assert view.costs(np.array([7]), "marginal").tolist() == [1.0]
    assert view.models(np.array([7])).tolist() == [0]
    for rival in (np.array([6]), np.array([7, 8])):
        with pytest.raises(PermissionError):
            view.costs(rival)
        with pytest.raises(PermissionError):
            view.models(rival)
    with pytest.raises(PermissionError):
        view.provider(3)
    view.heard_clock(50.0)
    assert view.now_s == 100.0  # the clock never goes back
    view.record_price("h100", 2.5)
    assert view.clearing_prices("h100").tolist() == [2.5]
    assert view.clearing_prices("a10").size == 0


def test_refused_bids_are_counted_by_reason() -> None:
    lines: list[str] = []
    bot = Bot("http://127.0.0.1:1", "m-00000000", CostPlus(0.1), log=lines.append)
    order = _Order({"order_id": 5, "gpus": 2, "gpu_models": ["h100"], "seq": 9,
                    "max_price_usd_per_gpu_hour": 3.0, "time_s": 0.0})
    for error in [
        ApiError(409, "conflict", "order 5 already has order_max_bids (12) bids"),
        ApiError(409, "conflict", "order 5 is not open"),
        ApiError(404, "not_found", "no order 5"),
        ApiError(409, "conflict", "price_usd_per_gpu_hour: above the order's max price 3.0"),
        ApiError(429, "rate_limited", "over the budget"),
        ApiError(0, "timeout", "bid: no reply within 10 s"),
    ]:
        bot._bid_holds[5] = (2, math.inf)
        bot._refused(order, error)
        assert 5 not in bot._bid_holds  # the GPUs it held are free again
    assert dict(bot.refused) == {"order full": 1, "order closed": 2, "above max price": 1,
                                 "rate limited": 1, "no reply": 1}
    assert bot.bids_refused == 6
    assert bot.max_bids == 12  # the market's own cap, as the refusal stated it
    assert lines[0] == ("bot: bid on order 5 refused (order full): order 5 already has "
                        "order_max_bids (12) bids")
    # The status and summary lines carry the counts.
    bot.bids_sent, bot.bids_placed = 10, 4
    assert "10 bids sent, 4 accepted into the cap (40%), 6 refused (2 order closed, 1 order " \
        "full" in bot._counts_line()
    assert bot.summary()["acceptance_rate"] == pytest.approx(0.4)


def test_strategies_and_parameters_are_checked_by_name() -> None:
    assert parse_params(["markup=0.2", "net_of_fee=true", 'form="shade"']) == {
        "markup": 0.2, "net_of_fee": True, "form": "shade"}
    assert make_strategy("cost_plus", {"markup": 0.2}).markup == 0.2
    for call, message in [
        (lambda: make_strategy("no_such"), "--strategy: unknown strategy 'no_such' (known: "),
        (lambda: make_strategy("cost_plus", {"markupp": 1}),
         "--param: strategy 'cost_plus' has no parameter 'markupp' (its parameters: markup"),
        (lambda: make_strategy("cost_plus", {"markup": -1}),
         "--param: strategy 'cost_plus': markup must be >= 0"),
        (lambda: make_strategy("cost_plus", parse_params(["markup=abc"])),
         "--param markup: strategy 'cost_plus' takes a number (e.g. markup=0.2), got 'abc'"),
        (lambda: make_strategy("cost_plus", {"net_of_fee": 1}),
         "--param net_of_fee: strategy 'cost_plus' takes true or false"),
        (lambda: make_strategy("hedge", {"markups": 0.2}),
         "--param markups: strategy 'hedge' takes a list or text"),
        (lambda: parse_params(["markup"]), "--param 'markup': expected NAME=VALUE"),
        (lambda: parse_params(["a.b=1"]), "--param 'a.b=1': expected NAME=VALUE"),
    ]:
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value).startswith(message), str(raised.value)


def _gpumarket(*args: str, timeout_s: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from api.cli.main import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout_s)


def test_bot_command_names_the_argument_at_fault(serve) -> None:
    server = serve()
    market_id, control = _market(server)
    base = ["bot", "--url", server.url, "--market", market_id]
    closed_url = _nothing_listens()
    cases = [
        (["--strategy", "nope"], "--strategy: unknown strategy 'nope'"),
        (["--strategy", "cost_plus", "--param", "markup=-1"], "--param: strategy"),
        (["--strategy", "cost_plus", "--param", "oops"], "--param 'oops'"),
        (["--strategy", "cost_plus", "--param", "markup=abc"],
         "--param markup: strategy 'cost_plus' takes a number (e.g. markup=0.2), got 'abc'"),
        (["--strategy", "undercut", "--param", "window=2.5"],
         "--param window: strategy 'undercut' takes a whole number"),
        (["--strategy", "cost_plus", "--stop-after", "0"], "--stop-after"),
        (["--strategy", "cost_plus", "--gpu-model", "z80"], "--gpu-model: expected one of"),
        (["--strategy", "cost_plus", "--archetype", "castle"], "--archetype:"),
        (["--strategy", "cost_plus", "--token", "gmp_forged"], "--token:"),
        (["--strategy", "cost_plus", "--market", "m-00000000"], "--market: no market"),
        (["--strategy", "cost_plus", "--url", closed_url], "--url: cannot reach"),
    ]
    for extra, message in cases:
        done = _gpumarket(*base, *extra)
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        error = done.stderr.strip()
        assert len(error.splitlines()) == 1 and "Traceback" not in error, error
        assert message in error, (extra, error)
    # A tenant's token is refused; a provider joined by hand can hand its token to a bot.
    tenant = post_json(server.url, f"/api/markets/{market_id}/participants",
                       {"role": "tenant", "name": "t"})
    done = _gpumarket(*base, "--strategy", "cost_plus", "--token", tenant["token"])
    assert done.returncode == 2 and "--token: this token is a tenant's" in done.stderr
    provider = post_json(server.url, f"/api/markets/{market_id}/participants",
                         {"role": "provider", "name": "p", "gpu_model": "a10", "gpus": 2})
    done = _gpumarket(*base, "--strategy", "cost_plus", "--token", provider["token"],
                      "--stop-after", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"bot: provider {provider['provider']} in {market_id} "
                                  "(2 × a10")
    # Nothing the bots tried joined the market: only the two joined by hand are in it.
    joined = httpx.get(f"{server.url}/api/markets/{market_id}", timeout=30).json()
    assert [p["role"] for p in joined["participants"]] == ["tenant", "provider"]
    post_json(server.url, f"/api/markets/{market_id}/stop", {}, control)


def _nothing_listens() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_bot_command_trades_until_max_orders(serve) -> None:
    server = serve()
    market_id, _ = _market(server, speed=600.0)
    done = _gpumarket("bot", "--url", server.url, "--market", market_id, "--strategy",
                      "cost_plus", "--param", "markup=0.1", "--gpu-model", "h100",
                      "--max-orders", "3", "--stop-after", "45")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("bot: provider ") and "8 × h100" in lines[0]
    summary = re.search(r"stopped \((\w+)\): 3 orders priced, (\d+) bids sent, (\d+) accepted "
                        r"into the cap(?: \(\d+%\))?, (\d+) refused", lines[-1])
    assert summary is not None, lines[-1]
    sent, placed, refused = (int(summary.group(n)) for n in (2, 3, 4))
    assert summary.group(1) == "max_orders"
    assert len([line for line in lines if " bid " in line and "refused" not in line]) == placed
    # Every bid sent was answered before the summary, placed or refused with a reason.
    assert placed + refused == sent <= 3
    assert len([line for line in lines if "refused (" in line and ": bid on" in line]) == refused


def test_bot_rides_out_a_server_restart(serve, tmp_path) -> None:
    db = tmp_path / "sessions.db"
    first = serve(db)
    port = first.url.rsplit(":", 1)[1]
    lone = Lone.open(first)
    market_id, control, tenant = lone.market_id, lone.control, lone.tenant
    strategy, lines, bot = lone.strategy, lone.lines, lone.bot
    job = {"gpus": 1, "gpu_models": [LONE_GPU], "hours": 0.05, "auto_select": True,
           "max_price_usd_per_gpu_hour": 5.0}

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(bot.run())
        await _until(lambda: bot.started or task.done(), "the bot to start")
        assert bot.started, task.exception()
        await asyncio.to_thread(post_json, first.url, f"/api/markets/{market_id}/orders", job,
                                tenant["token"])
        await _until(lambda: len(strategy.outcomes) == 1, "the first auction to end")
        first.kill()  # SIGKILL, then the same server again on the same port and log
        second = await asyncio.to_thread(serve, db, "--port", port)
        assert second.url == first.url
        await asyncio.to_thread(post_json, second.url, f"/api/markets/{market_id}/orders", job,
                                tenant["token"])
        await _until(lambda: len(strategy.outcomes) == 2, "the second auction to end")
        await asyncio.to_thread(post_json, second.url, f"/api/markets/{market_id}/stop", {},
                                control)
        return await asyncio.wait_for(task, WAIT_S)

    summary = asyncio.run(scenario())
    assert summary["stopped_by"] == "market stopped"
    assert (summary["bids_placed"], summary["leases_won"], summary["bids_refused"]) == (2, 2, 0)
    assert [o.won.tolist() for o in strategy.outcomes] == [[True], [True]]
    assert sum("won order" in line for line in lines) == 2


def test_earned_counts_unsold_akt_at_its_spot_price_where_leases_settle_in_akt() -> None:
    from api.remote.bot import _worth_usd

    assert _worth_usd({"wallet_usd": 10.0}) == 10.0  # AEP-23: the wallet is all of it
    assert _worth_usd({"wallet_usd": 10.0, "bme": {"akt_held_value_usd": 2.5}}) == 12.5

"""The presenter's page, flow by flow, in a real Chromium against a real server: live charts
with data, an order that opens to its bids, a headline that agrees with the tables, money that
moves in the first simulated hour, a person picking a bid by hand at 600x after ten wall
seconds, and the guided demo's captions. Screenshots go to test-artifacts/page/ (CI keeps
them). The hold behind the hand pick is also tested without a browser: held bids stay open,
a release drops the stale ones, and the same commands replay to the same events.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.live.commands import HoldOrder, JoinTenant, PostOrder, ReleaseOrder
from api.live.replay import rebuild
from api.live.session import Session
from api.live.sessionlog import SessionLog
from market.errors import MarketError
from market.scenario import load_scenario
from tests.api.test_browser import WAIT_MS, open_page
from tests.api.test_server import wait_for
from tests.chromium import need

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the dev environment installs it
    Page = None

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "page"
SCENARIO = load_scenario("default", ["duration_days=0.5"])


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def create(server, speed: float, seed: int = 1, name: str = "Page test") -> str:
    reply = httpx.post(f"{server.url}/api/markets", headers=server.operator, timeout=30,
                       json={"scenario": "default", "seed": seed, "speed": speed, "name": name})
    assert reply.status_code == 201, reply.text
    return reply.json()["market_id"]


def money(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


# ---------------------------------------------------------------------- the hold, in-process


def _tenant_with_held_order(session: Session) -> tuple[int, object]:
    tenant = session.apply("join_tenant", JoinTenant(role="tenant", name="ann"), None)
    actor = session.participant(tenant["participant_id"])
    order_id = session.apply("post_order", PostOrder(
        gpu_models=["h100", "a100-80gb", "l40s", "mi300x", "rtx4090"],
        max_price_usd_per_gpu_hour=50.0), actor)["order_id"]
    return order_id, actor


def test_held_bids_stay_open_until_released_and_replay_the_same():
    histories = []
    for _ in range(2):
        session = Session(SCENARIO, seed=5)
        session.advance(600.0)
        order_id, actor = _tenant_with_held_order(session)
        session.apply("hold_order", HoldOrder(order_id=order_id), actor)
        timeout_s = session.market.rules.bid_timeout_s
        session.advance(session.market.now + 4 * timeout_s)
        bids = session.market.bids(order_id)
        assert bids, "providers bid on a generous order"
        assert all(bid["state"] == "open" for bid in bids), "a hold keeps every bid open"
        # The market itself ends the hold (no actor): bids older than the timeout go.
        result = session.apply("release_order", ReleaseOrder(order_id=order_id), None)
        assert result == {"order_id": order_id, "released": True}
        assert not session.market.held(order_id)
        assert all(bid["state"] != "open" for bid in session.market.bids(order_id))
        session.advance(session.market.now + 3600.0)
        histories.append(list(session.history))
    assert histories[0] == histories[1]


def test_only_a_hand_picked_order_is_held_and_a_release_twice_is_a_no_op():
    session = Session(SCENARIO, seed=5)
    order_id, actor = _tenant_with_held_order(session)
    auto = session.apply("post_order", PostOrder(
        gpu_models=["h100"], max_price_usd_per_gpu_hour=50.0, auto_select=True),
        actor)["order_id"]
    with pytest.raises(MarketError, match="only a hand-picked order"):
        session.market.hold_order(auto)
    session.market.hold_order(order_id)
    assert session.market.release_order(order_id) is True
    assert session.market.release_order(order_id) is False


def test_a_live_hold_survives_a_restart_then_ends_as_a_logged_command_that_replays(
        serve, tmp_path):
    db = tmp_path / "holds.db"
    first = serve(db, "--hold-s", "600")
    market_id = create(first, speed=60)
    joined = httpx.post(f"{first.url}/api/markets/{market_id}/participants", timeout=30,
                        json={"role": "tenant", "name": "cy"}).json()
    auth = {"Authorization": f"Bearer {joined['token']}"}
    posted = httpx.post(f"{first.url}/api/markets/{market_id}/orders", headers=auth,
                        timeout=30, json={"gpu_models": ["h100"],
                                          "max_price_usd_per_gpu_hour": 20.0})
    assert posted.status_code == 201, posted.text
    order_id = posted.json()["result"]["order_id"]
    snapshot = httpx.get(f"{first.url}/api/markets/{market_id}", timeout=30).json()
    assert snapshot["hold_s"] == 600 and snapshot["holds"][str(order_id)] > 590
    first.kill()  # SIGKILL: the hold's wall-clock deadline dies with the process

    # Rebuilt from the log, the market still holds the order; this server's limit ends it.
    server = serve(db, "--hold-s", "0.5")
    snapshot = httpx.get(f"{server.url}/api/markets/{market_id}", timeout=30).json()
    deadline = time.monotonic() + 20
    while str(order_id) in snapshot["holds"] and time.monotonic() < deadline:
        time.sleep(0.1)
        snapshot = httpx.get(f"{server.url}/api/markets/{market_id}", timeout=30).json()
    assert str(order_id) not in snapshot["holds"], "the hold ends after --hold-s wall seconds"
    # The tenant may hold it again, and let go before the time is up.
    order_url = f"{server.url}/api/markets/{market_id}/orders/{order_id}"
    held = httpx.post(f"{order_url}/hold", headers=auth, timeout=30)
    assert held.status_code == 200 and held.json()["result"]["held"] is True, held.text
    released = httpx.post(f"{order_url}/release", headers=auth, timeout=30)
    assert released.json()["result"] == {"order_id": order_id, "released": True}
    assert httpx.post(f"{order_url}/hold", timeout=30).status_code == 401
    seq = httpx.get(f"{server.url}/api/markets/{market_id}", timeout=30).json()["seq"]
    server.kill(signal.SIGTERM)

    reader = SessionLog(db, readonly=True)
    try:
        commands = [(c.kind, c.actor) for c in reader.verified_commands(market_id)]
        record = reader.market(market_id)
        session, _ = rebuild(reader, record)
    finally:
        reader.close()
    participant = joined["participant_id"]
    assert commands == [("join_tenant", None), ("post_order", participant),
                        ("hold_order", participant), ("release_order", None),
                        ("hold_order", participant), ("release_order", participant)]
    assert session.seq >= seq and not session.market.held(order_id)


def test_serve_on_a_busy_port_exits_2_with_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", "from api.cli.main import main; main()", "serve", "--port",
             str(port), "--db", str(tmp_path / "s.db")],
            capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port} is already in use" in lines[0], done.stderr


# ---------------------------------------------------------------------- the page


def _need_browser() -> None:
    need(Page is not None, "playwright not installed: pip install playwright")


def watch_charts_headline_and_money(page: Page) -> None:
    """On a market at 60x: money accrues in the first simulated hour, the charts draw with
    data, and the headline agrees with the open-orders table at every frame."""
    accrued = page.get_by_test_id("figure-tenant_accrued_usd").locator("dd")
    expect(accrued).not_to_have_text(re.compile(r"^\$0\.00$|^—$"), timeout=WAIT_MS)
    clock, accrued_text = page.evaluate("""() => [
        document.querySelector('[data-testid=market-clock]').textContent,
        document.querySelector('[data-testid=figure-tenant_accrued_usd] dd').textContent]""")
    assert clock.startswith("day 1 00:"), clock
    assert money(accrued_text) > 0
    expect(page.get_by_test_id("figure-tenant_spend_usd")).to_contain_text("settled")

    # Charts draw with data: price bands and medians, GPUs wanted and free, GPUs leased.
    price_chart = page.get_by_test_id("price-chart")
    expect(price_chart.locator("polygon.band").first).to_be_attached(timeout=WAIT_MS)
    expect(price_chart.locator("polyline.series").first).to_be_attached()
    demand = page.get_by_test_id("demand-chart")
    expect(demand.locator("polyline.series")).to_have_count(2, timeout=WAIT_MS)
    expect(page.get_by_test_id("demand-legend")).to_contain_text("GPUs wanted")
    expect(page.get_by_test_id("demand-legend")).to_contain_text("GPUs free")
    expect(demand).to_contain_text("GPUs (log scale)")
    # A bucket that wanted no GPU sits on the log axis's bottom edge, not at -Infinity.
    drawn = demand.locator("polyline.series").evaluate_all(
        "lines => lines.map((line) => line.getAttribute('points'))")
    assert drawn and not any("NaN" in line or "Infinity" in line for line in drawn), drawn
    expect(page.get_by_test_id("utilization-chart").locator("polyline.series")).to_have_count(
        1, timeout=WAIT_MS)
    # A model switched off in the legend leaves the chart (other models may join meanwhile).
    # The model is pinned by its key: "the first non-empty item" is looked up again at each
    # use, and a model that gets its first lease meanwhile can come first by then.
    legend = page.get_by_test_id("price-legend")
    key = legend.locator("li:not(.empty-series)").first.get_attribute("data-key")
    model_line = price_chart.locator(f"polyline[data-series='{key}']")
    expect(model_line).to_have_count(1, timeout=WAIT_MS)
    legend.locator(f"li[data-key='{key}'] button").click()
    expect(model_line).to_have_count(0)

    # The headline and the open-orders table come from the same frame, at every tick.
    for _ in range(20):
        figure, count = page.evaluate("""() => [
            document.querySelector('[data-testid=figure-orders_open] dd').textContent,
            document.querySelector('[data-testid=orders-count]').textContent]""")
        assert count == f"{figure} open", (figure, count)
        page.wait_for_timeout(100)
    shot(page, "charts-and-headline")


def test_page_flows_charts_bids_headline_money_and_a_hand_pick_at_600x(
        browser, serve):
    _need_browser()
    server = serve()
    fast = create(server, speed=600, name="Hand pick")
    slow = create(server, speed=60, name="Charts")
    page, watched = open_page(browser, server.url)
    page.goto(f"{server.url}/#/m/{fast}")
    expect(page.get_by_test_id("connection-status")).to_have_text("● live", timeout=WAIT_MS)
    page.get_by_test_id("tenant-name").fill("bea")
    page.get_by_test_id("join-tenant-submit").click()
    expect(page.get_by_test_id("tenant-panel")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("order-auto")).not_to_be_checked()
    page.get_by_test_id("order-submit").click()
    expect(page.get_by_test_id("order-ok")).to_contain_text("posted", timeout=WAIT_MS)
    my_order = page.get_by_test_id("my-order").first
    expect(my_order.get_by_test_id("accept-bid").first).to_be_visible(timeout=WAIT_MS)
    expect(my_order).to_contain_text("left to accept")
    waiting_since_ms = page.evaluate("performance.now()")

    # The order opens to its bids in the public table: provider, price, latency, hold.
    order_id = my_order.get_attribute("data-order-id")
    row = page.get_by_test_id("order-row").filter(has_text=f"#{order_id}")
    row.get_by_test_id("order-bids-toggle").click()
    bid = row.get_by_test_id("order-bid").first
    expect(bid).to_be_visible(timeout=WAIT_MS)
    expect(bid).to_contain_text("$")
    expect(bid).to_contain_text("held")
    expect(row.get_by_test_id("order-bids")).to_contain_text("left to pick")
    expect(row.get_by_test_id("order-bids-toggle")).to_contain_text(re.compile(r"held \d+ s"))
    row.scroll_into_view_if_needed()
    shot(page, "order-bids-held")

    # While this person makes up their mind, a second visitor watches the other market.
    other, other_watched = open_page(browser, server.url)
    other.goto(f"{server.url}/#/m/{slow}")
    expect(other.get_by_test_id("connection-status")).to_have_text("● live", timeout=WAIT_MS)
    watch_charts_headline_and_money(other)

    # Ten wall seconds is 6,000 simulated seconds at 600x, twenty bid timeouts: held, the
    # bids are still there to pick.
    waited_ms = page.evaluate("performance.now()") - waiting_since_ms
    page.wait_for_timeout(max(10_000 - waited_ms, 0))
    accept = my_order.get_by_test_id("accept-bid").first
    expect(accept).to_be_visible()
    accept.click()
    expect(my_order.get_by_test_id("my-order-error")).to_be_hidden()
    expect(page.get_by_test_id("my-lease")).to_have_count(1, timeout=WAIT_MS)
    shot(page, "hand-pick-at-600x")
    for seen in (watched, other_watched):
        assert seen.errors == [], seen.errors


def test_demo_mode_narrates_the_spike(browser, serve):
    _need_browser()
    server = serve(None, "--demo", "--demo-speed", "5000")

    def demo_listed() -> list[dict]:  # the demo market opens just after the server answers
        listing = httpx.get(f"{server.url}/api/markets", timeout=10).json()
        return [m for m in listing if m["name"] == "Guided demo"]

    demo = wait_for(demo_listed, "the demo market to be listed")
    assert len(demo) == 1, demo
    page, watched = open_page(browser, server.url)
    page.goto(f"{server.url}/#/m/{demo[0]['market_id']}")
    caption = page.get_by_test_id("caption")
    expect(caption).to_contain_text(re.compile(r"market opens|First lease"), timeout=WAIT_MS)
    expect(caption).to_contain_text(re.compile(r"Demand spike: 4× arrivals for 6 h"),
                                    timeout=WAIT_MS)
    shot(page, "demo-spike")
    expect(caption).to_contain_text("Spike, hour 1 of 6", timeout=WAIT_MS)
    assert watched.errors == [], watched.errors

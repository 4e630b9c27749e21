"""The browser page as a first-time visitor meets it, in a real Chromium against a real server.

The presenter opens the address the server printed (the operator token in its fragment),
creates a market, watches it trade, joins as a tenant, posts a job, accepts a provider's bid by
hand and sees the lease under "My leases"; a reload keeps the market and the identity; a second
visitor, without the operator or the control token, may not create markets and is asked for the
control token before any control shows. Throughout, the page must ask nothing of any host but
the server, satisfy its Content-Security-Policy and log no error.

The browser is Debian's Chromium, never one Playwright downloads. Waits are Playwright's own
bounded waits.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

WAIT_MS = 30_000  # generous: a loaded CI machine runs the market and the browser side by side
CREATE_SPEED = 600  # simulated seconds per wall second: the market trades at once
# Slow enough that a bid stays open long enough to click: providers drop a bid after
# bid_timeout_s (300 simulated s), 30 wall seconds at this speed.
ACCEPT_SPEED = 10

with contextlib.suppress(ImportError):  # else the tests skip, or fail in CI (tests.chromium)
    from playwright.sync_api import Browser, ConsoleMessage, Page, expect


@dataclass
class Watched:
    """What a page did that the visitor does not see: where it connected, what it logged."""

    server: str
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def request(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.netloc != self.server:
            self.foreign.append(url)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")


def open_page(browser: Browser, live_url: str) -> tuple[Page, Watched]:
    """A fresh visitor (own session storage) in a 1280x800 window, watched."""
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    watched = Watched(urlsplit(live_url).netloc)
    page.on("request", lambda request: watched.request(request.url))
    page.on("websocket", lambda socket: watched.request(socket.url))
    page.on("console", watched.console)
    page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
    return page, watched


def create_market(page: Page, name: str) -> None:
    expect(page.get_by_test_id("markets-empty")).to_be_visible(timeout=WAIT_MS)
    page.get_by_test_id("create-scenario").select_option("default")
    page.get_by_test_id("create-seed").fill("1")
    page.get_by_test_id("create-speed").fill(str(CREATE_SPEED))
    page.get_by_test_id("create-name").fill(name)
    page.get_by_test_id("create-submit").click()
    expect(page.get_by_test_id("control-token")).to_have_text(re.compile(r"^gmc_\S+$"),
                                                              timeout=WAIT_MS)
    expect(page.get_by_test_id("markets-table")).to_contain_text(name, timeout=WAIT_MS)
    page.get_by_test_id("open-created-market").click()
    expect(page.get_by_test_id("market-name")).to_have_text(name, timeout=WAIT_MS)
    expect(page.get_by_test_id("connection-status")).to_have_text("● live", timeout=WAIT_MS)


def watch_it_trade(page: Page) -> None:
    """The market's own tenants and providers trade: leases arrive over the stream."""
    expect(page.get_by_test_id("market-clock")).to_have_text(re.compile(r"^day \d+ \d\d:\d\d$"))
    expect(page.get_by_test_id("leases-table").locator("tbody tr").first).to_be_visible(
        timeout=WAIT_MS)
    expect(page.get_by_test_id("price-chart").locator("polyline, circle").first).to_be_attached(
        timeout=WAIT_MS)
    # The headline counts welfare once per job, as `gpumarket run` does.
    metrics = page.get_by_test_id("metrics")
    for label in ("Tenants' surplus", "Providers' surplus", "Welfare lost"):
        expect(metrics).to_contain_text(label, timeout=WAIT_MS)
    expect(metrics).to_contain_text(re.compile(r"Efficiency\s*\d+(\.\d+)?%"))


def slow_down(page: Page) -> None:
    page.get_by_test_id("speed-input").fill(str(ACCEPT_SPEED))
    page.get_by_test_id("speed-submit").click()
    expect(page.get_by_test_id("market-speed")).to_have_text(f"{ACCEPT_SPEED}×",
                                                             timeout=WAIT_MS)
    expect(page.get_by_test_id("control-error")).to_be_hidden()


def join_as_tenant(page: Page, name: str) -> None:
    page.get_by_test_id("tenant-name").fill(name)
    page.get_by_test_id("join-tenant-submit").click()
    expect(page.get_by_test_id("participant-token")).to_have_text(re.compile(r"^gmp_\S+$"),
                                                                  timeout=WAIT_MS)
    expect(page.get_by_test_id("me-summary")).to_contain_text(name)
    expect(page.get_by_test_id("tenant-panel")).to_be_visible()


def post_job_and_accept_a_bid(page: Page) -> None:
    """Post a one-GPU H100 job picked by hand, then accept the cheapest bid."""
    expect(page.get_by_test_id("order-model-h100")).to_be_checked()
    expect(page.get_by_test_id("order-auto")).not_to_be_checked()
    expect(page.get_by_test_id("order-max-price")).not_to_have_value("")
    page.get_by_test_id("order-submit").click()
    expect(page.get_by_test_id("order-ok")).to_contain_text("posted", timeout=WAIT_MS)
    my_order = page.get_by_test_id("my-order").first
    accept = my_order.get_by_test_id("accept-bid").first
    expect(accept).to_be_visible(timeout=WAIT_MS)
    accept.click()
    expect(my_order.get_by_test_id("my-order-error")).to_be_hidden()
    lease = page.get_by_test_id("my-lease")
    expect(lease).to_have_count(1, timeout=WAIT_MS)
    expect(lease).to_contain_text("h100")
    expect(page.get_by_test_id("my-orders-empty")).to_be_visible(timeout=WAIT_MS)


def test_visitor_creates_a_market_joins_and_leases_gpus(browser: Browser, serve):
    server = serve()
    live_url = server.url
    page, watched = open_page(browser, live_url)
    page.goto(f"{live_url}/#operator={server.operator_token}")
    # The token leaves the address at once: not on a projected screen, not in the history.
    expect(page).to_have_url(f"{live_url}/#/", timeout=WAIT_MS)
    expect(page.get_by_test_id("operator-form")).to_be_hidden()
    create_market(page, "Browser test")
    watch_it_trade(page)
    slow_down(page)
    join_as_tenant(page, "alice")
    post_job_and_accept_a_bid(page)

    # The address names the market and this tab keeps its tokens: a reload lands back here,
    # still in control and still alice, with the lease.
    page.reload()
    expect(page.get_by_test_id("me-summary")).to_contain_text("alice", timeout=WAIT_MS)
    expect(page.get_by_test_id("my-lease")).to_have_count(1, timeout=WAIT_MS)
    expect(page.get_by_test_id("control-buttons")).to_be_visible()
    expect(page.get_by_test_id("participant-token-box")).to_be_hidden()  # shown once only

    # Another visitor watches, and is asked for the control token before any control shows.
    other, other_watched = open_page(browser, live_url)
    other.goto(page.url)
    expect(other.get_by_test_id("connection-status")).to_have_text("● live", timeout=WAIT_MS)
    expect(other.get_by_test_id("control-token-form")).to_be_visible()
    expect(other.get_by_test_id("control-buttons")).to_be_hidden()
    expect(other.get_by_test_id("join-panel")).to_be_visible()
    # ... and on the home page it is offered the operator token's field, not the create form.
    other.goto(live_url)
    expect(other.get_by_test_id("operator-form")).to_be_visible(timeout=WAIT_MS)
    expect(other.get_by_test_id("create-form")).to_be_hidden()

    for seen in (watched, other_watched):
        assert seen.foreign == [], f"requests to other hosts: {seen.foreign}"
        assert seen.errors == [], f"console errors: {seen.errors}"

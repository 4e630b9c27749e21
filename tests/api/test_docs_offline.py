"""The API's documentation pages work without internet: in a real Chromium whose every request
to anywhere but the server is refused, `/docs` (Swagger UI) lists the API's operations and
`/redoc` (ReDoc) renders them, both from the server's own files, under a Content-Security-Policy
that allows scripts from the server only (ReDoc also writes inline styles), with no error logged
and no policy violated.

The browser is Debian's Chromium, never one Playwright downloads; waits are Playwright's own
bounded waits.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from api.live.exposure import PAGE_POLICY, REDOC_POLICY

with contextlib.suppress(ImportError):  # else the tests skip, or fail in CI (tests.chromium)
    from playwright.sync_api import Browser, Page, Route, expect

WAIT_MS = 30_000  # generous: ReDoc's bundle is a megabyte of script on a loaded machine
#: Operations every server documents (a sample: the list is the OpenAPI document's).
OPERATIONS = ("/api/health", "/api/markets", "/api/markets/{market_id}/orders")
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class Offline:
    """A page cut off from everything but the server: what it tried to reach, what it logged."""

    server: str
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or parts.netloc == self.server:
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort("internetdisconnected")

    def watch(self, page: Page) -> None:
        page.route("**/*", self.route)
        page.on("console", lambda message: message.type == "error" and self.errors.append(
            f"{message.text} ({message.location.get('url', '')})"))
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))


def open_offline(browser: Browser, url: str) -> tuple[Page, Offline]:
    page = browser.new_page()
    offline = Offline(urlsplit(url).netloc)
    offline.watch(page)
    # A policy violation is reported as a console error, and as this event: count both.
    page.add_init_script("document.addEventListener('securitypolicyviolation', (event) => "
                         "console.error('CSP violation: ' + event.violatedDirective + ' ' + "
                         "event.blockedURI));")
    return page, offline


def test_docs_pages_have_the_servers_policy_and_no_outside_address(live_url):
    for path, policy in (("/docs", PAGE_POLICY), ("/redoc", REDOC_POLICY)):
        answer = httpx.get(live_url + path, timeout=10)
        assert answer.status_code == 200, path
        assert answer.headers["content-security-policy"] == policy, path
        assert "script-src 'self';" in policy and "http" not in policy  # nothing from outside
        assert "http://" not in answer.text and "https://" not in answer.text, answer.text
        assert "<script>" not in answer.text  # no inline script: the policy forbids it


def test_swagger_ui_lists_the_operations_offline(browser, live_url):
    page, offline = open_offline(browser, f"{live_url}/docs")
    page.goto(f"{live_url}/docs")
    for operation in OPERATIONS:
        expect(page.locator(f".opblock-summary-path[data-path='{operation}']").first
               ).to_be_visible(timeout=WAIT_MS)
    # An operation opens and shows the documented error body.
    page.locator(".opblock-summary-path[data-path='/api/markets/{market_id}/orders']"
                 ).first.click()
    expect(page.get_by_text("Problem").first).to_be_visible(timeout=WAIT_MS)
    assert offline.refused == [], offline.refused
    assert offline.errors == [], offline.errors
    page.close()


def test_redoc_renders_the_api_offline(browser, live_url):
    page, offline = open_offline(browser, f"{live_url}/redoc")
    page.goto(f"{live_url}/redoc")
    expect(page.locator("h1").first).to_contain_text("gpumarket live markets",
                                                     timeout=WAIT_MS)
    expect(page.get_by_text("/api/markets/{market_id}/orders").first).to_be_attached(
        timeout=WAIT_MS)
    assert offline.refused == [], offline.refused
    # ReDoc's sidebar always asks for its maker's logo from their CDN; the policy refuses it
    # and the image hides itself: that report, and nothing else.
    errors = [error for error in offline.errors if REDOC_LOGO not in error]
    assert errors == [], errors
    page.close()

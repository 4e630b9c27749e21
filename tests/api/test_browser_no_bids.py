"""The live page tells a tenant why nobody bid on its order: a line under "Closed without a
lease" once the order expires (Chromium; skips where it or Playwright is missing)."""

from __future__ import annotations

import re

import pytest

from tests.api.test_browser import WAIT_MS, create_market, join_as_tenant, open_page

expect = pytest.importorskip("playwright.sync_api").expect


def test_an_expired_order_shows_why_nobody_bid(browser, serve):
    server = serve()
    page, watched = open_page(browser, server.url)
    page.goto(f"{server.url}/#operator={server.operator_token}")
    create_market(page, "Why no bids")
    join_as_tenant(page, "alice")
    page.get_by_test_id("order-auto").check()
    page.get_by_test_id("order-max-price").fill("0.01")  # below every provider's ask
    page.get_by_test_id("order-submit").click()
    expect(page.get_by_test_id("order-ok")).to_contain_text("posted", timeout=WAIT_MS)
    line = page.get_by_test_id("my-expired-order").first
    expect(line).to_contain_text(re.compile(r"Order #\d+ closed without a lease"),
                                 timeout=WAIT_MS)
    expect(line).to_contain_text("asked above your max price")
    expect(page.get_by_test_id("my-expired-wrap")).to_be_visible()
    assert not watched.errors, watched.errors

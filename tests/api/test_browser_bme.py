"""The live page of a market settled by Burn-Mint Equilibrium: everyone sees the AKT panel
(price, TWAP, mint status, collateral ratio); a tenant whose job needs ACT sees its balance
and the top-up; an AEP-23 market's page has no AKT panel (Chromium; skips where it or
Playwright is missing, fails in CI)."""

from __future__ import annotations

import re

import httpx
import pytest

from market.bme.protocol import STATUSES
from tests.api.test_browser import CREATE_SPEED, WAIT_MS, join_as_tenant, open_page
from tests.api.test_page import shot

expect = pytest.importorskip("playwright.sync_api").expect


def test_a_bme_market_shows_the_akt_panel_and_a_tenants_top_up(browser, serve):
    server = serve()
    page, watched = open_page(browser, server.url)
    page.goto(f"{server.url}/#operator={server.operator_token}")
    expect(page.get_by_test_id("markets-empty")).to_be_visible(timeout=WAIT_MS)
    page.get_by_test_id("create-scenario").select_option("default")
    page.get_by_test_id("create-speed").fill(str(CREATE_SPEED))
    page.get_by_test_id("create-name").fill("AKT demo")
    page.get_by_text("Advanced: change scenario settings").click()
    page.get_by_label("Overrides, one per line").fill("market.settlement=bme")
    page.get_by_test_id("create-submit").click()
    expect(page.get_by_test_id("control-token")).to_have_text(re.compile(r"^gmc_\S+$"),
                                                              timeout=WAIT_MS)
    page.get_by_test_id("open-created-market").click()
    expect(page.get_by_test_id("market-name")).to_have_text("AKT demo", timeout=WAIT_MS)

    panel = page.get_by_test_id("akt-panel")
    expect(panel).to_be_visible(timeout=WAIT_MS)
    expect(panel.get_by_test_id("akt-akt_spot_usd")).to_contain_text(
        re.compile(r"AKT price\s*\$\d+\.\d{4}"))
    expect(panel.get_by_test_id("akt-akt_twap_usd")).to_contain_text(
        re.compile(r"30-min TWAP\)\s*\$\d+\.\d{4}"))
    status = panel.get_by_test_id("mint-status")
    expect(status).to_have_text(re.compile(r"^Mints (running|slowed|halted)"))
    assert status.get_attribute("data-status") in STATUSES
    # The market's own tenants top up as they trade: ACT is outstanding, the CR a number.
    expect(panel.get_by_test_id("akt-collateral_ratio")).to_contain_text(
        re.compile(r"Collateral ratio\s*\d+\.\d{3}"), timeout=WAIT_MS)
    expect(panel.get_by_test_id("akt-note")).to_contain_text("stop below 0.9")
    # No take rate under BME: the headline shows no platform fees.
    expect(page.get_by_test_id("figure-tenant_spend_usd")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("figure-platform_revenue_usd")).to_have_count(0)

    join_as_tenant(page, "alice")
    expect(page.get_by_test_id("my-bme-title")).to_have_text("My ACT top-ups",
                                                             timeout=WAIT_MS)
    expect(page.get_by_test_id("my-topup")).to_have_count(0)
    page.get_by_test_id("order-auto").check()
    page.get_by_test_id("order-submit").click()
    expect(page.get_by_test_id("order-ok")).to_contain_text("posted", timeout=WAIT_MS)
    # Her ACT fell short of the deposit: she bought AKT, burned it and got ACT.
    topup = page.get_by_test_id("my-topup").first
    expect(topup).to_contain_text(
        re.compile(r"day 1 \d\d:\d\d: \$[\d,.]+ bought [\d,.]+ AKT, burned at \$\d+\.\d{4} "
                   r"for \$[\d,.]+ of ACT"), timeout=WAIT_MS)
    # (More may follow: once her lease runs she keeps a runway of ACT.)
    expect(page.get_by_test_id("my-bme-total")).to_contain_text(
        re.compile(r"^\d+ top-ups?, \$[\d,.]+ spent"))
    expect(page.get_by_test_id("me-facts")).to_contain_text(re.compile(r"ACT balance\s*\$"))
    shot(page, "bme-market")

    # An AEP-23 market's page is as it was: no AKT panel, no ACT lines.
    created = httpx.post(f"{server.url}/api/markets", headers=server.operator, timeout=30,
                         json={"scenario": "default", "speed": CREATE_SPEED,
                               "name": "USD escrow",
                               "overrides": ["market.settlement=aep23"]})
    assert created.status_code == 201, created.text
    page.goto(f"{server.url}/#/m/{created.json()['market_id']}")
    expect(page.get_by_test_id("market-name")).to_have_text("USD escrow", timeout=WAIT_MS)
    expect(page.get_by_test_id("connection-status")).to_have_text("● live", timeout=WAIT_MS)
    expect(page.get_by_test_id("figure-platform_revenue_usd")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_test_id("akt-panel")).to_be_hidden()
    assert watched.foreign == [], f"requests to other hosts: {watched.foreign}"
    assert watched.errors == [], f"console errors: {watched.errors}"

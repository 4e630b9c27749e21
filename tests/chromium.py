"""Debian's Chromium for the browser tests, driven by Playwright (never a browser Playwright
downloads): where it is, the flags that keep it off the network, and the rule that a missing
piece skips a test but fails it in CI (`CI=true`), where `.ci/run` installs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
NOT_INSTALLED = "Chromium not installed: apt-get install -y chromium"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the dev environment installs it
    sync_playwright = None


def need(ready: bool, reason: str) -> None:
    """Skip when a browser piece is missing, but fail in CI, where it must be there."""
    if ready:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def launched() -> Iterator[Any]:
    """A headless Chromium (a Playwright `Browser`), closed on exit."""
    need(sync_playwright is not None, "playwright not installed: pip install playwright")
    need(CHROMIUM.exists(), NOT_INSTALLED)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()

"""The sweep report as a reader meets it: a real sweep of a tiny market (2 take rates × 2
seeds), its report with paired differences from a baseline, opened in Chromium at a desktop
width and a phone width.

What a reader needs: several plots side by side on a wide screen and one per row on a
phone, no page wider than the screen, a page of reasonable height, human labels (never a
raw dotted key) on every heading, no blank plot, nothing loaded from elsewhere and no error
in the console. The screenshots are kept under pytest's tmp dir and, in CI, copied to
`test-artifacts/` at the repository root for a person to look at.

The browser is Debian's Chromium, never one Playwright downloads; waits are Playwright's own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from market.experiments.analysis import load_sweep
from market.experiments.execution import run_sweep
from market.experiments.report_html import write_report
from market.experiments.sweep import load_sweep as load_sweep_file

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WIDE, PHONE = 1400, 400  # CSS pixels
# A dotted metric key or scenario path (fill_rate, welfare.consumer_surplus_usd,
# market.take_rate): what a heading must never show.
RAW_KEY = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b|\b[a-z_]+\.[a-z_][a-z0-9_.-]*\b")

SWEEP = """
name = "page"
seed = 5
replications = 2
[grid]
"market.take_rate" = [0.0, 0.2]
[set]
duration_days = 0.5
"market.settlement" = "aep23"
"tenants.arrivals_per_hour" = 30
"providers.0.count" = 8
"providers.1.count" = 20
"providers.2.count" = 1
"""

with contextlib.suppress(ImportError):  # else the tests skip, or fail in CI (tests.chromium)
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep (about two seconds) and its report with a baseline."""
    folder = tmp_path_factory.mktemp("report_page")
    (folder / "page.toml").write_text(SWEEP, encoding="utf-8")
    progress = run_sweep(load_sweep_file(folder / "page.toml"), folder / "out", workers=2)
    assert (progress.done, progress.failed) == (4, 0)
    sweep = load_sweep(folder / "out")
    return write_report(sweep, folder / "out", baseline={"market.take_rate": 0.0})


def open_page(browser: Browser, path: Path, width: int, shot: Path) -> tuple[Page, list[str]]:
    """The report at `width`, every image loaded; a full-page screenshot at `shot` (and in
    test-artifacts/ in CI). Returns the page and what went wrong on the way (console
    errors, failed loads, requests to anything but the report's own files)."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("request", lambda r: problems.append(f"foreign: {r.url}")
            if urlsplit(r.url).scheme not in ("file", "data") else None)
    page.goto(path.as_uri())
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=10_000)
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("CI") == "true":
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
    return page, problems


def boxes(page: Page, selector: str) -> list[dict[str, float]]:
    return page.eval_on_selector_all(selector, """els => els.map(e => {
        const r = e.getBoundingClientRect();
        return {x: r.x, y: r.y + window.scrollY, width: r.width, height: r.height};
    })""")


def rows_of(found: list[dict[str, float]]) -> list[int]:
    """How many boxes share each row (same top edge, to a pixel), top to bottom."""
    tops: dict[int, int] = {}
    for box in found:
        tops[round(box["y"])] = tops.get(round(box["y"]), 0) + 1
    return [tops[y] for y in sorted(tops)]


def test_wide_screen_puts_plots_side_by_side(browser: Browser, report: Path,
                                             tmp_path: Path) -> None:
    page, problems = open_page(browser, report, WIDE, tmp_path / "report-1400.png")
    assert problems == []
    grids = page.eval_on_selector_all(".plots", "els => els.length")
    assert grids >= 3  # metrics, differences from the baseline, price index (and the fee)
    # Every grid of several plots fills rows of at least three, side by side.
    for index in range(grids):
        found = boxes(page, f".plots >> nth={index} >> figure")
        if len(found) >= 3:
            assert rows_of(found)[0] >= 3, found
    height = page.evaluate("document.documentElement.scrollHeight")
    width = page.evaluate("document.documentElement.scrollWidth")
    phone = browser.new_page(viewport={"width": PHONE, "height": 900})
    phone.goto(report.as_uri())
    phone_height = phone.evaluate("document.documentElement.scrollHeight")
    # 14 metric and difference plots, 1 pass-through, about 8 price plots: in rows of three
    # that is some 9 rows of ~450 px and the tables; a single column would be ~3 times taller.
    assert height < 7000 and height < 0.6 * phone_height, (height, phone_height)
    assert width <= WIDE  # wide tables scroll inside their box, the page does not


def test_phone_gets_one_plot_per_row_and_no_sideways_scroll(browser: Browser, report: Path,
                                                            tmp_path: Path) -> None:
    page, problems = open_page(browser, report, PHONE, tmp_path / "report-400.png")
    assert problems == []
    found = boxes(page, ".plots figure")
    assert len(found) >= 10
    assert set(rows_of(found)) == {1}
    assert all(box["width"] <= PHONE for box in found)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE


def test_every_heading_is_human(browser: Browser, report: Path, tmp_path: Path) -> None:
    page, _ = open_page(browser, report, WIDE, tmp_path / "headings.png")
    texts = page.eval_on_selector_all(
        "h1, h2, h3, th, figcaption, nav a, .note", "els => els.map(e => e.innerText)")
    assert len(texts) > 40
    raw = [t for t in texts if RAW_KEY.search(t)]
    assert raw == []
    headers = page.eval_on_selector_all("th[title]", "els => els.map(e => [e.innerText, "
                                                     "e.title])")
    keyed: dict[str, str] = {}
    for text, key in headers:  # the summary's heading first; the differences' come later
        keyed.setdefault(key, text.replace("\n", " "))
    # the dotted key is still there, as the heading's tooltip, for --metric
    assert keyed["fill_rate"] == "Fill rate (%)"
    assert keyed["welfare.consumer_surplus_usd"] == "Consumer surplus (USD)"
    assert keyed["market.take_rate"] == "Take rate"  # its values carry the unit: "20%"


def test_no_plot_is_blank(report: Path) -> None:
    """Every figure on the page has data drawn in it: well beyond the axes and labels."""
    page = report.read_text("utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 15
    for source in sources:
        with Image.open(report.parent / source) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=int)
        # colour (a line, a band, a marker) rather than the black, grey and white of axes
        coloured = int(((rgb.max(axis=2) - rgb.min(axis=2)) > 40).sum())
        assert coloured > 60, source

"""The README's live-market examples run as written against a real server: the Python
client's walk-through and the ten-line custom bot."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import httpx

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _block(marker: str) -> str:
    (block,) = [b for b in BLOCKS if marker in b]
    return block


def _run(block: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md example", "exec"), namespace)
    return namespace


def test_client_example_leases_a_job(serve, capsys, monkeypatch) -> None:
    server = serve()
    monkeypatch.setenv("GPUMARKET_OPERATOR_TOKEN", server.operator_token)
    block = _block("from api.remote.client import Client").replace("http://127.0.0.1:8000",
                                                             server.url)
    # Bounded: a lease that never came would fail the test instead of hanging it.
    block = block.replace("asyncio.run(main())", "asyncio.run(asyncio.wait_for(main(), 60))")
    _run(block)
    printed = capsys.readouterr().out
    price = float(re.fullmatch(r"leased at (\S+) USD per hour\n", printed).group(1))
    assert 0 < price <= 3.0  # one GPU, at most the max price per GPU-hour
    (market,) = httpx.get(f"{server.url}/api/markets", timeout=30).json()
    assert market["participants"] == 1


def test_custom_bot_example_runs_in_ten_lines(serve) -> None:
    block = _block("run_bot(")
    assert len([line for line in block.splitlines() if line.strip()]) <= 10
    server = serve()
    created = httpx.post(f"{server.url}/api/markets", json={
        "overrides": ["duration_days=1"], "speed": 600}, headers=server.operator,
        timeout=30).json()
    block = block.replace("http://127.0.0.1:8000", server.url)
    block = block.replace("m-ab12cd34", created["market_id"])
    block = block.replace("stop_after_s=600", "stop_after_s=8")
    summary = _run(block)["summary"]
    assert summary["stopped_by"] == "stop_after_s"
    assert summary["orders_priced"] > 0
    assert summary["bids_placed"] + summary["bids_refused"] <= summary["orders_priced"]
    assert not math.isnan(summary["earned_usd"])

"""Sessions survive a crash: a server killed with SIGKILL mid-market comes back with every
acknowledged command, the same events under the same sequence numbers, and the stream goes
on from there; `gpumarket replay` turns the recorded session into `gpumarket run`'s outputs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from websockets.asyncio.client import connect

from api.live.driver import Limits
from api.live.markets import LiveMarkets
from api.live.sessionlog import REPLAYABLE, SCHEMA, SessionLogUnreadable

WAIT_S = 30.0
OPERATOR = "recovery-operator-token-0123456789"


def _post(url: str, path: str, body: dict[str, Any], token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=WAIT_S)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def _events_through(ws_url: str, market_id: str, since: int, last: int) -> list[dict]:
    """The events after `since` up to `last` (inclusive), from the stream (bounded)."""
    events: list[dict] = []
    async with connect(f"{ws_url}/api/markets/{market_id}/stream?since={since}") as ws:
        async with asyncio.timeout(WAIT_S):
            while not events or events[-1]["seq"] < last:
                frame = json.loads(await ws.recv())
                if frame["type"] == "events":
                    events.extend(frame["events"])
    return [e for e in events if e["seq"] <= last]


def test_sigkill_mid_market_loses_no_acknowledged_command(serve, tmp_path):
    db = tmp_path / "sessions.db"
    first = serve(db, "--operator-token", OPERATOR)
    created = _post(first.url, "/api/markets", {"speed": 2000, "seed": 11}, OPERATOR)
    market_id = created["market_id"]
    participants = f"/api/markets/{market_id}/participants"
    alice = _post(first.url, participants, {"role": "tenant", "name": "alice"})
    bob = _post(first.url, participants, {"role": "provider", "name": "bob",
                                          "gpu_model": "rtx4090", "gpus": 2,
                                          "archetype": "home_rig"})
    acknowledged = [
        _post(first.url, f"/api/markets/{market_id}/orders",
              {"gpu_models": ["h100", "a100-80gb"], "gpus": gpus, "hours": 1,
               "max_price_usd_per_gpu_hour": 3.0, "auto_select": True}, alice["token"])
        for gpus in (1, 2, 4)]
    order_ids = [reply["result"]["order_id"] for reply in acknowledged]
    seen_seq = max(reply["seq"] for reply in acknowledged) + 50
    before = asyncio.run(_events_through(first.ws_url, market_id, 0, seen_seq))
    assert [e["seq"] for e in before] == list(range(1, seen_seq + 1))

    first.kill()  # SIGKILL: no shutdown code runs
    assert first.process.returncode == -9

    second = serve(db, "--operator-token", OPERATOR)
    (listed,) = httpx.get(f"{second.url}/api/markets", timeout=WAIT_S).json()
    assert listed["market_id"] == market_id and listed["state"] == "running"
    assert listed["seq"] >= seen_seq  # it came back at least where the client had been
    after = asyncio.run(_events_through(second.ws_url, market_id, 0, seen_seq + 50))
    assert after[:seen_seq] == before  # the same events under the same numbers
    assert [e["seq"] for e in after] == list(range(1, seen_seq + 51))
    opened = {e["order_id"]: e for e in after if e["kind"] == "order_opened"}
    for order_id in order_ids:
        assert opened[order_id]["tenant"] == alice["tenant"]
    resumed = asyncio.run(_events_through(second.ws_url, market_id, seen_seq, seen_seq + 5))
    assert resumed[0]["seq"] == seen_seq + 1
    # Tokens still act as their participants; the control token still controls.
    me = httpx.get(f"{second.url}/api/markets/{market_id}/me", timeout=WAIT_S,
                   headers={"Authorization": f"Bearer {bob['token']}"}).json()
    assert me["provider"] == bob["provider"] and me["name"] == "bob"
    _post(second.url, f"/api/markets/{market_id}/pause", {}, created["control_token"])

    # The recorded session replays into what `gpumarket run --out` writes, the same each time.
    second.kill()
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-c", "from api.cli.main import main; main()", "replay", str(db),
             "--market", market_id, "--out", str(out), "--json"],
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(out)
    summary = json.loads((outputs[0] / "summary.json").read_text())
    assert summary["money_conserved"] and summary["seed"] == 11
    assert (outputs[0] / "summary.json").read_bytes() == (outputs[1] / "summary.json").read_bytes()
    orders = pq.read_table(outputs[0] / "orders.parquet").to_pylist()
    assert {o["order_id"] for o in orders if o["tenant"] == alice["tenant"]} >= set(order_ids)


def test_replay_reports_bad_input_in_one_line(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-c", "from api.cli.main import main; main()", "replay",
         str(tmp_path / "none.db"), "--market", "m-x"], capture_output=True, text=True,
        timeout=60)
    assert missing.returncode == 2 and "not a file" in missing.stderr
    (tmp_path / "empty.db").write_bytes(b"")
    unknown = subprocess.run(
        [sys.executable, "-c", "from api.cli.main import main; main()", "replay",
         str(tmp_path / "empty.db"), "--market", "m-x"], capture_output=True, text=True,
        timeout=60)
    assert unknown.returncode == 2 and "no market 'm-x'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_a_log_of_an_earlier_format_is_refused_naming_its_version(tmp_path):
    """A log written before the economics changed would replay to other numbers: replay
    refuses it in one line that names both formats, and a server refuses to open it (in one
    line, leaving it as it was, for the version that wrote it)."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:  # as an earlier gpumarket left it: no user_version
        old.executescript(SCHEMA)
        old.execute("INSERT INTO markets (market_id, name, scenario_name, scenario_json, "
                    "seed, speed, state, clock_s, control_hash, created_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)",
                    ("m-old", "old", "default", "{}", 1, 60.0, "running", 10.0, "x", 0.0))
    refused = subprocess.run(
        [sys.executable, "-c", "from api.cli.main import main; main()", "replay", str(db),
         "--market", "m-old"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "format 1" in refused.stderr
    assert f"format {REPLAYABLE[0]} to {REPLAYABLE[-1]} only" in refused.stderr
    before = db.read_bytes()
    with pytest.raises(SessionLogUnreadable, match="format 1, written by an earlier") as error:
        LiveMarkets(db, Limits())
    assert "\n" not in str(error.value)
    assert db.read_bytes() == before

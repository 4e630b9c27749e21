"""A session log has one writer, and damage to it is detected and reported, never replayed
quietly: a truncated or deleted -wal file, garbage over its pages, an altered command, a gap,
a log mixed from two writers. A damaged market comes back up to its last verified command and
out of play; `gpumarket replay` refuses it in one line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.cli.main import main
from api.live.commands import CommandError
from api.live.driver import Limits
from api.live.markets import LiveMarkets
from api.live.sessionlog import (
    FORMAT,
    MarketRecord,
    SessionLog,
    SessionLogError,
    SessionLogLocked,
    SessionLogUnreadable,
)
from market.scenario import load_scenario

SCENARIO = load_scenario("default", ["duration_days=0.5", "tenants.arrivals_per_hour=60"])
OPERATOR = "test-operator-token-0123456789"
WAIT_S = 30.0


def _record(market_id: str, name: str = "integrity") -> MarketRecord:
    return MarketRecord(market_id, name, SCENARIO.name,
                        json.dumps(SCENARIO.model_dump(mode="json")), 5, 60.0, "running",
                        0.0, "c" * 64, 1_700_000_000.0)


def _order(i: int) -> tuple[float, int, str, dict, None]:
    """Command i >= 1: alice (participant 0) posts an order at 10 s intervals (each body
    its own: its hours)."""
    return (10.0 * i, 0, "post_order", {"gpu_models": ["h100"], "gpus": 1 + i % 2,
                                        "max_price_usd_per_gpu_hour": 3.0,
                                        "hours": 0.5 + i / 1000}, None)


def _command(i: int) -> tuple[float, int | None, str, dict, str | None]:
    """Command i: alice joins (0), then posts orders."""
    if i == 0:
        return 0.0, None, "join_tenant", {"role": "tenant", "name": "alice"}, "t" * 64
    return _order(i)


def _write(log: SessionLog, market_id: str, first: int, last: int) -> None:
    """Append commands `first`..`last`, one commit each (one -wal frame or more each)."""
    for i in range(first, last + 1):
        log.append(market_id, [_command(i)], _command(i)[0])


def _logged(db: Path, market_id: str = "m-aaaa0001", commands: int = 40) -> Path:
    """A cleanly closed log of one market with `commands` commands."""
    log = SessionLog(db)
    log.create_market(_record(market_id))
    for first in range(0, commands, 50):  # in commits of 50: quicker, and chained the same
        last = min(first + 50, commands) - 1
        log.append(market_id, [_command(i) for i in range(first, last + 1)], 10.0 * last)
    log.update(market_id, clock_s=10.0 * commands)
    log.close()
    return db


def _crash_copy(log: SessionLog, to: Path) -> Path:
    """The files a server killed now leaves (the database, its -wal, the witness)."""
    to.mkdir()
    for suffix in ("", "-wal", ".head"):
        source = Path(f"{log.path}{suffix}")
        if source.exists():
            shutil.copyfile(source, f"{to / log.path.name}{suffix}")
    return to / log.path.name


def _recover(db: Path) -> LiveMarkets:
    markets = LiveMarkets(db, Limits())
    markets.recover()
    return markets


def _replay(db: Path, market_id: str, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["replay", str(db), "--market", market_id, "--json"])
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


async def _pause(live) -> None:
    await live.control("pause")


def _damaged_entry(markets: LiveMarkets, market_id: str) -> dict:
    (entry,) = [e for e in markets.listing() if e["market_id"] == market_id]
    assert entry["state"] == "damaged" and entry["log"]["damaged"] is True
    return entry


# ---------------------------------------------------------------------------- lost WAL frames

def test_a_truncated_wal_is_reported_not_shortened(tmp_path, capsys):
    log = SessionLog(tmp_path / "live.db")
    log.create_market(_record("m-aaaa0001"))
    _write(log, "m-aaaa0001", 0, 9)
    log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")   # commands 0-9 in the database file
    _write(log, "m-aaaa0001", 10, 59)                    # 10-59 only in the -wal
    crashed = _crash_copy(log, tmp_path / "crashed")
    log.close()
    wal = Path(f"{crashed}-wal")
    with wal.open("r+b") as f:
        f.truncate(wal.stat().st_size // 2)

    markets = _recover(crashed)
    try:
        entry = _damaged_entry(markets, "m-aaaa0001")
        verified = entry["log"]["verified_commands"]
        assert 10 <= verified < 60 and entry["log"]["expected_commands"] == 60
        assert f"ends at command {verified} of 60" in entry["log"]["reason"]
        live = markets.markets["m-aaaa0001"]
        # Rebuilt up to its last verified command, and out of play.
        assert live.session.market.now == 10.0 * (verified - 1)
        (alice,) = live.session.participants
        assert sum(t == alice.tenant for t in live.session.order_tenant) == verified - 1
        assert live._task is None
    finally:
        markets.log.close()
    # The damage stays reported on every start: the witness is never lowered.
    again = _recover(crashed)
    try:
        assert _damaged_entry(again, "m-aaaa0001")["log"]["expected_commands"] == 60
    finally:
        again.log.close()
    code, _, err = _replay(crashed, "m-aaaa0001", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "market m-aaaa0001" in err and f"command {verified} of 60" in err


def test_a_deleted_wal_is_reported_with_the_markets_it_held(tmp_path):
    log = SessionLog(tmp_path / "live.db")
    log.create_market(_record("m-aaaa0001"))
    _write(log, "m-aaaa0001", 0, 4)
    log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _write(log, "m-aaaa0001", 5, 12)
    log.create_market(_record("m-aaaa0002", "later"))   # exists only in the -wal
    _write(log, "m-aaaa0002", 0, 2)
    crashed = _crash_copy(log, tmp_path / "crashed")
    log.close()
    os.remove(f"{crashed}-wal")

    markets = _recover(crashed)
    try:
        first = _damaged_entry(markets, "m-aaaa0001")["log"]
        assert first["verified_commands"] == 5 and first["expected_commands"] == 13
        lost = _damaged_entry(markets, "m-aaaa0002")
        assert lost["name"] == "later" and lost["log"]["expected_commands"] == 3
        assert "missing from the log" in lost["log"]["reason"]
    finally:
        markets.log.close()


def test_a_lost_stop_is_reported(tmp_path):
    """A market stopped after the last checkpoint, its -wal lost: it must not come back
    running as if the stop had never been acknowledged."""
    log = SessionLog(tmp_path / "live.db")
    log.create_market(_record("m-aaaa0001"))
    _write(log, "m-aaaa0001", 0, 3)
    log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log.update("m-aaaa0001", state="stopped", clock_s=40.0)
    crashed = _crash_copy(log, tmp_path / "crashed")
    log.close()
    os.remove(f"{crashed}-wal")
    markets = _recover(crashed)
    try:
        entry = _damaged_entry(markets, "m-aaaa0001")
        assert "lost the market's last state change" in entry["log"]["reason"]
        assert "says running, its witness saw stopped" in entry["log"]["reason"]
        assert markets.markets["m-aaaa0001"]._task is None
    finally:
        markets.log.close()


# ---------------------------------------------------------------------------- damaged pages

def test_garbage_over_data_pages_is_reported(tmp_path, capsys):
    db = _logged(tmp_path / "live.db", commands=300)
    data = bytearray(db.read_bytes())
    page = 4096
    # The page holding command 200's body.
    marker = json.dumps(_order(200)[3], sort_keys=True).encode()
    at = data.find(marker)
    assert at > 0
    start = at // page * page
    data[start:start + page] = bytes((i * 37 + 11) % 256 for i in range(page))
    db.write_bytes(bytes(data))

    markets = _recover(db)
    try:
        assert markets.log.integrity is not None   # SQLite's quick check sees it too
        entry = _damaged_entry(markets, "m-aaaa0001")
        assert 0 < entry["log"]["verified_commands"] <= 200
        assert markets.markets["m-aaaa0001"].state == "damaged"
    finally:
        markets.log.close()
    code, _, err = _replay(db, "m-aaaa0001", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "m-aaaa0001" in err


def test_a_file_that_is_not_a_log_is_refused_in_one_line(tmp_path, capsys):
    db = tmp_path / "notes.db"
    db.write_bytes(b"these are not the pages you are looking for\n" * 200)
    with pytest.raises(SessionLogUnreadable, match="not a readable session log"):
        LiveMarkets(db, Limits())
    code, _, err = _replay(db, "m-x", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "not a readable session log" in err and "Traceback" not in err
    # Refused: the lock was released, and the file is as it was.
    LiveMarkets(tmp_path / "other.db", Limits()).log.close()
    assert db.read_bytes().startswith(b"these are not")


# ---------------------------------------------------------------------------- the chain

@pytest.mark.parametrize("damage", ["altered", "gap"])
def test_an_altered_or_missing_command_breaks_the_chain(tmp_path, capsys, damage):
    db = _logged(tmp_path / "live.db")
    with sqlite3.connect(db) as raw:
        if damage == "altered":   # the price of command 7, 3.0 -> 0.3
            raw.execute("UPDATE commands SET body = replace(body, '3.0', '0.3') WHERE n = 7")
        else:
            raw.execute("DELETE FROM commands WHERE n = 7")
    markets = _recover(db)
    try:
        entry = _damaged_entry(markets, "m-aaaa0001")
        assert entry["log"]["verified_commands"] == 7
        reason = entry["log"]["reason"]
        assert ("command 7 fails its checksum" in reason if damage == "altered"
                else "command 7 is missing" in reason)
        assert markets.markets["m-aaaa0001"].session.market.now == 60.0
        # Out of play: it takes no commands, even from its control token.
        with pytest.raises(CommandError, match="m-aaaa0001 is damaged"):
            asyncio.run(_pause(markets.markets["m-aaaa0001"]))
    finally:
        markets.log.close()
    code, _, err = _replay(db, "m-aaaa0001", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "market m-aaaa0001: command 7" in err and "verifies up to command 6" in err


def test_an_altered_market_record_is_reported(tmp_path, capsys):
    db = _logged(tmp_path / "live.db", commands=5)
    with sqlite3.connect(db) as raw:   # another seed: every event would differ
        raw.execute("UPDATE markets SET seed = 6")
    markets = _recover(db)
    try:
        entry = _damaged_entry(markets, "m-aaaa0001")
        assert entry["log"]["verified_commands"] == 0
        assert "its record (name, scenario, seed, tokens) fails its checksum" in entry["error"]
    finally:
        markets.log.close()
    code, _, err = _replay(db, "m-aaaa0001", capsys)
    assert code == 2 and "market m-aaaa0001: its record" in err


def test_a_log_mixed_from_two_writers_does_not_replay(tmp_path, capsys):
    """Two writers that both believed they held command 20 onwards (as two servers on one
    file did before the lock): their commands do not chain into one log."""
    one = _logged(tmp_path / "one.db", commands=20)
    two = tmp_path / "two.db"
    shutil.copyfile(one, two)
    shutil.copyfile(f"{one}.head", f"{two}.head")
    for db, price in ((one, 3.0), (two, 2.0)):
        log = SessionLog(db)
        for i in range(20, 26):
            time_s, actor, kind, body, token = _order(i)
            log.append("m-aaaa0001", [(time_s, actor, kind,
                                       {**body, "max_price_usd_per_gpu_hour": price}, token)],
                       time_s)
        log.close()
    with sqlite3.connect(one) as mixed, sqlite3.connect(two) as other:
        row = other.execute("SELECT * FROM commands WHERE n = 23").fetchone()
        mixed.execute("DELETE FROM commands WHERE n = 23")
        mixed.execute("INSERT INTO commands VALUES (?,?,?,?,?,?,?,?)", row)
    code, _, err = _replay(one, "m-aaaa0001", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "market m-aaaa0001: command 23 fails its checksum" in err


def test_a_writer_refuses_to_append_after_a_command_it_did_not_write(tmp_path):
    db = tmp_path / "live.db"
    log = SessionLog(db)
    try:
        log.create_market(_record("m-aaaa0001"))
        _write(log, "m-aaaa0001", 0, 3)
        with sqlite3.connect(db) as intruder:   # behind the lock's back
            row = intruder.execute("SELECT * FROM commands WHERE n = 3").fetchone()
            intruder.execute("INSERT INTO commands VALUES (?,?,?,?,?,?,?,?)", (
                row[0], 4, *row[2:]))
        with pytest.raises(SessionLogError, match="another process writes"):
            _write(log, "m-aaaa0001", 4, 4)
        assert [c.n for c in log.commands("m-aaaa0001")] == [0, 1, 2, 3, 4]
    finally:
        log.close()


def test_a_market_that_does_not_replay_is_listed_failed_with_its_reason(tmp_path):
    db = tmp_path / "live.db"
    log = SessionLog(db)
    log.create_market(_record("m-aaaa0001"))
    log.append("m-aaaa0001", [_order(1)], 10.0)   # an order from nobody who joined
    log.close()
    for _ in range(2):  # at the start that finds it, and at every start after
        markets = _recover(db)
        try:
            (entry,) = markets.listing()
            assert entry["state"] == "failed" and entry["log"]["damaged"] is False
            assert "command 0 (post_order at 10.000 s) does not replay" in entry["error"]
            assert markets.log.market("m-aaaa0001").failure == entry["log"]["reason"]
        finally:
            markets.log.close()


def test_a_clean_log_verifies_and_replays_the_same(tmp_path, capsys):
    db = _logged(tmp_path / "live.db")

    async def recovered() -> tuple[list[str], list[dict]]:
        markets = LiveMarkets(db, Limits())
        try:
            return markets.recover(), markets.listing()
        finally:
            await markets.shutdown()

    running, listing = asyncio.run(recovered())
    assert running == ["m-aaaa0001"]
    assert [(e["market_id"], e["state"]) for e in listing] == [("m-aaaa0001", "running")]
    assert "log" not in listing[0]
    first = _replay(db, "m-aaaa0001", capsys)
    second = _replay(db, "m-aaaa0001", capsys)
    assert first[0] == 0 and first[1] == second[1]
    assert json.loads(first[1])["money_conserved"]


def test_an_earlier_format_3_log_is_migrated_with_checksums(tmp_path, capsys):
    db = _logged(tmp_path / "live.db", commands=12)
    with sqlite3.connect(db) as old:   # as format 3 left it: no checksums, no failure
        old.executescript("""
            CREATE TABLE m3 AS SELECT market_id, name, scenario_name, scenario_json, seed,
                speed, state, clock_s, control_hash, created_at FROM markets;
            CREATE TABLE c3 AS SELECT market_id, n, time_s, actor, kind, body, token_hash
                FROM commands;
            DROP TABLE markets; DROP TABLE commands;
            ALTER TABLE m3 RENAME TO markets; ALTER TABLE c3 RENAME TO commands;
            PRAGMA user_version=3;""")
    os.remove(f"{db}.head")
    code, out, err = _replay(db, "m-aaaa0001", capsys)   # read-only: replayed, unverified
    assert code == 0 and "without checksums" in err
    log = SessionLog(db)                                # a writer migrates it
    try:
        assert log.format == FORMAT and log.verify("m-aaaa0001") is None
    finally:
        log.close()
    assert _replay(db, "m-aaaa0001", capsys)[1] == out


def test_an_earlier_format_1_log_is_refused_untouched(tmp_path):
    db = _logged(tmp_path / "live.db", commands=3)
    with sqlite3.connect(db) as old:
        old.execute("PRAGMA user_version=0")
    before = db.read_bytes()
    with pytest.raises(SessionLogUnreadable, match="format 1, written by an earlier"):
        LiveMarkets(db, Limits())
    assert db.read_bytes() == before


# ---------------------------------------------------------------------------- one writer

def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    first = SessionLog(tmp_path / "live.db")
    try:
        with pytest.raises(SessionLogLocked, match=f"pid {os.getpid()}"):
            SessionLog(tmp_path / "live.db")
        reader = SessionLog(tmp_path / "live.db", readonly=True)   # readers take no lock
        reader.close()
    finally:
        first.close()
    SessionLog(tmp_path / "live.db").close()   # released with its holder


def _post(url: str, path: str, body: dict, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{url}{path}", json=body, timeout=WAIT_S, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _serve_once(db: Path) -> subprocess.CompletedProcess[str]:
    """`gpumarket serve` on `db`, expected to refuse to start (bounded wait)."""
    return subprocess.run(
        [sys.executable, "-c", "from api.cli.main import main; main()", "serve", "--host",
         "127.0.0.1", "--port", "0", "--db", str(db), "--operator-token", OPERATOR],
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("problem", ["locked", "not a log"])
def test_serve_refuses_a_log_it_cannot_use_in_one_line(tmp_path, problem):
    db = tmp_path / "sessions.db"
    holder = None
    if problem == "locked":
        holder = SessionLog(db)   # this process holds it
    else:
        db.write_bytes(b"not a session log\n" * 300)
    try:
        refused = _serve_once(db)
    finally:
        if holder is not None:
            holder.close()
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("error: --db: ")
    assert (f"in use by another gpumarket server (pid {os.getpid()})" if problem == "locked"
            else "is not a readable session log") in refused.stderr


def test_two_servers_on_one_log_the_second_refused_and_sigkill_loses_nothing(
        serve, tmp_path, capsys):
    db = tmp_path / "sessions.db"
    first = serve(db, "--operator-token", OPERATOR)
    created = _post(first.url, "/api/markets", {"speed": 600, "seed": 4}, OPERATOR)
    market_id = created["market_id"]
    alice = _post(first.url, f"/api/markets/{market_id}/participants",
                  {"role": "tenant", "name": "alice"})
    acknowledged = [_post(first.url, f"/api/markets/{market_id}/orders",
                          {"gpu_models": ["h100"], "gpus": 1, "hours": 1,
                           "max_price_usd_per_gpu_hour": 3.0}, alice["token"])
                    for _ in range(3)]

    second = _serve_once(db)
    assert second.returncode != 0 and "Uvicorn running" not in second.stderr
    assert f"in use by another gpumarket server (pid {first.process.pid})" in second.stderr

    # A replay reads the log while the server holds it.
    code, out, _ = _replay(db, market_id, capsys)
    assert code == 0 and json.loads(out)["money_conserved"]

    first.kill(signal.SIGKILL)
    third = serve(db, "--operator-token", OPERATOR)
    (listed,) = httpx.get(f"{third.url}/api/markets", timeout=WAIT_S).json()
    assert listed["market_id"] == market_id and listed["state"] == "running"
    assert listed["seq"] >= max(reply["seq"] for reply in acknowledged)
    reader = SessionLog(db, readonly=True)
    try:
        kinds = [c.kind for c in reader.verified_commands(market_id)]
    finally:
        reader.close()
    # a hand-picked order is held as it is posted (its bids stay open for the tenant)
    assert kinds == ["join_tenant", *["post_order", "hold_order"] * 3]

"""The durable session log: each live market's scenario, seed and every accepted outside
command with the simulated time it was applied, in SQLite (WAL).

A command is committed before it is acknowledged, so a server killed at any moment comes back
with every acknowledged command; replaying the log through `api.session.Session` rebuilds
each market exactly (`api.live.recover`, `gpumarket replay`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What replaying a log means: the engine's economics at the time it was written. A log keeps
#: the resolved scenario and the commands, and replay re-runs them through today's engine, so a
#: log of another format would give other numbers. 1: before welfare per job, costs split into
#: avoidable and sunk, and strategies pricing the take rate in; 2: since; 3: GPU models allotted
#: to providers by quota rather than drawn, hyperscalers' opportunity cost a share of list.
FORMAT = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS markets (
    market_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    scenario_name TEXT NOT NULL,
    scenario_json TEXT NOT NULL,   -- the resolved scenario: replays need no scenario files
    seed          INTEGER NOT NULL,
    speed         REAL NOT NULL,   -- simulated seconds per wall second
    state         TEXT NOT NULL,   -- running, paused, stopped, finished, failed
    clock_s       REAL NOT NULL,   -- where the market was last seen (simulated seconds)
    control_hash  TEXT NOT NULL,   -- SHA-256 of the control token; the token is never stored
    created_at    REAL NOT NULL    -- unix seconds
);
CREATE TABLE IF NOT EXISTS commands (
    market_id   TEXT NOT NULL REFERENCES markets(market_id),
    n           INTEGER NOT NULL,  -- 0, 1, 2, ... in the order they were applied
    time_s      REAL NOT NULL,     -- simulated time it was applied at
    actor       INTEGER,           -- participant id, NULL for joins
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,     -- the validated body, JSON
    token_hash  TEXT,              -- joins: SHA-256 of the participant's token
    PRIMARY KEY (market_id, n)
);
"""


@dataclass(frozen=True, slots=True)
class MarketRecord:
    market_id: str
    name: str
    scenario_name: str
    scenario_json: str
    seed: int
    speed: float
    state: str
    clock_s: float
    control_hash: str
    created_at: float


@dataclass(frozen=True, slots=True)
class CommandRecord:
    n: int
    time_s: float
    actor: int | None
    kind: str
    body: dict[str, Any]
    token_hash: str | None


class SessionLog:
    """The log in one SQLite file. Writes happen on the server's one event-loop thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the command is acknowledged, not only in the OS.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        existing = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                   "AND name = 'markets'").fetchone()
        if existing is None:  # a new log is written in today's format
            self.db.execute(f"PRAGMA user_version={FORMAT}")
        #: The format this log was written in (SQLite's user_version; 0, unset, is format 1).
        self.format = int(self.db.execute("PRAGMA user_version").fetchone()[0]) or 1
        self.db.executescript(SCHEMA)
        self._next: dict[str, int] = {}

    def close(self) -> None:
        self.db.close()

    def create_market(self, record: MarketRecord) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO markets VALUES (?,?,?,?,?,?,?,?,?,?)", (
                record.market_id, record.name, record.scenario_name, record.scenario_json,
                record.seed, record.speed, record.state, record.clock_s, record.control_hash,
                record.created_at))
        self._next[record.market_id] = 0

    def append(self, market_id: str, commands: list[tuple[float, int | None, str,
                                                             dict[str, Any], str | None]],
               clock_s: float) -> None:
        """Commit `commands` (time_s, actor, kind, body, token_hash) in one transaction, with
        the market's clock."""
        n = self._next_n(market_id)
        rows = [(market_id, n + i, time_s, actor, kind, json.dumps(body, sort_keys=True),
                 token_hash)
                for i, (time_s, actor, kind, body, token_hash) in enumerate(commands)]
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT INTO commands VALUES (?,?,?,?,?,?,?)", rows)
            self.db.execute("UPDATE markets SET clock_s = ? WHERE market_id = ?",
                            (clock_s, market_id))
        self._next[market_id] = n + len(rows)

    def _next_n(self, market_id: str) -> int:
        if market_id not in self._next:
            row = self.db.execute("SELECT COALESCE(MAX(n) + 1, 0) FROM commands "
                                  "WHERE market_id = ?", (market_id,)).fetchone()
            self._next[market_id] = int(row[0])
        return self._next[market_id]

    def update(self, market_id: str, **fields: Any) -> None:
        """Set `state`, `speed` and/or `clock_s` of a market."""
        allowed = {"state", "speed", "clock_s"}
        if not fields or not set(fields) <= allowed:
            raise ValueError(f"update: fields must be among {sorted(allowed)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.db:
            self.db.execute(f"UPDATE markets SET {assignments} WHERE market_id = ?",
                            (*fields.values(), market_id))

    def record_clock(self, market_id: str, clock_s: float) -> None:
        """Note where a running market's clock is, without waiting for the disk.

        A live market notes its clock every tick: an fsync each time would stall the event
        loop that serves every socket. A clock lost with the machine only makes a restarted
        market run those ticks again, and they give the same events with the same numbers: no
        command was applied in them, since every command commits its own clock."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.db:
                self.db.execute("UPDATE markets SET clock_s = ? WHERE market_id = ?",
                                (clock_s, market_id))
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def markets(self) -> list[MarketRecord]:
        rows = self.db.execute("SELECT * FROM markets ORDER BY created_at, market_id")
        return [MarketRecord(*row) for row in rows]

    def market(self, market_id: str) -> MarketRecord | None:
        row = self.db.execute("SELECT * FROM markets WHERE market_id = ?",
                              (market_id,)).fetchone()
        return MarketRecord(*row) if row else None

    def commands(self, market_id: str) -> Iterator[CommandRecord]:
        rows = self.db.execute("SELECT n, time_s, actor, kind, body, token_hash FROM commands "
                               "WHERE market_id = ? ORDER BY n", (market_id,))
        for n, time_s, actor, kind, body, token_hash in rows:
            yield CommandRecord(n, time_s, actor, kind, json.loads(body), token_hash)

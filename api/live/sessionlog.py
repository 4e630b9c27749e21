"""The durable session log: each live market's scenario, seed and every accepted outside
command with the simulated time it was applied, in SQLite (WAL).

A command is committed before it is acknowledged, so a server killed at any moment comes back
with every acknowledged command; replaying the log through `api.live.session.Session` rebuilds
each market exactly (`api.live.markets.LiveMarkets.recover`, `gpumarket replay`).

Three things keep a log honest:

- **One writer.** Opening a log for writing takes an exclusive `flock` on `FILE.lock`, held
  until `close()` or the end of the process (the kernel drops it on `kill -9`). SQLite's own
  locks are not enough: in WAL mode two processes may both write, one transaction at a time,
  and each would number commands from its own memory. A second writer gets `SessionLogLocked`;
  readers (`gpumarket replay`) open read-only and take no lock.
- **A checksum chain.** A market's row carries the SHA-256 of its immutable fields (id, name,
  scenario, seed, control token hash, creation time); each command carries the SHA-256 of the
  previous command's checksum (the market's for command 0) and its own fields. An altered,
  missing or foreign command breaks the chain at that command. The chain detects damage and
  mixed logs, not forgery: anyone who can write the file can recompute it.
- **A witness.** SQLite drops the frames of a truncated or deleted `-wal` file without a word,
  and the chain cannot tell a shortened log from a short one. So after each commit the writer
  appends to `FILE.head` each market's command count, head checksum and count of state
  changes; a log that holds less than its witness saw is damaged. The witness is written after
  the commit, without waiting for the disk: after a crash it may lag the log (never lead it), so
  it never cries wolf; a power cut may leave it behind, so the last commits before one are not
  witnessed. Deleting the witness together with the `-wal` file, or copying the database
  without it, cannot be detected.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("gpumarket.sessionlog")

#: What replaying a log means: the engine's economics at the time it was written. A log keeps
#: the resolved scenario and the commands, and replay re-runs them through today's engine, so a
#: log of another format would give other numbers. 1: before welfare per job, costs split into
#: avoidable and sunk, and strategies pricing the take rate in; 2: since; 3: GPU models allotted
#: to providers by quota rather than drawn, hyperscalers' opportunity cost a share of list;
#: 4: the economics of 3, with checksums, a witness and a failure reason per market.
FORMAT = 4
#: Formats whose economics are today's: they replay to today's numbers.
REPLAYABLE = (3, 4)
#: A writer migrates a log of this format to FORMAT on open (adding checksums computed then).
MIGRATED = 3

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
    created_at    REAL NOT NULL,   -- unix seconds
    failure       TEXT,            -- why the market failed, if it did
    changes       INTEGER NOT NULL DEFAULT 0,  -- state changes so far (the witness counts too)
    checksum      TEXT NOT NULL DEFAULT ''     -- SHA-256 of the immutable fields above
);
CREATE TABLE IF NOT EXISTS commands (
    market_id   TEXT NOT NULL REFERENCES markets(market_id),
    n           INTEGER NOT NULL,  -- 0, 1, 2, ... in the order they were applied
    time_s      REAL NOT NULL,     -- simulated time it was applied at
    actor       INTEGER,           -- participant id, NULL for joins
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,     -- the validated body, JSON
    token_hash  TEXT,              -- joins: SHA-256 of the participant's token
    checksum    TEXT NOT NULL DEFAULT '',  -- SHA-256 of the previous checksum and the above
    PRIMARY KEY (market_id, n)
);
"""

_MARKET_COLUMNS = ("market_id, name, scenario_name, scenario_json, seed, speed, state, clock_s, "
                   "control_hash, created_at")
_COMMAND_COLUMNS = "n, time_s, actor, kind, body, token_hash"

#: Lines appended to the witness before it is rewritten with one line per market.
WITNESS_LINES = 10_000


class SessionLogError(RuntimeError):
    """A session log that cannot be used as asked; the message is one line."""


class SessionLogLocked(SessionLogError):
    """Another process holds the log open for writing."""


class SessionLogUnreadable(SessionLogError):
    """The file is not a session log this version can open (not SQLite, unreadable pages in
    its list of markets, or a format it does not serve)."""


@dataclass(frozen=True, slots=True)
class LogDamage:
    """Why a market's log cannot be trusted past `verified_commands` commands."""

    market_id: str
    name: str
    verified_commands: int
    expected_commands: int | None   # what the witness saw, if it saw more
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"damaged": True, "verified_commands": self.verified_commands,
                "expected_commands": self.expected_commands, "reason": self.reason}


class DamagedLog(SessionLogError):
    """A market's log fails verification (see `damage`)."""

    def __init__(self, damage: LogDamage) -> None:
        super().__init__(f"market {damage.market_id}: {damage.reason}")
        self.damage = damage


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
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    n: int
    time_s: float
    actor: int | None
    kind: str
    body: dict[str, Any]
    token_hash: str | None


def market_checksum(record: MarketRecord) -> str:
    """SHA-256 (hex) of a market's immutable fields: where its chain of commands starts."""
    fields = ["gpumarket market", record.market_id, record.name, record.scenario_name,
              record.scenario_json, int(record.seed), record.control_hash,
              float(record.created_at)]
    return _sha256(fields)


def command_checksum(previous: str, n: int, time_s: float, actor: int | None, kind: str,
                     body_json: str, token_hash: str | None) -> str:
    """SHA-256 (hex) of command `n` chained to `previous` (the checksum before it). The body
    is hashed as stored (JSON text), times as the floats SQLite gives back."""
    return _sha256([previous, n, float(time_s), actor, kind, body_json, token_hash])


def _sha256(fields: list[Any]) -> str:
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class SessionLog:
    """The log in one SQLite file. Writes happen on the server's one event-loop thread.

    `SessionLog(path)` opens (or creates) the log for writing, holding `path`.lock until
    `close()`; `SessionLog(path, readonly=True)` reads a log, even one a server is writing.
    Both raise `SessionLogError` (one line) for a file they cannot use. `integrity` is None
    when SQLite's quick check passes, else what it found.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        memory = str(path) == ":memory:"
        self._heads: dict[str, tuple[int, str]] = {}   # market -> (commands, head checksum)
        self._lock_fd = None if readonly or memory else _lock(self.path)
        self._witness = _Witness(None)
        try:
            self._witness = _Witness(None if memory else _sidecar(self.path, ".head"))
            self.db = _connect(self.path, readonly, memory)
            self._open()
        except sqlite3.DatabaseError as error:
            self.close()
            raise SessionLogUnreadable(f"{str(path)!r} is not a readable session log: "
                                       f"{error}") from None
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        db = self.db
        db.execute("PRAGMA busy_timeout=5000")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master "
                                               "WHERE type = 'table'")}
        self._tables = "markets" in tables
        #: The format this log was written in (SQLite's user_version; 0, unset, is format 1).
        self.format = (int(db.execute("PRAGMA user_version").fetchone()[0]) or 1) \
            if self._tables else FORMAT
        columns = {row[1] for row in db.execute("PRAGMA table_info(commands)")}
        #: Whether the log carries checksums (format 4 on): older ones cannot be verified.
        self.verifiable = not self._tables or "checksum" in columns
        if not self.readonly:
            if self._tables and self.format not in (FORMAT, MIGRATED):
                raise SessionLogUnreadable(
                    f"{str(self.path)!r} is a session log in format {self.format}, written by "
                    f"{'an earlier' if self.format < FORMAT else 'a later'} gpumarket whose "
                    f"economics differ; this version serves format {FORMAT} (and migrates "
                    f"{MIGRATED}): use another file, or the version that wrote it")
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the command is acknowledged, not only in the OS.
            db.execute("PRAGMA synchronous=FULL")
            if not self._tables:
                # One transaction: a crash leaves no tables without their format.
                db.executescript(f"BEGIN IMMEDIATE; PRAGMA user_version={FORMAT}; {SCHEMA} "
                                 "COMMIT;")
                self._tables, self.format, self.verifiable = True, FORMAT, True
            elif self.format == MIGRATED:
                self._migrate()
        #: None when SQLite's quick check passes, else the first problems it found.
        self.integrity = self._quick_check()
        records = self.markets()   # a list of markets that cannot be read: not a usable log
        if not self.readonly:
            self._witness.open(self._unwitnessed(records))

    def _quick_check(self) -> str | None:
        try:
            found = [row[0] for row in self.db.execute("PRAGMA quick_check(3)")]
        except sqlite3.DatabaseError as error:
            return str(error)
        return None if found == ["ok"] else "; ".join(found)

    def _migrate(self) -> None:
        """Format 3 -> 4: the same economics, plus checksums computed now (so they vouch for
        the log from this moment on, not for what happened to it before)."""
        db = self.db
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ALTER TABLE markets ADD COLUMN failure TEXT")
            db.execute("ALTER TABLE markets ADD COLUMN changes INTEGER NOT NULL DEFAULT 0")
            db.execute("ALTER TABLE markets ADD COLUMN checksum TEXT NOT NULL DEFAULT ''")
            db.execute("ALTER TABLE commands ADD COLUMN checksum TEXT NOT NULL DEFAULT ''")
            for record in self.markets():
                head = market_checksum(record)
                db.execute("UPDATE markets SET checksum = ? WHERE market_id = ?",
                           (head, record.market_id))
                rows = db.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands "
                                  "WHERE market_id = ? ORDER BY n",
                                  (record.market_id,)).fetchall()
                for n, time_s, actor, kind, body, token in rows:
                    head = command_checksum(head, n, time_s, actor, kind, body, token)
                    db.execute("UPDATE commands SET checksum = ? WHERE market_id = ? AND n = ?",
                               (head, record.market_id, n))
            db.execute(f"PRAGMA user_version={FORMAT}")
        self.format, self.verifiable = FORMAT, True

    def _unwitnessed(self, records: list[MarketRecord]) -> dict[str, dict[str, Any]]:
        """Markets the witness has not seen (a migrated log, a lost witness), as the log has
        them now: witnessed from here on. A market whose head cannot be read is left out
        (its verification says why)."""
        entries = {}
        for record in records:
            if record.market_id in self._witness.entries:
                continue
            try:
                count, head = self._head(record.market_id)
                changes = self.db.execute("SELECT changes FROM markets WHERE market_id = ?",
                                          (record.market_id,)).fetchone()[0]
            except sqlite3.DatabaseError:
                self._heads.pop(record.market_id, None)
                continue
            entries[record.market_id] = _entry(record.market_id, record.name, count, head,
                                               int(changes), record.state)
        return entries

    def close(self) -> None:
        """Close the file and release the lock (the witness is never deleted)."""
        db = getattr(self, "db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._release()

    def _release(self) -> None:
        self._witness.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ writing

    def create_market(self, record: MarketRecord) -> None:
        checksum = market_checksum(record)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(f"INSERT INTO markets ({_MARKET_COLUMNS}, failure, checksum) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
                                record.market_id, record.name, record.scenario_name,
                                record.scenario_json, int(record.seed), float(record.speed),
                                record.state, float(record.clock_s), record.control_hash,
                                float(record.created_at), record.failure, checksum))
        self._heads[record.market_id] = (0, checksum)
        self._witness.note(_entry(record.market_id, record.name, 0, checksum, 0, record.state))

    def append(self, market_id: str, commands: list[tuple[float, int | None, str,
                                                             dict[str, Any], str | None]],
               clock_s: float) -> None:
        """Commit `commands` (time_s, actor, kind, body, token_hash) in one transaction, with
        the market's clock. Raises SessionLogError, writing nothing, if the log's last command
        is not the one this writer wrote last (another writer got in)."""
        count, head = self._head(market_id)
        previous = head
        rows = []
        for i, (time_s, actor, kind, body, token_hash) in enumerate(commands):
            time_s, actor = float(time_s), None if actor is None else int(actor)
            text = json.dumps(body, sort_keys=True)
            head = command_checksum(head, count + i, time_s, actor, kind, text, token_hash)
            rows.append((market_id, count + i, time_s, actor, kind, text, token_hash, head))
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            # The last command stored must be the last this writer wrote (one index probe).
            last = self.db.execute("SELECT n, checksum FROM commands WHERE market_id = ? "
                                   "ORDER BY n DESC LIMIT 1", (market_id,)).fetchone()
            if (last is None and count) or \
                    (last is not None and (last[0] != count - 1 or last[1] != previous)):
                stored = "no command" if last is None else f"command {last[0]}"
                raise SessionLogError(f"market {market_id}: the log's last is {stored}, not the "
                                      f"command {count - 1} this writer wrote: another process "
                                      f"writes {str(self.path)!r}")
            self.db.executemany("INSERT INTO commands VALUES (?,?,?,?,?,?,?,?)", rows)
            self.db.execute("UPDATE markets SET clock_s = ? WHERE market_id = ?",
                            (float(clock_s), market_id))
        self._heads[market_id] = (count + len(rows), head)
        self._witness.advance(market_id, count + len(rows), head)

    def _head(self, market_id: str) -> tuple[int, str]:
        """(commands, checksum of the last one, or of the market for none) as stored."""
        if market_id not in self._heads:
            row = self.db.execute("SELECT n, checksum FROM commands WHERE market_id = ? "
                                  "ORDER BY n DESC LIMIT 1", (market_id,)).fetchone()
            if row is None:
                row = self.db.execute("SELECT -1, checksum FROM markets WHERE market_id = ?",
                                      (market_id,)).fetchone()
            self._heads[market_id] = (int(row[0]) + 1, row[1])
        return self._heads[market_id]

    def update(self, market_id: str, **fields: Any) -> None:
        """Set `state`, `speed`, `clock_s` and/or `failure` (why it failed) of a market."""
        allowed = {"state", "speed", "clock_s", "failure"}
        if not fields or not set(fields) <= allowed:
            raise ValueError(f"update: fields must be among {sorted(allowed)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        if "state" in fields:
            assignments += ", changes = changes + 1"
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(f"UPDATE markets SET {assignments} WHERE market_id = ?",
                            (*fields.values(), market_id))
            changes = self.db.execute("SELECT changes FROM markets WHERE market_id = ?",
                                      (market_id,)).fetchone()
        if "state" in fields and changes is not None:
            self._witness.change(market_id, int(changes[0]), fields["state"])

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

    # ------------------------------------------------------------------ reading

    def markets(self) -> list[MarketRecord]:
        if not self._tables:
            return []
        failure = "failure" if self.format >= FORMAT else "NULL"
        rows = self.db.execute(f"SELECT {_MARKET_COLUMNS}, {failure} FROM markets "
                               "ORDER BY created_at, market_id")
        return [MarketRecord(*row) for row in rows]

    def market(self, market_id: str) -> MarketRecord | None:
        if not self._tables:
            return None
        failure = "failure" if self.format >= FORMAT else "NULL"
        row = self.db.execute(f"SELECT {_MARKET_COLUMNS}, {failure} FROM markets "
                              "WHERE market_id = ?", (market_id,)).fetchone()
        return MarketRecord(*row) if row else None

    def commands(self, market_id: str) -> Iterator[CommandRecord]:
        """Every stored command of a market, in order, unverified (see `verified_commands`)."""
        rows = self.db.execute(f"SELECT {_COMMAND_COLUMNS} FROM commands "
                               "WHERE market_id = ? ORDER BY n", (market_id,))
        for n, time_s, actor, kind, body, token_hash in rows:
            yield CommandRecord(n, time_s, actor, kind, json.loads(body), token_hash)

    def check_record(self, market_id: str) -> MarketRecord:
        """A market's record, once it is verified: present, readable, its checksum right.
        Raises DamagedLog if not."""
        try:
            record = self.market(market_id)
            stored = self.db.execute("SELECT checksum FROM markets WHERE market_id = ?",
                                     (market_id,)).fetchone() if self.verifiable else None
        except sqlite3.DatabaseError as error:
            raise self._damaged(market_id, None, 0,
                                f"its record cannot be read ({error})") from None
        if record is None:
            seen = self._witness.entries.get(market_id) or {}
            raise self._damaged(market_id, None, 0, f"its record is missing from the log (its "
                                f"witness saw it with {seen.get('commands', 0)} commands): a "
                                f"truncated or deleted -wal file?")
        if self.verifiable and (stored is None or stored[0] != market_checksum(record)):
            raise self._damaged(market_id, record.name, 0, "its record (name, scenario, seed, "
                                "tokens) fails its checksum")
        return record

    def _damaged(self, market_id: str, name: str | None, verified: int,
                 reason: str) -> DamagedLog:
        seen = self._witness.entries.get(market_id)
        expected = seen["commands"] if seen and seen["commands"] > verified else None
        if name is None:
            name = (seen or {}).get("name", "")
        return DamagedLog(LogDamage(market_id, name, verified, expected, reason))

    def verified_commands(self, market_id: str) -> Iterator[CommandRecord]:
        """A market's commands in order, each yielded once it is verified: numbered without a
        gap, readable, chained to the one before it, and (up to what the witness saw) the
        ones the writer wrote. Raises DamagedLog at the first that is not (or if its record
        is: `check_record`), or at the end if the log holds fewer commands or state changes
        than its witness saw."""
        record = self.check_record(market_id)
        seen = self._witness.entries.get(market_id)

        def damaged(verified: int, reason: str) -> DamagedLog:
            return self._damaged(market_id, record.name, verified, reason)

        head = market_checksum(record)
        witnessed = seen["commands"] if seen else 0
        checksum = "checksum" if self.verifiable else "''"
        rows = None
        expected_n = 0
        while True:
            try:
                if rows is None:
                    rows = self.db.execute(f"SELECT {_COMMAND_COLUMNS}, {checksum} FROM "
                                           "commands WHERE market_id = ? ORDER BY n",
                                           (market_id,))
                row = next(rows, None)
            except sqlite3.DatabaseError as error:
                raise damaged(expected_n, f"command {expected_n} cannot be read "
                                          f"({error})") from None
            if row is None:
                break
            n, time_s, actor, kind, body, token_hash, stored = row
            if n != expected_n:
                raise damaged(expected_n, f"command {expected_n} is missing (the log goes "
                                          f"from command {expected_n - 1} to {n})")
            if self.verifiable:
                head = command_checksum(head, n, time_s, actor, kind, body, token_hash)
                if head != stored:
                    raise damaged(n, f"command {n} fails its checksum (altered, or written "
                                     f"by another writer)")
                if n + 1 == witnessed and head != seen["head"]:
                    raise damaged(n, f"command {n} is not the one its witness saw written "
                                     f"(the log was replaced or rewritten)")
            try:
                parsed = json.loads(body)
            except ValueError:
                raise damaged(n, f"command {n} has a body that is not JSON") from None
            yield CommandRecord(n, time_s, actor, kind, parsed, token_hash)
            expected_n += 1
        if expected_n < witnessed:
            raise damaged(expected_n, f"the log ends at command {expected_n} of {witnessed} "
                                      f"its witness saw written: the rest were lost (a "
                                      f"truncated or deleted -wal file?)")
        if seen and self.verifiable:
            try:
                changes = self.db.execute("SELECT changes FROM markets WHERE market_id = ?",
                                          (market_id,)).fetchone()[0]
            except sqlite3.DatabaseError as error:
                raise damaged(expected_n, f"its record cannot be read ({error})") from None
            if changes < seen["changes"]:
                raise damaged(expected_n, f"the log lost the market's last state change: it "
                                          f"says {record.state}, its witness saw "
                                          f"{seen['state']}")

    def verify(self, market_id: str) -> LogDamage | None:
        """Read and check a market's whole log; None if it verifies."""
        try:
            for _ in self.verified_commands(market_id):
                pass
        except DamagedLog as error:
            return error.damage
        return None

    def lost_markets(self) -> list[LogDamage]:
        """Markets the witness saw created that the log no longer holds."""
        present = {record.market_id for record in self.markets()}
        return [LogDamage(market_id, entry.get("name", ""), 0, entry["commands"] or None,
                          f"its record is missing from the log (its witness saw it with "
                          f"{entry['commands']} commands): a truncated or deleted -wal file?")
                for market_id, entry in self._witness.entries.items()
                if market_id not in present]


def _entry(market_id: str, name: str, commands: int, head: str, changes: int,
           state: str) -> dict[str, Any]:
    return {"market": market_id, "name": name, "commands": commands, "head": head,
            "changes": changes, "state": state}


class _Witness:
    """`FILE.head`: per market, the command count and head checksum, and the count of state
    changes, as the writer last committed them: one JSON line per commit, the last line of a
    market winning. Appended without fsync (see the module docstring: it may lag, never lead);
    rewritten atomically, one line per market, on open and every WITNESS_LINES lines."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self._file: Any = None
        self._lines = 0
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return
        except OSError as error:
            raise SessionLogError(f"cannot read the log's witness {str(path)!r}: "
                                  f"{error.strerror or error}") from None
        for line in text.splitlines():
            try:  # a torn last line (a crash mid-write) is skipped: the witness lags
                entry = json.loads(line)
                key = entry["market"]
                entry = _entry(key, str(entry["name"]), int(entry["commands"]),
                               str(entry["head"]), int(entry["changes"]), str(entry["state"]))
            except (ValueError, KeyError, TypeError):
                continue
            self.entries[key] = self._merge(self.entries.get(key), entry)

    @staticmethod
    def _merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
        """A witness only moves forward: a note never lowers what was seen."""
        if old is None:
            return new
        merged = dict(new)
        if old["commands"] > new["commands"]:
            merged["commands"], merged["head"] = old["commands"], old["head"]
        if old["changes"] > new["changes"]:
            merged["changes"], merged["state"] = old["changes"], old["state"]
        return merged

    def open(self, unwitnessed: dict[str, dict[str, Any]]) -> None:
        """Start writing: add `unwitnessed` markets and rewrite the file, one line per
        market. What the witness saw is kept as it was, damaged markets' included."""
        if self.path is None:
            return
        for key, entry in unwitnessed.items():
            self.entries.setdefault(key, entry)
        self._rewrite()

    def _rewrite(self) -> None:
        assert self.path is not None
        if self._file is not None:
            self._file.close()
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("w", encoding="utf-8") as out:
                out.writelines(json.dumps(e, separators=(",", ":")) + "\n"
                               for e in self.entries.values())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as error:
            raise SessionLogError(f"cannot write the log's witness {str(self.path)!r}: "
                                  f"{error.strerror or error}") from None
        self._lines = len(self.entries)

    def note(self, entry: dict[str, Any]) -> None:
        key = entry["market"]
        self.entries[key] = self._merge(self.entries.get(key), entry)
        if self._file is None:
            return
        try:
            if self._lines >= WITNESS_LINES:
                self._rewrite()
                return
            self._file.write(json.dumps(self.entries[key], separators=(",", ":")) + "\n")
            self._file.flush()  # to the OS: survives the process, not necessarily the machine
            self._lines += 1
        except (OSError, SessionLogError) as error:
            # The commit stands: a witness that lags raises no false alarm, where failing
            # the market for it would refuse commands the log holds safely.
            logger.warning("session log witness %s not written (%s); the log goes on, less "
                           "watched", self.path, error)

    def advance(self, market_id: str, commands: int, head: str) -> None:
        entry = self.entries.get(market_id)
        if entry is not None:
            self.note({**entry, "commands": commands, "head": head})

    def change(self, market_id: str, changes: int, state: str) -> None:
        entry = self.entries.get(market_id)
        if entry is not None:
            self.note({**entry, "changes": changes, "state": state})

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _connect(path: Path, readonly: bool, memory: bool) -> sqlite3.Connection:
    if memory:
        return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    if readonly:
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def _lock(path: Path) -> int:
    """Take `path`.lock exclusively for this process (released on close or death); raise
    SessionLogLocked, naming the holder's pid, if another process has it."""
    lock_path = _sidecar(path, ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise SessionLogError(f"cannot open the lock file {str(lock_path)!r}: "
                              f"{error.strerror or error}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise SessionLogLocked(f"{str(path)!r} is in use by another gpumarket server"
                                   f"{by}: one server per session log") from None
        raise SessionLogError(f"cannot lock {str(lock_path)!r}: "
                              f"{error.strerror or error}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd

"""Rebuild a live market from its session log by deterministic replay.

Used when the server starts (every live market comes back where it was) and by
`gpumarket replay`, which turns a recorded session into the outputs of `gpumarket run`. Both
replay only commands the log verifies (`SessionLog.verified_commands`): `rebuild` refuses a
damaged log, `salvage` stops at its last verified command and says why.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.live.commands import COMMANDS, JOINS, CommandError
from api.live.session import Session
from api.live.sessionlog import (
    REPLAYABLE,
    DamagedLog,
    LogDamage,
    MarketRecord,
    SessionLog,
    SessionLogUnreadable,
)
from market.observe.eventlog import EVENTS_FILE, EventLog
from market.scenario import validate_scenario


class ReplayError(RuntimeError):
    """The log does not replay: a command the live market accepted is refused now (the code
    or the scenario data changed since it was recorded), or the log is damaged."""


@dataclass(slots=True)
class Salvaged:
    """A market rebuilt from its log: the session, its participants' token hashes (hash ->
    participant id) and, if the log is damaged, why the replay stopped where it did."""

    session: Session
    tokens: dict[str, int]
    damage: LogDamage | None


def rebuild(log: SessionLog, record: MarketRecord, *, history_events: int = 200_000,
            out: str | Path | None = None, until_s: float | None = None,
            events: EventLog | None = None) -> tuple[Session, dict[str, int]]:
    """Replay `record`'s commands at their simulated times, then run to where the market was
    last seen (or to `until_s`). Returns the session and its participants' token hashes
    (hash -> participant id). `events`, if given, is attached to the market before the first
    command: it hears the whole replay. Raises ReplayError, naming the command, if the log is
    damaged or a command does not replay."""
    salvaged = _replay(log, record, history_events, out, until_s, strict=True, events=events)
    return salvaged.session, salvaged.tokens


def salvage(log: SessionLog, record: MarketRecord, *,
            history_events: int = 200_000) -> Salvaged:
    """Like `rebuild`, but a damaged log is replayed up to its last verified command (the
    market is left at that command's time) and the damage returned, not raised. Raises
    DamagedLog if the market's record itself is damaged (nothing to replay from), and
    ReplayError if a verified command does not replay."""
    return _replay(log, record, history_events, None, None, strict=False)


def _replay(log: SessionLog, record: MarketRecord, history_events: int,
            out: str | Path | None, until_s: float | None, *, strict: bool,
            events: EventLog | None = None) -> Salvaged:
    if log.format not in REPLAYABLE:
        raise ReplayError(f"market {record.market_id}: the session log is in format "
                          f"{log.format}, written by an earlier gpumarket whose economics "
                          f"differ; this version replays format {REPLAYABLE[0]} to "
                          f"{REPLAYABLE[-1]} only (replay it with the version that wrote it)")
    try:  # a damaged record cannot even give a scenario to replay
        log.check_record(record.market_id)
    except DamagedLog as damaged:
        if strict:
            raise ReplayError(str(damaged)) from None
        raise
    scenario = validate_scenario(json.loads(record.scenario_json),
                                 f"market {record.market_id} scenario")
    session = Session(scenario, record.seed, history_events=history_events, out=out)
    if events is not None:
        events.listen(session.market)
    tokens: dict[str, int] = {}
    models = COMMANDS | JOINS
    try:
        for command in log.verified_commands(record.market_id):
            session.advance(command.time_s)
            try:
                actor = None if command.actor is None else session.participant(command.actor)
                result = session.apply(command.kind, models[command.kind].model_validate(
                    command.body), actor)
            except (CommandError, KeyError, IndexError, ValueError) as error:
                raise ReplayError(f"market {record.market_id}: command {command.n} "
                                  f"({command.kind} at {command.time_s:.3f} s) does not "
                                  f"replay: {error}") from None
            if command.token_hash is not None:
                tokens[command.token_hash] = result["participant_id"]
    except DamagedLog as damaged:
        if strict:
            raise ReplayError(f"{damaged} (the log verifies up to command "
                              f"{damaged.damage.verified_commands - 1})"
                              if damaged.damage.verified_commands else str(damaged)) from None
        session.take_pending()
        return Salvaged(session, tokens, damaged.damage)
    session.advance(record.clock_s if until_s is None else until_s)
    session.take_pending()  # replayed events are history, not news to publish
    return Salvaged(session, tokens, None)


def replay_market(db: str | Path, market_id: str, out: str | Path | None = None,
                  note: Callable[[str], None] | None = None, events: bool = False) -> Any:
    """Replay market `market_id` of session log `db` to where it was last seen and end the
    run there; returns its RunResult (tables and summary written to `out` if given, as
    `gpumarket run --out` writes them, with the resolved scenario as `scenario.json`; with
    `events`, every event too, as `events.parquet`: what `gpumarket evaluate` reads).
    Reads the log without locking it, so it works while a server writes it. Raises
    LookupError for an unknown market, SessionLogError for a file that is not a readable log,
    ReplayError for a damaged log or a command that does not replay; `note` gets one-line
    remarks (a log without checksums, a file SQLite finds damaged elsewhere)."""
    log = SessionLog(db, readonly=True)
    try:
        record = log.market(market_id)
        if record is None:
            known = ", ".join(r.market_id for r in log.markets()) or "none"
            raise LookupError(f"--market: no market {market_id!r} in {str(db)!r} "
                              f"(markets: {known})")
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)
        event_log = EventLog(None, Path(out) / EVENTS_FILE) if events and out is not None \
            else None
        try:
            session, _ = rebuild(log, record, out=out, events=event_log)
        except BaseException as error:
            if event_log is not None:
                event_log.close()  # what it heard stays a readable file
            if isinstance(error, sqlite3.DatabaseError):  # pages unreadable outside the chain
                raise SessionLogUnreadable(f"{str(db)!r}: market {market_id} cannot be read: "
                                           f"{error}") from None
            raise
        if note is not None and not log.verifiable:
            note(f"the log is in format {log.format}, without checksums: replayed unverified "
                 f"(a server migrates it on open)")
        if note is not None and log.integrity is not None:
            note(f"SQLite finds the file damaged ({log.integrity}); market {market_id} "
                 f"verifies and replays")
    finally:
        log.close()
    market = session.market
    market.finish()
    result = market.result()
    if event_log is not None:
        event_log.close()
    if out is not None:
        result.write(out)
    return result

"""Rebuild a live market from its session log by deterministic replay.

Used when the server starts (every live market comes back where it was) and by
`gpumarket replay`, which turns a recorded session into the outputs of `gpumarket run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api.commands import COMMANDS, JOINS, CommandError
from api.session import Session
from api.sessionlog import FORMAT, MarketRecord, SessionLog
from market.scenario import validate_scenario


class ReplayError(RuntimeError):
    """The log does not replay: a command the live market accepted is refused now (the code
    or the scenario data changed since it was recorded)."""


def rebuild(log: SessionLog, record: MarketRecord, *, history_events: int = 200_000,
            out: str | Path | None = None,
            until_s: float | None = None) -> tuple[Session, dict[str, int]]:
    """Replay `record`'s commands at their simulated times, then run to where the market was
    last seen (or to `until_s`). Returns the session and its participants' token hashes
    (hash -> participant id)."""
    if log.format != FORMAT:
        raise ReplayError(f"market {record.market_id}: the session log is in format "
                          f"{log.format}, written by an earlier gpumarket whose economics "
                          f"differ; this version replays format {FORMAT} only (replay it with "
                          f"the version that wrote it)")
    scenario = validate_scenario(json.loads(record.scenario_json),
                                 f"market {record.market_id} scenario")
    session = Session(scenario, record.seed, history_events=history_events, out=out)
    tokens: dict[str, int] = {}
    models = COMMANDS | JOINS
    for command in log.commands(record.market_id):
        session.advance(command.time_s)
        actor = None if command.actor is None else session.participant(command.actor)
        try:
            result = session.apply(command.kind, models[command.kind].model_validate(
                command.body), actor)
        except (CommandError, KeyError, IndexError) as error:
            raise ReplayError(f"market {record.market_id}: command {command.n} "
                              f"({command.kind} at {command.time_s:.3f} s) does not replay: "
                              f"{error}") from None
        if command.token_hash is not None:
            tokens[command.token_hash] = result["participant_id"]
    session.advance(record.clock_s if until_s is None else until_s)
    session.take_pending()  # replayed events are history, not news to publish
    return session, tokens


def replay_market(db: str | Path, market_id: str, out: str | Path | None = None) -> Any:
    """Replay market `market_id` of session log `db` to where it was last seen and end the
    run there; returns its RunResult (tables and summary written to `out` if given, as
    `gpumarket run --out` writes them). Raises LookupError for an unknown market."""
    log = SessionLog(db)
    try:
        record = log.market(market_id)
        if record is None:
            known = ", ".join(r.market_id for r in log.markets()) or "none"
            raise LookupError(f"--market: no market {market_id!r} in {str(db)!r} "
                              f"(markets: {known})")
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)
        session, _ = rebuild(log, record, out=out)
    finally:
        log.close()
    market = session.market
    market.finish()
    result = market.result()
    if out is not None:
        result.write(out)
    return result

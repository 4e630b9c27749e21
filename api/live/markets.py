"""The server's live markets and who may act on them: creation, recovery from the session log
at start-up, and tokens.

Tokens are random (`secrets`), shown once, and kept only as SHA-256 hashes, here and in the
log. A control token acts on its market's clock (pause, resume, speed, stop); a participant
token acts only as that participant. Tokens end with their market: once it has stopped,
finished or failed they no longer act, and after `Limits.evict_after_s` the market leaves
memory altogether (its log stays, for `gpumarket replay`; asking for it is then 410 Gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.live.commands import CommandError, CreateMarket
from api.live.driver import LIVE_STATES, Budgets, Limits, LiveMarket, take
from api.live.replay import salvage
from api.live.session import Participant, Session
from api.live.sessionlog import DamagedLog, LogDamage, MarketRecord, SessionLog, SessionLogError
from market.budget import check_budget
from market.errors import MarketError
from market.scenario import ScenarioError, builtin_scenarios, load_scenario, scenario_from_toml

log = logging.getLogger("gpumarket.server")

CONTROL = -1  # the participant id a control token stands for
#: States a market leaves memory from, `Limits.evict_after_s` after it got there.
ENDED_STATES = ("stopped", "finished", "failed")


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_secret(given: str | None, digest: str) -> bool:
    """Whether `given` hashes to `digest`, in time that does not depend on where they differ."""
    return given is not None and hmac.compare_digest(token_hash(given), digest)


class MarketGone(CommandError):
    """A market that ended and left memory: its log is kept, it no longer answers (410)."""

    def __init__(self, market_id: str) -> None:
        super().__init__("gone", f"market {market_id!r} has ended and is no longer served; "
                         "its session log is kept for `gpumarket replay`")

    @property
    def status(self) -> int:
        return 410


class Invites:
    """Invite codes by market, as SHA-256 hashes in the session log's database (a table of
    their own), so that a market restarted from the log still asks for its code."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute("CREATE TABLE IF NOT EXISTS market_invites (market_id TEXT PRIMARY KEY, "
                   "invite_hash TEXT NOT NULL)")

    def set(self, market_id: str, invite_code: str) -> str:
        digest = token_hash(invite_code)
        self.db.execute("INSERT OR REPLACE INTO market_invites VALUES (?, ?)",
                        (market_id, digest))
        return digest

    def get(self, market_id: str) -> str | None:
        row = self.db.execute("SELECT invite_hash FROM market_invites WHERE market_id = ?",
                              (market_id,)).fetchone()
        return None if row is None else row[0]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who a token is: its market, and a participant (None for the control token)."""

    market: LiveMarket
    participant: Participant | None
    token_hash: str


class LiveMarkets:
    """Every market this server knows, keyed by id, and the tokens that act on them."""

    def __init__(self, db: str | Path, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        # Locks the log for this process and reads its markets: raises SessionLogError (one
        # line) for a log another server holds, or a file that is not a readable log.
        self.log = SessionLog(db)
        #: Markets of the log that failed or whose log is damaged, as `listing` shows them.
        self.problems: dict[str, dict[str, Any]] = {}
        self.markets: dict[str, LiveMarket] = {}
        self._tokens: dict[str, tuple[str, int]] = {}   # hash -> (market id, participant id)
        self.budgets = Budgets(self.limits)
        self.invites = Invites(self.log.db)
        self._ended_at: dict[str, float] = {}   # market id -> when it was first seen ended
        self._janitor: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life cycle

    def recover(self) -> list[str]:
        """Verify the whole log, rebuild every live market in it by replay and start it.

        A market whose log is damaged (`SessionLog.verified_commands`) is rebuilt up to its
        last verified command and kept out of play, in state `damaged`: watchable, taking no
        commands, its log left as it is (restore the files and it comes back). A market that
        does not replay is marked failed in the log, with the reason. Both are said in the
        server's log and listed by `listing`; the others go on. Returns the ids of the
        markets recovered and running again."""
        if self.log.integrity is not None:
            log.warning("session log %s: SQLite's quick check finds damage (%s); markets "
                        "whose logs verify go on", self.log.path, self.log.integrity)
        for damage in self.log.lost_markets():
            log.error("market %s: %s", damage.market_id, damage.reason)
            self._problem(damage.market_id, damage.name, "damaged", damage)
        recovered = []
        for record in self.log.markets():
            if record.state not in LIVE_STATES:
                # Not replayed, but verified all the same: listed if damaged or failed.
                damage = self.log.verify(record.market_id)
                if damage is not None:
                    log.error("market %s (%s): %s", record.market_id, record.state,
                              damage.reason)
                if damage is not None or record.state == "failed":
                    # A stop or an end its log cannot back is listed as damaged, not stopped.
                    state = "failed" if damage is None else "damaged"
                    self._problem(record.market_id, record.name, state, damage,
                                  record.failure or "marked failed by an earlier run", record)
                continue
            try:
                salvaged = salvage(self.log, record, history_events=self.limits.history_events)
            except DamagedLog as damaged:   # its record: no scenario or seed to trust
                log.error("market %s kept out of play: %s", record.market_id, damaged)
                self._problem(record.market_id, record.name, "damaged", damaged.damage, None,
                              record)
                continue
            except Exception as error:
                reason = f"does not replay: {error}"
                log.error("market %s %s; marked failed", record.market_id, reason)
                with contextlib.suppress(sqlite3.Error, SessionLogError):  # said above anyway
                    self.log.update(record.market_id, state="failed", failure=reason)
                self._problem(record.market_id, record.name, "failed", None, reason, record)
                continue
            live = self._attach(record, salvaged.session)
            for digest, participant_id in salvaged.tokens.items():
                self._tokens[digest] = (record.market_id, participant_id)
            if salvaged.damage is not None:
                damage = salvaged.damage
                log.error("market %s kept out of play at command %d: %s", record.market_id,
                          damage.verified_commands, damage.reason)
                live.state, live.error = "damaged", f"session log damaged: {damage.reason}"
                self._problem(record.market_id, record.name, "damaged", damage, None, record)
                continue
            live.start()
            recovered.append(record.market_id)
        return recovered

    def _problem(self, market_id: str, name: str, state: str, damage: LogDamage | None,
                 reason: str | None = None, record: MarketRecord | None = None) -> None:
        """List `market_id` as failed or damaged, with the keys of a live summary (None
        where the log does not say) and a `log` object saying why."""
        if damage is not None:
            entry_log = damage.to_dict()
        else:
            entry_log = {"damaged": False, "verified_commands": None,
                         "expected_commands": None, "reason": reason}
        self.problems[market_id] = {
            "market_id": market_id, "name": name,
            "scenario": None if record is None else record.scenario_name,
            "seed": None if record is None else record.seed, "state": state,
            "clock_s": None if record is None else record.clock_s, "horizon_s": None,
            "speed": None if record is None else record.speed, "seq": None,
            "participants": None, "connections": 0, "lagging": False,
            "error": entry_log["reason"], "log": entry_log}

    def listing(self) -> list[dict[str, Any]]:
        """What `GET /api/markets` lists: every market in memory (its summary, with a `log`
        object if its log is damaged or it failed at start), then the markets of the log that
        failed or are damaged and are not in memory (id, name, state, error, `log`)."""
        entries = []
        for market_id, live in self.markets.items():
            summary = live.summary()
            problem = self.problems.get(market_id)
            if problem is not None:
                summary["log"] = problem["log"]
            entries.append(summary)
        entries.extend(problem for market_id, problem in self.problems.items()
                       if market_id not in self.markets)
        return entries

    async def shutdown(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        for live in self.markets.values():
            await live.shutdown()
        self.log.close()

    def start_evicting(self) -> None:
        """Evict ended markets `Limits.evict_after_s` after they end, from now on."""
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._evict_forever(), name="evict markets")

    async def _evict_forever(self) -> None:
        every_s = min(max(self.limits.evict_after_s / 4, 0.02), 5.0)
        while True:
            await asyncio.sleep(every_s)
            self.evict(time.monotonic())

    def evict(self, now: float) -> list[str]:
        """Drop from memory the markets that ended at least `evict_after_s` before `now`
        (monotonic seconds), with their tokens and connections; returns their ids."""
        gone = []
        for market_id, live in list(self.markets.items()):
            if live.state not in ENDED_STATES:  # live, or damaged and kept to be watched
                continue
            ended = self._ended_at.setdefault(market_id, now)
            if now - ended >= self.limits.evict_after_s:
                gone.append(market_id)
        if not gone:
            return gone
        evicted = set(gone)
        for market_id in gone:
            live = self.markets.pop(market_id)
            self._ended_at.pop(market_id, None)
            for connection in list(live.connections):
                connection.cut()
            log.info("market %s evicted from memory (%s); its log is kept", market_id,
                     live.state)
        self._tokens = {digest: found for digest, found in self._tokens.items()
                        if found[0] not in evicted}
        return gone

    def _attach(self, record: MarketRecord, session: Session) -> LiveMarket:
        live = LiveMarket(record.market_id, record.name, record.scenario_name, session,
                          self.log, self.limits, record.speed, record.state,
                          record.control_hash, self._register,
                          self.invites.get(record.market_id))
        self.markets[record.market_id] = live
        self._tokens[record.control_hash] = (record.market_id, CONTROL)
        return live

    def _register(self, digest: str, market_id: str, participant_id: int) -> None:
        self._tokens[digest] = (market_id, participant_id)

    # ------------------------------------------------------------------ markets

    async def create(self, body: CreateMarket, invite_code: str | None = None
                     ) -> tuple[LiveMarket, str]:
        """Start a new live market; returns it and its control token (shown once). With
        `invite_code`, joining it needs that code. The market is built in a worker thread:
        a large one takes seconds, and the server goes on answering meanwhile."""
        self._check_room()
        if not body.speed <= self.limits.max_speed:
            raise CommandError("invalid", f"speed: must be <= {self.limits.max_speed:g}",
                               "speed")
        try:
            if body.scenario_toml is not None:
                if body.scenario not in builtin_scenarios():
                    raise ScenarioError(f"scenario: expected a built-in scenario "
                                        f"({', '.join(builtin_scenarios())})")
                scenario = scenario_from_toml(body.scenario_toml, body.overrides,
                                              base=body.scenario)
            elif body.scenario in builtin_scenarios():
                scenario = load_scenario(body.scenario, body.overrides, outside=True)
            else:
                raise ScenarioError(f"scenario: expected a built-in scenario "
                                    f"({', '.join(builtin_scenarios())}) or scenario_toml, "
                                    f"got {body.scenario!r}")
            # A market too large for a server is refused before anything is built.
            check_budget(scenario, bypass=None)
        except ScenarioError as error:
            raise CommandError("invalid", str(error), "scenario") from None
        try:
            session = await asyncio.to_thread(
                Session, scenario, body.seed, history_events=self.limits.history_events)
        except MarketError as error:  # the engine's own refusals (a loop that would spin)
            raise CommandError("invalid", str(error), "scenario") from None
        self._check_room()  # another market may have started while this one was built
        market_id = f"m-{secrets.token_hex(4)}"
        while market_id in self.markets or self.log.market(market_id) is not None:
            market_id = f"m-{secrets.token_hex(4)}"
        token = new_token("gmc")
        record = MarketRecord(
            market_id, body.name or scenario.name, scenario.name,
            # Key order matters: a dict's order (a GPU mix) is the order draws are made in.
            json.dumps(scenario.model_dump(mode="json")), body.seed,
            body.speed, "running", 0.0, token_hash(token), time.time())
        self.log.create_market(record)
        if invite_code is not None:
            self.invites.set(market_id, invite_code)
        live = self._attach(record, session)
        live.start()
        return live, token

    def _check_room(self) -> None:
        """Refuse (503) when the server already runs its maximum of live markets."""
        live_count = sum(m.state in LIVE_STATES for m in self.markets.values())
        if live_count >= self.limits.max_markets:
            raise CommandError("unavailable", f"this server runs its maximum of "
                               f"{self.limits.max_markets} live markets; stop one first")

    def get(self, market_id: str) -> LiveMarket:
        live = self.markets.get(market_id)
        if live is None:
            if self.log.market(market_id) is not None:
                raise MarketGone(market_id)
            raise CommandError("not_found", f"market {market_id!r} does not exist")
        return live

    def admit(self, live: LiveMarket, invite_code: str | None, address: str) -> None:
        """Let a join from `address` through, or raise: 429 over the address's or the market's
        join rate, 403 without the market's invite code. A wrong code spends the address's
        budget (so codes cannot be guessed quickly) but not the market's (so guessing cannot
        keep the invited out)."""
        take((self.budgets.joins, address))
        if live.invite_hash is not None and not same_secret(invite_code, live.invite_hash):
            raise CommandError("forbidden", "invite_code: this market needs the invite code "
                               "its operator gave" if invite_code is None
                               else "invite_code: wrong invite code for this market",
                               "invite_code")
        take((self.budgets.market_joins, live.market_id))

    # ------------------------------------------------------------------ tokens

    def actor(self, market_id: str, token: str | None, address: str, *,
              acting: bool = True) -> Actor:
        """Who `token` is on `market_id`, after the rate limits of the token and of the client
        `address`; raises CommandError 401 for a missing or unknown token, 403 for another
        market's or, when `acting`, for a market that has ended, 429 over a limit, 404 or 410
        for a market that does not exist or no longer does."""
        live = self.get(market_id)
        if not token:
            raise CommandError("unauthorized", "missing token: send the header "
                               "'Authorization: Bearer TOKEN'")
        digest = token_hash(token)
        # Unknown tokens spend the address's budget too: guessing is as slow as trading.
        self.budgets.acting(digest, address)
        found = self._tokens.get(digest)
        if found is None:
            raise CommandError("unauthorized", "unknown token")
        if found[0] != market_id:
            raise CommandError("forbidden", f"this token belongs to another market, not "
                               f"{market_id!r}")
        if acting and live.state not in LIVE_STATES:
            raise CommandError("forbidden", f"market {market_id} is {live.state}: its tokens "
                               "no longer act")
        participant = None if found[1] == CONTROL else live.session.participant(found[1])
        return Actor(live, participant, digest)


"""The server's live markets and who may act on them: creation, recovery from the session log
at start-up, and tokens.

Tokens are random (`secrets`), shown once, and kept only as SHA-256 hashes, here and in the
log. A control token acts on its market's clock (pause, resume, speed, stop); a participant
token acts only as that participant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from api.commands import CommandError, CreateMarket
from api.live import LIVE_STATES, Limits, LiveMarket, RateLimiter
from api.replay import rebuild
from api.session import Participant, Session
from api.sessionlog import MarketRecord, SessionLog
from market.scenario import ScenarioError, builtin_scenarios, load_scenario, scenario_from_toml

log = logging.getLogger("gpumarket.server")

CONTROL = -1  # the participant id a control token stands for


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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
        self.log = SessionLog(db)
        self.markets: dict[str, LiveMarket] = {}
        self._tokens: dict[str, tuple[str, int]] = {}   # hash -> (market id, participant id)
        self.rate = RateLimiter(self.limits.rate_per_s, self.limits.rate_burst)

    # ------------------------------------------------------------------ life cycle

    def recover(self) -> list[str]:
        """Rebuild every live market in the log by replay and start it; a market that does
        not replay is marked failed (and said so in the server's log), the others go on.
        Returns the ids of the markets recovered."""
        recovered = []
        for record in self.log.markets():
            if record.state not in LIVE_STATES:
                continue
            try:
                session, tokens = rebuild(self.log, record,
                                          history_events=self.limits.history_events)
            except Exception as error:
                log.error("market %s does not replay, marked failed: %s", record.market_id,
                          error)
                self.log.update(record.market_id, state="failed")
                continue
            live = self._attach(record, session)
            for digest, participant_id in tokens.items():
                self._tokens[digest] = (record.market_id, participant_id)
            live.start()
            recovered.append(record.market_id)
        return recovered

    async def shutdown(self) -> None:
        for live in self.markets.values():
            await live.shutdown()
        self.log.close()

    def _attach(self, record: MarketRecord, session: Session) -> LiveMarket:
        live = LiveMarket(record.market_id, record.name, record.scenario_name, session,
                          self.log, self.limits, record.speed, record.state,
                          record.control_hash, self._register)
        self.markets[record.market_id] = live
        self._tokens[record.control_hash] = (record.market_id, CONTROL)
        return live

    def _register(self, digest: str, market_id: str, participant_id: int) -> None:
        self._tokens[digest] = (market_id, participant_id)

    # ------------------------------------------------------------------ markets

    def create(self, body: CreateMarket) -> tuple[LiveMarket, str]:
        """Start a new live market; returns it and its control token (shown once)."""
        live_count = sum(m.state in LIVE_STATES for m in self.markets.values())
        if live_count >= self.limits.max_markets:
            raise CommandError("unavailable", f"this server runs its maximum of "
                               f"{self.limits.max_markets} live markets; stop one first")
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
                scenario = load_scenario(body.scenario, body.overrides)
            else:
                raise ScenarioError(f"scenario: expected a built-in scenario "
                                    f"({', '.join(builtin_scenarios())}) or scenario_toml, "
                                    f"got {body.scenario!r}")
        except ScenarioError as error:
            raise CommandError("invalid", str(error), "scenario") from None
        market_id = f"m-{secrets.token_hex(4)}"
        while market_id in self.markets or self.log.market(market_id) is not None:
            market_id = f"m-{secrets.token_hex(4)}"
        token = new_token("gmc")
        record = MarketRecord(
            market_id, body.name or scenario.name, scenario.name,
            # Key order matters: a dict's order (a GPU mix) is the order draws are made in.
            json.dumps(scenario.model_dump(mode="json")), body.seed,
            body.speed, "running", 0.0, token_hash(token), time.time())
        session = Session(scenario, body.seed, history_events=self.limits.history_events)
        self.log.create_market(record)
        live = self._attach(record, session)
        live.start()
        return live, token

    def get(self, market_id: str) -> LiveMarket:
        live = self.markets.get(market_id)
        if live is None:
            raise CommandError("not_found", f"market {market_id!r} does not exist")
        return live

    # ------------------------------------------------------------------ tokens

    def actor(self, market_id: str, token: str | None) -> Actor:
        """Who `token` is on `market_id`, after its rate limit; raises CommandError 401 for
        a missing or unknown token, 403 for another market's, 429 over the limit."""
        live = self.get(market_id)
        if not token:
            raise CommandError("unauthorized", "missing token: send the header "
                               "'Authorization: Bearer TOKEN'")
        digest = token_hash(token)
        found = self._tokens.get(digest)
        if found is None:
            raise CommandError("unauthorized", "unknown token")
        if found[0] != market_id:
            raise CommandError("forbidden", f"this token belongs to another market, not "
                               f"{market_id!r}")
        self.rate.check(digest)
        participant = None if found[1] == CONTROL else live.session.participant(found[1])
        return Actor(live, participant, digest)


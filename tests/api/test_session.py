"""A live session replays exactly: commands applied at tick boundaries of any length give the
same numbered events as a replay that runs straight to each command's simulated time."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.live.commands import (
    COMMANDS,
    JOINS,
    CancelOrder,
    CommandError,
    JoinProvider,
    JoinTenant,
    PostOrder,
)
from api.live.replay import rebuild
from api.live.session import Session
from api.live.sessionlog import MarketRecord, SessionLog
from market.scenario import load_scenario

SCENARIO = load_scenario("default", ["duration_days=0.5", "tenants.arrivals_per_hour=60",
                                     "market.order_max_bids=1000"])


def _script(session: Session, step: int, mine: list[int]) -> tuple[str, object, int | None] | None:
    """The command a test client sends at its `step`-th boundary (None: nothing); `mine`:
    the orders alice posted."""
    if step == 0:
        return "join_tenant", JoinTenant(role="tenant", name="alice"), None
    if step == 1:
        return "join_provider", JoinProvider(role="provider", name="bob", gpu_model="h100",
                                             gpus=8), None
    if step % 3 == 2:
        return "post_order", PostOrder(gpu_models=["h100", "a100-80gb"], gpus=1 + step % 4,
                                       max_price_usd_per_gpu_hour=2.5, hours=0.5,
                                       auto_select=bool(step % 2)), 0
    if step % 3 == 0 and mine:
        order_id = mine[-1]
        if step % 2:
            return "cancel_order", CancelOrder(order_id=order_id), 0
        return "bid", COMMANDS["bid"](order_id=order_id, price_usd_per_gpu_hour=1.0), 1
    return None


def _live(ticks_s: list[float]) -> tuple[Session, list[tuple[float, int | None, str, dict]]]:
    """Drive a session the way the live driver does: advance by each tick, apply the script's
    command at the boundary; returns it and the log of accepted commands."""
    session = Session(SCENARIO, seed=3)
    log = []
    mine: list[int] = []
    for step, tick_s in enumerate(ticks_s):
        session.advance(session.market.now + tick_s)
        command = _script(session, step, mine)
        if command is None:
            continue
        kind, body, actor = command
        participant = None if actor is None or actor >= len(session.participants) \
            else session.participant(actor)
        try:
            result = session.apply(kind, body, participant)
        except CommandError:
            continue  # refused: not logged, as the live server does
        log.append((session.market.now, actor, kind, body.model_dump(mode="json")))
        mine.extend([result["order_id"]] if kind == "post_order" else [])
    return session, log


def _replayed(log, clock_s: float) -> Session:
    db = SessionLog(":memory:")
    record = MarketRecord("m-test", "t", SCENARIO.name,
                          json.dumps(SCENARIO.model_dump(mode="json")), 3, 1.0, "running",
                          clock_s, "x" * 64, 0.0)
    db.create_market(record)
    db.append("m-test", [(t, actor, kind, body, None) for t, actor, kind, body in log], 0.0)
    db.update("m-test", clock_s=clock_s)
    session, _ = rebuild(db, db.market("m-test"))
    db.close()
    return session


@settings(max_examples=8, deadline=None)
@given(ticks_s=st.lists(st.floats(1.0, 900.0), min_size=6, max_size=30))
def test_ticks_of_any_length_replay_to_the_same_events(ticks_s):
    live, log = _live(ticks_s)
    assert len(log) >= 3  # joins and at least one order went through
    replayed = _replayed(log, live.market.now)
    assert replayed.seq == live.seq
    assert list(replayed.history) == list(live.history)
    assert replayed.market.money() == live.market.money()


def test_a_refused_command_changes_nothing():
    session = Session(SCENARIO, seed=1)
    tenant = session.participant(0) if session.participants else None
    assert tenant is None
    session.apply("join_tenant", JoinTenant(role="tenant", name="a", wallet_usd=5.0), None)
    alice = session.participant(0)
    before = (session.seq, session.market.money())
    with pytest.raises(CommandError) as refused:  # the deposit is more than the wallet
        session.apply("post_order", PostOrder(gpu_models=["h100"], gpus=8,
                                              max_price_usd_per_gpu_hour=3.0, hours=10), alice)
    assert refused.value.code == "conflict" and "deposit_usd" in refused.value.message
    with pytest.raises(CommandError) as unknown:
        session.apply("post_order", PostOrder(gpu_models=["h999"],
                                              max_price_usd_per_gpu_hour=1.0), alice)
    assert unknown.value.code == "invalid" and unknown.value.field == "gpu_models"
    assert (session.seq, session.market.money()) == before


def test_participants_act_only_in_their_role():
    session = Session(SCENARIO, seed=1)
    for kind, body in (("join_tenant", JoinTenant(role="tenant", name="t1")),
                       ("join_tenant", JoinTenant(role="tenant", name="t2")),
                       ("join_provider", JoinProvider(role="provider", name="p",
                                                      gpu_model="h100"))):
        session.apply(kind, body, None)
    t1, t2, provider = session.participants
    order = PostOrder(gpu_models=["h100"], max_price_usd_per_gpu_hour=2.0)
    order_id = session.apply("post_order", order, t1)["order_id"]
    cases = [
        ("post_order", order, provider, "forbidden"),
        ("post_order", order, None, "unauthorized"),
        ("cancel_order", CancelOrder(order_id=order_id), t2, "forbidden"),
        ("cancel_order", CancelOrder(order_id=order_id + 99), t1, "not_found"),
        ("bid", COMMANDS["bid"](order_id=order_id, price_usd_per_gpu_hour=1.0), t1,
         "forbidden"),
        ("accept", COMMANDS["accept"](order_id=order_id, bid_id=0), t2, "forbidden"),
        ("close_lease", COMMANDS["close_lease"](lease_id=0), t1, "not_found"),
    ]
    for kind, body, actor, code in cases:
        with pytest.raises(CommandError) as refused:
            session.apply(kind, body, actor)
        assert refused.value.code == code, (kind, refused.value.message)
    assert set(COMMANDS) | set(JOINS) >= {"bid", "join_tenant"}


def test_a_stale_clock_reruns_to_the_same_events(tmp_path):
    """A live market notes its clock without waiting for the disk; one restarted from an
    older clock runs the lost ticks again and meets the same numbered events."""
    live, log = _live([300.0] * 12)
    last_command_s = log[-1][0]
    live.advance(live.market.now + 1800)  # ticks with no command after the last one
    restarted = _replayed(log, last_command_s)
    assert restarted.seq < live.seq
    restarted.advance(live.market.now)
    assert list(restarted.history) == list(live.history)

    db = SessionLog(tmp_path / "log.db")
    db.create_market(MarketRecord("m-clock", "t", "default", "{}", 1, 1.0, "running", 0.0,
                                  "x" * 64, 0.0))
    db.record_clock("m-clock", 42.5)
    assert db.market("m-clock").clock_s == 42.5
    # Commands still wait for the disk.
    assert db.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()


def test_the_stream_shows_no_private_costs_and_is_strict_json():
    """Events carry a tenant's value and a provider's cost for the market's own observers; a
    live stream leaves them out, and every frame is JSON without NaN or Infinity."""
    session = Session(SCENARIO, seed=1)
    session.advance(6 * 3600)
    frames = session.since(0)
    kinds = {frame["kind"] for frame in frames}
    assert {"order_opened", "lease_created"} <= kinds
    for frame in frames:
        assert not {"job_value_micro", "best_cost_micro", "serving_cost_micro",
                    "planned_work_s"} & frame.keys(), frame
        json.dumps(frame, allow_nan=False)
    opened = next(frame for frame in frames if frame["kind"] == "order_opened")
    assert opened["units"] and "auto_select" in opened

"""Tests for market.ledger: double-entry accounts in integer micro-USD.

Checks opening accounts, transfer / collect / distribute and their all-or-nothing refusals,
`can_pay`, per-reason `flows`, the `external` account (the only one allowed below zero), and,
as a property over random sequences of operations checked against a plain-dict model, that money
is conserved (`total() == 0`), no other account is ever overdrawn, and a refused operation
changes nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.core.ledger import InsufficientFunds, Ledger


def accounts(ledger: Ledger, *names: str) -> list[int]:
    return [ledger.open(name) for name in names]


def snapshot(ledger: Ledger) -> tuple[list[int], dict[str, int]]:
    """Every balance and every flow, copied (reading `flows` by key would add keys)."""
    return [ledger.balance(a) for a in range(len(ledger))], dict(ledger.flows)


# --- opening accounts ----------------------------------------------------------------------

def test_new_ledger_has_only_the_external_account_at_zero():
    ledger = Ledger()
    assert len(ledger) == 1
    assert ledger.name(ledger.external) == "external"
    assert ledger.balance(ledger.external) == 0
    assert ledger.total() == 0
    assert ledger.overdrawn() == []
    assert dict(ledger.flows) == {}


def test_open_returns_consecutive_ids_with_zero_balances_and_names():
    ledger = Ledger()
    ids = accounts(ledger, "tenant:a", "tenant:b", "provider:c")
    assert ids == [ledger.external + 1, ledger.external + 2, ledger.external + 3]
    assert [ledger.name(a) for a in ids] == ["tenant:a", "tenant:b", "provider:c"]
    assert [ledger.balance(a) for a in ids] == [0, 0, 0]
    assert len(ledger) == 4


def test_opening_many_accounts_keeps_earlier_balances():
    # More accounts than the initial array holds: growing must copy the balances over.
    ledger = Ledger()
    ids = [ledger.open(f"provider:{i}") for i in range(300)]
    for i, account in enumerate(ids):
        ledger.transfer(ledger.external, account, i, "fund")
        ledger.open(f"late:{i}")  # keep opening while balances are non-zero
    assert [ledger.balance(a) for a in ids] == list(range(300))
    assert ledger.balance(ledger.external) == -sum(range(300))
    assert ledger.total() == 0
    assert len(ledger) == 601


# --- transfer ------------------------------------------------------------------------------

def test_transfer_moves_money_and_records_the_reason():
    ledger = Ledger()
    alice, bob = accounts(ledger, "tenant:alice", "provider:bob")
    ledger.transfer(ledger.external, alice, 5_000_000, "fund")
    ledger.transfer(alice, bob, 1_250_000, "lease")
    ledger.transfer(alice, bob, 750_000, "lease")
    assert ledger.balance(alice) == 3_000_000
    assert ledger.balance(bob) == 2_000_000
    assert ledger.balance(ledger.external) == -5_000_000
    assert ledger.total() == 0
    assert dict(ledger.flows) == {"fund": 5_000_000, "lease": 2_000_000}


def test_transfer_of_the_whole_balance_is_allowed():
    ledger = Ledger()
    alice, bob = accounts(ledger, "alice", "bob")
    ledger.transfer(ledger.external, alice, 10, "fund")
    ledger.transfer(alice, bob, 10, "pay")
    assert (ledger.balance(alice), ledger.balance(bob)) == (0, 10)


def test_transfer_of_zero_is_allowed_even_from_an_empty_account():
    ledger = Ledger()
    alice, bob = accounts(ledger, "alice", "bob")
    ledger.transfer(alice, bob, 0, "nothing")
    assert (ledger.balance(alice), ledger.balance(bob)) == (0, 0)
    assert ledger.flows["nothing"] == 0


def test_transfer_to_self_changes_no_balance():
    ledger = Ledger()
    (alice,) = accounts(ledger, "alice")
    ledger.transfer(ledger.external, alice, 7, "fund")
    ledger.transfer(alice, alice, 7, "self")
    assert ledger.balance(alice) == 7
    assert ledger.total() == 0


def test_refused_transfer_changes_nothing_and_names_account_and_reason():
    ledger = Ledger()
    alice, bob = accounts(ledger, "tenant:alice", "provider:bob")
    ledger.transfer(ledger.external, alice, 100, "fund")
    before = snapshot(ledger)
    with pytest.raises(InsufficientFunds) as error:
        ledger.transfer(alice, bob, 101, "escrow_deposit")
    message = str(error.value)
    assert "tenant:alice" in message
    assert "escrow_deposit" in message
    assert "\n" not in message
    assert snapshot(ledger) == before


def test_negative_transfer_is_rejected_and_changes_nothing():
    ledger = Ledger()
    alice, bob = accounts(ledger, "alice", "bob")
    ledger.transfer(ledger.external, alice, 100, "fund")
    before = snapshot(ledger)
    with pytest.raises(ValueError, match="-1"):
        ledger.transfer(alice, bob, -1, "steal")
    assert snapshot(ledger) == before


def test_external_account_may_go_negative_but_is_never_reported_overdrawn():
    ledger = Ledger()
    (alice,) = accounts(ledger, "alice")
    ledger.transfer(ledger.external, alice, 3_000_000, "fund")
    assert ledger.balance(ledger.external) == -3_000_000
    assert ledger.overdrawn() == []
    # Money returned to the outside world flows back into external.
    ledger.transfer(alice, ledger.external, 1_000_000, "withdraw")
    assert ledger.balance(ledger.external) == -2_000_000
    assert ledger.total() == 0


def test_overdrawn_names_negative_accounts_other_than_external():
    # The public API refuses to overdraw anyone, so the audit is tested by corrupting the
    # balances directly: it exists to catch exactly such a bug.
    ledger = Ledger()
    alice, bob = accounts(ledger, "tenant:alice", "provider:bob")
    ledger.transfer(ledger.external, alice, 5, "fund")
    ledger._balances[bob] = -3
    assert ledger.overdrawn() == ["provider:bob"]
    assert ledger.total() == -3


# --- can_pay, collect, distribute ----------------------------------------------------------

def funded(ledger: Ledger, amounts: list[int]) -> np.ndarray:
    ids = np.array([ledger.open(f"provider:{i}") for i in range(len(amounts))], dtype=np.int64)
    for account, amount in zip(ids.tolist(), amounts, strict=True):
        ledger.transfer(ledger.external, account, amount, "fund")
    return ids


def test_can_pay_is_elementwise_and_inclusive():
    ledger = Ledger()
    ids = funded(ledger, [0, 499_999, 500_000, 2_000_000])
    assert ledger.can_pay(ids, 500_000) == [False, False, True, True]
    assert ledger.can_pay(ids, 0) == [True, True, True, True]
    assert ledger.can_pay(ids[:0], 1) == []


def test_collect_takes_the_amount_from_each_source():
    ledger = Ledger()
    ids = funded(ledger, [500_000, 800_000, 1_000_000])
    escrow = ledger.open("escrow:bids")
    ledger.collect(ids, escrow, 500_000, "bid_deposit")
    assert [ledger.balance(a) for a in ids.tolist()] == [0, 300_000, 500_000]
    assert ledger.balance(escrow) == 1_500_000
    assert ledger.flows["bid_deposit"] == 1_500_000
    assert ledger.total() == 0


def test_collect_from_no_sources_is_a_no_op():
    ledger = Ledger()
    escrow = ledger.open("escrow")
    before = snapshot(ledger)
    ledger.collect(np.array([], dtype=np.int64), escrow, 10, "bid_deposit")
    assert [ledger.balance(a) for a in range(len(ledger))] == before[0]
    assert ledger.flows.get("bid_deposit", 0) == 0


def test_refused_collect_is_all_or_nothing():
    ledger = Ledger()
    ids = funded(ledger, [1_000, 999, 5_000])
    escrow = ledger.open("escrow")
    before = snapshot(ledger)
    with pytest.raises(InsufficientFunds, match="bid_deposit"):
        ledger.collect(ids, escrow, 1_000, "bid_deposit")
    assert snapshot(ledger) == before


def test_distribute_pays_each_sink_and_records_the_total():
    ledger = Ledger()
    escrow = ledger.open("escrow")
    ledger.transfer(ledger.external, escrow, 1_000, "fund")
    sinks = funded(ledger, [0, 0, 7])
    ledger.distribute(escrow, sinks, 300, "bid_refund")
    assert ledger.balance(escrow) == 100
    assert [ledger.balance(a) for a in sinks.tolist()] == [300, 300, 307]
    assert ledger.flows["bid_refund"] == 900
    assert ledger.total() == 0


def test_refused_distribute_is_all_or_nothing():
    ledger = Ledger()
    escrow = ledger.open("escrow:deposits")
    ledger.transfer(ledger.external, escrow, 899, "fund")
    sinks = funded(ledger, [0, 0, 0])
    before = snapshot(ledger)
    with pytest.raises(InsufficientFunds) as error:
        ledger.distribute(escrow, sinks, 300, "bid_refund")
    assert "escrow:deposits" in str(error.value)
    assert "bid_refund" in str(error.value)
    assert snapshot(ledger) == before


def test_distribute_from_external_may_overdraw_it():
    ledger = Ledger()
    sinks = funded(ledger, [0, 0])
    ledger.distribute(ledger.external, sinks, 50, "airdrop")
    assert [ledger.balance(a) for a in sinks.tolist()] == [50, 50]
    assert ledger.balance(ledger.external) == -100
    assert ledger.total() == 0


@pytest.mark.parametrize("operation", ["collect", "distribute"])
def test_negative_bulk_amount_is_rejected_and_changes_nothing(operation):
    ledger = Ledger()
    ids = funded(ledger, [10, 10])
    other = ledger.open("other")
    ledger.transfer(ledger.external, other, 10, "fund")
    before = snapshot(ledger)
    with pytest.raises(ValueError, match="-5"):
        if operation == "collect":
            ledger.collect(ids, other, -5, "x")
        else:
            ledger.distribute(other, ids, -5, "x")
    assert snapshot(ledger) == before


# --- property: conservation and all-or-nothing over random operation sequences -------------

ACCOUNTS = 6  # account 0 is external, 1..5 ordinary
ordinary = st.integers(1, ACCOUNTS - 1)
any_account = st.integers(0, ACCOUNTS - 1)
amounts = st.integers(0, 3_000)
distinct = st.lists(ordinary, min_size=0, max_size=ACCOUNTS - 1, unique=True)
reasons = st.sampled_from(["fund", "lease", "deposit", "refund"])
operations = st.one_of(
    st.tuples(st.just("transfer"), any_account, any_account, amounts, reasons),
    st.tuples(st.just("collect"), distinct, any_account, amounts, reasons),
    st.tuples(st.just("distribute"), any_account, distinct, amounts, reasons),
)


def predict(model: list[int], op: tuple) -> tuple[bool, list[tuple[int, int]], int]:
    """What `op` should do: (refused, balance changes, amount recorded under its reason)."""
    kind, a, b, amount, _ = op
    if kind == "transfer":
        return a != 0 and model[a] < amount, [(a, -amount), (b, amount)], amount
    if kind == "collect":
        total = amount * len(a)
        return any(model[s] < amount for s in a), [(s, -amount) for s in a] + [(b, total)], total
    total = amount * len(b)
    return a != 0 and model[a] < total, [(a, -total)] + [(s, amount) for s in b], total


def apply(ledger: Ledger, op: tuple) -> None:
    kind, a, b, amount, reason = op
    if kind == "transfer":
        ledger.transfer(a, b, amount, reason)
    elif kind == "collect":
        ledger.collect(np.array(a, dtype=np.int64), b, amount, reason)
    else:
        ledger.distribute(a, np.array(b, dtype=np.int64), amount, reason)


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=40))
def test_random_operations_conserve_money_and_refusals_change_nothing(ops):
    ledger = Ledger()
    assert ledger.external == 0
    for i in range(1, ACCOUNTS):
        assert ledger.open(f"account:{i}") == i
    model = [0] * ACCOUNTS
    flows: dict[str, int] = {}

    for op in ops:
        refused, moves, flow = predict(model, op)
        before = snapshot(ledger)
        if refused:
            with pytest.raises(InsufficientFunds):
                apply(ledger, op)
            assert snapshot(ledger) == before
        else:
            apply(ledger, op)
            for account, delta in moves:
                model[account] += delta
            flows[op[-1]] = flows.get(op[-1], 0) + flow

        assert [ledger.balance(x) for x in range(ACCOUNTS)] == model
        assert dict(ledger.flows) == flows
        assert ledger.total() == 0
        assert ledger.overdrawn() == []
        assert min(model[1:]) >= 0

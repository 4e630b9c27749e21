"""Escrow, bid deposits and payouts: every movement of money in a market, in one place.

A tenant's deposit for an order is locked in the escrow account when it posts; a running lease
is paid out of it whenever it settles (at each withdrawal, when it pauses or closes, at the end
of the run), less the platform's take; what is left goes back to the tenant when the order
ends. A provider locks a deposit for each bid and gets it back when the bid closes or its
lease ends. All amounts are integer micro-USD in the double-entry ledger (`market.core.ledger`), so
the audit (`audit`) checks conservation to the micro-USD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from market.core.ledger import InsufficientFunds, Ledger
from market.core.records import Lease, Order
from market.events import Event, PaymentSettled
from market.units import owed_micro, usd_to_micro


class Settlement:
    """The market's accounts (platform, escrow, bid deposits) and the rules that move money
    between them and the participants' wallets."""

    def __init__(self, ledger: Ledger, bid_deposit_usd: float, take_rate: float,
                 emit: Callable[[Event], None]) -> None:
        self.ledger = ledger
        self.platform = ledger.open("platform")
        self.escrow = ledger.open("escrow")
        self.deposits = ledger.open("bid_deposits")
        self.deposit_micro = usd_to_micro(bid_deposit_usd)   # per bid
        self._take_ppm = round(take_rate * 1_000_000)         # the platform's share, ppm
        self._emit = emit

    def open_wallet(self, name: str, wallet_usd: float) -> int:
        """A participant's account, funded from outside with `wallet_usd`; returns its id."""
        account = self.ledger.open(name)
        self.ledger.transfer(self.ledger.external, account, usd_to_micro(wallet_usd), "fund")
        return account

    def spendable_micro(self, account: int) -> int:
        """What the participant can spend on deposits, micro-USD."""
        return self.ledger.balance(account)

    def can_lock(self, account: int, deposit_micro: int) -> bool:
        """Whether `account` can fund a deposit of `deposit_micro` now."""
        return self.ledger.balance(account) >= deposit_micro

    def paid_micro(self) -> tuple[int, int]:
        """(fees, paid out of escrow so far), micro-USD: the take and the whole payouts."""
        flows = self.ledger.flows
        fees = flows.get("take_rate", 0)
        return fees, fees + flows.get("lease_payout", 0)

    def close_books(self) -> None:
        """The run ends (after the last settlement): nothing more to do under AEP-23."""

    # ------------------------------------------------------------------ tenants' escrow

    def lock_escrow(self, order: Order, account: int, deposit_micro: int) -> None:
        """Move the tenant's deposit for `order` into escrow."""
        self.ledger.transfer(account, self.escrow, deposit_micro, "escrow_deposit")
        order.escrow = deposit_micro

    def refund_escrow(self, order: Order, account: int) -> None:
        """Give what is left of `order`'s escrow back to its tenant's `account`."""
        if order.escrow:
            self.ledger.transfer(self.escrow, account, order.escrow, "escrow_refund")
            order.escrow = 0

    def settle(self, lease: Lease, provider_account: int, now_s: float) -> None:
        """Pay the provider what the lease owes now, from its order's escrow, less the fee;
        announce it (`PaymentSettled`). Escrow never goes below zero: an order that ran out
        pays what it has (the lease ends then, `insufficient_funds`)."""
        order = lease.order
        owed = owed_micro(lease.price, lease.ran_s(now_s)) - lease.paid
        amount = min(owed, order.escrow)
        if amount <= 0:
            return
        fee = amount * self._take_ppm // 1_000_000
        self.ledger.transfer(self.escrow, self.platform, fee, "take_rate")
        self.ledger.transfer(self.escrow, provider_account, amount - fee, "lease_payout")
        order.escrow -= amount
        lease.paid += amount
        self._emit(PaymentSettled(now_s, lease.id, lease.provider, amount, fee))

    # ------------------------------------------------------------------ providers' deposits

    def take_deposits(self, accounts: list[int]) -> np.ndarray | None:
        """Each bidder in `accounts` locks a bid deposit. Returns None when all paid, else
        which of them did (the others do not bid)."""
        if not self.deposit_micro:
            return None
        try:
            self.ledger.collect(accounts, self.deposits, self.deposit_micro, "bid_deposit")
            return None
        except InsufficientFunds:  # rare: drop the bids of providers who cannot pay
            paid = self.ledger.can_pay(accounts, self.deposit_micro)
            self.ledger.collect([a for a, ok in zip(accounts, paid, strict=True) if ok],
                                self.deposits, self.deposit_micro, "bid_deposit")
            return np.array(paid, bool)

    def can_bid(self, account: int) -> bool:
        """Whether `account` can lock a bid deposit."""
        return self.ledger.balance(account) >= self.deposit_micro

    def refund_deposits(self, accounts: list[int]) -> None:
        """Bids closed without a lease: their deposits go back."""
        if self.deposit_micro:
            self.ledger.distribute(self.deposits, accounts, self.deposit_micro,
                                   "bid_deposit_refund")

    def refund_lease_deposit(self, lease: Lease, provider_account: int) -> None:
        """A lease ended: the winning bid's deposit goes back to its provider."""
        if lease.deposit:
            self.ledger.transfer(self.deposits, provider_account, lease.deposit,
                                 "bid_deposit_refund")

    # ------------------------------------------------------------------ audit

    def _escrow_matches(self, orders: Iterable[Order]) -> tuple[bool, int]:
        """Whether escrow holds exactly what the open `orders` lock; and how many bids
        they hold open."""
        escrow_expected = deposits_open = 0
        for order in orders:
            escrow_expected += order.escrow
            deposits_open += int(order.bid_open.sum())
        return self.ledger.balance(self.escrow) == escrow_expected, deposits_open

    def audit(self, orders: Iterable[Order], active_leases: int) -> dict[str, Any]:
        """Total money, whether it is unchanged, what escrow and deposits hold — and whether
        they hold exactly what the open `orders` and the `active_leases` (a count) lock."""
        ledger = self.ledger
        escrow_ok, deposits_open = self._escrow_matches(orders)
        deposits_expected = self.deposit_micro * (deposits_open + active_leases)
        conserved = (ledger.total() == 0 and not ledger.overdrawn() and escrow_ok
                     and ledger.balance(self.deposits) == deposits_expected)
        return {
            "money_conserved": conserved,
            "money_total_micro": ledger.total(),
            "money_in_micro": -ledger.balance(ledger.external),
            "escrow_held_micro": ledger.balance(self.escrow),
            "deposits_held_micro": ledger.balance(self.deposits),
            "flows_micro": dict(sorted(ledger.flows.items())),
        }

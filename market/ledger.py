"""Double-entry ledger in integer micro-USD.

Every transfer moves money from one account to another and names its reason, so the sum of all
balances never changes: money enters the market only from the `external` account (tenants and
providers funding their wallets), the one account allowed to go negative.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


class InsufficientFunds(Exception):
    """A transfer would overdraw an account that may not go negative."""


class Ledger:
    """Accounts are small integers; balances live in one int64 array, so that many accounts
    can pay one (bid deposits) in a single step.

    >>> ledger = Ledger()
    >>> alice = ledger.open("tenant:alice")
    >>> ledger.transfer(ledger.external, alice, 5_000_000, "fund")
    >>> ledger.balance(alice), ledger.total()
    (5000000, 0)
    """

    __slots__ = ("_balances", "_names", "external", "flows")

    def __init__(self) -> None:
        self._balances = np.zeros(64, np.int64)
        self._names: list[str] = []
        #: micro-USD moved per reason, for reports and audits.
        self.flows: defaultdict[str, int] = defaultdict(int)
        self.external = self.open("external")

    def open(self, name: str) -> int:
        """Open an account with a zero balance; returns its id."""
        account = len(self._names)
        if account == self._balances.size:  # grow by doubling: opening stays O(1) amortized
            self._balances = np.concatenate([self._balances, np.zeros_like(self._balances)])
        self._names.append(name)
        return account

    def transfer(self, source: int, sink: int, amount_micro: int, reason: str) -> None:
        """Move `amount_micro` from `source` to `sink`; all or nothing."""
        if amount_micro < 0:
            raise ValueError(f"transfer amount must be >= 0, got {amount_micro}")
        balances = self._balances
        if source != self.external and balances[source] < amount_micro:
            raise InsufficientFunds(
                f"{self._names[source]} holds {balances[source]} micro-USD, "
                f"{reason} needs {amount_micro}"
            )
        balances[source] -= amount_micro
        balances[sink] += amount_micro
        self.flows[reason] += amount_micro

    def can_pay(self, sources: np.ndarray, amount_micro: int) -> np.ndarray:
        """Which of `sources` hold at least `amount_micro` (bool array); external always can."""
        return (self._balances[sources] >= amount_micro) | (sources == self.external)

    def collect(self, sources: np.ndarray, sink: int, amount_micro: int, reason: str) -> None:
        """Each of the distinct accounts `sources` pays `amount_micro` to `sink`; all or
        nothing (check with `can_pay` first)."""
        if amount_micro < 0:
            raise ValueError(f"transfer amount must be >= 0, got {amount_micro}")
        balances = self._balances
        if sources.size and balances[sources].min() < amount_micro \
                and not self.can_pay(sources, amount_micro).all():
            raise InsufficientFunds(f"{reason}: an account holds less than {amount_micro}")
        balances[sources] -= amount_micro
        total = amount_micro * int(sources.size)
        balances[sink] += total
        self.flows[reason] += total

    def distribute(self, source: int, sinks: np.ndarray, amount_micro: int, reason: str) -> None:
        """`source` pays `amount_micro` to each of the distinct accounts `sinks`."""
        total = amount_micro * int(sinks.size)
        if amount_micro < 0:
            raise ValueError(f"transfer amount must be >= 0, got {amount_micro}")
        if source != self.external and self._balances[source] < total:
            raise InsufficientFunds(f"{self._names[source]} cannot pay {reason} of {total}")
        self._balances[source] -= total
        self._balances[sinks] += amount_micro
        self.flows[reason] += total

    def balance(self, account: int) -> int:
        """Balance of `account` in micro-USD."""
        return int(self._balances[account])

    def name(self, account: int) -> str:
        return self._names[account]

    def total(self) -> int:
        """Sum of every balance, the external account included: always 0 for a sound ledger."""
        return int(self._balances[: len(self._names)].sum())

    def __len__(self) -> int:
        return len(self._names)

    def overdrawn(self) -> list[str]:
        """Names of accounts, other than external, holding a negative balance (should be none)."""
        negative = np.flatnonzero(self._balances[: len(self._names)] < 0)
        return [self._names[a] for a in negative.tolist() if a != self.external]

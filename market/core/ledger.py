"""Double-entry ledger in integer micro-USD.

Every transfer moves money from one account to another and names its reason, so the sum of all
balances never changes: money enters the market only from the `external` account (tenants and
providers funding their wallets), the one account allowed to go negative.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


class InsufficientFunds(Exception):
    """A transfer would overdraw an account that may not go negative."""


class Ledger:
    """Accounts are small integers; balances live in one Python list (exact integers, and
    faster than an array for the one-at-a-time transfers that dominate).

    >>> ledger = Ledger()
    >>> alice = ledger.open("tenant:alice")
    >>> ledger.transfer(ledger.external, alice, 5_000_000, "fund")
    >>> ledger.balance(alice), ledger.total()
    (5000000, 0)
    """

    __slots__ = ("_balances", "_names", "external", "flows")

    def __init__(self) -> None:
        self._balances: list[int] = []
        self._names: list[str] = []
        #: micro-USD moved per reason, for reports and audits.
        self.flows: defaultdict[str, int] = defaultdict(int)
        self.external = self.open("external")

    def open(self, name: str) -> int:
        """Open an account with a zero balance; returns its id."""
        self._balances.append(0)
        self._names.append(name)
        return len(self._balances) - 1

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

    def can_pay(self, sources: Iterable[int], amount_micro: int) -> list[bool]:
        """Which of `sources` hold at least `amount_micro`; external always can."""
        balances, external = self._balances, self.external
        return [s == external or balances[s] >= amount_micro for s in sources]

    def collect(self, sources: list[int], sink: int, amount_micro: int, reason: str) -> None:
        """Each of the distinct accounts `sources` pays `amount_micro` to `sink`; all or
        nothing (check with `can_pay` first)."""
        if amount_micro < 0:
            raise ValueError(f"transfer amount must be >= 0, got {amount_micro}")
        balances = self._balances
        if len(sources) and min(map(balances.__getitem__, sources)) < amount_micro \
                and not all(self.can_pay(sources, amount_micro)):
            raise InsufficientFunds(f"{reason}: an account holds less than {amount_micro}")
        for source in sources:
            balances[source] -= amount_micro
        total = amount_micro * len(sources)
        balances[sink] += total
        self.flows[reason] += total

    def distribute(self, source: int, sinks: list[int], amount_micro: int, reason: str) -> None:
        """`source` pays `amount_micro` to each of the accounts `sinks`; all or nothing."""
        if amount_micro < 0:
            raise ValueError(f"transfer amount must be >= 0, got {amount_micro}")
        total = amount_micro * len(sinks)
        balances = self._balances
        if source != self.external and balances[source] < total:
            raise InsufficientFunds(f"{self._names[source]} cannot pay {reason} of {total}")
        balances[source] -= total
        for sink in sinks:
            balances[sink] += amount_micro
        self.flows[reason] += total

    def balance(self, account: int) -> int:
        """Balance of `account` in micro-USD."""
        return self._balances[account]

    def name(self, account: int) -> str:
        return self._names[account]

    def total(self) -> int:
        """Sum of every balance, the external account included: always 0 for a sound ledger."""
        return sum(self._balances)

    def __len__(self) -> int:
        return len(self._balances)

    def overdrawn(self) -> list[str]:
        """Names of accounts, other than external, holding a negative balance (should be none)."""
        return [name for account, (name, balance)
                in enumerate(zip(self._names, self._balances, strict=True))
                if balance < 0 and account != self.external]

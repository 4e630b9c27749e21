"""What the market's observers may read of it: the `MarketState` interface.

Metrics, welfare accounts, the result recorder, the run result, price history and the
strategies' views are attached to a market from outside (`market.builder`). They learn what
happens from events (`market.core.bus`) and read only this state, at the time of an event or at
the end of a run; none of them imports the engine, so the engine can change without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from market.catalog import GpuCatalog
from market.core.ledger import Ledger
from market.core.pool import ProviderPool
from market.core.records import Lease, Order
from market.core.settlement import Settlement
from market.events import Event
from market.scenario import MarketRules, Scenario


class MarketState(Protocol):
    """A running market as its observers see it."""

    scenario: Scenario
    seed: int
    rules: MarketRules
    catalog: GpuCatalog
    pool: ProviderPool
    ledger: Ledger
    settlement: Settlement       # escrow and payouts (AEP-23 or BME)
    horizon_s: float
    orders: dict[int, Order]     # open or leased, not yet closed
    leases: dict[int, Lease]     # active
    tenant_accounts: list[int]
    node_lists: dict[str, dict[str, Any]]  # node-list populations: what each file gave
    arrived_s: np.ndarray        # per provider: when it joined (simulated seconds)
    exited_s: np.ndarray         # per provider: when it left for good (inf: still on it)

    @property
    def now(self) -> float:
        """Simulated seconds since the start."""
        ...

    def subscribe(self, callback: Callable[[Event], None],
                  kinds: Iterable[type[Event]] | None = None) -> Callable[[], None]: ...

    def strategy_of(self, providers: np.ndarray) -> np.ndarray:
        """Index of each provider's strategy (among the market's strategies)."""
        ...

    def money(self) -> dict[str, Any]:
        """The ledger's audit (see `market.core.settlement.Settlement.audit`)."""
        ...

"""The market's one event stream: every state change is one small typed record.

Metrics, result files, live sockets and logs are all subscribers; none reaches into the engine.
Times are simulated seconds; money is integer micro-USD; rates are micro-USD per hour for the
whole order (all its GPUs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[str] = "event"
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        """The event as plain data, with its `kind` first (for JSON and sockets)."""
        # Fields hold numbers, strings and tuples of them: no deep copy needed, and
        # dataclasses.asdict's recursion cost a live market more than the rest of publishing.
        data: dict[str, Any] = {"kind": self.kind}
        for name in _field_names(type(self)):
            data[name] = getattr(self, name)
        return data


@cache
def _field_names(kind: type[Event]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(kind))


@dataclass(frozen=True, slots=True)
class OrderOpened(Event):
    """A tenant posted an order (an Akash deployment group) and bidding opened."""

    kind: ClassVar[str] = "order_opened"
    order_id: int
    tenant: int
    job_id: int
    job_kind: str
    gpus: int
    gpu_models: tuple[str, ...]
    max_price_micro_per_hour: int
    attempt: int  # 0 for a new job; 1, 2, ... for work re-posted after an expiry or a failure
    interruptible: bool = False  # its lease may be paused for higher bids and on-demand work
    # What observers need of the order, so that none reads the engine's state (an event built
    # by hand to test another component leaves them out: no `units`).
    auto_select: bool = True     # the market picks the winner (False: the tenant, by hand)
    units: tuple[Any, ...] = ()  # market.core.resources.ResourceUnit, one per kind of unit
    job_value_micro: int = 0     # the whole job's value to the tenant (open-ended: an hour)
    best_cost_micro: int = 0     # C*: the cheapest way to serve the whole job when posted
    work_left: float = 1.0       # share of the job this order is for
    open_ended: bool = False     # no work estimate: valued and costed by the hour

    def to_dict(self) -> dict[str, Any]:
        data = Event.to_dict(self)
        data["units"] = [asdict(unit) for unit in self.units]
        return data


@dataclass(frozen=True, slots=True)
class BidsPlaced(Event):
    """Bids entered for an order; `arrivals_s` are when each bid reaches the chain."""

    kind: ClassVar[str] = "bids_placed"
    order_id: int
    bid_ids: tuple[int, ...]
    providers: tuple[int, ...]
    prices_micro_per_hour: tuple[int, ...]
    arrivals_s: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class OrderExpired(Event):
    """Bidding closed without an acceptable bid; the tenant decides whether to re-post."""

    kind: ClassVar[str] = "order_expired"
    order_id: int
    tenant: int
    job_id: int
    bids: int
    # Providers that did not bid when the auction opened, per market.core.no_bids.REASONS
    # (empty: not counted, as for an order cleared in a batch).
    no_bids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderCancelled(Event):
    kind: ClassVar[str] = "order_cancelled"
    order_id: int
    tenant: int
    no_bids: tuple[int, ...] = ()  # as OrderExpired's


@dataclass(frozen=True, slots=True)
class LeaseCreated(Event):
    """The winning bid became a lease; the other bids are lost and their deposits refunded."""

    kind: ClassVar[str] = "lease_created"
    lease_id: int
    order_id: int
    bid_id: int
    tenant: int
    provider: int
    job_id: int
    gpu_model: str
    gpus: int
    price_micro_per_hour: int
    bids: int
    waited_s: float  # from the order opening to this lease
    interruptible: bool = False
    serving_cost_micro: float = 0.0  # the whole job on this provider at its avoidable cost
    planned_work_s: float = float("inf")  # how long the order's work takes here (inf: open)
    # Providers that did not bid when the auction opened, per market.core.no_bids.REASONS
    # (empty: not counted, as for an order cleared in a batch).
    no_bids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PaymentSettled(Event):
    """Escrow paid a provider for a lease; `fee_micro` of it went to the platform."""

    kind: ClassVar[str] = "payment_settled"
    lease_id: int
    provider: int
    amount_micro: int
    fee_micro: int


@dataclass(frozen=True, slots=True)
class LeaseClosed(Event):
    """A lease ended with one of Akash's close reasons."""

    kind: ClassVar[str] = "lease_closed"
    lease_id: int
    order_id: int
    tenant: int
    provider: int
    job_id: int
    reason: str
    paid_micro: int
    work_left: float  # fraction of the job still to do (0 when it finished)


@dataclass(frozen=True, slots=True)
class LeasePaused(Event):
    """An interruptible lease gave way to a higher-ranked one (on-demand, or a higher bid):
    its resources went back to the provider; it is not paid and its work waits."""

    kind: ClassVar[str] = "lease_paused"
    lease_id: int
    order_id: int
    tenant: int
    provider: int
    job_id: int


@dataclass(frozen=True, slots=True)
class LeaseResumed(Event):
    """A paused interruptible lease runs again on the same provider."""

    kind: ClassVar[str] = "lease_resumed"
    lease_id: int
    order_id: int
    tenant: int
    provider: int
    job_id: int
    paused_s: float  # how long this pause lasted


@dataclass(frozen=True, slots=True)
class ProviderFailed(Event):
    kind: ClassVar[str] = "provider_failed"
    provider: int
    back_at_s: float


@dataclass(frozen=True, slots=True)
class ProviderRecovered(Event):
    kind: ClassVar[str] = "provider_recovered"
    provider: int


@dataclass(frozen=True, slots=True)
class ProviderLeft(Event):
    """A provider decommissioned (home rigs churn); it may come back at `back_at_s`."""

    kind: ClassVar[str] = "provider_left"
    provider: int
    back_at_s: float


@dataclass(frozen=True, slots=True)
class ProviderEntered(Event):
    """New capacity arrived for good (`agents.entry_exit`): a provider decided to invest at
    `committed_s`, and its GPUs are on the market from now on."""

    kind: ClassVar[str] = "provider_entered"
    provider: int
    population: str
    gpu_model: str
    gpus: int
    committed_s: float


@dataclass(frozen=True, slots=True)
class ProviderExited(Event):
    """A provider left the market for good: it decided to at `decided_s` (its avoidable costs
    went uncovered), stopped bidding then, and left when its last lease ended."""

    kind: ClassVar[str] = "provider_exited"
    provider: int
    decided_s: float


@dataclass(frozen=True, slots=True)
class TenantLeft(Event):
    """A tenant gave up on the market and took the job to a hyperscaler at list price."""

    kind: ClassVar[str] = "tenant_left"
    tenant: int
    job_id: int
    reason: str  # "expired" (no acceptable bid after re-posts), "failures" or "budget"
    gpu_hours: float
    list_cost_micro: int       # what the work taken there costs at list price
    value_micro: int = 0       # what that work is worth to the tenant
    cost_micro: int | None = None  # what it costs the hyperscaler (None: the list cost)




@dataclass(frozen=True, slots=True)
class ActMinted(Event):
    """BME: a tenant topped up its ACT, buying `akt_burned_uakt` for `usd_spent_micro` at
    the spot price and burning it into the vault at the oracle's `price_micro` (micro-USD per
    AKT); `act_minted_uact` is what it got (micro-ACT, one ACT per USD)."""

    kind: ClassVar[str] = "act_minted"
    tenant: int
    usd_spent_micro: int
    akt_burned_uakt: int
    act_minted_uact: int
    price_micro: int


@dataclass(frozen=True, slots=True)
class AktSettled(Event):
    """BME: a lease's payment reached its provider in AKT: `act_burn_uact` burned,
    `akt_out_uakt` paid at `price_micro` (micro-USD per AKT), `vault_paid_uakt` of it from the
    vault and `minted_uakt` newly minted. `direct`: the tenant paid in AKT (mints were halted
    when it deposited), so nothing was burned or minted."""

    kind: ClassVar[str] = "akt_settled"
    lease_id: int
    provider: int
    act_burn_uact: int
    akt_out_uakt: int
    price_micro: int
    vault_paid_uakt: int
    minted_uakt: int
    direct: bool = False


@dataclass(frozen=True, slots=True)
class MintStatusChanged(Event):
    """BME: the mint status changed (healthy, warning, halt_cr, halt_oracle) at
    `collateral_ratio` (None while no ACT is outstanding)."""

    kind: ClassVar[str] = "mint_status_changed"
    status: str
    previous: str
    collateral_ratio: float | None


@dataclass(frozen=True, slots=True)
class Tick(Event):
    """The clock passed another `price_index_interval_s`: a time to sample series and show
    progress."""

    kind: ClassVar[str] = "tick"


EVENT_TYPES: tuple[type[Event], ...] = (
    OrderOpened, BidsPlaced, OrderExpired, OrderCancelled, LeaseCreated, PaymentSettled,
    LeaseClosed, LeasePaused, LeaseResumed, ProviderFailed, ProviderRecovered, ProviderLeft,
    ProviderEntered, ProviderExited, TenantLeft, ActMinted, AktSettled, MintStatusChanged, Tick,
)

"""One live market's replayable state: the Market, the people and bots who joined it, and its
numbered event stream.

Everything here is synchronous and deterministic: the same scenario, seed and commands applied
at the same simulated times give the same events with the same sequence numbers. The live
driver (`api.live.driver`) and the replay (`api.live.replay`, and recovery after a crash) both
go through `Session.apply` and `Session.advance`, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api.live.commands import (
    Accept,
    Bid,
    CancelOrder,
    CloseLease,
    CommandError,
    HoldOrder,
    JoinProvider,
    JoinTenant,
    PostOrder,
    ReleaseOrder,
)
from api.live.narration import Narrator
from api.live.series import LiveSeries
from market.bme.protocol import MICRO, usd_value_micro
from market.builder import Market
from market.core.no_bids import as_dict, dominant
from market.core.resources import gpu_units
from market.errors import MarketError
from market.events import (
    ActMinted,
    AktSettled,
    Event,
    LeaseClosed,
    LeaseCreated,
    OrderCancelled,
    OrderExpired,
    OrderOpened,
)
from market.scenario import Scenario
from market.units import GIB, SECONDS_PER_HOUR, micro_to_usd, per_gpu_hour_usd


@dataclass(frozen=True, slots=True)
class Participant:
    """Someone trading in a live market: a tenant (its market tenant id) or a provider (its
    provider id)."""

    participant_id: int
    role: str
    name: str
    tenant: int | None = None
    provider: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: What events carry for the market's own observers but a live stream does not show: a
#: tenant's value and best cost, a provider's cost of serving (private on a real market).
PRIVATE_FIELDS: dict[type[Event], tuple[str, ...]] = {
    OrderOpened: ("job_value_micro", "best_cost_micro"),
    # Why providers did not bid is the order's tenant's to read (`views.me`), not the stream's.
    LeaseCreated: ("serving_cost_micro", "planned_work_s", "no_bids"),
    OrderExpired: ("no_bids",),
    OrderCancelled: ("no_bids",),
}
#: How many of its latest expired orders a tenant's own view keeps, with their reasons.
EXPIRED_KEPT = 20
#: BME: how many of its latest top-ups, orders paid in AKT and AKT payouts a participant's
#: own view keeps.
BME_KEPT = 20


class Session:
    """A Market driven from outside, with every event numbered (`seq` 1, 2, 3, ...).

    `history` keeps the last `history_events` events for clients that resume; `pending`
    collects the events since the driver last published them.
    """

    def __init__(self, scenario: Scenario, seed: int, *, history_events: int = 200_000,
                 out: str | Path | None = None) -> None:
        self.market = Market(scenario, seed, out=out, record=out is not None)
        self.participants: list[Participant] = []
        self.seq = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=history_events)
        self.pending: list[dict[str, Any]] = []
        # Who posted each order and who holds each lease, by id (ids count up from 0): what
        # lets the server tell "unknown" (404) from "not yours" (403).
        self.order_tenant = array("q")
        self.lease_tenant = array("q")
        self.lease_order = array("q")  # lease id -> its order id
        self.recent_leases: deque[dict[str, Any]] = deque(maxlen=200)
        self.recent_closes: deque[dict[str, Any]] = deque(maxlen=200)
        self.prices: dict[str, deque[tuple[float, float]]] = {}
        # Each tenant's latest expired orders and why providers did not bid (tenant id ->
        # newest last); only participants' tenants read them, so only theirs are kept.
        self.expired: dict[int, deque[dict[str, Any]]] = {}
        # BME, for participants only (`views.me`): a tenant's latest top-ups and their totals
        # (count, micro-USD spent), its orders whose deposit was paid in AKT (order id -> the
        # deposit and what the provider got out of it, oldest first), a provider's latest AKT
        # payouts.
        self.topups: dict[int, deque[dict[str, Any]]] = {}
        self.topup_totals: dict[int, list[int]] = {}
        self.akt_orders: dict[int, dict[int, dict[str, Any]]] = {}
        self.payouts: dict[int, deque[dict[str, Any]]] = {}
        # The page's charts and captions, built from the same numbered events.
        self.series = LiveSeries(self.market)
        self.narrator = Narrator(self.market, self.series)
        self.market.subscribe(self._on_event)

    # ------------------------------------------------------------------ events

    def _on_event(self, event: Event) -> None:
        self.seq += 1
        data = {"seq": self.seq, **event.to_dict()}
        self.series.on_event(event)
        self.narrator.on_event(event)
        kind = type(event)
        for name in PRIVATE_FIELDS.get(kind, ()):
            del data[name]
        if kind is OrderOpened:
            self.order_tenant.append(event.tenant)
            data["max_price_usd_per_gpu_hour"] = \
                per_gpu_hour_usd(event.max_price_micro_per_hour, event.gpus)
        elif kind is LeaseCreated:
            self.lease_tenant.append(event.tenant)
            self.lease_order.append(event.order_id)
            price = per_gpu_hour_usd(event.price_micro_per_hour, event.gpus)
            self.recent_leases.append({
                "time_s": event.time_s, "lease_id": event.lease_id,
                "gpu_model": event.gpu_model, "gpus": event.gpus,
                "price_usd_per_gpu_hour": price, "provider": event.provider,
                "tenant": event.tenant, "interruptible": event.interruptible})
            if not event.interruptible:
                series = self.prices.get(event.gpu_model)
                if series is None:
                    series = self.prices[event.gpu_model] = deque(maxlen=200)
                series.append((event.time_s, price))
        elif kind is OrderExpired:
            kept = self.expired.get(event.tenant)
            if kept is not None:
                kept.append(expired_view(event))
        elif kind is ActMinted:
            kept = self.topups.get(event.tenant)
            if kept is not None:
                kept.append(topup_view(event, self.seq))
                totals = self.topup_totals[event.tenant]
                totals[0] += 1
                totals[1] += event.usd_spent_micro
        elif kind is AktSettled:
            self._akt_paid(event)
        elif kind is LeaseClosed:
            self.recent_closes.append({
                "time_s": event.time_s, "lease_id": event.lease_id, "reason": event.reason,
                "provider": event.provider, "tenant": event.tenant,
                "paid_usd": micro_to_usd(event.paid_micro)})
        for key, value in data.items():  # JSON has no inf (a provider gone for good)
            if type(value) is float and not math.isfinite(value):
                data[key] = None
        self.history.append(data)
        self.pending.append(data)

    def _akt_paid(self, event: AktSettled) -> None:
        """Keep a participant provider's AKT payout and, when it came out of a deposit paid
        in AKT, count it on the participant tenant's order."""
        kept = self.payouts.get(event.provider)
        orders = self.akt_orders.get(self.lease_tenant[event.lease_id]) if event.direct \
            else None
        if kept is None and orders is None:  # the market's own: nobody's view shows it
            return
        payout = payout_view(event, self.seq)
        if kept is not None:
            kept.append(payout)
        if orders is None:
            return
        row = self._akt_order(orders, self.lease_order[event.lease_id])
        row["lease_id"] = event.lease_id  # a re-auctioned order has a new lease
        row["akt_paid_uakt"] += payout["akt_uakt"]
        row["usd_value_micro"] += payout["usd_value_micro"]
        row["payments"] += 1
        row["last_paid_s"] = event.time_s
        row["akt_paid"] = row["akt_paid_uakt"] / MICRO
        row["usd_value"] = micro_to_usd(row["usd_value_micro"])

    @staticmethod
    def _akt_order(orders: dict[int, dict[str, Any]], order_id: int) -> dict[str, Any]:
        """A tenant's row for its order `order_id` paid in AKT (the oldest row goes past
        BME_KEPT): its deposit, and what the provider got out of it so far."""
        row = orders.get(order_id)
        if row is None:
            if len(orders) >= BME_KEPT:
                del orders[next(iter(orders))]
            row = orders[order_id] = {
                "order_id": order_id, "lease_id": None,
                # Unknown (None) for an order re-auctioned with the deposit of an earlier one.
                "deposit_akt": None, "deposit_uakt": None,
                "deposit_usd_spent": None, "deposit_usd_spent_micro": None,
                "akt_paid": 0.0, "akt_paid_uakt": 0, "usd_value": 0.0, "usd_value_micro": 0,
                "payments": 0, "last_paid_s": None}
        return row

    def _akt_escrowed(self) -> int:
        """uAKT held in escrow for deposits paid in AKT (BME; none under AEP-23)."""
        settlement = self.market.settlement
        if self.market.rules.settlement != "bme":
            return 0
        return settlement.protocol.akt.balance(settlement.akt_escrow)

    def take_pending(self) -> list[dict[str, Any]]:
        """The events since the last call, in order."""
        pending, self.pending = self.pending, []
        return pending

    def since(self, seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        """Kept events with a sequence number above `seq`, oldest first (at most `limit`)."""
        history = self.history
        if not history or seq >= self.seq:
            return []
        start = max(seq + 1 - history[0]["seq"], 0)
        stop = len(history) if limit is None else min(len(history), start + limit)
        return [history[i] for i in range(start, stop)]

    @property
    def oldest_seq(self) -> int:
        """The oldest event still kept (1 until the history overflows)."""
        return self.history[0]["seq"] if self.history else self.seq + 1

    # ------------------------------------------------------------------ time

    def advance(self, until_s: float) -> None:
        """Run the market to `until_s` simulated seconds (all events before it)."""
        if until_s > self.market.now:
            self.market.run(until=until_s)

    # ------------------------------------------------------------------ commands

    def participant(self, participant_id: int) -> Participant:
        return self.participants[participant_id]

    def apply(self, kind: str, body: Any, actor: Participant | None) -> dict[str, Any]:
        """Apply one validated command now; returns its result. Raises CommandError with
        nothing changed when the actor may not do it or the market refuses."""
        if self.market.finished:
            raise CommandError("conflict", "the market has ended; it takes no more commands")
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise CommandError("invalid", f"type: unknown command {kind!r}", "type")
        try:
            return handler(self, body, actor)
        except MarketError as error:
            raise CommandError("conflict", str(error)) from None

    def _join_tenant(self, body: JoinTenant, actor: Participant | None) -> dict[str, Any]:
        tenant = self.market.add_tenant(f"{body.name} (live)", body.wallet_usd)
        self.expired[tenant] = deque(maxlen=EXPIRED_KEPT)
        self.topups[tenant] = deque(maxlen=BME_KEPT)
        self.topup_totals[tenant] = [0, 0]
        self.akt_orders[tenant] = {}
        return self._joined(Participant(len(self.participants), "tenant", body.name,
                                        tenant=tenant))

    def _join_provider(self, body: JoinProvider, actor: Participant | None) -> dict[str, Any]:
        from agents.providers import outside_provider

        try:
            provider = outside_provider(self.market, f"{body.name} (live)", body.archetype,
                                        body.gpu_model, body.gpus, body.wallet_usd)
        except ValueError as error:
            field = "gpu_model" if str(error).startswith("gpu_model") else None
            raise CommandError("invalid", str(error), field) from None
        self.payouts[provider] = deque(maxlen=BME_KEPT)
        return self._joined(Participant(len(self.participants), "provider", body.name,
                                        provider=provider))

    def _joined(self, participant: Participant) -> dict[str, Any]:
        self.participants.append(participant)
        return participant.to_dict()

    def _post_order(self, body: PostOrder, actor: Participant | None) -> dict[str, Any]:
        tenant = _role(actor, "tenant").tenant
        market = self.market
        models = tuple(dict.fromkeys(body.gpu_models))
        unknown = [m for m in models if m not in market.catalog.ids]
        if unknown:
            raise CommandError("invalid", f"gpu_models: unknown GPU {unknown[0]!r}; expected "
                               f"catalog ids ({', '.join(market.catalog.ids)})", "gpu_models")
        per_gpu = market.scenario.tenants.resources_per_gpu
        units = gpu_units(body.gpus, models,
                          cpu_millicores_per_gpu=per_gpu.cpu_millicores,
                          memory_bytes_per_gpu=int(per_gpu.memory_gib * GIB),
                          storage_bytes_per_gpu=int(per_gpu.storage_gib * GIB),
                          storage_class=per_gpu.storage_class)
        work_s = None
        if body.hours is not None:
            work_s = np.where([m in models for m in market.catalog.ids],
                              body.hours * SECONDS_PER_HOUR, math.inf)
        deposit = body.deposit_usd
        if deposit is None:
            hours = 24.0 if body.hours is None else body.hours
            deposit = body.max_price_usd_per_gpu_hour * body.gpus * hours
        account = market.tenant_accounts[tenant]
        escrowed, wallet = self._akt_escrowed(), market.ledger.balance(account)
        order_id = market.post_order(
            tenant, units, body.max_price_usd_per_gpu_hour, deposit_usd=deposit,
            job_kind="live", work_s=work_s, auto_select=body.auto_select,
            interruptible=body.interruptible)
        # BME with mints halted: the deposit was bought as AKT and went to escrow (nothing
        # else moves AKT there while an order is posted), paid for from the wallet.
        held = self._akt_escrowed() - escrowed
        if held > 0:
            spent = wallet - market.ledger.balance(account)
            row = self._akt_order(self.akt_orders[tenant], order_id)
            row.update({"deposit_akt": held / MICRO, "deposit_uakt": held,
                        "deposit_usd_spent": micro_to_usd(spent),
                        "deposit_usd_spent_micro": spent})
        return {"order_id": order_id}

    def _own_order(self, order_id: int, actor: Participant | None) -> None:
        tenant = _role(actor, "tenant").tenant
        if not order_id < len(self.order_tenant):
            raise CommandError("not_found", f"order {order_id} does not exist", "order_id")
        if self.order_tenant[order_id] != tenant:
            raise CommandError("forbidden", f"order {order_id} is not yours", "order_id")

    def _cancel_order(self, body: CancelOrder, actor: Participant | None) -> dict[str, Any]:
        self._own_order(body.order_id, actor)
        self.market.cancel_order(body.order_id)
        return {"order_id": body.order_id}

    def _bid(self, body: Bid, actor: Participant | None) -> dict[str, Any]:
        provider = _role(actor, "provider").provider
        if not body.order_id < len(self.order_tenant):
            raise CommandError("not_found", f"order {body.order_id} does not exist", "order_id")
        bid_id = self.market.submit_bid(body.order_id, provider, body.price_usd_per_gpu_hour)
        return {"bid_id": bid_id}

    def _accept(self, body: Accept, actor: Participant | None) -> dict[str, Any]:
        self._own_order(body.order_id, actor)
        return {"lease_id": self.market.accept_bid(body.order_id, body.bid_id)}

    def _close_lease(self, body: CloseLease, actor: Participant | None) -> dict[str, Any]:
        tenant = _role(actor, "tenant").tenant
        if not body.lease_id < len(self.lease_tenant):
            raise CommandError("not_found", f"lease {body.lease_id} does not exist", "lease_id")
        if self.lease_tenant[body.lease_id] != tenant:
            raise CommandError("forbidden", f"lease {body.lease_id} is not yours", "lease_id")
        reopened = self.market.close_lease(body.lease_id, reopen=body.reopen)
        return {"lease_id": body.lease_id, "reopened_order_id": reopened}

    def _hold_order(self, body: HoldOrder, actor: Participant | None) -> dict[str, Any]:
        self._own_order(body.order_id, actor)
        self.market.hold_order(body.order_id)
        return {"order_id": body.order_id, "held": True}

    def _release_order(self, body: ReleaseOrder, actor: Participant | None
                       ) -> dict[str, Any]:
        # No actor: the live market itself, when a hold's wall-clock time is up.
        if actor is not None:
            self._own_order(body.order_id, actor)
        released = self.market.release_order(body.order_id)
        return {"order_id": body.order_id, "released": released}


def expired_view(event: OrderExpired) -> dict[str, Any]:
    """An expired order as its tenant sees it: when, how many bids, and why providers did
    not bid (reason -> providers, in precedence order; `market.core.no_bids`)."""
    return {"order_id": event.order_id, "time_s": event.time_s, "bids": event.bids,
            "no_bids": as_dict(event.no_bids) if event.no_bids else None,
            "dominant": dominant(event.no_bids) if event.no_bids else None}


def topup_view(event: ActMinted, seq: int) -> dict[str, Any]:
    """A tenant's ACT top-up (BME), event `seq`: dollars spent on AKT at the spot price, the
    AKT burned and the ACT minted for it at the oracle's price (USD per AKT)."""
    return {"seq": seq, "time_s": event.time_s,
            "usd_spent": micro_to_usd(event.usd_spent_micro),
            "usd_spent_micro": event.usd_spent_micro,
            "akt_burned": event.akt_burned_uakt / MICRO,
            "akt_burned_uakt": event.akt_burned_uakt,
            "act_minted_usd": event.act_minted_uact / MICRO,
            "act_minted_uact": event.act_minted_uact,
            "price_usd": event.price_micro / MICRO, "price_micro": event.price_micro}


def payout_view(event: AktSettled, seq: int) -> dict[str, Any]:
    """A provider's payment in AKT (BME), event `seq`: the AKT, the price it was paid at (USD
    per AKT) and its USD value then; `direct` when it came out of a deposit the tenant paid
    in AKT."""
    usd = usd_value_micro(event.akt_out_uakt, event.price_micro)
    return {"seq": seq, "time_s": event.time_s, "lease_id": event.lease_id,
            "akt": event.akt_out_uakt / MICRO, "akt_uakt": event.akt_out_uakt,
            "price_usd": event.price_micro / MICRO, "price_micro": event.price_micro,
            "usd_value": micro_to_usd(usd), "usd_value_micro": usd, "direct": event.direct}


def _role(actor: Participant | None, role: str) -> Participant:
    if actor is None:
        raise CommandError("unauthorized", "this command needs a participant token")
    if actor.role != role:
        raise CommandError("forbidden", f"only a {role} may do this; you joined as "
                                        f"{actor.role}")
    return actor


_HANDLERS = {
    "join_tenant": Session._join_tenant,
    "join_provider": Session._join_provider,
    "post_order": Session._post_order,
    "cancel_order": Session._cancel_order,
    "bid": Session._bid,
    "accept": Session._accept,
    "close_lease": Session._close_lease,
    "hold_order": Session._hold_order,
    "release_order": Session._release_order,
}

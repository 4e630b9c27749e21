"""What a live market looks like from outside: snapshots as plain JSON-ready data.

Prices are USD per GPU-hour, money USD, times simulated seconds; nothing here changes the
market. Next to each price and amount is the engine's own integer (`max_price_micro_per_hour`,
`price_micro_per_hour`: micro-USD per hour for the whole order; `paid_micro`, `wallet_micro`:
micro-USD), which is canonical: the floats are derived from it (`market.units`) for display.

A market settled by Burn-Mint Equilibrium (`market.settlement = "bme"`) adds `bme` to both
views: the AKT price, the oracle, the mint status and the collateral ratio for everyone
(`series.bme_figures`); a tenant's own ACT balance, top-ups and orders paid in AKT; a
provider's own AKT earned, held, and what it was worth when paid and when sold. AKT and ACT
come as floats (AKT, ACT = USD) beside their integers (`_uakt`, `_uact`: millionths). Bids and
prices keep their USD view: one ACT is one USD. An AEP-23 market's views have no `bme`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from api.live.series import bme_figures, figures
from market.bme.protocol import MICRO, usd_value_micro
from market.core.records import OrderState
from market.units import micro_to_usd, per_gpu_hour_usd

if TYPE_CHECKING:
    from api.live.driver import LiveMarket
    from api.live.session import Participant, Session
    from market.builder import Market
    from market.core.bme_settlement import BmeSettlement
    from market.core.records import Lease, Order

#: The headline figures a live view shows (the full set is `gpumarket run`'s summary).
HEADLINE = ("orders_posted", "orders_filled", "orders_expired", "fill_rate", "leases_active",
            "tenant_spend_usd", "platform_revenue_usd", "allocative_efficiency")
#: ... and the welfare figures among them (`summary["welfare"]`, counted once per job).
WELFARE_HEADLINE = ("consumer_surplus_usd", "producer_surplus_usd", "platform_fees_usd",
                    "outside_surplus_usd", "deadweight_loss_usd", "potential_usd")


def order_view(market: Market, order: Order) -> dict[str, Any]:
    return {"order_id": order.id, "tenant": order.tenant, "job_id": order.job_id,
            "gpus": order.gpus, "gpu_models": list(order.requirement.gpu_models),
            "max_price_usd_per_gpu_hour": per_gpu_hour_usd(order.max_price, order.gpus),
            "max_price_micro_per_hour": int(order.max_price),
            "created_s": order.created_s, "interruptible": order.interruptible,
            "auto_select": order.auto, "held": market.held(order.id),
            "bids": market.bids(order.id)}


def lease_view(market: Market, lease: Lease) -> dict[str, Any]:
    return {"lease_id": lease.id, "order_id": lease.order.id, "tenant": lease.order.tenant,
            "provider": lease.provider, "gpu_model": market.catalog.ids[lease.model],
            "gpus": lease.gpus,
            "price_usd_per_gpu_hour": per_gpu_hour_usd(lease.price, lease.gpus),
            "price_micro_per_hour": int(lease.price),
            "started_s": lease.start_s, "running": lease.running,
            "interruptible": lease.interruptible,
            "paid_usd": micro_to_usd(lease.paid), "paid_micro": int(lease.paid)}


def open_orders(market: Market, tenant: int | None = None) -> list[dict[str, Any]]:
    return [order_view(market, order) for order in market.orders.values()
            if order.state is OrderState.OPEN and (tenant is None or order.tenant == tenant)]


def active_leases(market: Market, tenant: int | None = None,
                  provider: int | None = None) -> list[dict[str, Any]]:
    return [lease_view(market, lease) for lease in market.leases.values()
            if (tenant is None or lease.order.tenant == tenant)
            and (provider is None or lease.provider == provider)]


def leaderboard(market: Market, top: int = 10) -> list[dict[str, Any]]:
    """The providers that earned most so far (payouts net of the platform's fee)."""
    earned = market.metrics.revenue_by_provider()
    pool = market.pool
    rows = []
    for provider in np.argsort(-earned, kind="stable")[:top].tolist():
        if earned[provider] <= 0:
            break
        rows.append({"provider": provider, "name": pool.names[provider],
                     "population": pool.population_names[int(pool.population[provider])],
                     "gpu_model": market.catalog.ids[int(pool.model[provider])],
                     "gpus": int(pool.capacity[provider, 0]),
                     "earned_usd": float(earned[provider]),
                     "leases": int(market.leases_ended(provider))})
    return rows


def bme_rules(market: Market) -> dict[str, Any]:
    """The BME parameters a person needs to read the figures: the oracle's window, the
    breakers' thresholds, the mint spread and the tenants' runway."""
    rules = market.rules.bme
    return {"twap_window_s": rules.twap_window_s, "cr_warning": rules.cr_warning,
            "cr_halt": rules.cr_halt, "mint_spread_bps": rules.mint_spread_bps,
            "runway_days": rules.runway_days, "min_topup_days": rules.min_topup_days}


def snapshot(live: LiveMarket) -> dict[str, Any]:
    market = live.session.market
    session = live.session
    rules = market.rules
    summary = market.metrics.summary()
    bme = {} if rules.settlement != "bme" else \
        {"bme": {**bme_figures(market.settlement, market.now), **bme_rules(market)}}
    return {
        **live.summary(),
        "mechanism": rules.mechanism, "take_rate": rules.fee_rate, "settlement": rules.settlement,
        "bids_net_of_fee": rules.bids_net_of_fee,
        "bidding_window_s": rules.bidding_window_s, "bid_timeout_s": rules.bid_timeout_s,
        "order_max_bids": rules.order_max_bids,
        "gpu_models": [{"id": m.id, "name": m.name, "vram_gib": m.memory_gib,
                        "list_usd_per_gpu_hour": m.list_usd_per_gpu_hour}
                       for m in market.catalog],
        "open_orders": open_orders(market),
        "active_leases": active_leases(market),
        "recent_leases": list(session.recent_leases),
        "recent_closes": list(session.recent_closes),
        "prices": {model: [list(point) for point in series]
                   for model, series in session.prices.items()},
        "metrics": {**{key: summary[key] for key in HEADLINE},
                    **{key: summary["welfare"][key] for key in WELFARE_HEADLINE},
                    **figures(market)},
        "series": session.series.recent(market.now),
        "captions": session.narrator.captions[-20:],
        "holds": live.hold_countdowns(), "hold_s": live.limits.hold_s,
        "leaderboard": leaderboard(market),
        "participants": [p.to_dict() for p in session.participants],
        "providers": market.pool.n,
        "provider_names": list(market.pool.names),  # by provider id: events carry ids
        **bme,
    }


def me(live: LiveMarket, participant: Participant) -> dict[str, Any]:
    """A participant's own view: wallet, facts, orders and leases."""
    market = live.session.market
    pool = market.pool
    facts = None
    if participant.provider is not None:
        p = participant.provider
        account = int(pool.account[p])
        facts = {"gpu_model": market.catalog.ids[int(pool.model[p])],
                 "gpus": int(pool.capacity[p, 0]), "free_gpus": max(int(pool.free[p, 0]), 0),
                 "cost_full_usd_per_gpu_hour": float(pool.cost_full_usd_per_gpu_hour[p]),
                 "cost_marginal_usd_per_gpu_hour":
                     float(pool.cost_marginal_usd_per_gpu_hour[p]),
                 "cost_basis_usd_per_gpu_hour": float(pool.cost_basis_usd_per_gpu_hour[p])}
    else:
        account = market.tenant_accounts[participant.tenant]
    wallet_micro = int(market.ledger.balance(account))
    bme = {} if market.rules.settlement != "bme" else \
        {"bme": bme_mine(live.session, participant, account)}
    return {**participant.to_dict(),
            "wallet_usd": micro_to_usd(wallet_micro), "wallet_micro": wallet_micro,
            "provider_facts": facts,
            "open_orders": [] if participant.tenant is None
            else open_orders(market, participant.tenant),
            "active_leases": active_leases(market, participant.tenant, participant.provider),
            # A tenant's latest orders that closed without a lease, newest first, each with
            # why providers did not bid (`market.core.no_bids`).
            "expired_orders": [] if participant.tenant is None
            else list(reversed(live.session.expired.get(participant.tenant, ()))),
            **bme}


def bme_mine(session: Session, participant: Participant, account: int) -> dict[str, Any]:
    """A participant's `bme`: the market's figures, and its own money in ACT or AKT.

    A tenant: `act_balance_usd` (its ACT outside escrow), `topups` (newest first: when, USD
    spent, AKT burned, ACT minted, the oracle's price), their count and spend in total, and
    `orders_paid_in_akt` (newest first: orders whose deposit it paid in AKT while mints were
    halted: the AKT and the dollars it cost, and the AKT its provider got out of it so far,
    with its USD value when paid). A provider: `akt_earned`, `akt_held` (and
    `akt_held_value_usd`, its worth at the spot price), `usd_at_settlement` (what its AKT was
    worth when paid), `usd_at_sale` (what the AKT it sold fetched) and `payouts` (newest
    first). Each top-up and payout carries its event's `seq`."""
    market = session.market
    settlement: BmeSettlement = market.settlement
    now = market.now
    view = {**bme_figures(settlement, now), **bme_rules(market)}
    if participant.tenant is not None:
        tenant = participant.tenant
        act = settlement.act_balance(account)
        count, spent = session.topup_totals.get(tenant, (0, 0))
        view.update({
            "act_balance_usd": act / MICRO, "act_balance_uact": act,
            "topups": list(reversed(session.topups.get(tenant, ()))),
            "topups_total": count,
            "topup_spend_usd": micro_to_usd(spent), "topup_spend_micro": spent,
            "orders_paid_in_akt": [dict(row) for row in
                                   reversed(session.akt_orders.get(tenant, {}).values())]})
        return view
    provider = participant.provider
    earned = settlement.earned_uakt.get(provider, 0)
    held = settlement.akt_balance(account)
    held_usd = usd_value_micro(held, view["akt_spot_micro"])
    at_settlement = settlement.usd_at_settlement_micro.get(provider, 0)
    at_sale = settlement.usd_at_sale_micro.get(provider, 0)
    view.update({
        "akt_earned": earned / MICRO, "akt_earned_uakt": earned,
        "akt_held": held / MICRO, "akt_held_uakt": held,
        "akt_held_value_usd": micro_to_usd(held_usd), "akt_held_value_micro": held_usd,
        "usd_at_settlement": micro_to_usd(at_settlement),
        "usd_at_settlement_micro": at_settlement,
        "usd_at_sale": micro_to_usd(at_sale), "usd_at_sale_micro": at_sale,
        "payouts": list(reversed(session.payouts.get(provider, ())))})
    return view

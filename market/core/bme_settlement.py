"""Escrow under Burn-Mint Equilibrium (Akash AEP-76): tenants prepay in ACT, providers are
paid in AKT.

What changes against `Settlement` (AEP-23's USD escrow and take rate), all on the protocol's
books (`market.bme.protocol`):
- **Deposits are ACT.** A tenant whose ACT does not cover an order's deposit tops up: it buys
  AKT with dollars at the spot price (the console's card path), burns it at the oracle's
  TWAP and gets the ACT, less the mint spread. One top-up covers the deposit and refills the
  tenant's runway (`runway_days` of its running leases' run-rate) in the same batch; between
  orders, a tenant whose ACT falls below `recharge_below` of its runway tops up again.
- **Settlement pays AKT.** The ACT a lease owes is burned and its provider gets
  floor(ACT · (1 − settle spread) / P_settle) AKT, from the vault first, minting only the
  shortfall. While the oracle is unhealthy, payments wait (their ACT held apart) for the next
  healthy check: slowed, never lost.
- **Circuit breakers.** Below `cr_warning` every mint must cover `min_topup_days` of the
  tenant's run-rate; below `cr_halt` (or with the oracle unhealthy) no ACT is minted, and an
  order whose deposit the tenant's ACT does not cover is paid for in AKT directly: the tenant
  buys the AKT, it sits in escrow, and the provider is paid from it at the oracle's price
  (the spot price while the oracle is down), with no burn and no mint.
- **Providers sell.** Each provider sells the AKT it earned at the spot price every
  `cashout_interval_s` and at the run's end: its revenue in USD at settlement (AKT × P_settle)
  and at the sale differ by the AKT price's moves in between.

Lease prices, bids and the `PaymentSettled` events keep their USD view (one ACT is one USD), so
every USD figure of the market means what it meant under AEP-23, less the take rate.
Bid deposits stay in USD.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import simpy

from market.bme.price import GbmPath, Oracle, PricePath, read_price_csv
from market.bme.protocol import (
    HALT_CR,
    HALT_ORACLE,
    HEALTHY,
    MICRO,
    STATUSES,
    WARNING,
    Protocol,
    price_micro,
    usd_value_micro,
)
from market.core.ledger import Ledger
from market.core.records import Lease, Order
from market.core.settlement import Settlement
from market.events import ActMinted, AktSettled, Event, MintStatusChanged, PaymentSettled
from market.scenario import BmeRules
from market.units import SECONDS_PER_DAY, owed_micro

_HALTED = (HALT_CR, HALT_ORACLE)


def price_path(rules: BmeRules, rng: np.random.Generator) -> PricePath:
    """The scenario's AKT price path: drawn (gbm, from `rng`) or replayed (csv)."""
    price = rules.akt_price
    if price.model == "csv":
        assert price.path is not None  # the scenario checked it
        return read_price_csv(price.path)
    return GbmPath(price.start_usd, price.drift_per_year, price.volatility_per_year,
                   price.step_s, rng)


class BmeSettlement(Settlement):
    """`Settlement` with ACT escrow, AKT payouts, top-ups, breakers and providers' sales.

    `active_leases()` gives the running leases (their tenants' run-rates size the runway).
    `summary()` and `series` report the run (`RunResult`'s `bme` section and table)."""

    def __init__(self, ledger: Ledger, bid_deposit_usd: float, rules: BmeRules,
                 emit: Callable[[Event], None], env: simpy.Environment,
                 rng: np.random.Generator, active_leases: Callable[[], Iterable[Lease]],
                 tenant_accounts: list[int]) -> None:
        super().__init__(ledger, bid_deposit_usd, 0.0, emit)
        self.rules = rules
        self._env = env
        self._active_leases = active_leases
        self._tenant_accounts = tenant_accounts
        self.protocol = bme = Protocol(round(rules.mint_spread_bps * 100),
                                       round(rules.settle_spread_bps * 100))
        self.oracle = Oracle(price_path(rules, rng), rules.twap_window_s,
                             rules.oracle_max_staleness_s, rules.oracle_max_deviation)
        self._read_s = -math.inf
        self._reading = (0, 0, False)
        self.act_escrow = bme.act.open("escrow")
        self.act_waiting = bme.act.open("awaiting_oracle")  # owed, to be paid when it is up
        self.akt_escrow = bme.akt.open("escrow")           # deposits paid in AKT directly
        self._act: dict[int, int] = {}   # a participant's USD account -> its ACT account
        self._akt: dict[int, int] = {}   # ... -> its AKT account
        self._akt_held: dict[int, int] = {}  # order id -> uAKT it holds in escrow
        self._waiting: list[tuple[int, int, int, int]] = []  # lease, provider, account, uACT
        # Tenant id -> its running leases' run-rate at the last check, micro-USD per second.
        self._rates: dict[int, float] = {}
        self._runway_s = rules.runway_days * SECONDS_PER_DAY
        self._min_topup_s = rules.min_topup_days * SECONDS_PER_DAY
        # Per provider id: AKT earned, its USD value when paid and when sold; USD accounts.
        self.earned_uakt: dict[int, int] = {}
        self.usd_at_settlement_micro: dict[int, int] = {}
        self.usd_at_sale_micro: dict[int, int] = {}
        self._provider_account: dict[int, int] = {}
        # Top-ups, orders paid in AKT, and the uAKT those orders' tenants could not pay.
        self.counts = {"topups": 0, "direct_orders": 0, "direct_short_uakt": 0}
        self.topup_usd_micro = 0
        self.direct_paid_micro = 0  # micro-USD paid out of deposits made in AKT
        self.status = HEALTHY
        self._status_since_s = 0.0
        self.status_s = dict.fromkeys(STATUSES, 0.0)
        self.activations = dict.fromkeys(STATUSES[1:], 0)
        self.series: list[dict[str, Any]] = []
        env.process(self._checks(rules.check_interval_s))
        env.process(self._sales(rules.cashout_interval_s))

    # ------------------------------------------------------------------ prices

    def _read(self, now_s: float) -> tuple[int, int, bool]:
        """(TWAP, spot price, healthy) now, prices in micro-USD per AKT. Read once per
        simulated instant: an order's checks, top-up and settlement all ask at the same
        time, and the path's prices at a time never change."""
        if now_s != self._read_s:
            twap, spot, healthy = self.oracle.read(now_s)
            self._reading = (price_micro(twap), price_micro(spot), healthy)
            self._read_s = now_s
        return self._reading

    def spot_micro(self, now_s: float) -> int:
        """AKT's market price now, micro-USD per AKT."""
        return self._read(now_s)[1]

    def oracle_micro(self, now_s: float) -> tuple[int, bool]:
        """The oracle's TWAP now (micro-USD per AKT) and whether it is healthy."""
        twap, _, healthy = self._read(now_s)
        return twap, healthy

    def mint_status(self, now_s: float) -> str:
        """The mint status now; a change is counted and announced."""
        price, healthy = self.oracle_micro(now_s)
        rules = self.rules
        status = self.protocol.status(price, healthy, rules.cr_warning, rules.cr_halt)
        if status != self.status:
            self.status_s[self.status] += now_s - self._status_since_s
            self._status_since_s = now_s
            if status != HEALTHY:
                self.activations[status] += 1
            ratio = self.protocol.collateral_ratio(price)
            self._emit(MintStatusChanged(now_s, status, self.status,
                                         ratio if math.isfinite(ratio) else None))
            self.status = status
        return status

    # ------------------------------------------------------------------ wallets

    def open_wallet(self, name: str, wallet_usd: float) -> int:
        account = super().open_wallet(name, wallet_usd)
        self._act[account] = self.protocol.act.open(name)
        self._akt[account] = self.protocol.akt.open(name)
        return account

    def act_balance(self, account: int) -> int:
        """uACT the participant holds (outside escrow)."""
        return self.protocol.act.balance(self._act[account])

    def akt_balance(self, account: int) -> int:
        """uAKT the participant holds."""
        return self.protocol.akt.balance(self._akt[account])

    def spendable_micro(self, account: int) -> int:
        """Its dollars and its ACT (one ACT is one USD)."""
        return self.ledger.balance(account) + self.act_balance(account)

    def _usd_for_act(self, act_uact: int, now_s: float) -> int:
        """Dollars a top-up of `act_uact` costs now (AKT bought at spot, burned at the TWAP)."""
        akt = self.protocol.akt_to_burn(act_uact, self.oracle_micro(now_s)[0])
        return -(-akt * self.spot_micro(now_s) // MICRO)

    def _direct_akt(self, deposit: int, now_s: float) -> int:
        """uAKT that buys a deposit of `deposit` micro-USD at the spot price."""
        return -(-deposit * MICRO // self.spot_micro(now_s))

    def _deposit_usd(self, account: int, deposit: int, now_s: float) -> int:
        """Dollars the tenant must spend to lock `deposit`: none when its ACT covers it."""
        shortfall = deposit - self.act_balance(account)
        if shortfall <= 0:
            return 0
        if self.mint_status(now_s) in _HALTED:
            return -(-self._direct_akt(deposit, now_s) * self.spot_micro(now_s) // MICRO)
        return self._usd_for_act(shortfall, now_s)

    def can_lock(self, account: int, deposit: int) -> bool:
        return self.ledger.balance(account) >= self._deposit_usd(account, deposit,
                                                                 self._env.now)

    # ------------------------------------------------------------------ AKT and ACT

    def _buy_akt(self, account: int, akt_uakt: int, now_s: float) -> int:
        """`account` buys `akt_uakt` on the open market at the spot price; returns the
        dollars it paid."""
        usd = -(-akt_uakt * self.spot_micro(now_s) // MICRO)
        akt = self.protocol.akt
        self.ledger.transfer(account, self.ledger.external, usd, "akt_purchase")
        akt.transfer(akt.external, self._akt[account], akt_uakt, "akt_purchase")
        return usd

    def _sell_akt(self, account: int, akt_uakt: int, now_s: float) -> int:
        """`account` sells `akt_uakt` at the spot price; returns the dollars it got."""
        usd = usd_value_micro(akt_uakt, self.spot_micro(now_s))
        akt = self.protocol.akt
        akt.transfer(self._akt[account], akt.external, akt_uakt, "akt_sale")
        self.ledger.transfer(self.ledger.external, account, usd, "akt_sale")
        return usd

    def _top_up(self, tenant: int, act_uact: int, now_s: float) -> None:
        """Mint about `act_uact` for `tenant`: buy the AKT, burn it, take the ACT."""
        account = self._tenant_accounts[tenant]
        price = self.oracle_micro(now_s)[0]
        akt = self.protocol.akt_to_burn(act_uact, price)
        usd = self._buy_akt(account, akt, now_s)
        minted = self.protocol.mint_act(self._akt[account], self._act[account], akt, price)
        self.counts["topups"] += 1
        self.topup_usd_micro += usd
        self._emit(ActMinted(now_s, tenant, usd, akt, minted, price))

    def _mint_size(self, tenant: int, least: int, wanted: int, status: str) -> int:
        """uACT to mint for `tenant`, who needs `least` now and wants `wanted` (a batch:
        its runway too). While mints are slow (warning), a mint covers at least
        `min_topup_days` of its run-rate. Down to `least` when its dollars fall short."""
        amount = wanted
        if status == WARNING:
            amount = max(amount, round(self._rates.get(tenant, 0.0) * self._min_topup_s))
        if amount > least and self._usd_for_act(amount, self._env.now) \
                > self.ledger.balance(self._tenant_accounts[tenant]):
            amount = least
        return amount

    # ------------------------------------------------------------------ tenants' escrow

    def lock_escrow(self, order: Order, account: int, deposit_micro: int) -> None:
        """Lock `deposit_micro` uACT of the tenant's for `order`, topping up first if its ACT
        falls short; with mints halted, the deposit is paid in AKT instead."""
        now = self._env.now
        act = self.protocol.act
        shortfall = deposit_micro - self.act_balance(account)
        if shortfall > 0:
            status = self.mint_status(now)
            if status in _HALTED:
                self._lock_akt(order, account, deposit_micro, now)
                return
            # One batch: the deposit, and the tenant's runway refilled.
            runway = round(self._rates.get(order.tenant, 0.0) * self._runway_s)
            self._top_up(order.tenant,
                         self._mint_size(order.tenant, shortfall, shortfall + runway, status),
                         now)
        act.transfer(self._act[account], self.act_escrow, deposit_micro, "escrow_deposit")
        order.escrow = deposit_micro

    def _lock_akt(self, order: Order, account: int, deposit: int, now_s: float) -> None:
        held = self._direct_akt(deposit, now_s)
        self._buy_akt(account, held, now_s)
        akt = self.protocol.akt
        akt.transfer(self._akt[account], self.akt_escrow, held, "escrow_deposit")
        self._akt_held[order.id] = held
        order.escrow = deposit
        self.counts["direct_orders"] += 1

    def refund_escrow(self, order: Order, account: int) -> None:
        """What is left goes back: ACT to the tenant's balance (its runway), AKT sold."""
        held = self._akt_held.pop(order.id, None)
        if held is not None:
            akt = self.protocol.akt
            akt.transfer(self.akt_escrow, self._akt[account], held, "escrow_refund")
            self._sell_akt(account, held, self._env.now)
        elif order.escrow:
            self.protocol.act.transfer(self.act_escrow, self._act[account], order.escrow,
                                       "escrow_refund")
        order.escrow = 0

    # ------------------------------------------------------------------ settlement

    def settle(self, lease: Lease, provider_account: int, now_s: float) -> None:
        """Take what the lease owes now out of escrow (its USD view: `PaymentSettled`) and
        pay the provider in AKT, now or, with the oracle down, at its next healthy check."""
        order = lease.order
        owed = owed_micro(lease.price, lease.ran_s(now_s)) - lease.paid
        amount = min(owed, order.escrow)
        if amount <= 0:
            return
        order.escrow -= amount
        lease.paid += amount
        self._emit(PaymentSettled(now_s, lease.id, lease.provider, amount, 0))
        self._provider_account[lease.provider] = provider_account
        if order.id in self._akt_held:
            self.direct_paid_micro += amount
            self._pay_direct(order, lease, provider_account, amount, now_s)
            return
        self.protocol.act.transfer(self.act_escrow, self.act_waiting, amount, "lease_payment")
        self._waiting.append((lease.id, lease.provider, provider_account, amount))
        self._pay_waiting(now_s)

    def _pay_waiting(self, now_s: float) -> None:
        """Burn the ACT owed and pay the providers in AKT, if the oracle can price it."""
        if not self._waiting:
            return
        price, healthy = self.oracle_micro(now_s)
        if not healthy:
            return
        for lease_id, provider, account, act in self._waiting:
            payout = self.protocol.settle(self.act_waiting, self._akt[account], act, price)
            self._earned(provider, payout.akt_out_uakt, price)
            self._emit(AktSettled(now_s, lease_id, provider, act, payout.akt_out_uakt, price,
                                  payout.vault_paid_uakt, payout.minted_uakt))
        self._waiting.clear()

    def _pay_direct(self, order: Order, lease: Lease, provider_account: int, amount: int,
                    now_s: float) -> None:
        """The tenant paid its deposit in AKT: the provider gets `amount` micro-USD of it at
        the oracle's price (the spot price while the oracle is down); the tenant buys more
        if the price fell since, as far as its dollars go."""
        price, healthy = self.oracle_micro(now_s)
        if not healthy:
            price = self.spot_micro(now_s)
        akt = amount * MICRO // price
        held = self._akt_held[order.id]
        tenant_account = self._tenant_accounts[order.tenant]
        missing = akt - held
        if missing > 0:
            affordable = self.ledger.balance(tenant_account) * MICRO // self.spot_micro(now_s)
            buy = min(missing, affordable)
            if buy > 0:
                self._buy_akt(tenant_account, buy, now_s)
                self.protocol.akt.transfer(self._akt[tenant_account], self.akt_escrow, buy,
                                           "escrow_deposit")
                held += buy
            self.counts["direct_short_uakt"] += max(akt - held, 0)
        paid = min(akt, held)
        self.protocol.akt.transfer(self.akt_escrow, self._akt[provider_account], paid,
                                   "direct_payment")
        self._akt_held[order.id] = held - paid
        self._earned(lease.provider, paid, price)
        self._emit(AktSettled(now_s, lease.id, lease.provider, 0, paid, price, 0, 0, True))

    def _earned(self, provider: int, akt_uakt: int, price: int) -> None:
        self.earned_uakt[provider] = self.earned_uakt.get(provider, 0) + akt_uakt
        self.usd_at_settlement_micro[provider] = \
            self.usd_at_settlement_micro.get(provider, 0) + usd_value_micro(akt_uakt, price)

    def paid_micro(self) -> tuple[int, int]:
        """(fees, paid out of escrow so far), micro-USD: no fees under BME."""
        return 0, self.protocol.act.flows.get("lease_payment", 0) + self.direct_paid_micro

    # ------------------------------------------------------------------ periodic

    def _checks(self, interval_s: float):
        """Every `interval_s`: the mint status, waiting payments, tenants' runways, a row
        of the series."""
        env = self._env
        while True:
            self.check(env.now)
            yield env.timeout(interval_s)

    def check(self, now_s: float) -> None:
        status = self.mint_status(now_s)
        self._pay_waiting(now_s)
        rates: dict[int, float] = {}
        tenants = self._tenant_accounts
        for lease in self._active_leases():
            if lease.running:
                tenant = lease.order.tenant
                rates[tenant] = rates.get(tenant, 0.0) + lease.price / 3600.0
        self._rates = rates
        if status not in _HALTED:
            for tenant, rate in sorted(rates.items()):
                account = tenants[tenant]
                target = round(rate * self._runway_s)
                held = self.act_balance(account)
                if held < self.rules.recharge_below * target:
                    amount = self._mint_size(tenant, target - held, target - held, status)
                    if self._usd_for_act(amount, now_s) <= self.ledger.balance(account):
                        self._top_up(tenant, amount, now_s)
        self._sample(now_s)

    def _sample(self, now_s: float) -> None:
        price, healthy = self.oracle_micro(now_s)
        protocol = self.protocol
        ratio = protocol.collateral_ratio(price)
        self.series.append({
            "time_s": now_s, "akt_spot_usd": self.oracle.path.spot(now_s),
            "akt_twap_usd": price / MICRO, "oracle_healthy": healthy,
            "collateral_ratio": ratio if math.isfinite(ratio) else None,
            "mint_status": self.status,
            "outstanding_act_usd": protocol.outstanding_act_uact() / MICRO,
            "vault_akt": protocol.vault_uakt() / MICRO,
            "akt_burned": protocol.burned_uakt() / MICRO,
            "akt_minted": protocol.minted_uakt() / MICRO,
        })

    def _sales(self, interval_s: float):
        env = self._env
        while True:
            yield env.timeout(interval_s)
            self.sell_earnings(env.now)

    def sell_earnings(self, now_s: float) -> None:
        """Every provider paid in AKT sells what it holds at the spot price."""
        for provider, account in sorted(self._provider_account.items()):
            held = self.akt_balance(account)
            if held:
                usd = self._sell_akt(account, held, now_s)
                self.usd_at_sale_micro[provider] = self.usd_at_sale_micro.get(provider, 0) + usd

    def close_books(self) -> None:
        """The run ends: waiting payments are made if the oracle allows, the last row is
        sampled, providers sell what they hold."""
        now = self._env.now
        self.mint_status(now)
        self._pay_waiting(now)
        self.status_s[self.status] += now - self._status_since_s
        self._status_since_s = now
        if not self.series or self.series[-1]["time_s"] != now:
            self._sample(now)
        self.sell_earnings(now)

    # ------------------------------------------------------------------ audit and report

    def _escrow_matches(self, orders: Iterable[Order]) -> tuple[bool, int]:
        act_expected = deposits_open = 0
        for order in orders:
            if order.id not in self._akt_held:
                act_expected += order.escrow
            deposits_open += int(order.bid_open.sum())
        protocol = self.protocol
        matches = (self.ledger.balance(self.escrow) == 0
                   and protocol.act.balance(self.act_escrow) == act_expected
                   and protocol.akt.balance(self.akt_escrow) == sum(self._akt_held.values())
                   and protocol.act.balance(self.act_waiting)
                   == sum(item[3] for item in self._waiting))
        return matches, deposits_open

    def audit(self, orders: Iterable[Order], active_leases: int) -> dict[str, Any]:
        result = super().audit(orders, active_leases)
        books = self.protocol.audit()
        result["money_conserved"] = bool(result["money_conserved"] and books["uact_conserved"]
                                         and books["uakt_conserved"])
        result["escrow_held_micro"] = self.protocol.act.balance(self.act_escrow)
        result["money_by_denomination"] = books
        return result

    def summary(self) -> dict[str, Any]:
        """The run under BME: the AKT price, the mint status, the supply, the providers."""
        protocol = self.protocol
        spots = [row["akt_spot_usd"] for row in self.series]
        ratios = [row["collateral_ratio"] for row in self.series
                  if row["collateral_ratio"] is not None]
        elapsed = sum(self.status_s.values())
        settled = sum(self.usd_at_settlement_micro.values())
        sold = sum(self.usd_at_sale_micro.values())
        last = self.series[-1] if self.series else {}
        return {
            "akt_price_usd": {"start": spots[0] if spots else None,
                              "end": spots[-1] if spots else None,
                              "min": min(spots, default=None), "max": max(spots, default=None)},
            "mint_status_share": {status: (seconds / elapsed if elapsed else 0.0)
                                  for status, seconds in self.status_s.items()},
            "breaker_activations": dict(self.activations),
            "collateral_ratio": {"end": last.get("collateral_ratio"),
                                 "min": min(ratios, default=None)},
            "outstanding_act_usd": protocol.outstanding_act_uact() / MICRO,
            "vault_akt": protocol.vault_uakt() / MICRO,
            "akt_burned": protocol.burned_uakt() / MICRO,
            "akt_paid_from_vault": protocol.akt.flows.get("vault_paid", 0) / MICRO,
            "akt_minted": protocol.minted_uakt() / MICRO,
            "net_supply_change_akt": protocol.net_supply_change_uakt() / MICRO,
            "act_minted_usd": protocol.act.flows.get("mint", 0) / MICRO,
            "act_burned_usd": protocol.act.flows.get("settle_burn", 0) / MICRO,
            "topups": self.counts["topups"],
            "topup_spend_usd": self.topup_usd_micro / MICRO,
            "orders_paid_in_akt": self.counts["direct_orders"],
            # What those orders owed providers that their tenants' dollars could not buy.
            "akt_unpaid_by_tenants": self.counts["direct_short_uakt"] / MICRO,
            "payments_awaiting_oracle_usd": sum(item[3] for item in self._waiting) / MICRO,
            "providers": {
                "akt_earned": sum(self.earned_uakt.values()) / MICRO,
                "usd_at_settlement": settled / MICRO,
                "usd_at_sale": sold / MICRO,
                "price_gain_usd": (sold - settled) / MICRO,
                # What a dollar earned fetched when sold: its spread over seeds is the AKT
                # price risk providers carry between settlement and sale.
                "sale_to_settlement": sold / settled if settled else None,
            },
        }

    def providers_rows(self) -> list[dict[str, Any]]:
        """One row per provider paid in AKT: earned, its USD value when paid and when sold."""
        return [{"provider": provider, "akt_earned": self.earned_uakt[provider] / MICRO,
                 "usd_at_settlement": self.usd_at_settlement_micro.get(provider, 0) / MICRO,
                 "usd_at_sale": self.usd_at_sale_micro.get(provider, 0) / MICRO}
                for provider in sorted(self.earned_uakt)]

"""The BME protocol's books: ACT and AKT on integer ledgers, the vault, mints and burns.

Two ledgers, one per denomination, each double-entry (`market.core.ledger.Ledger`):
- **uact** (micro-ACT, one ACT is one USD of compute): its `external` account is ACT's
  issuer, so minus its balance is the ACT outstanding (minted and not yet burned);
- **uakt** (micro-AKT): its `external` account is the open AKT market (tenants buy there,
  providers sell there); the `vault` holds the AKT burned at top-ups (its remint credits),
  and the `mint` account is where new AKT comes from, the only other account allowed below
  zero: minus its balance is the AKT minted.

So AKT's supply changes only by recorded burns (into the vault) and mints: the net change is
minted − vault (what was burned and not paid out again). Amounts are integers; prices are
integer micro-USD per AKT; every division rounds down, in the protocol's favour.

A top-up burns B uAKT and mints floor(B · P · (1 − mint spread)) uACT at the oracle price P; a
settlement burns the ACT owed and pays floor(ACT · (1 − settle spread) / P) uAKT, from the
vault first and minting only the shortfall. The collateral ratio is
CR = vault AKT × P / outstanding ACT; the mint status follows it and the oracle's health.
"""

from __future__ import annotations

from dataclasses import dataclass

from market.core.ledger import InsufficientFunds, Ledger

MICRO = 1_000_000
PPM = 1_000_000

#: Mint statuses, as Akash's chain names them: mints run, slow (each must cover
#: `min_topup_days`), or stop for the collateral ratio or an unhealthy oracle.
HEALTHY, WARNING, HALT_CR, HALT_ORACLE = "healthy", "warning", "halt_cr", "halt_oracle"
STATUSES = (HEALTHY, WARNING, HALT_CR, HALT_ORACLE)


class SupplyLedger(Ledger):
    """A ledger with one more account that may go below zero: `mint`, the source of new
    tokens (the `external` one is the open market)."""

    __slots__ = ("mint",)

    def __init__(self) -> None:
        super().__init__()
        self.mint = self.open("mint")

    def transfer(self, source: int, sink: int, amount_micro: int, reason: str) -> None:
        if source == self.mint:
            if amount_micro < 0:
                raise ValueError(f"transfer amount must be >= 0, got {amount_micro}")
            self._balances[source] -= amount_micro
            self._balances[sink] += amount_micro
            self.flows[reason] += amount_micro
            return
        super().transfer(source, sink, amount_micro, reason)

    def overdrawn(self) -> list[str]:
        return [name for name in super().overdrawn() if name != "mint"]


def usd_value_micro(akt_uakt: int, price_micro: int) -> int:
    """What `akt_uakt` is worth at `price_micro` micro-USD per AKT, micro-USD (rounded
    down)."""
    return akt_uakt * price_micro // MICRO


def price_micro(price_usd: float) -> int:
    """A price in USD per AKT as integer micro-USD per AKT (at least 1)."""
    return max(1, round(price_usd * MICRO))


@dataclass(frozen=True, slots=True)
class Payout:
    """One settlement: ACT burned, AKT paid at `price_micro`, from the vault and minted."""

    act_burn_uact: int
    akt_out_uakt: int
    price_micro: int
    vault_paid_uakt: int
    minted_uakt: int


class Protocol:
    """The vault and the two ledgers; `mint_act` and `settle` are AEP-76's two conversions.

    The AEP's worked example: a 1,000 USD top-up at 1.14 burns 877.192982 AKT; settling the
    1,000 ACT at 1.50 pays 666.666666 AKT from the vault (net supply −210.526316).

    >>> bme = Protocol(mint_spread_ppm=0, settle_spread_ppm=0)
    >>> tenant, provider = bme.act.open("tenant"), bme.akt.open("provider")
    >>> payer = bme.akt.open("payer")
    >>> bme.akt.transfer(bme.akt.external, payer, 877_192_982, "akt_purchase")
    >>> bme.mint_act(payer, tenant, 877_192_982, 1_140_000)
    999999999
    >>> bme.settle(tenant, provider, 999_999_999, 1_500_000).akt_out_uakt
    666666666
    >>> bme.net_supply_change_uakt()
    -210526316
    """

    def __init__(self, mint_spread_ppm: int, settle_spread_ppm: int) -> None:
        self.act = Ledger()
        self.akt = SupplyLedger()
        self.vault = self.akt.open("vault")
        self._mint_keep_ppm = PPM - mint_spread_ppm
        self._settle_keep_ppm = PPM - settle_spread_ppm

    # ------------------------------------------------------------------ conversions

    def act_for(self, akt_uakt: int, price: int) -> int:
        """uACT minted for burning `akt_uakt` at `price` (micro-USD per AKT)."""
        return akt_uakt * price * self._mint_keep_ppm // (MICRO * PPM)

    def akt_to_burn(self, act_uact: int, price: int) -> int:
        """The fewest uAKT whose burn at `price` mints at least `act_uact`."""
        denominator = price * self._mint_keep_ppm
        return -(-act_uact * MICRO * PPM // denominator) if denominator else 0

    def akt_for(self, act_uact: int, price: int) -> int:
        """uAKT paid for settling `act_uact` at `price`."""
        return act_uact * self._settle_keep_ppm // price

    def mint_act(self, akt_account: int, act_account: int, akt_uakt: int, price: int) -> int:
        """Burn `akt_uakt` of `akt_account`'s AKT into the vault and mint ACT for it to
        `act_account`; returns the uACT minted. All or nothing."""
        if self.akt.balance(akt_account) < akt_uakt:
            raise InsufficientFunds(f"{self.akt.name(akt_account)} holds "
                                    f"{self.akt.balance(akt_account)} uakt, the burn needs "
                                    f"{akt_uakt}")
        act = self.act_for(akt_uakt, price)
        self.akt.transfer(akt_account, self.vault, akt_uakt, "burn")
        self.act.transfer(self.act.external, act_account, act, "mint")
        return act

    def settle(self, act_account: int, akt_account: int, act_uact: int, price: int) -> Payout:
        """Burn `act_uact` of `act_account`'s ACT and pay `akt_account` its worth in AKT at
        `price`: from the vault's remint credits first, minting only the shortfall."""
        self.act.transfer(act_account, self.act.external, act_uact, "settle_burn")
        akt = self.akt_for(act_uact, price)
        from_vault = min(akt, self.akt.balance(self.vault))
        minted = akt - from_vault
        self.akt.transfer(self.vault, akt_account, from_vault, "vault_paid")
        self.akt.transfer(self.akt.mint, akt_account, minted, "mint")
        return Payout(act_uact, akt, price, from_vault, minted)

    # ------------------------------------------------------------------ state

    def outstanding_act_uact(self) -> int:
        """ACT minted and not yet burned, uACT."""
        return -self.act.balance(self.act.external)

    def vault_uakt(self) -> int:
        return self.akt.balance(self.vault)

    def collateral_ratio(self, price: int) -> float:
        """Vault AKT × price / outstanding ACT (infinite while no ACT is outstanding)."""
        outstanding = self.outstanding_act_uact()
        if outstanding <= 0:
            return float("inf")
        return usd_value_micro(self.vault_uakt(), price) / outstanding

    def status(self, price: int, oracle_healthy: bool, cr_warning: float,
               cr_halt: float) -> str:
        """The mint status: an unhealthy oracle halts, then the collateral ratio decides."""
        if not oracle_healthy:
            return HALT_ORACLE
        ratio = self.collateral_ratio(price)
        if ratio < cr_halt:
            return HALT_CR
        return WARNING if ratio < cr_warning else HEALTHY

    def burned_uakt(self) -> int:
        return self.akt.flows.get("burn", 0)

    def minted_uakt(self) -> int:
        """New AKT created (payouts the vault could not cover)."""
        return -self.akt.balance(self.akt.mint)

    def net_supply_change_uakt(self) -> int:
        """Minted − burned-and-still-in-the-vault: AKT's supply change over the run."""
        return self.minted_uakt() - self.vault_uakt()

    def audit(self) -> dict[str, object]:
        """Per denomination: each ledger sums to zero, no account below zero but the
        issuers, and AKT's supply moved only by recorded burns and mints."""
        flows = self.akt.flows
        supply_ok = (self.vault_uakt() == flows.get("burn", 0) - flows.get("vault_paid", 0)
                     and self.minted_uakt() == flows.get("mint", 0))
        act_ok = self.act.total() == 0 and not self.act.overdrawn()
        akt_ok = self.akt.total() == 0 and not self.akt.overdrawn() and supply_ok
        return {
            "uact_conserved": act_ok,
            "uakt_conserved": akt_ok,
            "uact_flows": dict(sorted(self.act.flows.items())),
            "uakt_flows": dict(sorted(flows.items())),
        }

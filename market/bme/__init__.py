"""Burn-Mint Equilibrium (Akash AEP-76): settlement in AKT for leases quoted in USD.

`price` is the AKT/USD path and the oracle's TWAP of it, `protocol` the vault, the mints and
burns on integer ledgers per denomination with the collateral ratio and its circuit breakers,
and `settlement` what the market's escrow does with them: tenants' ACT top-ups and runway,
ACT escrow, providers paid in AKT and selling it.
"""

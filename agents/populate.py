"""The default agents of a scenario: its provider populations and its tenants."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.providers import add_populations
from agents.tenants import Tenants

if TYPE_CHECKING:
    from market.builder import Market


def populate(market: Market) -> None:
    """Fill `market` with the scenario's providers and start its tenants."""
    add_populations(market)
    Tenants(market).start()

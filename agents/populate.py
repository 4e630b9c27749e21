"""The default agents of a scenario: its provider populations and its tenants."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.entry_exit import start_entry_exit
from agents.providers import add_populations
from agents.tenants import Tenants
from agents.trace_demand import TraceArrivals

if TYPE_CHECKING:
    from market.builder import Market


def populate(market: Market) -> None:
    """Fill `market` with the scenario's providers, start its tenants, and entry and exit
    where the scenario has them."""
    add_populations(market)
    start_tenants(market)
    start_entry_exit(market)


def start_tenants(market: Market) -> Tenants:
    """The scenario's tenants, with the arrivals of its trace if it names one, started."""
    tenants = Tenants(market)
    if tenants.config.trace is not None:
        tenants.trace = TraceArrivals(tenants, tenants.config.trace)
    tenants.start()
    return tenants

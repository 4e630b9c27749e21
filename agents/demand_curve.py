"""Price-elastic demand: new jobs arrive faster when the market is cheap, slower when dear.

The tenants' arrival rate (`agents.tenants`: a daily cycle, growth, spikes) is multiplied by
a constant-elasticity demand curve in the market's price index:

    multiplier = min(max_demand_multiplier, (index / reference_price_to_list) ^ -elasticity)

- **Price index**: over the last `market.price_index_interval_s`, what tenants paid per hour
  for the leases that started, over those leases' list prices (each model's list price per
  GPU-hour times its GPUs): Σ price / Σ list. It is public (every lease's price is), and
  it holds its last value through an interval with no new lease. Before the first lease it is
  the reference, so the run starts at `arrivals_per_hour`.
- **Arrivals**: the tenants draw candidate arrivals at their rate times the cap (thinning), and
  each candidate becomes a job with probability multiplier / cap, drawn from the stream
  `tenants.demand` (so the other streams stay as they are). With elasticity 0 there is no
  curve, no cap and no draw: the arrivals are exactly those of a fixed rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market.events import Event, LeaseCreated, Tick
from market.units import usd_to_micro

if TYPE_CHECKING:
    from market.builder import Market
    from market.scenario import Tenants as TenantsConfig


class DemandCurve:
    """The price index the tenants read, and the demand curve they follow."""

    def __init__(self, market: Market, config: TenantsConfig) -> None:
        self.elasticity = config.price_elasticity
        self.reference = config.reference_price_to_list
        self.cap = config.max_demand_multiplier if self.elasticity > 0 else 1.0
        self.index = self.reference
        self.rng = market.streams.get("tenants.demand")
        self._list_micro = {model.id: usd_to_micro(model.list_usd_per_gpu_hour)
                            for model in market.catalog}
        self._paid_micro = 0
        self._list_total_micro = 0
        if self.elasticity > 0:
            market.subscribe(self._on_event, kinds=(LeaseCreated, Tick))

    def _on_event(self, event: Event) -> None:
        if isinstance(event, LeaseCreated):
            self._paid_micro += event.price_micro_per_hour
            self._list_total_micro += self._list_micro[event.gpu_model] * event.gpus
        elif self._list_total_micro:  # a tick closes the interval; none leased: index holds
            self.index = self._paid_micro / self._list_total_micro
            self._paid_micro = self._list_total_micro = 0

    def multiplier(self) -> float:
        """The demand curve at the current index (1 without elasticity)."""
        if self.elasticity == 0:
            return 1.0
        if self.index <= 0:  # leases are never free; the cap all the same
            return self.cap
        return min(self.cap, (self.index / self.reference) ** -self.elasticity)

    def admits(self) -> bool:
        """Whether a candidate arrival becomes a job now (always, without elasticity)."""
        return self.elasticity == 0 or self.rng.random() * self.cap < self.multiplier()

"""The tenants' outside option: which GPU models a hyperscaler rents them at list price, and
what serving a GPU-hour there costs the hyperscaler.

A tenant who gives up on this market rents its job's cheapest acceptable model at list price
from a hyperscaler of the scenario (any model, where the scenario has none). That is a trade,
not a loss: the tenant keeps its value less the list price, and the hyperscaler keeps the list
price less its cost, which is its opportunity cost, what the GPU-hour would have fetched
elsewhere: `elsewhere_fraction_of_list` × list for a population that `sells_elsewhere_at_list`
(1: on-demand capacity, no margin; lower: spare capacity that would otherwise sell as spot).
Where no hyperscaler rents a model, its "list" is another seller's price whose cost nobody
knows, and the margin counts as 0.
"""

from __future__ import annotations

import numpy as np

from market.catalog import GpuCatalog
from market.scenario import Scenario


def outside_models(scenario: Scenario, catalog: GpuCatalog) -> np.ndarray:
    """Per catalog model: does a hyperscaler of the scenario rent it? (Every model, where the
    scenario has no hyperscaler.)"""
    offered = {gpu for population in scenario.providers
               if population.archetype == "hyperscaler" and population.count
               for gpu, share in population.gpu_mix.items() if share > 0}
    return np.array([m.id in offered or not offered for m in catalog])


def outside_cost_fraction(scenario: Scenario, catalog: GpuCatalog) -> np.ndarray:
    """Per catalog model: the hyperscaler's cost of serving a GPU-hour at list price, as a
    fraction of that list price (the lowest over the hyperscalers renting it; 1 where none
    does, or where its opportunity cost is the list price itself)."""
    fraction = np.ones(len(catalog))
    index = {m.id: i for i, m in enumerate(catalog)}
    for population in scenario.providers:
        if population.archetype != "hyperscaler" or not population.count \
                or not population.sells_elsewhere_at_list:
            continue
        for gpu, share in population.gpu_mix.items():
            if share > 0 and gpu in index:
                i = index[gpu]
                fraction[i] = min(fraction[i], population.elsewhere_fraction_of_list)
    return fraction

"""Provider populations: inventories, cost models and reliability, from a scenario.

Cost model, per GPU-hour, split by what a provider can avoid:
- serving (`marginal`): the power a GPU draws above idle (power × PUE × electricity price) and
  its wear, only while it runs a lease: the cost of serving one more job;
- idle power and operations (`idle`, `fixed`): paid whenever the provider is on the market,
  busy or not; avoidable by leaving it, so they count in short-run profit;
- capex amortization (`capex`): capex / lifetime hours, sunk once the GPU is bought; it counts
  only in long-run profit, and not at all where `count_capex` is false (a home rig's card was
  bought for gaming anyway).
A provider that `sells_elsewhere_at_list` (a hyperscaler) has one cost: what a GPU-hour would
earn in its own cloud, `elsewhere_fraction_of_list` × list price (its opportunity cost: list
where it would sell on demand, less where spare capacity would sell as spot); its idle capacity
is sold there, so no idle power, operations or capex are charged to this market. A population
bids from its `full` cost (all of the above) or its `marginal` cost (`cost_basis`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from agents.node_lists import NodeList, group_nodes, node_specs, read_node_list
from market import registry
from market.catalog import GpuCatalog
from market.core.nodes import NodeSpec, split_machines
from market.core.pool import ProviderRow
from market.scenario import MAX_GPUS_PER_PROVIDER, ProviderPopulation
from market.units import GIB, SECONDS_PER_DAY, SECONDS_PER_HOUR

if TYPE_CHECKING:
    from market.builder import Market

HOURS_PER_YEAR = 8766.0  # 365.25 days


def gpu_costs(catalog: GpuCatalog, gpu_id: str, population: ProviderPopulation,
              electricity_usd_per_kwh: float) -> dict[str, float]:
    """USD per GPU-hour: `marginal` (serving: extra power and wear), `idle` (idle power),
    `fixed` (operations), `capex` (amortization, 0 where not counted), `full` (all four) and
    the `basis` this population bids from."""
    gpu = catalog[gpu_id]
    if population.sells_elsewhere_at_list:
        elsewhere = gpu.list_usd_per_gpu_hour * population.elsewhere_fraction_of_list
        return {"marginal": elsewhere, "idle": 0.0, "fixed": 0.0, "capex": 0.0,
                "full": elsewhere, "basis": elsewhere}
    capex = gpu.capex_usd * population.capex_factor / (population.lifetime_years * HOURS_PER_YEAR)
    if not population.count_capex:
        capex = 0.0
    power = gpu.board_power_w / 1000 * population.pue * electricity_usd_per_kwh
    idle = power * population.idle_power_fraction
    marginal = power - idle + population.wear_usd_per_gpu_hour
    fixed = population.ops_usd_per_gpu_hour
    full = capex + fixed + idle + marginal
    return {"marginal": marginal, "idle": idle, "fixed": fixed, "capex": capex, "full": full,
            "basis": full if population.cost_basis == "full" else marginal}


def model_quota(shares: np.ndarray, count: int) -> np.ndarray:
    """How many of `count` providers own each GPU model of a mix with these `shares`: in
    proportion to the shares (largest remainder), and at least one of every model with a
    positive share when there are enough providers, so that no model of the mix is missing
    by the luck of a draw."""
    shares = shares / shares.sum()
    present = shares > 0
    floor = np.zeros(len(shares), dtype=int)
    if count >= present.sum():
        floor[present] = 1
    # The rest go by largest remainder, in proportion to what each model still lacks.
    rest = count - int(floor.sum())
    lack = np.maximum(shares * count - floor, 0.0)
    ideal = lack / lack.sum() * rest if rest > 0 and lack.sum() > 0 else np.zeros(len(shares))
    quota = floor + np.floor(ideal).astype(int)
    left = count - int(quota.sum())
    if left > 0:
        order = np.argsort(-(ideal - np.floor(ideal)), kind="stable")
        quota[order[:left]] += 1
    return quota


def build_rows(population: ProviderPopulation, index: int, catalog: GpuCatalog,
               rng: np.random.Generator) -> list[ProviderRow]:
    """Draw `population.count` providers: GPU model by `gpu_mix`, GPU count uniformly in
    `gpus_per_provider` in steps of `gpu_step`, electricity price uniformly in its range; each
    owns machines of `gpus_per_node` GPUs (`drawn_machines`)."""
    count = population.count
    if count == 0:
        return []
    gpu_ids = list(population.gpu_mix)
    shares = np.array([population.gpu_mix[g] for g in gpu_ids], dtype=float)
    models = rng.permutation(np.repeat(np.arange(len(gpu_ids)), model_quota(shares, count)))
    low, high = population.gpus_per_provider
    step = population.gpu_step
    choices = np.arange(math.ceil(low / step) * step, high + 1, step)
    if choices.size == 0:
        choices = np.array([max(step, low)])
    gpus = rng.choice(choices, size=count)
    electricity = rng.uniform(*population.electricity_usd_per_kwh, size=count)
    return [provider_row(population, index, catalog, f"{population.name}-{i}",
                         gpu_ids[int(models[i])], int(gpus[i]), float(electricity[i]),
                         drawn_machines(population, int(gpus[i])))
            for i in range(count)]


def drawn_machines(population: ProviderPopulation, gpus: int) -> tuple[NodeSpec, ...]:
    """The machines of a drawn provider of `population` with `gpus` GPUs: `gpus_per_node`
    each, the last one the remainder, with the population's CPU and memory per GPU
    (`market.core.nodes.split_machines`). A provider of one machine gets none: its totals
    are its machine, so placement needs no node table (as before machines were drawn)."""
    specs = split_machines(gpus, population.gpus_per_node, population.cpu_millicores_per_gpu,
                           int(population.memory_gib_per_gpu * GIB))
    return specs if len(specs) > 1 else ()


def provider_row(population: ProviderPopulation, index: int, catalog: GpuCatalog, name: str,
                 gpu_id: str, gpus: int, electricity_usd_per_kwh: float,
                 nodes: tuple[NodeSpec, ...] = ()) -> ProviderRow:
    """One provider of `population` (the `index`-th): `gpus` of `gpu_id` with the
    population's capacity per GPU, or the capacity of its `nodes` where it has them, and
    the population's costs at this electricity price."""
    costs = gpu_costs(catalog, gpu_id, population, electricity_usd_per_kwh)
    if nodes:
        cpu, memory = sum(node[1] for node in nodes), sum(node[2] for node in nodes)
    else:
        cpu = population.cpu_millicores_per_gpu * gpus
        memory = int(population.memory_gib_per_gpu * GIB) * gpus
    return ProviderRow(
        name=name,
        population=index,
        model=catalog.index(gpu_id),
        gpus=gpus,
        cpu_millicores=cpu,
        memory_bytes=memory,
        storage_bytes=int(population.storage_gib_per_gpu * GIB) * gpus,
        ip_leases=population.ip_leases,
        storage_classes=tuple(population.storage_classes),
        audited=population.audited,
        cost_full_usd_per_gpu_hour=costs["full"],
        cost_marginal_usd_per_gpu_hour=costs["marginal"],
        cost_idle_usd_per_gpu_hour=costs["idle"],
        cost_fixed_usd_per_gpu_hour=costs["fixed"],
        cost_basis_usd_per_gpu_hour=costs["basis"],
        cost_capex_usd_per_gpu_hour=costs["capex"],
        latency_log_median=math.log(population.bid_latency.median_s),
        latency_sigma=population.bid_latency.sigma,
        failure_rate_per_s=population.failure_rate_per_day / SECONDS_PER_DAY,
        repair_s=tuple(h * SECONDS_PER_HOUR for h in population.repair_hours),
        churn_rate_per_s=population.churn_per_day / SECONDS_PER_DAY,
        offline_s=tuple(d * SECONDS_PER_DAY for d in population.offline_days),
        nodes=nodes,
    )


def rows_from_nodes(population: ProviderPopulation, index: int, catalog: GpuCatalog,
                    rng: np.random.Generator, nodes: NodeList) -> list[ProviderRow]:
    """`population.count` providers made of a node list's machines (`agents.node_lists`:
    grouped by GPU model, in file order), electricity drawn as for drawn providers."""
    groups = group_nodes(nodes, population.count, model_quota)
    electricity = rng.uniform(*population.electricity_usd_per_kwh, size=len(groups))
    memory_per_gpu = int(population.memory_gib_per_gpu * GIB)
    rows = []
    for i, (gpu_id, machines) in enumerate(groups):
        specs = node_specs(machines, population.cpu_millicores_per_gpu, memory_per_gpu)
        gpus = sum(spec[0] for spec in specs)
        if gpus > MAX_GPUS_PER_PROVIDER:
            raise ValueError(f"providers.{index}.count: provider {i} of {gpu_id} would have "
                             f"{gpus:,} GPUs, above {MAX_GPUS_PER_PROVIDER:,}; expected more "
                             "providers")
        row = provider_row(population, index, catalog, f"{population.name}-{i}", gpu_id,
                           gpus, float(electricity[i]), specs)
        if population.nodes is not None and population.nodes.placement == "pooled":
            row.nodes = ()  # its machines' totals, as one: placement by totals
        rows.append(row)
    return rows


def add_populations(market: Market) -> None:
    """Add every provider population of the market's scenario, each with its own strategy
    instance and random stream (named after the population)."""
    for index, population in enumerate(market.scenario.providers):
        rng = market.streams.get(f"providers.{population.name}.inventory")
        if population.nodes is None:
            rows = build_rows(population, index, market.catalog, rng)
        else:
            source = population.nodes
            nodes = read_node_list(source.path, source.format, market.catalog,
                                   source.gpu_map)
            rows = rows_from_nodes(population, index, market.catalog, rng, nodes)
            # The run's result reports what each list gave (market.observe.result).
            market.node_lists[population.name] = nodes.summary(len(rows))
        factory = registry.load("strategies", population.strategy.name)
        try:
            strategy = factory(**population.strategy.params)
        except TypeError as error:
            raise ValueError(f"providers.{index}.strategy.params: {error}") from None
        market.add_providers(rows, strategy)


def outside_provider(market: Market, name: str, archetype: str, gpu_model: str, gpus: int,
                     wallet_usd: float) -> int:
    """Add one provider that a person or a remote bot runs (it bids only through
    `Market.submit_bid`): one machine of `gpus` GPUs of `gpu_model`, with its archetype's
    capacity per GPU and
    costs at the middle of its electricity range. It does not fail or churn in the
    simulation: its uptime is its owner's. Returns its provider id; raises ValueError (nothing
    changed) on an unknown archetype or GPU model."""
    if gpu_model not in market.catalog.ids:
        raise ValueError(f"gpu_model: expected one of {', '.join(market.catalog.ids)}, "
                         f"got {gpu_model!r}")
    try:
        population = ProviderPopulation.model_validate({
            "name": name, "archetype": archetype, "count": 1, "gpu_mix": {gpu_model: 1.0},
            "gpus_per_provider": (gpus, gpus), "gpu_step": 1,
            # One machine of `gpus`, as its owner states it (the live page and the bot offer
            # "a machine of N GPUs"), whatever its archetype's machines are.
            "gpus_per_node": 0})
    except ValidationError as error:
        raise ValueError(f"provider: {error.errors()[0]['msg']}") from None
    low, high = population.electricity_usd_per_kwh
    population = population.model_copy(update={
        "electricity_usd_per_kwh": ((low + high) / 2, (low + high) / 2),
        "failure_rate_per_day": 0.0, "churn_per_day": 0.0})
    index = market.pool.add_population(name, archetype)
    # The draws are fixed by the facts given: a stream of its own would shift nobody's.
    (row,) = build_rows(population, index, market.catalog, np.random.default_rng(0))
    row.name = name
    return int(market.add_providers([row], None, wallet_usd=wallet_usd)[0])

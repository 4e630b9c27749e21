"""Drawn providers own machines of `gpus_per_node` GPUs (`agents.providers.drawn_machines`):
the machines built from a population, the archetypes' shapes, one machine for a provider a
person brings, and the field's errors."""

from __future__ import annotations

import numpy as np
import pytest

from agents.providers import build_rows, drawn_machines, outside_provider
from market import Market, load_scenario
from market.catalog import load_catalog
from market.scenario import MAX_MACHINES_PER_POPULATION, ProviderPopulation, ScenarioError
from market.units import GIB


def population(**fields) -> ProviderPopulation:
    return ProviderPopulation.model_validate({"name": "p", "count": 1, **fields})


def test_twenty_gpus_at_eight_a_machine_are_two_full_servers_and_one_of_four():
    dc = population(archetype="datacenter", gpus_per_node=8)
    cpu, memory = dc.cpu_millicores_per_gpu, int(dc.memory_gib_per_gpu * GIB)
    assert drawn_machines(dc, 20) == ((8, 8 * cpu, 8 * memory), (8, 8 * cpu, 8 * memory),
                                      (4, 4 * cpu, 4 * memory))
    assert len(drawn_machines(dc, 64)) == 8 and {m[0] for m in drawn_machines(dc, 64)} == {8}


def test_a_provider_of_one_machine_keeps_no_node_table():
    dc = population(archetype="datacenter", gpus_per_node=8)
    assert drawn_machines(dc, 8) == () and drawn_machines(dc, 5) == ()
    assert drawn_machines(population(archetype="datacenter", gpus_per_node=0), 64) == ()


def test_drawn_rows_carry_their_machines_and_the_machines_add_up_to_the_totals():
    catalog = load_catalog()
    home = population(archetype="home_rig", count=40, gpus_per_provider=(1, 4),
                      gpu_step=1, gpus_per_node=2)
    rows = build_rows(home, 0, catalog, np.random.default_rng(3))
    assert {row.gpus for row in rows} == {1, 2, 3, 4}
    for row in rows:
        assert len(row.nodes) == (0 if row.gpus <= 2 else 2)
        if row.nodes:
            assert [node[0] for node in row.nodes] == [2, row.gpus - 2]
            assert [sum(node[i] for node in row.nodes) for i in range(3)] == \
                [row.gpus, row.cpu_millicores, row.memory_bytes]
    # The machines change no draw: the same providers as one machine each.
    flat = build_rows(home.model_copy(update={"gpus_per_node": 0}), 0, catalog,
                      np.random.default_rng(3))
    assert [(r.gpus, r.model, r.cpu_millicores, r.memory_bytes) for r in flat] == \
        [(r.gpus, r.model, r.cpu_millicores, r.memory_bytes) for r in rows]


def test_the_default_market_has_eight_gpu_servers_and_one_or_two_gpu_rigs():
    market = Market(load_scenario("default"), seed=1, record=False)
    pool, nodes = market.pool, market.pool.nodes
    archetypes = pool.population_archetypes
    for provider in range(pool.n):
        machines = nodes.capacity[nodes.of(provider), 0].tolist() or [pool.capacity[provider, 0]]
        assert sum(machines) == pool.capacity[provider, 0]
        if archetypes[pool.population[provider]] == "home_rig":
            assert max(machines) <= 2 and len(machines) == (pool.capacity[provider, 0] + 1) // 2
        else:
            assert set(machines) == {8}


def test_a_provider_a_person_brings_is_the_one_machine_they_state():
    market = Market(load_scenario("default", ["duration_days=0.01"]), seed=1, populate=False,
                    record=False)
    provider = outside_provider(market, "alice", "datacenter", "h100", 16, 100.0)
    assert market.pool.nodes.count[provider] == 0 and market.pool.capacity[provider, 0] == 16


@pytest.mark.parametrize(("override", "message"), [
    ("providers.0.gpus_per_node=-1", "expected an integer >= 0 and <= 1,024 (got -1)"),
    ("providers.0.gpus_per_node=2048", "expected an integer >= 0 and <= 1,024 (got 2048)"),
    ("providers.0.gpus_per_node=1.5", "valid integer"),
])
def test_a_bad_gpus_per_node_is_one_line_naming_the_field(override, message):
    with pytest.raises(ScenarioError, match=r"field `providers\.0\.gpus_per_node`: ") as error:
        load_scenario("default", [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_population_of_too_many_machines_is_refused_before_anything_is_built():
    many = ["providers.1.count=100000", "providers.1.gpus_per_node=1"]
    with pytest.raises(ScenarioError) as error:
        load_scenario("default", [*many, "providers.1.gpus_per_provider=[1,32]"])
    assert str(error.value).endswith(
        "field `providers.1.gpus_per_node`: 100,000 providers of up to 32 GPUs at 1 per machine"
        f" make up to 3,200,000 machines, above {MAX_MACHINES_PER_POPULATION:,}; expected more"
        " GPUs per machine, or fewer or smaller providers")
    # At the limit it loads; a step above the range counts as the most GPUs a draw gives.
    load_scenario("default", [*many, "providers.1.gpus_per_provider=[1,20]"])
    with pytest.raises(ScenarioError, match="up to 32 GPUs"):
        load_scenario("default", [*many, "providers.1.gpus_per_provider=[1,20]",
                                  "providers.1.gpu_step=32"])
    # Every archetype's preset machines pass at the most providers a population may have.
    load_scenario("default", [f"providers.{i}.count=100000" for i in range(3)])


def test_a_step_that_is_no_multiple_of_the_machine_leaves_a_smaller_last_machine():
    # Not an error: a 12-GPU data center is a full server and a half-full one.
    dc = load_scenario("default", ["providers.0.gpu_step=4",
                                   "providers.0.gpus_per_provider=[12,12]"]).providers[0]
    assert [m[0] for m in drawn_machines(dc, 12)] == [8, 4]

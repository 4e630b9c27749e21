"""Tests for market.scenario: built-in scenarios, overlay files, archetype presets, `--set`
overrides, one-line `ScenarioError`s naming the field, and the JSON schema.

Expected values are read from the package's own TOML files (default, bench, archetypes), not
copied, so the tests follow the data while still checking how it is merged.
"""

from __future__ import annotations

import copy
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from market.experiments.calibration import load_calibration
from market.scenario import (
    ScenarioError,
    builtin_scenarios,
    load_scenario,
    scenario_schema,
)


def package_toml(folder: str, filename: str) -> dict[str, Any]:
    return tomllib.loads(resources.files("market").joinpath(folder, filename).read_text("utf-8"))


def plain(value: Any) -> Any:
    """A model dump with tuples as lists, comparable with parsed TOML."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@pytest.fixture(scope="module")
def default():
    return load_scenario("default")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- built-in scenarios --------------------------------------------------------------------

def test_builtin_scenarios_include_default_and_bench():
    names = builtin_scenarios()
    assert {"default", "bench"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", builtin_scenarios())
def test_every_builtin_scenario_loads_under_its_own_name(name):
    assert load_scenario(name).name == package_toml("scenarios", f"{name}.toml")["name"]


def test_bench_overlays_default(default):
    bench_toml = package_toml("scenarios", "bench.toml")
    bench = load_scenario("bench")
    # What bench sets ...
    assert bench.duration_days == bench_toml["duration_days"]
    assert bench.tenants.count == bench_toml["tenants"]["count"]
    assert bench.tenants.arrivals_per_hour == bench_toml["tenants"]["arrivals_per_hour"]
    assert [(p.archetype, p.count) for p in bench.providers] == [
        (p["archetype"], p["count"]) for p in bench_toml["providers"]]
    # ... and what it leaves to default: sibling keys of a merged table, and whole tables.
    assert bench.tenants.wallet_usd == default.tenants.wallet_usd
    assert bench.tenants.spikes == default.tenants.spikes
    assert bench.tenants.jobs == default.tenants.jobs
    assert bench.market == default.market


def contains(whole: Any, part: Any) -> bool:
    """Whether every key of `part` (recursively) has the same value in `whole`."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            key in whole and contains(whole[key], value) for key, value in part.items())
    return whole == part


#: Set in the default for its BME settlement, not the presets' values: the data centers'
#: margin range, the presets' [0.4, 2.0] without AEP-23's fee to gross up (default.toml).
FEE_FREE = ("providers.0.strategy.params.min_margin", "providers.0.strategy.params.max_margin")


def test_default_populations_take_their_archetype_presets(default):
    # ... but for the values `gpumarket calibrate default` fits (README "Calibration"), and
    # the margin range restated for BME.
    presets = package_toml("data", "archetypes.toml")
    fitted = [path.split(".") for path in (*load_calibration("default").parameters, *FEE_FREE)
              if path.startswith("providers.")]
    datacenters = presets["datacenter"]["strategy"]["params"]
    restated = default.providers[0].strategy.params
    for bound in ("min_margin", "max_margin"):  # (1 + m) / (1 - 0.2) - 1, to the cent
        assert restated[bound] == round((1 + datacenters[bound]) / 0.8 - 1, 2)
    for index, population in enumerate(default.providers):
        dumped = plain(population.model_dump())
        preset = copy.deepcopy(presets[population.archetype])
        for _, at, *keys in fitted:
            if int(at) == index:
                table = preset
                for key in keys[:-1]:
                    table = table[key]
                del table[keys[-1]]
        for field, value in preset.items():
            assert contains(dumped[field], value), (population.name, field)


# --- scenario files ------------------------------------------------------------------------

def test_a_small_file_overlays_default(tmp_path, default):
    path = write(tmp_path, "mine.toml", """
name = "mine"
[market]
take_rate = 0.05
[tenants.spikes]
per_week = 2
[[providers]]
archetype = "home_rig"
count = 5
""")
    scenario = load_scenario(path)
    assert scenario.name == "mine"
    assert scenario.duration_days == default.duration_days
    # Tables merge key by key ...
    assert scenario.market.take_rate == 0.05
    assert scenario.market == default.market.model_copy(update={"take_rate": 0.05})
    assert scenario.tenants.spikes.per_week == 2
    assert scenario.tenants.spikes.multiplier == default.tenants.spikes.multiplier
    assert scenario.tenants.count == default.tenants.count
    # ... arrays replace.
    assert [(p.archetype, p.count) for p in scenario.providers] == [("home_rig", 5)]


def test_a_file_may_name_another_base(tmp_path):
    bench = load_scenario("bench")
    on_bench = write(tmp_path, "on_bench.toml", 'base = "bench"\nname = "x"\n')
    assert load_scenario(on_bench).tenants.count == bench.tenants.count
    chained = write(tmp_path, "chained.toml", f'base = "{on_bench}"\n[market]\ntake_rate = 0.01\n')
    scenario = load_scenario(chained)
    assert scenario.name == "chained"  # a file's own name, not its base's
    assert scenario.tenants.count == bench.tenants.count
    assert scenario.market.take_rate == 0.01


def test_a_population_gets_omitted_fields_from_its_preset(tmp_path):
    preset = package_toml("data", "archetypes.toml")["home_rig"]
    path = write(tmp_path, "rigs.toml", """
[[providers]]
archetype = "home_rig"
name = "rigs"
count = 7
pue = 1.2
ip_leases = 2
""")
    (rigs,) = load_scenario(path).providers
    assert (rigs.name, rigs.count, rigs.pue, rigs.ip_leases) == ("rigs", 7, 1.2, 2)
    dumped = plain(rigs.model_dump())
    for field in set(preset) - {"pue", "ip_leases"}:
        assert contains(dumped[field], preset[field]), field


def test_a_file_without_a_name_is_named_after_the_file(tmp_path):
    path = write(tmp_path, "cheap_power.toml", "[market]\ntake_rate = 0.02\n")
    assert load_scenario(path).name == "cheap_power"


def test_an_unnamed_population_is_named_after_its_archetype(tmp_path):
    path = write(tmp_path, "dc.toml", '[[providers]]\narchetype = "datacenter"\ncount = 2\n')
    assert [p.name for p in load_scenario(path).providers] == ["datacenter"]


# --- --set overrides -----------------------------------------------------------------------

def test_overrides_set_nested_fields_and_list_items(default):
    scenario = load_scenario("default", [
        "market.take_rate=0.1", "providers.0.count=3", "tenants.spikes.per_week=0"])
    assert scenario.market.take_rate == 0.1
    assert scenario.providers[0].count == 3
    assert scenario.tenants.spikes.per_week == 0
    # Everything else is untouched: the other items of the list, the table's other keys.
    assert scenario.providers[1:] == default.providers[1:]
    assert scenario.providers[0].pue == default.providers[0].pue
    assert scenario.tenants.spikes.multiplier == default.tenants.spikes.multiplier


def test_overrides_do_not_leak_into_later_loads(default):
    load_scenario("default", ["providers.0.count=3", "tenants.spikes.per_week=0",
                              "providers.1.gpu_mix.rtx3090=0", "gpus.h100.capex_usd=1"])
    assert load_scenario("default") == default


@pytest.mark.parametrize(("assignment", "selection"), [
    ("market.selection=first", "first"),         # a bare word is a string
    ('market.selection="first"', "first"),       # so is a TOML string
])
def test_overrides_accept_string_values(assignment, selection):
    assert load_scenario("default", [assignment]).market.selection == selection


def test_overrides_accept_arrays_tables_and_strategy_names():
    scenario = load_scenario("default", [
        "market.health_check_interval_s=[5, 10]",
        "providers.1.gpu_mix.rtx4090=0.9",
        "market.mechanism=second_price",
        'providers.2.strategy={ name = "cost_plus", params = { markup = 0.1 } }',
    ])
    assert scenario.market.health_check_interval_s == (5.0, 10.0)
    assert scenario.providers[1].gpu_mix["rtx4090"] == 0.9
    assert scenario.market.mechanism == "second_price"
    assert scenario.providers[2].strategy.params == {"markup": 0.1}


def test_overrides_reach_the_gpu_catalog(default):
    scenario = load_scenario("default", ["gpus.h100.list_usd_per_gpu_hour=3.5"])
    assert scenario.catalog()["h100"].list_usd_per_gpu_hour == 3.5
    assert default.catalog()["h100"].list_usd_per_gpu_hour != 3.5


def test_overrides_apply_on_top_of_a_file(tmp_path):
    path = write(tmp_path, "mine.toml", "[market]\ntake_rate = 0.05\n")
    assert load_scenario(path, ["market.take_rate=0.3"]).market.take_rate == 0.3


# --- errors: one line, naming the field ----------------------------------------------------

def one_line_error(name_or_path: str | Path = "default", overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ScenarioError) as error:
        load_scenario(name_or_path, list(overrides))
    message = str(error.value)
    assert "\n" not in message and message.strip() == message and message
    return message


@pytest.mark.parametrize(("assignment", "names"), [
    # unknown fields
    ("market.take_rat=0.1", ["market.take_rat"]),
    ('colour="red"', ["colour"]),
    ("nosuch.field=1", ["nosuch"]),
    # wrong types
    ('market.take_rate="high"', ["market.take_rate"]),
    ("tenants.count=3.5", ["tenants.count"]),
    ("market=5", ["market"]),
    # out of range
    ("gpus.h100.list_usd_per_gpu_hour=-1", ["gpus.h100.list_usd_per_gpu_hour"]),
    ("tenants.wallet_usd=-5", ["tenants.wallet_usd"]),
    ("market.take_rate=1.5", ["market.take_rate"]),
    ("market.health_check_interval_s=[19, 4]", ["market.health_check_interval_s"]),
    ("tenants.wallet_usd=inf", ["tenants.wallet_usd"]),
    ("market.take_rate=nan", ["market.take_rate"]),
    # unknown names
    ("providers.0.gpu_mix={ b200 = 1.0 }", ["providers.0.gpu_mix", "b200", "h100"]),
    ('market.mechanism="vickrey_clarke"', ["market.mechanism", "vickrey_clarke",
                                          "second_price"]),
    ('providers.1.strategy.name="sniper"', ["providers.1.strategy.name", "sniper",
                                              "cost_plus"]),
    ("gpus.b200.list_usd_per_gpu_hour=1", ["b200"]),
    # paths that do not exist
    ("providers.9.count=1", ["providers.9", "0 to 2"]),
    ("providers.x.count=1", ["providers.x"]),
    ("market.take_rate.x=1", ["market.take_rate"]),
    ("take_rate", ["take_rate", "PATH=VALUE"]),
])
def test_bad_overrides_raise_one_line_naming_the_field(assignment, names):
    message = one_line_error("default", (assignment,))
    for name in names:
        assert name in message, message


def test_a_job_mix_with_no_positive_share_is_rejected(default):
    zeros = tuple(f"tenants.jobs.{kind}.share=0" for kind in default.tenants.jobs)
    assert "tenants.jobs" in one_line_error("default", zeros)


def test_a_missing_file_is_reported_by_name(tmp_path):
    missing = tmp_path / "nope.toml"
    message = one_line_error(missing)
    assert str(missing) in message
    assert "default" in message  # says which built-in names would have worked


def test_a_directory_is_not_a_scenario_file(tmp_path):
    assert str(tmp_path) in one_line_error(tmp_path)


def test_invalid_toml_is_reported_with_the_file(tmp_path):
    path = write(tmp_path, "broken.toml", "name = \n[market\n")
    message = one_line_error(path)
    assert str(path) in message and "TOML" in message


def test_errors_inside_a_file_name_the_field(tmp_path):
    path = write(tmp_path, "typo.toml", "[tenants.spikes]\nper_wek = 2\n")
    assert "tenants.spikes.per_wek" in one_line_error(path)


def test_a_base_that_is_not_a_string_is_rejected(tmp_path):
    path = write(tmp_path, "based.toml", "base = 5\n")
    assert "base" in one_line_error(path)


def test_a_base_chain_that_loops_is_rejected(tmp_path):
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    write(tmp_path, first.name, f'base = "{second}"\n')
    write(tmp_path, second.name, f'base = "{first}"\n')
    message = one_line_error(first)
    assert "loops" in message
    assert "first.toml" in message and "second.toml" in message


def test_a_relative_base_is_resolved_next_to_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    write(folder, "parent.toml", "[market]\ntake_rate = 0.07\n")
    child = write(folder, "child.toml", 'base = "parent.toml"\nname = "child"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_scenario(child).market.take_rate == 0.07


def test_a_file_that_is_not_utf8_is_a_scenario_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "café"\n'.encode("latin-1"))
    assert str(path) in one_line_error(path)


def test_an_unknown_archetype_is_reported_as_such():
    message = one_line_error("default", ('providers.0.archetype="alien"',))
    assert "providers.0.archetype" in message


def test_a_population_gpu_mix_replaces_the_preset_mix(tmp_path):
    path = write(tmp_path, "h100s.toml", """
[[providers]]
archetype = "datacenter"
count = 4
gpu_mix = { h100 = 1.0 }
""")
    assert load_scenario(path).providers[0].gpu_mix == {"h100": 1.0}


def test_a_population_naming_another_strategy_does_not_inherit_its_params(tmp_path):
    path = write(tmp_path, "listed.toml", """
[[providers]]
archetype = "datacenter"
count = 4
strategy = { name = "list_price" }
""")
    assert load_scenario(path).providers[0].strategy.params == {}


# --- schema --------------------------------------------------------------------------------

def test_scenario_schema_is_json_with_the_top_level_tables():
    schema = scenario_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert {"market", "tenants", "providers"} <= set(schema["properties"])
    # Descriptions written on the fields reach the schema (they document the file format).
    assert "take_rate" in json.dumps(schema)


def test_decode_batch_is_only_for_inference_kinds():
    with pytest.raises(ScenarioError, match=r"training\.decode_batch_tokens`: must be left out"):
        load_scenario("default", ["tenants.jobs.training.decode_batch_tokens=8"])
    assert load_scenario("default", ["tenants.jobs.batch_inference.decode_batch_tokens=32"]) \
        .tenants.jobs["batch_inference"].decode_batch_tokens == 32

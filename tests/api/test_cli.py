"""Tests for the `gpumarket` command line (api/cli/main.py) as a user meets it.

Most tests call `api.cli.main.main(argv)` in-process (it ends in `sys.exit`) and read what it
printed with `capsys`; one test runs the installed console script in a real subprocess. Every
run is short (at most half a simulated day) so the file stays fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from api.cli.report import _usd
from market import registry
from market.observe.tables import LEASES_SCHEMA, ORDERS_SCHEMA, PRICES_SCHEMA
from market.scenario import builtin_scenarios, load_scenario
from tests.api.cli_helpers import RICH_ENV, Outcome, assert_one_error_line

SHORT = ("--set", "duration_days=0.5")  # half a simulated day: well under a second a run
SUMMARY_KEYS = ("seed", "orders_posted", "leases_created", "fill_rate", "money_conserved")
OUT_FILES = {"summary.json", "scenario.json", "orders.parquet", "leases.parquet", "jobs.parquet",
             "providers.parquet", "prices.parquet"}
#: Written besides when the run settles in AKT (`market.settlement = "bme"`).
BME_FILES = {"bme.parquet", "bme_providers.parquet"}
def run_json(cli, *argv: str) -> tuple[Outcome, dict]:
    """`gpumarket run --json ...` (short); checks it succeeded and parses its stdout."""
    outcome = cli("run", "--json", *SHORT, *argv)
    assert outcome.code == 0, outcome.err
    return outcome, json.loads(outcome.out)


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------- run --json


def test_run_json_prints_exactly_one_json_object(cli) -> None:
    outcome, summary = run_json(cli)

    assert outcome.out.endswith("\n") and outcome.out.count("\n") == 1  # one line, one object
    assert outcome.err == ""  # no progress bar or chatter when piping JSON
    assert isinstance(summary, dict)
    for key in SUMMARY_KEYS:
        assert key in summary, key
    assert summary["seed"] == 1  # the documented default
    assert summary["scenario"] == "default"
    assert summary["simulated_days"] == pytest.approx(0.5)
    assert summary["money_conserved"] is True
    assert isinstance(summary["orders_posted"], int) and summary["orders_posted"] > 0
    assert isinstance(summary["leases_created"], int) and summary["leases_created"] > 0
    assert summary["leases_created"] <= summary["orders_posted"]
    assert 0.0 <= summary["fill_rate"] <= 1.0


def test_run_json_reports_the_seed_given(cli) -> None:
    _, summary = run_json(cli, "--seed", "7")
    assert summary["seed"] == 7
    assert summary["money_conserved"] is True


def test_run_json_is_deterministic_per_seed(cli) -> None:
    first, _ = run_json(cli, "--seed", "7")
    again, _ = run_json(cli, "--seed", "7")
    other, other_summary = run_json(cli, "--seed", "8")

    assert again.out == first.out  # byte-identical
    assert other.out != first.out
    assert other_summary["seed"] == 8


# ------------------------------------------------------------------------- run --out


def test_run_out_writes_summary_and_tables_that_agree(cli, tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "seed3"  # does not exist yet: created
    outcome, summary = run_json(cli, "--seed", "3", "--out", str(folder))
    _, in_memory = run_json(cli, "--seed", "3")  # same run, tables kept in memory

    assert {p.name for p in folder.iterdir()} == OUT_FILES | (BME_FILES if "bme" in summary
                                                              else set())
    assert (folder / "summary.json").read_text(encoding="utf-8") == outcome.out
    assert summary == in_memory  # streaming tables to disk does not change the run

    orders = pq.read_table(folder / "orders.parquet")
    leases = pq.read_table(folder / "leases.parquet")
    prices = pq.read_table(folder / "prices.parquet")
    assert orders.schema.names == ORDERS_SCHEMA.names
    assert leases.schema.names == LEASES_SCHEMA.names
    assert prices.schema.names == PRICES_SCHEMA.names
    for table in (orders, leases):
        assert {"order_id", "job_id", "tenant", "price_usd_per_gpu_hour"} <= set(
            table.column_names)
    assert {"lease_id", "provider", "gpu_model", "paid_usd", "reason"} <= set(leases.column_names)
    assert {"time_s", "gpu_model", "price_index_usd_per_gpu_hour"} <= set(prices.column_names)

    assert orders.num_rows == summary["orders_posted"]
    assert leases.num_rows == summary["leases_created"]
    assert prices.num_rows > 0

    outcomes = Counter(orders.column("outcome").to_pylist())
    assert outcomes["leased"] == summary["orders_filled"]
    assert outcomes["expired"] == summary["orders_expired"]
    assert outcomes["open"] == summary["orders_open"]
    assert outcomes["cancelled"] == summary["orders_cancelled"]

    leased = [row for row in orders.select(["outcome", "lease_id"]).to_pylist()
              if row["outcome"] == "leased"]
    assert sorted(row["lease_id"] for row in leased) == sorted(
        leases.column("lease_id").to_pylist())

    reasons = Counter(leases.column("reason").to_pylist())
    assert reasons.pop("active", 0) == summary["leases_active"]
    assert dict(reasons) == summary["lease_close_reasons"]
    per_model = Counter(leases.column("gpu_model").to_pylist())
    assert dict(per_model) == {model: row["count"]
                               for model, row in summary["price_usd_per_gpu_hour"].items()}
    assert sum(leases.column("paid_usd").to_pylist()) == pytest.approx(
        summary["tenant_spend_usd"], rel=1e-9, abs=1e-6)

    catalog = load_scenario("default").catalog()
    assert set(prices.column("gpu_model").to_pylist()) <= set(catalog.ids)
    horizon_s = summary["simulated_days"] * 86_400
    assert all(0 < t <= horizon_s for t in prices.column("time_s").to_pylist())


def test_run_out_without_json_prints_the_report_and_where_it_wrote(cli, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    outcome = cli("run", *SHORT, "--out", str(folder))

    assert outcome.code == 0, outcome.err
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert {p.name for p in folder.iterdir()} == OUT_FILES | (BME_FILES if "bme" in summary
                                                              else set())
    assert "wrote summary.json" in outcome.out
    assert str(folder) in outcome.out.replace("\n", "")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["money_conserved"] is True


def test_run_out_at_an_existing_file_is_bad_input(cli, tmp_path: Path) -> None:
    existing = tmp_path / "results"
    existing.write_text("keep me\n", encoding="utf-8")

    outcome = cli("run", "--json", *SHORT, "--out", str(existing))

    assert_one_error_line(outcome, "--out")
    assert existing.read_text(encoding="utf-8") == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


# ---------------------------------------------------------------------- human report


def test_human_report_names_scenario_seed_money_and_gpu_rows(cli) -> None:
    outcome = cli("run", *SHORT, "--seed", "5")
    _, summary = run_json(cli, "--seed", "5")

    assert outcome.code == 0, outcome.err
    assert not outcome.out.lstrip().startswith("{")
    assert "\x1b[" not in outcome.out  # no colour codes when not on a terminal
    text = outcome.out
    assert any("default" in line and "seed 5" in line for line in text.splitlines()), text
    assert "money conserved" in text
    money_line = next(line for line in text.splitlines() if "money conserved" in line)
    assert "yes" in money_line
    assert summary["price_usd_per_gpu_hour"], "the run should lease at least one GPU model"
    lines = text.splitlines()
    for model, row in summary["price_usd_per_gpu_hour"].items():
        assert any(model in line and f"{row['count']:,}" in line for line in lines), model
    # the outside option's surplus, split between the tenants and the hyperscalers
    sides = summary["welfare"]["outside_surplus_by_side_usd"]
    split = next(line for line in lines if "tenants', hyperscalers'" in line)
    assert _usd(sides["tenants"]) in split and _usd(sides["hyperscalers"]) in split


# ------------------------------------------------------------------------- bad input


BAD_INPUT = [
    pytest.param(["run", "--set", "tenants.bogus=1"], ["tenants.bogus"], id="unknown-field"),
    pytest.param(["run", "--set", "market.take_rate=abc"], ["market.take_rate", "abc"],
                 id="wrong-type"),
    pytest.param(["run", "--set", "market.take_rate=1"], ["market.take_rate"],
                 id="take-rate-out-of-range"),
    pytest.param(["run", "--set", "gpus.h100.list_usd_per_gpu_hour=-1"],
                 ["gpus.h100.list_usd_per_gpu_hour"], id="negative-price"),
    pytest.param(["run", "--set", "providers.0.gpu_mix.nope=1"],
                 ["providers.0.gpu_mix", "nope"], id="unknown-gpu-model"),
    pytest.param(["run", "--set", "providers.9.count=1"], ["providers.9"],
                 id="population-index-out-of-range"),
    pytest.param(["run", "--set", "market.mechanism=nope"],
                 ["market.mechanism", "nope", *registry.names("mechanisms")],
                 id="unknown-mechanism"),
    pytest.param(["run", "--set", "providers.0.strategy.name=nope"],
                 ["providers.0.strategy.name", "nope", *registry.names("strategies")],
                 id="unknown-strategy"),
    pytest.param(["run", "--seed", "-1"], ["--seed"], id="negative-seed"),
    pytest.param(["run", "--seed", "abc"], ["--seed"], id="seed-not-an-integer"),
    pytest.param(["frobnicate"], ["frobnicate"], id="unknown-command"),
    pytest.param(["run", "--bogus"], ["--bogus"], id="unknown-option"),
    pytest.param(["run", "--set", "duration_days"], ["--set", "duration_days", "PATH=VALUE"],
                 id="set-without-equals"),
]


@pytest.mark.parametrize(("argv", "mentions"), BAD_INPUT)
def test_bad_input_exits_2_with_one_line_naming_it(cli, argv: list[str],
                                                   mentions: list[str]) -> None:
    # Short runs even if validation wrongly let the input through.
    assert_one_error_line(cli(*argv, *SHORT) if argv[0] == "run" else cli(*argv), *mentions)


def test_known_mechanisms_and_strategies_are_the_builtins() -> None:
    # Guards the parametrized cases above against an empty registry.
    assert {"tenant_pick", "first_price", "second_price"} <= set(registry.names("mechanisms"))
    assert registry.names("strategies")


def test_missing_scenario_file_is_bad_input(cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    assert_one_error_line(cli("run", "-s", str(missing), *SHORT), str(missing))


def test_scenario_file_with_toml_syntax_error_is_bad_input(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "broken.toml", "duration_days = 0.3\n[market\ntake_rate = 0.1\n")
    assert_one_error_line(cli("run", "-s", path), path, "TOML")


def test_scenario_file_with_unknown_field_is_bad_input(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "typo.toml", "duration_days = 0.3\n\n[market]\ntake_rte = 0.1\n")
    assert_one_error_line(cli("run", "-s", path), "market.take_rte", "typo.toml")


# ------------------------------------------------------------------ scenarios, schema


def test_scenarios_lists_builtins_with_descriptions(cli) -> None:
    outcome = cli("scenarios")

    assert outcome.code == 0, outcome.err
    assert {"default", "bench"} <= set(builtin_scenarios())
    lines = outcome.out.splitlines()
    for name in builtin_scenarios():
        description = load_scenario(name).description
        assert description, name
        line = next((line for line in lines if line.split()[:1] == [name]), None)
        assert line is not None, (name, outcome.out)
        assert description in line
    assert "Benchmark" in next(line for line in lines if line.startswith("bench"))


def test_schema_prints_the_scenario_json_schema(cli) -> None:
    outcome = cli("schema")

    assert outcome.code == 0, outcome.err
    schema = json.loads(outcome.out)
    assert "properties" in schema
    assert {"name", "duration_days", "market", "tenants", "providers", "gpus"} <= set(
        schema["properties"])
    assert "take_rate" in schema["$defs"]["MarketRules"]["properties"]


def test_help_lists_commands_and_run_options(cli) -> None:
    top = cli("--help")
    assert top.code == 0, top.err
    for command in ("run", "scenarios", "schema"):
        assert command in top.out

    run_help = cli("run", "--help")
    assert run_help.code == 0, run_help.err
    for option in ("--scenario", "--seed", "--set", "--out", "--json"):
        assert option in run_help.out


# --------------------------------------------------------------- user scenario files


def test_user_scenario_file_overlays_default_and_sets_take_rate(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "cheap_platform.toml",
                 "duration_days = 0.3\n\n[market]\nsettlement = \"aep23\"\n"
                 "take_rate = 0.05\n")
    outcome = cli("run", "--json", "-s", path)

    assert outcome.code == 0, outcome.err
    summary = json.loads(outcome.out)
    default = load_scenario("default")
    assert summary["simulated_days"] == pytest.approx(0.3)
    assert summary["money_conserved"] is True
    # everything the file does not name comes from the default scenario
    assert summary["mechanism"] == default.market.mechanism
    assert summary["tenants_count"] == default.tenants.count
    assert summary["leases_created"] > 0

    flows = summary["flows_micro"]
    fee, payout = flows["take_rate"], flows["lease_payout"]
    expected = 0.05 * (fee + payout)
    # one payment per lease in 0.3 days (providers withdraw daily); each fee rounds by < 1 µUSD
    assert abs(expected - fee) <= summary["leases_created"]
    assert fee / (fee + payout) == pytest.approx(0.05, rel=1e-3)
    assert summary["platform_revenue_usd"] == pytest.approx(fee / 1e6, abs=1e-6)


def test_set_overrides_a_scenario_file(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "mine.toml", "duration_days = 0.3\n\n[market]\n"
                 "settlement = \"aep23\"\ntake_rate = 0.05\n")
    outcome = cli("run", "--json", "-s", path, "--set", "market.take_rate=0.1")

    assert outcome.code == 0, outcome.err
    flows = json.loads(outcome.out)["flows_micro"]
    assert flows["take_rate"] / (flows["take_rate"] + flows["lease_payout"]) == pytest.approx(
        0.1, rel=1e-3)


# ---------------------------------------------------------------- real console script


def test_console_script_end_to_end(cli, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("gpumarket")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]
    env = {k: v for k, v in os.environ.items() if k not in RICH_ENV}
    args = ["run", "--json", "--seed", "7", *SHORT]

    ok = subprocess.run([*command, *args], capture_output=True, text=True, cwd=tmp_path,
                        env=env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["seed"] == 7
    # a separate process (its own hash seed) prints the very same bytes as in-process
    assert ok.stdout == cli(*args).out

    bad = subprocess.run([*command, "run", "--set", "market.mechanism=nope", *SHORT],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
                         check=False)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "Traceback" not in bad.stderr
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "market.mechanism" in lines[0], bad.stderr


# ---------------------------------------------------------- edge cases that once crashed


def test_all_job_shares_zero_is_bad_input(cli) -> None:
    zero = [arg for kind in ("training", "fine_tuning", "batch_inference", "online_inference")
            for arg in ("--set", f"tenants.jobs.{kind}.share=0")]
    assert_one_error_line(cli("run", "--json", *SHORT, *zero), "tenants.jobs")


@pytest.mark.parametrize("assignment", ["duration_days=inf", "tenants.wallet_usd=inf"])
def test_infinite_value_is_bad_input(cli, assignment: str) -> None:
    argv = ["run", "--json", "--set", "duration_days=0.1", "--set", assignment]
    assert_one_error_line(cli(*argv), assignment.partition("=")[0])


def test_scenario_file_not_utf8_is_bad_input(cli, tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "café"\n'.encode("latin-1"))
    assert_one_error_line(cli("run", "-s", str(path), *SHORT), "latin1.toml")


def test_run_out_below_a_regular_file_is_bad_input(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("keep me\n", encoding="utf-8")
    assert_one_error_line(cli("run", *SHORT, "--out", str(blocker / "sub")), "--out")


def test_error_line_shows_bracketed_file_name_verbatim(cli, tmp_path: Path) -> None:
    path = write(tmp_path, "sweep[take_rate=0.05].toml", "duration_days = [\n")
    assert_one_error_line(cli("run", "-s", path), "sweep[take_rate=0.05].toml")


def test_error_line_survives_markup_like_file_name(cli, tmp_path: Path) -> None:
    missing = tmp_path / "a[/]b.toml"
    assert_one_error_line(cli("run", "-s", str(missing), *SHORT), "a[/]b.toml")


# ---------------------------------------------------------- validate


def test_validate_json_rows_agree_with_theory(cli) -> None:
    outcome = cli("validate", "--bidders", "2,4", "--auctions", "400", "--seed", "2", "--json")
    assert outcome.code == 0, outcome.err
    rows = json.loads(outcome.out)
    assert [(r["mechanism"], r["bidders"]) for r in rows] == [
        ("first_price", 2), ("first_price", 4), ("second_price", 2), ("second_price", 4)]
    for row in rows:
        assert {"mechanism", "bidders", "mean_price", "efficiency"} <= row.keys()
        assert row["agrees"] and row["efficiency"] == pytest.approx(1.0)


def test_validate_table_names_every_mechanism(cli) -> None:
    outcome = cli("validate", "--bidders", "3", "--auctions", "200")
    assert outcome.code == 0, outcome.err
    assert "first_price" in outcome.out and "second_price" in outcome.out
    assert "theory" in outcome.out


@pytest.mark.parametrize("argv", [("--bidders", "1,2"), ("--bidders", "two"),
                                  ("--auctions", "3")])
def test_validate_bad_arguments_exit_2(cli, argv) -> None:
    assert_one_error_line(cli("validate", *argv), argv[0])


# ---------------------------------------------------------- tournament

TOURNEY = ("--seeds", "2", "--workers", "1", "--set", "duration_days=0.2")


def test_tournament_json_leaderboard(cli) -> None:
    outcome = cli("tournament", "--strategies", "cost_plus,truthful", *TOURNEY, "--json")
    assert outcome.code == 0, outcome.err
    board = json.loads(outcome.out)
    standings = board["standings"]
    assert board["reference"] == "cost_plus" and len(board["seeds"]) == 2
    assert sorted(s["strategy"] for s in standings) == ["cost_plus", "truthful"]
    profits = [s["profit_per_provider_usd"]["mean"] for s in standings]
    assert profits == sorted(profits, reverse=True)  # best first


def test_tournament_evolve_prints_shares_by_generation(cli) -> None:
    outcome = cli("tournament", "--strategies", "cost_plus,truthful", *TOURNEY,
                  "--evolve", "2")
    assert outcome.code == 0, outcome.err
    assert "generation" in outcome.out and "leaderboard" in outcome.out


@pytest.mark.parametrize(("strategies", "mention"), [("cost_plus,sniper", "sniper"),
                                                     ("cost_plus,cost_plus", "once")])
def test_tournament_bad_strategies_exit_2(cli, strategies, mention) -> None:
    assert_one_error_line(cli("tournament", "--strategies", strategies, *TOURNEY),
                          "--strategies", mention)

"""`gpumarket evaluate`: off-policy estimates from run folders (and a live session's replay),
with the re-run's realized value; bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.live.sessionlog import MarketRecord, SessionLog
from market.scenario import load_scenario
from tests.api.cli_helpers import assert_one_error_line

PROVIDERS = ('providers=[{archetype="datacenter", count=6}, {archetype="home_rig", count=20}, '
             '{name="probe", archetype="home_rig", count=2, strategy={name="explore", '
             'params={markup_low=0.5, markup_high=1.5}}}]')
SETS = ("--set", "duration_days=0.25", "--set", "tenants.arrivals_per_hour=20",
        "--set", PROVIDERS)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    """Two seeds of a small market with a two-provider explore population, events logged."""
    from api.cli.main import main

    root = tmp_path_factory.mktemp("evaluate")
    folders = []
    for seed in (1, 2):
        folder = root / f"seed{seed}"
        with pytest.raises(SystemExit) as done:
            main(["run", "--seed", str(seed), *SETS, "--out", str(folder), "--events",
                  "--json"])
        assert done.value.code in (0, None)
        folders.append(folder)
    return folders


def test_run_events_writes_the_log_and_the_scenario(run_dirs: list[Path]) -> None:
    folder = run_dirs[0]
    assert (folder / "events.parquet").is_file() and (folder / "scenario.json").is_file()
    scenario = json.loads((folder / "scenario.json").read_text())
    assert scenario["providers"][2]["strategy"]["name"] == "explore"
    assert scenario["duration_days"] == 0.25


def test_evaluate_reports_estimates_intervals_and_the_realized_value(cli, run_dirs) -> None:
    code, out, err = cli("evaluate", *map(str, run_dirs), "--population", "probe",
                         "--strategy", "cost_plus{markup=0.8}", "--format", "json")
    assert code in (0, None), err
    data = json.loads(out)   # stdout is the report; the long steps are noted on stderr
    assert err.count("evaluate: ") == 4 and "running the market again" in err
    assert len(data["runs"]) == 2 and data["pooled"]["units"] == sum(
        run["units"] for run in data["runs"])
    for run in [*data["runs"], data["pooled"]]:
        assert run["realized_usd"] is not None and run["logged_usd"] is not None
        assert set(run["estimates"]) == {"dm", "ips", "snips", "dr"}
        for figure in run["estimates"].values():
            assert figure["ci_low_usd"] <= figure["estimate_usd"] <= figure["ci_high_usd"]
            assert figure["covers_realized"] in (True, False)
            assert figure["gap_usd"] == pytest.approx(
                run["realized_usd"] - figure["estimate_usd"])
    # The pooled realized value is the runs' sum.
    assert data["pooled"]["realized_usd"] == pytest.approx(
        sum(run["realized_usd"] for run in data["runs"]))
    # Same inputs, same output.
    assert cli("evaluate", *map(str, run_dirs), "--population", "probe", "--strategy",
               "cost_plus{markup=0.8}", "--json").out == out


def test_one_estimator_without_the_rerun_in_plain_text(cli, run_dirs) -> None:
    code, out, err = cli("evaluate", str(run_dirs[0]), "--population", "probe", "--strategy",
                         "cost_plus{markup=0.8}", "--estimator", "dm", "--no-rerun",
                         "--format", "plain")
    assert code in (0, None), err
    assert "DM (direct method)" in out and "IPS (inverse propensity)" not in out
    assert "DM reproduces the logged outcome" in out and "100.0%" in out
    code, out, _ = cli("evaluate", str(run_dirs[0]), "--population", "probe", "--strategy",
                       "cost_plus{markup=0.8}", "--estimator", "ips", "--no-rerun",
                       "--format", "json")
    figures = json.loads(out)["runs"][0]
    assert list(figures["estimates"]) == ["ips"] and figures["realized_usd"] is None
    assert figures["capacity"] == "less DM's own leases"
    code, out, _ = cli("evaluate", str(run_dirs[0]), "--population", "probe", "--strategy",
                       "cost_plus{markup=0.8}", "--no-rerun", "--capacity-as-logged",
                       "--format", "json")
    as_logged = json.loads(out)["runs"][0]
    assert as_logged["capacity"] == "as logged" and as_logged["crowded"] == 0
    assert as_logged["won_dm"] >= figures["won_dm"]


def test_a_population_without_a_known_density_gets_dm_and_reasons(cli, run_dirs) -> None:
    code, out, _ = cli("evaluate", str(run_dirs[0]), "--population", "home_rig", "--strategy",
                       "cost_plus{markup=0.8}", "--no-rerun", "--format", "json")
    assert code in (0, None)
    estimates = json.loads(out)["runs"][0]["estimates"]
    assert estimates["dm"]["available"]
    assert not estimates["dr"]["available"] and "bid_density" in estimates["dr"]["reason"]


def test_bad_input_is_one_line(cli, run_dirs, tmp_path: Path) -> None:
    folder = str(run_dirs[0])
    assert_one_error_line(cli("evaluate", folder, "--population", "nobody", "--strategy",
                              "cost_plus"), "--population", "nobody", "probe")
    assert_one_error_line(cli("evaluate", str(tmp_path), "--population", "probe",
                              "--strategy", "cost_plus"), "RUN_DIR", "events.parquet")
    # Every folder is checked before any is evaluated: one line, nothing else.
    assert_one_error_line(cli("evaluate", folder, str(tmp_path), "--population", "probe",
                              "--strategy", "cost_plus"), "RUN_DIR", str(tmp_path))
    assert_one_error_line(cli("evaluate", folder, "--population", "probe", "--strategy",
                              "nosuch"), "--strategy", "nosuch")
    assert_one_error_line(cli("evaluate", folder, "--population", "probe", "--strategy",
                              "cost_plus{markup=-1}"), "--strategy", "markup")
    assert_one_error_line(cli("evaluate", folder, "--population", "probe", "--strategy",
                              "cost_plus", "--estimator", "best"), "--estimator", "dm")
    assert_one_error_line(cli("evaluate", folder, "--population", "probe", "--strategy",
                              "cost_plus", "--bandwidth", "0"), "--bandwidth")
    # A damaged or foreign events.parquet, a summary without a seed.
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("scenario.json", "summary.json"):
        (damaged / name).write_bytes((run_dirs[0] / name).read_bytes())
    (damaged / "events.parquet").write_text("not parquet")
    assert_one_error_line(cli("evaluate", str(damaged), "--population", "probe", "--strategy",
                              "cost_plus"), "RUN_DIR", "events.parquet is not a Parquet")
    (damaged / "events.parquet").write_bytes((run_dirs[0] / "leases.parquet").read_bytes())
    assert_one_error_line(cli("evaluate", str(damaged), "--population", "probe", "--strategy",
                              "cost_plus"), "RUN_DIR", "not an event log")
    (damaged / "summary.json").write_text('{"seed": "one"}')
    assert_one_error_line(cli("evaluate", str(damaged), "--population", "probe", "--strategy",
                              "cost_plus"), "RUN_DIR", "seed")
    assert_one_error_line(cli("evaluate", folder, "--population", "probe", "--strategy",
                              "x{" * 2_000), "--strategy", "4,000 characters")
    assert_one_error_line(cli("run", "--events"), "--events", "--out")
    assert_one_error_line(cli("replay", str(tmp_path / "x.db"), "--market", "m-1",
                              "--events"), "--events", "--out")


def test_a_live_sessions_replay_is_evaluated(cli, tmp_path: Path) -> None:
    """A session log (outside tenants' orders on top of the scenario's) replayed with
    --events, then evaluated: its jobs' hours come from the lease only (outside commands do
    not rebuild from the scenario alone), and the figures are there."""
    scenario = load_scenario("default", [SETS[1], SETS[3], SETS[5]])
    db = tmp_path / "live.db"
    log = SessionLog(db)
    log.create_market(MarketRecord("m-aaaa0001", "ope", scenario.name,
                                   json.dumps(scenario.model_dump(mode="json")), 5, 60.0,
                                   "running", 0.0, "c" * 64, 1_700_000_000.0))
    commands = [(0.0, None, "join_tenant", {"role": "tenant", "name": "alice"}, "t" * 64)]
    commands += [(600.0 * i, 0, "post_order", {"gpu_models": ["rtx4090"], "gpus": 1,
                                              "max_price_usd_per_gpu_hour": 2.0,
                                              "hours": 1.0}, None) for i in range(1, 20)]
    log.append("m-aaaa0001", commands, commands[-1][0])
    log.update("m-aaaa0001", clock_s=20_000.0)
    log.close()
    out = tmp_path / "replayed"
    code, _, err = cli("replay", str(db), "--market", "m-aaaa0001", "--out", str(out),
                       "--events", "--json")
    assert code in (0, None), err
    assert (out / "events.parquet").is_file() and (out / "scenario.json").is_file()
    code, printed, err = cli("evaluate", str(out), "--population", "probe", "--strategy",
                             "cost_plus{markup=0.8}", "--no-rerun", "--format", "json")
    assert code in (0, None), err
    run = json.loads(printed)["runs"][0]
    assert run["units"] > 0 and run["job_hours"] == "lease only"
    assert run["estimates"]["dm"]["available"] and run["estimates"]["dr"]["available"]
    ips = run["estimates"]["ips"]
    assert ips["available"] or "--bandwidth" in ips["reason"]

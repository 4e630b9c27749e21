"""Hostile input on the command line: one `error:` line naming the field, exit 2, never a
traceback, and nothing built or run first.

Most cases call `api.cli.main.main(argv)` in-process (as tests/api/test_cli.py does); a few run
the console script in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.cli.main import main
from market import budget

#: Seconds a refusal may take: it comes before anything is built.
PROMPT_S = 3.0
RICH_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR")
HUGE = "9" * 5000
DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """`cli(*argv)` -> (exit code, stdout, stderr lines), timed."""
    for name in RICH_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "400")  # one error line stays one line

    def invoke(*argv: str) -> tuple[int, str, list[str]]:
        capsys.readouterr()
        started = time.perf_counter()
        with pytest.raises(SystemExit) as exit_info:
            main(list(argv))
        out, err = capsys.readouterr()
        if exit_info.value.code == 2:
            assert time.perf_counter() - started < PROMPT_S, argv[:3]
        return exit_info.value.code, out, [line for line in err.splitlines() if line.strip()]

    return invoke


def refused(cli, *argv: str, names: str) -> str:
    code, out, err = cli(*argv)
    assert code == 2, (code, err)
    assert out == "" and len(err) == 1, err
    line = err[0]
    assert line.startswith("error: ") and "Traceback" not in line
    assert names in line, line
    return line


@pytest.mark.parametrize("setting, names", [
    ("tenants.spikes.multiplier=1e300", "tenants.spikes.multiplier"),
    ("tenants.weekly_growth=1e300", "tenants.weekly_growth"),
    ("tenants.arrivals_per_hour=1e12", "tenants.arrivals_per_hour"),
    ("duration_days=1e9", "duration_days"),
    ("duration_days=1e300", "duration_days"),
    ("market.withdraw_interval_s=1e-9", "market.withdraw_interval_s"),
    ("market.price_index_interval_s=1e-9", "market.price_index_interval_s"),
    ("providers.1.count=2000000", "providers.1.count"),
    ("providers.1.count=1000000000", "providers.1.count"),
    ("tenants.count=1e8", "tenants.count"),
    ("tenants.count=1000000000", "tenants.count"),
    ("tenants.deposit_factor=1e300", "tenants.deposit_factor"),
    ("providers.1.gpus_per_provider=[1e9, 1e9]", "providers.1.gpus_per_provider"),
    ("gpus.h100.list_usd_per_gpu_hour=1e15", "gpus.h100.list_usd_per_gpu_hour"),
    ("gpus.h100.list_usd_per_gpu_hour=1e308", "gpus.h100.list_usd_per_gpu_hour"),
    (f"tenants.count={HUGE}", "tenants.count"),
    (f"duration_days={DEEP}", "duration_days"),
    ("market.mechanism_params={a=" + "{a=" * 3000 + "1" + "}" * 3001, "mechanism_params"),
    ("a." * 3000 + "b=1", "levels deep"),
])
def test_run_refuses_hostile_settings_in_one_line(cli, setting: str, names: str) -> None:
    line = refused(cli, "run", "--json", "--set", setting, names=names)
    assert len(line) < 400


def test_run_refusal_says_the_valid_range(cli) -> None:
    line = refused(cli, "run", "--set", "tenants.deposit_factor=1e300",
                   names="field `tenants.deposit_factor`")
    assert "expected a number > 0 and <= 100 (got 1e+300)" in line


def test_a_run_over_budget_is_refused_naming_the_field(cli) -> None:
    line = refused(cli, "run", "--set", "tenants.arrivals_per_hour=20000",
                   names="tenants.arrivals_per_hour: the run would post about")
    assert "--allow-large" in line


def test_allow_large_bypasses_the_budget(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "MAX_EVENTS", 10)  # even a short run is "large" now
    short = ("--set", "duration_days=0.05")
    refused(cli, "run", "--json", *short, names="--allow-large")
    code, out, err = cli("run", "--json", *short, "--allow-large")
    assert code == 0, err
    assert '"money_conserved": true' in out


def test_what_only_the_market_can_check_is_still_one_line(cli) -> None:
    """Checks made when the market is built (here: auctions that do not fit in the run)."""
    line = refused(cli, "run", "-s", "textbook", "--set", "textbook.auctions=100000",
                   names="duration_days")
    assert "auctions need at least" in line


def test_tournament_checks_the_budget_before_anything_runs(cli) -> None:
    refused(cli, "tournament", "--strategies", "cost_plus,hedge", "--set",
            "tenants.arrivals_per_hour=20000", names="tenants.arrivals_per_hour")
    refused(cli, "tournament", "--strategies", "cost_plus,hedge", "--set",
            f"tenants.count={HUGE}", names="tenants.count")
    assert "--allow-large" in cli("tournament", "--help")[1]


def test_scenario_files_with_deep_nesting_huge_integers_or_prices(cli, tmp_path: Path) -> None:
    cases = {
        "deep.toml": (f"x = {DEEP}\n", "nested too deeply"),
        "deep_tables.toml": ("[market]\nmechanism_params = " + "{a=" * 3000 + "1"
                             + "}" * 3000 + "\n", "nested too deeply"),
        "huge.toml": (f"duration_days = {HUGE}\n", "too many digits"),
        "price.toml": ("[gpus.h100]\nlist_usd_per_gpu_hour = 1e308\n",
                       "gpus.h100.list_usd_per_gpu_hour"),
        "overflow.toml": ("[tenants]\ndeposit_factor = 1e300\n", "tenants.deposit_factor"),
        "sizes.toml": ("[[providers]]\narchetype = \"home_rig\"\ncount = 1000000000\n",
                       "providers.0.count"),
    }
    for name, (text, names) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        line = refused(cli, "run", "--scenario", str(path), names=names)
        assert name in line or names in line


def test_sweep_with_a_ten_billion_point_grid_is_refused_before_expansion(cli,
                                                                         tmp_path: Path) -> None:
    values = ", ".join(str(i / 100) for i in range(100))
    grid = "".join(f'"tenants.jobs.training.share" = [{values}]\n'.replace(
        "training", kind) for kind in ("training", "fine_tuning", "batch_inference",
                                       "online_inference"))
    grid += f'"market.take_rate" = [{values}]\n'
    path = tmp_path / "huge.toml"
    path.write_text(f'name = "huge"\nbase = "default"\n\n[grid]\n{grid}', encoding="utf-8")
    line = refused(cli, "sweep", str(path), "--out", str(tmp_path / "out"), names="grid")
    assert "10,000,000,000" in line
    assert not (tmp_path / "out").exists()


def test_sweep_point_over_budget_is_refused_naming_the_point(cli, tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text('name = "big"\nbase = "default"\n\n[grid]\n'
                    '"tenants.arrivals_per_hour" = [48, 20000]\n', encoding="utf-8")
    line = refused(cli, "sweep", str(path), "--out", str(tmp_path / "out"),
                   names="tenants.arrivals_per_hour")
    assert "--allow-large" in line and not (tmp_path / "out").exists()
    assert "--allow-large" in cli("sweep", "--help")[1]


@pytest.mark.parametrize("argv, names", [
    (["validate", "--auctions", HUGE], "--auctions"),
    (["validate", "--bidders", f"2,{HUGE}"], "--bidders"),
    (["validate", "--bidders", "2," * 5000 + "3"], "--bidders"),
    (["validate", "--auctions", "1000000000"], "--auctions"),
    (["validate", "--deviations", "--shadings", "1e300"], "--shadings"),
    (["run", "--seed", HUGE, "--set", "duration_days=0.01"], "--seed"),
    (["tournament", "--strategies", "cost_plus,hedge", "--seeds", "1000000000"], "--seeds"),
])
def test_other_options_refuse_absurd_sizes(cli, argv: list[str], names: str) -> None:
    code, out, err = cli(*argv)
    assert code == 2 and out == "", (code, err)
    assert not any("Traceback" in line for line in err)
    assert any(names in line for line in err), err


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("gpumarket")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


@pytest.mark.parametrize("setting, names", [
    (f"tenants.count={HUGE}", "tenants.count"),
    (f"duration_days={DEEP}", "duration_days"),
    ("tenants.deposit_factor=1e300", "tenants.deposit_factor"),
])
def test_console_script_prints_one_line_and_exits_2(setting: str, names: str,
                                                     tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in RICH_ENV}
    env["COLUMNS"] = "400"
    done = subprocess.run([*_console_script(), "run", "--set", setting], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout == "" and len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("error: ") and names in lines[0]

"""`gpumarket run --out` and `gpumarket report DIR` on a run with entry and exit: the summary,
the entry_exit table and report.html with its figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq

from tests.api.cli_helpers import assert_one_error_line

SHORT = ("--scenario", "longrun", "--set", "duration_days=49", "--seed", "2")
FIGURES = {"price_by_model.png", "utilization_by_model.png", "providers_on_market.png",
           "long_run_profit.png"}


def _figures_shown(page: str, folder: Path) -> set[str]:
    shown = set(re.findall(r'<img src="report/([^"]+)"', page))
    assert all((folder / "report" / name).stat().st_size > 1_000 for name in shown)
    return shown


def test_run_out_writes_the_entry_exit_table_and_a_report_with_its_plots(cli, tmp_path):
    folder = tmp_path / "run"
    outcome = cli("run", *SHORT, "--out", str(folder), "--format", "plain")

    assert outcome.code == 0, outcome.err
    assert "Entry and exit" in outcome.out and "datacenters" in outcome.out
    assert f"report:{folder / 'report.html'}" in outcome.out.replace("\n", "")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    figures = summary["entry_exit"]
    assert figures["entered"] >= 1 and summary["money_conserved"]
    table = pq.read_table(folder / "entry_exit.parquet").to_pylist()
    assert [row["time_s"] / 86_400 for row in table] == [7, 14, 21, 28, 35, 42, 49]
    assert table[-1]["entered"] == figures["by_population"]["datacenters"]["entered"]
    providers = pq.read_table(folder / "providers.parquet").to_pylist()
    late = [row for row in providers if row["arrived_s"] > 0]
    assert len(late) == figures["entered"]
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert _figures_shown(page, folder) == FIGURES
    assert "Long-run profit per GPU-hour" in page


def test_report_renders_a_run_folder_again(cli, tmp_path):
    folder = tmp_path / "run"
    assert cli("run", *SHORT, "--out", str(folder), "--json").code == 0
    (folder / "report.html").unlink()
    for old in (folder / "report").iterdir():
        old.unlink()

    outcome = cli("report", str(folder), "--json")

    assert outcome.code == 0, outcome.err
    assert json.loads(outcome.out) == {"report": str(folder / "report.html")}
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert _figures_shown(page, folder) == FIGURES


def test_report_on_a_run_without_entry_and_exit_is_bad_input(cli, tmp_path):
    folder = tmp_path / "run"
    assert cli("run", "--set", "duration_days=0.1", "--out", str(folder), "--json").code == 0
    assert not (folder / "report.html").exists()  # only runs with entry and exit get one

    assert_one_error_line(cli("report", str(folder)), "no entry and exit")
    assert not (folder / "report.html").exists()


def test_a_bad_entry_exit_field_is_one_error_line(cli):
    outcome = cli("run", "--scenario", "longrun", "--set", "entry_exit.window_days=10")
    assert_one_error_line(outcome, "entry_exit.window_days", "multiple of review_days")


def test_longrun_is_a_built_in_scenario(cli):
    outcome = cli("scenarios", "--json")
    assert outcome.code == 0
    assert "longrun" in {row["name"] for row in json.loads(outcome.out)}

"""Output for every destination (api/cli/output.py, api/cli/report.py): off a terminal no table cell
is cut (`…`) and no number is split, `--format markdown` gives valid pipe tables, `--json`
labels its confidence intervals and keeps them in each figure's range, `--help` shows every
option whole, and progress reaches a log as plain lines.

Commands run in-process with stdout and stderr captured (not a terminal), at a width far
below the tables', so any cutting would show; one runs as a real process into a file.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
import typer.rich_utils

from api.cli.main import app, main
from api.cli.output import Output, ProgressLines, duration, markdown, plain
from market.experiments import labels
from market.experiments.intervals import NON_NEGATIVE, UNIT, labelled, natural_range

SHORT = ("--set", "duration_days=0.3")
TAKE_RATE = "market.take_rate"
TOURNEY = ("--seeds", "2", "--workers", "1", "--set", "duration_days=0.2")
RICH_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "TERMINAL_WIDTH",
            "GPUMARKET_PROGRESS_SECONDS")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """`cli(*argv)` runs `gpumarket argv` in-process: (exit code, stdout, stderr)."""
    for name in RICH_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "40")  # narrower than any table: nothing may be cut
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", None)  # configure_help sets it

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(list(argv))
        out, err = capsys.readouterr()
        return exit_info.value.code, out, err

    return invoke


def ok(outcome: tuple[int, str, str]) -> str:
    """stdout of a command that succeeded, checked to have no cut cell."""
    code, out, err = outcome
    assert code == 0, err
    assert "…" not in out, out
    return out


def line_of(text: str, first_word: str) -> str:
    """The one line of `text` whose first word is `first_word`."""
    found = [line for line in text.splitlines() if line.split()[:1] == [first_word]]
    assert len(found) == 1, (first_word, text)
    return found[0]


# ----------------------------------------------------------------------------- markdown

CELLS = re.compile(r"(?<!\\)\|")


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table in `text`, checked to be valid GitHub-flavoured markdown: a header
    row, a delimiter row of `---` / `---:` cells, and body rows of the same number of cells.
    Returns each table's rows (header first), cells stripped."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            rows = [[cell.strip() for cell in CELLS.split(row)[1:-1]] for row in block]
            assert all(row.endswith("|") for row in block), block
            assert len(rows) >= 2, block
            assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in rows[1]), rows[1]
            assert {len(row) for row in rows} == {len(rows[0])}, block
            tables.append([rows[0], *rows[2:]])
            block = []
    return tables


# ----------------------------------------------------------------------------- run

def test_run_off_a_terminal_shows_every_cell_whole(cli) -> None:
    summary = json.loads(ok(cli("run", "--json", *SHORT)))
    out = ok(cli("run", *SHORT))
    assert "\x1b[" not in out  # no colour codes in a file
    prices = summary["price_usd_per_gpu_hour"]
    assert prices
    for model, row in prices.items():  # each model on one line, with its figures whole
        cells = line_of(out, model).split()
        assert cells[1] == f"{row['count']:,}" and cells[2] == f"{row['mean']:.3f}"
        assert cells[6] == f"{row['gpu_hours']:,.0f}"
    for archetype, row in summary["providers"].items():
        cells = line_of(out, archetype).split()
        assert cells[1:3] == [f"{row['providers']:,}", f"{row['gpus']:,}"]
    for label, value in (("orders posted (with re-posts)", f"{summary['orders_posted']:,}"),
                         ("fill rate", f"{summary['fill_rate']:.1%}"),
                         ("allocative efficiency", f"{summary['allocative_efficiency']:.1%}")):
        assert re.search(rf"^  {re.escape(label)}\s+{re.escape(value)}$", out, re.M), label
    for reason, count in summary["lease_close_reasons"].items():
        assert re.search(rf"^\s+(lease close reasons\s+)?{reason} {count:,}$", out, re.M)


def test_run_as_markdown_is_valid_pipe_tables(cli) -> None:
    summary = json.loads(ok(cli("run", "--json", *SHORT)))
    out = ok(cli("run", *SHORT, "--format", "markdown"))
    tables = markdown_tables(out)
    assert summary["no_bids"]["expired_orders"]  # so the "Why no bids?" table is shown
    # Settled in AKT (the default's `bme`), the "Burn-Mint Equilibrium" table is shown too.
    settled_in_akt = "bme" in summary
    assert len(tables) == 6 + settled_in_akt
    bme = [t for t in tables if t[1][0] == "AKT price, start → end (min–max)"]
    assert len(bme) == settled_in_akt
    assert all(t[-1][0] == "providers' AKT at settlement / when sold" for t in bme)
    prices = next(t for t in tables if t[0][0] == "GPU")
    assert sorted(row[0] for row in prices[1:]) == sorted(summary["price_usd_per_gpu_hour"])
    assert "## gpumarket run" in out and "**Who paid what**" in out


def test_run_format_json_is_the_json_and_bad_format_is_one_line(cli) -> None:
    assert json.loads(ok(cli("run", *SHORT, "--format", "json")))["seed"] == 1
    code, out, err = cli("run", *SHORT, "--format", "html")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "error: --format: expected one of table, plain, markdown, json, got 'html'"]


def test_the_console_script_into_a_file_cuts_nothing(tmp_path: Path) -> None:
    """A real `gpumarket run > out.txt` (the first thing issue 14 measured)."""
    env = {k: v for k, v in os.environ.items() if k not in (*RICH_ENV, "COLUMNS")}
    target = tmp_path / "out.txt"
    with target.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "api.cli", "run", *SHORT], stdout=out,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120,
                              check=False)
    assert done.returncode == 0, done.stderr
    text = target.read_text("utf-8")
    assert "…" not in text
    assert re.search(r"^ a100-80gb +\d", text, re.M) and re.search(r"^ datacenter +\d", text,
                                                                       re.M)


# ----------------------------------------------------------------------------- validate

def test_validate_text_matches_json_and_the_interval_is_labelled(cli) -> None:
    argv = ("validate", "--bidders", "2,3", "--auctions", "100")
    rows = json.loads(ok(cli(*argv, "--json")))
    out = ok(cli(*argv))
    for row in rows:
        price = row["mean_price"]
        assert set(price) >= {"mean", "ci_low", "ci_high", "method", "confidence", "n"}
        assert price["method"] == "normal" and price["n"] == 100 and price["ci_low"] >= 0
        assert price["ci_low"] <= price["mean"] <= price["ci_high"]
        line = next(line for line in out.splitlines() if line.split()[:3] == [
            row["mechanism"], f"({row['strategy']})", str(row["bidders"])])
        assert f"{price['mean']:.4f}" in line.split()
        assert f"{price['ci_low']:.4f}–{price['ci_high']:.4f}" in line.split()
    tables = markdown_tables(ok(cli(*argv, "--format", "markdown")))
    assert len(tables) == 1 and len(tables[0]) == 1 + len(rows)


def test_validate_deviations_off_a_terminal(cli) -> None:
    argv = ("validate", "--deviations", "--bidders", "2", "--auctions", "60", "--shadings",
            "0.9,1.1", "--workers", "1")
    rows = json.loads(ok(cli(*argv, "--json")))
    out = ok(cli(*argv))
    for row in rows:
        gain = row["best"]["gain"]
        assert gain["method"] == "normal" and "range" not in gain  # a gain has either sign
        assert f"{gain['mean']:+.4f}" in line_of(out, row["mechanism"]).split()
    assert len(markdown_tables(ok(cli(*argv, "--format", "markdown")))[0]) == 1 + len(rows)


# ----------------------------------------------------------------------------- tournament

def test_tournament_json_is_labelled_and_clipped(cli) -> None:
    board = json.loads(ok(cli("tournament", "--strategies", "cost_plus,truthful", *TOURNEY,
                              "--json")))
    assert board["reference"] == "cost_plus" and board["lineup"] == ["cost_plus", "truthful"]
    assert board["mean_profit_per_provider_usd"]["method"] == "student_t"
    clipped = 0
    for standing in board["standings"]:
        for figure in ("utilization", "win_rate"):
            ci = standing[figure]
            assert ci["method"] == "student_t" and ci["n"] == 2 and ci["range"] == [0.0, 1.0]
            assert 0.0 <= ci["ci_low"] <= ci["mean"] <= ci["ci_high"] <= 1.0
            clipped += ci["clipped"]
        assert standing["profit_per_provider_usd"].keys() >= {"mean", "ci_low", "ci_high"}
        for name, difference in standing["vs_reference"].items():
            if name in ("utilization", "win_rate"):
                assert difference["range"] == [-1.0, 1.0]
                assert -1.0 <= difference["ci_low"] <= difference["ci_high"] <= 1.0
    # two seeds: t(0.975, 1) = 12.7 standard errors; some share interval reaches past a bound
    assert clipped > 0


def test_tournament_table_off_a_terminal_matches_json(cli) -> None:
    argv = ("tournament", "--strategies", "cost_plus,truthful", *TOURNEY)
    board = json.loads(ok(cli(*argv, "--json")))
    out = ok(cli(*argv))
    for rank, standing in enumerate(board["standings"], start=1):
        line = next(line for line in out.splitlines() if line.split()[:2] ==
                    [str(rank), standing["strategy"]])
        assert f"{standing['profit_per_provider_usd']['mean']:,.0f}" in line.split()
        assert f"{standing['utilization']['mean']:.1%}" in line.split()
    assert "clipped to [0%, 100%]" in " ".join(out.split())


def test_tournament_evolve_json_has_one_board_per_generation(cli) -> None:
    argv = ("tournament", "--strategies", "cost_plus,truthful", *TOURNEY, "--evolve", "2")
    history = json.loads(ok(cli(*argv, "--json")))["generations"]
    assert len(history) == 2
    assert all(s["share"] >= 0 for board in history for s in board["standings"])
    tables = markdown_tables(ok(cli(*argv, "--format", "markdown")))
    assert [table[0][0] for table in tables] == ["generation", "#"]


# ----------------------------------------------------------------------------- sweeps

SWEEP = """
name = "tiny"
description = "Two take rates on a fifth of a day."
base = "default"
seed = 3
replications = 2

[set]
duration_days = 0.1

[grid]
"market.take_rate" = [0.1, 0.2]
"""


def test_sweep_progress_lines_on_stderr_and_report_formats(
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUMARKET_PROGRESS_SECONDS", "0")  # a line on every finished run
    file = tmp_path / "tiny.toml"
    file.write_text(SWEEP, encoding="utf-8")
    folder = tmp_path / "out"
    code, out, err = cli("sweep", str(file), "--out", str(folder), "--workers", "1", "--json")
    assert code == 0, err
    outcome = json.loads(out)
    assert (outcome["runs"], outcome["done"], outcome["failed"]) == (4, 4, 0)
    progress = re.findall(r"^sweep tiny: (\d)/4 runs done, 0 failed, \d+ s elapsed", err, re.M)
    assert progress[-1] == "4" and len(progress) >= 4, err
    assert "ETA" in err

    report = json.loads(ok(cli("report", str(folder), "--json")))
    assert [g["values"]["market.take_rate"] for g in report["groups"]] == [0.1, 0.2]
    for group in report["groups"]:
        fill = group["metrics"]["fill_rate"]
        assert fill["method"] == "student_t" and fill["n"] == 2 and fill["range"] == [0, 1]
        assert 0 <= fill["ci_low"] <= fill["mean"] <= fill["ci_high"] <= 1
    assert report["pass_through"] and report["pass_through"][0]["pass_through"]["method"] == \
        "fieller"
    text = ok(cli("report", str(folder)))
    fill_rate = labels.metric("fill_rate")  # shown in percent, as in report.html
    for group in report["groups"]:
        mean = group["metrics"]["fill_rate"]["mean"] * fill_rate.scale
        line = next(line for line in text.splitlines() if line.split()[:3] == [
            labels.format_param_value(TAKE_RATE, group["values"][TAKE_RATE]), "2", "0"])
        shown = line.split()[3]  # the mean, rounded as the interval's width allows
        decimals = len(shown.partition(".")[2])
        assert abs(float(shown.replace(",", "")) - mean) <= 0.5 * 10 ** -decimals + 1e-12
    tables = markdown_tables(ok(cli("report", str(folder), "--format", "markdown")))
    assert tables[0][0][:3] == [labels.parameter(TAKE_RATE).title, "runs", "failed"]


def test_listings_in_every_format(cli) -> None:
    sweeps = json.loads(ok(cli("sweeps", "--json")))
    assert {"take_rate", "mechanisms"} <= {row["name"] for row in sweeps}
    text = ok(cli("sweeps"))
    for row in sweeps:
        cells = line_of(text, row["name"]).split()
        assert cells[1] == f"{row['runs']:,}" and row["description"] in line_of(text,
                                                                                 row["name"])
    scenarios = json.loads(ok(cli("scenarios", "--format", "json")))
    table = markdown_tables(ok(cli("scenarios", "--format", "markdown")))[0]
    assert table[1:] == [[row["name"], row["description"]] for row in scenarios]


# ----------------------------------------------------------------------------- help

def _commands() -> dict[str, click.Command]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["", *_commands()])
def test_help_off_a_terminal_shows_every_option_whole(cli, command: str) -> None:
    out = ok(cli(*([command] if command else []), "--help"))
    if command:
        for param in _commands()[command].params:
            for name in [*param.opts, *param.secondary_opts]:
                if name.startswith("-"):
                    assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", out), name


# ----------------------------------------------------------------------------- units

def test_labelled_clips_to_the_range_and_says_so() -> None:
    inside = labelled(0.5, 0.4, 0.6, method="student_t", n=8, bounds=UNIT)
    assert inside == {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "method": "student_t",
                      "confidence": 0.95, "n": 8, "range": [0.0, 1.0], "clipped": False}
    edge = labelled(0.98, 0.9, 1.07, method="student_t", n=3, bounds=UNIT)
    assert (edge["ci_low"], edge["ci_high"], edge["clipped"]) == (0.9, 1.0, True)
    price = labelled(0.01, -0.02, 0.04, method="normal", n=50, bounds=NON_NEGATIVE)
    assert (price["ci_low"], price["range"], price["clipped"]) == (0.0, [0.0, None], True)
    none = labelled(2.0, math.nan, math.nan, method="student_t", n=1)
    assert none["ci_low"] is None and "range" not in none
    json.dumps([inside, edge, price, none], allow_nan=False)


@pytest.mark.parametrize(("metric", "bounds"), [
    ("fill_rate", UNIT), ("providers.home_rig.utilization", UNIT),
    ("allocative_efficiency", UNIT), ("price_usd_per_gpu_hour.h100.mean", NON_NEGATIVE),
    ("orders_posted", NON_NEGATIVE), ("lease_close_reasons.owner", NON_NEGATIVE),
    ("tenant_savings_vs_list", None), ("providers.datacenter.long_run_profit_usd", None),
    ("welfare.outside_surplus_by_side_usd.tenants", None), ("flows_micro.take_rate", None),
])
def test_natural_ranges_of_sweep_metrics(metric: str, bounds) -> None:
    assert natural_range(metric) == bounds


def test_plain_and_markdown_render_blocks() -> None:
    from rich.table import Table

    table = Table(title="t")
    table.add_column("name")
    table.add_column("value", justify="right")
    table.add_row("a|b", "[green]1,234,567.891[/]")
    table.add_row("x" * 150, "2")
    text = plain([table, "a note"])
    assert "x" * 150 in text and "1,234,567.891" in text and "…" not in text
    assert "[green]" not in text and text.splitlines()[-1] == "a note"
    md = markdown([table])
    assert markdown_tables(md) == [[["name", "value"], ["a\\|b", "1,234,567.891"],
                                    ["x" * 150, "2"]]]
    with pytest.raises(ValueError, match="json"):
        Output("json")


def test_progress_lines_wait_for_their_interval() -> None:
    class Stream:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def write(self, text: str) -> None:
            self.lines.append(text)

        def flush(self) -> None:
            pass

    now = [0.0]
    stream = Stream()
    lines = ProgressLines(lambda done, total, elapsed, _: f"{done:.0f}/{total:.0f} {elapsed:g}",
                          stream=stream, every_s=5.0, clock=lambda: now[0])
    lines.update(1, 4)
    now[0] = 4.9
    lines.update(2, 4)
    assert stream.lines == []
    now[0] = 5.0
    lines.update(3, 4)
    now[0] = 6.0
    lines.update(4, 4)
    assert stream.lines == ["3/4 5\n"]
    assert [duration(s) for s in (8, 180, 9000)] == ["8 s", "3 min", "2 h 30 min"]


def test_tournament_progress_lines_on_stderr(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUMARKET_PROGRESS_SECONDS", "0")  # a line on every finished market
    code, out, err = cli("tournament", "--strategies", "cost_plus,truthful", *TOURNEY,
                         "--evolve", "2", "--json")
    assert code == 0, err
    json.loads(out)  # stdout stays one JSON document
    done = [int(n) for n in re.findall(r"^tournament: (\d)/4 markets done", err, re.M)]
    assert done and done[-1] == 4 and done == sorted(done), err  # 2 generations × 2 seeds


def test_deviation_progress_lines_on_stderr(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUMARKET_PROGRESS_SECONDS", "0")  # a line on every finished market
    code, out, err = cli("validate", "--deviations", "--bidders", "2", "--auctions", "40",
                         "--shadings", "1.1", "--workers", "1", "--json")
    assert code == 0 or code == 1, err  # 1: a deviation paid (40 auctions are noisy)
    json.loads(out)
    done = re.findall(r"^validate --deviations \(n=2\): (\d+)/(\d+) markets done", err, re.M)
    assert done and done[-1][0] == done[-1][1], err

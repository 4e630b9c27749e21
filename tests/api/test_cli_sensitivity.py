"""`gpumarket sensitivity` and `gpumarket report` on its directory, as a user meets them.

A four-sample analysis of a tenth of a day (16 runs) runs once for the module; its JSON
output names the files it wrote, the table shows every metric x parameter, `report`
re-renders the page from the directory alone, and bad input is one line with exit code 2.
"""

from __future__ import annotations

import json

import pytest

from tests.api.cli_helpers import assert_one_error_line
from tests.market.test_sensitivity import SMALL


def test_an_analysis_runs_prints_and_reports(tmp_path, cli):
    path = tmp_path / "small.toml"
    path.write_text(SMALL, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = cli("sensitivity", str(path), "--out", str(out),
                            "--workers", "1", "--json")
    assert code == 0, err
    printed = json.loads(stdout)
    assert printed["runs"] == 16 and printed["out"] == str(out)
    assert {(row["metric"], row["parameter"]) for row in printed["indices"]} == {
        (metric, parameter) for metric in ("fill_rate", "orders_posted")
        for parameter in ("market.take_rate", "market.price_index_interval_s")}
    assert (out / "report.html").is_file() and (out / "report").is_dir()
    page = (out / "report.html").read_text("utf-8")
    assert "Sensitivity report: small" in page and "Take rate" in page

    (out / "report.html").unlink()
    code, stdout, err = cli("report", str(out), "--format", "plain")
    assert code == 0, err
    assert "Sobol' indices, 95% bootstrap intervals" in stdout
    assert "Fill rate" in stdout and "Take rate" in stdout
    assert (out / "report.html").is_file()

    # A second invocation into the same directory is refused, not merged: --resume finishes.
    code, _, err = cli("sensitivity", str(path), "--out", str(out),
                       "--workers", "1")
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("argv", "message"), [
    (("sensitivity", "nothing.toml"), "neither a file nor a built-in sensitivity"),
    (("sensitivity", "default", "--dask", "nowhere"), "--dask: expected a scheduler address"),
    (("sensitivity", "default", "--format", "html"), "--format"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, cli, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert_one_error_line(cli(*argv), message)

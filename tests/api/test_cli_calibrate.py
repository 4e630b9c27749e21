"""`gpumarket calibrate` as a user meets it: a two-evaluation fit of a tenth of a day prints
the fitted parameters and the fit as JSON and writes its files; a second run into the same
folder needs --resume; bad input is one line and exit code 2."""

from __future__ import annotations

import json

import pytest

from tests.api.cli_helpers import assert_one_error_line
from tests.market.test_calibration import SMALL


def test_a_calibration_prints_its_fit_and_resumes(tmp_path, cli):
    path = tmp_path / "small.toml"
    path.write_text(SMALL, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = cli("calibrate", str(path), "--out", str(out), "--json")
    assert code == 0, err
    printed = json.loads(stdout)
    assert printed["evaluations"] == 2
    assert [row["metric"] for row in printed["fit"]] == ["fill_rate",
                                                          "price_usd_per_gpu_hour.h100.mean"]
    assert printed["loss"] == pytest.approx(sum(row["loss"] for row in printed["fit"]))
    for name in ("calibrated.toml", "fit.parquet", "calibration.jsonl", "report.html"):
        assert (out / name).is_file()

    code, _, err = cli("calibrate", str(path), "--out", str(out))
    assert code == 2 and "--resume" in err
    code, stdout, err = cli("calibrate", str(path), "--out", str(out),
                            "--resume", "--format", "plain")
    assert code == 0, err
    assert "Fitted parameters" in stdout and "Observed against simulated" in stdout


@pytest.mark.parametrize(("argv", "message"), [
    (("calibrate", "nothing.toml"), "neither a file nor a built-in calibration"),
    (("calibrate", "default", "--workers", "0"), "--workers"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, cli, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert_one_error_line(cli(*argv), message)

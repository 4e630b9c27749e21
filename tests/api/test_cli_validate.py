"""`gpumarket validate --deviations` as a user meets it: a table or JSON rows per mechanism,
one error line (exit 2) for bad arguments."""

from __future__ import annotations

import json

import pytest

from api.cli.main import main
from market.experiments.validation import PRESCRIBED

QUICK = ("--deviations", "--bidders", "2", "--auctions", "60", "--shadings", "0.9,1.1",
         "--workers", "1")


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_deviations_json_has_a_row_per_mechanism(capsys) -> None:
    code, out, err = invoke(capsys, "validate", *QUICK, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["mechanism"], r["strategy"]) for r in rows] == [(m, s) for m, s, _ in PRESCRIBED]
    for row in rows:
        assert row["auctions"] == 60 and row["bidders"] == 2
        assert [g["shading"] for g in row["shadings"]] == [0.9, 1.1]
        gain = row["best"]["gain"]
        assert gain["mean"] == max(g["gain"]["mean"] for g in row["shadings"])
        assert gain["ci_low"] <= gain["mean"] <= gain["ci_high"]
        assert gain["method"] == "normal" and gain["n"] == 60
        theory = row["mechanism"] in ("first_price", "second_price")
        assert (row["best"]["theory_gain"] is not None) == theory
        assert row["verdict"] in (("no profitable deviation", "profitable deviation")
                                  if theory else ("measured",))


def test_deviations_table(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")  # off a terminal the table is never cut
    code, out, err = invoke(capsys, "validate", *QUICK)
    assert code == 0, err
    for mechanism, strategy, _ in PRESCRIBED:
        assert mechanism in out and strategy in out
    assert "no profitable deviation" in out and "measured" in out


@pytest.mark.parametrize("argv", [("--shadings", "0.9,zero"), ("--shadings", "0,1.1"),
                                  ("--bidders", "1"), ("--workers", "0")])
def test_bad_deviation_arguments_exit_2_with_one_line(capsys, argv) -> None:
    code, out, err = invoke(capsys, "validate", "--deviations", *argv)
    assert code == 2
    assert out == "" and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert argv[0] in " ".join(lines)

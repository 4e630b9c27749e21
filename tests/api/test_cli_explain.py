"""`gpumarket explain --out DIR ORDER_ID` on a real run's folder, and the run report's
"Why no bids?" block."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from market.core.no_bids import COLUMNS, REASONS
from tests.api.cli_helpers import assert_one_error_line

SHORT = ("--set", "duration_days=0.2")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    from api.cli.main import main

    folder = tmp_path_factory.mktemp("run")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--json", *SHORT, "--out", str(folder)])
    assert exit_info.value.code == 0
    return folder


def _orders(folder: Path) -> list[dict]:
    return pq.read_table(folder / "orders.parquet").to_pylist()


def test_explain_prints_the_reasons_of_an_expired_order(cli, run_folder) -> None:
    row = next(r for r in _orders(run_folder) if r["outcome"] == "expired")
    outcome = cli("explain", "--out", str(run_folder), str(row["order_id"]), "--json")
    assert outcome.code == 0, outcome.err
    found = json.loads(outcome.out)
    assert found["outcome"] == "expired" and found["order_id"] == row["order_id"]
    assert found["no_bids"] == {reason: row[column] for reason, column
                                in zip(REASONS, COLUMNS, strict=True) if row[column]}
    assert sum(found["no_bids"].values()) + row["bids"] == found["providers"]
    assert row["order_id"] in [o["order_id"] for o in found["job_orders"]]

    text = cli("explain", "--out", str(run_folder), str(row["order_id"]), "--format", "plain")
    assert text.code == 0, text.err
    assert "expired" in text.out
    for reason, count in found["no_bids"].items():
        line = next(line for line in text.out.splitlines()
                    if line.split()[:1] == [reason.replace("_", " ").split()[0]])
        assert f"{count:,}" in line.split(), line


def test_explain_says_a_leased_order_got_its_lease(cli, run_folder) -> None:
    row = next(r for r in _orders(run_folder) if r["outcome"] == "leased")
    outcome = cli("explain", "--out", str(run_folder), str(row["order_id"]), "--format",
                  "plain")
    assert outcome.code == 0, outcome.err
    assert f"lease {row['lease_id']} at" in outcome.out


def test_explain_rejects_an_unknown_order_and_a_folder_without_a_run(cli, run_folder,
                                                                     tmp_path) -> None:
    unknown = max(r["order_id"] for r in _orders(run_folder)) + 1
    assert_one_error_line(cli("explain", "--out", str(run_folder), str(unknown)),
                          "ORDER_ID", str(unknown))
    assert_one_error_line(cli("explain", "--out", str(tmp_path), "0"), "--out", "no run")
    assert_one_error_line(cli("explain", "--out", str(run_folder), "seven"), "ORDER_ID")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "orders.parquet").write_text("not parquet")
    assert_one_error_line(cli("explain", "--out", str(tmp_path), "0"), "--out")


def test_the_run_report_has_a_why_no_bids_block(cli, run_folder) -> None:
    outcome = cli("run", *SHORT, "--format", "plain")
    assert outcome.code == 0, outcome.err
    summary = json.loads((run_folder / "summary.json").read_text())["no_bids"]
    assert f"Why no bids? ({summary['expired_orders']:,} expired orders)" in outcome.out
    top = max(summary["dominant_reason_orders"].items(), key=lambda item: item[1])
    assert any(line.split()[:1] == [top[0].replace("_", " ").split()[0]]
               and f"{top[1]:,}" in line.split() for line in outcome.out.splitlines())

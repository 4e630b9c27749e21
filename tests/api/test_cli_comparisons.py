"""`gpumarket tournament` and `gpumarket report` as fair comparisons: strategies with
parameters, paired differences from a reference or a baseline point, warnings about uneven
splits, and the fee pass-through, as a user meets them (in-process, short runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.api.cli_helpers import assert_one_error_line

TOURNEY = ("--seeds", "2", "--workers", "1", "--set", "duration_days=0.2")




# ----------------------------------------------------------------------------- tournament

def test_tournament_takes_parameters_and_a_reference(cli) -> None:
    code, out, err = cli("tournament", "--strategies", "cost_plus{markup=0.9},truthful",
                         "--reference", "truthful", *TOURNEY, "--json")
    assert code == 0, err
    standings = {row["strategy"]: row for row in json.loads(out)["standings"]}
    assert set(standings) == {"cost_plus{markup=0.9}", "truthful"}
    assert standings["truthful"]["vs_reference"] == {}
    vs = standings["cost_plus{markup=0.9}"]["vs_reference"]
    assert set(vs) == {"profit_per_provider_usd", "win_rate", "utilization"}
    assert all(row["reference"] == "truthful" for row in standings.values())
    # 7 hyperscalers do not split in two: said on stderr, stdout stays one JSON document
    assert "warning: population 'hyperscaler' cannot be split evenly" in err


def test_tournament_table_shows_paired_differences_and_warnings(cli) -> None:
    code, out, err = cli("tournament", "--strategies", "cost_plus,undercut,truthful,hedge",
                         *TOURNEY)
    assert code == 0, err
    assert "Δ profit vs cost_plus" in out and "reference" in out
    assert "paired difference from cost_plus on the same 2 seeds" in out
    assert ("warning: population 'hyperscaler' cannot be split evenly: 7 providers among 4 "
            "strategies") in " ".join(out.split())


def test_tournament_evolve_reports_significance_per_generation(cli) -> None:
    code, out, err = cli("tournament", "--strategies", "cost_plus,truthful", *TOURNEY,
                         "--evolve", "2")
    assert code == 0, err
    assert "generation" in out and "leaderboard" in out
    assert "= it is not: the share is kept" in " ".join(out.split())


@pytest.mark.parametrize(("argv", "mentions"), [
    (("--strategies", "cost_plus{markup=}"), ("--strategies", "TOML inline table")),
    (("--strategies", "cost_plus{fee=1}"), ("--strategies", "'fee'")),
    (("--strategies", "cost_plus,truthful", "--reference", "hedge"),
     ("--reference", "cost_plus, truthful", "'hedge'")),
])
def test_tournament_bad_line_up_exits_2(cli, argv, mentions) -> None:
    assert_one_error_line(cli("tournament", *argv, *TOURNEY), *mentions)


# ----------------------------------------------------------------------------- report

TAKE_RATE, NET = "market.take_rate", "market.bids_net_of_fee"


def fee_sweep(folder: Path) -> Path:
    """A take rate × net-of-fee sweep, three seeds: sellers who price the fee in keep their
    net price (the price paid rises by the fee), the others keep the price paid."""
    rows = []
    points = [(rate, net) for rate in (0.0, 0.25) for net in (True, False)]
    for replication in range(3):
        for point, (rate, net) in enumerate(points):
            price = (2.0 + 0.1 * replication) / ((1 - rate) if net else 1.0)
            rows.append({"run_id": f"r{point}-{replication}", "point": point,
                         "replication": replication, "seed": 7 + replication, "status": "ok",
                         "error": None, "elapsed_s": 0.1, TAKE_RATE: rate, NET: net,
                         "fill_rate": 0.5 + 0.01 * replication - 0.1 * rate,
                         "tenant_spend_usd": price * 50.0,
                         "platform_revenue_usd": price * 50.0 * rate,
                         "price_usd_per_gpu_hour.h100.gpu_hours": 50.0})
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "runs.parquet")
    (folder / "sweep.json").write_text(json.dumps(
        {"name": "fees", "params": [TAKE_RATE, NET], "runs": len(rows)}), encoding="utf-8")
    return folder


def test_report_baseline_and_pass_through(cli, tmp_path: Path) -> None:
    folder = fee_sweep(tmp_path / "fees")
    code, out, err = cli("report", str(folder), "--metric", "fill_rate",
                         "--baseline", "market.take_rate=0")
    assert code == 0, err
    flat = " ".join(out.split())
    assert "paired difference from the baseline (market.take_rate=0)" in flat
    assert "-2.5 ± 0 *" in flat  # fill rate falls by exactly 0.1 × 0.25 (2.5 pp) on every seed
    assert "Fee pass-through from the baseline's take rate" in flat
    assert "[100%, 100%]" in flat and "[0%, 0%]" in flat
    page = (folder / "report.html").read_text("utf-8")
    assert "Paired differences from the baseline" in page and "Fee pass-through" in page
    # without a baseline: adjacent take rates, and no difference table
    code, out, err = cli("report", str(folder), "--metric", "fill_rate")
    assert code == 0, err
    assert "Fee pass-through between adjacent take rates" in " ".join(out.split())
    assert "paired difference from the baseline" not in out


@pytest.mark.parametrize(("baseline", "mentions"), [
    ("market.take_rate=0.1", ("--baseline", "not a point of this sweep", "0, 0.25")),
    ("market.mechanism=dutch", ("--baseline", "market.take_rate, market.bids_net_of_fee")),
    ("take_rate", ("--baseline", "expected PATH=VALUE")),
])
def test_report_bad_baseline_exits_2(cli, tmp_path: Path, baseline, mentions) -> None:
    folder = fee_sweep(tmp_path / "fees")
    assert_one_error_line(cli("report", str(folder), "--baseline", baseline), *mentions)
    assert not (folder / "report.html").exists()

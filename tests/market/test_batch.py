"""batch_run: a sweep over a Scenario object, in memory. Same rows as a sweep file's
runs.parquet, whichever way the points are given and however many workers run them; bad input
refused in one line before anything runs."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from market import batch_run, load_scenario
from market.experiments.batch import ScenarioRunSpec, prepare, summarize, summary_table
from market.experiments.execution import run_sweep
from market.experiments.sweep import SweepError, load_sweep

#: A market small enough that a run takes a fraction of a second.
SMALL = {"duration_days": 0.2, "tenants.arrivals_per_hour": 30, "providers.0.count": 8,
         "providers.1.count": 20, "providers.2.count": 1}


@pytest.fixture(scope="module")
def small():
    return load_scenario("default").with_values(SMALL)


def comparable(frame: pd.DataFrame) -> str:
    """Every row but the wall time, as JSON text (NaN equals NaN, floats to the last bit)."""
    return json.dumps(frame.drop(columns=["elapsed_s"]).to_dict("records"), default=str)


def test_batch_run_gives_the_rows_of_the_same_sweep_file(tmp_path, small):
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text('seed = 7\nreplications = 2\n[set]\n'
                          + "".join(f'"{path}" = {value}\n' for path, value in SMALL.items())
                          + '[grid]\n"market.take_rate" = [0.0, 0.15]\n'
                          + '"market.bids_net_of_fee" = [true, false]\n')
    run_sweep(load_sweep(sweep_file), tmp_path / "out", workers=1)
    from_sweep = pq.read_table(tmp_path / "out" / "runs.parquet").to_pandas()

    frame = batch_run(small, {"market.take_rate": [0.0, 0.15],
                              "market.bids_net_of_fee": [True, False]},
                      replications=2, seed=7)
    assert list(frame.columns) == list(from_sweep.columns)
    assert list(frame.dtypes) == list(from_sweep.dtypes)
    assert (frame["status"] == "ok").all() and len(frame) == 8
    assert comparable(frame) == comparable(from_sweep)  # run ids, seeds, every metric
    assert frame["fill_rate"].nunique() > 1             # the runs differ: a real comparison

    # out= writes the same sweep directory, and reads it back
    written = batch_run(small, {"market.take_rate": [0.0, 0.15],
                                "market.bids_net_of_fee": [True, False]},
                        replications=2, seed=7, out=tmp_path / "batch")
    assert comparable(written) == comparable(from_sweep)
    assert json.loads((tmp_path / "batch" / "sweep.json").read_text())["runs"] == 8
    with pytest.raises(SweepError, match=r"^batch_run: out=\S+batch: already holds this sweep; "
                                         r"pass resume=True to finish it"):
        batch_run(small, {"market.take_rate": [0.0, 0.15],
                          "market.bids_net_of_fee": [True, False]},
                  replications=2, seed=7, out=tmp_path / "batch")


def test_a_grid_and_the_same_points_listed_give_the_same_runs(small):
    grid = batch_run(small, {"market.take_rate": [0.0, 0.2], "market.bidding_window_s": 60},
                     replications=2)
    listed = batch_run(small, [{"market.take_rate": 0.0, "market.bidding_window_s": 60},
                               {"market.take_rate": 0.2, "market.bidding_window_s": 60}],
                       replications=2)
    # a value held fixed is part of the base, not a column; listed, it is a swept column
    assert "market.bidding_window_s" not in grid.columns
    assert comparable(grid) == comparable(listed.drop(columns=["market.bidding_window_s"]))
    assert list(grid["replication"]) == [0, 1, 0, 1] and list(grid["point"]) == [0, 0, 1, 1]
    assert grid.attrs["parameters"] == ["market.take_rate"]


def test_numpy_grids_and_explicit_seeds(small):
    frame = batch_run(small, {"market.take_rate": np.linspace(0.0, 0.2, 2)}, seeds=[11, 12])
    assert list(frame["seed"]) == [11, 12, 11, 12]
    assert list(frame["market.take_rate"]) == [0.0, 0.0, 0.2, 0.2]
    # replication r of every point shares its seed: common random numbers
    again = batch_run(small, {"market.take_rate": [0.2]}, seeds=[12])
    # (a metric that only other runs report is a column of NaN here)
    assert reported(again.iloc[0]) == reported(frame.iloc[3]) | {"point": 0, "replication": 0}


def reported(row: pd.Series) -> dict:
    return {name: value for name, value in row.items()
            if name != "elapsed_s" and not (isinstance(value, float) and np.isnan(value))}


def test_one_worker_or_two_give_the_same_results(small):
    points = {"market.take_rate": [0.0, 0.1, 0.2]}
    one = batch_run(small, points, replications=2, workers=1)
    two = batch_run(small, points, replications=2, workers=2)
    assert comparable(one) == comparable(two)


def test_a_run_travels_to_other_processes_with_its_scenario(small):
    sweep = prepare(small, {"market.take_rate": [0.0, 0.1]})
    spec = sweep.runs()[1]
    assert isinstance(spec, ScenarioRunSpec)
    back = pickle.loads(pickle.dumps(spec))
    assert back == spec and back.scenario().market.take_rate == 0.1


@pytest.mark.parametrize(("parameters", "kwargs", "message"), [
    ({"market.take_rat": [0.1, 0.2]}, {},
     r"^batch_run: point 0 \(market.take_rat=0.1\): scenario 'default': field "
     r"`market.take_rat`: Extra inputs are not permitted \(got 0.1\)$"),
    ({"market.take_rate": [0.1, 5.0]}, {},
     r"^batch_run: point 1 \(market.take_rate=5.0\): scenario 'default': field "
     r"`market.take_rate`: expected a number >= 0 and < 1 \(got 5.0\)$"),
    ({"providers.7.count": [1, 2]}, {},
     r"^batch_run: point 0 .*`providers.7`: expected an index from 0 to 2$"),
    ({"duration_days": -1}, {},
     r"^batch_run: parameters: scenario 'default': field `duration_days`: expected a number "
     r"> 0 and <= 365 \(got -1\)$"),
    ({"market..take_rate": [0.1]}, {},
     r"^batch_run: parameters: 'market..take_rate': expected a dotted scenario path"),
    ({"market.take_rate": []}, {}, r"^batch_run: parameters: market.take_rate: expected a "
                                   r"non-empty list"),
    ({"market.take_rate": [0.1, 0.10]}, {},
     r"^batch_run: points 0 \(market.take_rate=0.1\) and 1 \(market.take_rate=0.1\) resolve "
     r"to the same scenario \(from market.take_rate\[0\] and market.take_rate\[1\]\)"),
    ([{"market.take_rate": 0.1}, {"market.take_rate": 0.1}], {},
     r"^batch_run: points 0 .* and 1 .* resolve to the same scenario \(from parameters.0 and "
     r"parameters.1\)"),
    ({"tenants.arrivals_per_hour": [30, 100_000], "duration_days": 30}, {},
     r"^batch_run: point 1 \(tenants.arrivals_per_hour=100000\): tenants.arrivals_per_hour: "
     r".*pass allow_large=True"),
    ({"market.take_rate": [0.1]}, {"seeds": [3, 3]}, r"^batch_run: seeds: 3 is listed twice"),
    ({"market.take_rate": [0.1]}, {"seeds": [-1]}, r"^batch_run: seeds: expected whole numbers"),
    ({"market.take_rate": [0.1]}, {"seeds": [1], "replications": 2},
     r"^batch_run: seeds: give either seeds"),
    ({"market.take_rate": [0.1]}, {"replications": 0},
     r"^batch_run: replications: expected a whole number >= 1, got 0$"),
    ({"market.take_rate": [0.1]}, {"replications": 100_001},
     r"^batch_run: replications: 100,001, over the limit of 100,000 runs$"),
    ({"market.take_rate": [0.1]}, {"workers": 0},
     r"^batch_run: workers: expected a whole number >= 1 or None"),
    ("market.take_rate=0.1", {}, r"^batch_run: parameters: expected a dict"),
])
def test_bad_input_is_one_line_before_anything_runs(small, parameters, kwargs, message):
    with pytest.raises(SweepError, match=message) as caught:
        batch_run(small, parameters, **kwargs)
    assert "\n" not in str(caught.value)


def test_a_scenario_by_name_or_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("duration_days = 0.2\n[tenants]\narrivals_per_hour = 30\n")
    frame = batch_run(path, {"providers.0.count": [8], "providers.1.count": 20,
                             "providers.2.count": 1})
    assert frame["scenario"].tolist() == ["mine"]
    with pytest.raises(SweepError, match=r"^batch_run: scenario: scenario: 'nowhere' is "
                                         r"neither a file nor a built-in scenario"):
        batch_run("nowhere")


def test_summarize_gives_means_and_intervals_per_group(small):
    frame = batch_run(small, {"market.take_rate": [0.0, 0.2]}, replications=3)
    table = summarize(frame, metrics=["fill_rate", "platform_revenue_usd"])
    assert list(table.columns) == ["market.take_rate", "metric", "runs", "mean", "sd", "low",
                                   "high"]
    assert len(table) == 4 and (table["runs"] == 3).all()
    row = table[(table["market.take_rate"] == 0.2) & (table["metric"] == "fill_rate")].iloc[0]
    values = frame.loc[frame["market.take_rate"] == 0.2, "fill_rate"]
    assert row["mean"] == pytest.approx(values.mean())
    assert row["low"] < row["mean"] < row["high"] or row["sd"] == 0
    assert row["low"] >= 0.0 and row["high"] <= 1.0  # a share's interval stays a share
    fees = table[(table["market.take_rate"] == 0.0) & (table["metric"] ==
                                                        "platform_revenue_usd")].iloc[0]
    assert fees["mean"] == 0.0  # no take rate, no fees
    with pytest.raises(ValueError, match=r"^metrics: 'fill_rat' is not a column of these runs; "
                                         r"did you mean fill_rate"):
        summarize(frame, metrics=["fill_rat"])


def test_failed_runs_are_rows_with_their_error_and_a_warning(small, monkeypatch):
    def broken(self):
        raise RuntimeError("engine broke")

    monkeypatch.setattr(ScenarioRunSpec, "scenario", broken)
    with pytest.warns(RuntimeWarning, match=r"batch_run: 2 of 2 runs failed; the first: "
                                            r"RuntimeError: engine broke"):
        frame = batch_run(small, {"market.take_rate": [0.0, 0.1]})
    assert list(frame["status"]) == ["failed", "failed"]


def test_nothing_is_written_without_out(tmp_path, small, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batch_run(small, {"market.take_rate": [0.0]})
    assert list(Path(tmp_path).iterdir()) == []


def test_summary_table_reads_in_words_and_units(small):
    frame = batch_run(small, {"market.take_rate": [0.0, 0.2]}, replications=3)
    table = summary_table(frame, metrics=["fill_rate", "platform_revenue_usd"])
    assert table.index.name == "Take rate (%)" and list(table.index) == ["0%", "20%"]
    assert list(table.columns) == ["Fill rate (%)", "Platform revenue (USD)"]
    numbers = summarize(frame, metrics=["fill_rate"]).iloc[1]
    cell = table.loc["20%", "Fill rate (%)"]
    assert re.fullmatch(r"[\d.]+ \[[\d.]+, [\d.]+\]", cell)
    mean, low, high = map(float, re.findall(r"[\d.]+", cell))
    assert low <= mean <= high
    assert mean == pytest.approx(numbers["mean"] * 100, rel=5e-3)
    assert low == pytest.approx(numbers["low"] * 100, rel=5e-3, abs=0.05)


def test_progress_keeps_one_line_up_to_date(small, capsys):
    seen = []
    batch_run(small, {"market.take_rate": [0.0, 0.1]}, progress=True,
              on_progress=lambda p: seen.append((p.done, p.total)))
    assert seen == [(0, 2), (1, 2), (2, 2)]
    err = capsys.readouterr().err
    assert err.startswith("\rbatch_run: 0/2 runs, 0 failed")
    assert err.endswith("\rbatch_run: 2/2 runs, 0 failed\n")


def test_a_plug_in_registered_here_runs_here_only(small, monkeypatch):
    from market import registry
    from market.strategy import PerProvider

    class AtCost(PerProvider):
        def bid(self, order, me, view):
            return me.cost_basis_usd_per_gpu_hour * view.fee_gross_up()

    monkeypatch.setattr(registry, "_registered", {g: {} for g in registry.GROUPS})
    registry.register("strategies", "at_cost", AtCost)
    points = {"providers.1.strategy": [{"name": "at_cost"}, {"name": "cost_plus"}]}
    with pytest.raises(SweepError, match=r"^batch_run: workers: the strategies plug-in "
                                         r"'at_cost' was registered in this process"):
        batch_run(small, points, workers=2)
    frame = batch_run(small, points, workers=1)
    assert list(frame["status"]) == ["ok", "ok"]
    assert frame["populations.home_rig.revenue_usd"].nunique() == 2  # the strategy bid

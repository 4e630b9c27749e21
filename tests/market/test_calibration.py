"""Tests for market.experiments.calibration: fitting scenario parameters to targets.

- The optimizer loop, on an analytic loss standing in for the market: it finds the known
  optimum, logs every evaluation, and `resume` replays the log to the same result without
  evaluating again.
- A small market end to end: the loss is Σ weight × ((mean − target) / sd)², recomputed by hand
  from fit.parquet; an observed target aims at the middle of the reported span with a quarter
  of its width as sd; the calibrated scenario file reads back as the fitted scenario.
- Bad files are refused with one line naming the field, before anything runs.
- A candidate evaluates the same in this process and on worker processes.
"""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from market import load_scenario
from market.experiments import calibration as calibration_module
from market.experiments.calibration import (
    FIT_FILE,
    LOG_FILE,
    SCENARIO_FILE,
    calibrate,
    load_calibration,
)
from market.experiments.sweep import SweepError
from market.observed import load_observed_prices, observed_span

ANALYTIC = """
name = "analytic"
base = "default"
evaluations = 60
[parameters]
"market.take_rate" = { low = 0.0, high = 0.5, start = 0.05 }
[[targets]]
metric = "x"
value = 0.3
sd = 0.1
"""


def test_the_loop_finds_a_known_optimum_and_resumes_from_its_log(tmp_path, monkeypatch):
    calls = []

    def analytic(calibration, values, workers=1):
        calls.append(values)
        x = values["market.take_rate"]
        return {"values": values, "metrics": {"x": {"mean": x, "sd": math.nan, "n": 1}},
                "loss": ((x - 0.3) / 0.1) ** 2}

    monkeypatch.setattr(calibration_module, "evaluate", analytic)
    path = tmp_path / "analytic.toml"
    path.write_text(ANALYTIC, encoding="utf-8")
    best = calibrate(load_calibration(path), tmp_path / "out")
    assert abs(best["values"]["market.take_rate"] - 0.3) < 1e-3
    logged = [json.loads(line) for line in
              (tmp_path / "out" / LOG_FILE).read_text("utf-8").splitlines()]
    assert len(logged) == len(calls) <= 60
    assert min(entry["loss"] for entry in logged) == best["loss"]
    # The calibrated scenario is the base with the fitted value, as a file that reads back.
    fitted = load_scenario(str(tmp_path / "out" / SCENARIO_FILE))
    assert fitted.market.take_rate == best["values"]["market.take_rate"]

    # Resumed: the optimizer walks the same path from the log, evaluating nothing again.
    calls.clear()
    again = calibrate(load_calibration(path), tmp_path / "out", resume=True)
    assert calls == []
    assert (again["values"], again["loss"]) == (best["values"], best["loss"])
    with pytest.raises(SweepError, match="already holds this calibration; pass --resume"):
        calibrate(load_calibration(path), tmp_path / "out")
    path.write_text(ANALYTIC.replace("value = 0.3", "value = 0.2"), encoding="utf-8")
    with pytest.raises(SweepError, match="holds another calibration"):
        calibrate(load_calibration(path), tmp_path / "out", resume=True)


SMALL = """
name = "small"
base = "default"
seed = 3
replications = 2
evaluations = 2
[set]
duration_days = 0.2  # long enough for H100s to trade in both runs
[parameters]
"tenants.arrivals_per_hour" = { low = 24, high = 96, start = 48 }
[[targets]]
metric = "fill_rate"
value = 0.5
sd = 0.2
weight = 2
[[targets]]
metric = "price_usd_per_gpu_hour.h100.mean"
observed = { gpu = "h100", venue = "marketplace", since = "2026-01" }
"""


def test_a_small_market_end_to_end(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL, encoding="utf-8")
    loaded = load_calibration(path)
    low, high = observed_span(load_observed_prices(), "h100", venue="marketplace",
                              since="2026-01")
    aim = loaded.aims[1]
    assert (aim.value, aim.sd) == ((low + high) / 2, (high - low) / 4)
    best = calibrate(loaded, tmp_path / "out", workers=1)
    fit = pq.read_table(tmp_path / "out" / FIT_FILE).to_pylist()
    by_hand = 2 * ((fit[0]["simulated"] - 0.5) / 0.2) ** 2 \
        + ((fit[1]["simulated"] - aim.value) / aim.sd) ** 2
    assert best["loss"] == pytest.approx(by_hand, rel=1e-12)
    assert [row["runs"] for row in fit] == [2, 2]
    # The simulated mean is the replications' mean, its interval a t interval around it.
    assert fit[0]["simulated_low"] < fit[0]["simulated"] < fit[0]["simulated_high"] \
        or fit[0]["simulated_low"] == fit[0]["simulated_high"]
    assert (tmp_path / "out" / "report.html").is_file()
    fitted = load_scenario(str(tmp_path / "out" / SCENARIO_FILE))
    assert fitted == loaded.scenario(best["values"])


@pytest.mark.parametrize(("old", "new", "message"), [
    ("evaluations = 2", "evaluations = 0", r"field `evaluations`"),
    ("start = 48", "start = 200",
     r"field `parameters.tenants.arrivals_per_hour.start`: expected a value in \[24, 96\]"),
    ("low = 24", "low = 200", r"field `parameters.tenants.arrivals_per_hour`: .*low < high"),
    ('"tenants.arrivals_per_hour" =', '"tenants.arrivals_per_day" =', r"arrivals_per_day"),
    ("value = 0.5\nsd = 0.2", "value = 0.5", r"field `targets.0.value`: expected an `sd`"),
    ('gpu = "h100", venue = "marketplace"', 'gpu = "mi300x", venue = "contract"',
     r"field `targets.1.observed`: no observed price for mi300x"),
    ("seed = 3", 'seed = 3\nmethod = "bfgs"', r"field `method`"),
])
def test_bad_files_are_refused_naming_the_field(tmp_path, old, new, message):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL.replace(old, new), encoding="utf-8")
    with pytest.raises(SweepError, match=message):
        load_calibration(path)


def test_the_built_in_calibration_loads_with_its_whole_box_valid():
    loaded = load_calibration("default")
    assert len(loaded.aims) == 4 and all(aim.sd > 0 for aim in loaded.aims)


def test_a_candidate_evaluates_the_same_in_this_process_and_on_workers(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL, encoding="utf-8")
    loaded = load_calibration(path)
    values = {"tenants.arrivals_per_hour": 40.0}
    here = calibration_module.evaluate(loaded, values, workers=1)
    there = calibration_module.evaluate(loaded, values, workers=2)
    assert json.dumps(here, sort_keys=True) == json.dumps(there, sort_keys=True)

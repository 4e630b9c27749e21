"""Tests for market.experiments.sensitivity: Sobol' indices over a Saltelli design.

- The estimators equal SciPy's own (`scipy.stats.sobol_indices`) on the same evaluations.
- On an additive model worked by hand, Y = 2 x1 + x2 + 0 x3 with x uniform on [0, 1]:
  V = 4/12 + 1/12, so S1 = ST = (0.8, 0.2, 0); the true values lie in the bootstrap intervals,
  and a parameter that changes nothing gets exactly 0 (its AB rows equal A's).
- The design: ranges map as documented (linear, log, integers), equal rows share a sweep point.
- A small market end to end: files written, the same indices byte for byte on a second run
  and after --resume, and an inert parameter's indices exactly 0.
- Bad files are refused with one line naming the field.
- A Dask cluster gives the same indices as local processes.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import sobol_indices as scipy_sobol_indices

from market.experiments.sensitivity import (
    INDICES_FILE,
    Range,
    SensitivityFile,
    design,
    estimate,
    load_sensitivity,
    run_sensitivity,
    sobol_indices,
)
from market.experiments.sweep import SweepError


def spec(**ranges) -> SensitivityFile:
    return SensitivityFile(samples=1024, metrics=["y"], ranges=ranges, seed=3)


def test_estimators_equal_scipys_on_the_same_evaluations():
    rng = np.random.default_rng(0)
    f_a, f_b, f_ab = rng.normal(size=(1, 64)), rng.normal(size=(1, 64)), rng.normal(
        size=(3, 1, 64))
    ours = sobol_indices(f_a, f_b, f_ab)
    theirs = scipy_sobol_indices(func={"f_A": f_a, "f_B": f_b, "f_AB": f_ab}, n=64)
    np.testing.assert_allclose(ours[0][:, 0], theirs.first_order, rtol=1e-12)
    np.testing.assert_allclose(ours[1][:, 0], theirs.total_order, rtol=1e-12)


def test_additive_model_by_hand():
    plan = design(spec(x1=[0, 1], x2=[0, 1], x3=[0, 1]))
    y = 2 * plan.values[:, 0] + plan.values[:, 1] + 0 * plan.values[:, 2]
    found = estimate(y, 3, confidence=0.999, resamples=2_000, seed=1)
    truth = np.array([0.8, 0.2, 0.0])
    for order in ("first_order", "total_order"):
        assert np.all(found[f"{order}_low"] <= truth + 1e-12), order
        assert np.all(truth - 1e-12 <= found[f"{order}_high"]), order
        assert found[order][2] == 0.0  # x3 changes nothing: AB_3 rows give A's values
    # Monte Carlo error falls as 1/sqrt(n): a quarter of the rows, about twice the width.
    small = design(SensitivityFile(samples=256, metrics=["y"], seed=3,
                                   ranges={"x1": [0, 1], "x2": [0, 1], "x3": [0, 1]}))
    y_small = 2 * small.values[:, 0] + small.values[:, 1]
    narrow = estimate(y_small, 3, confidence=0.999, resamples=2_000, seed=1)
    for order in ("first_order", "total_order"):
        ratio = ((narrow[f"{order}_high"] - narrow[f"{order}_low"])[:2]
                 / (found[f"{order}_high"] - found[f"{order}_low"])[:2])
        assert np.all((ratio > 1.4) & (ratio < 2.8)), (order, ratio)


def test_a_constant_metric_has_no_indices():
    found = estimate(np.ones(5 * 8), 3)
    assert all(np.isnan(values).all() for values in found.values())


def test_ranges_map_linearly_log_uniformly_and_over_integers():
    unit = np.array([0.0, 0.25, 0.5, 0.999999])
    np.testing.assert_allclose(Range(low=10, high=20).values(unit), [10, 12.5, 15, 20],
                               atol=1e-4)
    np.testing.assert_allclose(Range(low=1, high=100, scale="log").values(unit),
                               [1, 10 ** 0.5, 10, 100], rtol=1e-4)
    assert Range(low=0, high=3, integer=True).values(unit).tolist() == [0, 1, 2, 3]
    # Integers are equally likely: a quarter of the unit interval each.
    many = Range(low=0, high=3, integer=True).values(np.linspace(0, 1, 4000, endpoint=False))
    assert np.bincount(many.astype(int)).tolist() == [1000] * 4


def test_design_rows_share_points_when_equal():
    plan = design(SensitivityFile(samples=16, metrics=["y"], seed=1, ranges={
        "a": {"low": 0, "high": 1, "integer": True}, "b": [0.0, 1.0]}))
    n, d = 16, 2
    assert plan.values.shape == (n * (d + 2), d)
    # AB_b takes column b from B: column a stays A's, b is B's.
    np.testing.assert_array_equal(plan.values[2 * n + n:, 0], plan.values[:n, 0])
    np.testing.assert_array_equal(plan.values[2 * n + n:, 1], plan.values[n:2 * n, 1])
    # With a two-valued integer, about half of AB_a's rows equal A's and run as A's points.
    assert len(plan.points) < len(plan.values)
    for row, point in enumerate(plan.point.tolist()):
        assert list(plan.points[point].values()) == plan.values[row].tolist()
    assert all(isinstance(point["a"], int) for point in plan.points)


SMALL = """
name = "small"
base = "default"
seed = 2
samples = 4
metrics = ["fill_rate", "orders_posted"]
[set]
duration_days = 0.1
"market.settlement" = "aep23"
[ranges]
"market.take_rate" = [0.0, 0.3]
"market.price_index_interval_s" = [600, 7200]
"""


def test_a_small_market_end_to_end(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL, encoding="utf-8")
    analysis = load_sensitivity(path)
    assert len(analysis.sweep.runs()) == 4 * (2 + 2)
    progress, indices = run_sensitivity(analysis, tmp_path / "one", workers=1)
    assert progress.failed == 0 and indices is not None
    assert indices.num_rows == 2 * 2
    table = indices.to_pylist()
    # The default tenants' policy never reads the price index: its interval moves no lease,
    # so its AB rows repeat A's metrics and both indices are exactly 0.
    inert = [row for row in table if row["parameter"] == "market.price_index_interval_s"]
    assert all(row["first_order"] == 0.0 and row["total_order"] == 0.0 for row in inert)
    for name in ("runs.parquet", "design.parquet", "sensitivity.toml", INDICES_FILE):
        assert (tmp_path / "one" / name).is_file()
    # Same file and seed: the same indices, byte for byte; --resume runs nothing again.
    run_sensitivity(load_sensitivity(path), tmp_path / "two", workers=1)
    assert pq.read_table(tmp_path / "two" / INDICES_FILE).equals(indices)
    again, resumed = run_sensitivity(load_sensitivity(path), tmp_path / "one", workers=1,
                                     resume=True)
    assert again.skipped == again.total and resumed.equals(indices)
    # A misnamed metric is found once the runs are in; corrected, --resume repeats no run.
    path.write_text(SMALL.replace('"orders_posted"', '"orders_postd"'), encoding="utf-8")
    with pytest.raises(SweepError, match=r"metrics: 'orders_postd' is not a metric .*--resume"):
        run_sensitivity(load_sensitivity(path), tmp_path / "one", workers=1, resume=True)


RANGE = '"market.take_rate" = [0.0, 0.3]'


@pytest.mark.parametrize(("old", "new", "message"), [
    ("samples = 4", "samples = 6", r"field `samples`: .*power of 2"),
    (RANGE, '"market.take_rate" = [0.3, 0.1]',
     r"field `ranges.market.take_rate`: expected finite low < high"),
    (RANGE, '"x" = { low = 0, high = 1, scale = "log" }',
     r"field `ranges.x`: scale log: expected low > 0"),
    (RANGE, '"x" = { low = 0.5, high = 3, integer = true }',
     r"field `ranges.x`: integer: expected whole"),
    (RANGE, '"x" = [1, 2, 3]', r"field `ranges.x`: expected \[low, high\]"),
    (RANGE, '"x" = { low = 1, high = 2, colour = 3 }', r"field `ranges.x`: colour: Extra"),
    ('metrics = ["fill_rate", "orders_posted"]', "metrics = []", r"field `metrics`"),
    ("seed = 2", "seed = 2\ncolour = 1", r"field `colour`"),
])
def test_bad_files_are_refused_naming_the_field(tmp_path, old, new, message):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL.replace(old, new), encoding="utf-8")
    with pytest.raises(SweepError, match=message):
        load_sensitivity(path)


def test_overlaps_and_size_are_refused_before_anything_runs(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL.replace("duration_days = 0.1",
                                  "duration_days = 0.1\n\"market.take_rate\" = 0.1"), "utf-8")
    with pytest.raises(SweepError, match=r"field `set`: market.take_rate has a range too"):
        load_sensitivity(path)
    path.write_text(SMALL.replace("samples = 4", "samples = 65536\nreplications = 2"), "utf-8")
    with pytest.raises(SweepError, match=r"field `samples`: .* over the limit"):
        load_sensitivity(path)
    with pytest.raises(SweepError, match=r"neither a file nor a built-in sensitivity \(default\)"):
        load_sensitivity(tmp_path / "missing.toml")


def test_dask_gives_the_same_indices_as_local_processes(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL, encoding="utf-8")
    _, local = run_sensitivity(load_sensitivity(path), tmp_path / "local", workers=1)
    _, dask = run_sensitivity(load_sensitivity(path), tmp_path / "dask", workers=2,
                              dask="local")
    assert dask.equals(local)

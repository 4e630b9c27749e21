"""Sweep analysis and report on small hand-made sweep directories.

Each test writes runs.parquet, timeseries.parquet and sweep.json the way a sweep does, with
values chosen so every mean and interval can be worked out independently (scipy's own t
interval, numpy on the pooled values) and compared with what `market.experiments.analysis` says.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from market.experiments.analysis import (
    ReportError,
    compare_to_baseline,
    estimate,
    fee_pass_through,
    fieller,
    format_estimate,
    group_label,
    load_sweep,
    metric_names,
    parse_baseline,
    summarize,
    summarize_timeseries,
)
from market.experiments.report_html import MAX_METRIC_PLOTS, write_report

MECHANISM, TAKE_RATE = "market.mechanism", "market.take_rate"
PARAMS = [MECHANISM, TAKE_RATE]
POINTS = [("first_price", 0.0), ("first_price", 0.1), ("second_price", 0.0),
          ("second_price", 0.1)]
# fill_rate by point, one value per replication; None marks a failed run.
FILL_RATE = {0: [0.50, 0.60, 0.70], 1: [0.55, 0.65, 0.90], 2: [0.40, 0.45, 0.47],
             3: [0.30, 0.34, None]}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- helpers

def run_row(point: int, replication: int, params: dict[str, Any],
            metrics: dict[str, Any] | None) -> dict[str, Any]:
    """One runs.parquet row; `metrics` None makes it a failed run."""
    return {"run_id": f"r{point}-{replication}", "point": point, "replication": replication,
            "seed": 100 + replication, "status": "ok" if metrics is not None else "failed",
            "error": None if metrics is not None else "ValueError: boom",
            "elapsed_s": 0.5, **params, **(metrics or {})}


def write_sweep(folder: Path, rows: list[dict[str, Any]], params: list[str],
                metrics: dict[str, pa.DataType], param_types: dict[str, pa.DataType],
                series: list[dict[str, Any]] | None = None) -> Path:
    """A sweep output directory holding `rows` (and `series`, if given)."""
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("run_id", pa.string()), ("point", pa.int32()),
                        ("replication", pa.int32()), ("seed", pa.int64()),
                        ("status", pa.string()), ("error", pa.string()),
                        ("elapsed_s", pa.float64()),
                        *((p, param_types[p]) for p in params), *metrics.items()])
    full = [{name: row.get(name) for name in schema.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=schema), folder / "runs.parquet")
    if series is not None:
        pq.write_table(pa.Table.from_pylist(series, schema=pa.schema([
            ("run_id", pa.string()), ("point", pa.int32()), ("replication", pa.int32()),
            ("time_s", pa.float64()), ("gpu_model", pa.string()),
            ("price_index_usd_per_gpu_hour", pa.float64()), ("leases", pa.int64()),
            ("utilization", pa.float64())])), folder / "timeseries.parquet")
    (folder / "sweep.json").write_text(json.dumps(
        {"name": "demo", "params": params, "runs": len(rows)}), encoding="utf-8")
    return folder


def demo_rows(mechanisms: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The demo sweep's runs, replication-major as a sweep runs them."""
    rows = []
    for replication in range(3):
        for point, (mechanism, take_rate) in enumerate(POINTS):
            fill = FILL_RATE[point][replication]
            metrics = None if fill is None else {
                "fill_rate": fill, "platform_revenue_usd": 1000.0 * (point + 1) + replication,
                "orders_filled": 10 * point + replication, "money_conserved": True,
                "scenario": "default"}
            mechanism = (mechanisms or {}).get(mechanism, mechanism)
            rows.append(run_row(point, replication,
                                {MECHANISM: mechanism, TAKE_RATE: take_rate}, metrics))
    return rows


DEMO_METRICS = {"fill_rate": pa.float64(), "platform_revenue_usd": pa.float64(),
                "orders_filled": pa.int64(), "money_conserved": pa.bool_(),
                "scenario": pa.string()}
DEMO_PARAM_TYPES = {MECHANISM: pa.string(), TAKE_RATE: pa.float64()}


def demo_series() -> list[dict[str, Any]]:
    """Two hours of h100 prices per OK run: hour 0 priced in every run, hour 1 only in
    replication 0 (the others leased nothing then)."""
    rows = []
    for run in demo_rows():
        if run["status"] != "ok":
            continue
        for hour in range(2):
            priced = hour == 0 or run["replication"] == 0
            rows.append({"run_id": run["run_id"], "point": run["point"],
                         "replication": run["replication"], "time_s": 3600.0 * hour,
                         "gpu_model": "h100",
                         "price_index_usd_per_gpu_hour":
                             1.0 + run["point"] + 0.5 * run["replication"] if priced
                             else math.nan,
                         "leases": int(priced), "utilization": 0.1 * (run["replication"] + 1)})
    return rows


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return write_sweep(tmp_path / "sweep", demo_rows(), PARAMS, DEMO_METRICS, DEMO_PARAM_TYPES,
                       demo_series())


def t_interval(values: list[float]) -> tuple[float, float]:
    """scipy's 95% t interval of the mean, computed apart from the code under test."""
    data = np.array(values)
    return stats.t.interval(0.95, data.size - 1, loc=data.mean(), scale=stats.sem(data))


# ----------------------------------------------------------------------------- summaries

def test_intervals_match_scipy_per_point(demo: Path) -> None:
    groups = summarize(load_sweep(demo), ["fill_rate"])
    assert [tuple(g.values.values()) for g in groups] == POINTS
    for point, group in enumerate(groups):
        values = [v for v in FILL_RATE[point] if v is not None]
        e = group.metrics["fill_rate"]
        low, high = t_interval(values)
        assert e.n == len(values) and group.points == (point,)
        assert e.mean == pytest.approx(np.mean(values))
        assert e.sd == pytest.approx(np.std(values, ddof=1))
        assert (e.low, e.high) == pytest.approx((low, high))


def test_grouping_by_some_params_pools_the_others(demo: Path) -> None:
    groups = summarize(load_sweep(demo), ["fill_rate"], by=[MECHANISM])
    assert [g.values for g in groups] == [{MECHANISM: "first_price"},
                                          {MECHANISM: "second_price"}]
    for group, points in zip(groups, [(0, 1), (2, 3)], strict=True):
        pooled = [v for p in points for v in FILL_RATE[p] if v is not None]
        assert group.points == points
        assert group.runs == group.metrics["fill_rate"].n == len(pooled)
        assert (group.metrics["fill_rate"].low, group.metrics["fill_rate"].high) == \
            pytest.approx(t_interval(pooled))


def test_grouping_by_nothing_pools_every_run(demo: Path) -> None:
    (group,) = summarize(load_sweep(demo), ["fill_rate"], by=[])
    assert group.values == {} and group.label == "all runs"
    assert group.runs == 11 and group.failed == 1


def test_failed_runs_are_counted_not_averaged(demo: Path) -> None:
    sweep = load_sweep(demo)
    groups = summarize(sweep, ["fill_rate", "platform_revenue_usd"])
    assert sweep.failed == 1
    assert [g.failed for g in groups] == [0, 0, 0, 1]
    last = groups[3]
    assert last.runs == 2
    assert last.metrics["fill_rate"].mean == pytest.approx(0.32)
    assert last.metrics["platform_revenue_usd"].mean == pytest.approx(4000.5)


def test_combination_without_ok_runs_is_left_out(tmp_path: Path) -> None:
    rows = [run_row(0, 0, {MECHANISM: "a"}, {"fill_rate": 0.5}),
            run_row(1, 0, {MECHANISM: "b"}, None)]
    folder = write_sweep(tmp_path, rows, [MECHANISM], {"fill_rate": pa.float64()},
                         DEMO_PARAM_TYPES)
    sweep = load_sweep(folder)
    assert [g.values for g in summarize(sweep)] == [{MECHANISM: "a"}]
    assert sweep.failed == 1


def test_one_run_has_no_interval(tmp_path: Path) -> None:
    rows = [run_row(0, 0, {MECHANISM: "a"}, {"fill_rate": 0.5})]
    folder = write_sweep(tmp_path, rows, [MECHANISM], {"fill_rate": pa.float64()},
                         DEMO_PARAM_TYPES)
    (group,) = summarize(load_sweep(folder))
    e = group.metrics["fill_rate"]
    assert e.n == 1 and e.mean == 0.5
    assert math.isnan(e.half_width) and math.isnan(e.sd)
    assert format_estimate(e) == "0.5 (n=1)"


def test_null_metric_values_are_not_counted(tmp_path: Path) -> None:
    rows = [run_row(0, r, {MECHANISM: "a"}, {"fill_rate": v})
            for r, v in enumerate([0.2, None, 0.4])]
    folder = write_sweep(tmp_path, rows, [MECHANISM], {"fill_rate": pa.float64()},
                         DEMO_PARAM_TYPES)
    (group,) = summarize(load_sweep(folder))
    assert group.runs == 3 and group.metrics["fill_rate"].n == 2
    assert group.metrics["fill_rate"].mean == pytest.approx(0.3)


def test_metric_names_are_the_numeric_summary_columns(demo: Path) -> None:
    assert metric_names(load_sweep(demo)) == ["fill_rate", "platform_revenue_usd",
                                              "orders_filled"]


def test_default_metrics_skip_those_the_sweep_lacks(demo: Path) -> None:
    (group, *_) = summarize(load_sweep(demo))
    assert list(group.metrics) == ["fill_rate", "platform_revenue_usd"]


@pytest.mark.parametrize(("kwargs", "bad", "valid"), [
    ({"metrics": ["fill_rate", "nope"]}, "'nope'", "fill_rate, platform_revenue_usd"),
    ({"metrics": ["scenario"]}, "'scenario'", "orders_filled"),
    ({"by": ["market.nope"]}, "'market.nope'", f"{MECHANISM}, {TAKE_RATE}"),
])
def test_unknown_name_is_one_line_naming_it(demo: Path, kwargs: dict[str, Any], bad: str,
                                            valid: str) -> None:
    with pytest.raises(ReportError) as caught:
        summarize(load_sweep(demo), **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert bad in message and valid in message


def test_group_label() -> None:
    assert group_label({MECHANISM: "first_price", TAKE_RATE: 0.1}) == \
        "market.mechanism=first_price, market.take_rate=0.1"
    assert group_label({TAKE_RATE: None}) == "market.take_rate=(base)"


# ----------------------------------------------------------------------------- loading

def test_missing_directory_or_files_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such directory"):
        load_sweep(tmp_path / "absent")
    with pytest.raises(ReportError, match=r"no runs\.parquet; run `gpumarket sweep"):
        load_sweep(tmp_path)
    pq.write_table(pa.table({"run_id": ["x"]}), tmp_path / "runs.parquet")
    with pytest.raises(ReportError, match=r"no sweep\.json"):
        load_sweep(tmp_path)
    (tmp_path / "sweep.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match=r"sweep\.json: not readable JSON"):
        load_sweep(tmp_path)


def test_missing_timeseries_is_reported_when_needed(demo: Path) -> None:
    (demo / "timeseries.parquet").unlink()
    sweep = load_sweep(demo)
    assert summarize(sweep)  # the runs alone are enough for the table
    with pytest.raises(ReportError, match=r"no timeseries\.parquet"):
        summarize_timeseries(sweep)


# ----------------------------------------------------------------------------- time series

def test_price_index_mean_and_interval_per_hour(demo: Path) -> None:
    series = summarize_timeseries(load_sweep(demo), by=[MECHANISM])
    assert [(s.values, s.gpu_model) for s in series] == [
        ({MECHANISM: "first_price"}, "h100"), ({MECHANISM: "second_price"}, "h100")]
    first = series[0]
    # Hour 0: points 0 and 1, replications 0-2, price 1 + point + 0.5 replication.
    hour0 = [1.0 + p + 0.5 * r for p in (0, 1) for r in range(3)]
    assert first.time_s.tolist() == [0.0, 3600.0]
    assert first.runs.tolist() == [6, 2]
    assert first.price_usd_per_gpu_hour[0] == pytest.approx(np.mean(hour0))
    low, high = t_interval(hour0)
    assert first.half_width[0] == pytest.approx((high - low) / 2)
    # Hour 1 is priced only in replication 0 of points 0 and 1 (prices 1 and 2); the NaNs of
    # the other runs are left out of the price but their utilization still counts.
    assert first.price_usd_per_gpu_hour[1] == pytest.approx(1.5)
    assert first.utilization.tolist() == pytest.approx([0.2, 0.2])
    # The failed run of point 3 has no rows; second_price pools five OK runs.
    assert series[1].runs.tolist() == [5, 2]


def test_price_index_of_one_model_and_unknown_model(demo: Path) -> None:
    sweep = load_sweep(demo)
    assert len(summarize_timeseries(sweep, gpu_model="h100")) == 4
    with pytest.raises(ReportError, match=r"'a100'.*expected one of: h100"):
        summarize_timeseries(sweep, gpu_model="a100")


def test_price_index_with_one_run_has_no_interval(tmp_path: Path) -> None:
    rows = [run_row(0, 0, {MECHANISM: "a"}, {"fill_rate": 0.5})]
    series = [{"run_id": "r0-0", "point": 0, "replication": 0, "time_s": 0.0,
               "gpu_model": "h100", "price_index_usd_per_gpu_hour": 2.0, "leases": 1,
               "utilization": 0.5}]
    folder = write_sweep(tmp_path, rows, [MECHANISM], {"fill_rate": pa.float64()},
                         DEMO_PARAM_TYPES, series)
    (only,) = summarize_timeseries(load_sweep(folder))
    assert only.price_usd_per_gpu_hour.tolist() == [2.0]
    assert math.isnan(only.half_width[0])


# ----------------------------------------------------------------------------- report

def image_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_report_is_self_contained_with_valid_pngs(tmp_path: Path) -> None:
    folder = write_sweep(tmp_path / "sweep", demo_rows({"second_price": "<b>bold</b>"}),
                         PARAMS, DEMO_METRICS, DEMO_PARAM_TYPES, demo_series())
    path = write_report(load_sweep(folder), folder)
    assert path == folder / "report.html"
    page = path.read_text("utf-8")
    sources = image_sources(page)
    # 2 default metrics against the one numeric param (a line per mechanism), and one price
    # figure for the one GPU model.
    assert len(sources) == 3
    for source in sources:
        assert (folder / source).read_bytes()[:8] == PNG_SIGNATURE
    assert "http://" not in page and "https://" not in page
    assert "<b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "12 runs, 1 failed" in page
    assert "ValueError: boom" in page


def test_report_bounds_its_figures_and_says_so(tmp_path: Path) -> None:
    metrics = {f"m{i}": pa.float64() for i in range(14)}
    rows = [run_row(point, r, {MECHANISM: mechanism, TAKE_RATE: rate},
                    {name: float(point + r + i) for i, name in enumerate(metrics)})
            for r in range(2) for point, (mechanism, rate) in enumerate(POINTS)]
    folder = write_sweep(tmp_path, rows, PARAMS, metrics, DEMO_PARAM_TYPES)
    page = write_report(load_sweep(folder), folder, metrics=list(metrics)).read_text("utf-8")
    assert len(image_sources(page)) == MAX_METRIC_PLOTS
    assert f"first {MAX_METRIC_PLOTS} of 14" in page
    assert "no timeseries.parquet" in page  # drawn without the price figures, and says so


def test_report_rejects_unknown_names_before_writing(demo: Path) -> None:
    with pytest.raises(ReportError, match="'nope'"):
        write_report(load_sweep(demo), demo, metrics=["nope"])
    assert not (demo / "report.html").exists()


def test_importing_the_report_leaves_matplotlib_state_alone() -> None:
    code = ("import sys, matplotlib; before = matplotlib.rcParams._get('backend'); "
            "import market.experiments.report_html; "
            "assert 'matplotlib.pyplot' not in sys.modules; "
            "assert matplotlib.rcParams._get('backend') == before")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_grouped_by_one_param_says_so(demo: Path) -> None:
    sweep = load_sweep(demo)
    write_report(sweep, demo)
    page = write_report(sweep, demo, by=[TAKE_RATE]).read_text("utf-8")
    assert "Grouped by: Take rate." in page
    # 2 default metrics × 1 param, and the price figure; the earlier report's PNGs are gone.
    assert len(image_sources(page)) == 3
    assert len(list((demo / "report").glob("*.png"))) == 3


# ----------------------------------------------------------------------------- baselines

def paired_interval(values: list[float]) -> tuple[float, float]:
    """scipy's 95% t interval of the mean of per-seed differences."""
    return t_interval(values)


def test_baseline_differences_are_paired_by_seed(demo: Path) -> None:
    sweep = load_sweep(demo)
    baseline = parse_baseline(sweep, ["market.mechanism=first_price", "market.take_rate=0"])
    assert baseline == {MECHANISM: "first_price", TAKE_RATE: 0.0}
    comparisons = compare_to_baseline(sweep, baseline, ["fill_rate", "platform_revenue_usd"])
    assert [c.point for c in comparisons] == [0, 1, 2, 3]
    assert all(c.baseline_point == 0 for c in comparisons)
    itself = comparisons[0]
    assert itself.is_baseline and itself.differences["fill_rate"].mean == 0
    for c in comparisons[1:]:
        # Replication r of every point ran on seed 100 + r; point 3 failed on the third.
        seeds = [r for r in range(3) if FILL_RATE[c.point][r] is not None]
        diffs = [FILL_RATE[c.point][r] - FILL_RATE[0][r] for r in seeds]
        e = c.differences["fill_rate"]
        assert c.pairs == e.n == len(seeds)
        assert e.mean == pytest.approx(np.mean(diffs))
        assert (e.low, e.high) == pytest.approx(paired_interval(diffs))
        # platform revenue is 1000·(point + 1) + replication: the seed's share cancels out
        revenue = c.differences["platform_revenue_usd"]
        assert revenue.mean == pytest.approx(1000.0 * c.point) and revenue.sd == 0


def test_paired_interval_is_tighter_than_the_unpaired_ones(demo: Path) -> None:
    sweep = load_sweep(demo)
    (_, second, *_) = compare_to_baseline(sweep, {MECHANISM: "first_price", TAKE_RATE: 0.0},
                                          ["platform_revenue_usd"])
    groups = summarize(sweep, ["platform_revenue_usd"])
    unpaired = groups[0].metrics["platform_revenue_usd"].half_width
    assert second.differences["platform_revenue_usd"].half_width == 0 < unpaired


def test_baseline_naming_some_params_compares_within_the_others(demo: Path) -> None:
    sweep = load_sweep(demo)
    comparisons = compare_to_baseline(sweep, parse_baseline(sweep, [f"{TAKE_RATE}=0.0"]),
                                      ["fill_rate"])
    # first_price points are compared with point 0, second_price points with point 2
    assert [(c.point, c.baseline_point) for c in comparisons] == [(0, 0), (1, 0), (2, 2),
                                                                  (3, 2)]
    last = comparisons[3].differences["fill_rate"]
    assert last.n == 2 and last.mean == pytest.approx(np.mean([0.30 - 0.40, 0.34 - 0.45]))


@pytest.mark.parametrize(("assignments", "mentions"), [
    (["market.take_rate=0.3"], ["not a point of this sweep", "market.take_rate is one of: 0, "
                                                             "0.1"]),
    (["market.nope=1"], ["market.nope is not a swept parameter", f"{MECHANISM}, {TAKE_RATE}"]),
    (["market.take_rate"], ["expected PATH=VALUE"]),
    (["market.mechanism=dutch"], ["market.mechanism is one of: first_price, second_price"]),
    ([f"{TAKE_RATE}=0", f"{TAKE_RATE}=0.1"], ["given twice"]),
])
def test_bad_baseline_is_one_line_listing_valid_values(demo: Path, assignments: list[str],
                                                       mentions: list[str]) -> None:
    with pytest.raises(ReportError) as caught:
        parse_baseline(load_sweep(demo), assignments)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--baseline")
    for mention in mentions:
        assert mention in message


# ----------------------------------------------------------------------------- pass-through

NET = "market.bids_net_of_fee"
MODELS = ("h100", "rtx4090")


def fee_rows(price: dict[tuple[float, bool], list[float]], rates: list[float],
             failed: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """A take-rate × net-of-fee sweep whose runs serve 100 GPU-hours (60 on h100, 40 on the
    rtx4090) at `price[(rate, net)][replication]` USD per GPU-hour paid by tenants, of which
    the platform keeps the take rate."""
    rows = []
    points = [(rate, net) for rate in rates for net in (True, False)]
    for replication in range(len(next(iter(price.values())))):
        for point, (rate, net) in enumerate(points):
            paid = price[(rate, net)][replication] * 100.0
            metrics = {"tenant_spend_usd": paid, "platform_revenue_usd": paid * rate,
                       f"price_usd_per_gpu_hour.{MODELS[0]}.gpu_hours": 60.0,
                       f"price_usd_per_gpu_hour.{MODELS[1]}.gpu_hours": 40.0,
                       "fill_rate": 0.5}
            ok = (point, replication) != failed
            rows.append(run_row(point, replication, {TAKE_RATE: rate, NET: net},
                                metrics if ok else None))
    return rows


def fee_sweep(folder: Path, rows: list[dict[str, Any]]) -> Path:
    metrics = {"tenant_spend_usd": pa.float64(), "platform_revenue_usd": pa.float64(),
               **{f"price_usd_per_gpu_hour.{m}.gpu_hours": pa.float64() for m in MODELS},
               "fill_rate": pa.float64()}
    return write_sweep(folder, rows, [TAKE_RATE, NET], metrics,
                       {TAKE_RATE: pa.float64(), NET: pa.bool_()})


def test_pass_through_is_one_when_the_price_rises_by_the_fee_and_zero_when_flat(
        tmp_path: Path) -> None:
    # Sellers who price the fee in keep their net price p: tenants pay p / (1 − t), and the
    # fee per GPU-hour is t · p / (1 − t); the price paid rises by exactly the fee. Sellers
    # who ignore it keep the price paid where it was: the fee comes out of their revenue.
    net = [1.0, 1.5, 2.0]
    price = {}
    for rate in (0.0, 0.2, 0.5):
        price[(rate, True)] = [p / (1 - rate) for p in net]
        price[(rate, False)] = list(net)
    sweep = load_sweep(fee_sweep(tmp_path, fee_rows(price, [0.0, 0.2, 0.5])))
    passes = fee_pass_through(sweep)
    assert [(p.values[NET], p.take_rate_from, p.take_rate_to) for p in passes] == [
        (True, 0.0, 0.2), (True, 0.2, 0.5), (False, 0.0, 0.2), (False, 0.2, 0.5)]
    for p in passes:
        expected = 1.0 if p.values[NET] else 0.0
        assert (p.ratio, p.low, p.high) == pytest.approx((expected,) * 3, abs=1e-9)
        fee = [price[(p.take_rate_to, p.values[NET])][r] * p.take_rate_to
               - price[(p.take_rate_from, p.values[NET])][r] * p.take_rate_from
               for r in range(3)]
        assert p.fee_change.mean == pytest.approx(np.mean(fee))
        assert p.fee_change.n == 3
    # With a baseline at the take rate: every other rate against it, within each NET value.
    from_base = fee_pass_through(sweep, parse_baseline(sweep, [f"{TAKE_RATE}=0"]))
    assert [(p.values[NET], p.take_rate_from, p.take_rate_to) for p in from_base] == [
        (True, 0.0, 0.2), (False, 0.0, 0.2), (True, 0.0, 0.5), (False, 0.0, 0.5)]


def test_pass_through_pairs_seeds_and_leaves_failed_runs_out(tmp_path: Path) -> None:
    price = {(0.0, True): [2.0, 2.1, 1.9, 2.05], (0.1, True): [2.2, 2.35, 2.1, 9.9],
             (0.0, False): [1.0] * 4, (0.1, False): [1.0] * 4}
    # points: (0, True), (0, False), (0.1, True), (0.1, False); replication 3 of point 2
    # failed (its price would have been way off): three pairs are left
    sweep = load_sweep(fee_sweep(tmp_path, fee_rows(price, [0.0, 0.1], failed=(2, 3))))
    first = fee_pass_through(sweep)[0]
    dp = np.array([0.2, 0.25, 0.2])
    df = np.array([2.2, 2.35, 2.1]) * 0.1
    assert first.fee_change.n == 3 and first.ratio == pytest.approx(dp.mean() / df.mean())
    # Fieller's bounds are the roots of (mean dp − ρ mean df)² = t² var(dp − ρ df) / 3
    t2 = stats.t.ppf(0.975, 2) ** 2
    for bound in (first.low, first.high):
        gap = dp - bound * df
        assert gap.mean() ** 2 == pytest.approx(t2 * gap.var(ddof=1) / 3)
    assert first.low < first.ratio < first.high


def test_fieller_interval_covers_the_true_pass_through_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    trials, n, truth = 2000, 8, 0.6
    covered = 0
    for _ in range(trials):
        fee = rng.normal(0.2, 0.02, n)
        price = truth * fee + rng.normal(0.0, 0.03, n)
        _, low, high = fieller(price, fee)
        covered += low <= truth <= high
    # Within 3.5 binomial standard errors of 95%
    se = math.sqrt(0.95 * 0.05 / trials)
    assert abs(covered / trials - 0.95) < 3.5 * se


def test_fieller_interval_is_unbounded_when_the_fee_change_is_not_clear() -> None:
    ratio, low, high = fieller([0.1, -0.1, 0.05], [0.01, -0.01, 0.002])
    assert math.isinf(low) and math.isinf(high) and math.isfinite(ratio)
    assert all(math.isnan(x) for x in fieller([], []))


def test_no_pass_through_without_a_swept_take_rate_or_its_columns(demo: Path,
                                                                 tmp_path: Path) -> None:
    assert fee_pass_through(load_sweep(demo)) == []  # no gpu_hours columns
    rows = [run_row(0, 0, {MECHANISM: "a"}, {"tenant_spend_usd": 1.0,
                                             "platform_revenue_usd": 0.1})]
    folder = write_sweep(tmp_path, rows, [MECHANISM], {"tenant_spend_usd": pa.float64(),
                                                       "platform_revenue_usd": pa.float64()},
                         DEMO_PARAM_TYPES)
    assert fee_pass_through(load_sweep(folder)) == []


def test_report_shows_baseline_differences_and_pass_through(tmp_path: Path) -> None:
    price = {(rate, net): [(2.0 + 0.1 * r) / (1 - rate if net else 1) for r in range(3)]
             for rate in (0.0, 0.2) for net in (True, False)}
    folder = fee_sweep(tmp_path / "fees", fee_rows(price, [0.0, 0.2]))
    sweep = load_sweep(folder)
    page = write_report(sweep, folder, ["tenant_spend_usd"],
                        baseline={TAKE_RATE: 0.0}).read_text("utf-8")
    assert "Paired differences from the baseline (Take rate 0%)" in page
    assert "Fee pass-through" in page and "[100%, 100%]" in page and "[0%, 0%]" in page
    sources = image_sources(page)
    assert any(s.startswith("report/diff_") for s in sources)
    assert "report/pass_through.png" in sources
    for source in sources:
        assert (folder / source).read_bytes()[:8] == PNG_SIGNATURE


def test_difference_shows_float_noise_around_zero_as_zero() -> None:
    from market.experiments.analysis import Estimate, format_difference

    assert format_difference(Estimate(4, -6.9e-18, 0.01, 0.0268)) == "0 ± 0.027"
    assert format_difference(Estimate(4, 0.0, 0.0, 0.0)) == "0 ± 0"
    assert format_difference(Estimate(4, -0.5, 0.1, 0.2)) == "-0.50 ± 0.20 *"


# ----------------------------------------------------------------------------- for people

def test_unknown_metric_among_hundreds_is_a_short_line_with_the_nearest(tmp_path: Path) -> None:
    metrics = {f"price_usd_per_gpu_hour.gpu{i}.{stat}": pa.float64()
               for i in range(60) for stat in ("mean", "median", "count", "p90")}
    metrics["fill_rate"] = pa.float64()
    rows = [run_row(p, r, {MECHANISM: m, TAKE_RATE: t}, dict.fromkeys(metrics, 1.0))
            for r in range(2) for p, (m, t) in enumerate(POINTS)]
    sweep = load_sweep(write_sweep(tmp_path, rows, PARAMS, metrics, DEMO_PARAM_TYPES))
    for bad, nearest in (("fillrate", "fill_rate"),
                         ("price_usd_per_gpu_hour.gpu7.meen",
                          "price_usd_per_gpu_hour.gpu7.mean")):
        with pytest.raises(ReportError) as caught:
            summarize(sweep, [bad])
        message = str(caught.value)
        assert "\n" not in message and len(message) < 400, message
        assert f"did you mean: {nearest}" in message and "241 names in all" in message


def test_plots_without_data_are_notes_not_empty_axes(tmp_path: Path) -> None:
    """A metric no run measured, one no parameter moves, and a GPU model that never traded
    get a line of text each instead of a figure; a model that traded late gets an axis over
    its hours only, and says so."""
    metrics = {"fill_rate": pa.float64(), "never": pa.float64(), "pinned_s": pa.float64()}
    rows = [run_row(p, r, {MECHANISM: m, TAKE_RATE: t},
                    {"fill_rate": 0.1 * p + 0.01 * r, "never": None, "pinned_s": 180.0})
            for r in range(2) for p, (m, t) in enumerate(POINTS)]
    series = [{"run_id": row["run_id"], "point": row["point"],
               "replication": row["replication"], "time_s": 3600.0 * hour, "gpu_model": model,
               "price_index_usd_per_gpu_hour": 2.0 + hour if model == "h100" and hour >= 20
               else math.nan, "leases": 1, "utilization": 0.0}
              for row in rows for model in ("h100", "rtx3090") for hour in range(1, 25)]
    folder = write_sweep(tmp_path, rows, PARAMS, metrics, DEMO_PARAM_TYPES, series)
    page = write_report(load_sweep(folder), folder, metrics=list(metrics)).read_text("utf-8")
    sources = image_sources(page)
    assert sources == ["report/00_fill_rate_by_market.take_rate.png",
                       "report/price_00_h100.png"]
    assert "Not plotted, no run has a value: Never." in page
    assert "Not plotted, the same in every run: Pinned (3 min)." in page
    assert "Not plotted, no lease in any hour of any run, so no price index: RTX 3090." in page
    assert "The axis covers only the hours with a lease: day 0.833 to 1, of 1 simulated" in page


@pytest.mark.parametrize(("key", "title"), [
    ("welfare.allocative_efficiency", "Allocative efficiency (%)"),
    ("price_usd_per_gpu_hour.h100.mean", "H100 mean price (USD/GPU-h)"),
    ("price_usd_per_gpu_hour.b200.p90", "B200 90th percentile price (USD/GPU-h)"),
    ("providers.datacenter.short_run_profit_usd", "Data center short-run profit (USD)"),
    ("providers.edge_box.revenue_usd", "Edge box revenue (USD)"),  # a new archetype
    ("time_to_lease_s.p90", "90th percentile time to lease (min)"),
    ("escrow_held_micro", "Escrow held (USD)"),
    ("interruptible.paused_gpu_hours", "Interruptible paused GPU-hours (GPU-h)"),
    ("welfare.jobs.served", "Jobs, served"),
    ("some_new_share", "Some new share (%)"),
])
def test_metric_labels_come_from_patterns(key: str, title: str) -> None:
    from market.experiments import labels


    assert labels.metric(key).title == title


def test_one_formatter_for_page_and_terminal() -> None:
    from market.experiments import labels


    fill = labels.metric("fill_rate")
    e = estimate([0.45, 0.5, 0.55])
    assert format_estimate(e) == "0.50 ± 0.12"  # the terminal, in the stored unit
    assert format_estimate(e, fill) == "50 ± 12"  # the page, in percent
    assert labels.format_number(1234.5678) == "1,235" and labels.format_number(0.012345) \
        == "0.0123"

"""Sweep files and sweeps: expansion, seeds, one-line errors, streaming, resume after a kill,
identical results on local processes and on a Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from market.experiments.execution import run_sweep
from market.experiments.sweep import SweepError, builtin_sweeps, load_sweep
from market.observe.eventlog import read_scenario

#: A market small enough that a run takes a fraction of a second.
SMALL = """
[set]
duration_days = 0.3
"market.settlement" = "aep23"
"tenants.arrivals_per_hour" = 30
"providers.0.count" = 8
"providers.1.count" = 20
"providers.2.count" = 1
"""


def sweep_file(tmp_path: Path, body: str, name: str = "s.toml", small: bool = True) -> Path:
    path = tmp_path / name
    path.write_text(body + (SMALL if small else ""))
    return path


def runs_table(directory: Path):
    return pq.read_table(directory / "runs.parquet")


def comparable(directory: Path) -> str:
    """runs.parquet without what depends on the machine (wall time), as JSON text (where NaN
    equals NaN), with the time series."""
    runs = runs_table(directory).drop(["elapsed_s"]).to_pylist()
    series = pq.read_table(directory / "timeseries.parquet").to_pylist()
    return json.dumps([runs, series])


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True,
                          text=True, timeout=600, env=env, check=False, **kwargs)


# ----------------------------------------------------------------------------- expansion


def test_grid_and_list_expand_to_their_cross_product_in_file_order(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, """
replications = 2
[grid]
"market.take_rate" = [0.0, 0.1, 0.2]
"market.bidding_window_s" = [30, 180]
[[runs]]
"market.mechanism" = "first_price"
[[runs]]
"market.mechanism" = "second_price"
"""))
    assert sweep.params == ["market.mechanism", "market.take_rate", "market.bidding_window_s"]
    assert len(sweep.points) == 2 * 3 * 2
    assert sweep.points[0] == {"market.mechanism": "first_price", "market.take_rate": 0.0,
                               "market.bidding_window_s": 30}
    assert sweep.points[1]["market.bidding_window_s"] == 180  # the last grid path varies fastest
    assert sweep.points[6]["market.mechanism"] == "second_price"
    runs = sweep.runs()
    assert len(runs) == 24 and len({r.run_id for r in runs}) == 24
    # replication-major: every point's first replication before any second one
    assert [r.replication for r in runs[:12]] == [0] * 12
    assert [r.point for r in runs[:12]] == list(range(12))


def test_a_grid_alone_and_a_list_alone(tmp_path):
    grid = load_sweep(sweep_file(tmp_path, '[grid]\n"market.take_rate" = [0.0, 0.3]\n', "g.toml"))
    assert [p["market.take_rate"] for p in grid.points] == [0.0, 0.3]
    listed = load_sweep(sweep_file(tmp_path, '[[runs]]\n"market.take_rate" = 0.1\n', "l.toml"))
    assert listed.points == [{"market.take_rate": 0.1}]
    bare = load_sweep(sweep_file(tmp_path, "replications = 3\n", "b.toml"))
    assert bare.points == [{}] and len(bare.runs()) == 3


def test_replication_seeds_come_from_the_root_seed_by_spawning(tmp_path):
    import numpy as np

    sweep = load_sweep(sweep_file(tmp_path, "seed = 7\nreplications = 4\n"))
    children = np.random.SeedSequence(7).spawn(4)
    assert sweep.seeds == [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1))
                           for c in children]
    assert len(set(sweep.seeds)) == 4
    again = load_sweep(sweep_file(tmp_path, "seed = 7\nreplications = 4\n", "again.toml"))
    assert [r.run_id for r in again.runs()] == [r.run_id for r in sweep.runs()]
    other = load_sweep(sweep_file(tmp_path, "seed = 8\nreplications = 4\n", "other.toml"))
    assert not {r.run_id for r in other.runs()} & {r.run_id for r in sweep.runs()}


@pytest.mark.parametrize("body, expected", [
    ("replications = 0\n", "field `replications`: Input should be greater than or equal to 1"),
    ("replicas = 2\n", "field `replicas`: Extra inputs are not permitted"),
    ('[grid]\n"market.take_rate" = []\n', "field `grid.market.take_rate`: expected a non-empty"),
    ('[grid]\n"market.take_rate" = 0.1\n', "field `grid.market.take_rate`: Input should be a "
                                           "valid list"),
    ('[grid]\n"market.take_rate" = [0.1, 2.0]\n', "point 1 (market.take_rate=2.0): scenario "),
    ('[[runs]]\n"market.nonsense" = 1\n', "field `market.nonsense`: Extra inputs"),
    ('[[runs]]\n"market.take_rate" = 0.1\n[grid]\n"market.take_rate" = [0.2]\n',
     "field `runs.0`: market.take_rate is in the grid too"),
    ('[grid]\n"market..x" = [1]\n', "expected a dotted scenario path"),
    ('base = "missing.toml"\n', "is neither a file nor a built-in scenario"),
    ("replications = \n", "not valid TOML"),
    ('[set]\n"market.take_rate" = 0.1\n[grid]\n"market.take_rate" = [0.2]\n',
     "field `set`: market.take_rate is swept too"),
])
def test_malformed_sweep_files_are_one_line_errors_naming_the_field(tmp_path, body, expected):
    path = sweep_file(tmp_path, body, small=False)
    with pytest.raises(SweepError) as caught:
        load_sweep(path)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    done = cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert expected in " ".join(done.stderr.split()) and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_builtin_example_sweeps_load():
    assert {"mechanisms", "home_rigs", "take_rate"} <= set(builtin_sweeps())
    mechanisms = load_sweep("mechanisms")
    assert [p["market.mechanism"] for p in mechanisms.points] == [
        "tenant_pick", "first_price", "second_price", "batch_clearing"]
    assert load_sweep("take_rate").params == ["market.take_rate", "market.bids_net_of_fee"]
    assert load_sweep("home_rigs").params == ["providers.0.count", "providers.1.count"]


# ----------------------------------------------------------------------------- running

TWO_POINTS = """
seed = 3
replications = 3
[grid]
"market.take_rate" = [0.05, 0.3]
"""


def test_a_sweep_writes_tidy_tables_and_a_manifest(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, TWO_POINTS))
    progress = run_sweep(sweep, tmp_path / "out", workers=2)
    assert (progress.done, progress.failed, progress.total) == (6, 0, 6)
    runs = runs_table(tmp_path / "out").to_pylist()
    assert [(r["point"], r["replication"]) for r in runs] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert all(r["status"] == "ok" and r["error"] is None for r in runs)
    assert [r["market.take_rate"] for r in runs] == [0.05] * 3 + [0.3] * 3
    assert all(r["money_conserved"] for r in runs)
    # the platform keeps its take rate of every payout
    for r in runs:
        paid = r["tenant_spend_usd"]
        assert r["platform_revenue_usd"] == pytest.approx(paid * r["market.take_rate"],
                                                          rel=1e-3, abs=1e-3)
    # replications differ; the same replication of both points shares its seed
    assert len({r["seed"] for r in runs}) == 3
    assert len({r["orders_posted"] for r in runs[:3]}) > 1
    series = pq.read_table(tmp_path / "out" / "timeseries.parquet")
    assert set(series["run_id"].to_pylist()) == {r["run_id"] for r in runs}
    assert series.num_rows > 0
    manifest = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert manifest["params"] == ["market.take_rate"] and manifest["runs"] == 6
    assert manifest["sweep_toml"].startswith("\nseed = 3")
    assert {"simpy", "numpy", "pyarrow"} <= set(manifest["dependencies"])
    session = manifest["sessions"][-1]
    assert session["started"] <= session["ended"] and session["runs_ok"] == 6


def test_reruns_match_byte_for_byte_and_a_finished_sweep_is_not_overwritten(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, TWO_POINTS))
    run_sweep(sweep, tmp_path / "a", workers=2)
    run_sweep(sweep, tmp_path / "b", workers=1)
    assert comparable(tmp_path / "a") == comparable(tmp_path / "b")
    with pytest.raises(SweepError, match="already holds this sweep; pass --resume"):
        run_sweep(sweep, tmp_path / "a")
    other = load_sweep(sweep_file(tmp_path, TWO_POINTS.replace("seed = 3", "seed = 4"),
                                  "other.toml"))
    with pytest.raises(SweepError, match="holds another sweep"):
        run_sweep(other, tmp_path / "a", resume=True)
    # resuming a finished sweep has nothing to do
    assert run_sweep(sweep, tmp_path / "a", resume=True).skipped == 6


def test_local_processes_and_a_dask_cluster_give_identical_results(tmp_path):
    from dask.distributed import LocalCluster

    sweep = load_sweep(sweep_file(tmp_path, TWO_POINTS))
    run_sweep(sweep, tmp_path / "local", workers=2)
    run_sweep(sweep, tmp_path / "dask", workers=2, dask="local")
    assert comparable(tmp_path / "local") == comparable(tmp_path / "dask")
    # an existing cluster, by its scheduler's address
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        run_sweep(sweep, tmp_path / "remote", dask=cluster.scheduler_address)
    assert comparable(tmp_path / "local") == comparable(tmp_path / "remote")
    with pytest.raises(SweepError, match=r"--dask tcp://127\.0\.0\.1:9: cannot reach"):
        run_sweep(sweep, tmp_path / "nowhere", dask="tcp://127.0.0.1:9")
    assert not (tmp_path / "nowhere").exists()


def test_event_logs_hold_every_event_of_each_run(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, "event_logs = true\n"))
    run_sweep(sweep, tmp_path / "out", workers=1)
    (run,) = runs_table(tmp_path / "out").to_pylist()
    folder = tmp_path / "out" / "events" / run["run_id"]
    events = pq.read_table(folder / "events.parquet").to_pylist()
    kinds = [e["kind"] for e in events]
    assert kinds.count("order_opened") == run["orders_posted"]
    assert kinds.count("lease_created") == run["leases_created"]
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert pq.read_table(folder / "leases.parquet").num_rows == run["leases_created"]
    # Its summary and resolved scenario: the folder is a run folder `gpumarket evaluate` reads.
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["orders_posted"] == run["orders_posted"]
    assert read_scenario(folder).duration_days == 0.3  # the sweep's own settings
    assert not list((tmp_path / "out" / "events").glob(".*"))  # no half-written logs


# ----------------------------------------------------------------------------- failures, kills


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, installed_strategy):
    # a plug-in strategy that raises once the market asks it for a price
    env = installed_strategy("boom", "class Boom:\n"
                             "    def prices(self, order, providers, view):\n"
                             "        raise RuntimeError('no price today')\n", "Boom")
    path = sweep_file(tmp_path, """
replications = 2
[[runs]]
"providers.2.strategy" = { name = "list_price" }
[[runs]]
"providers.2.strategy" = { name = "boom" }
""")
    done = cli("sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "2", env=env)
    assert done.returncode == 3, done.stderr
    assert "2 runs failed" in done.stderr
    runs = runs_table(tmp_path / "out").to_pylist()
    assert [r["status"] for r in runs] == ["ok", "ok", "failed", "failed"]
    assert all("RuntimeError: no price today" in r["error"] for r in runs[2:])
    assert runs[2]["providers.2.strategy"] == '{"name": "boom"}'
    assert runs[2]["fill_rate"] is None and runs[0]["fill_rate"] is not None


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _workers(pid: int) -> list[int]:
    """Worker processes of the sweep `pid`: the children of its fork server."""
    found = []
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"forkserver" in command:
            found += _children(child)
    return found


def _wait_for(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


SLOW = """
seed = 5
replications = 5
[grid]
"market.take_rate" = [0.1, 0.2]
[set]
duration_days = 1.0
"tenants.arrivals_per_hour" = 40
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_killed_worker_loses_nothing_and_duplicates_nothing(tmp_path):
    path = sweep_file(tmp_path, SLOW, small=False)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "sweep", str(path), "--out",
                                str(out), "--workers", "2"], stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(list((out / "parts").glob("*.json"))) >= 1
              and _workers(process.pid), "a first finished run")
    os.kill(_workers(process.pid)[0], signal.SIGKILL)  # mid-run: both workers are busy
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    runs = runs_table(out).to_pylist()
    assert len(runs) == 10 and len({r["run_id"] for r in runs}) == 10
    assert all(r["status"] == "ok" for r in runs)
    clean = tmp_path / "clean"
    run_sweep(load_sweep(path), clean, workers=2)
    assert comparable(out) == comparable(clean)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_resume_after_the_whole_sweep_is_killed(tmp_path):
    path = sweep_file(tmp_path, SLOW, small=False)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "sweep", str(path), "--out",
                                str(out), "--workers", "2"], stderr=subprocess.DEVNULL,
                               start_new_session=True)
    _wait_for(lambda: len(list((out / "parts").glob("*.json"))) >= 2,
              "two finished runs")
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and its workers, mid-run
    process.wait(timeout=60)
    finished = {p.name for p in (out / "parts").glob("*.json")}
    assert 2 <= len(finished) < 10
    done = cli("sweep", str(path), "--out", str(out), "--resume", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert f"{len(finished)} before" in " ".join(done.stderr.split())
    runs = runs_table(out).to_pylist()
    assert len(runs) == 10 and len({r["run_id"] for r in runs}) == 10
    clean = tmp_path / "clean"
    run_sweep(load_sweep(path), clean, workers=2)
    assert comparable(out) == comparable(clean)
    manifest = json.loads((out / "sweep.json").read_text())
    assert len(manifest["sessions"]) == 2


def test_report_prints_intervals_and_writes_html_and_results_load_in_one_line(tmp_path):
    import duckdb
    import pandas as pd

    path = sweep_file(tmp_path, TWO_POINTS)
    out = tmp_path / "out"
    assert cli("sweep", str(path), "--out", str(out), "--workers", "2").returncode == 0
    done = cli("report", str(out), "--metric", "fill_rate", "--metric", "platform_revenue_usd",
               env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "6 runs, 0 failed" in done.stdout and "±" in done.stdout
    assert (out / "report.html").is_file() and list((out / "report").glob("*.png"))
    # the README's one-liners
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs["market.take_rate"]) == [0.05] * 3 + [0.3] * 3
    means = duckdb.sql(f"""SELECT "market.take_rate", avg(fill_rate) FROM
                          '{out / "runs.parquet"}' GROUP BY 1 ORDER BY 1""").fetchall()
    assert [row[0] for row in means] == [0.05, 0.3]
    bad = cli("report", str(out), "--metric", "fill_rat")
    assert bad.returncode == 2 and "fill_rat" in bad.stderr and bad.stderr.count("\n") == 1


def test_the_readme_sweep_file_is_valid(tmp_path):
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "[grid]" in b]
    sweep = load_sweep(sweep_file(tmp_path, block, small=False))
    assert len(sweep.points) == 2 * 5 and len(sweep.runs()) == 40
    assert sweep.fixed == {"duration_days": 2}

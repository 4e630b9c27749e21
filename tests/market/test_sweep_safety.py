"""Sweeps that never drop a point and leave no orphan process: two points resolving to the
same scenario are refused, a sweep's size is bounded before it is expanded, and the workers,
the fork server and the resource tracker end with the sweep process, even under `kill -9`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from market.experiments import sweep as sweeps
from market.experiments.execution import run_sweep
from market.experiments.sweep import (
    MAX_FILE_BYTES,
    MAX_POINT_BYTES,
    MAX_RUNS,
    SweepError,
    load_sweep,
)
from market.scenario import load_scenario
from tests.market.test_sweep import sweep_file


def refused(path: Path) -> str:
    """The one-line SweepError that loading `path` raises."""
    with pytest.raises(SweepError) as caught:
        load_sweep(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


# ----------------------------------------------------------------------------- duplicates

SAME = "resolve to the same scenario"
ADVICE = "remove one (replications repeat a point on new seeds)"


def test_a_value_listed_twice_in_the_grid_is_refused_naming_both_points(tmp_path):
    message = refused(sweep_file(tmp_path, """
[grid]
"market.take_rate" = [0.1, 0.2, 0.1]
"market.bids_net_of_fee" = [true, false]
"""))
    # point 4 = take rate [2] x bids [0] meets point 0 = take rate [0] x bids [0]
    assert (f"points 0 (market.take_rate=0.1, market.bids_net_of_fee=True) and 4 "
            f"(market.take_rate=0.1, market.bids_net_of_fee=True) {SAME} (from "
            f"grid.market.take_rate[0] and grid.market.take_rate[2]); {ADVICE}") in message


DEFAULT_TAKE_RATE = load_scenario("default").market.take_rate


@pytest.mark.parametrize("body, first, second, sources", [
    # two spellings of one number
    ('[grid]\n"market.take_rate" = [0.1, 0.10]\n', "market.take_rate=0.1",
     "market.take_rate=0.1", "grid.market.take_rate[0] and grid.market.take_rate[1]"),
    # an integer and a float the scenario reads as the same number
    ('[grid]\n"market.bidding_window_s" = [30, 30.0]\n', "market.bidding_window_s=30",
     "market.bidding_window_s=30.0",
     "grid.market.bidding_window_s[0] and grid.market.bidding_window_s[1]"),
    # two equal runs entries, each crossed with the grid
    ('[[runs]]\n"market.mechanism" = "first_price"\n[[runs]]\n'
     '"market.mechanism" = "first_price"\n[grid]\n"market.take_rate" = [0.1, 0.2]\n',
     "market.mechanism='first_price', market.take_rate=0.1",
     "market.mechanism='first_price', market.take_rate=0.1", "runs.0 and runs.1"),
    # one entry names the base's value, the other leaves it
    (f'[[runs]]\n"market.mechanism" = "first_price"\n"market.take_rate" = '
     f'{DEFAULT_TAKE_RATE!r}\n[[runs]]\n"market.mechanism" = "first_price"\n',
     f"market.mechanism='first_price', market.take_rate={DEFAULT_TAKE_RATE!r}",
     "market.mechanism='first_price'", "runs.0 and runs.1"),
])
def test_different_spellings_of_one_scenario_are_refused(tmp_path, body, first, second,
                                                         sources):
    message = refused(sweep_file(tmp_path, body))
    assert f"points 0 ({first}) and " in message
    assert f"({second}) {SAME} (from {sources}); {ADVICE}" in message


def test_a_value_equal_to_the_base_s_is_the_base_point(tmp_path):
    message = refused(sweep_file(tmp_path, f'[[runs]]\n[[runs]]\n"market.take_rate" = '
                                 f'{DEFAULT_TAKE_RATE!r}\n'))
    assert (f"points 0 (the base) and 1 (market.take_rate={DEFAULT_TAKE_RATE!r}) {SAME} "
            "(from runs.0 and runs.1)") in message


def test_near_but_different_values_are_distinct_points(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, """
replications = 2
[grid]
"market.take_rate" = [0.1, 0.1000001, 0.2]
"""))
    runs = sweep.runs()
    assert len(sweep.points) == 3 and len({r.run_id for r in runs}) == len(runs) == 6


def test_duplicates_through_the_cli_exit_2_in_one_line_and_write_nothing(tmp_path):
    path = sweep_file(tmp_path, '[grid]\n"market.take_rate" = [0.1, 0.2, 0.1]\n')
    done = cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"points 0 (market.take_rate=0.1) and 2 (market.take_rate=0.1) {SAME}" in \
        " ".join(done.stderr.split())
    assert not (tmp_path / "out").exists()


def test_every_run_of_the_builtin_sweeps_has_its_own_id():
    for name in sweeps.builtin_sweeps():
        runs = load_sweep(name).runs()
        assert len({run.run_id for run in runs}) == len(runs), name


# ----------------------------------------------------------------------------- size


def test_a_ten_billion_point_grid_is_refused_from_its_lengths(tmp_path):
    grid = "".join(f'"market.p{i}" = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n' for i in range(10))
    path = sweep_file(tmp_path, "[grid]\n" + grid)
    start = time.perf_counter()
    message = refused(path)
    assert time.perf_counter() - start < 5  # not expanded: that would take hours, and 1 TB
    assert (f"field `grid`: 10,000,000,000 points (10,000,000,000 grid combinations), over "
            f"the limit of {MAX_RUNS:,} runs per sweep") in message
    done = cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "field `grid`: 10,000,000,000 points" in " ".join(done.stderr.split())
    assert not (tmp_path / "out").exists()


def test_the_run_limit_counts_points_times_replications(tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps, "MAX_RUNS", 6)
    grid = '[grid]\n"market.take_rate" = [0.1, 0.2, 0.3]\n'
    assert len(load_sweep(sweep_file(tmp_path, "replications = 2\n" + grid)).runs()) == 6
    message = refused(sweep_file(tmp_path, "replications = 3\n" + grid, "more.toml"))
    assert ("field `replications`: 3 replications x 3 points = 9 runs, over the limit of 6 "
            "runs per sweep") in message
    # runs entries times grid combinations
    entries = '[[runs]]\n"market.mechanism" = "first_price"\n' \
              '[[runs]]\n"market.mechanism" = "second_price"\n[[runs]]\n'
    message = refused(sweep_file(tmp_path, entries + grid, "cross.toml"))
    assert "field `grid`: 9 points (3 grid combinations x 3 runs entries)" in message


def test_a_long_list_of_runs_alone_is_refused_naming_runs(tmp_path):
    body = "runs = [" + ", ".join(["{}"] * (MAX_RUNS + 1)) + "]\n"
    message = refused(sweep_file(tmp_path, body, small=False))
    assert f"field `runs`: {MAX_RUNS + 1:,} points ({MAX_RUNS + 1:,} runs entries)" in message


def test_a_file_past_the_size_limit_is_not_read(tmp_path):
    path = sweep_file(tmp_path, "# padding\n" * (MAX_FILE_BYTES // 10 + 1), small=False)
    assert f"larger than {MAX_FILE_BYTES:,} bytes" in refused(path)


@pytest.mark.parametrize("body, field", [
    # a large `set`, validated with every one of many points
    ('[set]\nname = "{big}"\n[grid]\n"market.take_rate" = [{rates}]\n'
     '"market.bidding_window_s" = [{windows}]\n', "set"),
    # large values, carried by every run
    ('replications = 10\n[grid]\n"market.mechanism" = ["{big}", "{big}x"]\n'
     '"market.take_rate" = [{rates}]\n"market.bidding_window_s" = [{windows}]\n', "grid"),
])
def test_values_that_would_add_up_past_the_limit_are_refused_before_expansion(
        tmp_path, body, field):
    text = body.format(big="a" * 20_000, rates=", ".join(f"0.{i:03d}" for i in range(1, 60)),
                       windows=", ".join(str(30 + i) for i in range(60)))
    message = refused(sweep_file(tmp_path, text, small=False))
    assert f"field `{field}`: the " in message
    assert f"over the limit of {MAX_POINT_BYTES:,}; use fewer points or smaller values" \
        in message


@pytest.mark.parametrize("body, expected", [
    ("seed = " + "9" * 5000 + "\n", "not valid TOML: Exceeds the limit (4300 digits)"),
    ("[set]\nx = " + "[" * 100_000 + "]" * 100_000 + "\n", "not valid TOML: arrays or "
     "tables nested too deeply"),
])
def test_hostile_toml_is_one_line(tmp_path, body, expected):
    assert expected in refused(sweep_file(tmp_path, body, small=False))


@pytest.mark.parametrize("name", ["../elsewhere", "a/b", ".hidden", "x" * 101, "tab\there"])
def test_a_name_must_be_one_folder_s_name(tmp_path, name):
    # the default output directory is sweeps/NAME
    message = refused(sweep_file(tmp_path, f"name = {json.dumps(name)}\n"))
    assert "field `name`: expected at most 100 printable characters, without / or \\" \
        in message


def test_an_output_directory_that_cannot_be_made_is_one_line(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, ""))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SweepError, match=r"^--out \S+a_file: is a file; choose a new"):
        run_sweep(sweep, tmp_path / "a_file")
    with pytest.raises(SweepError, match=r"^--out \S+a_file/out: cannot be made a sweep's "
                                         r"directory: Not a directory$"):
        run_sweep(sweep, tmp_path / "a_file" / "out")


def test_every_point_is_checked_against_the_run_budget_before_anything_runs(tmp_path):
    path = sweep_file(tmp_path, """
[grid]
"tenants.arrivals_per_hour" = [30, 100000]
[set]
duration_days = 30
""", small=False)
    message = refused(path)
    assert message.startswith(f"sweep file {str(path)!r}: point 1 "
                              "(tenants.arrivals_per_hour=100000): tenants.arrivals_per_hour: ")
    assert "--allow-large" in message
    assert len(load_sweep(path, allow_large=True).points) == 2


# ----------------------------------------------------------------------------- no orphans

#: Runs of about 20 s each on one core: in flight whenever the sweep process is stopped.
LONG_RUNS = """
seed = 5
replications = 4
[grid]
"market.take_rate" = [0.1, 0.2]
[set]
duration_days = 30.0
"tenants.arrivals_per_hour" = 40
"""


def _poll(condition, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has ended: only its exit status is left)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def sweep_process(tmp_path):
    """`start(*options)`: a sweep of two workers in a child process, returned once its
    workers are busy, with all its descendants (workers, fork server or Dask's processes,
    resource tracker). Whatever the test's outcome, every one of them is gone after it."""
    started: list[psutil.Process] = []

    def start(*options: str) -> tuple[subprocess.Popen, list[psutil.Process]]:
        path = sweep_file(tmp_path, LONG_RUNS, small=False)
        process = subprocess.Popen([sys.executable, "-m", "api.cli", "sweep", str(path),
                                    "--out", str(tmp_path / "out"), "--workers", "2",
                                    *options], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        parent = psutil.Process(process.pid)
        started.append(parent)

        def busy() -> bool:
            """Two workers running: children of the fork server (local) or spawned (Dask)."""
            try:
                found = parent.children(recursive=True)
                started.extend(found)
                workers = [p for p in found if "spawn_main" in " ".join(p.cmdline())
                           or (p.ppid() != parent.pid
                               and "forkserver" in " ".join(p.cmdline()))]
                return sum(p.cpu_times().user > 0.3 for p in workers) >= 2
            except psutil.NoSuchProcess:
                return False

        _poll(busy, "two busy workers", 60)
        return process, parent.children(recursive=True)

    yield start
    for process in _alive(started):  # only after a failure: the test found them gone
        process.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux processes")
@pytest.mark.parametrize("executor", [(), ("--dask", "local")], ids=["local", "dask"])
def test_killing_the_sweep_process_ends_every_process_it_started(sweep_process, executor):
    process, descendants = sweep_process(*executor)
    assert len(descendants) >= 3  # two workers and the resource tracker, at least
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    _poll(lambda: not _alive(descendants), "every process of the killed sweep to end", 15)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux processes")
def test_ctrl_c_stops_at_once_keeps_finished_runs_and_ends_every_process(tmp_path,
                                                                        sweep_process):
    process, descendants = sweep_process()
    process.send_signal(signal.SIGINT)  # the sweep process alone: workers are cut off
    # at once, not after the runs in flight (some 20 s each)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, stderr
    assert "run again with --resume" in " ".join(stderr.split())
    assert (tmp_path / "out" / "runs.parquet").is_file()  # gathered, empty or not
    _poll(lambda: not _alive(descendants), "every process of the sweep to end", 15)

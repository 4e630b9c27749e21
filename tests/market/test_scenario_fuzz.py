"""Fuzz: hostile values on random scenario paths, as `--set`, as sweep values and as scenario
TOML, through loading, the run budget and a short run where accepted.

Whatever comes in, the only way out is a one-line ScenarioError or a run that ends: no other
exception, no hang (each example runs under an alarm), no memory blow-up (an accepted scenario
has passed `check_budget`, and the run is cut to a few simulated minutes). The last test runs
the real CLI in a child process under a memory cap (RLIMIT_AS) and a timeout."""

from __future__ import annotations

import json
import math
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.budget import check_budget, estimate
from market.builder import Market
from market.scenario import ScenarioError, load_scenario, scenario_from_toml

#: Wall seconds an example may take, from loading to the end of its run.
EXAMPLE_S = 20
#: Simulated days an accepted scenario is run for (the budget judged the whole of it).
RUN_DAYS = 0.01
#: Runs with more participants than this are judged by the budget only (building 100,000
#: providers takes seconds: too slow for a suite run on every change).
MAX_BUILT = 20_000


def _leaves(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from _leaves(child, f"{path}.{index}")
        yield path
    else:
        yield path


DEFAULT = load_scenario("default").model_dump()
PATHS = sorted({*_leaves(DEFAULT), "tenants", "market", "providers.0", "gpus.h100.capex_usd",
                "gpus.h100.list_usd_per_gpu_hour", "gpus.nope.capex_usd", "providers.9.count",
                "market.mechanism_params.interval_s", "tenants.policy.params.reprice",
                "textbook.auctions", "no_such_field", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r"})

def _value_at(path: str) -> Any:
    node: Any = DEFAULT
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list | tuple) else node[key]
    return node


#: Numeric fields and their default values: scaled, they probe the edges of what is accepted,
#: so that many examples pass and run.
NUMERIC = sorted(path for path in _leaves(DEFAULT)
                 if isinstance(_value_at(path), int | float)
                 and not isinstance(_value_at(path), bool))
FACTORS = [0, 1e-9, 0.01, 0.5, 0.999, 1.001, 2, 10, 100, 1e4, -1, 1e300]


def _scaled(path: str, factor: float) -> str:
    value = _value_at(path) * factor
    if isinstance(_value_at(path), int) and abs(value) < 1e18:
        return str(round(value))
    return repr(float(value))


HOSTILE_TEXT = [
    "1e308", "-1e308", "1e-308", "5e-324", "nan", "-nan", "inf", "-inf", "0", "-0.0", "-1",
    "1", "2", "0.5", "100000", "1000000", "4096", "1e9", "1e300", "9" * 5000, "-" + "9" * 4500,
    "[" * 200 + "]" * 200, "[" * 17 + "1" + "]" * 17, "{a=" * 40 + "1" + "}" * 40,
    '"' + "x" * 100_000 + '"', "x" * 1000, '""', "true", "false", "[]", "{}", "[1, 2]",
    "[1e308, 1e308]", "[0, 0]", "[2, 1]", "[nan, 1]", "{ name = \"fraction\" }",
    '"batch_clearing"', '"textbook"', "1979-05-27", "'\\u0000'", "[[1], [2]]",
]


def _text_values() -> st.SearchStrategy[str]:
    numbers = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda x: f"{x:.6g}"))
    return st.one_of(st.sampled_from(HOSTILE_TEXT), numbers,
                     st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s))


def _nested(depth: int) -> Any:
    deep: Any = 1
    for _ in range(depth):
        deep = [deep]
    return deep


def _python_values() -> st.SearchStrategy[Any]:
    # Built by `map`, never listed: hypothesis would print the strategy with the values' repr,
    # which a 5,000-digit integer and a list nested 3,000 deep do not have.
    huge = st.sampled_from([4999, 5000, 63, 64, 308]).map(lambda digits: 10 ** digits)
    scalars = st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), huge,
                        huge.map(lambda n: -n), st.text(max_size=20),
                        st.integers(10_000, 60_000).map(lambda n: "x" * n))
    nested = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
        max_leaves=8)
    return st.one_of(scalars, nested, st.sampled_from([17, 100, 3000]).map(_nested))


class _Hang(Exception):
    pass


@pytest.fixture
def alarm():
    """Turn an example that takes longer than EXAMPLE_S into a failure instead of a hang."""
    def ring(_signum, _frame):
        raise _Hang(f"an example took more than {EXAMPLE_S} s")

    previous = signal.signal(signal.SIGALRM, ring)
    yield lambda: signal.alarm(EXAMPLE_S)
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _one_line(error: ScenarioError) -> None:
    message = str(error)
    assert message and "\n" not in message and len(message) < 2_000, message[:300]
    assert "Traceback" not in message


def _exercise(load) -> None:
    """Load (a ScenarioError is a fine answer), check the budget, run a little."""
    try:
        scenario = load()
        check_budget(scenario)
    except ScenarioError as error:
        _one_line(error)
        return
    short = scenario.model_copy(update={"duration_days": min(scenario.duration_days, RUN_DAYS)})
    found = estimate(short)
    if found.providers + found.tenants > MAX_BUILT:
        return
    result = Market(short, seed=1, record=False).run()
    assert result.summary["money_conserved"] is True
    assert math.isclose(result.summary["simulated_days"], short.duration_days)


FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(path=st.sampled_from(PATHS), text=_text_values())
def test_set_overrides(alarm, path: str, text: str) -> None:
    alarm()
    _exercise(lambda: load_scenario("default", [f"{path}={text}"]))


@FUZZ
@given(path=st.sampled_from(PATHS), value=_python_values())
def test_sweep_values(alarm, path: str, value: Any) -> None:
    alarm()
    _exercise(lambda: load_scenario("default", values={path: value}, label="sweep"))


@FUZZ
@given(path=st.sampled_from(PATHS), text=_text_values())
def test_scenario_toml(alarm, path: str, text: str) -> None:
    alarm()
    _exercise(lambda: scenario_from_toml(f"{path} = {text}\n"))


@FUZZ
@given(path=st.sampled_from(NUMERIC), factor=st.sampled_from(FACTORS))
def test_scaled_defaults(alarm, path: str, factor: float) -> None:
    alarm()
    _exercise(lambda: load_scenario("default", [f"{path}={_scaled(path, factor)}"]))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.one_of(
    st.tuples(st.sampled_from(PATHS), _text_values()),
    st.builds(lambda path, factor: (path, _scaled(path, factor)), st.sampled_from(NUMERIC),
              st.sampled_from(FACTORS))), min_size=2, max_size=6))
def test_several_overrides_at_once(alarm, picks: list[tuple[str, str]]) -> None:
    alarm()
    _exercise(lambda: load_scenario("default", [f"{path}={text}" for path, text in picks]))


#: Address space the CLI may take in the capped runs below (the run budget allows 2 GB).
MEMORY_CAP_BYTES = 4 * 2**30


def _capped() -> None:  # runs in the child, before the CLI starts
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))


@settings(max_examples=6, deadline=None, derandomize=True)
@given(picks=st.lists(st.builds(lambda path, factor: (path, _scaled(path, factor)),
                                st.sampled_from(NUMERIC), st.sampled_from(FACTORS)),
                      min_size=1, max_size=3))
def test_the_cli_under_a_memory_and_time_cap(picks: list[tuple[str, str]]) -> None:
    """The real `gpumarket run`, in a child process capped in memory and time: it answers
    with one line and exit 2, or runs (cut to a few simulated minutes) and exits 0."""
    sets = [arg for path, text in picks for arg in ("--set", f"{path}={text}")]
    done = subprocess.run(
        [sys.executable, "-c", "from api.cli.main import main; main()", "run", "--json", *sets,
         "--set", f"duration_days={RUN_DAYS}"],
        capture_output=True, text=True, timeout=3 * EXAMPLE_S, preexec_fn=_capped)
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr, done.stderr
    if done.returncode == 2:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["money_conserved"] is True

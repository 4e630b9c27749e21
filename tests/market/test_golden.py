"""Each built-in scenario, seed 1, gives the summary recorded in `golden/` — the guard that
lets the engine be restructured and sped up without changing what users see.

Integers, strings and booleans must match exactly, floats to 1e-12 relative: numpy picks
its vectorised sums and transcendental functions by CPU, which may move a float's last bits
on another machine (on the recording machine the files match byte for byte; set
`GPUMARKET_GOLDEN_EXACT=1` to insist on that). A change that is meant to move a figure
re-records with `GPUMARKET_GOLDEN_RECORD=1` and says why in its commit.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from market import Market, load_scenario

GOLDEN = Path(__file__).parent / "golden"
#: Built-in scenario -> overrides that keep the suite quick (the bench week takes a minute).
SCENARIOS = {"default": [], "interruptible": ["duration_days=3"], "textbook": [],
             "learn": [], "bench": ["duration_days=0.5"],
             "longrun": ["duration_days=49"]}  # its first entrants arrive on day 42


def summary_json(name: str) -> str:
    result = Market(load_scenario(name, SCENARIOS[name]), seed=1, record=False).run()
    return json.dumps(result.summary, sort_keys=True, indent=1, allow_nan=False) + "\n"


def same(recorded, now, where: str = "summary") -> None:
    """Assert `now` equals `recorded`, floats to 1e-12 relative; name the first difference."""
    if isinstance(recorded, float) or isinstance(now, float):
        assert isinstance(now, (int, float)) and not isinstance(now, bool), where
        assert math.isclose(recorded, now, rel_tol=1e-12, abs_tol=1e-12), \
            f"{where}: recorded {recorded!r}, now {now!r}"
    elif isinstance(recorded, dict):
        assert isinstance(now, dict) and recorded.keys() == now.keys(), \
            f"{where}: keys {sorted(set(recorded) ^ set(now))} differ"
        for key in recorded:
            same(recorded[key], now[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(now, list) and len(recorded) == len(now), f"{where}: length"
        for index, (a, b) in enumerate(zip(recorded, now, strict=True)):
            same(a, b, f"{where}[{index}]")
    else:
        assert recorded == now and type(recorded) is type(now), \
            f"{where}: recorded {recorded!r}, now {now!r}"


def test_every_built_in_scenario_is_covered():
    shipped = {path.stem for path in
               (Path(__file__).parents[2] / "market" / "scenarios").glob("*.toml")}
    assert shipped == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_summary_matches_the_recording(name):
    path = GOLDEN / f"{name}.json"
    now = summary_json(name)
    if os.environ.get("GPUMARKET_GOLDEN_RECORD") == "1":
        path.write_text(now, encoding="utf-8")
    recorded = path.read_text(encoding="utf-8")
    if os.environ.get("GPUMARKET_GOLDEN_EXACT") == "1":
        assert now == recorded
    same(json.loads(recorded), json.loads(now))

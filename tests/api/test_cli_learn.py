"""`gpumarket learn`: a tiny training run writes the policy, the curve and its plot and
compares the policy with the baseline on held-out seeds, the same run twice gives the same
files; bad arguments exit 2 in one line naming the option; and the policy file it writes runs
as a remote bot (`learned` strategy) against a live market, bidding what the policy says."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from agents.rl.policy import FEATURES, LinearPolicy, load_policy, save_policy
from api.cli.learn import HELD_OUT_FIRST
from api.remote.bot import Bot
from api.remote.strategy_args import make_strategy, parse_params
from tests.api.live_helpers import all_events, post_json

TINY = ["learn", "--set", "duration_days=0.25", "--iterations", "1", "--candidates", "2",
        "--train-seeds", "1", "--held-out-seeds", "2", "--workers", "1"]
WAIT_S = 60.0
LONE_GPU = "rtx3090"  # no simulated provider of the default market has it (tests/api/test_bot)


def test_a_tiny_run_writes_the_policy_the_curve_and_the_comparison(cli, tmp_path):
    done = cli(*TINY, "--out", str(tmp_path / "a"), "--json")
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert report["train_seeds"] == [1]
    assert report["held_out_seeds"] == [HELD_OUT_FIRST, HELD_OUT_FIRST + 1]
    comparison = report["comparison"]
    assert comparison["seeds"] == report["held_out_seeds"]
    assert comparison["baseline"] == "cost_plus{markup=0.855}"
    difference = comparison["difference_usd"]
    assert difference["mean"] == pytest.approx(np.mean(np.subtract(
        comparison["learned_usd"], comparison["baseline_usd"])))
    assert comparison["excludes_zero"] == (difference["ci_low"] > 0 or difference["ci_high"] < 0)
    policy = load_policy(report["files"]["policy"])
    assert list(report["theta"].values()) == list(policy.theta)
    assert policy.training["train_seeds"] == [1] and policy.training["iterations"] == 1
    assert policy.training["overrides"] == ["duration_days=0.25"]
    curve = pq.read_table(report["files"]["curve"]).to_pylist()
    assert [row["iteration"] for row in curve] == [0, 1]
    chosen = [row for row in curve if row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["iteration"] == policy.training["chosen_iteration"]
    assert chosen[0]["mu_return_usd"] == policy.training["train_return_usd"] == \
        max(row["mu_return_usd"] for row in curve)
    assert [chosen[0][f"mu.{name}"] for name in FEATURES] == list(policy.theta)
    assert (tmp_path / "a" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The same training again: the same policy and curve, byte for byte; shown as tables,
    # compared with another baseline this time.
    again = cli(*TINY, "--out", str(tmp_path / "b"), "--format", "plain",
                "--baseline", "cost_plus{markup=0.3}")
    assert again.code == 0, again.err
    for name in ("policy.json", "curve.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "Learning curve" in again.out and f"{HELD_OUT_FIRST + 1}" in again.out
    assert "learned vs cost_plus{markup=0.3}" in " ".join(again.out.split())
    assert "2 held-out paired seeds" in again.err


@pytest.mark.parametrize(("args", "message"), [
    (["--iterations", "0"], "--iterations"),
    (["--candidates", "1"], "--candidates"),
    (["--held-out-seeds", "1"], "--held-out-seeds: expected 0 (no comparison) or at least 2"),
    (["--population", "nobody"], "--population: expected one of"),
    (["--set", "nosuch=1"], "nosuch"),
    (["--scenario", "nowhere.toml"], "nowhere.toml"),
    (["--decision", "weekly"], "--decision: expected order or interval"),
    (["--interval-s", "0"], "--interval-s: expected simulated seconds > 0"),
    (["--elite", "0"], "--elite: expected a share in (0, 1]"),
    (["--start-markup", "-1"], "--start-markup: expected a markup in [0, 3]"),
    (["--format", "xml"], "--format"),
    (["--baseline", "nope"], "--baseline: scenario: field `providers.3.strategy.name`: unknown"),
    (["--baseline", "cost_plus{markup="], "--baseline: 'cost_plus{markup=': expected NAME"),
])
def test_bad_arguments_exit_2_naming_the_option(cli, tmp_path, args, message):
    done = cli(*TINY, "--out", str(tmp_path / "out"), *args)
    assert done.code == 2, (args, done.out, done.err)
    error = done.err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert message in error, error
    assert not (tmp_path / "out").exists()  # nothing written


def test_out_must_be_a_directory(cli, tmp_path):
    taken = tmp_path / "file"
    taken.write_text("x")
    done = cli(*TINY, "--out", str(taken))
    assert done.code == 2 and "--out:" in done.err and taken.read_text() == "x"


# ----------------------------------------------------------------------------- remote bot

async def _until(condition, what: str) -> None:
    """Poll `condition()` every 20 ms, at most WAIT_S wall seconds."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_a_policy_file_runs_as_a_remote_bot(serve, tmp_path):
    # The order's max price moves the markup (θ on order_headroom): each bid tells whether
    # the remote view fed the policy what the offline view would.
    path = save_policy(LinearPolicy((0.2, 0.0, 0.0, 0.1)), tmp_path / "policy.json")
    server = serve()
    url = server.url
    created = post_json(url, "/api/markets", {
        "overrides": ["duration_days=1", "tenants.arrivals_per_hour=1e-6",
                      'market.settlement="aep23"', "providers.1.gpu_mix={ rtx4090 = 1.0 }"],
        "speed": 60.0}, server.operator_token)
    market_id, control = created["market_id"], created["control_token"]
    tenant = post_json(url, f"/api/markets/{market_id}/participants",
                       {"role": "tenant", "name": "carol"})
    strategy = make_strategy("learned", parse_params([f'path="{path}"']))
    lines: list[str] = []
    bot = Bot(url, market_id, strategy, name="learner", gpu_model=LONE_GPU, gpus=3,
              archetype="home_rig", log=lines.append)
    # Max prices of 3, 5 and 8 times the bot's cost, known once it has joined: the order's
    # headroom (max / cost − 1) stays under the features' cap, and every bid under the max.
    times_cost = [3.0, 5.0, 8.0]
    max_prices: list[float] = []

    async def scenario() -> dict[str, Any]:
        task = asyncio.create_task(bot.run())
        auth = {"Authorization": f"Bearer {tenant['token']}"}
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await _until(lambda: bot.started or task.done(), "the bot to start")
            assert bot.started, task.exception()
            assert bot.view is not None
            cost = bot.view.me.cost_basis_usd_per_gpu_hour
            max_prices.extend(round(k * cost, 6) for k in times_cost)
            for price in max_prices:
                posted = await http.post(f"/api/markets/{market_id}/orders", headers=auth, json={
                    "gpus": 1, "gpu_models": [LONE_GPU], "hours": 0.05, "auto_select": True,
                    "max_price_usd_per_gpu_hour": price})
                assert posted.status_code == 201, posted.text
            await _until(lambda: bot.leases_won >= 3, "three leases won")
            stopped = await http.post(f"/api/markets/{market_id}/stop",
                                      headers={"Authorization": f"Bearer {control}"})
            assert stopped.status_code == 200, stopped.text
        return await asyncio.wait_for(task, WAIT_S)

    summary = asyncio.run(scenario())
    assert (summary["orders_priced"], summary["bids_placed"], summary["leases_won"]) == (3, 3, 3)
    view = bot.view
    assert view is not None
    cost = view.me.cost_basis_usd_per_gpu_hour
    events = all_events(url, market_id)
    max_of = {e["order_id"]: e["max_price_micro_per_hour"] / 1e6 / e["gpus"]
              for e in events if e["kind"] == "order_opened"}
    bids = {e["order_id"]: price / 1e6 for e in events if e["kind"] == "bids_placed"
            for provider, price in zip(e["providers"], e["prices_micro_per_hour"], strict=True)
            if provider == bot.provider}
    assert sorted(max_of[order] for order in bids) == pytest.approx(max_prices, abs=1e-6)
    for order, bid in bids.items():
        markup = 0.2 + 0.1 * (max_of[order] / cost - 1.0)
        assert bid == pytest.approx(cost * (1 + markup) * view.fee_gross_up(), abs=1e-5)
    assert len(set(bids.values())) == 3


def test_the_bot_command_names_a_bad_policy_file(serve, tmp_path):
    server = serve()
    created = post_json(server.url, "/api/markets", {"overrides": ["duration_days=1"]},
                        server.operator_token)
    done = subprocess.run(
        [sys.executable, "-c", "from api.cli.main import main; main()", "bot", "--url",
         server.url, "--market", created["market_id"], "--strategy", "learned", "--param",
         f'path="{tmp_path / "missing.json"}"'],
        capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1
    assert "--param: strategy 'learned': policy file" in error and "cannot read it" in error

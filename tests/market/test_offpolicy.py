"""Off-policy evaluation (`market.experiments.offpolicy`): a hand-built log whose estimates
are checked against arithmetic, on-policy sanity on a real run, and the re-run check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from market.builder import Market
from market.events import (
    BidsPlaced,
    LeaseClosed,
    LeaseCreated,
    OrderExpired,
    OrderOpened,
    PaymentSettled,
)
from market.experiments.offpolicy import OffPolicyError, evaluate, evaluate_run, parse_target
from market.experiments.offpolicy_figures import Z95
from market.observe.eventlog import EventLog, read_events, read_scenario, write_scenario
from market.scenario import load_scenario

PROBE = {"name": "probe", "archetype": "home_rig", "count": 1,
         "strategy": {"name": "explore", "params": {"markup_low": 0.5, "markup_high": 1.5}}}


def _toml(value: object) -> str:
    """`value` as a TOML inline value (an override's right-hand side)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_toml(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


def _providers(*populations: dict) -> str:
    return "providers=" + _toml(list(populations))


def _tiny() -> object:
    """Two one-provider populations (probe: explore; rival: cost_plus), 20% take rate."""
    rival = {"name": "rival", "archetype": "home_rig", "count": 1,
             "strategy": {"name": "cost_plus", "params": {"markup": 1.0}}}
    return load_scenario("default", [
        "duration_days=0.05", 'market.settlement="aep23"', "market.take_rate=0.2",
        "tenants.count=3", "tenants.arrivals_per_hour=2", _providers(PROBE, rival)])


def _write_run(folder: Path, scenario, events: list, seed: int = 1) -> Path:
    folder.mkdir()
    log = EventLog(None, folder / "events.parquet")
    for event in events:
        log.on_event(event)
    log.close()
    write_scenario(folder, scenario)
    (folder / "summary.json").write_text(json.dumps(
        {"scenario": scenario.name, "seed": seed, "simulated_days": scenario.duration_days}))
    return folder


def _opened(order: int, t: float) -> OrderOpened:
    return OrderOpened(t, order, 0, order, "training", 1, ("rtx4090",), 100_000_000, 0,
                       job_value_micro=10**12)


def test_a_hand_built_log_gives_the_arithmetic(tmp_path: Path) -> None:
    scenario = _tiny()
    pool = Market(scenario, seed=1).pool
    me, rival = 0, 1
    assert list(pool.population) == [0, 1]
    basis = float(pool.cost_basis_usd_per_gpu_hour[me])
    marginal = float(pool.cost_marginal_usd_per_gpu_hour[me])
    gross = 1 / (1 - 0.2)
    target_usd = basis * 2.0 * gross            # cost_plus{markup=1.0}
    t = round(target_usd * 1e6)                 # its bid, micro-USD per hour (one GPU)
    b0 = round((target_usd + 0.02 * basis) * 1e6)   # within the kernel: h = 0.05 × basis
    b1, r1 = round(2.4 * basis * gross * 1e6), round(2.2 * basis * gross * 1e6)
    b2 = round(1.6 * basis * gross * 1e6)
    paid0 = round(b0 * 1.5)     # escrow ran out: 1.5 of the 2 hours the lease ran were paid
    paid2 = b2
    events = [
        # Order 0: the probe wins at b0 (the rival asks more); paid 1.5 h of 2.
        _opened(0, 100.0),
        BidsPlaced(100.0, 0, (0, 1), (me, rival), (b0, b0 + 500_000), (101.0, 102.0)),
        LeaseCreated(280.0, 0, 0, 0, 0, me, 0, "rtx4090", 1, b0, 2, 180.0,
                     planned_work_s=7200.0),
        # Order 1: the rival wins at r1 < b1; its lease runs 3 h.
        _opened(1, 1000.0),
        BidsPlaced(1000.0, 1, (2, 3), (me, rival), (b1, r1), (1001.0, 1002.0)),
        LeaseCreated(1180.0, 1, 1, 3, 0, rival, 1, "rtx4090", 1, r1, 2, 180.0,
                     planned_work_s=10800.0),
        PaymentSettled(5000.0, 0, me, paid0, round(paid0 * 0.2)),
        LeaseClosed(7480.0, 0, 0, 0, me, 0, "insufficient_funds", paid0, 0.25),
        # Order 2: the probe alone, wins at b2, 1 h paid in full.
        _opened(2, 8000.0),
        BidsPlaced(8000.0, 2, (4,), (me,), (b2,), (8001.0,)),
        LeaseCreated(8180.0, 2, 2, 4, 0, me, 2, "rtx4090", 1, b2, 1, 180.0,
                     planned_work_s=3600.0),
        PaymentSettled(11780.0, 2, me, paid2, round(paid2 * 0.2)),
        LeaseClosed(11780.0, 2, 2, 0, me, 2, "owner", paid2, 0.0),
        PaymentSettled(11780.0, 1, rival, r1 * 3, round(r1 * 3 * 0.2)),
        LeaseClosed(11980.0, 1, 1, 0, rival, 1, "owner", r1 * 3, 0.0),
        # Order 3: nobody of the probe's bids: not a unit.
        _opened(3, 12000.0),
        OrderExpired(12180.0, 3, 0, 3, 0),
    ]
    folder = _write_run(tmp_path / "hand", scenario, events)
    result = evaluate_run(folder, "probe", parse_target("cost_plus{markup=1.0}"), rerun=False)

    realized = np.array([(paid0 - round(paid0 * 0.2)) / 1e6 - marginal * 2,
                         0.0,
                         (paid2 - round(paid2 * 0.2)) / 1e6 - marginal * 1])
    dm = np.array([0.8 * t * 2 / 1e6 - marginal * 2,       # wins order 0 at its own bid
                   0.8 * t * 3 / 1e6 - marginal * 3,       # t < r1: wins, 3 h as logged
                   0.8 * t * 1 / 1e6 - marginal * 1])
    dm_logged = np.array([0.8 * b0 * 2 / 1e6 - marginal * 2, 0.0,
                          0.8 * b2 * 1 / 1e6 - marginal * 1])
    # Box kernel 1 / (2 × 0.05 basis) over the uniform density 1 / (basis × gross × 1.0).
    w = np.array([gross / 0.1, 0.0, 0.0])
    assert result.units == 3 and result.won_logged == 2 and result.won_dm == 3
    assert result.fidelity == 1.0
    assert result.job_hours == "lease only"   # a hand-made log does not rebuild
    assert result.logged_usd == pytest.approx(realized.sum(), abs=1e-9)
    assert result.mean_weight == pytest.approx(w.mean())
    for name, contributions in (("dm", dm), ("ips", w * realized),
                                ("dr", dm + w * (realized - dm_logged))):
        estimate = result.estimates[name]
        assert estimate.total_usd == pytest.approx(contributions.sum(), rel=1e-9), name
        half = Z95 * math.sqrt(3 * contributions.var(ddof=1))
        assert estimate.low_usd == pytest.approx(contributions.sum() - half, rel=1e-9)
        assert estimate.high_usd == pytest.approx(contributions.sum() + half, rel=1e-9)
        assert estimate.per_order_usd == pytest.approx(contributions.sum() / 3, rel=1e-9)
    snips = result.estimates["snips"]
    assert snips.total_usd == pytest.approx(3 * realized[0], rel=1e-9)  # Σwr / Σw × n
    # The doubly robust correction is the underpaid half hour of order 0, weighted.
    assert result.estimates["dr"].total_usd - result.estimates["dm"].total_usd == \
        pytest.approx(w[0] * (realized[0] - dm_logged[0]), rel=1e-9)


def test_a_target_above_the_max_price_does_not_bid(tmp_path: Path) -> None:
    scenario = _tiny()
    pool = Market(scenario, seed=1).pool
    basis = float(pool.cost_basis_usd_per_gpu_hour[0])
    bid = round(2.0 * basis * 1.25 * 1e6)
    opened = OrderOpened(100.0, 0, 0, 0, "training", 1, ("rtx4090",), bid + 10, 0,
                         job_value_micro=10**12)
    events = [opened, BidsPlaced(100.0, 0, (0,), (0,), (bid,), (101.0,)),
              LeaseCreated(280.0, 0, 0, 0, 0, 0, 0, "rtx4090", 1, bid, 1, 180.0,
                           planned_work_s=3600.0),
              PaymentSettled(3880.0, 0, 0, bid, round(bid * 0.2)),
              LeaseClosed(3880.0, 0, 0, 0, 0, 0, "owner", bid, 0.0)]
    folder = _write_run(tmp_path / "max", scenario, events)
    result = evaluate_run(folder, "probe", parse_target("cost_plus{markup=1.4}"), rerun=False)
    assert result.won_logged == 1 and result.won_dm == 0
    assert result.estimates["dm"].total_usd == 0.0
    # The target never bids where the log did: no weight, so no IPS (rather than 0 ± 0).
    assert not result.estimates["ips"].available and not result.estimates["snips"].available
    assert "--bandwidth" in result.estimates["ips"].reason
    assert result.estimates["dr"].total_usd == 0.0


def test_dm_s_own_leases_hold_the_providers_gpus(tmp_path: Path) -> None:
    """The probe (3 GPUs) loses two 2-GPU orders in the log; the target wins the first, whose
    lease then holds 2 GPUs while the second is auctioned: no room to bid on it."""
    scenario = _tiny()
    pool = Market(scenario, seed=1).pool
    assert int(pool.capacity[0, 0]) == 3
    basis = float(pool.cost_basis_usd_per_gpu_hour[0])
    marginal = float(pool.cost_marginal_usd_per_gpu_hour[0])
    high, rival = round(2.4 * basis * 1.25 * 2e6), round(2.2 * basis * 1.25 * 2e6)
    events = []
    for order, t in ((0, 100.0), (1, 1000.0)):
        events += [
            OrderOpened(t, order, 0, order, "training", 2, ("rtx4090",), 100_000_000, 0,
                        job_value_micro=10**12),
            BidsPlaced(t, order, (2 * order, 2 * order + 1), (0, 1), (high, rival),
                       (t + 1, t + 2)),
            LeaseCreated(t + 180, order, order, 2 * order + 1, 0, 1, order, "rtx4090", 2,
                         rival, 2, 180.0, planned_work_s=7200.0),
            PaymentSettled(t + 7380, order, 1, rival * 2, round(rival * 0.4)),
            LeaseClosed(t + 7380, order, order, 0, 1, order, "owner", rival * 2, 0.0)]
    events.sort(key=lambda event: event.time_s)
    folder = _write_run(tmp_path / "capacity", scenario, events)
    target = parse_target("cost_plus{markup=1.0}")
    t = round(basis * 2.0 * 1.25 * 1e6) * 2
    one = 0.8 * t * 2 / 1e6 - marginal * 2 * 2      # a 2-hour, 2-GPU lease at the target
    held = evaluate_run(folder, "probe", target, rerun=False)
    assert held.won_dm == 1 and held.crowded == 1
    assert held.estimates["dm"].total_usd == pytest.approx(one, rel=1e-9)
    as_logged = evaluate_run(folder, "probe", target, rerun=False, capacity_aware=False)
    assert as_logged.won_dm == 2 and as_logged.crowded == 0
    assert as_logged.estimates["dm"].total_usd == pytest.approx(2 * one, rel=1e-9)


# ----------------------------------------------------------------------------- a real run


def _probe_scenario(explore: dict | None = None):
    probe = {**PROBE, "count": 2}
    if explore is not None:
        probe["strategy"] = explore
    return load_scenario("default", [
        "duration_days=0.3", "tenants.arrivals_per_hour=20",
        _providers({"archetype": "datacenter", "count": 6},
                   {"archetype": "home_rig", "count": 20}, probe)])


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> Path:
    """A small market with a two-provider explore population, its events logged."""
    folder = tmp_path_factory.mktemp("offpolicy") / "run"
    folder.mkdir()
    scenario = _probe_scenario()
    market = Market(scenario, seed=2, out=folder)
    log = EventLog(market, folder / "events.parquet")
    result = market.run()
    log.close()
    result.write(folder)
    write_scenario(folder, scenario)
    return folder


def test_the_scenario_file_rebuilds_the_logged_run(logged_run: Path) -> None:
    scenario = read_scenario(logged_run)
    assert scenario == _probe_scenario()
    again = []
    market = Market(scenario, seed=2)
    market.subscribe(lambda event: again.append(json.loads(json.dumps(event.to_dict()))))
    market.run()
    logged = list(read_events(logged_run / "events.parquet"))
    assert len(logged) == len(again) and logged == again


def test_on_policy_weights_are_one_and_ips_is_the_logged_value(logged_run: Path) -> None:
    same = parse_target("explore{markup_low=0.5, markup_high=1.5}")
    result = evaluate_run(logged_run, "probe", same)
    assert result.units > 20 and result.won_logged > 0
    assert result.mean_weight == 1.0 and result.effective_units == pytest.approx(result.units)
    assert result.estimates["ips"].total_usd == result.logged_usd
    assert result.estimates["snips"].total_usd == pytest.approx(result.logged_usd)
    # DM's outcome model, at the logged bids, gives every logged winner and price.
    assert result.fidelity == 1.0 and result.job_hours == "rebuilt run"
    # The same strategy and seed make the same market again.
    assert result.realized_usd == pytest.approx(result.logged_usd, abs=1e-9)
    # The logged value is the providers table's revenue − serving cost of the population.
    providers = pq.read_table(logged_run / "providers.parquet").to_pylist()
    mine = [p for p in providers if p["population"] == "probe"]
    assert result.logged_usd == pytest.approx(
        sum(p["revenue_usd"] - p["serving_cost_usd"] for p in mine), abs=1e-6)


def test_a_deterministic_target_is_estimated_and_checked(logged_run: Path) -> None:
    target = parse_target("cost_plus{markup=0.8}")
    first = evaluate([logged_run], "probe", target)
    run = first.runs[0]
    assert not math.isnan(run.realized_usd)
    for name in ("dm", "ips", "snips", "dr"):
        estimate = run.estimates[name]
        assert estimate.available and estimate.low_usd <= estimate.total_usd <= estimate.high_usd
        assert estimate.covers(run.realized_usd) in (True, False)
    assert run.mean_weight > 0 and run.effective_units < run.units
    # Same inputs, same figures, byte for byte.
    again = evaluate([logged_run], "probe", target)
    assert json.dumps(again.to_dict()) == json.dumps(first.to_dict())


def test_several_runs_pool_their_totals_and_variances(logged_run: Path) -> None:
    target = parse_target("cost_plus{markup=0.8}")
    pooled = evaluate([logged_run, logged_run], "probe", target, rerun=False)
    one = pooled.runs[0]
    assert pooled.pooled is not None and pooled.pooled.units == 2 * one.units
    # Estimated again over all the units as one sample: the totals add up, the interval is
    # that of the joined contributions.
    assert one.figures is not None
    for name, contributions in (("dm", one.figures.dm),
                                ("ips", one.figures.weights * one.figures.realized)):
        joined = np.concatenate([contributions, contributions])
        estimate = pooled.pooled.estimates[name]
        assert estimate.total_usd == pytest.approx(2 * one.estimates[name].total_usd)
        assert estimate.variance == pytest.approx(joined.size * joined.var(ddof=1))
    assert pooled.pooled.effective_units == pytest.approx(2 * one.effective_units)
    assert math.isnan(pooled.pooled.realized_usd)


def test_a_logging_strategy_without_a_density_gives_dm_only(logged_run: Path) -> None:
    result = evaluate_run(logged_run, "home_rig", parse_target("cost_plus{markup=0.8}"),
                          rerun=False)
    assert result.estimates["dm"].available and result.units > 0
    for name in ("ips", "snips", "dr"):
        assert not result.estimates[name].available
        assert "bid_density" in result.estimates[name].reason


def test_bad_inputs_name_the_argument(logged_run: Path, tmp_path: Path) -> None:
    target = parse_target("cost_plus")
    with pytest.raises(OffPolicyError, match=r"--population: 'nobody'.*one of datacenter"):
        evaluate_run(logged_run, "nobody", target)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OffPolicyError, match=r"RUN_DIR: .* has no events\.parquet"):
        evaluate_run(empty, "probe", target)
    with pytest.raises(OffPolicyError, match="--bandwidth"):
        evaluate_run(logged_run, "probe", target, bandwidth=0.0)
    paused = _write_run(tmp_path / "paused", load_scenario("interruptible"), [])
    with pytest.raises(OffPolicyError, match="mechanism 'interruptible'"):
        evaluate_run(paused, "datacenter", target)
    for text, mention in (("nosuch", "unknown strategy 'nosuch'"),
                          ("cost_plus{markup=-1}", "markup"),
                          ("cost_plus,explore", "name one strategy"),
                          ("cost_plus{markup=}", "TOML")):
        with pytest.raises(OffPolicyError, match="--strategy") as error:
            parse_target(text)
        assert mention in str(error.value)

"""Learned policies (agents.rl.policy, agents.rl.cem, agents.rl.compare): features and
markups by hand, the policy file's round trip and its bad forms, the `learned` strategy in a
market (it bids there as it did in training), per interval, in a tournament, and the
cross-entropy search moving toward a better markup, deterministically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.rl.cem import Episodes, episode_return, train
from agents.rl.compare import check_held_out, compare, run_profits, with_policy
from agents.rl.policy import (
    FEATURES,
    RATIO_CAP,
    Learned,
    LinearPolicy,
    PolicyError,
    constant,
    features,
    load_policy,
    save_policy,
)
from market import Market, load_scenario
from market.events import BidsPlaced
from market.experiments.tournament import play
from market.scenario import ScenarioError

SHORT = ["duration_days=0.25"]
LEARNER = 3  # the learn scenario's learner population index


def _obs(order_max: float = 5.0) -> dict[str, np.ndarray]:
    """Two models: the first owned (8 GPUs, 2 free, cost 2, published price 3; the order
    accepts it), the second not."""
    return {"clearing_usd_per_gpu_hour": np.array([3.0, 1.0], np.float32),
            "cost_usd_per_gpu_hour": np.array([2.0, 0.0], np.float32),
            "free_gpus": np.array([2.0, 0.0], np.float32),
            "gpus": np.array([8.0, 0.0], np.float32),
            "order_gpus": np.array([1.0], np.float32),
            "order_max_usd_per_gpu_hour": np.array([order_max], np.float32),
            "order_models": np.array([1.0, 0.0], np.float32),
            "time_s": np.array([60.0], np.float32)}


def _profit(market) -> float:
    accounts = market.metrics.provider_accounts()
    return float(accounts["short_run_profit_usd"][market.pool.population == LEARNER].sum())


def test_features_and_markups_by_hand():
    x = features(_obs())
    # clearing 3 / cost 2 − 1; 6 of 8 GPUs busy; max 5 / cost 2 − 1. An unowned model: bias only.
    assert x.tolist() == [[1.0, 0.5, 0.75, 1.5], [1.0, 0.0, 0.0, 0.0]]
    policy = LinearPolicy((0.1, 0.2, 0.4, 0.1))
    assert policy.act(_obs()).tolist() == pytest.approx([0.1 + 0.1 + 0.3 + 0.15, 0.1])
    # Markups are clipped to the range; an outlandish max price is capped in the features.
    assert LinearPolicy((5.0, 0, 0, 0)).act(_obs()).tolist() == [3.0, 3.0]
    assert LinearPolicy((-1.0, 0, 0, 0), markup_low=0.05).act(_obs()).tolist() == \
        pytest.approx([0.05, 0.05])
    assert features(_obs(order_max=1e6))[0, 3] == RATIO_CAP
    # No order to price: no headroom.
    no_order = {**_obs(), "order_max_usd_per_gpu_hour": np.zeros(1, np.float32),
                "order_models": np.zeros(2, np.float32)}
    assert features(no_order)[0, 3] == 0.0


def test_policy_file_round_trip(tmp_path):
    policy = LinearPolicy((0.3, -0.2, 0.5, 0.05), 0.0, 2.5, "interval", 1800.0,
                          {"scenario": "learn", "train_seeds": [1, 2]})
    path = save_policy(policy, tmp_path / "p.json")
    loaded = load_policy(path)
    assert loaded == policy and loaded.training == policy.training
    data = json.loads(path.read_text())
    assert (data["format"], data["version"], data["features"]) == \
        ("gpumarket.policy", 1, list(FEATURES))
    again = save_policy(loaded, tmp_path / "q.json")
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "other"}, "format: expected 'gpumarket.policy'"),
    ({"version": 2}, "version: expected 1"),
    ({"features": ["bias"]}, "features: expected ['bias', 'clearing_markup'"),
    ({"theta": [1.0, 2.0]}, "theta: expected 4 finite numbers"),
    ({"theta": [1.0, "a", 0, 0]}, "theta: expected a list of 4 numbers"),
    ({"markup_low": 2.0, "markup_high": 1.0}, "markup range: expected -1 < markup_low"),
    ({"markup_high": "lots"}, "markup_high: expected a number"),
    ({"decision": "weekly"}, "decision: expected one of order, interval"),
    ({"interval_s": 0}, "interval_s: expected a number of seconds > 0"),
    ({"thetas": [0]}, "thetas: not a field of a policy file"),
    ({"training": [1]}, "training: expected an object"),
])
def test_bad_policy_files_are_named_in_one_line(tmp_path, change, message):
    data = constant(0.3).to_dict() | change
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    text = str(raised.value)
    assert text.startswith(f"policy file {str(path)!r}: {message}"), text
    assert "\n" not in text


def test_unreadable_policy_files(tmp_path):
    for content, message in (("{not json", "not a JSON policy"), ('{"theta": NaN}', "NaN"),
                             ("[1, 2]", "expected a JSON object")):
        path = tmp_path / "bad.json"
        path.write_text(content)
        with pytest.raises(PolicyError, match=message):
            load_policy(path)
    with pytest.raises(PolicyError, match="cannot read it"):
        load_policy(tmp_path / "missing.json")
    # A scenario naming a bad file says so in one line, before anything runs.
    with pytest.raises(ScenarioError, match=r"learned: policy file .*missing.json.*cannot read"):
        load_scenario("learn", [f'providers.3.strategy={{name="learned", params={{path='
                                f'"{tmp_path / "missing.json"}"}}}}'])


def test_learned_bids_as_cost_plus_for_a_constant_policy(tmp_path):
    # 0.25 is exact in float32 (an action's type): the same prices as cost_plus's.
    path = save_policy(constant(0.25), tmp_path / "p.json")
    learn = load_scenario("learn", SHORT)
    learned = Market(with_policy(learn, "learner", path), seed=2, record=False)
    cost_plus = Market(load_scenario("learn", [*SHORT, "providers.3.strategy.params.markup=0.25"]),
                       seed=2, record=False)
    mine: list[BidsPlaced] = []
    theirs: list[BidsPlaced] = []
    for market, into in ((learned, mine), (cost_plus, theirs)):
        market.subscribe(into.append, kinds=(BidsPlaced,))
        market.run()
    assert [(e.order_id, e.providers) for e in mine] == \
        [(e.order_id, e.providers) for e in theirs] and mine
    # cost_plus's asks are rounded to whole micro-USD per GPU-hour, then times the order's
    # GPUs; an order's prices are rounded once, per order: a few micro-USD an hour apart.
    gaps = [abs(a - b) for x, y in zip(mine, theirs, strict=True)
            for a, b in zip(x.prices_micro_per_hour, y.prices_micro_per_hour, strict=True)]
    assert max(gaps) <= 16
    assert _profit(learned) == pytest.approx(_profit(cost_plus), abs=0.01)


@pytest.mark.parametrize("decision", ["order", "interval"])
def test_learned_strategy_earns_what_the_policy_earned_in_the_environment(tmp_path, decision):
    policy = LinearPolicy((0.1, 0.3, 0.4, 0.2), decision=decision, interval_s=1800.0)
    path = save_policy(policy, tmp_path / "p.json")
    env = Episodes(overrides=tuple(SHORT), decision=decision, interval_s=1800.0).env()
    trained = episode_return(env, policy, 3)
    market = Market(with_policy(load_scenario("learn", SHORT), "learner", path), seed=3,
                    record=False)
    market.run()
    assert trained == pytest.approx(_profit(market), abs=1e-6)
    assert trained != 0


class _Counting:
    """A policy that counts its decisions."""

    def __init__(self, policy: LinearPolicy) -> None:
        self.policy, self.decisions = policy, 0
        self.decision, self.interval_s = policy.decision, policy.interval_s

    def act(self, obs):
        self.decisions += 1
        return self.policy.act(obs)

    def space(self, models):
        return self.policy.space(models)


@pytest.mark.parametrize("decision", ["order", "interval"])
def test_learned_decides_per_order_or_per_interval(tmp_path, decision):
    path = save_policy(LinearPolicy((0.3, 0.2, 0.3, 0.1), decision=decision,
                                    interval_s=3600.0), tmp_path / "p.json")
    market = Market(with_policy(load_scenario("learn", SHORT), "learner", path), seed=1,
                    record=False)
    strategy = market.strategies[LEARNER]
    assert isinstance(strategy, Learned)
    counting = strategy.policy = _Counting(strategy.policy)  # type: ignore[assignment]
    priced = set()
    original = strategy.prices

    def prices(order, providers, view):
        priced.add((order.order_id, int(view.now_s // 3600)))
        return original(order, providers, view)

    strategy.prices = prices  # type: ignore[method-assign]
    bids = []
    market.subscribe(lambda e: bids.append(e), kinds=(BidsPlaced,))
    market.run()
    orders = {order for order, _ in priced}
    intervals = {hour for _, hour in priced}
    assert len(orders) > len(intervals) > 1
    assert counting.decisions == (len(orders) if decision == "order" else len(intervals))
    learner = market.pool.population == LEARNER
    assert any(learner[p] for e in bids for p in e.providers)


def test_learned_competes_in_a_tournament(tmp_path):
    path = save_policy(constant(0.4), tmp_path / "p.json")
    board = play(load_scenario("learn", SHORT),
                 ["cost_plus{markup=0.855}", f'learned{{path="{path}"}}'], seeds=2, workers=1)
    learned = board[f'learned{{path="{path}"}}']
    assert learned.providers > 0 and learned.reference == "cost_plus{markup=0.855}"
    assert 0 < learned.win_rate[0] <= 1  # its providers bid and won
    assert set(learned.vs_reference) == {"profit_per_provider_usd", "win_rate", "utilization"}
    with pytest.raises(ScenarioError, match=r"learned.*policy file"):
        play(load_scenario("learn", SHORT), ["cost_plus", 'learned{path="nowhere.json"}'],
             seeds=2, workers=1)


def test_comparison_pairs_seeds_and_refuses_training_seeds(tmp_path):
    path = save_policy(constant(0.25), tmp_path / "p.json")
    learn = load_scenario("learn", SHORT)
    found = compare(learn, "learner", path, [11, 12], workers=1)
    assert found.baseline == "cost_plus{markup=0.855}" and found.seeds == [11, 12]
    # Each side is the population's profit in its own market of the same seed.
    assert found.learned_usd == pytest.approx(
        run_profits(load_scenario("learn", [*SHORT, "providers.3.strategy.params.markup=0.25"]),
                    "learner", [11, 12]), abs=0.01)
    assert found.baseline_usd == run_profits(learn, "learner", [11, 12], workers=2)
    mean, low, high = found.difference_usd
    differences = np.subtract(found.learned_usd, found.baseline_usd)
    assert mean == pytest.approx(differences.mean()) and low < mean < high
    assert found.excludes_zero == (low > 0 or high < 0)
    record = found.to_dict()["difference_usd"]
    assert (record["method"], record["n"], record["ci_low"]) == ("student_t", 2, low)
    with pytest.raises(ValueError, match=r"held-out seeds: \[2\] were training seeds"):
        check_held_out([2, 3], [1, 2])
    with pytest.raises(ScenarioError, match="population: expected one of"):
        with_policy(learn, "nobody", path)


def test_cross_entropy_moves_toward_a_better_markup_deterministically():
    # Only the bias moves: from a markup of 0.9, where the learner wins little in these six
    # hours, toward cheaper ones that win more.
    episodes = Episodes(overrides=tuple(SHORT))
    settings = dict(iterations=2, candidates=4, train_seeds=(1,), seed=3,
                    init_mean=(0.9, 0, 0, 0), init_std=(0.3, 0, 0, 0), extra_std=0.0,
                    std_floor=0.0)
    first = train(episodes, workers=1, **settings)
    assert first.policy.theta[0] < 0.9 and first.policy.theta[1:] == (0.0, 0.0, 0.0)
    returns = [row["mu_return_usd"] for row in first.curve]
    assert len(returns) == 3 and max(returns) > returns[0]
    # The policy is the best centre the search visited, on its training seeds.
    chosen = first.policy.training["chosen_iteration"]
    assert first.policy.training["train_return_usd"] == returns[chosen] == max(returns)
    assert first.policy.theta[0] == first.curve[chosen]["mu.bias"]
    again = train(episodes, workers=2, **settings)  # in other processes: the same search
    assert again.policy == first.policy
    assert json.dumps(again.curve) == json.dumps(first.curve)
    with pytest.raises(ValueError, match="candidates: expected at least 2"):
        train(episodes, candidates=1)
    with pytest.raises(ValueError, match="population: expected one of"):
        train(Episodes(population="nobody", overrides=tuple(SHORT)))


@pytest.mark.parametrize("where", [
    ['providers.3.strategy.name="learned"', 'providers.3.strategy.params={path="p.json"}'],
    ['tournament={strategies=[{name="cost_plus"}, {name="learned", params={path="p.json"}}]}'],
])
def test_a_scenario_from_outside_may_not_read_a_policy_file(where):
    # A live market's client sets scenarios by overrides and uploads: a learned policy's
    # file is on the server's disk, which such a scenario may not read (nor probe).
    from market.scenario import ScenarioError, load_scenario

    with pytest.raises(ScenarioError, match=r"params\.path`: a scenario from outside may not "
                                            "read a file on this machine"):
        load_scenario("learn", where, outside=True)

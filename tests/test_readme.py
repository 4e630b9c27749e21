"""The README's Python examples run as written (those that build a market), and its
interactive sessions print what they show."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
          if "Market(" in block]


def test_readme_has_market_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[index], f"README.md example {index}", "exec"), namespace)
    if "post_order" in BLOCKS[index]:
        # The example's own order got a lease, printed by its subscriber.
        assert "LeaseCreated(" in capsys.readouterr().out


def test_readme_strategy_example_bids_in_a_market(monkeypatch: pytest.MonkeyPatch) -> None:
    from market import Market, load_scenario, registry
    from market.events import LeaseCreated

    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                if "class HalfwayToList" in b]
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md strategy example", "exec"), namespace)
    monkeypatch.setattr(registry, "_registered", {g: {} for g in registry.GROUPS})
    registry.register("strategies", "halfway_to_list", namespace["HalfwayToList"])
    scenario = load_scenario("default", [
        "duration_days=0.3", 'providers.0.strategy={ name = "halfway_to_list" }'])
    market = Market(scenario, seed=4)
    won = []
    market.subscribe(lambda e: won.append(e) if market.pool.population[e.provider] == 0
                     else None, kinds=(LeaseCreated,))
    market.run()
    strategy = market.strategies[0]
    assert won, "the README strategy won no lease"
    for lease in won:
        cost = market.pool.cost_basis_usd_per_gpu_hour[lease.provider]
        model = market.catalog.ids[market.pool.model[lease.provider]]
        expected = (cost + market.catalog[model].list_usd_per_gpu_hour) / 2
        assert lease.price_micro_per_hour / lease.gpus / 1e6 == pytest.approx(expected, abs=1e-5)
    assert hasattr(strategy, "last_clearing")  # the engine told it how its auctions ended


DOCTESTS = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
            if block.startswith(">>> ")]


@pytest.mark.parametrize("index", range(len(DOCTESTS)))
def test_readme_interactive_examples_print_what_they_show(index: int) -> None:
    import doctest

    test = doctest.DocTestParser().get_doctest(DOCTESTS[index], {}, f"README.md session {index}",
                                               None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0

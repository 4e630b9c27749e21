"""The README's Python examples run as written (those that build a market)."""

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

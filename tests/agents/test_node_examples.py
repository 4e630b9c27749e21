"""The README's worked examples on real node lists run as written and show what they print.

Each example's scenario is read from the README, its `clusterdata/...` paths pointed at the
real Alibaba files beside the project (`../shared/data`; skipped where absent, required under
CI=true), and run with each placement; the rows of the README's table must be the runs' own.
`python -m tests.agents.test_node_examples` prints the rows, to paste after a change that moves
them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from market import Market, load_scenario
from tests.agents.test_traces import SHARED, need_shared

README = Path(__file__).resolve().parents[2] / "README.md"
#: Where the README's paths (as in Alibaba's repository) are beside the project.
FOLDERS = {
    "clusterdata/cluster-trace-gpu-v2023/csv/": SHARED / "alibaba-gpu-v2023",
    "clusterdata/cluster-trace-v2026-spot-gpu/": SHARED / "alibaba-spot-gpu-v2026",
}
PLACEMENTS = ("per_node", "pooled")


def example_toml(name: str) -> str:
    """The README's TOML block of scenario `name`."""
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if b.startswith(f'name = "{name}"')]
    return block


def run(name: str, placement: str, folder: Path) -> dict:
    text = example_toml(name)
    for prefix, local in FOLDERS.items():
        text = text.replace(prefix, f"{local}/")
    path = folder / f"{name}.toml"
    path.write_text(text)
    scenario = load_scenario(path, [f'providers.0.nodes.placement="{placement}"'])
    return Market(scenario, seed=1).run().summary


def _turned_away(summary: dict) -> str:
    fragmentation = summary.get("node_fragmentation")
    if fragmentation is None:
        return "—"
    return f"{fragmentation['orders_turned_away']:,} / {fragmentation['providers_turned_away']:,}"


def pods_row(placement: str, summary: dict) -> str:
    """A row of the v2023 example's table."""
    (busy,) = (p["utilization"] for p in summary["populations"].values())
    welfare = summary["welfare"]
    return (f"| `{placement}` | {summary['orders_posted']:,} | {summary['leases_created']:,} | "
            f"{welfare['jobs'].get('served', 0):,} | {welfare['allocative_efficiency']:.1%} | "
            f"{busy:.1%} | {_turned_away(summary)} |")


def spot_row(placement: str, summary: dict) -> str:
    """A row of the spot example's table."""
    spot = summary["interruptible"]
    return (f"| `{placement}` | {spot['leases']:,} | {spot['pauses']:,} "
            f"({spot['resumed_at_once']:,}) | {spot['paused_gpu_hours']:,.0f} | "
            f"{spot['price_usd_per_gpu_hour']['median']:.3f} / "
            f"{spot['on_demand_price_usd_per_gpu_hour']['median']:.3f} | "
            f"{summary['welfare']['allocative_efficiency']:.1%} | {_turned_away(summary)} |")


EXAMPLES = {
    "alibaba-v2023-cluster": (
        SHARED / "alibaba-gpu-v2023" / "openb_node_list_gpu_node.csv", pods_row),
    "alibaba-spot-cluster": (
        SHARED / "alibaba-spot-gpu-v2026" / "node_info_df.csv", spot_row),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_worked_example_shows_what_its_runs_print(name, tmp_path):
    node_list, row = EXAMPLES[name]
    need_shared(node_list)
    readme = README.read_text()
    for placement in PLACEMENTS:
        summary = run(name, placement, tmp_path)
        assert summary["money_conserved"] and summary["welfare"]["identity_holds"]
        assert (placement == "per_node") == ("node_fragmentation" in summary)
        assert row(placement, summary) in readme, row(placement, summary)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for example, (_, make_row) in EXAMPLES.items():
            print(example)
            for how in PLACEMENTS:
                print(make_row(how, run(example, how, Path(folder))))

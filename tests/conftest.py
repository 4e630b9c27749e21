"""Test-suite settings (in CI, property tests replay the same examples on every run) and
shared fixtures."""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def installed_strategy(tmp_path):
    """Install a plug-in strategy the way a package install leaves it (a module and its
    dist-info with an entry point, on the path): `installed_strategy(name, source, cls)`
    returns the environment in which a fresh process finds strategy `name`, class `cls` of a
    module with `source`."""

    def install(name: str, source: str, cls: str) -> dict[str, str]:
        (tmp_path / f"{name}_plugin.py").write_text(source)
        info = tmp_path / f"{name}_plugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            f"[gpumarket.strategies]\n{name} = {name}_plugin:{cls}\n")
        return {**os.environ, "PYTHONPATH": str(tmp_path)}

    return install

"""The three houses of `api/` import one way: `api.cli` may use `api.live` and `api.remote`;
those two use neither `api.cli` nor each other (what both ends share is in `api.wire`), so a
remote bot installs no server and the server knows nothing of the command line. Read from the
source, imports inside functions included."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[2] / "api"
#: What each house may import from inside `api` (besides itself).
ALLOWED = {"live": {"api.wire"}, "remote": {"api.wire"},
           "cli": {"api.wire", "api.live", "api.remote"}}


def _api_imports(path: Path) -> set[str]:
    """The `api.*` modules that `path` imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        names.update(module for module in modules if module.split(".")[0] == "api")
    return names


def _house(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("house", sorted(ALLOWED))
def test_a_house_imports_only_what_lies_below_it(house: str) -> None:
    files = sorted((API / house).rglob("*.py"))
    assert files, f"api/{house} has no modules"
    wrong = {f"{path.relative_to(API.parent)} imports {module}"
             for path in files for module in _api_imports(path)
             if _house(module) != f"api.{house}" and _house(module) not in ALLOWED[house]}
    assert not wrong, sorted(wrong)


def test_the_shared_wire_module_imports_no_house() -> None:
    assert _api_imports(API / "wire.py") == set()


def test_the_command_line_loads_no_server_and_no_bot_until_a_command_needs_one() -> None:
    code = ("import sys; import api.cli.main; "
            "print(sorted(m for m in sys.modules if m.startswith(('api.live', 'api.remote'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"

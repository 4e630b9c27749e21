"""The example notebooks run from top to bottom in a fresh kernel, and are kept without outputs.

Each is executed in a temporary directory (nothing it might write lands in the checkout) with
nbclient on this interpreter's ipykernel; a cell that raises fails the test with its error.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

try:
    import ipykernel  # noqa: F401  (the kernel the notebooks run in)
    import nbclient
    import nbformat
except ImportError as missing:  # a dev dependency: required where the suite must be whole
    if os.environ.get("CI") == "true":
        raise
    pytest.skip(f"notebook tools not installed ({missing.name}): pip install -e '.[dev]'",
                allow_module_level=True)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
#: Wall seconds a cell may take: each notebook runs in well under 30 s on two shared cores.
CELL_TIMEOUT_S = 120
OUT = os.environ.get("GPUMARKET_NOTEBOOKS_OUT")


def test_the_examples_are_there():
    assert {path.name for path in NOTEBOOKS} >= {"take_rate_experiment.ipynb",
                                                 "provider_strategy.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_saved_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> str:
    """A kernel spec that runs this interpreter (the project's environment), found before
    any `python3` kernel installed elsewhere on the machine."""
    folder = tmp_path_factory.mktemp("jupyter") / "kernels" / "gpumarket-tests"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "gpumarket tests", "language": "python"}))
    return str(folder.parents[1])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_from_top_to_bottom(path: Path, tmp_path: Path, kernel: str,
                                          monkeypatch):
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    notebook = nbformat.read(copy, as_version=4)
    monkeypatch.setenv("JUPYTER_PATH", kernel)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S,
                                     kernel_name="gpumarket-tests",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell and its error
    if OUT is not None:  # GPUMARKET_NOTEBOOKS_OUT=DIR keeps the executed copies to look at
        nbformat.write(notebook, Path(OUT) / path.name)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = {kind for o in outputs for kind in o.get("data", {})}
    assert "image/png" in kinds          # the plots drew inline
    assert "text/html" in kinds          # results, scenarios and tables rendered
    assert list(tmp_path.iterdir()) == [copy]  # nothing written beside it

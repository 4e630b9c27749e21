"""What every `gpumarket` command shares: bad input as one `error:` line and exit code 2
(`fail`), the `--format` option, and JSON on stdout (NaN and infinity as null)."""

from __future__ import annotations

import json
import math
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from api.cli.output import FORMAT_HELP, FormatError, choose_format

#: The exit code of bad input (usage, scenario, arguments), as click uses for usage errors.
BAD_INPUT = 2
#: The exit code after Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


def fail(message: str) -> typer.Exit:
    """Print one line naming what is wrong and return the exit to raise (code 2)."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(BAD_INPUT)


WorkersOption = Annotated[int | None, typer.Option(
    min=1, help="processes (or Dask workers with --dask local); default: one per core")]
DaskOption = Annotated[str | None, typer.Option(
    help="run on a Dask cluster: its scheduler address (tcp://host:8786), or 'local' to "
         "start one here", metavar="ADDRESS|local")]


def check_dask(dask: str | None) -> None:
    """Exit 2 unless `--dask` is absent, 'local' or a scheduler address."""
    if dask is not None and dask != "local" and "://" not in dask:
        raise fail(f"--dask: expected a scheduler address like tcp://host:8786 or 'local', "
                   f"got {dask!r}")


FormatOption = Annotated[str | None, typer.Option(
    "--format", help=FORMAT_HELP, metavar="table|plain|markdown|json", show_default=False)]


def output_format(requested: str | None, as_json: bool) -> str:
    """The output format (`api.cli.output.choose_format`); an unknown one exits 2."""
    try:
        return choose_format(requested, as_json)
    except FormatError as error:
        raise fail(str(error)) from None


def print_json(payload: object) -> None:
    """One JSON document on stdout, NaN and infinity (not JSON) as null."""
    sys.stdout.write(json.dumps(_finite(payload), allow_nan=False) + "\n")


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value

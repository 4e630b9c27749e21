"""The `gpumarket` command line: the typer app with its commands in the order `--help` lists
them (the offline ones from `api.cli.offline`, the live-market ones from `api.cli.online`), and
`main`, the console entry point.

Exit codes: 0 success, 2 bad input (usage, scenario, arguments), 1 a bug (with a traceback);
`validate` also 1 when the market disagrees with auction theory; `sweep` and `sensitivity` 3
when some runs failed and 130 when interrupted; `learn` 130 when interrupted; `bot` 130 when
interrupted and 1 when the server failed it mid-run.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from api.cli import calibrate, evaluate, explain, learn, offline, online, sensitivity, trace
from api.cli.output import configure_help
from api.cli.shared import BAD_INPUT

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Simulate a decentralized GPU compute marketplace.")

for command in (offline.run, explain.explain, offline.validate, offline.tournament, offline.sweep,
                offline.report, sensitivity.sensitivity, calibrate.calibrate, learn.learn,
                evaluate.evaluate, online.serve,
                online.replay, online.bot, offline.sweeps, offline.scenarios, offline.schema):
    app.command()(command)
app.add_typer(trace.app, name="trace")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors print one line and exit 2."""
    configure_help()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="gpumarket")
    except RecursionError:  # input nested beyond what any loader walks: still one line
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            "[bold red]error:[/] input nested too deeply (tables, arrays or paths)")
        code = BAD_INPUT
    except TyperException as error:  # click's usage errors (typer vendors click)
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        hint = getattr(getattr(error, "ctx", None), "command_path", "gpumarket")
        code = getattr(error, "exit_code", BAD_INPUT) or BAD_INPUT
        if message:  # empty when click already printed the help (no arguments)
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[bold red]error:[/] {escape(message)} (see '{escape(hint)} --help')")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

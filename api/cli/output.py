"""Where the command line's output goes and how it looks there.

A report is a list of blocks (rich `Table`s, `Panel`s, `Group`s and strings of rich markup)
shown in one of four formats:

- `table`: rich tables in colour at the terminal's width (the default on a terminal);
- `plain`: the same tables without colour or box lines, each at its full width so that no
  cell is cut (`…`) and no number is split across lines (the default off a terminal: a pipe,
  a file, a log, a notebook's `!gpumarket`);
- `markdown`: GitHub-flavoured pipe tables, for a README, an issue or a notebook cell;
- `json`: what `--json` prints (the command builds it; this module only names the format).

Progress off a terminal is a line on stderr every few seconds (`ProgressLines`), where a
terminal gets rich's progress bar.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "plain", "markdown", "json")
FORMAT_HELP = ("table (colour, the default on a terminal), plain (full-width text tables, the "
               "default off a terminal), markdown or json (the same as --json)")

HELP_WIDTH = 120
"""Columns of `--help` off a terminal: every option name and default fits whole."""

PROGRESS_EVERY_S = 5.0
"""Wall seconds between progress lines off a terminal (GPUMARKET_PROGRESS_SECONDS)."""

MIN_WIDTH = 80

# Plain tables: a dashed rule under the header and two spaces between columns; no other lines.
PLAIN_BOX = box.Box("    \n    \n -- \n    \n    \n -- \n    \n    \n", ascii=True)


class FormatError(ValueError):
    """An unknown --format."""


def stdout_is_terminal() -> bool:
    return Console().is_terminal


def choose_format(requested: str | None, as_json: bool = False) -> str:
    """The format to print in: `--json` wins, then `--format`, then by destination."""
    if as_json:
        return "json"
    if requested is None:
        return "table" if stdout_is_terminal() else "plain"
    if requested not in FORMATS:
        raise FormatError(f"--format: expected one of {', '.join(FORMATS)}, got {requested!r}")
    return requested


def configure_help() -> None:
    """Off a terminal, `--help` is drawn at HELP_WIDTH columns instead of 80, where typer's
    rich tables cut option names and defaults with `…`. TERMINAL_WIDTH still wins."""
    if stdout_is_terminal() or os.environ.get("TERMINAL_WIDTH"):
        return
    import typer.rich_utils

    typer.rich_utils.MAX_WIDTH = HELP_WIDTH


# ----------------------------------------------------------------------------- showing

class Output:
    """Shows report blocks on stdout in one format (`table`, `plain` or `markdown`)."""

    def __init__(self, fmt: str, file: IO[str] | None = None) -> None:
        if fmt not in ("table", "plain", "markdown"):
            raise ValueError(f"cannot show blocks as {fmt!r}")
        self.format = fmt
        self.file = file

    def show(self, *blocks: RenderableType) -> None:
        """Print `blocks` in this output's format."""
        if self.format == "markdown":
            self._write(markdown(blocks))
        elif self.format == "plain":
            self._write(plain(blocks))
        else:
            console = Console(file=self.file)
            if not console.is_terminal:  # `--format table` into a file: wide, never cut
                console = Console(file=self.file, width=natural_width(blocks))
            for block in blocks:
                console.print(block)

    def _write(self, text: str) -> None:
        out = self.file or sys.stdout
        out.write(text)
        out.flush()


def _flat(blocks: Iterable[RenderableType]) -> list[RenderableType]:
    """Panels and groups opened into their parts: a panel's title becomes a heading (a
    `Heading`), so plain and markdown output need no frames."""
    flat: list[RenderableType] = []
    for block in blocks:
        if isinstance(block, Panel):
            if block.title:
                flat.append(Heading(_text(block.title)))
            flat.extend(_flat([block.renderable]))
        elif isinstance(block, Group):
            flat.extend(_flat(block.renderables))
        else:
            flat.append(block)
    return flat


class Heading(str):
    """A section title in plain and markdown output."""


def _text(value: Any) -> str:
    """The characters of a cell, a title or a note, without rich markup."""
    if value is None:
        return ""
    if isinstance(value, Text):
        return value.plain
    if isinstance(value, str):
        return Text.from_markup(value).plain
    return str(value)


def plain(blocks: Iterable[RenderableType]) -> str:
    """`blocks` as plain text: tables at their natural width (never narrower, so nothing is
    cut or wrapped), notes wrapped at the widest table's width (at least 80 columns)."""
    parts = _flat(blocks)
    for part in parts:
        if isinstance(part, Table):
            part.box = PLAIN_BOX if part.box is not None else None
    width = natural_width(parts)
    console = Console(width=width, color_system=None, highlight=False, emoji=False,
                      force_terminal=False, force_jupyter=False, record=True,
                      file=open(os.devnull, "w"))  # noqa: SIM115 - closed below
    try:
        for index, part in enumerate(parts):
            if index and isinstance(part, Heading | Table):  # a blank line between tables
                console.print()
            if isinstance(part, Heading):
                console.print(str(part), markup=False)
                console.print("=" * len(part), markup=False)
            else:
                console.print(part)
        text = console.export_text(styles=False)
    finally:
        console.file.close()
    # rich pads centred titles and cells with spaces to the full width: trim each line.
    return "\n".join(line.rstrip() for line in text.split("\n"))


def natural_width(blocks: Iterable[RenderableType]) -> int:
    """Columns that show every table of `blocks` whole (at least MIN_WIDTH); their columns
    are set not to wrap, so a cell that does not fit would widen the table, never be cut."""
    probe = Console(width=100_000, color_system=None)
    widths = [MIN_WIDTH]
    for block in blocks:
        tables = _tables(block)
        for table in tables:
            for column in table.columns:
                column.no_wrap, column.overflow = True, "fold"
        if tables:  # a note is wrapped to the tables' width, not the other way round
            widths.append(Measurement.get(probe, probe.options, block).maximum)
    return max(widths)


def _tables(block: RenderableType) -> list[Table]:
    if isinstance(block, Table):
        return [block]
    if isinstance(block, Panel):
        return _tables(block.renderable)
    if isinstance(block, Group):
        return [table for part in block.renderables for table in _tables(part)]
    return []


def _cell(value: Any, lines: str = " ") -> str:
    """A markdown table cell: one line (its lines joined by `lines`), pipes escaped."""
    return lines.join(" ".join(line.split()) for line in _text(value).splitlines()
                      if line.strip()).replace("|", "\\|")


def markdown_table(table: Table) -> str:
    """One rich `Table` as a GitHub-flavoured pipe table, title and caption as paragraphs."""
    lines = []
    if table.title:
        lines += [f"**{_cell(table.title)}**", ""]
    headers = [_cell(column.header) or " " for column in table.columns]
    rules = ["---:" if column.justify == "right" else "---" for column in table.columns]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("| " + " | ".join(rules) + " |")
    cells = [list(column.cells) for column in table.columns]
    for row in range(table.row_count):
        lines.append("| " + " | ".join(_cell(column[row], ", ") for column in cells) + " |")
    if table.caption:
        lines += ["", _cell(table.caption).replace("\\|", "|")]
    return "\n".join(lines)


def markdown(blocks: Iterable[RenderableType]) -> str:
    """`blocks` as markdown: headings, pipe tables and paragraphs, one blank line apart."""
    parts = []
    for part in _flat(blocks):
        if isinstance(part, Heading):
            parts.append(f"## {part}")
        elif isinstance(part, Table):
            parts.append(markdown_table(part))
        elif isinstance(part, str | Text):
            text = _text(part).strip()
            if text:
                parts.append(text)
        else:
            raise TypeError(f"no markdown form for {type(part).__name__}")
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- progress

def progress_every_s() -> float:
    """Seconds between progress lines: GPUMARKET_PROGRESS_SECONDS, else PROGRESS_EVERY_S."""
    try:
        value = float(os.environ.get("GPUMARKET_PROGRESS_SECONDS", PROGRESS_EVERY_S))
    except ValueError:
        return PROGRESS_EVERY_S
    return value if value >= 0 else PROGRESS_EVERY_S


def duration(seconds: float) -> str:
    """Wall time as people say it: "8 s", "3 min", "1 h 20 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


class ProgressLines:
    """Plain progress lines on a stream (stderr) for where there is no progress bar.

    `update(done, total, **detail)` records where the work is; a line goes out when
    `every_s` seconds have passed since the last one, both on updates and, from a
    background thread, while nothing updates (a long run). `describe(done, total, elapsed_s,
    detail)` makes the line. A context manager: the thread stops on exit.
    """

    def __init__(self, describe: Callable[[float, float, float, dict[str, Any]], str],
                 stream: IO[str] | None = None, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.describe = describe
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = progress_every_s() if every_s is None else every_s
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.state: tuple[float, float, dict[str, Any]] | None = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> ProgressLines:
        # A thread wakes at least every second so that an every_s of 0 does not spin.
        self.thread = threading.Thread(target=self._tick, daemon=True,
                                       name="gpumarket-progress")
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=2)

    def update(self, done: float, total: float, **detail: Any) -> None:
        with self.lock:
            self.state = (done, total, detail)
        self._maybe_print()

    def _tick(self) -> None:
        while not self.stopped.wait(max(self.every_s, 1.0) if self.every_s else 1.0):
            self._maybe_print()

    def _maybe_print(self) -> None:
        with self.lock:
            now = self.clock()
            if self.state is None or now - self.last < self.every_s:
                return
            self.last = now
            done, total, detail = self.state
            line = self.describe(done, total, now - self.started, detail)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe: progress is not worth a crash
            self.stopped.set()


def eta(done: float, total: float, elapsed_s: float) -> str:
    """", ETA 3 min" from the pace so far; empty before anything is done."""
    if done <= 0 or total <= done:
        return ""
    return f", ETA {duration(elapsed_s * (total - done) / done)}"


@contextmanager
def runs_progress(kind: str, name: str, total: int,
                  console: Console) -> Iterator[Callable[[Any], None]]:
    """Progress of `total` runs (a sweep's, an analysis'): rich's bar on a terminal, else a
    line every few seconds (`ProgressLines`). Yields the callback for `run_sweep`'s
    `on_progress`; the pace counts only runs done in this invocation (not those `--resume`
    skipped)."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} runs"),
                   TextColumn("[red]{task.fields[failed]} failed"), TimeRemainingColumn(),
                   console=console, disable=not console.is_terminal, transient=True)
    task = bar.add_task(name, total=total, failed=0)

    def line(done: float, total: float, elapsed_s: float, detail: dict) -> str:
        left = eta(done - detail["skipped"], total - detail["skipped"], elapsed_s)
        return (f"{kind} {name}: {done:.0f}/{total:.0f} runs done, {detail['failed']} "
                f"failed, {duration(elapsed_s)} elapsed{left}")

    lines = ProgressLines(line)

    def show(progress: Any) -> None:
        bar.update(task, completed=progress.done, failed=progress.failed)
        if not console.is_terminal:
            lines.update(progress.done, progress.total, failed=progress.failed,
                         skipped=progress.skipped)

    with bar, lines:
        yield show


__all__ = ["FORMATS", "FORMAT_HELP", "FormatError", "Heading", "Output", "ProgressLines",
           "choose_format", "configure_help", "duration", "eta", "markdown", "plain",
           "progress_every_s", "runs_progress"]

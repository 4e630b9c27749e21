"""What the command-line tests share: `cli`, which runs `gpumarket` in-process as a user
meets it, and the check that bad input is one `error:` line with exit code 2."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from api.cli.main import main

# Environment variables that would make rich colour its output or draw a progress bar.
RICH_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR")


class Outcome(NamedTuple):
    """What a user sees: the exit code, stdout and stderr (unpacks as a tuple too)."""

    code: int | str | None
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """`cli(*argv)` runs `gpumarket argv` in-process and returns its Outcome, off a terminal
    60 columns wide (narrower than the tables: off a terminal none is cut).

    Anything but SystemExit (a crash) propagates, as a traceback would for a user."""
    for name in RICH_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "60")

    def invoke(*argv: str) -> Outcome:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(list(argv))
        out, err = capsys.readouterr()
        return Outcome(exit_info.value.code, out, err)

    return invoke


def assert_one_error_line(outcome: Outcome, *mentions: str) -> str:
    """Bad input: exit 2, nothing on stdout, one `error:` line naming `mentions`."""
    assert "Traceback" not in outcome.out + outcome.err
    assert outcome.code == 2, (outcome.code, outcome.err)
    assert outcome.out == ""
    assert len(outcome.err_lines) == 1, outcome.err
    line = outcome.err_lines[0]
    assert line.startswith("error:"), line
    for mention in mentions:
        assert mention in line, (mention, line)
    return line

"""What the command-line tests share: what `cli` (the fixture in tests/conftest.py) returns,
and the check that bad input is one `error:` line with exit code 2."""

from __future__ import annotations

from typing import NamedTuple

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

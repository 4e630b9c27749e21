"""Test-suite settings (in CI, property tests replay the same examples on every run) and
shared fixtures: a plug-in strategy installed by entry point, Chromium for the browser tests,
real live-market servers (`gpumarket serve` in a child process on 127.0.0.1, on a port
the OS picks, with a fresh session log and its own operator token, stopped after the test),
and `cli`, which runs `gpumarket` in-process as a user meets it."""

import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import settings

from api.cli.main import main
from tests.api.cli_helpers import RICH_ENV, Outcome

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, launched once per test module (`tests.chromium`: it skips with a
    reason where Chromium or Playwright is missing, and fails in CI)."""
    from tests.chromium import launched

    with launched() as chromium:
        yield chromium


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


STARTUP_S = 60.0
_RUNNING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@dataclass
class Server:
    """One `gpumarket serve` process, the operator token it was given (it creates and
    controls markets) and the lines it wrote to stderr."""

    process: subprocess.Popen[str]
    operator_token: str = ""
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def operator(self) -> dict[str, str]:
        """The operator's Authorization header."""
        return {"Authorization": f"Bearer {self.operator_token}"}

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` and wait for the end; a server that does not stop in 10 s is killed."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)


def start_server(db: Path, *args: str) -> Server:
    """Start a server on `db` and return once it answers /api/health (bounded wait)."""
    command = [sys.executable, "-c", "from api.cli.main import main; main()", "serve",
               "--host", "127.0.0.1", "--port", "0", "--db", str(db), *args]
    token = f"gmo_test_{secrets.token_urlsafe(24)}"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                               "GPUMARKET_OPERATOR_TOKEN": token})
    server = Server(process, token)
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # keep reading, or a chatty server would block on a full pipe
        for line in process.stderr:  # type: ignore[union-attr]
            server.lines.append(line)
            lines.put(line)
        lines.put("")

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + STARTUP_S
    while not server.url:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            line = ""
        found = _RUNNING.search(line)
        if found:
            server.url = found.group(1)
        elif line == "" or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("server did not start:\n" + "".join(server.lines[-30:]))
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/api/health", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.kill()
    raise RuntimeError("server did not answer /api/health:\n" + "".join(server.lines[-30:]))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers (`serve(db, *cli_args)`); every one is stopped after the test."""
    started: list[Server] = []

    def start(db: Path | None = None, *args: str) -> Server:
        server = start_server(db or tmp_path / "sessions.db", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill(signal.SIGTERM)


@pytest.fixture
def live_url(serve: Callable[..., Server]) -> str:
    """The base URL of a fresh server, e.g. http://127.0.0.1:PORT."""
    return serve().url


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

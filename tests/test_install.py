"""A plain install works: the wheel carries every file the packages read at run time (built-in
scenarios, sweeps, data, the page), and the installed `gpumarket`, run from a folder outside
the checkout, simulates, sweeps and serves its page without a traceback.

Offline and quick: the wheel is built with the setuptools already installed (no build
isolation, no index), and installed without dependencies into a fresh virtualenv that reaches
this environment's installed dependencies through a `.pth` line (a plain path: the `.pth` files
in there, among them this checkout's editable install, are not run), so that nothing on its
path comes from the checkout.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.install  # in `make test`; `-m "not install"` leaves it out

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("market", "agents", "api")
#: Files a wheel need not carry: bytecode and caches.
_BUILD_LEFTOVERS = ("__pycache__", ".pyc", ".pyo")


def _setuptools_version() -> tuple[int, ...]:
    try:
        from setuptools import __version__
    except ImportError:
        return (0,)
    return tuple(int(part) for part in __version__.split(".")[:2] if part.isdigit())


def _package_files() -> list[str]:
    """Every file of the packages in the checkout, as wheel paths (`market/sweeps/x.toml`)."""
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            relative = path.relative_to(ROOT)
            if path.is_file() and not any(part in _BUILD_LEFTOVERS or part.endswith(
                    _BUILD_LEFTOVERS) for part in relative.parts):
                files.append(relative.as_posix())
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the checkout's sources (setuptools writes a build/
    folder and egg-info next to what it builds: not in the checkout others work in)."""
    needed = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert _setuptools_version() >= (77,), (
        f"building the wheel offline needs {needed} installed (`make` installs the dev extra)")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "--quiet", "--wheel-dir", str(dist), str(source)],
                   check=True, capture_output=True, text=True, timeout=120)
    (built,) = dist.glob("gpumarket-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed; its `bin` folder."""
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(home)
    python = home / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "gpumarket-test-dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--no-index", "--quiet", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=120)
    return home / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str, timeout_s: float = 120) -> str:
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    environment["PATH"] = f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}"
    done = subprocess.run(list(args), cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=timeout_s)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    return done.stdout


def test_the_wheel_carries_every_file_of_the_packages(wheel):
    with zipfile.ZipFile(wheel) as archive:
        carried = set(archive.namelist())
    files = _package_files()
    assert any(name.startswith("market/sweeps/") for name in files)  # the check sees them
    missing = [name for name in files if name not in carried]
    assert not missing, f"the wheel leaves out {missing}: add them to package-data"


def test_installed_package_runs_outside_the_checkout(installed, tmp_path):
    python = str(installed / "python")
    # Nothing on the installed interpreter's path comes from the checkout.
    where = _run(installed, tmp_path, python, "-c",
                 "import api, market; print(market.__file__); print(api.__file__)")
    assert all(not Path(line).is_relative_to(ROOT) for line in where.split()), where

    _run(installed, tmp_path, str(installed / "gpumarket"), "run",
         "--set", "duration_days=0.2")


def test_installed_package_finds_its_builtin_sweeps_and_runs_one(installed, tmp_path):
    python = str(installed / "python")
    shipped = sorted(path.stem for path in (ROOT / "market" / "sweeps").glob("*.toml"))
    listed = _run(installed, tmp_path, python, "-c",
                  "from market.experiments.sweep import builtin_sweeps, load_sweep\n"
                  "names = builtin_sweeps()\n"
                  "for name in names:\n"
                  "    print(name, len(load_sweep(name).runs()))\n")
    runs = dict(line.split() for line in listed.splitlines())
    assert sorted(runs) == shipped
    assert all(int(count) > 0 for count in runs.values()), runs

    # The built-in take_rate sweep as shipped is 32 runs of two simulated days (about 100 s
    # on one core): the installed copy, shortened, runs through the command line instead.
    text = _run(installed, tmp_path, python, "-c",
                "from importlib import resources\n"
                "print(resources.files('market').joinpath('sweeps', 'take_rate.toml')"
                ".read_text('utf-8'), end='')")
    data = tomllib.loads(text)
    assert data["base"] == "default" and "market.take_rate" in data["grid"]
    short = text.replace("replications = 4", "replications = 1").replace(
        "duration_days = 2", "duration_days = 0.1")
    short = short.replace(
        '"market.take_rate" = [0.0, 0.1, 0.2, 0.35]', '"market.take_rate" = [0.0, 0.2]')
    assert short.count("0.1\n") == 1 and "replications = 1" in short, short
    (tmp_path / "take_rate.toml").write_text(short)
    _run(installed, tmp_path, str(installed / "gpumarket"), "sweep", "take_rate.toml",
         "--workers", "1", "--out", "out")
    assert (tmp_path / "out" / "runs.parquet").is_file()


def test_installed_server_serves_its_page_and_offline_docs(installed, tmp_path):
    python = str(installed / "python")
    _run(installed, tmp_path, python, "-c", """
from fastapi.testclient import TestClient
from api.live.server import create_app
with TestClient(create_app("live.db")) as client:
    for path in ("/", "/static/app.js", "/static/style.css", "/docs", "/redoc"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
    for path in client.get("/docs").text.split('"'):
        if path.startswith("/docs-assets/"):
            assert client.get(path).status_code == 200, path
""")

"""Shared fixtures. Tests never touch real user state: XGUARD_HOME always
points into tmp_path, and the default (platformdirs/XDG) locations are made
unusable so a test that forgets to choose a home fails loudly."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.pgcluster import PgCluster

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.exists():  # CI lays shared/ beside the clone
    SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
FIXTURES = SHARED / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/oracle/conftest.py: pytest reads options only from the
    # conftest files it loads before collecting (`pytest -m oracle --oracle-examples N`).
    group = parser.getgroup("oracle", "execution oracle (tests/oracle)")
    group.addoption(
        "--oracle-examples",
        type=int,
        default=3000,
        help="commands the oracle generates and decides (CI: 3000; before a release: 100000)",
    )
    group.addoption("--oracle-seed", type=int, default=11, help="the generators' seed (default 11)")
    group.addoption(
        "--oracle-report",
        default=None,
        help="also write each allowed-and-harmful command here, one line each",
    )

    parser.addoption(
        "--warm",
        action="store_true",
        help="start a warm server in each test's xguard home on first use (XGUARD_WARM=1): "
        "the suite then runs through the warm path",
    )


def xguard_exe() -> list[str]:
    """The installed launcher: the one way every test reaches the program.

    It is the `xguard` pip installed beside this interpreter, never whatever
    `PATH` happens to hold (a clean clone's CI has no virtual environment's
    bin on PATH)."""
    exe = os.path.join(os.path.dirname(sys.executable), "xguard")
    assert os.access(exe, os.X_OK), (
        f"xguard is not installed beside {sys.executable} (pip install -e .)"
    )
    return [exe]


def xguard_tool(name: str) -> str:
    """Another launcher installed with xguard (xguard-prefix), found the same way."""
    exe = os.path.join(os.path.dirname(sys.executable), name)
    assert os.access(exe, os.X_OK), (
        f"{name} is not installed beside {sys.executable} (pip install -e .)"
    )
    return exe


@pytest.fixture(autouse=True)
def xguard_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Path]:
    home = tmp_path / "xghome"
    monkeypatch.setenv("XGUARD_HOME", str(home))
    # A warm server starts on first use by default; the suite runs each test's
    # commands cold unless --warm (CI runs tests/e2e both ways).
    monkeypatch.setenv("XGUARD_WARM", "1" if request.config.getoption("--warm") else "0")
    monkeypatch.delenv("XGUARD_RULES", raising=False)
    monkeypatch.delenv("XGUARD_SESSION", raising=False)
    monkeypatch.delenv("XGUARD_PROFILE", raising=False)
    monkeypatch.delenv("XGUARD_WAIT", raising=False)
    # Any code that ignores XGUARD_HOME lands in a folder that cannot be created.
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/xguard-test-forgot-XGUARD_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", "/nonexistent/xguard-test-forgot-XGUARD_HOME")
    yield home
    _stop_warm(home)


@pytest.fixture(autouse=True, scope="session")
def _no_warm_server_outlives_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests that give xguard an environment of their own (another home, no
    XGUARD_WARM) start warm servers by default: end every one whose
    environment points into this run's temporary folders."""
    yield
    import signal

    base = str(tmp_path_factory.getbasetemp()).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"\0warm\0serve\0" not in f.read():
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if base not in f.read():
                    continue
            os.kill(int(pid), signal.SIGTERM)
        except OSError:
            continue


def _stop_warm(home: Path) -> None:
    """A warm server a test started (`warm: true`, --warm) ends with the test."""
    import signal
    import time

    from xguard.warm import server_pid

    if not (home / "warm.log").is_file():
        return  # no server was ever started here
    # One started by the test's last command may still be loading.
    end = time.monotonic() + 10
    while not (home / "warm.sock").exists() and time.monotonic() < end:
        time.sleep(0.02)
    pid = server_pid(str(home))
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 15
    while time.monotonic() < end and server_pid(str(home)) is not None:
        time.sleep(0.02)


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip("shared/ (corpus and fixtures) is not beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgCluster]:
    """A real PostgreSQL server for the shared queue (issue 15), once per session."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.stop()

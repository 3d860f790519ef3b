"""Shared fixtures. Tests never touch real user state: XGUARD_HOME always
points into tmp_path, and the default (platformdirs/XDG) locations are made
unusable so a test that forgets to choose a home fails loudly."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.exists():  # CI lays shared/ beside the clone
    SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
FIXTURES = SHARED / "fixtures"


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
def xguard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xghome"
    monkeypatch.setenv("XGUARD_HOME", str(home))
    monkeypatch.delenv("XGUARD_RULES", raising=False)
    monkeypatch.delenv("XGUARD_SESSION", raising=False)
    monkeypatch.delenv("XGUARD_PROFILE", raising=False)
    monkeypatch.delenv("XGUARD_WAIT", raising=False)
    # Any code that ignores XGUARD_HOME lands in a folder that cannot be created.
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/xguard-test-forgot-XGUARD_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", "/nonexistent/xguard-test-forgot-XGUARD_HOME")
    return home


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip("shared/ (corpus and fixtures) is not beside this checkout")
    return SHARED


# ---------------------------------------------------------------------------
# A real PostgreSQL server for the shared queue (issue 15): started once per
# test session in a private folder, as an unprivileged user (postgres refuses
# root), listening on 127.0.0.1 and a unix socket only.


def _pg_bin(name: str) -> str:
    import glob
    import shutil

    for cand in [shutil.which(name), *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))]:
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError(f"{name} not found: install Debian's postgresql (see .ci/run)")


class PgServer:
    """A running test cluster; `dsn(user, db)` gives a libpq connection string."""

    ADMIN = "xgadmin"

    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root, self.port, self.run_as = root, port, run_as

    def dsn(self, user: str | None = None, db: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={db} user={user or self.ADMIN}"

    def new_database(self) -> str:
        """A fresh database for one test (roles are cluster-wide and shared)."""
        import psycopg

        name = "t_" + os.urandom(5).hex()
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return name


@pytest.fixture(scope="session")
def pg_server() -> Any:
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    run_as = None
    if os.getuid() == 0:  # postgres will not run as root: use its own (or nobody's) account
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            run_as = name
            break
    # Outside pytest's tmp folders: those are 0700 root, which the server's user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="xguard-pg-"))
    if run_as:
        shutil.chown(root, run_as)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(
        [initdb, "-D", str(data), "-A", "trust", "-U", PgServer.ADMIN, "-E", "UTF8", "--no-sync"],
        user=run_as,
        cwd=root,
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    subprocess.run(
        [pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
        user=run_as,
        cwd=root,
        check=True,
        capture_output=True,
    )
    try:
        yield PgServer(root, port, run_as)
    finally:
        subprocess.run(
            [pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            user=run_as,
            cwd=root,
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)

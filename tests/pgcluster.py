"""A throwaway PostgreSQL cluster for the shared-queue tests and benchmark (issue 15).

Started in a private folder as an unprivileged user (postgres refuses root),
listening on 127.0.0.1 and a unix socket in that folder only; trust
authentication, fsync off: it lives as long as a test session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

ADMIN = "xgadmin"


def _bin(name: str) -> str:
    for cand in [shutil.which(name), *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))]:
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError(f"{name} not found: install Debian's postgresql (see .ci/run)")


class PgCluster:
    """A running cluster; `dsn(user, db)` gives a libpq connection string."""

    ADMIN = ADMIN

    def __init__(self) -> None:
        self.run_as: str | None = None
        if os.getuid() == 0:  # the server will not run as root: its own account, or nobody's
            for name in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    continue
                self.run_as = name
                break
        # Not under pytest's tmp folders: those are 0700 root, closed to the server's user.
        self.root = Path(tempfile.mkdtemp(prefix="xguard-pg-"))
        if self.run_as:
            shutil.chown(self.root, self.run_as)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = self.root / "data"
        self._pg_ctl = _bin("pg_ctl")
        initdb = _bin("initdb")
        self._run(
            initdb, "-D", str(self.data), "-A", "trust", "-U", ADMIN, "-E", "UTF8", "--no-sync"
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c max_connections=200"
        )
        self._opts = opts
        self.start_server()

    def start_server(self) -> None:
        """(Re)start the server: tests of an outage stop it with stop_server()."""
        log = str(self.root / "log")
        self._run(self._pg_ctl, "-D", str(self.data), "-o", self._opts, "-l", log, "-w", "start")

    def stop_server(self) -> None:
        """Stop the server, keeping its data (an outage)."""
        self._run(self._pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, user=self.run_as, cwd=self.root, check=True, capture_output=True)

    def dsn(self, user: str | None = None, db: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={db} user={user or ADMIN}"

    def new_database(self) -> str:
        """A fresh database (roles are cluster-wide and shared between them)."""
        import psycopg

        name = "t_" + os.urandom(5).hex()
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}".encode())
        return name

    def stop(self) -> None:
        subprocess.run(
            [self._pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            user=self.run_as,
            cwd=self.root,
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)

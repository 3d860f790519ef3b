"""Real database servers for the impact tests (issue 13), each started in a
temporary folder on a Unix socket (and PostgreSQL also on 127.0.0.1), as an
unprivileged user when the tests run as root: Debian's PostgreSQL refuses to
run as root, and a server that never had root is what production looks like.

The fixture data is the seed article's: `orders` holds 12,000 rows, 11,200 of
them older than 7 days; `session_tokens` a few hundred, most expired."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)

SEED_PG = """
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, banned boolean NOT NULL DEFAULT false);
INSERT INTO users SELECT g, 'user' || g, g % 10 = 0 FROM generate_series(1, 500) g;
CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id),
                     total numeric NOT NULL, created_at timestamptz NOT NULL);
CREATE INDEX orders_created_at ON orders (created_at);
INSERT INTO orders (user_id, total, created_at)
  SELECT 1 + g % 500, g, now() - interval '30 days' + g * interval '1 second'
  FROM generate_series(1, 11200) g;
INSERT INTO orders (user_id, total, created_at)
  SELECT 1 + g % 500, g, now() - interval '1 day' + g * interval '1 second'
  FROM generate_series(1, 800) g;
CREATE TABLE events (id serial PRIMARY KEY, kind text NOT NULL, at timestamptz NOT NULL);
INSERT INTO events (kind, at) SELECT 'click', now() - g * interval '1 minute'
  FROM generate_series(1, 2000) g;
CREATE TABLE session_tokens (token text PRIMARY KEY, expires_at timestamptz NOT NULL);
INSERT INTO session_tokens SELECT 'expired' || g, now() - interval '1 hour'
  FROM generate_series(1, 340) g;
INSERT INTO session_tokens SELECT 'live' || g, now() + interval '1 hour'
  FROM generate_series(1, 60) g;
CREATE TABLE side_effects (at timestamptz NOT NULL DEFAULT now(), what text);
CREATE FUNCTION log_it(i int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN INSERT INTO side_effects (what) VALUES ('called with ' || i); RETURN true; END $$;
CREATE ROLE pwuser LOGIN PASSWORD 'sekret';
GRANT ALL ON ALL TABLES IN SCHEMA public TO pwuser;
ANALYZE;
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> tuple[list[str], int, int]:
    """argv prefix to run a server unprivileged, and the uid/gid its files need."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    for name in ("postgres", "mysql", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return (
            ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"],
            pw.pw_uid,
            pw.pw_gid,
        )
    raise RuntimeError("no unprivileged user to run a database server as")


def _tmpdir(uid: int, gid: int) -> str:
    # Under /tmp, not pytest's tmp_path: that is root's, mode 0700, and the
    # server's user must reach its folder.
    d = tempfile.mkdtemp(prefix="xguard-db-")
    os.chmod(d, 0o755)  # noqa: S103 - the server's user must reach it; nothing secret inside
    os.chown(d, uid, gid)
    return d


@dataclass
class Postgres:
    folder: str
    socket_dir: str
    port: int
    superuser: str

    def psql(self, sql: str, db: str = "shop") -> str:
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
             "-p", str(self.port), "-U", self.superuser, "-d", db, "-c", sql],
            capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
        return out.stdout.strip()


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    if not PG_BINS or not shutil.which("psql"):
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    bindir = PG_BINS[0]
    prefix, uid, gid = _as_user()
    top = _tmpdir(uid, gid)
    data = os.path.join(top, "data")
    port = _free_port()
    superuser = pwd.getpwuid(uid).pw_name
    try:
        subprocess.run(
            [*prefix, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", superuser,
             "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with open(os.path.join(data, "pg_hba.conf"), "w") as f:
            f.write(
                "local all all trust\n"
                "host all pwuser 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n"
            )
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(top, "log"), "-w",
             "-t", "60", "-o",
             f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={top}"
             " -c fsync=off -c full_page_writes=off -c synchronous_commit=off", "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
        pg = Postgres(top, top, port, superuser)
        pg.psql("CREATE DATABASE shop", db="postgres")
        pg.psql(SEED_PG)
        yield pg
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(top, ignore_errors=True)


SEED_MY = """
CREATE TABLE users (id int PRIMARY KEY, name varchar(40) NOT NULL, banned bool NOT NULL);
CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, user_id int NOT NULL,
                     total int NOT NULL, created_at datetime NOT NULL, KEY (created_at));
CREATE TABLE session_tokens (token varchar(40) PRIMARY KEY, expires_at datetime NOT NULL);
INSERT INTO users SELECT seq, CONCAT('user', seq), seq % 10 = 0 FROM seq_1_to_500;
INSERT INTO orders (user_id, total, created_at)
  SELECT 1 + seq % 500, seq, NOW() - INTERVAL 30 DAY + INTERVAL seq SECOND FROM seq_1_to_11200;
INSERT INTO orders (user_id, total, created_at)
  SELECT 1 + seq % 500, seq, NOW() - INTERVAL 1 DAY + INTERVAL seq SECOND FROM seq_1_to_800;
INSERT INTO session_tokens SELECT CONCAT('expired', seq), NOW() - INTERVAL 1 HOUR FROM seq_1_to_340;
INSERT INTO session_tokens SELECT CONCAT('live', seq), NOW() + INTERVAL 1 HOUR FROM seq_1_to_60;
"""


@dataclass
class MariaDB:
    folder: str
    socket: str

    def sql(self, sql: str, db: str = "shop") -> str:
        out = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "--batch",
             "--skip-column-names", db, "-e", sql],
            capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
        return out.stdout.strip()


@contextlib.contextmanager
def mariadb() -> Iterator[MariaDB]:
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    if not os.path.exists(mariadbd) or not shutil.which("mariadb"):
        raise RuntimeError("MariaDB is not installed (apt-get install mariadb-server)")
    prefix, uid, gid = _as_user()
    top = _tmpdir(uid, gid)
    data = os.path.join(top, "data")
    sock = os.path.join(top, "mysqld.sock")
    user = pwd.getpwuid(uid).pw_name
    proc = None
    try:
        subprocess.run(
            [*prefix, "mariadb-install-db", "--no-defaults", f"--datadir={data}",
             "--auth-root-authentication-method=normal", "--skip-test-db", f"--user={user}"],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        proc = subprocess.Popen(
            [*prefix, mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={sock}",
             "--skip-networking", "--skip-grant-tables=0", f"--pid-file={top}/pid",
             f"--log-error={top}/err.log", "--innodb-buffer-pool-size=16M",
             "--innodb-log-file-size=8M", "--skip-log-bin"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        db = MariaDB(top, sock)
        deadline = time.monotonic() + 60
        while True:
            try:
                db.sql("SELECT 1", db="mysql")
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        "mariadbd did not start: " + Path(top, "err.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.2)
        db.sql("CREATE DATABASE shop", db="mysql")
        db.sql(SEED_MY)
        yield db
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(top, ignore_errors=True)


def sqlite_shop(path: str) -> None:
    """The same fixture in an SQLite file."""
    script = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, banned INT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INT NOT NULL, total INT NOT NULL,
                     created_at TEXT NOT NULL);
CREATE INDEX orders_created_at ON orders (created_at);
CREATE TABLE session_tokens (token TEXT PRIMARY KEY, expires_at TEXT NOT NULL);
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 12000)
INSERT INTO orders (user_id, total, created_at)
  SELECT 1 + n % 500, n, CASE WHEN n <= 11200
    THEN datetime('now', '-30 days', '+' || n || ' seconds')
    ELSE datetime('now', '-1 days', '+' || n || ' seconds') END FROM g;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 500)
INSERT INTO users SELECT n, 'user' || n, n % 10 = 0 FROM g;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 400)
INSERT INTO session_tokens SELECT 'tok' || n,
  CASE WHEN n <= 340 THEN datetime('now', '-1 hours') ELSE datetime('now', '+1 hours') END FROM g;
"""
    subprocess.run(["sqlite3", path], input=script, text=True, check=True, timeout=60)

"""The database copy of this host's audit log (issue 15).

With `queue: {postgres: DSN}` configured, every record this host appends is
also inserted into xguard.audit, where a trigger accepts only the next link
of this host's chain (xguard/approval/pgschema.py). Deleting or rewriting
the local log afterwards no longer matches that copy, and
`xguard audit verify --against-db` says where.

Copying does not happen inside the command's own process: the database
driver alone costs ~200 ms to import, and the hot path must not pay that on
every allowed command. After each append the writer calls `Kicker`, which
only marks the log dirty and, unless a syncer already runs, starts one
detached (`python -m xguard.audit.dbsync`). The syncer holds a lock, copies
every local line the database lacks (so lines written while the database was
down follow later), and loops while new lines keep coming. Its last result
is kept in audit/dbsync.status for `verify --against-db` and `doctor`.

Standard library only at import: the writer's hot path imports this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_LOCK = ".dbsync.lock"
_DIRTY = ".dbsync.dirty"
STATUS = "dbsync.status"
_DSN_VAR = "XGUARD_DBSYNC_DSN"
_MAX_FILES = 100


class Kicker:
    """The audit writer's mirror hook: start a background copy, never wait for it."""

    def __init__(self, state_dir: str, dsn: str) -> None:
        self.audit_dir = os.path.join(state_dir, "audit")
        self.state_dir = state_dir
        self.dsn = dsn

    def __call__(self, record: dict[str, Any], line: bytes) -> None:
        """Mark the log dirty; start a syncer unless one runs (it will see the mark)."""
        try:
            os.close(os.open(os.path.join(self.audit_dir, _DIRTY), os.O_CREAT | os.O_WRONLY, 0o600))
            fd = os.open(os.path.join(self.audit_dir, _LOCK), os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return  # a syncer runs and will loop once more
        os.close(fd)
        self._spawn()

    def _spawn(self) -> None:
        devnull = os.devnull
        env = dict(os.environ)
        # Not on the command line: a password in the DSN would show in ps.
        env[_DSN_VAR] = self.dsn
        # On failure the next append tries again; `xguard db sync` does it by hand.
        with contextlib.suppress(OSError):
            os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", "xguard.audit.dbsync", self.state_dir],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, devnull, os.O_WRONLY, 0),
                ],
                # Its own session: the agent's Ctrl-C or process-group kill
                # must not cut a copy short.
                setsid=True,
            )


def _local_lines(audit_file: str, after: int) -> tuple[list[bytes], dict[int, str]]:
    """Local records with seq > after (oldest first), and (seq -> hash) of those read."""
    from xguard.audit.log import lines_backwards, parse_link

    found: list[bytes] = []
    hashes: dict[int, str] = {}
    files = [audit_file] + [f"{audit_file}.{n}" for n in range(1, _MAX_FILES)]
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            break
        try:
            for raw in lines_backwards(fd, os.fstat(fd).st_size):
                link = parse_link(raw)
                if link is None:
                    continue
                hashes[link[0]] = link[1]
                if link[0] <= after:
                    found.reverse()
                    return found, hashes
                found.append(raw)
        finally:
            os.close(fd)
    found.reverse()
    return found, hashes


def sync_now(state_dir: str, dsn: str) -> tuple[bool, str]:
    """Copy the lines the database lacks; (ok, what happened). Waits for a running syncer."""
    audit_dir = os.path.join(state_dir, "audit")
    os.makedirs(audit_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(audit_dir, _LOCK), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _sync_locked(state_dir, dsn)
    finally:
        os.close(fd)


def _sync_locked(state_dir: str, dsn: str) -> tuple[bool, str]:
    import json
    import time

    audit_dir = os.path.join(state_dir, "audit")
    ok, message = _copy(os.path.join(audit_dir, "audit.jsonl"), dsn)
    status = {"ok": ok, "message": message, "at": time.time()}
    tmp = os.path.join(audit_dir, f".{STATUS}.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(status) + "\n")
    os.replace(tmp, os.path.join(audit_dir, STATUS))
    return ok, message


def _copy(audit_file: str, dsn: str) -> tuple[bool, str]:
    import psycopg

    from xguard.util import dsn_server as server_of

    where = server_of(dsn)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5, application_name="xguard")
    except psycopg.Error as e:
        return False, f"audit copy: postgres at {where} unreachable: {str(e).strip()}"
    with conn:
        try:
            host = conn.execute("SELECT xguard.my_host()").fetchone()
            if host is None or host[0] is None:
                return False, (
                    f"audit copy: the database role is not mapped to a host at {where} "
                    "(xguard db init --agent HOST=ROLE)"
                )
            top = conn.execute(
                "SELECT seq, hash FROM xguard.audit WHERE host = xguard.my_host() "
                "ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            after = int(top[0]) if top else 0
            lines, hashes = _local_lines(audit_file, after)
            if top and hashes.get(top[0]) != top[1]:
                what = "differs from" if top[0] in hashes else "lacks a record held by"
                return False, (
                    f"audit copy: the local log {what} the database copy of host "
                    f"{host[0]} at seq {top[0]} (xguard audit verify --against-db)"
                )
            with conn.transaction():
                for raw in lines:
                    conn.execute(
                        "INSERT INTO xguard.audit (seq, hash, prev, line) VALUES (0, '', '', %s)",
                        (raw.decode("utf-8"),),
                    )
        except psycopg.Error as e:
            return False, f"audit copy to postgres at {where} refused: {str(e).strip()}"
    return True, f"audit copy of host {host[0]} at {where}: {len(lines)} new records"


def db_heads(dsn: str, host: str | None) -> tuple[str, dict[int, str]]:
    """(host, seq -> hash) of a host's copy (this role's own host when None)."""
    import psycopg

    from xguard.errors import QueueError
    from xguard.util import dsn_server as server_of

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            if host is None:
                row = conn.execute("SELECT xguard.my_host()").fetchone()
                host = row[0] if row else None
                if host is None:
                    raise QueueError(
                        f"the database role at {server_of(dsn)} is not mapped to a host; "
                        "name one with --host"
                    )
            rows = conn.execute(
                "SELECT seq, hash FROM xguard.audit WHERE host = %s", (host,)
            ).fetchall()
    except psycopg.Error as e:
        raise QueueError(f"postgres at {server_of(dsn)}: {str(e).strip()}") from e
    return host, {int(s): str(h) for s, h in rows}


def _main(argv: list[str]) -> int:
    """The detached syncer: copy until no new line arrived while copying."""
    os.closerange(3, 1024)  # nothing of the agent's (pipes it waits on) stays open here
    state_dir = argv[0]
    dsn = os.environ.pop(_DSN_VAR, "")
    if not dsn:
        return 2
    audit_dir = os.path.join(state_dir, "audit")
    dirty = os.path.join(audit_dir, _DIRTY)
    lock = os.path.join(audit_dir, _LOCK)
    ok = True
    # A writer that marks the log dirty while we still hold the lock does not
    # start a syncer of its own: so look for its mark again after letting go.
    while ok and os.path.exists(dirty):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0  # another syncer has it, and will look too
            while ok:
                try:
                    os.unlink(dirty)
                except FileNotFoundError:
                    break
                ok, _ = _sync_locked(state_dir, dsn)
        finally:
            os.close(fd)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))

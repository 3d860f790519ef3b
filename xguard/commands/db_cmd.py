"""`xguard db`: set up the shared PostgreSQL queue and copy the audit log into it (issue 15)."""

from __future__ import annotations

import sys
from typing import Any


from xguard.errors import UsageError


def _config_dsn() -> str | None:
    from xguard.approval.backend import postgres_dsn
    from xguard.gate.request import Gate

    return postgres_dsn(Gate().ruleset)


def _connect(dsn: str) -> Any:
    from xguard.errors import QueueError
    from xguard.util import dsn_server as server_of

    try:
        import psycopg
    except ImportError as e:
        raise UsageError("the PostgreSQL queue needs psycopg: pip install 'xguard[teams]'") from e
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=5, application_name="xguard")
    except psycopg.Error as e:
        raise QueueError(f"cannot reach postgres at {server_of(dsn)}: {str(e).strip()}") from e


def _ident(name: str, what: str) -> str:
    import psycopg.sql

    if not name or len(name) > 63 or "\x00" in name:
        raise UsageError(f"{what} {name!r}: not a PostgreSQL role name")
    return psycopg.sql.Identifier(name).as_string(None)


def db() -> None:
    """The shared PostgreSQL queue for many hosts (`queue: {postgres: DSN}`)."""


def init_cmd(dsn: str | None, agents: tuple[str, ...], reviewers: tuple[str, ...]) -> int:
    """Create the schema, the roles, the grants and row-level security; print each step."""
    from xguard.approval.pgschema import AGENT, REVIEWER, STATEMENTS, policy_statements
    from xguard.approval.pgschema import role_name_for as default_role

    dsn = dsn or _config_dsn()
    if not dsn:
        raise UsageError("no database: give --dsn, or set queue: {postgres: DSN} in the config")
    steps: list[tuple[str, str, tuple[Any, ...]]] = [(d, s, ()) for d, s in STATEMENTS]
    steps += [(d, s, ()) for d, s in policy_statements()]
    for spec in agents:
        host, _, role = spec.partition("=")
        role = role or default_role(host)
        if not host:
            raise UsageError(f"--agent {spec!r}: expected HOST or HOST=ROLE")
        steps += _login_role(role, AGENT, f"agent role {role} for host {host}")
        steps.append((f"  mapped {role} -> host {host}", _MAP, (role, host)))
    for spec in reviewers:
        role, _, host = spec.partition("@")
        steps += _login_role(role, REVIEWER, f"reviewer role {role}")
        if host:
            steps.append((f"  mapped {role} -> host {host} (its audit copy)", _MAP, (role, host)))
    conn = _connect(dsn)
    import psycopg

    with conn:
        for what, sql, params in steps:
            try:
                conn.execute(sql.encode(), params or None)
            except psycopg.Error as e:
                sys.stderr.write(f"xguard: db init failed at: {what or sql[:60]}: {e}\n")
                return 1
            if what:
                print(f"ok  {what}")
    print(
        "done. Agents connect as their host's role and may only add requests and read "
        "their own decisions; reviewers decide."
    )
    return 0


_MAP = (
    "INSERT INTO xguard.hosts (role, host) VALUES (%s, %s) "
    "ON CONFLICT (role) DO UPDATE SET host = EXCLUDED.host"
)


def _login_role(role: str, group: str, what: str) -> list[tuple[str, str, tuple[Any, ...]]]:
    r = _ident(role, "role")
    lit = role.replace("'", "''")
    create = (
        f"DO $$ BEGIN CREATE ROLE {r} LOGIN; "
        f"EXCEPTION WHEN duplicate_object THEN RAISE NOTICE 'role % exists', '{lit}'; END $$"
    )
    return [(f"{what} (login, member of {group})", create, ()), ("", f"GRANT {group} TO {r}", ())]


def sync_cmd() -> int:
    """Copy this host's audit lines the database does not hold yet (normally done in the"""
    from xguard.audit.dbsync import sync_now
    from xguard.paths import get_paths

    dsn = _config_dsn()
    if not dsn:
        raise UsageError("no shared queue configured (queue: {postgres: DSN})")
    ok, message = sync_now(get_paths().state_dir_s, dsn)
    (sys.stdout if ok else sys.stderr).write(f"{'' if ok else 'xguard: '}{message}\n")
    return 0 if ok else 1

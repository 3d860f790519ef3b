"""Many hosts, one queue (issue 15): a real PostgreSQL server shared by two agent
hosts and a reviewer host, each its own XGUARD_HOME and database role."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import xguard_exe

XG = xguard_exe()
REVIEWER_ROLE = "xguard_rev_alice"


@dataclass
class Host:
    name: str
    home: Path
    role: str
    work: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XGUARD_")}
        return {**env, "XGUARD_HOME": str(self.home), "XGUARD_HOST": self.name, **extra}

    def xg(self, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*XG, *args],
            env=self.env(**extra),
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, command: str, wait: str = "60", **extra: str) -> subprocess.Popen[str]:
        """An agent's `xguard -c` that will wait for approval."""
        return subprocess.Popen(
            [*XG, "-c", command],
            env=self.env(XGUARD_WAIT=wait, **extra),
            cwd=self.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def pending(self) -> list[dict[str, Any]]:
        p = self.xg("pending", "--json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def audit(self) -> list[dict[str, Any]]:
        f = self.home / "audit" / "audit.jsonl"
        return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


@dataclass
class Fleet:
    db: str
    admin: str
    a: Host
    b: Host
    rev: Host
    pg: Any

    def sql(self, user: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg.dsn(user, self.db), autocommit=True) as c:
            cur = c.execute(query.encode(), params or None)
            return cur.fetchall() if cur.description else []


def _config(home: Path, dsn: str, extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(f'queue:\n  postgres: "{dsn}"\n{extra}')


@pytest.fixture
def fleet(pg_server: Any, tmp_path: Path) -> Fleet:
    db = pg_server.new_database()
    admin = pg_server.dsn(db=db)
    work = tmp_path / "work"
    work.mkdir()
    hosts = {}
    for name, role in (
        ("hosta", "xguard_agent_hosta"),
        ("hostb", "xguard_agent_hostb"),
        ("revhost", REVIEWER_ROLE),
    ):
        home = tmp_path / name
        _config(home, pg_server.dsn(role, db))
        hosts[name] = Host(name, home, role, work)
    p = hosts["revhost"].xg(
        "db",
        "init",
        "--dsn",
        admin,
        "--agent",
        "hosta",
        "--agent",
        "hostb",
        "--reviewer",
        f"{REVIEWER_ROLE}@revhost",
    )
    assert p.returncode == 0, p.stderr
    return Fleet(db, admin, hosts["hosta"], hosts["hostb"], hosts["revhost"], pg_server)


def _wait_pending(host: Host, n: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = host.pending()
        if len(got) >= n:
            return got
        time.sleep(0.1)
    raise AssertionError(f"no pending request seen from {host.name}")


# ---------------------------------------------------------------------------
def test_db_init_prints_what_it_did_and_runs_again(fleet: Fleet) -> None:
    p = fleet.rev.xg("db", "init", "--dsn", fleet.admin, "--agent", "hosta")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for needle in (
        "role xguard_agent ",
        "role xguard_reviewer ",
        "table xguard.requests",
        "table xguard.audit",
        "row-level security on xguard.decisions",
        "policy decisions.agent_only_closes_own: INSERT for xguard_agent",
        "agent role xguard_agent_hosta for host hosta",
        "mapped xguard_agent_hosta -> host hosta",
    ):
        assert needle in out
    roles = fleet.sql(fleet.pg.ADMIN, "SELECT role, host FROM xguard.hosts ORDER BY role")
    assert roles == [
        ("xguard_agent_hosta", "hosta"),
        ("xguard_agent_hostb", "hostb"),
        (REVIEWER_ROLE, "revhost"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("verdict", ["approve", "deny"])
def test_request_from_one_host_is_decided_on_another(fleet: Fleet, verdict: str) -> None:
    made = fleet.a.work / f"made-{verdict}"
    agent = fleet.a.start(f"touch {made.name} && echo ran")
    try:
        (req,) = _wait_pending(fleet.rev)
        assert req["host"] == "hosta" and req["role"] == "xguard_agent_hosta"
        assert req["command"] == f"touch {made.name} && echo ran"
        assert len(req["id"]) == 6
        assert fleet.b.pending() == []  # another agent host sees none of it
        assert [r["id"] for r in fleet.a.pending()] == [req["id"]]  # its own host does
        if verdict == "approve":
            p = fleet.rev.xg("approve", req["id"][:4], "--note", "ok from revhost")
        else:
            p = fleet.rev.xg("deny", req["id"], "--reason", "use staging")
        assert p.returncode == 0, p.stderr
        out, err = agent.communicate(timeout=20)
    finally:
        agent.kill()
    if verdict == "approve":
        assert agent.returncode == 0, err
        assert out == "ran\n" and made.exists()
        events = [r["event"] for r in fleet.a.audit() if r.get("id") == req["id"]]
        assert events == ["pending", "decision", "exit"]
    else:
        assert agent.returncode == 77 and "use staging" in err and not made.exists()
    # The decision is the reviewer's, recorded by its host and role.
    by, role = fleet.sql(fleet.pg.ADMIN, "SELECT by, role FROM xguard.decisions")[0]
    assert by.endswith("@revhost") and role == REVIEWER_ROLE
    rec = [r for r in fleet.rev.audit() if r.get("id") == req["id"]]
    assert [r["event"] for r in rec] == ["approved" if verdict == "approve" else "denied"]
    assert rec[0]["host"] == "hosta" and rec[0]["reviewer"].endswith("@revhost")


@pytest.mark.slow
def test_first_decision_wins_under_concurrency(fleet: Fleet) -> None:
    agent = fleet.a.start("touch raced")
    try:
        (req,) = _wait_pending(fleet.rev)
        deciders = [
            subprocess.Popen(
                [*XG, verb, req["id"]],
                env=fleet.rev.env(),
                cwd=fleet.rev.work,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for verb in ["approve", "deny"] * 4
        ]
        results = [(d.wait(timeout=60), d.communicate()[1]) for d in deciders]
        agent.communicate(timeout=20)
    finally:
        agent.kill()
    winners = [rc for rc, _ in results if rc == 0]
    assert len(winners) == 1, results
    assert all("was already" in err for rc, err in results if rc != 0)
    assert fleet.sql(fleet.pg.ADMIN, "SELECT count(*) FROM xguard.decisions")[0][0] == 1
    won = fleet.sql(fleet.pg.ADMIN, "SELECT state FROM xguard.decisions")[0][0]
    assert agent.returncode == (0 if won == "approved" else 77)


@pytest.mark.slow
def test_ids_unique_across_hosts_and_answers_survive_a_timeout(fleet: Fleet) -> None:
    # Wait 0: exit 75 and the request stays queued (SPEC §4), on both hosts.
    pa = fleet.a.xg("-c", "touch later", XGUARD_WAIT="0")
    pb = fleet.b.xg("-c", "touch later", XGUARD_WAIT="0")
    assert (pa.returncode, pb.returncode) == (75, 75), (pa.stderr, pb.stderr)
    reqs = fleet.rev.pending()
    assert sorted(r["host"] for r in reqs) == ["hosta", "hostb"]
    assert len({r["id"] for r in reqs}) == 2
    ra = next(r for r in reqs if r["host"] == "hosta")
    assert fleet.rev.xg("approve", ra["id"], "--for", "10m").returncode == 0
    # The same command on host A now runs without asking, twice (approved for a while) …
    for _ in range(2):
        p = fleet.a.xg("-c", "touch later", XGUARD_WAIT="0")
        assert p.returncode == 0, p.stderr
    # … while host B's request is still pending: an approval is bound to its host's request.
    p = fleet.b.xg("-c", "touch later", XGUARD_WAIT="0")
    assert p.returncode == 75
    # A once-approval is used up by exactly one re-run.
    rb = next(r for r in fleet.rev.pending() if r["host"] == "hostb")
    assert fleet.rev.xg("approve", rb["id"]).returncode == 0
    assert fleet.b.xg("-c", "touch later", XGUARD_WAIT="0").returncode == 0
    assert fleet.b.xg("-c", "touch later", XGUARD_WAIT="0").returncode == 75


@pytest.mark.slow
def test_agent_host_cannot_approve_itself(fleet: Fleet) -> None:
    agent = fleet.a.start("touch self-approved", wait="30")
    try:
        (req,) = _wait_pending(fleet.a)
        # Outside any gated command (so the no-self-approval walls of issue 3
        # do not stop it): the database does.
        p = fleet.a.xg("approve", req["id"])
        assert p.returncode == 70
        assert "row-level security" in p.stderr and "127.0.0.1" in p.stderr
        assert [r["id"] for r in fleet.rev.pending()] == [req["id"]]
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=20)
    # SIGTERM cancelled it: an agent may close its own request, never approve it.
    assert fleet.sql(fleet.pg.ADMIN, "SELECT state, role FROM xguard.decisions") == [
        ("cancelled", "xguard_agent_hosta")
    ]
    assert not (fleet.a.work / "self-approved").exists()


class _Interrupted(Exception):
    pass


def test_a_signal_that_interrupts_a_query_does_not_lose_the_cancel(fleet: Fleet) -> None:
    """The waiting xguard's SIGTERM handler raises in the middle of whatever it
    is doing, a query to the shared queue included; the query is then left in
    flight on its session, and the cancel that follows must still be written
    (on a fresh session), not fail with "another command is in progress"."""
    from xguard.approval.pgqueue import PgQueue

    agent = fleet.a.start("touch interrupted", wait="30")
    try:
        (req,) = _wait_pending(fleet.a)
        dsn = fleet.pg.dsn("xguard_agent_hosta", fleet.db)
        queue = PgQueue(dsn)

        def on_alarm(_signum: int, _frame: object) -> None:
            raise _Interrupted

        old = signal.signal(signal.SIGALRM, on_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(_Interrupted):
                queue.conn.execute("SELECT pg_sleep(10)")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        won, verdict = queue.decide(req["id"], "cancelled", "xguard (SIGTERM)")
        assert won and verdict["state"] == "cancelled"
        queue.close()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=20)
    assert fleet.sql(fleet.pg.ADMIN, "SELECT state, role FROM xguard.decisions") == [
        ("cancelled", "xguard_agent_hosta")
    ]


# What an agent's role may not do, straight in SQL. Each row: the statement,
# and the error class it must raise (None: it must return no rows).
TAMPER = [
    ("UPDATE xguard.decisions SET state = 'approved'", psycopg.errors.InsufficientPrivilege),
    ("DELETE FROM xguard.decisions", psycopg.errors.InsufficientPrivilege),
    ("DELETE FROM xguard.audit", psycopg.errors.InsufficientPrivilege),
    ("UPDATE xguard.audit SET line = line", psycopg.errors.InsufficientPrivilege),
    ("TRUNCATE xguard.audit", psycopg.errors.InsufficientPrivilege),
    ("DELETE FROM xguard.requests", psycopg.errors.InsufficientPrivilege),
    ("UPDATE xguard.requests SET host = 'hosta'", psycopg.errors.InsufficientPrivilege),
    ("SELECT id FROM xguard.requests WHERE host = 'hostb'", None),
    ("SELECT id FROM xguard.decisions WHERE id = %(b)s", None),
    ("SELECT seq FROM xguard.audit WHERE host = 'hostb'", None),
    ("SELECT role FROM xguard.hosts", psycopg.errors.InsufficientPrivilege),
    (
        "INSERT INTO xguard.decisions (id, state, by) VALUES (%(a)s, 'approved', 'me')",
        psycopg.errors.InsufficientPrivilege,  # row-level security: agents only close
    ),
    (
        "INSERT INTO xguard.decisions (id, state, by) VALUES (%(b)s, 'cancelled', 'me')",
        psycopg.errors.InsufficientPrivilege,  # nor another host's request
    ),
    (
        "INSERT INTO xguard.requests (id, host, key, expires, body) VALUES "
        "('forged1', 'hostb', 'aaaaaaaaaaaaaaaa', 1e12, '{}')",
        psycopg.errors.InsufficientPrivilege,  # bound to its own host
    ),
    (
        "INSERT INTO xguard.requests (id, role, key, expires, body) VALUES "
        "('forged2', 'xguard_agent_hostb', 'aaaaaaaaaaaaaaaa', 1e12, '{}')",
        psycopg.errors.InsufficientPrivilege,  # and to its own role
    ),
    ("INSERT INTO xguard.audit (seq, hash, prev, line) VALUES (1, '', '', 'x')", Exception),
    # Who wrote a row and when is the database's to say, not the client's.
    (
        "INSERT INTO xguard.requests (id, created, key, expires, body) VALUES "
        "('backdated', 1, 'aaaaaaaaaaaaaaaa', 1e12, '{}')",
        psycopg.errors.InsufficientPrivilege,
    ),
    (
        "INSERT INTO xguard.decisions (id, state, by, at) VALUES (%(a)s, 'cancelled', 'xguard', 1)",
        psycopg.errors.InsufficientPrivilege,
    ),
    (
        "INSERT INTO xguard.decisions (id, state, by, role) VALUES "
        "(%(a)s, 'cancelled', 'xguard', 'xguard_agent_hosta')",
        psycopg.errors.InsufficientPrivilege,
    ),
    (
        "INSERT INTO xguard.decisions (id, state, by) VALUES (%(a)s, 'cancelled', 'alice@revhost')",
        psycopg.errors.InsufficientPrivilege,  # an agent's cancel is signed by xguard
    ),
    (
        "INSERT INTO xguard.consumed (id, at) VALUES (%(a)s, 1)",
        psycopg.errors.InsufficientPrivilege,
    ),
    (
        "INSERT INTO xguard.audit (host, seq, hash, prev, line) VALUES ('hostb', 1, '', '', 'x')",
        psycopg.errors.InsufficientPrivilege,
    ),
    (
        "INSERT INTO xguard.requests (id, key, expires, body) VALUES ('huge1', "
        "'aaaaaaaaaaaaaaaa', 1e12, jsonb_build_object('command', repeat('a', 2000000)))",
        psycopg.errors.CheckViolation,  # every reviewer would read it on every look
    ),
]


@pytest.mark.slow
def test_agent_role_cannot_tamper(fleet: Fleet) -> None:
    assert fleet.a.xg("-c", "touch mine", XGUARD_WAIT="0").returncode == 75
    assert fleet.b.xg("-c", "touch theirs", XGUARD_WAIT="0").returncode == 75
    assert fleet.b.xg("db", "sync").returncode == 0  # host B's audit copy exists
    reqs = {r["host"]: r["id"] for r in fleet.rev.pending()}
    assert fleet.rev.xg("deny", reqs["hostb"]).returncode == 0
    ids = {"a": reqs["hosta"], "b": reqs["hostb"]}
    for sql, error in TAMPER:
        with psycopg.connect(fleet.pg.dsn(fleet.a.role, fleet.db), autocommit=True) as c:
            if error is None:
                assert c.execute(sql.encode(), ids).fetchall() == [], sql
            else:
                with pytest.raises(error):
                    c.execute(sql.encode(), ids)
    # Nothing changed: the reviewer still sees both, the decision is still a denial.
    assert fleet.sql(fleet.pg.ADMIN, "SELECT state FROM xguard.decisions") == [("denied",)]
    assert fleet.sql(fleet.pg.ADMIN, "SELECT count(*) FROM xguard.requests") == [(2,)]
    copied = fleet.sql(fleet.pg.ADMIN, "SELECT count(*) FROM xguard.audit WHERE host='hostb'")
    assert copied == [(1,)]  # host B's `pending` record, untouched
    # What it may see: its own request and nothing of host B's.
    assert fleet.sql(fleet.a.role, "SELECT id FROM xguard.requests") == [(ids["a"],)]


@pytest.mark.slow
def test_unreachable_database_fails_closed_and_names_the_server(
    fleet: Fleet, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once closed
    _config(fleet.a.home, f"host=127.0.0.1 port={dead} dbname=x user=xguard_agent_hosta")
    p = fleet.a.xg("-c", "touch never", XGUARD_WAIT="5")
    assert p.returncode == 70, p.stderr
    assert f"127.0.0.1:{dead}" in p.stderr and "unreachable" in p.stderr
    assert not (fleet.a.work / "never").exists()
    # Allowed commands still run: the audit copy is best effort, made in the background.
    assert fleet.a.xg("-c", "true").returncode == 0
    doc = fleet.a.xg("doctor")
    assert doc.returncode != 0 and f"postgres at 127.0.0.1:{dead}/x, UNREACHABLE" in doc.stdout
    _config(fleet.rev.home, f"host=127.0.0.1 port={dead} dbname=x user={REVIEWER_ROLE}")
    p = fleet.rev.xg("pending")
    assert p.returncode == 70 and f"127.0.0.1:{dead}" in p.stderr


@pytest.mark.slow
def test_invalid_rows_are_ignored_and_never_run(fleet: Fleet) -> None:
    from xguard.gate.request import request_key

    # A body without a command, and (written by the agent's own role, as it may)
    # a request that shows `ls` but carries the key of `touch pwned`.
    fleet.sql(
        fleet.pg.ADMIN,
        "INSERT INTO xguard.hosts VALUES ('xgadmin', 'hosta') ON CONFLICT DO NOTHING",
    )
    fleet.sql(
        fleet.pg.ADMIN,
        "INSERT INTO xguard.requests (id, key, expires, body) VALUES "
        "('bad111', 'aaaaaaaaaaaaaaaa', 1e12, '{\"units\": 1}')",
    )
    key = request_key("touch pwned", str(fleet.a.work), None, None, ["shell", "--"])
    body = {
        "command": "ls",
        "cwd": str(fleet.a.work),
        "session": None,
        "profile": None,
        "how": ["shell", "--"],
        "units": [],
    }
    fleet.sql(
        fleet.a.role,
        "INSERT INTO xguard.requests (id, key, expires, body) VALUES ('bad222', %s, 1e12, %s)",
        (key, json.dumps(body)),
    )
    p = fleet.rev.xg("pending", "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == []
    assert "ignoring request 'bad111'" in p.stderr and "ignoring request 'bad222'" in p.stderr
    assert fleet.rev.xg("approve", "bad222").returncode == 1  # not a request anyone may decide
    # Even approved behind xguard's back, the forged row lets nothing run.
    fleet.sql(
        fleet.pg.ADMIN,
        "INSERT INTO xguard.decisions (id, state, by) VALUES ('bad222', 'approved', 'x')",
    )
    p = fleet.a.xg("-c", "touch pwned", XGUARD_WAIT="0")
    assert p.returncode == 75 and not (fleet.a.work / "pwned").exists()
    assert "ignoring request 'bad222'" in p.stderr


@pytest.mark.slow
def test_audit_copy_catches_a_deleted_or_rewritten_log(fleet: Fleet) -> None:
    for cmd in ("true", "echo one", "ls"):
        assert fleet.a.xg("-c", cmd).returncode == 0
    assert fleet.a.xg("db", "sync").returncode == 0
    ok = fleet.a.xg("audit", "verify", "--against-db")
    assert ok.returncode == 0 and "agrees with 6 records of host hosta" in ok.stdout, ok.stdout
    log = fleet.a.home / "audit" / "audit.jsonl"
    original = log.read_bytes()
    # Cut short: the local chain alone still verifies, the copy does not agree.
    log.write_bytes(b"".join(original.splitlines(keepends=True)[:2]))
    assert fleet.a.xg("audit", "verify").returncode == 0
    p = fleet.a.xg("audit", "verify", "--against-db")
    assert p.returncode == 1 and "seq 3" in p.stdout, p.stdout
    # Deleted and started afresh: a valid new chain, which the copy refuses to continue.
    log.unlink()
    assert fleet.a.xg("-c", "true").returncode == 0
    sync = fleet.a.xg("db", "sync")
    assert sync.returncode == 1 and "database copy of host hosta" in sync.stderr
    p = fleet.a.xg("audit", "verify", "--against-db")
    assert p.returncode == 1 and "differs from the database copy of host hosta at seq 1" in p.stdout
    # The copy itself is unchanged: 6 records, a chain the trigger checked link by link.
    rows = fleet.sql(fleet.pg.ADMIN, "SELECT seq FROM xguard.audit WHERE host='hosta' ORDER BY seq")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    # Put back, it agrees again.
    log.write_bytes(original)
    assert fleet.a.xg("audit", "verify", "--against-db").returncode == 0


def _audit_line(seq: int, prev: str) -> str:
    import hashlib

    body = (
        f'{{"v":1,"seq":{seq},"ts":"2026-01-01T00:00:00Z","event":"x",'
        f'"pad":"{"p" * 80}","prev":"{prev}"'
    )
    return body + f',"hash":"{hashlib.sha256(body.encode()).hexdigest()}"}}'


@pytest.mark.slow
def test_agent_role_cannot_probe_another_hosts_audit_chain(fleet: Fleet) -> None:
    """The chain trigger runs (as the owner) before row-level security checks the
    host: naming host B's chain once made its error say where that chain stands."""
    fleet.sql(
        fleet.b.role,
        "INSERT INTO xguard.audit (seq, hash, prev, line) VALUES (0, '', '', %s)",
        (_audit_line(1, "0" * 64),),
    )
    with (
        psycopg.connect(fleet.pg.dsn(fleet.a.role, fleet.db), autocommit=True) as c,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as got,
    ):
        c.execute(
            "INSERT INTO xguard.audit (host, seq, hash, prev, line) "
            "VALUES ('hostb', 0, '', '', %s)",
            (_audit_line(5, "1" * 64),),
        )
    assert "seq 1" not in str(got.value) and "hostb" not in str(got.value)
    # Its own chain it may start and continue, filled in by the database.
    fleet.sql(
        fleet.a.role,
        "INSERT INTO xguard.audit (seq, hash, prev, line) VALUES (0, '', '', %s)",
        (_audit_line(1, "0" * 64),),
    )
    rows = fleet.sql(
        fleet.pg.ADMIN,
        "SELECT host, role, seq FROM xguard.audit WHERE host <> 'revhost' ORDER BY host",
    )
    assert rows == [("hosta", fleet.a.role, 1), ("hostb", fleet.b.role, 1)]


def test_a_flood_of_notifications_wakes_a_listener_only_now_and_then(fleet: Fleet) -> None:
    """Any role may NOTIFY any channel: an agent's loop must not turn every waiter
    and reviewer page into a loop that re-reads the queue without pause."""
    import select
    import threading

    from xguard.approval.pgqueue import PgListener, PgQueue

    queue = PgQueue(fleet.pg.dsn(REVIEWER_ROLE, fleet.db))
    listener = queue.listener()
    assert listener is not None
    stop = threading.Event()

    def flood() -> None:
        with psycopg.connect(fleet.pg.dsn(fleet.a.role, fleet.db), autocommit=True) as c:
            while not stop.is_set():
                c.execute("NOTIFY xguard_queue")

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    wakes, end = 0, time.monotonic() + 1.0
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([listener], [], [], 0.5)
            if ready:
                listener.drain()
                wakes += 1
    finally:
        stop.set()
        t.join(timeout=10)
        listener.close()
        queue.close()
    assert 1 <= wakes <= 1 / PgListener.WAKE_GAP + 2, wakes


def test_db_init_refuses_a_schema_an_agent_made_first(fleet: Fleet) -> None:
    """CREATE SCHEMA IF NOT EXISTS takes whatever schema is there: one an agent's
    role made (given CREATE on the database) would leave every grant its to undo."""
    db = fleet.pg.new_database()
    admin = fleet.pg.dsn(db=db)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"GRANT CREATE ON DATABASE {db} TO xguard_agent_hosta".encode())
    with psycopg.connect(fleet.pg.dsn(fleet.a.role, db), autocommit=True) as c:
        c.execute("CREATE SCHEMA xguard")
    p = fleet.rev.xg("db", "init", "--dsn", admin, "--agent", "hosta")
    assert p.returncode == 1
    assert "schema xguard belongs to xguard_agent_hosta, an agent or reviewer role" in p.stderr
    # Given to the administrator, it is set up as usual.
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"ALTER SCHEMA xguard OWNER TO {fleet.pg.ADMIN}".encode())
    assert fleet.rev.xg("db", "init", "--dsn", admin, "--agent", "hosta").returncode == 0

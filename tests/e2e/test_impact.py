"""The blast radius before anyone approves (issue 13), on real servers.

The seed article's first incident, replayed on a real PostgreSQL: the agent's
cleanup DELETE would remove 11,200 of 12,000 orders, and the reviewer reads
that figure before approving; the routine session_tokens cleanup under an
allow rule with `max_rows: 1000` runs; the orders DELETE under the same rule
trips the cap; rows that appear after the preview cannot push the approved
statement past its cap at run time. MariaDB and SQLite are measured for real
too. A preview never writes, never prompts and never hangs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import dbservers
from xguard.gate import impact as impact_t
from xguard.policy.decide import UnitDecision as UnitDecisionT
from tests.conftest import xguard_exe

XG = xguard_exe()
pytestmark = pytest.mark.slow

OLD = "created_at < now() - interval '7 days'"


@pytest.fixture(scope="module")
def pg() -> Iterator[dbservers.Postgres]:
    with dbservers.postgres() as server:
        yield server


@pytest.fixture
def shop(pg: dbservers.Postgres) -> Iterator[dbservers.Postgres]:
    """The seed data as it was: each test may delete and insert."""
    pg.psql("BEGIN; CREATE TABLE orders_keep AS SELECT * FROM orders;"
            "CREATE TABLE tokens_keep AS SELECT * FROM session_tokens; COMMIT")  # fmt: skip
    try:
        yield pg
    finally:
        pg.psql(
            "BEGIN; DELETE FROM orders; INSERT INTO orders SELECT * FROM orders_keep;"
            "DELETE FROM session_tokens; INSERT INTO session_tokens SELECT * FROM tokens_keep;"
            "DELETE FROM side_effects; DROP TABLE orders_keep, tokens_keep; COMMIT"
        )


def conn(pg: dbservers.Postgres) -> str:
    return f"psql -h {pg.socket_dir} -p {pg.port} -U {pg.superuser} -d shop"


def setup(home: Path, rules: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "rules.yaml").write_text(rules)
    return dict(os.environ, XGUARD_HOME=str(home), XGUARD_WAIT="0")


def xg(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XG, *args], env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def records(home: Path, event: str = "decision") -> list[dict[str, Any]]:
    lines = (home / "audit" / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def pending(env: dict[str, str]) -> list[dict[str, Any]]:
    p = xg(env, "pending", "--json")
    assert p.returncode == 0, p.stderr
    return list(json.loads(p.stdout))


SEED_RULES = """\
default: require_approval
rules:
  - {pattern: "psql", action: allow}
  - {pattern: "DELETE FROM session_tokens", action: allow, limits: {max_rows: 1000}}
  - {pattern: "DELETE FROM orders", action: allow, limits: {max_rows: 1000}}
"""


def test_seed_delete_waits_and_the_reviewer_reads_11200_of_12000(
    shop: dbservers.Postgres, xguard_home: Path
) -> None:
    rules = "default: require_approval\nrules:\n  - {pattern: psql, action: allow}\n"
    env = setup(xguard_home, rules)
    cmd = f'{conn(shop)} -c "DELETE FROM orders WHERE {OLD}"'
    p = xg(env, "-c", cmd)
    assert p.returncode == 75, p.stderr
    [req] = pending(env)
    [item] = req["impact"]
    assert item == {
        **item,
        "unit": 1,
        "statement": f"DELETE FROM orders WHERE {OLD}",
        "table": "orders",
        "rows": 11200,
        "table_rows": 12000,
        "method": "count",
    }
    assert isinstance(item["ms"], int)
    assert any("would delete 11,200 of 12,000 rows (93%) from orders" in r for r in req["reasons"])
    # The decision record of the request carries the same preview.
    [pend] = records(xguard_home, "pending")
    assert pend["impact"][0]["rows"] == 11200
    # Nothing was deleted by looking.
    assert shop.psql("SELECT count(*) FROM orders") == "12000"

    # The reviewer's screen, as `xguard review` draws it.
    from rich.console import Console

    from xguard.approval.review import Reviewer
    from xguard.gate.request import Gate

    with open(os.devnull, "w") as sink:
        console = Console(width=160, height=40, record=True, file=sink)
        r = Reviewer(Gate(), console, bell=False)
        r.reload()
        console.print(r.render())
    screen = console.export_text()
    assert "would delete 11,200 of 12,000 rows (93%) from orders" in screen


def test_routine_cleanup_runs_and_the_same_rule_trips_on_orders(
    shop: dbservers.Postgres, xguard_home: Path
) -> None:
    env = setup(xguard_home, SEED_RULES)
    p = xg(env, "-c", f'{conn(shop)} -c "DELETE FROM session_tokens WHERE expires_at < now()"')
    assert p.returncode == 0, p.stderr
    assert "DELETE 340" in p.stdout
    assert shop.psql("SELECT count(*) FROM session_tokens") == "60"
    [rec] = records(xguard_home)
    assert rec["decision"] == "allow"
    assert rec["impact"][0]["rows"] == 340
    # What ran is the statement inside its run-time cap, and the record says so.
    assert rec["row_cap"] == [
        {"unit": 1, "cap": 1000, "set_by": "limits.max_rows of rule rules.yaml:4"}
    ]
    assert "SELECT :xguard_rows > 1000 AS xguard_over" in rec["exec"]

    p = xg(env, "-c", f'{conn(shop)} -c "DELETE FROM orders WHERE {OLD}"')
    assert p.returncode == 75, p.stderr
    [req] = pending(env)
    assert req["decision"] == "require_approval"
    assert any("11,200" in r and "over the cap of 1,000 rows" in r for r in req["reasons"])
    assert shop.psql("SELECT count(*) FROM orders") == "12000"


def test_max_rows_hard_denies_with_the_figure(shop: dbservers.Postgres, xguard_home: Path) -> None:
    env = setup(
        xguard_home,
        SEED_RULES.replace("max_rows: 1000}}\n", "max_rows: 1000, max_rows_hard: 5000}}\n"),
    )
    p = xg(env, "-c", f'{conn(shop)} -c "DELETE FROM orders WHERE {OLD}"')
    assert p.returncode == 77, p.stderr
    assert "denied" in p.stderr and "11,200" in p.stderr and "5,000" in p.stderr
    assert pending(env) == []
    [rec] = records(xguard_home)
    assert rec["decision"] == "deny" and rec["impact"][0]["rows"] == 11200
    assert shop.psql("SELECT count(*) FROM orders") == "12000"


def test_top_level_and_profile_caps(shop: dbservers.Postgres, xguard_home: Path) -> None:
    rules = (
        "default: require_approval\nrules:\n  - {pattern: psql, action: allow}\n"
        '  - {pattern: "DELETE FROM", action: allow}\n'
        "limits: {max_rows: 100000}\n"
        "profiles:\n  prod: {limits: {max_rows_hard: 10000}}\n"
    )
    env = setup(xguard_home, rules)
    cmd = f'{conn(shop)} -c "DELETE FROM orders WHERE {OLD}"'
    p = xg(env, "check", "-c", cmd)
    assert p.returncode == 0  # check stays pure: no preview, no connection
    p = xg({**env, "XGUARD_PROFILE": "prod"}, "-c", cmd)
    assert p.returncode == 77, p.stderr
    assert "profiles.prod.limits.max_rows_hard" in p.stderr
    assert shop.psql("SELECT count(*) FROM orders") == "12000"


def test_rows_inserted_after_the_preview_cannot_pass_the_cap(
    shop: dbservers.Postgres, xguard_home: Path
) -> None:
    env = setup(xguard_home, HARD_RULES)
    cmd = f'{conn(shop)} -c "DELETE FROM orders WHERE {OLD}"'
    # 500 more old orders arrive while the reviewer reads: 11,700 would go.
    req, agent, err = _approve_after_500_more(env, shop, cmd)
    assert req["impact"][0]["rows"] == 11200
    assert req["row_cap"][0]["cap"] == 11500
    assert agent.returncode != 0
    lines = [ln for ln in err.splitlines() if "row cap" in ln]
    assert len(lines) == 1, err
    assert "11700 rows in orders, over 11,500" in lines[0]
    assert shop.psql("SELECT count(*) FROM orders") == "12500"  # rolled back
    [*_, rec] = records(xguard_home, "exit")
    assert rec["exit_code"] != 0


def _approve_after_500_more(
    env: dict[str, str], shop: dbservers.Postgres, cmd: str
) -> tuple[dict[str, Any], subprocess.Popen[str], str]:
    """Run `cmd` as the agent, add 500 old orders while it waits, approve it."""
    agent = subprocess.Popen(
        [*XG, "-c", cmd], env={**env, "XGUARD_WAIT": "60"}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    reqs: list[dict[str, Any]] = []
    while not reqs and time.monotonic() < deadline:
        time.sleep(0.2)
        reqs = pending(env)
    [req] = reqs
    assert req["impact"][-1]["rows"] == 11200, req
    shop.psql(
        "INSERT INTO orders (user_id, total, created_at) "
        "SELECT 1, g, now() - interval '20 days' FROM generate_series(1, 500) g"
    )
    p = xg(env, "approve", req["id"])
    assert p.returncode == 0, p.stderr
    _, err = agent.communicate(timeout=60)
    return req, agent, err


HARD_RULES = SEED_RULES.replace("max_rows: 1000}}\n", "max_rows: 1000, max_rows_hard: 11500}}\n")


@pytest.mark.parametrize(
    ("psqlrc", "client_opts"),
    [
        ("\\set ON_ERROR_STOP off\n\\set ON_ERROR_ROLLBACK on\n", ""),
        ("\\set ON_ERROR_STOP off\n", "-v ON_ERROR_ROLLBACK=on"),
        ("\\set ON_ERROR_STOP 0\n\\set AUTOCOMMIT off\n", "--set=ON_ERROR_ROLLBACK=on"),
        ("\\set ON_ERROR_STOP off\n\\set SINGLELINE on\n\\set ON_ERROR_ROLLBACK on\n", ""),
    ],
)
def test_the_run_time_cap_holds_whatever_the_start_up_file_sets(
    shop: dbservers.Postgres, xguard_home: Path, psqlrc: str, client_opts: str
) -> None:
    """The cap is an error inside one transaction. The command's own start-up
    file (PSQLRC, ~/.psqlrc) and -v run before the wrapper's script: with
    ON_ERROR_STOP off and ON_ERROR_ROLLBACK on, psql rolled back only the
    error, went on, and COMMIT kept the 11,700 rows the cap refused (while the
    line said "rolled back, nothing changed")."""
    env = setup(xguard_home, HARD_RULES)
    rc = xguard_home / "psqlrc"
    rc.write_text(psqlrc)
    cmd = f'PSQLRC={rc} {conn(shop)} {client_opts} -c "DELETE FROM orders WHERE {OLD}"'
    req, agent, err = _approve_after_500_more(env, shop, cmd)
    assert req["row_cap"][0]["cap"] == 11500
    assert agent.returncode != 0, err
    assert "11700 rows in orders, over 11,500" in err
    assert shop.psql("SELECT count(*) FROM orders") == "12500"


@pytest.mark.parametrize("first", ["COMMIT", "END", "rollback", "commit and chain", "abort"])
def test_a_statement_that_ends_the_transaction_is_not_wrapped(
    shop: dbservers.Postgres, xguard_home: Path, first: str
) -> None:
    """`-c COMMIT -c "DELETE …"` would end the wrapper's transaction before the
    DELETE: its rows would be committed one by one while the cap's line said
    "rolled back, nothing changed". Such a command is not wrapped, and its
    record claims no run-time cap."""
    env = setup(xguard_home, HARD_RULES)
    cmd = f'{conn(shop)} -c "{first}" -c "DELETE FROM orders WHERE {OLD}"'
    req, _agent, err = _approve_after_500_more(env, shop, cmd)
    assert "row_cap" not in req
    decided = [r for r in records(xguard_home) if r.get("id") == req["id"]]
    assert decided and all("row_cap" not in r and "exec" not in r for r in decided)
    assert "row cap" not in err


def test_a_side_effecting_function_is_never_called(
    shop: dbservers.Postgres, xguard_home: Path
) -> None:
    env = setup(
        xguard_home, "default: require_approval\nrules:\n  - {pattern: psql, action: allow}\n"
    )
    p = xg(env, "-c", f'{conn(shop)} -c "DELETE FROM orders WHERE log_it(id)"')
    assert p.returncode == 75
    [req] = pending(env)
    assert "log_it()" in req["impact"][0]["error"]
    assert "rows" not in req["impact"][0]
    assert shop.psql("SELECT count(*) FROM side_effects") == "0"
    # Even a function wrongly listed as pure cannot write: the count runs read-only.
    (xguard_home / "rules.yaml").write_text(
        (xguard_home / "rules.yaml").read_text() + "impact: {pure: [log_it]}\n"
    )
    p = xg(env, "-c", f'{conn(shop)} -c "DELETE FROM events WHERE log_it(id)"')
    assert p.returncode == 75
    err = next(r for r in pending(env) if "events" in r["command"])["impact"][0]["error"]
    assert "read-only transaction" in err
    assert shop.psql("SELECT count(*) FROM side_effects") == "0"


@pytest.fixture
def hidden_code(pg: dbservers.Postgres) -> Iterator[Path]:
    """Code that runs on a SELECT path without its name in the statement. Each
    piece writes a file on the server when called (COPY TO a file is allowed in
    a read-only transaction, as COPY TO PROGRAM is: the role is a superuser)."""
    marker = Path(pg.folder) / "leaked"
    body = f"BEGIN EXECUTE 'COPY (SELECT 1) TO ''{marker}'''; RETURN true; END"
    pg.psql(
        f"CREATE FUNCTION leak() RETURNS boolean LANGUAGE plpgsql AS $${body}$$;"
        "CREATE VIEW leaky AS SELECT id FROM orders WHERE leak();"
        "CREATE SCHEMA ev;"
        f"CREATE FUNCTION ev.lower(t text) RETURNS text LANGUAGE plpgsql AS $${body}$$;"
        "CREATE FUNCTION public.abs(t text) RETURNS boolean LANGUAGE sql AS 'SELECT leak()';"
        "CREATE FUNCTION ev.upper(t text) RETURNS boolean LANGUAGE sql AS 'SELECT leak()';"
        "CREATE TABLE guarded (id int); ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;"
        "CREATE POLICY p ON guarded USING (leak());"
        "CREATE TABLE parent (id int);"
        "CREATE FOREIGN DATA WRAPPER xg_fdw; CREATE SERVER xg_srv FOREIGN DATA WRAPPER xg_fdw;"
        "CREATE FOREIGN TABLE child () INHERITS (parent) SERVER xg_srv;"
        "CREATE FUNCTION ev.eq(a int, b text) RETURNS boolean LANGUAGE sql AS 'SELECT leak()';"
        "CREATE OPERATOR public.= (LEFTARG = int, RIGHTARG = text, FUNCTION = ev.eq);"
        "CREATE DOMAIN ev.dom AS int CHECK (leak())"
    )
    try:
        yield marker
    finally:
        pg.psql(
            "DROP OPERATOR public.= (int, text); DROP SCHEMA ev CASCADE; DROP VIEW leaky;"
            "DROP TABLE guarded, parent CASCADE; DROP SERVER xg_srv;"
            "DROP FOREIGN DATA WRAPPER xg_fdw; DROP FUNCTION public.abs(text), leak()"
        )
        if marker.exists():
            marker.unlink()


@pytest.mark.parametrize(
    ("pgoptions", "statement", "error"),
    [
        ("", "DELETE FROM orders WHERE id IN (SELECT id FROM leaky)", "leaky is not a plain table"),
        ("", "DELETE FROM orders WHERE ev.lower('a') = 'b'", "calls ev.lower()"),
        ("", "DELETE FROM orders WHERE abs('x')", "abs(text) is the database's own function"),
        ("", "DELETE FROM guarded", "guarded has row-level security"),
        ("", "DELETE FROM parent", "parent (through child) is not a plain table"),
        ("", "DELETE FROM orders o USING users u WHERE o.id = u.name", "operator"),
        ("", "DELETE FROM orders WHERE id::ev.dom = 3", "casts to ev.dom"),
        ("-c search_path=ev,pg_catalog", "DELETE FROM orders WHERE upper(total::text) = 'b'",
         "upper(text) is the database's own function"),
        ("-c search_path=ev,pg_catalog", "DELETE FROM orders WHERE total > 3",
         "the search_path puts ev before pg_catalog"),
    ],
)  # fmt: skip
def test_code_the_statement_does_not_show_is_never_run(
    pg: dbservers.Postgres, hidden_code: Path, pgoptions: str, statement: str, error: str
) -> None:
    """A name on the pure list is only a name: a view, a policy, a foreign child
    table, a schema's own function or operator, a domain or the search path can
    put code behind it, and counting would run that code before anyone approved."""
    env = f"PGOPTIONS={_q(pgoptions)} " if pgoptions else ""
    [got] = _preview(f"{env}{conn(pg)} -c {_q(statement)}")
    assert error in got.get("error", ""), got
    assert "rows" not in got
    assert not hidden_code.exists()


@pytest.mark.parametrize(
    ("env", "dbname"),
    [
        ("PGOPTIONS='-c session_preload_libraries=auto_explain' ", "shop"),
        ("PGOPTIONS='--local-preload-libraries=auto_explain' ", "shop"),
        ("", "\"dbname=shop options='-c session_preload_libraries=auto_explain'\""),
        ("", "'postgresql:///shop?options=-c%20session_preload_libraries%3Dauto_explain'"),
        ("PGOPTIONS='-c dynamic_library_path=/tmp' ", "shop"),
    ],
)
def test_startup_options_that_load_a_library_get_no_preview(
    pg: dbservers.Postgres, env: str, dbname: str
) -> None:
    """A superuser's startup options can load any shared library into the
    server's backend when the session starts, before the preview's READ ONLY
    transaction: such a connection gets no preview (here a harmless module
    that the server would load, auto_explain)."""
    cmd = f"{env}psql -h {pg.socket_dir} -p {pg.port} -U {pg.superuser} -d {dbname} -c " + _q(
        "DELETE FROM orders WHERE total > 3"
    )
    [got] = _preview(cmd)
    assert "loads a library when the session starts" in got.get("error", ""), got


def test_the_hidden_code_is_live(pg: dbservers.Postgres, hidden_code: Path) -> None:
    """The traps above do run their code when read directly (the test proves something)."""
    pg.psql("SELECT count(*) FROM leaky")
    assert hidden_code.exists()


@pytest.mark.parametrize(
    "case",
    [
        # the rewriter cannot parse it: no preview, the rule's decision stands
        ("DELETE FROM orders WHERE", False, 75, "cannot parse"),
        # and an allow under a cap that cannot be checked asks a person
        ("DELETE FROM orders WHERE", True, 75, "cannot parse"),
        ("DELETE FROM nosuchtable WHERE id = 1", False, 75, "nosuchtable"),
    ],
)
def test_bad_statements_get_an_error_and_never_an_allow(
    shop: dbservers.Postgres, xguard_home: Path, case: tuple[str, bool, int, str]
) -> None:
    statement, allowed, expect_exit, error_has = case
    rules = "default: require_approval\nrules:\n  - {pattern: psql, action: allow}\n"
    if allowed:
        rules += '  - {pattern: "DELETE FROM", action: allow, limits: {max_rows: 10}}\n'
    env = setup(xguard_home, rules)
    p = xg(env, "-c", f'{conn(shop)} -c "{statement}"')
    assert p.returncode == expect_exit, p.stderr
    [req] = pending(env)
    assert error_has in req["impact"][0]["error"]
    assert req["decision"] == "require_approval"


@pytest.mark.parametrize(
    ("how", "error_has"),
    [
        ("-h 127.0.0.1 -U pwuser", "password"),  # the server asks for one: no prompt, an error
        ("-h 127.0.0.1 -p 1 -U postgres", "127.0.0.1"),  # nothing listens there
    ],
)
def test_a_connection_that_fails_or_asks_for_a_password_does_not_hang(
    pg: dbservers.Postgres, xguard_home: Path, how: str, error_has: str
) -> None:
    env = setup(
        xguard_home, "default: require_approval\nrules:\n  - {pattern: psql, action: allow}\n"
    )
    port = "" if "-p " in how else f"-p {pg.port}"
    t0 = time.monotonic()
    p = xg(env, "-c", f'psql {how} {port} -d shop -c "DELETE FROM orders"', timeout=30)
    assert time.monotonic() - t0 < 15
    assert p.returncode == 75
    [req] = pending(env)
    assert error_has in req["impact"][0]["error"]


def test_the_commands_own_password_file_and_variables(
    pg: dbservers.Postgres, xguard_home: Path, tmp_path: Path
) -> None:
    """~/.pgpass of the environment the command runs with, and PG* written before psql."""
    user_home = tmp_path / "agent-home"
    user_home.mkdir()
    pgpass = user_home / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{pg.port}:shop:pwuser:sekret\n")
    pgpass.chmod(0o600)
    env = setup(
        xguard_home, "default: require_approval\nrules:\n  - {pattern: psql, action: allow}\n"
    )
    env["HOME"] = str(user_home)
    env["PGPORT"] = "1"  # not in env.keep: the command never sees it, nor does the preview
    cmd = 'psql -U pwuser shop -c "DELETE FROM users WHERE banned"'
    p = xg(env, "-c", f"PGHOST=127.0.0.1 PGPORT={pg.port} {cmd}")
    assert p.returncode == 75, p.stderr
    [req] = pending(env)
    assert req["impact"][0]["rows"] == 50, req["impact"]


def test_a_locked_table_times_out_and_never_hangs(pg: dbservers.Postgres) -> None:
    """Another session holds the table: the count and the estimate wait only their lock timeout."""
    holder = subprocess.Popen(
        ["psql", "-X", "-q", "-h", pg.socket_dir, "-p", str(pg.port), "-U", pg.superuser,
         "-d", "shop", "-c", "BEGIN", "-c", "LOCK TABLE events IN ACCESS EXCLUSIVE MODE",
         "-c", "SELECT pg_sleep(20)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            held = pg.psql(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'events' AND l.mode = 'AccessExclusiveLock' AND l.granted"
            )
            if held == "1":
                break
            time.sleep(0.1)
        t0 = time.monotonic()
        from xguard.gate import impact

        [item] = _preview(
            f"{conn(pg)} -c 'DELETE FROM events'", to=impact.Timeouts(statement=2, lock=0.3)
        )
        assert time.monotonic() - t0 < 5
        assert "timed out (statement timeout 2s, lock timeout 0.3s)" in item["error"], item
    finally:
        holder.kill()
        holder.wait()


def test_a_slow_count_falls_back_to_the_planners_estimate(
    pg: dbservers.Postgres, xguard_home: Path
) -> None:
    env = setup(
        xguard_home,
        "default: require_approval\nrules:\n  - {pattern: psql, action: allow}\n"
        "impact: {timeout: 200ms}\n",
    )
    slow = (
        "DELETE FROM orders o WHERE EXISTS (SELECT 1 FROM orders a, orders b "
        "WHERE a.total + b.total = o.total * 3 + 1)"
    )
    p = xg(env, "-c", f'{conn(pg)} -c "{slow}"')
    assert p.returncode == 75
    [req] = pending(env)
    item = req["impact"][0]
    assert item["method"] == "estimate", item
    assert item["rows"] > 0 and item["table_rows"] > 0
    assert any("planner estimate" in r for r in req["reasons"])


# -- statement shapes, measured on the real server -------------------------------------

SHAPES = [
    # (statement, [(table, rows, table_rows)])
    (f"DELETE FROM orders WHERE {OLD}", [("orders", 11200, 12000)]),
    ("UPDATE orders o SET total = 0 FROM users u WHERE o.user_id = u.id AND u.banned",
     [("orders", 1200, 12000)]),
    ("DELETE FROM orders USING users WHERE orders.user_id = users.id AND users.banned",
     [("orders", 1200, 12000)]),
    (f"WITH old AS (SELECT id FROM orders WHERE {OLD}) DELETE FROM orders "
     "WHERE id IN (SELECT id FROM old)", [("orders", 11200, 12000)]),
    ("UPDATE orders SET total = total + 1 WHERE user_id IN "
     "(SELECT id FROM users WHERE lower(name) = 'user7')", [("orders", 25, 12000)]),
    ("INSERT INTO events (kind, at) SELECT 'copy', created_at FROM orders WHERE total < 100",
     [("events", 198, 2000)]),
    ("TRUNCATE events, session_tokens", [("events", 2000, 2000), ("session_tokens", 400, 400)]),
    ("DROP TABLE IF EXISTS events", [("events", 2000, 2000)]),
    ("DELETE FROM public.orders", [("public.orders", 12000, 12000)]),
]  # fmt: skip


@pytest.mark.parametrize(("statement", "expect"), SHAPES)
def test_statement_shapes_on_postgres(
    pg: dbservers.Postgres, statement: str, expect: list[tuple[str, int, int]]
) -> None:
    got = _preview(f"{conn(pg)} -c {_q(statement)}")
    assert [(g["table"], g["rows"], g["table_rows"]) for g in got] == expect, got
    assert all(g["method"] == "count" for g in got)
    assert pg.psql("SELECT count(*) FROM orders") == "12000"
    assert pg.psql("SELECT count(*) FROM events") == "2000"


def parse_sql(command: str) -> list[Any]:
    from xguard.shell.parser import parse

    return [u for u in parse(command) if u.kind == "sql"]


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def _preview(
    command: str, cwd: str = "/", to: impact_t.Timeouts | None = None
) -> list[dict[str, Any]]:
    """The impact objects of every SQL unit of `command` (the library, as the gate calls it)."""
    from xguard.gate import impact
    from xguard.policy.decide import UnitDecision
    from xguard.shell.parser import parse

    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    out: list[dict[str, Any]] = []
    for i, u in enumerate(parse(command)):
        if u.kind == "sql":
            d = UnitDecision("sql", u.text, "require_approval", None, "", u)
            out += impact.preview_unit(
                i, d, env, cwd, to=to or impact.Timeouts(), pure=impact.PURE_FUNCTIONS
            )
    return out


# -- MariaDB ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def maria() -> Iterator[dbservers.MariaDB]:
    with dbservers.mariadb() as server:
        yield server


MY_SHAPES = [
    ("DELETE FROM orders WHERE created_at < NOW() - INTERVAL 7 DAY", [("orders", 11200, 12000)]),
    ("DELETE o FROM orders o JOIN users u ON o.user_id = u.id WHERE u.banned",
     [("orders", 1200, 12000)]),
    ("UPDATE orders o JOIN users u ON o.user_id = u.id SET o.total = 0 WHERE u.banned",
     [("orders", 1200, 12000)]),
    ("DELETE FROM orders WHERE total > 100 ORDER BY id LIMIT 50", [("orders", 50, 12000)]),
    ("DELETE FROM session_tokens WHERE expires_at < NOW()", [("session_tokens", 340, 400)]),
    ("TRUNCATE TABLE session_tokens", [("session_tokens", 400, 400)]),
]  # fmt: skip


@pytest.mark.parametrize(("statement", "expect"), MY_SHAPES)
def test_statement_shapes_on_mariadb(
    maria: dbservers.MariaDB, statement: str, expect: list[tuple[str, int, int]]
) -> None:
    got = _preview(f"mariadb --socket={maria.socket} -u root shop -e {_q(statement)}")
    assert [(g.get("table"), g.get("rows"), g.get("table_rows")) for g in got] == expect, got
    assert maria.sql("SELECT count(*) FROM orders") == "12000"


def test_mariadb_option_files_of_the_commands_environment(
    maria: dbservers.MariaDB, tmp_path: Path
) -> None:
    """~/.my.cnf of the HOME the command runs with, and --defaults-file, choose the server."""
    home = tmp_path / "agent-home"
    home.mkdir()
    (home / ".my.cnf").write_text(f"[client]\nsocket={maria.socket}\nuser=root\n")
    cnf = tmp_path / "other.cnf"
    cnf.write_text(f"[client]\nsocket={maria.socket}\nuser=root\ndatabase=shop\n")
    from xguard.gate import impact

    for cmd in (
        "mysql shop -e 'DELETE FROM session_tokens WHERE expires_at < NOW()'",
        f"mysql --defaults-file={cnf} -e 'DELETE FROM session_tokens WHERE expires_at < NOW()'",
    ):
        [u] = parse_sql(cmd)
        d = UnitDecisionT("sql", u.text, "require_approval", None, "", u)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
        [item] = impact.preview_unit(
            1, d, env, "/", to=impact.Timeouts(), pure=impact.PURE_FUNCTIONS
        )
        assert (item.get("rows"), item.get("table_rows")) == (340, 400), (cmd, item)


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ('init-command="DELETE FROM shop.session_tokens"', "sets init-command"),
        ("init_command=DELETE FROM shop.session_tokens", "sets init-command"),
        ("loose-init-command=DELETE FROM shop.session_tokens", "sets init-command"),
        ("plugin-dir={tmp}", "sets plugin-dir"),
        ("tee={tmp}/tee.out", "sets tee"),
    ],
)
def test_mariadb_option_files_that_act_on_connect_get_no_preview(
    maria: dbservers.MariaDB, tmp_path: Path, setting: str, error: str
) -> None:
    """An option file (~/.my.cnf, --defaults-extra-file, an !include of either)
    can make the client run SQL on connect, before the preview's READ ONLY
    transaction (init-command deleted rows before anyone approved), load a
    library from a folder of its choosing, or append to a file: no preview."""
    home = tmp_path / "agent-home"
    home.mkdir()
    inc = tmp_path / "inc.cnf"
    inc.write_text(f"[client]\n{setting.format(tmp=tmp_path)}\n")
    (home / ".my.cnf").write_text(f"[client]\nsocket={maria.socket}\nuser=root\n")
    extra = tmp_path / "extra.cnf"
    extra.write_text(f"[mysql]\ndatabase=shop\n!include {inc}\n")
    from xguard.gate import impact

    for cmd in (
        f"mysql --defaults-extra-file={extra} -e 'DELETE FROM session_tokens WHERE token = 1'",
        f"mariadb --defaults-extra-file={inc} shop -e 'DELETE FROM session_tokens WHERE 1 = 0'",
    ):
        [u] = parse_sql(cmd)
        d = UnitDecisionT("sql", u.text, "require_approval", None, "", u)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
        [item] = impact.preview_unit(
            1, d, env, "/", to=impact.Timeouts(), pure=impact.PURE_FUNCTIONS
        )
        assert error in item.get("error", ""), (cmd, item)
    assert maria.sql("SELECT count(*) FROM session_tokens") == "400"
    assert not (tmp_path / "tee.out").exists()


def test_a_slow_count_on_mariadb_falls_back_to_the_planners_estimate(
    maria: dbservers.MariaDB,
) -> None:
    slow = (
        "DELETE FROM orders WHERE EXISTS (SELECT 1 FROM orders a, orders b "
        "WHERE a.total + b.total = orders.total * 3 + 1)"
    )
    [item] = _preview(
        f"mariadb --socket={maria.socket} -u root shop -e {_q(slow)}",
        to=impact_t.Timeouts(statement=0.3),
    )
    assert item["method"] == "estimate", item
    assert item["rows"] > 0 and item["table_rows"] > 0


def test_mariadb_seed_request_and_prompting_client(
    maria: dbservers.MariaDB, xguard_home: Path
) -> None:
    env = setup(
        xguard_home, "default: require_approval\nrules:\n  - {pattern: mysql, action: allow}\n"
    )
    old = "created_at < NOW() - INTERVAL 7 DAY"
    p = xg(
        env, "-c", f'mysql --socket={maria.socket} -u root shop -e "DELETE FROM orders WHERE {old}"'
    )
    assert p.returncode == 75
    p = xg(env, "-c", f'mysql --socket={maria.socket} -u root -p shop -e "DELETE FROM users"')
    assert p.returncode == 75
    reqs = {("orders" if "orders" in r["command"] else "users"): r for r in pending(env)}
    assert reqs["orders"]["impact"][0]["rows"] == 11200
    assert reqs["orders"]["impact"][0]["table_rows"] == 12000
    assert "password" in reqs["users"]["impact"][0]["error"]
    assert maria.sql("SELECT count(*) FROM orders") == "12000"


# -- SQLite ----------------------------------------------------------------------------


def test_sqlite_seed_request_never_writes(tmp_path: Path, xguard_home: Path) -> None:
    db = tmp_path / "shop.db"
    dbservers.sqlite_shop(str(db))
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    env = setup(
        xguard_home, "default: require_approval\nrules:\n  - {pattern: sqlite3, action: allow}\n"
    )
    old = "created_at < datetime('now', '-7 days')"
    p = subprocess.run(
        [*XG, "-c", f'sqlite3 shop.db "DELETE FROM orders WHERE {old}"'],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert p.returncode == 75, p.stderr
    p = subprocess.run(
        [*XG, "-c", 'sqlite3 missing.db "DELETE FROM orders"'],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert p.returncode == 75
    reqs = {("missing" if "missing" in r["command"] else "shop"): r for r in pending(env)}
    item = reqs["shop"]["impact"][0]
    assert (item["rows"], item["table_rows"], item["method"]) == (11200, 12000, "count")
    assert "error" in reqs["missing"]["impact"][0]
    assert not (tmp_path / "missing.db").exists()  # a preview never creates a database
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


SQLITE_SHAPES = [
    ("UPDATE orders SET total = 0 WHERE user_id IN (SELECT id FROM users WHERE banned)",
     [("orders", 1200, 12000)]),
    ("UPDATE orders SET total = 0 FROM users WHERE orders.user_id = users.id AND users.banned",
     [("orders", 1200, 12000)]),
    ("DELETE FROM session_tokens WHERE expires_at < datetime('now')",
     [("session_tokens", 340, 400)]),
    ("INSERT INTO users SELECT id + 1000, name, banned FROM users WHERE banned",
     [("users", 50, 500)]),
    ("DROP TABLE session_tokens", [("session_tokens", 400, 400)]),
]  # fmt: skip


@pytest.mark.parametrize(("statement", "expect"), SQLITE_SHAPES)
def test_statement_shapes_on_sqlite(
    tmp_path: Path, statement: str, expect: list[tuple[str, int, int]]
) -> None:
    dbservers.sqlite_shop(str(tmp_path / "shop.db"))
    got = _preview(f"sqlite3 shop.db {_q(statement)}", cwd=str(tmp_path))
    assert [(g.get("table"), g.get("rows"), g.get("table_rows")) for g in got] == expect, got


def test_an_untrusted_client_is_never_run(tmp_path: Path) -> None:
    """A `psql` found outside the system's bin folders could be anything: not run."""
    fake = tmp_path / "bin" / "psql"
    fake.parent.mkdir()
    marker = tmp_path / "ran"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    from xguard.gate import impact
    from xguard.policy.decide import UnitDecision
    from xguard.shell.parser import parse

    [u] = [u for u in parse('psql -c "DELETE FROM t"') if u.kind == "sql"]
    d = UnitDecision("sql", u.text, "require_approval", None, "", u)
    env = {"PATH": f"{fake.parent}:/usr/bin", "HOME": str(tmp_path)}
    [item] = impact.preview_unit(0, d, env, "/", to=impact.Timeouts(), pure=impact.PURE_FUNCTIONS)
    assert "outside the system's bin folders" in item["error"]
    assert not marker.exists()


def test_the_hook_reason_and_the_notification_carry_the_preview(
    shop: dbservers.Postgres, xguard_home: Path, tmp_path: Path
) -> None:
    got = tmp_path / "notified.json"
    rules = (
        "default: require_approval\nrules:\n  - {pattern: psql, action: allow}\n"
        '  - {pattern: "DELETE FROM orders", action: require_approval, notify: [ops]}\n'
        f"notify:\n  ops: {{command: [sh, -c, 'cat > {got}']}}\n"
    )
    env = setup(xguard_home, rules)
    cmd = f'{conn(shop)} -c "DELETE FROM orders WHERE {OLD}"'
    call = {
        "session_id": "s1",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": cmd},
        "cwd": str(tmp_path),
        "tool_use_id": "t1",
    }
    p = subprocess.run(
        [*XG, "hook", "claude-code"], input=json.dumps(call), env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = json.loads(p.stdout)["hookSpecificOutput"]
    assert out["permissionDecision"] == "ask"
    assert "would delete 11,200 of 12,000 rows (93%) from orders" in out["permissionDecisionReason"]
    [rec] = records(xguard_home)
    assert rec["impact"][0]["rows"] == 11200 and "exec" not in rec  # a hook runs nothing

    p = xg(env, "-c", cmd)
    assert p.returncode == 75
    deadline = time.monotonic() + 20
    while not (got.exists() and got.read_text().endswith("}")) and time.monotonic() < deadline:
        time.sleep(0.1)
    body = json.loads(got.read_text())
    assert body["impact"][0]["rows"] == 11200 and body["impact"][0]["table_rows"] == 12000
    assert "would delete 11,200 of 12,000 rows (93%) from orders" in body["text"]


def test_the_run_time_cap_inside_claude_codes_shell_wrapper(
    shop: dbservers.Postgres, xguard_home: Path
) -> None:
    """SHELL=xguard under Claude Code: its `eval '…' && pwd -P >| FILE` wrapper runs the
    capped statement, and the record shows the whole text that ran."""
    import tempfile

    env = setup(xguard_home, SEED_RULES)
    cmd = f'{conn(shop)} -c "DELETE FROM session_tokens WHERE expires_at < now()"'
    cwd_file = Path(tempfile.gettempdir()) / f"claude-{os.getpid():x}a-cwd"
    cwd_file.unlink(missing_ok=True)
    quoted = "'" + cmd.replace("'", "'\\''") + "'"
    try:
        p = xg(env, "-c", f"eval {quoted} \\< /dev/null && pwd -P >| {cwd_file}")
        assert p.returncode == 0, p.stderr
        assert "DELETE 340" in p.stdout
        assert cwd_file.exists()  # the wrapper's own trailer still ran
    finally:
        cwd_file.unlink(missing_ok=True)
    [rec] = records(xguard_home)
    assert rec["command"] == cmd and rec["source"] == "shell:claude-code"
    assert rec["row_cap"][0]["cap"] == 1000 and "ON_ERROR_STOP=1" in rec["exec"]
    # The cwd report goes to the fd xguard opened on the file (never by name).
    assert rec["exec"].startswith("eval '") and rec["exec"].endswith(" 9>&- && pwd -P >&9")

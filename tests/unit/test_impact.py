"""The impact preview's pure parts (issue 13): the rewrite of each statement
shape into a count, the pure-function check, the words a reviewer reads, the
rules schema for row caps and live baselines, which units get a preview, and
the psql command a run-time cap wraps. The servers are in tests/e2e/test_impact.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xguard.errors import ConfigError
from xguard.gate import impact, limits
from xguard.gate.request import Gate
from xguard.policy.rules import build_ruleset_dict
from xguard.shell.parser import parse

# (client, statement, verb, table, count query, limit)
REWRITES = [
    ("psql", "DELETE FROM orders WHERE created_at < now() - interval '7 days'", "delete", "orders",
     "SELECT COUNT(*) FROM orders WHERE created_at < CURRENT_TIMESTAMP - INTERVAL '7 DAYS'", None),
    ("psql", "UPDATE orders o SET total = 0 FROM users u WHERE o.user_id = u.id AND u.banned",
     "update", "orders",
     "SELECT COUNT(*) FROM orders AS o WHERE EXISTS(SELECT 1 FROM users AS u "
     "WHERE o.user_id = u.id AND u.banned)", None),
    ("psql", "DELETE FROM orders USING users WHERE orders.user_id = users.id", "delete", "orders",
     "SELECT COUNT(*) FROM orders WHERE EXISTS(SELECT 1 FROM users "
     "WHERE orders.user_id = users.id)", None),
    ("psql", "WITH old AS (SELECT id FROM orders) DELETE FROM orders "
     "WHERE id IN (SELECT id FROM old)", "delete", "orders",
     "WITH old AS (SELECT id FROM orders) SELECT COUNT(*) FROM orders "
     "WHERE id IN (SELECT id FROM old)", None),
    ("psql", "INSERT INTO archive (a, b) SELECT a, b FROM orders WHERE x > 1", "insert", "archive",
     "SELECT COUNT(*) FROM (SELECT a, b FROM orders WHERE x > 1) AS xguard_src", None),
    ("psql", "DELETE FROM shop.orders", "delete", "shop.orders",
     "SELECT COUNT(*) FROM shop.orders", None),
    ("mysql", "DELETE o FROM orders o JOIN users u ON o.user_id = u.id WHERE u.banned", "delete",
     "orders", "SELECT COUNT(*) FROM orders AS o WHERE EXISTS(SELECT 1 FROM users AS u "
     "WHERE o.user_id = u.id AND u.banned)", None),
    ("mysql", "UPDATE orders o LEFT JOIN users u ON o.user_id = u.id SET o.x = 1 "
     "WHERE u.id IS NULL", "update", "orders",
     "SELECT COUNT(*) FROM orders AS o LEFT JOIN users AS u ON o.user_id = u.id "
     "WHERE u.id IS NULL", None),
    ("mysql", "DELETE FROM orders WHERE id > 5 ORDER BY id LIMIT 10", "delete", "orders",
     "SELECT COUNT(*) FROM orders WHERE id > 5", 10),
    ("sqlite", "UPDATE orders SET x = 1 WHERE id IN (1, 2)", "update", "orders",
     "SELECT COUNT(*) FROM orders WHERE id IN (1, 2)", None),
]  # fmt: skip


@pytest.mark.parametrize("case", REWRITES)
def test_rewrites(case: tuple[str, str, str, str, str, int | None]) -> None:
    client, sql, verb, table, count, limit = case
    [t] = impact.plan(sql, client)
    assert (t.verb, t.table, t.rows_sql, t.limit) == (verb, table, count, limit)
    assert t.probe_sql.startswith(count.split("SELECT COUNT(*)", maxsplit=1)[0] + "SELECT 1")


def test_truncate_and_drop_count_every_table() -> None:
    ts = impact.plan("TRUNCATE orders, users", "psql")
    assert [(t.verb, t.table, t.rows_sql) for t in ts] == [
        ("truncate", "orders", None),
        ("truncate", "users", None),
    ]
    [t] = impact.plan("TRUNCATE orders CASCADE", "psql")
    assert t.note is not None and "CASCADE" in t.note
    [t] = impact.plan("DROP TABLE IF EXISTS orders", "mysql")
    assert (t.verb, t.table, t.table_sql) == ("drop", "orders", "orders")


@pytest.mark.parametrize(
    ("client", "sql", "error"),
    [
        ("psql", "DELETE FROM orders WHERE log_it(id)", "calls log_it()"),
        ("psql", "DELETE FROM orders WHERE id = nextval('s')", "calls nextval()"),
        ("psql", "DELETE FROM t WHERE id IN (SELECT pg_sleep(10))", "calls pg_sleep()"),
        ("psql", "UPDATE t SET a = 1 WHERE b = (SELECT dblink_exec('x'))", "calls dblink_exec()"),
        ("mysql", "DELETE FROM t WHERE sleep(5)", "calls sleep()"),
        ("sqlite", "DELETE FROM t WHERE writefile('/tmp/x', 'y')", "calls writefile()"),
        ("psql", "DELETE FROM orders WHERE", "cannot parse"),
        ("psql", "INSERT INTO t VALUES (1)", "INSERT … VALUES"),
        ("psql", "DROP VIEW v", "only DROP TABLE"),
        ("psql", "WITH d AS (DELETE FROM a RETURNING id) DELETE FROM b WHERE id IN "
                 "(SELECT id FROM d)", "changes data"),
        ("mysql", "DELETE a, b FROM a JOIN b ON a.id = b.id", "several tables"),
        # a pure name qualified with a schema is that schema's function
        ("psql", "DELETE FROM t WHERE ev.lower(a) = 'x'", "calls ev.lower()"),
        ("mysql", "DELETE FROM t WHERE shop.lower(a) = 'x'", "calls shop.lower()"),
        # a domain's CHECK runs on a cast to it
        ("psql", "DELETE FROM t WHERE a::ev.dom = 3", "casts to ev.dom"),
    ],
)  # fmt: skip
def test_no_preview(client: str, sql: str, error: str) -> None:
    with pytest.raises(impact.PreviewError) as e:
        impact.plan(sql, client)
    assert error in str(e.value)


def test_pure_list_can_be_extended() -> None:
    [t] = impact.plan("DELETE FROM t WHERE f(a)", "psql", impact.PURE_FUNCTIONS | {"f"})
    assert t.rows_sql == "SELECT COUNT(*) FROM t WHERE F(a)"


@pytest.mark.parametrize(
    ("item", "line"),
    [
        ({"verb": "delete", "table": "orders", "rows": 11200, "table_rows": 12000,
          "method": "count"}, "would delete 11,200 of 12,000 rows (93%) from orders"),
        ({"verb": "update", "table": "o", "rows": 5, "table_rows": 1000, "method": "estimate"},
         "would update about 5 of about 1,000 rows (0%) in o (planner estimate)"),
        ({"verb": "truncate", "table": "t", "rows": 7, "table_rows": 7, "method": "count"},
         "would empty t: 7 rows"),
        ({"verb": "drop", "table": "t", "rows": 7, "table_rows": 7, "method": "count"},
         "would drop t: 7 rows"),
        ({"verb": "insert", "table": "a", "rows": 3, "table_rows": 10, "method": "count"},
         "would insert 3 rows into a (it holds 10)"),
        ({"error": "no password supplied"}, "impact unknown: no password supplied"),
        ({"replicas": 4, "to": 16, "summary": "4 → 16 replicas (×4)"}, "4 → 16 replicas (×4)"),
    ],
)  # fmt: skip
def test_describe(item: dict[str, Any], line: str) -> None:
    assert impact.describe(item) == line


@pytest.mark.parametrize(
    ("text", "client", "env", "via"),
    [
        ('PGHOST=/s psql -d shop -c "DELETE FROM t"',
         ("psql", "-d", "shop", "-c", "DELETE FROM t"), ("PGHOST=/s",), ()),
        ('sudo -u postgres psql -c "DELETE FROM t"',
         ("psql", "-c", "DELETE FROM t"), (), ("sudo",)),
        ('PGHOST=$H psql -c "DELETE FROM t"', ("psql", "-c", "DELETE FROM t"), ("",), ()),
        ("sqlite3 db 'DELETE FROM t'", ("sqlite3", "db", "DELETE FROM t"), (), ()),
    ],
)  # fmt: skip
def test_sql_units_carry_their_client(
    text: str, client: tuple[str, ...], env: tuple[str, ...], via: tuple[str, ...]
) -> None:
    [u] = [u for u in parse(text) if u.kind == "sql"]
    assert (u.client, u.client_env, u.client_via) == (client, env, via)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('sudo -u postgres psql -c "DELETE FROM t"', "runs inside sudo"),
        ('env PGHOST=x psql -c "DELETE FROM t"', "runs inside env"),
        ('PGHOST=$H psql -c "DELETE FROM t"', "known only at run time"),
        ('mysql -p shop -e "DELETE FROM t"', "asks for a password"),
        ('mysql --init-command="SET x=1" -e "DELETE FROM t"', "--init-command"),
        ("sqlite3 :memory: 'DELETE FROM t'", "no database file"),
        ("cd sub && sqlite3 db 'DELETE FROM t'", "earlier cd"),
    ],
)
def test_connections_that_cannot_be_the_commands_own(text: str, error: str) -> None:
    *_, u = [u for u in parse(text) if u.kind == "sql"]
    with pytest.raises(impact.PreviewError) as e:
        impact.connection(u, {"PATH": "/usr/bin:/bin"}, "/", 3.0)
    assert error in str(e.value)


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("psql -h /s -p 5 -U me shop -c 'DELETE FROM t' -o out -v X=1",
         ["-h", "/s", "-p", "5", "-U", "me", "shop"]),
        ("psql --host=db --dbname=postgresql://u@h/x -X -c 'DELETE FROM t'",
         ["-h", "db", "-d", "postgresql://u@h/x"]),
        ("psql service=prod -c 'DELETE FROM t'", ["service=prod"]),
    ],
)  # fmt: skip
def test_psql_connection_options(text: str, argv: list[str]) -> None:
    [u] = [u for u in parse(text) if u.kind == "sql"]
    c = impact.connection(u, {"PATH": "/usr/bin:/bin"}, "/", 3.0)
    assert c.argv[1:] == argv
    assert c.env["PGCONNECT_TIMEOUT"] == "3"


def test_mysql_connection_options() -> None:
    [u] = [
        u
        for u in parse(
            "mysql --defaults-file=/c.cnf -h db -P 3307 -uroot -psecret shop -e 'DELETE FROM t'"
        )
        if u.kind == "sql"
    ]
    c = impact.connection(u, {"PATH": "/usr/bin:/bin"}, "/", 3.0)
    assert c.argv[1:] == [
        "--defaults-file=/c.cnf", "--host=db", "--port=3307", "--user=root",
        "--password=secret", "--database=shop", "--connect-timeout=3",
    ]  # fmt: skip


# -- rules -----------------------------------------------------------------------------


def test_schema_accepts_caps_and_live_baselines(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        "limits: {max_rows: 1000, max_rows_hard: 100000}\n"
        "impact: {timeout: 2s, lock_timeout: 500ms, connect_timeout: 3s, pure: [my_fn]}\n"
        "profiles:\n  prod: {limits: {max_rows: 10}}\n"
        "rules:\n"
        "  - {pattern: 'DELETE FROM', action: allow, limits: {max_rows: 50}}\n"
        "  - {pattern: 'kubectl scale', action: allow, baseline: live, growth: 2}\n"
        "  - {pattern: 'kubectl autoscale', action: allow, baseline: {'--max': live, '--min': 2}}\n"
    )
    d = build_ruleset_dict(str(f), None)
    r1, r2, r3 = d["rules"]
    assert (r1["max_rows"], r1["max_rows_hard"]) == (50, None)
    assert r2["live"] == {"--replicas": 2} and r2["caps"] is None
    assert r3["live"] == {"--max": 2} and r3["caps"] == {"--min": [4.0, "4 (2 x 2)"]}


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("limits: {max_rows: -1}\n", "non-negative"),
        ("limits: {max_rows: lots}\n", "non-negative"),
        ("rules:\n  - {pattern: x, action: allow, limits: {max_rows: 1.5}}\n", "whole"),
        ("rules:\n  - {pattern: x, action: allow, limits: {max_runtime: 5}}\n", "unknown key"),
        ("rules:\n  - {pattern: x, action: allow, baseline: now}\n", "live"),
        ("rules:\n  - {pattern: x, action: allow, baseline: {'--r': soon}}\n", "non-negative"),
        ("impact: {timeout: forever}\n", "duration"),
    ],
)
def test_schema_rejects(tmp_path: Path, text: str, what: str) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        build_ruleset_dict(str(f), None)
    assert what in e.value.message


# -- which units get a preview ---------------------------------------------------------

RULES = """\
default: require_approval
rules:
  - {pattern: psql, action: allow}
  - {pattern: "DELETE FROM tokens", action: allow}
  - {pattern: "DELETE FROM sessions", action: allow, limits: {max_rows: 10}}
  - {pattern: "SELECT", action: allow}
  - {pattern: "DROP", action: deny}
  - {pattern: "kubectl scale", action: allow, baseline: live}
  - {pattern: "kubectl get", action: allow}
"""


@pytest.fixture
def gate(xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gate:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(RULES)
    monkeypatch.chdir(tmp_path)
    return Gate()


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("psql -c 'DELETE FROM tokens WHERE x'", []),  # allowed outright, no cap
        ("psql -c 'DELETE FROM sessions WHERE x'", [1]),  # a cap applies
        ("psql -c 'DELETE FROM orders'", [1]),  # needs approval
        ("psql -c 'SELECT 1; UPDATE t SET a = 1'", [2]),
        ("psql -c 'SELECT 1'", []),
        ("psql -c 'DROP TABLE t'", []),  # denied anyway
        ("psql -c '\\dt'", []),
        ("kubectl scale deploy/web --replicas=3", [0]),
        ("kubectl get pods", []),
    ],
)
def test_preview_units(gate: Gate, text: str, units: list[int]) -> None:
    assert limits.preview_units(gate, gate.decide_text(text)) == units


def test_top_level_cap_previews_allowed_dml(
    xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(RULES + "limits: {max_rows_hard: 5}\n")
    monkeypatch.chdir(tmp_path)
    g = Gate()
    d = g.decide_text("psql -c 'DELETE FROM tokens WHERE x'")
    assert limits.preview_units(g, d) == [1]
    soft, hard = limits.row_caps(g, d.units[1])
    assert soft is None and hard is not None and hard[0] == 5


@pytest.mark.parametrize(
    ("rows", "decision", "reason"),
    [
        (5, "allow", None),
        (11, "require_approval", "over the cap of 10 rows (limits.max_rows of rule rules.yaml:5)"),
        (None, "require_approval", "the row cap (limits.max_rows of rule rules.yaml:5 is 10) "
                                   "cannot be checked: no password supplied"),
    ],
)  # fmt: skip
def test_caps_escalate_never_loosen(
    gate: Gate, rows: int | None, decision: str, reason: str | None
) -> None:
    d = gate.decide_text("psql -c 'DELETE FROM sessions WHERE x'")
    item: dict[str, Any] = {"unit": 1, "statement": d.units[1].text}
    if rows is None:
        item["error"] = "no password supplied"
    else:
        item.update(verb="delete", table="sessions", rows=rows, table_rows=100, method="count")
    limits.apply_impact(gate, d, [item], impact.describe)
    assert d.decision == decision
    assert (reason is None) == (not d.reasons)
    if reason:
        assert reason in d.reasons[0]


def test_an_allowed_statement_without_caps_imports_no_preview(gate: Gate) -> None:
    """The hot path: deciding that no preview is needed imports neither sqlglot nor the preview."""
    code = (
        "import sys, os\n"
        "from xguard.gate.request import Gate\n"
        "from xguard.gate import limits\n"
        "g = Gate()\n"
        "d = g.decide_text(\"psql -c 'DELETE FROM tokens WHERE x'\")\n"
        "assert limits.preview_units(g, d) == []\n"
        "print(sorted(m for m in sys.modules if 'sqlglot' in m or m == 'xguard.gate.impact'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# -- the run-time cap ------------------------------------------------------------------

from xguard.gate import rowcap  # noqa: E402


@pytest.mark.parametrize(
    ("words", "kept", "sql"),
    [
        (["-h", "/s", "-c", "DELETE FROM t", "shop"], ["-h", "/s", "shop"], ["DELETE FROM t"]),
        (["-1", "-qc", "DELETE FROM t", "--command=UPDATE t SET a=1"], ["-q"],
         ["DELETE FROM t", "UPDATE t SET a=1"]),
        (["-f", "x.sql"], None, None),  # a script file: not wrapped
        (["shop"], None, None),  # stdin: not wrapped
        (["-c", "\\copy t to x"], None, None),
    ],
)  # fmt: skip
def test_split_psql_command(words: list[str], kept: Any, sql: Any) -> None:
    got = rowcap._split_command(words)
    assert got == (None if kept is None else (kept, sql))


PG_WRAPPER = Path("/usr/share/postgresql-common/pg_wrapper")


@pytest.mark.skipif(
    not PG_WRAPPER.exists() or Path("/usr/bin/psql").resolve() != PG_WRAPPER,
    reason="Debian's pg_wrapper is not the psql here",
)
@pytest.mark.parametrize(
    ("opts", "env", "direct"),
    [
        (["-h", "/s", "shop"], {}, True),  # pg_wrapper picks no cluster: the newest psql, same env
        (["-p", "5433"], {}, True),
        (["service=prod"], {}, True),
        ([], {"PGHOST": "db"}, True),
        (["shop"], {}, False),  # pg_wrapper would choose a local cluster: run it
        (["-h", "/s"], {"PGCLUSTER": "15/main"}, False),
    ],
)
def test_past_debians_pg_wrapper_only_where_it_changes_nothing(
    opts: list[str], env: dict[str, str], direct: bool
) -> None:
    e = dict(env)
    got = impact._past_pg_wrapper("/usr/bin/psql", opts, e)
    assert got.startswith("/usr/lib/postgresql/") is direct
    assert (e.get("PGSYSCONFDIR") == "/etc/postgresql-common") is direct


def test_what_the_database_resolves_by_name_is_kept_for_its_check() -> None:
    """The relations the statement names (CTEs are not relations) and the
    built-in function names it calls, which PostgreSQL's preview checks in the
    catalog before counting; pg_catalog-qualified names are the built-ins."""
    [t] = impact.plan(
        "WITH old AS (SELECT id FROM s.orders WHERE pg_catalog.lower(n) = 'x') "
        "DELETE FROM orders WHERE id IN (SELECT id FROM old) AND f(a)",
        "psql",
        impact.PURE_FUNCTIONS | {"f"},
    )
    assert t.relations == ("orders", "s.orders")
    assert t.functions == ("count", "lower")


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("COMMIT", "commit"),
        ("  -- note\n  end", "end"),
        ("/* a */ Rollback", "rollback"),
        # PostgreSQL's block comments nest: the first */ does not end this one
        ("/* /* */ */ COMMIT", "commit"),
        ("/* /* */ DELETE */ abort", "abort"),
        ("DELETE FROM t", "delete"),
        ("(SELECT 1)", "("),
    ],
)
def test_the_first_word_of_a_statement_the_run_time_cap_wraps(sql: str, word: str) -> None:
    from xguard.gate.rowcap import _leading_word

    assert _leading_word(sql) == word

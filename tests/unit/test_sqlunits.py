"""xguard.shell.sql: the SQL statements a database client runs, as policy units.

Rows are (argv words, unit texts, meta flags, issue fragments, write paths, read paths).
Many rows were checked against the real clients (psql 15, MariaDB 10.11, sqlite3 3.40):
the comment on a row says what the client did.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xguard.shell.sql import (
    DB_CLIENTS,
    ClientSql,
    SqlUnit,
    client_sql,
    split_sql,
    split_stdin_sql,
)

S, M = False, True  # meta flags: SQL statement, client meta-command


def R(
    words: list[str],
    *texts: str,
    meta: str = "",
    issues: list[str] | None = None,
    writes: list[str] | None = None,
    reads: list[str] | None = None,
) -> Any:  # a pytest.param
    """A row: argv words, the unit texts, then meta flags as a string of S (SQL) and
    M (meta-command) when not all S, issue fragments, write paths and read paths."""
    metas = [c == "M" for c in meta] if meta else [S] * len(texts)
    assert len(metas) == len(texts)
    row = (words, list(texts), metas, issues or [], writes or [], reads or [])
    return pytest.param(*row, id=" ".join(words)[:60])


def RS(
    words: list[str], stdin: str, *texts: str, meta: str = "", issues: list[str] | None = None
) -> Any:  # a pytest.param
    """A row for SQL read from stdin: argv words, the stdin text, then as R."""
    metas = [c == "M" for c in meta] if meta else [S] * len(texts)
    assert len(metas) == len(texts)
    return pytest.param(words, stdin, list(texts), metas, issues or [], id=stdin[:40])


ROWS = [
    # --- psql: -c forms ------------------------------------------------------------
    R(["psql", "-c", "SELECT 1; DROP TABLE users"], "SELECT 1", "DROP TABLE users"),
    R(["psql", "-c", "/* SELECT */ DROP TABLE users"], "DROP TABLE users"),
    R(["psql", "-c", "select 1;truncate orders"], "select 1", "truncate orders"),
    R(["psql", "-c", "SELECT ';' FROM t; DELETE FROM t"], "SELECT ';' FROM t", "DELETE FROM t"),
    R(["psql", "-c", 'SELECT "a;b" FROM t; DROP TABLE t'], 'SELECT "a;b" FROM t', "DROP TABLE t"),
    R(
        [
            "psql",
            "-c",
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$; DROP TABLE x",
        ],
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$",
        "DROP TABLE x",
    ),
    R(
        ["psql", "-c", "DO $body$ BEGIN PERFORM 1; END $body$; DROP TABLE x"],
        "DO $body$ BEGIN PERFORM 1; END $body$",
        "DROP TABLE x",
    ),
    # a$b$ is one name (identifiers may hold $), not the start of a dollar quote
    R(["psql", "-c", "SELECT a$b$ ; DROP TABLE x"], "SELECT a$b$", "DROP TABLE x"),
    R(["psql", "-c", "SELECT E'it\\'s;'; DROP TABLE x"], "SELECT E'it\\'s;'", "DROP TABLE x"),
    R(["psql", "-c", "-- comment ; DROP\nSELECT 1"], "SELECT 1"),
    # PostgreSQL nests block comments: the DROP is the only statement (verified)
    R(
        ["psql", "-c", "/* /* */ SELECT 1; */ DROP TABLE users"],
        "DROP TABLE users",
        issues=["sqlparse"],
    ),
    # '#' is XOR in PostgreSQL, not a comment: psql printed 2 and 16 (verified)
    R(["psql", "-c", "SELECT 1 # 3; DROP TABLE x"], "SELECT 1 # 3", "DROP TABLE x"),
    # standard strings have no backslash escape: PostgreSQL ran both (verified); with
    # standard_conforming_strings off it is one statement, so both readings are kept
    R(
        ["psql", "-c", "SELECT 'a\\'; DROP TABLE x; --'"],
        "SELECT 'a\\'",
        "DROP TABLE x",
        "SELECT 'a\\'; DROP TABLE x; --'",
        issues=["standard_conforming_strings"],
    ),
    R(["psql", "-c", "SELECT\n\t1\n\n  FROM\t t;;"], "SELECT 1 FROM t"),
    R(["psql", "-c", ";;SELECT 1;;;"], "SELECT 1"),
    R(
        ["psql", "-c", "WITH d AS (DELETE FROM users RETURNING *) SELECT count(*) FROM d"],
        "WITH d AS (DELETE FROM users RETURNING *) SELECT count(*) FROM d",
    ),
    R(["psql", "-c", "\\! rm -rf ~"], "\\! rm -rf ~", meta="M", issues=["shell command"]),
    # a -c string that starts with a backslash is ONE meta-command, over newlines (verified)
    R(
        ["psql", "-c", "\\! echo A\necho B"],
        "\\! echo A echo B",
        meta="M",
        issues=["shell command"],
    ),
    R(
        ["psql", "-c", "SELECT 1 \\g /tmp/out"],
        "SELECT 1",
        "\\g /tmp/out",
        meta="SM",
        writes=["/tmp/out"],
    ),
    R(["psql", "-c", "SELECT 1 \\g |sh"], "SELECT 1", "\\g |sh", meta="SM", issues=["program"]),
    R(
        ["psql", "-c", "\\copy t TO '/srv/t.csv' csv"],
        "\\copy t TO '/srv/t.csv' csv",
        meta="M",
        writes=["/srv/t.csv"],
    ),
    R(
        ["psql", "-c", "\\copy t FROM PROGRAM 'curl x'"],
        "\\copy t FROM PROGRAM 'curl x'",
        meta="M",
        issues=["program"],
    ),
    R(
        ["psql", "-c", "\\i /srv/x.sql"],
        "\\i /srv/x.sql",
        meta="M",
        issues=["runs SQL from a file"],
        reads=["/srv/x.sql"],
    ),
    R(["psql", "-c", "\\dt+"], "\\dt+", meta="M"),
    R(["psql", "-c", "\\echo `id`"], "\\echo `id`", meta="M", issues=["backquoted"]),
    R(["psql", "-At", "-c", "SELECT 1"], "SELECT 1"),
    R(["psql", "-Atc", "SELECT 1"], "SELECT 1"),
    R(["psql", "-qAtc", "SELECT 1"], "SELECT 1"),
    R(["psql", "-Atc", "-h", "SELECT 1"], "-h"),
    R(["psql", "-cSELECT 1"], "SELECT 1"),
    R(["psql", "--command=SELECT 1"], "SELECT 1"),
    R(["psql", "--command", "SELECT 1"], "SELECT 1"),
    R(["psql", "--comm=DROP TABLE t"], "DROP TABLE t"),
    R(["psql", "-c", "SELECT 1", "-c", "DROP TABLE users"], "SELECT 1", "DROP TABLE users"),
    R(
        [
            "psql",
            "-h",
            "localhost",
            "-U",
            "app",
            "-d",
            "app_dev",
            "-v",
            "x=1",
            "-P",
            "pager=off",
            "-c",
            "SELECT version()",
        ],
        "SELECT version()",
    ),
    R(["psql", "mydb", "myuser", "-c", "SELECT 1"], "SELECT 1"),
    R(
        ["psql", "-f", "x.sql", "-c", "SELECT 1"],
        "SELECT 1",
        issues=["psql -f runs a script file"],
        reads=["x.sql"],
    ),
    R(
        ["psql", "--file=drop_all.sql"],
        issues=["psql -f runs a script file"],
        reads=["drop_all.sql"],
    ),
    R(
        ["psql", "-o", "~/.bashrc", "-c", "SELECT * FROM users"],
        "SELECT * FROM users",
        writes=["~/.bashrc"],
    ),
    R(
        ["psql", "-c", "SELECT 1", "--output=/srv/o", "-L", "/srv/log"],
        "SELECT 1",
        writes=["/srv/o", "/srv/log"],
    ),
    R(["psql", "-o", "|sh", "-c", "SELECT 1"], "SELECT 1", issues=["program"]),
    R(["psql", "-d", "app"], issues=["psql reads SQL from stdin or a terminal"]),
    R(["psql", "-Z", "-c", "SELECT 1"], "SELECT 1", issues=["-Z is unknown"]),
    R(["psql", "--s=x", "-c", "SELECT 1"], "SELECT 1", issues=["ambiguous"]),
    R(["psql", "-c"], issues=["lacks its argument"]),
    # --- mysql / mariadb -------------------------------------------------------------
    R(["mysql", "-e", "SELECT 1; DROP TABLE t"], "SELECT 1", "DROP TABLE t"),
    R(["mysql", "-eSELECT 1"], "SELECT 1"),
    R(["mysql", "--execute=SELECT 1"], "SELECT 1"),
    R(["mysql", "--execute", "SELECT 1"], "SELECT 1"),
    R(["mysql", "--exec=SELECT 18"], "SELECT 18"),
    R(["mariadb", "-Nse", "SELECT 1"], "SELECT 1"),
    # every -e joins one buffer with a blank between: mariadb printed 2 for SELECT / 1+1
    R(["mysql", "-e", "DROP", "-e", "TABLE t"], "DROP TABLE t"),
    R(
        ["mysql", "-uroot", "-psecret", "-h", "db", "-P", "3306", "app", "-e", "SELECT 1"],
        "SELECT 1",
    ),
    R(["mysql", "-p", "app"], issues=["mysql reads SQL from stdin or a terminal"]),
    R(["mysql", "--tee=/srv/t", "-e", "SELECT 1"], "SELECT 1", writes=["/srv/t"]),
    R(["mysql", "--init-command=DROP TABLE t", "-e", "SELECT 1"], "DROP TABLE t", "SELECT 1"),
    # a statement whose first word is a client command runs it: mariadb ran the shell (verified)
    R(
        ["mysql", "-e", "SELECT 2; system echo SYS;"],
        "SELECT 2",
        "system echo SYS",
        meta="SM",
        issues=["shell command"],
    ),
    R(
        ["mysql", "-e", "SYSTEM echo UPPER"],
        "SYSTEM echo UPPER",
        meta="M",
        issues=["shell command"],
    ),
    # \! takes the rest of the line, and SQL goes on after the next ';' (both ran, verified)
    R(
        ["mysql", "-e", "SELECT 4; \\! echo BANG; SELECT 5"],
        "SELECT 4",
        "\\! echo BANG; SELECT 5",
        "SELECT 5",
        meta="SMS",
        issues=["shell command"],
    ),
    R(
        ["mysql", "-e", "source /srv/x.sql"],
        "source /srv/x.sql",
        meta="M",
        issues=["runs SQL from a file"],
        reads=["/srv/x.sql"],
    ),
    R(["mysql", "-e", "SELECT 1\\G SELECT 2\\g"], "SELECT 1", "SELECT 2"),
    # `--` needs a blank after it in mysql: 9--1 is 10 (verified); # is a comment
    R(
        ["mysql", "-e", "SELECT 9--1; SELECT 10 # c ; x\n; SELECT 11"],
        "SELECT 9--1",
        "SELECT 10",
        "SELECT 11",
    ),
    # /*! … */ is executed and the client splits inside it (verified)
    R(
        ["mysql", "-e", "SELECT 7 /*!; DROP TABLE x */;"],
        "SELECT 7",
        "DROP TABLE x",
        issues=["/*!"],
    ),
    R(["mysql", "-e", "/*!50000 DROP TABLE x */"], "DROP TABLE x", issues=["/*!"]),
    # mysql strings take backslash escapes (verified); NO_BACKSLASH_ESCAPES reads it as two
    R(
        ["mysql", "-e", "SELECT 'a\\'; DROP TABLE x; '"],
        "SELECT 'a\\'; DROP TABLE x; '",
        "SELECT 'a\\'",
        "DROP TABLE x",
        "'",
        issues=["NO_BACKSLASH_ESCAPES"],
    ),
    R(["mysql", "-e", "SELECT 1 AS `a\\`; SELECT 22"], "SELECT 1 AS `a\\`", "SELECT 22"),
    R(
        ["mysql", "-e", "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t"],
        "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t",
        issues=["LOAD DATA LOCAL"],
        reads=["/etc/passwd"],
    ),
    R(["mysql", "--pager=sh", "-e", "SELECT 1"], "SELECT 1", issues=["--pager"]),
    R(["mysql", "--bogus", "-e", "SELECT 1"], "SELECT 1", issues=["--bogus is unknown"]),
    R(["mariadb", "app"], issues=["mariadb reads SQL from stdin or a terminal"]),
    # --- sqlite3 ------------------------------------------------------------------------
    R(
        ["sqlite3", "app.db", "SELECT 1; DROP TABLE t"],
        "SELECT 1",
        "DROP TABLE t",
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", "SELECT 1", "DELETE FROM t"],
        "SELECT 1",
        "DELETE FROM t",
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", ".shell rm -rf ~"],
        ".shell rm -rf ~",
        meta="M",
        issues=["shell command"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", ".sh rm -rf ~"],
        ".sh rm -rf ~",
        meta="M",
        issues=["shell command"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", ".system ls"],
        ".system ls",
        meta="M",
        issues=["shell command"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", ".output /etc/x", "SELECT * FROM t"],
        ".output /etc/x",
        "SELECT * FROM t",
        meta="MS",
        writes=["/etc/x"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", ".once '/srv/a b'"],
        ".once '/srv/a b'",
        meta="M",
        writes=["/srv/a b"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", ".once |sh"],
        ".once |sh",
        meta="M",
        issues=["program"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", ".save /srv/copy.db"],
        ".save /srv/copy.db",
        meta="M",
        writes=["/srv/copy.db"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", ".import data.csv t"],
        ".import data.csv t",
        meta="M",
        reads=["app.db", "data.csv"],
    ),
    R(
        ["sqlite3", "app.db", ".load ./evil.so"],
        ".load ./evil.so",
        meta="M",
        issues=["native extension"],
        reads=["app.db", "./evil.so"],
    ),
    R(
        ["sqlite3", "app.db", ".read x.sql"],
        ".read x.sql",
        meta="M",
        issues=["runs SQL from a file"],
        reads=["app.db", "x.sql"],
    ),
    R(["sqlite3", "app.db", ".tables"], ".tables", meta="M", reads=["app.db"]),
    R(
        ["sqlite3", "app.db", ".frobnicate"],
        ".frobnicate",
        meta="M",
        issues=["not one xguard knows"],
        reads=["app.db"],
    ),
    # a word that starts with '.' is one dot-command, newlines and all (verified)
    R(
        ["sqlite3", "app.db", ".print a\nDROP TABLE t"],
        ".print a DROP TABLE t",
        meta="M",
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "-bail", "-csv", "--json", "-separator", "|", "app.db", "SELECT 1"],
        "SELECT 1",
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "-cmd", ".shell id", "app.db", "SELECT 1"],
        ".shell id",
        "SELECT 1",
        meta="MS",
        issues=["shell command"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "-init", "x.sql", "app.db", "SELECT 1"],
        "SELECT 1",
        issues=["-init"],
        reads=["x.sql", "app.db"],
    ),
    R(
        ["sqlite3", "app.db", "-A", "xf", "a.zip"],
        ".archive xf a.zip",
        meta="M",
        issues=["archive"],
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", "SELECT [a;b] FROM t; DROP TABLE t"],
        "SELECT [a;b] FROM t",
        "DROP TABLE t",
        reads=["app.db"],
    ),
    R(
        ["sqlite3", "app.db", "SELECT writefile('/srv/x', 'a')"],
        "SELECT writefile('/srv/x', 'a')",
        issues=["writefile"],
        reads=["app.db"],
    ),
    R(["sqlite3", "--", "-weird.db", "SELECT 1"], "SELECT 1", reads=["-weird.db"]),
    R(
        ["sqlite3", "app.db"],
        issues=["sqlite3 reads SQL from stdin or a terminal"],
        reads=["app.db"],
    ),
    R(["sqlite3", ":memory:", "SELECT 1"], "SELECT 1"),
    R(
        ["sqlite3", "-bogus", "app.db", "SELECT 1"],
        "SELECT 1",
        issues=["-bogus is unknown"],
        reads=["app.db"],
    ),
    R(["sqlite", "app.db", "SELECT 1"], "SELECT 1", reads=["app.db"]),
]


@pytest.mark.parametrize(("words", "texts", "metas", "issues", "writes", "reads"), ROWS)
def test_client_sql(
    words: list[str],
    texts: list[str],
    metas: list[bool],
    issues: list[str],
    writes: list[str],
    reads: list[str],
) -> None:
    got = client_sql(words)
    assert got is not None
    assert [u.text for u in got.units] == texts
    assert [u.meta for u in got.units] == metas
    for fragment in issues:
        assert any(fragment in issue for issue in got.issues), (fragment, got.issues)
    if not issues:
        assert got.issues == []
    assert got.write_paths == writes
    assert got.read_paths == reads


STDIN_ROWS = [
    # the here-document of ev-144
    RS(["psql"], "SELECT 1;\nDROP TABLE users;\n", "SELECT 1", "DROP TABLE users"),
    # a meta-command inside a statement leaves it open: psql printed MID, then 5 (verified)
    RS(
        ["psql"],
        "SELECT \\echo MID\n 5;\n",
        "\\echo MID",
        "SELECT 5",
        meta="MS",
        issues=["inside an SQL statement"],
    ),
    # \\ ends a meta-command and SQL goes on; a lone backslash starts the next one (verified)
    RS(["psql"], "\\echo one \\\\ SELECT 8;\n", "\\echo one", "SELECT 8", meta="MS"),
    RS(["psql"], "\\echo one \\echo two\n", "\\echo one", "\\echo two", meta="MM"),
    # \; sends both statements in one query; the server runs both (verified)
    RS(["psql"], "SELECT 6 \\; SELECT 7;\n", "SELECT 6", "SELECT 7"),
    RS(["psql"], "\\o /srv/x\nSELECT 1;\n", "\\o /srv/x", "SELECT 1", meta="MS"),
    RS(["psql"], "SELECT :foo;\n", "SELECT :foo", issues=["variable :foo"]),
    RS(["psql"], "SELECT now()::date;\n", "SELECT now()::date"),
    RS(["psql"], "SELECT 11", "SELECT 11"),
    RS(["psql", "-S"], "SELECT 1\nDROP TABLE x\n", "SELECT 1", "DROP TABLE x"),
    RS(["psql", "-f", "-"], "DROP TABLE x;", "DROP TABLE x"),
    RS(["mysql"], "SELECT 1;\nDROP TABLE t;\n", "SELECT 1", "DROP TABLE t"),
    # a line that starts with -- between statements is skipped, even `--it's` (verified)
    RS(["mysql"], "--it's\nSELECT 1;\nSELECT 2;\n", "SELECT 1", "SELECT 2"),
    # a named command takes its whole line (verified); `delimiter` changes the split (verified)
    RS(
        ["mysql"],
        "system echo hi\nSELECT 1;\n",
        "system echo hi",
        "SELECT 1",
        meta="MS",
        issues=["shell command"],
    ),
    RS(
        ["mysql"],
        "delimiter //\nSELECT 16; SELECT 17//\n",
        "delimiter //",
        "SELECT 16; SELECT 17",
        meta="MS",
        issues=["delimiter changed"],
    ),
    # a command word on its own line inside a statement is SQL without -G (verified)
    RS(["mysql"], "SELECT 1 AS\nstatus\n;\n", "SELECT 1 AS status"),
    RS(
        ["mysql", "--delimiter=$$"],
        "SELECT 1; SELECT 2$$",
        "SELECT 1; SELECT 2",
        issues=["delimiter"],
    ),
    # a `go` line ends the statement in sqlite3 (verified); # lines between statements are skipped
    RS(["sqlite3", "app.db"], "SELECT 1\ngo\nSELECT 2\n/\n", "SELECT 1", "SELECT 2"),
    RS(["sqlite3", "app.db"], "#it's\nSELECT 1;\nDROP TABLE t;\n", "SELECT 1", "DROP TABLE t"),
    RS(
        ["sqlite3", "app.db"],
        ".shell id\nSELECT 1;\n",
        ".shell id",
        "SELECT 1",
        meta="MS",
        issues=["shell command"],
    ),
    # a dot in the middle of a statement is SQL (sqlite3: syntax error)
    RS(["sqlite3", "app.db"], "SELECT 1\n.shell id\n;", "SELECT 1 .shell id"),
]


@pytest.mark.parametrize(("words", "stdin", "texts", "metas", "issues"), STDIN_ROWS)
def test_client_sql_with_stdin(
    words: list[str], stdin: str, texts: list[str], metas: list[bool], issues: list[str]
) -> None:
    got = client_sql(words, stdin=stdin)
    assert got is not None
    assert got.reads_stdin
    assert [u.text for u in got.units] == texts
    assert [u.meta for u in got.units] == metas
    assert not any("reads SQL from stdin" in issue for issue in got.issues)
    for fragment in issues:
        assert any(fragment in issue for issue in got.issues), (fragment, got.issues)
    if not issues:
        assert got.issues == []


@pytest.mark.parametrize(
    ("words", "texts"),
    [
        (["clickhouse-client", "-q", "SELECT 1; DROP TABLE t"], ["SELECT 1", "DROP TABLE t"]),
        (["clickhouse-client", "--query=SELECT 1"], ["SELECT 1"]),
        (
            ["cockroach", "sql", "--insecure", "-e", "SELECT 1", "-e", "DROP TABLE t"],
            ["SELECT 1", "DROP TABLE t"],
        ),
        (["cockroach", "sql", "--execute=SELECT 1"], ["SELECT 1"]),
    ],
)
def test_approximate_clients(words: list[str], texts: list[str]) -> None:
    """clickhouse-client and cockroach sql are split, and always need approval."""
    got = client_sql(words)
    assert got is not None
    assert [u.text for u in got.units] == texts
    assert any("only approximately" in issue for issue in got.issues)


def test_not_a_client() -> None:
    assert client_sql(["cockroach", "start"]) is None
    assert client_sql(["ls", "-l"]) is None
    assert client_sql([]) is None
    assert client_sql(["psqlx", "-c", "x"]) is None


def test_client_names() -> None:
    assert {"psql", "mysql", "mariadb", "sqlite3", "sqlite", "clickhouse-client", "cockroach"} <= (
        DB_CLIENTS
    )
    got = client_sql(["/usr/bin/psql", "-c", "SELECT 1"])
    assert got is not None and [u.text for u in got.units] == ["SELECT 1"]


def test_reads_stdin_flag() -> None:
    assert client_sql(["psql"]) == ClientSql(
        issues=["psql reads SQL from stdin or a terminal"], reads_stdin=True
    )
    got = client_sql(["psql", "-c", "SELECT 1"])
    assert got is not None and not got.reads_stdin


def test_raw_keeps_the_statement_as_given() -> None:
    (unit,) = split_sql("/* hi */ DROP\tTABLE  users ;")
    assert unit == SqlUnit("DROP TABLE users", False, "/* hi */ DROP\tTABLE  users")


def test_split_stdin_sql() -> None:
    assert [u.text for u in split_stdin_sql("psql", "SELECT 1;\nDROP TABLE t;")] == [
        "SELECT 1",
        "DROP TABLE t",
    ]
    assert [u.meta for u in split_stdin_sql("sqlite3", ".shell id\nSELECT 1;")] == [M, S]
    assert [u.text for u in split_stdin_sql("mysql", "SELECT 1 # x\n;")] == ["SELECT 1"]


@pytest.mark.parametrize(
    ("sql", "texts"),
    [
        ("", []),
        (";;", []),
        ("  ;\n;  ", []),
        ("-- only a comment", []),
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT $1, $2; SELECT 2", ["SELECT $1, $2", "SELECT 2"]),
        (
            "SELECT $tag$ a $b$ ; $tag$; DROP TABLE x",
            ["SELECT $tag$ a $b$ ; $tag$", "DROP TABLE x"],
        ),
        ("SELECT U&'d;'; DROP TABLE x", ["SELECT U&'d;'", "DROP TABLE x"]),
        (
            "SELECT 1a$b$; DROP TABLE x",
            ["SELECT 1a$b$", "DROP TABLE x"],
        ),  # digits, then the name a$b$
        ("SELECT 1/**/FROM t", ["SELECT 1 FROM t"]),
    ],
)
def test_split_sql(sql: str, texts: list[str]) -> None:
    assert [u.text for u in split_sql(sql)] == texts


# --- properties ---------------------------------------------------------------------------

_ANY_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from("'\";\\$-/*#`[]:\n"), max_size=200
)


@settings(max_examples=400, deadline=None)
@given(_ANY_TEXT, st.sampled_from(["psql", "mysql", "sqlite"]))
def test_split_never_raises(sql: str, dialect: str) -> None:
    units = split_sql(sql, dialect)
    assert all(isinstance(u, SqlUnit) and u.text and u.text == u.text.strip(" ") for u in units)


def _no_comment_or_terminator(text: str) -> bool:
    """No comment, no backslash, no line that is only `go`, `ego` or `/` (a
    terminator, like ';', in sqlite3 and mysql)."""
    lines = {line.strip(" \t\r\f\v").lower() for line in text.split("\n")}
    pieces = {text[i : i + 2] for i in range(len(text))} | set(text)
    return not ({"--", "/*", "#", "\\"} & pieces) and not ({"go", "ego", "/"} & lines)


_PLAIN_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200).filter(
    _no_comment_or_terminator
)


@settings(max_examples=400, deadline=None)
@given(_PLAIN_TEXT, st.sampled_from(["psql", "mysql", "sqlite"]))
def test_nothing_dropped_without_comments(sql: str, dialect: str) -> None:
    """With no comment, backslash or terminator line in the text, every non-blank
    character but the delimiter ';' reaches some unit."""
    units = split_sql(sql, dialect)
    wanted = set(sql) - set(" \t\n\r\f\v;")
    assert wanted <= set("".join(u.text for u in units))


_TOKEN = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.from_regex(r"[0-9]{1,5}", fullmatch=True),
    st.from_regex(r"'[A-Za-z0-9 ;]{0,8}'", fullmatch=True),
    st.from_regex(r'"[A-Za-z0-9 ;]{0,8}"', fullmatch=True),
    st.from_regex(r"\$\$[A-Za-z0-9 ;']{0,8}\$\$", fullmatch=True),
    st.sampled_from(["(", ")", ",", "=", "<", ">", "+", "*", ".", "::"]),
)
_COMMENT = st.one_of(
    st.from_regex(r"--[A-Za-z0-9 ;'\"]{0,10}\n", fullmatch=True),
    st.from_regex(r"/\*[A-Za-z0-9 ;'\"]{0,10}\*/", fullmatch=True),
)
_PIECE = st.one_of(
    _TOKEN.map(lambda t: ("token", t)),
    _COMMENT.map(lambda c: ("comment", c)),
    st.sampled_from([";", " ", "\n", "\t"]).map(lambda s: ("blank", s)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECE, max_size=40))
def test_every_token_outside_comments_reaches_a_unit(pieces: list[tuple[str, str]]) -> None:
    """Statements built from tokens, comments and separators: every word of every
    token is in some unit, and no word that only a comment holds is."""
    sql = " ".join(text for _, text in pieces)
    units = split_sql(sql)
    assert all(not u.meta for u in units)
    joined = " ".join(u.text for u in units)
    unit_words = set(re.findall(r"[A-Za-z0-9_]+", joined))
    for kind, text in pieces:
        if kind == "token":
            assert set(re.findall(r"[A-Za-z0-9_]+", text)) <= unit_words, (text, units)
    token_words = {w for k, t in pieces if k == "token" for w in re.findall(r"[A-Za-z0-9_]+", t)}
    assert unit_words <= token_words  # comments are gone

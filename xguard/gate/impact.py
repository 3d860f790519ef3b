"""The blast radius of a statement, shown before anyone approves it (issue 13).

For every DELETE, UPDATE, TRUNCATE, DROP TABLE and INSERT … SELECT that psql,
mysql/mariadb or sqlite3 would run, the statement is rewritten with sqlglot
into a count over the same target and condition (`DELETE FROM t WHERE c` ->
`SELECT count(*) FROM t WHERE c`; UPDATE … FROM, DELETE … USING and MySQL's
joined forms become an EXISTS over the other tables, so each target row counts
once), and the table's own size is counted beside it. The reviewer then reads
"would delete 11,200 of 12,000 rows (93%) from orders".

Safety, because the preview runs before any person has said yes:

- it runs the command's own client binary (psql, mysql, sqlite3) with the
  command's own connection options and the environment the command would get
  (the scrubbed one, plus assignments written before the client), so it
  reaches exactly the database the command would; a client that resolves
  outside the system's bin folders is not run (it could be anything);
- inside a read-only transaction (BEGIN READ ONLY / START TRANSACTION READ ONLY /
  sqlite3 -readonly -safe), with a statement timeout and a lock timeout; never
  when the statement calls a function not on the pure list (a function in a
  WHERE clause can write, and the count would call it);
- with no way to prompt: stdin is /dev/null, the process has no controlling
  terminal, psql gets -w, and connect and query both time out;
- on a statement timeout, the planner's estimate (EXPLAIN), marked "estimate".

A preview that fails carries "error" and changes nothing: the request goes on
without it, and a failed preview never allows anything.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from xguard.shell.parser import SYSTEM_BIN_DIRS

DEFAULT_TIMEOUT = 2.0
DEFAULT_LOCK_TIMEOUT = 1.0
DEFAULT_CONNECT_TIMEOUT = 3.0

# Functions known not to write anything or reach outside the database. A
# statement calling anything else gets no preview: counting it would call it.
PURE_FUNCTIONS = frozenset(
    {
        "abs", "ceil", "ceiling", "floor", "round", "trunc", "sign", "mod", "power", "sqrt", "exp",
        "ln", "log", "log10", "greatest", "least", "lower", "upper", "length", "char_length",
        "character_length", "octet_length", "bit_length", "substr", "substring", "trim", "ltrim",
        "rtrim", "btrim", "lpad", "rpad", "left", "right", "replace", "reverse", "concat",
        "concat_ws", "position", "strpos", "instr", "split_part", "initcap", "repeat", "translate",
        "md5", "coalesce", "nullif", "ifnull", "nvl", "if", "iif", "cast", "try_cast", "now",
        "current_timestamp", "current_date", "current_time", "localtimestamp", "localtime",
        "transaction_timestamp", "statement_timestamp", "clock_timestamp", "sysdate", "curdate",
        "curtime", "utc_timestamp", "utc_date", "date", "time", "datetime", "timestamp",
        "julianday", "strftime", "unixepoch", "unix_timestamp", "from_unixtime", "to_timestamp",
        "to_date", "to_char", "date_trunc", "date_part", "extract", "age", "make_date",
        "make_interval", "justify_days", "date_add", "date_sub", "adddate", "subdate", "datediff",
        "timestampdiff", "timestampadd", "ts_or_ds_add", "ts_or_ds_to_date", "str_to_time",
        "str_to_date", "time_to_str", "time_str_to_time", "date_str_to_date", "date_from_parts",
        "timestamp_trunc", "time_trunc", "year", "month", "day", "week", "quarter", "dayofweek",
        "dayofmonth", "dayofyear", "hour", "minute", "second", "count", "sum", "min", "max", "avg",
        "array_agg", "string_agg", "group_concat", "bool_and", "bool_or", "every", "count_if",
        "array", "array_length", "cardinality", "any", "all", "json_extract",
        "json_extract_scalar", "jsonextract", "jsonextractscalar", "jsonbextract",
        "jsonbextractscalar", "json_array_length", "regexp_like", "regexp_replace",
        "regexp_extract", "regexp_ilike", "like", "ilike", "glob", "interval", "typeof", "case",
    }
)  # fmt: skip

# Wrappers that leave the client's connection as it is (the same user, the same
# environment); any other (sudo, su, env, ssh, kubectl exec, docker exec …)
# connects otherwise, so no preview from here could be the same connection.
SAME_CONNECTION_WRAPPERS = frozenset(
    {"timeout", "nice", "nohup", "time", "stdbuf", "ionice", "setsid", "command", "builtin",
     "exec", "flock"}
)  # fmt: skip

_DIALECTS = {"psql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}
_CLIENT_KIND = {"psql": "psql", "mysql": "mysql", "mariadb": "mysql", "sqlite3": "sqlite"}
_DML = re.compile(r"(?is)\s*(?:with\b.*\b)?(delete|update|truncate|drop\s+table|insert)\b")


class PreviewError(Exception):
    """Why a preview could not be made (shown to the reviewer as "error")."""


@dataclass
class Target:
    """One count to make for one statement."""

    verb: str  # delete | update | truncate | drop | insert
    table: str  # as the reviewer reads it
    table_sql: str  # the table reference in the dialect
    rows_sql: str | None  # the count; None when every row is touched (TRUNCATE, DROP)
    probe_sql: str  # SELECT 1 … over the same rows, for the planner's estimate
    limit: int | None = None  # DELETE/UPDATE … LIMIT n
    note: str | None = None
    # What the database resolves by name when it runs the count: every relation
    # the statement names (as the dialect writes it) and every function it calls.
    # PostgreSQL's preview checks them in the catalog before counting (_pg_guard).
    relations: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()


def is_dml(text: str) -> bool:
    """Whether an SQL unit's text is a statement this module previews."""
    return _DML.match(text) is not None


# ---------------------------------------------------------------------------
# The rewrite.


def plan(text: str, client: str, pure: frozenset[str] = PURE_FUNCTIONS) -> list[Target]:
    """The counts that measure `text` (one statement in `client`'s dialect:
    psql | mysql | sqlite). Raises PreviewError when it cannot be rewritten."""
    import sqlglot
    from sqlglot import exp

    targets = _plan(text, client, pure)
    stmt = sqlglot.parse_one(text, read=_DIALECTS[client])
    ctes = {str(c.alias_or_name).lower() for c in stmt.find_all(exp.CTE)}
    relations: list[str] = []
    for t in stmt.find_all(exp.Table):
        if not t.name or (not t.db and t.name.lower() in ctes):
            continue
        ref = t.copy()
        ref.set("alias", None)
        ref.set("joins", None)
        sql = str(ref.sql(dialect=_DIALECTS[client]))
        if sql not in relations:
            relations.append(sql)
    functions = tuple(sorted(_check_pure(stmt, pure, _DIALECTS[client]) | {"count"}))
    for target in targets:
        target.relations, target.functions = tuple(relations), functions
    return targets


def _plan(text: str, client: str, pure: frozenset[str]) -> list[Target]:
    import sqlglot
    from sqlglot import exp

    dialect = _DIALECTS[client]
    try:
        trees = [t for t in sqlglot.parse(text, read=dialect) if t is not None]
    except sqlglot.errors.SqlglotError as e:
        raise PreviewError(f"cannot parse the statement: {_first_line(str(e))}") from None
    if len(trees) != 1:
        raise PreviewError("cannot parse the statement as one statement")
    stmt = trees[0]
    _check_pure(stmt, pure, dialect)

    def q(node: Any) -> str:
        return str(node.sql(dialect=dialect))

    def name(table: Any) -> str:
        return ".".join(p.name for p in table.parts)

    def bare(table: Any) -> Any:
        t = table.copy()
        t.set("alias", None)
        t.set("joins", None)
        return t

    with_ = stmt.args.get("with_") or stmt.args.get("with")
    if with_ is not None and any(
        isinstance(n, exp.Delete | exp.Update | exp.Insert | exp.Merge) for n in with_.walk()
    ):
        raise PreviewError("a WITH clause that itself changes data: no preview")

    def select(frm: Any, where: Any, joins: list[Any]) -> Any:
        s = exp.select("1").from_(frm.copy())
        for j in joins:
            s = s.join(j.copy())
        if where is not None:
            s = s.where(where.copy())
        if with_ is not None:
            s.set("with_", with_.copy())
        return s

    def counted(probe: Any) -> str:
        c = probe.copy()
        c.set("expressions", [exp.Count(this=exp.Star())])
        return q(c)

    if isinstance(stmt, exp.TruncateTable | exp.Drop):
        if isinstance(stmt, exp.Drop) and str(stmt.args.get("kind") or "").upper() != "TABLE":
            raise PreviewError("only DROP TABLE is previewed")
        tables = stmt.expressions if isinstance(stmt, exp.TruncateTable) else stmt.args["tables"]
        verb = "truncate" if isinstance(stmt, exp.TruncateTable) else "drop"
        cascade = (
            stmt.args.get("cascade") or str(stmt.args.get("option") or "").upper() == "CASCADE"
        )
        # The tables that refer to it are emptied or dropped too, and are not counted here.
        note = "CASCADE also reaches the tables that refer to it (not counted)" if cascade else None
        return [
            Target(verb, name(t), q(bare(t)), None, q(exp.select("1").from_(bare(t))), note=note)
            for t in tables
        ]

    if isinstance(stmt, exp.Insert):
        src = stmt.expression
        if not isinstance(src, exp.Query):
            raise PreviewError(
                "INSERT … VALUES: nothing to count (only INSERT … SELECT is previewed)"
            )
        target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
        sub = src.copy()
        if with_ is not None and not sub.args.get("with_"):
            sub.set("with_", with_.copy())
        probe = exp.select("1").from_(sub.subquery("xguard_src"))
        return [Target("insert", name(target), q(bare(target)), counted(probe), q(probe))]

    if not isinstance(stmt, exp.Delete | exp.Update):
        raise PreviewError(f"{type(stmt).__name__.upper()} is not a statement that is previewed")
    verb = "delete" if isinstance(stmt, exp.Delete) else "update"
    target = stmt.this
    joins = list(target.args.get("joins") or [])
    where = stmt.args.get("where")
    cond = where.this if where is not None else None
    note = None
    if isinstance(stmt, exp.Delete) and stmt.args.get("tables"):
        # MySQL's `DELETE t1 FROM t1 JOIN t2 …`: the rows go from the named tables.
        named = stmt.args["tables"]
        if len(named) != 1:
            raise PreviewError("deletes from several tables at once: no preview")
        want = named[0].name
        if want not in (target.alias_or_name, target.name):
            raise PreviewError("deletes from a joined table other than the first: no preview")
    others: list[Any] = []
    if isinstance(stmt, exp.Delete):
        others = list(stmt.args.get("using") or [])
    else:
        frm = stmt.args.get("from_") or stmt.args.get("from")
        if frm is not None:
            others = [frm.this, *(j.this for j in frm.this.args.get("joins") or [])]
            others[0] = others[0].copy()
            others[0].set("joins", None)
    inner = all(j.side in ("", None) and j.kind in ("", None, "INNER", "CROSS") for j in joins)
    main = target.copy()
    main.set("joins", None)
    if joins and not inner:
        # An outer join keeps target rows without a partner: count over the join.
        probe = select(main, cond, joins)
        note = "counted over the join: a target row that joins several times counts each time"
    elif joins or others:
        # Each target row once: EXISTS over the other tables, the join's ON in the WHERE.
        conds = [j.args["on"] for j in joins if j.args.get("on") is not None]
        if cond is not None:
            conds.append(cond)
        tables = [j.this for j in joins] + others
        sub = exp.select("1").from_(tables[0].copy())
        for t in tables[1:]:
            sub = sub.join(t.copy())
        if conds:
            sub = sub.where(exp.and_(*[c.copy() for c in conds]))
        probe = select(main, exp.Exists(this=sub), [])
    else:
        probe = select(main, cond, [])
    limit = None
    lim = stmt.args.get("limit")
    if lim is not None:
        try:
            limit = int(lim.expression.name)
        except (AttributeError, ValueError):
            raise PreviewError("a LIMIT that is not a plain number: no preview") from None
    return [Target(verb, name(main), q(bare(main)), counted(probe), q(probe), limit, note)]


def _check_pure(stmt: Any, pure: frozenset[str], dialect: str) -> set[str]:
    """The built-in names of the functions `stmt` calls (all of them on the pure list).
    A name is only a name: `ev.lower(x)` is ev's function, not the built-in
    lower, and a cast to a type of the database's own runs that type's
    checks, so neither is taken as pure. (What a name resolves to through the
    search path, a view or a policy is checked in the database: _pg_guard.)"""
    from sqlglot import exp

    names: set[str] = set()
    for f in stmt.find_all(exp.Func):
        if isinstance(f, exp.Connector | exp.Binary | exp.Unary | exp.Predicate | exp.Paren):
            continue  # operators, not calls
        fname = str(f.name) if isinstance(f, exp.Anonymous) else f.sql_name()
        if fname.lower() not in pure:
            raise PreviewError(
                f"calls {fname.lower()}(), which is not known to be pure: the preview would "
                "call it too (add it to impact.pure if it only reads)"
            )
        # A name added to impact.pure is the database's own on purpose; a
        # built-in name must reach the built-in.
        if fname.lower() not in PURE_FUNCTIONS:
            continue
        parent = f.parent
        if isinstance(parent, exp.Dot) and parent.expression is f:
            schema = parent.this.sql(dialect=dialect)
            if dialect != "postgres" or schema.lower().strip('"') != "pg_catalog":
                raise PreviewError(
                    f"calls {schema}.{fname.lower()}(), a function of the database's own, "
                    "not the built-in one: the preview would call it too"
                )
        names.add(fname.lower())
        if isinstance(f, exp.Cast) and dialect == "postgres":
            to = f.args.get("to")
            if to is not None and to.this == exp.DataType.Type.USERDEFINED:
                raise PreviewError(
                    f"casts to {to.sql(dialect=dialect)}, a type of the database's own (a "
                    "domain's checks can call functions): no preview"
                )
    return names


# ---------------------------------------------------------------------------
# The connection the command itself would use.


@dataclass
class Conn:
    kind: str  # psql | mysql | sqlite
    argv: list[str]  # the client and its connection options, no SQL
    env: dict[str, str]
    cwd: str
    option_files: tuple[str, ...] = ()  # mysql: the options that choose its option files


def connection(unit: Any, base_env: dict[str, str], cwd: str, connect_timeout: float) -> Conn:
    """How the unit's client connects, from its own words and environment."""
    words = list(unit.client)
    if not words:
        raise PreviewError("the client command is not known")
    kind = _CLIENT_KIND.get(words[0].rsplit("/", 1)[-1])
    if kind is None:
        raise PreviewError(f"{words[0]} is not a client the preview can use")
    odd = [w for w in unit.client_via if w not in SAME_CONNECTION_WRAPPERS]
    if odd:
        raise PreviewError(
            f"runs inside {odd[0]}: a preview from here would not connect as the command does"
        )
    env = dict(base_env)
    for a in unit.client_env:
        if not a or "=" not in a:
            raise PreviewError("a variable set for the client is known only at run time")
        k, v = a.split("=", 1)
        env[k] = v
    path = _trusted_client(words[0], env.get("PATH", os.defpath))
    if kind == "psql":
        opts = _psql_conn(words[1:])
        _pg_startup_options(opts, env)
        path = _past_pg_wrapper(path, opts, env)
        # libpq waits at least 2 s; PGCONNECT_TIMEOUT bounds the connect itself.
        env["PGCONNECT_TIMEOUT"] = str(max(2, math.ceil(connect_timeout)))
        env.setdefault("PGAPPNAME", "xguard-impact")
        return Conn(kind, [path, *opts], env, cwd)
    if kind == "mysql":
        front, opts = _mysql_conn(words[1:])
        return Conn(
            kind,
            [path, *front, *opts, f"--connect-timeout={max(1, math.ceil(connect_timeout))}"],
            env,
            cwd,
            tuple(front),
        )
    db = _sqlite_db(words[1:])
    if unit.bases and not db.startswith(("/", "file:")):
        raise PreviewError("the database path is relative to a folder an earlier cd moves to")
    return Conn(kind, [path, db], env, cwd)


def _trusted_client(name: str, path: str) -> str:
    from xguard.gate.execenv import which

    found = which(name, path)
    if found is None:
        raise PreviewError(f"{name}: command not found")
    real = os.path.realpath(found)
    if os.path.dirname(os.path.abspath(found)) not in SYSTEM_BIN_DIRS or not os.path.isfile(real):
        raise PreviewError(
            f"{name} resolves to {found}, outside the system's bin folders: not run before approval"
        )
    return found


_PGW_HOST = re.compile(r"^--host\b|^-\w*h\w*$")
_PGW_PORT = re.compile(r"^--port\b|^-\w*p(\d+)?$")


def _past_pg_wrapper(path: str, opts: list[str], env: dict[str, str]) -> str:
    """Debian's psql is pg_wrapper, a Perl script (~50-200 ms to start) that
    picks a local cluster only when no host, port or service is given (and no
    --cluster/PGCLUSTER); otherwise it sets PGSYSCONFDIR and execs the newest
    psql, which the preview then does itself: the same binary, the same
    environment, the same connection. In every other case it runs as is."""
    if not os.path.realpath(path).endswith("/postgresql-common/pg_wrapper"):
        return path
    explicit = (
        "PGHOST" in env
        or env.get("PGPORT")
        or "PGSERVICE" in env
        or any(_PGW_HOST.match(w) or _PGW_PORT.match(w) or "service=" in w for w in opts)
    )
    if not explicit or "PGCLUSTER" in env or any(w.startswith("--cluster") for w in opts):
        return path
    import glob

    found = []
    for p in glob.glob("/usr/lib/postgresql/*/bin/psql"):
        v = p.split("/")[4]
        if v.replace(".", "").isdigit():
            found.append((tuple(int(x) for x in v.split(".")), p))
    if not found:
        return path
    env.setdefault("PGSYSCONFDIR", "/etc/postgresql-common")
    return max(found)[1]


# Server settings that load a shared library when the session starts, or
# choose the folder one is loaded from; a superuser may name any file. Given
# in the startup packet (PGOPTIONS, a conninfo's or URI's options), the
# library runs before the preview's first statement, so no read-only
# transaction can hold it. (A service file's options are not read here.)
_PG_LOADS = re.compile(r"(?i)preload[-_]libraries|dynamic[-_]library[-_]path")


def _pg_startup_options(opts: list[str], env: dict[str, str]) -> None:
    from urllib.parse import unquote_plus

    texts = [env.get("PGOPTIONS", "")]
    texts += [unquote_plus(w) for w in opts if "=" in w or "://" in w]
    for text in texts:
        hit = _PG_LOADS.search(text)
        if hit:
            raise PreviewError(
                f"the connection's options set {hit.group(0).lower()}, which loads a library "
                "when the session starts: no preview"
            )


def _psql_conn(args: list[str]) -> list[str]:
    """psql's connection options and positional dbname/username, as given."""
    from xguard.shell.sql import psql_options

    keep = {"h": "-h", "p": "-p", "U": "-U", "d": "-d"}
    out: list[str] = []
    positional: list[str] = []
    for o in psql_options(args):
        if o.kind == "end":
            positional.extend(o.words[1:])
        elif o.problem is not None:
            raise PreviewError(o.problem)  # psql itself would stop there
        elif o.kind == "arg" and o.value is not None:
            positional.append(o.value)
        elif o.key in keep and o.value is not None:
            out += [keep[o.key], o.value]
    if len(positional) > 2:
        raise PreviewError("psql has more positional words than dbname and username")
    return out + positional


_MYSQL_FRONT = ("no-defaults", "defaults-file", "defaults-extra-file", "defaults-group-suffix",
                "login-path", "print-defaults")  # fmt: skip
_MYSQL_CONN = ("host", "port", "socket", "user", "password", "database", "protocol",
               "default-auth", "bind-address", "get-server-public-key",
               "server-public-key-path", "compress", "compression-algorithms",
               "enable-cleartext-plugin")  # fmt: skip


def _mysql_conn(args: list[str]) -> tuple[list[str], list[str]]:
    """mysql's option-file options (they must come first) and connection options."""
    from xguard.shell.sql import _MYSQL_LONG, _MYSQL_SHORT_NAME, _REQ, _resolve_long

    front: list[str] = []
    out: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(args):
        w = args[i]
        if w == "--":
            positional.extend(args[i + 1 :])
            break
        if not w.startswith("-") or w == "-":
            positional.append(w)
            i += 1
            continue
        if w.startswith("--"):
            nm, eq, value = w[2:].partition("=")
            nm = nm.replace("_", "-").removeprefix("loose-")
            hit = _resolve_long(nm, _MYSQL_LONG)
            if isinstance(hit, str):
                i += 1
                continue
            key, has_arg = hit
            if has_arg == _REQ and not eq:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            if key in ("init-command", "init-command-add"):
                raise PreviewError("--init-command runs SQL on connect: no preview")
            if key == "password" and not eq:
                raise PreviewError("asks for a password at a prompt: no preview")
            if key.startswith(("ssl", "tls")) or key in _MYSQL_CONN:
                out.append(f"--{key}={value}" if (eq or has_arg == _REQ) else f"--{key}")
            elif key in _MYSQL_FRONT:
                front.append(f"--{key}={value}" if (eq or has_arg == _REQ) else f"--{key}")
            i += 1
            continue
        k = 1
        while k < len(w):
            ch = w[k]
            if ch in "DehPSuO":
                value = w[k + 1 :]
                if not value:
                    value = args[i + 1] if i + 1 < len(args) else ""
                    i += 1
                if ch not in "eO":  # -e is SQL, -O a server variable: not the connection
                    out.append(f"--{_MYSQL_SHORT_NAME[ch]}={value}")
                break
            if ch == "p":
                if not w[k + 1 :]:
                    raise PreviewError("asks for a password at a prompt: no preview")
                out.append(f"--password={w[k + 1 :]}")
                break
            k += 1
        i += 1
    if positional:
        out.append(f"--database={positional[0]}")
    return front, out


# Option-file settings that make the client do more than connect and ask:
# init-command runs SQL on connect, before the preview's READ ONLY
# transaction; plugin-dir loads a shared library from a folder of the file's
# choosing; tee appends the session to a file.
_MYSQL_FILE_UNSAFE = re.compile(
    r"(?:^|\s)--(?:loose[-_])?(init[-_]command(?:[-_]add)?|plugin[-_]dir|tee)\b"
)


def _mysql_option_files(conn: Conn) -> None:
    """Refuse a preview when the option files the client would read (~/.my.cnf
    of the command's HOME, /etc/mysql, --defaults-file and its !includes) set
    something that acts on its own. `--print-defaults` reads them the way the
    client does and connects to nothing."""
    proc = _run(conn, [conn.argv[0], *conn.option_files, "--print-defaults"], 5)
    if proc.returncode != 0:
        raise _fail(proc, conn.argv[0])
    hit = _MYSQL_FILE_UNSAFE.search(proc.stdout.partition("\n")[2])
    if hit:
        name = hit.group(1).replace("_", "-")
        raise PreviewError(
            f"an option file the client reads sets {name}, which acts on connect: no preview"
        )


def _sqlite_db(args: list[str]) -> str:
    from xguard.shell.sql import _SQLITE_ONE_VALUE, _SQLITE_TWO_VALUES

    i = 0
    while i < len(args):
        w = args[i]
        if not w.startswith("-"):
            if w in ("", ":memory:"):
                break
            return w
        z = w[1:] if w.startswith("--") else w
        if z in _SQLITE_ONE_VALUE or z in ("-cmd", "-init", "-maxsize"):
            i += 1
        elif z in _SQLITE_TWO_VALUES:
            i += 2
        i += 1
    raise PreviewError("sqlite3 names no database file (an in-memory database has no rows)")


# ---------------------------------------------------------------------------
# Counting.


@dataclass
class Timeouts:
    statement: float = DEFAULT_TIMEOUT
    lock: float = DEFAULT_LOCK_TIMEOUT
    connect: float = DEFAULT_CONNECT_TIMEOUT


class _Timeout(Exception):
    """The count ran over the statement timeout: fall back to the planner."""


def count(conn: Conn, targets: list[Target], to: Timeouts) -> list[dict[str, Any]]:
    """{"table", "rows", "table_rows", "method"} for each target (same order)."""
    try:
        vals = _RUNNERS[conn.kind](conn, targets, to, False)
        method = "count"
    except _Timeout:
        if conn.kind == "sqlite":
            raise PreviewError(
                f"the count timed out (statement timeout {to.statement:g}s, lock timeout "
                f"{to.lock:g}s), and SQLite keeps no planner estimate of rows"
            ) from None
        try:
            vals = _RUNNERS[conn.kind](conn, targets, to, True)
        except _Timeout:
            raise PreviewError(
                "the count and the planner's estimate both timed out (statement timeout "
                f"{to.statement:g}s, lock timeout {to.lock:g}s)"
            ) from None
        method = "estimate"
    out = []
    for i, t in enumerate(targets):
        table_rows = vals.get(f"@xg{i}t")
        rows = table_rows if t.rows_sql is None else vals.get(f"@xg{i}r")
        if rows is not None and t.limit is not None:
            rows = min(rows, t.limit)
        item: dict[str, Any] = {
            "table": t.table,
            "rows": rows,
            "table_rows": table_rows,
            "method": method,
        }
        if t.note:
            item["note"] = t.note
        out.append(item)
    return out


def _run(conn: Conn, argv: list[str], budget: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            env=conn.env,
            cwd=conn.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=budget,
            # No controlling terminal: no client can open /dev/tty to ask for a password.
            start_new_session=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _Timeout from None
    except OSError as e:
        raise PreviewError(f"cannot run {argv[0]}: {e.strerror}") from None


def _fail(proc: subprocess.CompletedProcess[str], what: str) -> PreviewError:
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    msg = lines[0] if lines else f"{what} exited with status {proc.returncode}"
    for ln in lines:
        if "password" in ln.lower():
            msg = ln
            break
    return PreviewError(_first_line(msg)[:300])


def _psql(conn: Conn, targets: list[Target], to: Timeouts, estimate: bool) -> dict[str, int]:
    cmds = [
        "BEGIN READ ONLY",
        f"SET LOCAL statement_timeout = {max(1, int(to.statement * 1000))}",
        f"SET LOCAL lock_timeout = {max(1, int(to.lock * 1000))}",
        _pg_guard(targets),
    ]
    for i, t in enumerate(targets):
        table_probe = f"SELECT 1 FROM {t.table_sql}"
        if t.rows_sql is not None:
            body = f"EXPLAIN (FORMAT JSON) {t.probe_sql}" if estimate else t.rows_sql
            cmds += [f"\\echo @xg{i}r", body]
        body = (
            f"EXPLAIN (FORMAT JSON) {table_probe}"
            if estimate
            else f"SELECT count(*) FROM {t.table_sql}"
        )
        cmds += [f"\\echo @xg{i}t", body]
    cmds.append("ROLLBACK")
    argv = [*conn.argv, "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    for c in cmds:
        argv += ["-c", c]
    budget = to.connect + to.statement * (len(targets) * 2 + 1) + 1
    proc = _run(conn, argv, budget)
    if proc.returncode != 0:
        unsafe = re.search(r"xguard-unsafe: ([^\"\n]*)", proc.stderr)
        if unsafe:
            raise PreviewError(f"{unsafe.group(1)}: no preview")
        if "statement timeout" in proc.stderr or "lock timeout" in proc.stderr:
            raise _Timeout
        raise _fail(proc, "psql")
    return _values(proc.stdout, estimate, _pg_plan_rows)


def _pg_guard(targets: list[Target]) -> str:
    """One query, run in the preview's transaction before any count, that
    fails (an error reading "xguard-unsafe: why") when counting would run code
    the statement's text does not show: a named relation (or one that inherits
    from it) that is not a plain table (a view's functions, a foreign table's
    other server), row-level security (its policies' functions), a function
    outside pg_catalog that a name the statement calls would reach (a
    `lower(int)` in public, or a search_path that puts a schema first), an
    operator written in SQL or a procedural language, or a search_path that
    puts another schema before pg_catalog. Everything it calls, and every
    operator it uses, is pg_catalog's, so the same tricks cannot reach it."""
    rels = sorted({r for t in targets for r in t.relations})
    funcs = sorted({f for t in targets for f in t.functions})

    def arr(items: list[str], typ: str) -> str:
        body = ",".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items)
        return f"{_pglit('{' + body + '}')}::pg_catalog.{typ}[]"

    eq, ne = "OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.<>)"
    cat = "'pg_catalog'::pg_catalog.regnamespace"
    return f"""WITH RECURSIVE named(name, oid) AS (
  SELECT n, pg_catalog.to_regclass(n)::pg_catalog.oid FROM pg_catalog.unnest({arr(rels, "text")}) n
), rel(name, oid) AS (
  SELECT name, oid FROM named WHERE oid IS NOT NULL
  UNION
  SELECT pg_catalog.concat(rel.name, ' (through ', i.inhrelid::pg_catalog.regclass, ')'), i.inhrelid
  FROM pg_catalog.pg_inherits i JOIN rel ON i.inhparent {eq} rel.oid
), why(why) AS (
  SELECT pg_catalog.concat(rel.name, ' is not a plain table (relkind ', c.relkind,
         '): reading it can run code the statement does not show')
  FROM rel JOIN pg_catalog.pg_class c ON c.oid {eq} rel.oid
  WHERE c.relkind::pg_catalog.text {ne} ALL ('{{r,p,m}}'::pg_catalog.text[])
  UNION ALL
  SELECT pg_catalog.concat(rel.name, ' has row-level security: its policies would run')
  FROM rel JOIN pg_catalog.pg_class c ON c.oid {eq} rel.oid WHERE c.relrowsecurity
  UNION ALL
  SELECT pg_catalog.concat(p.oid::pg_catalog.regprocedure,
         ' is the database''s own function, and the statement calls ', p.proname)
  FROM pg_catalog.pg_proc p
  WHERE p.proname {eq} ANY ({arr(funcs, "name")}) AND p.pronamespace {ne} {cat}
    AND pg_catalog.pg_function_is_visible(p.oid)
  UNION ALL
  SELECT pg_catalog.concat('operator ', o.oid::pg_catalog.regoperator,
         ' runs a function of the database''s own')
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid {eq} o.oprcode
  JOIN pg_catalog.pg_language l ON l.oid {eq} p.prolang
  WHERE o.oprnamespace {ne} {cat} AND l.lanname {ne} ALL ('{{c,internal}}'::pg_catalog.name[])
    AND pg_catalog.pg_operator_is_visible(o.oid)
  UNION ALL
  SELECT pg_catalog.concat('the search_path puts ', (pg_catalog.current_schemas(true))[1],
         ' before pg_catalog')
  WHERE (pg_catalog.current_schemas(true))[1] {ne} 'pg_catalog'::pg_catalog.name
)
SELECT pg_catalog.int4(pg_catalog.concat('xguard-unsafe: ', why)) FROM why LIMIT 1"""


def _pglit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _pg_plan_rows(text: str) -> int:
    return int(json.loads(text)[0]["Plan"]["Plan Rows"])


def _values(out: str, estimate: bool, parse_plan: Any) -> dict[str, int]:
    vals: dict[str, int] = {}
    key = None
    buf: list[str] = []

    def flush() -> None:
        if key is not None:
            text = "\n".join(buf).strip()
            try:
                vals[key] = parse_plan(text) if estimate else int(text.split()[-1])
            except (ValueError, KeyError, IndexError, TypeError):
                raise PreviewError(f"unexpected answer from the client: {text[:80]!r}") from None

    for line in out.splitlines():
        if line.strip() == key and not buf:
            continue  # mysql --column-names prints a marker twice: as its header and its value
        if line.startswith("@xg"):
            flush()
            key, buf = line.strip(), []
        else:
            buf.append(line)
    flush()
    return vals


def _mysql(conn: Conn, targets: list[Target], to: Timeouts, estimate: bool) -> dict[str, int]:
    # MariaDB reads the /*M! … */ part (max_statement_time, seconds); MySQL
    # ignores it and takes the MAX_EXECUTION_TIME hint (milliseconds) instead.
    _mysql_option_files(conn)
    ms = max(1, int(to.statement * 1000))
    lines = [
        f"SET SESSION lock_wait_timeout = {max(1, math.ceil(to.lock))}"
        f" /*M!100108 , max_statement_time = {to.statement:g} */;",
        "START TRANSACTION READ ONLY;",
    ]
    for i, t in enumerate(targets):
        if t.rows_sql is not None:
            lines.append(f"SELECT '@xg{i}r';")
            if estimate:
                lines.append(f"EXPLAIN {t.probe_sql};")
            else:
                lines.append(_hint(t.rows_sql, ms) + ";")
        lines.append(f"SELECT '@xg{i}t';")
        if estimate:
            schema, _, table = t.table.rpartition(".")
            where = f"table_schema = {_lit(schema)}" if schema else "table_schema = DATABASE()"
            lines.append(
                f"SELECT table_rows FROM information_schema.tables WHERE {where} "
                f"AND table_name = {_lit(table)};"
            )
        else:
            lines.append(_hint(f"SELECT count(*) FROM {t.table_sql}", ms) + ";")
    lines.append("ROLLBACK;")
    argv = [*conn.argv, "--batch", "--raw", "--no-auto-rehash", "--comments"]
    argv += ["--column-names" if estimate else "--skip-column-names", "-e", "\n".join(lines)]
    budget = to.connect + to.statement * (len(targets) * 2 + 1) + 1
    proc = _run(conn, argv, budget)
    if proc.returncode != 0:
        if "max_statement_time" in proc.stderr or "execution time exceeded" in proc.stderr:
            raise _Timeout
        if "Lock wait timeout" in proc.stderr:
            raise _Timeout
        raise _fail(proc, conn.argv[0])
    return _values(proc.stdout, estimate, _mysql_plan_rows)


def _hint(select: str, ms: int) -> str:
    return re.sub(r"(?i)^SELECT\b", f"SELECT /*+ MAX_EXECUTION_TIME({ms}) */", select, count=1)


def _lit(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def _mysql_plan_rows(text: str) -> int:
    """The first result row's estimate, from EXPLAIN's tabular output or a one-column answer."""
    rows = [ln.split("\t") for ln in text.splitlines() if ln.strip()]
    if len(rows) == 2 and len(rows[0]) == 1:
        return int(rows[1][0])  # table_rows
    head = rows[0]
    est = 1.0
    for r in rows[1:]:
        cell = dict(zip(head, r, strict=False))
        n = float(cell.get("rows") or 0)
        f = (
            float(cell.get("filtered") or 100)
            if cell.get("filtered") not in (None, "NULL")
            else 100
        )
        est *= n * f / 100
        break
    return int(est)


def _sqlite(conn: Conn, targets: list[Target], to: Timeouts, estimate: bool) -> dict[str, int]:
    path, db = conn.argv
    sql = []
    for i, t in enumerate(targets):
        if t.rows_sql is not None:
            sql.append(t.rows_sql.replace("SELECT COUNT(*)", f"SELECT '@xg{i}r', COUNT(*)", 1))
        sql.append(f"SELECT '@xg{i}t', COUNT(*) FROM {t.table_sql}")
    argv = [path, "-readonly", "-safe", "-batch", "-bail", "-noheader", "-list", "-separator"]
    argv += ["\n", "-cmd", f".timeout {max(1, int(to.lock * 1000))}", db, *sql]
    proc = _run(conn, argv, to.statement + 1)
    if proc.returncode != 0:
        if "database is locked" in proc.stderr:
            raise _Timeout
        raise _fail(proc, "sqlite3")
    return _values(proc.stdout, False, None)


_RUNNERS = {"psql": _psql, "mysql": _mysql, "sqlite": _sqlite}


# ---------------------------------------------------------------------------
# The gate's step: previews for a decided command.


def settings(gate: Any) -> tuple[Timeouts, frozenset[str]]:
    from xguard.policy.rules import parse_duration

    cfg = gate.ruleset.settings.get("impact") or {}

    def dur(key: str, default: float) -> float:
        v = parse_duration(cfg[key]) if key in cfg else None
        return default if v is None else v

    to = Timeouts(
        dur("timeout", DEFAULT_TIMEOUT),
        dur("lock_timeout", DEFAULT_LOCK_TIMEOUT),
        dur("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
    )
    pure = PURE_FUNCTIONS | {p.lower() for p in cfg.get("pure", [])}
    return to, pure


def preview_unit(
    index: int, d: Any, base_env: dict[str, str], cwd: str, *, to: Timeouts, pure: frozenset[str]
) -> list[dict[str, Any]]:
    """The impact objects of one SQL unit (one per table it touches, or one error)."""
    head = {"unit": index, "statement": d.text}
    t0 = time.monotonic()
    try:
        u = d.unit
        kind = _CLIENT_KIND.get((u.client or ("",))[0].rsplit("/", 1)[-1]) if u else None
        if u is None or kind is None:
            raise PreviewError("the statement's client is not psql, mysql/mariadb or sqlite3")
        targets = plan(d.text, kind, pure)
        conn = connection(u, base_env, cwd, to.connect)
        counts = count(conn, targets, to)
    except PreviewError as e:
        return [{**head, "error": str(e)}]
    ms = int((time.monotonic() - t0) * 1000)
    return [{**head, "verb": t.verb, **c, "ms": ms} for t, c in zip(targets, counts, strict=True)]


def describe(item: dict[str, Any]) -> str:
    """One line for a person: "would delete 11,200 of 12,000 rows (93%) from orders"."""
    line = _describe(item)
    return f"{line}; {item['note']}" if item.get("note") else line


def _describe(item: dict[str, Any]) -> str:
    if "error" in item:
        return f"impact unknown: {item['error']}"
    if "replicas" in item:
        return str(item["summary"])
    rows, total = item.get("rows"), item.get("table_rows")
    about = "about " if item.get("method") == "estimate" else ""
    tail = " (planner estimate)" if about else ""
    table = item.get("table")
    verb = item.get("verb")
    if rows is None:
        return f"would {verb} an unknown number of rows in {table}"
    if verb == "insert":
        now = f" (it holds {about}{total:,})" if total is not None else ""
        return f"would insert {about}{rows:,} rows into {table}{now}{tail}"
    if verb in ("truncate", "drop"):
        what = "empty" if verb == "truncate" else "drop"
        return f"would {what} {table}: {about}{rows:,} rows{tail}"
    of = f" of {about}{total:,}" if total is not None else ""
    pct = f" ({round(100 * rows / total)}%)" if total else ""
    prep = "in" if verb == "update" else "from"
    return f"would {verb} {about}{rows:,}{of} rows{pct} {prep} {table}{tail}"


def _first_line(s: str) -> str:
    return s.strip().splitlines()[0] if s.strip() else s


# ---------------------------------------------------------------------------
# kubectl scale under `baseline: live`: what runs now, read from the cluster.

# kubectl's global options that choose the cluster and namespace (kept for the read).
_KUBE_KEEP = frozenset(
    {"--kubeconfig", "--context", "--cluster", "--user", "-n", "--namespace", "-s", "--server",
     "--token", "--as", "--as-group", "--certificate-authority", "--client-certificate",
     "--client-key", "--tls-server-name", "--insecure-skip-tls-verify"}
)  # fmt: skip
_KUBE_FLAGS = frozenset({"--insecure-skip-tls-verify"})


def scale_unit(
    index: int, d: Any, base_env: dict[str, str], cwd: str, to: Timeouts
) -> dict[str, Any]:
    """{"unit", "statement", "resource", "replicas", "to", "method": "live", "ms",
    "summary": "4 → 16 replicas (x4)"}, or {"unit", "statement", "error"}."""
    head = {"unit": index, "statement": d.text}
    t0 = time.monotonic()
    try:
        words = list(d.unit.words) if d.unit is not None else []
        keep: list[str] = []
        rest: list[str] = []
        want: str | None = None
        i = 1
        while i < len(words):
            w = words[i]
            name, eq, value = w.partition("=")
            if name == "--replicas":
                want = value if eq else (words[i + 1] if i + 1 < len(words) else "")
                i += 1 if eq else 2
                continue
            if name in _KUBE_KEEP:
                if eq or name in _KUBE_FLAGS:
                    keep.append(w)
                else:
                    keep += [w, words[i + 1] if i + 1 < len(words) else ""]
                    i += 1
            elif name in ("-f", "--filename", "-l", "--selector", "--all", "-k"):
                raise PreviewError(
                    f"kubectl scale {name}: the live baseline reads one named resource"
                )
            elif not w.startswith("-"):
                rest.append(w)
            i += 1
        if rest[:1] != ["scale"]:
            raise PreviewError("not a kubectl scale command")
        res = rest[1:]
        if len(res) == 2 and "/" not in res[0]:
            res = [f"{res[0]}/{res[1]}"]
        if len(res) != 1:
            raise PreviewError("kubectl scale names several resources: no live baseline")
        if want is None or not want.isdigit():
            raise PreviewError("kubectl scale without a plain --replicas number")
        env = dict(base_env)
        path = _trusted_client(words[0], env.get("PATH", os.defpath))
        secs = max(1, math.ceil(to.connect + to.statement))
        argv = [path, *keep, "get", res[0], "-o", "jsonpath={.spec.replicas}",
                f"--request-timeout={secs}s"]  # fmt: skip
        proc = _run(Conn("kubectl", argv, env, cwd), argv, secs + 2)
        if proc.returncode != 0:
            raise PreviewError(f"no cluster reachable: {_fail(proc, 'kubectl')}")
        now = int(proc.stdout.strip() or "0")
    except _Timeout:
        return {**head, "error": "no cluster reachable: kubectl get timed out"}
    except (PreviewError, ValueError) as e:
        return {**head, "error": str(e)}
    target = int(want)
    factor = f"\u00d7{target / now:g}" if now else "from zero"  # the multiplication sign
    return {
        **head,
        "resource": res[0],
        "replicas": now,
        "to": target,
        "method": "live",
        "ms": int((time.monotonic() - t0) * 1000),
        "summary": f"{now} → {target} replicas ({factor})",
    }


# ---------------------------------------------------------------------------
# The gate's step.


def step(
    gate: Any, req: Any, decision: Any, units: list[int], *, guard: bool = True
) -> dict[str, Any]:
    """Preview the units `limits.preview_units` chose, hold the previews
    against the row caps and live baselines (which may make `decision` stricter),
    add one line per preview to the reasons a person reads, and, when a psql
    statement runs under a row cap, wrap it so the cap holds at run time too.
    Returns the fields the decision record and the pending request carry:
    "impact", and "exec"/"row_cap" when what runs is the wrapped text."""
    from xguard.gate import limits
    from xguard.gate.execenv import scrub

    to, pure = settings(gate)
    # The environment the command itself would get (SPEC §5): env.keep and env.set.
    remote = not getattr(gate, "impact_preview", True)
    env: dict[str, str] = {}
    if not remote:
        keep, set_ = gate.env_settings(req.profile or gate.profile)
        env = scrub(gate.environ, keep, set_)
    items: list[dict[str, Any]] = []
    for i in units:
        d = decision.units[i]
        if remote:
            items.append(
                {
                    "unit": i,
                    "statement": d.text,
                    "error": "strict mode: the broker runs as another user and cannot connect "
                    "as the command would",
                }
            )
        elif d.kind == "command":
            items.append(scale_unit(i, d, env, gate.cwd, to))
        elif is_dml(d.text):
            items += preview_unit(i, d, env, gate.cwd, to=to, pure=pure)
    if not items:
        return {}
    limits.apply_impact(gate, decision, items, describe)
    if decision.decision != "allow":
        for it in items:
            line = f"{it['statement']}: {describe(it)}"
            if line not in decision.reasons and not any(
                r.startswith(line) for r in decision.reasons
            ):
                decision.reasons.append(line)
    out: dict[str, Any] = {"impact": items}
    if guard and not remote and decision.decision != "deny":
        from xguard.gate.rowcap import guard_psql

        wrapped = guard_psql(gate, req, decision, items)
        if wrapped is not None:
            out["exec"], out["row_cap"] = wrapped
    return out

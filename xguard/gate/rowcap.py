"""Row caps held at run time, for psql (issue 13).

A preview counts rows before the command runs; rows can appear between that
count and the statement. Where the client makes it possible the cap is
checked again inside the statement's own transaction: the approved psql
command is run as a script (on its stdin, a here-document) that does

    BEGIN;
    <the statement>;
    \\set xguard_rows :ROW_COUNT
    SELECT :xguard_rows > CAP AS xguard_over \\gset
    \\if :xguard_over  -> an error naming the figure: ON_ERROR_STOP ends psql
                        non-zero and the open transaction is rolled back
    COMMIT;

(for TRUNCATE and DROP TABLE, which report no row count, the table is
locked and counted before the statement instead). This changes what runs, so
the decision record carries the wrapped text as "exec" beside "command".

Only a plain psql command is wrapped: one client, its SQL given with -c, one
statement per -c, no redirections or other commands around it. Anything else
runs as decided, with its preview-time check only.
"""

from __future__ import annotations

import re
from typing import Any

# psql interpolates :name in a script but not in -c text: a statement that
# could hold a variable reference is not moved into a script.
_VARIABLE = re.compile(r"(?<!:):(?:['\"]?[A-Za-z_]|\{\?)")


def guard_psql(
    gate: Any, req: Any, decision: Any, items: list[dict[str, Any]]
) -> tuple[str, list[dict[str, Any]]] | None:
    """(the text to run, [{"unit", "cap", "set_by"}]) when a psql statement
    runs under a row cap and can be wrapped; sets req.exec_text. None otherwise."""
    from xguard.gate import limits

    if req.argv is not None:
        return None
    commands = [d for d in decision.units if d.kind == "command"]
    if len(commands) != 1 or commands[0].unit is None:
        return None
    words = list(commands[0].unit.words)
    if not words or words[0].rsplit("/", 1)[-1] != "psql":
        return None
    sqls = [(i, d) for i, d in enumerate(decision.units) if d.kind == "sql"]
    for d in decision.units:
        if d.kind in ("input", "function") or (d.kind == "path" and d.text.startswith("write ")):
            return None
    if any(d.unit is None or d.unit.meta or tuple(d.unit.client) != tuple(words) for _, d in sqls):
        return None
    split = _split_command(words[1:])
    if split is None:
        return None
    kept, statements = split
    if len(statements) != len(sqls):
        return None  # a -c holding several statements: its pieces' text is not kept whole
    if any(_leading_word(raw) in _ENDS_TRANSACTION for raw in statements):
        return None  # the script's one transaction would end before the statement it guards
    rows_of = {it["unit"]: it for it in items if "error" not in it and "rows" in it}
    # The command's start-up file (PSQLRC, ~/.psqlrc) and its -v run before
    # this script: the settings the cap's rollback depends on are set here,
    # after them. (ON_ERROR_STOP off with ON_ERROR_ROLLBACK on would roll back
    # only the cap's error and COMMIT the rows; SINGLELINE would cut a
    # statement at its first newline.)
    parts = [*_SETTINGS, "\\set QUIET on", "\\set VERBOSITY terse", "BEGIN;"]
    caps: list[dict[str, Any]] = []
    for (i, d), raw in zip(sqls, statements, strict=True):
        if _VARIABLE.search(raw):
            return None
        it = rows_of.get(i)
        cap = limits.runtime_cap(gate, d, it.get("rows") if it else None)
        verb = str(it.get("verb")) if it else ""
        body = raw.rstrip().rstrip(";").rstrip()
        if cap is None or not it:
            parts += ["\\set QUIET off", body, ";", "\\set QUIET on"]
            continue
        caps.append({"unit": i, "cap": cap[0], "set_by": cap[1]})
        tables = [t["table"] for t in items if t.get("unit") == i and "table" in t]
        if verb in ("truncate", "drop"):
            parts += _precheck(cap, tables, verb)
            parts += ["\\set QUIET off", body, ";", "\\set QUIET on"]
            continue
        parts += ["\\set QUIET off", body, ";", "\\set QUIET on"]
        parts += [
            "\\set xguard_rows :ROW_COUNT",
            f"SELECT :xguard_rows > {int(cap[0])} AS xguard_over \\gset",
            "\\if :xguard_over",
            _raise(
                f"xguard: row cap: {verb or 'the statement'} touched ",
                f" rows in {', '.join(tables) or 'the table'}, over {cap[0]:,} ({cap[1]}); "
                "rolled back, nothing changed",
            ),
            "\\endif",
        ]
    if not caps:
        return None
    parts.append("COMMIT;")
    script = "\n".join(parts)
    delim = "XGUARD_ROWCAP"
    while delim in script:
        delim += "_"
    from xguard.util import shell_join

    client_env = sqls[0][1].unit.client_env if sqls else ()
    env = " ".join(_assignment(a) for a in client_env)
    cmd = shell_join([words[0], *kept, "-v", "ON_ERROR_STOP=1", "-f", "-"])
    text = f"{env + ' ' if env else ''}{cmd} <<'{delim}'\n{script}\n{delim}"
    if req.exec_text:
        # A front end's own wrapper around the decided text (Claude Code's
        # `eval 'TEXT' && pwd -P >| FILE`): the wrapped text takes its place.
        old, new = _sq(req.text), _sq(text)
        if req.exec_text.count(old) != 1:
            return None
        req.exec_text = req.exec_text.replace(old, new)
    else:
        req.exec_text = text
    return req.exec_text, caps


_SETTINGS = (
    "\\set ON_ERROR_STOP on",
    "\\set ON_ERROR_ROLLBACK off",
    "\\set AUTOCOMMIT on",
    "\\set SINGLELINE off",
    "\\set SINGLESTEP off",
)

# Statements that end the transaction the cap's check runs in (or start one:
# BEGIN, START; PREPARE TRANSACTION hands it to a later COMMIT PREPARED).
# CALL and DO cannot commit inside a transaction block.
_ENDS_TRANSACTION = frozenset({"begin", "start", "commit", "end", "rollback", "abort", "prepare"})


def _leading_word(sql: str) -> str:
    """The statement's first word, lower-cased, past whitespace and comments
    (PostgreSQL's block comments nest)."""
    i, n = 0, len(sql)
    while i < n:
        if sql[i].isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    m = re.match(r"[A-Za-z_]+", sql[i:])
    return m.group(0).lower() if m else sql[i : i + 1]


def _precheck(cap: tuple[int, str], tables: list[str], verb: str) -> list[str]:
    """TRUNCATE and DROP report no row count: lock each table, count it, then run."""
    out = []
    for t in tables:
        ref = _ident(t)
        out += [
            f"LOCK TABLE {ref} IN ACCESS EXCLUSIVE MODE;",
            f"SELECT count(*) AS xguard_rows, count(*) > {int(cap[0])} AS xguard_over "
            f"FROM {ref} \\gset",
            "\\if :xguard_over",
            _raise(
                f"xguard: row cap: {verb} would remove ",
                f" rows from {t}, over {cap[0]:,} ({cap[1]}); rolled back, nothing changed",
            ),
            "\\endif",
        ]
    return out


def _ident(name: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in name.split("."))


def _raise(before: str, after: str) -> str:
    """An error reading `before` + the row count + `after`: RAISE EXCEPTION
    through \\gexec, so psql stops (ON_ERROR_STOP) with exactly one line and
    the open transaction is rolled back."""
    msg = f"{_lit(before)} || :xguard_rows || {_lit(after)}"
    return f"SELECT format('DO $xguard$ BEGIN RAISE EXCEPTION %L; END $xguard$', {msg}) \\gexec"


def _sq(s: str) -> str:
    """Single-quoted for bash, as front ends quote the decided text inside their wrappers."""
    return "'" + s.replace("'", "'\\''") + "'"


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _assignment(a: str) -> str:
    from xguard.util import shell_join

    name, _, value = a.partition("=")
    return f"{name}={shell_join([value]) if value else ''}"


def _split_command(args: list[str]) -> tuple[list[str], list[str]] | None:
    """psql's words without its -c options (and -1: the script has its own
    transaction), and the -c strings in order; None when SQL comes otherwise."""
    from xguard.shell.sql import psql_options

    kept: list[str] = []
    sql: list[str] = []
    for o in psql_options(args):
        if o.kind in {"end", "arg"}:
            kept += o.words
        elif o.problem is not None or o.key == "f":
            return None
        elif o.key == "c" and o.value is not None:
            sql.append(o.value)
        elif o.key != "1":
            kept += o.words
    if not sql or any(s.lstrip().startswith("\\") for s in sql):
        return None
    return kept, sql

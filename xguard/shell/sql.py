r"""The SQL statements a database client will run, as policy units (SPEC §3 "Units").

SPEC §3 makes every SQL statement given to a database client a unit of its own:
`psql -c 'SELECT 1; DROP TABLE users'` is two units, and `DROP TABLE users` must meet
the rules for `DROP`. This module takes the literal argv words of a client command
(quote removal already done by the shell parser) and returns those statements, plus
what the client itself does besides SQL: files it reads or writes, programs it runs.

Each client is read the way it reads itself, because a split that differs from the
client's is a bypass:

- psql: GNU getopt_long options; `-c` strings are sent whole to the server (psql
  runs a `-c` string that starts with a backslash as one meta-command instead);
  stdin is split by psql's lexer (psqlscan.l): nested `/* */`, `$tag$` quotes,
  `E''` strings, backslash meta-commands that end at a newline or `\\`, and a
  meta-command in the middle of a statement does not end the statement.
- mysql/mariadb: my_getopt options (unique prefixes work: `--exec=`); every `-e`
  is joined into one script with a space; the client's add_line() rules: `--`
  needs a blank after it, `#` comments, `/*! … */` is executed, not a comment,
  `\x` commands, named commands (`system …`, `source …`) at the start of a line
  or as a whole statement, `delimiter` changes the delimiter.
- sqlite3: its two-pass option loop; every word after the database name is SQL,
  or a dot-command when it starts with `.`; on stdin a dot-command is a line that
  starts with `.` and a line holding only `go` or `/` ends a statement.

Why not sqlparse alone: it is generic and reads these three clients' SQL wrongly
in ways that hide statements. `SELECT 'a\'; DROP TABLE t; --'` is one string
to sqlparse but two statements to PostgreSQL (standard strings have no backslash
escapes); `SELECT 1 # 2; DROP TABLE t` is a comment to sqlparse but an XOR to
PostgreSQL; `/* /* */ SELECT 1; */ DROP TABLE t` nests in PostgreSQL. Each of
these would put a DROP inside a unit that starts with SELECT. So the client
lexers here are the authority, and sqlparse is a second opinion: where it sees a
statement boundary that the client lexer does not, the command gets an issue.

Fail closed: where a reading depends on something this module cannot know (a
server setting such as standard_conforming_strings, a psql variable's value, an
unknown option's arity), the statements of every reading are kept and an issue
says why. Over-splitting is safe (each piece still starts where the statement
started); merging two statements is not, so every ambiguity resolves to more
splits. Pure: no I/O; sqlparse is imported only when there is SQL to check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DB_CLIENTS",
    "ClientSql",
    "SqlUnit",
    "client_sql",
    "split_sql",
    "split_stdin_sql",
]


@dataclass(frozen=True)
class SqlUnit:
    """One statement (or client meta-command) that a client will run."""

    text: str  # comments removed, blank runs collapsed to one space, no trailing ';'
    meta: bool  # a client meta-command (psql \x, mysql system/\!, sqlite3 .shell …)
    raw: str  # the statement as given


@dataclass
class ClientSql:
    """What a database-client command runs, reads and writes."""

    units: list[SqlUnit] = field(default_factory=list)
    # Reasons the command must be at least require_approval (shown to the reviewer).
    issues: list[str] = field(default_factory=list)
    write_paths: list[str] = field(default_factory=list)
    read_paths: list[str] = field(default_factory=list)
    # True when the client reads SQL from its stdin (no -c/-e/SQL words). The shell
    # parser can then pass a literal here-document as client_sql(words, stdin=TEXT).
    reads_stdin: bool = False


_PSQL = "psql"
_MYSQL = "mysql"
_SQLITE = "sqlite"
_CLIENT_DIALECT = {
    "psql": _PSQL,
    "mysql": _MYSQL,
    "mariadb": _MYSQL,
    "sqlite3": _SQLITE,
    "sqlite": _SQLITE,
}
# Read only approximately (their SQL and options are split, but always with an issue):
# client name -> (options that carry SQL, options that name a script file).
_APPROX_CLIENTS = {
    "clickhouse-client": (("-q", "--query"), ("--queries-file",)),
    "cockroach": (("-e", "--execute"), ("-f", "--file")),  # `cockroach sql` / `cockroach demo`
}
DB_CLIENTS: frozenset[str] = frozenset(_CLIENT_DIALECT) | frozenset(_APPROX_CLIENTS)

_BLANKS = " \t\n\r\f\v"
_BLANK_RUN = re.compile(r"[ \t\n\r\f\v]+")
# PostgreSQL identifiers: ident_start then ident_cont, which includes '$' (so `a$b$`
# is a name, not a dollar quote); non-ASCII counts as a letter, as in psqlscan.l.
_PG_IDENT = re.compile(r"[A-Za-z_\u0080-\U0010FFFF][A-Za-z0-9_$\u0080-\U0010FFFF]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010FFFF][A-Za-z0-9_\u0080-\U0010FFFF]*)?\$")
_PARAM = re.compile(r"\$[0-9]+")
_VARCHAR = r"[A-Za-z0-9_\u0080-\U0010FFFF]+"
# psql variable references: :name, :'name', :"name", :{?name}
_PSQL_VAR = re.compile(rf""":(?:{_VARCHAR}|'{_VARCHAR}'|"{_VARCHAR}"|\{{\?{_VARCHAR}\}})""")
_WORD = re.compile(r"[A-Za-z0-9_\u0080-\U0010FFFF]+")
_DIGITS = re.compile(r"[0-9]+")
_EXEC_COMMENT = re.compile(r"/\*M?!\d*")


def _collapse(text: str) -> str:
    """Collapse runs of SQL blanks to one space (only ASCII blanks: that is what
    the lexers treat as whitespace, and normalising more would match text the
    server does not see)."""
    return _BLANK_RUN.sub(" ", text).strip(" ")


def _add(items: list[str], *new: str) -> None:
    for item in new:
        if item not in items:
            items.append(item)


# --------------------------------------------------------------------------------------
# The lexer
# --------------------------------------------------------------------------------------


class _Scan:
    """One pass over SQL text with one client's lexical rules.

    Produces units in execution order, the offsets of the delimiters it split on
    (for the sqlparse cross-check) and the spans of meta-commands (blanked before
    sqlparse sees the text).
    """

    def __init__(
        self,
        text: str,
        dialect: str,
        *,
        backslash_strings: bool,
        single_line: bool = False,
        delimiter: str = ";",
        named_anywhere: bool = False,
        server_side: bool = False,
        dash_at_start: bool = False,
    ) -> None:
        self.s = text
        self.n = len(text)
        self.d = dialect
        # psql: standard_conforming_strings off; mysql: NO_BACKSLASH_ESCAPES off.
        self.bs = backslash_strings
        self.single_line = single_line  # psql -S: a newline ends a statement
        self.delim = delimiter  # mysql's current delimiter
        self.named_anywhere = named_anywhere  # mysql -G
        self.server_side = server_side  # psql -c text: the server lexes it, no variables
        # MariaDB's client takes `--x` at the start of a statement as a comment to the
        # end of the line; MySQL's needs a blank after `--` everywhere.
        self.dash_at_start = dash_at_start
        self.saw_dash_at_start = False
        self.units: list[SqlUnit] = []
        self.issues: list[str] = []
        self.splits: set[int] = set()
        self.meta_spans: list[tuple[int, int]] = []
        self.cur: list[str] = []
        self.dark = False  # the statement being read has non-blank text
        self.raw_start = 0
        self.raw_parts: list[str] = []  # raw text of a statement interrupted by meta-commands
        self.plain_backslash = False
        self.exec_comment = ""  # mysql: inside /*! … */ ("!") or /*+ … */ ("+")

    # -- helpers ---------------------------------------------------------------------

    def _blank(self) -> bool:
        return not self.dark

    def _put(self, text: str) -> None:
        self.cur.append(text)
        if not self.dark and text.strip(_BLANKS):
            self.dark = True

    def _issue(self, text: str) -> None:
        _add(self.issues, text)

    def _end(self, stop: int, resume: int) -> None:
        """End the current statement at s[stop] (exclusive); go on at s[resume]."""
        text = _collapse("".join(self.cur))
        raw = "".join(self.raw_parts) + self.s[self.raw_start : stop]
        if text:
            self.units.append(SqlUnit(text, self._is_named_statement(text), raw.strip(_BLANKS)))
        self.cur = []
        self.dark = False
        self.raw_parts = []
        self.raw_start = resume

    def _meta(self, start: int, stop: int, span_end: int | None = None) -> None:
        """Emit s[start:stop] as a meta unit; the statement being read (if any) goes on."""
        raw = self.s[start:stop].strip(_BLANKS)
        if raw:
            self.units.append(SqlUnit(_collapse(raw), True, raw))
        self.meta_spans.append((start, stop if span_end is None else span_end))

    def _dash_start(self) -> bool:
        """`--x` at a statement start: a comment for MariaDB, not for MySQL."""
        if self.dark:
            return False
        self.saw_dash_at_start = True
        return self.dash_at_start

    def _is_named_statement(self, text: str) -> bool:
        """mysql runs a whole statement whose first word is a client command name
        (`SELECT 1; system rm -rf ~;` runs the shell): find_command(buffer)."""
        if self.d != _MYSQL:
            return False
        word, _, rest = text.partition(" ")
        cmd = _MYSQL_NAMED.get(word.lower())
        return cmd is not None and (not rest or cmd[1])

    def _quoted(self, i: int, close: str, backslash: bool, *, plain: bool = False) -> int:
        """Index just past the literal opened at s[i]; doubled quotes stay inside."""
        s, n = self.s, self.n
        j = i + 1
        while j < n:
            c = s[j]
            if c == "\\":
                if plain:
                    # The reading of this literal depends on a server setting.
                    self.plain_backslash = True
                if backslash:
                    j += 2
                    continue
            elif c == close:
                if j + 1 < n and s[j + 1] == close and close != "]":
                    j += 2
                    continue
                return j + 1
            j += 1
        self._issue("unterminated quoted string or identifier")
        return n

    def _block_comment(self, i: int) -> int:
        """Index just past the block comment opened at s[i]; PostgreSQL nests them."""
        s, n = self.s, self.n
        depth = 1
        j = i + 2
        nested = self.d == _PSQL
        while j < n:
            if s.startswith("*/", j):
                depth -= 1
                j += 2
                if depth == 0:
                    return j
            elif nested and s.startswith("/*", j):
                depth += 1
                j += 2
            else:
                j += 1
        self._issue("unterminated /* comment")
        return n

    def _eol(self, i: int) -> int:
        k = self.s.find("\n", i)
        return self.n if k < 0 else k

    # -- the loop --------------------------------------------------------------------

    def run(self) -> _Scan:
        s, n = self.s, self.n
        i = 0
        while i < n:
            if (i == 0 or s[i - 1] == "\n") and self.d != _PSQL and not self.exec_comment:
                j = self._line_start(i)
                if j is not None:
                    i = j
                    continue
            c = s[i]
            if self.d == _MYSQL and self.exec_comment and s.startswith("*/", i):
                # End of /*! … */: the client keeps the body; the markers go.
                self._put(" " if self.exec_comment == "!" else "*/")
                self.exec_comment = ""
                i += 2
            elif c in _BLANKS:
                if c == "\n" and self.single_line and not self._blank():
                    self.splits.add(i)
                    self._end(i, i + 1)
                self._put(c)
                i += 1
            elif self.d == _MYSQL and c == "\\":
                i = self._mysql_backslash(i)
            elif self.d == _MYSQL and s.startswith(self.delim, i):
                self.splits.add(i)
                self._end(i, i + len(self.delim))
                i += len(self.delim)
            elif c == ";" and self.d != _MYSQL:
                self.splits.add(i)
                self._end(i, i + 1)
                i += 1
            elif (
                c == "-"
                and s.startswith("--", i)
                and (self.d != _MYSQL or i + 2 >= n or s[i + 2] in _BLANKS or self._dash_start())
            ):
                # mysql needs a blank after `--` (`SELECT 9--1` is 10 there).
                self._put(" ")
                i = self._eol(i)
            elif c == "#" and self.d == _MYSQL:
                self._put(" ")
                i = self._eol(i)
            elif c == "/" and s.startswith("/*", i):
                if self.d == _MYSQL and (s.startswith(("!", "+", "M!"), i + 2)):
                    # Executable comment: the server runs its body, the client splits
                    # inside it. Keep the body in the text so rules see it.
                    if s[i + 2] == "+":
                        self.exec_comment = "+"
                        self._put("/*+")
                        i += 3
                    else:
                        self.exec_comment = "!"
                        self._issue("mysql /*! … */ comment: its body is executed")
                        m = _EXEC_COMMENT.match(s, i)
                        self._put(" ")
                        i = m.end() if m else i + 3
                else:
                    self._put(" ")
                    i = self._block_comment(i)
            elif c == "'":
                j = self._quoted(i, "'", self.bs, plain=self.d != _SQLITE)
                self._put(s[i:j])
                i = j
            elif c == '"':
                # PostgreSQL/SQLite identifier; MySQL string (backslash escapes).
                bs = self.bs if self.d == _MYSQL else False
                j = self._quoted(i, '"', bs, plain=self.d == _MYSQL)
                self._put(s[i:j])
                i = j
            elif c == "`" and self.d != _PSQL:
                j = self._quoted(i, "`", False)
                self._put(s[i:j])
                i = j
            elif c == "[" and self.d == _SQLITE:
                j = self._quoted(i, "]", False)
                self._put(s[i:j])
                i = j
            elif self.d == _PSQL:
                i = self._psql_char(i)
            else:
                m = _WORD.match(s, i)
                j = m.end() if m else i + 1
                self._put(s[i:j])
                i = j
        self._end(n, n)
        return self

    # -- PostgreSQL / psql -----------------------------------------------------------

    def _psql_char(self, i: int) -> int:
        s = self.s
        c = s[i]
        if c == "$":
            m = _PARAM.match(s, i) or _DOLLAR_TAG.match(s, i)
            if m and m.group().endswith("$") and len(m.group()) >= 2:
                tag = m.group()
                k = s.find(tag, m.end())
                j = self.n if k < 0 else k + len(tag)
                if k < 0:
                    self._issue("unterminated dollar-quoted string")
            else:
                j = m.end() if m else i + 1
            self._put(s[i:j])
            return j
        if c == "\\":
            return self._psql_backslash(i)
        if c == ":":
            if s.startswith("::", i):
                self._put("::")
                return i + 2
            m = _PSQL_VAR.match(s, i)
            if m:
                if not self.server_side:
                    # psql substitutes a variable here; its value is not in the text.
                    self._issue(f"psql variable {m.group()} is substituted into the SQL")
                self._put(m.group())
                return m.end()
            self._put(c)
            return i + 1
        m = _PG_IDENT.match(s, i)
        if m:
            word = m.group()
            j = m.end()
            nxt = s[j] if j < self.n else ""
            if nxt == "'" and word in ("E", "e"):
                k = self._quoted(j, "'", True)
            elif nxt == "'" and word in ("B", "b", "X", "x"):
                k = self._quoted(j, "'", False)
            elif nxt == "'" and word in ("N", "n"):
                k = self._quoted(j, "'", self.bs, plain=True)
            elif word in ("U", "u") and s.startswith(("&'", '&"'), j):
                k = self._quoted(j + 1, s[j + 1], False)
            else:
                k = j
            self._put(s[i:k])
            return k
        # Digits alone: in `1a$b$` PostgreSQL reads 1 and then the name a$b$, so the
        # letters must go through _PG_IDENT (a `$b$` there is no dollar quote).
        m = _DIGITS.match(s, i)
        j = m.end() if m else i + 1
        self._put(s[i:j])
        return j

    def _psql_backslash(self, i: int) -> int:
        s, n = self.s, self.n
        nxt = s[i + 1] if i + 1 < n else ""
        if nxt == ";":
            # `\;` puts a literal ';' in the query: psql sends both statements in one
            # query and the server runs both, so it is a boundary for units.
            self.splits.add(i + 1)
            self._end(i, i + 2)
            return i + 2
        if nxt == ":":
            self._put(":")
            return i + 2
        end, name, resume = _psql_meta_extent(s, i, stop_at_newline=True)
        if name in _PSQL_SENDS or self._blank():
            # \g and friends send the statement read so far: it ends here.
            self._end(i, i)
            self._meta(i, end, resume)
            self.raw_start = resume
        else:
            # Any other meta-command leaves the query buffer as it is, and the text
            # after it continues the same statement (`DROP \x TABLE t;` drops t).
            self._issue(f"psql meta-command \\{name} inside an SQL statement")
            self.raw_parts.append(s[self.raw_start : i])
            self._meta(i, end, resume)
            self.raw_start = resume
            self._put(" ")
        return resume

    # -- MySQL client ----------------------------------------------------------------

    def _mysql_backslash(self, i: int) -> int:
        s, n = self.s, self.n
        nxt = s[i + 1] if i + 1 < n else ""
        if nxt in ("", "\n"):
            return i + 1  # the client drops a backslash at the end of a line
        if nxt == "N":
            self._put("\\N")  # \N is NULL
            return i + 2
        if nxt in "gG":
            self.splits.add(i)
            self._end(i, i + 2)
            return i + 2
        eol = self._eol(i)
        cmd = _MYSQL_BY_CHAR.get(nxt)
        if cmd == "delimiter":
            # com_delimiter runs first, so the skip to "the next delimiter" below
            # already looks for the new one.
            self._set_delimiter(s[i + 2 : eol])
        if cmd is None:
            self._issue(f"unknown mysql command \\{nxt}")
            stop = resume = i + 2
        elif _MYSQL_NAMED[cmd][1]:
            # The command reads the rest of the line (system() gets all of it); the
            # client then skips to the next delimiter and reads SQL again from there.
            stop = eol
            k = s.find(self.delim, i + 2, eol)
            resume = eol if k < 0 else k + len(self.delim)
        else:
            stop = resume = i + 2
        if not self._blank():
            self._issue(f"mysql command \\{nxt} inside an SQL statement")
        self.raw_parts.append(s[self.raw_start : i])
        self._meta(i, stop, resume)
        self.raw_start = resume
        return resume

    def _set_delimiter(self, args: str) -> None:
        arg = _first_arg(args)
        if arg and "\\" not in arg:
            self.delim = arg
        if self.delim != ";":
            self._issue(f"mysql delimiter changed to {self.delim!r}")

    def _line_start(self, i: int) -> int | None:
        """Line-level rules of mysql and sqlite3; the index to go on from, or None."""
        s = self.s
        eol = self._eol(i)
        line = s[i:eol]
        bare = line.strip(_BLANKS)
        if bare.lower() in (("go", "/") if self.d == _SQLITE else ("go", "ego")):
            # A line holding only `go` ends the statement (sqlite3 always, mysql with
            # -G; taken as a boundary either way: splitting more is safe).
            self.splits.add(i)
            self._end(i, eol)
            return eol
        if not self._blank():
            if self.d == _MYSQL and self.named_anywhere:
                return self._mysql_line(i, eol, line, bare)
            return None
        if self.d == _SQLITE:
            if line.startswith("#"):
                # sqlite3 skips a line that starts with # between statements; read as
                # SQL, a quote in it would swallow the statements after it.
                self._put(" ")
                self.meta_spans.append((i, eol))
                return eol
            if bare.startswith("."):
                # A dot-command is the whole line (sqlite3 wants it in column 0;
                # an indented one is taken as one too, which only adds a unit).
                start = i + line.index(".")
                self._meta(start, eol)
                self.raw_start = eol
                self.cur = []
                self.dark = False
                return eol
            return None
        if bare.startswith(("#", "--")):
            # mysql skips a line that starts with # or -- between statements, even
            # `--x` (which is not a comment inside a statement).
            self._put(" ")
            self.meta_spans.append((i, eol))
            return eol
        return self._mysql_line(i, eol, line, bare)

    def _mysql_line(self, i: int, eol: int, line: str, bare: str) -> int | None:
        """find_command(line): a named client command at the start of a line takes
        the whole line, unless the line holds the delimiter or `\\g`."""
        if "\\g" in bare or (self.delim in bare and bare[:9].lower() != "delimiter"):
            return None
        word = re.split(r"[ \t]", bare, maxsplit=1)[0]
        rest = bare[len(word) :].strip(_BLANKS)
        cmd = _MYSQL_NAMED.get(word.lower())
        if cmd is None or (rest and not cmd[1]):
            return None
        self._end(i, i)
        self._meta(i, eol)
        self.raw_start = eol
        if word.lower() == "delimiter":
            self._set_delimiter(rest)
        return eol


def _psql_meta_extent(s: str, i: int, *, stop_at_newline: bool) -> tuple[int, str, int]:
    """Where the psql meta-command at s[i] == '\\' ends (psqlscanslash.l).

    Returns (end of its text, command name, where the SQL lexer goes on). The name
    ends at a blank or a backslash; arguments end at a blank or a backslash unless
    quoted; `\\\\` ends the command and is eaten; a lone backslash starts the next
    command; whole-line commands (\\!, \\copy …) and `|pipe` targets take the line.
    """
    n = len(s)
    j = i + 1
    while j < n and s[j] not in " \t\n\r\f\\":
        j += 1
    name = s[i + 1 : j]
    whole = name in _PSQL_WHOLE_LINE or name.startswith("!")
    stops = " \t\r\f\n\\" if stop_at_newline else " \t\r\f\\"
    first = True
    while True:
        while j < n and s[j] in " \t\r\f" + ("" if stop_at_newline else "\n"):
            j += 1
        if j >= n or (stop_at_newline and s[j] == "\n"):
            return j, name, j
        if whole or (first and s[j] == "|" and name in _PSQL_FILEPIPE):
            k = s.find("\n", j) if stop_at_newline else -1
            k = n if k < 0 else k
            return k, name, k
        if s[j] == "\\":
            if s.startswith("\\\\", j):
                return j, name, j + 2
            return j, name, j
        first = False
        while j < n and s[j] not in stops:
            q = s[j]
            if q in "'`\"":
                k = j + 1
                while k < n and s[k] != q:
                    if stop_at_newline and s[k] == "\n":
                        break  # psql: unterminated quoted string; the line ends it
                    escaped = q == "'" and s[k] == "\\" and k + 1 < n and s[k + 1] != "\n"
                    k += 2 if escaped else 1
                j = k + 1 if (k < n and s[k] == q) else min(k, n)
            else:
                j += 1


# --------------------------------------------------------------------------------------
# Splitting, with a second reading and the sqlparse cross-check
# --------------------------------------------------------------------------------------


@dataclass
class _Split:
    units: list[SqlUnit]
    issues: list[str]


def _split(text: str, dialect: str, **opts: Any) -> _Split:
    """Split with the client's default rules; where the text holds something that
    clients or server settings read differently, split it every way and keep the
    statements of all readings; cross-check with sqlparse."""
    default_bs = dialect == _MYSQL  # psql: standard strings; mysql: escapes on
    first = _Scan(text, dialect, backslash_strings=default_bs, **opts).run()
    units = list(first.units)
    issues = list(first.issues)
    splits = set(first.splits)
    readings: list[tuple[bool, bool]] = []
    if first.plain_backslash:
        # The server decides (standard_conforming_strings, NO_BACKSLASH_ESCAPES, both
        # changeable by an earlier statement).
        readings.append((not default_bs, False))
    if first.saw_dash_at_start:
        readings.append((default_bs, True))
        if first.plain_backslash:
            readings.append((not default_bs, True))
    seen = {(u.text, u.meta) for u in units}
    for bs, dash in readings:
        other = _Scan(text, dialect, backslash_strings=bs, dash_at_start=dash, **opts).run()
        extra = [u for u in other.units if (u.text, u.meta) not in seen]
        if extra:
            units.extend(extra)
            seen.update((u.text, u.meta) for u in extra)
            if bs != default_bs:
                setting = (
                    "standard_conforming_strings" if dialect == _PSQL else "NO_BACKSLASH_ESCAPES"
                )
                _add(
                    issues,
                    f"a string literal holds a backslash: the statements differ with {setting};"
                    " both readings are kept",
                )
            if dash:
                _add(
                    issues,
                    "`--` without a blank at a statement start: MariaDB's client reads a"
                    " comment, MySQL's does not; both readings are kept",
                )
        _add(issues, *other.issues)
        splits |= other.splits
    if any(not u.meta for u in units) and first.delim == ";" and opts.get("delimiter", ";") == ";":
        problem = _sqlparse_disagrees(_masked(text, first.meta_spans), splits)
        if problem:
            _add(issues, problem)
    return _Split(units, issues)


def _masked(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """The text with meta-command spans blanked (same offsets, newlines kept)."""
    chars = list(text)
    for start, stop in spans:
        for k in range(start, min(stop, len(chars))):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars)


def _sqlparse_disagrees(text: str, splits: set[int]) -> str | None:
    """An issue when sqlparse ends a statement where the client lexer does not.

    Only that direction matters: a boundary the client lexer missed could hide the
    start of a statement inside another unit. sqlparse splitting less (it keeps
    BEGIN … END together, or reads `#` as a comment) is harmless here.
    """
    try:
        # Lazy: slow to import, and most commands hold no SQL.
        from sqlparse import engine
        from sqlparse import tokens as T
    except ImportError:  # pragma: no cover - sqlparse is a runtime dependency
        return "cannot cross-check SQL split: sqlparse is not installed"
    try:
        statements = [list(stmt.flatten()) for stmt in engine.FilterStack().run(text)]
    except Exception as exc:  # sqlparse raises on pathological input
        return f"cannot split SQL: sqlparse failed ({type(exc).__name__})"
    offset = 0
    ends: list[int] = []
    content: list[bool] = []
    for tokens in statements:
        last_semicolon = -1
        has_content = False
        for tok in tokens:
            if tok.ttype is T.Punctuation and tok.value == ";":
                last_semicolon = offset
            elif not tok.is_whitespace and tok.ttype not in T.Comment:
                has_content = True
            offset += len(tok.value)
        ends.append(last_semicolon)
        content.append(has_content)
    for k, end in enumerate(ends[:-1]):
        if end >= 0 and end not in splits and any(content[k + 1 :]):
            return (
                "cannot split SQL reliably: sqlparse sees a statement boundary"
                f" at offset {end} that the client's own rules do not"
            )
    return None


def split_sql(sql: str, dialect: str = _PSQL) -> list[SqlUnit]:
    """Split SQL text into statements as `dialect` ("psql", "mysql", "sqlite") does.

    Meta-commands (psql `\\!`, mysql `system`, sqlite3 `.shell` …) are units of their
    own with meta=True. Never raises: on an internal error the whole text comes back
    as one meta unit, so that it can only be judged more strictly.
    """
    try:
        return _split(sql, _dialect(dialect)).units
    except Exception:  # fail closed, never silently
        text = _collapse(sql)
        return [SqlUnit(text, True, sql)] if text else []


def split_stdin_sql(client: str, text: str) -> list[SqlUnit]:
    """Split text that `client` reads on its stdin, assuming its default options.

    Options change the split (psql -S ends statements at newlines, mysql
    --delimiter): prefer client_sql(words, stdin=text), which reads them and also
    returns issues and paths.
    """
    dialect = _CLIENT_DIALECT.get(_basename(client), _PSQL)
    return split_sql(text, dialect)


def _dialect(name: str) -> str:
    name = _CLIENT_DIALECT.get(name, name)
    if name not in (_PSQL, _MYSQL, _SQLITE):
        raise ValueError(f"unknown SQL dialect {name!r}")
    return name


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------
# Meta-commands: what they run, read and write
# --------------------------------------------------------------------------------------

_PSQL_WHOLE_LINE = frozenset({"!", "copy", "ef", "ev", "sf", "sv", "h", "help"})
_PSQL_FILEPIPE = frozenset({"g", "gx", "o", "out", "w", "write"})
_PSQL_SENDS = frozenset(
    {"g", "gx", "gexec", "gset", "gdesc", "crosstabview", "watch", "sendpipeline"}
)
# Meta-commands that only change display or session state, or show things.
_PSQL_HARMLESS = frozenset(
    {
        "?", "a", "bind", "bind_named", "C", "close", "close_prepared", "conninfo",
        "copyright", "crosstabview", "echo", "elif", "else", "encoding", "endif",
        "endpipeline", "errverbose", "f", "flush", "flushrequest", "gdesc", "getenv",
        "getresults", "gset", "h", "help", "H", "html", "if", "l", "list", "lo_list",
        "p", "parse", "print", "prompt", "pset", "q", "qecho", "quit", "r", "reset",
        "restrict", "sendpipeline", "set", "sf", "startpipeline", "sv", "syncpipeline",
        "t", "T", "timing", "unrestrict", "unset", "warn", "watch", "x", "z",
    }
)  # fmt: skip
_PSQL_DANGER = {
    "!": "runs a shell command",
    "cd": "changes the working directory",
    "c": "connects to another database or host",
    "connect": "connects to another database or host",
    "e": "opens an editor",
    "edit": "opens an editor",
    "ef": "opens an editor",
    "ev": "opens an editor",
    "gexec": "runs each result cell as SQL",
    "i": "runs SQL from a file",
    "include": "runs SQL from a file",
    "ir": "runs SQL from a file",
    "include_relative": "runs SQL from a file",
    "lo_unlink": "deletes a large object",
    "password": "changes a password",
    "setenv": "changes the environment",
}
_PSQL_DESCRIBE = re.compile(r"d[A-Za-z]*[+Sx]*\Z")

_MYSQL_NAMED: dict[str, tuple[str | None, bool]] = {
    # name: (backslash letter, takes parameters) — mysql.cc commands[]
    "?": ("?", True), "help": ("h", True), "clear": ("c", False), "connect": ("r", True),
    "delimiter": ("d", True), "edit": ("e", False), "ego": ("G", False),
    "exit": ("q", False), "go": ("g", False), "nopager": ("n", False),
    "notee": ("t", False), "pager": ("P", True), "print": ("p", False),
    "prompt": ("R", True), "quit": ("q", False), "rehash": ("#", False),
    "source": (".", True), "status": ("s", False), "system": ("!", True),
    "tee": ("T", True), "use": ("u", True), "charset": ("C", True),
    "warnings": ("W", False), "nowarning": ("w", False),
    "resetconnection": ("x", False), "sandbox": ("-", False),
    "query_attributes": (None, True), "ssl_session_data_print": (None, True),
}  # fmt: skip
_MYSQL_BY_CHAR = {ch: name for name, (ch, _) in _MYSQL_NAMED.items() if ch and name != "quit"}
_MYSQL_DANGER = {
    "system": "runs a shell command",
    "edit": "opens an editor",
    "pager": "sends results through a program",
    "source": "runs SQL from a file",
    "connect": "connects to another server or database",
}

# sqlite3 dot-commands; the shell accepts any unambiguous-enough prefix (.sh is .shell).
_SQLITE_HARMLESS = frozenset(
    {
        "auth", "bail", "binary", "changes", "check", "connection", "crlf", "crnl",
        "databases", "dbinfo", "dbtotxt", "dump", "echo", "eqp", "exit", "expert",
        "explain", "fullschema", "headers", "help", "indexes", "indices", "limit",
        "lint", "mode", "nonce", "nullvalue", "parameter", "print", "progress", "prompt",
        "quit", "recover", "scanstats", "schema", "selftest", "separator", "sha3sum",
        "show", "stats", "tables", "timeout", "timer", "unmodule", "vfsinfo", "vfslist",
        "vfsname", "width",
    }
)  # fmt: skip
_SQLITE_DANGER = {
    "archive": "reads and writes files (.archive)",
    "ar": "reads and writes files (.archive)",
    "cd": "changes the working directory",
    "dbconfig": "changes database safety settings",
    "excel": "opens a spreadsheet program",
    "filectrl": "issues low-level file controls",
    "imposter": "creates imposter tables",
    "load": "loads a native extension",
    "read": "runs SQL from a file",
    "session": "records changesets to files",
    "shell": "runs a shell command",
    "system": "runs a shell command",
    "testcase": "writes a test-case file",
    "testctrl": "issues test controls",
    "www": "opens a web browser",
}
_SQLITE_FILES = frozenset(
    {"backup", "clone", "import", "iotrace", "log", "once", "open", "output", "restore",
     "save", "trace"}
)  # fmt: skip
_SQLITE_KNOWN = _SQLITE_HARMLESS | set(_SQLITE_DANGER) | _SQLITE_FILES
_SQLITE_FUNCS = re.compile(r"\b(writefile|readfile|edit|load_extension)\s*\(", re.IGNORECASE)
_MYSQL_LOCAL_INFILE = re.compile(
    r"\bLOAD\s+(?:DATA|XML)\b.*?\bLOCAL\s+INFILE\s+(['\"])((?:\\.|(?!\1).)*)\1",
    re.IGNORECASE | re.DOTALL,
)


@dataclass
class _Effects:
    issues: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)

    def merge_into(self, out: ClientSql) -> None:
        _add(out.issues, *self.issues)
        _add(out.write_paths, *self.writes)
        _add(out.read_paths, *self.reads)


def _first_arg(args: str) -> str:
    toks = _shellish_tokens(args)
    return toks[0] if toks else ""


def _shellish_tokens(args: str, *, backslash_in_single: bool = False) -> list[str]:
    """Split meta-command arguments on blanks, honouring '…' and "…" quotes."""
    out: list[str] = []
    i, n = 0, len(args)
    while i < n:
        while i < n and args[i] in _BLANKS:
            i += 1
        if i >= n:
            break
        tok: list[str] = []
        while i < n and args[i] not in _BLANKS:
            q = args[i]
            if q in "'\"`":
                i += 1
                while i < n and args[i] != q:
                    if args[i] == "\\" and i + 1 < n and (q == '"' or backslash_in_single):
                        i += 1
                    tok.append(args[i])
                    i += 1
                i += 1
            else:
                tok.append(q)
                i += 1
        out.append("".join(tok))
    return out


def _psql_effects(unit: SqlUnit, *, single_slash: bool = False) -> _Effects:
    eff = _Effects()
    raw = unit.raw
    if single_slash:
        end, name, _ = _psql_meta_extent(raw, 0, stop_at_newline=False)
    else:
        end, name, _ = _psql_meta_extent(raw, 0, stop_at_newline=True)
    args_text = raw[1 + len(name) : end]
    if "`" in raw:
        eff.issues.append(f"psql \\{name}: a backquoted argument runs a shell command")
    if _PSQL_VAR.search(args_text):
        eff.issues.append(f"psql \\{name}: an argument comes from a psql variable")
    stripped = args_text.strip(_BLANKS)
    if name in _PSQL_FILEPIPE or name == "s":
        target = stripped
        if name in ("g", "gx") and target.startswith("("):
            close = target.find(")")
            target = target[close + 1 :].strip(_BLANKS) if close >= 0 else ""
        if target.startswith("|"):
            eff.issues.append(f"psql \\{name} {target}: sends output to a program")
        elif target:
            eff.writes.append(_first_arg_psql(target))
        return eff
    if name == "copy":
        return _psql_copy(args_text, eff)
    if name == "lo_export":
        toks = _shellish_tokens(args_text, backslash_in_single=True)
        if len(toks) >= 2:
            eff.writes.append(toks[1])
        return eff
    if name == "lo_import":
        toks = _shellish_tokens(args_text, backslash_in_single=True)
        if toks:
            eff.reads.append(toks[0])
        return eff
    if name in _PSQL_DANGER or name.startswith("!"):
        why = _PSQL_DANGER.get(name, _PSQL_DANGER["!"])
        label = "!" if name.startswith("!") else name
        eff.issues.append(f"psql \\{label} {why}")
        if name in ("i", "include", "ir", "include_relative") and stripped:
            eff.reads.append(_first_arg_psql(stripped))
        return eff
    if name in _PSQL_HARMLESS or _PSQL_DESCRIBE.match(name):
        return eff
    eff.issues.append(f"psql meta-command \\{name} is not one xguard knows")
    return eff


def _first_arg_psql(args: str) -> str:
    toks = _shellish_tokens(args, backslash_in_single=True)
    return toks[0] if toks else args


def _psql_copy(args: str, eff: _Effects) -> _Effects:
    """\\copy … FROM|TO {'file' | PROGRAM 'cmd' | STDIN | STDOUT | PSTDIN | PSTDOUT}."""
    toks = re.findall(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\(|\)|[^\s()'\"]+", args)
    depth = 0
    for k, tok in enumerate(toks):
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif depth == 0 and tok.lower() in ("from", "to") and k + 1 < len(toks):
            target = toks[k + 1]
            if target.lower() == "program":
                eff.issues.append("psql \\copy … PROGRAM runs a program")
            elif target.lower() not in ("stdin", "stdout", "pstdin", "pstdout"):
                path = target[1:-1].replace("''", "'") if target.startswith("'") else target
                (eff.reads if tok.lower() == "from" else eff.writes).append(path)
            return eff
    eff.issues.append("psql \\copy: cannot tell what it reads or writes")
    return eff


def _mysql_effects(unit: SqlUnit) -> _Effects:
    eff = _Effects()
    raw = unit.raw
    if raw.startswith("\\"):
        letter = raw[1:2]
        name = _MYSQL_BY_CHAR.get(letter)
        args = raw[2:]
        if name is None:
            eff.issues.append(f"unknown mysql command \\{letter}")
            return eff
    else:
        word, _, args = unit.text.partition(" ")
        name = word.lower()
        if name not in _MYSQL_NAMED:
            return eff
    if name in _MYSQL_DANGER:
        eff.issues.append(f"mysql {name} {_MYSQL_DANGER[name]}")
    arg = _first_arg(args)
    if name == "source" and arg:
        eff.reads.append(arg)
    elif name in ("tee", "ssl_session_data_print") and arg:
        eff.writes.append(arg)
    return eff


def _sqlite_effects(unit: SqlUnit) -> _Effects:
    eff = _Effects()
    toks = _sqlite_dot_tokens(unit.raw)
    if not toks:
        return eff
    name, args = toks[0].lstrip(".").lower(), toks[1:]
    cands = {cmd for cmd in _SQLITE_KNOWN if name and cmd.startswith(name)}
    if name in _SQLITE_KNOWN:
        cands = {name}
    if not cands:
        eff.issues.append(f"sqlite3 dot-command .{name} is not one xguard knows")
        return eff
    for cmd in sorted(cands):
        if cmd in _SQLITE_DANGER:
            _add(eff.issues, f"sqlite3 .{cmd} {_SQLITE_DANGER[cmd]}")
        if cmd not in _SQLITE_FILES and cmd not in ("read", "load"):
            continue
        plain, opts = _dot_args(args)
        if cmd in ("output", "once"):
            if {"-e", "-x", "--excel"} & set(opts):
                _add(eff.issues, f"sqlite3 .{cmd} -e/-x opens a program")
            if plain and plain[0].startswith("|"):
                _add(eff.issues, f"sqlite3 .{cmd} |… sends output to a program")
            elif plain and plain[0] not in ("stdout", "off"):
                _add(eff.writes, plain[0])
        elif cmd in ("save", "backup", "clone", "iotrace", "log", "trace"):
            if plain and plain[-1] not in ("stdout", "stderr", "off", "on", "-"):
                _add(eff.writes, plain[-1])
        elif cmd in ("import", "read"):
            if plain and plain[0].startswith("|"):
                _add(eff.issues, f"sqlite3 .{cmd} |… runs a program")
            elif plain:
                _add(eff.reads, plain[0])
        elif cmd in ("open", "restore", "load") and plain:
            _add(eff.reads, plain[-1] if cmd != "load" else plain[0])
            if cmd == "open" and "--new" in opts:
                _add(eff.writes, plain[-1])
    return eff


def _dot_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Split dot-command arguments into plain ones and options (with their values)."""
    plain: list[str] = []
    opts: list[str] = []
    k = 0
    while k < len(args):
        arg = args[k]
        if arg.startswith("-") and len(arg) > 1:
            opts.append(arg)
            if arg in ("--skip", "--schema", "--maxsize") and k + 1 < len(args):
                k += 1
        else:
            plain.append(arg)
        k += 1
    return plain, opts


def _sqlite_dot_tokens(line: str) -> list[str]:
    """Arguments of a dot-command as do_meta_command() splits them."""
    return _shellish_tokens(line.strip(_BLANKS))


def _sql_effects(dialect: str, unit: SqlUnit) -> _Effects:
    """Client-side effects of plain SQL (features of the client, not the server)."""
    eff = _Effects()
    if dialect == _SQLITE:
        for m in _SQLITE_FUNCS.finditer(unit.text):
            name = m.group(1).lower()
            _add(eff.issues, f"sqlite3 SQL function {name}() reaches files or programs")
    elif dialect == _MYSQL:
        for m in _MYSQL_LOCAL_INFILE.finditer(unit.text):
            _add(eff.issues, "LOAD DATA LOCAL makes the mysql client read a local file")
            _add(eff.reads, m.group(2))
    return eff


# --------------------------------------------------------------------------------------
# Clients: options as each client parses them
# --------------------------------------------------------------------------------------


_META_EFFECTS = {_PSQL: _psql_effects, _MYSQL: _mysql_effects, _SQLITE: _sqlite_effects}


def client_sql(words: list[str], stdin: str | None = None) -> ClientSql | None:
    """What the database-client command `words` runs; None if it is not one.

    `words` are the literal argv words (words[0] the command name). When the client
    reads SQL from stdin and `stdin` holds that text (a literal here-document), its
    statements are split with the client's options in force; otherwise reading
    stdin is an issue.
    """
    if not words:
        return None
    name = _basename(words[0])
    if name in _APPROX_CLIENTS:
        return _approximate(name, words, stdin)
    dialect = _CLIENT_DIALECT.get(name)
    if dialect is None:
        return None
    out = ClientSql()
    try:
        if dialect == _PSQL:
            _psql(words, stdin, out)
        elif dialect == _MYSQL:
            _mysql(words, stdin, out)
        else:
            _sqlite(words, stdin, out)
    except Exception as exc:  # fail closed: nothing the client runs may be dropped
        _add(out.issues, f"cannot split SQL: internal error ({type(exc).__name__})")
        out.units.append(SqlUnit(_collapse(" ".join(words)), True, " ".join(words)))
    return out


def _add_sql(out: ClientSql, text: str, dialect: str, **opts: Any) -> None:
    """Split one piece of SQL text into `out`, with client-side effects."""
    result = _split(text, dialect, **opts)
    _add(out.issues, *result.issues)
    for unit in result.units:
        out.units.append(unit)
        eff = _META_EFFECTS[dialect](unit) if unit.meta else _sql_effects(dialect, unit)
        eff.merge_into(out)


def _stdin(out: ClientSql, client: str, stdin: str | None, dialect: str, **opts: Any) -> None:
    out.reads_stdin = True
    if stdin is None:
        _add(out.issues, f"{client} reads SQL from stdin or a terminal")
    else:
        _add_sql(out, stdin, dialect, **opts)


def _resolve_long(name: str, table: dict[str, tuple[str, int]]) -> tuple[str, int] | str:
    """getopt_long / my_getopt: an exact name, or a prefix of exactly one option."""
    if name in table:
        return table[name]
    hits = {table[k] for k in table if k.startswith(name)}
    if len(hits) == 1:
        return hits.pop()
    return "ambiguous" if hits else "unknown"


# psql (src/bin/psql/startup.c): "aAbc:d:eEf:F:h:HlL:no:p:P:qR:sStT:U:v:VwWxXz?01"
_PSQL_SHORT_ARG = frozenset("cdfFhLoPpRTUv")
_PSQL_SHORT_FLAG = frozenset("aAbeEHlnqsStVwWxXz?01")
_NONE, _REQ, _OPT = 0, 1, 2
_PSQL_LONG: dict[str, tuple[str, int]] = {
    "echo-all": ("a", _NONE), "no-align": ("A", _NONE), "command": ("c", _REQ),
    "dbname": ("d", _REQ), "echo-queries": ("e", _NONE), "echo-errors": ("b", _NONE),
    "echo-hidden": ("E", _NONE), "file": ("f", _REQ), "field-separator": ("F", _REQ),
    "field-separator-zero": ("z", _NONE), "host": ("h", _REQ), "html": ("H", _NONE),
    "list": ("l", _NONE), "log-file": ("L", _REQ), "no-readline": ("n", _NONE),
    "single-transaction": ("1", _NONE), "output": ("o", _REQ), "port": ("p", _REQ),
    "pset": ("P", _REQ), "quiet": ("q", _NONE), "record-separator": ("R", _REQ),
    "record-separator-zero": ("0", _NONE), "single-step": ("s", _NONE),
    "single-line": ("S", _NONE), "tuples-only": ("t", _NONE), "table-attr": ("T", _REQ),
    "username": ("U", _REQ), "set": ("v", _REQ), "variable": ("v", _REQ),
    "version": ("V", _NONE), "no-password": ("w", _NONE), "password": ("W", _NONE),
    "expanded": ("x", _NONE), "no-psqlrc": ("X", _NONE), "help": ("?", _OPT),
    "csv": ("csv", _NONE),
}  # fmt: skip


class PsqlOpt:
    """One step of psql's command line, as its getopt_long reads it.

    kind: "opt" (key: its one-letter or long key, value: its argument or
    None), "arg" (a dbname or username word: value), "end" (`--`: words are
    it and the rest), "bad" (problem says why: an unknown or ambiguous
    option, or one whose argument is missing; key when it is known).
    words: the words it came from, respelled one option a word (`-At` gives
    `-A`, `-t`), for a caller that rebuilds the command line.
    """

    __slots__ = ("key", "kind", "problem", "value", "words")

    def __init__(
        self,
        kind: str,
        key: str | None = None,
        value: str | None = None,
        words: list[str] | None = None,
        problem: str | None = None,
    ) -> None:
        self.kind, self.key, self.value = kind, key, value
        self.words = words or []
        self.problem = problem


def psql_options(args: list[str]) -> list[PsqlOpt]:
    """psql's arguments (without the program name) in order: the one reading
    of its options that the SQL units, the impact preview and the run-time
    row cap share."""
    out: list[PsqlOpt] = []
    i, n = 0, len(args)
    while i < n:
        w = args[i]
        if w == "--":
            out.append(PsqlOpt("end", words=args[i:]))
            break
        if not w.startswith("-") or w == "-":
            # dbname, then username (GNU getopt permutes: options may follow)
            out.append(PsqlOpt("arg", value=w, words=[w]))
            i += 1
            continue
        if w.startswith("--"):
            name, eq, value = w[2:].partition("=")
            hit = _resolve_long(name, _PSQL_LONG)
            if isinstance(hit, str):
                out.append(PsqlOpt("bad", words=[w], problem=f"psql option --{name} is {hit}"))
                i += 1
                continue
            key, has_arg = hit
            if has_arg == _REQ and not eq:
                if i + 1 >= n:
                    problem = f"psql option --{name} lacks its argument"
                    out.append(PsqlOpt("bad", key, words=[w], problem=problem))
                    break
                value = args[i + 1]
                out.append(PsqlOpt("opt", key, value, [w, value]))
                i += 2
                continue
            out.append(PsqlOpt("opt", key, value if eq else None, [w]))
            i += 1
            continue
        for k in range(1, len(w)):
            ch = w[k]
            if ch in _PSQL_SHORT_ARG:
                value = w[k + 1 :]
                if not value:
                    if i + 1 >= n:
                        problem = f"psql option -{ch} lacks its argument"
                        out.append(PsqlOpt("bad", ch, words=[f"-{ch}"], problem=problem))
                        break
                    value = args[i + 1]
                    i += 1
                out.append(PsqlOpt("opt", ch, value, [f"-{ch}", value]))
                break
            if ch in _PSQL_SHORT_FLAG:
                out.append(PsqlOpt("opt", ch, None, [f"-{ch}"]))
            else:
                problem = f"psql option -{ch} is unknown"
                out.append(PsqlOpt("bad", words=[f"-{ch}"], problem=problem))
        i += 1
    return out


def _psql(words: list[str], stdin: str | None, out: ClientSql) -> None:
    actions: list[tuple[str, str]] = []  # ("c", SQL) / ("f", FILE), in order: psql runs them so
    single_line = False

    def handle(key: str, value: str | None) -> None:
        nonlocal single_line
        if key == "c" and value is not None:
            actions.append(("c", value))
        elif key == "f" and value is not None:
            actions.append(("f", value))
        elif key in ("o", "L") and value is not None:
            if key == "o" and value.startswith("|"):
                _add(out.issues, f"psql -o {value}: sends output to a program")
            else:
                _add(out.write_paths, value)
        elif key == "S":
            single_line = True

    for o in psql_options(words[1:]):
        if o.kind == "end":
            break  # the rest are dbname/username; psql runs no SQL from them
        if o.problem is not None:
            _add(out.issues, o.problem)
        elif o.kind == "opt" and o.key is not None:
            handle(o.key, o.value)

    if not actions:
        _stdin(out, "psql", stdin, _PSQL, single_line=single_line)
    for kind, value in actions:
        if kind == "f":
            if value == "-":
                _stdin(out, "psql", stdin, _PSQL, single_line=single_line)
            else:
                _add(out.read_paths, value)
                _add(out.issues, f"psql -f runs a script file: {value}")
        elif value.startswith("\\"):
            # psql runs a -c string that starts with a backslash as ONE meta-command,
            # its arguments running on over newlines; whatever follows is ignored.
            unit = SqlUnit(_collapse(value), True, value)
            out.units.append(unit)
            _psql_effects(unit, single_slash=True).merge_into(out)
        else:
            # Any other -c string goes to the server whole, which splits it; psql
            # substitutes no variables in it. Backslashes in it are a server syntax
            # error, but are still read as meta-commands here (that only adds units).
            _add_sql(out, value, _PSQL, server_side=True)


# mysql/mariadb (client/mysql.cc my_long_options, my_getopt).
_MYSQL_SHORT_ARG = frozenset("DehPSuO")
_MYSQL_SHORT_OPT = frozenset("p#")
_MYSQL_SHORT_FLAG = frozenset("?IABbCcEfGgHijLNnoqrsTtUVvWwXxz")
_MYSQL_REQ = (
    "authentication-oci-client-config-profile",
    "authentication-openid-connect-client-id-token-file", "bind-address", "character-sets-dir",
    "compression-algorithms", "connect-timeout", "database", "default-auth",
    "default-character-set", "defaults-extra-file", "defaults-file", "defaults-group-suffix",
    "delimiter", "dns-srv-name", "execute", "fido-register-factor", "host", "histignore",
    "init-command", "init-command-add", "load-data-local-dir", "login-path",
    "max-allowed-packet", "max-join-size", "net-buffer-length", "network-namespace",
    "oci-config-file", "plugin-authentication-kerberos-client-mode", "plugin-dir", "port",
    "prompt", "protocol", "quick-max-column-width", "register-factor", "select-limit",
    "server-arg", "server-public-key-path", "shared-memory-base-name", "socket", "ssl-ca",
    "ssl-capath", "ssl-cert", "ssl-cipher", "ssl-crl", "ssl-crlpath", "ssl-fips-mode",
    "ssl-key", "ssl-mode", "ssl-session-data", "tee", "tls-ciphersuites", "tls-sni-servername",
    "tls-version", "user", "zstd-compression-level",
)  # fmt: skip
_MYSQL_OPT = (
    "debug", "pager", "password", "password1", "password2", "password3", "local-infile",
)  # fmt: skip
_MYSQL_BOOL = (
    "abort-source-on-error", "auto-rehash", "auto-vertical-output", "batch", "binary-as-hex",
    "binary-mode", "column-names", "column-type-info", "comments", "compress",
    "connect-expired-password", "debug-check", "debug-info", "enable-cleartext-plugin",
    "force", "get-server-public-key", "help", "html", "i-am-a-dummy", "ignore-spaces",
    "line-numbers", "named-commands", "no-auto-rehash", "no-beep", "no-defaults",
    "no-named-commands", "one-database", "pipe", "print-defaults", "print-query-on-error",
    "progress-reports", "quick", "raw", "reconnect", "safe-updates", "sandbox", "secure-auth",
    "show-query-costs", "show-warnings", "sigint-ignore", "silent", "skip-column-names",
    "skip-line-numbers", "ssl", "ssl-verify-server-cert", "syslog", "system-command", "table",
    "telemetry-client", "unbuffered", "verbose", "version", "vertical", "wait", "xml",
)  # fmt: skip
_MYSQL_LONG: dict[str, tuple[str, int]] = {
    **{k: (k, _REQ) for k in _MYSQL_REQ},
    **{k: (k, _OPT) for k in _MYSQL_OPT},
    **{k: (k, _NONE) for k in _MYSQL_BOOL},
}
_MYSQL_SHORT_NAME = {
    "D": "database", "e": "execute", "h": "host", "P": "port", "S": "socket", "u": "user",
    "O": "set-variable", "p": "password", "#": "debug", "G": "named-commands",
}  # fmt: skip


def _mysql(words: list[str], stdin: str | None, out: ClientSql) -> None:
    client = _basename(words[0])
    execute: list[str] = []
    init: list[str] = []
    opts: dict[str, object] = {"delimiter": ";", "named_anywhere": False}

    def handle(key: str, value: str | None) -> None:
        if key == "execute" and value is not None:
            execute.append(value)
        elif key in ("init-command", "init-command-add") and value is not None:
            init.append(value)
        elif key == "tee" and value:
            _add(out.write_paths, value)
        elif key == "pager":
            _add(out.issues, f"{client} --pager sends results through a program")
        elif key in ("defaults-file", "defaults-extra-file") and value:
            _add(out.read_paths, value)
            _add(out.issues, f"{client} --{key} reads options, which can run programs: {value}")
        elif key == "plugin-dir":
            _add(out.issues, f"{client} --plugin-dir loads client plugins from {value}")
        elif key == "load-data-local-dir" and value:
            _add(out.read_paths, value)
        elif key == "delimiter" and value:
            opts["delimiter"] = value
            _add(out.issues, f"{client} --delimiter sets the statement delimiter to {value!r}")
        elif key == "named-commands":
            opts["named_anywhere"] = value is None or value.lower() not in ("0", "off", "false")

    i, n = 1, len(words)
    while i < n:
        w = words[i]
        if w == "--":
            break
        if not w.startswith("-") or w == "-":
            i += 1  # the database name
            continue
        if w.startswith("--"):
            name, eq, value = w[2:].partition("=")
            name = name.replace("_", "-")
            if name.startswith("loose-"):
                name = name[6:]
            hit = _resolve_long(name, _MYSQL_LONG)
            if isinstance(hit, str):
                base = re.sub(r"^(skip|disable|enable)-", "", name)
                if base != name:
                    bool_hit = _resolve_long(base, _MYSQL_LONG)
                    if not isinstance(bool_hit, str) and bool_hit[1] != _REQ:
                        off = not name.startswith("enable-")
                        handle(bool_hit[0], "0" if off else None)
                        i += 1
                        continue
                _add(out.issues, f"{client} option --{name} is {hit}")
                i += 1
                continue
            key, has_arg = hit
            if has_arg == _REQ and not eq:
                if i + 1 < n:
                    value = words[i + 1]
                    i += 1
                else:
                    _add(out.issues, f"{client} option --{name} lacks its argument")
            handle(key, value if (eq or has_arg == _REQ) else None)
            i += 1
            continue
        for k in range(1, len(w)):
            ch = w[k]
            if ch in _MYSQL_SHORT_ARG:
                value = w[k + 1 :]
                if not value:
                    if i + 1 < n:
                        value = words[i + 1]
                        i += 1
                    else:
                        _add(out.issues, f"{client} option -{ch} lacks its argument")
                        break
                handle(_MYSQL_SHORT_NAME[ch], value)
                break
            if ch in _MYSQL_SHORT_OPT:
                # -pSECRET takes only an attached value; a bare -p prompts.
                handle(_MYSQL_SHORT_NAME[ch], w[k + 1 :] or None)
                break
            if ch in _MYSQL_SHORT_FLAG:
                handle(_MYSQL_SHORT_NAME.get(ch, ch), None)
            else:
                _add(out.issues, f"{client} option -{ch} is unknown")
        i += 1

    for sql in init:
        # --init-command runs on connect, before anything else.
        _add_sql(out, sql, _MYSQL)
    if execute:
        # Every -e is appended to one buffer with a blank between (readline.cc
        # init_line_buffer_from_string): `-e DROP -e 'TABLE t'` drops t.
        _add_sql(out, " ".join(execute), _MYSQL, **opts)
    else:
        _stdin(out, client, stdin, _MYSQL, **opts)


_SQLITE_ONE_VALUE = frozenset(
    {"-separator", "-nullvalue", "-newline", "-heap", "-vfs", "-mmap", "-sorterref", "-escape"}
)
_SQLITE_TWO_VALUES = frozenset({"-pagecache", "-lookaside"})
# Options whose two passes in shell.c disagree on how many words they take.
_SQLITE_QUIRKS = {"-threadsafe": 1, "-nonce": 1, "-memtrace": 0, "-pcachetrace": 0,
                  "-vfstrace": 0, "-multiplex": 0}  # fmt: skip
_SQLITE_FLAGS = frozenset(
    {
        "-interactive", "-batch", "-utf8", "-no-utf8", "-no-rowid-in-view", "-zip",
        "-append", "-deserialize", "-readonly", "-nofollow", "-bail", "-unsafe-testing",
        "-safe", "-html", "-list", "-quote", "-line", "-column", "-json", "-markdown",
        "-table", "-box", "-csv", "-ascii", "-tabs", "-header", "-noheader", "-echo",
        "-eqp", "-eqpfull", "-stats", "-scanstats", "-version", "-help", "-ifexists",
    }
)  # fmt: skip


def _sqlite(words: list[str], stdin: str | None, out: ClientSql) -> None:
    client = _basename(words[0])
    db: str | None = None
    cmds: list[str] = []  # -cmd values: run first, in the second option pass
    sql: list[str] = []  # words after the database name
    archive: list[str] | None = None
    opts_end = False
    i, n = 1, len(words)
    while i < n:
        w = words[i]
        if opts_end or not w.startswith("-"):
            if db is None:
                db = w
            else:
                sql.append(w)
            i += 1
            continue
        z = w[1:] if w.startswith("--") else w  # -opt and --opt are the same
        if z == "-":
            opts_end = True
        elif z in _SQLITE_ONE_VALUE:
            i += 1
        elif z in _SQLITE_TWO_VALUES:
            i += 2
        elif z == "-maxsize":
            i += 1 if i + 1 < n else 0
        elif z == "-cmd":
            if i + 1 < n:
                cmds.append(words[i + 1])
            i += 1
        elif z == "-init":
            if i + 1 < n:
                _add(out.read_paths, words[i + 1])
                _add(out.issues, f"{client} -init runs commands from {words[i + 1]}")
            i += 1
        elif z.startswith("-A"):
            # All remaining words are .archive arguments (it reads and writes files).
            archive = ([z[2:]] if z[2:] else []) + words[i + 1 :]
            break
        elif z == "-backslash":
            _add(out.issues, f"{client} -backslash rewrites escapes inside the SQL")
        elif z in _SQLITE_QUIRKS:
            _add(out.issues, f"{client} option {z}: its two option passes take different words")
            i += _SQLITE_QUIRKS[z]
        elif z not in _SQLITE_FLAGS:
            _add(out.issues, f"{client} option {w} is unknown")
        i += 1

    if db not in (None, "", ":memory:"):
        _add(out.read_paths, db)
    for word in [*cmds, *sql]:
        if word.startswith("."):
            # A word that starts with '.' is one dot-command, newlines and all.
            unit = SqlUnit(_collapse(word), True, word)
            out.units.append(unit)
            _sqlite_effects(unit).merge_into(out)
        else:
            _add_sql(out, word, _SQLITE)
    if archive is not None:
        text = " ".join([".archive", *archive])
        out.units.append(SqlUnit(_collapse(text), True, text))
        _add(out.issues, f"{client} -A {_SQLITE_DANGER['archive']}")
    elif not sql:
        _stdin(out, client, stdin, _SQLITE)


def _approximate(client: str, words: list[str], stdin: str | None) -> ClientSql | None:
    """clickhouse-client and cockroach sql: their SQL is split, both with PostgreSQL's
    rules and with MySQL's, and the statements of both readings kept; their options
    are read only for the SQL and script-file ones. Always an issue: an option this
    does not know could take the next word or change what runs."""
    if client == "cockroach" and (len(words) < 2 or words[1] not in ("sql", "demo")):
        return None
    out = ClientSql(issues=[f"{client}: xguard reads its options and SQL only approximately"])
    sql_opts, file_opts = _APPROX_CLIENTS[client]
    texts: list[str] = []
    files = 0
    i = 2 if client == "cockroach" else 1
    while i < len(words):
        w = words[i]
        name, eq, value = w.partition("=")
        short = next((o for o in (*sql_opts, *file_opts) if len(o) == 2 and w.startswith(o)), None)
        if name in (*sql_opts, *file_opts) or short:
            opt = name if name in (*sql_opts, *file_opts) else short
            assert opt is not None
            if short and not eq and len(w) > 2:
                value = w[2:]
            elif not eq:
                value = words[i + 1] if i + 1 < len(words) else ""
                i += 1
            if opt in sql_opts:
                texts.append(value)
            else:
                files += 1
                _add(out.read_paths, value)
                _add(out.issues, f"{client} {opt} runs a script file: {value}")
        i += 1
    if not texts and not files:
        out.reads_stdin = True
        if stdin is None:
            _add(out.issues, f"{client} reads SQL from stdin or a terminal")
        else:
            texts.append(stdin)
    seen: set[tuple[str, bool]] = set()
    for text in texts:
        for dialect in (_PSQL, _MYSQL):
            result = _split(text, dialect)
            _add(out.issues, *result.issues)
            for unit in result.units:
                if (unit.text, unit.meta) not in seen:
                    seen.add((unit.text, unit.meta))
                    out.units.append(unit)
    return out

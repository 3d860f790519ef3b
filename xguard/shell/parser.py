"""Command string -> units (SPEC §3 "Units", "Fail closed"). Pure: no I/O.

The structure (lists, pipelines, compound commands, redirections,
substitutions) comes from tree-sitter-bash; word values come from
`shellwords.dequote`, which performs bash's quote removal itself and reports
any expansion tree-sitter did not. Every nested piece of shell code — `$(…)`,
`<(…)`, `bash -c STRING`, `eval 'literal'`, `ssh host CMD`, `watch CMD`,
`trap 'CMD'`, a heredoc fed to a shell — is parsed again from a work queue,
never by recursion, under a depth cap, a node cap and a time budget.

Anything the parser cannot read with certainty becomes a unit with
`floor=True` (at least require_approval) and a reason the reviewer sees.
"""

from __future__ import annotations

import gc
import itertools
import os
import time

from xguard._record import dataclass

from xguard.shell.cmdspec import CODE_BUILTINS, SHELLS, WRITERS, recursive_folders, unwrap
from xguard.shell.posix import bash_only
from xguard.shell.words import Word, dequote, fast_list, lit

TYPE_CHECKING = False  # typing is kept off the hot path; type checkers see True
if TYPE_CHECKING:
    from tree_sitter import Node, Parser

MAX_INPUT = 64 * 1024  # SPEC §3: over 64 KiB of text is at least require_approval
MAX_DEPTH = 16  # nested shell code (bash -c "bash -c …")
MAX_PARSES = 256  # tree-sitter parses of nested strings per command
MAX_NODES = 200_000
# Seconds of this thread's CPU time: a hostile command costs milliseconds, then
# fails closed. CPU, not wall clock, so a loaded machine cannot turn an allowed
# command into require_approval; WALL_CAP bounds the wall clock all the same.
# The garbage collector is paused while a command is read (parse): a full
# collection of a long-lived process's heap (the broker, `check --batch`) would
# otherwise be charged to whichever parse it interrupted.
TIME_BUDGET = 0.25
WALL_CAP = 10.0

# Directories whose programs are the system's own: `/usr/bin/ls` may match an
# allow rule for `ls`, but `./ls` or `/tmp/x/ls` may not (they are other programs).
SYSTEM_BIN_DIRS = frozenset(
    {"/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin", "/usr/local/sbin"}
)

# Commands whose shell code runs under /bin/sh or another non-bash shell
# (watch and flock use `sh -c`; ssh and su use a shell we cannot see).
POSIX_SHELL_RUNNERS = frozenset(
    {"sh", "dash", "ash", "posh", "ksh", "mksh", "yash", "busybox-sh", "zsh", "fish"}
    | {"watch", "flock", "ssh", "su", "runuser", "script", "parallel"}
)

DB_CLIENTS = frozenset(
    {"psql", "mysql", "mariadb", "sqlite3", "sqlite", "clickhouse-client", "cockroach"}
)

# Database clients whose target host is read (xguard/shell/dbhost.py CLIENTS;
# kept here so the hot path imports that module only for them).
DB_HOST_CLIENTS = frozenset(
    {"psql", "pg_dump", "pg_dumpall", "pg_restore", "pg_isready", "pg_basebackup"}
    | {"pg_receivewal", "pg_recvlogical", "pgbench", "createdb", "dropdb", "createuser"}
    | {"dropuser", "vacuumdb", "reindexdb", "clusterdb", "vacuumlo", "pg_amcheck"}
    | {"mysql", "mariadb", "mysqldump", "mariadb-dump", "mysqladmin", "mysqlshow"}
    | {"redis-cli", "valkey-cli", "mongosh", "mongo", "clickhouse-client", "cockroach"}
)

# Words bash treats as reserved where a command name stands. tree-sitter-bash
# sometimes parses constructs it does not know (coproc, some `function`
# forms) as plain commands with these names; never trust such a parse.
RESERVED_NAMES = frozenset(
    "if then else elif fi case esac for select while until do done function coproc in { } [[ ]] !".split()
)


_UNIT_FIELDS = (
    "kind",
    "text",
    "words",
    "floor",
    "why",
    "dynamic",
    "alt_text",
    "alt_trusted",
    "access",
    "path",
    "glob",
    "must_exist",
    "tilde",
    "meta",
    "names",
    "bases",
    "recursive",
    "names_only",
    "client",
    "client_env",
    "client_via",
)


class Unit:
    """One decidable piece of a command.

    kind:   command | sql | path | assign | function | input
    text:   words after quote removal joined by one space (SPEC §3)
    floor:  the parser requires at least require_approval; `why` says why
    For command units: words, dynamic (an argument known only at run time),
      alt_text (the text with the command name's folder dropped) and
      alt_trusted (that folder is a system bin folder).
    For path units: access (read | write), path (as written, for matching:
      expansions replaced by '*'), glob (may need pathname expansion),
      dynamic, must_exist (counts only if it names an existing file),
      bases (folders a `cd` earlier in the text may have moved to),
      recursive (a folder whose whole tree the command reads, `grep -r`:
      "all"; "visible" when hidden files are skipped, as rg and git do),
      names_only (the command shows a folder's names, not its files: `ls`).
    For sql units: meta (a client command such as psql's backslash commands);
      client (the client's argv words), client_env (NAME=VALUE assignments
      before it; "" for one known only at run time), client_via (the wrappers
      it runs inside): the impact preview (xguard/gate/impact.py) connects as
      the command would.
    For assign units: names.

    A plain class with class-level defaults (not a record type): the batch
    checker creates hundreds of thousands of these.
    """

    __record_fields__ = _UNIT_FIELDS
    words: tuple[str, ...] = ()
    floor = False
    dynamic = False
    alt_text: str | None = None
    alt_trusted = False
    access = ""
    path = ""
    glob = False
    must_exist = False
    tilde = False
    meta = False
    names: tuple[str, ...] = ()
    bases: tuple[str, ...] = ()
    recursive = ""
    names_only = False
    client: tuple[str, ...] = ()
    client_env: tuple[str, ...] = ()
    client_via: tuple[str, ...] = ()

    def __init__(self, kind: str, text: str, **kw: object) -> None:
        self.kind = kind
        self.text = text
        self.why: list[str] = []
        if kw:
            if not _UNIT_SET.issuperset(kw):
                raise TypeError(f"Unit() got unexpected fields {sorted(set(kw) - _UNIT_SET)}")
            self.__dict__.update(kw)

    def __repr__(self) -> str:
        return "Unit(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in _UNIT_FIELDS) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Unit):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _UNIT_FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def require(self, why: str) -> None:
        """Raise this unit to at least require_approval, saying why."""
        self.floor = True
        if why not in self.why:
            self.why.append(why)


def _input_unit(why: str) -> Unit:
    return Unit("input", why, floor=True, why=[why])


# Invisible or direction-changing characters that make what a person sees
# differ from what bash runs (SPEC §3). Checked only for non-ASCII input.
_INVISIBLE_EXTRA = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")


_JOINED_WORD = r"[^\s;&|<>()]\\\n[^\s;&|<>()]"


def _has_joined_word(text: str) -> bool:
    if "\\\n" not in text:
        return False
    import re  # only for texts that hold a backslash-newline at all

    return re.search(_JOINED_WORD, text) is not None


def input_issues(text: str) -> list[str]:
    """Reasons the raw text itself is suspicious, before any parsing."""
    issues = []
    if "\x00" in text:
        issues.append("NUL byte in the command")
    if "\r" in text:
        issues.append("carriage return in the command (bash and a viewer may read it differently)")
    if any((c < " " and c not in "\t\n\r\x00") or c == "\x7f" for c in text):
        issues.append("control character in the command")
    if not text.isascii():
        import unicodedata

        for c in text:
            if ord(c) < 128:
                continue
            cat = unicodedata.category(c)
            if (
                cat in ("Cf", "Cc", "Zl", "Zp", "Co", "Cn", "Cs")
                or (cat == "Zs")
                or c in _INVISIBLE_EXTRA
            ):
                issues.append(f"invisible or bidirectional character U+{ord(c):04X} in the command")
                break
    return issues


# ---------------------------------------------------------------------------
_PARSER: Parser | None = None


def _ts_parser() -> Parser:
    """The tree-sitter parser, created on first use (xguard/shell/tsload.py)."""
    global _PARSER  # noqa: PLW0603 - one parser per process, made on first use
    if _PARSER is None:
        from xguard.shell.tsload import bash_parser

        _PARSER = bash_parser()
    return _PARSER


_EXPANSION_NODES = frozenset(
    {
        "simple_expansion",
        "expansion",
        "command_substitution",
        "process_substitution",
        "arithmetic_expansion",
    }
)
_SUBST_NODES = frozenset({"command_substitution", "process_substitution"})
_WORD_NODES = frozenset(
    {
        "word",
        "string",
        "raw_string",
        "concatenation",
        "number",
        "ansi_c_string",
        "translated_string",
        "simple_expansion",
        "expansion",
        "command_substitution",
        "process_substitution",
        "arithmetic_expansion",
        "brace_expression",
        "string_content",
    }
)
_STRUCTURAL = frozenset(
    {
        "program",
        "list",
        "pipeline",
        "subshell",
        "do_group",
        "if_statement",
        "elif_clause",
        "else_clause",
        "while_statement",
        "negated_command",
        "command_substitution",
        "process_substitution",
    }
)


_ARITH_TESTS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})


_UNIT_SET = frozenset(_UNIT_FIELDS)


class _Budget(Exception):
    pass


@dataclass
class _Job:
    """A piece of work on the queue: shell text to parse, or argv to analyze."""

    text: bytes | None = None
    words: list[Word] | None = None
    depth: int = 0
    dynamic: bool = False  # argv gets run-time arguments (xargs, find {})
    stdin_text: bytes | None = None
    listed: bool = False  # those arguments are the repository's file names
    via: tuple[str, ...] = ()  # the wrappers (sudo, env, ssh …) this argv runs inside
    env: tuple[str, ...] = ()  # NAME=VALUE the argv gets from around it (`PGHOST=h env psql`)


class _Walker:
    def __init__(self, budget: float, fast: bool = True) -> None:
        self.fast = fast
        self.units: list[Unit] = []
        self.queue: list[_Job] = []
        self.deadline = time.thread_time() + budget
        self.wall_deadline = time.monotonic() + max(WALL_CAP, budget)
        self.parses = 0
        self.nodes = 0
        # `cd DIR && cat f` reads DIR/f: relative paths are also resolved
        # against every folder a cd in the text may have moved to.
        self.cd_bases: list[str] = []
        self.cd_dynamic = False
        # Words tree-sitter put under a redirection (`> out ARG`): arguments
        # of the command the redirection belongs to.
        self.redirect_extras: list[Node] = []
        # Set by word() when an expansion evaluates text as code; the unit
        # being built takes a floor (see _evaluates).
        self.evaluating = False
        # Commands whose stdin is a list of the repository's files (the
        # command before them in a pipeline is `git ls-files`).
        self.listing_fed: set[int] = set()
        self.fed_by_listing = False

    def check_budget(self) -> None:
        if time.thread_time() > self.deadline or time.monotonic() > self.wall_deadline:
            raise _Budget("parse exceeded its time budget")

    # -- queue --------------------------------------------------------------
    def run(self) -> None:
        i = 0
        while i < len(self.queue):
            job = self.queue[i]
            i += 1
            self.check_budget()
            if job.depth > MAX_DEPTH:
                self.units.append(_input_unit("shell code nested too deep to check"))
                continue
            if job.words is not None:
                self.simple_command(
                    job.words,
                    list(job.env),
                    job.depth,
                    job.dynamic,
                    job.stdin_text,
                    listed=job.listed,
                    via=job.via,
                )
            elif job.text is not None:
                self.parse_text(job.text, job.depth)

    def push_shell(self, w: Word, depth: int, what: str, owner: Unit) -> None:
        if not w.literal:
            owner.require(f"{what} runs shell code known only at run time")
            return
        self.queue.append(_Job(text=w.value.encode("utf-8", "surrogateescape"), depth=depth + 1))

    # -- parsing --------------------------------------------------------------
    def parse_text(self, src: bytes, depth: int) -> None:
        text = src.decode("utf-8", "surrogateescape")
        fl = fast_list(text) if self.fast else None
        if fl is not None and any(
            fw[0] == "xargs" and _words_list_files(prev) for prev, fw in itertools.pairwise(fl)
        ):
            fl = None  # `git ls-files | xargs …`: the pipeline's shape matters
        if fl is not None:
            for fw in fl:
                self.simple_command([lit(w) for w in fw], [], depth, False, None)
            return
        self.parses += 1
        if self.parses > MAX_PARSES:
            raise _Budget("too many nested pieces of shell code to check")
        root = _ts_parser().parse(src).root_node
        src, root = _unglued(src, root)
        if root.has_error:
            self.units.append(
                _input_unit(f"bash syntax the parser could not read: {_error_excerpt(root, src)}")
            )
            # Error recovery can swallow whole commands into an ERROR node;
            # also check each statement-like piece on its own. More units can
            # only make the decision stricter.
            pieces = _split_statements(text)
            if len(pieces) > 1:
                for piece in pieces:
                    self.queue.append(
                        _Job(text=piece.encode("utf-8", "surrogateescape"), depth=depth + 1)
                    )
        if b"<<" in src:
            self.check_heredocs(root, src, depth)
        why = _evaluation(root, src)
        if why:
            self.units.append(_input_unit(why))
        self.walk(root, src, depth)

    def check_heredocs(self, root: Node, src: bytes, depth: int) -> None:
        """Hold tree-sitter's here-document boundaries against bash's (heredoc.scan).

        Where they differ, tree-sitter filed commands under a body (or a body
        under commands): the unit is floored, and the text with bash's bodies
        taken out is read again so the commands that really run are units.
        """
        from xguard.shell.heredoc import scan, without_bodies

        docs = scan(src)
        # Terminator lines are compared (tree-sitter starts a `<<-` body after its tabs).
        ours = sorted(d.end for d in docs)
        theirs: list[int | None] = []
        todo = [root]
        while todo:
            n = todo.pop()
            if n.type == "heredoc_redirect":
                ends = [c.end_byte for c in n.children if c.type == "heredoc_end"]
                theirs.append(ends[0] if ends else None)
            todo.extend(n.children)
        same = None not in theirs and sorted(e for e in theirs if e is not None) == ours
        if same and all(d.terminated for d in docs):
            return
        self.units.append(
            _input_unit("here-document ends where bash ends it, not where the parser did")
        )
        self.queue.append(_Job(text=without_bodies(src, docs), depth=depth + 1))

    def walk(self, root: Node, src: bytes, depth: int) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise _Budget("command too large to check")
            if self.nodes % 512 == 0:
                self.check_budget()
            t = node.type
            if not node.is_named or t == "comment":
                continue
            # Handlers push nested statements to `found` in source order; the
            # stack is LIFO, so they go on it reversed to keep that order.
            found: list[Node] = []
            self.dispatch(node, t, src, depth, found)
            stack.extend(reversed(found))

    def dispatch(self, node: Node, t: str, src: bytes, depth: int, stack: list[Node]) -> None:
        if t == "command_substitution" and _backquote_escapes(node, src):
            # Inside `…` bash removes the backslash of \` \$ \\ before it reads
            # the body: `echo \`touch x\`` runs touch and `cat \\.env` reads
            # .env, where the tree holds escaped text. What it read still counts.
            self.units.append(
                _input_unit(
                    "\\` \\$ or \\\\ inside backquotes: bash unescapes them, then runs the text"
                )
            )
        if t == "pipeline":
            kids = node.named_children
            for a, b in itertools.pairwise(kids):
                if a.type == "command" and b.type == "command" and _lists_files(a, src):
                    self.listing_fed.add(b.id)
            stack.extend(kids)
        elif t in _STRUCTURAL:
            stack.extend(node.named_children)
        elif t == "command":
            self.fed_by_listing = node.id in self.listing_fed
            self.command_node(node, src, depth, None, stack)
            self.fed_by_listing = False
        elif t == "redirected_statement":
            self.redirected(node, src, depth, stack)
        elif t in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
            self.redirect(node, src, depth, stack)
        elif t in ("variable_assignment", "variable_assignments"):
            assigns = (
                [node]
                if t == "variable_assignment"
                else [c for c in node.named_children if c.type == "variable_assignment"]
            )
            self.assign_unit(assigns, src, stack, standalone=True)
        elif t in ("declaration_command", "unset_command"):
            self.declaration(node, src, depth, stack)
        elif t == "function_definition":
            name = node.child_by_field_name("name")
            nm = (name.text or b"").decode("utf-8", "surrogateescape") if name is not None else "?"
            self.units.append(
                Unit(
                    "function",
                    f"function {nm}",
                    floor=True,
                    why=[f"defines a shell function '{nm}' that can shadow a command"],
                )
            )
            body = node.child_by_field_name("body")
            if body is not None:
                stack.append(body)
        elif t == "compound_statement":
            first = node.children[0].type if node.children else ""
            if first == "((":
                u = Unit("command", _txt(node, src), floor=True, why=["arithmetic command"])
                self.units.append(u)
                self.scan_substitutions(node, stack)
            else:
                stack.extend(node.named_children)
        elif t == "test_command":
            self.test_node(node, src, stack)
        elif t in ("for_statement", "c_style_for_statement", "case_statement", "case_item"):
            # Loop values, case words and arithmetic: only their substitutions run.
            for c in node.named_children:
                if (
                    c.type in ("do_group", "compound_statement")
                    or c.type in _STRUCTURAL
                    or c.type
                    in (
                        "command",
                        "redirected_statement",
                        "list",
                        "pipeline",
                        "case_item",
                        "variable_assignment",
                        "declaration_command",
                        "function_definition",
                        "test_command",
                        "if_statement",
                        "for_statement",
                        "while_statement",
                        "case_statement",
                        "c_style_for_statement",
                        "unset_command",
                    )
                ):
                    stack.append(c)
                else:
                    self.scan_substitutions(c, stack)
        elif t == "ERROR":
            stack.extend(node.named_children)
        elif t in _WORD_NODES or t in (
            "variable_name",
            "special_variable_name",
            "regex",
            "extglob_pattern",
            "test_operator",
            "file_descriptor",
            "heredoc_body",
            "heredoc_start",
            "heredoc_end",
            "heredoc_content",
            "subscript",
            "array",
            "binary_expression",
            "unary_expression",
            "ternary_expression",
            "postfix_expression",
            "parenthesized_expression",
            "command_name",
        ):
            self.scan_substitutions(node, stack)
        else:
            self.units.append(_input_unit(f"unsupported shell construct: {t}"))
            stack.extend(node.named_children)

    # -- words ----------------------------------------------------------------
    def scan_substitutions(self, node: Node, stack: list[Node]) -> None:
        """Push every outermost $(…)/<(…) inside `node` so its commands become units."""
        todo = [node]
        while todo:
            n = todo.pop()
            self.nodes += 1
            if n.type in _SUBST_NODES:
                stack.append(n)
                continue
            todo.extend(reversed(n.children))

    def word(self, node: Node, src: bytes, stack: list[Node]) -> Word:
        """Quote-removed value of a word node; its substitutions go on the stack."""
        if node.type == "process_substitution":
            # A word that is one <(cmd) or >(cmd): bash passes /dev/fd/N, a
            # pipe to cmd (a unit of its own), never a file on disk.
            stack.append(node)
            return Word(_txt(node, src), approx="/dev/fd/63")
        if node.type == "command_substitution" and _lists_files(node, src):
            stack.append(node)
            text = _txt(node, src)
            return Word(text, dynamic=True, approx="*", listing=True)
        start = node.start_byte
        spans = []
        todo = [node] if node.type in _EXPANSION_NODES else list(reversed(node.children))
        while todo:
            n = todo.pop()
            if n.type in _EXPANSION_NODES:
                spans.append((n.start_byte - start, n.end_byte - start))
                self.scan_substitutions(n, stack)
                if _evaluates(n, src):
                    self.evaluating = True
                continue
            todo.extend(reversed(n.children))
        return dequote(src[start : node.end_byte], tuple(spans))

    # -- commands -------------------------------------------------------------
    def command_node(
        self,
        node: Node,
        src: bytes,
        depth: int,
        stdin_text: bytes | None,
        stack: list[Node],
        extra: list[Node] | None = None,
    ) -> None:
        """A simple command. `extra`: argument words tree-sitter filed under a
        redirection that stands after the command (see `redirect`)."""
        self.evaluating = False
        assigns = []
        pieces: list[Node] = list(extra or [])
        self.redirect_extras = []
        for c in node.children:
            t = c.type
            if t == "variable_assignment" and not pieces:
                assigns.append(c)
            elif t in ("file_redirect", "herestring_redirect", "heredoc_redirect"):
                self.redirect(c, src, depth, stack)
            elif t == "comment":
                continue
            elif (
                c.is_named
                and t not in _WORD_NODES
                and t not in ("command_name", "variable_assignment")
            ):
                self.units.append(_input_unit(f"unsupported shell construct in a command: {t}"))
                self.scan_substitutions(c, stack)
            else:
                pieces.append(c)
        pieces.extend(self.redirect_extras)
        pieces.sort(key=lambda n: n.start_byte)
        # bash delimits words by blanks, not by tree-sitter's tokens: adjacent
        # pieces are one word (tree-sitter splits `=="x"` into an anonymous
        # `==` token and a string; dropping the token would lose text bash runs).
        groups: list[list[Node]] = []
        for c in pieces:
            if groups and groups[-1][-1].end_byte == c.start_byte:
                groups[-1].append(c)
            else:
                groups.append([c])
        words = [self.word_group(g, src, stack) for g in groups]
        if assigns:
            self.assign_unit(assigns, src, stack, standalone=not words)
        if words:
            # The assignments' text travels with SQL units: the impact preview
            # connects with the environment the client gets (PGHOST=… psql).
            env = [_assign_text(a, src) for a in assigns]
            self.simple_command(words, env, depth, False, stdin_text)

    def word_group(self, nodes: list[Node], src: bytes, stack: list[Node]) -> Word:
        """One shell word made of adjacent tree-sitter nodes."""
        if len(nodes) == 1:
            n = nodes[0]
            if n.type == "command_name" and n.named_children:
                n = n.named_children[0]
            return (
                self.word(n, src, stack) if n.is_named else dequote(src[n.start_byte : n.end_byte])
            )
        start = nodes[0].start_byte
        spans = []
        for n in nodes:
            todo = [n] if n.type in _EXPANSION_NODES else list(reversed(n.children))
            while todo:
                m = todo.pop()
                if m.type in _EXPANSION_NODES:
                    spans.append((m.start_byte - start, m.end_byte - start))
                    self.scan_substitutions(m, stack)
                    if _evaluates(m, src):
                        self.evaluating = True
                    continue
                todo.extend(reversed(m.children))
        return dequote(src[start : nodes[-1].end_byte], tuple(spans))

    def assign_unit(
        self, assigns: list[Node], src: bytes, stack: list[Node], standalone: bool
    ) -> None:
        names = []
        texts = []
        for a in assigns:
            nm = a.child_by_field_name("name")
            names.append(_txt(nm, src) if nm is not None else "?")
            val = a.child_by_field_name("value")
            if val is not None:
                self.word(val, src, stack)
            texts.append(_txt(a, src))
        self.units.append(Unit("assign", " ".join(texts), names=tuple(names)))

    def declaration(self, node: Node, src: bytes, depth: int, stack: list[Node]) -> None:
        words = []
        names = []
        for c in node.children:
            if c.type == "variable_assignment":
                nm = c.child_by_field_name("name")
                names.append(_txt(nm, src) if nm is not None else "?")
                val = c.child_by_field_name("value")
                if val is not None:
                    self.word(val, src, stack)
                words.append(dequote(src[c.start_byte : c.end_byte]))
            elif c.type in ("file_redirect", "herestring_redirect"):
                self.redirect(c, src, depth, stack)
            elif not c.is_named:
                words.append(lit(_txt(c, src)))
            else:
                words.append(self.word(c, src, stack))
        if names:
            self.units.append(
                Unit("assign", " ".join(w.value for w in words[1:]), names=tuple(names))
            )
        self.simple_command(words, [], depth, False, None)

    def test_node(self, node: Node, src: bytes, stack: list[Node]) -> None:
        words = []
        dynamic = False
        todo = [node]
        leaves = []
        while todo:
            n = todo.pop()
            if (
                n.type in _EXPANSION_NODES
                or n.type
                in (
                    "word",
                    "string",
                    "raw_string",
                    "number",
                    "ansi_c_string",
                    "test_operator",
                    "regex",
                    "extglob_pattern",
                )
                or not n.children
            ):
                leaves.append(n)
                continue
            todo.extend(reversed(n.children))
        self.evaluating = False
        for n in leaves:
            w = self.word(n, src, stack) if n.is_named else lit(_txt(n, src))
            # A glob in [[ ]] is a pattern to match, not a file-name expansion.
            dynamic = dynamic or w.dynamic or w.missed
            words.append(w.value)
        u = Unit("command", " ".join(words), words=tuple(words), dynamic=dynamic)
        if self.evaluating or (dynamic and _ARITH_TESTS.intersection(words)):
            # [[ $x -eq 1 ]] evaluates $x's value as arithmetic: x='a[$(cmd)]' runs cmd.
            u.require("arithmetic test on a run-time value: bash evaluates it as code")
        self.units.append(u)

    def redirected(self, node: Node, src: bytes, depth: int, stack: list[Node]) -> None:
        body = node.child_by_field_name("body")
        stdin_text = None
        self.redirect_extras = []
        for c in node.named_children:
            if c is body or (body is not None and c.id == body.id):
                continue
            if c.type == "heredoc_redirect":
                stdin_text = self.redirect(c, src, depth, stack)
            elif c.type == "herestring_redirect":
                self.redirect(c, src, depth, stack)
                arg = [x for x in c.named_children]
                if arg:
                    w = self.word(arg[-1], src, stack)
                    if w.literal:
                        stdin_text = w.value.encode("utf-8", "surrogateescape")
            elif c.type == "file_redirect":
                self.redirect(c, src, depth, stack)
            else:
                stack.append(c)
        extras = self.redirect_extras
        self.redirect_extras = []
        if extras and (body is None or body.type != "command"):
            self.units.append(
                _input_unit("words after a redirection that belong to no command the parser saw")
            )
            for x in extras:
                self.word(x, src, stack)
        if body is None:
            return
        if body.type == "command":
            self.command_node(body, src, depth, stdin_text, stack, extras)
        else:
            stack.append(body)

    def redirect(self, node: Node, src: bytes, depth: int, stack: list[Node]) -> bytes | None:
        """Turn a redirection into path units; return a heredoc's text for its command."""
        t = node.type
        if t == "heredoc_redirect":
            return self.heredoc(node, src, stack)
        if t == "herestring_redirect":
            for c in node.named_children:
                self.word(c, src, stack)
            return None
        op = ""
        dest = None
        for c in node.children:
            if not c.is_named:
                if dest is None:
                    op = c.type
            elif c.type == "file_descriptor":
                continue
            elif dest is None:
                dest = c
            else:
                # tree-sitter files the words after `> FILE` under the
                # redirection (`ls > out <(cmd)`): they are the command's
                # arguments, and FILE is still the target.
                if (
                    src[c.start_byte - 1 : c.start_byte] not in (b" ", b"\t")
                    or b"\n" in src[dest.end_byte : c.start_byte] + src[c.start_byte : c.end_byte]
                ):
                    self.units.append(
                        _input_unit("a redirection target the parser read across words or lines")
                    )
                self.redirect_extras.append(c)
        if dest is None:
            return None
        if dest.type == "process_substitution":  # > >(cmd), < <(cmd): a pipe
            stack.append(dest)
            return None
        # `> $(cmd)` and `` > `cmd` `` write to a file named by cmd's output:
        # a write unit like any other, its name known only at run time.
        w = self.word(dest, src, stack)
        if op in (">&", "<&", ">&-", "<&-") and (w.value.isdigit() or w.value == "-") and w.literal:
            return None  # duplicates or closes a file descriptor
        access = "read" if op in ("<", "<&") else "write"
        self.path_unit(w, access, must_exist=False, redirect=True)
        return None

    def heredoc(self, node: Node, src: bytes, stack: list[Node]) -> bytes | None:
        quoted = False
        body_text = b""
        found = 0
        for c in node.named_children:
            if c.type == "heredoc_start":
                raw = src[c.start_byte : c.end_byte]
                quoted = any(q in raw for q in (b"'", b'"', b"\\"))
            elif c.type == "heredoc_body":
                body_text = src[c.start_byte : c.end_byte]
                if not quoted:
                    before = len(stack)
                    self.scan_substitutions(c, stack)
                    found = len(stack) - before
            elif c.type in ("heredoc_end",):
                continue
            else:
                stack.append(c)  # `cat <<EOF | sh`: the rest of the line
        if not quoted:
            # Re-scan: tree-sitter does not expose every substitution in a
            # heredoc body; if the text has more than it reported, fail closed.
            expected = (
                body_text.count(b"$(")
                + body_text.count(b"`") // 2
                + body_text.count(b"<(")
                + body_text.count(b">(")
            )
            if expected > found:
                self.units.append(
                    _input_unit(
                        "here-document holds command substitutions the parser could not read"
                    )
                )
            return None if b"$" in body_text or b"`" in body_text else body_text
        return body_text

    # -- the simple command ---------------------------------------------------
    def simple_command(
        self,
        words: list[Word],
        assigns: list[str],
        depth: int,
        inherited_dynamic: bool,
        stdin_text: bytes | None,
        *,
        listed: bool = False,
        via: tuple[str, ...] = (),
    ) -> None:
        """One simple command. `listed`: its run-time arguments are file names
        the repository lists (`xargs` fed by `git ls-files`)."""
        name = words[0]
        args = words[1:]
        text = " ".join(w.value for w in words)
        u = Unit("command", text, words=tuple(w.value for w in words))
        self.units.append(u)
        if not name.literal:
            u.require("command name known only at run time")
        if any(w.joined for w in words):
            u.require("backslash-newline inside a word")
        if any(w.missed for w in words):
            u.require("expansion the parser did not report")
        nm = name.value
        base = nm.rsplit("/", 1)[-1] if "/" in nm else nm
        # A list of the repository's files is safe as the arguments of a
        # reader no option word can turn into a writer or a runner.
        safe_list = base in LISTING_READERS and name.literal
        listed = (listed or any(w.listing for w in args)) and safe_list
        u.dynamic = (inherited_dynamic and not listed) or any(
            w.dynamic or w.brace or w.missed for w in args if not (w.listing and safe_list)
        )
        if not nm.isascii():
            u.require("non-ASCII character in the command name")
        if any(c.isspace() for c in nm):
            # Unit text joins words with blanks: `'git status' x` would read as `git status x`.
            u.require("blank inside the command name")
        if "/" in nm and base:
            u.alt_text = " ".join([base, *u.words[1:]])
            folder = os.path.normpath(nm.rsplit("/", 1)[0] or "/")
            u.alt_trusted = folder in SYSTEM_BIN_DIRS
        if nm in RESERVED_NAMES:
            u.require(f"shell keyword '{nm}' where a command should be")
        if base in CODE_BUILTINS:
            u.require(CODE_BUILTINS[base])
        if base == "read":
            self.read_builtin(args, u)
        if base == "printf" and any(w.value.startswith("-v") for w in args):
            u.require("printf -v sets a variable")
        if base in ("cd", "pushd"):
            target = [w for w in args if not w.value.startswith("-") or w.value == "-"]
            if not target:
                self.cd_bases.append("~")
            elif target[0].literal and target[0].value != "-":
                self.cd_bases.append(target[0].value)
            else:
                self.cd_dynamic = True
        if not name.literal:
            return

        # What it runs: wrapped commands and shell code are units of their own,
        # so their words are not this unit's paths.
        inner = unwrap(base, words)
        owned = set()
        if inner is not None:
            owned = {id(w) for argv in inner.commands for w in argv} | {id(w) for w in inner.shell}

        # Files it writes and reads.
        written: list[Word] = []
        if base in WRITERS:
            written, _read = WRITERS[base](args)
        written_ids = {id(w) for w in written}
        for w in written:
            self.path_unit(w, "write", must_exist=False)
        for w in args:
            if id(w) in written_ids or id(w) in owned:
                continue
            v = w.value
            if v.startswith("-"):
                if v.startswith("--") and "=" in v:
                    val = v.split("=", 1)[1]
                    approx = w.approx.split("=", 1)[1] if "=" in w.approx else val
                    self.path_unit(
                        Word(val, dynamic=w.dynamic, glob=w.glob, approx=approx),
                        "read",
                        must_exist=True,
                    )
                elif not v.startswith("--") and len(v) > 2 and not (w.dynamic or w.missed):
                    self.glued_paths(w)
                continue
            if base == "git" and ":" in v[1:] and not v.startswith(":"):
                # REV:PATH (`git show HEAD:.env`) reads PATH from the repository.
                self.path_unit(
                    lit(v.split(":", 1)[1] or "."), "read", must_exist=False, redirect=True
                )
            if base == "git" and (_GLOB_CHARS.intersection(v) or v.startswith(":")):
                # git expands pathspecs itself, quoted or not (`'.e*'`, `':(top).env'`).
                spec = _strip_pathspec_magic(v)
                self.path_unit(
                    Word(spec, glob=True, approx=spec), "read", must_exist=False, redirect=True
                )
                continue
            self.path_unit(w, "read", must_exist=True, names_only=base in NAMES_ONLY)
        for d, mode in recursive_folders(base, args):
            self.path_unit(d, "read", must_exist=False, redirect=True, recursive=mode)
        if listed and not u.dynamic:
            # Its arguments are the repository's files (`$(git ls-files)`,
            # `git ls-files -z | xargs -0 …`): it reads the project's tree.
            self.path_unit(lit("."), "read", must_exist=False, redirect=True, recursive="visible")

        # Programs inside arguments: what an awk program or a sed script opens or runs.
        if base in ("awk", "gawk", "mawk", "nawk", "sed"):
            from xguard.shell.programs import check_awk, check_sed

            chk = check_sed(args) if base == "sed" else check_awk(args)
            for why in chk.issues:
                u.require(why)
            for p in chk.writes:
                self.path_unit(lit(p), "write", must_exist=False, redirect=True)
            for p in chk.reads:
                self.path_unit(lit(p), "read", must_exist=False, redirect=True)

        # SQL given to a database client.
        if base in DB_CLIENTS:
            self.sql(base, words, u, stdin_text, assigns=assigns, via=via)
        if base in DB_HOST_CLIENTS:
            self.db_target(base, args, u, assigns)

        if inner is None:
            return
        for why in inner.issues:
            u.require(why)
        if inner.assigns:
            self.units.append(Unit("assign", " ".join(inner.assigns), names=tuple(inner.assigns)))
        for argv in inner.commands:
            self.queue.append(
                _Job(
                    words=argv,
                    depth=depth + 1,
                    dynamic=inherited_dynamic or inner.dynamic,
                    stdin_text=stdin_text,
                    listed=base == "xargs" and self.fed_by_listing,
                    via=(*via, base),
                    env=(*assigns, *inner.env),
                )
            )
        for s in inner.shell:
            if base in POSIX_SHELL_RUNNERS and s.literal:
                # /bin/sh is dash on Debian and Ubuntu: where the string leaves
                # the POSIX subset, bash's reading (ours) is not what runs.
                differs = bash_only(s.value)
                if differs:
                    u.require(f"{base} runs this with a POSIX shell, not bash: {differs}")
            self.push_shell(s, depth, base, u)
        if base in SHELLS and stdin_text is not None and not inner.shell:
            self.queue.append(_Job(text=stdin_text, depth=depth + 1))

    def db_target(self, base: str, args: list[Word], u: Unit, assigns: list[str]) -> None:
        """A database client reaching another machine is at least
        require_approval, whatever the rules say (xguard/shell/dbhost.py)."""
        if not all(w.literal for w in args) or "" in assigns:
            u.require(f"{base} connects to a host known only at run time")
            return
        from xguard.shell.dbhost import remote_hosts

        hosts = remote_hosts(base, [w.value for w in args], assigns)
        if hosts:
            u.require(f"{base} connects to another machine: {', '.join(hosts)}")

    def read_builtin(self, args: list[Word], u: Unit) -> None:
        """`read [-ers] [-a NAME] [-d D] [-n N] [-p P] [-t T] [-u FD] [NAME…]`:
        the names it sets are an assign unit; `read 'a[$(cmd)]'` evaluates
        the subscript, so a name that is not a plain identifier is floored."""
        from xguard.shell.cmdspec import getopt

        o = getopt(args, "adinNptu")
        names = [v.value for k, v in o.opts if k == "a" and v is not None]
        names += [w.value for w in o.operands] or ([] if names else ["REPLY"])
        bad = [
            n
            for n in names
            if not n or not (n[0].isalpha() or n[0] == "_") or not n.replace("_", "a").isalnum()
        ]
        if bad or not all(w.literal for w in args):
            u.require("read sets a variable whose name is not a plain identifier")
        self.units.append(Unit("assign", " ".join(names), names=tuple(names)))

    def sql(
        self,
        base: str,
        words: list[Word],
        u: Unit,
        stdin_text: bytes | None,
        *,
        assigns: list[str],
        via: tuple[str, ...],
    ) -> None:
        if not all(w.literal or w.glob for w in words):
            u.require("SQL known only at run time")
            return
        from xguard.shell.sql import client_sql

        stdin = stdin_text.decode("utf-8", "surrogateescape") if stdin_text is not None else None
        res = client_sql([base, *(w.value for w in words[1:])], stdin=stdin)
        if res is None:
            return
        client = tuple(w.value for w in words)
        env = tuple(assigns)
        bases = tuple(self.cd_bases) + (("\x00",) if self.cd_dynamic else ())
        for why in res.issues:
            u.require(why)
        for s in res.units:
            # Client commands (psql's \dt, \d users …) are decided by the rules
            # like any SQL unit; the dangerous ones (\!, \o, \copy, \i …)
            # already raised an issue on the client's own unit above.
            self.units.append(
                Unit(
                    "sql",
                    s.text,
                    meta=s.meta,
                    client=client,
                    client_env=env,
                    client_via=via,
                    bases=bases,
                )
            )
        for p in res.write_paths:
            self.path_unit(lit(p), "write", must_exist=False)
        for p in res.read_paths:
            self.path_unit(lit(p), "read", must_exist=False)

    def glued_paths(self, w: Word) -> None:
        """`-fFILE`, `-f~/.ssh/key`, `-rf/etc`: a value glued to a short option.

        Which letter takes a value is the tool's business; every tail that
        starts like a path is a read unit, and the tail after the first
        letter counts when it names an existing file."""
        v = w.value
        for j in range(2, len(v)):
            tail = v[j:]
            if tail[0] in "/.~" or (j == 2 and "/" in tail):
                self.path_unit(
                    Word(tail, glob=w.glob, tilde=tail[0] == "~", approx=tail),
                    "read",
                    must_exist=True,
                )
        if "/" not in v:
            self.path_unit(Word(v[2:], glob=w.glob, approx=v[2:]), "read", must_exist=True)

    def path_unit(
        self,
        w: Word,
        access: str,
        *,
        must_exist: bool,
        redirect: bool = False,
        recursive: str = "",
        names_only: bool = False,
    ) -> None:
        """Record a word that may name a file (SPEC §3 `path`)."""
        # approx differs from value for run-time words and for <(…), which
        # bash passes as /dev/fd/N.
        v = w.approx if w.dynamic or w.missed or (w.approx and w.approx != w.value) else w.value
        if not v:
            return
        names_path = "/" in v or v.startswith((".", "~", "$HOME"))
        exists_check = False
        if not names_path and not redirect and access == "read":
            # A bare word is a path only if it names an existing file (decided
            # by the policy, which knows the cwd); run-time words cannot.
            if not must_exist or w.dynamic or w.missed:
                return
            exists_check = True
        u = Unit(
            "path",
            w.value,
            access=access,
            path=v,
            glob=w.glob or w.dynamic or w.missed,
            dynamic=w.dynamic or w.missed,
            tilde=w.tilde or v.startswith("$HOME"),
            must_exist=exists_check,
            recursive=recursive,
            names_only=names_only,
        )
        if not v.startswith(("/", "~", "$HOME")):
            u.bases = tuple(self.cd_bases)
            if self.cd_dynamic:
                u.require("relative path after a cd to a folder known only at run time")
        if (w.dynamic or w.missed) and access == "write":
            u.require("writes a file whose name is known only at run time")
        if (w.dynamic or w.missed) and redirect and access == "read":
            u.require("reads a file whose name is known only at run time")
        if w.brace:
            u.require("brace expansion in a file name")
        self.units.append(u)


_GLOB_CHARS = frozenset("*?[")

# Commands that show a folder's entries and their metadata, never what the
# files hold: `ls -la ~/.ssh` lists names; `cat ~/.ssh/id_rsa` is a read.
NAMES_ONLY = frozenset("ls dir vdir tree du stat find fd fdfind exa eza".split())

# Readers whose options cannot write a file or run a program, so a run-time
# list of the repository's files (a name may start with '-') is safe as
# their arguments.
LISTING_READERS = frozenset(
    "grep egrep fgrep cat head wc ls stat md5sum sha1sum sha256sum sha512sum b2sum cksum "
    "du basename dirname realpath".split()
)
# `git ls-files` and `git diff --name-only` print file names only with these
# options (`-o` would add untracked files, `--format` any text).
_LISTER_OPTS = frozenset(
    "-z -c --cached -m --modified -d --deleted --full-name --exclude-standard --name-only "
    "--staged -r --relative".split()
)


def _backquote_escapes(node: Node, src: bytes) -> bool:
    """A `…` substitution whose body holds \\`, \\$ or \\\\ (bash's escapes there)."""
    text = src[node.start_byte : node.end_byte]
    if not text.startswith(b"`"):
        return False
    i = text.find(b"\\", 1)
    while 0 <= i < len(text) - 1:
        if text[i + 1 : i + 2] in (b"`", b"$", b"\\"):
            return True
        i = text.find(b"\\", i + 2)
    return False


def _lists_files(node: Node, src: bytes) -> bool:
    """Is `node` (a command, or `$(command)`) `git ls-files` or `git diff
    --name-only` with plain options: its output is the repository's file names?"""
    if node.type == "command_substitution":
        inner = [c for c in node.named_children if c.is_named]
        if len(inner) != 1 or inner[0].type != "command":
            return False
        node = inner[0]
    return _words_list_files(
        src[node.start_byte : node.end_byte].decode("utf-8", "surrogateescape").split()
    )


def _words_list_files(words: list[str]) -> bool:
    if len(words) < 2 or words[0] != "git" or any(not _PLAIN_WORD.issuperset(w) for w in words):
        return False
    rest = words[2:]
    if words[1] == "ls-files" or (words[1] == "diff" and "--name-only" in rest):
        pass
    else:
        return False
    return all(w in _LISTER_OPTS or not w.startswith("-") for w in rest)


_PLAIN_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:@~^")


def _strip_pathspec_magic(v: str) -> str:
    """`:(top,glob).env` -> `.env`, `:/x` -> `x`, `:!x` -> `x` (git pathspec magic)."""
    if v.startswith(":("):
        end = v.find(")")
        return v[end + 1 :] if end > 0 else v
    if v.startswith(":"):
        return v[1:].lstrip("/!^") or "."
    return v


_GLUE_ROUNDS = 8


def _glued_words(root: Node) -> list[int]:
    """Where a word starts with a newline: tree-sitter-bash glues a line that
    begins with a backslash (`echo a` NL `\\rm x`) onto the previous command
    as an argument, where bash ends that command at the newline and runs the
    next line. Returns the offsets of the first non-blank byte of each such line."""
    out: list[int] = []
    todo = [root]
    while todo:
        n = todo.pop()
        text = n.text or b""
        if n.type in ("word", "concatenation") and text[:1] == b"\n":
            out.append(n.start_byte + len(text) - len(text.lstrip(b" \t\n")))
            continue
        todo.extend(n.children)
    return out


def _unglued(src: bytes, root: Node) -> tuple[bytes, Node]:
    """The text and tree with every glued line (_glued_words) indented by one
    space, which bash ignores at the start of a line outside quotes and which
    makes tree-sitter read the line as the command it is. Text tree-sitter
    still glues after a few rounds is not read at all (a syntax unit)."""
    for _ in range(_GLUE_ROUNDS):
        at = _glued_words(root)
        if not at:
            return src, root
        for k in sorted(at, reverse=True):
            src = src[:k] + b" " + src[k:]
        root = _ts_parser().parse(src).root_node
    if _glued_words(root):
        root = _ts_parser().parse(b"(").root_node  # an ERROR tree: floored as unreadable
    return src, root


def _split_statements(text: str) -> list[str]:
    """Crude, quote-aware split at shell operators, for error recovery only."""
    pieces = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            cur.append(c)
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
        elif c in "'\"":
            quote = c
            cur.append(c)
        elif c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 1
        elif c in ";&|\n()`":
            pieces.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    pieces.append("".join(cur))
    return [p.strip() for p in pieces if p.strip()]


# Arithmetic made only of these is evaluated without reading any variable:
# `$((1+2))` is harmless; `$((x))` evaluates x's *value* as arithmetic, and
# x='a[$(cmd)]' runs cmd.
_ARITH_LITERAL = frozenset(b"0123456789 \t+-*/%()<>=!&|^~?:,")
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789")


def _lists_names(text: bytes) -> bool:
    """`${!NAME[@]}`, `${!NAME[*]}`, `${!PREFIX@}`, `${!PREFIX*}`."""
    body = text[3:-1]
    for tail in (b"[@]", b"[*]", b"@", b"*"):
        if body.endswith(tail):
            name = body[: -len(tail)]
            return bool(name) and not name[:1].isdigit() and all(c in _NAME_BYTES for c in name)
    return False


def _arith_inner(text: bytes) -> bytes:
    """The expression of `$((…))`, `$[…]` or `((…))`."""
    if text.startswith(b"$(("):
        return text[3:-2]
    if text.startswith(b"$["):
        return text[2:-1]
    if text.startswith(b"(("):
        return text[2:-2]
    return text


def _evaluates(n: Node, src: bytes) -> bool:
    """Expansions that evaluate a variable's *value* as code — arithmetic
    (`$((x))`), array subscripts (arithmetic too), substring offsets and
    lengths (`${x:o:l}`, `${@:o}`: arithmetic), indirection (`${!x}`: x's
    value names what is expanded, `a[$(cmd)]` included), prompt expansion
    `${x@P}` — or that assign (`${X:=v}`, `${X=v}`: GLOBIGNORE or EXECIGNORE
    set that way change later commands). A value is dangerous however it
    was set (a `for` list, `read`, a literal assignment)."""
    text = src[n.start_byte : n.end_byte]
    if n.type == "arithmetic_expansion":
        return not _ARITH_LITERAL.issuperset(_arith_inner(text))
    if n.type == "expansion":
        if text.startswith(b"${!"):
            # `${!a[@]}` (an array's keys) and `${!pre*}` (names) list names;
            # any other `${!x}` expands the variable x's value names.
            return not _lists_names(text)
        if b"@P" in text:
            return True
        if b"[" in text and not _literal_subscripts(text):
            return True
        i = 2
        if text[i : i + 1] == b"#" and len(text) > 4:
            i += 1  # ${#x}: a length
        if i < len(text) and text[i] in _NAME_BYTES:
            while i < len(text) and text[i] in _NAME_BYTES:
                i += 1
            if text[i : i + 1] == b"[":
                # A literal subscript (`${a[@]:x}`, `${a[0]:x}`): what follows
                # it is read as after a plain name, so an offset still counts.
                j = text.find(b"]", i)
                i = len(text) if j < 0 else j + 1
        elif i < len(text) and text[i] in b"@*#?$!-":
            i += 1
        op = text[i : i + 2]
        if op[:1] == b"=" or op == b":=":
            return True
        # `${x:-d}`, `${x:=d}`, `${x:?m}`, `${x:+a}` are not substrings; any
        # other `:` starts an arithmetic offset.
        return op[:1] == b":" and op[1:2] not in (b"-", b"=", b"?", b"+")
    return False


def _assign_text(node: Node, src: bytes) -> str:
    """NAME=VALUE after quote removal; "" when the value is known only at run time."""
    w = dequote(src[node.start_byte : node.end_byte])
    v = w.value
    return "" if w.dynamic or w.missed or "$" in v or "`" in v else v


def _literal_subscripts(text: bytes) -> bool:
    """Every `[…]` in the expansion is a number, `@` or `*`."""
    i = text.find(b"[")
    while i >= 0:
        j = text.find(b"]", i)
        if j < 0:
            return False
        inner = text[i + 1 : j].strip()
        if not (inner in (b"@", b"*") or inner.isdigit()):
            return False
        i = text.find(b"[", j)
    return True


def _hidden_substitution(n: Node, src: bytes) -> bool:
    """tree-sitter-bash files the operand of `${x:-…}`, `${x#…}`, `${x^…}` and
    the like as a plain `word` or `regex` when it holds `…` or a $(…) it does
    not parse there, so the command inside would never become a unit. Inside
    "…" a '…' operand is no quote to bash either (`"${x:-'`cmd`'}"` runs cmd)."""
    for c in n.children:
        if c.type in ("word", "regex", "raw_string"):
            text = src[c.start_byte : c.end_byte]
            if any(tok in text for tok in (b"`", b"$(", b"<(", b">(")):
                return True
    return False


def _evaluation(root: Node, src: bytes) -> str | None:
    """Why some part of the tree evaluates a run-time value as code, or None.

    One pass over the whole tree, so every context counts: arguments,
    assignment values, for lists, case words, redirect targets, here-document
    bodies, `((…))`, `for ((…))` and array subscripts."""
    todo = [root]
    while todo:
        n = todo.pop()
        t = n.type
        if t == "expansion" and _hidden_substitution(n, src):
            return (
                "a command substitution inside ${…} that the parser reads as text "
                "(`${x:-`cmd`}`, `${x#$(cmd)}`): bash runs it"
            )
        if t in ("arithmetic_expansion", "expansion"):
            if _evaluates(n, src):
                return (
                    "arithmetic, indirection (${!x}), substring offset (${x:o}), array "
                    "subscript, ${x@P} or ${x:=v}: bash evaluates a variable's value as "
                    "code or assigns it"
                )
            if t == "arithmetic_expansion":
                continue
        elif t == "subscript":
            idx = n.child_by_field_name("index")
            inner = src[idx.start_byte : idx.end_byte].strip() if idx is not None else b"?"
            if not (inner in (b"@", b"*") or inner.isdigit()):
                return "array subscript: bash evaluates it as arithmetic on variables' values"
        elif t == "c_style_for_statement" and not _loop_arith_literal(
            src[n.start_byte : n.end_byte]
        ):
            return "for ((…)) arithmetic reads variables' values as code"
        elif (
            t == "compound_statement"
            and n.children
            and n.children[0].type == "(("
            and not _ARITH_LITERAL.issuperset(_arith_inner(src[n.start_byte : n.end_byte]))
        ):
            return "((…)) arithmetic reads variables' values as code"
        todo.extend(n.children)
    return None


def _loop_arith_literal(text: bytes) -> bool:
    """`for ((i=0; i<10; i++))`: every name it reads is set from a number in
    its own first clause, so no outside value is evaluated."""
    head_end = text.find(b"))")
    if not text.startswith(b"for") or head_end < 0:
        return False
    head = text[text.find(b"((") + 2 : head_end]
    if any(c in head for c in b"$`[\"'"):
        return False
    init = head.split(b";", 1)[0]
    assigned = set()
    for part in init.split(b","):
        name, eq, val = part.partition(b"=")
        if not eq or not val.strip().isdigit():
            return False
        assigned.add(name.strip())
    names = set()
    i = 0
    while i < len(head):
        if head[i] in _NAME_BYTES and not head[i : i + 1].isdigit():
            j = i
            while j < len(head) and head[j] in _NAME_BYTES:
                j += 1
            names.add(head[i:j])
            i = j
        elif head[i : i + 1].isdigit():
            while i < len(head) and head[i] in _NAME_BYTES:
                i += 1
        else:
            i += 1
    return names <= assigned


def _txt(node: Node, src: bytes) -> str:
    return src[node.start_byte : node.end_byte].decode("utf-8", "surrogateescape")


def _error_excerpt(root: Node, src: bytes) -> str:
    todo = [root]
    while todo:
        n = todo.pop()
        if n.type == "ERROR" or n.is_missing:
            s = src[n.start_byte : n.end_byte][:40].decode("utf-8", "replace")
            return f"near {s!r}" if s else f"missing {n.type!r}"
        if n.has_error:
            todo.extend(reversed(n.children))
    return "syntax error"


def parse(text: str, budget: float = TIME_BUDGET, *, fast: bool = True) -> list[Unit]:
    """Break a command string into units. Never raises on any input.

    fast=False forces the tree-sitter path even for plain commands (the
    differential test uses it to prove the fast lexer equal).
    """
    collecting = gc.isenabled()
    gc.disable()  # see TIME_BUDGET
    try:
        return _parse(text, budget, fast)
    finally:
        if collecting:
            gc.enable()


def _parse(text: str, budget: float, fast: bool) -> list[Unit]:
    units: list[Unit] = []
    try:
        size = len(text.encode("utf-8", "surrogateescape"))
    except (
        UnicodeEncodeError
    ):  # a lone surrogate (from JSON input, say): not text bash could be given
        return [_input_unit("the command is not valid Unicode text (a lone surrogate)")]
    if len(text) > MAX_INPUT or size > MAX_INPUT:
        return [_input_unit("command longer than 64 KiB")]
    for why in input_issues(text):
        units.append(_input_unit(why))
    w = _Walker(budget, fast)
    w.queue.append(_Job(text=text.encode("utf-8", "surrogateescape"), depth=0))
    if _has_joined_word(text):
        # bash joins `r\<newline>m` into `rm`; tree-sitter splits it in two.
        # Check the joined reading as well (SPEC §3: at least require_approval).
        units.append(_input_unit("backslash-newline inside a word"))
        w.queue.append(
            _Job(text=text.replace("\\\n", "").encode("utf-8", "surrogateescape"), depth=1)
        )
    _run(w)
    units.extend(w.units)
    if (
        not any(u.kind in ("command", "assign", "function", "path", "sql") for u in units)
        and text.strip()
    ):
        # Only comments or blanks, or nothing the walker understood.
        if _only_comments(text):
            return units
        units.append(_input_unit("no command found in the text"))
    return units


def parse_argv(argv: list[str], budget: float = TIME_BUDGET) -> list[Unit]:
    """Units of an argv run directly (`xguard run -- ARGV`): no shell re-interpretation."""
    collecting = gc.isenabled()
    gc.disable()  # see TIME_BUDGET
    try:
        return _parse_argv(argv, budget)
    finally:
        if collecting:
            gc.enable()


def _parse_argv(argv: list[str], budget: float) -> list[Unit]:
    units: list[Unit] = []
    for a in argv:
        try:
            a.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return [_input_unit("an argument is not valid Unicode text (a lone surrogate)")]
        for why in input_issues(a):
            units.append(_input_unit(why))
    w = _Walker(budget)
    w.queue.append(_Job(words=[lit(a) for a in argv], depth=0))
    _run(w)
    units.extend(w.units)
    return units


def _run(w: _Walker) -> None:
    """Run the walker within its budget; what the budget or the nesting stops
    becomes a unit."""
    try:
        w.run()
    except _Budget as e:
        w.units.append(_input_unit(str(e)))
    except RecursionError:
        w.units.append(_input_unit("command too deeply nested to check"))


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())

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

import os
import time
from xguard._record import dataclass

from xguard.shell.cmdspec import CODE_BUILTINS, SHELLS, WRITERS, unwrap
from xguard.shell.words import Word, dequote, fast_list, lit

MAX_INPUT = 64 * 1024  # SPEC §3: over 64 KiB of text is at least require_approval
MAX_DEPTH = 16  # nested shell code (bash -c "bash -c …")
MAX_PARSES = 256  # tree-sitter parses of nested strings per command
MAX_NODES = 200_000
TIME_BUDGET = 0.25  # seconds; a hostile command costs milliseconds, then fails closed

# Directories whose programs are the system's own: `/usr/bin/ls` may match an
# allow rule for `ls`, but `./ls` or `/tmp/x/ls` may not (they are other programs).
SYSTEM_BIN_DIRS = frozenset(
    {"/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin", "/usr/local/sbin"}
)

DB_CLIENTS = frozenset(
    {"psql", "mysql", "mariadb", "sqlite3", "sqlite", "clickhouse-client", "cockroach"}
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
      bases (folders a `cd` earlier in the text may have moved to).
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
_PARSER = None


def _ts_parser():  # type: ignore[no-untyped-def]
    """The tree-sitter parser, created on first use (its import costs ~20-35 ms)."""
    global _PARSER
    if _PARSER is None:
        import tree_sitter_bash
        from tree_sitter import Language, Parser

        _PARSER = Parser(Language(tree_sitter_bash.language()))
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
    via: tuple[str, ...] = ()  # the wrappers (sudo, env, ssh …) this argv runs inside


class _Walker:
    def __init__(self, budget: float, fast: bool = True) -> None:
        self.fast = fast
        self.units: list[Unit] = []
        self.queue: list[_Job] = []
        self.deadline = time.monotonic() + budget
        self.parses = 0
        self.nodes = 0
        # `cd DIR && cat f` reads DIR/f: relative paths are also resolved
        # against every folder a cd in the text may have moved to.
        self.cd_bases: list[str] = []
        self.cd_dynamic = False
        # Set by word() when an expansion evaluates text as code; the unit
        # being built takes a floor (see _evaluates).
        self.evaluating = False

    # -- queue --------------------------------------------------------------
    def run(self) -> None:
        i = 0
        while i < len(self.queue):
            job = self.queue[i]
            i += 1
            if time.monotonic() > self.deadline:
                raise _Budget("parse exceeded its time budget")
            if job.depth > MAX_DEPTH:
                self.units.append(_input_unit("shell code nested too deep to check"))
                continue
            if job.words is not None:
                self.simple_command(
                    job.words, [], job.depth, job.dynamic, job.stdin_text, via=job.via
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
        if fl is not None:
            for fw in fl:
                self.simple_command([lit(w) for w in fw], [], depth, False, None)
            return
        self.parses += 1
        if self.parses > MAX_PARSES:
            raise _Budget("too many nested pieces of shell code to check")
        tree = _ts_parser().parse(src)
        root = tree.root_node
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
        self.walk(root, src, depth)

    def walk(self, root, src: bytes, depth: int) -> None:  # type: ignore[no-untyped-def]
        stack = [root]
        while stack:
            node = stack.pop()
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise _Budget("command too large to check")
            if self.nodes % 512 == 0 and time.monotonic() > self.deadline:
                raise _Budget("parse exceeded its time budget")
            t = node.type
            if not node.is_named or t == "comment":
                continue
            # Handlers push nested statements to `found` in source order; the
            # stack is LIFO, so they go on it reversed to keep that order.
            found: list = []  # type: ignore[type-arg]
            self.dispatch(node, t, src, depth, found)
            stack.extend(reversed(found))

    def dispatch(self, node, t: str, src: bytes, depth: int, stack: list) -> None:  # type: ignore[no-untyped-def,type-arg]
        if t in _STRUCTURAL:
            stack.extend(node.named_children)
        elif t == "command":
            self.command_node(node, src, depth, None, stack)
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
            nm = name.text.decode("utf-8", "surrogateescape") if name is not None else "?"
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
    def scan_substitutions(self, node, stack: list) -> None:  # type: ignore[no-untyped-def,type-arg]
        """Push every outermost $(…)/<(…) inside `node` so its commands become units."""
        todo = [node]
        while todo:
            n = todo.pop()
            self.nodes += 1
            if n.type in _SUBST_NODES:
                stack.append(n)
                continue
            todo.extend(reversed(n.children))

    def word(self, node, src: bytes, stack: list) -> Word:  # type: ignore[no-untyped-def,type-arg]
        """Quote-removed value of a word node; its substitutions go on the stack."""
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
    def command_node(  # type: ignore[no-untyped-def]
        self,
        node,
        src: bytes,
        depth: int,
        stdin_text: bytes | None,
        stack: list,  # type: ignore[type-arg]
    ) -> None:
        self.evaluating = False
        assigns = []
        pieces: list = []  # type: ignore[type-arg]
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
        # bash delimits words by blanks, not by tree-sitter's tokens: adjacent
        # pieces are one word (tree-sitter splits `=="x"` into an anonymous
        # `==` token and a string; dropping the token would lose text bash runs).
        groups: list[list] = []  # type: ignore[type-arg]
        for c in pieces:
            if groups and groups[-1][-1].end_byte == c.start_byte:
                groups[-1].append(c)
            else:
                groups.append([c])
        words = [self.word_group(g, src, stack) for g in groups]
        evaluating = self.evaluating
        if assigns:
            self.assign_unit(assigns, src, stack, standalone=not words)
        if words:
            # The assignments' text travels with SQL units: the impact preview
            # connects with the environment the client gets (PGHOST=… psql).
            env = [_assign_text(a, src) for a in assigns]
            self.simple_command(words, env, depth, False, stdin_text)
        if evaluating:
            self.units.append(
                _input_unit(
                    "arithmetic, array subscript, ${x@P} or ${x:=v} expansion: bash "
                    "evaluates a variable's value as code or assigns it"
                )
            )

    def word_group(self, nodes: list, src: bytes, stack: list) -> Word:  # type: ignore[type-arg]
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

    def assign_unit(self, assigns: list, src: bytes, stack: list, standalone: bool) -> None:  # type: ignore[type-arg]
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

    def declaration(self, node, src: bytes, depth: int, stack: list) -> None:  # type: ignore[no-untyped-def,type-arg]
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

    def test_node(self, node, src: bytes, stack: list) -> None:  # type: ignore[no-untyped-def,type-arg]
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

    def redirected(self, node, src: bytes, depth: int, stack: list) -> None:  # type: ignore[no-untyped-def,type-arg]
        body = node.child_by_field_name("body")
        stdin_text = None
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
        if body is None:
            return
        if body.type == "command":
            self.command_node(body, src, depth, stdin_text, stack)
        else:
            stack.append(body)

    def redirect(self, node, src: bytes, depth: int, stack: list) -> bytes | None:  # type: ignore[no-untyped-def,type-arg]
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
                op = c.type
            elif c.type != "file_descriptor":
                dest = c
        if dest is None:
            return None
        if dest.type in _SUBST_NODES:  # > >(cmd), < <(cmd)
            stack.append(dest)
            return None
        w = self.word(dest, src, stack)
        if op in (">&", "<&", ">&-", "<&-") and (w.value.isdigit() or w.value == "-") and w.literal:
            return None  # duplicates or closes a file descriptor
        access = "read" if op in ("<", "<&") else "write"
        self.path_unit(w, access, must_exist=False, redirect=True)
        return None

    def heredoc(self, node, src: bytes, stack: list) -> bytes | None:  # type: ignore[no-untyped-def,type-arg]
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
        via: tuple[str, ...] = (),
    ) -> None:
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
        u.dynamic = inherited_dynamic or any(w.dynamic or w.brace or w.missed for w in args)
        nm = name.value
        if not nm.isascii():
            u.require("non-ASCII character in the command name")
        if any(c.isspace() for c in nm):
            # Unit text joins words with blanks: `'git status' x` would read as `git status x`.
            u.require("blank inside the command name")
        base = nm.rsplit("/", 1)[-1] if "/" in nm else nm
        if "/" in nm and base:
            u.alt_text = " ".join([base, *u.words[1:]])
            folder = os.path.normpath(nm.rsplit("/", 1)[0] or "/")
            u.alt_trusted = folder in SYSTEM_BIN_DIRS
        if nm in RESERVED_NAMES:
            u.require(f"shell keyword '{nm}' where a command should be")
        if base in CODE_BUILTINS:
            u.require(CODE_BUILTINS[base])
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
                continue
            self.path_unit(w, "read", must_exist=True)

        # SQL given to a database client.
        if base in DB_CLIENTS:
            self.sql(base, words, u, stdin_text, assigns=assigns, via=via)

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
                    via=(*via, base),
                )
            )
        for s in inner.shell:
            self.push_shell(s, depth, base, u)
        if base in SHELLS and stdin_text is not None and not inner.shell:
            self.queue.append(_Job(text=stdin_text, depth=depth + 1))

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

    def path_unit(self, w: Word, access: str, *, must_exist: bool, redirect: bool = False) -> None:
        """Record a word that may name a file (SPEC §3 `path`)."""
        v = w.approx if w.dynamic or w.missed else w.value
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


def _evaluates(n, src: bytes) -> bool:  # type: ignore[no-untyped-def]
    """Expansions that evaluate a variable's *value* as code — arithmetic
    (`$((x))`, where x='a[$(cmd)]' runs cmd), array subscripts (arithmetic
    too), prompt expansion `${x@P}` — or that assign (`${X:=v}`, `${X=v}`:
    GLOBIGNORE or EXECIGNORE set that way change later commands)."""
    if n.type == "arithmetic_expansion":
        return True
    if n.type == "expansion":
        text = src[n.start_byte : n.end_byte]
        if b"[" in text or b"@P" in text:
            return True
        name_end = 2
        while name_end < len(text) and (chr(text[name_end]).isalnum() or text[name_end] == 0x5F):
            name_end += 1
        return text[name_end : name_end + 1] == b"=" or text[name_end : name_end + 2] == b":="
    return False


def _assign_text(node, src: bytes) -> str:  # type: ignore[no-untyped-def]
    """NAME=VALUE after quote removal; "" when the value is known only at run time."""
    w = dequote(src[node.start_byte : node.end_byte])
    v = w.value
    return "" if w.dynamic or w.missed or "$" in v or "`" in v else v


def _txt(node, src: bytes) -> str:  # type: ignore[no-untyped-def]
    return src[node.start_byte : node.end_byte].decode("utf-8", "surrogateescape")


def _error_excerpt(root, src: bytes) -> str:  # type: ignore[no-untyped-def]
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
    try:
        w.run()
    except _Budget as e:
        w.units.append(_input_unit(str(e)))
    except RecursionError:
        w.units.append(_input_unit("command too deeply nested to check"))
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
    try:
        w.run()
    except _Budget as e:
        w.units.append(_input_unit(str(e)))
    units.extend(w.units)
    return units


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())

"""Agent runtimes' command wrappers, recognised by their structure.

A runtime whose shell is xguard (SHELL, CLAUDE_CODE_SHELL, a login shell, a
`bash` first on PATH, CLAUDE_CODE_SHELL_PREFIX) does not send the model's
command alone: it wraps it in preparation statements of its own. Gating the
whole wrapper would make every command wait for a person, show the reviewer
scaffolding instead of the command, and, once approved, run the runtime's
snapshot script ungated. So:

- `recognise(text)` takes a wrapper apart by its *structure*, not by an exact
  string: a table of harmless preparation statement kinds (shopt, setopt,
  unalias, unset -f, in bash and zsh spellings, with or without `\\builtin`,
  whatever options or names they carry, and whatever redirections and
  `|| true` follow), the snapshot `source`, the `eval` of one quoted command,
  and the epilogue (Claude Code's cwd file, Gemini CLI's exit-code and
  background-pid lines). A new harmless statement of a known kind does not
  change the outcome; one of an unknown kind is kept and decided with the
  command (`Unwrapped.extra`), never dropped.
- What is decided, shown and audited is the model's command (plus any unknown
  statement). What runs is that command rebuilt here from fixed parts: the
  preparation statements are not run (they tune the runtime's own shell; xguard
  runs a fresh bash), and the snapshot is **never sourced**: it is a file the
  agent can write with its file tools, so sourcing it would run its functions
  ungated.
- `startup(text)` recognises a runtime's own start-up steps (Claude Code's
  `<shell> -c env` probe and its snapshot script, Codex's snapshot script and
  the check that sources it), which the front end answers at once, without a
  pending request, and with a record of their own.

Shapes were read from the runtimes' own code: Claude Code 2.1.332
(bashProvider: `source <snapshot> 2>/dev/null || true && \\builtin shopt -u
extglob 2>/dev/null || true && { \\builtin unalias -- 'which'; \\builtin unset
-f -- 'which'; } >/dev/null 2>&1 || true && eval 'CMD' < /dev/null && pwd -P >|
/tmp/claude-XXXX-cwd`), Gemini CLI 0.61.0 (shellExecutionService
`ensurePromptvarsDisabled` and shell.ts `wrapCommandForBackgroundPIDs`) and
Codex CLI 0.171.0 (its shell snapshot script). tests/unit/test_wrappers.py
holds the captured texts; tests/runtimes/ drives the real programs.

Standard library only, and `re` only when a text already looks like a
wrapper: this runs on the hot path.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # collections.abc pulls in collections: ~3 ms on every command
if TYPE_CHECKING:
    from collections.abc import Mapping

# ---------------------------------------------------------------------------
# Static shell words, decoded as bash decodes them.

# Unquoted characters that stand for themselves in bash (no expansion, no
# operator, no word break). Anything else unquoted makes the word "not static".
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./,:=+@%^")
_DQ_ESCAPABLE = frozenset('$`"\\\n')  # inside "...", a backslash escapes only these


def static_word(s: str, i: int) -> tuple[str, int] | None:
    """Decode one shell word starting at s[i] that bash would not expand.

    Returns (value, end index) where the word ends at a blank, at the end of
    the string, or before an unquoted operator character; None when the word
    holds an expansion ($, `, globs, ~, braces), an unterminated quote, or is
    empty. Single quotes are literal; in double quotes a backslash escapes only
    $ ` " \\ and newline; outside quotes a backslash makes the next character
    literal.
    """
    out: list[str] = []
    n = len(s)
    start = i
    while i < n:
        c = s[i]
        if c in " \t\n":
            break
        if c == "'":
            j = s.find("'", i + 1)
            if j < 0:
                return None
            out.append(s[i + 1 : j])
            i = j + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    return None
                d = s[i]
                if d == '"':
                    i += 1
                    break
                if d in "$`":
                    return None
                if d == "\\" and i + 1 < n and s[i + 1] in _DQ_ESCAPABLE:
                    if s[i + 1] != "\n":  # backslash-newline is removed
                        out.append(s[i + 1])
                    i += 2
                    continue
                out.append(d)
                i += 1
        elif c == "\\":
            if i + 1 >= n:
                return None
            if s[i + 1] != "\n":
                out.append(s[i + 1])
            i += 2
        elif c in "|&;<>()":
            break
        elif c in _PLAIN or (not c.isascii() and c.isprintable()):
            out.append(c)
            i += 1
        else:  # $ ` * ? [ ] { } ~ # ! control characters: not static
            return None
    if i == start:
        return None
    return "".join(out), i


def sq(s: str) -> str:
    """Single-quote for bash: exact, no expansion."""
    return "'" + s.replace("'", "'\\''") + "'"


# ---------------------------------------------------------------------------
# Temporary files a runtime names in its wrapper (cwd file, background pids).

_TMP_ROOTS = ("/tmp", "/var/tmp", "/private/tmp", "/var/folders", "/private/var/folders")  # noqa: S108


def _tmp_roots(environ: Mapping[str, str] | None) -> list[str]:
    roots = list(_TMP_ROOTS)
    for var in ("TMPDIR", "CLAUDE_CODE_TMPDIR"):
        v = (environ or {}).get(var, "")
        if v.startswith("/") and v != "/":
            roots.append(os.path.normpath(v))
    return roots


def _temp_file_ok(path: str, environ: Mapping[str, str] | None) -> bool:
    """An absolute, normalised path under a temp folder, and not a symlink,
    nor in a folder that resolves out of the temp folders (/tmp/d/x with
    /tmp/d -> /etc/cron.d): the wrapper's file must never be a way to write
    somewhere else. xguard writes it through an fd it opens itself, never by
    name in the shell (gate/execenv.py open_trailer_file)."""
    if not path.startswith("/") or os.path.normpath(path) != path:
        return False
    d = os.path.dirname(path)
    roots = _tmp_roots(environ)
    if not any(d == r or d.startswith(r + "/") for r in roots):
        return False
    real = os.path.realpath(d)
    if not any(
        real == x or real.startswith(x.rstrip("/") + "/") for x in map(os.path.realpath, roots)
    ):
        return False
    return not os.path.islink(path)


def _claude_cwd_file(path: str, environ: Mapping[str, str] | None) -> bool:
    import re

    base = os.path.basename(path)
    if not re.fullmatch(r"claude-[0-9a-f]{1,64}-cwd|cwd-[A-Za-z0-9_-]{1,128}", base):
        return False
    return _temp_file_ok(path, environ)


def _gemini_pid_file(path: str, environ: Mapping[str, str] | None) -> bool:
    import re

    d, base = os.path.split(path)
    if base != "bgpids.tmp" or not re.fullmatch(
        r"gemini-shell-[A-Za-z0-9_]{1,32}", os.path.basename(d)
    ):
        return False
    return _temp_file_ok(path, environ)


def _snapshot_path(path: str) -> bool:
    """Claude Code's snapshot: <config>/shell-snapshots/snapshot-<shell>-<ms>-<rand>.sh."""
    import re

    d, base = os.path.split(path)
    return (
        path.startswith("/")
        and os.path.basename(d) == "shell-snapshots"
        and re.fullmatch(r"snapshot-(?:bash|zsh|sh)-[0-9]{1,20}-[A-Za-z0-9]{1,32}\.sh", base)
        is not None
    )


# ---------------------------------------------------------------------------
# Preparation statements: the table of kinds that are safe not to run.
#
# xguard runs the model's command in a fresh `bash -c` and never runs these:
# each only tunes the runtime's own shell (glob options, an alias or function
# that would shadow a builtin). Dropping one can change how a command
# behaves, never what it is allowed to do; a statement of any other kind is
# kept and decided with the command.


def _names(args: list[str], ok: str) -> bool:
    return bool(args) and all(a and all(c in ok for c in a) for a in args)


_LOWER = "abcdefghijklmnopqrstuvwxyz_"
_OPTION = _LOWER + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_IDENT = _OPTION + ".:-"


def _harmless(words: list[str]) -> bool:
    """One simple command of a preparation statement: is it of a known kind?"""
    if words[:1] in (["builtin"], ["command"]):
        words = words[1:]
    if not words:
        return False
    name, args = words[0], words[1:]
    if name == "shopt":  # bash: `shopt -u extglob`, `shopt -u promptvars nullglob …`
        return args[:1] in (["-u"], ["-s"]) and _names(args[1:], _LOWER)
    if name in ("setopt", "unsetopt"):  # zsh: `setopt NO_EXTENDED_GLOB NO_BARE_GLOB_QUAL …`
        return _names(args, _OPTION)
    if name == "unalias":  # `unalias -- 'which'`
        return _names([a for a in args if a != "--"], _IDENT) and args[-1:] != ["--"]
    if name == "unset":  # `unset -f -- 'which'`: a function only, never a variable
        rest = [a for a in args if a != "--"]
        return rest[:1] == ["-f"] and _names(rest[1:], _IDENT)
    return False


# The redirections a preparation statement may carry: output to /dev/null only.
_REDIRS = ("2>/dev/null", ">/dev/null", "2>&1", "&>/dev/null", ">&/dev/null")


class _Tok:
    __slots__ = ("end", "kind", "start", "value")

    def __init__(self, kind: str, value: str, start: int, end: int) -> None:
        self.kind, self.value, self.start, self.end = kind, value, start, end


def _tokens(s: str) -> list[_Tok] | None:
    """Tokens of a preparation segment: static words, `{ } ; && ||` and the
    /dev/null redirections. None when anything else is there."""
    out: list[_Tok] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t":
            i += 1
            continue
        for op in ("&&", "||", ";"):
            if s.startswith(op, i):
                out.append(_Tok("op", op, i, i + len(op)))
                i += len(op)
                break
        else:
            for r in _REDIRS:
                if s.startswith(r, i):
                    out.append(_Tok("redir", r, i, i + len(r)))
                    i += len(r)
                    break
            else:
                if c in "{}" and (i + 1 == n or s[i + 1] in " \t;"):
                    out.append(_Tok("op", c, i, i + 1))
                    i += 1
                    continue
                w = static_word(s, i)
                if w is None:
                    return None
                out.append(_Tok("word", w[0], i, w[1]))
                i = w[1]
    return out


def _statement_harmless(toks: list[_Tok]) -> bool:
    """`A [|| B] REDIRS [|| true]` or `{ A; B; } REDIRS [|| true]`, where every
    simple command A, B is of a harmless kind."""
    # strip a trailing `|| true`
    if (
        len(toks) >= 2
        and toks[-2].kind == "op"
        and toks[-2].value == "||"
        and toks[-1].kind == "word"
        and toks[-1].value in ("true", ":")
    ):
        toks = toks[:-2]
    while toks and toks[-1].kind == "redir":
        toks = toks[:-1]
    if toks and toks[0].kind == "op" and toks[0].value == "{":
        if toks[-1].kind != "op" or toks[-1].value != "}":
            return False
        toks = toks[1:-1]
    if not toks:
        return False
    words: list[str] = []
    for t in [*toks, _Tok("op", ";", 0, 0)]:
        if t.kind == "word":
            words.append(t.value)
        elif t.kind == "redir":
            continue
        elif t.value in (";", "||"):
            if words and not _harmless(words):
                return False
            words = []
        else:
            return False
    return True


# ---------------------------------------------------------------------------
# Results.


class Unwrapped:
    """A runtime's wrapper taken apart. (A plain class: the dataclasses module
    costs ~7 ms to import on the hot path.)"""

    __slots__ = ("command", "dropped", "exec_text", "extra", "meta", "runtime")

    def __init__(
        self,
        runtime: str,
        command: str,
        exec_text: str,
        dropped: list[str],
        extra: list[str],
        *,
        meta: dict[str, object] | None = None,
    ) -> None:
        self.runtime = runtime  # claude-code | gemini
        self.command = command  # decided, shown and audited: the model's command (+ extra)
        self.exec_text = exec_text  # what bash runs: `command` plus fixed scaffolding rebuilt here
        self.dropped = dropped  # preparation statements recognised and not run (snapshot included)
        self.extra = extra  # statements of an unknown kind: kept, decided with the command
        self.meta = meta or {}  # runtime-specific facts (Claude Code: cwd_file, stdin_null)

    @property
    def source(self) -> str:
        """The audit record's `source`: shell:<runtime>."""
        return f"shell:{self.runtime}"

    @property
    def writes(self) -> tuple[tuple[str, bool], ...]:
        """Files the scaffolding itself writes, for the kernel box to let through
        (issue 11), each with whether it is written on every run: Gemini's
        EXIT trap always writes its pid file; Claude Code's cwd report follows
        `&&`, so an empty one was never written."""
        out: list[tuple[str, bool]] = []
        if "cwd_file" in self.meta:
            out.append((str(self.meta["cwd_file"]), False))
        if "pid_file" in self.meta:
            out.append((str(self.meta["pid_file"]), True))
        return tuple(out)

    def __repr__(self) -> str:
        return f"Unwrapped({self.runtime!r}, {self.command!r}, extra={self.extra!r})"


class Startup:
    """A runtime's own start-up step, answered without a request."""

    __slots__ = ("kind", "runtime", "what")

    def __init__(self, runtime: str, kind: str, what: str) -> None:
        self.runtime = runtime
        self.kind = kind  # env-probe | snapshot | snapshot-check
        self.what = what  # one line for the record and for stderr

    def __repr__(self) -> str:
        return f"Startup({self.runtime!r}, {self.kind!r})"


# ---------------------------------------------------------------------------
# Claude Code.

_CLAUDE_TRAILER = " && pwd -P >| "


def _eval_section(s: str) -> tuple[str, bool] | None:
    """The words after `eval`: (command, stdin from /dev/null) or None.

    Q(cmd) \\< /dev/null     shell-quote of [cmd, '<', '/dev/null']
    'cmd' < /dev/null       multiline, or a pipe it could not rearrange
    'cmd'                   heredoc: no redirect
    """
    toks: list[tuple[str, str]] = []
    i, n = 0, len(s)
    while i < n:
        if s[i] == " ":
            i += 1
            continue
        if s[i] == "<" and (i + 1 == n or s[i + 1] == " "):
            toks.append(("op", "<"))
            i += 1
            continue
        w = static_word(s, i)
        if w is None:
            return None
        toks.append(("word", w[0]))
        i = w[1]
        if i < n and s[i] not in " \t":
            return None  # an operator glued to a word: not the wrapper
    if not toks or toks[0][0] != "word" or not toks[0][1].strip():
        return None
    cmd = toks[0][1]
    if len(toks) == 1:
        return cmd, False
    if (
        len(toks) == 3
        and toks[2] == ("word", "/dev/null")
        and toks[1] in (("op", "<"), ("word", "<"))
    ):
        return cmd, True
    return None


def _claude(text: str, environ: Mapping[str, str] | None) -> Unwrapped | None:
    k = text.rfind(_CLAUDE_TRAILER)
    if k < 0:
        return None
    w = static_word(text, k + len(_CLAUDE_TRAILER))
    if w is None or w[1] != len(text) or not _claude_cwd_file(w[0], environ):
        return None
    cwd_file = w[0]
    # The statements before `eval`, joined by top-level ` && `. They hold only
    # static words and fixed operators, so a plain split is exact here; the
    # quoted command after `eval` is never split.
    if text.startswith("eval "):
        head, ev = "", 5
    else:
        j = text.find(" && eval ")
        if j < 0:
            return None
        head, ev = text[:j], j + len(" && eval ")
    if "\n" in head:
        return None
    inner = _eval_section(text[ev:k])
    if inner is None:
        return None
    command, stdin_null = inner
    dropped: list[str] = []
    extra: list[str] = []
    segments = _split_and(head) if head else []
    if segments is None:
        return None
    for n, (raw, toks) in enumerate(segments):
        if n == 0 and _snapshot_source(toks):
            dropped.append(raw)  # the snapshot: never sourced
        elif _statement_harmless(toks):
            dropped.append(raw)
        else:
            extra.append(raw)
    redirect = " < /dev/null" if stdin_null else ""
    run = f"eval {sq(command)}{redirect}"
    decided = " && ".join([*extra, run]) if extra else command
    # The cwd report goes to fd 9, which xguard opens on the cwd file before
    # the command runs (gate/execenv.py open_trailer_file): `>| FILE` would
    # follow a symlink the command itself made there. The command runs with
    # fd 9 closed, so it never holds the file.
    return Unwrapped(
        "claude-code",
        decided,
        f"{' && '.join([*extra, run + ' 9>&-'])} && pwd -P >&9",
        dropped,
        extra,
        meta={"cwd_file": _resolved(cwd_file), "stdin_null": stdin_null},
    )


def _resolved(path: str) -> str:
    """The temp file's path with its folder resolved (/var/folders is
    /private/var/folders on macOS): opened one component at a time without
    following a symlink, so a folder swapped for one later is refused."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _snapshot_source(toks: list[_Tok]) -> bool:
    """`source <snapshot> [2>/dev/null] [|| true]`, and nothing else."""
    kinds = [(t.kind, t.value) for t in toks]
    if kinds[-2:] == [("op", "||"), ("word", "true")]:
        kinds = kinds[:-2]
    while kinds and kinds[-1][0] == "redir":
        kinds = kinds[:-1]
    return (
        len(kinds) == 2
        and kinds[0] in (("word", "source"), ("word", "."))
        and kinds[1][0] == "word"
        and _snapshot_path(kinds[1][1])
    )


def _split_and(head: str) -> list[tuple[str, list[_Tok]]] | None:
    """Split the preparation part at top-level `&&` (outside `{ }`)."""
    toks = _tokens(head)
    if toks is None:
        return None
    out: list[tuple[str, list[_Tok]]] = []
    depth, cur = 0, []  # type: int, list[_Tok]
    for t in toks:
        if t.kind == "op" and t.value == "{":
            depth += 1
        elif t.kind == "op" and t.value == "}":
            depth -= 1
            if depth < 0:
                return None
        if t.kind == "op" and t.value == "&&" and depth == 0:
            if not cur:
                return None
            out.append((head[cur[0].start : cur[-1].end], cur))
            cur = []
        else:
            cur.append(t)
    if not cur or depth:
        return None
    out.append((head[cur[0].start : cur[-1].end], cur))
    return out


# ---------------------------------------------------------------------------
# Gemini CLI: `shopt -u …; _bgpids_file=F\n(\n  trap '…' EXIT\nCMD\n)\n__code=$?\nexit $__code`

_GEMINI_TRAP = "\n(\n  trap 'jobs -p > \"$_bgpids_file\"' EXIT\n"
_GEMINI_TAIL = "\n)\n__code=$?\nexit $__code"


def _gemini(text: str, environ: Mapping[str, str] | None) -> Unwrapped | None:
    if not text.endswith(_GEMINI_TAIL):
        return None
    i = text.find("_bgpids_file=")
    t = text.find(_GEMINI_TRAP)
    if i < 0 or t < 0:
        return None
    dropped: list[str] = []
    if i:  # the guard before it: `shopt -u promptvars nullglob extglob nocaseglob dotglob;`
        head = text[:i].rstrip(" ")
        toks = _tokens(head)
        if toks is None or not toks or toks[-1].kind != "op" or toks[-1].value != ";":
            return None
        if not _statement_harmless(toks[:-1]):
            return None
        dropped.append(head)
    w = static_word(text, i + len("_bgpids_file="))
    if w is None or w[1] != t or not _gemini_pid_file(w[0], environ):
        return None
    command = text[t + len(_GEMINI_TRAP) : len(text) - len(_GEMINI_TAIL)]
    if not command.strip():
        return None
    # The command runs under `eval` of its exact quoted text, as in Claude
    # Code's wrapper: nothing it holds can close the subshell early, and a
    # front end that replaces the decided text (row caps) finds it quoted once.
    # The trap writes to fd 9, which xguard opens on the pid file before the
    # command runs (as Claude Code's cwd report): never by a name the command
    # could make a symlink of, nor a variable it could reassign.
    return Unwrapped(
        "gemini",
        command,
        f"(\n  trap 'jobs -p >&9' EXIT\n  eval {sq(command)} 9>&-\n)",
        dropped,
        [],
        meta={"pid_file": _resolved(w[0])},
    )


# ---------------------------------------------------------------------------
# Entry points.


def recognise(text: str, environ: Mapping[str, str] | None = None) -> Unwrapped | None:
    """The model's command inside a runtime's wrapper, or None when `text` is
    not a wrapper (then the whole text is gated, as any other string).

    `environ` only supplies TMPDIR (where a runtime's temp files may live).
    Pure apart from an lstat of the temp file the wrapper names."""
    if _CLAUDE_TRAILER in text:
        return _claude(text, environ)
    if "_bgpids_file=" in text:
        return _gemini(text, environ)
    return None


def startup(text: str, flags: list[str]) -> Startup | None:
    """A runtime's own start-up step: answered at once, never queued.

    Nothing recognised here runs unless the rules allow it: a snapshot is
    neither made nor sourced, and the env probe is answered with no output
    when it would otherwise wait for a person (adapters/startup.py). A command the model sends that
    happens to look like one of these does not run either, so recognising
    too much can only refuse, never allow."""
    if text == "env" and not flags:
        return Startup("claude-code", "env-probe", "the shell environment probe (`-c env`)")
    if text.startswith("SNAPSHOT_FILE="):
        w = static_word(text, len("SNAPSHOT_FILE="))
        if w is not None and text[w[1] : w[1] + 1] == "\n" and _snapshot_path(w[0]):
            return Startup("claude-code", "snapshot", "the shell snapshot script")
    if "__codex_snapshot_command()" in text:
        return Startup("codex", "snapshot", "the shell snapshot script")
    for pre in ("set -e; . ", ". ", "source "):
        if text.startswith(pre):
            w = static_word(text, len(pre))
            if (
                w is not None
                and w[1] == len(text)
                and os.path.basename(os.path.dirname(w[0])) == "shell_snapshots"
            ):
                return Startup(
                    "codex", "snapshot-check", "the check that sources its shell snapshot"
                )
    return None

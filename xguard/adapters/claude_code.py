"""Claude Code integration: the PreToolUse hook, the SHELL wrapper, the shell prefix.

Three ways Claude Code can be put behind xguard (docs/runtimes.md says which to
pick):

1. `xguard hook claude-code` as a PreToolUse command hook. Input and output
   follow https://code.claude.com/docs/en/hooks ("PreToolUse input",
   "PreToolUse decision control", "Exit code output"): stdin holds
   `{"session_id", "cwd", "hook_event_name": "PreToolUse", "tool_name": "Bash",
   "tool_input": {"command", "description", "timeout", "run_in_background"},
   "tool_use_id", ...}`; we answer on stdout with
   `{"hookSpecificOutput": {"hookEventName": "PreToolUse",
   "permissionDecision": "allow"|"deny"|"ask", "permissionDecisionReason": ...}}`
   and exit 0. Claude Code reads stdout as JSON only when it starts with `{`
   and ends with `}`, and a JSON or schema failure is a *non-blocking* error,
   so the JSON we print is built from fixed keys only.

   Fail closed: anything that goes wrong (bad JSON, missing or mistyped
   fields, oversized input, a broken rules file, an audit log that cannot be
   written, an exception) exits 2 with the reason on stderr. The docs say exit
   2 is the one status that blocks the call whatever stdout holds ("Exit 2 ...
   blocks the tool call"; "Any other code: non-blocking", so a crash with
   exit 1 would let the command run). We also print a deny JSON, which
   versions that honour JSON on exit 2 use for the reason.

2. SHELL / CLAUDE_CODE_SHELL pointing at xguard. Claude Code then runs
   `<shell> -c [-l] "source <snapshot> 2>/dev/null || true && shopt -u extglob
   2>/dev/null || true && eval '<cmd>' \\< /dev/null && pwd -P >| /tmp/claude-XXXX-cwd"`
   (built in src/utils/shell/bashProvider.ts and bash/shellQuoting.ts of the
   v2.1.88 source; real examples in
   https://github.com/anthropics/claude-code/issues/4399,
   https://github.com/anthropics/claude-code/issues/57450 and
   https://github.com/termaxa/termaxa/issues/91). `parse_claude_code_wrapper`
   recognises exactly that shape; the inner `<cmd>` is what is gated, shown
   and audited, and what runs is `eval '<cmd>' [< /dev/null] && pwd -P >| FILE`,
   built here from the decoded command. The snapshot is *not* sourced: it is a
   file the agent can write (with Claude Code's Write tool, outside any
   shell), and sourcing it would run its functions and aliases ungated, just
   as xguard never runs rc files (SPEC §5). Anything that is not exactly the
   wrapper is gated whole, as any other string.

   Note Claude Code only accepts a SHELL whose path contains "bash" or "zsh"
   (findSuitableShell in src/utils/Shell.ts; see
   https://github.com/anthropics/claude-code/issues/7490), so point
   CLAUDE_CODE_SHELL at a symlink such as ~/.local/bin/xguard-bash.

3. CLAUDE_CODE_SHELL_PREFIX=xguard-prefix. Claude Code runs
   `'<prefix>' '<the whole wrapped line>'`: the prefix program receives the
   command line as ONE argument in $1 and "must re-evaluate $1 with a shell"
   (https://code.claude.com/docs/en/env-vars; formatShellPrefixCommand in
   utils/bash/shellPrefix.ts). `xguard-prefix STRING` is `xguard -c STRING`:
   the same wrapper recognition applies. The docs advise a bare executable:
   a prefix holding " -" is split at its last " -"
   (https://github.com/Gitlawb/openclaude/issues/1849), which is why this is a
   separate program rather than `xguard prefix`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from xguard.gate.pipeline import Asked
from xguard.util import printable

SOURCE = "hook:claude-code"
EVENT = "PreToolUse"
MAX_INPUT = 4 * 1024 * 1024  # the hook JSON; a command this large is not a command
REASON_LIMIT = 2000  # keep the model's context small; the audit log has everything
DEFAULT_HOOK_TIMEOUT = (
    600.0  # seconds: Claude Code's default for command hooks (docs, "Common fields")
)
HOOK_MARGIN = 15.0  # stop waiting this long before the hook's own timeout

# ---------------------------------------------------------------------------
# Static shell words, decoded as bash decodes them.

# Unquoted characters that stand for themselves in bash (no expansion, no
# operator, no word break). Anything else unquoted makes the word "not static".
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./,:=+@%^")
_DQ_ESCAPABLE = frozenset(
    '$`"\\\n'
)  # inside "...", a backslash escapes only these (bash manual, Double Quotes)


def _static_word(s: str, i: int) -> tuple[str, int] | None:
    """Decode one shell word starting at s[i] that bash would not expand.

    Returns (value, end index) where the word ends at a blank, at the end of
    the string, or before an unquoted operator character; None when the word
    holds an expansion ($, `, globs, ~, braces), an unterminated quote, or is
    empty. Single quotes are literal; in double quotes a backslash escapes only
    $ ` " \\ and newline (so shell-quote's `"\\!"` stays `\\!`, as bash has it);
    outside quotes a backslash makes the next character literal.
    """
    out: list[str] = []
    n = len(s)
    start = i
    while i < n:
        c = s[i]
        if c in " \t":
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
        else:  # $ ` * ? [ ] { } ~ # ! newline, control characters: not static
            return None
    if i == start:
        return None
    return "".join(out), i


def _sq(s: str) -> str:
    """Single-quote for bash: exact, no expansion."""
    return "'" + s.replace("'", "'\\''") + "'"


# ---------------------------------------------------------------------------
# The SHELL wrapper.

SEP = " && "
TRAILER = " && pwd -P >| "
# Segments Claude Code puts between the snapshot and `eval`; none of them is
# run by xguard (they only tune Claude Code's own shell state).
_PREP = (
    "shopt -u extglob 2>/dev/null || true",  # bash (getDisableExtglobCommand)
    "setopt NO_EXTENDED_GLOB 2>/dev/null || true",  # zsh
    # with CLAUDE_CODE_SHELL_PREFIX set:
    "{ shopt -u extglob || setopt NO_EXTENDED_GLOB; } >/dev/null 2>&1 || true",
)
# Newer builds (~2.1.26x) also drop an alias/function (termaxa/termaxa#91).
_UNALIAS = re.compile(
    r"\{ \\builtin unalias -- '([A-Za-z_][A-Za-z0-9_.:-]{0,63})'; "
    r"\\builtin unset -f -- '\1'; \} >/dev/null 2>&1 \|\| true"
)
_SNAPSHOT = re.compile(r"snapshot-(?:bash|zsh|sh)-[0-9]{1,20}-[A-Za-z0-9]{1,32}\.sh")
_CWD_FILE = re.compile(r"claude-[0-9a-f]{1,64}-cwd|cwd-[A-Za-z0-9_-]{1,128}")
_TMP_ROOTS = ("/tmp", "/var/tmp", "/private/tmp", "/var/folders", "/private/var/folders")  # noqa: S108


class ClaudeWrapper:
    """What Claude Code's wrapper asks for, taken apart. (A plain class: the
    dataclasses module costs ~7 ms to import on the hot path.)"""

    __slots__ = ("command", "cwd_file", "stdin_null")

    def __init__(self, command: str, cwd_file: str, stdin_null: bool) -> None:
        self.command = command  # the model's command: gated, shown and audited
        self.cwd_file = cwd_file  # where Claude Code reads the new working folder from
        self.stdin_null = stdin_null  # the wrapper gave the command /dev/null as stdin

    def __repr__(self) -> str:
        return f"ClaudeWrapper({self.command!r}, {self.cwd_file!r}, {self.stdin_null!r})"

    @property
    def exec_text(self) -> str:
        """What bash runs: exactly `command` under eval, then the cwd report."""
        redirect = " < /dev/null" if self.stdin_null else ""
        return f"eval {_sq(self.command)}{redirect} && pwd -P >| {_sq(self.cwd_file)}"


def _tmp_roots(environ: Mapping[str, str] | None) -> list[str]:
    roots = list(_TMP_ROOTS)
    for var in ("TMPDIR", "CLAUDE_CODE_TMPDIR"):
        v = (environ or {}).get(var, "")
        if v.startswith("/") and v != "/":
            roots.append(os.path.normpath(v))
    return roots


def _cwd_file_ok(path: str, environ: Mapping[str, str] | None) -> bool:
    if not path.startswith("/") or os.path.normpath(path) != path:
        return False
    d, base = os.path.split(path)
    if not _CWD_FILE.fullmatch(base):
        return False
    if not any(d == r or d.startswith(r + "/") for r in _tmp_roots(environ)):
        return False
    # `>|` follows a symlink; never write through one planted where the cwd
    # file will go (Claude Code's own shell has the same exposure).
    return not os.path.islink(path)


def _eval_section(s: str) -> tuple[str, bool] | None:
    """The words after `eval`: (command, stdin from /dev/null) or None.

    Accepted shapes (quoteShellCommand / rearrangePipeCommand):
      Q(cmd) \\< /dev/null     regular command (shell-quote of [cmd, '<', '/dev/null'])
      'cmd' < /dev/null       multiline, or a pipe it could not rearrange
      'cmd'                   heredoc: no redirect
    """
    toks: list[tuple[str, str, str]] = []  # (kind, value, raw)
    i, n = 0, len(s)
    while i < n:
        if s[i] == " ":
            i += 1
            continue
        if s[i] == "<" and (i + 1 == n or s[i + 1] == " "):
            toks.append(("op", "<", "<"))
            i += 1
            continue
        w = _static_word(s, i)
        if w is None:
            return None
        toks.append(("word", w[0], s[i : w[1]]))
        i = w[1]
        if i < n and s[i] not in " \t":
            return None  # an operator glued to a word: not the wrapper
    if not toks or toks[0][0] != "word" or not toks[0][1].strip():
        return None
    cmd = toks[0][1]
    if len(toks) == 1:
        return cmd, False
    if len(toks) == 3 and toks[2] == ("word", "/dev/null", "/dev/null"):
        if toks[1] == ("op", "<", "<") or toks[1] == ("word", "<", "\\<"):
            return cmd, True
    return None


def parse_claude_code_wrapper(
    text: str, environ: Mapping[str, str] | None = None
) -> ClaudeWrapper | None:
    """Recognise Claude Code's Bash-tool wrapper exactly; None for anything else.

    `environ` only supplies TMPDIR (where the cwd file may live). Pure apart
    from one lstat of the cwd file.
    """
    if TRAILER not in text or "\n" in text.split(" eval ", 1)[0]:
        return None
    i = 0
    if text.startswith("source "):
        w = _static_word(text, 7)
        if w is None:
            return None
        snap, i = w
        d, base = os.path.split(snap)
        if not (
            snap.startswith("/")
            and _SNAPSHOT.fullmatch(base)
            and os.path.basename(d) == "shell-snapshots"
        ):
            return None
        # `2>/dev/null || true` since ~v1.0.8x; bare `&&` before (issue 4399).
        for tail in (" 2>/dev/null || true" + SEP, SEP):
            if text.startswith(tail, i):
                i += len(tail)
                break
        else:
            return None
    while True:
        for p in _PREP:
            if text.startswith(p + SEP, i):
                i += len(p) + len(SEP)
                break
        else:
            m = _UNALIAS.match(text, i)
            if m and text.startswith(SEP, m.end()):
                i = m.end() + len(SEP)
                continue
            break
    if not text.startswith("eval ", i):
        return None
    i += 5
    k = text.rfind(TRAILER)
    if k < i:
        return None
    w = _static_word(text, k + len(TRAILER))
    if w is None or w[1] != len(text):
        return None
    cwd_file = w[0]
    if not _cwd_file_ok(cwd_file, environ):
        return None
    inner = _eval_section(text[i:k])
    if inner is None:
        return None
    return ClaudeWrapper(command=inner[0], cwd_file=cwd_file, stdin_null=inner[1])


def unwrap_claude_code(text: str) -> str | None:
    """The model's command inside Claude Code's wrapper, or None when `text` is
    not exactly that wrapper (then the whole text is gated)."""
    w = parse_claude_code_wrapper(text, os.environ)
    return w.command if w is not None else None


# ---------------------------------------------------------------------------
# CLAUDE_CODE_SHELL_PREFIX=xguard-prefix

# ---------------------------------------------------------------------------
# The PreToolUse hook.

HOOK_USAGE = "usage: xguard hook claude-code [--require-approval ask|wait|deny] [--timeout SECONDS]"
# Claude Code's file tools and the input field that names the file
# (https://code.claude.com/docs/en/hooks, "PreToolUse input"). A file an
# xguard rule denies stays denied when the agent reaches it without a shell.
FILE_TOOLS = {
    "Read": ("file_path", "read"),
    "Write": ("file_path", "write"),
    "Edit": ("file_path", "write"),
    "MultiEdit": ("file_path", "write"),
    "NotebookEdit": ("notebook_path", "write"),
}


class Malformed(Exception):
    """The hook input cannot be trusted; deny."""


def _answer(decision: str, reason: str) -> str:
    return json.dumps(
        {
            "hookSpecificOutput": {
                "hookEventName": EVENT,
                "permissionDecision": decision,
                "permissionDecisionReason": _clip(reason),
            }
        },
        ensure_ascii=True,  # lone surrogates from "\\ud800" can never break the answer,
    )


def _clip(s: str, limit: int = REASON_LIMIT) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _emit(decision: str, reason: str) -> int:
    sys.stdout.write(_answer(decision, reason) + "\n")
    sys.stdout.flush()
    return 0


def _block(reason: str) -> int:
    """Fail closed: exit 2 blocks the call in every Claude Code version."""
    msg = _clip(f"xguard: {reason}")
    try:
        sys.stdout.write(_answer("deny", msg) + "\n")
        sys.stdout.flush()
    except Exception:  # noqa: S110  # stdout gone: exit 2 + stderr still blocks
        pass
    try:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: S110
        pass
    return 2


def _read_input(stream: Any) -> dict[str, Any]:
    raw = (
        stream.buffer.read(MAX_INPUT + 1)
        if hasattr(stream, "buffer")
        else stream.read(MAX_INPUT + 1)
    )
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_INPUT:
        raise Malformed(f"hook input is larger than {MAX_INPUT // (1024 * 1024)} MiB")
    if not raw.strip():
        raise Malformed("no hook input on stdin (expected Claude Code's PreToolUse JSON)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("hook input is not UTF-8") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise Malformed(f"hook input is not JSON ({str(e)[:80]})") from None
    if not isinstance(data, dict):
        raise Malformed("hook input is not a JSON object")
    return data


_JSON_TYPE = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
}


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _field(
    obj: Mapping[str, Any], key: str, kind: type, where: str = "", required: bool = True
) -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise Malformed(f"hook input has no {where}{key}")
        return None
    v = obj[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        raise Malformed(
            f"hook input field {where}{key} is {_a(_JSON_TYPE.get(type(v), type(v).__name__))}, "
            f"not {_a(_JSON_TYPE.get(kind, kind.__name__))}"
        )
    return v


def _parse_args(args: list[str]) -> tuple[str | None, float]:
    mode: str | None = None
    timeout = DEFAULT_HOOK_TIMEOUT
    i = 0
    while i < len(args):
        a = args[i]
        key, eq, val = a.partition("=")
        if key in ("--require-approval", "--timeout"):
            if not eq:
                if i + 1 >= len(args):
                    raise Malformed(f"{key} needs a value\n{HOOK_USAGE}")
                val = args[i + 1]
                i += 1
            if key == "--require-approval":
                if val not in ("ask", "wait", "deny"):
                    raise Malformed(f"--require-approval must be ask, wait or deny, not {val!r}")
                mode = val
            else:
                try:
                    timeout = float(val)
                except ValueError:
                    raise Malformed(f"--timeout {val!r} is not a number of seconds") from None
                if timeout <= 0:
                    raise Malformed("--timeout must be positive")
        else:
            raise Malformed(f"unexpected argument {a!r}\n{HOOK_USAGE}")
        i += 1
    return mode, timeout


def hook_main(args: list[str], stdin: Any = None) -> int:
    """`xguard hook claude-code`: decide one tool call; never crash, never allow by mistake."""
    if args[:1] in (["-h"], ["--help"]):
        from xguard.adapters import HELP

        sys.stdout.write(HELP)
        return 0
    import signal

    def on_term(signum: int, _frame: object) -> NoReturn:
        # Claude Code stops a hook at its timeout (and then does not block, per
        # the docs); answer deny first in case the answer is still read.
        raise SystemExit(
            _block(f"stopped by signal {signum} before a decision; the command must not run")
        )

    old = {s: signal.signal(s, on_term) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        return _hook(args, stdin if stdin is not None else sys.stdin)
    except Malformed as e:
        return _block(f"{e}; denied")
    except SystemExit:
        raise
    except BaseException as e:  # fail closed on anything, including KeyboardInterrupt
        from xguard.errors import XguardError

        if isinstance(e, XguardError):
            return _block(f"{e.message}; nothing runs until this is fixed")
        if os.environ.get("XGUARD_DEBUG", "") not in ("", "0"):
            import traceback

            traceback.print_exc()
        return _block(f"internal error: {type(e).__name__}: {e}; denied (run with XGUARD_DEBUG=1)")
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _hook(args: list[str], stdin: Any) -> int:
    mode, hook_timeout = _parse_args(args)
    data = _read_input(stdin)
    event = _field(data, "hook_event_name", str, required=False)
    if event is not None and event != EVENT:
        raise Malformed(
            f"xguard hook claude-code answers PreToolUse hooks; it was called for {event}"
        )
    tool = _field(data, "tool_name", str)
    tool_input = _field(data, "tool_input", dict)
    session_id = _field(data, "session_id", str, required=False)
    tool_use_id = _field(data, "tool_use_id", str, required=False)
    if tool != "Bash":
        if tool in FILE_TOOLS:
            return _file_tool(tool, tool_input, data, session_id, tool_use_id)
        return 0  # no opinion: Claude Code's own permission flow decides
    command = _field(tool_input, "command", str, "tool_input.")
    cwd = _field(data, "cwd", str)
    if not cwd.startswith("/"):
        raise Malformed(f"hook input cwd {cwd[:200]!r} is not an absolute path")
    if not command.strip():
        raise Malformed("tool_input.command is empty")
    try:
        command.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the JSON): no shell gets that text
        raise Malformed(
            "tool_input.command is not valid Unicode (it holds a lone surrogate)"
        ) from None

    from xguard.gate.pipeline import run_request
    from xguard.gate import strictmode
    from xguard.gate.request import Request, load_gate

    # Claude Code's session id is the session unless XGUARD_SESSION names one:
    # the blast-radius limits (issue 5) then count per Claude Code session.
    session = os.environ.get("XGUARD_SESSION") or session_id
    req = Request(text=command, session=session, source=SOURCE, cwd=cwd)
    shown = printable(command, 200)
    if strictmode.configured():
        from xguard.gate.strictmode import broker_socket

        sock = broker_socket()
        if sock:  # strict mode (issue 6): the broker decides and audits, never this process
            return _hook_via_broker(sock, req, cwd, shown, mode)
    gate = load_gate(req, cwd)
    if mode is None:
        mode = ((gate.ruleset.setting("hook", {}) or {}).get("claude_code", {}) or {}).get(
            "require_approval", "ask"
        )
    outcome = run_request(
        req,
        gate,
        ask=HookAsker(mode, hook_timeout, shown),
        execute=None,  # Claude Code runs the command itself
        extra={"claude_session_id": session_id, "tool_use_id": tool_use_id},
    )
    return _emit(*answer_for(outcome, shown))


def answer_for(outcome: Any, shown: str) -> tuple[str, str]:
    """The pipeline's outcome as (permissionDecision, reason) for the runtime."""
    d = outcome.decision
    why = "; ".join(d.reasons) if d is not None and d.reasons else "no reason given"
    if outcome.answer == "allow":
        if outcome.reviewer is not None or outcome.request_id is not None:
            by = f" by {outcome.reviewer}" if outcome.reviewer else ""
            return "allow", f"xguard: approved{by} (request {outcome.request_id})"
        return "allow", f"xguard: allowed by rules: {shown}"
    if outcome.answer == "ask":
        return "ask", f"xguard: needs a human's approval: {shown} — {why}"
    if outcome.record is None:  # refused by a session or a limit before or after deciding
        msg = (outcome.message or "xguard: refused").removeprefix("xguard: ")
        return "deny", f"xguard: `{shown}` did not run: {msg}"
    if d is not None and d.decision == "deny":
        return "deny", _deny_reason(shown, why)
    return "deny", outcome.message or f"xguard: `{shown}` did not run"


class HookAsker:
    """What require_approval becomes for a hook: `ask` (Claude Code prompts its
    user), `deny`, or `wait` for an xguard reviewer, always answering before
    the hook's own timeout (a hook that times out does not block)."""

    def __init__(self, mode: str, hook_timeout: float, shown: str) -> None:
        self.mode, self.hook_timeout, self.shown = mode, hook_timeout, shown

    def __call__(
        self, gate: Any, req: Any, decision: Any, record: dict[str, Any], log: Any
    ) -> Asked:
        why = "; ".join(decision.reasons) or "no reason given"
        if self.mode == "ask":
            return Asked(False, answer="ask")
        if self.mode == "deny":
            return Asked(
                False,
                77,
                answer="deny",
                message=f"xguard: `{self.shown}` needs a human's approval and this hook is set "
                f"to deny such commands ({why}). It did not run. Ask the user to run it, or "
                "use another approach.",
            )
        return _wait_for_reviewer(
            gate, req, decision, record, log, self.shown, why, self.hook_timeout
        )


def _hook_via_broker(sock: str, req: Any, cwd: str, shown: str, mode: str | None) -> int:
    """The hook's answer in strict mode: the broker decides and audits.

    `wait` is not offered here (the broker's queue answers the shell, which in
    strict mode asks the broker again when Claude Code runs the command), so a
    command that needs approval becomes `ask`, or `deny` when so configured.
    """
    from xguard.strict.client import request

    mode = mode or "ask"
    ans = request(
        sock,
        {
            "op": "hook",
            "text": req.text,
            "cwd": cwd,
            "session": req.session or "",
            "source": SOURCE,
            "answer": "deny" if mode == "deny" else "ask",
        },
    )
    if ans.get("status") != "ok" or not isinstance(ans.get("result"), dict):
        return _block(f"xguard: the broker did not decide: {ans.get('message') or 'no answer'}")
    res = ans["result"]
    why = "; ".join(str(r) for r in res.get("reasons") or []) or "no reason given"
    if res.get("decision") == "allow":
        return _emit("allow", f"xguard: allowed by rules: {shown}")
    if res.get("decision") == "require_approval" and mode != "deny":
        return _emit("ask", f"xguard: needs a human's approval: {shown} — {why}")
    return _emit("deny", _deny_reason(shown, why))


def _deny_reason(shown: str, why: str) -> str:
    return (
        f"xguard policy denies `{shown}`: {why}. It will not run, not even with approval. "
        "Do not retry it or look for a way around the rule; use another approach, "
        "or tell the user what you needed and why."
    )


def _wait(gate: Any, profile: str | None, hook_timeout: float) -> float:
    """How long to wait for a reviewer: the configured wait, but always less than
    the hook's timeout, because a hook that times out does not block
    (https://code.claude.com/docs/en/hooks, "Timeouts")."""
    from xguard.approval.wait import settings
    from xguard.util import parse_duration

    budget = max(1.0, hook_timeout - HOOK_MARGIN)
    w = gate.environ.get("XGUARD_WAIT")
    configured = parse_duration(w) if w else None
    if configured is None:
        configured = settings(gate, profile)[0]
    return min(configured, budget)


class _Tee:
    """stderr that also remembers what was written (the reviewer's reason)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.lines: list[str] = []

    def write(self, s: str) -> int:
        self.lines.append(s)
        try:
            return int(self.real.write(s))
        except Exception:
            return len(s)

    def flush(self) -> None:
        try:
            self.real.flush()
        except Exception:  # noqa: S110
            pass

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _wait_for_reviewer(
    gate: Any,
    req: Any,
    decision: Any,
    record: dict[str, Any],
    log: Any,
    shown: str,
    why: str,
    hook_timeout: float,
) -> Asked:
    import signal

    from xguard.approval.wait import obtain_approval

    def on_alarm(_s: int, _f: object) -> NoReturn:
        raise TimeoutError("no answer from a reviewer before the hook's timeout")

    req.wait = _wait(gate, record.get("profile"), hook_timeout)
    old_alarm = signal.signal(signal.SIGALRM, on_alarm)
    # Last resort: the reviewer wait is already shorter than the hook's timeout.
    signal.setitimer(signal.ITIMER_REAL, max(2.0, hook_timeout - HOOK_MARGIN / 3))
    tee = _Tee(sys.stderr)
    sys.stderr = tee
    try:
        asked = obtain_approval(gate, req, decision, record, log)
    except TimeoutError:
        return Asked(
            False,
            75,
            message=f"xguard: `{shown}` is waiting for a human's approval ({why}). It did not "
            "run. Go on with other work and run the same command again later.",
        )
    finally:
        sys.stderr = tee.real
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
    if asked.run:
        return asked
    said = " ".join(x.strip() for x in "".join(tee.lines).splitlines() if x.strip())
    rid = asked.request_id or record["id"]
    if asked.exit_code == 75:
        asked.message = (
            f"xguard: `{shown}` is waiting for a human's approval (request {rid}; {why}). "
            "It did not run. Go on with other work and run the same command again later: "
            "once it is approved it will run."
        )
    elif asked.exit_code == 77:
        asked.message = (
            f"xguard: a reviewer denied `{shown}` (request {rid}). {said or ''} "
            "Do not retry it; use another approach or ask the user."
        ).replace("  ", " ")
    else:
        asked.message = (
            f"xguard: `{shown}` did not get approval (exit {asked.exit_code}). {said}".strip()
        )
    return asked


def _file_tool(
    tool: str,
    tool_input: Mapping[str, Any],
    data: Mapping[str, Any],
    session_id: str | None,
    tool_use_id: str | None,
) -> int:
    """Claude Code's file tools reach files without a shell. Deny a path an
    xguard rule denies (or xguard's own files); otherwise no opinion."""
    key, access = FILE_TOOLS[tool]
    path = _field(tool_input, key, str, "tool_input.")
    cwd = (
        data.get("cwd")
        if isinstance(data.get("cwd"), str) and str(data.get("cwd")).startswith("/")
        else None
    )
    from xguard.gate.request import Request, load_gate
    from xguard.util import new_id

    req = Request(
        text=f"{tool} {path}", session=os.environ.get("XGUARD_SESSION") or session_id, source=SOURCE
    )
    gate = load_gate(req, cwd)
    text = f"cat -- {_sq(path)}" if access == "read" else f": > {_sq(path)}"
    decision = gate.decide_text(text, cwd)
    denied = [u for u in decision.units if u.kind == "path" and u.decision == "deny"]
    if not denied:
        return 0
    why = "; ".join(f"{u.text}: {u.why}" for u in denied)
    record = gate.base_record(req, decision, new_id())
    record.update(
        decision="deny",
        units=[u.to_json() for u in denied],
        tool=tool,
        claude_session_id=session_id,
        tool_use_id=tool_use_id,
        hook_answer="deny",
        **({"cwd": cwd} if cwd else {}),
    )
    gate.audit().append("decision", **record)
    return _emit(
        "deny",
        f"xguard policy denies {tool} of {path}: {why}. Do not try to reach this file "
        "another way; tell the user if you need it.",
    )

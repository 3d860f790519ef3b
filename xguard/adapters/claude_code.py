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
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

SOURCE = "hook:claude-code"
EVENT = "PreToolUse"
MAX_INPUT = 4 * 1024 * 1024  # the hook JSON; a command this large is not a command
REASON_LIMIT = 2000  # keep the model's context small; the audit log has everything
DEFAULT_HOOK_TIMEOUT = (
    600.0  # seconds: Claude Code's default for command hooks (docs, "Common fields")
)
HOOK_MARGIN = 15.0  # stop waiting this long before the hook's own timeout

# ---------------------------------------------------------------------------
# The SHELL wrapper: recognised by xguard/adapters/wrappers.py.


class ClaudeWrapper:
    """What Claude Code's wrapper asks for, taken apart."""

    __slots__ = ("command", "cwd_file", "exec_text", "stdin_null")

    def __init__(self, command: str, cwd_file: str, stdin_null: bool, exec_text: str) -> None:
        self.command = command  # the model's command: gated, shown and audited
        self.cwd_file = cwd_file  # where Claude Code reads the new working folder from
        self.stdin_null = stdin_null  # the wrapper gave the command /dev/null as stdin
        self.exec_text = exec_text  # what bash runs: the command under eval, then the cwd report

    def __repr__(self) -> str:
        return f"ClaudeWrapper({self.command!r}, {self.cwd_file!r}, {self.stdin_null!r})"


def parse_claude_code_wrapper(
    text: str, environ: Mapping[str, str] | None = None
) -> ClaudeWrapper | None:
    """Claude Code's Bash-tool wrapper holding only statements of known kinds;
    None for anything else (a statement of an unknown kind included).

    `environ` only supplies TMPDIR (where the cwd file may live)."""
    from xguard.adapters.wrappers import recognise

    w = recognise(text, environ)
    if w is None or w.runtime != "claude-code" or w.extra:
        return None
    return ClaudeWrapper(
        w.command, str(w.meta["cwd_file"]), bool(w.meta["stdin_null"]), w.exec_text
    )


def unwrap_claude_code(text: str) -> str | None:
    """The model's command inside Claude Code's wrapper, or None when `text` is
    not exactly that wrapper (then the whole text is gated)."""
    w = parse_claude_code_wrapper(text, os.environ)
    return w.command if w is not None else None


# ---------------------------------------------------------------------------
# CLAUDE_CODE_SHELL_PREFIX=xguard-prefix

PREFIX_USAGE = "usage: xguard-prefix COMMAND-LINE   (the same as: xguard -c COMMAND-LINE)"
PREFIX_HELP = f"""{PREFIX_USAGE}

For CLAUDE_CODE_SHELL_PREFIX: Claude Code runs `xguard-prefix '<command line>'`
for every Bash tool call, hook command, status line command and stdio MCP
server start, with the whole line as one argument. xguard gates it (the
model's command inside Claude Code's wrapper, or else the whole line) and runs
it with bash, exactly as `xguard -c` does.

  export CLAUDE_CODE_SHELL_PREFIX="$(command -v xguard-prefix)"
"""


def prefix_main(argv: list[str] | None = None) -> int:
    """Console script `xguard-prefix STRING`: `xguard -c STRING`, one argument only."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        sys.stdout.write(PREFIX_HELP)
        return 0
    if len(args) != 1:
        sys.stderr.write(
            f"xguard-prefix: expected exactly one argument, got {len(args)}\n{PREFIX_USAGE}\n"
        )
        return 64
    from xguard.__main__ import main

    # `--` so a command line that starts with '-' is still the string, not a flag.
    return main(["-c", "--", args[0]])


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

    from xguard.gate import limits
    from xguard.gate.runner import Request, new_id, printable

    # Claude Code's session id is the session unless XGUARD_SESSION names one:
    # the blast-radius limits (issue 5) then count per Claude Code session.
    session = os.environ.get("XGUARD_SESSION") or session_id
    req = Request(text=command, session=session, source=SOURCE)
    shown = printable(command, 200)
    from xguard.gate.runner import _maybe_strict

    if _maybe_strict():
        from xguard.strict.client import broker_socket

        sock = broker_socket()
        if sock:  # strict mode (issue 6): the broker decides and audits, never this process
            return _hook_via_broker(sock, req, cwd, shown, mode)
    gate = _gate(req, cwd)
    if mode is None:
        mode = ((gate.ruleset.setting("hook", {}) or {}).get("claude_code", {}) or {}).get(
            "require_approval", "ask"
        )
    decision = None
    stop = limits.before_decision(gate, req)  # an expired session, sessions.required
    if stop is None:
        decision = gate.decide_text(command, cwd)
        stop = limits.after_decision(gate, req, decision)  # loop breaker, rate caps
    if stop is not None:  # (decision is set whenever stop is None)
        limits.refuse(gate, req, decision, stop)  # audits the refusal
        return _emit(
            "deny", f"xguard: `{shown}` did not run: {stop.message if stop else 'refused'}"
        )
    assert decision is not None  # set whenever stop is None
    record = gate.base_record(req, decision, new_id())
    record.update(cwd=cwd, claude_session_id=session_id, tool_use_id=tool_use_id)
    log = gate.audit()
    why = "; ".join(decision.reasons) or "no reason given"

    if decision.decision == "allow":
        log.append("decision", **record, hook_answer="allow")
        return _emit("allow", f"xguard: allowed by rules: {shown}")
    if decision.decision == "deny":
        log.append("decision", **record, hook_answer="deny")
        return _emit("deny", _deny_reason(shown, why))
    if mode == "ask":
        log.append("decision", **record, hook_answer="ask")
        return _emit("ask", f"xguard: needs a human's approval: {shown} — {why}")
    if mode == "deny":
        log.append("decision", **record, hook_answer="deny")
        return _emit(
            "deny",
            f"xguard: `{shown}` needs a human's approval and this hook is set to deny such "
            f"commands ({why}). It did not run. Ask the user to run it, or use another approach.",
        )
    return _wait_for_reviewer(gate, req, decision, record, log, shown, why, hook_timeout)


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


def _gate(req: Any, cwd: str | None) -> Any:
    """The Gate for this request, as runner.gate_and_run builds it: a session's
    own profile, and a config error audited before it is reported."""
    from xguard.gate import limits
    from xguard.gate import runner
    from xguard.errors import ConfigError

    if not os.environ.get("XGUARD_PROFILE"):
        req.profile = limits.session_profile(os.environ, req.session)
    try:
        gate = runner.Gate(profile=req.profile)
    except ConfigError as e:
        audit_config_error = getattr(runner, "_audit_config_error", None)
        if audit_config_error is not None:
            audit_config_error(e, req)
        raise
    if cwd:
        gate.cwd = cwd
    return gate


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
    from xguard.policy.rules import parse_duration

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
) -> int:
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
        outcome = obtain_approval(gate, req, decision, record, log)
    except TimeoutError:
        return _emit(
            "deny",
            f"xguard: `{shown}` is waiting for a human's approval ({why}). It did not run. "
            "Go on with other work and run the same command again later.",
        )
    finally:
        sys.stderr = tee.real
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
    said = " ".join(x.strip() for x in "".join(tee.lines).splitlines() if x.strip())
    rid = outcome.request_id or record["id"]
    if outcome.exit_code is None:
        from xguard.gate import limits

        stop = limits.before_decision(gate, req)  # the session may have ended during the wait
        if stop is not None:
            limits.refuse(gate, req, decision, stop)
            return _emit("deny", f"xguard: `{shown}` did not run: {stop.message}")
        record["id"] = rid
        log.append("decision", **record, reviewer=outcome.reviewer, hook_answer="allow")
        by = f" by {outcome.reviewer}" if outcome.reviewer else ""
        return _emit("allow", f"xguard: approved{by} (request {rid})")
    if outcome.exit_code == 75:
        return _emit(
            "deny",
            f"xguard: `{shown}` is waiting for a human's approval (request {rid}; {why}). "
            "It did not run. Go on with other work and run the same command again later: "
            "once it is approved it will run.",
        )
    if outcome.exit_code == 77:
        return _emit(
            "deny",
            f"xguard: a reviewer denied `{shown}` (request {rid}). {said or ''} "
            "Do not retry it; use another approach or ask the user.".replace("  ", " "),
        )
    return _emit(
        "deny", f"xguard: `{shown}` did not get approval (exit {outcome.exit_code}). {said}".strip()
    )


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
    from xguard.gate.runner import Request, new_id

    req = Request(
        text=f"{tool} {path}", session=os.environ.get("XGUARD_SESSION") or session_id, source=SOURCE
    )
    gate = _gate(req, cwd)
    from xguard.adapters.wrappers import sq

    text = f"cat -- {sq(path)}" if access == "read" else f": > {sq(path)}"
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

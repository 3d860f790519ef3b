"""The flow every pre-tool-use hook shares: one tool call in, one verdict out.

A runtime's adapter (claude_code.py, codex.py, gemini.py) only translates:
its hook JSON -> `ToolCall`, and `Verdict` -> its answer JSON. This module
decides, audits and, in `wait` mode, waits for a reviewer. It runs nothing.

Fail closed: `Malformed` input, a config error, an audit log that cannot be
written or any exception becomes a blocking answer (exit 2, the reason on
stderr), because every runtime here treats exit 2 as "block" and any other
failure as "go ahead".
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

MAX_INPUT = 4 * 1024 * 1024  # the hook JSON; a command this large is not a command
REASON_LIMIT = 2000  # keep the model's context small; the audit log has everything
HOOK_MARGIN = 15.0  # stop waiting this long before the hook's own timeout


class Malformed(Exception):
    """The hook input cannot be trusted; deny."""


class ToolCall:
    """One tool call, in xguard's terms. (A plain class: dataclasses cost ~7 ms.)"""

    __slots__ = ("access", "command", "cwd", "path", "record", "session_id", "source", "tool")

    def __init__(
        self,
        source: str,
        tool: str,
        *,
        command: str | None = None,
        path: str | None = None,
        access: str = "read",
        cwd: str | None = None,
        session_id: str | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.source = source  # hook:<runtime>
        self.tool = tool  # the runtime's tool name
        self.command = command  # a shell command to decide, or
        self.path = path  # a file a file tool reaches (read or write: `access`)
        self.access = access  # read | search (everything under it) | write
        self.cwd = cwd
        self.session_id = session_id  # the runtime's session id
        self.record = record or {}  # runtime fields copied into the audit record


class Verdict:
    __slots__ = ("decision", "reason")

    def __init__(self, decision: str | None, reason: str = "") -> None:
        self.decision = decision  # allow | deny | ask | None (no opinion)
        self.reason = clip(reason)


def clip(s: str, limit: int = REASON_LIMIT) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


# ---------------------------------------------------------------------------
# Reading the input.


def read_input(stream: Any, runtime: str) -> dict[str, Any]:
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
        raise Malformed(f"no hook input on stdin (expected {runtime}'s hook JSON)")
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


def field(
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


def tool_paths(
    tool_input: Mapping[str, Any], keys: tuple[str, ...], required: bool = True
) -> list[str]:
    """The paths a file tool names, under any of the names a release has used
    for them (`file_path`, `absolute_path`, …), a string or a list of
    strings each. A file tool whose path xguard cannot find is malformed:
    answering nothing would let it reach a file a rule denies."""
    out: list[str] = []
    for key in keys:
        v = tool_input.get(key)
        if v is None:
            continue
        items = v if isinstance(v, list) else [v]
        if not items or not all(isinstance(x, str) and x.strip() for x in items):
            raise Malformed(f"hook input field tool_input.{key} is not a path or a list of paths")
        out += items
    if not out and required:
        raise Malformed(f"hook input has no tool_input.{' or tool_input.'.join(keys)}")
    return out


def shell_command(tool_input: Mapping[str, Any], key: str = "command") -> str:
    command = field(tool_input, key, str, "tool_input.")
    if not command.strip():
        raise Malformed(f"tool_input.{key} is empty")
    try:
        command.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the JSON): no shell gets that text
        raise Malformed(
            f"tool_input.{key} is not valid Unicode (it holds a lone surrogate)"
        ) from None
    return str(command)


def absolute_cwd(data: Mapping[str, Any], required: bool = True) -> str | None:
    cwd = field(data, "cwd", str, required=required)
    if cwd is not None and not cwd.startswith("/"):
        if not required:
            return None
        raise Malformed(f"hook input cwd {cwd[:200]!r} is not an absolute path")
    return cwd if cwd is None else str(cwd)


def parse_options(
    args: list[str], usage: str, modes: tuple[str, ...], default_timeout: float
) -> tuple[str | None, float]:
    """`--require-approval MODE` and `--timeout SECONDS` (the hook's own timeout)."""
    mode: str | None = None
    timeout = default_timeout
    i = 0
    while i < len(args):
        a = args[i]
        key, eq, val = a.partition("=")
        if key in ("--require-approval", "--timeout"):
            if not eq:
                if i + 1 >= len(args):
                    raise Malformed(f"{key} needs a value\n{usage}")
                val = args[i + 1]
                i += 1
            if key == "--require-approval":
                if val not in modes:
                    raise Malformed(
                        f"--require-approval must be {', '.join(modes[:-1])} or {modes[-1]}, "
                        f"not {val!r}"
                    )
                mode = val
            else:
                try:
                    timeout = float(val)
                except ValueError:
                    raise Malformed(f"--timeout {val!r} is not a number of seconds") from None
                if timeout <= 0:
                    raise Malformed("--timeout must be positive")
        else:
            raise Malformed(f"unexpected argument {a!r}\n{usage}")
        i += 1
    return mode, timeout


# ---------------------------------------------------------------------------
# The entry point every adapter uses.


def main(
    args: list[str],
    stdin: Any,
    run: Callable[[list[str], Any], Verdict],
    render: Callable[[Verdict], str],
    help_text: str,
) -> int:
    """Run one hook: `run(args, stdin)` -> Verdict, printed with `render`.
    Never crash, never allow by mistake."""
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(help_text)
        return 0
    import signal

    def on_term(signum: int, _frame: object) -> NoReturn:
        # A runtime stops a hook at its timeout (and then does not block);
        # answer deny first in case the answer is still read.
        raise SystemExit(
            block(
                render,
                f"stopped by signal {signum} before a decision; the command must not run",
            )
        )

    old = {s: signal.signal(s, on_term) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        verdict = run(args, stdin)
        if verdict.decision is not None:
            sys.stdout.write(render(verdict) + "\n")
            sys.stdout.flush()
        return 0
    except Malformed as e:
        return block(render, f"{e}; denied")
    except SystemExit:
        raise
    except BaseException as e:  # fail closed on anything, including KeyboardInterrupt
        from xguard.errors import XguardError

        if isinstance(e, XguardError):
            return block(render, f"{e.message}; nothing runs until this is fixed")
        if os.environ.get("XGUARD_DEBUG", "") not in ("", "0"):
            import traceback

            traceback.print_exc()
        return block(
            render, f"internal error: {type(e).__name__}: {e}; denied (run with XGUARD_DEBUG=1)"
        )
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def block(render: Callable[[Verdict], str], reason: str) -> int:
    """Fail closed: exit 2 blocks the call in every runtime here."""
    msg = clip(f"xguard: {reason}")
    import contextlib

    with contextlib.suppress(Exception):  # stdout gone: exit 2 + stderr still blocks
        sys.stdout.write(render(Verdict("deny", msg)) + "\n")
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
    return 2


# ---------------------------------------------------------------------------
# Deciding: the pipeline (xguard/gate/pipeline.py), with nothing to execute.


def decide(
    call: ToolCall,
    mode: str | None,
    hook_timeout: float,
    config_key: str,
    default_mode: str,
    modes: tuple[str, ...] = ("ask", "wait", "deny"),
) -> Verdict:
    """The verdict on one tool call. `mode` says what require_approval becomes:
    ask (the runtime asks its user), wait (an xguard reviewer decides within
    the hook's timeout), or deny; when None, the config's
    `hook: {<config_key>: {require_approval: …}}`, else `default_mode`."""
    if call.command is None:
        return _file_tool(call) if call.path is not None else Verdict(None)
    from xguard.gate import strictmode
    from xguard.gate.pipeline import run_request
    from xguard.gate.request import Request, load_gate
    from xguard.util import printable

    command = call.command
    # The runtime's session id is the session unless XGUARD_SESSION names one:
    # the blast-radius limits (issue 5) then count per runtime session.
    session = os.environ.get("XGUARD_SESSION") or call.session_id
    req = Request(text=command, session=session, source=call.source, cwd=call.cwd)
    shown = printable(command, 200)
    if strictmode.configured():
        sock = strictmode.broker_socket()
        if sock:  # strict mode (issue 6): the broker decides and audits, never this process
            return _via_broker(sock, req, call.cwd or "/", shown, mode or default_mode)
    gate = load_gate(req, call.cwd)
    if mode is None:
        hook_cfg = gate.ruleset.setting("hook", {}) or {}
        mode = str((hook_cfg.get(config_key, {}) or {}).get("require_approval", default_mode))
        if mode not in modes:
            raise Malformed(
                f"config hook.{config_key}.require_approval is {mode!r}; "
                f"it must be one of {', '.join(modes)}"
            )
    outcome = run_request(
        req,
        gate,
        ask=HookAsker(mode, hook_timeout, shown),
        execute=None,  # the runtime runs the command itself
        extra=call.record,
    )
    return answer_for(outcome, shown)


def decide_calls(
    calls: Iterable[ToolCall],
    mode: str | None,
    hook_timeout: float,
    runtime: str,
    modes: tuple[str, ...],
) -> Verdict:
    """A hook input's tool calls (one or several, as Codex and Gemini CLI send
    them) in order: the first deny answers for all of them; else the last answer."""
    verdict = Verdict(None)
    for call in calls:
        verdict = decide(call, mode, hook_timeout, runtime, "wait", modes)
        if verdict.decision == "deny":
            break
    return verdict


def answer_for(outcome: Any, shown: str) -> Verdict:
    """The pipeline's outcome as the verdict a runtime is given."""
    d = outcome.decision
    why = "; ".join(d.reasons) if d is not None and d.reasons else "no reason given"
    if outcome.answer == "allow":
        if outcome.reviewer is not None or outcome.request_id is not None:
            by = f" by {outcome.reviewer}" if outcome.reviewer else ""
            return Verdict("allow", f"xguard: approved{by} (request {outcome.request_id})")
        return Verdict("allow", f"xguard: allowed by rules: {shown}")
    if outcome.answer == "ask":
        return Verdict("ask", f"xguard: needs a human's approval: {shown} — {why}")
    if outcome.record is None:  # refused by a session or a limit before or after deciding
        msg = (outcome.message or "xguard: refused").removeprefix("xguard: ")
        return Verdict("deny", f"xguard: `{shown}` did not run: {msg}")
    if d is not None and d.decision == "deny":
        return Verdict("deny", deny_reason(shown, why))
    return Verdict("deny", outcome.message or f"xguard: `{shown}` did not run")


class HookAsker:
    """What require_approval becomes for a hook: `ask` (the runtime prompts its
    user), `deny`, or `wait` for an xguard reviewer, always answering before
    the hook's own timeout (a hook that times out does not block)."""

    def __init__(self, mode: str, hook_timeout: float, shown: str) -> None:
        self.mode, self.hook_timeout, self.shown = mode, hook_timeout, shown

    def __call__(self, gate: Any, req: Any, decision: Any, record: dict[str, Any], log: Any) -> Any:
        from xguard.gate.pipeline import Asked

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


def _via_broker(sock: str, req: Any, cwd: str, shown: str, mode: str) -> Verdict:
    """The verdict in strict mode: the broker decides and audits.

    `wait` is not offered here (the broker's queue answers the shell, which in
    strict mode asks the broker again when the runtime runs the command), so a
    command that needs approval becomes `ask` where the runtime honours it,
    else `deny`.
    """
    from xguard.strict.client import request

    ans = request(
        sock,
        {
            "op": "hook",
            "text": req.text,
            "cwd": cwd,
            "session": req.session or "",
            "source": req.source,
            "answer": "ask" if mode == "ask" else "deny",
        },
    )
    if ans.get("status") != "ok" or not isinstance(ans.get("result"), dict):
        raise Malformed(f"the broker did not decide: {ans.get('message') or 'no answer'}")
    res = ans["result"]
    why = "; ".join(str(r) for r in res.get("reasons") or []) or "no reason given"
    if res.get("decision") == "allow":
        return Verdict("allow", f"xguard: allowed by rules: {shown}")
    if res.get("decision") == "require_approval" and mode == "ask":
        return Verdict("ask", f"xguard: needs a human's approval: {shown} — {why}")
    return Verdict("deny", deny_reason(shown, why))


def deny_reason(shown: str, why: str) -> str:
    return (
        f"xguard policy denies `{shown}`: {why}. It will not run, not even with approval. "
        "Do not retry it or look for a way around the rule; use another approach, "
        "or tell the user what you needed and why."
    )


def _margin(hook_timeout: float) -> float:
    return min(HOOK_MARGIN, hook_timeout / 4)


def _wait(gate: Any, profile: str | None, hook_timeout: float) -> float:
    """How long to wait for a reviewer: the configured wait, but always less than
    the hook's timeout, because a hook that times out does not block."""
    from xguard.approval.wait import settings
    from xguard.util import parse_duration

    budget = max(1.0, hook_timeout - _margin(hook_timeout))
    w = gate.environ.get("XGUARD_WAIT")
    configured = parse_duration(w) if w else None
    if configured is None:
        configured = settings(gate, profile)[0]
    return min(configured, budget)


def _wait_for_reviewer(
    gate: Any,
    req: Any,
    decision: Any,
    record: dict[str, Any],
    log: Any,
    shown: str,
    why: str,
    hook_timeout: float,
) -> Any:
    import signal

    from xguard.approval.wait import obtain_approval
    from xguard.gate.pipeline import Asked

    def on_alarm(_s: int, _f: object) -> NoReturn:
        raise TimeoutError("no answer from a reviewer before the hook's timeout")

    req.wait = _wait(gate, record.get("profile"), hook_timeout)
    old_alarm = signal.signal(signal.SIGALRM, on_alarm)
    # Last resort: the reviewer wait is already shorter than the hook's timeout.
    signal.setitimer(
        signal.ITIMER_REAL, max(req.wait + 1.0, hook_timeout - _margin(hook_timeout) / 3)
    )
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
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
    if asked.run:
        return asked
    said = (asked.message or "").strip()
    rid = asked.request_id or record["id"]
    if asked.exit_code == 75:
        asked.message = (
            f"xguard: `{shown}` is waiting for a human's approval (request {rid}; {why}). "
            "It did not run. Go on with other work and run the same command again later: "
            "once it is approved it will run."
        )
    elif asked.exit_code == 77:
        asked.message = (
            f"xguard: a reviewer denied `{shown}` (request {rid}). {said} "
            "Do not retry it; use another approach or ask the user."
        ).replace("  ", " ")
    else:
        asked.message = (
            f"xguard: `{shown}` did not get approval (exit {asked.exit_code}). {said}".strip()
        )
    return asked


def _file_tool(call: ToolCall) -> Verdict:
    """A runtime's file tools reach files without a shell. Deny a path an
    xguard rule denies (or xguard's own files); otherwise no opinion."""
    from xguard.adapters.wrappers import sq
    from xguard.gate.request import Request, load_gate
    from xguard.util import new_id

    path = str(call.path)
    req = Request(
        text=f"{call.tool} {path}",
        session=os.environ.get("XGUARD_SESSION") or call.session_id,
        source=call.source,
    )
    gate = load_gate(req, call.cwd)
    # As the shell would be decided: `search` reads everything under the path
    # (a search tool), so a folder holding a denied file is denied as
    # `grep -r` of it would be.
    text = {
        "read": f"cat -- {sq(path)}",
        "search": f"grep -r -e . -- {sq(path)}",
    }.get(call.access, f": > {sq(path)}")
    decision = gate.decide_text(text, call.cwd)
    denied = [u for u in decision.units if u.kind == "path" and u.decision == "deny"]
    if not denied:
        return Verdict(None)
    why = "; ".join(f"{u.text}: {u.why}" for u in denied)
    record = gate.base_record(req, decision, new_id())
    record.update(
        decision="deny",
        units=[u.to_json() for u in denied],
        tool=call.tool,
        hook_answer="deny",
        **call.record,
        **({"cwd": call.cwd} if call.cwd else {}),
    )
    gate.audit().append("decision", **record)
    return Verdict(
        "deny",
        f"xguard policy denies {call.tool} of {path}: {why}. Do not try to reach this file "
        "another way; tell the user if you need it.",
    )

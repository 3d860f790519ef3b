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

2. SHELL / CLAUDE_CODE_SHELL pointing at xguard. Claude Code 2.1.332 runs
   `<shell> -c "source <snapshot> 2>/dev/null || true && \\builtin shopt -u
   extglob 2>/dev/null || true && { \\builtin unalias -- 'which'; \\builtin
   unset -f -- 'which'; } >/dev/null 2>&1 || true && eval '<cmd>' < /dev/null
   && pwd -P >| /tmp/claude-XXXX-cwd"` (`-c -l` and no `source` without a
   snapshot). xguard/adapters/wrappers.py takes it apart by its structure:
   `<cmd>` is what is decided, shown and audited; what runs is `eval '<cmd>'
   [< /dev/null] 9>&- && pwd -P >&9`, rebuilt from the decoded command, with
   fd 9 opened on FILE by xguard before the command runs (never by name in
   the shell, where a symlink the command made would be followed); the
   preparation statements are not run, and the snapshot is *not* sourced: it is
   a file the agent can write (with Claude Code's Write tool, outside any
   shell), and sourcing it would run its functions and aliases ungated, just
   as xguard never runs rc files (SPEC §5). Its start-up steps (`-c env`, the
   snapshot script) are answered without a request (adapters/startup.py).
   `parse_claude_code_wrapper` below is the strict view: None when the wrapper
   holds a statement of an unknown kind (the shell then decides that statement
   with the command).

   Note Claude Code only accepts a SHELL whose path contains "bash" or "zsh"
   (findSuitableShell in src/utils/Shell.ts; see
   https://github.com/anthropics/claude-code/issues/7490), so point
   CLAUDE_CODE_SHELL at a symlink such as ~/.local/bin/xguard-bash.

3. CLAUDE_CODE_SHELL_PREFIX=xguard-prefix. Claude Code runs
   `'<prefix>' '<the whole wrapped line>'`: the prefix program receives the
   command line as ONE argument in $1 and "must re-evaluate $1 with a shell"
   (https://code.claude.com/docs/en/env-vars; formatShellPrefixCommand in
   utils/bash/shellPrefix.ts). `xguard-prefix STRING` (xguard/__main__.py) is
   `xguard -c STRING`: the same wrapper recognition applies. The docs advise a bare executable:
   a prefix holding " -" is split at its last " -"
   (https://github.com/Gitlawb/openclaude/issues/1849), which is why this is a
   separate program rather than `xguard prefix`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from xguard.adapters.hookflow import (
    Malformed,
    ToolCall,
    Verdict,
    absolute_cwd,
    decide,
    field,
    main,
    parse_options,
    read_input,
    shell_command,
    tool_paths,
)

SOURCE = "hook:claude-code"
EVENT = "PreToolUse"
DEFAULT_HOOK_TIMEOUT = (
    600.0  # seconds: Claude Code's default for command hooks (docs, "Common fields")
)

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
# The PreToolUse hook: Claude Code's JSON <-> hookflow's ToolCall and Verdict.

HOOK_USAGE = "usage: xguard hook claude-code [--require-approval ask|wait|deny] [--timeout SECONDS]"
# Claude Code's file tools: the input fields that name a file, what the tool
# does with it, and whether the field must be there
# (https://code.claude.com/docs/en/hooks, "PreToolUse input"). A file an
# xguard rule denies stays denied when the agent reaches it without a shell:
# the search tools read what they search (Grep prints matching lines), so a
# folder holding a denied file is decided as `grep -r` of it would be.
FILE_TOOLS: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "Read": (("file_path",), "read", True),
    "Write": (("file_path",), "write", True),
    "Edit": (("file_path",), "write", True),
    "MultiEdit": (("file_path",), "write", True),
    "NotebookEdit": (("notebook_path",), "write", True),
    "Grep": (("path",), "search", False),  # no path: the cwd
    "Glob": (("path",), "read", False),
    "LS": (("path",), "read", True),
}


def parse_call(data: Mapping[str, Any]) -> ToolCall:
    """Claude Code's PreToolUse input -> the tool call to decide."""
    event = field(data, "hook_event_name", str, required=False)
    if event is not None and event != EVENT:
        raise Malformed(
            f"xguard hook claude-code answers PreToolUse hooks; it was called for {event}"
        )
    tool = field(data, "tool_name", str)
    tool_input = field(data, "tool_input", dict)
    session_id = field(data, "session_id", str, required=False)
    tool_use_id = field(data, "tool_use_id", str, required=False)
    record = {"claude_session_id": session_id, "tool_use_id": tool_use_id}
    if tool != "Bash":
        if tool in FILE_TOOLS:
            keys, access, required = FILE_TOOLS[tool]
            cwd = absolute_cwd(data, required=False)
            paths = tool_paths(tool_input, keys, required) or ([cwd] if cwd else [])
            if len(paths) != 1:
                raise Malformed(f"{tool} names {len(paths)} paths where xguard reads one")
            return ToolCall(
                SOURCE,
                tool,
                path=paths[0],
                access=access,
                cwd=cwd,
                session_id=session_id,
                record=record,
            )
        return ToolCall(SOURCE, tool)  # no opinion: Claude Code's own permission flow decides
    command = shell_command(tool_input)
    return ToolCall(
        SOURCE,
        tool,
        command=command,
        cwd=absolute_cwd(data),
        session_id=session_id,
        record=record,
    )


def render(v: Verdict) -> str:
    """Claude Code reads stdout as JSON only when it starts with `{` and ends
    with `}`, and a schema failure is non-blocking: fixed keys only."""
    return json.dumps(
        {
            "hookSpecificOutput": {
                "hookEventName": EVENT,
                "permissionDecision": v.decision,
                "permissionDecisionReason": v.reason,
            }
        },
        ensure_ascii=True,  # lone surrogates from "\\ud800" can never break the answer
    )


def _run(args: list[str], stdin: Any) -> Verdict:
    mode, hook_timeout = parse_options(
        args, HOOK_USAGE, ("ask", "wait", "deny"), DEFAULT_HOOK_TIMEOUT
    )
    call = parse_call(read_input(stdin, "Claude Code"))
    return decide(call, mode, hook_timeout, "claude_code", "ask")


def hook_main(args: list[str], stdin: Any = None) -> int:
    """`xguard hook claude-code`: decide one tool call; never crash, never allow by mistake."""
    from xguard.adapters import HELP

    return main(args, stdin if stdin is not None else sys.stdin, _run, render, HELP)

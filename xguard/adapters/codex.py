"""Codex CLI: `xguard hook codex`, its PreToolUse hook.

Codex's command hooks copy Claude Code's protocol (read from Codex CLI
0.171.0, driven in tests/runtimes/test_codex.py): stdin holds
`{"session_id", "turn_id", "cwd", "hook_event_name": "PreToolUse", "model",
"permission_mode", "tool_name": "Bash", "tool_input": {"command": …},
"tool_use_id"}`, and the answer is `{"hookSpecificOutput": {"hookEventName":
"PreToolUse", "permissionDecision": "allow"|"deny", "permissionDecisionReason":
…}}`, or exit 2 with the reason on stderr.

Two facts shape this adapter:

- Codex does not support `"ask"`: it treats the answer as unsupported and
  **runs the command**. So this hook never answers ask: require_approval
  becomes `wait` (an xguard reviewer decides, within the hook's timeout) or
  `deny`; `--require-approval` or `hook: {codex: {require_approval: wait|deny}}`,
  default wait.
- Codex runs a hook only once it has been trusted (`/hooks` in its terminal
  UI records a `trusted_hash` in config.toml); `codex exec` skips an
  untrusted hook without a word. `xguard doctor` says when that is so.

The hook sees the command, not the shell the model picked for it (Codex's
`exec_command` takes a `shell` argument), so it holds where the login-shell
setup does not. File edits arrive as `apply_patch` calls: a file an xguard
path rule denies is denied there too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from xguard.adapters.hookflow import (
    Malformed,
    ToolCall,
    Verdict,
    absolute_cwd,
    decide_calls,
    field,
    main,
    parse_options,
    read_input,
    shell_command,
)

SOURCE = "hook:codex"
EVENT = "PreToolUse"
DEFAULT_HOOK_TIMEOUT = 600.0  # seconds: Codex's default for command hooks
MODES = ("wait", "deny")
USAGE = "usage: xguard hook codex [--require-approval wait|deny] [--timeout SECONDS]"
SHELL_TOOLS = ("Bash", "shell", "exec_command", "local_shell", "shell_command")
# Lines of Codex's patch format that name a file the patch writes.
_PATCH_MARKS = ("*** Add File: ", "*** Update File: ", "*** Delete File: ", "*** Move to: ")


def _strings(v: Any, depth: int = 0) -> list[str]:
    """Every string in a JSON value: the patch may sit in a list (local_shell's
    `["apply_patch", "*** Begin Patch…"]`) or in an object."""
    if isinstance(v, str):
        return [v]
    if depth > 8:
        return []
    if isinstance(v, dict):
        v = list(v.values())
    if isinstance(v, list):
        return [s for x in v for s in _strings(x, depth + 1)]
    return []


def patch_paths(tool_input: Mapping[str, Any]) -> list[str]:
    """Every file an apply_patch call writes, from any string in its input.

    Codex's parser strips a hunk header before reading it (parse_one_hunk:
    "tolerant of ... extra padding around marker strings"), so a marker is
    looked for in the stripped line: `  *** Update File: x` writes x."""
    out: list[str] = []
    for v in _strings(dict(tool_input)):
        for raw in v.splitlines():
            line = raw.strip()
            for mark in _PATCH_MARKS:
                if line.startswith(mark) and line[len(mark) :].strip():
                    out.append(line[len(mark) :])  # as Codex reads it, blanks kept
    return out


def parse_call(data: Mapping[str, Any]) -> list[ToolCall]:
    """Codex's PreToolUse input -> the calls to decide (one per patched file)."""
    event = field(data, "hook_event_name", str, required=False)
    if event is not None and event != EVENT:
        raise Malformed(f"xguard hook codex answers PreToolUse hooks; it was called for {event}")
    tool = field(data, "tool_name", str)
    tool_input = field(data, "tool_input", dict)
    session_id = field(data, "session_id", str, required=False)
    record = {
        "codex_session_id": session_id,
        "tool_use_id": field(data, "tool_use_id", str, required=False),
    }
    if tool in SHELL_TOOLS:
        return [
            ToolCall(
                SOURCE,
                tool,
                command=shell_command(tool_input),
                cwd=absolute_cwd(data),
                session_id=session_id,
                record=record,
            )
        ]
    if tool == "apply_patch":
        cwd = absolute_cwd(data, required=False)
        paths = patch_paths(tool_input)
        if not paths:
            # A patch that names no file cannot be applied; one whose files
            # xguard cannot find must not go ahead undecided.
            raise Malformed("apply_patch names no file xguard can read (no '*** … File: ' line)")
        return [
            ToolCall(
                SOURCE, tool, path=p, access="write", cwd=cwd, session_id=session_id, record=record
            )
            for p in paths
        ]
    return []  # no opinion: Codex's own approval policy decides


def render(v: Verdict) -> str:
    if v.decision not in ("allow", "deny"):  # never "ask": Codex would run the command
        v = Verdict("deny", v.reason)
    return json.dumps(
        {
            "hookSpecificOutput": {
                "hookEventName": EVENT,
                "permissionDecision": v.decision,
                "permissionDecisionReason": v.reason,
            }
        },
        ensure_ascii=True,
    )


def _run(args: list[str], stdin: Any) -> Verdict:
    mode, hook_timeout = parse_options(args, USAGE, MODES, DEFAULT_HOOK_TIMEOUT)
    return decide_calls(parse_call(read_input(stdin, "Codex")), mode, hook_timeout, "codex", MODES)


def hook_main(args: list[str], stdin: Any = None) -> int:
    """`xguard hook codex`: decide one tool call; never answer ask."""
    from xguard.adapters import HELP

    return main(args, stdin if stdin is not None else sys.stdin, _run, render, HELP)

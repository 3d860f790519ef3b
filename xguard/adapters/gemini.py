"""Gemini CLI: `xguard hook gemini`, its BeforeTool hook.

Read from Gemini CLI 0.61.0 (bundle/docs/hooks/reference.md and the hook
runner in its bundle; driven in tests/runtimes/test_gemini.py): stdin holds
`{"session_id", "transcript_path", "cwd", "hook_event_name": "BeforeTool",
"timestamp", "tool_name": "run_shell_command", "tool_input": {"command",
"description", "dir_path", "is_background"}}`; the answer is
`{"decision": "allow"|"deny"|"ask", "reason": …}` on stdout with exit 0, or
exit 2 with the reason on stderr (any other status is a warning and the tool
runs). `deny` (alias `block`) stops the tool and sends `reason` to the model;
`ask` makes Gemini CLI ask its user; a headless `-p` run, with no one to ask,
then waits for ever (tests/runtimes/test_gemini.py).

So require_approval becomes `wait` by default (an xguard reviewer decides,
within the hook's timeout: Gemini's default is 60 s, `"timeout"` in
milliseconds in settings.json; pass the same in seconds as `--timeout`),
else `ask` (an interactive Gemini CLI prompts) or `deny`; config
`hook: {gemini: {require_approval: …}}`.

Gemini's file tools (read_file, write_file, replace, list_directory) reach
files without a shell: a file an xguard path rule denies is denied there too.
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
)

SOURCE = "hook:gemini"
EVENT = "BeforeTool"
SHELL_TOOL = "run_shell_command"
DEFAULT_HOOK_TIMEOUT = 60.0  # seconds: Gemini CLI's default (60000 ms)
MODES = ("ask", "wait", "deny")
USAGE = "usage: xguard hook gemini [--require-approval ask|wait|deny] [--timeout SECONDS]"
FILE_TOOLS = {
    "read_file": ("file_path", "read"),
    "list_directory": ("dir_path", "read"),
    "write_file": ("file_path", "write"),
    "replace": ("file_path", "write"),
}


def parse_call(data: Mapping[str, Any]) -> ToolCall:
    """Gemini CLI's BeforeTool input -> the tool call to decide."""
    event = field(data, "hook_event_name", str, required=False)
    if event is not None and event != EVENT:
        raise Malformed(f"xguard hook gemini answers BeforeTool hooks; it was called for {event}")
    tool = field(data, "tool_name", str)
    tool_input = field(data, "tool_input", dict)
    session_id = field(data, "session_id", str, required=False)
    record = {"gemini_session_id": session_id}
    if tool == SHELL_TOOL:
        cwd = absolute_cwd(data)
        # `dir_path` runs the command elsewhere (relative to the project).
        sub = field(tool_input, "dir_path", str, "tool_input.", required=False)
        if sub:
            cwd = os.path.normpath(os.path.join(str(cwd), sub))
        return ToolCall(
            SOURCE,
            tool,
            command=shell_command(tool_input),
            cwd=cwd,
            session_id=session_id,
            record=record,
        )
    if tool in FILE_TOOLS:
        key, access = FILE_TOOLS[tool]
        path = field(tool_input, key, str, "tool_input.", required=False)
        if path:
            cwd = absolute_cwd(data, required=False)
            if cwd and not path.startswith(("/", "~")):  # ~ stays: the rules expand it
                path = os.path.join(cwd, path)
            return ToolCall(
                SOURCE,
                tool,
                path=path,
                access=access,
                cwd=cwd,
                session_id=session_id,
                record=record,
            )
    return ToolCall(SOURCE, tool)  # no opinion: Gemini CLI's own policy decides


def render(v: Verdict) -> str:
    return json.dumps({"decision": v.decision, "reason": v.reason}, ensure_ascii=True)


def _run(args: list[str], stdin: Any) -> Verdict:
    mode, hook_timeout = parse_options(args, USAGE, MODES, DEFAULT_HOOK_TIMEOUT)
    call = parse_call(read_input(stdin, "Gemini CLI"))
    return decide(call, mode, hook_timeout, "gemini", "wait", MODES)


def hook_main(args: list[str], stdin: Any = None) -> int:
    """`xguard hook gemini`: decide one tool call; never crash, never allow by mistake."""
    from xguard.adapters import HELP

    return main(args, stdin if stdin is not None else sys.stdin, _run, render, HELP)

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
    decide_calls,
    field,
    main,
    parse_options,
    read_input,
    shell_command,
    tool_paths,
)

SOURCE = "hook:gemini"
EVENT = "BeforeTool"
SHELL_TOOL = "run_shell_command"
DEFAULT_HOOK_TIMEOUT = 60.0  # seconds: Gemini CLI's default (60000 ms)
MODES = ("ask", "wait", "deny")
USAGE = "usage: xguard hook gemini [--require-approval ask|wait|deny] [--timeout SECONDS]"
# Gemini CLI's file tools: the input fields that name a path (under the names
# its releases have used), what the tool does with it, and whether one must be
# there. The search tools read what they search, so a folder holding a denied
# file is decided as `grep -r` of it would be; read_many_files reads every
# path (or glob) it names.
FILE_TOOLS: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "read_file": (("file_path", "absolute_path", "path"), "read", True),
    "list_directory": (("dir_path", "path"), "read", True),
    "write_file": (("file_path", "absolute_path"), "write", True),
    "replace": (("file_path", "absolute_path"), "write", True),
    "read_many_files": (("paths",), "search", True),
    "search_file_content": (("dir_path", "path"), "search", False),  # no path: the cwd
    "grep_search": (("dir_path", "path"), "search", False),
    "glob": (("dir_path", "path"), "read", False),
}


def parse_call(data: Mapping[str, Any]) -> list[ToolCall]:
    """Gemini CLI's BeforeTool input -> the tool calls to decide (one per path)."""
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
        return [
            ToolCall(
                SOURCE,
                tool,
                command=shell_command(tool_input),
                cwd=cwd,
                session_id=session_id,
                record=record,
            )
        ]
    if tool in FILE_TOOLS:
        keys, access, required = FILE_TOOLS[tool]
        cwd = absolute_cwd(data, required=False)
        paths = tool_paths(tool_input, keys, required) or ([cwd] if cwd else [])
        out = []
        for named in paths:
            path = named
            if cwd and not path.startswith(("/", "~")):  # ~ stays: the rules expand it
                path = os.path.join(cwd, path)
            out.append(
                ToolCall(
                    SOURCE,
                    tool,
                    path=path,
                    access=access,
                    cwd=cwd,
                    session_id=session_id,
                    record=record,
                )
            )
        return out
    return []  # no opinion: Gemini CLI's own policy decides


def render(v: Verdict) -> str:
    return json.dumps({"decision": v.decision, "reason": v.reason}, ensure_ascii=True)


def _run(args: list[str], stdin: Any) -> Verdict:
    mode, hook_timeout = parse_options(args, USAGE, MODES, DEFAULT_HOOK_TIMEOUT)
    return decide_calls(
        parse_call(read_input(stdin, "Gemini CLI")), mode, hook_timeout, "gemini", MODES
    )


def hook_main(args: list[str], stdin: Any = None) -> int:
    """`xguard hook gemini`: decide one tool call; never crash, never allow by mistake."""
    from xguard.adapters import HELP

    return main(args, stdin if stdin is not None else sys.stdin, _run, render, HELP)

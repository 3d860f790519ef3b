"""Agent integrations: `xguard hook <runtime>`.

One module per runtime, each only translating that runtime's protocol (its
hook's JSON, its shell wrapper) to a `Request` and the pipeline's outcome
back. `xguard hook RUNTIME` is dispatched by xguard/frontends/hooks.py. This is
the hot path (a runtime starts a hook before every tool call): standard
library only; never click, rich, yaml, filelock or platformdirs.

A hook that fails must fail *closed*. Claude Code (and Codex, Gemini CLI and
OpenHands, whose hooks copy its protocol) treat exit status 2 as "block the
tool call, show stderr to the model", and every other non-zero status as a
non-blocking error, i.e. the call goes ahead
(https://code.claude.com/docs/en/hooks, "Exit code output"). So even a usage
error here exits 2, never 64.
"""

from __future__ import annotations

HOOKS = ("claude-code", "codex", "gemini")
USAGE = "usage: xguard hook claude-code|codex|gemini [--require-approval MODE] [--timeout SECONDS]"
HELP = f"""{USAGE}

Answer an agent runtime's pre-tool-use hook with xguard's decision. The hook
JSON is read on stdin; the runtime's answer JSON is printed on stdout.

  claude-code   Claude Code PreToolUse hook: decides tool_input.command (Bash)
                and the files of Read/Write/Edit/MultiEdit/NotebookEdit/Grep/
                Glob/LS.
                Answers {{"hookSpecificOutput": {{"permissionDecision":
                "allow"|"deny"|"ask", ...}}}}.
                require_approval: ask (default) | wait | deny. Hook timeout 600 s.
  codex         Codex CLI PreToolUse hook (the same JSON as Claude Code). Never
                answers ask, which Codex treats as unsupported and runs the command:
                require_approval: wait (default) | deny. Hook timeout 600 s.
  gemini        Gemini CLI BeforeTool hook: decides run_shell_command and the files
                of read_file/write_file/replace/list_directory/read_many_files/
                search_file_content/grep_search/glob. Answers
                {{"decision": "allow"|"deny"|"ask", "reason": ...}}.
                require_approval: wait (default; ask makes a headless `gemini -p`
                wait for ever) | ask | deny. Hook timeout 60 s.

--require-approval MODE  what require_approval becomes: ask (the runtime asks its
                         user), wait (an xguard reviewer decides: `xguard review`),
                         deny; config `hook: {{claude_code|codex|gemini:
                         {{require_approval: MODE}}}}`.
--timeout SECONDS        the hook's own timeout in the runtime's settings: `wait`
                         gives up before it, because a hook that times out does
                         not block.
Malformed input is denied (exit 2, the reason on stderr).

Examples:
  ~/.claude/settings.json:
    {{"hooks": {{"PreToolUse": [{{"matcher": "*", "hooks": [
        {{"type": "command", "command": "xguard hook claude-code"}}]}}]}}}}
  ~/.codex/config.toml (then trust it in codex's /hooks):
    [[hooks.PreToolUse]]
    matcher = "*"
    [[hooks.PreToolUse.hooks]]
    type = "command"
    command = "xguard hook codex"
  ~/.gemini/settings.json:
    {{"hooks": {{"BeforeTool": [{{"matcher": ".*", "hooks": [
        {{"type": "command", "command": "xguard hook gemini"}}]}}]}}}}
"""


def wrapped_or_startup(text: str) -> bool:
    """Could `text` be an agent runtime's wrapper around the model's command, or
    one of its start-up steps (adapters/wrappers.py reads both)? Plain string
    tests, so that the shell front end imports wrappers.py only when one of
    them can be there: every other command pays nothing for it."""
    return (
        " && pwd -P >| " in text  # Claude Code's cwd trailer
        or "_bgpids_file=" in text  # Gemini CLI's job-tracking wrapper
        or text == "env"  # Claude Code's environment probe
        or text.startswith(("SNAPSHOT_FILE=", "set -e; . ", ". ", "source "))
        or "__codex_snapshot_command()" in text
    )

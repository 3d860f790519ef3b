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

HOOKS = ("claude-code",)
USAGE = "usage: xguard hook claude-code [--require-approval ask|wait|deny] [--timeout SECONDS]"
HELP = f"""{USAGE}

Answer an agent runtime's pre-tool-use hook with xguard's decision.

  claude-code   Claude Code PreToolUse hook: reads the hook JSON on stdin,
                decides tool_input.command in the hook's cwd, prints
                {{"hookSpecificOutput": {{"permissionDecision": "allow"|"deny"|"ask", ...}}}}.

require_approval becomes `ask` (Claude Code prompts), `wait` (an xguard
reviewer decides: `xguard review`), or `deny`; config key
`hook: {{claude_code: {{require_approval: ask|wait|deny}}}}`, default ask.
Malformed input is denied (exit 2, the reason on stderr).

Example ~/.claude/settings.json:
  {{"hooks": {{"PreToolUse": [{{"matcher": "*", "hooks": [
      {{"type": "command", "command": "xguard hook claude-code"}}]}}]}}}}
"""

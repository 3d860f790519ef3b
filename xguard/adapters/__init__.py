"""Agent integrations: `xguard hook <runtime>`.

One module per runtime. `hook_main` is on the hot path (an agent runtime
starts it before every tool call), so it imports only the standard library
and the pipeline; never click, rich, yaml, filelock or platformdirs.

A hook that fails must fail *closed*. Claude Code (and Codex, Gemini CLI and
OpenHands, whose hooks copy its protocol) treat exit status 2 as "block the
tool call, show stderr to the model", and every other non-zero status as a
non-blocking error, i.e. the call goes ahead
(https://code.claude.com/docs/en/hooks, "Exit code output"). So even a usage
error here exits 2, never 64.
"""

from __future__ import annotations

import sys

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


def hook_main(args: list[str]) -> int:
    """`xguard hook RUNTIME [OPTIONS]`: dispatch to one adapter."""
    if not args or args[0] in ("-h", "--help"):
        if args:
            sys.stdout.write(HELP)
            return 0
        sys.stderr.write(f"xguard: hook: name the runtime\n{USAGE}\n")
        return 2
    name, rest = args[0], args[1:]
    if name == "claude-code":
        from xguard.adapters.claude_code import hook_main as claude_hook

        return claude_hook(rest)
    sys.stderr.write(
        f"xguard: hook: unknown runtime {name!r} (known: {', '.join(HOOKS)})\n{USAGE}\n"
    )
    return 2

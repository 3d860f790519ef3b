"""`xguard hook RUNTIME [OPTIONS]`: hand a runtime's hook call to its adapter.

A hook that fails must fail *closed*: runtimes treat exit status 2 as "block
the tool call" and other failures as non-blocking (see xguard/adapters/), so
even a usage error here exits 2, never 64.
"""

from __future__ import annotations

import sys

from xguard.adapters import HELP, HOOKS, USAGE


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
    if name == "codex":
        from xguard.adapters.codex import hook_main as codex_hook

        return codex_hook(rest)
    if name == "gemini":
        from xguard.adapters.gemini import hook_main as gemini_hook

        return gemini_hook(rest)
    sys.stderr.write(
        f"xguard: hook: unknown runtime {name!r} (known: {', '.join(HOOKS)})\n{USAGE}\n"
    )
    return 2

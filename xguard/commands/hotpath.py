"""Click faces of the hot-path verbs, for `xguard --help`, the man page and
completions. `xguard run|check|hook|ssh-gate` never reach these: __main__
sends them to xguard.gate.runner before click is imported. They exist so the CLI
can describe every verb in one place, and they delegate if called."""

from __future__ import annotations

import click


def _delegate(verb: str, args: tuple[str, ...]) -> int:
    from xguard.gate import runner

    return runner.dispatch(verb, list(args))


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog="\b\nExamples:\n  xguard run -- git status\n  xguard run --wait 5m -- kubectl scale deploy/api --replicas=3",
)
@click.option(
    "--wait",
    metavar="DURATION",
    help="How long to wait for approval (30s, 15m, 2h); also XGUARD_WAIT.",
)
@click.option("--session", metavar="ID", help="Session to run in; also XGUARD_SESSION.")
@click.option(
    "--profile", metavar="NAME", help="Rules profile (staging, production …); also XGUARD_PROFILE."
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, required=True)
def run_cmd(
    wait: str | None, session: str | None, profile: str | None, argv: tuple[str, ...]
) -> int:
    """Gate ARGV as one simple command and run it directly (no shell)."""
    args = [
        *(["--wait", wait] if wait else []),
        *(["--session", session] if session else []),
        *(["--profile", profile] if profile else []),
        "--",
        *argv,
    ]
    return _delegate("run", tuple(args))


@click.command(
    "check",
    epilog="\b\nExamples:\n  xguard check -c 'rm -rf ~'\n  xguard check --json -- git status\n"
    "  xguard check --batch commands.jsonl --rules my-rules.yaml",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object: decision, units, reasons."
)
@click.option(
    "--rules", metavar="FILE", help="Decide under this rules file instead of the one in effect."
)
@click.option("--profile", metavar="NAME", help="Rules profile to decide under.")
@click.option("-c", "command", metavar="STRING", help="The shell command to check.")
@click.option("--batch", metavar="FILE", help="JSON lines with a \"command\" each ('-' for stdin).")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def check_cmd(
    as_json: bool,
    rules: str | None,
    profile: str | None,
    command: str | None,
    batch: str | None,
    argv: tuple[str, ...],
) -> int:
    """Say what would happen to a command; run nothing.

    Exit 0 allow, 1 require_approval, 2 deny, 78 config error.
    """
    args = [
        *(["--json"] if as_json else []),
        *(["--rules", rules] if rules else []),
        *(["--profile", profile] if profile else []),
        *(["-c", command] if command is not None else []),
        *(["--batch", batch] if batch else []),
        *(["--", *argv] if argv else []),
    ]
    return _delegate("check", tuple(args))


@click.command(
    "hook",
    context_settings={"ignore_unknown_options": True},
    epilog="\b\nExamples:\n"
    "  Claude Code, ~/.claude/settings.json:\n"
    '  {"hooks": {"PreToolUse": [{"matcher": "*",\n'
    '     "hooks": [{"type": "command", "command": "xguard hook claude-code"}]}]}}\n'
    '  Codex, ~/.codex/config.toml: command = "xguard hook codex"\n'
    "  Gemini CLI, ~/.gemini/settings.json:\n"
    '  {"hooks": {"BeforeTool": [{"matcher": ".*",\n'
    '     "hooks": [{"type": "command", "command": "xguard hook gemini"}]}]}}',
)
@click.argument("agent", type=click.Choice(["claude-code", "codex", "gemini"]))
@click.option(
    "--require-approval",
    type=click.Choice(["ask", "wait", "deny"]),
    help="What require_approval becomes: ask (the runtime prompts; not for codex, where it "
    "would run the command), wait (for `xguard review`), deny; default: config "
    "hook.<runtime>.require_approval, else ask (codex: wait).",
)
@click.option(
    "--timeout",
    metavar="SECONDS",
    help="The hook's timeout in the runtime's settings (default 600; gemini 60): "
    "`wait` gives up before it.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hook_cmd(
    agent: str, require_approval: str | None, timeout: str | None, args: tuple[str, ...]
) -> int:
    """Answer an agent runtime's pre-command hook (JSON on stdin)."""
    opts = [
        *(["--require-approval", require_approval] if require_approval else []),
        *(["--timeout", timeout] if timeout else []),
    ]
    return _delegate("hook", (agent, *opts, *args))


@click.command(
    "ssh-gate",
    epilog='\b\nExample, in ~/.ssh/authorized_keys:\n  command="xguard ssh-gate",restrict ssh-ed25519 AAAA… agent',
)
def ssh_gate_cmd() -> int:
    """Gate SSH_ORIGINAL_COMMAND (an OpenSSH forced command)."""
    return _delegate("ssh-gate", ())

"""Entry point. Dispatches the hot path before anything heavy is imported.

`xguard -c …`, `xguard run …`, `xguard check …`, `xguard hook …` and a script on
stdin are what an agent runs hundreds of times; they go to
xguard/frontends/shell.py, which imports only the standard library (plus
tree-sitter when a command is not plain). Everything else goes to the click
CLI in xguard/commands/cli.py.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

HOT_COMMANDS = frozenset({"run", "check", "hook", "ssh-gate"})

# Reviewer verbs that scripts poll (`xguard pending --json` in a loop, on
# every reviewer host): with nothing but these flags they call their plain
# function (xguard/commands/) without importing click, ~45 ms of each run.
# Anything else (--help, a mistyped flag) goes to the click command line,
# which declares the same options (commands/faces.py) and says what is wrong.
PLAIN_COMMANDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "pending": (
        "xguard.commands.approval_cmd",
        "pending",
        {"--json": "as_json", "--all": "show_all"},
    ),
}

# Whether main() took the hot path: see launch().
_took = {"hot path": False}


def _is_shell_invocation(argv: list[str]) -> bool:
    """True when argv looks like `$SHELL [flags] -c STRING` or `$SHELL -s`.

    Agents call `$SHELL -c`, `-lc`, `-l -c`, `--login -c`, `-ic`, `-e -c`,
    `-o pipefail -c` … so any leading word starting with '-' or '+' (other than
    our own --help/--version/--debug) means shell mode.
    """
    if not argv:
        return False
    first = argv[0]
    if first in ("--help", "-h", "--version", "-V", "--debug"):
        return False
    return first.startswith(("-", "+"))


def _hot_invocation(args: list[str]) -> bool:
    """`-c`, a script on stdin, `run`, `check`, `hook`: what a warm server may take."""
    if args[:1] and args[0] in HOT_COMMANDS:
        return args[0] != "ssh-gate"  # sshd's forced command: always this process's own
    return _is_shell_invocation(args) or (not args and not os.isatty(0))


def _warm(args: list[str]) -> int | None:
    """The exit status from a warm server that ran this invocation, or None
    (no server, or it cannot stand in for this process): run it here."""
    from xguard import warm

    if not warm.wanted(args):
        return None
    from xguard.errors import XguardError
    from xguard.paths import get_paths

    try:
        state = get_paths().state_dir_s
    except (XguardError, OSError):
        return None  # the local path reports what is wrong with the folders
    return warm.forward(args, state)


def _start_warm() -> None:
    """`warm: true` in the rules: start a server for the next command, unless
    one answers already. Best effort: a failure only means the next command
    starts cold."""
    from xguard import warm

    wanted = warm.pending_start()
    if wanted is not None:
        import contextlib

        with contextlib.suppress(Exception):  # the command's own status stands, whatever this does
            warm.autostart(*wanted)


def _say(text: str) -> None:
    # The reader of stderr may have gone; that must not change the status.
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("XGUARD_DEBUG", "") not in ("", "0")
    if args[:1] == ["--debug"]:
        debug = True
        os.environ["XGUARD_DEBUG"] = "1"
        args = args[1:]
    if not debug and _hot_invocation(args):
        warm = _warm(args)
        if warm is not None:
            _took["hot path"] = True
            return warm
    from xguard.errors import ExitCode, XguardError

    from xguard.environment import Environment

    terminal = Environment()  # the one place that knows the terminal, passed down
    hot = True
    try:
        if _is_shell_invocation(args) or (not args and not terminal.stdin_isatty):
            from xguard.frontends.shell import shell_main

            _took["hot path"] = True
            return shell_main(args, terminal)
        if not args:
            # No arguments on a terminal: the interactive gated shell.
            from xguard.frontends.interactive import interactive_main

            return interactive_main([])
        if args[0] in HOT_COMMANDS:
            from xguard.frontends.shell import dispatch

            _took["hot path"] = True
            return dispatch(args[0], args[1:])
        hot = False
        plain = PLAIN_COMMANDS.get(args[0])
        if plain is not None and all(a in plain[2] for a in args[1:]):
            import importlib

            module, name, flags = plain
            values = {dest: flag in args[1:] for flag, dest in flags.items()}
            return int(getattr(importlib.import_module(module), name)(**values))
        from xguard.commands.cli import cli_main

        return cli_main(args)
    except XguardError as e:
        if debug:
            raise
        _say(f"xguard: {e.message}\n")
        return int(e.exit_code)
    except KeyboardInterrupt:
        return 128 + 2
    except BrokenPipeError:
        # `xguard audit | head`: the reader had what it wanted. On the hot
        # path a vanished reader never turns a command that did not run (or
        # a decision that was not delivered) into success (issue 10).
        return int(ExitCode.SOFTWARE) if hot else 0
    except Exception as e:  # fail closed: nothing ran, say what broke
        if debug:
            raise
        _say(f"xguard: internal error: {type(e).__name__}: {e} (run with --debug)\n")
        return int(ExitCode.SOFTWARE)


PREFIX_USAGE = "usage: xguard-prefix COMMAND-LINE   (the same as: xguard -c COMMAND-LINE)"
PREFIX_HELP = f"""{PREFIX_USAGE}

For CLAUDE_CODE_SHELL_PREFIX: Claude Code runs `xguard-prefix '<command line>'`
for every Bash tool call, hook command, status line command and stdio MCP
server start, with the whole line as one argument. xguard gates it (the
model's command inside Claude Code's wrapper, or else the whole line) and runs
it with bash, exactly as `xguard -c` does.

  export CLAUDE_CODE_SHELL_PREFIX="$(command -v xguard-prefix)"
"""


def prefix_main(argv: list[str] | None = None) -> int:
    """Console script `xguard-prefix STRING` (CLAUDE_CODE_SHELL_PREFIX): `xguard -c
    STRING`, one argument only. A separate program rather than `xguard prefix`:
    a prefix holding " -" is split at its last " -" by the runtime."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        sys.stdout.write(PREFIX_HELP)
        return 0
    if len(args) != 1:
        _say(f"xguard-prefix: expected exactly one argument, got {len(args)}\n{PREFIX_USAGE}\n")
        return 64
    # `--` so a command line that starts with '-' is still the string, not a flag.
    return main(["-c", "--", args[0]])


def launch() -> NoReturn:
    """The installed program (scripts/xguard, `python -m xguard`): main(), then exit.

    After a hot-path verb everything that must outlive the process is already on
    disk (the audit log is fsynced, the command has exited), so only the
    standard streams are flushed and the process ends without tearing the
    interpreter down: that teardown (every module and object freed one by one)
    costs several milliseconds on each gated command. The CLI verbs (review,
    the web server, …) exit normally, running whatever cleanup they registered.
    """
    code = main()
    if _took["hot path"]:
        _start_warm()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # the reader has gone: the status stands (see _say)
        os._exit(code & 0xFF)
    sys.exit(code)


if __name__ == "__main__":
    launch()

"""Entry point. Dispatches the hot path before anything heavy is imported.

`xguard -c …`, `xguard run …`, `xguard check …`, `xguard hook …` and a script on
stdin are what an agent runs hundreds of times; they go to `xguard.gate.runner`,
which imports only the standard library (plus tree-sitter when a command is
not plain). Everything else goes to the click CLI in `xguard.commands.cli`.
"""

from __future__ import annotations

import os
import sys

HOT_COMMANDS = frozenset({"run", "check", "hook", "ssh-gate"})


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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("XGUARD_DEBUG", "") not in ("", "0")
    if args[:1] == ["--debug"]:
        debug = True
        os.environ["XGUARD_DEBUG"] = "1"
        args = args[1:]
    from xguard.errors import ExitCode, XguardError

    try:
        if _is_shell_invocation(args) or (not args and not sys.stdin.isatty()):
            from xguard.gate.runner import shell_main

            return shell_main(args)
        if not args:
            # No arguments on a terminal: the interactive gated shell.
            from xguard.frontends.interactive import interactive_main

            return interactive_main([])
        if args[0] in HOT_COMMANDS:
            from xguard.gate import runner

            return runner.dispatch(args[0], args[1:])
        from xguard.commands.cli import cli_main

        return cli_main(args)
    except XguardError as e:
        if debug:
            raise
        sys.stderr.write(f"xguard: {e.message}\n")
        return int(e.exit_code)
    except KeyboardInterrupt:
        return 128 + 2
    except BrokenPipeError:
        return 0
    except Exception as e:  # fail closed: nothing ran, say what broke
        if debug:
            raise
        sys.stderr.write(f"xguard: internal error: {type(e).__name__}: {e} (run with --debug)\n")
        return int(ExitCode.SOFTWARE)


if __name__ == "__main__":
    raise SystemExit(main())

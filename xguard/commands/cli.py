"""The click CLI for everything that is not the hot path.

`xguard --help` lists COMMANDS (name -> "module:attribute", summary) without
importing any command; a command's click face (xguard/commands/faces.py)
is loaded when it is used, and its plain function, in a command module, only
when it runs: `xguard pending` does not pay for importing the reviewer's
terminal. Nothing on the hot path imports this module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from xguard import __version__
from xguard.errors import ExitCode, XguardError

# name -> ("module:attribute", summary). The summaries are what `xguard --help`
# lists, so it imports no command module (pip's command table); a test checks
# each against its command's own help. The hot-path verbs (run, check, hook,
# ssh-gate) are listed too; __main__ routes them before click is ever imported.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "xguard.commands.faces:run_cmd",
        "Gate ARGV as one simple command and run it directly (no shell).",
    ),
    "check": (
        "xguard.commands.faces:check_cmd",
        "Say what would happen to a command; run nothing.",
    ),
    "hook": (
        "xguard.commands.faces:hook_cmd",
        "Answer an agent runtime's pre-command hook (JSON on stdin).",
    ),
    "ssh-gate": (
        "xguard.commands.faces:ssh_gate_cmd",
        "Gate SSH_ORIGINAL_COMMAND (an OpenSSH forced command).",
    ),
    "rules": (
        "xguard.commands.faces:rules",
        "Validate rules files and run the examples they carry.",
    ),
    "init": (
        "xguard.commands.faces:init",
        "Write the commented built-in rules to the config location for editing.",
    ),
    "audit": (
        "xguard.commands.faces:audit",
        "Read the audit log, oldest first; filters combine with AND.",
    ),
    "pending": (
        "xguard.commands.faces:pending",
        "List pending approval requests, oldest first.",
    ),
    "approve": (
        "xguard.commands.faces:approve",
        "Approve one request (an unambiguous prefix of its ID is enough).",
    ),
    "deny": (
        "xguard.commands.faces:deny",
        "Deny one request; the agent's command exits 77 with the reason.",
    ),
    "review": (
        "xguard.commands.faces:review",
        "The reviewer's live terminal: approve or deny pending requests.",
    ),
    "session": (
        "xguard.commands.faces:session",
        "Sessions: a window of time an agent's commands run in.",
    ),
    "serve": ("xguard.commands.faces:serve", "Run the strict-mode broker in the foreground."),
    "warm": ("xguard.commands.faces:warm", "A loaded xguard that gated commands fork from."),
    "setup": ("xguard.commands.faces:setup", "Set xguard up on this machine."),
    "doctor": (
        "xguard.commands.faces:doctor",
        "Check the setup: rules and profile in effect, queue, audit log, reviewer, …",
    ),
    "db": (
        "xguard.commands.faces:db",
        "The shared PostgreSQL queue for many hosts (`queue: {postgres: DSN}`).",
    ),
}


def _available() -> dict[str, str]:
    """Commands whose module exists in this build -> "module:attribute"."""
    out = {}
    for name, (target, _summary) in COMMANDS.items():
        mod = target.split(":", 1)[0]
        if importlib.util.find_spec(mod) is not None:
            out[name] = target
    return out


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_available())

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table's summaries: no command module is imported."""
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _available().get(cmd_name)
        if target is None:
            return None
        mod_name, attr = target.split(":", 1)
        return getattr(importlib.import_module(mod_name), attr)


EPILOG = """\b
Examples:
  xguard -c 'git status'              gate and run a command (agents set SHELL=xguard)
  xguard check -c 'rm -rf ~'          say what would happen, run nothing
  xguard review                       approve or deny waiting commands
  xguard audit --last 20              read the audit log
"""


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="xguard")
def cli() -> None:
    """A sudo-style gate between an AI agent and the shell.

    Shell mode: `xguard -c STRING` (also -lc, -l -c, --login -c, -ic, -e -c,
    -o pipefail -c) gates STRING and runs it with /bin/bash; `xguard -s` or a
    script on stdin gates the whole script.
    """


def cli_main(args: list[str]) -> int:
    try:
        rv = cli.main(args=args, prog_name="xguard", standalone_mode=False)
    except click.exceptions.NoSuchOption as e:
        e.show()
        return int(ExitCode.USAGE)
    except click.UsageError as e:
        e.show()
        return int(ExitCode.USAGE)
    except click.exceptions.Abort:
        sys.stderr.write("xguard: aborted\n")
        return 128 + 2
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except XguardError:
        raise
    return int(rv or 0)

"""The click CLI for everything that is not the hot path.

Subcommands load lazily from COMMANDS (name -> "module:attribute"), so
`xguard pending` does not pay for importing the reviewer's terminal. Each
target is a click command or group defined in `xguard/commands/<name>.py`.
Nothing on the hot path imports this module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from xguard import __version__
from xguard.errors import ExitCode, XguardError

# name -> "module:attribute". The hot-path verbs (run, check, hook, ssh-gate)
# are listed too so that `xguard --help` shows them; __main__ routes them to
# the runner before click is ever imported.
COMMANDS: dict[str, str] = {
    "run": "xguard.commands.hotpath:run_cmd",
    "check": "xguard.commands.hotpath:check_cmd",
    "hook": "xguard.commands.hotpath:hook_cmd",
    "ssh-gate": "xguard.commands.hotpath:ssh_gate_cmd",
    "rules": "xguard.commands.rules_cmd:rules",
    "init": "xguard.commands.rules_cmd:init",
    "audit": "xguard.commands.audit_cmd:audit",
    "pending": "xguard.commands.approval_cmd:pending",
    "approve": "xguard.commands.approval_cmd:approve",
    "deny": "xguard.commands.approval_cmd:deny",
    "review": "xguard.commands.approval_cmd:review",
    "session": "xguard.commands.session_cmd:session",
    "serve": "xguard.commands.strict_cmd:serve",
    "setup": "xguard.commands.strict_cmd:setup",
    "doctor": "xguard.commands.doctor_cmd:doctor",
    "db": "xguard.commands.db_cmd:db",
}


def _available() -> dict[str, str]:
    """Commands whose module exists in this build."""
    out = {}
    for name, target in COMMANDS.items():
        mod = target.split(":", 1)[0]
        if importlib.util.find_spec(mod) is not None:
            out[name] = target
    return out


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_available())

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

"""`xguard serve` and `xguard setup strict`: strict mode (issue 6).

The agent runs as a Unix user of its own; the broker (`serve`), running as
the reviewer, owns the rules, the queue and the audit log. See
docs/strict-mode.md and xguard/broker.py.
"""

from __future__ import annotations

import os
import pwd
import sys

import click

from xguard.errors import ConfigError, UsageError


@click.command(
    epilog="\b\nExamples:\n"
    "  xguard serve                          # foreground; Ctrl-C or SIGTERM stops it\n"
    "  xguard serve --socket /run/xguard/broker.sock\n"
    "  xguard serve --check                  # exit 0 when safe, 78 naming the file otherwise"
)
@click.option(
    "--socket",
    "socket_path",
    metavar="PATH",
    help="Where to listen (default: `socket:` in config.yaml, else /run/xguard/broker.sock).",
)
@click.option("--check", "check_only", is_flag=True, help="Check ownership and modes, then exit.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request on stderr.")
@click.option(
    "--allow-same-user",
    is_flag=True,
    hidden=True,
    help="Accept the broker's own user as an agent: benchmarks and tests only; no boundary.",
)
def serve(socket_path: str | None, check_only: bool, verbose: bool, allow_same_user: bool) -> int:
    """Run the strict-mode broker in the foreground.

    The broker owns the rules, the approval queue and the audit log. Agents
    (`agents:` in config.yaml), each running as a user of its own, send it
    their commands over a Unix socket; only reviewers (`reviewers:`, the
    broker's own user and root) may approve. It refuses to start, exit 78
    naming the file, when an agent, a group or others could write anything
    it trusts.
    """
    from xguard.strict.broker import serve_main

    return serve_main(
        socket_path, check_only=check_only, allow_same_user=allow_same_user, verbose=verbose
    )


@click.group(epilog="\b\nExample:\n  sudo xguard setup strict --agent-user claude")
def setup() -> None:
    """Set xguard up on this machine."""


def _default_reviewer() -> str:
    name = os.environ.get("SUDO_USER") or ""
    if name and name != "root":
        return name
    return pwd.getpwuid(os.getuid()).pw_name


@setup.command(
    "strict",
    epilog="\b\nExamples:\n"
    "  sudo xguard setup strict --agent-user claude            # print the steps\n"
    "  sudo xguard setup strict --agent-user claude --apply    # and do them",
)
@click.option(
    "--agent-user",
    required=True,
    metavar="NAME",
    help="The agent's own Unix user (created if missing).",
)
@click.option(
    "--reviewer",
    metavar="NAME",
    help="Who runs the broker and approves (default: $SUDO_USER, else you).",
)
@click.option(
    "--socket", "socket_path", default="/run/xguard/broker.sock", show_default=True, metavar="PATH"
)
@click.option(
    "--xguard",
    "exe",
    metavar="PATH",
    help="The xguard executable to use as login shell and service.",
)
@click.option(
    "--ssh/--no-ssh", default=True, show_default=True, help="Also gate the agent's SSH logins."
)
@click.option(
    "--systemd/--no-systemd",
    default=True,
    show_default=True,
    help="Install the broker as a systemd service.",
)
@click.option(
    "--apply",
    "do_apply",
    is_flag=True,
    help="Perform the steps (as root); otherwise only print them.",
)
def setup_strict(
    *,
    agent_user: str,
    reviewer: str | None,
    socket_path: str,
    exe: str | None,
    ssh: bool,
    systemd: bool,
    do_apply: bool,
) -> int:
    """Print (and with --apply perform) the steps of strict mode.

    The agent gets a Unix user of its own whose login shell is xguard; the
    reviewer's rules, queue and audit log stay the reviewer's; a broker
    service owns them; SSH logins of the agent go through `xguard ssh-gate`.
    """
    from xguard.strict import setup as strict

    reviewer = reviewer or _default_reviewer()
    exe = os.path.abspath(exe) if exe else strict.xguard_executable()
    if not socket_path.startswith("/"):
        raise UsageError("--socket must be an absolute path")
    steps = strict.plan(
        agent_user, reviewer, exe, socket_path=socket_path, ssh=ssh, systemd=systemd
    )
    sys.stdout.write(strict.render(steps))
    if not do_apply:
        sys.stderr.write(
            "xguard: nothing was changed; run again with --apply (as root) to perform these steps\n"
        )
        return 0
    if os.getuid() != 0:
        raise ConfigError("--apply needs root (it creates users and writes /etc)")
    for i, s in enumerate(steps, 1):
        if s.apply is None:
            continue
        sys.stderr.write(f"xguard: step {i}: {s.title}\n")
        try:
            s.apply()
        except (OSError, RuntimeError) as e:
            sys.stderr.write(f"xguard: step {i} failed: {e}\n")
            return 1
    sys.stderr.write("xguard: done; now run the checks of the last step\n")
    return 0

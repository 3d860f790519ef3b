"""`xguard serve` and `xguard setup strict`: strict mode (issue 6).

The agent runs as a Unix user of its own; the broker (`serve`), running as
the reviewer, owns the rules, the queue and the audit log. See
docs/strict-mode.md and xguard/broker.py.
"""

from __future__ import annotations

import os
import pwd
import sys


from xguard.errors import ConfigError, UsageError


def serve(socket_path: str | None, check_only: bool, verbose: bool, allow_same_user: bool) -> int:
    """Run the strict-mode broker in the foreground."""
    from xguard.strict.broker import serve_main

    return serve_main(
        socket_path, check_only=check_only, allow_same_user=allow_same_user, verbose=verbose
    )


def setup() -> None:
    """Set xguard up on this machine."""


def _default_reviewer() -> str:
    name = os.environ.get("SUDO_USER") or ""
    if name and name != "root":
        return name
    return pwd.getpwuid(os.getuid()).pw_name


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
    """Print (and with --apply perform) the steps of strict mode."""
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

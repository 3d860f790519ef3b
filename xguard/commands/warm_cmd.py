"""`xguard warm start|stop|status`: the warm server (xguard/commands/warmserver.py).

With a server running, `xguard -c`, `run`, `check` and `hook` hand their
work to a fork of an xguard that is already loaded, and skip most of their
start-up. One starts on the first command unless the rules say `warm: false`.
"""

from __future__ import annotations

import os
import sys
import time

from xguard.errors import UsageError
from xguard.paths import ensure_dir, get_paths
from xguard.warm import server_pid, spawn


def warm() -> None:
    """A loaded xguard that gated commands fork from."""


def _idle(idle: str) -> float:
    from xguard.util import parse_duration

    seconds = parse_duration(idle)
    if seconds is None or seconds <= 0:
        raise UsageError(f"--idle {idle!r} is not a duration (like 30s, 10m, 1h)")
    return seconds


def warm_start(idle: str, foreground: bool) -> int:
    """Start the warm server (in the background unless --foreground)."""
    from xguard.commands.approval_cmd import refuse_if_gated

    refuse_if_gated("warm start")
    seconds = _idle(idle)
    state = ensure_dir(get_paths().state_dir_s)
    pid = server_pid(state)
    if pid is not None:
        print(f"xguard: a warm server is already running (pid {pid})", file=sys.stderr)
        return 0
    if foreground:
        from xguard.commands import warmserver

        code = warmserver.serve(state, seconds)
        if code == 75:
            print("xguard: another warm server took the socket first", file=sys.stderr)
        return code
    child = spawn(state, seconds)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        pid = server_pid(state)
        if pid is not None:
            print(
                f"xguard: warm server started (pid {pid}; exits after {idle} idle)", file=sys.stderr
            )
            return 0
        try:
            done, status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            done, status = child, 0
        if done:
            log = os.path.join(state, "warm.log")
            print(
                f"xguard: the warm server did not start (exit {status >> 8}); see {log}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.02)
    print("xguard: the warm server did not answer within 20 s", file=sys.stderr)
    return 1


def warm_stop() -> int:
    """Stop the warm server: new commands start cold at once; running ones finish."""
    import signal

    state = get_paths().state_dir_s
    pid = server_pid(state)
    if pid is None:
        print("xguard: no warm server is running", file=sys.stderr)
        return 0
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 10
    while time.monotonic() < end and server_pid(state) == pid:
        time.sleep(0.02)
    print(f"xguard: warm server stopped (pid {pid})", file=sys.stderr)
    return 0


def warm_status() -> int:
    """Say whether a warm server runs here: exit 0 if one does, 3 if not."""
    pid = server_pid(get_paths().state_dir_s)
    if pid is None:
        print("warm server: not running")
        return 3
    print(f"warm server: running (pid {pid})")
    return 0


def warm_serve(idle: str) -> int:
    """The server process itself (what `warm start` runs in the background)."""
    from xguard.commands import warmserver

    return warmserver.serve(ensure_dir(get_paths().state_dir_s), _idle(idle))

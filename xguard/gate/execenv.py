"""Environment scrubbing and running the approved command (SPEC §5).

The child gets only the kept variables plus `env.set`; stdin, stdout, stderr
and the terminal are inherited untouched; signals sent to xguard reach it; its
exit status comes back as a shell reports it (128+N for signal N).

`run_child` is the one place a command starts, so tests can swap it.
Standard library only: no subprocess (it imports threading, selectors …).
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    # The C module behind `signal`: the same functions and numbers, without
    # the IntEnum wrappers whose `enum` import costs ~3 ms per command.
    import _signal as signal
except ImportError:  # pragma: no cover - other Pythons
    import signal  # type: ignore[no-redef]

# Signals that xguard passes on to the running command.
FORWARD = (
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCONT,
    signal.SIGWINCH,
)
# Python ignores SIGPIPE (and SIGXFSZ) at start-up; a child must get the defaults
# back, or `yes | head` never ends. These are reset in the child.
RESET_IN_CHILD = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGHUP,
)


def scrub(environ: dict[str, str], keep: list[str], set_: dict[str, str]) -> dict[str, str]:
    """Only the kept variables (`LC_*` style prefixes allowed) plus the set ones."""
    exact = {k for k in keep if not k.endswith("*")}
    prefixes = tuple(k[:-1] for k in keep if k.endswith("*"))
    out = {k: v for k, v in environ.items() if k in exact or (prefixes and k.startswith(prefixes))}
    out.update(set_)
    return out


def child_env(gate: Any) -> dict[str, str]:
    """The environment an approved command runs with: `env.keep` and `env.set`,
    the profile's over the top level's. The impact preview connects with it too
    (issue 13: the PG*/MYSQL_* variables the command would see, and no others)."""
    env_cfg = gate.ruleset.env
    profile_cfg = gate.ruleset.profiles.get(gate.profile or "", {}) if gate.profile else {}
    keep = profile_cfg.get("env", {}).get("keep", env_cfg["keep"])
    set_ = {**env_cfg.get("set", {}), **profile_cfg.get("env", {}).get("set", {})}
    return scrub(gate.environ, keep, set_)


def which(name: str, path: str) -> str | None:
    """PATH lookup as execvp does it, over the scrubbed PATH."""
    if "/" in name:
        return name
    for d in path.split(os.pathsep):
        p = os.path.join(d or ".", name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


class Outcome:
    __slots__ = ("duration_ms", "exit_code", "signal", "timed_out")

    def __init__(self, exit_code: int, sig: int | None, timed_out: bool, duration_ms: int) -> None:
        self.exit_code = exit_code
        self.signal = sig
        self.timed_out = timed_out
        self.duration_ms = duration_ms


def run_child(
    path: str,
    argv: list[str],
    env: dict[str, str],
    *,
    max_runtime: float | None = None,
    kill_grace: float = 5.0,
) -> Outcome:
    """Start the command, forward signals, wait, and report how it ended.

    With max_runtime: SIGTERM when it is over, SIGKILL `kill_grace` seconds
    later, and exit status 124 as timeout(1) gives.
    """
    t0 = time.monotonic()
    # With a time limit the command must be stopped whole, grandchildren too
    # (`bash -c 'sleep 30; true'`). Off a terminal it gets a process group of
    # its own to signal; on a terminal it stays in the foreground group (job
    # control and Ctrl-C keep working) and its descendants are found in /proc.
    own_group = bool(max_runtime) and not (sys.stdin.isatty() if sys.stdin else False)
    if own_group:
        pid = os.posix_spawn(path, argv, env, setsigdef=RESET_IN_CHILD, setpgroup=0)
    else:
        pid = os.posix_spawn(path, argv, env, setsigdef=RESET_IN_CHILD)
    timed_out = False
    stage = 0

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def on_alarm(_signum: int, _frame: object) -> None:
        nonlocal timed_out, stage
        timed_out = True
        sig = signal.SIGTERM if stage == 0 else signal.SIGKILL
        try:
            if own_group:
                os.killpg(pid, sig)
            else:
                for p in [*_descendants(pid), pid]:
                    try:
                        os.kill(p, sig)
                    except ProcessLookupError:
                        pass
        except ProcessLookupError:
            return
        if stage == 0:
            stage = 1
            signal.setitimer(signal.ITIMER_REAL, kill_grace)

    old = {s: signal.signal(s, forward) for s in FORWARD}
    # A terminal's Ctrl-C / Ctrl-\ reach the whole foreground process group,
    # the child included; xguard itself waits for the child to decide.
    # Sent to xguard alone (not from a terminal), they are passed on.
    interactive = sys.stdin.isatty() if sys.stdin else False
    for s in (signal.SIGINT, signal.SIGQUIT):
        old[s] = signal.signal(s, signal.SIG_IGN if interactive else forward)
    if max_runtime:
        old[signal.SIGALRM] = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max_runtime)
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:  # pragma: no cover - reaped elsewhere
                status = 0
                break
    finally:
        if max_runtime:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for s, h in old.items():
            signal.signal(s, h)
    code = os.waitstatus_to_exitcode(status)
    sig = -code if code < 0 else None
    exit_code = 128 + sig if sig else code
    if timed_out:
        exit_code = 124
    return Outcome(exit_code, sig, timed_out, int((time.monotonic() - t0) * 1000))


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, deepest last (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The ppid is the second field after the parenthesised command name.
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out

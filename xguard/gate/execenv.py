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
    recorder: Any = None,
) -> Outcome:
    """Start the command, forward signals, wait, and report how it ended.

    With max_runtime: SIGTERM when it is over, SIGKILL `kill_grace` seconds
    later, and exit status 124 as timeout(1) gives.

    With a recorder (audit/recording.py's Recorder, or strict mode's relay to
    the broker): the command's stdout and stderr go through xguard, which
    passes every byte on at once and records it (gate/capture.py); a pty
    when the caller's stdout or stderr is a terminal.
    """
    t0 = time.monotonic()
    interactive = sys.stdin.isatty() if sys.stdin else False
    plumbing = None
    if recorder is not None:
        from xguard.gate.capture import Plumbing

        plumbing = Plumbing.make()
        recorder.begin(plumbing.pty, plumbing.cols, plumbing.rows)
    pty = plumbing is not None and plumbing.pty
    # With a time limit the command must be stopped whole, grandchildren too
    # (`bash -c 'sleep 30; true'`). Off a terminal it gets a process group of
    # its own to signal; on a terminal it stays in the foreground group (job
    # control and Ctrl-C keep working) and its descendants are found in /proc.
    # On a pty of its own it is a session of its own.
    own_group = pty or (bool(max_runtime) and not interactive)
    try:
        if pty:
            pid = os.posix_spawn(
                path,
                argv,
                env,
                setsigdef=RESET_IN_CHILD,
                setsid=True,
                file_actions=plumbing.file_actions,  # type: ignore[union-attr]
            )
        elif plumbing is not None:
            pid = os.posix_spawn(
                path,
                argv,
                env,
                setsigdef=RESET_IN_CHILD,
                file_actions=plumbing.file_actions,
                **({"setpgroup": 0} if own_group else {}),  # type: ignore[arg-type]
            )
        elif own_group:
            pid = os.posix_spawn(path, argv, env, setsigdef=RESET_IN_CHILD, setpgroup=0)
        else:
            pid = os.posix_spawn(path, argv, env, setsigdef=RESET_IN_CHILD)
    except BaseException:
        if plumbing is not None:
            plumbing.close()
        raise
    timed_out = False
    stage = 0

    def forward(signum: int, _frame: object) -> None:
        try:
            if pty and signum in (signal.SIGINT, signal.SIGQUIT):
                # What the terminal would do: the pty's foreground group gets it.
                os.killpg(plumbing.foreground_group() or pid, signum)  # type: ignore[union-attr]
            else:
                os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def on_winch(signum: int, _frame: object) -> None:
        # The pty tells its foreground group itself (TIOCSWINSZ sends SIGWINCH).
        size = plumbing.resize()  # type: ignore[union-attr]
        if size is not None:
            recorder.resize(*size)

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
    if pty:
        old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, on_winch)
    # A terminal's Ctrl-C / Ctrl-\ reach the whole foreground process group,
    # the child included; xguard itself waits for the child to decide.
    # Sent to xguard alone (not from a terminal), they are passed on. On a pty
    # of its own the command is in no group of the caller's terminal: pass on.
    for s in (signal.SIGINT, signal.SIGQUIT):
        old[s] = signal.signal(s, signal.SIG_IGN if interactive and not pty else forward)
    if max_runtime:
        old[signal.SIGALRM] = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max_runtime)
    status = 0
    try:
        if plumbing is not None:
            from xguard.gate.capture import pump

            plumbing.started()

            def exited() -> bool:
                nonlocal status
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                    return True
                return False

            try:
                pump(plumbing, pid, recorder, exited)
            finally:
                plumbing.close()
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:  # reaped by exited() above
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

"""Environment scrubbing and running the approved command (SPEC §5).

The child gets only the kept variables plus `env.set`; stdin, stdout, stderr
and the terminal are inherited untouched, no other descriptor of the caller's; signals sent to xguard reach it; its
exit status comes back as a shell reports it (128+N for signal N).

`run_child` is the one place a command starts, so tests can swap it.
Standard library only: no subprocess (it imports threading, selectors …).
"""

from __future__ import annotations

import os
import sys
import time

from xguard.environment import Environment

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from xguard.gate.confine import Box

try:
    # The C module behind `signal`: the same functions and numbers, without
    # the IntEnum wrappers whose `enum` import costs ~3 ms per command.
    import _signal as signal
except ImportError:  # pragma: no cover - other Pythons
    import signal

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
    signal.SIGCHLD,
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


class ExecResult:
    """How a command ended: its status (None: unknown) and what the exit
    record adds (signal, timed_out, output, reported, note)."""

    __slots__ = ("duration_ms", "exit_code", "fields")

    def __init__(
        self,
        exit_code: int | None,
        duration_ms: int | None,
        fields: dict[str, object] | None = None,
    ) -> None:
        self.exit_code = exit_code
        self.duration_ms = duration_ms
        self.fields = fields if fields is not None else {}


class Outcome:
    """What run_child saw. exit_code None: the status could not be known
    (the child was reaped elsewhere); it must never read as success."""

    __slots__ = ("duration_ms", "exit_code", "signal", "timed_out")

    def __init__(
        self, exit_code: int | None, sig: int | None, timed_out: bool, duration_ms: int
    ) -> None:
        self.exit_code = exit_code
        self.signal = sig
        self.timed_out = timed_out
        self.duration_ms = duration_ms

    def result(self) -> ExecResult:
        fields: dict[str, object] = {}
        if self.signal:
            fields["signal"] = self.signal
        if self.timed_out:
            fields["timed_out"] = True
        if self.exit_code is None:
            fields["note"] = "the command's exit status could not be read"
        return ExecResult(self.exit_code, self.duration_ms, fields)


def close_inherited(keep: frozenset[int] = frozenset()) -> None:
    """Mark every descriptor above 2 close-on-exec: the command gets stdin,
    stdout, stderr and the terminal, nothing else its caller held.

    xguard opens its own descriptors close-on-exec (PEP 446), so the ones
    still inheritable came from the caller: a file, a folder, a socket or an
    IPC channel of the agent's runtime. The reading treats `/dev/fd/N`, `<&N`
    and `>&N` as the command's own streams; an inherited N would let an
    allowed `cat <&8` print a secret the caller had open, `echo x >&7` write a
    file past the box's read-only mounts, and `/proc/self/fd/N/` lead out of
    a masked folder. The flag is the descriptor's own, so the caller's copy
    stays open. `keep`: descriptors xguard itself placed for the child."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:  # no /proc: the usual limit, as closerange would
        fds = [str(n) for n in range(3, 256)]
    for name in fds:
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # closed meanwhile (the listing's own descriptor)
                continue


def run_child(
    path: str,
    argv: list[str],
    env: dict[str, str],
    *,
    max_runtime: float | None = None,
    kill_grace: float = 5.0,
    on_stop: Callable[[int], int | None] | None = None,
    recorder: Any = None,
    box: Box | None = None,
    interactive: bool | None = None,
    pass_fds: dict[int, int] | None = None,
) -> Outcome:
    """Start the command, forward signals, wait, and report how it ended.

    pass_fds: {number in the child: open fd here}, dup2'ed last (a runtime
    wrapper's trailer file, opened here: see open_trailer_file); an entry
    {n: n} is a descriptor already at its number, passed as it is.

    With max_runtime: SIGTERM when it is over, SIGKILL `kill_grace` seconds
    later, and exit status 124 as timeout(1) gives. With on_stop: when the
    child stops itself with SIGSTOP, on_stop(pid) may return its final status
    (the interactive shell's trailer); the child is then killed. None lets it
    go on.

    With a recorder (audit/recording.py's Recorder, or strict mode's relay to
    the broker; issue 14): the command's stdout and stderr go through xguard,
    which passes every byte on at once and then records it (gate/capture.py):
    pipes, or a pty of its own when the caller's stdout or stderr is a terminal.

    With a box (xguard/gate/confine.py, issue 11) other than `none`, the
    command runs confined: under bwrap (argv wrapped) or Landlock (applied in
    the child between fork and exec). Unrecorded, its stderr then passes
    through xguard when it is not a terminal, so that a write or connect the
    box refused gets one line telling the agent how to ask instead. Under
    bwrap the command is not xguard's child but bwrap's grandchild, whose stop
    no wait here reports: with on_stop its state is read from /proc instead
    (every 50 ms while it runs).
    """
    if box is not None and box.mechanism == "none":
        box = None
    placed = {n: fd for n, fd in (pass_fds or {}).items() if n != fd}
    close_inherited(frozenset(n for n, fd in (pass_fds or {}).items() if n == fd))
    if box is not None and recorder is not None:
        recorder = _TailKeeper(recorder)  # what the box's hint reads (see exit_note)
    t0 = time.monotonic()
    if interactive is None:  # stdin is a terminal: xguard's caller (xguard/environment.py) says
        interactive = Environment().stdin_isatty
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
    # On a pty of its own it is a session (and a process group) of its own.
    own_group = pty or (bool(max_runtime) and not interactive)
    spawn: dict[str, Any] = {"setsigdef": RESET_IN_CHILD}
    if pty:
        spawn["setsid"] = True
    elif own_group:
        spawn["setpgroup"] = 0
    if plumbing is not None:
        spawn["file_actions"] = plumbing.file_actions
    if placed:
        spawn["file_actions"] = [
            *(spawn.get("file_actions") or []),
            *((os.POSIX_SPAWN_DUP2, fd, n) for n, fd in sorted(placed.items())),
        ]
    # A caller that ignores SIGCHLD (some runtimes do; the disposition survives
    # exec) would have the kernel reap the child at once, and its status lost.
    old_chld = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    relay = -1
    try:
        if box is not None:
            tty = pty or any(os.isatty(fd) for fd in (0, 1, 2))
            pid, relay = _spawn_boxed(box, path, argv, env, spawn, tty=tty, relay=plumbing is None)
        else:
            pid = os.posix_spawn(path, argv, env, **spawn)
    except BaseException:
        signal.signal(signal.SIGCHLD, old_chld)
        if plumbing is not None:
            plumbing.close()
        raise
    timed_out = False
    stage = 0
    inner: list[int] = []  # the boxed command's pid, once found (bwrap forks twice)

    def target() -> int:
        if box is None or box.mechanism != "bwrap":
            return pid
        if not inner:
            inner.extend(_bwrap_command(pid))
        return inner[0] if inner else pid

    def forward(signum: int, _frame: object) -> None:
        try:
            if pty and signum in (signal.SIGINT, signal.SIGQUIT):
                # What the terminal would do: the pty's foreground group gets it.
                os.killpg(plumbing.foreground_group() or pid, signum)  # type: ignore[union-attr]  # set: pty
            else:
                os.kill(target(), signum)
        except (ProcessLookupError, PermissionError):
            return

    def on_winch(_signum: int, _frame: object) -> None:
        # The pty tells its foreground group itself (TIOCSWINSZ sends SIGWINCH).
        size = plumbing.resize()  # type: ignore[union-attr]  # only with a pty
        if size is not None:
            recorder.resize(*size)

    def on_alarm(_signum: int, _frame: object) -> None:
        nonlocal timed_out, stage
        timed_out = True
        sig = signal.SIGTERM if stage == 0 else signal.SIGKILL
        try:
            if box is not None and box.mechanism == "bwrap":
                # The command and what it started, not bwrap itself: bwrap does
                # not pass a SIGTERM on, it dies and its box is killed outright.
                keep = {pid, *_children(pid)}
                for p in _descendants(pid):
                    if p not in keep:
                        try:
                            os.kill(p, sig)
                        except ProcessLookupError:
                            continue
            elif own_group:
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
    old[signal.SIGCHLD] = old_chld
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
    status: int | None = None
    stopped_with: int | None = None
    wait_flags = os.WUNTRACED if on_stop else 0
    tail = b""

    # bwrap with a trailer: the stop is looked for in /proc (see the docstring).
    watch_inner = on_stop is not None and box is not None and box.mechanism == "bwrap"

    def inner_stopped() -> bool:
        """True when the boxed command stopped itself for good (on_stop gave its
        status); it is then killed, and bwrap, left with nothing to run, exits."""
        nonlocal stopped_with
        p = target()
        if p == pid or _state(p) != "T":
            return False
        assert on_stop is not None  # watch_inner
        got = on_stop(p)
        try:
            os.kill(p, signal.SIGCONT if got is None else signal.SIGKILL)
        except ProcessLookupError:
            return False
        if got is None:  # stopped by something else (Ctrl-Z): let it go on
            return False
        try:
            os.waitpid(pid, 0)  # bwrap's own end; the status is the trailer's
        except ChildProcessError:  # pragma: no cover - reaped elsewhere
            pass
        stopped_with = got
        return True

    def ended(st: int) -> bool:
        """Take a wait status; True when the command is over (exited, or stopped for good)."""
        nonlocal status, stopped_with
        if on_stop is not None and os.WIFSTOPPED(st):
            got = on_stop(pid) if os.WSTOPSIG(st) == signal.SIGSTOP else None
            if got is None:  # stopped by something else: let it go on
                os.kill(pid, signal.SIGCONT)
                return False
            os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # pragma: no cover - reaped elsewhere
                pass
            stopped_with = got
            return True
        status = st
        return True

    try:
        if plumbing is not None:
            from xguard.gate.capture import pump

            plumbing.started()

            def exited() -> bool:
                try:
                    done, st = os.waitpid(pid, os.WNOHANG | wait_flags)
                except ChildProcessError:  # reaped elsewhere: the status is unknown, not 0
                    return True
                if done:
                    return ended(st)
                return watch_inner and inner_stopped()

            try:
                # A pidfd says when the command exits, not when it stops: with
                # on_stop, the pump asks exited() instead.
                pump(plumbing, pid, recorder, exited, use_pidfd=on_stop is None)
                # Before the terminal goes back: whatever reads it next (a
                # shell's prompt) should find it as the command left it soon.
                recorder.end()
            finally:
                plumbing.close()
        if relay >= 0:
            tail, relayed = _relay(relay, pid, inner_stopped if watch_inner else None)
            if relayed >= 0:
                ended(relayed)
        while status is None and stopped_with is None:
            try:
                done, st = os.waitpid(pid, os.WNOHANG if watch_inner else wait_flags)
            except ChildProcessError:  # reaped elsewhere: the status is unknown, not 0
                break
            if done or not watch_inner:
                ended(st)
            elif not inner_stopped():
                time.sleep(0.05)
    finally:
        if max_runtime:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for s, h in old.items():
            signal.signal(s, h)
    ms = int((time.monotonic() - t0) * 1000)
    if stopped_with is not None:
        return Outcome(stopped_with, None, False, ms)
    if status is None:
        return Outcome(None, None, timed_out, ms)
    code = os.waitstatus_to_exitcode(status)
    sig = -code if code < 0 else None
    if box is not None and box.mechanism == "bwrap" and 128 < code <= 128 + 64:
        sig = code - 128  # bwrap reports its command's death by signal N as 128+N
    exit_code = 128 + sig if sig else code
    if timed_out:
        exit_code = 124
    if box is not None:
        from xguard.gate.confine import exit_note

        if isinstance(recorder, _TailKeeper):
            tail = recorder.tail
        exit_note(box, exit_code, tail)
    return Outcome(exit_code, sig, timed_out, ms)


class _TailKeeper:
    """A recorder that also keeps the end of what the command printed (both
    streams: on a pty they are one), for the box's one-line hint."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tail = b""

    def write(self, stream: int, data: bytes, *args: Any, **kw: Any) -> Any:
        self.tail = (self.tail + data[-8192:])[-8192:]  # not a copy of a whole 1 MiB read
        return self.inner.write(stream, data, *args, **kw)

    def count(self, n: int) -> None:
        self.inner.count(n)  # the tail stays what was read: the end of each burst

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _spawn_boxed(
    box: Box,
    path: str,
    argv: list[str],
    env: dict[str, str],
    spawn: dict[str, Any],
    *,
    tty: bool,
    relay: bool,
) -> tuple[int, int]:
    """Start the command in its box with run_child's spawn settings (signal
    defaults, group or session, the recorder's plumbing); -> (pid, read end
    of the stderr relay or -1)."""
    from xguard.gate import confine

    relay_r = relay_w = -1
    if relay and not os.isatty(2):
        relay_r, relay_w = os.pipe()
    actions = list(spawn.get("file_actions") or [])
    if relay_w >= 0:
        actions.append((os.POSIX_SPAWN_DUP2, relay_w, 2))
    try:
        if box.mechanism == "bwrap":
            from xguard.gate import prebox

            seccomp = confine.seccomp_filter()
            # A box made ahead for exactly this one (a warm worker's), or a new one.
            got = prebox.take(box, tty, spawn, actions, path, argv, env)
            if got is not None:
                pid = got
            else:
                sr = confine.seccomp_fd(seccomp)
                try:
                    wrapped = box.bwrap_argv(path, argv, tty=tty, seccomp_fd=sr)
                    pid = os.posix_spawn(
                        box.bwrap, wrapped, env, **{**spawn, "file_actions": actions}
                    )
                finally:
                    os.close(sr)
            prebox.want(box, tty, spawn, seccomp)
        else:
            pid = _fork_landlock(box, path, argv, env, spawn, actions=actions, tty=tty)
    except BaseException:
        if relay_r >= 0:
            os.close(relay_r)
        raise
    finally:
        if relay_w >= 0:
            os.close(relay_w)
    return pid, relay_r


def _fork_landlock(
    box: Box,
    path: str,
    argv: list[str],
    env: dict[str, str],
    spawn: dict[str, Any],
    *,
    actions: list[tuple[Any, ...]],
    tty: bool,
) -> int:
    """fork, do what posix_spawn would (signal defaults, session or group,
    file actions), restrict (no_new_privs, seccomp, Landlock), exec. The
    ruleset is built here in the parent; the child only makes three calls."""
    from xguard.gate.confine import landlock_preexec

    enter = landlock_preexec(box)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its failures are reported on its stderr
            try:
                for s in RESET_IN_CHILD:
                    signal.signal(s, signal.SIG_DFL)
                if spawn.get("setsid") or not tty:
                    os.setsid()  # as bwrap --new-session off a terminal: no controlling terminal
                elif "setpgroup" in spawn:
                    os.setpgid(0, 0)
                for act in actions:
                    if act[0] == os.POSIX_SPAWN_DUP2:
                        os.dup2(act[1], act[2])
                    elif act[0] == os.POSIX_SPAWN_CLOSE:
                        try:
                            os.close(act[1])
                        except OSError:  # already closed: what posix_spawn would accept
                            continue
                    else:  # POSIX_SPAWN_OPEN: (op, fd, path, flags, mode)
                        fd = os.open(act[2], act[3], act[4])
                        if fd != act[1]:
                            os.dup2(fd, act[1])
                            os.close(fd)
                enter()
                os.execve(path, argv, env)  # noqa: S606 - argv, never a shell string
            except BaseException as e:  # nothing may run unconfined: report and stop
                try:
                    os.write(2, f"xguard: cannot confine {argv[0]}: {e}\n".encode())
                finally:
                    os._exit(126)
        return pid
    finally:
        os.close(enter.ruleset_fd)


def _relay(fd: int, pid: int, stopped: Callable[[], bool] | None = None) -> tuple[bytes, int]:
    """Copy the child's stderr to ours, keeping its tail; -> (tail, wait status
    or -1). A background process that outlives the command and keeps stderr
    open must not keep xguard waiting: the child's exit ends the relay, and so
    does `stopped()` saying the command stopped for good (run_child's trailer)."""
    import select

    tail = b""
    status = -1
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.05 if stopped else 0.2)
            if not ready:
                if stopped is not None and stopped():
                    break
                try:
                    done, st = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere: the caller reports "unknown"
                    break
                if done:
                    status = st
                    os.set_blocking(fd, False)
                    try:
                        chunk = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        chunk = b""
                    _copy(chunk)
                    tail = (tail + chunk)[-8192:]
                    break
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            _copy(chunk)
            tail = (tail + chunk)[-8192:]
    finally:
        os.close(fd)
    return tail, status


def _copy(chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        try:
            n = os.write(2, view)
        except OSError:
            return  # our stderr is gone; the command goes on regardless
        view = view[n:]


def _children(p: int) -> list[int]:
    try:
        with open(f"/proc/{p}/task/{p}/children", "rb") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def _state(p: int) -> str:
    """A process's state letter from /proc (R, S, T for stopped …; "" when gone)."""
    try:
        with open(f"/proc/{p}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat[stat.rfind(b")") + 2 :][:1].decode("ascii", "replace")


def _bwrap_command(pid: int) -> list[int]:
    """The boxed command's pid as seen from here: bwrap's child is the pid
    namespace's init, whose child is the command."""
    out: list[int] = []
    for init in _children(pid):
        out += _children(init)
    return out


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


# ---------------------------------------------------------------------------
# The one executor: every front end that runs a command here comes through
# `launch` (the local shell, `run`, the interactive shell, the strict-mode
# client after the broker said run).


def runtime_limits(gate: Any, decision: Any) -> tuple[float | None, float]:
    """(max_runtime, kill_grace) in seconds: a rule's max_runtime first, then the
    profile's limits over the top-level ones (issue 5)."""
    from xguard.gate.limits import effective
    from xguard.util import parse_duration

    limits = effective(gate)
    max_runtime = decision.max_runtime
    if max_runtime is None and limits.get("max_runtime") is not None:
        max_runtime = parse_duration(limits["max_runtime"])
    grace = parse_duration(limits.get("kill_grace", 5)) or 5.0
    return max_runtime, grace


# The fd a runtime wrapper's trailer writes to (xguard/adapters/wrappers.py
# rebuilds `pwd -P >| FILE` as `pwd -P >&9`): the file is opened here, never
# by name in the shell, where a symlink the command made would be followed.
TRAILER_FD = 9


class _Trailer:
    """A runtime's trailer file opened for the command's shell (fd is /dev/null
    when the file could not be opened safely: the runtime then reads nothing)."""

    __slots__ = ("created", "fd", "path")

    def __init__(self, path: str, fd: int, created: bool) -> None:
        self.path, self.fd, self.created = path, fd, created

    def close(self, keep_empty: bool) -> None:
        """Close; a file made here and never written goes again (a cwd report
        follows `&&`: a command that failed never wrote one)."""
        try:
            if self.created and not keep_empty:
                st = os.fstat(self.fd)
                try:
                    now = os.stat(self.path, follow_symlinks=False)
                except OSError:
                    now = None
                if st.st_size == 0 and now is not None and now.st_ino == st.st_ino:
                    os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(self.fd)


def _at_trailer_fd(t: _Trailer) -> dict[int, int]:
    """Make the trailer file fd 9 in the child. Every fd the child must find
    by its number (bwrap's seccomp pipe, the Landlock ruleset) is made after
    this, so none of them can be 9 and be overwritten: the file takes fd 9
    here when it is free (inherited as is: {9: 9}, which run_child keeps
    open for the child), else it is dup2'ed to 9 in the child over what this
    process keeps there (never inherited)."""
    try:
        os.fstat(TRAILER_FD)
    except OSError:
        os.dup2(t.fd, TRAILER_FD)  # inheritable
        os.close(t.fd)
        t.fd = TRAILER_FD
    return {TRAILER_FD: t.fd}


def open_trailer_file(path: str) -> _Trailer:
    """Open a file a runtime's wrapper writes after the command (Claude Code's
    cwd report, Gemini CLI's background pids), before the command runs: no
    folder on the way and not the file may be a symlink, and an existing file
    must be a regular file of this user with no other name (a hard link to
    ~/.bashrc would be truncated). Anything else gets /dev/null and a line on
    stderr: the runtime reads nothing, nothing else is written."""
    import stat

    parts = [p for p in path.split("/") if p]
    dflags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    wflags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    d = -1
    try:
        if not path.startswith("/") or not parts or ".." in parts or "." in parts:
            raise OSError(0, "not an absolute, normal path")
        d = os.open("/", dflags)
        for comp in parts[:-1]:
            nd = os.open(comp, dflags, dir_fd=d)
            os.close(d)
            d = nd
        created = True
        try:
            fd = os.open(parts[-1], wflags | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=d)
        except FileExistsError:
            created = False
            fd = os.open(parts[-1], wflags, dir_fd=d)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
            os.close(fd)
            raise OSError(0, "not a regular file of this user with one name")
        os.ftruncate(fd, 0)
        return _Trailer(path, fd, created)
    except OSError as e:
        sys.stderr.write(
            f"xguard: the runtime's file {path} was not written: "
            f"{e.strerror or 'a folder or the file is a symlink'}\n"
        )
        return _Trailer(path, os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC), False)
    finally:
        if d >= 0:
            os.close(d)


def launch(
    req: Any,
    env: dict[str, str],
    *,
    shell: str,
    max_runtime: float | None,
    kill_grace: float,
    script: str | None = None,
    on_stop: Callable[[int], int | None] | None = None,
    recorder: Any = None,
    box: Box | None = None,
    terminal: Environment | None = None,
) -> ExecResult:
    """Run a decided request: its argv directly, or its text with `shell -c`
    (`script` when the front end appends a fixed trailer of its own).
    Failures to start are reported on stderr and as 127/126, as bash does."""
    if req.argv is not None:
        path = which(req.argv[0], env.get("PATH", os.defpath))
        if path is None:
            sys.stderr.write(f"xguard: {req.argv[0]}: command not found\n")
            return ExecResult(127, 0)
        argv = list(req.argv)
    else:
        path = shell
        text = script if script is not None else (req.exec_text or req.text)
        argv = [path, *req.shell_args, "-c", text, *req.positional]
    trailers = [open_trailer_file(f) for f, _ in req.trailer_writes] if req.argv is None else []
    pass_fds = _at_trailer_fd(trailers[0]) if trailers else None
    try:
        out = run_child(
            path,
            argv,
            env,
            max_runtime=max_runtime,
            kill_grace=kill_grace,
            on_stop=on_stop,
            recorder=recorder,
            box=box,
            interactive=terminal.stdin_isatty if terminal is not None else None,
            pass_fds=pass_fds,
        )
    except OSError as e:
        sys.stderr.write(f"xguard: cannot run {argv[0]}: {e.strerror}\n")
        return ExecResult(126, 0)
    finally:
        for t, (_, always) in zip(trailers, req.trailer_writes, strict=False):
            t.close(keep_empty=always)
    if out.timed_out and max_runtime is not None:
        sys.stderr.write(
            f"xguard: command exceeded max_runtime ({max_runtime:g}s) and was stopped\n"
        )
    return out.result()


class LocalExecutor:
    """Run the command here, as this user, with the rules' scrubbed environment
    (SPEC §5), in the kernel box its decision describes (issue 11)."""

    def __init__(self, terminal: Environment | None = None) -> None:
        self.box: Box | None = None
        self.terminal = terminal or Environment()

    def environment(self, gate: Any, req: Any) -> dict[str, str]:
        keep, set_ = gate.env_settings(req.profile or gate.profile)
        return scrub(gate.environ, keep, set_)

    def prepare(self, gate: Any, req: Any, decision: Any, record: dict[str, Any]) -> None:
        """Plan the box before the decision record is written: it says how the
        command runs (`confined`). A command that reaches here as
        require_approval was approved by a person: unconfined, unless
        `confine_approved: true`."""
        from xguard.gate.confine import plan

        mechanism, _ = gate.confine()
        self.box = plan(
            decision,
            gate.ruleset,
            gate.context(req.cwd),
            gate.paths,
            mechanism,
            approved=decision.decision != "allow",
            cache_dir=gate.paths.cache_dir_s,
        )
        record["confined"] = self.box.mechanism

    def launch_options(self, req: Any) -> dict[str, Any]:
        """What a front end adds to how the command starts (the interactive
        shell's trailer: `script` and `on_stop`)."""
        return {}

    def run(self, gate: Any, req: Any, decision: Any, record: dict[str, Any]) -> ExecResult:
        env = self.environment(gate, req)
        # Marks the command as gated, so xguard's deciding verbs refuse to run
        # inside it (issue 3, no self-approval).
        env["XGUARD_GATED"] = str(record["id"])
        max_runtime, grace = runtime_limits(gate, decision)
        recorder, output = start_recording(gate, req, decision, record)
        result = launch(
            req,
            env,
            shell=gate.ruleset.setting("shell", "/bin/bash"),
            max_runtime=max_runtime,
            kill_grace=grace,
            recorder=recorder,
            box=self.box,
            terminal=self.terminal,
            **self.launch_options(req),
        )
        return with_output(result, recorder, output)


def start_recording(
    gate: Any, req: Any, decision: Any, record: dict[str, Any]
) -> tuple[Any, dict[str, Any] | None]:
    """The recorder for a command about to run here (issue 14), or None with
    the exit record's `output` saying why nothing is recorded."""
    from xguard.audit import recording

    return recording.start(
        gate.ruleset,
        req.profile or gate.profile,
        decision,
        gate.paths.audit_dir_s,
        str(record["id"]),
    )


def with_output(result: ExecResult, recorder: Any, output: dict[str, Any] | None) -> ExecResult:
    """Add the recording's summary to what the exit record says."""
    if recorder is not None:
        output = recorder.finish()
    if output is not None:
        result.fields["output"] = output
    return result

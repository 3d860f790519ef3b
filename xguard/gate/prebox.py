"""Boxes made ahead of time, for a process that runs one command after another.

Most of what confinement costs an allowed command is bubblewrap building its
box: namespaces, a read-only root, /dev, /proc, a mount per masked path, ~8 ms
here, on every command. A warm worker (xguard/commands/warmserver.py) knows
what its next command's box most likely is: the same as its last one (the
same rules, home and project). So, while it waits, it has bwrap build that box
around a small stand-in (`_STUB`, Python started with -I -S) that says it is
ready and waits. When the next command's own plan asks for exactly that box,
the worker hands the command to the stand-in: its standard streams (and any
other descriptor it would have inherited) over a socket, with its path,
arguments, environment, folder and umask; the stand-in puts them in place
and execs the command. What runs is what bwrap would have run: the same box,
argv, environment and descriptors, the same pid in the box, bwrap's
own messages and exit status when the folder or the program is missing.

A box is used once, for one command, never shared. One made for another plan
(another cwd's secrets, a writable path, the network) is thrown away, and so
is one older than MAX_AGE or whose masked and bound paths are no longer the
files they were when it was built (a file replaced by rename would escape a
mount made over the old one). Anything unexpected (the stand-in not ready in
time, dead, a descriptor action it cannot copy) falls back to starting bwrap
as usual. The cost: the stand-in's start (~10 ms of CPU) moves off the
command's path onto a spare moment.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from typing import Any

    from xguard.gate.confine import Box

MAX_AGE = 60.0  # seconds a box made ahead may wait for its command
READY_WAIT = 0.05  # seconds to wait for a matching box still being built (a new one takes ~8 ms)
_MAX_FDS = 64  # descriptors a command may inherit through the stand-in

# The stand-in. argv: the socket's fd, then the signals to set back to their
# defaults (Python's own start-up ignores SIGPIPE and SIGXFSZ and catches
# SIGINT; posix_spawn's setsigdef did this for bwrap). Everything it imports
# is imported before it says it is ready.
_STUB = r"""
import sys, posix, marshal, _signal, _socket
fd = int(sys.argv[1])
for n in sys.argv[2].split(","):
    if n != "0":
        _signal.signal(int(n), _signal.SIG_DFL)
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, fd)
s.send(b"r")
try:
    msg, anc, _f, _a = s.recvmsg(1 << 20, _socket.CMSG_SPACE(4 * 64))
except OSError:
    posix._exit(126)
if not msg:
    posix._exit(126)
path, argv, env, cwd, umask, targets = marshal.loads(msg)
got = []
for level, kind, data in anc:
    if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
        got += [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)]
if len(got) != len([t for t in targets if t[1] >= 0]):
    posix._exit(126)
s.detach()
posix.close(fd)
# Out of the way of the numbers they go to first, then in place.
high = max([t[0] for t in targets] + [fd] + got) + 1
for i, g in enumerate(got):
    posix.dup2(g, high + i)
    posix.close(g)
i = 0
for target, has in targets:
    if has >= 0:
        posix.dup2(high + i, target)
        i += 1
    else:
        try:
            posix.close(target)
        except OSError:
            pass
for j in range(len(got)):
    posix.close(high + j)
posix.umask(umask)
def die(what):
    e = sys.exc_info()[1]
    posix.write(2, b"bwrap: " + what + b": " + posix.strerror(e.errno).encode() + b"\n")
    posix._exit(1)
try:
    posix.chdir(cwd)
except OSError:
    die(b"Can't chdir to " + cwd)
env[b"PWD"] = cwd  # as bwrap sets it
try:
    posix.execve(path, argv, env)
except OSError:
    die(b"execvp " + path)
"""


class _Made:
    """One box made ahead: bwrap's pid, this side of the stand-in's socket."""

    __slots__ = ("born", "key", "marks", "pid", "sock")

    def __init__(
        self, key: tuple[Any, ...], pid: int, sock: Any, marks: tuple[tuple[int, int] | None, ...]
    ) -> None:
        self.key = key
        self.pid = pid
        self.sock = sock
        self.marks = marks
        self.born = time.monotonic()

    def discard(self) -> None:
        """Close the stand-in's line (it exits), end bwrap, reap it."""
        import signal

        self.sock.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


_ON: list[bool] = []  # set where commands follow one another (a warm worker)
_HELD: list[_Made] = []
_WANTED: list[tuple[Box, bool, dict[str, Any], bytes]] = []
_LAST: list[str] = []


def enable() -> None:
    """This process runs command after command: make boxes ahead."""
    _ON[:] = [True]


def held_fds() -> set[int]:
    """The descriptors a box made ahead holds here (not a request's leftovers)."""
    return {m.sock.fileno() for m in _HELD if m.sock.fileno() >= 0}


def drop() -> None:
    """End every box made ahead."""
    _WANTED.clear()
    while _HELD:
        _HELD.pop().discard()


def expires_in() -> float | None:
    """Seconds until the box made ahead is too old to use (None: there is none)."""
    if not _HELD:
        return None
    return _HELD[0].born + MAX_AGE - time.monotonic()


def key(box: Box, tty: bool, spawn: dict[str, Any]) -> tuple[Any, ...]:
    """Everything that shapes a box and how bwrap was started, but the
    command, its folder and its descriptors."""
    argv = box.bwrap_argv("/", ["/"], tty=tty, seccomp_fd=0)
    cut = argv.index("--seccomp")
    return (
        tuple(argv[:cut]),
        bool(spawn.get("setsid")),
        spawn.get("setpgroup"),
        tuple(spawn.get("setsigdef") or ()),
        tuple(spawn.get("setsigmask") or ()),
    )


def _marks(box: Box) -> tuple[tuple[int, int] | None, ...]:
    """What every path a mount of the box covers is now."""
    from xguard.util import inodes

    return inodes([*box.writable, *box.masked_dirs, *box.masked_files])


def want(box: Box, tty: bool, spawn: dict[str, Any], seccomp: bytes) -> None:
    """The next command will likely want a box like this one: make it once
    this command is over (make_wanted), not while it runs (on a small
    machine, bwrap and the stand-in starting would take the CPU from it)."""
    # A terminal is not handed over: a session leader acquires its
    # controlling terminal by opening it, which descriptors passed in a
    # message do not do.
    if _ON and not tty and not spawn.get("setsid"):
        _WANTED[:] = [(box, tty, {k: v for k, v in spawn.items() if k != "file_actions"}, seccomp)]


def make_wanted() -> None:
    """Start building the box the last command asked for (no wait)."""
    if not _WANTED:
        return
    box, tty, spawn, seccomp = _WANTED.pop()
    if not _ON or _HELD:
        return
    try:
        _make(box, tty, spawn, seccomp)
    except Exception:  # an optimisation: the next command makes its own box
        return


def _make(box: Box, tty: bool, spawn: dict[str, Any], seccomp: bytes) -> None:
    import socket
    import sys

    from xguard.gate.confine import seccomp_fd

    k = key(box, tty, spawn)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sr = seccomp_fd(seccomp)
    except OSError:
        mine.close()
        theirs.close()
        return
    try:
        os.set_inheritable(theirs.fileno(), True)
        # What posix_spawn's setsigdef would have done for the command itself.
        sigs = ",".join(str(int(s)) for s in spawn.get("setsigdef") or ()) or "0"
        stub = [sys.executable, "-I", "-S", "-c", _STUB, str(theirs.fileno()), sigs]
        argv = box.bwrap_argv(stub[0], stub, tty=tty, seccomp_fd=sr)
        argv[argv.index("--chdir") + 1] = "/"
        # Nothing of the running request's: the standard streams are /dev/null,
        # every other descriptor this process could pass on is closed.
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, n, os.devnull, os.O_RDWR, 0) for n in (0, 1, 2)
        ]
        keep = {sr, theirs.fileno()}
        for n in _inheritable():
            if n > 2 and n not in keep:
                actions.append((os.POSIX_SPAWN_CLOSE, n))
        marks = _marks(box)
        # Started from /: bwrap outside the box would otherwise hold the
        # caller's folder (a mount that cannot be unmounted) while it waits.
        here = os.open(".", os.O_PATH | os.O_CLOEXEC)
        try:
            os.chdir("/")
            pid = os.posix_spawn(box.bwrap, argv, {}, **spawn, file_actions=actions)
        finally:
            os.fchdir(here)
            os.close(here)
    except OSError:
        mine.close()
        return
    finally:
        os.close(sr)
        theirs.close()
    _HELD.append(_Made(k, pid, mine, marks))


def _inheritable() -> list[int]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        n = int(name)
        try:
            if os.get_inheritable(n):
                out.append(n)
        except OSError:
            continue
    return out


def _placement(actions: list[tuple[Any, ...]]) -> dict[int, int] | None:
    """What the child's descriptors would be after posix_spawn's file
    actions: {number in the child: fd here, or -1 closed}, for every number
    that differs from here or is inherited; None when an action cannot be
    copied (an open)."""
    child: dict[int, int] = {n: n for n in _inheritable()}
    for a in actions:
        if a[0] == os.POSIX_SPAWN_DUP2:
            src = child.get(a[1], a[1])
            child[a[2]] = src
        elif a[0] == os.POSIX_SPAWN_CLOSE:
            child[a[1]] = -1
        else:
            return None
    return child


def take(
    box: Box,
    tty: bool,
    spawn: dict[str, Any],
    actions: list[tuple[Any, ...]],
    path: str,
    argv: list[str],
    env: dict[str, str],
) -> int | None:
    """Hand the command to a box made ahead for exactly this one: bwrap's
    pid, or None (none fits: start bwrap as usual)."""
    if not _HELD or tty or spawn.get("setsid"):
        return None
    import socket
    import sys

    made = _HELD.pop()
    try:
        msg, fds, why = _message(made, box, tty, spawn, actions, path, argv, env)
    except Exception as e:  # whatever went wrong, nothing ran: start bwrap as usual
        msg, why = None, f"failed: {e!r}"
    if msg is None:
        _LAST[:] = [f"the box made ahead was not used: {why}"]
        made.discard()
        return None
    try:
        anc = [
            (
                socket.SOL_SOCKET,
                socket.SCM_RIGHTS,
                b"".join(f.to_bytes(4, sys.byteorder) for f in fds),
            )
        ]
        made.sock.sendmsg([msg], anc if fds else [])
    except OSError:  # (one message, sent whole or not at all)
        made.discard()
        return None
    made.sock.close()
    _LAST[:] = ["the command ran in the box made ahead"]
    return made.pid


def last() -> str | None:
    """What became of the box made ahead for the last command, once (the
    worker's log says it with XGUARD_DEBUG)."""
    return _LAST.pop() if _LAST else None


def _message(
    made: _Made,
    box: Box,
    tty: bool,
    spawn: dict[str, Any],
    actions: list[tuple[Any, ...]],
    path: str,
    argv: list[str],
    env: dict[str, str],
) -> tuple[bytes | None, list[int], str]:
    """What the stand-in in `made` is sent, and the descriptors with it; or
    None and why not (the box does not fit, or is not ready)."""
    import marshal
    import select

    if made.key != key(box, tty, spawn):
        return None, [], "it was made for another plan"
    if time.monotonic() - made.born >= MAX_AGE:
        return None, [], "it is too old"
    if made.marks != _marks(box):
        return None, [], "a path it mounts over is no longer the same file"
    placed = _placement(actions)
    if placed is None or len(placed) > _MAX_FDS:
        return None, [], "the descriptors cannot be handed over"
    p = select.poll()
    p.register(made.sock.fileno(), select.POLLIN)
    if not p.poll(READY_WAIT * 1000) or made.sock.recv(1) != b"r":
        return None, [], "its stand-in is not ready"
    targets = sorted(placed.items())
    umask = os.umask(0)
    os.umask(umask)
    msg = marshal.dumps(
        (
            os.fsencode(path),
            [os.fsencode(path), *(os.fsencode(a) for a in argv[1:])],
            {os.fsencode(k): os.fsencode(v) for k, v in env.items()},
            os.fsencode(box.cwd),
            umask,
            [(n, 0 if src >= 0 else -1) for n, src in targets],
        )
    )
    return msg, [src for _, src in targets if src >= 0], ""

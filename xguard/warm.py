"""The warm path's client: hand a hot-path invocation to a running `xguard warm`.

Most of an allowed command's cost is Python loading xguard (the parser, the
rules, the pipeline) in a fresh process, every time. A warm server
(xguard/commands/warmserver.py) has all of that loaded, and workers forked
from it waiting; one takes over this process's standard streams, folder,
environment and arguments and runs exactly what `main()` would run here: the
same pipeline, rules read fresh, the same audit records. This side only
forwards and waits:

    -> 8 bytes (the payload's length), then the payload: NUL-separated
       version, interpreter(), streams(), cwd, argc, argv…, env…
    <- "A"            the worker can take the request
    -> "G" with fds 0, 1, 2 (SCM_RIGHTS)
                      go: from here on it is the worker's (no "A" within
                      TAKE_TIMEOUT of the request, and it is this process's)
    <- "R" reason     refused before anything was decided: run locally
    -> one byte       a signal this process received (SIGINT, SIGTERM, …),
                      which the worker raises in itself, as if it were here
    <- "X" code       how main() ended in the worker: exit with it
    <- "S" signum     the worker died of a signal: die of the same one

No server, a refusal, a terminal on any standard stream, strict mode, or
`XGUARD_WARM=0`: None, and the caller runs the local path. Once committed
("G"), losing the connection without an answer is exit 70, never success.

Hot path: standard library only (`_socket`, not `socket`).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from _socket import socket

PROTOCOL = b"xguard-warm-2"
IDLE_DEFAULT = 600.0  # seconds without a request before a server exits
TAKE_TIMEOUT = 3.0  # seconds a client waits for a worker to take its request
SOCKET_NAME = "warm.sock"
ENV_VAR = (
    "XGUARD_WARM"  # 0: never use or start a server here; 1: start one even under `warm: false`
)
# Signals the caller may send this process that the worker must see: a
# runtime's timeout (TERM, then KILL: KILL closes the connection, which the
# worker answers as its own SIGKILL), ^C through a pipeline, a hangup.
FORWARD = (1, 2, 3, 10, 12, 14, 15)  # HUP INT QUIT USR1 USR2 ALRM TERM
_SOCK_PATH_MAX = 100
IN_WORKER: list[bool] = []  # set in a warm worker: it is the server's side
_START: list[tuple[str, float | None]] = []  # to start after this command: (state folder, idle)


def want_start(state_dir: str, idle: float | None) -> None:
    """`warm: true` (the default): start a server when this command is done."""
    if not IN_WORKER and os.environ.get(ENV_VAR) != "0":
        _START[:] = [(state_dir, idle)]


def pending_start() -> tuple[str, float | None] | None:
    """(state folder, idle) of a server the rules asked to start, once."""
    return _START.pop() if _START else None


def interpreter() -> bytes:
    """Which Python this is, as far as running xguard goes: the program (a
    venv's python and python3 are one), the environment it is in, its flags,
    and the encodings it reads and writes files and names with. Not how it
    came by them: a server started by a Python that coerced the C locale
    (PEP 538) has LC_CTYPE=C.UTF-8 and no UTF-8 mode, its clients the other
    way round, and both read and write UTF-8. (The standard streams are the
    client's own: streams().)"""
    import _locale

    names = [n for n in dir(sys.flags) if n[0] != "_" and not n.startswith("n_")]
    flags = [
        f"{n}={getattr(sys.flags, n)}"
        for n in names
        if n != "utf8_mode" and not callable(getattr(sys.flags, n))
    ]
    text = "utf-8" if sys.flags.utf8_mode else _locale.nl_langinfo(_locale.CODESET)
    fs = f"{sys.getfilesystemencoding()}:{sys.getfilesystemencodeerrors()}"
    norm = "".join(c for c in text.lower() if c.isalnum())
    return os.fsencode(
        f"{os.path.realpath(sys.executable)}\n{sys.prefix}\n{','.join(flags)}\n{norm}\n{fs}"
    )


def streams() -> bytes:
    """How this process's standard streams encode text (the worker writes
    the client's messages with the client's choice)."""
    out = []
    for s in (sys.stdin, sys.stdout, sys.stderr):
        enc = getattr(s, "encoding", None) or "utf-8"
        err = getattr(s, "errors", None) or "strict"
        out.append(f"{enc}:{err}:{int(bool(getattr(s, 'line_buffering', False)))}")
    return ";".join(out).encode()


def socket_path(state_dir: str) -> str:
    return os.path.join(state_dir, SOCKET_NAME)


def address(path: str) -> tuple[str, int]:
    """An address connect()/bind() accept for `path` (sun_path holds 108
    bytes; a longer folder is reached through an O_PATH descriptor, which the
    caller closes), and that descriptor or -1."""
    if len(path) <= _SOCK_PATH_MAX:
        return path, -1
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


def wanted(args: list[str]) -> bool:
    """Whether this invocation may go to a warm server at all (cheap tests)."""
    env = os.environ
    if IN_WORKER or env.get(ENV_VAR) == "0" or env.get("XGUARD_BROKER"):
        return False
    if os.path.exists("/etc/xguard/client.conf"):
        return False  # strict mode decides at the broker, never here
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return False  # a terminal is this process's own: run here
            os.fstat(fd)
        except OSError:
            return False  # a closed standard stream: the local path says so
    return True


def _recv_exact(s: socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def forward(args: list[str], state_dir: str) -> int | None:
    """Run `xguard ARGS` in the warm server's worker; None: run it here."""
    request = _request(args)
    if request is None:
        return None  # a NUL in an argument or variable: the local path says what
    got = _connect(state_dir)
    if got is None:
        return None  # no server (or a stale socket): the local path
    s = got[0]
    try:
        return _converse(s, request)
    finally:
        s.close()


def _connect(state_dir: str) -> tuple[socket, int] | None:
    """A connection to the server at this state folder, and the server's pid
    (SO_PEERCRED); None when none answers, or when its process is gone: a
    killed server's socket may still be held open by a worker busy with a
    command."""
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        addr, dfd = address(socket_path(state_dir))
        try:
            s.connect(addr)
        finally:
            if dfd >= 0:
                os.close(dfd)
        raw = s.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    except OSError:
        s.close()
        return None
    pid = int.from_bytes(raw[:4], sys.byteorder, signed=True)
    if not _lives(pid):
        s.close()
        return None
    return s, pid


def _lives(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: where nothing reaps orphans, a
    killed server stays one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X", b"")


def _request(args: list[str]) -> bytes | None:
    """What is sent first (made before connecting: a worker woken by the
    connection finds it whole, and does not wait on this process)."""
    fields = [
        PROTOCOL,
        interpreter(),
        streams(),
        os.fsencode(os.getcwd()),
        str(len(args)).encode(),
        *(os.fsencode(a) for a in args),
        *(k + b"=" + v for k, v in os.environb.items()),
    ]
    if any(b"\0" in f for f in fields):
        return None
    payload = b"\0".join(fields)
    return len(payload).to_bytes(8, "little") + payload


def _converse(s: socket, request: bytes) -> int | None:
    import _signal
    import _socket

    fds = b"".join(i.to_bytes(4, sys.byteorder) for i in (0, 1, 2))
    first = b""
    try:
        s.sendall(request)
        # A worker answers at once; a pool that is all busy, or a machine
        # that is very slow, is no reason to wait: run it here instead.
        s.settimeout(TAKE_TIMEOUT)
        first = s.recv(1)
        if first == b"A":
            # From "G" on the command may be running: a signal that came
            # before this side relays signals would kill it here, alone (and
            # the worker then kills the command). Held until _await relays.
            _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARD)
            # Committed from here on, and only here do the streams travel:
            # the worker runs nothing without this "G", so a late "A" after
            # this side gave up finds the connection closed, and a command
            # can never run both here and there.
            s.sendmsg([b"G"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        s.settimeout(None)
    except OSError:
        if first == b"A":
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARD)
        return None  # nothing was taken: the local path
    if first != b"A":
        return None  # refused (or gone) before deciding anything
    return _await(s)


def _await(s: socket) -> int:
    # The C module behind `signal`: the IntEnum wrappers import `enum`, ~3 ms.
    import _signal as signal

    def relay(signum: int, _frame: object) -> None:
        try:
            s.send(bytes([signum]))
        except OSError:
            pass

    for sig in FORWARD:
        if signal.getsignal(sig) != signal.SIG_IGN:  # ignored here: ignored there too
            signal.signal(sig, relay)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARD)  # (held since "G": now relayed)
    try:
        answer = _recv_exact(s, 2)
    except OSError:
        answer = b""
    if answer[:1] == b"X" and len(answer) == 2:
        return answer[1]
    if answer[:1] == b"S" and len(answer) == 2:
        signal.signal(answer[1], signal.SIG_DFL)
        os.kill(os.getpid(), answer[1])
        return 128 + answer[1]
    # The worker took the request and vanished: how it ended is unknown.
    try:
        os.write(2, b"xguard: the warm server's worker ended without an answer\n")
    except OSError:
        pass
    return 70


# ---------------------------------------------------------------------------
# Finding and starting a server (`xguard warm …`, and `warm: true`).


def server_pid(state_dir: str) -> int | None:
    """The pid of the server answering at this state folder, or None."""
    got = _connect(state_dir)
    if got is None:
        return None
    got[0].close()
    return got[1]


def server_argv(idle: float) -> list[str]:
    """How to start a server: the way this xguard was started (the installed
    launcher, or `python -m xguard`), so its process looks like the gate it
    is (no self-approval) and its interpreter() is its clients'. spawn()
    starts it in /, so `-m` puts nothing of the caller's folder on sys.path."""
    me = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(me) == "xguard" and os.path.isfile(me):
        head = [sys.executable, me]
    else:
        head = [sys.executable, "-m", "xguard"]
    return [*head, "warm", "serve", "--idle", f"{idle:g}"]


def spawn(state_dir: str, idle: float) -> int:
    """Start a detached server (its own session, in /); its pid. Its output
    goes to warm.log there. subprocess, not os.posix_spawn: glibc's leaves
    its two internal signals ignored in the child, and a server whose
    ignored signals differ from its clients' refuses them all (differs())."""
    import subprocess

    path = socket_path(state_dir)
    if os.path.lexists(path) and server_pid(state_dir) is None:
        os.unlink(path)  # nobody answers there: a dead server's socket
    log = os.open(
        os.path.join(state_dir, "warm.log"),
        os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
        0o600,
    )
    try:
        p = subprocess.Popen(
            server_argv(idle),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            start_new_session=True,
        )
    finally:
        os.close(log)
    return p.pid


START_BACKOFF = 60.0  # seconds between two starts from one state folder


def autostart(state_dir: str, idle: float | None) -> None:
    """`warm: true` (the default): start a server for the next command when
    none answers. Best effort: a failure only means the next command starts
    cold. At most one start a minute (warm.started): where a server cannot
    start (no Unix sockets on that file system, a full disk), each command
    must not pay for trying again."""
    if os.environ.get(ENV_VAR) == "0" or server_pid(state_dir) is not None:
        return
    import time

    stamp = os.path.join(state_dir, "warm.started")
    try:
        if time.time() - os.stat(stamp).st_mtime < START_BACKOFF:
            return
    except OSError:
        pass
    try:
        with open(stamp, "w"):
            pass
        spawn(state_dir, IDLE_DEFAULT if idle is None else idle)
    except OSError:
        pass

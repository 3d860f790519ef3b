"""The warm server (`xguard warm start`): xguard loaded once, commands served by its forks.

A fresh `xguard -c` spends most of its time loading itself. This process
loads the hot path once, listens on a socket in the state folder
(xguard/warm.py is the client and describes the exchange), and keeps a few
forked workers waiting in accept(). A worker first runs the decision path
once (so its copy-on-write pages are its own before a request comes), then
serves requests one at a time. For each it

1. checks that it can stand in for the client: the same user, groups,
   namespaces, cgroup, root, capabilities, seccomp and no_new_privs state,
   resource limits, security label, ignored and blocked signals, Python and
   xguard; no controlling terminal. The kernel says these of the client
   (/proc/PID, PID from SO_PEERCRED); the client cannot claim them. Any
   difference is a refusal, and the client runs the command itself: a
   command must never run with less confinement than its caller has, or
   outside the caller's cgroup;
2. takes the client's standard streams, folder, umask, environment and
   arguments, and runs `xguard.__main__.main` on them: the one pipeline,
   rules and config read fresh, the same audit records as the local path;
3. raises in itself each signal the client relays, and kills itself when the
   client's connection drops (the client was killed: as a local xguard
   would be);
4. answers with main()'s exit status, then puts back everything a request
   may change (environment, folder, umask, signal handlers, timers, streams,
   open files) before it takes the next. After MAX_SERVED requests a fresh
   fork replaces it.

The server keeps one worker waiting (forking another when the last waiting
one takes a request, up to MAX_WORKERS), reports a worker's death by a
signal to its client, and exits after `idle` seconds without a request, when
its socket is taken over or removed, and when xguard's code changes under it
(an upgrade): the next command then starts from the local path.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from xguard.warm import (
    ENV_VAR,
    IDLE_DEFAULT,
    PROTOCOL,
    TAKE_TIMEOUT,
    address,
    interpreter,
    socket_path,
)

MAX_PAYLOAD = 16 << 20
CHECK_EVERY = 2.0  # seconds between checks of the socket and the code
# Facts of the client (from /proc) that must equal the worker's own.
_STATUS_FIELDS = (
    "Uid",
    "Gid",
    "Groups",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "SigBlk",
    "SigIgn",
)
_NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
# (Not `personality`: reading another process's needs ptrace-attach rights,
# which Yama refuses between siblings.)
_PROC_FILES = ("cgroup", "limits", "attr/current")
# The client's Python reads these before xguard starts; a worker's were set
# when the server started. A difference (PYTHONPATH, PYTHONHASHSEED) is a
# refusal. (Encodings are compared as they came out: interpreter(), streams().)
_ENV_SAME_PREFIXES = ("PYTHON",)

# Everything the hot path imports, loaded once in the server.
_PRELOAD = (
    "xguard.frontends.shell",
    "xguard.frontends.local",
    "xguard.frontends.batch",
    "xguard.frontends.hooks",
    "xguard.gate.request",
    "xguard.gate.pipeline",
    "xguard.gate.execenv",
    "xguard.gate.capture",
    "xguard.gate.confine",
    "xguard.gate.limits",
    "xguard.gate.sessions",
    "xguard.audit.log",
    "xguard.audit.recording",
    "xguard.policy.decide",
    "xguard.policy.rules",
    "xguard.shell.parser",
    "xguard.approval.wait",
    "xguard.approval.queue",
    "xguard.adapters.wrappers",
    "xguard.commands.approval_cmd",
    "threading",
)


class Refused(Exception):
    """The worker cannot stand in for this client: it runs the command itself."""


class _Silent(Exception):
    """The connection ended before it asked anything (`xguard warm status`)."""


# ---------------------------------------------------------------------------
# The server.


def code_fingerprint() -> tuple[tuple[str, int, int], ...]:
    """xguard's files as installed (name, mtime, size): a change is an upgrade."""
    import xguard

    root = os.path.dirname(os.path.abspath(xguard.__file__))
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith((".py", ".yaml", ".so")):
                p = os.path.join(folder, name)
                with contextlib.suppress(OSError):
                    st = os.stat(p)
                    out.append((p, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def preload() -> None:
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    from xguard.shell import parser

    # Load the grammar and run it once (both lazy on first use).
    with contextlib.suppress(Exception):
        parser.parse("echo $(true) > /dev/null")
    import gc

    # What is loaded now is never collected: a worker's collections then
    # leave these objects' pages alone, shared with the server, not copied.
    gc.collect()
    gc.freeze()


def _bind(path: str) -> tuple[socket.socket, int]:
    """Listen at `path`, or raise FileExistsError when another server does.
    Bound under a private name, then linked into place: never a window in
    which a second server's bind() replaces the first's socket."""
    tmp = f"{path}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    addr, dfd = address(tmp)
    old = os.umask(0o177)  # born 0600
    try:
        s.bind(addr)
    finally:
        os.umask(old)
        if dfd >= 0:
            os.close(dfd)
    try:
        s.listen(64)
        os.link(tmp, path)
    except BaseException:
        s.close()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return s, os.stat(path).st_ino


MIN_IDLE = 1  # a worker always waits in accept() (while fewer than MAX_WORKERS run)
START_IDLE = 2  # one serves, one waits: a sequence of commands never waits on a fork
MAX_IDLE = 3
MAX_WORKERS = 32
MAX_SERVED = 200  # requests per worker before a fresh one replaces it
MAX_STILLBORN = 3  # workers that die before serving anything, before the server gives up


class _Worker:
    """The server's view of one worker: its message channel and what it is doing."""

    __slots__ = ("chan", "conn", "pid", "state")

    def __init__(self, pid: int, chan: socket.socket) -> None:
        self.pid = pid
        self.chan = chan
        self.state = "warming"  # -> idle <-> busy; quitting once told to go
        self.conn: socket.socket | None = None


def serve(state_dir: str, idle: float = IDLE_DEFAULT) -> int:
    """Run the server in this process until it is idle, replaced, upgraded
    or sent SIGTERM. Returns 0; 75 when another server already listens."""
    import select

    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir("/")  # holds no one's folder; each request brings its own
    preload()
    path = socket_path(state_dir)
    stopping: list[bool] = []

    def on_term(_signum: int, _frame: object) -> None:
        _trace("SIGTERM: stopping")
        stopping.append(True)

    try:
        listener, ino = _bind(path)
    except FileExistsError:
        return 75
    listener.setblocking(False)  # workers poll it with their channel (see _next_request)
    signal.signal(signal.SIGTERM, on_term)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the poll through wake_w
    code = code_fingerprint()
    env_same = {k: v for k, v in os.environ.items() if _same_env(k)}
    workers: dict[int, _Worker] = {}
    last = time.monotonic()
    checked = last
    listening = True
    stillborn = 0
    for _ in range(START_IDLE):
        _spawn_worker(listener, workers, env_same)
    try:
        while listening or workers:
            if stopping and listening:
                listening = _close(listener, path, ino, workers)
            poller = select.poll()
            poller.register(wake_r, select.POLLIN)
            by_fd = {w.chan.fileno(): w for w in workers.values()}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            try:
                ready = poller.poll(1000 if listening else 200)
            except InterruptedError:
                ready = []
            for fd, _ in ready:
                if fd == wake_r:
                    with contextlib.suppress(OSError):
                        while os.read(wake_r, 512):
                            pass
                elif fd in by_fd and _message(by_fd[fd]):
                    last = time.monotonic()
            stillborn += _reap(workers)
            now = time.monotonic()
            if listening and stillborn >= MAX_STILLBORN:
                # Workers die before they can serve (a broken install, no
                # memory): forking more would only spin. Commands run cold.
                sys.stderr.write("xguard warm: workers keep dying before they serve; stopping\n")
                listening = _close(listener, path, ino, workers)
            if listening:
                _balance(listener, workers, env_same)
                if now - checked >= CHECK_EVERY:
                    checked = now
                    if not _still_ours(path, ino) or code_fingerprint() != code:
                        listening = _close(listener, path, ino, workers)
                busy = any(w.state == "busy" for w in workers.values())
                if not busy and now - last >= idle:
                    listening = _close(listener, path, ino, workers)
    finally:
        if listening:
            _close(listener, path, ino, workers)
    return 0


def _spawn_worker(
    listener: socket.socket, workers: dict[int, _Worker], env_same: dict[str, str]
) -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    try:
        pid = os.fork()
    except OSError:
        mine.close()
        theirs.close()
        return
    if pid == 0:
        code = 70
        try:
            mine.close()
            for w in workers.values():
                w.chan.close()
                if w.conn is not None:
                    w.conn.close()
            code = _worker_main(listener, theirs, env_same)
        except BaseException:  # a worker never returns into the server loop
            code = 70
        finally:
            os._exit(code & 0xFF)
    theirs.close()
    workers[pid] = _Worker(pid, mine)
    _trace(f"worker {pid} started")


def _message(w: _Worker) -> bool:
    """Read one message from a worker; True when it finished a request (the
    idle clock starts again)."""
    active = False
    try:
        msg, anc, _flags, _addr = w.chan.recvmsg(16, socket.CMSG_SPACE(4))
    except OSError:
        return False
    _trace(f"worker {w.pid} ({w.state}) says {msg!r}")
    fds = [
        int.from_bytes(data[:4], sys.byteorder)
        for level, kind, data in anc
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(data) >= 4
    ]
    if msg in (b"I", b"i"):  # "i": what it took was no request (a probe)
        if msg == b"I":
            active = True
        if w.conn is not None:
            w.conn.close()
            w.conn = None
        if w.state != "quitting":
            w.state = "idle"
    elif msg == b"B" and fds:
        if w.state != "quitting":
            w.state = "busy"
        # Kept to tell the client how the worker ended if it dies of a signal.
        w.conn = socket.socket(fileno=fds.pop())
    for fd in fds:
        os.close(fd)
    return active


def _balance(
    listener: socket.socket, workers: dict[int, _Worker], env_same: dict[str, str]
) -> None:
    """Keep a worker waiting in accept(), and not too many."""
    ready = [w for w in workers.values() if w.state in ("idle", "warming")]
    if len(ready) < MIN_IDLE and len(workers) < MAX_WORKERS:
        _spawn_worker(listener, workers, env_same)
    idle = [w for w in workers.values() if w.state == "idle"]
    for w in idle[MAX_IDLE:]:
        _quit(w)


def _trace(line: str) -> None:
    """With XGUARD_DEBUG set, what the server does goes to its log (warm.log)."""
    if os.environ.get("XGUARD_DEBUG"):
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} xguard warm [{os.getpid()}]: {line}\n")
        sys.stderr.flush()


def _same_env(key: str) -> bool:
    return key.startswith(_ENV_SAME_PREFIXES)


def _still_ours(path: str, ino: int) -> bool:
    try:
        return os.stat(path).st_ino == ino
    except OSError:
        return False


def _close(listener: socket.socket, path: str, ino: int, workers: dict[int, _Worker]) -> bool:
    """Stop taking requests: the socket goes (if it is still ours) first, so
    new commands take the local path at once; waiting workers go; busy ones
    finish their command."""
    if _still_ours(path, ino):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    listener.close()
    _dismiss(workers)
    return False


def _dismiss(workers: dict[int, _Worker]) -> None:
    """Tell every worker to go: at once if it waits, after its command if it serves one."""
    for w in workers.values():
        if w.state != "quitting":
            _quit(w)


def _quit(w: _Worker) -> None:
    _trace(f"dismissing worker {w.pid} ({w.state})")
    w.state = "quitting"
    with contextlib.suppress(OSError):
        w.chan.send(b"Q")


def _reap(workers: dict[int, _Worker]) -> int:
    """Collect ended workers; how many of them died while still warming up."""
    stillborn = 0
    while workers:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        w = workers.pop(pid, None)
        _trace(f"worker {pid} ended ({status:#x})")
        if w is None:
            continue
        if w.state == "warming":
            stillborn += 1
        if w.conn is not None:
            if os.WIFSIGNALED(status):
                # The worker could not answer for itself: tell the client how it ended.
                with contextlib.suppress(OSError):
                    w.conn.send(b"S" + bytes([os.WTERMSIG(status)]))
            w.conn.close()
        w.chan.close()
    return stillborn


# ---------------------------------------------------------------------------
# A worker.


def _worker_main(listener: socket.socket, chan: socket.socket, env_same: dict[str, str]) -> int:
    """Warm up, then serve requests one at a time, each from a clean slate."""
    import xguard.warm as client

    client.IN_WORKER.append(True)  # main() here must not forward to a server again
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    _warm_up()
    from xguard.gate import prebox

    prebox.enable()  # this worker's next command is most likely boxed like its last
    from xguard.gate import confine

    confine.keep_rulesets()  # and, under Landlock, restricted by the same ruleset
    slate = _Slate()
    said = b"I"
    for _ in range(MAX_SERVED):
        chan.send(said)
        conn = _next_request(listener, chan)
        if conn is None:
            break  # the server said to go, or is gone
        fd = conn.fileno().to_bytes(4, sys.byteorder)
        chan.sendmsg([b"B"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd)])
        try:
            again, served = _serve_one(conn, env_same)
        finally:
            conn.close()
            slate.restore()
            prebox.make_wanted()  # the box for the next command, while none runs
            became = prebox.last()
            if became:
                _trace(became)
        if not again or not slate.clean():
            break  # a fresh worker takes over
        said = b"I" if served else b"i"
    return 0


def _next_request(listener: socket.socket, chan: socket.socket) -> socket.socket | None:
    """Wait for a client, or for the server to say "Q" (or to end): None.
    The server never signals a worker: one that is told to go while serving
    reads "Q" once its command is done, so no command is cut short."""
    # EPOLLEXCLUSIVE: a connection wakes one idle worker, not all of them
    # (on a small machine the others would take the CPU from the client).
    with select.epoll(2) as poller:
        poller.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        poller.register(chan.fileno(), select.EPOLLIN)
        return _wait_request(poller, listener, chan)


def _wait_request(
    poller: select.epoll, listener: socket.socket, chan: socket.socket
) -> socket.socket | None:
    from xguard.gate import prebox

    while True:
        wait = prebox.expires_in()  # a box made ahead is not kept past its age
        try:
            ready = poller.poll(-1 if wait is None else max(0.0, wait) + 0.001)
        except InterruptedError:
            continue
        if not ready:
            prebox.drop()
        fds = {fd for fd, _ in ready}
        if listener.fileno() in fds:
            # First, even when told to go: a connection handed to this worker
            # alone (EPOLLEXCLUSIVE) would wait for the next one to wake another.
            try:
                conn, _ = listener.accept()  # non-blocking: another worker may be first
            except (BlockingIOError, InterruptedError):
                pass
            else:
                conn.setblocking(True)
                return conn
        if chan.fileno() in fds:
            return None  # "Q", or the end of the channel: the server has gone


def _warm_up() -> None:
    """Run the decision path once on this worker's own copy of the loaded
    modules, so a request finds its pages already written (after fork, the
    first touch of each page copies it) and its lazy parts made."""
    from xguard.frontends.shell import check_main

    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for text in ("true", "git status --porcelain | head > /dev/null", "echo $(ls)"):
            with contextlib.suppress(BaseException):
                check_main(["-c", text])
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        for fd, old in zip((0, 1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
        os.close(null)


class _Slate:
    """What a request may change in the worker, taken before the first one
    and put back after each: environment, folder, umask, signal handlers and
    mask, timers, standard streams and their Python objects, open files."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.cwd = os.getcwd()
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.handlers = {}
        for sig in signal.valid_signals():
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            with contextlib.suppress(OSError, ValueError, TypeError):
                self.handlers[sig] = signal.getsignal(sig)
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self.stdio = [os.dup(fd) for fd in (0, 1, 2)]
        self.fds = set(_open_fds()) | set(self.stdio)
        self.argv = list(sys.argv)
        self.streams: list[tuple[str, str, bool]] = [
            (str(s.encoding), str(s.errors), bool(s.line_buffering))
            for s in (sys.stdin, sys.stdout, sys.stderr)
        ]

    def restore(self) -> None:
        from xguard import util

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        # The client's streams go first: a reader of its pipe must see EOF
        # when the client exits, not when this worker takes its next request.
        for fd, saved in zip((0, 1, 2), self.stdio, strict=True):
            os.dup2(saved, fd)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, h in self.handlers.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(sig, h)
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        os.environ.clear()
        os.environ.update(self.env)
        os.chdir(self.cwd)
        os.umask(self.umask)
        util._PARENT.clear()
        sys.argv[:] = self.argv
        # Files the request left open: their objects' finalizers close them
        # (closing the numbers here could later close a reused one); any
        # still open are kept out of the next command's reach. A worker that
        # collects too many is replaced (MAX_SERVED, and below).
        import gc

        gc.collect()
        # What survived is kept (the rules, caches): out of every later
        # collection's sight, so the next one looks only at what the next
        # request made (~1 ms of CPU per request otherwise). Cycles among
        # these are never freed: a worker ends after MAX_SERVED requests.
        gc.freeze()
        for fd in _open_fds():
            if fd > 2 and fd not in self.fds:
                with contextlib.suppress(OSError):
                    os.set_inheritable(fd, False)
        # Fresh stream objects: nothing read ahead or left in a buffer passes on.
        _client_streams(self.streams)

    def clean(self) -> bool:
        """Whether nothing of the request lingers that restore() cannot undo:
        a thread still running, files still open."""
        import threading

        from xguard.gate import confine, prebox

        held = prebox.held_fds() | confine.held_fds()
        extra = [fd for fd in _open_fds() if fd > 2 and fd not in self.fds and fd not in held]
        return threading.active_count() == 1 and len(extra) <= 1  # (listdir's own)


def _client_streams(spec: list[tuple[str, str, bool]]) -> None:
    """New sys.stdin/stdout/stderr on fds 0-2, encoding as `spec` says."""
    import io

    made = []
    for fd, mode, (enc, err, lb) in zip((0, 1, 2), "rww", spec, strict=True):
        raw = io.FileIO(fd, mode, closefd=False)
        buf = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        made.append(io.TextIOWrapper(buf, encoding=enc, errors=err, line_buffering=lb))
    sys.stdin, sys.stdout, sys.stderr = made


def _open_fds() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return []


def _recv_request(conn: socket.socket) -> bytes:
    """The request: an 8-byte length, then the payload (no descriptors yet)."""
    conn.settimeout(10)
    head = b""
    while len(head) < 8:
        chunk = conn.recv(8 - len(head))
        if not chunk:
            if not head:
                raise _Silent
            raise Refused("a request cut short")
        head += chunk
    n = int.from_bytes(head, "little")
    if n > MAX_PAYLOAD:
        raise Refused("a request too large")
    data = b""
    while len(data) < n:
        chunk = conn.recv(min(1 << 20, n - len(data)))
        if not chunk:
            raise Refused("a request cut short")
        data += chunk
    conn.settimeout(None)
    return data


def _recv_go(conn: socket.socket) -> list[int] | None:
    """The client's "G" with its standard streams, or None: it gave up (and
    runs the command itself), or sent something else."""
    conn.settimeout(TAKE_TIMEOUT + 5)
    try:
        msg, anc, _flags, _addr = conn.recvmsg(1, socket.CMSG_SPACE(4 * 8))
    except OSError:
        return None
    finally:
        conn.settimeout(None)
    fds: list[int] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            n = len(data) - len(data) % 4
            fds += [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, n, 4)]
    if msg == b"G" and len(fds) == 3:
        return fds
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    return None


def _proc(pid: int | str, name: str) -> str:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<{e.errno}>"


def _status(pid: int | str) -> dict[str, str]:
    out = {}
    for line in _proc(pid, "status").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def differs(pid: int, theirs: dict[str, str]) -> str | None:
    """Why this process cannot stand in for process `pid` (whose
    /proc/PID/status says `theirs`), or None."""
    mine = _status("self")
    for k in _STATUS_FIELDS:
        if theirs.get(k) != mine.get(k):
            return f"its {k} differs"
    for ns in _NAMESPACES:
        try:
            same = os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}")
        except FileNotFoundError:
            same = not os.path.lexists(f"/proc/self/ns/{ns}")
        except OSError:
            same = False
        if not same:
            return f"its {ns} namespace differs"
    for name in _PROC_FILES:
        if _proc(pid, name) != _proc("self", name):
            return f"its {name} differs"
    try:
        if os.readlink(f"/proc/{pid}/root") != os.readlink("/proc/self/root"):
            return "its root differs"
    except OSError:
        return "its root cannot be read"
    stat = _proc(pid, "stat")
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 5 or fields[4] != "0":
        return "it has a controlling terminal"
    return None


def _ucred(conn: socket.socket) -> tuple[int, int, int]:
    import struct

    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def _serve_one(conn: socket.socket, server_env: dict[str, str]) -> tuple[bool, bool]:
    """Stand in for the client, run main() for it, answer. (Whether this
    worker may take another request, whether it served one: a connection
    that sent nothing, like `xguard warm status`, is not one.)"""
    try:
        data = _recv_request(conn)
        pid, uid, gid = _ucred(conn)
        req = _unpack(data, uid, gid, server_env)
        status = _status(pid)
        why = differs(pid, status)
        if why is not None:
            raise Refused(why)
        os.chdir(req.cwd)
    except _Silent:
        return True, False
    except (Refused, OSError) as e:
        with contextlib.suppress(OSError):
            conn.sendall(b"R" + str(e).encode()[:200])
        return True, True
    # The streams come with "G", only once the client has committed: a
    # client that gave up waiting leaves none of its pipes held open here.
    try:
        conn.sendall(b"A")
    except OSError:
        return True, False
    fds = _recv_go(conn)
    if fds is None:
        return True, False  # the client runs it itself: not here too
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    with contextlib.suppress(ValueError, KeyError):
        os.umask(int(status["Umask"], 8))
    os.environ.clear()
    os.environ.update(req.env)
    _client_streams(req.streams)
    from xguard import util

    util._PARENT[:] = [p for p in [util.proc_ppid(pid)] if p is not None]
    done: list[bool] = []
    watcher = _watch(conn, done)
    code = 70
    ok = False
    try:
        from xguard.__main__ import main

        sys.argv[1:] = req.args
        code = main(req.args) & 0xFF
        ok = True
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # the client's streams are let go before it is told
        os.close(null)
        done.append(True)
        with contextlib.suppress(OSError):
            conn.sendall(b"X" + bytes([code & 0xFF]))
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)  # ends the watcher's recv()
        watcher.join(5)
    return ok and not watcher.is_alive(), True


class _Request:
    __slots__ = ("args", "cwd", "env", "streams")

    def __init__(
        self, args: list[str], cwd: str, env: dict[str, str], streams: list[tuple[str, str, bool]]
    ) -> None:
        self.args, self.cwd, self.env, self.streams = args, cwd, env, streams


_MINE: list[bytes] = []


def _unpack(data: bytes, uid: int, gid: int, server_env: dict[str, str]) -> _Request:
    if uid != os.getuid() or gid != os.getgid():
        raise Refused("another user")
    parts = data.split(b"\0")
    if len(parts) < 5 or parts[0] != PROTOCOL:
        raise Refused("another protocol")
    if not _MINE:
        _MINE.append(interpreter())  # this process's, for good (a dozen lstat()s)
    if parts[1] != _MINE[0]:
        raise Refused("another Python")
    streams = []
    for spec in parts[2].decode("ascii", "replace").split(";"):
        enc, _, rest = spec.partition(":")
        err, _, lb = rest.partition(":")
        try:
            codecs.lookup(enc)
            codecs.lookup_error(err)
        except LookupError:
            raise Refused("an unknown stream encoding") from None
        streams.append((enc, err, lb == "1"))
    if len(streams) != 3:
        raise Refused("a malformed request")
    cwd = os.fsdecode(parts[3])
    try:
        argc = int(parts[4])
    except ValueError:
        raise Refused("a malformed request") from None
    if not 0 <= argc <= len(parts) - 5:
        raise Refused("a malformed request")
    args = [os.fsdecode(a) for a in parts[5 : 5 + argc]]
    env: dict[str, str] = {}
    for item in parts[5 + argc :]:
        k, eq, v = item.partition(b"=")
        if eq and k:
            env[os.fsdecode(k)] = os.fsdecode(v)
    if env.get(ENV_VAR) == "0":
        raise Refused(f"{ENV_VAR}=0")
    mine = {k: v for k, v in env.items() if _same_env(k)}
    if mine != server_env:
        raise Refused("its Python settings differ")
    return _Request(args, cwd, env, streams)


def _watch(conn: socket.socket, done: list[bool]) -> Any:
    """Relay the client's signals into this process. Its disappearance (a
    runtime's timeout kills the tree under the shell it started, with
    SIGKILL) is a SIGKILL here, to this worker and to every process under
    it: the command was under the client as far as its caller knew, and must
    not outlive it because it is under the worker instead."""
    import threading

    def run() -> None:
        # Signals go to the main thread, where xguard's handlers (and the
        # blocks around its critical sections) are.
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
        me = os.getpid()
        while True:
            try:
                data = conn.recv(64)
            except OSError:
                data = b""
            if not data:
                if not done:
                    for pid in _descendants(me):
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)
                    os.kill(me, signal.SIGKILL)
                return
            for sig in data:
                if sig in (1, 2, 3, 10, 12, 14, 15):
                    os.kill(me, sig)

    t = threading.Thread(target=run, name="xguard-warm-watch", daemon=True)
    t.start()
    return t


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` now (from /proc/PID/task/TID/children). As
    with a runtime's own tree kill, one forked between this listing and the
    kills, or one that left the tree (a daemon), is not among them."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out

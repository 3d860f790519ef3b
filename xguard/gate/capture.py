"""Capturing a command's output while passing it on at once (issue 14).

The executor (execenv.run_child) gives the command pipes for the caller's
stdout and stderr, or a pty when the caller's stdout or stderr is a
terminal, and copies every byte to the caller as soon as it is read, then
hands it to the recorder. Reads are at most 64 KiB (1 MiB once a command
prints a lot) and nothing is queued, so memory stays constant whatever the
command prints; a slow reader slows the command, as it would without xguard.
Past what the recording keeps, big bursts between pipes are moved by splice(2).

With a pty the command gets a terminal of its own (colours, progress bars,
`less` behave), sized and set up like the caller's; when the caller's stdin
is that terminal it is put in raw mode and keystrokes are copied to the pty,
so Ctrl-C and friends are turned into signals by the pty, for the command.

Standard library C modules only: this runs for every command.
"""

from __future__ import annotations

import errno
import os
import select

from xguard.audit.recording import STDERR, STDOUT, TERMINAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CHUNK = 1 << 16
# A command that fills a whole read is printing a lot: its pipe is widened to
# BIG and read BIG at a time, so each byte costs fewer system calls and loops.
BIG = 1 << 20
TAIL = 8192  # the end of a burst always goes through a read (see _splice)


def _same_file(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _keyboard_is_ours() -> bool:
    """Should keystrokes go through the pty? Only when stdin is the terminal the
    output goes to, and xguard is that terminal's foreground job alone (not
    `xguard -c cmd | less`, where less reads the keys, nor a background job,
    which may not read them): otherwise the command reads stdin as it is."""
    try:
        same = os.isatty(0) and os.fstat(0).st_rdev == os.fstat(1).st_rdev
        return same and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _fd_ok(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class Plumbing:
    """The command's fds 0-2 and what to copy where once it runs.

    `sources` maps a read end (pipe or pty master) to (stream, destination fd).
    """

    def __init__(self) -> None:
        self.pty = False
        self.master = -1
        self.slave_name = ""
        self.slave = -1  # kept while keystrokes go through: to take back what was not read
        self.typeahead = b""
        self.copy_stdin = False
        self.term_fd = -1  # the caller's terminal, for size and modes
        self.saved_attrs: Any = None
        self.sources: dict[int, tuple[int, int]] = {}
        self.open_fds: list[int] = []  # read ends, closed by close()
        self.child_ends: list[int] = []  # closed in xguard once the command started
        self.file_actions: list[tuple[Any, ...]] = []
        self.chunk: dict[int, int] = {}  # read size per source, where it is not CHUNK
        self.spliceable: set[int] = set()  # pipes whose bursts may go by splice(2)
        self.cols, self.rows = 80, 24

    @classmethod
    def make(cls) -> Plumbing:
        p = cls()
        out_ok, err_ok = _fd_ok(1), _fd_ok(2)
        out_tty = out_ok and _isatty(1)
        err_tty = err_ok and _isatty(2)
        if out_tty or err_tty:
            p._open_pty(1 if out_tty else 2)
        tty_stream = TERMINAL if out_tty and err_tty else (STDOUT if out_tty else STDERR)
        if p.pty:
            # Opening the pty by name makes it the command's controlling terminal
            # (posix_spawn runs setsid first).
            first = 0 if p.copy_stdin else (1 if out_tty else 2)
            p.file_actions.append((os.POSIX_SPAWN_OPEN, first, p.slave_name, os.O_RDWR, 0))
            wanted = ((0, p.copy_stdin), (1, out_tty), (2, err_tty))
            for fd, on in wanted:
                if on and fd != first:
                    p.file_actions.append((os.POSIX_SPAWN_DUP2, first, fd))
            p.sources[p.master] = (tty_stream, 1 if out_tty else 2)
        piped = [
            fd for fd, ok, tty in ((1, out_ok, out_tty), (2, err_ok, err_tty)) if ok and not tty
        ]
        if piped == [1, 2] and _same_file(1, 2):
            # The caller merged them (2>&1): one pipe keeps their exact order.
            r, w = os.pipe()
            p.sources[r] = (TERMINAL, 1)
            p.spliceable.add(r)
            p.file_actions += [(os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)]
            p.child_ends.append(w)
        else:
            for fd in piped:
                r, w = os.pipe()
                p.sources[r] = (STDOUT if fd == 1 else STDERR, fd)
                p.spliceable.add(r)
                p.file_actions.append((os.POSIX_SPAWN_DUP2, w, fd))
                p.child_ends.append(w)
        p.open_fds = list(p.sources)
        return p

    def _open_pty(self, out_fd: int) -> None:
        import contextlib  # a pty is for people at terminals: the import is not on an agent's path
        import fcntl
        import termios

        self.copy_stdin = out_fd == 1 and _keyboard_is_ours()
        self.term_fd = 0 if self.copy_stdin else out_fd
        master, slave = os.openpty()

        with contextlib.suppress(termios.error):
            termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(self.term_fd))
        try:
            size = fcntl.ioctl(self.term_fd, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
            self.rows = int.from_bytes(size[0:2], "little") or 24
            self.cols = int.from_bytes(size[2:4], "little") or 80
        except OSError:
            pass
        self.slave_name = os.ttyname(slave)
        if self.copy_stdin:
            self.slave = slave  # closed by take_typeahead() once the command has ended
        else:
            os.close(slave)  # the command opens it by name; our copy would hide its EOF
        os.set_blocking(master, False)
        self.master = master
        self.pty = True

    def started(self) -> None:
        """The command runs: close its ends here, put the caller's terminal in raw mode."""
        for fd in self.child_ends:
            os.close(fd)
        self.child_ends = []
        if self.copy_stdin:
            import termios

            try:
                self.saved_attrs = termios.tcgetattr(0)
                termios.tcsetattr(0, termios.TCSADRAIN, _raw(self.saved_attrs))
            except termios.error:
                self.saved_attrs = None

    def resize(self) -> tuple[int, int] | None:
        """Copy the caller's window size to the pty (SIGWINCH); the new (cols, rows)."""
        if not self.pty:
            return None
        import fcntl
        import termios

        try:
            size = fcntl.ioctl(self.term_fd, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        except OSError:
            return None
        return int.from_bytes(size[2:4], "little"), int.from_bytes(size[0:2], "little")

    def take_typeahead(self, pending: bytes) -> None:
        """The command has ended: keep what was typed that it never read (the
        next command line, typed ahead), to hand back to the terminal in close()."""
        if self.slave < 0:
            return
        import termios

        left = b""
        try:
            a = termios.tcgetattr(self.slave)
            eof = a[6][termios.VEOF]
            os.set_blocking(self.slave, False)
            # Whole lines first, read as the command would have: a line cut by
            # Ctrl-D comes without its newline (a lone Ctrl-D as nothing), so
            # the Ctrl-D is put back after it. They go back as keystrokes.
            empty = 0
            for _ in range(256):
                try:
                    line = os.read(self.slave, CHUNK)
                except BlockingIOError:
                    break
                empty = empty + 1 if not line else 0
                if empty > 1:
                    break  # a hung-up terminal reads as endless end of file
                # As typed: Enter was \r before the pty's line discipline made it \n.
                left += line[:-1] + b"\r" if line.endswith(b"\n") else line + eof
            a[3] &= ~termios.ICANON  # then a line not yet ended
            a[6][termios.VMIN] = 0
            a[6][termios.VTIME] = 0
            termios.tcsetattr(self.slave, termios.TCSANOW, a)
            while chunk := os.read(self.slave, CHUNK):
                left += chunk
        except (OSError, termios.error):
            pass
        os.close(self.slave)  # now the master can report EIO when the last user is gone
        self.slave = -1
        self.typeahead = left + pending

    def foreground_group(self) -> int | None:
        """The pty's foreground process group (where Ctrl-C would go)."""
        try:
            return os.tcgetpgrp(self.master) if self.pty else None
        except OSError:
            return None

    def close(self) -> None:
        """Restore the terminal and close every fd this made."""
        if self.typeahead:
            # While the terminal is still raw, so that they stay the bytes typed.
            _type_back(self.typeahead)
            self.typeahead = b""
        if self.saved_attrs is not None:
            import contextlib
            import termios

            with contextlib.suppress(termios.error):
                termios.tcsetattr(0, termios.TCSADRAIN, self.saved_attrs)
            self.saved_attrs = None
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1
        for fd in [*self.open_fds, *self.child_ends]:
            os.close(fd)  # each is ours and still open: close_source() drops what it closed
        self.open_fds = []
        self.child_ends = []

    def widen(self, fd: int) -> None:
        """Read `fd` BIG at a time from now on (a pipe is made that wide first;
        a pty's master keeps its size, reads from it return what there is)."""
        self.chunk[fd] = BIG
        if not self.pty or fd != self.master:
            import fcntl

            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, BIG)
            except OSError:  # over /proc/sys/fs/pipe-max-size for this user: as it is
                pass

    def close_source(self, fd: int) -> None:
        """Close one read end early (its reader went away)."""
        if fd in self.open_fds:
            self.open_fds.remove(fd)
            os.close(fd)


def _type_back(data: bytes) -> None:
    """Put keystrokes back into the caller's terminal, as if typed again
    (TIOCSTI; where the system forbids it, they are lost, as under script(1))."""
    import fcntl
    import termios

    for i in range(len(data)):
        try:
            fcntl.ioctl(0, termios.TIOCSTI, data[i : i + 1])
        except OSError:
            return


def _raw(attrs: list[Any]) -> list[Any]:
    """cfmakeraw: keystrokes reach the pty unchanged, its line discipline interprets them."""
    import termios

    a = [*attrs[:6], list(attrs[6])]
    a[0] &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
    )
    a[1] &= ~termios.OPOST
    a[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    a[2] = (a[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    a[6][termios.VMIN] = 1
    a[6][termios.VTIME] = 0
    return a


def _write_all(fd: int, data: bytes) -> None:
    """Write everything, waiting when the caller gave a non-blocking fd."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            p = select.poll()
            p.register(fd, select.POLLOUT)
            p.poll()
            continue
        view = view[n:]


def pump(plumbing: Plumbing, pid: int, recorder: Any, exited: Any, use_pidfd: bool = True) -> None:
    """Copy output to the caller and the recorder until the command has exited.

    `exited()` says whether the command ended (asked every 50 ms where no
    pidfd is used). After it ends, what it already wrote is drained; output that
    background processes it left write later is not waited for: they get
    EPIPE (or a hung-up terminal), as under sudo's I/O log.
    """
    sources = dict(plumbing.sources)
    master = plumbing.master
    pending_in = b""
    poller = select.poll()
    for fd in sources:
        poller.register(fd, select.POLLIN)
    pidfd = -1
    if use_pidfd:
        try:
            pidfd = os.pidfd_open(pid)
            poller.register(pidfd, select.POLLIN)
        except (AttributeError, OSError):  # pragma: no cover - kernels before 5.3
            pidfd = -1
    if plumbing.copy_stdin:
        poller.register(0, select.POLLIN)
    timeout = None if pidfd >= 0 else 50
    try:
        while sources:
            events = poller.poll(timeout)
            if pidfd < 0 and not events and exited():
                break
            if any(fd == pidfd for fd, _ in events):
                break
            for fd, ev in events:
                if fd == 0:
                    pending_in = _stdin(poller, master, pending_in)
                    continue
                if fd == master and ev & select.POLLOUT and pending_in:
                    pending_in = _to_master(poller, master, pending_in)
                if fd in sources and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    _copy(fd, sources, poller, plumbing, recorder)
        plumbing.take_typeahead(pending_in)
        _drain(sources, plumbing, recorder)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _copy(
    fd: int, sources: dict[int, tuple[int, int]], poller: Any, plumbing: Plumbing, recorder: Any
) -> int:
    """Read once from a source and pass the bytes on: how many, 0 for none now,
    -1 when the source is finished."""
    want = plumbing.chunk.get(fd, CHUNK)
    if want == BIG and fd in plumbing.spliceable and recorder.full:
        moved = _splice(fd, sources, poller, plumbing, recorder)
        if moved:
            return moved
    try:
        data = os.read(fd, want)
    except BlockingIOError:
        return 0
    except OSError as e:
        if e.errno != errno.EIO:  # EIO: a pty whose last user closed it
            raise
        data = b""
    if not data:
        poller.unregister(fd)
        del sources[fd]
        return -1
    if len(data) == want == CHUNK:
        plumbing.widen(fd)
    stream, dest = sources[fd]
    try:
        _write_all(dest, data)
    except OSError:
        # The caller stopped reading (EPIPE): close our end so the command gets
        # SIGPIPE on its next write, as it would have without xguard.
        poller.unregister(fd)
        del sources[fd]
        plumbing.close_source(fd)
        return -1
    recorder.write(stream, data)
    return len(data)


def _splice(
    fd: int, sources: dict[int, tuple[int, int]], poller: Any, plumbing: Plumbing, recorder: Any
) -> int:
    """Past what the recording keeps, move a big burst of output pipe to
    caller in the kernel (splice(2)): no copy through this process, which on a
    busy machine competes with the command for the processor. The last TAIL
    bytes available are left to the ordinary read, so what the command printed
    last (an error the box's hint looks for) is still seen. -> bytes moved, 0
    when there was too little or the caller's fd does not take splice (never
    asked again), -1 when the caller stopped reading."""
    import fcntl
    import termios

    try:
        avail = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")
    except OSError:
        avail = 0
    n = avail - TAIL
    if n < CHUNK:
        return 0
    dest = sources[fd][1]
    left = n
    while left:
        try:
            moved = os.splice(fd, dest, left)
        except BlockingIOError:  # a non-blocking caller's fd is full: wait, as a write does
            p = select.poll()
            p.register(dest, select.POLLOUT)
            p.poll()
            continue
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOSYS, errno.EBADF) and left == n:
                plumbing.spliceable.discard(fd)  # a terminal, an O_APPEND file: read and write
                return 0
            poller.unregister(fd)
            del sources[fd]
            plumbing.close_source(fd)
            recorder.count(n - left)
            return -1
        if moved == 0:
            break
        left -= moved
    recorder.count(n - left)
    return n - left


def _stdin(poller: Any, master: int, pending: bytes) -> bytes:
    if pending:
        return pending
    try:
        data = os.read(0, CHUNK)
    except OSError:
        data = b""
    if not data:
        poller.unregister(0)
        return pending
    return _to_master(poller, master, data)


def _to_master(poller: Any, master: int, data: bytes) -> bytes:
    """Type into the pty; what does not fit waits (POLLOUT) while output keeps flowing."""
    try:
        n = os.write(master, data)
    except BlockingIOError:
        n = 0
    except OSError:
        n = len(data)  # the command is gone: drop the keystrokes
    rest = data[n:]
    try:
        poller.modify(master, select.POLLIN | (select.POLLOUT if rest else 0))
        if rest:
            poller.unregister(0)
        else:
            poller.register(0, select.POLLIN)
    except (KeyError, OSError):
        pass
    return rest


def _drain(sources: dict[int, tuple[int, int]], plumbing: Plumbing, recorder: Any) -> None:
    """Copy what the command wrote before it ended, without waiting for more."""
    import time

    poller = select.poll()
    for fd in sources:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    # A pty hands written bytes to its master through a kernel worker: allow it
    # a moment (the master says EIO once everything is read). Bounded either way:
    # a background process may go on writing.
    wait = 50 if plumbing.pty else 0
    deadline = time.monotonic() + (0.5 if plumbing.pty else 0.2)
    while sources and time.monotonic() < deadline:
        events = poller.poll(wait)
        if not events:
            break
        for fd, _ev in events:
            if fd in sources and _copy(fd, sources, poller, plumbing, recorder) == 0:
                poller.unregister(fd)
                del sources[fd]

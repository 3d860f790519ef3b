"""The audit log writer: append-only, hash-chained JSON lines (SPEC §6, issue 4).

This module is on the hot path (every gated command appends at least one
record), so it imports only the standard library, and not even `hashlib`:
loading OpenSSL costs ~9 ms, while the built-in `_sha256`/`_sha2` module
costs nothing.

One record is one line: the fields of FIELDS in that order (null when not
given), then extra fields sorted by name, then `prev` (the previous record's
hash) and last `hash`, the hex SHA-256 of the line's bytes up to, not
including, `,"hash":`. Verifying therefore needs no JSON re-encoding.

Concurrency: every append opens the file, takes `flock(LOCK_EX)` on it, checks
that the path still names the locked inode (another process may have rotated
it meanwhile), reads the last record from the end of the file, and writes the
new line with a single `write` on an O_APPEND descriptor, then `fsync`s.
Rotation happens under that same lock and never leaves the path missing, so
no writer can ever fork the chain into a file nobody else sees.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from xguard.errors import AuditError, ConfigError
from xguard.util import sha256

TYPE_CHECKING = False  # `typing` costs ~3 ms on the hot path; type checkers see True
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any


FIELDS = (
    "ts",
    "seq",
    "event",
    "id",
    "session",
    "profile",
    "user",
    "host",
    "pid",
    "cwd",
    "command",
    "units",
    "decision",
    "rules",
    "reviewer",
    "note",
    "exit_code",
    "duration_ms",
)
GENESIS = "0" * 64  # `prev` of the very first record ever
HASH_MARK = b',"hash":"'
PREV_MARK = b',"prev":"'
TORN_TAIL = "torn tail"  # value of the `repair` field after an interrupted line
WRITER_OWNED = frozenset({"ts", "seq", "prev", "hash"})

_TAIL_BLOCK = 64 * 1024
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
# How often an append re-opens a log that keeps being rotated under it before
# giving up; only a pathological rotate_bytes (smaller than one record) with
# many writers gets anywhere near it.
_REOPEN_LIMIT = 1000

_FACILITIES = {"user": 1, "auth": 4, "authpriv": 10, **{f"local{i}": 16 + i for i in range(8)}}
_INFO, _NOTICE, _WARNING = 6, 5, 4


def utc_timestamp(ns: int | None = None) -> str:
    """RFC 3339 UTC time with microseconds and `Z`, e.g. 2024-05-01T10:00:00.123456Z."""
    if ns is None:
        ns = time.time_ns()
    secs, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest // 1000:06d}Z"


def build_record(
    event: str, fields: dict[str, Any], *, ts: str, seq: int, prev: str
) -> dict[str, Any]:
    """Order a record as the log stores it: FIELDS, then sorted extras, then `prev`."""
    record: dict[str, Any] = dict.fromkeys(FIELDS)
    record.update((k, v) for k, v in fields.items() if k in record)
    record.update(ts=ts, seq=seq, event=event)
    for k in sorted(k for k in fields if k not in record):
        record[k] = fields[k]
    record["prev"] = prev
    return record


# JSON without the `json` package: json imports re (and enum), ~6 ms on every
# command. The output is byte for byte what json.dumps(obj, separators=(",",
# ":"), ensure_ascii=False) gives (tests/unit/test_audit_json.py checks it).
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
for _i in range(0x20):
    _ESCAPES.setdefault(chr(_i), f"\\u{_i:04x}")
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


def _jstr(s: str, ascii_only: bool) -> str:
    out = s.translate(_ESCAPE_TABLE)
    if ascii_only and (not out.isascii() or "\x7f" in out):
        parts = []
        for c in out:
            o = ord(c)
            if o < 0x7F:
                parts.append(c)
            elif o < 0x10000:
                parts.append(f"\\u{o:04x}")
            else:
                o -= 0x10000
                parts.append(f"\\u{0xD800 | (o >> 10):04x}\\u{0xDC00 | (o & 0x3FF):04x}")
        out = "".join(parts)
    return '"' + out + '"'


def dumps(obj: Any, ascii_only: bool = False) -> str:
    """Compact JSON of plain data (dict, list, tuple, str, int, float, bool, None)."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return _jstr(obj, ascii_only)
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):  # noqa: PLR0124 - NaN test
            return "null"  # not JSON; never produced by xguard itself
        return float.__repr__(obj)
    if isinstance(obj, dict):
        return (
            "{"
            + ",".join(
                _jstr(str(k), ascii_only) + ":" + dumps(v, ascii_only) for k, v in obj.items()
            )
            + "}"
        )
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(v, ascii_only) for v in obj) + "]"
    return _jstr(str(obj), ascii_only)


def seal(record: dict[str, Any]) -> tuple[bytes, str]:
    """Serialise an ordered record that ends with `prev`; return (line, hash).

    The line is the compact JSON of `record` with `,"hash":"<hex>"}` and a
    newline added, where <hex> is the SHA-256 of everything before `,"hash":`.
    """
    text = dumps(record)
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (argv bytes decoded with surrogateescape) are not
        # UTF-8; \u escapes keep the line valid JSON and still one line.
        body = dumps(record, ascii_only=True).encode("ascii")
    body = body[:-1]  # drop the closing brace: the hash goes inside the object
    digest = sha256(body).hexdigest()
    return body + HASH_MARK + digest.encode("ascii") + b'"}\n', digest


def lines_backwards(fd: int, size: int, block: int = _TAIL_BLOCK) -> Iterator[bytes]:
    """Yield the lines of the first `size` bytes of `fd`, last first, without newlines.

    The first item is what follows the last newline: b"" when the file ends
    with one, a torn fragment otherwise. Only the blocks needed are read.
    """
    pos = size
    rest = b""
    while pos > 0:
        n = min(block, pos)
        pos -= n
        parts = (os.pread(fd, n, pos) + rest).split(b"\n")
        rest = parts[0]
        yield from reversed(parts[1:])
    yield rest


_HEX = frozenset(b"0123456789abcdef")


def parse_link(line: bytes) -> tuple[int, str] | None:
    """(seq, hash) of a line that is a whole, intact record, or None.

    Read without a JSON parser: the writer's own layout puts `"seq":N` right
    after the fixed-format `ts`, and the line's hash must match its bytes, so
    a torn or foreign line is never taken for a record.
    """
    if not line.startswith(b'{"ts":"') or not line.endswith(b'"}'):
        return None
    body, mark, tail = line.rpartition(HASH_MARK)
    digest = tail[:-2]
    if not mark or len(digest) != 64 or not _HEX.issuperset(digest):
        return None
    if sha256(body).hexdigest().encode("ascii") != digest:
        return None
    i = line.find(b'","seq":', 7)
    if i < 0:
        return None
    j = i + 8
    k = j
    while k < len(line) and 48 <= line[k] <= 57:
        k += 1
    if k == j or line[k : k + 1] != b",":
        return None
    return int(line[j:k]), digest.decode("ascii")


def scan_tail(fd: int, size: int) -> tuple[tuple[int, str] | None, bool, bool]:
    """Read a log from its end: (last good (seq, hash) or None, junk after it, torn end).

    `torn end` means the file does not end with a newline (the next line
    must start with one); `junk` means something that is not a record (a
    torn or non-JSON line) follows the last good record.
    """
    lines = lines_backwards(fd, size)
    last = next(lines)
    torn_end = last != b""
    if torn_end:
        link = parse_link(last)
        if link is not None:
            # A whole record that lost only its newline is still the last link:
            # chaining from the one before it would fork the chain.
            return link, False, True
    junk = torn_end
    for line in lines:
        link = parse_link(line)
        if link is not None:
            return link, junk, torn_end
        junk = True
    return None, junk, torn_end


class _Syslog:
    """Best-effort RFC 5424 forwarding of each record (issue 4, "Forwarding")."""

    def __init__(self, conf: dict[str, Any]) -> None:
        import socket  # only when forwarding is configured: not on every hot path

        self._socket = socket
        self.address = str(conf.get("address") or "/dev/log")
        self.protocol = str(conf.get("protocol") or "udp").lower()
        facility = str(conf.get("facility") or "authpriv")
        if facility not in _FACILITIES or self.protocol not in ("udp", "tcp"):
            raise ConfigError(
                f"audit.forward.syslog: unknown facility {facility!r} or protocol {self.protocol!r}"
            )
        self.facility = _FACILITIES[facility]
        self.timeout = float(conf.get("timeout", 0.25))
        self.host = os.uname().nodename or "-"

    def message(self, record: dict[str, Any], line: bytes) -> bytes:
        """The RFC 5424 message for one record; MSG is the JSON line itself."""
        severity = _INFO
        if record["event"] == "config_error":
            severity = _WARNING
        elif record["event"] == "denied" or record.get("decision") == "deny":
            severity = _NOTICE
        msgid = "".join(c for c in str(record["event"]) if 33 <= ord(c) <= 126)[:32] or "-"
        pri = self.facility * 8 + severity
        header = f"<{pri}>1 {record['ts']} {self.host} xguard {os.getpid()} {msgid} - "
        # The BOM marks MSG as UTF-8, as RFC 5424 §6.4 asks.
        return header.encode("ascii", "replace") + b"\xef\xbb\xbf" + line.rstrip(b"\n")

    def send(self, msg: bytes) -> None:
        """Send one message; raises OSError on failure (the caller ignores it)."""
        sk = self._socket
        if self.address.startswith("/"):
            s = sk.socket(sk.AF_UNIX, sk.SOCK_DGRAM)
            s.setblocking(False)  # a full syslog queue drops the message, never waits
            with s:
                s.sendto(msg, self.address)
            return
        host, _, port = self.address.rpartition(":")
        if not host:
            host, port = self.address, "514"
        host = host.strip("[]")  # [::1]:514
        kind = sk.SOCK_DGRAM if self.protocol == "udp" else sk.SOCK_STREAM
        family, _, _, _, addr = sk.getaddrinfo(host, int(port), type=kind)[0]
        with sk.socket(family, kind) as s:
            s.settimeout(self.timeout)
            if kind == sk.SOCK_DGRAM:
                s.sendto(msg, addr)
            else:
                s.connect(addr)
                # RFC 6587 octet counting: the MSG may hold any byte.
                s.sendall(str(len(msg)).encode("ascii") + b" " + msg)


class AuditLog:
    """An audit log file, with its rotated predecessors <name>.1 … <name>.<keep>."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rotate_bytes: int | None = None,
        keep: int = 10,
        forward: dict[str, Any] | None = None,
        mirror: Callable[[dict[str, Any], bytes], None] | None = None,
    ) -> None:
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise ConfigError("audit.rotate_bytes must be a positive number of bytes")
        if keep < 1:
            # keep >= 1 lets verify tell a log that was never rotated (must start
            # at seq 1) from one whose oldest files were dropped.
            raise ConfigError("audit.keep must be at least 1")
        # A string, not a Path: pathlib costs ~4 ms to import on the hot path.
        self.path_s = os.fspath(path)
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self._syslog: _Syslog | None = None
        if forward and forward.get("syslog") is not None:
            conf = forward["syslog"]
            self._syslog = _Syslog(conf if isinstance(conf, dict) else {})
        self.forward_error: str | None = None  # last forwarding failure, for `doctor`
        # Told of every record after it is durable here (issue 15: the database
        # copy, xguard/audit/dbsync.py); it must be quick and must not fail.
        self.mirror = mirror

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self.path_s)

    def rotated(self, n: int) -> Path:
        """The path of the n-th rotated file (1 is the newest)."""
        from pathlib import Path

        return Path(self._rotated(n))

    def _rotated(self, n: int) -> str:
        return f"{self.path_s}.{n}"

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record and return it as written (with ts, seq, prev and hash).

        Raises AuditError naming the file when the record cannot be written
        durably; the caller must then not run the command.
        """
        owned = WRITER_OWNED.intersection(fields)
        if owned:
            raise ValueError(f"the audit writer sets {', '.join(sorted(owned))} itself")
        try:
            record, line = self._append_locked(event, fields)
        except OSError as e:
            raise AuditError(f"cannot write the audit log {self.path_s}: {e.strerror or e}") from e
        if self._syslog is not None:
            self._forward(self._syslog, record, line)
        if self.mirror is not None:
            self.mirror(record, line)
        return record

    def _append_locked(self, event: str, fields: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        fd = self._open_locked()
        try:
            size = os.fstat(fd).st_size
            if size:
                link, junk, torn_end = scan_tail(fd, size)
                if link is None:  # nothing but junk here: chain from the previous file
                    link = self._last_rotated_link()
            else:
                junk = torn_end = False
                link = self._last_rotated_link()
            seq, prev = (link[0] + 1, link[1]) if link else (1, GENESIS)
            if junk:
                # Say so, so that `verify` can explain the junk line before this one.
                fields = {**fields, "repair": TORN_TAIL}
            record = build_record(event, fields, ts=utc_timestamp(), seq=seq, prev=prev)
            line, digest = seal(record)
            record["hash"] = digest

            if self.rotate_bytes is not None and size and size + len(line) > self.rotate_bytes:
                fd = self._rotate(fd)
            elif torn_end:
                line = b"\n" + line  # never continue a torn line
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)
        return record, line

    def _open(self) -> int:
        try:
            fd = os.open(self.path_s, _OPEN_FLAGS, 0o600)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self.path_s), mode=0o700, exist_ok=True)
            fd = os.open(self.path_s, _OPEN_FLAGS, 0o600)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file")
        return fd

    def _open_locked(self) -> int:
        """Open the log and lock it, making sure the locked inode is still the log."""
        for _ in range(_REOPEN_LIMIT):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                mine = os.fstat(fd)
                try:
                    now = os.stat(self.path_s, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
            os.close(fd)  # rotated (or removed) while we waited: take the new file
        raise OSError(errno.EBUSY, "the file keeps being replaced while we wait for its lock")

    def _last_rotated_link(self) -> tuple[int, str] | None:
        """(seq, hash) of the last record of the newest rotated file, if any."""
        try:
            fd = os.open(self._rotated(1), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            return scan_tail(fd, size)[0] if size else None
        finally:
            os.close(fd)

    def _rotate(self, fd: int) -> int:
        """Move the locked, full log aside as <name>.1 and return its locked, empty successor.

        The successor is created and locked under a temporary name and renamed
        over the log while the old name is still linked as <name>.1, so the
        path never goes missing: a concurrent writer can never create a stray
        file and chain a record into it.
        """
        import contextlib  # rotation is rare: keep the import off the common path

        folder, name = os.path.split(self.path_s)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.new")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # left by a crashed process with our pid
        new = os.open(tmp, _OPEN_FLAGS | os.O_EXCL, 0o600)
        try:
            fcntl.flock(new, fcntl.LOCK_EX)
            # Shift the run .1 … .top-1 up by one; when it is already `keep`
            # long, the last rename drops the oldest file.
            top = 1
            while top < self.keep and os.path.lexists(self._rotated(top)):
                top += 1
            if top == self.keep and os.path.lexists(self._rotated(top)):
                from xguard.audit.pruning import prune

                prune(folder, self._rotated(top))  # its output recordings go with it (issue 14)
            for n in range(top - 1, 0, -1):
                os.rename(self._rotated(n), self._rotated(n + 1))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._rotated(1))  # only still there when keep == 1
            os.link(self.path_s, self._rotated(1))
            os.rename(tmp, self.path_s)
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)  # the renames must survive a crash with the new line
            finally:
                os.close(dfd)
        except BaseException:
            os.close(new)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        return new

    def _forward(self, syslog: _Syslog, record: dict[str, Any], line: bytes) -> None:
        try:
            syslog.send(syslog.message(record, line))
            self.forward_error = None
        except (OSError, ValueError) as e:  # best effort: never fail or delay the append
            self.forward_error = f"syslog {syslog.address}: {e}"

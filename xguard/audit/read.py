"""Reading the audit log: list, filter, tail, follow, verify and report (issue 4).

Not on the hot path, but built for big logs: a million-line log must list its
last 20 records in well under a second, verify at 200,000 lines/s and grep at
100,000 lines/s. So lines are tested as bytes first (the timestamp is at a
fixed offset, a wanted field value is a byte substring) and only the lines
that pass are parsed as JSON; `verify` never parses JSON at all on a good
line, it hashes the bytes before `,"hash":"` and slices `seq` and `prev` out.

Files are read oldest first: <name>.N … <name>.1, then <name> itself.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256 as _sha256  # OpenSSL: three times the built-in module's speed
from itertools import islice
from pathlib import Path
from typing import Any

from xguard.audit.log import GENESIS, HASH_MARK, PREV_MARK, TORN_TAIL, lines_backwards, scan_tail
from xguard.errors import ExitCode, XguardError

_TS_LEN = 27  # 2024-05-01T10:00:00.123456Z
_TS_AT = len(b'{"ts":"')
_SEQ_MARK = b'"seq":'
_REPAIR_MARK = b'"repair":"' + TORN_TAIL.encode() + b'"'
_CHUNK = 8 * 1024 * 1024
_LOOKAHEAD = 1000  # lines read past a broken link to tell "reordered" from "missing"

OnBad = Callable[[Path, "int | None", bytes], None]


class AuditReadError(XguardError):
    """The log is missing or unreadable (exit 1, as `verify` exits for a broken log)."""

    exit_code = ExitCode.UNSAFE


# ---------------------------------------------------------------------------
# Files and lines


def log_files(path: Path) -> list[Path]:
    """The log's files, oldest first: rotated ones (<name>.N … <name>.1), then <name>."""
    rotated: list[tuple[int, Path]] = []
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        names = []
    except OSError as e:
        raise AuditReadError(f"cannot read the audit log folder {path.parent}: {e.strerror}") from e
    for name in names:
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and suffix.isdigit():
            rotated.append((int(suffix), path.parent / name))
    files = [p for _, p in sorted(rotated, reverse=True)]
    if path.exists():
        files.append(path)
    return files


def existing_files(path: Path) -> list[Path]:
    """log_files(), but a missing log is an error: `xguard: no audit log at …`."""
    files = log_files(path)
    if not files:
        raise AuditReadError(f"no audit log at {path}")
    for f in files:
        if not f.is_file():
            raise AuditReadError(f"cannot read the audit log {f}: not a regular file")
        if not os.access(f, os.R_OK):
            raise AuditReadError(f"cannot read the audit log {f}: permission denied")
    return files


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise AuditReadError(f"cannot read the audit log {path}: {e.strerror}") from e


def line_blocks(f: Path) -> Iterator[tuple[list[bytes], bool]]:
    """The lines of a file (without newlines) in big blocks, read in big chunks.

    Each item is (lines, ended by newlines); only a torn last line comes with False.
    """
    fd = _open(f)
    try:
        rest = b""
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield lines, True
        if rest:
            yield [rest], False
    finally:
        os.close(fd)


def numbered_lines(files: Iterable[Path]) -> Generator[tuple[Path, int, bytes, bool], None, None]:
    """(file, line number, line without newline, ended by a newline) for every line."""
    for f in files:
        lineno = 0
        for lines, ended in line_blocks(f):
            for line in lines:
                lineno += 1
                yield f, lineno, line, ended


# ---------------------------------------------------------------------------
# Time


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def format_ts(when: datetime) -> str:
    """A datetime in the log's own timestamp format, so times compare as strings."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, now: datetime | None = None) -> str:
    """`15m`, `2h`, `7d` (ago) or an ISO 8601 time -> a log timestamp string.

    A time without a zone is local time, as `date` and `journalctl` read it.
    Raises ValueError when the text is neither.
    """
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text)
    if m:
        return format_ts(now - timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)]))
    when = datetime.fromisoformat(text.strip())
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return format_ts(when)


def parse_ts(ts: str) -> datetime:
    """A log timestamp -> an aware datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------
# Filters


def _escaped(text: str) -> list[bytes]:
    """How `text` can appear inside a JSON string in the log (UTF-8, or \\u escaped)."""
    forms = {json.dumps(text, ensure_ascii=False)[1:-1].encode(), json.dumps(text)[1:-1].encode()}
    return sorted(forms)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@dataclass(frozen=True)
class Filter:
    """Which records to show. Empty fields match everything.

    `grep` is a case-sensitive substring of any text in the record (command,
    units, cwd, note …, but not prev/hash); `cwd` matches that folder and the
    folders under it; the others must equal a field (`decision` and `event`
    take several values).
    """

    since: str | None = None  # log timestamp strings (see parse_time)
    until: str | None = None
    session: str | None = None
    decision: tuple[str, ...] = ()
    event: tuple[str, ...] = ()
    grep: str | None = None
    cwd: str | None = None
    user: str | None = None
    _needles: tuple[tuple[bytes, ...], ...] = field(
        default=(), init=False, repr=False, compare=False
    )
    _bounds: tuple[bytes | None, bytes | None] = field(
        default=(None, None), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_bounds",
            tuple(None if t is None else t.encode() for t in (self.since, self.until)),
        )
        # Byte substrings a matching line must contain (one of each group):
        # cheap to test, and they throw away most lines before json.loads.
        needles: list[tuple[bytes, ...]] = []
        for key, value in (("session", self.session), ("user", self.user)):
            if value is not None:
                needles.append(tuple(b'"%s":"%s"' % (key.encode(), v) for v in _escaped(value)))
        for key, values in (("decision", self.decision), ("event", self.event)):
            if values:
                needles.append(
                    tuple(b'"%s":"%s"' % (key.encode(), v) for x in values for v in _escaped(x))
                )
        if self.cwd is not None:
            needles.append(tuple(b'"cwd":"' + v for v in _escaped(self.cwd)))
        if self.grep:
            needles.append(tuple(_escaped(self.grep)))
        object.__setattr__(self, "_needles", tuple(needles))

    def quick(self, raw: bytes) -> bool:
        """False when the line surely does not match; True means "parse and ask matches()"."""
        since, until = self._bounds
        if since is not None or until is not None:
            ts = raw[_TS_AT : _TS_AT + _TS_LEN]
            if (since is not None and ts < since) or (until is not None and ts > until):
                return False
        return all(any(n in raw for n in group) for group in self._needles)

    def matches(self, rec: dict[str, Any]) -> bool:
        """The exact test on a parsed record."""
        ts = rec.get("ts")
        if self.since is not None and not (isinstance(ts, str) and ts >= self.since):
            return False
        if self.until is not None and not (isinstance(ts, str) and ts <= self.until):
            return False
        if self.session is not None and rec.get("session") != self.session:
            return False
        if self.user is not None and rec.get("user") != self.user:
            return False
        if self.decision and rec.get("decision") not in self.decision:
            return False
        if self.event and rec.get("event") not in self.event:
            return False
        if self.cwd is not None:
            cwd = rec.get("cwd")
            root = self.cwd.rstrip("/") or "/"
            if not (
                isinstance(cwd, str) and (cwd == root or cwd.startswith(root.rstrip("/") + "/"))
            ):
                return False
        if self.grep:
            body = {k: v for k, v in rec.items() if k not in ("prev", "hash")}
            if not any(self.grep in s for s in _strings(body)):
                return False
        return True


@dataclass(slots=True)
class Entry:
    """One record as read: the parsed object and the exact bytes stored."""

    record: dict[str, Any]
    raw: bytes  # the line without its newline
    file: Path
    line: int | None  # 1-based; None when read from the end of the file


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def _seq_of(raw: bytes) -> int | None:
    """The `seq` of a line, sliced out without parsing the JSON."""
    i = raw.find(_SEQ_MARK, 0, 64)
    if i < 0:
        return None
    j = raw.find(b",", i)
    try:
        return int(raw[i + len(_SEQ_MARK) : j])
    except ValueError:
        return None


def entries(
    path: Path, filt: Filter | None = None, *, on_bad: OnBad | None = None
) -> Iterator[Entry]:
    """Every matching record, oldest first, across rotated files.

    Lines that are not records are passed to `on_bad` (when they could have
    matched) and skipped.
    """
    filt = filt or Filter()
    for f, lineno, raw, _ in numbered_lines(existing_files(path)):
        if not filt.quick(raw):
            continue
        rec = _parse(raw)
        if rec is None:
            if on_bad is not None:
                on_bad(f, lineno, raw)
            continue
        if filt.matches(rec):
            yield Entry(rec, raw, f, lineno)


def _backwards(f: Path, fd: int, size: int, filt: Filter, on_bad: OnBad | None) -> Iterator[Entry]:
    lines = lines_backwards(fd, size)
    torn = next(lines)
    if torn and on_bad is not None:
        on_bad(f, None, torn)
    for raw in lines:
        if not filt.quick(raw):
            continue
        rec = _parse(raw)
        if rec is None:
            if on_bad is not None:
                on_bad(f, None, raw)
        elif filt.matches(rec):
            yield Entry(rec, raw, f, None)


def _tail_of(
    files: list[Path],
    n: int,
    filt: Filter,
    on_bad: OnBad | None,
    live: tuple[int, int] | None = None,
) -> list[Entry]:
    """The last n matching entries of `files` (newest file last), oldest first.

    `live` is (fd, size) of the last file, when the caller holds it open.
    """
    out: list[Entry] = []
    for i in range(len(files) - 1, -1, -1):
        if len(out) >= n:
            break
        if live is not None and i == len(files) - 1:
            out.extend(islice(_backwards(files[i], live[0], live[1], filt, on_bad), n - len(out)))
            continue
        fd = _open(files[i])
        try:
            size = os.fstat(fd).st_size
            out.extend(islice(_backwards(files[i], fd, size, filt, on_bad), n - len(out)))
        finally:
            os.close(fd)
    out.reverse()
    return out


def tail(
    path: Path, n: int, filt: Filter | None = None, *, on_bad: OnBad | None = None
) -> list[Entry]:
    """The last n matching records, oldest first, read from the END of the log.

    Only as many blocks are read as it takes to find n matches, so `--last 20`
    costs the same on a log of a hundred lines or of a million.
    """
    if n <= 0:
        return []
    return _tail_of(existing_files(path), n, filt or Filter(), on_bad)


class _Feed:
    """Turns bytes appended to log files into entries, each record once (by seq)."""

    def __init__(self, filt: Filter, on_bad: OnBad | None, after: int) -> None:
        self.filt = filt
        self.on_bad = on_bad
        self.seen = after  # highest seq read so far, shown or not
        self.buf = b""

    def read(self, f: Path, fd: int, pos: int) -> Generator[Entry, None, int]:
        """Entries for the complete lines of fd from pos on; returns the new position."""
        while True:
            data = os.pread(fd, _CHUNK, pos)
            if not data:
                return pos
            pos += len(data)
            parts = (self.buf + data).split(b"\n")
            self.buf = parts.pop()
            for raw in parts:
                seq = _seq_of(raw)
                if seq is None:
                    self._bad(f, raw)
                    continue
                if seq <= self.seen:
                    continue
                self.seen = seq
                if not self.filt.quick(raw):
                    continue
                rec = _parse(raw)
                if rec is None:
                    self._bad(f, raw)
                elif self.filt.matches(rec):
                    yield Entry(rec, raw, f, None)

    def end_of_file(self, f: Path) -> None:
        """The file is complete: what is left in the buffer is a torn line."""
        if self.buf:
            self._bad(f, self.buf)
        self.buf = b""

    def _bad(self, f: Path, raw: bytes) -> None:
        if self.on_bad is not None:
            self.on_bad(f, None, raw)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _rotated_after(path: Path, old: os.stat_result) -> list[Path]:
    """The rotated files newer than `old` (all of them when it is gone), oldest first."""
    files = log_files(path)[:-1]
    for i, f in enumerate(files):
        try:
            if _same_file(os.stat(f), old):
                return files[i + 1 :]
        except FileNotFoundError:
            continue
    return files


def _last_seq(fd: int, size: int) -> int:
    lines = lines_backwards(fd, size)
    next(lines)
    for raw in lines:
        seq = _seq_of(raw)
        if seq is not None:
            return seq
    return 0


def follow(
    path: Path,
    filt: Filter | None = None,
    *,
    last: int = 10,
    on_bad: OnBad | None = None,
    poll: float = 0.2,
    stop: Callable[[], bool] | None = None,
) -> Generator[Entry, None, None]:
    """Like `tail -F`: the last `last` matching records, then each new one as it is written.

    Survives rotation: when the log's name points to a new file, the old file
    is read to its end, then any file rotated after it, then the new file; a
    record is never shown twice. Runs until `stop()` returns True (never, by
    default).
    """
    filt = filt or Filter()
    existing_files(path)
    fd = _open(path)
    try:
        pos = os.fstat(fd).st_size
        if last > 0:
            yield from _tail_of(log_files(path), last, filt, on_bad, live=(fd, pos))
        feed = _Feed(filt, on_bad, after=_last_seq(fd, pos))
        while True:
            pos = yield from feed.read(path, fd, pos)
            try:
                now: os.stat_result | None = os.stat(path)
            except FileNotFoundError:
                now = None
            mine = os.fstat(fd)
            if now is not None and not _same_file(now, mine):
                # Rotated. Writers stop writing to a file once it is renamed
                # (they re-check the inode under the lock), so the old file is
                # complete: open the new one first, then catch up in order.
                new_fd = _open(path)
                yield from feed.read(path, fd, pos)
                feed.end_of_file(path)
                for f in _rotated_after(path, mine):
                    rfd = _open(f)
                    try:
                        yield from feed.read(f, rfd, 0)
                    finally:
                        os.close(rfd)
                    feed.end_of_file(f)
                os.close(fd)
                fd, pos = new_fd, 0
                continue
            if now is not None and now.st_size < pos:
                pos = 0  # truncated in place: read it again (seen records are skipped)
                feed.buf = b""
            if stop is not None and stop():
                return
            time.sleep(poll)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Verify


@dataclass
class Head:
    """A point in the chain: a record's seq and hash (what a reviewer saves as an anchor)."""

    seq: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        """{"seq": N, "hash": "…"}."""
        return {"seq": self.seq, "hash": self.hash}


@dataclass
class Problem:
    """Something wrong at one line.

    kind: edited, missing, inserted, reordered, restarted, not JSON, not a
    record, torn, truncated, anchor or recording (an output recording that
    is missing or does not match its exit record); in notes also start (history begins
    after rotation dropped older files) and repaired junk lines.
    """

    file: Path
    line: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict."""
        return {"file": str(self.file), "line": self.line, "kind": self.kind, "detail": self.detail}


@dataclass
class VerifyResult:
    """What verify found: the first problem (None when intact), notes, and the head."""

    problem: Problem | None
    head: Head | None
    records: int
    files: list[Path]
    notes: list[Problem] = field(default_factory=list)
    recordings: int = 0  # output recordings checked against their exit records (issue 14)

    @property
    def ok(self) -> bool:
        """True when the chain is intact (notes do not count against it)."""
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return {
            "ok": self.ok,
            "problem": self.problem.to_json() if self.problem else None,
            "notes": [n.to_json() for n in self.notes],
            "head": self.head.to_json() if self.head else None,
            "records": self.records,
            "recordings": self.recordings,
            "files": [str(f) for f in self.files],
        }


def read_anchor(file: Path) -> Head:
    """A saved head: `verify --json` output, an audit line, or text with `seq N` and a hash.

    Raises ValueError when the file holds no head.
    """
    text = file.read_text(encoding="utf-8", errors="replace")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        head: dict[str, Any] = obj["head"] if isinstance(obj.get("head"), dict) else obj
        seq, digest = head.get("seq"), head.get("hash")
        if type(seq) is int and isinstance(digest, str) and len(digest) == 64:
            return Head(seq, digest)
    # The last "seq N … <hash>" wins: in verify's text output that is the head line.
    found = re.findall(r"seq\W{0,3}(\d+)\D{1,10}?\b([0-9a-f]{64})\b", text)
    if found:
        return Head(int(found[-1][0]), found[-1][1])
    raise ValueError(f"{file} holds no head (expected a seq and a 64-digit hash)")


@dataclass
class _Link:
    """A line whose hash checks out, reduced to what the chain needs."""

    seq: int
    prev: str
    hash: str
    file: Path
    line: int


def _link_of(f: Path, lineno: int, raw: bytes) -> _Link | str:
    """The line as a chain link, or what is wrong with it: edited, not a record, not JSON."""
    i = raw.rfind(HASH_MARK)
    if i > 0 and len(raw) == i + 75 and raw.endswith(b'"}'):
        body, stored = raw[:i], raw[i + 9 : i + 73]
        if _sha256(body).hexdigest().encode() != stored:
            return "edited"
        seq = _seq_of(body)
        if seq is not None and body[-74:-65] == PREV_MARK:
            return _Link(
                seq, body[-65:-1].decode("ascii", "replace"), stored.decode("ascii"), f, lineno
            )
    return "not a record" if _parse(raw) is not None else "not JSON"


_JUNK = {
    "torn": "the last line has no newline: a write was cut short",
    "not JSON": "the line is not JSON",
    "not a record": "the line is JSON but not an audit record (no seq, prev and hash)",
}


def verify(path: Path, anchor: Head | None = None, keep: int | None = None) -> VerifyResult:
    """Check the hash chain across all files and name the first bad record.

    Every line must hash to its `hash`; each record's `prev` must be the hash
    of the record before it and its `seq` one more. A line that is not a
    record is accepted only when the record after it says `"repair": "torn
    tail"` and chains on from the last good one (a writer was interrupted;
    it is listed in `notes`). With `anchor`, the log must still hold that
    seq with that hash and go on from it: that catches a truncated tail.
    With `keep` (the config's audit.keep), a history that starts after seq 1
    must have all `keep` rotated files: the writer drops the oldest file only
    then, so fewer means files were removed.

    A first pass reads without locking, so writers never wait on a verify;
    if it finds a break, a second pass holds the writers' lock, so a file
    rotated under the first pass's feet is never reported as a break.
    """
    try:
        first = _verify_once(path, anchor, keep)
        if first.ok:
            return first
    except AuditReadError:
        pass  # a rotated file briefly missing: look again under the lock
    with writers_lock(path):
        return _verify_once(path, anchor, keep)


def _verify_once(path: Path, anchor: Head | None, keep: int | None) -> VerifyResult:
    files = existing_files(path)
    v = _Verifier(files, anchor, keep)
    v.run()
    problem = v.problem or _check_recordings(path.parent, v.outputs)
    result = VerifyResult(problem, _head(files), v.count, files, v.notes)
    result.recordings = sum(1 for _f, _n, raw in v.outputs if b'"file":"' in raw)
    return result


# A key, not text: inside a JSON string every `"` is escaped.
_OUTPUT_MARK = b'"output":{"'


def _check_recordings(audit_dir: Path, outputs: list[tuple[Path, int, bytes]]) -> Problem | None:
    """The first exit record whose output recording is missing or altered (issue 14)."""
    from xguard.audit.playback import check

    for f, lineno, raw in outputs:
        rec = _parse(raw)
        out = rec.get("output") if rec else None
        if not isinstance(out, dict) or rec is None or rec.get("event") != "exit":
            continue
        wrong = check(str(audit_dir), out)
        if wrong is not None:
            return Problem(f, lineno, "recording", f"command {rec.get('id')}: {wrong}")
    return None


@contextmanager
def writers_lock(path: Path) -> Iterator[None]:
    """Hold the lock every writer takes (a shared flock on the live log), so
    no record is appended and no file rotated meanwhile."""
    import fcntl

    for _ in range(1000):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            yield  # no live log: nothing writes to it
            return
        except OSError as e:
            raise AuditReadError(f"cannot read the audit log {path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                now = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            mine = os.fstat(fd)
            if now is not None and _same_file(now, mine):
                yield
                return
        finally:
            os.close(fd)  # closing drops the lock
    raise AuditReadError(f"the audit log {path} keeps being replaced while we wait for its lock")


class _Verifier:
    """The state of one verify pass: a fast loop for good lines, `step` for the rest."""

    def __init__(self, files: list[Path], anchor: Head | None, keep: int | None = None) -> None:
        self.files = files
        self.anchor = anchor
        self.keep = keep
        self.anchor_seen = False
        self.notes: list[Problem] = []
        self.problem: Problem | None = None
        self.last: _Link | None = None
        self.junk: Problem | None = None  # the first junk line not yet explained
        self.count = 0
        # Exit records that vouch for an output recording (issue 14).
        self.outputs: list[tuple[Path, int, bytes]] = []

    def run(self) -> None:
        """Check every line; stop at the first problem."""
        anchor_seq = self.anchor.seq if self.anchor else -1
        # The last good record, as locals: this loop runs a million times, and
        # a good line costs one hash, a few slices and no JSON parsing. It
        # relies on the writer's layout ({"ts":"<27 chars>","seq":N,… ,"prev":
        # "<64>","hash":"<64>"}); any other line goes to step(), which decides.
        last_seq, last_hash, last_file, last_line = -1, b"", Path(), 0
        sha = _sha256
        for f in self.files:
            lineno = 0
            for lines, ended in line_blocks(f):
                for raw in lines:
                    lineno += 1
                    i = len(raw) - 75
                    if (
                        i > 0
                        and raw[i : i + 9] == HASH_MARK
                        and raw[-2:] == b'"}'
                        and self.junk is None
                        and raw[i - 65 : i - 1] == last_hash
                        and raw[i - 74 : i - 65] == PREV_MARK
                        and raw.startswith(b'","seq":%d,' % (last_seq + 1), _TS_AT + _TS_LEN)
                        and sha(raw[:i]).hexdigest().encode() == raw[i + 9 : -2]
                        and last_seq + 1 != anchor_seq
                    ):
                        last_seq += 1
                        last_hash, last_file, last_line = raw[i + 9 : -2], f, lineno
                        self.count += 1
                        if _OUTPUT_MARK in raw:
                            self.outputs.append((f, lineno, raw))
                        continue
                    if last_seq >= 0:
                        self.last = _Link(last_seq, "", last_hash.decode(), last_file, last_line)
                    if self.step(f, lineno, raw, ended):
                        return
                    if self.last is not None:
                        last_seq, last_hash = self.last.seq, self.last.hash.encode()
                        last_file, last_line = self.last.file, self.last.line
        if last_seq >= 0:
            self.last = _Link(last_seq, "", last_hash.decode(), last_file, last_line)
        if self.junk is not None:
            self.problem = self.junk
        elif self.anchor is not None and not self.anchor_seen:
            self.problem = _anchor_missing(self.anchor, self.last, self.files)

    def step(self, f: Path, lineno: int, raw: bytes, ended: bool) -> bool:
        """Check one line the fast loop did not accept; True means stop (self.problem is set)."""
        link = _link_of(f, lineno, raw)
        if link == "edited":
            self.problem = self.junk or Problem(
                f, lineno, "edited", "the line does not match its hash: it was changed"
            )
            return True
        if isinstance(link, str):
            if self.junk is None:
                what = link if ended else "torn"
                self.junk = Problem(f, lineno, what, _JUNK[what])
            return False
        if self.junk is not None and _REPAIR_MARK not in raw:
            self.problem = self.junk  # junk the writer did not explain: someone else wrote it
            return True
        last = self.last
        if last is None:
            problem = _check_start(link, self.files, self.keep, self.notes)
        elif link.seq == last.seq + 1 and link.prev == last.hash:
            problem = None
        else:
            problem = _classify(link, last, self.files)
        if problem is not None:
            self.problem = problem
            return True
        if self.junk is not None:
            self.junk.detail += f"; the writer noted it and seq {link.seq} chains on"
            self.notes.append(self.junk)
            self.junk = None
        if self.anchor is not None and link.seq == self.anchor.seq:
            if link.hash != self.anchor.hash:
                self.problem = Problem(
                    f,
                    lineno,
                    "anchor",
                    f"seq {link.seq} has hash {link.hash}, but the anchor "
                    f"says {self.anchor.hash}: the log was rewritten after the anchor was saved",
                )
                return True
            self.anchor_seen = True
        self.count += 1
        self.last = link
        if _OUTPUT_MARK in raw:
            self.outputs.append((f, lineno, raw))
        return False


def _head(files: list[Path]) -> Head | None:
    """The last record of the log (read from the end), whatever verify finds."""
    for f in reversed(files):
        fd = _open(f)
        try:
            size = os.fstat(fd).st_size
            link = scan_tail(fd, size)[0] if size else None
        finally:
            os.close(fd)
        if link is not None:
            return Head(*link)
    return None


def _check_start(
    link: _Link, files: list[Path], keep: int | None, notes: list[Problem]
) -> Problem | None:
    if link.seq == 1 and link.prev == GENESIS:
        return None
    if link.prev == GENESIS:
        return Problem(
            link.file, link.line, "missing", f"the first record has seq {link.seq}, expected 1"
        )
    rotated = [f for f in files if f.suffix[1:].isdigit()]  # <name>.N, not the live <name>
    span = "seq 1" if link.seq == 2 else f"seq 1-{link.seq - 1}"
    if rotated:
        numbers = sorted(int(f.suffix[1:]) for f in rotated)
        if keep is not None and numbers != list(range(1, keep + 1)):
            # The writer drops its oldest file only when .1 … .keep all exist.
            return Problem(
                link.file,
                link.line,
                "missing",
                f"history starts at seq {link.seq} with {len(numbers)} rotated "
                f"file{'s' if len(numbers) != 1 else ''} (.{', .'.join(map(str, numbers))}), "
                f"but audit.keep is {keep} and rotation drops a file only when all "
                f"{keep} exist: {span} were removed",
            )
        notes.append(
            Problem(
                link.file,
                link.line,
                "start",
                f"history starts at seq {link.seq}; older records were rotated away",
            )
        )
        return None
    return Problem(
        link.file, link.line, "missing", f"the log starts at seq {link.seq}: {span} removed"
    )


def _links_after(files: list[Path], after: _Link, n: int) -> list[_Link]:
    """Up to n good records that follow `after` in the files (read again: this is the slow path)."""
    out: list[_Link] = []
    lines = numbered_lines(files[files.index(after.file) :])
    for f, lineno, raw, _ in lines:
        if f == after.file and lineno <= after.line:
            continue
        link = _link_of(f, lineno, raw)
        if isinstance(link, _Link):
            out.append(link)
            if len(out) >= n:
                break
    lines.close()
    return out


def _classify(link: _Link, last: _Link, files: list[Path]) -> Problem:
    """Name what broke the chain between `last` and `link` (the slow path: it runs once)."""
    here = f"{link.file}:{link.line}"
    want = last.seq + 1
    if link.seq == want:
        return Problem(
            last.file,
            last.line,
            "edited",
            f"the record was rewritten: its hash no longer matches "
            f"the prev of the next record ({here})",
        )
    if link.prev == GENESIS and link.seq == 1:
        return Problem(
            link.file,
            link.line,
            "restarted",
            f"a new chain starts at seq 1 after seq {last.seq}: the log was recreated",
        )
    if link.seq < want:
        for f, lineno, raw, _ in numbered_lines(files):
            if (f, lineno) == (link.file, link.line):
                break
            if raw.endswith(link.hash.encode() + b'"}'):
                return Problem(
                    link.file, link.line, "inserted", f"a copy of {f}:{lineno} (seq {link.seq})"
                )
        return Problem(
            link.file,
            link.line,
            "inserted",
            f"seq {link.seq} after seq {last.seq}: an extra record",
        )
    ahead = _links_after(files, link, _LOOKAHEAD)
    nxt = next((a for a in ahead if a.seq == want and a.prev == last.hash), None)
    if nxt is not None:
        if any(a.hash == link.hash for a in ahead):
            return Problem(
                link.file,
                link.line,
                "inserted",
                f"a copy of seq {link.seq}, which appears again later",
            )
        return Problem(
            link.file,
            link.line,
            "reordered",
            f"seq {link.seq} comes before seq {want} ({nxt.file}:{nxt.line})",
        )
    gap = f"seq {want}" if link.seq == want + 1 else f"seq {want}-{link.seq - 1}"
    return Problem(
        link.file, link.line, "missing", f"{gap} removed before this line (after seq {last.seq})"
    )


def _anchor_missing(anchor: Head, last: _Link | None, files: list[Path]) -> Problem:
    end = files[-1]
    with open(end, "rb") as fh:
        nlines = sum(1 for _ in fh)
    if last is None or last.seq < anchor.seq:
        upto = last.seq if last else 0
        return Problem(
            end,
            nlines + 1,
            "truncated",
            f"the log ends at seq {upto}, but the anchor holds seq "
            f"{anchor.seq}: seq {upto + 1}-{anchor.seq} were removed",
        )
    return Problem(
        files[0], 1, "anchor", f"seq {anchor.seq} is no longer in the log (rotated away or removed)"
    )


# ---------------------------------------------------------------------------
# Report


def _percentile(values: list[float], pct: int) -> float:
    """Nearest-rank percentile of a non-empty list (integer arithmetic: no float rounding)."""
    ordered = sorted(values)
    rank = -(-pct * len(ordered) // 100)  # ceil(pct/100 * n)
    return ordered[max(rank, 1) - 1]


def _yaml_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _exact_regex(text: str) -> str:
    """^text$ with only regex metacharacters escaped (re.escape also escapes blanks, dashes)."""
    return "^" + re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text) + "$"


def allow_rule_yaml(kind: str, text: str, approvals: int) -> str | None:
    """A ready-to-paste allow rule for a unit, exact (anchored) so it allows nothing more.

    None when no exact rule can be written for it.
    """
    if not text.isprintable():
        return None  # a newline or control character: no rule written by hand should hold it
    comment = f"  # approved {approvals} time{'s' if approvals != 1 else ''}, never denied"
    if kind in ("command", "sql"):
        return f"- regex: {_yaml_str(_exact_regex(text))}{comment}\n  action: allow"
    if kind == "path":
        access, _, target = text.partition(" ")
        if any(c in target for c in "*?["):
            return None  # as a glob it would allow more than was approved
        return f"- path: {_yaml_str(target)}{comment}\n  access: {access}\n  action: allow"
    return None


def report(
    records: Iterable[dict[str, Any]], rule_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """The permission audit of issue 4 over `records` (already filtered by time).

    rules: hits and last hit for each rule id seen in a decision, and the ids
    of `rule_ids` never hit; approved: units approved by a reviewer and never
    denied, most often first, each with an exact allow rule; denials: counts by
    reason; time_to_decision: pending -> approved/denied, in seconds;
    sessions: commands, approvals, denials and duration per session.
    """
    hits: Counter[str] = Counter()
    last_hit: dict[str, str] = {}
    units_of: dict[str, list[dict[str, Any]]] = {}
    pending_at: dict[str, str] = {}
    decided_at: dict[str, str] = {}
    approved_ids: set[str] = set()
    denied_ids: set[str] = set()
    denials: Counter[str] = Counter()
    denied_texts: set[str] = set()
    sessions: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"commands": set(), "approvals": 0, "denials": 0, "first": None, "last": None}
    )
    total = 0
    for n, rec in enumerate(records):
        total += 1
        ev, rid, ts = rec.get("event"), rec.get("id"), rec.get("ts") or ""
        key = str(rid) if rid is not None else f"#{n}"
        units = [u for u in rec.get("units") or [] if isinstance(u, dict)]
        s = sessions[str(rec.get("session") or "(none)")]
        s["first"] = min(s["first"] or ts, ts)
        s["last"] = max(s["last"] or ts, ts)
        if ev in ("decision", "pending"):
            s["commands"].add(key)
            if key not in units_of:  # a request's units once, though it logs pending and decision
                units_of[key] = units
                for u in units:
                    r = u.get("rule")
                    if r:
                        hits[r] += 1
                        last_hit[r] = max(last_hit.get(r, ts), ts)
            if ev == "pending":
                pending_at.setdefault(key, ts)
        if ev == "decision" and rec.get("decision") == "deny":
            s["denials"] += 1
            for u in units:
                if u.get("decision") == "deny":
                    denied_texts.add(str(u.get("text")))
                    denials[str(u.get("why") or f"rule {u.get('rule')}")] += 1
        elif ev == "denied":
            s["denials"] += 1
            denied_ids.add(key)
            decided_at.setdefault(key, ts)
            denials[f"reviewer: {rec.get('note') or 'no reason given'}"] += 1
        elif ev == "approved" or (ev == "decision" and rec.get("reviewer")):
            # A request approved by `xguard approve` logs `approved`, and its
            # decision line carries the reviewer: count it once.
            if key not in approved_ids:
                approved_ids.add(key)
                s["approvals"] += 1
            decided_at.setdefault(key, ts)

    for key in denied_ids:
        denied_texts.update(str(u.get("text")) for u in units_of.get(key, []))
    approved: Counter[tuple[str, str]] = Counter()
    for key in approved_ids:
        for u in units_of.get(key, []):
            if u.get("decision") == "require_approval" and str(u.get("text")) not in denied_texts:
                approved[(str(u.get("kind")), str(u.get("text")))] += 1

    waits = [
        (parse_ts(decided_at[k]) - parse_ts(p)).total_seconds()
        for k, p in pending_at.items()
        if k in decided_at
    ]
    known = list(dict.fromkeys(rule_ids)) if rule_ids is not None else None
    return {
        "records": total,
        "rules": [
            {"rule": r, "hits": c, "last_hit": last_hit[r]}
            for r, c in sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "unused_rules": [r for r in known if r not in hits] if known is not None else None,
        "approved": [
            {"kind": k, "text": t, "approvals": c, "yaml": allow_rule_yaml(k, t, c)}
            for (k, t), c in sorted(approved.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "denials": [
            {"reason": r, "count": c}
            for r, c in sorted(denials.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "time_to_decision": {
            "count": len(waits),
            "median_s": _percentile(waits, 50) if waits else None,
            "p95_s": _percentile(waits, 95) if waits else None,
        },
        "sessions": [
            {
                "session": name,
                "commands": len(s["commands"]),
                "approvals": s["approvals"],
                "denials": s["denials"],
                "first": s["first"],
                "last": s["last"],
                "duration_s": (parse_ts(s["last"]) - parse_ts(s["first"])).total_seconds()
                if s["first"]
                else 0.0,
            }
            for name, s in sorted(sessions.items())
        ],
    }


def _seconds(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 120:
        return f"{x:.1f}s"
    if x < 7200:
        return f"{x / 60:.1f}m"
    return f"{x / 3600:.1f}h"


def format_report(rep: dict[str, Any], since: str | None = None) -> str:
    """The report as plain text; the allow rules are YAML ready to paste."""
    out = [
        f"Audit report{' since ' + since if since else ''}: {rep['records']} records",
        "",
        "Rules (hits, last hit):",
    ]
    out += [f"  {r['hits']:6d}  {r['last_hit']}  {r['rule']}" for r in rep["rules"]] or [
        "  (no decisions)"
    ]
    if rep["unused_rules"] is None:
        out += ["", "Rules never used: unknown (the rules file could not be read)"]
    else:
        out += ["", "Rules never used:"] + ([f"  {r}" for r in rep["unused_rules"]] or ["  (none)"])
    out += [
        "",
        "Approved most often and never denied (allow rules, ready to paste under `rules:`):",
    ]
    out += [a["yaml"] for a in rep["approved"] if a["yaml"]] or ["  (none)"]
    out += ["", "Denials by reason:"]
    out += [f"  {d['count']:6d}  {d['reason']}" for d in rep["denials"]] or ["  (none)"]
    t = rep["time_to_decision"]
    out += [
        "",
        f"Time to decision: median {_seconds(t['median_s'])}, p95 {_seconds(t['p95_s'])} "
        f"({t['count']} decisions)",
        "",
        "Sessions (commands, approvals, denials, duration):",
    ]
    out += [
        f"  {s['session']}: {s['commands']} commands, {s['approvals']} approvals, "
        f"{s['denials']} denials, {_seconds(s['duration_s'])}"
        for s in rep["sessions"]
    ] or ["  (none)"]
    return "\n".join(out) + "\n"


def forwarded_heads(file: Path) -> dict[int, str]:
    """(seq -> hash) of every audit record found in a syslog file.

    The forwarded messages carry the audit line itself as their MSG; any
    syslog header before it is skipped, and a line counts only when its hash
    matches its bytes (see audit.parse_link).
    """
    from xguard.audit.log import parse_link

    out: dict[int, str] = {}
    with open(file, "rb") as f:
        for raw in f:
            i = raw.find(b'{"ts":"')
            if i < 0:
                continue
            link = parse_link(raw[i:].rstrip(b"\r\n"))
            if link is not None:
                out[link[0]] = link[1]
    return out


def cross_check(
    path: Path,
    forwarded: dict[int, str],
    keep: int | None = None,
    copy: str = "forwarded",
) -> tuple[VerifyResult, list[str]]:
    """Verify the local log against the copy forwarded to syslog.

    The newest forwarded record is used as an anchor (the local log must hold
    and extend it: a truncated or rewritten tail fails), and every forwarded
    record still present locally must carry the same hash.
    """
    top = max(forwarded)
    result = verify(path, Head(top, forwarded[top]), keep)
    local: dict[int, str] = {}
    for e in entries(path):
        seq, digest = e.record.get("seq"), e.record.get("hash")
        if isinstance(seq, int) and isinstance(digest, str):
            local[seq] = digest
    first = min(local) if local else top + 1
    mismatches = [
        f"seq {s}: local {local.get(s, 'missing')}, {copy} {h}"
        for s, h in sorted(forwarded.items())
        if s >= first and local.get(s) != h
    ]
    return result, mismatches

"""Output recordings: what a gated command printed, beside the audit log (issue 14).

One file per command, `<audit dir>/output/<id>.xgrec.gz`: a gzip stream of

    b"XGREC1\\n" then frames: kind (1 byte), microseconds since the start
    (8 bytes, big-endian), payload length (4 bytes, big-endian), payload

Kinds: 0 header (JSON: v, id, tty, cols, rows, started), 1 stdout, 2 stderr,
3 terminal (stdout and stderr through one pty or one pipe: the caller gave
both the same file), 4 window size (ASCII "COLS ROWS"), 5 trailer (JSON: the
same summary the exit record carries). The output frames hold the bytes as
stored: secret-shaped strings masked, and nothing past `max_bytes`.

The exit record's `output` object covers the file: `sha256` is over the
stored output bytes in order (what `xguard audit show ID --output` prints),
`file_sha256` over the compressed file as written. `xguard audit verify`
hashes the file, so editing, truncating or deleting it breaks the record
that names it.

This module is on the hot path (the executor records every command), so it
imports the standard library's C modules only, `zlib` once there is output,
and no `re`: the secret shapes are matched by hand. Reading
back, checking and pruning are in audit/playback.py.
"""

from __future__ import annotations

import os
import time

from xguard.audit.log import dumps, sha256
from xguard.audit.pruning import FOLDER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAGIC = b"XGREC1\n"
SUFFIX = ".xgrec.gz"
HEADER, STDOUT, STDERR, TERMINAL, RESIZE, TRAILER = range(6)
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr", TERMINAL: "terminal"}
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
FRAME_HEAD = 13

# Masking: a cheap substring test first (C-speed `in`), the regex only when
# one of these occurs. A secret split between two reads is caught because a
# read that ends inside a word (or in "Bearer ", or in a BEGIN line) keeps
# that word back until the next read; output that ends at a line or word
# break is stored at once, with its own timing.
TRIGGERS = (
    b"AKIA",
    b"ASIA",
    b"PRIVATE KEY-----",
    b"ghp_",
    b"gho_",
    b"ghu_",
    b"ghs_",
    b"ghr_",
    b"github_pat_",
    b"xoxb-",
    b"xoxp-",
    b"earer ",
    b"EARER ",
)
WINDOW = 512  # the most kept back: longer than any token the patterns accept (255)
TOKEN_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.+/=~"
_KEY_END_KEEP = 96  # what stays held back inside a private key, for a split END line
# The secret shapes, written as literal prefixes and byte classes rather than
# regular expressions: `re` (with `enum`) costs ~6 ms to import, on the hot
# path. What each accepts, as a regex:
#   aws     \b(AKIA|ASIA)[0-9A-Z]{16}\b
#   github  \b(gh[pousr]_[A-Za-z0-9]{20,255} | github_pat_[A-Za-z0-9_]{20,255})
#   slack   \bxox[bp]-[A-Za-z0-9-]{10,255}
#   bearer  \b[Bb](earer|EARER) +[A-Za-z0-9._~+/=-]{8,255}
#   key     -----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----   (to -----END … PRIVATE KEY-----)
_UPPER_DIGITS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ALNUM = _UPPER_DIGITS + b"abcdefghijklmnopqrstuvwxyz"
_WORD = frozenset(_ALNUM + b"_")
_SHAPES: tuple[tuple[bytes, str, bytes, int, int], ...] = tuple(
    (lit, kind, chars, least, most)
    for lits, kind, chars, least, most in (
        ((b"AKIA", b"ASIA"), "aws", _UPPER_DIGITS, 16, 16),
        ((b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"), "github", _ALNUM, 20, 255),
        ((b"github_pat_",), "github", _ALNUM + b"_", 20, 255),
        ((b"xoxb-", b"xoxp-"), "slack", _ALNUM + b"-", 10, 255),
        ((b"Bearer ", b"bearer ", b"BEARER ", b"bEARER "), "bearer", _ALNUM + b"._~+/=-", 8, 255),
    )
    for lit in lits
)
_KEY_LINE_END = b"PRIVATE KEY-----"
_KEY_MIDDLE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "


def _run(buf: bytes, at: int, chars: bytes, most: int) -> int:
    """How many bytes from `at` are in `chars` (counting to most + 1)."""
    seg = buf[at : at + most + 1]
    return len(seg) - len(seg.lstrip(chars))


def _shape_at(buf: bytes, i: int, shape: tuple[bytes, str, bytes, int, int]) -> int:
    """The end of the secret whose literal starts at i, or -1."""
    lit, _kind, chars, least, most = shape
    if i > 0 and buf[i - 1] in _WORD:
        return -1  # \b: not inside a longer word
    j = i + len(lit)
    if lit[-1:] == b" ":
        j += _run(buf, j, b" ", 1 << 16)
    n = _run(buf, j, chars, most)
    if n < least:
        return -1
    exact_and_cut = least == most and (n != most or (j + n < len(buf) and buf[j + n] in _WORD))
    if exact_and_cut:  # aws: exactly 16, then a word break
        return -1
    return j + min(n, most)


def _key_line(buf: bytes, start: bytes, pos: int) -> tuple[int, int] | None:
    """The first `-----BEGIN|END … PRIVATE KEY-----` line at or after pos: (start, end)."""
    i = buf.find(start, pos)
    while i >= 0:
        j = buf.find(_KEY_LINE_END, i + len(start), i + len(start) + 40 + len(_KEY_LINE_END))
        if j >= 0 and not buf[i + len(start) : j].lstrip(_KEY_MIDDLE):
            return i, j + len(_KEY_LINE_END)
        i = buf.find(start, i + 1)
    return None


def find_secret(buf: bytes, pos: int) -> tuple[int, int, str] | None:
    """The first secret-shaped string at or after pos: (start, end, kind)."""
    best: tuple[int, int, str] | None = None
    for shape in _SHAPES:
        lit = shape[0]
        i = buf.find(lit, pos)
        while i >= 0 and (best is None or i < best[0]):
            end = _shape_at(buf, i, shape)
            if end >= 0:
                best = (i, end, shape[1])
                break
            i = buf.find(lit, i + 1)
    key = _key_line(buf, b"-----BEGIN ", pos)
    if key is not None and (best is None or key[0] < best[0]):
        best = (key[0], key[1], "key")
    return best


def mask_text(kind: str) -> bytes:
    return b"[masked:" + kind.encode() + b"]"


class Masker:
    """Streaming masking of one output stream; `masked` counts the secrets replaced."""

    def __init__(self) -> None:
        self.carry = b""
        self.in_key = False
        self.masked = 0

    def feed(self, data: bytes, final: bool = False) -> bytes:
        """The bytes now safe to store; a word cut by the end of `data` waits for more."""
        buf = self.carry + data if self.carry else data
        out: list[bytes] = []
        pos = 0
        if self.in_key:
            pos = self._skip_key(buf, 0, final)
            if self.in_key:
                return b""
        limit = len(buf) if final else _held_from(buf)
        if limit <= pos:
            self.carry = buf[pos:]
            return b""
        if any(t in buf for t in TRIGGERS):
            while True:
                m = find_secret(buf, pos)
                if m is None or m[0] >= limit:
                    break
                start, end, kind = m
                out.append(buf[pos:start])
                self.masked += 1
                if kind == "key":
                    # Everything from BEGIN to END goes, however long.
                    out.append(mask_text("private-key"))
                    self.in_key = True
                    pos = self._skip_key(buf, end, final)
                    if self.in_key:
                        return b"".join(out)
                    continue
                out.append(mask_text(kind))
                pos = end
        cut = max(limit, pos)
        out.append(buf[pos:cut])
        self.carry = buf[cut:]
        return b"".join(out)

    def _skip_key(self, buf: bytes, pos: int, final: bool) -> int:
        """Drop private-key text from `pos`; the position after its END line, when seen."""
        m = _key_line(buf, b"-----END ", pos)
        if m is not None:
            self.in_key = False
            self.carry = b""
            return m[1]
        self.carry = b"" if final else buf[max(pos, len(buf) - _KEY_END_KEEP) :]
        if final:
            self.in_key = False
        return len(buf)


def _held_from(buf: bytes) -> int:
    """Where the part of `buf` that may be the start of a secret begins: the
    word it ends in, with a "Bearer " or an unfinished BEGIN line before it."""
    n = len(buf)
    p = len(buf.rstrip(TOKEN_BYTES))
    before = buf[max(0, p - 64) : p]
    words = before.rstrip(b" ")
    if len(words) < len(before) and words[-6:].lower() == b"bearer":
        p -= len(before) - len(words) + 6
    k = buf.rfind(b"-----BEGIN", max(0, n - 80))
    if k >= 0 and buf.find(b"KEY-----", k) < 0:
        p = min(p, k)
    while p > 0 and buf[p - 1] in _WORD:
        p -= 1  # keep what decides a word break (\b) with the word
    return max(p, n - WINDOW)


class Recorder:
    """Writes one command's recording while it runs; `finish()` gives the exit record's
    `output` object.

    The file is created at the first byte kept, so a command that prints
    nothing costs no file. A write that fails (a full disk) ends the
    recording, removes the partial file (so the exit record still fits) and
    the summary says why; the command and its output to the caller go on.
    """

    def __init__(
        self,
        audit_dir: str,
        cmd_id: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        mask: bool = True,
        level: int = 6,
    ) -> None:
        self.folder = os.path.join(audit_dir, FOLDER)
        self.cmd_id = cmd_id
        self.max_bytes = max_bytes
        self.mask = mask
        self.level = level
        self.t0 = time.monotonic_ns()
        self.total = 0  # bytes the command wrote
        self.kept = 0  # bytes stored (after masking)
        self.truncated = False
        self.error: str | None = None
        self.fd = -1
        self.name: str | None = None
        self.header: dict[str, Any] = {"v": 1, "id": cmd_id, "tty": False, "cols": 80, "rows": 24}
        self._z: Any = None
        self._content = sha256()
        self._file = sha256()
        self._maskers: dict[int, Masker] = {}
        self.started = time.time()
        self._summary: dict[str, Any] | None = None

    # -- what the executor calls ------------------------------------------------
    def begin(self, tty: bool, cols: int, rows: int) -> None:
        """Say what the command's output goes to (before it starts)."""
        self.header.update(tty=tty, cols=cols, rows=rows)
        self.t0 = time.monotonic_ns()
        self.started = time.time()

    def write(self, stream: int, data: bytes, t_us: int | None = None) -> None:
        """Record bytes the caller was just given, from stream 1, 2 or 3."""
        self.total += len(data)
        if self.truncated or self.error is not None:
            return
        if t_us is None:
            t_us = (time.monotonic_ns() - self.t0) // 1000
        if self.mask:
            # Each stream's held-back word waits for that stream's next bytes,
            # also when the other stream writes in between: flushing it then
            # stored a secret split around a write to the other stream whole.
            m = self._maskers.get(stream)
            if m is None:
                m = self._maskers[stream] = Masker()
            data = m.feed(data)
        self._keep(stream, data, t_us)

    @property
    def full(self) -> bool:
        """Nothing more will be kept: the rest need only be counted (see count)."""
        return self.truncated or self.error is not None

    def count(self, n: int) -> None:
        """Bytes past the cap that were counted, not shown to the recorder: in
        strict mode not sent to the broker, here moved to the caller by splice."""
        self.total += n
        if n:
            self.truncated = True

    def resize(self, cols: int, rows: int, t_us: int | None = None) -> None:
        """The terminal's size changed."""
        if t_us is None:
            t_us = (time.monotonic_ns() - self.t0) // 1000
        if not (self.truncated or self.error):
            self._frame(RESIZE, t_us, b"%d %d" % (cols, rows))

    def end(self) -> None:
        """The command's output has ended: write the trailer and make the file
        durable. The executor calls this before it gives the terminal back."""
        if self._summary is not None:
            return
        t_us = (time.monotonic_ns() - self.t0) // 1000
        if self.error is None:
            for s in list(self._maskers):
                self._flush_masker(s, t_us)
        summary: dict[str, Any] = {
            "bytes": self.total,
            "kept": self.kept,
            "truncated": self.truncated or self.error is not None,
            "masked": self.masked,
            "sha256": self._content.hexdigest(),
        }
        if self.fd >= 0 and self.error is None:
            self._frame(TRAILER, t_us, dumps(summary).encode())
            try:
                self._out(self._z.flush())
                os.fdatasync(self.fd)  # on disk before the exit record that vouches for it
            except OSError as e:
                self._fail(e)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.error is not None:
            summary.update(kept=0, sha256=None, error=self.error)
        elif self.name is not None:
            summary["file"] = f"{FOLDER}/{self.name}"
            summary["file_sha256"] = self._file.hexdigest()
        self._summary = summary

    def finish(self) -> dict[str, Any]:
        """The summary for the exit record (ending the recording if that is not done)."""
        self.end()
        assert self._summary is not None
        return self._summary

    @property
    def masked(self) -> int:
        return sum(m.masked for m in self._maskers.values())

    # -- inside -----------------------------------------------------------------
    def _flush_masker(self, stream: int, t_us: int) -> None:
        m = self._maskers.get(stream)
        if m is not None and (m.carry or m.in_key):
            self._keep(stream, m.feed(b"", final=True), t_us)

    def _keep(self, stream: int, data: bytes, t_us: int) -> None:
        if not data or self.truncated or self.error is not None:
            return
        room = self.max_bytes - self.kept
        if len(data) > room:
            data = data[:room]
            self.truncated = True  # the rest is counted in `bytes`, not kept
        if not data:
            return
        self.kept += len(data)
        self._content.update(data)
        self._frame(stream, t_us, data)

    def _frame(self, kind: int, t_us: int, payload: bytes) -> None:
        if self.fd < 0 and not self._open():
            return
        head = bytes((kind,)) + t_us.to_bytes(8, "big") + len(payload).to_bytes(4, "big")
        z = self._z
        try:
            self._out(z.compress(head))
            self._out(z.compress(payload))
        except OSError as e:
            self._fail(e)

    def _open(self) -> bool:
        if self.error is not None:
            return False
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            n = 1
            while True:
                # An approved request run again keeps its id: number the later runs.
                name = f"{self.cmd_id}{SUFFIX}" if n == 1 else f"{self.cmd_id}.{n}{SUFFIX}"
                try:
                    self.fd = os.open(os.path.join(self.folder, name), flags, 0o600)
                    break
                except FileExistsError:
                    n += 1
            self.name = name
            import zlib  # only once there is output to keep: ~0.4 ms

            self._z = zlib.compressobj(self.level, zlib.DEFLATED, 31)
            header = dumps({**self.header, "started": self.started}).encode()
            self._out(self._z.compress(MAGIC))
            self._out(
                self._z.compress(bytes((HEADER,)) + bytes(8) + len(header).to_bytes(4, "big"))
            )
            self._out(self._z.compress(header))
        except OSError as e:
            self._fail(e)
            return False
        return True

    def _out(self, data: bytes) -> None:
        while data:
            n = os.write(self.fd, data)
            self._file.update(data[:n])
            data = data[n:]

    def _fail(self, e: OSError) -> None:
        self.error = f"recording cut short: {e.strerror or e}"
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.name is not None:
            import contextlib  # a failed recording is rare: keep the import off the common path

            # Free the space: the exit record that says what happened must fit.
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.folder, self.name))
            self.name = None


def settings(ruleset: Any, profile: str | None) -> dict[str, Any]:
    """`record:` in effect: the top level's, with the profile's over it."""
    out: dict[str, Any] = {"output": True, "max_bytes": DEFAULT_MAX_BYTES, "mask": True}
    out.update(ruleset.setting("record", {}) or {})
    if profile:
        out.update((ruleset.profiles.get(profile) or {}).get("record") or {})
    return out


def start(
    ruleset: Any, profile: str | None, decision: Any, audit_dir: str, cmd_id: str
) -> tuple[Recorder | None, dict[str, Any] | None]:
    """(the recorder for a command about to run, or None; the exit record's
    `output` when nothing will be recorded and the record should say why)."""
    from xguard.util import parse_size

    conf = settings(ruleset, profile)
    if not conf.get("output", True):
        why = f"profile {profile}: record: false" if profile else "record.output: false"
        return None, {"recorded": False, "why": why}
    if decision.no_record:
        return None, {"recorded": False, "why": "; ".join(decision.no_record)}
    max_bytes = parse_size(conf.get("max_bytes"))
    return Recorder(
        audit_dir,
        cmd_id,
        max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
        mask=conf.get("mask", True) is not False,
    ), None

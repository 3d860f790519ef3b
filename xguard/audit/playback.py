"""Reading recordings back: frames, checks against the exit record, pruning (issue 14).

The format is described in audit/recording.py, which writes it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import zlib
from collections.abc import Iterator
from typing import Any

from xguard.audit.log import sha256
from xguard.audit.pruning import FOLDER
from xguard.audit.recording import (
    FRAME_HEAD,
    HEADER,
    MAGIC,
    STREAM_NAMES,
    TRAILER,
)
from xguard.errors import XguardError


class RecordingError(XguardError):
    """A recording that is missing, altered or cannot be decoded."""


class Recording:
    """A recording read back: its header, its frames and its trailer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.header: dict[str, Any] = {}
        self.trailer: dict[str, Any] | None = None

    def frames(self) -> Iterator[tuple[int, int, bytes]]:
        """(kind, microseconds, payload) of every frame, header and trailer included;
        RecordingError when the file is missing, cut or not a recording."""
        try:
            f = os.fdopen(open_regular(self.path), "rb")
        except OSError as e:
            raise RecordingError(f"cannot read the recording {self.path}: {e.strerror}") from None
        d = zlib.decompressobj(31)
        buf = b""
        seen_magic = False
        with f:
            while True:
                try:
                    chunk = f.read(1 << 16)
                    if chunk:
                        buf += d.decompress(chunk)
                except (OSError, zlib.error) as e:
                    raise RecordingError(f"the recording {self.path} is damaged: {e}") from None
                if not seen_magic and len(buf) >= len(MAGIC):
                    if not buf.startswith(MAGIC):
                        raise RecordingError(f"{self.path} is not an xguard recording")
                    buf = buf[len(MAGIC) :]
                    seen_magic = True
                while seen_magic and len(buf) >= FRAME_HEAD:
                    n = int.from_bytes(buf[9:13], "big")
                    if len(buf) < FRAME_HEAD + n:
                        break
                    kind, t = buf[0], int.from_bytes(buf[1:9], "big")
                    payload = buf[FRAME_HEAD : FRAME_HEAD + n]
                    buf = buf[FRAME_HEAD + n :]
                    if kind == HEADER:
                        self.header = json.loads(payload)
                    elif kind == TRAILER:
                        self.trailer = json.loads(payload)
                    yield kind, t, payload
                if not chunk:
                    break
        if not d.eof or buf or self.trailer is None:
            raise RecordingError(f"the recording {self.path} is cut short (no end)")

    def output(self) -> Iterator[tuple[int, int, bytes]]:
        """(stream, microseconds, bytes) of the output frames only."""
        for kind, t, payload in self.frames():
            if kind in STREAM_NAMES:
                yield kind, t, payload


def recording_path(audit_dir: str, output: dict[str, Any]) -> str | None:
    """The file an exit record's `output` object names, or None when it names none."""
    name = output.get("file")
    if not isinstance(name, str) or not name.startswith(FOLDER + "/") or ".." in name:
        return None
    return os.path.join(audit_dir, name)


def open_regular(path: str) -> int:
    """A descriptor of the regular file at `path`; OSError otherwise. A FIFO
    would block the open for ever and a link to /dev/zero never ends: put in
    a recording's place, either would hang `audit verify` and `audit show`
    instead of letting them report it. The last component is not followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.EINVAL, "not a regular file (a symbolic link)") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_sha256(path: str) -> str:
    """The hex SHA-256 of a regular file (OSError when it cannot be read or is not one)."""
    h = sha256()
    with os.fdopen(open_regular(path), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check(audit_dir: str, output: dict[str, Any]) -> str | None:
    """What is wrong with the recording an exit record vouches for, or None."""
    path = recording_path(audit_dir, output)
    if path is None:
        if output.get("kept") and not output.get("error"):
            return "the record keeps output but names no recording file"
        return None
    try:
        digest = file_sha256(path)
    except FileNotFoundError:
        return f"its recording {output.get('file')} is missing (deleted)"
    except OSError as e:
        return f"its recording {output.get('file')} cannot be read: {e.strerror}"
    if digest != output.get("file_sha256"):
        return f"its recording {output.get('file')} was altered (the hash no longer matches)"
    return None

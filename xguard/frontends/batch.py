"""`xguard check --batch FILE`: decide many commands in one process (SPEC §2).

Each input line is a JSON object with a "command" string; other fields are
copied through. A line that cannot be read, decided or written back gets one
error object of its own; it never ends the batch (issue 10). Bytes that are
not UTF-8 (in the file or on stdin) reach the reader as lone surrogates and
go back out as JSON escapes.

Speed: batch files repeat commands (a corpus, a replayed log), so the pure
steps are remembered, bounded: the parse of a text (the parser reads no
files) and, in the ruleset, the rules a unit text or a set of paths matches
(policy/decide.py). What the file system says (does a word name a file,
where does a symlink lead, what does a glob expand to) is remembered for at
most FS_TTL seconds (with what decide() works out from it, such as the
bounded look for secrets inside a folder a recursive search reads), so a
batch read from a pipe for hours still sees the disk as it is.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from xguard.gate.request import Gate
    from xguard.policy.decide import Context
    from xguard.shell.parser import Unit

BAD_LINE = 'not a JSON object with a "command" string'
PARSE_MEMO = 4096  # texts whose units are kept
FS_TTL = 5.0  # seconds a file-system answer is reused


def _error(n: int, what: str) -> str:
    return json.dumps({"line": n, "error": what}) + "\n"


class _FsSnapshot:
    """exists / isdir / realpath / listdir / glob answers, and what decide()
    works out from them (Context.memo), reused for FS_TTL seconds."""

    def __init__(self, base: Context) -> None:
        self._base = base
        self._exists: dict[str, bool] = {}
        self._isdir: dict[str, bool] = {}
        self._real: dict[str, str | Exception] = {}
        self._lists: dict[str, list[str] | None] = {}
        self._globs: dict[tuple[str, str], list[str] | None] = {}
        self.memo: dict[tuple[object, ...], object] = {}
        self._since = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._since > FS_TTL:
            for d in (self._exists, self._isdir, self._real, self._lists, self._globs, self.memo):
                d.clear()
            self._since = now

    def isdir(self, p: str) -> bool:
        v = self._isdir.get(p)
        if v is None:
            v = self._isdir[p] = self._base.isdir(p)
        return v

    def listdir(self, p: str) -> list[str] | None:
        assert self._base.listdir is not None
        if p not in self._lists:
            self._lists[p] = self._base.listdir(p)
        v = self._lists[p]
        return None if v is None else list(v)

    def exists(self, p: str) -> bool:
        v = self._exists.get(p)
        if v is None:
            v = self._exists[p] = os.path.exists(p)
        return v

    def realpath(self, p: str) -> str:
        v = self._real.get(p)
        if v is None:
            try:
                v = os.path.realpath(p)
            except (OSError, ValueError) as e:
                v = e
            self._real[p] = v
        if isinstance(v, Exception):
            raise v
        return v

    def glob(self, pattern: str, cwd: str) -> list[str] | None:
        assert self._base.expand_glob is not None
        key = (pattern, cwd)
        if key not in self._globs:
            self._globs[key] = self._base.expand_glob(pattern, cwd)
        v = self._globs[key]
        return None if v is None else list(v)


class _Batch:
    """One batch run: its remembered parses and its file-system snapshot."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.units: dict[str, list[Unit]] = {}
        self.contexts: dict[str | None, Context] = {}
        self.fs: _FsSnapshot | None = None

    def context(self, cwd: str | None) -> Context:
        ctx = self.contexts.get(cwd)
        if ctx is None:
            from xguard._record import asdict
            from xguard.policy.decide import Context

            base = self.gate.context(cwd)
            if self.fs is None:
                self.fs = _FsSnapshot(base)
            fs = self.fs
            # Every fact the gate's context has, the file-system ones through the snapshot.
            fields = asdict(base)
            fields.update(exists=fs.exists, isdir=fs.isdir, realpath=fs.realpath, memo=fs.memo)
            if base.expand_glob is not None:
                fields["expand_glob"] = fs.glob
            if base.listdir is not None:
                fields["listdir"] = fs.listdir
            ctx = self.contexts[cwd] = Context(**fields)
        return ctx

    def parse(self, text: str) -> list[Unit]:
        units = self.units.get(text)
        if units is None:
            from xguard.shell.parser import parse

            if len(self.units) >= PARSE_MEMO:
                self.units.clear()
            units = self.units[text] = parse(text)
        return units

    def decide_line(self, n: int, line: str) -> tuple[str, bool]:
        """-> (the output line, True when it is an error object)."""
        from xguard.policy.decide import decide

        try:
            obj = json.loads(line)
            cmd = obj["command"]
            if not isinstance(cmd, str):
                raise TypeError
        except RecursionError:
            return _error(n, "nested too deeply to read"), True
        except (ValueError, KeyError, TypeError):
            return _error(n, BAD_LINE), True
        cwd = obj.get("cwd")
        ctx = self.context(os.path.abspath(cwd) if isinstance(cwd, str) and cwd else None)
        d = decide(self.parse(cmd), self.gate.ruleset, ctx)
        obj.update(d.to_json())
        try:
            # ensure_ascii=False writes the command as it came; a lone surrogate
            # (valid in JSON's \ud800 escapes, not in UTF-8) needs the escapes back.
            out = json.dumps(obj, ensure_ascii=False, allow_nan=False)
            out.encode("utf-8")
        except UnicodeEncodeError:
            out = json.dumps(obj, allow_nan=False)
        except (RecursionError, ValueError, TypeError):
            return _error(n, "decided, but the line's other fields cannot be written back"), True
        return out + "\n", False


def check_batch(gate: Gate, batch: str) -> int:
    """Exit 0 when every line was decided, 1 when a line got an error object."""
    f: Any = (
        io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
        if batch == "-"
        else open(batch, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    )
    out = sys.stdout
    b = _Batch(gate)
    bad = 0
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if b.fs is not None and not n % 64:
                b.fs.tick()
            text, failed = b.decide_line(n, line)
            bad += failed
            out.write(text)
    return 0 if not bad else 1

"""`xguard check --batch FILE`: many commands decided in one process (SPEC §2).

Each input line is answered on its own: a line that cannot be read or
written back (nested too deeply, not UTF-8, a lone surrogate, a number JSON
cannot hold) gets one `{"line": N, "error": …}` object, and the batch goes on.

Speed: batch files repeat commands (a corpus, a replayed log), so the pure
steps are remembered, bounded: the parse of a text (the parser reads no
files) and, in the ruleset, the rules a unit text or a set of paths matches.
What the file system says (does a word name a file, where does a symlink
lead, what does a glob expand to) is remembered for at most FS_TTL seconds,
so a batch read from a pipe for hours still sees the disk as it is.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from xguard.gate.runner import Gate
    from xguard.policy.decide import Context
    from xguard.shell.parser import Unit

PARSE_MEMO = 4096  # texts whose units are kept
FS_TTL = 1.0  # seconds a file-system answer is reused


class _FsSnapshot:
    """exists / realpath / glob answers, reused for FS_TTL seconds."""

    def __init__(self, glob: Callable[[str, str], list[str] | None] | None) -> None:
        self._glob = glob
        self._exists: dict[str, bool] = {}
        self._real: dict[str, str | BaseException] = {}
        self._globs: dict[tuple[str, str], list[str] | None] = {}
        self._since = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._since > FS_TTL:
            self._exists.clear()
            self._real.clear()
            self._globs.clear()
            self._since = now

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
        if isinstance(v, BaseException):
            raise v
        return v

    def glob(self, pattern: str, cwd: str) -> list[str] | None:
        assert self._glob is not None
        key = (pattern, cwd)
        if key not in self._globs:
            self._globs[key] = self._glob(pattern, cwd)
        v = self._globs[key]
        return None if v is None else list(v)


class _Batch:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.units: dict[str, list[Unit]] = {}
        self.contexts: dict[str | None, Context] = {}
        self.fs: _FsSnapshot | None = None

    def context(self, cwd: str | None) -> Context:
        ctx = self.contexts.get(cwd)
        if ctx is None:
            from xguard.policy.decide import Context

            base = self.gate.context(cwd)
            if self.fs is None:
                self.fs = _FsSnapshot(base.expand_glob)
            fs = self.fs
            ctx = self.contexts[cwd] = Context(
                cwd=base.cwd,
                home=base.home,
                protected=base.protected,
                exists=fs.exists,
                realpath=fs.realpath,
                expand_glob=fs.glob if base.expand_glob is not None else None,
            )
        return ctx

    def parse(self, text: str) -> list[Unit]:
        units = self.units.get(text)
        if units is None:
            from xguard.shell.parser import parse

            if len(self.units) >= PARSE_MEMO:
                self.units.clear()
            units = self.units[text] = parse(text)
        return units

    def answer(self, line: str) -> bytes | str:
        """One line's JSON answer, or why it cannot be answered."""
        from xguard.policy.decide import decide

        try:
            obj = json.loads(line)
        except RecursionError:
            return "nested too deeply to read"
        except ValueError:
            obj = None
        cmd = obj.get("command") if isinstance(obj, dict) else None
        if not isinstance(cmd, str):
            return 'not a JSON object with a "command" string'
        assert isinstance(obj, dict)
        cwd = obj.get("cwd")
        ctx = self.context(cwd if isinstance(cwd, str) else None)
        d = decide(self.parse(cmd), self.gate.ruleset, ctx)
        obj.update(d.to_json())
        try:
            return (json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except (RecursionError, ValueError, UnicodeEncodeError):
            return "not valid Unicode text, or a number or nesting JSON cannot hold"


def check_batch(gate: Gate, batch: str) -> int:
    """Answer every line of `batch` (a path, or '-' for stdin) on stdout, in
    order. Exit 0 when every line was decided, 1 when some were not."""
    # Bytes that are not UTF-8 reach the line reader as lone surrogates, so a
    # bad line is answered on its own instead of ending the batch.
    f: Any = (
        io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
        if batch == "-"
        else open(batch, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    )
    out = sys.stdout.buffer
    b = _Batch(gate)
    bad = 0
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if b.fs is not None and not n % 64:
                b.fs.tick()
            answer = b.answer(line)
            if isinstance(answer, str):
                bad += 1
                answer = (json.dumps({"line": n, "error": answer}) + "\n").encode()
            out.write(answer)
    out.flush()
    return 0 if not bad else 1

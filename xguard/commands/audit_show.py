"""`xguard audit show ID` and `xguard audit replay ID`: one command's story and output (issue 14).

`show` prints what the log holds about one command id (decision, units,
approval, exit) and the output it printed, escaped on a terminal; `--output`
writes the exact stored bytes. `replay` plays the output back with its
timing, as sudoreplay does, or exports it as an asciicast v2 file.
A recording that is missing, altered or cannot be decoded is an error
(exit 1), never shown as if it were whole.
"""

from __future__ import annotations

import base64
import codecs
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, Any


from xguard.audit.playback import Recording, RecordingError, check, recording_path
from xguard.audit.read import Filter, entries
from xguard.audit.recording import RESIZE, STDERR, STREAM_NAMES
from xguard.paths import get_paths
from xguard.util import printable

# Control characters shown as escapes; newline and tab stay as they are.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c not in (0x09, 0x0A)}
_CONTROLS.update({c: f"\\u{c:04x}" for c in range(0x80, 0xA0)})


def safe_text(chunks: Iterator[bytes]) -> Iterator[str]:
    """Output made safe for a terminal: escape sequences, other control
    characters and bytes that are not UTF-8 shown as backslash escapes."""
    dec = codecs.getincrementaldecoder("utf-8")("backslashreplace")
    for data in chunks:
        yield dec.decode(data).translate(_CONTROLS)
    yield dec.decode(b"", final=True).translate(_CONTROLS)


class _Story:
    """Every record of one command id, and its (last) exit record's output object."""

    def __init__(self, cmd_id: str) -> None:
        self.id = cmd_id
        paths = get_paths()
        self.audit_dir = paths.audit_dir_s
        self.records: list[dict[str, Any]] = []
        for e in entries(paths.audit_file, Filter(grep=cmd_id)):
            if e.record.get("id") == cmd_id:
                self.records.append(e.record)
        exits = [r for r in self.records if r.get("event") == "exit"]
        self.runs = len(exits)
        self.exit = exits[-1] if exits else None
        out = self.exit.get("output") if self.exit else None
        self.output: dict[str, Any] | None = out if isinstance(out, dict) else None

    def recording(self) -> Recording:
        """The recording, checked against the exit record; RecordingError otherwise."""
        if self.output is None:
            raise RecordingError(f"command {self.id} has no output recording")
        if self.output.get("recorded") is False:
            raise RecordingError(
                f"the output of {self.id} was not recorded ({self.output.get('why')})"
            )
        if self.output.get("error"):
            raise RecordingError(f"the output of {self.id}: {self.output['error']}")
        path = recording_path(self.audit_dir, self.output)
        if path is None:
            raise RecordingError(f"command {self.id} printed nothing; there is no recording")
        wrong = check(self.audit_dir, self.output)
        if wrong is not None:
            raise RecordingError(f"command {self.id}: {wrong}")
        return Recording(path)


def _story(cmd_id: str) -> _Story:
    story = _Story(cmd_id)
    if not story.records:
        print(f"xguard: no command with id {cmd_id} in the audit log", file=sys.stderr)
        raise SystemExit(1)
    return story


def _fail(e: RecordingError) -> int:
    print(f"xguard: {e.message}", file=sys.stderr)
    return 1


def output_summary(out: dict[str, Any] | None) -> str:
    """One line about an exit record's output object."""
    if out is None:
        return "not recorded (recording was off)"
    if out.get("recorded") is False:
        return f"not recorded: {out.get('why')}"
    n, kept = out.get("bytes", 0), out.get("kept", 0)
    text = f"{n} bytes"
    if out.get("error"):
        return f"{text}, {out['error']}"
    if out.get("truncated"):
        text += f", {kept} kept (the rest over record.max_bytes)"
    if out.get("masked"):
        text += f", {out['masked']} secret{'s' if out['masked'] != 1 else ''} masked"
    if out.get("file"):
        text += f" · {out['file']} sha256 {str(out.get('sha256'))[:16]}…"
    return text


def _describe(story: _Story, w: IO[str]) -> None:
    first = story.records[0]
    w.write(f"command   {printable(str(first.get('command') or ''), 4000)}\n")

    def field(v: object) -> str:  # every record field an agent's environment can set
        return printable(str(v), 200)

    w.write(
        f"id        {field(story.id)} · {field(first.get('user'))}@{field(first.get('host'))} · "
        f"session {field(first.get('session') or '-')} · "
        f"profile {field(first.get('profile') or '-')}\n"
    )
    w.write(f"cwd       {printable(str(first.get('cwd') or ''), 400)}\n")
    for r in story.records:
        ev = r.get("event")
        when = str(r.get("ts") or "")[:19].replace("T", " ")
        if ev == "decision":
            who = f" by {field(r['reviewer'])}" if r.get("reviewer") else ""
            w.write(f"decision  {field(r.get('decision'))}{who}  ({field(when)})\n")
            for u in r.get("units") or []:
                rule = f"  [rule {field(u.get('rule'))}]" if u.get("rule") else ""
                w.write(
                    f"  {field(u.get('decision', '')):<17} {field(u.get('kind', '')):<8} "
                    f"{printable(str(u.get('text', '')), 400)}{rule}\n"
                )
        elif ev == "exit":
            extra = ""
            if r.get("signal"):
                extra += f", signal {r['signal']}"
            if r.get("timed_out"):
                extra += ", stopped at max_runtime"
            code, ms = field(r.get("exit_code")), field(r.get("duration_ms"))
            w.write(f"exit      {code} after {ms} ms{extra}\n")
        else:
            who = f" by {field(r['reviewer'])}" if r.get("reviewer") else ""
            note = f": {printable(str(r['note']), 400)}" if r.get("note") else ""
            w.write(f"{field(ev):<9} {field(when)}{who}{note}\n")
    if story.exit is None:
        w.write("output    (the command has not ended, or never ran)\n")
    else:
        w.write(f"output    {output_summary(story.output)}\n")
    if story.runs > 1:
        w.write(f"note      the approved command ran {story.runs} times; this is the last run\n")


def show_cmd(cmd_id: str, only_output: bool, raw: bool, as_json: bool) -> int:
    """Show one command: decision, units, approval, exit, and what it printed."""
    story = _story(cmd_id)
    if only_output:
        try:
            rec = story.recording()
            out = sys.stdout.buffer
            for _s, _t, data in rec.output():
                out.write(data)
            out.flush()
        except RecordingError as e:
            return _fail(e)
        return 0
    if as_json:
        return _show_json(story)
    _describe(story, sys.stdout)
    if story.output is None or not story.output.get("file"):
        return 0
    try:
        rec = story.recording()
        sys.stdout.write("──── output " + "─" * 28 + "\n")
        sys.stdout.flush()
        chunks = (data for _s, _t, data in rec.output())
        if sys.stdout.isatty() and not raw:
            for text in safe_text(chunks):
                sys.stdout.write(text)
        else:
            for data in chunks:
                sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
    except RecordingError as e:
        sys.stdout.flush()
        return _fail(e)
    return 0


def _show_json(story: _Story) -> int:
    obj: dict[str, Any] = {"id": story.id, "records": story.records, "output": story.output}
    code = 0
    if story.output is not None and story.output.get("file"):
        try:
            # text: readable (bytes that are not UTF-8 as \xNN); base64: the exact bytes.
            frames = [
                {
                    "stream": STREAM_NAMES[s],
                    "t": t / 1e6,
                    "text": d.decode("utf-8", "backslashreplace"),
                    "base64": base64.b64encode(d).decode("ascii"),
                }
                for s, t, d in story.recording().output()
            ]
            obj["frames"] = frames
        except RecordingError as e:
            obj["error"] = e.message
            code = 1
    print(json.dumps(obj, ensure_ascii=False))
    if code:
        print(f"xguard: {obj['error']}", file=sys.stderr)
    return code


def replay_cmd(cmd_id: str, speed: float, max_wait: float | None, fmt: str) -> int:
    """Play a command's output back as it happened, like sudoreplay."""
    story = _story(cmd_id)
    try:
        rec = story.recording()
        if fmt == "asciicast":
            _asciicast(story, rec, sys.stdout)
            return 0
        last = 0
        for kind, t, data in rec.frames():
            if kind not in STREAM_NAMES:
                continue
            pause = (t - last) / 1e6 / speed
            if max_wait is not None:
                pause = min(pause, max_wait)
            if pause > 0:
                time.sleep(pause)
            last = t
            fd = 2 if kind == STDERR else 1
            sys.stdout.flush()
            os.write(fd, data)
    except RecordingError as e:
        return _fail(e)
    return 0


def _asciicast(story: _Story, rec: Recording, w: IO[str]) -> None:
    """asciicast v2: a header line, then [seconds, "o" | "r", text] events, streamed."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    started = False
    last = 0.0
    for kind, t, data in rec.frames():
        if not started and kind != 0:  # the header frame comes first: its size is the screen's
            _asciicast_header(story, rec, w)
            started = True
        last = round(t / 1e6, 6)
        if kind == RESIZE:
            cols, rows = data.decode("ascii", "replace").split()[:2]
            w.write(json.dumps([last, "r", f"{cols}x{rows}"]) + "\n")
        elif kind in STREAM_NAMES:
            text = decoder.decode(data)
            if not rec.header.get("tty"):
                text = text.replace("\n", "\r\n")  # a pipe's bare newlines; a player needs CR LF
            if text:
                w.write(json.dumps([last, "o", text], ensure_ascii=False) + "\n")
    if not started:
        _asciicast_header(story, rec, w)
    tail = decoder.decode(b"", final=True)
    if tail:
        w.write(json.dumps([last, "o", tail], ensure_ascii=False) + "\n")


def _asciicast_header(story: _Story, rec: Recording, w: IO[str]) -> None:
    h = rec.header
    header = {
        "version": 2,
        "width": int(h.get("cols") or 80),
        "height": int(h.get("rows") or 24),
        "timestamp": int(h.get("started") or 0),
        "title": f"xguard {story.id}: {printable(str(story.records[0].get('command') or ''), 200)}",
    }
    w.write(json.dumps(header, ensure_ascii=False) + "\n")

"""`xguard check --batch FILE`: decide many commands in one process (SPEC §2).

Each input line is a JSON object with a "command" string; other fields are
copied through. A line that cannot be read, decided or written back gets one
error object of its own; it never ends the batch (issue 10).
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from xguard.gate.request import Gate

BAD_LINE = 'not a JSON object with a "command" string'


def _error(n: int, what: str) -> str:
    return json.dumps({"line": n, "error": what}) + "\n"


def decide_line(gate: Gate, n: int, line: str) -> tuple[str, bool]:
    """-> (the output line, True when it is an error object)."""
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
    d = gate.decide_text(cmd, os.path.abspath(cwd) if isinstance(cwd, str) and cwd else None)
    obj.update(d.to_json())
    try:
        # ensure_ascii=False writes the command as it came; a lone surrogate
        # (valid in JSON's \ud800 escapes, not in UTF-8) needs the escapes back.
        out = json.dumps(obj, ensure_ascii=False)
        out.encode("utf-8")
    except UnicodeEncodeError:
        out = json.dumps(obj)
    except (RecursionError, ValueError, TypeError):
        return _error(n, "decided, but the line's other fields cannot be written back"), True
    return out + "\n", False


def check_batch(gate: Gate, batch: str) -> int:
    """Exit 0 when every line was decided, 1 when a line got an error object."""
    f = (
        sys.stdin if batch == "-" else open(batch, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    )
    out = sys.stdout
    bad = 0
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            text, failed = decide_line(gate, n, line)
            bad += failed
            out.write(text)
    return 0 if not bad else 1

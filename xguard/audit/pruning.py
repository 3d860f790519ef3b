"""Output recordings go with the audit file that names them (issue 14).

When rotation drops the oldest log file (`audit.keep`), audit/log.py calls
`prune` under the log's lock: the recordings that file's exit records name
are deleted with it. Standard library only, and nothing else of xguard's:
the writer imports this (and the hot path imports FOLDER: json and
contextlib are imported where they are used, at rotation).
"""

from __future__ import annotations

import os

FOLDER = "output"  # beside the log: <audit dir>/output/<id>.xgrec.gz


def files_named_in(log_file: str) -> list[str]:
    """The recording files that the exit records of one audit file name (for pruning)."""
    import json

    out = []
    try:
        with open(log_file, "rb") as f:
            for raw in f:
                if b'"output":{' not in raw:
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                o = rec.get("output") if isinstance(rec, dict) else None
                if isinstance(o, dict) and isinstance(o.get("file"), str):
                    out.append(o["file"])
    except OSError:
        return []
    return out


def prune(audit_dir: str, dropped_log: str) -> None:
    """Delete the recordings of an audit file rotation is about to drop (`keep`)."""
    import contextlib

    for name in files_named_in(dropped_log):
        if name.startswith(FOLDER + "/") and ".." not in name:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(audit_dir, name))

"""`xguard audit`: read, filter, follow, verify and report on the audit log (issue 4).

Output: a rich table on a terminal, tab-separated lines when piped (one record
a line, control characters escaped), the stored JSON lines with `--json`.
Errors that mean "no log to read" exit 1 with one line; filters that do not
parse are usage errors (exit 64) naming the flag.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any


from xguard.audit.read import (
    Entry,
    Filter,
    Head,
    entries,
    follow,
    format_report,
    report,
    tail,
    verify,
)
from xguard.paths import get_paths
from xguard.util import printable


class BadLines:
    """Counts lines that are not records, for one warning at the end (issue 4)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.count = 0
        self.first = ""

    def __call__(self, file: Path, line: int | None, raw: bytes) -> None:
        self.count += 1
        if not self.first:
            self.first = f"{file}:{line}" if line is not None else str(file)

    def warn(self) -> None:
        """Write the warning, if any line was skipped."""
        if self.count:
            n = f"{self.count} line{'s' if self.count != 1 else ''}"
            self.stream.write(
                f"xguard: warning: skipped {n} that {'is' if self.count == 1 else 'are'} not "
                f"an audit record (first in {self.first}); run `xguard audit verify`\n"
            )
            self.count = 0


def outcome(rec: dict[str, Any]) -> str:
    """One short column saying what happened."""
    ev = rec.get("event")
    if ev == "exit":
        dur = rec.get("duration_ms")
        text = f"exit {rec.get('exit_code')}" + (f" {dur}ms" if dur is not None else "")
        out = rec.get("output")
        if isinstance(out, dict) and out.get("file"):
            # Where to read what it printed (issue 14).
            text += f", output {out.get('bytes')}B: xguard audit show {rec.get('id')}"
        elif isinstance(out, dict) and out.get("error"):
            text += f", output {out.get('bytes')}B not kept: {out['error']}"
        return text
    if ev in ("approved", "denied") or rec.get("reviewer"):
        who = rec.get("reviewer")
        base = str(rec.get("decision") or ev) if ev == "decision" else str(ev)
        return base + (f" by {who}" if who else "")
    return str(rec.get("decision") or "-")


def plain_line(rec: dict[str, Any]) -> str:
    """A record as one tab-separated line: ts, seq, event, outcome, session, cwd, command."""
    cols = [
        rec.get("ts"),
        rec.get("seq"),
        rec.get("event"),
        outcome(rec),
        rec.get("session"),
        rec.get("cwd"),
        rec.get("command"),
    ]
    return "\t".join(printable(str(c), 10_000) if c is not None else "-" for c in cols)


def render_table(found: Iterable[Entry], out: Any) -> None:
    """Print entries as a rich table on the console `out`."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("time (UTC)", "seq", "event", "outcome", "session", "command"):
        table.add_column(name, no_wrap=name != "command", overflow="fold")
    style = {
        "deny": "red",
        "denied": "red",
        "require_approval": "yellow",
        "pending": "yellow",
        "allow": "green",
        "approved": "green",
    }
    for e in found:
        rec = e.record
        ts = str(rec.get("ts") or "")[:19].replace("T", " ")
        res = outcome(rec)
        # Text(), never markup: a command may hold "[red]" and must show as typed.
        table.add_row(
            Text(printable(ts)),
            Text(str(rec.get("seq"))),
            Text(printable(str(rec.get("event")), 40)),
            Text(
                printable(res, 80),
                style=style.get(str(rec.get("decision") or rec.get("event")), ""),
            ),
            Text(printable(str(rec.get("session") or "-"), 40)),
            Text(printable(str(rec.get("command") or ""), 2000)),
        )
    out.print(table)


def _console() -> Any:
    from rich.console import Console

    return Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)


def _write_entries(found: Iterable[Entry], as_json: bool, stream: bool) -> None:
    """Table on a terminal, else plain or JSON lines (flushed per record when streaming)."""
    out = sys.stdout
    if not as_json and out.isatty() and not stream:
        render_table(found, _console())
        return
    for e in found:
        if as_json:
            out.buffer.write(e.raw + b"\n")
        else:
            out.write(plain_line(e.record) + "\n")
        if stream:
            out.flush()


def audit(
    *,
    since: str | None,
    until: str | None,
    session: str | None,
    decision: tuple[str, ...],
    event: tuple[str, ...],
    grep: str | None,
    cwd: str | None,
    user: str | None,
    last: int | None,
    as_json: bool,
    follow_: bool,
) -> int:
    """Read the audit log, oldest first; filters combine with AND."""
    if cwd is not None:
        cwd = os.path.abspath(os.path.expanduser(cwd))
    filt = Filter(
        since=since,
        until=until,
        session=session,
        decision=decision,
        event=event,
        grep=grep,
        cwd=cwd,
        user=user,
    )
    path = get_paths().audit_file
    bad = BadLines(sys.stderr)
    try:
        if follow_:
            try:
                for e in follow(path, filt, last=10 if last is None else last, on_bad=bad):
                    _write_entries([e], as_json, stream=True)
                    bad.warn()
            except KeyboardInterrupt:
                return 0  # Ctrl-C is how a follow ends
        elif last is not None:
            _write_entries(tail(path, last, filt, on_bad=bad), as_json, stream=False)
        else:
            _write_entries(entries(path, filt, on_bad=bad), as_json, stream=False)
    except BrokenPipeError:
        # `xguard audit | head`: the reader left; say nothing, as cat would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    bad.warn()
    return 0


def verify_cmd(
    anchor: Head | None,
    syslog_file: str | None,
    against_db: bool,
    db_host: str | None,
    as_json: bool,
) -> int:
    """Check the hash chain across rotated files; exit 0 intact, 1 broken."""
    if syslog_file is not None:
        return _verify_against_syslog(syslog_file, as_json)
    if against_db:
        return _verify_against_db(db_host, as_json)
    result = verify(get_paths().audit_file, anchor, keep=_configured_keep())
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        n = len(result.files)
        where = f"{result.records} records in {n} file{'s' if n != 1 else ''}"
        if result.recordings:
            where += (
                f", {result.recordings} output recording{'s' if result.recordings != 1 else ''}"
            )
        for note in result.notes:
            print(f"note: {note}")
        if result.problem is None:
            print(
                f"audit log intact: {where}"
                + (f", anchor seq {anchor.seq} found" if anchor else "")
            )
        else:
            print(f"audit log BROKEN: {result.problem}")
        if result.head is not None:
            print(f"head: seq {result.head.seq} hash {result.head.hash}")
    return 0 if result.ok else 1


def _verify_against_db(host: str | None, as_json: bool) -> int:
    """`verify --against-db`: the log must agree with, and extend, its database copy (issue 15)."""
    from xguard.approval.backend import postgres_dsn
    from xguard.audit.dbsync import STATUS, db_heads
    from xguard.audit.read import cross_check
    from xguard.errors import UsageError
    from xguard.gate.request import Gate

    gate = Gate()
    dsn = postgres_dsn(gate.ruleset)
    if not dsn:
        raise UsageError("--against-db needs a shared queue: queue: {postgres: DSN}")
    host, copied = db_heads(dsn, host)
    if not copied:
        print(f"xguard: the database holds no audit records of host {host}", file=sys.stderr)
        return 1
    result, mismatches = cross_check(
        gate.paths.audit_file, copied, keep=_configured_keep(), copy="database"
    )
    ok = result.ok and not mismatches
    status = None
    with contextlib.suppress(OSError, ValueError):
        status = json.loads((gate.paths.audit_dir / STATUS).read_text(encoding="utf-8"))
    if as_json:
        out = {**result.to_json(), "ok": ok, "host": host, "copied": len(copied)}
        print(json.dumps({**out, "mismatches": mismatches, "sync": status}))
    else:
        top = max(copied)
        if result.problem is not None:
            print(
                f"audit log BROKEN against the database copy of host {host} "
                f"(up to seq {top}): {result.problem}"
            )
        for m in mismatches:
            print(f"audit log differs from the database copy of host {host} at {m}")
        if ok:
            print(
                f"audit log intact and agrees with {len(copied)} records of host {host} "
                f"in the database (up to seq {top})"
            )
        if isinstance(status, dict) and not status.get("ok"):
            print(f"note: last copy to the database failed: {status.get('message')}")
    return 0 if ok else 1


def _verify_against_syslog(syslog_file: str, as_json: bool) -> int:
    """`verify --syslog FILE`: the log must agree with, and extend, its forwarded copy."""
    from pathlib import Path

    from xguard.audit.read import cross_check, forwarded_heads

    forwarded = forwarded_heads(Path(syslog_file))
    if not forwarded:
        print(f"xguard: no forwarded audit records in {syslog_file}", file=sys.stderr)
        return 1
    result, mismatches = cross_check(get_paths().audit_file, forwarded, keep=_configured_keep())
    ok = result.ok and not mismatches
    if as_json:
        print(
            json.dumps(
                {
                    **result.to_json(),
                    "ok": ok,
                    "forwarded": len(forwarded),
                    "mismatches": mismatches,
                }
            )
        )
    else:
        top = max(forwarded)
        if result.problem is not None:
            print(
                f"audit log BROKEN against the forwarded copy (up to seq {top}): {result.problem}"
            )
        for m in mismatches:
            print(f"audit log differs from the forwarded copy at {m}")
        if ok:
            print(
                f"audit log intact and agrees with {len(forwarded)} forwarded records "
                f"(up to seq {top})"
            )
    return 0 if ok else 1


def report_cmd(since: str, as_json: bool) -> int:
    """The permission review: rule hits and unused rules, approvals worth"""
    bad = BadLines(sys.stderr)
    records = (e.record for e in entries(get_paths().audit_file, Filter(since=since), on_bad=bad))
    rep = report(records, _rule_ids())
    if as_json:
        print(json.dumps(rep, ensure_ascii=False))
    else:
        print(format_report(rep, since), end="")
    bad.warn()
    return 0


def _configured_keep() -> int | None:
    """audit.keep from the config (10 when unset), or None when the config
    cannot be read: verify then cannot tell dropped files from removed ones."""
    from xguard.policy.rules import load_ruleset_for_report

    ruleset = load_ruleset_for_report()
    if ruleset is None:
        return None
    keep = (ruleset.setting("audit", {}) or {}).get("keep", 10)
    return keep if isinstance(keep, int) else None


def _rule_ids() -> list[str] | None:
    """Every rule id in effect, or None when the rules cannot be read (the report then says so)."""
    try:
        from xguard.policy.rules import load_ruleset_for_report

        ruleset = load_ruleset_for_report()
        return None if ruleset is None else [r.id for r in ruleset.rules]
    except (ImportError, AttributeError):
        return None

"""The audit reader (xguard/auditread.py): verify and tampering, filters, tail, follow, report."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import pytest
import yaml

from xguard.audit.log import GENESIS, AuditLog, build_record, seal
from xguard.audit.read import (
    AuditReadError,
    Filter,
    Head,
    allow_rule_yaml,
    entries,
    follow,
    format_report,
    parse_time,
    read_anchor,
    report,
    tail,
    verify,
)

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_history(path: Path, records: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
    """A chain-valid log in the writer's format, with chosen timestamps (each record's "ts")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prev, lines = GENESIS, []
    for seq, (event, spec) in enumerate(records, 1):
        fields = {k: v for k, v in spec.items() if k != "ts"}
        line, prev = seal(build_record(event, fields, ts=spec["ts"], seq=seq, prev=prev))
        lines.append(line)
    path.write_bytes(b"".join(lines))
    return [x.rstrip(b"\n") for x in lines]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


@pytest.fixture
def twenty(log_path: Path) -> list[bytes]:
    log = AuditLog(log_path)
    for i in range(1, 21):
        log.append("decision", command=f"cmd {i:02d}", session="s1")
    return log_path.read_bytes().splitlines()


# ---------------------------------------------------------------------------
# verify: each tampering is caught, with the right line named


def rehash(line: bytes, **changes: Any) -> bytes:
    """The line with fields changed and a hash recomputed: an editor who knows the format."""
    rec = json.loads(line)
    rec.update(changes)
    rec.pop("hash")
    return seal(rec)[0].rstrip(b"\n")


def flip_last_hex(line: bytes) -> bytes:
    """Change the last digit of the stored hash."""
    return line[:-3] + (b"1" if line[-3:-2] == b"0" else b"0") + line[-2:]


Tamper = Callable[[list[bytes]], list[bytes]]

TAMPERS: list[tuple[str, Tamper, str, int]] = [
    (
        "edit one byte",
        lambda ls: [*ls[:6], ls[6].replace(b"cmd 07", b"cmd 08"), *ls[7:]],
        "edited",
        7,
    ),
    ("edit the stored hash", lambda ls: [*ls[:6], flip_last_hex(ls[6]), *ls[7:]], "edited", 7),
    (
        "edit and re-hash",
        lambda ls: [*ls[:6], rehash(ls[6], command="cmd evil"), *ls[7:]],
        "edited",
        7,
    ),
    ("delete a line", lambda ls: ls[:6] + ls[7:], "missing", 7),
    ("delete three lines", lambda ls: ls[:6] + ls[9:], "missing", 7),
    ("delete the first line", lambda ls: ls[1:], "missing", 1),
    ("insert a copy of an earlier line", lambda ls: [*ls[:7], ls[2], *ls[7:]], "inserted", 8),
    ("insert a copy of the line before", lambda ls: [*ls[:7], ls[6], *ls[7:]], "inserted", 8),
    ("insert a copy of a later line", lambda ls: [*ls[:7], ls[12], *ls[7:]], "inserted", 8),
    ("swap two lines", lambda ls: [*ls[:6], ls[7], ls[6], *ls[8:]], "reordered", 7),
    ("move a line later", lambda ls: [*ls[:6], *ls[7:10], ls[6], *ls[10:]], "reordered", 7),
    ("break the JSON", lambda ls: [*ls[:6], ls[6][:40], *ls[7:]], "not JSON", 7),
    ("blank line", lambda ls: [*ls[:7], b"", *ls[7:]], "not JSON", 8),
    (
        "JSON that is no record",
        lambda ls: [*ls[:7], b'{"event":"decision"}', *ls[7:]],
        "not a record",
        8,
    ),
]


@pytest.mark.parametrize(("name", "tamper", "kind", "line"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampering_is_named(
    log_path: Path, twenty: list[bytes], *, name: str, tamper: Tamper, kind: str, line: int
) -> None:
    assert verify(log_path).ok
    log_path.write_bytes(b"\n".join(tamper(twenty)) + b"\n")
    result = verify(log_path)
    assert not result.ok
    assert result.problem is not None
    assert (result.problem.kind, result.problem.line, result.problem.file) == (
        kind,
        line,
        log_path,
    ), str(result.problem)


def test_torn_last_line(log_path: Path, twenty: list[bytes]) -> None:
    log_path.write_bytes(b"\n".join(twenty) + b"\n" + b'{"ts":"2024-')
    result = verify(log_path)
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("torn", 21)


def test_truncated_tail_is_caught_only_with_an_anchor(log_path: Path, twenty: list[bytes]) -> None:
    head = verify(log_path).head
    assert head is not None and head.seq == 20
    log_path.write_bytes(b"\n".join(twenty[:17]) + b"\n")
    assert verify(log_path).ok  # the chain alone cannot tell
    result = verify(log_path, anchor=head)
    assert result.problem is not None
    assert (result.problem.kind, result.problem.line) == ("truncated", 18)
    assert "seq 18-20" in result.problem.detail


def test_anchor_catches_a_rewritten_tail(log_path: Path, twenty: list[bytes]) -> None:
    head = verify(log_path).head
    assert head is not None
    log_path.write_bytes(b"\n".join([*twenty[:19], rehash(twenty[19], command="innocent")]) + b"\n")
    assert verify(log_path).ok
    result = verify(log_path, anchor=head)
    assert result.problem is not None and (result.problem.kind, result.problem.line) == (
        "anchor",
        20,
    )


def test_anchor_that_the_log_extends(log_path: Path, twenty: list[bytes]) -> None:
    rec = json.loads(twenty[4])
    result = verify(log_path, anchor=Head(rec["seq"], rec["hash"]))
    assert result.ok and result.head == Head(20, json.loads(twenty[19])["hash"])


@pytest.mark.parametrize("form", ["verify-text", "verify-json", "audit-line", "bare"])
def test_read_anchor_forms(tmp_path: Path, log_path: Path, twenty: list[bytes], form: str) -> None:
    head = verify(log_path).head
    assert head is not None
    text = {
        "verify-text": f"note: something seq 3 hash {'a' * 64}\n"
        "audit log intact: 20 records in 1 file\n"
        f"head: seq {head.seq} hash {head.hash}\n",
        "verify-json": json.dumps(verify(log_path).to_json()),
        "audit-line": twenty[-1].decode(),
        "bare": f"{head.seq} {head.hash}\n".replace(f"{head.seq} ", f"seq={head.seq} "),
    }[form]
    (tmp_path / "anchor").write_text(text)
    assert read_anchor(tmp_path / "anchor") == head


def test_read_anchor_rejects_junk(tmp_path: Path) -> None:
    (tmp_path / "anchor").write_text("nothing here")
    with pytest.raises(ValueError, match="no head"):
        read_anchor(tmp_path / "anchor")


def test_verify_names_the_rotated_file(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=3000, keep=50)
    for i in range(30):
        log.append("decision", command=f"cmd {i}", note="n" * 100)
    rotated = log_path.with_name("audit.jsonl.2")
    lines = rotated.read_bytes().splitlines()
    assert verify(log_path).ok and verify(log_path).notes == []
    rotated.write_bytes(b"\n".join([*lines[:1], *lines[2:]]) + b"\n")
    result = verify(log_path)
    assert result.problem is not None
    assert (result.problem.file, result.problem.line, result.problem.kind) == (
        rotated,
        2,
        "missing",
    )


def test_deleting_a_whole_rotated_file_is_missing(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=3000, keep=50)
    for i in range(30):
        log.append("decision", command=f"cmd {i}", note="n" * 100)
    first_of_1 = log_path.with_name("audit.jsonl.1")
    log_path.with_name("audit.jsonl.2").unlink()
    result = verify(log_path)
    assert result.problem is not None
    assert (result.problem.file, result.problem.line, result.problem.kind) == (
        first_of_1,
        1,
        "missing",
    )


def test_missing_log_is_an_error(log_path: Path) -> None:
    with pytest.raises(AuditReadError, match="no audit log"):
        verify(log_path)
    with pytest.raises(AuditReadError):
        list(entries(log_path))


# ---------------------------------------------------------------------------
# Filters, tail


HISTORY: list[tuple[str, dict[str, Any]]] = [
    (
        "decision",
        {
            "ts": ts(0),
            "session": "s1",
            "user": "ana",
            "cwd": "/src/app",
            "command": "git status",
            "decision": "allow",
        },
    ),
    (
        "exit",
        {
            "ts": ts(1),
            "session": "s1",
            "user": "ana",
            "cwd": "/src/app",
            "command": "git status",
            "exit_code": 0,
        },
    ),
    (
        "decision",
        {
            "ts": ts(60),
            "session": "s2",
            "user": "bob",
            "cwd": "/src/app/sub",
            "command": 'echo "hi there"',
            "decision": "allow",
        },
    ),
    (
        "decision",
        {
            "ts": ts(120),
            "session": "s2",
            "user": "bob",
            "cwd": "/src/apple",
            "command": "rm -rf /",
            "decision": "deny",
        },
    ),
    (
        "pending",
        {
            "ts": ts(180),
            "session": "s1",
            "user": "ana",
            "cwd": "/",
            "command": "kubectl apply",
            "decision": "require_approval",
            "units": [{"kind": "command", "text": "kubectl apply --ns=日本"}],
        },
    ),
    (
        "approved",
        {
            "ts": ts(240),
            "session": "s1",
            "user": "carol",
            "reviewer": "carol",
            "note": "ok for now",
        },
    ),
]


@pytest.mark.parametrize(
    ("filt", "seqs"),
    [
        (Filter(), [1, 2, 3, 4, 5, 6]),
        (Filter(session="s2"), [3, 4]),
        (Filter(session="s"), []),
        (Filter(user="bob"), [3, 4]),
        (Filter(decision=("deny",)), [4]),
        (Filter(decision=("allow", "deny")), [1, 3, 4]),
        (Filter(event=("pending", "approved")), [5, 6]),
        (Filter(grep="hi there"), [3]),
        (Filter(grep='"hi'), [3]),  # a quote, escaped in the stored JSON
        (Filter(grep="日本"), [5]),  # inside a unit, non-ASCII
        (Filter(grep="ok for"), [6]),  # the note
        (Filter(grep="exit_code"), []),  # field names are not text
        (Filter(cwd="/src/app"), [1, 2, 3]),  # the folder and below, not /src/apple
        (Filter(cwd="/"), [1, 2, 3, 4, 5]),
        (Filter(since=ts(60)), [3, 4, 5, 6]),
        (Filter(until=ts(60)), [1, 2, 3]),
        (Filter(since=ts(30), until=ts(150), session="s2", decision=("deny",)), [4]),
    ],
)
def test_filters(log_path: Path, filt: Filter, seqs: list[int]) -> None:
    write_history(log_path, HISTORY)
    assert [e.record["seq"] for e in entries(log_path, filt)] == seqs
    assert [e.record["seq"] for e in tail(log_path, 2, filt)] == seqs[-2:]


def test_parse_time() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_time("15m", now) == "2024-05-01T11:45:00.000000Z"
    assert parse_time("2h", now) == "2024-05-01T10:00:00.000000Z"
    assert parse_time("7d", now) == "2024-04-24T12:00:00.000000Z"
    assert parse_time("2024-05-01T09:30:00Z") == "2024-05-01T09:30:00.000000Z"
    assert parse_time("2024-05-01T11:30:00+02:00") == "2024-05-01T09:30:00.000000Z"
    local = datetime(2024, 5, 1, 9, 30).astimezone().astimezone(UTC)
    assert parse_time("2024-05-01T09:30") == local.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for bad in ("yesterdayish", "15x", "", "2024-13-01"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_entries_skip_junk_and_report_it(log_path: Path) -> None:
    lines = write_history(log_path, HISTORY)
    log_path.write_bytes(b"\n".join([*lines[:2], b"not json", *lines[2:]]) + b"\n" + b'{"ts":"tor')
    bad: list[tuple[Path, int | None, bytes]] = []
    seqs = [
        e.record["seq"] for e in entries(log_path, on_bad=lambda f, n, raw: bad.append((f, n, raw)))
    ]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert bad == [(log_path, 3, b"not json"), (log_path, 8, b'{"ts":"tor')]
    bad.clear()
    assert [
        e.record["seq"]
        for e in tail(log_path, 10, on_bad=lambda f, n, raw: bad.append((f, n, raw)))
    ] == seqs
    assert sorted(raw for _, _, raw in bad) == [b"not json", b'{"ts":"tor']


def test_entries_keep_the_stored_bytes(log_path: Path) -> None:
    lines = write_history(log_path, HISTORY)
    assert [e.raw for e in entries(log_path)] == lines
    assert [e.line for e in entries(log_path)] == [1, 2, 3, 4, 5, 6]


def test_tail_spans_rotated_files(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=2000, keep=100)
    for i in range(50):
        log.append("decision", command=f"cmd {i}", session="odd" if i % 2 else "even")
    assert len(list(log_path.parent.iterdir())) > 5
    assert [e.record["seq"] for e in tail(log_path, 12)] == list(range(39, 51))
    assert [e.record["command"] for e in tail(log_path, 30, Filter(session="odd"))] == [
        f"cmd {i}" for i in range(1, 50, 2) for _ in [0]
    ][-30:]
    assert [e.record["seq"] for e in entries(log_path)] == list(range(1, 51))


def test_tail_reads_from_the_end(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(log_path)
    for i in range(30):
        log.append("decision", command=f"cmd {i}")
    body = log_path.read_bytes()
    log_path.write_bytes(body * 300)  # ~3 MB: the chain is broken, but tail does not care
    read: list[int] = []
    real = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        read.append(n)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", counting_pread)
    got = tail(log_path, 20)
    assert [e.record["command"] for e in got] == [f"cmd {i}" for i in range(10, 30)]
    assert sum(read) <= 64 * 1024


# ---------------------------------------------------------------------------
# follow


def test_follow_sees_new_records_across_rotation(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=1500, keep=100)
    for i in range(5):
        log.append("decision", command=f"old {i}")
    deadline = time.monotonic() + 10
    feed = follow(log_path, last=2, poll=0.01, stop=lambda: time.monotonic() > deadline)
    got = [next(feed).record["command"] for _ in range(2)]
    assert got == ["old 3", "old 4"]
    for i in range(30):  # several rotations before the follower looks again
        log.append("decision", command=f"new {i}", note="n" * 100)
    got = [next(feed).record["command"] for _ in range(30)]
    assert got == [f"new {i}" for i in range(30)]
    log.append("exit", command="last one")
    assert next(feed).record["command"] == "last one"
    feed.close()


def test_follow_filters_and_skips_junk(log_path: Path) -> None:
    log = AuditLog(log_path)
    log.append("decision", session="a")
    log.append("decision", session="b", command="first")
    deadline = time.monotonic() + 10
    bad: list[bytes] = []
    feed = follow(
        log_path,
        Filter(session="b"),
        last=5,
        poll=0.01,
        on_bad=lambda f, n, raw: bad.append(raw),
        stop=lambda: time.monotonic() > deadline,
    )
    assert next(feed).record["command"] == "first"
    with open(log_path, "ab") as fh:
        fh.write(b"junk\n")
    log.append("decision", session="a", command="not me")
    log.append("decision", session="b", command="me")
    assert next(feed).record["command"] == "me"
    assert bad == [b"junk"]
    feed.close()


# ---------------------------------------------------------------------------
# report, on a history with known answers


def unit(text: str, decision: str, rule: str | None, why: str = "") -> dict[str, Any]:
    return {"kind": "command", "text": text, "decision": decision, "rule": rule, "why": why}


def request(
    t: float, rid: str, session: str, text: str, rule: str = "default"
) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "pending",
            {
                "ts": ts(t),
                "id": rid,
                "session": session,
                "command": text,
                "decision": "require_approval",
                "units": [unit(text, "require_approval", rule)],
            },
        )
    ]


def approve(
    t: float, rid: str, session: str, text: str, wait: float
) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("approved", {"ts": ts(t + wait), "id": rid, "session": session, "reviewer": "ana"}),
        (
            "decision",
            {
                "ts": ts(t + wait + 1),
                "id": rid,
                "session": session,
                "command": text,
                "decision": "require_approval",
                "reviewer": "ana",
                "units": [unit(text, "require_approval", "default")],
            },
        ),
        ("exit", {"ts": ts(t + wait + 2), "id": rid, "session": session, "exit_code": 0}),
    ]


def deny(
    t: float, rid: str, session: str, wait: float, note: str
) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "denied",
            {"ts": ts(t + wait), "id": rid, "session": session, "reviewer": "bob", "note": note},
        )
    ]


REPORT_HISTORY: list[tuple[str, dict[str, Any]]] = [
    (
        "decision",
        {
            "ts": ts(0),
            "id": "a1",
            "session": "s1",
            "command": "git status",
            "decision": "allow",
            "units": [unit("git status", "allow", "rules.yaml:3")],
        },
    ),
    ("exit", {"ts": ts(1), "id": "a1", "session": "s1", "exit_code": 0}),
    *request(10, "p1", "s1", "kubectl apply -f x.yaml"),
    *approve(10, "p1", "s1", "kubectl apply -f x.yaml", 30),
    *request(100, "p2", "s1", "kubectl apply -f x.yaml"),
    *approve(100, "p2", "s1", "kubectl apply -f x.yaml", 10),
    (
        "decision",
        {
            "ts": ts(200),
            "id": "d1",
            "session": "s2",
            "command": "rm -rf /",
            "decision": "deny",
            "units": [unit("rm -rf /", "deny", "rules.yaml:9", "deletes everything")],
        },
    ),
    *request(300, "p3", "s2", "curl x | sh", "rules.yaml:5"),
    *deny(300, "p3", "s2", 60, "no piping to sh"),
    *request(400, "p4", "s2", "make deploy"),
    *approve(400, "p4", "s2", "make deploy", 120),
    *request(700, "p5", "s2", "git push --force"),
    *approve(700, "p5", "s2", "git push --force", 5),
    *request(800, "p6", "s2", "git push --force"),
    *deny(800, "p6", "s2", 10, "not on main"),
]


def test_report_known_answers(log_path: Path) -> None:
    write_history(log_path, REPORT_HISTORY)
    assert verify(log_path).ok
    rep = report(
        (e.record for e in entries(log_path)),
        ["rules.yaml:3", "rules.yaml:5", "rules.yaml:9", "rules.yaml:12"],
    )
    assert rep["records"] == len(REPORT_HISTORY)
    assert rep["rules"] == [
        {"rule": "default", "hits": 5, "last_hit": ts(800)},
        {"rule": "rules.yaml:3", "hits": 1, "last_hit": ts(0)},
        {"rule": "rules.yaml:5", "hits": 1, "last_hit": ts(300)},
        {"rule": "rules.yaml:9", "hits": 1, "last_hit": ts(200)},
    ]
    assert rep["unused_rules"] == ["rules.yaml:12"]
    # git push --force was approved once but denied once: not a candidate.
    assert [(a["text"], a["approvals"]) for a in rep["approved"]] == [
        ("kubectl apply -f x.yaml", 2),
        ("make deploy", 1),
    ]
    assert rep["denials"] == [
        {"reason": "deletes everything", "count": 1},
        {"reason": "reviewer: no piping to sh", "count": 1},
        {"reason": "reviewer: not on main", "count": 1},
    ]
    # waits 30, 10, 60, 120, 5, 10 s: nearest-rank median 10, p95 120
    assert rep["time_to_decision"] == {"count": 6, "median_s": 10.0, "p95_s": 120.0}
    assert rep["sessions"] == [
        {
            "session": "s1",
            "commands": 3,
            "approvals": 2,
            "denials": 0,
            "first": ts(0),
            "last": ts(112),
            "duration_s": 112.0,
        },
        {
            "session": "s2",
            "commands": 5,
            "approvals": 2,
            "denials": 3,
            "first": ts(200),
            "last": ts(810),
            "duration_s": 610.0,
        },
    ]
    text = format_report(rep)
    assert "rules.yaml:12" in text and "median 10.0s, p95 2.0m" in text


def test_report_allow_rules_are_exact_yaml(log_path: Path) -> None:
    write_history(log_path, REPORT_HISTORY)
    rep = report(e.record for e in entries(log_path))
    assert rep["unused_rules"] is None  # no rule list: unknown, not "none"
    pasted = yaml.safe_load("\n".join(a["yaml"] for a in rep["approved"]))
    assert pasted == [
        {"regex": r"^kubectl apply -f x\.yaml$", "action": "allow"},
        {"regex": "^make deploy$", "action": "allow"},
    ]
    rx = re.compile(pasted[0]["regex"])
    assert rx.search("kubectl apply -f x.yaml") and not rx.search("kubectl apply -f x.yaml --force")
    assert not rx.search("kubectl apply -f xxyaml")


@pytest.mark.parametrize(
    ("kind", "text", "expect"),
    [
        ("command", "echo 'a|b' (x)", {"regex": r"^echo 'a\|b' \(x\)$", "action": "allow"}),
        (
            "sql",
            "DELETE FROM t WHERE id = 1",
            {"regex": "^DELETE FROM t WHERE id = 1$", "action": "allow"},
        ),
        (
            "path",
            "write /srv/out file.txt",
            {"path": "/srv/out file.txt", "access": "write", "action": "allow"},
        ),
        ("path", "write /tmp/*", None),
        ("command", "echo a\nb", None),
        ("assign", "FOO=1", None),
    ],
)
def test_allow_rule_yaml(kind: str, text: str, expect: dict[str, str] | None) -> None:
    out = allow_rule_yaml(kind, text, 2)
    if expect is None:
        assert out is None
        return
    assert out is not None and "# approved 2 times, never denied" in out
    (rule,) = yaml.safe_load(out)
    assert rule == expect
    if "regex" in rule:
        assert re.search(rule["regex"], text)


def test_anchor_rotated_away(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=2000, keep=2)
    first = log.append("decision", command="first")
    for i in range(40):
        log.append("decision", command=f"cmd {i}", note="n" * 100)
    result = verify(log_path, anchor=Head(first["seq"], first["hash"]))
    assert result.problem is not None and result.problem.kind == "anchor"
    assert "no longer in the log" in result.problem.detail

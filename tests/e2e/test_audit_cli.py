"""`xguard audit …` end to end: the installed console script, run as a user runs it."""

from __future__ import annotations

import json
import os
import pty
import queue
import subprocess
import threading
import time
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe
from xguard.audit.log import GENESIS, AuditLog, build_record, seal

NOW = datetime.now(UTC).replace(microsecond=0)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("XGUARD_HOME", str(home))
    monkeypatch.delenv("NO_COLOR", raising=False)
    return home


@pytest.fixture
def log_path(home: Path) -> Path:
    return home / "audit" / "audit.jsonl"


def xguard(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    exe = xguard_exe()[0]
    return subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def write_history(path: Path, records: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A chain-valid log in the writer's format with chosen timestamps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prev, lines = GENESIS, []
    for seq, (event, spec) in enumerate(records, 1):
        fields = {k: v for k, v in spec.items() if k != "ts"}
        line, prev = seal(build_record(event, fields, ts=spec["ts"], seq=seq, prev=prev))
        lines.append(line)
    path.write_bytes(b"".join(lines))
    return [x.decode().rstrip("\n") for x in lines]


HISTORY: list[tuple[str, dict[str, Any]]] = [
    (
        "decision",
        {
            "ts": ts(3 * 86400),
            "id": "a1",
            "session": "s1",
            "user": "ana",
            "cwd": "/src/app",
            "command": "git status",
            "decision": "allow",
            "units": [
                {
                    "kind": "command",
                    "text": "git status",
                    "decision": "allow",
                    "rule": "rules.yaml:3",
                    "why": "ok",
                }
            ],
        },
    ),
    (
        "exit",
        {
            "ts": ts(3 * 86400 - 1),
            "id": "a1",
            "session": "s1",
            "user": "ana",
            "cwd": "/src/app",
            "exit_code": 0,
            "duration_ms": 15,
        },
    ),
    (
        "pending",
        {
            "ts": ts(7200),
            "id": "p1",
            "session": "s2",
            "user": "bob",
            "cwd": "/srv",
            "command": "make deploy",
            "decision": "require_approval",
            "units": [
                {
                    "kind": "command",
                    "text": "make deploy",
                    "decision": "require_approval",
                    "rule": "default",
                    "why": "no rule matches",
                }
            ],
        },
    ),
    ("approved", {"ts": ts(7100), "id": "p1", "session": "s2", "reviewer": "carol", "note": "go"}),
    (
        "decision",
        {
            "ts": ts(7099),
            "id": "p1",
            "session": "s2",
            "user": "bob",
            "cwd": "/srv",
            "command": "make deploy",
            "decision": "require_approval",
            "reviewer": "carol",
            "units": [
                {
                    "kind": "command",
                    "text": "make deploy",
                    "decision": "require_approval",
                    "rule": "default",
                    "why": "no rule matches",
                }
            ],
        },
    ),
    (
        "decision",
        {
            "ts": ts(600),
            "id": "d1",
            "session": "s2",
            "user": "bob",
            "cwd": "/srv",
            "command": "rm -rf /\tnow\x1b[2J",
            "decision": "deny",
            "units": [
                {
                    "kind": "command",
                    "text": "rm -rf /",
                    "decision": "deny",
                    "rule": "rules.yaml:9",
                    "why": "deletes everything",
                }
            ],
        },
    ),
]


def seqs(out: str) -> list[int]:
    return [int(line.split("\t")[1]) for line in out.splitlines()]


# ---------------------------------------------------------------------------
# Listing


def test_plain_lines_when_piped(log_path: Path) -> None:
    write_history(log_path, HISTORY)
    r = xguard("audit")
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert seqs(r.stdout) == [1, 2, 3, 4, 5, 6]
    assert lines[0].split("\t")[2:] == ["decision", "allow", "s1", "/src/app", "git status"]
    assert lines[1].split("\t")[3] == "exit 0 15ms"
    assert lines[3].split("\t")[3] == "approved by carol"
    assert (
        lines[5].split("\t")[6] == "rm -rf /\\tnow\\x1b[2J"
    )  # control characters never reach the terminal
    assert "\x1b" not in r.stdout


def test_json_prints_the_stored_lines(log_path: Path) -> None:
    stored = write_history(log_path, HISTORY)
    r = xguard("audit", "--json")
    assert r.returncode == 0 and r.stdout.splitlines() == stored
    r = xguard("audit", "--json", "--last", "2")
    assert r.stdout.splitlines() == stored[-2:]


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--last", "3"], [4, 5, 6]),
        (["--last", "0"], []),
        (["--session", "s2"], [3, 4, 5, 6]),
        (["--decision", "deny"], [6]),
        (["--decision", "allow,deny"], [1, 6]),
        (["--event", "pending", "--event", "approved"], [3, 4]),
        (["--grep", "deploy"], [3, 5]),
        (["--cwd", "/src"], [1, 2]),
        (["--user", "bob"], [3, 5, 6]),
        (["--since", "1d"], [3, 4, 5, 6]),
        (["--since", "1h"], [6]),
        (["--until", "2h"], [1, 2, 3]),
        (["--since", ts(7150).replace(".000000Z", "Z")], [4, 5, 6]),
        (["--session", "s2", "--decision", "require_approval", "--last", "1"], [5]),
    ],
)
def test_filters(log_path: Path, args: list[str], expect: list[int]) -> None:
    write_history(log_path, HISTORY)
    r = xguard("audit", *args)
    assert r.returncode == 0, r.stderr
    assert seqs(r.stdout) == expect


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--since", "yesterdayish"], "--since"),
        (["--until", "3x"], "--until"),
        (["--last", "-1"], "--last"),
        (["report", "--since", "soon"], "--since"),
    ],
)
def test_unparseable_filter_is_a_usage_error(log_path: Path, args: list[str], flag: str) -> None:
    write_history(log_path, HISTORY)
    r = xguard("audit", *args)
    assert r.returncode == 64
    assert flag in r.stderr and r.stdout == ""


def test_missing_log(home: Path) -> None:
    for args in (
        ["audit"],
        ["audit", "--last", "5"],
        ["audit", "verify"],
        ["audit", "report"],
        ["audit", "--follow"],
    ):
        r = xguard(*args)
        assert r.returncode == 1, args
        assert r.stderr == f"xguard: no audit log at {home / 'audit' / 'audit.jsonl'}\n"


def test_log_that_is_not_a_file(log_path: Path) -> None:
    log_path.mkdir(parents=True)
    r = xguard("audit")
    assert r.returncode == 1
    assert r.stderr.startswith("xguard: cannot read the audit log") and r.stderr.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_log(log_path: Path) -> None:
    write_history(log_path, HISTORY)
    log_path.chmod(0)
    r = xguard("audit")
    assert r.returncode == 1 and "permission denied" in r.stderr and r.stderr.count("\n") == 1


def test_torn_and_junk_lines_are_skipped_with_one_warning(log_path: Path) -> None:
    lines = write_history(log_path, HISTORY)
    log_path.write_text(
        "\n".join([*lines[:2], "not json", *lines[2:4], "{oops", *lines[4:]]) + "\n" + '{"ts":"x'
    )
    for args in (["audit"], ["audit", "--last", "10"]):
        r = xguard(*args)
        assert r.returncode == 0
        assert seqs(r.stdout) == [1, 2, 3, 4, 5, 6]
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("xguard: warning: skipped 3 lines")
    r = xguard("audit", "verify")
    assert r.returncode == 1 and f"{log_path}:3: not JSON" in r.stdout


def test_output_cut_short_by_the_reader(log_path: Path) -> None:
    log = AuditLog(log_path)
    for i in range(3000):
        log.append("decision", command=f"cmd {i}")
    exe = xguard_exe()[0]
    xg = subprocess.Popen([exe, "audit"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert xg.stdout is not None and xg.stderr is not None
    head = subprocess.run(
        ["head", "-1"], stdin=xg.stdout, capture_output=True, text=True, check=False
    )
    xg.stdout.close()  # head has gone: the next write gets EPIPE
    err = xg.stderr.read().decode()
    assert xg.wait(timeout=60) == 0
    r = subprocess.CompletedProcess(head.args, 0, head.stdout, err)
    assert r.stdout.count("\n") == 1 and r.stderr == ""


def test_table_on_a_terminal(log_path: Path) -> None:
    write_history(log_path, HISTORY)

    def on_pty(env: dict[str, str]) -> str:
        parent, child = pty.openpty()
        exe = xguard_exe()[0]
        proc = subprocess.Popen(
            [exe, "audit"], stdout=child, stderr=child, env={**os.environ, **env}
        )
        os.close(child)
        out = b""
        try:
            while True:
                try:
                    chunk = os.read(parent, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            assert proc.wait(timeout=30) == 0
        finally:
            os.close(parent)
            if proc.poll() is None:
                proc.kill()
        return out.decode()

    colour = on_pty({"TERM": "xterm-256color", "COLUMNS": "160"})
    assert "time (UTC)" in colour and "make deploy" in colour and "\x1b[" in colour
    plain = on_pty({"TERM": "xterm-256color", "COLUMNS": "160", "NO_COLOR": "1"})
    assert "time (UTC)" in plain and "make deploy" in plain
    assert "\x1b[3" not in plain  # no colour (bold may stay: NO_COLOR is about colour)
    assert "\x1b[2J" not in plain and "rm -rf /\\tnow\\x1b[2J" in plain


@pytest.mark.parametrize("args", [["audit"], ["audit", "verify"], ["audit", "report"]])
def test_help(args: list[str]) -> None:
    r = xguard(*args, "--help")
    assert r.returncode == 0 and "Usage: xguard " + " ".join(args) in r.stdout


# ---------------------------------------------------------------------------
# verify


def tamper_cases(lines: list[str]) -> list[tuple[str, list[str], str, int]]:
    ls = lines
    return [
        ("edit one byte", [*ls[:4], ls[4].replace("cmd 5", "cmd 6"), *ls[5:]], "edited", 5),
        ("delete a line", [*ls[:4], *ls[5:]], "missing", 5),
        ("insert a copy", [*ls[:6], ls[1], *ls[6:]], "inserted", 7),
        ("swap two lines", [*ls[:4], ls[5], ls[4], *ls[6:]], "reordered", 5),
        ("break the JSON", [*ls[:4], ls[4][:30], *ls[5:]], "not JSON", 5),
    ]


@pytest.mark.parametrize("case", range(5), ids=["edit", "delete", "insert", "swap", "json"])
def test_verify_names_the_bad_line(log_path: Path, case: int) -> None:
    log = AuditLog(log_path)
    for i in range(1, 11):
        log.append("decision", command=f"cmd {i}")
    r = xguard("audit", "verify")
    assert r.returncode == 0 and r.stdout.startswith("audit log intact: 10 records in 1 file\n")
    name, lines, kind, line = tamper_cases(log_path.read_text().splitlines())[case]
    log_path.write_text("\n".join(lines) + "\n")
    r = xguard("audit", "verify")
    assert r.returncode == 1, name
    assert f"audit log BROKEN: {log_path}:{line}: {kind}: " in r.stdout
    assert r.stdout.splitlines()[-1].startswith("head: seq ")
    r = xguard("audit", "verify", "--json")
    obj = json.loads(r.stdout)
    assert r.returncode == 1 and not obj["ok"]
    assert (obj["problem"]["file"], obj["problem"]["line"], obj["problem"]["kind"]) == (
        str(log_path),
        line,
        kind,
    )


def test_verify_anchor_catches_a_truncated_tail(tmp_path: Path, log_path: Path) -> None:
    log = AuditLog(log_path)
    for i in range(10):
        log.append("decision", command=f"cmd {i}")
    saved = xguard("audit", "verify")
    assert saved.returncode == 0
    anchor = tmp_path / "head.txt"
    anchor.write_text(saved.stdout)
    log.append("exit", exit_code=0)
    r = xguard("audit", "verify", "--anchor", str(anchor))
    assert r.returncode == 0 and "anchor seq 10 found" in r.stdout
    log_path.write_text("".join(log_path.read_text().splitlines(keepends=True)[:7]))
    assert xguard("audit", "verify").returncode == 0  # without the anchor, a shorter log looks fine
    r = xguard("audit", "verify", "--anchor", str(anchor))
    assert r.returncode == 1
    assert (
        f"{log_path}:8: truncated: the log ends at seq 7, but the anchor holds seq 10" in r.stdout
    )


def test_verify_anchor_errors_are_usage_errors(tmp_path: Path, log_path: Path) -> None:
    AuditLog(log_path).append("decision")
    (tmp_path / "junk").write_text("hello")
    for arg in (str(tmp_path / "missing"), str(tmp_path / "junk")):
        r = xguard("audit", "verify", "--anchor", arg)
        assert r.returncode == 64 and "--anchor" in r.stderr


def test_verify_across_rotation_with_a_repaired_torn_line(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=2500, keep=20)
    for i in range(12):
        log.append("decision", command=f"cmd {i}", note="x" * 100)
    with open(log_path, "ab") as fh:
        fh.write(b'{"ts":"2024')  # a writer killed mid-line
    for i in range(12):
        log.append("decision", command=f"more {i}", note="x" * 100)
    r = xguard("audit", "verify")
    assert r.returncode == 0, r.stdout
    assert (
        "note: " in r.stdout
        and ": torn: " in r.stdout
        and "audit log intact: 24 records in" in r.stdout
    )


# ---------------------------------------------------------------------------
# report


def test_report(log_path: Path) -> None:
    write_history(log_path, HISTORY)
    r = xguard("audit", "report", "--json", "--since", "7d")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["records"] == 6
    assert {x["rule"]: x["hits"] for x in rep["rules"]} == {
        "rules.yaml:3": 1,
        "default": 1,
        "rules.yaml:9": 1,
    }
    assert [(a["text"], a["approvals"]) for a in rep["approved"]] == [("make deploy", 1)]
    assert rep["denials"] == [{"reason": "deletes everything", "count": 1}]
    assert rep["time_to_decision"] == {"count": 1, "median_s": 100.0, "p95_s": 100.0}
    r = xguard("audit", "report", "--since", "1d")
    assert r.returncode == 0
    assert "- regex: '^make deploy$'  # approved 1 time, never denied\n  action: allow" in r.stdout
    assert "git status" not in r.stdout and "Audit report since" in r.stdout


# ---------------------------------------------------------------------------
# follow


class Follower:
    """`xguard audit --follow --json` in the background; lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        exe = xguard_exe()[0]
        self.proc = subprocess.Popen(
            [exe, "audit", "--follow", "--json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def take(self, n: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        out: list[dict[str, Any]] = []
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(json.loads(self.lines.get(timeout=left)))
            except queue.Empty:
                break
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_follow_sees_new_lines_and_survives_rotation(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=3000, keep=100)
    for i in range(15):
        log.append("decision", command=f"old {i}")
    f = Follower()
    try:
        first = f.take(10)
        assert [r["command"] for r in first] == [
            f"old {i}" for i in range(5, 15)
        ]  # the last 10, like tail -f
        for i in range(40):
            log.append("decision", command=f"new {i}", note="n" * 150)
            if i % 10 == 0:
                time.sleep(0.3)  # let the follower poll between some rotations
        got = f.take(40)
        assert [r["command"] for r in got] == [f"new {i}" for i in range(40)]
        assert len(list(log_path.parent.glob("audit.jsonl.*"))) >= 3
        assert f.take(1, timeout=0.5) == []  # and nothing twice
    finally:
        f.stop()
    assert f.proc.stderr is not None and f.proc.stderr.read() == b""


def test_follow_with_a_filter(log_path: Path) -> None:
    log = AuditLog(log_path)
    log.append("decision", session="a", command="a0")
    f = Follower("--session", "b", "--last", "0")
    try:
        time.sleep(0.5)
        log.append("decision", session="a", command="a1")
        log.append("decision", session="b", command="b1")
        assert [r["command"] for r in f.take(1)] == ["b1"]
    finally:
        f.stop()

"""Audit chain edge cases: a lost final newline, removed oldest files, and
verify running while the writer rotates.

- A record that is whole but lost its final newline (a crash between the
  record and its newline, an editor that strips it) is the last link: the
  next record chains on from it, and verify stays quiet.
- The writer drops the oldest rotated file only when `keep` of them exist, so
  a history that starts after seq 1 with fewer rotated files has lost files;
  an anchor's record must still be there whatever `keep` says.
- verify takes the writers' lock before it reports a break, so a rotation
  under its feet is never reported as one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import xguard_exe
from xguard.audit.log import AuditLog
from xguard.audit.read import Head, verify


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit" / "audit.jsonl"


def test_record_missing_only_its_newline_is_the_last_link(log_path: Path) -> None:
    log = AuditLog(log_path)
    for i in range(3):
        log.append("decision", command=f"c{i}")
    log_path.write_bytes(log_path.read_bytes()[:-1])  # whole record, no newline
    before = verify(log_path)
    assert before.ok, before.problem
    third = log.append("decision", command="c3")
    lines = log_path.read_bytes().splitlines()
    assert len(lines) == 4
    recs = [json.loads(x) for x in lines]
    assert third["seq"] == 4 and third["prev"] == recs[2]["hash"]
    assert "repair" not in recs[3]
    after = verify(log_path)
    assert after.ok, after.problem
    assert after.records == 4 and after.notes == []


def _fill(log: AuditLog, rotated: int) -> None:
    """Append until `rotated` rotated files exist."""
    i = 0
    while not os.path.exists(log._rotated(rotated)):
        log.append("decision", command=f"command number {i}", note="x" * 40)
        i += 1
    log.append("decision", command="one more")


def _drop_oldest(log_path: Path, n: int) -> None:
    rotated = sorted(log_path.parent.glob(log_path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    for f in rotated[:n]:
        f.unlink()


def test_removed_oldest_files_fail_verify(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=800, keep=10)
    _fill(log, 5)
    intact = verify(log_path, keep=10)
    assert intact.ok and intact.notes == [], intact.problem
    head = intact.head
    assert head is not None
    _drop_oldest(log_path, 2)
    broken = verify(log_path, keep=10)
    assert not broken.ok
    assert broken.problem is not None and broken.problem.kind == "missing", broken.problem
    assert "keep" in broken.problem.detail
    # The anchor (the head saved before) is still there, and still not enough.
    assert not verify(log_path, Head(head.seq, head.hash), keep=10).ok


def test_rotation_that_dropped_files_passes(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=800, keep=3)
    _fill(log, 3)
    _fill(log, 3)  # more rotations: the writer itself drops the oldest files now
    for _ in range(40):
        log.append("decision", command="more", note="x" * 40)
    res = verify(log_path, keep=3)
    assert res.ok, res.problem
    assert [n.kind for n in res.notes] == ["start"]
    _drop_oldest(log_path, 1)  # now fewer than keep: someone removed one
    assert not verify(log_path, keep=3).ok


def test_anchor_before_the_oldest_record_fails(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=800, keep=3)
    first = log.append("decision", command="first")
    _fill(log, 3)
    _fill(log, 3)
    for _ in range(40):
        log.append("decision", command="more", note="x" * 40)
    res = verify(log_path, Head(first["seq"], first["hash"]), keep=3)
    assert not res.ok and res.problem is not None and res.problem.kind == "anchor"


def test_cli_verify_uses_the_configured_keep(xguard_home: Path) -> None:
    (xguard_home / "audit").mkdir(parents=True)
    (xguard_home / "rules.yaml").write_text(
        "default: require_approval\naudit: {rotate_bytes: 800, keep: 10}\n"
    )
    log_path = xguard_home / "audit" / "audit.jsonl"
    _fill(AuditLog(log_path, rotate_bytes=800, keep=10), 4)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*xguard_exe(), "audit", "verify"], capture_output=True, text=True, check=False
        )

    assert run().returncode == 0
    _drop_oldest(log_path, 1)
    out = run()
    assert out.returncode == 1, out.stdout
    assert "BROKEN" in out.stdout and "keep" in out.stdout


ROTATOR = textwrap.dedent("""
    import sys, time
    from xguard.audit.log import AuditLog
    path, stop = sys.argv[1], time.monotonic() + float(sys.argv[2])
    log = AuditLog(path, rotate_bytes=1500, keep=100000)
    i = 0
    while time.monotonic() < stop:
        log.append("decision", command=f"cmd {i}", note="n" * (i % 30))
        i += 1
""")


@pytest.mark.slow
def test_verify_during_rotation_sees_no_break(log_path: Path) -> None:
    AuditLog(log_path).append("decision", command="start")
    writer = subprocess.Popen([sys.executable, "-c", ROTATOR, str(log_path), "6"])
    try:
        time.sleep(0.3)
        runs, bad = 0, []
        while writer.poll() is None:
            res = verify(log_path)
            runs += 1
            if not res.ok:
                bad.append(str(res.problem))
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert runs > 5
    assert bad == [], f"{len(bad)} of {runs} verifies saw a break: {bad[:3]}"
    assert verify(log_path).ok

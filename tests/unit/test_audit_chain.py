"""The audit writer (xguard/audit.py): line format, hash chain, locking, rotation, forwarding."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from xguard.audit.log import FIELDS, GENESIS, TORN_TAIL, AuditLog
from xguard.audit.read import verify
from xguard.errors import AuditError, ConfigError

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit" / "audit.jsonl"


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_first_record_format(log_path: Path) -> None:
    rec = AuditLog(log_path).append(
        "decision",
        command="ls -l",
        decision="allow",
        zeta=1,
        alpha="a",
        units=[{"kind": "command", "text": "ls -l"}],
    )
    (line,) = log_path.read_bytes().split(b"\n")[:-1]
    assert log_path.read_bytes().endswith(b"\n")
    obj = json.loads(line)
    assert list(obj) == [*FIELDS, "alpha", "zeta", "prev", "hash"]
    assert obj == rec
    assert obj["seq"] == 1 and obj["prev"] == GENESIS and obj["event"] == "decision"
    assert TS.match(obj["ts"])
    assert obj["id"] is None and obj["exit_code"] is None  # missing fields are written as null
    prefix, _, _ = line.rpartition(b',"hash":')
    assert obj["hash"] == hashlib.sha256(prefix).hexdigest()
    assert line.endswith(b',"hash":"' + obj["hash"].encode() + b'"}')


def test_chain_links_records_across_writers(log_path: Path) -> None:
    first = AuditLog(log_path).append("decision", command="a")
    second = AuditLog(log_path).append("exit", exit_code=0)  # a new process opens the file afresh
    third = AuditLog(log_path).append("decision", command='ü 日本 \u2028 "q"\n')
    assert [first["seq"], second["seq"], third["seq"]] == [1, 2, 3]
    assert second["prev"] == first["hash"] and third["prev"] == second["hash"]
    assert len(lines_of(log_path)) == 3  # newlines and U+2028 stay inside their line
    assert json.loads(lines_of(log_path)[2])["command"] == 'ü 日本 \u2028 "q"\n'
    assert verify(log_path).ok


def test_lone_surrogates_still_make_one_valid_line(log_path: Path) -> None:
    rec = AuditLog(log_path).append(
        "decision", command="cat \udcff"
    )  # argv bytes via surrogateescape
    line = lines_of(log_path)[0]
    assert json.loads(line)["command"] == "cat \udcff" == rec["command"]
    assert verify(log_path).ok


@pytest.mark.parametrize("field", ["ts", "seq", "prev", "hash"])
def test_writer_owned_fields_are_refused(log_path: Path, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AuditLog(log_path).append("decision", **{field: "x"})


def test_creates_private_folder_and_file(log_path: Path) -> None:
    old = os.umask(0)
    try:
        AuditLog(log_path).append("decision")
    finally:
        os.umask(old)
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600


def _break_parent(p: Path) -> Path:
    p.parent.mkdir(parents=True)
    blocker = p.parent / "file"
    blocker.write_text("x")
    return blocker / "audit.jsonl"  # ENOTDIR


def _symlink(p: Path) -> Path:
    p.parent.mkdir(parents=True)
    (p.parent / "elsewhere").write_text("")
    p.symlink_to(p.parent / "elsewhere")  # the agent pointing the log at /dev/null, say
    return p


def _directory(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


@pytest.mark.parametrize("make", [_break_parent, _symlink, _directory])
def test_unwritable_log_raises_audit_error_naming_the_file(log_path: Path, make: Any) -> None:
    path = make(log_path)
    with pytest.raises(AuditError) as exc:
        AuditLog(path).append("decision", command="ls")
    assert str(path) in exc.value.message
    assert "\n" not in exc.value.message


@pytest.mark.parametrize(
    "fail",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EROFS, "Read-only file system"),
        OSError(errno.EACCES, "Permission denied"),
    ],
)
def test_write_errors_become_audit_errors(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, fail: OSError
) -> None:
    log = AuditLog(log_path)
    log.append("decision")

    def broken_write(fd: int, data: bytes) -> int:
        raise fail

    monkeypatch.setattr(os, "write", broken_write)
    with pytest.raises(AuditError, match=re.escape(f"{log_path}: {fail.strerror}")):
        log.append("decision", command="rm -rf /")


def test_short_write_is_an_audit_error(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, data[:10]))
    with pytest.raises(AuditError, match="short write"):
        AuditLog(log_path).append("decision")


def test_fsync_failure_is_an_audit_error(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", no_sync)
    with pytest.raises(AuditError, match="Input/output error"):
        AuditLog(log_path).append("decision")


@pytest.mark.parametrize(
    ("junk", "fresh_line"),
    [
        (b'{"ts":"2024-01-01T00:00:00.000000Z","seq":3,"ev', True),  # torn: no newline
        (b"garbage\n", False),  # a whole line, not JSON
        (b'{"ts":"x"}\n', False),  # JSON, not a record
    ],
)
def test_torn_tail_is_repaired_and_noted(log_path: Path, junk: bytes, fresh_line: bool) -> None:
    log = AuditLog(log_path)
    log.append("decision")
    good = log.append("exit", exit_code=0)
    with open(log_path, "ab") as fh:
        fh.write(junk)
    rec = log.append("decision", command="after")
    lines = lines_of(log_path)
    assert lines[2] == junk.rstrip(b"\n")  # the junk stays, untouched, on its own line
    assert json.loads(lines[3]) == rec
    assert rec["seq"] == good["seq"] + 1 and rec["prev"] == good["hash"]
    assert rec["repair"] == TORN_TAIL
    assert log.append("exit")["prev"] == rec["hash"]  # and the chain goes on normally
    result = verify(log_path)
    assert result.ok, result.problem
    assert len(result.notes) == 1 and result.notes[0].line == 3


def test_all_junk_file_chains_from_the_rotated_file(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=1)  # every append to a non-empty file rotates it
    log.append("decision")
    last = log.append("decision")
    log.append("decision")  # moves `last` to audit.jsonl.1
    log_path.write_bytes(b"junk")  # the live file now holds nothing usable
    rec = log.append("exit")
    assert (
        rec["seq"] == last["seq"] + 1 and rec["prev"] == last["hash"] and rec["repair"] == TORN_TAIL
    )


def test_reads_only_the_tail_of_a_big_file(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(log_path)
    log.append("decision")
    last = log.append("decision", note="x" * 100)
    # 20 MB of earlier history in front of the last record: appending must not read it.
    body = log_path.read_bytes()
    log_path.write_bytes(b"\n" * (20 << 20) + body)
    read: list[int] = []
    real = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        read.append(n)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", counting_pread)
    rec = log.append("exit")
    assert rec["prev"] == last["hash"]
    assert sum(read) <= 128 * 1024  # a block or two from the end


def test_config_errors(log_path: Path) -> None:
    with pytest.raises(ConfigError):
        AuditLog(log_path, keep=0)
    with pytest.raises(ConfigError):
        AuditLog(log_path, rotate_bytes=0)
    with pytest.raises(ConfigError):
        AuditLog(log_path, forward={"syslog": {"facility": "kernel-ish"}})


# ---------------------------------------------------------------------------
# Rotation


def test_rotation_keeps_n_files_and_continues_the_chain(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=2000, keep=3)
    recs = [log.append("decision", command=f"cmd {i}", note="n" * 200) for i in range(40)]
    files = sorted(p.name for p in log_path.parent.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    for p in log_path.parent.iterdir():
        data = p.read_bytes()
        assert data.endswith(b"\n") and len(data) <= 2000  # whole lines only, never over the limit
        assert all(json.loads(x) for x in data.splitlines())
    first_live = json.loads(lines_of(log_path)[0])
    last_rotated = json.loads(lines_of(log_path.with_name("audit.jsonl.1"))[-1])
    assert (
        first_live["prev"] == last_rotated["hash"] and first_live["seq"] == last_rotated["seq"] + 1
    )
    assert json.loads(lines_of(log_path)[-1]) == recs[-1]
    result = verify(log_path)
    assert result.ok, result.problem
    assert result.head is not None and result.head.seq == 40
    assert [n.kind for n in result.notes] == [
        "start"
    ]  # the oldest files were dropped: said, not failed


def test_record_bigger_than_rotate_bytes_is_written_whole(log_path: Path) -> None:
    log = AuditLog(log_path, rotate_bytes=100)
    log.append("decision", note="x" * 500)
    log.append("decision", note="y" * 500)
    assert len(lines_of(log_path)) == 1 and len(lines_of(log_path.with_name("audit.jsonl.1"))) == 1
    assert verify(log_path).ok


WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from xguard.audit.log import AuditLog
    path, n, rotate = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) or None
    sys.stdin.read()  # start together
    for i in range(n):
        # A new AuditLog per append: each xguard process appends once or twice.
        log = AuditLog(path, rotate_bytes=rotate, keep=1000)
        log.append("decision", pid=os.getpid(), command=f"cmd {i}", note="z" * (i % 50))
""")


def run_writers(path: Path, procs: int, each: int, rotate: int = 0) -> list[int]:
    kids = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(each), str(rotate)],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(procs)
    ]
    try:
        for k in kids:
            assert k.stdin is not None
            k.stdin.close()
        for k in kids:
            assert k.wait(timeout=180) == 0, k.stderr.read().decode() if k.stderr else ""
    finally:
        for k in kids:
            if k.poll() is None:
                k.kill()
    return [k.pid for k in kids]


def all_records(path: Path) -> list[dict[str, Any]]:
    files = [*sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:])), path]
    out = []
    for f in files:
        data = f.read_bytes()
        assert data.endswith(b"\n"), f
        out += [json.loads(x) for x in data.splitlines()]  # every line whole
    return out


@pytest.mark.slow
def test_fifty_concurrent_writers(log_path: Path) -> None:
    pids = run_writers(log_path, 50, 100)
    recs = all_records(log_path)
    assert [r["seq"] for r in recs] == list(range(1, 5001))
    for pid in pids:
        assert sorted(r["command"] for r in recs if r["pid"] == pid) == sorted(
            f"cmd {i}" for i in range(100)
        )
    result = verify(log_path)
    assert result.ok, result.problem
    assert result.records == 5000


@pytest.mark.slow
def test_rotation_under_concurrent_writers(log_path: Path) -> None:
    run_writers(log_path, 10, 100, rotate=8192)
    rotated = list(log_path.parent.glob("audit.jsonl.*"))
    assert len(rotated) > 10
    assert not list(log_path.parent.glob(".*"))  # no temporary file left behind
    recs = all_records(log_path)
    assert [r["seq"] for r in recs] == list(range(1, 1001))
    assert all(f.stat().st_size <= 8192 for f in [*rotated, log_path])
    result = verify(log_path)
    assert result.ok, result.problem
    assert result.notes == []


# ---------------------------------------------------------------------------
# Forwarding

RFC5424 = re.compile(rb"^<(\d+)>1 (\S+) (\S+) xguard (\d+) (\S+) - \xef\xbb\xbf(.*)$", re.S)


def test_forwards_rfc5424_over_udp(log_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        port = rx.getsockname()[1]
        log = AuditLog(
            log_path, forward={"syslog": {"address": f"127.0.0.1:{port}", "protocol": "udp"}}
        )
        recs = [
            log.append("decision", command="ls", decision="allow"),
            log.append("decision", command="rm -rf /", decision="deny"),
            log.append("exit", exit_code=0),
        ]
        msgs = [rx.recv(65536) for _ in recs]
    lines = lines_of(log_path)
    for msg, rec, line in zip(msgs, recs, lines, strict=True):
        m = RFC5424.match(msg)
        assert m, msg
        _pri, ts, host, pid, msgid, body = m.groups()
        assert ts.decode() == rec["ts"] and host.decode() == os.uname().nodename
        assert int(pid) == os.getpid() and msgid.decode() == rec["event"]
        assert body == line  # the JSON line itself, verifiable on the collector
    pris = []
    for msg in msgs:
        head = RFC5424.match(msg)
        assert head is not None
        pris.append(int(head.group(1)))
    assert pris == [10 * 8 + 6, 10 * 8 + 5, 10 * 8 + 6]


def test_forwards_over_tcp_with_octet_counting(log_path: Path) -> None:
    got: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.settimeout(5)

        def serve() -> None:
            for _ in range(2):
                conn, _ = srv.accept()
                with conn:
                    data = b""
                    while chunk := conn.recv(65536):
                        data += chunk
                    got.append(data)

        t = threading.Thread(target=serve)
        t.start()
        log = AuditLog(
            log_path,
            forward={
                "syslog": {
                    "address": f"127.0.0.1:{srv.getsockname()[1]}",
                    "protocol": "tcp",
                    "facility": "local0",
                }
            },
        )
        log.append("pending", command="kubectl apply")
        log.append("approved", reviewer="ana")
        t.join(10)
    assert len(got) == 2
    for data, line in zip(got, lines_of(log_path), strict=True):
        n, _, msg = data.partition(b" ")
        assert int(n) == len(msg)
        m = RFC5424.match(msg)
        assert m and m.group(1) == b"134" and m.group(6) == line  # local0.info


@pytest.mark.parametrize(
    "forward",
    [
        {"syslog": {"address": "127.0.0.1:1", "protocol": "tcp"}},  # nobody listening
        {"syslog": {"address": "/nonexistent/dev/log"}},  # no syslog socket
        {"syslog": {"address": "no-such-host.invalid:514"}},  # cannot resolve
    ],
)
def test_forwarding_failure_never_fails_the_append(log_path: Path, forward: dict[str, Any]) -> None:
    log = AuditLog(log_path, forward=forward)
    rec = log.append("decision", command="ls")
    assert rec["seq"] == 1 and len(lines_of(log_path)) == 1
    assert log.forward_error


def test_writer_imports_nothing_heavy() -> None:
    code = (
        "import sys; before = set(sys.modules); import xguard.audit.log; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "xguard.audit.log" in out
    for heavy in (
        "filelock",
        "click",
        "rich",
        "yaml",
        "platformdirs",
        "_hashlib",
        "hashlib",
        "socket",
    ):
        assert heavy not in out, heavy

"""Output recordings end to end (issue 14): a real bash prints through the
installed xguard; what the caller received, what `xguard audit show` gives
back, the exit record's hashes and `audit verify` must all agree, and any
change to a recording must be caught and named."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

RULES = """\
default: require_approval
rules:
  - {pattern: "*", action: allow, dynamic: allow}
  - {pattern: "cat customers.csv", action: allow, record: false, reason: "customer data"}
profiles:
  quiet: {record: false}
  small: {record: {max_bytes: 1000}}
"""


@pytest.fixture
def home(xguard_home: Path) -> Path:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(RULES)
    return xguard_home


def xg(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    e = {**os.environ, "XGUARD_WAIT": "0", **(env or {})}
    kw.setdefault("capture_output", True)
    return subprocess.run([*xguard_exe(), *args], env=e, timeout=timeout, check=False, **kw)


def records(home: Path) -> list[dict[str, Any]]:
    """Every record, rotated files (audit.jsonl.N) included, oldest first."""
    files = sorted((home / "audit").glob("audit.jsonl.*"), key=lambda f: -int(f.suffix[1:]))
    out = []
    for f in [*files, home / "audit" / "audit.jsonl"]:
        out += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return out


def last_exit(home: Path) -> dict[str, Any]:
    return next(r for r in reversed(records(home)) if r["event"] == "exit")


def frames(path: Path) -> list[tuple[int, int, bytes]]:
    """The recording decoded here, independently of xguard's reader (README's format)."""
    raw = gzip.decompress(path.read_bytes())
    assert raw.startswith(b"XGREC1\n")
    i, out = 7, []
    while i < len(raw):
        kind, t, n = (
            raw[i],
            int.from_bytes(raw[i + 1 : i + 9], "big"),
            int.from_bytes(raw[i + 9 : i + 13], "big"),
        )
        out.append((kind, t, raw[i + 13 : i + 13 + n]))
        i += 13 + n
    return out


def output_frames(path: Path) -> list[tuple[int, bytes]]:
    return [(k, d) for k, _t, d in frames(path) if k in (1, 2, 3)]


# ---------------------------------------------------------------------------
# The byte-exact round trip the issue measures, and verify catching changes.

ROUND_TRIP = "seq 1 200000; printf '\\x00\\xff'"


def test_round_trip_is_byte_exact_and_hashed(home: Path) -> None:
    direct = subprocess.run(["bash", "-c", ROUND_TRIP], capture_output=True, check=True).stdout
    p = xg("-c", ROUND_TRIP)
    assert p.returncode == 0, p.stderr
    assert p.stdout == direct  # the caller got every byte, untouched
    ex = last_exit(home)
    out = ex["output"]
    assert out["bytes"] == out["kept"] == len(direct) and out["truncated"] is False
    back = xg("audit", "show", ex["id"], "--output")
    assert back.returncode == 0, back.stderr
    assert back.stdout == direct
    assert hashlib.sha256(back.stdout).hexdigest() == out["sha256"]
    path = home / "audit" / out["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == out["file_sha256"]
    assert path.stat().st_mode & 0o777 == 0o600
    v = xg("audit", "verify")
    assert v.returncode == 0 and b"1 output recording" in v.stdout


def _flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-20])


def _replace_with_other_content(p: Path) -> None:
    p.write_bytes(gzip.compress(b"XGREC1\n"))


def _fifo(p: Path) -> None:
    p.unlink()
    os.mkfifo(p)


def _link_to_dev_zero(p: Path) -> None:
    p.unlink()
    p.symlink_to("/dev/zero")


def _link_to_a_copy(p: Path) -> None:
    copy = p.with_name("elsewhere")
    copy.write_bytes(p.read_bytes())
    p.unlink()
    p.symlink_to(copy)


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (_flip_byte, "altered"),
        (_truncate, "altered"),
        (_replace_with_other_content, "altered"),
        (Path.unlink, "missing"),
        # in a recording's place, a FIFO blocked the open and a link to
        # /dev/zero never ended: verify and show hung instead of reporting
        (_fifo, "not a regular file"),
        (_link_to_dev_zero, "not a regular file (a symbolic link)"),
        (_link_to_a_copy, "not a regular file (a symbolic link)"),
    ],
)
def test_verify_names_the_command_whose_recording_changed(
    home: Path, damage: Any, said: str
) -> None:
    assert xg("-c", ROUND_TRIP).returncode == 0
    ex = last_exit(home)
    assert xg("-c", "echo later").returncode == 0  # the damaged one is not the last record
    damage(home / "audit" / ex["output"]["file"])
    v = xg("audit", "verify")
    assert v.returncode == 1
    text = v.stdout.decode()
    assert "BROKEN" in text and f"command {ex['id']}" in text and said in text
    j = json.loads(xg("audit", "verify", "--json").stdout)
    assert j["ok"] is False and j["problem"]["kind"] == "recording"
    # show refuses to pass a damaged recording off as the real one
    s = xg("audit", "show", ex["id"], "--output")
    assert s.returncode == 1 and s.stdout == b"" and said in s.stderr.decode()


def test_a_command_that_prints_nothing_has_no_file(home: Path) -> None:
    assert xg("-c", "true").returncode == 0
    out = last_exit(home)["output"]
    assert out["bytes"] == 0 and "file" not in out
    assert out["sha256"] == hashlib.sha256(b"").hexdigest()
    assert not (home / "audit" / "output").exists()
    assert xg("audit", "verify").returncode == 0


# ---------------------------------------------------------------------------
# Order, streams, cap, masking.


def test_interleaved_stdout_and_stderr_keep_their_order(home: Path) -> None:
    cmd = "for i in 1 2 3; do echo out$i; sleep 0.05; echo err$i >&2; sleep 0.05; done"
    p = xg("-c", cmd)
    assert p.stdout == b"out1\nout2\nout3\n" and p.stderr.endswith(b"err1\nerr2\nerr3\n")
    path = home / "audit" / last_exit(home)["output"]["file"]
    assert output_frames(path) == [
        (1, b"out1\n"),
        (2, b"err1\n"),
        (1, b"out2\n"),
        (2, b"err2\n"),
        (1, b"out3\n"),
        (2, b"err3\n"),
    ]
    times = [t for k, t, _ in frames(path) if k in (1, 2)]
    assert times == sorted(times) and times[-1] - times[0] >= 200_000  # microseconds


def test_merged_stdout_and_stderr_are_one_stream_in_exact_order(home: Path) -> None:
    # 2>&1 by the caller: both go to one pipe, so the order is exact with no pauses.
    cmd = "for i in $(seq 1 200); do echo o$i; echo e$i >&2; done"
    p = xg("-c", cmd, stderr=subprocess.STDOUT, capture_output=False, stdout=subprocess.PIPE)
    expected = b"".join(b"o%d\ne%d\n" % (i, i) for i in range(1, 201))
    assert p.stdout == expected
    path = home / "audit" / last_exit(home)["output"]["file"]
    got = output_frames(path)
    assert {k for k, _ in got} == {3}
    assert b"".join(d for _, d in got) == expected


def test_over_the_cap_the_rest_is_counted_not_kept(home: Path) -> None:
    p = xg("-c", "seq 1 10000", env={"XGUARD_PROFILE": "small"})
    full = subprocess.run(["seq", "1", "10000"], capture_output=True, check=True).stdout
    assert p.stdout == full  # the caller still gets everything
    ex = last_exit(home)
    out = ex["output"]
    assert (out["bytes"], out["kept"], out["truncated"]) == (len(full), 1000, True)
    back = xg("audit", "show", ex["id"], "--output").stdout
    assert back == full[:1000]
    assert hashlib.sha256(back).hexdigest() == out["sha256"]
    assert "1000 kept" in xg("audit", "show", ex["id"]).stdout.decode()


BURST = 24 * 1024 * 1024  # more than a pipe holds, widened or not: the kernel-copy path runs


@pytest.mark.parametrize("merged", [False, True], ids=["own-pipes", "2>&1"])
def test_past_the_cap_a_burst_reaches_the_caller_whole_and_in_order(
    home: Path, tmp_path: Path, merged: bool
) -> None:
    """Once nothing more is kept, big bursts go caller-ward by splice(2); every
    byte still arrives, in order with what stderr says, and is counted."""
    burst = os.urandom(BURST)
    (tmp_path / "burst.bin").write_bytes(burst)
    cmd = "printf 'first\\n' >&2; cat burst.bin; printf 'last\\n' >&2; seq 1 5000"
    err = subprocess.STDOUT if merged else subprocess.PIPE
    p = xg(
        "-c",
        cmd,
        env={"XGUARD_PROFILE": "small"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=err,
        capture_output=False,
    )
    seq = subprocess.run(["seq", "1", "5000"], capture_output=True, check=True).stdout
    if merged:
        assert p.stdout == b"first\n" + burst + b"last\n" + seq
    else:
        assert p.stdout == burst + seq
        assert p.stderr == b"first\nlast\n"
    out_rec = last_exit(home)["output"]
    assert (out_rec["bytes"], out_rec["kept"], out_rec["truncated"]) == (
        len(burst) + len(seq) + 11,
        1000,
        True,
    )


KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n" * 40
    + "-----END OPENSSH PRIVATE KEY-----\n"
)
SECRETS = [
    ("AKIAIOSFODNN7EXAMPLE", "[masked:aws]"),
    ("ghp_" + "a1B2c3D4e5" * 4, "[masked:github]"),
    ("github_pat_" + "11ABCDEFG0" * 8, "[masked:github]"),
    ("xoxb-1234567890-abcdefghij", "[masked:slack]"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "Authorization: [masked:bearer]"),
    (KEY, "[masked:private-key]\n"),
]


@pytest.mark.parametrize(("secret", "stored"), SECRETS, ids=[s[1] for s in SECRETS])
def test_secrets_are_masked_across_writes_and_counted(
    home: Path, tmp_path: Path, secret: str, stored: str
) -> None:
    # The secret is written in two halves with a pause between: two reads.
    half = len(secret) // 2
    (tmp_path / "a").write_text("before " + secret[:half])
    (tmp_path / "b").write_text(secret[half:] + " after\n")
    p = xg("-c", f"cat {tmp_path}/a; sleep 0.2; cat {tmp_path}/b")
    assert p.stdout.decode() == "before " + secret + " after\n"  # the agent sees it
    ex = last_exit(home)
    assert ex["output"]["masked"] == 1
    back = xg("audit", "show", ex["id"], "--output").stdout.decode()
    assert back == "before " + stored + " after\n"
    assert secret not in back


@pytest.mark.parametrize(("secret", "stored"), SECRETS, ids=[s[1] for s in SECRETS])
def test_secrets_are_masked_when_the_other_stream_writes_between_their_halves(
    home: Path, tmp_path: Path, secret: str, stored: str
) -> None:
    """A write to stderr between the halves used to release the held-back
    half as it was, so the secret was stored whole (masked: 0)."""
    half = len(secret) // 2
    (tmp_path / "a").write_text("before " + secret[:half])
    (tmp_path / "b").write_text(secret[half:] + " after\n")
    p = xg("-c", f"cat {tmp_path}/a; sleep 0.2; echo progress >&2; sleep 0.2; cat {tmp_path}/b")
    assert p.stdout.decode() == "before " + secret + " after\n"
    ex = last_exit(home)
    assert ex["output"]["masked"] == 1
    path = home / "audit" / ex["output"]["file"]
    out = b"".join(d for k, d in output_frames(path) if k == 1).decode()
    assert out == "before " + stored + " after\n"
    assert b"progress\n" in [d for k, d in output_frames(path) if k == 2]


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ({"args": ("-c", "cat customers.csv")}, "customer data"),
        ({"args": ("-c", "echo hi"), "env": {"XGUARD_PROFILE": "quiet"}}, "profile quiet"),
    ],
)
def test_record_false_keeps_nothing_and_says_why(
    home: Path, tmp_path: Path, how: dict[str, Any], why: str
) -> None:
    (tmp_path / "customers.csv").write_text("alice,1\n")
    p = xg(*how["args"], env=how.get("env"), cwd=tmp_path)
    assert p.returncode == 0 and p.stdout
    ex = last_exit(home)
    assert ex["output"]["recorded"] is False and why in ex["output"]["why"]
    assert not (home / "audit" / "output").exists()
    s = xg("audit", "show", ex["id"])
    assert s.returncode == 0 and "not recorded" in s.stdout.decode()
    assert xg("audit", "show", ex["id"], "--output").returncode == 1


def test_binary_escapes_and_invalid_utf8_are_stored_exactly_and_shown_safely(
    home: Path,
) -> None:
    cmd = "printf '\\033[31mred\\033[0m \\x00 \\xc3\\x28 \\x9b2J\\n'"
    p = xg("-c", cmd)
    ex = last_exit(home)
    assert xg("audit", "show", ex["id"], "--output").stdout == p.stdout
    # On a terminal `show` escapes them; --raw does not.
    shown = _on_pty([*xguard_exe(), "audit", "show", ex["id"]])[0]
    assert b"\\x1b[31mred\\x1b[0m" in shown and b"\\x00" in shown and b"\\xc3(" in shown
    assert b"\x1b[31m" not in shown and b"\x00" not in shown
    raw = _on_pty([*xguard_exe(), "audit", "show", ex["id"], "--raw"])[0]
    assert b"\x1b[31mred" in raw


# ---------------------------------------------------------------------------
# A terminal: the command gets a pty of its own.


def _on_pty(
    argv: list[str],
    typed: bytes | list[bytes] = b"",
    size: tuple[int, int] = (33, 111),
    timeout: float = 30,
    resize_to: tuple[int, int] | None = None,
) -> tuple[bytes, int]:
    """Run argv on a new pty (its controlling terminal); what appeared, and the exit status.
    `typed` is typed after a second (a list: one item a second)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))

    def ctty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=ctty,  # noqa: PLW1509 - the pty must be the controlling terminal
        env={**os.environ, "XGUARD_WAIT": "0", "TERM": "xterm"},
    )
    os.close(slave)
    got = b""
    for keys in [typed] if isinstance(typed, bytes) else typed:
        if keys:
            time.sleep(1.0)
            os.write(master, keys)
    if resize_to is not None:
        time.sleep(1.0)
        # As a terminal window does: the kernel sends SIGWINCH to xguard.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *resize_to, 0, 0))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            got += data
        elif proc.poll() is not None:
            break
    os.close(master)
    return got, proc.wait(10)


def test_on_a_terminal_the_command_gets_a_pty_and_it_is_recorded(home: Path) -> None:
    got, code = _on_pty(
        [
            *xguard_exe(),
            "-c",
            "test -t 0 && test -t 1 && test -t 2 && echo tty; stty size; "
            "printf '\\033[32mgreen\\033[0m\\n'; echo err >&2",
        ]
    )
    assert code == 0
    assert got == b"tty\r\n33 111\r\n\x1b[32mgreen\x1b[0m\r\nerr\r\n"
    ex = last_exit(home)
    path = home / "audit" / ex["output"]["file"]
    header = json.loads(frames(path)[0][2])
    assert (header["tty"], header["cols"], header["rows"]) == (True, 111, 33)
    assert b"".join(d for _, d in output_frames(path)) == got
    assert {k for k, _ in output_frames(path)} == {3}


def test_a_window_resize_reaches_the_command_and_is_recorded(home: Path) -> None:
    got, code = _on_pty(
        [*xguard_exe(), "-c", "stty size; sleep 2.5; stty size"], resize_to=(40, 132)
    )
    assert code == 0 and got == b"33 111\r\n40 132\r\n"
    path = home / "audit" / last_exit(home)["output"]["file"]
    assert [d for k, _t, d in frames(path) if k == 4] == [b"132 40"]
    cast = xg("audit", "replay", last_exit(home)["id"], "--format", "asciicast").stdout
    assert any(json.loads(x)[1:] == ["r", "132x40"] for x in cast.splitlines()[1:])


def test_on_a_terminal_keystrokes_and_ctrl_c_reach_the_command(home: Path) -> None:
    got, code = _on_pty([*xguard_exe(), "-c", "head -n 1"], typed=b"typed line\r")
    assert code == 0 and b"typed line" in got
    out = last_exit(home)["output"]
    assert out["kept"] > 0
    got, code = _on_pty([*xguard_exe(), "-c", "sleep 20; echo not reached"], typed=b"\x03")
    assert code == 130 and b"not reached" not in got
    assert last_exit(home)["exit_code"] == 130


def test_on_a_terminal_keys_typed_ahead_are_given_back(home: Path) -> None:
    # Typed while the command runs, never read by it: they belong to whatever
    # reads the terminal next, as without a pty in between.
    xg_exe = xguard_exe()[0]
    got, code = _on_pty(
        ["bash", "-c", f"{xg_exe} -c 'sleep 2'; head -c 12 | od -An -c"],
        typed=b"typed ahead\r",
    )
    assert code == 0
    assert b"t   y   p   e   d       a   h   e   a   d  \\r" in got, got


def test_the_interactive_shell_records_each_line(home: Path) -> None:
    got, code = _on_pty([*xguard_exe()], typed=[b"echo from the prompt\r", b"exit\r"])
    assert code == 0 and b"from the prompt" in got
    ex = last_exit(home)
    back = xg("audit", "show", ex["id"], "--output").stdout
    assert back == b"from the prompt\r\n"


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ("record: {max_bytes: lots}", "record.max_bytes: expected a size"),
        ("record: {output: maybe}", "record.output: expected true or false"),
        ("record: {keep: 3}", "unknown key 'keep' in record"),
        ("profiles: {p: {record: sometimes}}", "profiles.p.record: expected true, false"),
        ("rules: [{pattern: ls, action: allow, record: no-thanks}]", "expected true or false"),
    ],
)
def test_bad_record_settings_are_config_errors(home: Path, config: str, said: str) -> None:
    (home / "rules.yaml").write_text("default: allow\n" + config + "\n")
    p = xg("-c", "echo never")
    assert p.returncode == 78 and p.stdout == b""
    assert said in p.stderr.decode(), p.stderr


# ---------------------------------------------------------------------------
# Exit status and signals are unchanged.


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        ("exit 3", 3),
        ("echo x; kill -TERM $$", 143),
        ("echo x >&2; kill -KILL $$", 137),
        ("printf partial; exit 0", 0),
    ],
)
def test_exit_status_is_the_commands(home: Path, cmd: str, code: int) -> None:
    assert xg("-c", cmd).returncode == code
    assert last_exit(home)["exit_code"] == code


def test_a_reader_that_leaves_still_sigpipes_the_command(home: Path) -> None:
    p = subprocess.run(
        ["bash", "-c", f"{xguard_exe()[0]} -c yes | head -n 2; echo ${{PIPESTATUS[0]}}"],
        capture_output=True,
        timeout=30,
        check=False,
        env={**os.environ, "XGUARD_WAIT": "0"},
    )
    assert p.stdout == b"y\ny\n141\n"
    assert last_exit(home)["exit_code"] == 141


def test_a_signal_to_xguard_reaches_the_command_and_output_is_kept(home: Path) -> None:
    proc = subprocess.Popen(
        [*xguard_exe(), "-c", "echo started; sleep 30"],
        stdout=subprocess.PIPE,
        env={**os.environ, "XGUARD_WAIT": "0"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"  # streamed at once, before the end
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 143
    ex = last_exit(home)
    assert ex["exit_code"] == 143 and ex["output"]["kept"] == len(b"started\n")


# ---------------------------------------------------------------------------
# show, replay, asciicast.


def test_show_replay_and_asciicast(home: Path) -> None:
    cmd = "echo one; sleep 0.3; printf 'two\\n' >&2; sleep 0.1; printf '\\xff\\n'"
    p = xg("-c", cmd)
    ex = last_exit(home)
    show = xg("audit", "show", ex["id"])
    text = show.stdout.decode(errors="replace")
    assert show.returncode == 0
    for part in ("decision  allow", "exit      0", "output    ", ex["output"]["file"]):
        assert part in text
    j = json.loads(xg("audit", "show", ex["id"], "--json").stdout)
    assert [r["event"] for r in j["records"]] == ["decision", "exit"]
    assert [f["stream"] for f in j["frames"]] == ["stdout", "stderr", "stdout"]
    assert [f["text"] for f in j["frames"]] == ["one\n", "two\n", "\\xff\n"]
    assert base64.b64decode(j["frames"][2]["base64"]) == b"\xff\n"

    t = time.monotonic()
    r = xg("audit", "replay", ex["id"])
    assert time.monotonic() - t >= 0.25  # the pause is played back
    assert r.stdout == b"one\n\xff\n" and r.stderr == b"two\n" and p.stdout == r.stdout
    fast = xg("audit", "replay", ex["id"], "--speed", "100")
    assert fast.stdout == r.stdout

    cast = xg("audit", "replay", ex["id"], "--format", "asciicast").stdout.decode()
    lines = cast.splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2
    assert isinstance(header["width"], int) and isinstance(header["height"], int)
    assert isinstance(header["timestamp"], int) and ex["id"] in header["title"]
    events = [json.loads(x) for x in lines[1:]]
    assert all(
        isinstance(e[0], float | int) and e[1] == "o" and isinstance(e[2], str) for e in events
    )
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    assert "".join(e[2] for e in events) == "one\r\ntwo\r\n\ufffd\r\n"


def test_show_unknown_id_and_unreadable_recording_exit_1(home: Path) -> None:
    assert xg("-c", "echo hi").returncode == 0
    s = xg("audit", "show", "nosuch")
    assert s.returncode == 1 and "no command with id nosuch" in s.stderr.decode()
    ex = last_exit(home)
    (home / "audit" / ex["output"]["file"]).write_bytes(b"not gzip")
    for args in (("show", ex["id"]), ("show", ex["id"], "--output"), ("replay", ex["id"])):
        s = xg("audit", *args)
        assert s.returncode == 1 and "altered" in s.stderr.decode(), args


def test_audit_listing_and_the_reviewer_link_to_the_output(home: Path) -> None:
    from xguard.approval.review import ended_line

    xg("-c", "echo hi")
    ex = last_exit(home)
    listing = xg("audit", "--last", "1").stdout.decode()
    assert f"xguard audit show {ex['id']}" in listing
    follow = subprocess.Popen(
        [*xguard_exe(), "audit", "--follow", "--last", "1"], stdout=subprocess.PIPE
    )
    try:
        assert follow.stdout is not None
        assert f"xguard audit show {ex['id']}".encode() in follow.stdout.readline()
    finally:
        follow.terminate()
        follow.wait(10)
    # What `xguard review` says once a command it approved has ended.
    assert (
        ended_line(ex) == f"{ex['id']} ran: exit 0 · output 3 bytes: xguard audit show {ex['id']}"
    )


# ---------------------------------------------------------------------------
# Storage: rotation prunes recordings with their log; a full disk.


def test_rotation_drops_recordings_with_the_log_file_that_named_them(home: Path) -> None:
    (home / "config.yaml").write_text("audit: {rotate_bytes: 3000, keep: 1}\n")
    ids = []
    for i in range(8):
        assert xg("-c", f"echo run{i}").returncode == 0
        ids.append(last_exit(home)["id"])
    kept = {p.name.split(".")[0] for p in (home / "audit" / "output").iterdir()}
    named = {r["id"] for r in records(home) if r["event"] == "exit"}
    assert kept == named  # nothing orphaned, nothing missing
    assert ids[0] not in kept and ids[-1] in kept
    assert len(list((home / "audit").glob("audit.jsonl.*"))) == 1
    assert xg("audit", "verify").returncode == 0


@pytest.fixture
def tiny_output_dir(home: Path) -> Any:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    out = home / "audit" / "output"
    out.mkdir(parents=True)
    m = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(out)],
        capture_output=True,
        check=False,
    )
    if m.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {m.stderr.decode().strip()}")
    try:
        yield out
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", str(out)], check=True, timeout=30)


@pytest.mark.slow
def test_a_full_disk_cuts_the_recording_not_the_command(home: Path, tiny_output_dir: Path) -> None:
    # 1 MB of random bytes cannot be compressed into 64 KiB.
    p = xg("-c", "head -c 1000000 /dev/urandom; echo done >&2")
    assert p.returncode == 0
    assert len(p.stdout) == 1_000_000 and p.stderr.endswith(b"done\n")
    ex = last_exit(home)
    out = ex["output"]
    assert out["bytes"] == 1_000_005 and out["truncated"] is True
    assert "recording cut short" in out["error"] and "No space left" in out["error"]
    assert list(tiny_output_dir.iterdir()) == []  # the partial file was removed
    assert xg("audit", "verify").returncode == 0
    s = xg("audit", "show", ex["id"])
    assert s.returncode == 0 and "cut short" in s.stdout.decode()
    o = xg("audit", "show", ex["id"], "--output")
    assert o.returncode == 1 and "cut short" in o.stderr.decode()
    # The disk has room again: the next command is recorded as usual.
    assert xg("-c", "echo fine").returncode == 0
    assert last_exit(home)["output"].get("file")


# ---------------------------------------------------------------------------
# Strict mode: the agent side relays, the broker keeps (a real second user).


@pytest.fixture(scope="module")
def strict_world() -> Any:
    from tests.e2e.test_strict_mode import World

    w = World()
    try:
        yield w
    finally:
        w.close()


@pytest.mark.slow
def test_in_strict_mode_the_broker_keeps_the_recording_out_of_the_agents_reach(
    strict_world: Any,
) -> None:
    w = strict_world
    cmd = "echo shown to the agent; echo AKIAIOSFODNN7EXAMPLE; pwd"
    p = w.agent_xg("-c", cmd)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"shown to the agent\nAKIAIOSFODNN7EXAMPLE\n{w.agent_home}\n"
    ex = [r for r in w.records(command=cmd) if r["event"] == "exit"][-1]
    out = ex["output"]
    assert ex["reported"] == "agent" and out["masked"] == 1 and out["bytes"] == len(p.stdout)
    path = w.home / "audit" / out["file"]
    st = path.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    # The agent can neither read nor change nor remove what it was shown.
    tries = w.agent_python(
        "import sys\n"
        "for how in ('rb', 'ab'):\n"
        "    try:\n"
        "        open(sys.argv[1], how); print('opened', how)\n"
        "    except OSError as e:\n"
        "        print(type(e).__name__)\n",
        str(path),
    )
    assert tries.stdout.split() == ["PermissionError", "PermissionError"], tries
    shown = w.reviewer("audit", "show", ex["id"], "--output", via_socket=False)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"shown to the agent\n[masked:aws]\n{w.agent_home}\n"
    verify = w.reviewer("audit", "verify", via_socket=False)
    assert verify.returncode == 0, verify.stdout


def test_show_escapes_every_record_field_an_environment_can_set(home: Path) -> None:
    evil = "h\x1b]0;pwned\x07\x1b[2J"
    p = xg("-c", "echo hi", env={"XGUARD_HOST": evil, "XGUARD_SESSION": "s\x1b[31m"})
    assert p.returncode == 0, p.stderr
    shown = xg("audit", "show", last_exit(home)["id"]).stdout.decode()
    assert "\x1b" not in shown and "\x07" not in shown
    assert "h\\x1b]0;pwned\\x07" in shown

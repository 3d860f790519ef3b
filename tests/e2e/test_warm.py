"""The warm server (`xguard warm`, `warm: true`), end to end through the installed
launcher: commands forked from a loaded xguard behave as the local path does
(output, exit status, denials, approvals, audit records, signals), nothing of
one request reaches the next, and every process the server cannot stand in
for runs the local way."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe
from xguard.warm import TAKE_TIMEOUT, server_pid

# A rule set whose commands can say which process ran them: unconfined, so
# $PPID is the xguard that ran bash (a worker's command line is the server's).
WHO_RULES = """\
confine: off
rules:
  - {pattern: "cat /proc/*", action: allow, dynamic: allow}
  - {pattern: "echo", action: allow, dynamic: allow}
  - {pattern: "sleep", action: allow}
  - {pattern: "head", action: allow}
  - {pattern: "cat", action: allow}
  - {pattern: "wc", action: allow}
  - {pattern: "exit", action: allow}
  - {pattern: "sh -c", action: allow}
  - {pattern: "printenv", action: deny, reason: "prints secrets"}
  - {pattern: "touch /tmp/**", action: require_approval}
  - {path: "/dev/null", access: write, action: allow}
env:
  keep: [PATH, HOME, LANG, LEAK]
"""
WHO = "cat /proc/$PPID/cmdline"


def xg(
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = b"",
    cwd: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    e = {**os.environ, "XGUARD_WAIT": "0", **(env or {})}
    return subprocess.run(
        [*xguard_exe(), *args],
        env=e,
        input=input,
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def runner(out: bytes) -> str:
    """Which program ran the command's bash, from `cat /proc/$PPID/cmdline`."""
    return "warm" if b"\0warm\0serve\0" in out else "local"


@pytest.fixture
def home(xguard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # (tests/conftest.py stops a server left running here when the test ends)
    monkeypatch.delenv("XGUARD_WARM", raising=False)  # each test says what it wants (--warm too)
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(WHO_RULES)
    return xguard_home


@pytest.fixture
def warm(home: Path) -> Path:
    r = xg("warm", "start", "--idle", "5m")
    assert r.returncode == 0, r.stderr
    assert server_pid(str(home)) is not None
    return home


def test_commands_run_in_a_worker_forked_from_the_server(warm: Path) -> None:
    r = xg("-c", WHO)
    assert r.returncode == 0, r.stderr
    assert runner(r.stdout) == "warm"
    cold = xg("-c", WHO, env={"XGUARD_WARM": "0"})
    assert cold.returncode == 0 and runner(cold.stdout) == "local"
    # `run` and a script on stdin take the same way.
    r = xg("run", "--", "sh", "-c", WHO)
    assert r.returncode == 0 and runner(r.stdout) == "warm", r.stderr
    r = xg(input=WHO.encode())
    assert r.returncode == 0 and runner(r.stdout) == "warm", r.stderr
    # The launcher run by the venv's `python` or `python3` (one interpreter).
    for name in ("python", "python3"):
        py = os.path.join(os.path.dirname(sys.executable), name)
        if os.path.exists(py):
            r = subprocess.run(
                [py, *xguard_exe(), "-c", WHO], capture_output=True, check=False, timeout=60
            )
            assert runner(r.stdout) == "warm", (name, r.stderr)


# What a user sees must not depend on the way the command took.
SAME = [
    ("exit status", ["-c", "echo out; echo err >&2; exit 3"], b""),
    ("stdin", ["-c", "wc -l"], b"a\nb\nc\n"),
    ("denied", ["-c", "printenv"], b""),
    ("secret", ["-c", "cat ~/.ssh/id_rsa"], b""),
    ("no rule", ["-c", "git push --force"], b""),
    ("pending", ["-c", "touch /tmp/xguard-warm-pending"], b""),
    ("parse error", ["-c", "echo 'unterminated"], b""),
    ("usage", ["-c"], b""),
    ("check", ["check", "--json", "-c", "cat ~/.aws/credentials"], b""),
    ("check allow", ["check", "-c", "echo hi"], b""),
]


@pytest.mark.parametrize(("what", "args", "stdin"), SAME, ids=[s[0] for s in SAME])
def test_warm_and_local_answer_alike(warm: Path, what: str, args: list[str], stdin: bytes) -> None:
    a = xg(*args, input=stdin)
    b = xg(*args, input=stdin, env={"XGUARD_WARM": "0"})

    def norm(s: bytes) -> bytes:
        return re.sub(rb"\b[2-9a-hj-km-np-z]{6}\b", b"ID", s)  # request ids differ

    assert (a.returncode, norm(a.stdout), norm(a.stderr)) == (
        b.returncode,
        norm(b.stdout),
        norm(b.stderr),
    ), what


def test_the_audit_log_is_written_as_by_the_local_path(warm: Path) -> None:
    assert xg("-c", "echo audited").returncode == 0
    assert xg("-c", "printenv").returncode == 77
    lines = [json.loads(x) for x in (warm / "audit" / "audit.jsonl").read_text().splitlines()]
    ran = [x for x in lines if x.get("command") == "echo audited"]
    assert [x["event"] for x in ran] == ["decision", "exit"]
    assert ran[1]["exit_code"] == 0 and ran[0]["decision"] == "allow"
    denied = [x for x in lines if x.get("command") == "printenv"]
    assert [x["decision"] for x in denied] == ["deny"]
    assert ran[0]["cwd"] == os.getcwd()
    v = xg("audit", "verify")
    assert v.returncode == 0, v.stdout + v.stderr


def test_a_reader_of_the_output_sees_its_end_when_the_command_ends(warm: Path) -> None:
    # A worker that kept the client's stdout open would hold this pipe past
    # the client's exit: the read below would wait for the next request.
    p = subprocess.Popen(
        [*xguard_exe(), "-c", "echo first"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "XGUARD_WAIT": "0"},
    )
    assert p.stdout is not None
    t = time.monotonic()
    assert p.stdout.read() == b"first\n"
    assert time.monotonic() - t < 10
    assert p.wait(10) == 0


def test_nothing_of_one_request_reaches_the_next(warm: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    show = 'echo "${LEAK-unset} $PWD"; head -c 3'
    # Enough requests that each of the waiting workers serves several.
    for i in range(8):
        r = xg("-c", show, env={"LEAK": f"secret{i}"}, cwd=str(a), input=b"abcdef")
        assert r.stdout == f"secret{i} {a}\nabc".encode(), r.stderr
        r = xg("-c", show, cwd=str(b), input=b"xyz")
        assert r.stdout == f"unset {b}\nxyz".encode(), r.stderr


def test_the_callers_umask_is_the_commands(warm: Path) -> None:
    for mask in ("0077", "0022", "0002"):
        r = subprocess.run(
            [
                "sh",
                "-c",
                f'umask {mask}; exec "$0" -c "$1"',
                *xguard_exe(),
                "cat /proc/self/status /proc/$PPID/cmdline",
            ],
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "XGUARD_WAIT": "0"},
            timeout=60,
        )
        assert f"Umask:\t{mask}\n".encode() in r.stdout, r.stderr
        assert runner(r.stdout) == "warm"


def on_a_terminal(args: list[str]) -> bytes:
    parent, child = pty.openpty()
    p = subprocess.Popen(
        [*xguard_exe(), *args],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "XGUARD_WAIT": "0"},
        start_new_session=True,
    )
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait(30)
    os.close(parent)
    return out


def test_processes_the_server_cannot_stand_in_for_run_the_local_way(warm: Path) -> None:
    # A terminal: its job control and /dev/tty belong to this process.
    assert runner(on_a_terminal(["-c", WHO])) == "local"
    # no_new_privs (how Codex and others start a sandbox): a worker without
    # it would run the command outside the caller's restrictions.
    if shutil.which("setpriv"):
        r = _under(["setpriv", "--no-new-privs"])
        assert r.returncode == 0 and runner(r.stdout) == "local", r.stderr
    # Another mount namespace (root only: unprivileged needs a user namespace too).
    if os.geteuid() == 0 and shutil.which("unshare"):
        r = _under(["unshare", "-m"])
        assert r.returncode == 0 and runner(r.stdout) == "local", r.stderr
    # Python settings the client's interpreter read before xguard started.
    r = xg("-c", WHO, env={"PYTHONHASHSEED": "7"})
    assert r.returncode == 0 and runner(r.stdout) == "local", r.stderr
    # And the same process shape still goes warm.
    assert runner(xg("-c", WHO).stdout) == "warm"


def _under(prefix: list[str]) -> subprocess.CompletedProcess[bytes]:
    """`xguard -c WHO` started through `prefix` (setpriv, unshare)."""
    return subprocess.run(
        [*prefix, *xguard_exe(), "-c", WHO],
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def _sleeping(marker: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`xguard -c 'sleep MARKER'`, once the sleep itself runs."""
    p = subprocess.Popen(
        [*xguard_exe(), "-c", f"sleep {marker}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    end = time.monotonic() + 20
    while subprocess.run(
        ["pgrep", "-f", f"^sleep {marker}"], capture_output=True, check=False
    ).returncode:
        assert time.monotonic() < end, "the command did not start"
        time.sleep(0.05)
    return p


def _gone(pattern: str, timeout: float = 15) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (
            subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode
            != 0
        ):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("way", ["warm", "local"])
def test_a_signal_to_the_caller_reaches_the_command(warm: Path, way: str) -> None:
    marker = f"31.{os.getpid() % 1000}"
    p = _sleeping(marker, {**os.environ, "XGUARD_WARM": "1" if way == "warm" else "0"})
    p.send_signal(signal.SIGTERM)
    # The command died of SIGTERM: 128+15, as the exit status table says.
    assert p.wait(20) == 128 + signal.SIGTERM
    assert _gone(f"^sleep {marker}")


@pytest.mark.parametrize("box", ["confined", "unconfined"])
def test_a_killed_caller_takes_its_command_with_it(warm: Path, box: str) -> None:
    if box == "confined":
        (warm / "rules.yaml").write_text(WHO_RULES.replace("confine: off\n", ""))
    marker = f"32.{os.getpid() % 1000}"
    p = _sleeping(marker, dict(os.environ))
    p.kill()  # as a runtime's timeout does: no chance to relay anything
    p.wait(10)
    # The worker sees the connection drop and kills what runs under it, then
    # itself (a runtime's tree kill would have found the command under the
    # client); a box dies with it anyway (bwrap --die-with-parent).
    assert _gone(f"^sleep {marker}")
    assert xg("-c", "echo still serving").stdout == b"still serving\n"


def test_a_request_needing_approval_waits_and_runs_once_approved(warm: Path) -> None:
    target = f"/tmp/xguard-warm-approved-{os.getpid()}"
    p = subprocess.Popen(
        [*xguard_exe(), "-c", f"touch {target}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "XGUARD_WAIT": "60"},
    )
    try:
        end = time.monotonic() + 30
        pending: list[dict[str, object]] = []
        while not pending:
            assert time.monotonic() < end, "no request was queued"
            out = xg("pending", "--json").stdout
            pending = json.loads(out) if out.strip() else []
            time.sleep(0.1)
        # The reviewer sees the agent that asked: the caller's parent (this test).
        assert pending[0].get("ppid") == os.getpid()
        assert xg("approve", str(pending[0]["id"])).returncode == 0
        assert p.wait(30) == 0
        assert os.path.exists(target)
    finally:
        p.kill()
        if os.path.exists(target):
            os.unlink(target)


def test_rule_changes_apply_to_the_next_command(warm: Path) -> None:
    assert xg("-c", "echo once").returncode == 0
    (warm / "rules.yaml").write_text(
        WHO_RULES.replace(
            '{pattern: "echo", action: allow, dynamic: allow}', '{pattern: "echo", action: deny}'
        )
    )
    r = xg("-c", "echo once")
    assert r.returncode == 77 and b"denied" in r.stderr
    (warm / "rules.yaml").write_text("rules: [\n")
    r = xg("-c", "echo once")
    assert r.returncode == 78


def test_the_client_loads_almost_nothing(warm: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", *xguard_exe(), "-c", "echo $(echo hi) > /dev/null"],
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "XGUARD_WAIT": "0"},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    loaded = re.findall(rb"\| +(xguard[\w.]*)\n", r.stderr)
    assert loaded and set(loaded) <= {
        b"xguard",
        b"xguard.__main__",
        b"xguard.warm",
        b"xguard.errors",
        b"xguard.paths",
    }, loaded
    # Nor the standard library's heavier modules (`signal` alone pulls in
    # `enum`, `functools` and `collections`: ~3 ms of every warm command).
    everything = set(re.findall(rb"\| +([\w.]+)\n", r.stderr))
    assert not everything & {b"signal", b"enum", b"re", b"typing", b"socket", b"subprocess"}, (
        everything
    )


def test_a_dead_servers_socket_is_no_obstacle(warm: Path) -> None:
    pid = server_pid(str(warm))
    assert pid is not None
    workers = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, check=False).stdout
    for p in [pid, *map(int, workers.split())]:
        os.kill(p, signal.SIGKILL)
    assert (warm / "warm.sock").exists()  # left behind
    r = xg("-c", WHO, env={"XGUARD_WARM": "0"})
    assert r.returncode == 0 and runner(r.stdout) == "local"
    assert xg("warm", "status").returncode == 3
    assert xg("warm", "start").returncode == 0  # replaces the dead socket
    assert runner(xg("-c", WHO).stdout) == "warm"


def _started(home: Path) -> bool:
    end = time.monotonic() + 20
    while server_pid(str(home)) is None:
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("setting", ["", "warm: true\nwarm_idle: 1m\n"], ids=["default", "on"])
def test_a_server_starts_on_first_use(home: Path, setting: str) -> None:
    (home / "rules.yaml").write_text(setting + WHO_RULES)
    assert xg("-c", WHO, env={"XGUARD_WARM": "0"}).returncode == 0
    time.sleep(0.5)
    assert server_pid(str(home)) is None  # XGUARD_WARM=0: never
    assert runner(xg("-c", WHO).stdout) == "local"  # the first command starts it...
    assert _started(home), "no server started"
    time.sleep(0.5)
    assert runner(xg("-c", WHO).stdout) == "warm"  # ...the next ones use it
    assert b"running" in xg("warm", "status").stdout
    idle = "1m" if setting else "10m"
    assert (
        f"--idle\0{60 if setting else 600}\0".encode()
        in Path(f"/proc/{server_pid(str(home))}/cmdline").read_bytes()
    ), idle


def test_warm_false_starts_none_and_failed_starts_back_off(home: Path) -> None:
    (home / "rules.yaml").write_text("warm: false\n" + WHO_RULES)
    for _ in range(2):
        assert runner(xg("-c", WHO).stdout) == "local"
    time.sleep(1)
    assert server_pid(str(home)) is None and not (home / "warm.started").exists()
    # XGUARD_WARM=1 starts one even so.
    assert xg("-c", WHO, env={"XGUARD_WARM": "1"}).returncode == 0
    assert _started(home)
    assert xg("warm", "stop").returncode == 0

    # A server that cannot start (here its log cannot be opened) is tried at
    # most once a minute, not by every command.
    (home / "rules.yaml").write_text(WHO_RULES)
    (home / "warm.started").unlink()
    (home / "warm.log").unlink(missing_ok=True)
    (home / "warm.log").mkdir()
    assert xg("-c", WHO).returncode == 0
    first = (home / "warm.started").stat().st_mtime_ns
    time.sleep(0.05)
    assert xg("-c", WHO).returncode == 0
    assert (home / "warm.started").stat().st_mtime_ns == first
    assert server_pid(str(home)) is None


def test_stop_idle_and_code_changes_end_the_server(home: Path) -> None:
    assert xg("warm", "start", "--idle", "1s").returncode == 0
    end = time.monotonic() + 20
    while server_pid(str(home)) is not None:
        assert time.monotonic() < end, "the idle server did not exit"
        time.sleep(0.1)
    assert not (home / "warm.sock").exists()

    assert xg("warm", "start").returncode == 0
    r = xg("warm", "stop")
    assert r.returncode == 0 and server_pid(str(home)) is None

    # An upgrade (any of xguard's files changing) ends it: new code, new server.
    assert xg("warm", "start").returncode == 0
    import xguard.warm as mod

    f = mod.__file__
    assert f is not None
    st = os.stat(f)
    try:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        end = time.monotonic() + 20
        while server_pid(str(home)) is not None:
            assert time.monotonic() < end, "the server kept old code"
            time.sleep(0.1)
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert xg("warm", "status").returncode == 3


def test_workers_that_keep_dying_before_they_serve_stop_the_server(home: Path) -> None:
    """A worker killed while it warms up is replaced; after MAX_STILLBORN of
    them (a broken install, no memory) the server stops instead of forking
    for ever, and commands run cold."""
    from xguard.commands.warmserver import MAX_STILLBORN

    assert xg("warm", "start").returncode == 0
    pid = server_pid(str(home))
    assert pid is not None
    killed: set[int] = set()
    end = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and proc_state(pid) not in ("Z", "X"):
        assert time.monotonic() < end, f"the server kept forking ({len(killed)} killed)"
        for k in proc_children(pid):
            if k not in killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(k, signal.SIGKILL)
                killed.add(k)
        time.sleep(0.002)
    assert len(killed) >= MAX_STILLBORN
    assert b"workers keep dying before they serve; stopping" in (home / "warm.log").read_bytes()
    assert not (home / "warm.sock").exists()
    r = xg("-c", WHO, env={"XGUARD_WARM": "0"})
    assert r.returncode == 0 and runner(r.stdout) == "local"


def proc_state(pid: int) -> str:
    """The process's state letter from /proc ("X": gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def proc_children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_bad_input_to_warm_verbs(home: Path) -> None:
    r = xg("warm", "start", "--idle", "soon")
    assert r.returncode == 64 and b"--idle" in r.stderr
    assert server_pid(str(home)) is None
    r = xg("warm", "stop")
    assert r.returncode == 0 and b"no warm server" in r.stderr
    # An agent may not start one: its environment would be the server's.
    r = xg("warm", "start", env={"XGUARD_GATED": "abc123"})
    assert r.returncode == 77 and server_pid(str(home)) is None
    r = xg("check", "--json", "-c", "xguard warm start")
    assert json.loads(r.stdout)["decision"] == "deny", r.stdout


def test_doctor_says_whether_a_server_runs(home: Path) -> None:
    d = json.loads(xg("doctor", "--json").stdout)
    assert d["warm"] == {"setting": True, "pid": None}
    assert b"the next command starts one" in xg("doctor").stdout
    assert xg("warm", "start").returncode == 0
    d = json.loads(xg("doctor", "--json").stdout)
    assert d["warm"]["pid"] == server_pid(str(home)) is not None
    (home / "rules.yaml").write_text("warm: false\n" + WHO_RULES)
    assert json.loads(xg("doctor", "--json").stdout)["warm"]["setting"] is False


def _raw_request(home: Path, args: list[str]) -> tuple[Any, bytes]:
    """Send a request as the client does, up to the worker's first answer."""
    import _socket

    from xguard.warm import PROTOCOL, interpreter, streams

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.connect(str(home / "warm.sock"))
    fields = [PROTOCOL, interpreter(), streams(), os.fsencode(os.getcwd())]
    fields += [str(len(args)).encode()]
    fields += [a.encode() for a in args]
    fields += [k + b"=" + v for k, v in os.environb.items()]
    payload = b"\0".join(fields)
    s.sendall(len(payload).to_bytes(8, "little") + payload)
    s.settimeout(10)
    return s, s.recv(1)


def test_a_client_that_gives_up_before_go_runs_nothing_there(warm: Path) -> None:
    # Without "G" the worker must not run it: the client may be running it itself.
    s, first = _raw_request(warm, ["-c", "echo no-go-marker"])
    assert first == b"A"
    s.close()
    time.sleep(1)
    log = warm / "audit" / "audit.jsonl"
    assert not log.exists() or b"no-go-marker" not in log.read_bytes()
    assert runner(xg("-c", WHO).stdout) == "warm"  # and the worker serves on


def test_a_killed_server_holds_up_no_one(warm: Path) -> None:
    marker = f"33.{os.getpid() % 1000}"
    busy = _sleeping(marker, dict(os.environ))  # a worker busy, holding the listening socket
    try:
        pid = server_pid(str(warm))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        t = time.monotonic()
        r = xg("-c", WHO)
        assert r.returncode == 0 and runner(r.stdout) == "local", r.stderr
        assert time.monotonic() - t < TAKE_TIMEOUT  # not even the take timeout: the pid is dead
        assert _started(warm)  # that command started a new server...
        time.sleep(0.5)
        assert runner(xg("-c", WHO).stdout) == "warm"  # ...which serves the next
    finally:
        busy.kill()
        busy.wait(10)


def test_a_server_that_does_not_answer_costs_a_timeout_not_the_command(warm: Path) -> None:
    pid = server_pid(str(warm))
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the server first: it forks no worker after this
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, check=False).stdout
    stopped = [pid, *map(int, kids.split())]
    for p in stopped[1:]:
        os.kill(p, signal.SIGSTOP)  # alive, and nobody takes the request
    try:
        t = time.monotonic()
        r = xg("-c", "echo late-marker; " + WHO)  # capture_output: it waits for EOF too
        took = time.monotonic() - t
        assert r.returncode == 0 and runner(r.stdout) == "local", r.stderr
        # Its pipes went nowhere with the unanswered request: EOF came at exit.
        assert TAKE_TIMEOUT <= took < TAKE_TIMEOUT + 8
    finally:
        for p in stopped:
            os.kill(p, signal.SIGCONT)
    # The abandoned request, taken late, runs nothing: the command ran once.
    time.sleep(2)
    lines = [json.loads(x) for x in (warm / "audit" / "audit.jsonl").read_text().splitlines()]
    decided = [x for x in lines if x["event"] == "decision"]
    assert [x["command"].startswith("echo late-marker") for x in decided] == [True]
    assert runner(xg("-c", WHO).stdout) == "warm"


def test_a_bare_environment_is_served_warm(home: Path) -> None:
    # No LANG at all: each Python coerces the C locale (PEP 538) its own way
    # (the server inherits LC_CTYPE=C.UTF-8 from the Python that started it,
    # its clients run in UTF-8 mode); both read and write UTF-8, and the
    # worker writes with the client's stream settings.
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XGUARD_HOME": str(home)}

    def run(cmd: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*xguard_exe(), "-c", cmd],
            env=bare,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )

    assert runner(run(WHO).stdout) == "local"  # starts the server
    assert _started(home)
    time.sleep(0.5)
    r = run(WHO)
    assert runner(r.stdout) == "warm", r.stderr
    r = run("echo héllo; printenv")  # a denial, with a non-ASCII command in its message
    assert r.returncode == 77 and "héllo".encode() in r.stderr, r.stderr

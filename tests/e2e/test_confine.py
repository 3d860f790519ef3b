"""Kernel confinement of allowed commands (issue 11 part 3), for real.

Every test runs the installed `xguard -c` with real bubblewrap or real
Landlock (forced with XGUARD_CONFINE_FORCE=landlock), against a rules file
that allows `python3` outright: a stand-in for an allowed tool that does more
than its name says (the static reading cannot see inside the program). The
box is what stops it: no writes outside the allowed write paths, no masked
secret, no connect, no signal outside, no new privileges. One test runs the
whole thing as a second, unprivileged Unix user.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

ROOT = Path(__file__).resolve().parents[2]
CANARY_KEY = "-----BEGIN OPENSSH PRIVATE KEY----- canary-" + secrets.token_hex(6)
CANARY_ENV = "API_TOKEN=canary-" + secrets.token_hex(6)

RULES = """\
default: require_approval
confine: {mode}
rules:
  - {{pattern: python3, action: allow}}
  - {{pattern: "python3 net.py", action: allow, network: allow}}
  - {{pattern: echo, action: allow, dynamic: allow}}
  - {{pattern: cat, action: allow}}
  - {{pattern: ls, action: allow}}
  - {{pattern: "true", action: allow}}
  - {{pattern: exit, action: allow, dynamic: allow}}
  - {{pattern: kill, action: allow, dynamic: allow}}
  - {{pattern: trap, action: allow, dynamic: allow}}
  - {{pattern: sleep, action: allow}}
  - {{pattern: test, action: allow}}
  - {{pattern: stty, action: allow}}
  - {{pattern: sudo, action: allow}}
  - {{pattern: wait, action: allow}}
  - {{pattern: id, action: allow}}
  - {{path: "./build/**", access: write, action: allow}}
  - {{path: "**/.ssh/**", action: deny}}
  - {{path: "**/.env", action: deny}}
"""


def _mechanisms() -> list[str]:
    """What this machine can run, probed the way xguard does."""
    sys.path.insert(0, str(ROOT))
    from xguard.gate.confine import support

    sup = support(None)
    return [m for m, ok in (("bwrap", bool(sup.bwrap)), ("landlock", sup.abi >= 1)) if ok]


MECHANISMS = _mechanisms()


def _abi() -> int:
    from xguard.gate.confine import landlock_abi

    return landlock_abi()[0]


class Box:
    """A project, a fake home with secrets, a rules file; runs `xguard -c`."""

    def __init__(
        self, base: Path, xghome: Path, mechanism: str, mode: str = "auto", *, warm: bool = False
    ) -> None:
        self.mechanism = mechanism
        self.warm = warm  # commands through a warm server (started on first use)
        self.project = base / "project"
        (self.project / "src").mkdir(parents=True)
        (self.project / "build").mkdir()
        (self.project / "src" / "a.txt").write_text("hello from a\n")
        (self.project / ".env").write_text(CANARY_ENV + "\n")
        (self.project / "net.py").write_text(
            "import socket, sys\n"
            "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
            "print('connected')\n"
        )
        self.home = base / "home"
        (self.home / ".ssh").mkdir(parents=True, mode=0o700)
        (self.home / ".ssh" / "id_rsa").write_text(CANARY_KEY + "\n")
        self.xghome = xghome
        xghome.mkdir(mode=0o700, exist_ok=True)
        (xghome / "rules.yaml").write_text(RULES.format(mode=mode))

    def env(self) -> dict[str, str]:
        e = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "XGUARD_HOME": str(self.xghome),
            "LANG": "C.UTF-8",
            "XGUARD_WAIT": "0",
        }
        if self.mechanism == "landlock":
            e["XGUARD_CONFINE_FORCE"] = "landlock"
        if self.warm:
            e["XGUARD_WARM"] = "1"
        return e

    def xg(self, cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """`xguard -c CMD` in the project, as the agent would run it."""
        return self.run("-c", cmd, **kw)

    def check(self, cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """`xguard check -c CMD`: the decision alone."""
        return self.run("check", "-c", cmd, **kw)

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*xguard_exe(), *args],
            env=self.env(),
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
            **kw,
        )

    def records(self) -> list[dict[str, object]]:
        log = self.xghome / "audit" / "audit.jsonl"
        return [json.loads(x) for x in log.read_text().splitlines()]


@pytest.fixture(params=MECHANISMS or ["none"])
def box(request: pytest.FixtureRequest, tmp_path: Path, xguard_home: Path) -> Box:
    if request.param == "none":
        pytest.skip("neither bubblewrap nor Landlock can start here")
    return Box(tmp_path, xguard_home, request.param)


def _py(code: str) -> str:
    return "python3 -c " + shlex.quote(code)


# ---------------------------------------------------------------------------


def test_the_project_is_read_only_and_the_agent_is_told_once(box: Box) -> None:
    p = box.xg(_py("open('src/new.txt', 'w').write('x')"))
    assert p.returncode == 1
    assert not (box.project / "src" / "new.txt").exists()
    hints = [x for x in p.stderr.splitlines() if x.startswith("xguard: ")]
    assert hints == [
        "xguard: this command ran read-only; it tried to write src/new.txt — ask for "
        "approval with: '# xguard: unconfined' as the command's first line"
    ], p.stderr
    # Reads of files no rule names still work.
    assert box.xg("cat src/a.txt").stdout == "hello from a\n"


def test_the_hint_still_sees_an_error_after_a_long_burst_of_output(box: Box) -> None:
    # 30 MB, past what the recording keeps: the burst is moved by splice(2),
    # but the end of it (here the error, on the same stream) is still read.
    burst = "cat " + " ".join(["src/big.txt"] * 3)
    (box.project / "src" / "big.txt").write_bytes(b"x" * 10_000_000)
    p = box.xg("{ " + burst + "; " + _py("open('src/new.txt', 'w')") + "; } 2>&1")
    assert p.returncode == 1
    assert len(p.stdout) > 30_000_000 and "src/new.txt" in p.stdout[-2000:]
    assert "it tried to write src/new.txt" in p.stderr, p.stderr[-500:]


def test_allowed_write_paths_are_writable(box: Box) -> None:
    p = box.xg("echo hi > build/out.txt && " + _py("open('build/two', 'w').write('2')"))
    assert p.returncode == 0, p.stderr
    assert (box.project / "build" / "out.txt").read_text() == "hi\n"
    assert (box.project / "build" / "two").read_text() == "2"
    assert "xguard:" not in p.stderr


def test_masked_secrets_never_appear(box: Box) -> None:
    code = (
        "import os\n"
        # Spelled so that no word names the files: the static reading cannot see them.
        "for f in (os.path.join(os.environ['HOME'], '.s' + 'sh', 'id_rsa'), '.e' + 'nv'):\n"
        "    try:\n"
        "        print(open(f).read())\n"
        "    except OSError as e:\n"
        "        print('refused', f, e.errno)\n"
    )
    p = box.xg(_py(code))
    out = p.stdout + p.stderr
    assert CANARY_KEY.split()[-1] not in out and CANARY_ENV not in out, out
    assert out.count("refused") == 2, out
    # xguard's own folder (rules, audit log) is masked too.
    p = box.xg(_py(f"print(open({str(box.xghome / 'rules.yaml')!r}).read())"))
    assert p.returncode != 0 and "python3" not in p.stdout


@contextlib.contextmanager
def _server() -> Iterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            accepted.append(1)
            c.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], accepted
    finally:
        stop.set()
        t.join(5)
        srv.close()


def test_no_network_unless_a_rule_grants_it(box: Box) -> None:
    if box.mechanism == "landlock" and _abi() < 4:
        pytest.skip("Landlock before ABI 4 cannot deny TCP connections")
    with _server() as (port, accepted):
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        p = box.xg(_py(code))
        assert p.returncode == 1
        assert accepted == []
        assert (
            p.stderr.rstrip()
            .splitlines()[-1]
            .startswith("xguard: this command ran without network; it tried to connect")
        ), p.stderr
        # A rule with `network: allow` keeps it.
        p = box.xg(f"python3 net.py {port}")
        assert p.returncode == 0, p.stderr
        assert p.stdout == "connected\n"
        deadline = time.monotonic() + 5
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert accepted == [1]


def test_cannot_signal_processes_outside(box: Box) -> None:
    if box.mechanism == "landlock" and _abi() < 6:
        pytest.skip("Landlock before ABI 6 cannot scope signals")
    victim = subprocess.Popen(["sleep", "60"])
    try:
        p = box.xg(f"kill -TERM {victim.pid}; " + _py(f"import os; os.kill({victim.pid}, 9)"))
        assert p.returncode != 0
        time.sleep(0.2)
        assert victim.poll() is None, "the boxed command killed a process outside its box"
    finally:
        victim.kill()
        victim.wait()


def test_no_new_privileges(box: Box) -> None:
    p = box.xg(_py("print([x for x in open('/proc/self/status') if 'NoNewPrivs' in x][0])"))
    assert p.stdout.split() == ["NoNewPrivs:", "1"], p.stdout + p.stderr


@pytest.mark.parametrize(("cmd", "code"), [("exit 7", 7), ("kill -TERM $$", 143), ("true", 0)])
def test_exit_status_unchanged(box: Box, cmd: str, code: int) -> None:
    assert box.xg(cmd).returncode == code


def sigterm_to_xguard(box: Box) -> tuple[str, str, int]:
    """SIGTERM to `xguard -c` while its command waits: (stdout, stderr, status)."""
    proc = subprocess.Popen(
        [*xguard_exe(), "-c", "trap 'echo trapped; exit 3' TERM; echo ready; sleep 30 & wait"],
        env=box.env(),
        cwd=box.project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return out, err, proc.returncode


def test_sigterm_reaches_the_boxed_command(box: Box) -> None:
    out, err, status = sigterm_to_xguard(box)
    assert (out, status) == ("trapped\n", 3), err


def test_the_decision_record_says_how_it_ran(box: Box) -> None:
    assert box.xg("true").returncode == 0
    decisions = [r for r in box.records() if r["event"] == "decision"]
    assert decisions[-1]["decision"] == "allow"
    assert decisions[-1]["confined"] == box.mechanism


def test_the_terminal_stays_a_terminal(box: Box) -> None:
    """On a pty: the command sees a terminal on 0/1/2, its size, and job
    control's foreground group; pushing keystrokes into it (TIOCSTI) fails."""
    tiocsti = (
        "import fcntl, termios\n"
        "try:\n"
        "    fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('TIOCSTI-WORKED')\n"
        "except OSError as e:\n"
        "    print('TIOCSTI-REFUSED', e.errno)\n"
    )
    cmd = "test -t 0 && test -t 1 && test -t 2 && echo TTY-OK; stty size; " + _py(tiocsti)
    out = _on_pty([*xguard_exe(), "-c", cmd], box.env(), box.project)
    assert "TTY-OK" in out, out
    assert "24 80" in out, out
    assert "TIOCSTI-REFUSED 1" in out and "TIOCSTI-WORKED" not in out, out


def _on_pty(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")  # 24x80

    def ctty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv,
        env={**env, "TERM": "xterm"},
        cwd=cwd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=ctty,  # noqa: PLW1509 - the pty must be the controlling terminal
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every holder of the pty closed it
            break
        if not chunk:
            break
        out += chunk
    proc.wait(30)
    os.close(master)
    return out.decode(errors="replace")


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "off"])
def test_descriptors_of_the_caller_are_not_passed_on(
    mode: str, tmp_path: Path, xguard_home: Path
) -> None:
    """The reading takes `<&N`, `>&N` and /dev/fd/N as the command's own streams
    (`cat <&8` is allowed): a descriptor the caller held open on a secret, a
    file or a masked folder must not reach the command, boxed or not."""
    if mode == "auto" and not MECHANISMS:
        pytest.skip("no mechanism here")
    b = Box(tmp_path, xguard_home, MECHANISMS[0] if mode == "auto" else "bwrap", mode=mode)
    out_file = tmp_path / "outside.txt"
    with (
        open(b.home / ".ssh" / "id_rsa", "rb") as secret,
        open(out_file, "wb") as writable,
    ):
        folder = os.open(b.home / ".ssh", os.O_RDONLY | os.O_DIRECTORY)
        try:
            fds = {"s": secret.fileno(), "w": writable.fileno(), "d": folder}
            cmd = "cat <&{s}; cat /dev/fd/{s}; echo pwned >&{w}; ls /dev/fd/{d}/".format(**fds)
            check = b.check(cmd, pass_fds=tuple(fds.values()))
            assert check.returncode == 0, check.stdout  # the reading allows them
            p = b.xg(cmd, pass_fds=tuple(fds.values()))
        finally:
            os.close(folder)
    assert CANARY_KEY.split()[-1] not in p.stdout + p.stderr, p.stdout
    assert "id_rsa" not in p.stdout, p.stdout
    assert out_file.read_bytes() == b""
    assert "Bad file descriptor" in p.stderr, p.stderr


# Settings


def test_confine_off_runs_as_before(tmp_path: Path, xguard_home: Path) -> None:
    b = Box(tmp_path, xguard_home, "bwrap", mode="off")
    p = b.xg(_py("open('src/new.txt', 'w').write('x')"))
    assert p.returncode == 0, p.stderr
    assert (b.project / "src" / "new.txt").read_text() == "x"
    assert [r["confined"] for r in b.records() if r["event"] == "decision"] == ["none"]


@pytest.mark.skipif(not MECHANISMS, reason="no mechanism here")
def test_a_command_can_ask_to_run_unconfined(tmp_path: Path, xguard_home: Path) -> None:
    b = Box(tmp_path, xguard_home, MECHANISMS[0])
    p = b.xg("# xguard: unconfined\n" + _py("open('src/new.txt', 'w')"))
    assert p.returncode == 75  # waits for a person; nothing ran
    assert not (b.project / "src" / "new.txt").exists()
    pending = [r for r in b.records() if r["event"] == "pending"]
    assert pending and "unconfined" in json.dumps(pending[-1])


@pytest.mark.skipif(not MECHANISMS, reason="no mechanism here")
@pytest.mark.parametrize(
    ("mode", "cmd", "code"),
    [
        ("auto", "cd src && ls", 0),  # the box makes cd within the project safe
        ("off", "cd src && ls", 1),  # without it, today's stricter decision
        ("auto", "cd .. && ls", 1),
    ],
)
def test_cd_within_the_project_is_allowed_where_the_box_runs(
    tmp_path: Path, xguard_home: Path, mode: str, cmd: str, code: int
) -> None:
    b = Box(tmp_path, xguard_home, MECHANISMS[0], mode=mode)
    rules = b.xghome / "rules.yaml"
    builtin = (ROOT / "xguard" / "data" / "default-rules.yaml").read_text()
    rules.write_text(f"confine: {mode}\n" + builtin)
    p = b.check(cmd)
    assert p.returncode == code, p.stdout
    if code == 0:
        r = b.xg(cmd)
        assert r.returncode == 0 and r.stdout == "a.txt\n", r.stderr


# ---------------------------------------------------------------------------
# A real second user: bwrap unprivileged (user namespaces), sudo refused.


def _agent_python() -> str | None:
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable):
        real = os.path.realpath(cand)
        if not os.path.exists(real):
            continue
        d, ok = real, True
        while d != "/":
            d = os.path.dirname(d)
            ok = ok and bool(os.stat(d).st_mode & 0o001)
        r = subprocess.run(
            [real, "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if ok and r.stdout.strip() == "True":
            return real
    return None


# The second user: its folder, home, name, uid, gid and the xguard launcher it runs.
SecondUser = tuple[Path, Path, str, int, int, Path]


@pytest.fixture
def second_user() -> Iterator[SecondUser]:
    if os.geteuid() != 0:
        pytest.skip("creating a second Unix user needs root (CI runs as root)")
    for tool in ("useradd", "userdel", "setpriv", "sudo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (Debian packages passwd, util-linux, sudo)")
    py = _agent_python()
    if py is None:
        pytest.skip("no Python 3.11+ that a second user can execute")
    base = Path(f"/tmp/xgc-{secrets.token_hex(4)}")
    base.mkdir(mode=0o755)
    name = f"xgc{secrets.token_hex(3)}"
    home = base / "home"
    sudoers = Path(f"/etc/sudoers.d/{name}")
    try:
        lib = base / "lib"
        shutil.copytree(
            ROOT / "xguard", lib / "xguard", ignore=shutil.ignore_patterns("__pycache__")
        )
        # The parser's compiled grammar, from the test's own environment (same ABI).
        import tree_sitter
        import tree_sitter_bash

        for mod in (tree_sitter, tree_sitter_bash):
            src = Path(mod.__file__ or "").parent
            shutil.copytree(src, lib / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        launcher = base / "xguard"
        launcher.write_text(
            f"#!{py} -I\nimport sys\nsys.path.insert(0, {str(lib)!r})\n"
            "from xguard.__main__ import main\nsys.exit(main())\n"
        )
        for p in [lib, *lib.rglob("*"), launcher]:
            os.chmod(p, 0o755 if p.is_dir() or p == launcher else 0o644)
        subprocess.run(
            [
                *("useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh"),
                *("--password", "*", "--user-group", name),
            ],
            check=True,
            capture_output=True,
        )
        pw = pwd.getpwnam(name)
        # The user may become root with sudo: only no_new_privs stands in the way.
        sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        yield base, home, name, pw.pw_uid, pw.pw_gid, launcher
    finally:
        with contextlib.suppress(FileNotFoundError):
            sudoers.unlink()
        with contextlib.suppress(KeyError):
            uid = pwd.getpwnam(name).pw_uid
            for d in os.listdir("/proc"):
                with contextlib.suppress(OSError):
                    if d.isdigit() and os.stat(f"/proc/{d}").st_uid == uid:
                        os.kill(int(d), signal.SIGKILL)
            subprocess.run(["userdel", name], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_bwrap_as_an_unprivileged_user(second_user: SecondUser) -> None:
    if "bwrap" not in MECHANISMS:
        pytest.skip("bubblewrap cannot start here")
    base, home, name, uid, gid, launcher = second_user
    b = Box(base, base / "xghome", "bwrap")
    for f in [base / "xghome", *(base / "xghome").rglob("*"), home, *home.rglob("*")]:
        os.chown(f, uid, gid)
    for f in [b.project, *b.project.rglob("*")]:
        os.chown(f, uid, gid)
    env = {**b.env(), "USER": name, "LOGNAME": name}
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]

    def run(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user, str(launcher), "-c", cmd],
            env=env,
            cwd=b.project,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    # Outside any box the user can become root; the boxed sudo cannot.
    direct = subprocess.run(
        [*as_user, "sudo", "-n", "id", "-u"], env=env, capture_output=True, text=True, check=False
    )
    assert direct.stdout.strip() == "0", direct.stderr
    p = run("sudo -n id -u")
    assert p.returncode != 0 and p.stdout.strip() != "0"
    assert "no new privileges" in p.stderr, p.stderr

    p = run(_py("open('src/new.txt', 'w')"))
    assert p.returncode == 1 and not (b.project / "src" / "new.txt").exists()
    assert "this command ran read-only; it tried to write src/new.txt" in p.stderr
    p = run(_py("import os; print(open(os.environ['HOME'] + '/.s' + 'sh/id_rsa').read())"))
    assert p.returncode == 1  # an empty folder is mounted over ~/.ssh
    assert CANARY_KEY.split()[-1] not in p.stdout + p.stderr
    p = run("echo ok > build/x && cat build/x")
    assert p.stdout == "ok\n", p.stderr
    decisions = [r for r in b.records() if r["event"] == "decision"]
    assert [r.get("confined") for r in decisions] == ["bwrap"] * len(decisions), [
        (r["command"], r["decision"], r.get("note")) for r in decisions
    ]


@pytest.mark.parametrize(("cmd", "sig"), [("sleep 30", 15), ("trap '' TERM; sleep 30", 9)])
def test_max_runtime_stops_the_boxed_command(box: Box, cmd: str, sig: int) -> None:
    """SIGTERM reaches the command itself (not bwrap), SIGKILL follows the grace."""
    rules = box.xghome / "rules.yaml"
    rules.write_text(rules.read_text() + "limits: {max_runtime: 1s, kill_grace: 1s}\n")
    t = time.monotonic()
    p = box.xg(cmd)
    assert p.returncode == 124, p.stderr
    assert time.monotonic() - t < 10
    ex = [r for r in box.records() if r["event"] == "exit"][-1]
    assert ex["exit_code"] == 124 and ex["signal"] == sig


def test_a_forged_support_cache_cannot_take_the_box_away(box: Box) -> None:
    """The probe's answer is kept in the user's own state folder, which the
    agent can write (in strict mode it is the agent user's). A forged answer
    naming another program as bubblewrap, or a Landlock ABI too old to deny a
    connect, must not make an allowed command run outside its box."""
    assert box.xg("true").returncode == 0  # the probe's answer is kept
    (kept,) = (box.xghome / "cache").glob("confine-????????????????????????.txt")
    fake = box.project.parent / "fakebwrap"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n')
    fake.chmod(0o755)
    forged = {"bwrap": f"v1\n{fake}\n0\n\n\n", "landlock": "v1\n\n1\n\n\n"}[box.mechanism]
    kept.write_text(forged)
    p = box.xg(_py("open('src/new.txt', 'w').write('x')"))
    assert p.returncode == 1 and not (box.project / "src" / "new.txt").exists(), p.stderr
    if box.mechanism == "landlock" and _abi() < 4:
        return
    with _server() as (port, accepted):
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        p = box.xg(_py(code))
        assert p.returncode == 1 and accepted == [], p.stderr

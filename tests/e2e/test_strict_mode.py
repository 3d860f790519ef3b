"""Strict mode end to end (issue 6): a real second Unix user, a real broker.

As root, the fixtures create an agent user with `useradd`, start `xguard
serve` (the broker, here running as root, the reviewer) and run the agent's
side as that user with `setpriv`. They prove that the agent user cannot
approve (the socket refuses, and it is audited), cannot write the rules, the
queue or the log, cannot read the broker's environment; that a reviewer's
approval runs the command as the agent user; and that insecure ownership or
modes make xguard refuse with exit 78 naming the file.

The agent side runs from a root-owned copy of the package with an interpreter
the agent user can execute (the test interpreter may live under /root), so it
uses only the standard library, as the strict path does. Every wait is
bounded; every process started here is stopped by its pid; users and files
are removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "xguard"
SEED = ROOT.parent / "shared" / "fixtures" / "seed-rules.yaml"
XG = xguard_exe()

EXTRA_RULES = """
  # Added for the strict-mode tests; the seed rules above are unchanged.
  - {pattern: "ls", action: allow}
  - {pattern: "id", action: allow}
  - {pattern: "pwd", action: allow}
  - {pattern: "echo", action: allow, dynamic: allow}
profiles:
  capped:
    limits: {rate: {commands_per_minute: 2}}
"""


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("strict-mode tests create a second Unix user: they need root (CI runs as root)")
    for tool in ("useradd", "userdel", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (Debian packages passwd and util-linux)")


def _agent_python() -> str | None:
    """An interpreter (3.11+) that a user other than root can execute."""
    for cand in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if not cand or not os.path.exists(cand):
            continue
        real = os.path.realpath(cand)
        d, ok = real, True
        while d != "/":
            d = os.path.dirname(d)
            if not os.stat(d).st_mode & 0o001:
                ok = False
                break
        if not ok or not os.stat(real).st_mode & 0o001:
            continue
        v = subprocess.run(
            [real, "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if v.stdout.strip() == "True":
            return real
    return None


def _kill_uid_processes(uid: int) -> None:
    """End what is left running as the test's own agent user, by pid."""
    for _ in range(20):
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.stat(f"/proc/{d}").st_uid == uid:
                        pids.append(int(d))
                except OSError:
                    pass
        if not pids:
            return
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.1)


class Broker:
    """An `xguard serve` started by a test; always stopped by its pid."""

    def __init__(self, home: Path, sock: Path, env_extra: dict[str, str] | None = None) -> None:
        self.home, self.sock = home, sock
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": "/root",
            "XGUARD_HOME": str(home),
            "LANG": "C.UTF-8",
            **(env_extra or {}),
        }
        self.log = open(home.parent / f"broker-{sock.name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*XG, "serve", "--socket", str(sock), "-v"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        end = time.monotonic() + 30
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise AssertionError(f"broker did not start: {self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.home.parent / f"broker-{self.sock.name}.log").read_text(errors="replace")

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


class World:
    """Everything strict mode needs: the agent user, the broker's home, the socket."""

    def __init__(self) -> None:
        _need_root()
        py = _agent_python()
        if py is None:
            pytest.skip(
                "no Python 3.11+ that a second user can execute (the test interpreter is under a "
                "private folder and /usr/bin/python3 is missing or too old)"
            )
        self.python = py
        # Not tmp_path: pytest's folders are root's alone, and the agent must reach this one.
        self.base = Path(f"/tmp/xgs-{secrets.token_hex(4)}")
        self.base.mkdir(mode=0o755)
        os.chmod(self.base, 0o755)  # noqa: S103
        self.users: list[str] = []
        self.brokers: list[Broker] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        base = self.base
        # The agent's xguard: a root-owned copy of the package and a launcher.
        lib = base / "lib"
        shutil.copytree(PKG, lib / "xguard", ignore=shutil.ignore_patterns("__pycache__"))
        (base / "bin").mkdir()
        self.wrapper = base / "bin" / "xguard"
        self.wrapper.write_text(
            f"#!{self.python} -I\nimport sys\nsys.path.insert(0, {str(lib)!r})\n"
            "from xguard.__main__ import main\nsys.exit(main())\n"
        )
        for p in [lib, *lib.rglob("*"), base / "bin", self.wrapper]:
            os.chmod(p, 0o755 if p.is_dir() or p == self.wrapper else 0o644)
        # The agent user: its login shell is xguard; '*' = no password, yet not
        # "locked" (sshd refuses locked accounts even for keys).
        self.agent = f"xga{secrets.token_hex(3)}"
        self.agent_home = base / "agent-home"
        self.add_user(self.agent, self.agent_home, shell=str(self.wrapper))
        pw = pwd.getpwnam(self.agent)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        (self.agent_home / "hello.txt").write_text("hello\n")
        os.chown(self.agent_home / "hello.txt", self.uid, self.gid)
        # The broker's (reviewer's) home: rules, config, queue, log. Root's, 0700.
        self.home = base / "broker-home"
        self.home.mkdir(mode=0o700)
        self.rules = self.home / "rules.yaml"
        self.rules.write_text(SEED.read_text() + EXTRA_RULES)
        self.config = self.home / "config.yaml"
        self.config.write_text(f"agents: [{self.agent}]\nreviewers: [root]\nwait: 30s\n")
        for p in (self.rules, self.config):
            os.chmod(p, 0o600)
        self.run_dir = base / "run"
        self.sock = self.run_dir / "broker.sock"
        self.secret = f"s3cr3t-{secrets.token_hex(4)}"  # a marker to look for
        self.broker = self.start_broker(self.sock, {"XGUARD_TEST_BROKER_SECRET": self.secret})

    def add_user(self, name: str, home: Path, shell: str = "/bin/sh") -> None:
        subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                shell,
                "--password",
                "*",
                "--user-group",
                name,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.users.append(name)
        pw = pwd.getpwnam(name)
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, pw.pw_uid, pw.pw_gid)

    def start_broker(self, sock: Path, env: dict[str, str] | None = None) -> Broker:
        b = Broker(self.home, sock, env)
        self.brokers.append(b)
        return b

    def close(self) -> None:
        for b in self.brokers:
            b.stop()
        for name in self.users:
            try:
                _kill_uid_processes(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue
            subprocess.run(["userdel", name], capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- running things -------------------------------------------------------
    def agent_env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.agent_home),
            "USER": self.agent,
            "LOGNAME": self.agent,
            "LANG": "C.UTF-8",
            "XGUARD_BROKER": str(self.sock),
            "AGENT_SECRET": "hunter2",
            **extra,
        }

    def as_agent(self, argv: list[str], **extra: str) -> list[str]:
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--",
            *argv,
        ]

    def agent_xg(
        self,
        *args: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The agent's xguard, as the agent user."""
        return subprocess.run(
            self.as_agent([str(self.wrapper), *args]),
            env=env or self.agent_env(),
            cwd=self.agent_home,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            check=False,
        )

    def agent_popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.as_agent([str(self.wrapper), *args]),
            env=self.agent_env(),
            cwd=self.agent_home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def agent_python(self, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Code of the agent's own (a hostile agent need not use xguard at all)."""
        return subprocess.run(
            self.as_agent([self.python, "-I", "-c", code, *args]),
            env=self.agent_env(),
            cwd=self.agent_home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def reviewer(self, *args: str, via_socket: bool = True) -> subprocess.CompletedProcess[str]:
        """The reviewer (root): through the broker's socket, or on the broker's files directly."""
        env = {**os.environ, "XGUARD_HOME": str(self.home)}
        if via_socket:
            env["XGUARD_BROKER"] = str(self.sock)
        env.pop("XGUARD_GATED", None)
        return subprocess.run(
            [*XG, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def audit(self) -> list[dict[str, Any]]:
        f = self.home / "audit" / "audit.jsonl"
        return (
            [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []
        )

    def records(self, rid: str | None = None, command: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.audit()
            if (rid is None or r.get("id") == rid)
            and (command is None or r.get("command") == command)
        ]


def read_waiting_id(proc: subprocess.Popen[bytes], timeout: float = 30) -> tuple[str, bytes]:
    """The request id from the agent's `waiting for approval` line."""
    assert proc.stderr is not None
    err = b""
    end = time.monotonic() + timeout
    while b"waiting for approval" not in err or not err.endswith(b"\n"):
        r, _, _ = select.select([proc.stderr], [], [], max(end - time.monotonic(), 0))
        assert r, f"no waiting line within {timeout}s: {err!r}"
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, f"exited before waiting: {err!r}"
        err += chunk
    line = next(x for x in err.decode().splitlines() if "waiting for approval" in x)
    return line.split("waiting for approval ")[1].split()[0], err


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = World()
    try:
        yield w
    finally:
        w.close()


# ---------------------------------------------------------------------------
def test_allowed_command_runs_as_the_agent_with_a_scrubbed_environment(world: World) -> None:
    p = world.agent_xg("-c", 'id -u; echo "secret=$AGENT_SECRET"; pwd')
    assert p.returncode == 0, p.stderr
    uid, secret, cwd = p.stdout.splitlines()
    assert int(uid) == world.uid
    assert secret == "secret="  # noqa: S105 - the agent's secrets never reach the command
    assert cwd == str(world.agent_home)
    recs = world.records(command='id -u; echo "secret=$AGENT_SECRET"; pwd')
    assert [r["event"] for r in recs] == ["decision", "exit"]
    assert (
        recs[0]["decision"] == "allow"
        and recs[0]["user"] == world.agent
        and recs[0]["uid"] == world.uid
    )
    assert recs[1]["exit_code"] == 0 and recs[1]["id"] == recs[0]["id"]


def test_denied_command_never_runs_and_is_audited(world: World) -> None:
    p = world.agent_xg("-c", "printenv")
    assert p.returncode == 77
    assert "xguard: denied: printenv" in p.stderr
    assert p.stdout == ""
    recs = world.records(command="printenv")
    assert recs and recs[-1]["event"] == "decision" and recs[-1]["decision"] == "deny"
    assert recs[-1]["user"] == world.agent


def test_the_agent_cannot_approve_itself(world: World) -> None:
    marker = world.agent_home / "approved-by-self"
    waiter = world.agent_popen("-c", f"touch {marker}")
    rid = "none"
    try:
        rid, _ = read_waiting_id(waiter)
        # 1. A hostile agent talks to the socket itself: refused, and audited.
        code = (
            "import json, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sys.argv[1])\n"
            "msg = {'v': 1, 'op': 'decide', 'id': sys.argv[2], 'state': 'approved'}\n"
            "s.sendall(json.dumps(msg).encode() + b'\\n')\n"
            "print(s.makefile().readline())\n"
        )
        p = world.agent_python(code, str(world.sock), rid)
        assert p.returncode == 0, p.stderr
        answer = json.loads(p.stdout)
        assert answer["status"] == "exit" and answer["code"] == 77
        assert "may not approve" in answer["message"]
        refused = [r for r in world.records(rid) if r["event"] == "refused"]
        assert (
            refused and refused[-1]["uid"] == world.uid and refused[-1]["attempted"] == "approved"
        )
        # 2. Nor may it list the queue over the socket.
        p = world.agent_python(
            code.replace("'op': 'decide'", "'op': 'pending'"), str(world.sock), rid
        )
        assert json.loads(p.stdout)["code"] == 77
        # 3. Through its own shell: `xguard approve` is denied by the built-in self-protection.
        p = world.agent_xg("-c", f"xguard approve {rid}")
        assert p.returncode == 77 and "self-protection" in p.stderr
        # 4. Writing a decision file into the queue: no permission.
        p = world.agent_python(
            "import sys; open(sys.argv[1], 'w').write('{}')",
            str(world.home / "spool" / f"{rid}.decision"),
        )
        assert p.returncode != 0 and "PermissionError" in p.stderr
        # The request is still pending; the command has not run.
        assert not marker.exists()
        assert waiter.poll() is None
        pend = world.reviewer("pending", "--json")
        assert rid in [r["id"] for r in json.loads(pend.stdout)], pend.stderr
    finally:
        d = world.reviewer("deny", rid, "--reason", "test over")
        _, err = waiter.communicate(timeout=30)
    assert d.returncode == 0, d.stderr
    assert waiter.returncode == 77 and b"test over" in err
    assert not marker.exists()


def test_a_reviewer_approval_runs_the_command_as_the_agent_user(world: World) -> None:
    out_file = world.agent_home / "who.txt"
    cmd = f"id -u > {out_file}"
    waiter = world.agent_popen("-c", cmd)
    try:
        rid, _ = read_waiting_id(waiter)
        assert not out_file.exists()
        t0 = time.monotonic()
        a = world.reviewer("approve", rid, "--note", "looks fine")
        assert a.returncode == 0, a.stderr
        assert f"approved {rid}" in a.stdout
        waiter.wait(30)
        assert time.monotonic() - t0 < 5
    finally:
        if waiter.poll() is None:
            waiter.kill()
        waiter.communicate(timeout=10)
    assert waiter.returncode == 0
    assert out_file.read_text().strip() == str(world.uid)
    assert out_file.stat().st_uid == world.uid  # created by the agent user, not by the broker
    events = [(r["event"], r.get("reviewer")) for r in world.records(rid)]
    assert events == [("pending", None), ("approved", "root"), ("decision", "root"), ("exit", None)]
    approved = world.records(rid)[1]
    assert approved["note"] == "looks fine"


def test_a_reviewer_on_the_broker_files_directly_is_heard_at_once(world: World) -> None:
    """The broker shares the spool with `xguard deny` run as the reviewer (no socket)."""
    waiter = world.agent_popen("-c", f"touch {world.agent_home / 'never'}")
    try:
        rid, _ = read_waiting_id(waiter)
        t0 = time.monotonic()
        d = world.reviewer("deny", rid, "--reason", "not today", via_socket=False)
        assert d.returncode == 0, d.stderr
        _, err = waiter.communicate(timeout=30)
        assert time.monotonic() - t0 < 2
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate(timeout=10)
    assert waiter.returncode == 77 and b"not today" in err
    assert not (world.agent_home / "never").exists()


def test_the_agent_cannot_write_the_rules_queue_or_log(world: World) -> None:
    world.agent_xg("-c", "ls")  # the log exists
    targets = [
        world.rules,
        world.config,
        world.home / "audit" / "audit.jsonl",
        world.home / "spool" / "new.json",
        world.home / "cache" / "x",
        world.home / "rules.d" / "evil.yaml",
    ]
    code = (
        "import sys\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        open(p, 'a').write('x')\n"
        "        print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print('REFUSED', p, e.errno)\n"
    )
    p = world.agent_python(code, *map(str, targets))
    assert p.returncode == 0, p.stderr
    assert "WROTE" not in p.stdout
    assert p.stdout.count("REFUSED") == len(targets)
    # Nor through its shell: the broker's files are protected by the policy as well.
    p = world.agent_xg("-c", f"echo '- {{pattern: \"*\", action: allow}}' >> {world.rules}")
    assert p.returncode == 77, p.stderr
    # And it cannot read them either (the reviewer's home is 0700).
    p = world.agent_python("import sys; print(open(sys.argv[1]).read())", str(world.rules))
    assert p.returncode != 0 and "PermissionError" in p.stderr


BOXED_RULES = """\
default: require_approval
rules:
  - {pattern: python3, action: allow}
  - {path: "**/.ssh/**", action: deny}
"""


def test_allowed_commands_run_in_the_box_the_broker_planned(world: World) -> None:
    """Issue 11 in strict mode: the broker plans the box under its own rules
    for the agent's cwd and home; the client starts it as the agent user."""
    rules_d = world.home / "rules.d"
    rules_d.mkdir(mode=0o700, exist_ok=True)
    (rules_d / "boxed.yaml").write_text(BOXED_RULES)
    os.chmod(rules_d / "boxed.yaml", 0o600)
    ssh = world.agent_home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    canary = f"canary-{secrets.token_hex(6)}"
    (ssh / "id_rsa").write_text(canary + "\n")
    for f in (ssh, ssh / "id_rsa"):
        os.chown(f, world.uid, world.gid)
    env = world.agent_env(XGUARD_PROFILE="boxed")
    # Outside the box the agent user can write its home and read its key.
    direct = world.agent_python("print(open('.ssh/id_rsa').read())")
    assert canary in direct.stdout, direct.stderr

    write = "python3 -c \"open('notes.txt', 'w').write('x')\""
    p = world.agent_xg("-c", write, env=env)
    assert p.returncode == 1 and not (world.agent_home / "notes.txt").exists(), p.stderr
    assert "this command ran read-only; it tried to write notes.txt" in p.stderr, p.stderr
    (decision,) = [r for r in world.records(command=write) if r["event"] == "decision"]
    assert decision["decision"] == "allow" and decision["confined"] == "bwrap"

    # Spelled so that no word names the key: only the box can stop it.
    read = "python3 -c \"import os; print(open('.s' + 'sh/id_' + 'rsa').read())\""
    p = world.agent_xg("-c", read, env=env)
    assert p.returncode == 1 and canary not in p.stdout + p.stderr

    # Asking to run unconfined needs a person, as it does locally.
    ask = "# xguard: unconfined\n" + write
    p = world.agent_xg("-c", ask, env={**env, "XGUARD_WAIT": "0"})
    assert p.returncode == 75 and not (world.agent_home / "notes.txt").exists(), p.stderr
    (decision,) = [r for r in world.records(command=ask) if r["event"] == "pending"]
    assert decision["decision"] == "require_approval"


def test_a_forged_probe_answer_on_the_agent_side_cannot_take_the_box_away(world: World) -> None:
    """The agent side says what box it can start from a probe answer kept in
    the agent's own folder. An answer naming another program as bubblewrap
    (one that runs the command without a box) must not get the broker's
    `confined` allow run unconfined: the client starts only the system's
    bwrap, whatever the kept answer says."""
    rules_d = world.home / "rules.d"
    rules_d.mkdir(mode=0o700, exist_ok=True)
    (rules_d / "boxed.yaml").write_text(BOXED_RULES)
    os.chmod(rules_d / "boxed.yaml", 0o600)
    env = world.agent_env(XGUARD_PROFILE="boxed")
    assert world.agent_xg("-c", "python3 -c pass", env=env).returncode == 0
    cache = world.agent_home / ".local" / "state" / "xguard" / "cache"
    (kept,) = cache.glob("confine-????????????????????????.txt")
    fake = world.agent_home / "fakebwrap"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n')
    fake.chmod(0o755)
    kept.write_text(f"v1\n{fake}\n0\n\n\n")
    for f in (fake, kept):
        os.chown(f, world.uid, world.gid)
    write = "python3 -c \"open('forged.txt', 'w').write('x')\""
    p = world.agent_xg("-c", write, env=env)
    assert p.returncode == 1 and not (world.agent_home / "forged.txt").exists(), p.stderr
    assert "this command ran read-only" in p.stderr, p.stderr


def test_claude_codes_wrapper_reports_its_cwd_from_the_box(world: World) -> None:
    """The wrapper's cwd report is written by the agent side through the fd it
    opens on the file before the box starts: the box need not let it write
    /tmp, and the broker decides the model's command alone."""
    cwdf = Path("/tmp") / f"claude-{os.getpid():x}5a-cwd"
    cwdf.unlink(missing_ok=True)
    text = f"eval 'ls' < /dev/null && pwd -P >| {cwdf}"
    try:
        p = world.agent_xg("-c", text)
        assert p.returncode == 0, p.stderr
        assert cwdf.read_text().strip() == str(world.agent_home)
        assert cwdf.stat().st_uid == world.uid
    finally:
        cwdf.unlink(missing_ok=True)
    (decision,) = [
        r
        for r in world.records(command="ls")
        if r["event"] == "decision" and r.get("source") == "shell:claude-code"
    ]
    assert decision["decision"] == "allow"


def test_the_agent_cannot_read_the_brokers_environment(world: World) -> None:
    pid = world.broker.proc.pid
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert world.secret.encode() in environ  # the secret is there (root sees it) …
    code = (
        "import sys\ntry:\n    print(open(sys.argv[1], 'rb').read())\n"
        "except OSError as e:\n    print('REFUSED', e.errno)\n"
    )
    p = world.agent_python(code, f"/proc/{pid}/environ")
    assert p.stdout.startswith("REFUSED"), p.stdout  # … the agent user cannot read it
    assert world.secret not in p.stdout
    # Even a reviewer's approval gives the agent's command no more than the agent user's rights.
    waiter = world.agent_popen("-c", f"cat /proc/{pid}/environ")
    try:
        rid, _ = read_waiting_id(waiter)
        assert world.reviewer("approve", rid).returncode == 0
        out, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate(timeout=10)
    assert waiter.returncode == 1 and b"Permission denied" in err
    assert world.secret.encode() not in out
    # Nor its memory or its open files.
    p = world.agent_python(code, f"/proc/{pid}/mem")
    assert p.stdout.startswith("REFUSED")


@pytest.mark.parametrize(
    "what,change",
    [
        ("rules.yaml", "g+w"),
        ("config.yaml", "o+w"),
        ("spool", "agent"),
        ("audit/audit.jsonl", "o+w"),
        ("audit", "agent"),
        ("run", "o+w"),
    ],
)
def test_insecure_ownership_or_modes_refuse_with_78(world: World, what: str, change: str) -> None:
    world.agent_xg("-c", "ls")  # make sure audit/ exists
    (world.home / "spool").mkdir(mode=0o700, exist_ok=True)
    path = world.run_dir if what == "run" else world.home / what
    st = path.stat()
    try:
        if change == "agent":
            os.chown(path, world.uid, world.gid)
        else:
            bit = stat.S_IWGRP if change == "g+w" else stat.S_IWOTH
            os.chmod(path, stat.S_IMODE(st.st_mode) | bit)
        p = world.agent_xg("-c", "ls")
        assert p.returncode == 78, (p.returncode, p.stderr)
        assert f"xguard: config error: {path}:1:" in p.stderr
        assert (
            "owned by the agent user" in p.stderr
            if change == "agent"
            else "writable by" in p.stderr
        )
        assert p.stdout == ""  # nothing ran
        # The broker refuses to start as well (sudo's way with a writable sudoers).
        c = subprocess.run(
            [*XG, "serve", "--check", "--socket", str(world.sock)],
            env={**os.environ, "XGUARD_HOME": str(world.home)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert c.returncode == 78 and str(path) in c.stderr, c.stderr
    finally:
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))
    assert world.agent_xg("-c", "ls").returncode == 0
    errs = [
        r
        for r in world.audit()
        if r["event"] == "config_error" and str(path) in (r.get("note") or "")
    ]
    assert errs and errs[-1]["user"] == world.agent


def test_a_user_who_is_not_an_agent_is_refused_and_audited(world: World) -> None:
    other = f"xgo{secrets.token_hex(3)}"
    world.add_user(other, world.base / "other-home")
    pw = pwd.getpwnam(other)
    p = subprocess.run(
        [
            "setpriv",
            f"--reuid={pw.pw_uid}",
            f"--regid={pw.pw_gid}",
            "--clear-groups",
            "--",
            str(world.wrapper),
            "-c",
            "ls",
        ],
        env={**world.agent_env(), "HOME": "/"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 77 and "not an agent of this broker" in p.stderr
    assert any(r["event"] == "refused" and r["uid"] == pw.pw_uid for r in world.audit())


def test_a_signal_cancels_the_waiting_request(world: World) -> None:
    waiter = world.agent_popen("-c", f"touch {world.agent_home / 'sig'}")
    rid, _ = read_waiting_id(waiter)
    waiter.send_signal(signal.SIGTERM)
    _, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 128 + signal.SIGTERM
    assert f"cancelled approval request {rid}".encode() in err
    end = time.monotonic() + 10
    while time.monotonic() < end and "cancelled" not in [r["event"] for r in world.records(rid)]:
        time.sleep(0.05)
    assert [r["event"] for r in world.records(rid)] == ["pending", "cancelled"]


def test_limits_count_in_the_brokers_state(world: World) -> None:
    """Sessions and rate caps (issue 5) hold in strict mode, in state the agent cannot reset."""
    env = world.agent_env(XGUARD_PROFILE="capped", XGUARD_SESSION=f"cap-{secrets.token_hex(3)}")
    codes = [world.agent_xg("-c", "ls", env=env) for _ in range(3)]
    assert [c.returncode for c in codes] == [0, 0, 77], [c.stderr for c in codes]
    assert "rate cap" in codes[2].stderr and codes[2].stdout == ""
    refused = [r for r in world.audit() if r.get("limit") == "rate.commands_per_minute"]
    assert refused and refused[-1]["user"] == world.agent and refused[-1]["profile"] == "capped"
    # Nothing of the limits on the agent's side: there it keeps only what its
    # own probe found the kernel box can use (the broker plans the box).
    agent_side = world.agent_home / ".local" / "state" / "xguard"
    kept = [p.relative_to(agent_side) for p in agent_side.glob("**/*")]
    assert all(
        str(p) == "cache" or (p.parent.name == "cache" and p.name.startswith("confine-"))
        for p in kept
    ), kept
    counters = [
        p
        for p in world.home.rglob("*")
        if env["XGUARD_SESSION"] in p.name or p.parent.name == "limits"
    ]
    assert counters, "the counters live in the broker's state"


def test_check_asks_the_broker(world: World) -> None:
    p = world.agent_xg("check", "--json", "-c", "printenv")
    assert p.returncode == 2, p.stderr
    assert json.loads(p.stdout)["decision"] == "deny"
    assert world.agent_xg("check", "-c", "ls").returncode == 0
    # The agent's own rules (which it can write) decide nothing in strict mode:
    # the Claude Code hook asks the broker, which decides and audits.
    own = world.agent_home / ".config" / "xguard"

    def hook(command: str) -> dict[str, Any]:
        p = world.agent_xg(
            "hook",
            "claude-code",
            stdin=json.dumps(
                {
                    "session_id": "s",
                    "cwd": str(world.agent_home),
                    "hook_event_name": "PreToolUse",
                    "tool_name": "Bash",
                    "tool_input": {"command": command},
                }
            ),
        )
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)["hookSpecificOutput"]

    assert hook("ls")["permissionDecision"] == "allow"
    assert hook("printenv")["permissionDecision"] == "deny"
    assert hook("rm -rf build")["permissionDecision"] == "ask"
    answers = [
        (r["command"], r.get("hook_answer"))
        for r in world.audit()
        if r.get("source") == "hook:claude-code" and r["event"] == "decision"
    ]
    assert answers == [("ls", "allow"), ("printenv", "deny"), ("rm -rf build", "ask")]
    assert not own.exists()


def test_broker_stops_cleanly_and_waiting_agents_learn_it(world: World) -> None:
    sock = world.run_dir / "second.sock"
    b = world.start_broker(sock)
    env = world.agent_env(XGUARD_BROKER=str(sock))
    waiter = subprocess.Popen(
        world.as_agent([str(world.wrapper), "-c", f"touch {world.agent_home / 'stop'}"]),
        env=env,
        cwd=world.agent_home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        rid, _ = read_waiting_id(waiter)
        t0 = time.monotonic()
        assert b.stop(timeout=15) == 0
        assert time.monotonic() - t0 < 10
        _, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate(timeout=10)
    assert waiter.returncode == 75 and b"broker is stopping" in err
    assert not sock.exists()
    assert "stopped" in b.output()
    # The request stays pending for the next broker (SPEC §4: nothing is lost).
    pend = world.reviewer("pending", "--json")
    assert rid in [r["id"] for r in json.loads(pend.stdout)]
    world.reviewer("deny", rid)
    # With no broker the agent runs nothing: fail closed.
    p = subprocess.run(
        world.as_agent([str(world.wrapper), "-c", "ls"]),
        env=env,
        cwd=world.agent_home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 70 and "cannot reach the broker" in p.stderr and p.stdout == ""


def test_audit_log_verifies_after_everything(world: World) -> None:
    p = subprocess.run(
        [*XG, "audit", "verify"],
        env={**os.environ, "XGUARD_HOME": str(world.home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr


# ---------------------------------------------------------------------------
# Setup, and client.conf (the system-wide switch the agent cannot undo).


def test_setup_strict_prints_every_step() -> None:
    p = subprocess.run(
        [
            *XG,
            "setup",
            "strict",
            "--agent-user",
            "claude",
            "--reviewer",
            "root",
            "--xguard",
            "/usr/local/bin/xguard",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for needle in (
        "useradd --create-home --shell /usr/local/bin/xguard --password '*' claude",
        "/etc/xguard/client.conf",
        "agents: claude",
        "User=root",
        "ExecStart=/usr/local/bin/xguard serve --socket /run/xguard/broker.sock",
        "systemctl enable --now xguard-broker.service",
        "Match User claude",
        "ForceCommand /usr/local/bin/xguard ssh-gate",
        "serve --check",
    ):
        assert needle in out, needle
    assert "nothing was changed" in p.stderr


def test_setup_strict_apply_makes_the_agent_ask_the_broker(world: World) -> None:
    if os.path.exists("/etc/xguard"):
        pytest.skip("/etc/xguard exists on this machine: not touching a real setup")
    reviewer = f"xgr{secrets.token_hex(3)}"
    world.add_user(reviewer, world.base / "reviewer-home")
    agent = f"xgs{secrets.token_hex(3)}"
    sock = world.base / "apply" / "broker.sock"
    shells = Path("/etc/shells").read_text() if Path("/etc/shells").exists() else None
    try:
        p = subprocess.run(
            [
                *XG,
                "setup",
                "strict",
                "--agent-user",
                agent,
                "--reviewer",
                reviewer,
                "--xguard",
                str(world.wrapper),
                "--socket",
                str(sock),
                "--no-systemd",
                "--no-ssh",
                "--apply",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        world.users.append(agent)
        assert p.returncode == 0, p.stdout + p.stderr
        pw = pwd.getpwnam(agent)
        assert pw.pw_shell == str(world.wrapper)
        rev = pwd.getpwnam(reviewer)
        cfg = Path(rev.pw_dir) / ".config" / "xguard" / "config.yaml"
        st = cfg.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (rev.pw_uid, 0o600)
        assert f"agents: [{agent}]" in cfg.read_text() and f"socket: {sock}" in cfg.read_text()
        for d in (
            cfg.parent,
            Path(rev.pw_dir) / ".local" / "state" / "xguard",
            Path(rev.pw_dir) / ".config",
        ):
            assert d.stat().st_uid == rev.pw_uid, d
        conf = Path("/etc/xguard/client.conf")
        cst = conf.stat()
        assert (cst.st_uid, stat.S_IMODE(cst.st_mode)) == (0, 0o644)
        # No XGUARD_BROKER anywhere: client.conf alone makes the agent's xguard ask the broker
        # (here none runs, so nothing runs: fail closed), and no variable can switch it off.
        env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "XGUARD_BROKER": ""}
        q = subprocess.run(
            [
                "setpriv",
                f"--reuid={pw.pw_uid}",
                f"--regid={pw.pw_gid}",
                "--clear-groups",
                "--",
                str(world.wrapper),
                "-c",
                "echo hi",
            ],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert q.returncode == 70 and f"cannot reach the broker at {sock}" in q.stderr, q.stderr
        assert q.stdout == ""
        # Root (not listed) is not affected.
        r = subprocess.run(
            [*XG, "check", "-c", "ls"], capture_output=True, text=True, timeout=60, check=False
        )
        assert r.returncode in (0, 1), r.stderr
    finally:
        shutil.rmtree("/etc/xguard", ignore_errors=True)
        if shells is not None:
            Path("/etc/shells").write_text(shells)
        if os.path.isdir(f"/home/{agent}"):
            shutil.rmtree(f"/home/{agent}", ignore_errors=True)


def test_client_conf_must_be_roots_and_not_writable(tmp_path: Path) -> None:
    from xguard.gate.strictmode import _client_conf, parse_client_conf
    from xguard.errors import ConfigError

    assert parse_client_conf(["# c", "socket: /run/x.sock", "agents: [a, 'b']"], "f") == {
        "socket": "/run/x.sock",
        "agents": ["a", "b"],
    }
    with pytest.raises(ConfigError, match="f:2:"):
        parse_client_conf(["socket: /run/x.sock", "rules: /tmp/evil"], "f")
    with pytest.raises(ConfigError, match="absolute"):
        parse_client_conf(["socket: x.sock"], "f")
    me = pwd.getpwuid(os.getuid()).pw_name
    conf = tmp_path / "client.conf"
    conf.write_text(f"socket: /run/xg.sock\nagents: nobody-else, {me}\n")
    if os.getuid() != 0:
        with pytest.raises(ConfigError, match="not root"):
            _client_conf(str(conf))
        return
    os.chmod(conf, 0o644)
    assert _client_conf(str(conf)) == "/run/xg.sock"
    os.chmod(conf, 0o664)
    with pytest.raises(ConfigError, match="writable by group"):
        _client_conf(str(conf))
    os.chmod(conf, 0o644)
    conf.write_text("socket: /run/xg.sock\nagents: nobody-else\n")
    assert _client_conf(str(conf)) is None

"""Approvals across Unix users in the same-user layout (the agent's own XGUARD_HOME).

Root approving an agent user's request must leave a decision the agent's
waiting xguard can read (it becomes the agent's file), so the command runs.
A user who can write the spool but cannot hand the agent a readable file
(not root, not in the request's group) is refused loudly, and nothing is
published. Real users (useradd), real setpriv, the real program.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import xguard_exe

PKG = Path(__file__).resolve().parents[2] / "xguard"
RULES = "default: require_approval\nrules:\n  - {pattern: echo, action: allow, dynamic: allow}\n"


def _python_for_others() -> str | None:
    """A Python 3.11+ that users other than root can execute."""
    for cand in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        real = os.path.realpath(cand)
        if not os.path.exists(real) or not os.stat(real).st_mode & 0o001:
            continue
        d, ok = real, True
        while d != "/":
            d = os.path.dirname(d)
            ok = ok and bool(os.stat(d).st_mode & 0o001)
        if ok and sys.version_info >= (3, 11):
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


class Users:
    def __init__(self) -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root to create users")
        for tool in ("useradd", "userdel", "setpriv"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is missing (Debian packages passwd and util-linux)")
        py = _python_for_others()
        if py is None:
            pytest.skip("no Python 3.11+ that another user can execute")
        self.python = py
        self.base = Path(f"/tmp/xgu-{secrets.token_hex(4)}")
        self.base.mkdir(mode=0o755)
        self.names: list[str] = []
        lib = self.base / "lib"
        shutil.copytree(PKG, lib / "xguard", ignore=shutil.ignore_patterns("__pycache__"))
        self.launcher = self.base / "xguard"
        self.launcher.write_text(
            f"#!{py} -I\nimport sys\nsys.path.insert(0, {str(lib)!r})\n"
            "from xguard.__main__ import main\nsys.exit(main())\n"
        )
        for p in [lib, *lib.rglob("*"), self.launcher]:
            os.chmod(p, 0o755 if p.is_dir() or p == self.launcher else 0o644)
        self.lib = lib

    def add(self, prefix: str) -> pwd.struct_passwd:
        name = f"{prefix}{secrets.token_hex(3)}"
        home = self.base / name
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(home), "--user-group", name],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.names.append(name)
        pw = pwd.getpwnam(name)
        home.mkdir(mode=0o700)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        return pw

    def as_user(self, pw: pwd.struct_passwd, argv: list[str]) -> list[str]:
        return [
            "setpriv",
            f"--reuid={pw.pw_uid}",
            f"--regid={pw.pw_gid}",
            "--clear-groups",
            "--",
            *argv,
        ]

    def env(self, pw: pwd.struct_passwd, home: Path) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": pw.pw_dir,
            "USER": pw.pw_name,
            "LANG": "C.UTF-8",
            "XGUARD_HOME": str(home),
            "XGUARD_WAIT": "10",
        }

    def close(self) -> None:
        for name in self.names:
            uid = pwd.getpwnam(name).pw_uid
            for d in os.listdir("/proc"):
                with contextlib.suppress(OSError):
                    if d.isdigit() and os.stat(f"/proc/{d}").st_uid == uid:
                        os.kill(int(d), signal.SIGKILL)
            subprocess.run(["userdel", name], capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def users() -> Iterator[Users]:
    u = Users()
    try:
        yield u
    finally:
        u.close()


def _wait_line(proc: subprocess.Popen[bytes], timeout: float = 30) -> tuple[str, bytes]:
    assert proc.stderr is not None
    err = b""
    end = time.monotonic() + timeout
    while b"waiting for approval" not in err or not err.endswith(b"\n"):
        r, _, _ = select.select([proc.stderr], [], [], max(end - time.monotonic(), 0))
        assert r, f"no waiting line: {err!r}"
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, f"exited before waiting: {err!r}"
        err += chunk
    line = next(x for x in err.decode().splitlines() if "waiting for approval" in x)
    return line.split("waiting for approval ")[1].split()[0], err


def _agent_waits(users: Users) -> tuple[pwd.struct_passwd, Path, subprocess.Popen[bytes], str]:
    agent = users.add("xgag")
    home = Path(agent.pw_dir) / ".xguard"
    work = Path(agent.pw_dir) / "work"
    for d in (home, work):
        d.mkdir(mode=0o700)
        os.chown(d, agent.pw_uid, agent.pw_gid)
    (home / "rules.yaml").write_text(RULES)
    os.chown(home / "rules.yaml", agent.pw_uid, agent.pw_gid)
    proc = subprocess.Popen(
        users.as_user(agent, [str(users.launcher), "-c", "touch made && echo ran"]),
        env=users.env(agent, home),
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    rid, _ = _wait_line(proc)
    return agent, home, proc, rid


def test_root_approval_reaches_the_agent_users_waiter(users: Users) -> None:
    agent, home, proc, rid = _agent_waits(users)
    env = {**os.environ, "XGUARD_HOME": str(home)}
    env.pop("XGUARD_GATED", None)
    p = subprocess.run(
        [*xguard_exe(), "approve", rid],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, b"ran\n"), err
    assert (Path(agent.pw_dir) / "work" / "made").exists()
    decision = home / "spool" / f"{rid}.decision"
    assert decision.stat().st_uid == agent.pw_uid, "the decision is the requester's file"


def test_another_user_who_cannot_share_the_file_is_refused(users: Users) -> None:
    agent, home, proc, rid = _agent_waits(users)
    other = users.add("xgot")
    # A spool another user can write to, yet not in the agent's group.
    for d in (Path(agent.pw_dir), home, home / "spool"):
        os.chmod(d, 0o777)  # noqa: S103
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(users.lib)!r})\n"
        "from xguard.approval.queue import Spool\n"
        "from xguard.paths import get_paths\n"
        "try:\n"
        f"    Spool(get_paths()).decide({rid!r}, 'approved', 'other')\n"
        "except LookupError as e:\n"
        "    print(e.args[0]); sys.exit(1)\n"
    )

    def decide() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            users.as_user(other, [users.python, "-I", "-c", code]),
            env=users.env(other, home),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    p = decide()  # the request file is the agent's, 0600: unreadable here
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert f"belongs to uid {agent.pw_uid}" in p.stdout, p.stdout
    os.chmod(home / "spool" / f"{rid}.json", 0o644)
    p = decide()  # readable, but the decision could not be made readable for the agent
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert f"belongs to uid {agent.pw_uid}" in p.stdout, p.stdout
    assert "cannot give it a file it can read" in p.stdout
    assert not (home / "spool" / f"{rid}.decision").exists(), "nothing published"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)

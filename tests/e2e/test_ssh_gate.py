"""`xguard ssh-gate` behind a real sshd (issue 6).

A test-private sshd from Debian's openssh-server listens on 127.0.0.1 on a
free high port with its own sshd_config, host key and authorized keys (the
system's sshd and its config are never touched): key authentication only,
`ForceCommand <xguard> ssh-gate` and `SetEnv XGUARD_BROKER=<socket>`. The
agent user's login shell is xguard too, so sshd runs the forced command
through it, as it would on a real host. The broker (strict mode) decides.

Proves: `ssh agent@127.0.0.1 'ls'` runs, `'rm -rf x'` waits and runs after
approval, `'printenv'` under the seed rules is denied, an interactive login
and the sftp subsystem are refused, and every step is in the broker's audit
log with the SSH client's address.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_strict_mode import World, read_waiting_id

SSHD: str = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    """A private sshd; stopped by its pid."""

    def __init__(self, world: World) -> None:
        d = world.base / "ssh"
        d.mkdir(mode=0o755)
        (d / "keys").mkdir(mode=0o755)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")],
            check=True,
            timeout=60,
        )
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "agent",
                "-f",
                str(d / "client_key"),
            ],
            check=True,
            timeout=60,
        )
        keys = d / "keys" / world.agent
        keys.write_text((d / "client_key.pub").read_text())
        os.chmod(keys, 0o644)
        self.port = _free_port()
        self.key = d / "client_key"
        self.config = d / "sshd_config"
        self.config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {d / "host_key"}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "keys"}/%u
# The test's folders live under /tmp (sticky, world-writable): StrictModes would refuse them.
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {world.agent}
DisableForwarding yes
PermitUserEnvironment no
Subsystem sftp /usr/lib/openssh/sftp-server
SetEnv XGUARD_BROKER={world.sock}
ForceCommand {world.wrapper} ssh-gate
LogLevel VERBOSE
""")
        # sshd wants its privilege-separation folder (the package's service creates it at boot).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        t = subprocess.run(
            [SSHD, "-t", "-f", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert t.returncode == 0, t.stderr
        self.log = d / "sshd.log"
        with open(self.log, "wb") as logf:  # sshd keeps its own descriptor
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=logf,
                start_new_session=True,
            )
        end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    self.stop()
                    raise AssertionError(f"sshd did not start: {self.log.read_text()}") from None
                time.sleep(0.05)
        self.user = world.agent

    def ssh_argv(self, *command: str, tty: bool = False) -> list[str]:
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "IdentitiesOnly=yes",
            *(["-tt"] if tty else ["-T"]),
            f"{self.user}@127.0.0.1",
            *command,
        ]

    def ssh(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ssh_argv(*command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[World, Sshd]]:
    if os.geteuid() != 0:
        pytest.skip(
            "the ssh-gate tests create a user and run sshd: they need root (CI runs as root)"
        )
    if not SSHD:
        pytest.skip("sshd is missing: install Debian's openssh-server (and openssh-client)")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("ssh/ssh-keygen are missing: install openssh-client")
    w = World()
    s = None
    try:
        s = Sshd(w)
        yield w, s
    finally:
        if s is not None:
            s.stop()
        w.close()


def _ssh_records(world: World, command: str) -> list[dict[str, object]]:
    return [r for r in world.records(command=command) if r.get("source") == "ssh"]


def test_ls_runs(setup: tuple[World, Sshd]) -> None:
    world, sshd = setup
    p = sshd.ssh("ls")
    assert p.returncode == 0, (p.stderr, sshd.log.read_text()[-2000:])
    assert "hello.txt" in p.stdout.split()
    recs = _ssh_records(world, "ls")
    assert [r["event"] for r in recs][-2:] == ["decision", "exit"]
    assert recs[-2]["decision"] == "allow" and recs[-2]["user"] == world.agent
    assert str(recs[-2]["ssh_client"]).startswith("127.0.0.1 ")
    assert recs[-1]["exit_code"] == 0


def test_rm_waits_and_runs_after_approval(setup: tuple[World, Sshd]) -> None:
    world, sshd = setup
    x = world.agent_home / "x"
    x.mkdir()
    (x / "f").write_text("data")
    for p in (x, x / "f"):
        os.chown(p, world.uid, world.gid)
    client = subprocess.Popen(
        sshd.ssh_argv("rm -rf x"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        rid, _ = read_waiting_id(client)
        time.sleep(0.3)
        assert x.exists()  # waiting: nothing ran yet
        a = world.reviewer("approve", rid)
        assert a.returncode == 0, a.stderr
        client.wait(30)
    finally:
        if client.poll() is None:
            client.kill()
        client.communicate(timeout=10)
    assert client.returncode == 0
    assert not x.exists()
    events = [(r["event"], r.get("source")) for r in world.records(rid)]
    assert [e for e, _ in events] == ["pending", "approved", "decision", "exit"]
    assert all(s in ("ssh", None) for _, s in events)
    assert world.records(rid)[0]["user"] == world.agent
    assert world.records(rid)[-1]["exit_code"] == 0


def test_printenv_is_denied_under_the_seed_rules(setup: tuple[World, Sshd]) -> None:
    world, sshd = setup
    p = sshd.ssh("printenv")
    assert p.returncode == 77
    assert "xguard: denied: printenv" in p.stderr
    assert "XGUARD_BROKER" not in p.stdout and p.stdout == ""
    recs = _ssh_records(world, "printenv")
    assert recs and recs[-1]["event"] == "decision" and recs[-1]["decision"] == "deny"


def test_interactive_login_is_refused(setup: tuple[World, Sshd]) -> None:
    world, sshd = setup
    p = subprocess.run(
        sshd.ssh_argv(tty=True),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 77, (p.stdout, p.stderr)
    assert "interactive SSH logins are refused" in p.stdout + p.stderr
    recs = _ssh_records(world, "(interactive login)")
    assert recs and recs[-1]["decision"] == "deny" and recs[-1]["rules"] == ["ssh-gate"]


def test_sftp_subsystem_is_refused(setup: tuple[World, Sshd]) -> None:
    world, sshd = setup
    argv = sshd.ssh_argv()
    i = argv.index("-T")
    argv = [*argv[:i], "-s", *argv[i + 1 :], "sftp"]
    p = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == 77, (p.stdout, p.stderr)  # (sshd does not pass a subsystem's stderr on)
    recs = [
        r
        for r in world.audit()
        if r.get("source") == "ssh" and "sftp-server" in str(r.get("command"))
    ]
    assert recs and recs[-1]["decision"] == "deny"
    assert "subsystem 'sftp' is refused" in str(recs[-1]["note"])


def test_every_step_is_in_the_brokers_audit_log(setup: tuple[World, Sshd]) -> None:
    world, _ = setup
    ssh = [
        r
        for r in world.audit()
        if r.get("source") == "ssh" or r.get("event") in ("approved", "pending")
    ]
    commands = {r.get("command") for r in ssh}
    assert {"ls", "rm -rf x", "printenv", "(interactive login)"} <= commands
    assert all(r.get("user") == world.agent for r in ssh)
    p = subprocess.run(
        [*__import__("tests.conftest", fromlist=["xguard_exe"]).xguard_exe(), "audit", "verify"],
        env={**os.environ, "XGUARD_HOME": str(world.home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_agent_cannot_edit_its_keys_or_bypass_the_forced_command(setup: tuple[World, Sshd]) -> None:
    world, sshd = setup
    keys = Path(sshd.config.parent / "keys" / world.agent)
    p = world.agent_python("import sys; open(sys.argv[1], 'a').write('x')", str(keys))
    assert p.returncode != 0 and "PermissionError" in p.stderr
    # A command that names ssh-gate itself is still just a command to gate.
    client = subprocess.Popen(
        sshd.ssh_argv("SSH_ORIGINAL_COMMAND=printenv xguard ssh-gate"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        rid, _ = read_waiting_id(client)
        assert world.reviewer("deny", rid).returncode == 0
        out, _ = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate(timeout=10)
    assert client.returncode == 77
    assert b"XGUARD_BROKER" not in out


def test_the_sshd_snippet_of_setup_strict_is_valid(tmp_path: Path) -> None:
    """What `xguard setup strict` writes to sshd_config.d passes `sshd -t`."""
    if not SSHD or shutil.which("ssh-keygen") is None:
        pytest.skip("sshd is missing: install Debian's openssh-server (and openssh-client)")
    if os.geteuid() != 0:
        pytest.skip("sshd -t reads its host key and privilege-separation setup as root")
    from xguard.strict.setup import sshd_snippet

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")],
        check=True,
        timeout=60,
    )
    conf = tmp_path / "sshd_config"
    conf.write_text(
        f"HostKey {tmp_path / 'hk'}\nPort 2222\nUsePAM no\n"
        + sshd_snippet("root", "/usr/bin/xguard")
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    p = subprocess.run(
        [SSHD, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == 0, p.stderr

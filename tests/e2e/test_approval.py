"""Human approval end to end (issue 3): real background `xguard` processes, real
`xguard approve/deny/pending`, the real audit log."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

XG = xguard_exe()

RULES = """\
default: require_approval
expiry: {expiry}
rules:
  - {{pattern: "echo", action: allow, dynamic: allow}}
  - {{pattern: "touch", action: require_approval, reason: "creates files"}}
  - {{path: "/tmp/**", access: write, action: require_approval}}
{extra}
"""


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_rules(tmp_path, monkeypatch)


def write_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expiry: str = "1h", extra: str = ""
) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(RULES.format(expiry=expiry, extra=extra))
    monkeypatch.setenv("XGUARD_RULES", str(p))
    return p


class Waiter:
    """A background `xguard` waiting for approval."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [*XG, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.err = b""
        self.id = self._read_id()

    def _read_id(self, timeout: float = 15) -> str:
        end = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while b"\n" not in self.err or b"waiting for approval" not in self.err:
            r, _, _ = select.select([self.proc.stderr], [], [], max(end - time.monotonic(), 0))
            assert r, f"no waiting line: {self.err!r}"
            chunk = os.read(self.proc.stderr.fileno(), 4096)
            assert chunk, f"exited before waiting: {self.err!r}"
            self.err += chunk
        line = next(x for x in self.err.decode().splitlines() if "waiting for approval" in x)
        rid = line.split("waiting for approval ")[1].split()[0]
        assert line == f"xguard: waiting for approval {rid} (xguard approve {rid})"
        return rid

    def finish(self, timeout: float = 15) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), (self.err + err).decode()


def xg(
    *args: str, cwd: Path | None = None, check: bool = False, **kw: Any
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [*XG, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False, **kw
    )
    if check:
        assert p.returncode == 0, p.stderr
    return p


def pending_json() -> list[dict[str, Any]]:
    p = xg("pending", "--json", check=True)
    return json.loads(p.stdout)


def audit(home: Path) -> list[dict[str, Any]]:
    path = home / "audit" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def events(home: Path, rid: str) -> list[str]:
    return [r["event"] for r in audit(home) if r.get("id") == rid]


def wait_for(pred: Any, timeout: float = 10) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------------------
def test_approve_runs_the_command(rules: Path, tmp_path: Path, xguard_home: Path) -> None:
    marker = tmp_path / "made"
    w = Waiter(["-c", f"touch {marker} && echo ran"], tmp_path)
    assert not marker.exists()
    p = xg("approve", w.id, "--note", "looks fine", check=True)
    assert p.stdout.startswith(f"approved {w.id} (once): touch ")
    code, out, err = w.finish()
    assert (code, out) == (0, "ran\n"), err
    assert marker.exists()
    assert events(xguard_home, w.id) == ["pending", "approved", "decision", "exit"]
    recs = {r["event"]: r for r in audit(xguard_home) if r.get("id") == w.id}
    assert recs["approved"]["note"] == "looks fine"
    assert recs["decision"]["reviewer"] == recs["approved"]["reviewer"] != None  # noqa: E711
    assert recs["pending"]["units"] and recs["pending"]["expires"]


def test_deny_exits_77_with_the_reason(rules: Path, tmp_path: Path, xguard_home: Path) -> None:
    marker = tmp_path / "made"
    w = Waiter(["-c", f"touch {marker}"], tmp_path)
    xg("deny", w.id, "--reason", "use the staging box", check=True)
    code, out, err = w.finish()
    assert code == 77 and out == ""
    assert f"xguard: denied: touch {marker} — use the staging box" in err
    assert not marker.exists()
    assert events(xguard_home, w.id) == ["pending", "denied"]


def test_decision_reaches_the_waiter_in_under_a_second(rules: Path, tmp_path: Path) -> None:
    w = Waiter(["run", "--", "touch", str(tmp_path / "m")], tmp_path)
    xg("approve", w.id, check=True)
    t = time.monotonic()
    code, _, err = w.finish()
    assert code == 0, err
    assert time.monotonic() - t < 1.0


def test_without_the_wake_socket_polling_still_delivers(
    rules: Path, tmp_path: Path, xguard_home: Path
) -> None:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "wake").write_text("not a folder: no socket can be made here")
    w = Waiter(["run", "--", "touch", str(tmp_path / "m")], tmp_path)
    xg("approve", w.id, check=True)
    t = time.monotonic()
    assert w.finish()[0] == 0
    assert time.monotonic() - t < 1.0


def test_timeout_then_approve_runs_once_then_asks_again(
    rules: Path, tmp_path: Path, xguard_home: Path
) -> None:
    marker = tmp_path / "m"
    cmd = ["-c", f"touch {marker}; echo ran"]
    env = {**os.environ, "XGUARD_WAIT": "1"}
    first = subprocess.run(
        [*XG, *cmd], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert first.returncode == 75
    rid = first.stderr.split("waiting for approval ")[1].split()[0]
    assert (
        f"xguard: pending approval {rid}: the command did not run; "
        "go on with other work and run it again later"
    ) in first.stderr
    assert not marker.exists()
    assert [r["id"] for r in pending_json()] == [rid]  # still queued
    # Running it again before anyone answered waits on the same request, not a twin.
    again = subprocess.run(
        [*XG, *cmd], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert again.returncode == 75 and f"waiting for approval {rid}" in again.stderr
    assert len(pending_json()) == 1
    xg("approve", rid, check=True)
    second = subprocess.run(
        [*XG, *cmd], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert (second.returncode, second.stdout) == (0, "ran\n"), second.stderr
    assert "waiting" not in second.stderr
    third = subprocess.run(
        [*XG, *cmd],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "XGUARD_WAIT": "0"},
        timeout=30,
        check=False,
    )
    assert third.returncode == 75 and "waiting for approval" in third.stderr
    assert rid not in third.stderr
    ran = [r for r in audit(xguard_home) if r["event"] == "decision"]
    assert len(ran) == 1 and ran[0]["approval"] == rid


def test_denial_after_timeout_reaches_the_next_run(rules: Path, tmp_path: Path) -> None:
    cmd = ["run", "--wait", "0", "--", "touch", str(tmp_path / "m")]
    first = xg(*cmd, cwd=tmp_path)
    rid = first.stderr.split("waiting for approval ")[1].split()[0]
    xg("deny", rid, "--reason", "no", check=True)
    second = xg(*cmd, cwd=tmp_path)
    assert second.returncode == 77 and "— no (denied by" in second.stderr
    third = xg(*cmd, cwd=tmp_path)
    assert third.returncode == 75  # a new request: the reviewer may change their mind


def test_approve_for_a_while(rules: Path, tmp_path: Path) -> None:
    cmd = ["run", "--wait", "0", "--", "touch", str(tmp_path / "m")]
    rid = xg(*cmd, cwd=tmp_path).stderr.split("waiting for approval ")[1].split()[0]
    assert xg("approve", rid, "--for", "3s", check=True).stdout.startswith(f"approved {rid} for 3s")
    t = time.monotonic()
    for _ in range(3):
        assert xg(*cmd, cwd=tmp_path).returncode == 0
    time.sleep(max(0, 3.3 - (time.monotonic() - t)))
    assert xg(*cmd, cwd=tmp_path).returncode == 75


def test_approval_is_bound_to_text_cwd_session_and_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_rules(tmp_path, monkeypatch, extra="profiles:\n  staging: {}\n")
    other = tmp_path / "other"
    other.mkdir()
    target = str(tmp_path / "m")
    base = ["run", "--wait", "0", "--session", "s1", "--", "touch", target]
    rid = xg(*base, cwd=tmp_path).stderr.split("waiting for approval ")[1].split()[0]
    xg("approve", rid, "--for", "10m", check=True)
    assert xg(*base, cwd=other).returncode == 75  # another cwd
    assert (
        xg("run", "--wait", "0", "--session", "s2", "--", "touch", target, cwd=tmp_path).returncode
        == 75
    )
    assert (
        xg(
            "run",
            "--wait",
            "0",
            "--session",
            "s1",
            "--profile",
            "staging",
            "--",
            "touch",
            target,
            cwd=tmp_path,
        ).returncode
        == 75
    )
    assert (
        xg(
            "run", "--wait", "0", "--session", "s1", "--", "touch", target + "x", cwd=tmp_path
        ).returncode
        == 75
    )
    assert (
        xg(
            "-c",
            f"touch {target}",
            cwd=tmp_path,
            env={**os.environ, "XGUARD_SESSION": "s1", "XGUARD_WAIT": "0"},
        ).returncode
        == 75
    )  # shell mode
    assert xg(*base, cwd=tmp_path).returncode == 0  # the approved one still runs


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_cancels_the_request(
    rules: Path, tmp_path: Path, xguard_home: Path, sig: signal.Signals
) -> None:
    w = Waiter(["run", "--", "touch", str(tmp_path / "m")], tmp_path)
    w.proc.send_signal(sig)
    code, _, err = w.finish()
    assert code == 128 + sig
    assert f"cancelled approval request {w.id} ({sig.name})" in err
    assert pending_json() == []
    assert [r["state"] for r in json.loads(xg("pending", "--json", "--all").stdout)] == [
        "cancelled"
    ]
    assert events(xguard_home, w.id) == ["pending", "cancelled"]
    assert not (tmp_path / "m").exists()


def test_sigkill_leaves_a_pending_request_that_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xguard_home: Path
) -> None:
    write_rules(tmp_path, monkeypatch, expiry="2s")
    w = Waiter(["run", "--", "touch", str(tmp_path / "m")], tmp_path)
    w.proc.kill()
    w.proc.wait()
    assert [r["id"] for r in pending_json()] == [w.id]
    time.sleep(2.2)
    assert pending_json() == []  # `pending` sweeps: the request expired
    assert events(xguard_home, w.id) == ["pending", "expired"]
    late = xg("approve", w.id)
    assert late.returncode == 1 and "already expired" in late.stderr


def test_wait_longer_than_expiry_ends_at_expiry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xguard_home: Path
) -> None:
    write_rules(tmp_path, monkeypatch, expiry="1s")
    w = Waiter(["run", "--wait", "30", "--", "touch", str(tmp_path / "m")], tmp_path)
    code, _, err = w.finish()
    assert code == 75 and f"approval request {w.id} expired" in err
    assert time.monotonic() - w.t0 < 10
    assert events(xguard_home, w.id) == ["pending", "expired"]


def test_twenty_concurrent_waiters_all_decided_correctly(rules: Path, tmp_path: Path) -> None:
    waiters = {
        i: Waiter(["run", "--wait", "60", "--", "touch", str(tmp_path / f"m{i}")], tmp_path)
        for i in range(20)
    }
    assert len({w.id for w in waiters.values()}) == 20
    assert {r["id"] for r in pending_json()} == {w.id for w in waiters.values()}
    for i, w in waiters.items():
        if i % 2 == 0:
            xg("approve", w.id, check=True)
        else:
            xg("deny", w.id, "--reason", f"odd {i}", check=True)
    for i, w in waiters.items():
        code, _, err = w.finish()
        if i % 2 == 0:
            assert code == 0, err
            assert (tmp_path / f"m{i}").exists()
        else:
            assert code == 77 and f"odd {i}" in err
            assert not (tmp_path / f"m{i}").exists()
    assert pending_json() == []


def test_first_decision_wins_and_prefix_ids(rules: Path, tmp_path: Path) -> None:
    w = Waiter(["run", "--", "touch", str(tmp_path / "m")], tmp_path)
    xg("approve", w.id[:4], check=True)
    late = xg("deny", w.id)
    assert late.returncode == 1 and f"{w.id} was already approved by" in late.stderr
    assert w.finish()[0] == 0
    missing = xg("approve", "zzzzzz")
    assert missing.returncode == 1 and "no request 'zzzzzz'" in missing.stderr


def test_pending_shows_everything_a_reviewer_needs(rules: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/feature/x\n")
    env = {**os.environ, "XGUARD_SESSION": "sess-1"}
    w = Waiter(["-c", "touch made"], repo, env=env)
    [r] = pending_json()
    assert r["id"] == w.id and r["state"] == "pending"
    assert r["command"] == "touch made" and r["cwd"] == str(repo) and r["git_branch"] == "feature/x"
    assert r["session"] == "sess-1" and r["pid"] == w.proc.pid and r["ppid"] == os.getpid()
    assert r["parent"] and r["user"] and r["host"]
    assert r["expires"] > r["created"] and r["age_s"] >= 0
    assert any(u["text"] == "touch made" and u["rule"] for u in r["units"])
    assert r["reasons"] and r["rules"]
    text = xg("pending", check=True).stdout
    assert w.id in text and "touch made" in text and "sess-1" in text and "creates files" in text
    xg("deny", w.id, check=True)
    w.finish()


def test_prompt_off_and_non_tty_never_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_rules(tmp_path, monkeypatch, extra="prompt: false\n")
    p = xg("run", "--wait", "0", "--", "touch", "x", cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert p.returncode == 75 and "[y/N/d]" not in p.stderr


# ---------------------------------------------------------------------------
# No self-approval (issue 3 item 7).


@pytest.fixture
def permissive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Rules under which the smuggled approver script itself is allowed."""
    p = tmp_path / "permissive.yaml"
    p.write_text("default: allow\n")
    monkeypatch.setenv("XGUARD_RULES", str(p))
    return p


def test_policy_denies_approving_verbs(permissive: Path, tmp_path: Path) -> None:
    for cmd in (
        "xguard approve abc",
        "env -u XGUARD_GATED xguard approve abc",
        "sh -c 'xguard deny abc'",
        "nohup xguard review",
        "timeout 5 xguard approve abc --for 1h",
    ):
        p = xg("-c", cmd, cwd=tmp_path)
        assert p.returncode == 77, (cmd, p.stderr)
        assert "built-in self-protection" in p.stderr


@pytest.mark.parametrize("how", ["direct", "env -u", "wrapper", "bash -c"])
def test_verbs_refuse_inside_a_gated_command(
    permissive: Path, tmp_path: Path, how: str, xguard_home: Path
) -> None:
    # A request waits under the strict rules; the "agent" then smuggles the verb
    # past the parser in a script that the permissive rules allow.
    strict = tmp_path / "strict.yaml"
    strict.write_text("default: require_approval\n")
    w = Waiter(
        ["run", "--", "touch", str(tmp_path / "m")],
        tmp_path,
        env={**os.environ, "XGUARD_RULES": str(strict)},
    )
    script = tmp_path / "approver"
    script.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        exec {XG[0]} approve {w.id}
        """)
    )
    script.chmod(0o755)
    cmd = {
        "direct": "./approver",
        "env -u": "env -u XGUARD_GATED ./approver",
        "wrapper": "nice -n 1 timeout 20 ./approver",
        "bash -c": "bash -c ./approver",
    }[how]
    p = xg("-c", cmd, cwd=tmp_path)
    assert p.returncode == 77, p.stderr
    assert "no self-approval" in p.stderr
    assert [r["id"] for r in pending_json()] == [w.id]  # still undecided
    # The smuggling command's own exit line records the refusal.
    exits = [r for r in audit(xguard_home) if r["event"] == "exit" and "approver" in r["command"]]
    assert [r["exit_code"] for r in exits] == [77]
    xg("deny", w.id, check=True)  # a person outside the gate can
    assert w.finish()[0] == 77


def test_env_marker_alone_refuses(tmp_path: Path) -> None:
    p = xg("approve", "abc", env={**os.environ, "XGUARD_GATED": "x"})
    assert p.returncode == 77 and "no self-approval" in p.stderr

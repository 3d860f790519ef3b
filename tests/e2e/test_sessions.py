"""Sessions end to end (issue 5): start/list/show/end, expiry with short TTLs
(1-2 s, real clocks), approvals that die with their session, required
sessions, and the session in every audit record."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

XG = xguard_exe()

RULES = """\
default: require_approval
rules:
  - {pattern: "echo", action: allow, dynamic: allow}
  - {pattern: "true", action: allow}
  - {pattern: "touch", action: require_approval, reason: "creates files"}
sessions: {max_ttl: 2h, default_ttl: 20m}
"""


@pytest.fixture
def home(xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(RULES)
    monkeypatch.setenv("XGUARD_WAIT", "0")
    monkeypatch.chdir(tmp_path)
    return xguard_home


def xg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XG, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


def audit(home: Path) -> list[dict[str, Any]]:
    path = home / "audit" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def start(*args: str) -> str:
    p = xg("session", "start", *args)
    assert p.returncode == 0, p.stderr
    return p.stdout.split("XGUARD_SESSION=")[1].split()[0]


# ---------------------------------------------------------------------------
def test_eval_start_then_commands_carry_the_session(home: Path) -> None:
    script = (
        f'eval "$({XG[0]} session start --ttl 5m --name demo)"; echo "id=$XGUARD_SESSION"; '
        f'{XG[0]} -c "echo gated"'
    )
    p = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert p.returncode == 0, p.stderr
    sid = p.stdout.splitlines()[0].split("=")[1]
    assert len(sid) == 8 and p.stdout.splitlines()[1] == "gated"
    assert f"session {sid} (demo) started" in p.stderr
    recs = [r for r in audit(home) if r.get("session") == sid]
    assert [r["event"] for r in recs] == ["session_start", "decision", "exit"]
    assert all(r["session"] == sid for r in recs)


def test_start_prints_only_exports(home: Path) -> None:
    p = xg("session", "start", "--ttl", "90s")
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("export XGUARD_SESSION=")


def test_list_and_show(home: Path) -> None:
    sid = start("--ttl", "10m", "--name", "fix tests")
    p = xg("session", "list")
    assert p.returncode == 0 and sid in p.stdout and "live" in p.stdout and "fix tests" in p.stdout
    lst = json.loads(xg("session", "list", "--json").stdout)
    assert [r["id"] for r in lst] == [sid] and lst[0]["state"] == "live" and lst[0]["ttl"] == 600
    shown = json.loads(xg("session", "show", sid, "--json").stdout)
    assert shown["id"] == sid and shown["name"] == "fix tests" and shown["tripped"] is None
    assert "expires" in xg("session", "show", sid[:4]).stdout  # a prefix is enough
    assert xg("session", "show", "zzzzzzzz").returncode == 1


def test_default_and_max_ttl(home: Path) -> None:
    sid = start()
    assert json.loads(xg("session", "show", sid, "--json").stdout)["ttl"] == 1200  # default_ttl 20m
    p = xg("session", "start", "--ttl", "3h")
    assert p.returncode == 64 and "sessions.max_ttl" in p.stderr and p.stdout == ""
    assert xg("session", "start", "--ttl", "soon").returncode == 64


def test_expired_session_does_not_run(home: Path, tmp_path: Path) -> None:
    sid = start("--ttl", "1s")
    env = {"XGUARD_SESSION": sid}
    assert xg("-c", "echo in time", env=env).stdout == "in time\n"
    time.sleep(1.2)
    p = xg("-c", f"echo late > {tmp_path}/late", env=env)
    assert p.returncode == 77 and p.stdout == ""
    assert (
        p.stderr.startswith(f"xguard: session {sid} expired at ") and "start a new one" in p.stderr
    )
    assert not (tmp_path / "late").exists()
    assert xg("run", "--session", sid, "--", "true").returncode == 77
    last = audit(home)[-1]
    assert (last["event"], last["decision"], last["limit"], last["session"]) == (
        "decision",
        "deny",
        "session.expired",
        sid,
    )
    assert json.loads(xg("session", "show", sid, "--json").stdout)["state"] == "expired"


def test_ended_session_does_not_run_and_its_pending_requests_are_cancelled(home: Path) -> None:
    sid = start()
    env = {"XGUARD_SESSION": sid}
    assert xg("-c", "touch f", env=env).returncode == 75
    rid = json.loads(xg("pending", "--json").stdout)[0]["id"]
    p = xg("session", "end", sid)
    assert p.returncode == 0 and rid in p.stderr
    assert json.loads(xg("pending", "--json").stdout) == []
    p = xg("-c", "echo no", env=env)
    assert p.returncode == 77 and "expired at" in p.stderr and "ended by" in p.stderr
    assert xg("session", "end", sid).returncode == 1  # already ended
    ev = [r["event"] for r in audit(home) if r.get("session") == sid]
    assert "session_end" in ev and "cancelled" in ev


def test_expiry_revokes_a_for_approval(home: Path, tmp_path: Path) -> None:
    # Long enough for four starts of xguard on a busy machine; the point is
    # what happens after it ends, whatever its length.
    ttl = 8.0
    sid = start("--ttl", f"{ttl:g}s")
    env = {"XGUARD_SESSION": sid}
    t0 = time.monotonic()
    assert xg("-c", "touch a", env=env).returncode == 75
    rid = json.loads(xg("pending", "--json").stdout)[0]["id"]
    assert xg("approve", rid, "--for", "30m").returncode == 0
    assert xg("-c", "touch a", env=env).returncode == 0  # the grant works inside the session …
    assert (tmp_path / "a").exists()
    (tmp_path / "a").unlink()
    assert time.monotonic() - t0 < ttl, f"too slow to test a {ttl:g} s session"
    time.sleep(max(0.0, ttl + 0.2 - (time.monotonic() - t0)))
    p = xg("-c", "touch a", env=env)  # … and dies with it
    assert p.returncode == 77 and "expired" in p.stderr
    assert not (tmp_path / "a").exists()


def test_grant_is_checked_where_it_is_honoured(home: Path, tmp_path: Path) -> None:
    # The agent hook takes grants straight from the queue: the session check is there too.
    sid = start("--ttl", "1s")
    env = {"XGUARD_SESSION": sid}
    assert xg("-c", "touch b", env=env).returncode == 75
    rid = json.loads(xg("pending", "--json").stdout)[0]["id"]
    assert xg("approve", rid, "--for", "30m").returncode == 0
    from xguard.paths import get_paths

    paths = get_paths()
    answers = [json.loads(p.read_text()) for p in Path(paths.spool_dir_s, "answers").iterdir()]
    assert answers and answers[0]["session"] == sid
    time.sleep(1.2)
    from xguard.gate import sessions

    assert sessions.grant_alive(paths, answers[0]) is False
    assert sessions.grant_alive(paths, {**answers[0], "session": "not-an-xguard-session"}) is True
    # In process, as an adapter calls it: the queue still holds the grant,
    # and approval refuses to ride on it.
    from xguard.approval.wait import obtain_approval
    from xguard.gate.request import Gate, Request

    gate = Gate()
    req = Request(text="touch b", session=sid, wait=0)
    decision = gate.decide_text(req.text)
    record = gate.base_record(req, decision, "x1")
    assert obtain_approval(gate, req, decision, record, gate.audit()).exit_code == 75
    assert "approval" not in record


def test_required_sessions(home: Path) -> None:
    (home / "rules.yaml").write_text(RULES.replace("sessions: {", "sessions: {required: true, "))
    p = xg("-c", "echo hi")
    assert (
        p.returncode == 77
        and "sessions.required" in p.stderr
        and "xguard session start" in p.stderr
    )
    assert p.stdout == ""
    p = xg("-c", "echo hi", env={"XGUARD_SESSION": "made-up-by-the-agent"})
    assert p.returncode == 77 and "not one that xguard started" in p.stderr
    sid = start("--ttl", "1m")
    assert xg("-c", "echo hi", env={"XGUARD_SESSION": sid}).stdout == "hi\n"
    assert xg("run", "--session", sid, "--", "echo", "run").stdout == "run\n"
    last = [r for r in audit(home) if r["event"] == "decision"]
    assert last[0]["limit"] == "sessions.required" and last[0]["session"] is None


def test_unmanaged_session_ids_still_work_when_not_required(home: Path) -> None:
    # Agent runtimes pass their own ids (Claude Code's session_id); they are not refused.
    p = xg("-c", "echo ok", env={"XGUARD_SESSION": "3f2a9c1e-0000-4000-8000-aaaaaaaaaaaa"})
    assert p.returncode == 0
    p = xg("-c", "echo ok", env={"XGUARD_SESSION": "../../etc/passwd"})
    assert p.returncode == 0


def test_agent_cannot_open_or_reset_sessions(home: Path) -> None:
    assert xg("check", "-c", 'eval "$(xguard session start)"').returncode == 2
    assert xg("check", "-c", "xguard session reset abc").returncode == 2
    p = xg("session", "start", env={"XGUARD_GATED": "r1"})
    assert p.returncode == 77 and p.stdout == ""
    assert xg("check", "-c", "xguard session list").returncode != 2


def test_every_record_carries_session_and_profile(home: Path) -> None:
    (home / "rules.yaml").write_text(RULES + "profiles:\n  staging: {}\n")
    sid = start("--profile", "staging")
    env = {"XGUARD_SESSION": sid}  # the session's profile applies without XGUARD_PROFILE
    assert xg("-c", "echo hi", env=env).returncode == 0
    assert xg("-c", "touch z", env=env).returncode == 75
    rid = json.loads(xg("pending", "--json").stdout)[0]["id"]
    assert xg("approve", rid).returncode == 0
    assert xg("-c", "touch z", env=env).returncode == 0
    recs = [r for r in audit(home) if r["event"] != "session_start"]
    assert {r["event"] for r in recs} >= {"decision", "exit", "pending", "approved"}
    for r in recs:
        assert (r["session"], r["profile"]) == (sid, "staging"), r
    # A session started for one profile does not run commands of another.
    (home / "rules.yaml").write_text(RULES + "profiles:\n  staging: {}\n  production: {}\n")
    p = xg("-c", "echo hi", env={**env, "XGUARD_PROFILE": "production"})
    assert p.returncode == 77 and "profile staging" in p.stderr

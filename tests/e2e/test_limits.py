"""Blast-radius limits end to end (issue 5): max_runtime, rate caps, numeric
caps, and the loop breaker replaying the seed article's scaling incident with
a stand-in `kubectl` that records its calls."""

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

BASE = """\
default: require_approval
# The stand-in kubectl records its calls in a file, and `touch`/`mkdir` make
# files: writes the kernel box stops (tests/e2e/test_confine.py). These tests
# are about limits, so they run without it.
confine: off
rules:
  - {pattern: "echo", action: allow, dynamic: allow}
  - {pattern: "true", action: allow}
  - {pattern: "sleep", action: allow}
  - {pattern: "sh -c", action: allow}
  - {pattern: "touch", action: allow}
  - {pattern: "trap", action: allow}
  - {pattern: "exec", action: allow}
  - {pattern: "kubectl get", action: allow}
  - {pattern: "kubectl scale", action: allow, caps: {"--replicas": 10}}
  - {pattern: "kubectl rollout", action: require_approval}
  - {path: "/dev/null", access: write, action: allow}
"""


@pytest.fixture
def home(xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    xguard_home.mkdir(parents=True, exist_ok=True)
    # The stand-in kubectl: records each call, one line per call.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/kubectl-calls\necho "kubectl: $*"\n')
    kubectl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XGUARD_WAIT", "0")  # a command needing approval ends at once with 75
    monkeypatch.chdir(tmp_path)
    return xguard_home


def rules(home: Path, extra: str = "") -> None:
    # The stand-in kubectl lives in a folder the agent could write; the rules
    # vouch for it, as a team would for its own tools folder (issue 11).
    trust = f"trust_path: [{home.parent / 'bin'}]\n"
    (home / "rules.yaml").write_text(trust + BASE + extra)


def xg(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XG, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def audit(home: Path) -> list[dict[str, Any]]:
    path = home / "audit" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def calls(tmp_path: Path) -> list[str]:
    f = tmp_path / "kubectl-calls"
    return f.read_text().splitlines() if f.exists() else []


def start_session(ttl: str = "10m") -> str:
    p = xg("session", "start", "--ttl", ttl)
    assert p.returncode == 0, p.stderr
    return p.stdout.split("XGUARD_SESSION=")[1].split()[0]


# ---------------------------------------------------------------------------
# max_runtime


def test_max_runtime_kills_sleep_with_124_and_audits_it(home: Path) -> None:
    rules(home, "limits: {max_runtime: 1s, kill_grace: 1s}\n")
    t = time.monotonic()
    p = xg("-c", "sleep 30")
    took = time.monotonic() - t
    assert p.returncode == 124, p.stderr
    assert took < 10
    assert "max_runtime" in p.stderr
    ex = [r for r in audit(home) if r["event"] == "exit"][-1]
    assert ex["exit_code"] == 124 and ex["timed_out"] is True and ex["command"] == "sleep 30"
    assert 900 <= ex["duration_ms"] < 10_000


def test_max_runtime_escalates_to_sigkill_after_the_grace(home: Path) -> None:
    # The child ignores SIGTERM: SIGKILL follows kill_grace later, still 124 as timeout(1) gives.
    rules(home, "limits: {max_runtime: 1s, kill_grace: 1s}\n")
    t = time.monotonic()
    p = xg("-c", "trap '' TERM; exec sleep 30")
    took = time.monotonic() - t
    assert p.returncode == 124, p.stderr
    assert 1.8 < took < 10
    ex = [r for r in audit(home) if r["event"] == "exit"][-1]
    assert ex["exit_code"] == 124 and ex["signal"] == 9


def test_rule_max_runtime_and_profile_max_runtime(home: Path) -> None:
    rules(
        home,
        "  - {pattern: 'sleep 29', action: allow, max_runtime: 1s}\n"
        "limits: {kill_grace: 1s}\n"
        "profiles:\n  quick: {limits: {max_runtime: 1s}}\n",
    )
    assert xg("-c", "sleep 29").returncode == 124  # the rule's own
    assert xg("-c", "sleep 0.2").returncode == 0  # no limit without the rule or the profile
    assert xg("-c", "sleep 30", env={"XGUARD_PROFILE": "quick"}).returncode == 124


# ---------------------------------------------------------------------------
# rate caps


def test_commands_per_minute(home: Path) -> None:
    rules(home, "limits: {rate: {commands_per_minute: 3}}\n")
    sid = start_session()
    env = {"XGUARD_SESSION": sid}
    for i in range(3):
        assert xg("-c", f"echo {i}", env=env).returncode == 0
    p = xg("-c", "echo 4", env=env)
    assert p.returncode == 77 and p.stdout == ""
    assert "commands_per_minute" in p.stderr and "raise" in p.stderr and sid in p.stderr
    # Per session: another session is not held back by this one's cap.
    assert xg("-c", "echo other", env={"XGUARD_SESSION": start_session()}).returncode == 0
    rec = [r for r in audit(home) if r["event"] == "decision"][-2]
    assert (rec["decision"], rec["limit"], rec["session"]) == (
        "deny",
        "rate.commands_per_minute",
        sid,
    )


def test_approvals_per_hour(home: Path) -> None:
    rules(home, "limits: {rate: {approvals_per_hour: 2}}\n")
    env = {"XGUARD_SESSION": start_session()}
    assert xg("-c", "kubectl rollout restart a", env=env).returncode == 75
    assert xg("-c", "kubectl rollout restart b", env=env).returncode == 75
    # Running a pending command again is not a new request.
    assert xg("-c", "kubectl rollout restart a", env=env).returncode == 75
    p = xg("-c", "kubectl rollout restart c", env=env)
    assert p.returncode == 77 and "approvals_per_hour" in p.stderr and "raise" in p.stderr
    assert xg("-c", "echo reads still run", env=env).returncode == 0
    pend = json.loads(xg("pending", "--json").stdout)
    assert sorted(r["command"] for r in pend) == [
        "kubectl rollout restart a",
        "kubectl rollout restart b",
    ]


# ---------------------------------------------------------------------------
# numeric caps


def test_numeric_caps(home: Path, tmp_path: Path) -> None:
    rules(home, "  - {pattern: 'kubectl autoscale', action: allow, baseline: {'--max': 4}}\n")
    assert xg("-c", "kubectl scale deploy/api --replicas=10").returncode == 0
    p = xg("-c", "kubectl scale deploy/api --replicas=11")
    assert p.returncode == 75 and "pending approval" in p.stderr
    assert xg("-c", "kubectl scale deploy/api --replicas 50").returncode == 75
    assert xg("-c", "kubectl autoscale deploy/api --max 8").returncode == 0  # 2 x 4
    assert xg("-c", "kubectl autoscale deploy/api --max=9").returncode == 75
    assert calls(tmp_path) == ["scale deploy/api --replicas=10", "autoscale deploy/api --max 8"]
    c = json.loads(xg("check", "--json", "-c", "kubectl scale deploy/api --replicas=11").stdout)
    assert c["decision"] == "require_approval"
    assert "--replicas 11 is over the cap of 10" in c["units"][0]["why"]


# ---------------------------------------------------------------------------
# the loop breaker: the seed's scaling incident


LOOP = "limits: {loop: {same_rule: 2, same_command: 2, window: 1m, trip_at: 5}}\n"


def test_loop_breaker_replays_the_scaling_incident(home: Path, tmp_path: Path) -> None:
    rules(home, LOOP)
    sid = start_session()
    env = {"XGUARD_SESSION": sid}

    # Each step looks locally rational, and is allowed by the rules.
    assert xg("-c", "kubectl scale deploy/api --replicas=2", env=env).returncode == 0
    assert xg("-c", "kubectl scale deploy/api --replicas=3", env=env).returncode == 0
    # The third within the window waits for a human.
    p = xg("-c", "kubectl scale deploy/api --replicas=4", env=env)
    assert p.returncode == 75, p.stderr
    assert len(calls(tmp_path)) == 2
    pend = json.loads(xg("pending", "--json").stdout)
    assert [r["command"] for r in pend] == ["kubectl scale deploy/api --replicas=4"]
    assert any("loop breaker" in why for why in pend[0]["reasons"])
    # A person approves it, and it runs.
    assert xg("approve", pend[0]["id"]).returncode == 0
    assert xg("-c", "kubectl scale deploy/api --replicas=4", env=env).returncode == 0
    assert len(calls(tmp_path)) == 3

    # The next one trips the session: it does not run, and from now on
    # nothing but allowed reads does.
    p = xg("-c", "kubectl scale deploy/api --replicas=5", env=env)
    assert p.returncode == 77
    assert "tripped the loop breaker" in p.stderr and f"xguard session reset {sid}" in p.stderr
    assert xg("-c", "kubectl get pods", env=env).returncode == 0
    assert xg("-c", "echo still reading", env=env).returncode == 0
    for cmd in ("kubectl scale deploy/api --replicas=1", "touch x", "kubectl rollout restart api"):
        p = xg("-c", cmd, env=env)
        assert p.returncode == 77 and "tripped" in p.stderr, cmd
    assert not (tmp_path / "x").exists()
    assert calls(tmp_path) == [
        "scale deploy/api --replicas=2",
        "scale deploy/api --replicas=3",
        "scale deploy/api --replicas=4",
        "get pods",
    ]
    show = json.loads(xg("session", "show", sid, "--json").stdout)
    assert show["tripped"] and "limits.loop.trip_at is 5" in show["tripped"]["why"]
    assert "TRIPPED" in xg("session", "list").stdout

    # A reviewer resets it: work goes on.
    p = xg("session", "reset", sid)
    assert p.returncode == 0 and "had tripped" in p.stderr
    assert xg("-c", "kubectl scale deploy/api --replicas=2", env=env).returncode == 0
    assert calls(tmp_path)[-1] == "scale deploy/api --replicas=2"

    events = [r for r in audit(home) if r.get("session") == sid]
    assert [r["event"] for r in events].count("session_tripped") == 1
    assert [r["event"] for r in events].count("session_reset") == 1
    refused = [r for r in events if r.get("limit") == "loop.trip_at" and r["event"] == "decision"]
    assert len(refused) == 4 and all(r["decision"] == "deny" for r in refused)


def test_loop_breaker_does_not_count_reads(home: Path) -> None:
    rules(home, LOOP)
    env = {"XGUARD_SESSION": start_session()}
    for _ in range(8):
        assert xg("-c", "kubectl get pods", env=env).returncode == 0


def test_same_command_counts_what_no_rule_names(home: Path) -> None:
    # No rule matches `mkdir` (the default allows it): the same command,
    # digits folded, is what the breaker counts.
    (home / "rules.yaml").write_text(
        BASE.replace("default: require_approval", "default: allow")
        + "limits: {loop: {same_command: 1, window: 1m}}\n"
    )
    env = {"XGUARD_SESSION": start_session()}
    assert xg("-c", "mkdir -p d1", env=env).returncode == 0
    p = xg("-c", "mkdir -p d2", env=env)
    assert p.returncode == 75 and "pending approval" in p.stderr
    assert xg("-c", "mkdir -p other", env=env).returncode == 0


def test_without_a_session_the_breaker_still_holds(home: Path) -> None:
    rules(home, "limits: {loop: {same_rule: 1, window: 1m, trip_at: 2}}\n")
    assert xg("-c", "kubectl scale deploy/api --replicas=2").returncode == 0
    p = xg("-c", "kubectl scale deploy/api --replicas=2")
    assert (
        p.returncode == 77
        and "commands without a session" in p.stderr
        and "session reset -" in p.stderr
    )
    assert xg("-c", "kubectl get pods").returncode == 0
    assert xg("session", "reset", "-").returncode == 0
    assert xg("-c", "kubectl scale deploy/api --replicas=2").returncode == 0


def test_window_forgets(home: Path) -> None:
    rules(home, "limits: {loop: {same_rule: 1, window: 1s}}\n")
    env = {"XGUARD_SESSION": start_session()}
    assert xg("-c", "kubectl scale deploy/api --replicas=2", env=env).returncode == 0
    assert xg("-c", "kubectl scale deploy/api --replicas=2", env=env).returncode == 75
    time.sleep(1.2)
    assert xg("-c", "kubectl scale deploy/api --replicas=2", env=env).returncode == 0


def test_reset_is_a_persons_verb(home: Path) -> None:
    rules(home, LOOP)
    sid = start_session()
    # From inside a gated command (the agent), no.
    p = xg("session", "reset", sid, env={"XGUARD_GATED": "abc"})
    assert p.returncode == 77 and "cannot run inside" in p.stderr
    c = xg("check", "-c", f"xguard session reset {sid}")
    assert c.returncode == 2
    assert xg("session", "reset", "nosuchsession").returncode == 1


def test_max_runtime_stops_grandchildren_too(home: Path, tmp_path: Path) -> None:
    # `sleep` is bash's child here, not exec'd: killing only bash would leave it
    # running and holding our stdout pipe open for 30 s.
    rules(
        home,
        f"  - {{pattern: 'touch', action: allow}}\n  - {{path: '{tmp_path}/**', access: write, action: allow}}\n"
        "limits: {max_runtime: 1s, kill_grace: 1s}\n",
    )
    marker = tmp_path / "after"
    t = time.monotonic()
    p = xg("-c", f"sleep 30; touch {marker}")
    assert p.returncode == 124
    assert time.monotonic() - t < 10
    time.sleep(0.5)
    assert not marker.exists()

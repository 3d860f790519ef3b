"""Profiles end to end (issue 5): each profile its own rules (rules.d/<name>.yaml
or `profiles: {NAME: {rules: FILE}}`), its own environment, limits and
session policy; staging credentials never reach a production command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

XG = xguard_exe()

MAIN = """\
default: require_approval
rules:
  - {pattern: "echo", action: allow, dynamic: allow}
  - {pattern: "env", action: allow}
  - {pattern: "kubectl get", action: allow}
env:
  keep: [PATH, HOME, LANG]
  set: {PAGER: cat}
profiles:
  staging:
    env:
      set: {KUBECONFIG: /etc/kube/staging, STAGING_ONLY: "1"}
  production:
    production: true
    env:
      keep: [PATH, HOME]
      set: {KUBECONFIG: /etc/kube/production}
    limits: {rate: {commands_per_minute: 2}}
    sessions: {required: true}
"""


@pytest.fixture
def home(xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(MAIN)
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


def env_of(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def start(profile: str) -> str:
    p = xg("session", "start", "--profile", profile, "--ttl", "5m")
    assert p.returncode == 0, p.stderr
    return p.stdout.split("XGUARD_SESSION=")[1].split()[0]


# ---------------------------------------------------------------------------
def test_staging_variables_never_reach_production(home: Path) -> None:
    agent = {"STAGING_TOKEN": "s3cret", "AWS_SECRET_ACCESS_KEY": "x", "LANG": "C.UTF-8"}
    staging = env_of(xg("-c", "env", env={**agent, "XGUARD_PROFILE": "staging"}).stdout)
    assert staging["KUBECONFIG"] == "/etc/kube/staging" and staging["STAGING_ONLY"] == "1"
    assert staging["PAGER"] == "cat" and staging["LANG"] == "C.UTF-8"
    sid = start("production")
    p = xg("-c", "env", env={**agent, "XGUARD_PROFILE": "production", "XGUARD_SESSION": sid})
    assert p.returncode == 0, p.stderr
    prod = env_of(p.stdout)
    assert prod["KUBECONFIG"] == "/etc/kube/production"
    assert (
        "STAGING_ONLY" not in prod
        and "STAGING_TOKEN" not in prod
        and "AWS_SECRET_ACCESS_KEY" not in prod
    )
    assert "LANG" not in prod  # production keeps its own, shorter list
    assert "KUBECONFIG" not in env_of(xg("-c", "env", env=agent).stdout)  # no profile: neither


def test_profile_limits_and_session_policy(home: Path) -> None:
    # production requires a session; staging does not.
    assert xg("-c", "echo s", env={"XGUARD_PROFILE": "staging"}).returncode == 0
    p = xg("-c", "echo p", env={"XGUARD_PROFILE": "production"})
    assert p.returncode == 77 and "sessions.required" in p.stderr
    sid = start("production")
    env = {"XGUARD_SESSION": sid}  # the session's profile is used
    assert xg("-c", "echo 1", env=env).returncode == 0
    assert xg("-c", "echo 2", env=env).returncode == 0
    p = xg("-c", "echo 3", env=env)
    assert p.returncode == 77 and "profiles.production.limits.rate.commands_per_minute" in p.stderr
    for _ in range(4):  # staging has no such cap
        assert xg("-c", "echo s", env={"XGUARD_PROFILE": "staging"}).returncode == 0
    recs = [r for r in audit(home) if r.get("session") == sid]
    assert recs and all(r["profile"] == "production" for r in recs)


def test_rules_d_files_select_each_profiles_rules(home: Path) -> None:
    d = home / "rules.d"
    d.mkdir()
    (d / "dev.yaml").write_text("default: allow\nrules:\n  - {pattern: 'rm', action: allow}\n")
    (d / "prod.yaml").write_text("default: deny\nrules:\n  - {pattern: 'echo', action: allow}\n")
    assert xg("check", "-c", "rm -f x", env={"XGUARD_PROFILE": "dev"}).returncode == 0
    assert xg("check", "-c", "rm -f x", env={"XGUARD_PROFILE": "prod"}).returncode == 2
    assert xg("check", "--profile", "prod", "-c", "echo hi").returncode == 0
    assert xg("check", "-c", "rm -f x").returncode == 1  # the main file's default
    p = xg("run", "--profile", "prod", "--", "rm", "-f", "x")
    assert p.returncode == 77
    assert audit(home)[-1]["profile"] == "prod"


def test_profiles_map_names_a_rules_file(home: Path) -> None:
    (home / "prod-rules.yaml").write_text(
        "default: deny\nrules:\n  - {pattern: 'kubectl get', action: allow}\n"
    )
    (home / "rules.yaml").write_text(
        MAIN.replace("  production:\n", "  production:\n    rules: prod-rules.yaml\n")
    )
    sid = start("production")
    env = {"XGUARD_SESSION": sid}
    assert xg("check", "--profile", "production", "-c", "kubectl get pods").returncode == 0
    assert (
        xg("check", "--profile", "production", "-c", "echo hi").returncode == 2
    )  # not in prod's file
    assert xg("check", "--profile", "staging", "-c", "echo hi").returncode == 0
    # The main file's settings still apply under the profile's rules: its env, its limits.
    (home / "prod-rules.yaml").write_text(
        "default: deny\nrules:\n  - {pattern: 'env', action: allow}\n"
    )
    prod = env_of(xg("-c", "env", env=env).stdout)
    assert prod["KUBECONFIG"] == "/etc/kube/production" and "STAGING_ONLY" not in prod
    assert xg("-c", "env", env=env).returncode == 0
    assert "commands_per_minute" in xg("-c", "env", env=env).stderr
    # Editing the profile's file takes effect at once (the rules cache watches it).
    (home / "prod-rules.yaml").write_text(
        "default: deny\nrules:\n  - {pattern: 'echo', action: allow}\n"
    )
    assert xg("check", "--profile", "production", "-c", "echo hi").returncode == 0
    (home / "prod-rules.yaml").write_text("default: [not valid\n")
    p = xg("check", "--profile", "production", "-c", "echo hi")
    assert p.returncode == 78 and "prod-rules.yaml" in p.stderr


def test_unknown_profile_is_a_config_error(home: Path) -> None:
    p = xg("-c", "echo hi", env={"XGUARD_PROFILE": "qa"})
    assert p.returncode == 78 and "unknown profile 'qa'" in p.stderr and p.stdout == ""
    last = audit(home)[-1]
    assert (last["event"], last["profile"]) == ("config_error", "qa")
    assert xg("session", "start", "--profile", "qa").returncode == 78
    assert xg("check", "--profile", "qa", "-c", "echo").returncode == 78

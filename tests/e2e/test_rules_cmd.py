"""`xguard rules lint|test|replay` and `xguard init`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import xguard_exe

OLD = """\
default: require_approval
rules:
  - {pattern: "true", action: allow}
  - {pattern: "echo", action: allow}
tests:
  - {command: "echo hi", expect: allow}
  - {command: "rm -rf /", expect: require_approval}
"""
NEW = """\
default: require_approval
rules:
  - {pattern: "true", action: allow}
  - {pattern: "ls", action: allow}
  - {pattern: "echo", action: deny}
"""


def xg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*xguard_exe(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, "XGUARD_WAIT": "0"},
    )


def test_lint_and_test(xguard_home: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(OLD)
    p = xg("rules", "lint", str(good))
    assert p.returncode == 0 and "ok (2 examples, 0 failed)" in p.stdout
    failing = tmp_path / "failing.yaml"
    failing.write_text(OLD.replace("expect: allow", "expect: deny"))
    p = xg("rules", "test", str(failing))
    assert p.returncode == 1 and "expected deny, got allow" in p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {pattern: ls, action: allow, dinamic: allow}\n")
    p = xg("rules", "lint", str(bad))
    assert p.returncode == 78 and f"{bad}:2: unknown key 'dinamic'" in p.stderr


def test_seed_rules_load_unchanged(shared: Path) -> None:
    p = xg("rules", "lint", str(shared / "fixtures" / "seed-rules.yaml"))
    assert p.returncode == 0, p.stderr


def test_builtin_defaults_pass_their_own_tests(xguard_home: Path) -> None:
    p = xg("rules", "lint")
    assert p.returncode == 0, p.stderr + p.stdout


def test_init_writes_defaults_once(xguard_home: Path) -> None:
    assert xg("init").returncode == 0
    f = xguard_home / "rules.yaml"
    assert f.read_text().startswith("#") and (f.stat().st_mode & 0o777) == 0o600
    f.write_text(OLD)
    p = xg("init")
    assert p.returncode == 1 and "exists" in p.stderr and f.read_text() == OLD
    assert xg("init", "--force").returncode == 0 and f.read_text() != OLD


def test_replay_shows_what_would_change(xguard_home: Path, tmp_path: Path) -> None:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(OLD)
    for cmd in ("true", "echo hi", "echo hi", "ls"):
        xg("-c", cmd, cwd=tmp_path)
    new = tmp_path / "new.yaml"
    new.write_text(NEW)
    p = xg("rules", "replay", "--rules", str(new), "--json")
    res = json.loads(p.stdout)
    assert res["decisions"] == 4 and res["distinct"] == 3
    assert res["transitions"] == {"allow -> deny": 2, "require_approval -> allow": 1}
    assert [(c["command"], c["from"], c["to"], c["times"]) for c in res["commands"]] == [
        ("echo hi", "allow", "deny", 2),
        ("ls", "require_approval", "allow", 1),
    ]
    assert xg("rules", "replay", "--rules", str(new), "--since", "yesterdayish").returncode == 64

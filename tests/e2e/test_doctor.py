"""`xguard doctor [--json]` (issue 7 item 5): what is in effect, what is unsafe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

RULES = "default: require_approval\nrules:\n  - {pattern: ls, action: allow}\n"


@pytest.fixture
def env(tmp_path: Path, xguard_home: Path) -> dict[str, str]:
    xguard_home.mkdir(mode=0o700)
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if not k.startswith(("XGUARD_", "CLAUDE"))}
    e.update(XGUARD_HOME=str(xguard_home), HOME=str(home), SHELL="/bin/bash")
    return e


def doctor(env: dict[str, str], cwd: Path | None = None) -> tuple[int, dict[str, Any]]:
    r = subprocess.run(
        [*xguard_exe(), "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_a_clean_setup(env: dict[str, str], xguard_home: Path, tmp_path: Path) -> None:
    (xguard_home / "rules.yaml").write_text(RULES)
    (xguard_home / "rules.yaml").chmod(0o600)
    code, d = doctor(env, tmp_path)
    assert code == 0 and d["ok"] is True and d["problems"] == []
    assert d["rules"]["file"] == str(xguard_home / "rules.yaml")
    assert d["rules"]["loads"] is True and d["rules"]["rules"] == 1
    assert d["paths"]["queue"] == str(xguard_home / "spool")
    assert d["paths"]["audit_log"] == str(xguard_home / "audit" / "audit.jsonl")
    assert d["reviewer"]["watching"] is False
    assert any("no reviewer" in w for w in d["warnings"])
    assert any("no agent integration" in w for w in d["warnings"])
    # The built-in secrets floor is listed with this HOME written out.
    home = env["HOME"]
    assert f"{home}/.cache/huggingface/token" in d["secrets_floor"]
    assert f"{home}/.ssh/id_*" in d["secrets_floor"]
    # The readable form says the same.
    r = subprocess.run(
        [*xguard_exe(), "doctor"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert (
        r.returncode == 0
        and "nothing unsafe" in r.stdout
        and str(xguard_home / "rules.yaml") in r.stdout
        and f"floor      {len(d['secrets_floor'])} credential files" in r.stdout
    )


def test_builtin_rules_and_profile(env: dict[str, str]) -> None:
    code, d = doctor({**env, "XGUARD_PROFILE": "nope"})
    assert d["rules"]["builtin"] is True and d["rules"]["profile"] == "nope"
    assert code == 1 and any("profile 'nope'" in p for p in d["problems"])


@pytest.mark.parametrize(
    ("target", "mode", "words"),
    [
        ("rules", 0o646, "world-writable"),
        ("rules", 0o664, "group-writable"),
        ("state", 0o770, "group-writable"),
        ("state", 0o707, "world-writable"),
    ],
)
def test_writable_by_others_is_unsafe(
    env: dict[str, str], tmp_path: Path, xguard_home: Path, target: str, mode: int, words: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    rules.chmod(0o600)
    path = rules if target == "rules" else xguard_home
    path.chmod(mode)
    try:
        code, d = doctor({**env, "XGUARD_RULES": str(rules)})
    finally:
        path.chmod(0o700 if target == "state" else 0o600)
    assert code == 1 and d["ok"] is False
    assert any(words in p and str(path) in p for p in d["problems"]), d["problems"]


def test_rules_that_do_not_load(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: sometimes\n")
    code, d = doctor({**env, "XGUARD_RULES": str(bad)})
    assert code == 1 and d["rules"]["loads"] is False and "bad.yaml:1" in d["rules"]["error"]


def test_unwritable_audit_log(env: dict[str, str], xguard_home: Path) -> None:
    (xguard_home / "audit").write_text("a file where the folder should be")
    code, d = doctor(env)
    assert code == 1 and any("audit" in p for p in d["problems"])


def test_no_room_for_the_audit_log(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from xguard.commands import doctor_cmd

    class Tiny:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda _p: Tiny())
    rep = doctor_cmd.diagnose(env)
    assert any("free for the audit log" in p for p in rep.problems)


def test_integrations_are_detected(env: dict[str, str], tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".claude").mkdir()
    (project / ".claude" / "settings.json").write_text(
        json.dumps(
            {
                "hooks": {
                    "PreToolUse": [
                        {
                            "matcher": "Bash",
                            "hooks": [
                                {
                                    "type": "command",
                                    "command": "xguard hook claude-code",
                                    "timeout": 900,
                                }
                            ],
                        }
                    ]
                }
            }
        )
    )
    home = Path(env["HOME"])
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(
        json.dumps(
            {
                "hooks": {
                    "PreToolUse": [
                        {
                            "matcher": "Edit|Write",
                            "hooks": [{"type": "command", "command": "xguard hook claude-code"}],
                        }
                    ]
                }
            }
        )
    )
    e = {
        **env,
        "SHELL": xguard_exe()[0],
        "CLAUDE_CODE_SHELL_PREFIX": "/usr/local/bin/xguard-prefix",
        "CLAUDE_CODE_SHELL": "/usr/local/bin/xguard",
    }
    _code, d = doctor(e, project)
    names = [i["name"] for i in d["integrations"]]
    assert "SHELL" in names
    assert "Claude Code CLAUDE_CODE_SHELL_PREFIX" in names
    assert "Claude Code CLAUDE_CODE_SHELL" in names
    hooks = [i for i in d["integrations"] if i["name"] == "Claude Code PreToolUse hook"]
    assert {h["file"] for h in hooks} == {
        str(project / ".claude" / "settings.json"),
        str(home / ".claude" / "settings.json"),
    }
    assert any("does not match Bash" in w for w in d["warnings"])
    assert any("must contain 'bash' or 'zsh'" in w for w in d["warnings"])


def test_a_reviewer_socket_that_accepts(env: dict[str, str], xguard_home: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(xguard_home / "xguard.sock"))
    s.listen(1)
    try:
        _, d = doctor(env)
    finally:
        s.close()
    assert d["reviewer"]["watching"] is True and d["reviewer"]["socket_accepts"] is True


def test_help_has_examples(env: dict[str, str]) -> None:
    r = subprocess.run(
        [*xguard_exe(), "doctor", "--help"], env=env, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and "Examples:" in r.stdout and "--json" in r.stdout


def test_doctor_says_which_box_works_here(env: dict[str, str], tmp_path: Path) -> None:
    """Issue 11: the mechanism in effect, and for each one that does not work, why."""
    _, d = doctor(env, tmp_path)
    c = d["confine"]
    assert c["setting"] == "auto"
    for name in ("bwrap", "landlock"):
        assert c[name]["works"] is (not c[name]["why_not"]), c
    best = "bwrap" if c["bwrap"]["works"] else "landlock" if c["landlock"]["works"] else "none"
    assert c["mechanism"] == best
    r = subprocess.run(
        [*xguard_exe(), "doctor"], env=env, capture_output=True, text=True, check=False
    )
    assert f"confine    {best}  [confine: auto]" in r.stdout


CODEX_HOOK = """
[[hooks.PreToolUse]]
matcher = "*"
[[hooks.PreToolUse.hooks]]
type = "command"
command = "{command}"
"""


@pytest.mark.parametrize(
    ("command", "state", "verdict"),
    [
        # installed, never trusted: Codex skips it without a word
        ("xguard hook codex", "", "not trusted"),
        # trusted: fine
        ("xguard hook codex", '[hooks.state."user:0:0"]\ntrusted_hash = "abc"\n', None),
        # Claude Code's hook answers ask, which Codex runs
        (
            "xguard hook claude-code",
            '[hooks.state."user:0:0"]\ntrusted_hash = "abc"\n',
            'treats an "ask" answer',
        ),
    ],
)
def test_codex_hooks(env: dict[str, str], command: str, state: str, verdict: str | None) -> None:
    d = Path(env["HOME"]) / ".codex"
    d.mkdir()
    (d / "config.toml").write_text(CODEX_HOOK.format(command=command) + state)
    code, rep = doctor(env)
    assert [i["command"] for i in rep["integrations"] if i["name"] == "Codex PreToolUse hook"] == [
        command
    ]
    if verdict is None:
        assert code == 0 and rep["problems"] == []
    else:
        assert code == 1 and any(verdict in p for p in rep["problems"]), rep["problems"]


@pytest.mark.parametrize(
    ("login_is_xguard", "hook", "warned"),
    [(True, "", True), (False, "", False), (True, "codex", False)],
)
def test_codex_model_chosen_shell(
    env: dict[str, str], login_is_xguard: bool, hook: str, warned: bool
) -> None:
    """A login shell that is xguard does not hold under Codex (the model picks
    the shell), unless a trusted `xguard hook codex` is there too. (The login
    shell comes from passwd, which a test cannot change: the check is called
    directly.)"""
    from xguard.commands import doctor_runtimes

    d = Path(env["HOME"]) / ".codex"
    d.mkdir()
    text = 'model = "x"\n'
    if hook:
        text += CODEX_HOOK.format(command="xguard hook codex")
        text += '[hooks.state."user:0:0"]\ntrusted_hash = "abc"\n'
    (d / "config.toml").write_text(text)
    said: list[str] = []
    doctor_runtimes.codex(
        Path(env["HOME"]), env, login_is_xguard, warn=said.append, problem=said.append
    )
    assert any("lets the model pick the shell" in w for w in said) is warned


def test_gemini_hooks(env: dict[str, str], tmp_path: Path) -> None:
    d = Path(env["HOME"]) / ".gemini"
    d.mkdir()
    (d / "settings.json").write_text(
        json.dumps(
            {
                "hooks": {
                    "BeforeTool": [
                        {
                            "matcher": "run_shell_command",
                            "hooks": [
                                {
                                    "type": "command",
                                    "command": "xguard hook gemini --require-approval wait",
                                }
                            ],
                        },
                        {
                            "matcher": ".*",
                            "hooks": [{"type": "command", "command": "xguard hook claude-code"}],
                        },
                    ]
                }
            }
        )
    )
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "bash").symlink_to(xguard_exe()[0])
    e = {**env, "PATH": f"{shim}:{Path(xguard_exe()[0]).parent}:{env['PATH']}"}
    code, rep = doctor(e)
    hooks = [i["command"] for i in rep["integrations"] if i["name"] == "Gemini CLI BeforeTool hook"]
    assert hooks == ["xguard hook gemini --require-approval wait", "xguard hook claude-code"]
    assert "PATH shim `bash` (Gemini CLI)" in [i["name"] for i in rep["integrations"]]
    assert code == 1 and any("Gemini reads" in p for p in rep["problems"])
    assert any("60 s by default" in w for w in rep["warnings"])

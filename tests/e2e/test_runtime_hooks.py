"""`xguard hook codex` and `xguard hook gemini`: their protocols, case by case.

The inputs are the shapes the real programs send (captured from Codex CLI
0.171.0 and Gemini CLI 0.61.0; tests/runtimes/ drives the programs
themselves). Codex must never get "ask" (it runs the command); anything
malformed must block with exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

CWD = "/srv/project"  # the runtime's cwd in the hook input; it need not exist
RULES = """\
default: require_approval
rules:
  - {pattern: "ls", action: allow, dynamic: allow}
  - {pattern: "cat", action: allow}
  - {pattern: "printenv", action: deny, reason: "prints secrets"}
  - {path: "/**", action: allow}
  - {path: "~/.ssh/**", action: deny}
"""


@pytest.fixture
def env(tmp_path: Path, xguard_home: Path) -> dict[str, str]:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "home").mkdir()
    e = dict(os.environ)
    e.update(
        XGUARD_RULES=str(tmp_path / "rules.yaml"), HOME=str(tmp_path / "home"), XGUARD_WAIT="0"
    )
    return e


def hook(env: dict[str, str], runtime: str, payload: Any, *args: str) -> tuple[int, Any, str]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    r = subprocess.run(
        [*xguard_exe(), "hook", runtime, *args],
        input=data,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    out = r.stdout.decode().strip()
    return r.returncode, json.loads(out) if out else None, r.stderr.decode()


def audit(home: Path) -> list[dict[str, Any]]:
    f = home / "audit" / "audit.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


# ---------------------------------------------------------------------------
def codex_call(command: str, tool: str = "Bash", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "session_id": "01a24a13-670f-7012-ae54-2e7fb358c22b",
        "turn_id": "01a24a13-672f-7e71-8eaa-5d704907d89a",
        "transcript_path": "/nonexistent/rollout.jsonl",
        "cwd": CWD,
        "hook_event_name": "PreToolUse",
        "model": "gpt-5",
        "permission_mode": "bypassPermissions",
        "tool_name": tool,
        "tool_input": {"command": command},
        "tool_use_id": "call_0001",
    }
    d.update(extra)
    return d


def codex_answer(parsed: Any) -> str:
    assert set(parsed) == {"hookSpecificOutput"}
    h = parsed["hookSpecificOutput"]
    assert h["hookEventName"] == "PreToolUse" and h["permissionDecisionReason"]
    return str(h["permissionDecision"])


PATCH = "*** Begin Patch\n*** Update File: {}\n@@\n-a\n+b\n*** End Patch\n"


@pytest.mark.parametrize(
    ("payload", "args", "answer"),
    [
        (codex_call("ls -la"), [], "allow"),
        (codex_call("printenv"), [], "deny"),
        (codex_call("cat ~/.ssh/id_rsa"), [], "deny"),
        # require_approval: wait (default) ran out (XGUARD_WAIT=0): deny, never ask
        (codex_call("rm -rf build"), [], "deny"),
        (codex_call("rm -rf build"), ["--require-approval", "deny"], "deny"),
        (codex_call(PATCH.format("~/.ssh/authorized_keys"), tool="apply_patch"), [], "deny"),
        (codex_call(PATCH.format("src/main.py"), tool="apply_patch"), [], None),
        # Codex strips a hunk header before reading it: padding hides nothing.
        (
            codex_call(PATCH.format("~/.ssh/x").replace("\n***", "\n \t***"), tool="apply_patch"),
            [],
            "deny",
        ),
        (
            codex_call(
                PATCH.format("src/ok.py") + "*** Add File: ~/.ssh/authorized_keys\n+k\n",
                tool="apply_patch",
            ),
            [],
            "deny",
        ),
        # The patch inside a list (local_shell's argv) or an object.
        (
            {
                **codex_call("", tool="apply_patch"),
                "tool_input": {"command": ["apply_patch", PATCH.format("~/.ssh/x")]},
            },
            [],
            "deny",
        ),
        (
            {
                **codex_call("", tool="apply_patch"),
                "tool_input": {"input": {"patch": PATCH.format("~/.ssh/x")}},
            },
            [],
            "deny",
        ),
        (
            codex_call(
                PATCH.format("a.py\n*** Move to: ~/.ssh/x"),
                tool="apply_patch",
            ),
            [],
            "deny",
        ),
        (codex_call("x", tool="web_search"), [], None),
    ],
)
def test_codex_hook(env: dict[str, str], payload: Any, args: list[str], answer: str | None) -> None:
    code, parsed, err = hook(env, "codex", payload, *args)
    assert code == 0, err
    assert (codex_answer(parsed) if parsed is not None else None) == answer


def test_codex_never_answers_ask(env: dict[str, str], tmp_path: Path, xguard_home: Path) -> None:
    # Not as an option …
    code, parsed, err = hook(env, "codex", codex_call("rm -rf build"), "--require-approval", "ask")
    assert code == 2 and codex_answer(parsed) == "deny"
    # … nor from the config.
    (tmp_path / "rules.yaml").write_text(RULES + "hook: {codex: {require_approval: ask}}\n")
    code, parsed, err = hook(env, "codex", codex_call("rm -rf build"))
    assert code == 2 and codex_answer(parsed) == "deny"
    assert "require_approval" in err
    # The wait ran out: the request is queued for a reviewer and the record says so.
    (tmp_path / "rules.yaml").write_text(RULES)
    code, parsed, _ = hook(env, "codex", codex_call("rm -rf build"))
    assert codex_answer(parsed) == "deny"
    pend = [r for r in audit(xguard_home) if r["event"] == "pending"]
    assert [(r["command"], r["source"]) for r in pend] == [("rm -rf build", "hook:codex")]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        json.dumps(codex_call("ls", hook_event_name="PostToolUse")).encode(),
        json.dumps({**codex_call("ls"), "tool_input": {"command": 5}}).encode(),
        json.dumps({**codex_call("ls"), "cwd": "relative"}).encode(),
        # An apply_patch in which xguard finds no file is not let through undecided.
        json.dumps(codex_call("*** Begin Patch\n*** End Patch\n", tool="apply_patch")).encode(),
        json.dumps({**codex_call("", tool="apply_patch"), "tool_input": {"patch": 5}}).encode(),
        json.dumps({**codex_call("", tool="apply_patch"), "tool_input": {}}).encode(),
    ],
)
def test_codex_malformed_blocks(env: dict[str, str], payload: bytes) -> None:
    code, parsed, err = hook(env, "codex", payload)
    assert code == 2 and codex_answer(parsed) == "deny" and err.startswith("xguard: ")


# ---------------------------------------------------------------------------
def gemini_call(tool: str = "run_shell_command", **tool_input: Any) -> dict[str, Any]:
    return {
        "session_id": "87400846-bc0d-448b-9946-a4df91382c6e",
        "transcript_path": "/nonexistent/chat.json",
        "cwd": CWD,
        "hook_event_name": "BeforeTool",
        "timestamp": "2026-12-06T06:35:40.181Z",
        "tool_name": tool,
        "tool_input": tool_input,
    }


@pytest.mark.parametrize(
    ("payload", "args", "answer"),
    [
        (gemini_call(command="ls -la", description="list"), [], "allow"),
        (gemini_call(command="printenv"), [], "deny"),
        # require_approval: wait (default) ran out (XGUARD_WAIT=0)
        (gemini_call(command="rm -rf build"), [], "deny"),
        (gemini_call(command="rm -rf build"), ["--require-approval", "ask"], "ask"),
        (gemini_call(command="rm -rf build"), ["--require-approval", "deny"], "deny"),
        (gemini_call(command="rm -rf build"), ["--require-approval", "wait"], "deny"),
        (gemini_call("read_file", file_path="~/.ssh/id_rsa"), [], "deny"),
        (gemini_call("write_file", file_path="notes.txt", content="x"), [], None),
        (gemini_call("google_web_search", query="x"), [], None),
        # The names older releases use, and the tools that read many files or search.
        (gemini_call("read_file", absolute_path="~/.ssh/id_rsa"), [], "deny"),
        (gemini_call("read_many_files", paths=["src/a.py", "~/.ssh/id_rsa"]), [], "deny"),
        (gemini_call("read_many_files", paths=["~/.ssh"]), [], "deny"),
        (gemini_call("read_many_files", paths=["src/a.py"]), [], None),
        (gemini_call("search_file_content", pattern=".", dir_path="~/.ssh"), [], "deny"),
        (gemini_call("grep_search", pattern=".", path="~/.ssh/id_rsa"), [], "deny"),
        (gemini_call("glob", pattern="*", dir_path="~/.ssh"), [], "deny"),
        (gemini_call("glob", pattern="**/*.py"), [], None),
    ],
)
def test_gemini_hook(
    env: dict[str, str], payload: Any, args: list[str], answer: str | None
) -> None:
    code, parsed, err = hook(env, "gemini", payload, *args)
    assert code == 0, err
    if answer is None:
        assert parsed is None
        return
    assert set(parsed) == {"decision", "reason"} and parsed["reason"]
    assert parsed["decision"] == answer


def test_gemini_dir_path_is_the_commands_cwd(env: dict[str, str], xguard_home: Path) -> None:
    _, parsed, _ = hook(env, "gemini", gemini_call(command="ls", dir_path="sub/dir"))
    assert parsed["decision"] == "allow"
    [rec] = [r for r in audit(xguard_home) if r["event"] == "decision"]
    assert (rec["cwd"], rec["source"]) == (f"{CWD}/sub/dir", "hook:gemini")


@pytest.mark.parametrize(
    "payload",
    [
        b"{}",
        json.dumps({**gemini_call(command="ls"), "hook_event_name": "AfterTool"}).encode(),
        json.dumps(gemini_call(command="")).encode(),
        # A file tool whose path xguard cannot find is not let through undecided.
        json.dumps(gemini_call("read_file")).encode(),
        json.dumps(gemini_call("read_file", file_path=["~/.ssh/id_rsa", 5])).encode(),
        json.dumps(gemini_call("read_many_files", paths=[])).encode(),
    ],
)
def test_gemini_malformed_blocks(env: dict[str, str], payload: bytes) -> None:
    code, parsed, err = hook(env, "gemini", payload)
    assert code == 2 and parsed["decision"] == "deny" and err.startswith("xguard: ")

"""The one pipeline (issue 10), end to end through the installed program, and
in process through its two injection points (how to ask, how to run).

Each defect found while folding the four copies of the flow into one has a
row here that failed before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe
from xguard.gate.execenv import ExecResult
from xguard.gate.pipeline import Asked, run_request
from xguard.gate.request import Gate, Request

RULES = """\
default: require_approval
rules:
  - {pattern: "true", action: allow}
  - {pattern: "exit", action: allow}
  - {pattern: "cat", action: allow}
  - {path: "~/.ssh/**", action: deny, reason: "private keys"}
  - {pattern: "printenv", action: deny, reason: "prints secrets"}
"""


@pytest.fixture
def home(xguard_home: Path) -> Path:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(RULES)
    return xguard_home


def xg(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XGUARD_WAIT": "0", **kw.pop("env", {})}
    return subprocess.run(
        [*xguard_exe(), *args], env=env, capture_output=True, text=True, check=False, **kw
    )


def audit(home: Path) -> list[dict[str, Any]]:
    f = home / "audit" / "audit.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


# -- the unit that decided is the one named ----------------------------------
@pytest.mark.parametrize(
    ("command", "named", "not_first"),
    [
        ("touch x; cat ~/.ssh/id_rsa", "/.ssh/id_rsa", "touch x"),
        ("touch y && printenv", "printenv", "touch y"),
        ("cat ~/.ssh/id_rsa; touch z", "/.ssh/id_rsa", "touch z"),
    ],
)
def test_the_deny_message_and_record_name_the_strictest_unit(
    home: Path, command: str, named: str, not_first: str
) -> None:
    p = xg("-c", command)
    assert p.returncode == 77
    why = p.stderr.split(" — ", 1)[1]
    assert named in why.split(":", 1)[0] or named in why.split(";")[0], p.stderr
    assert not why.startswith(not_first), p.stderr
    rec = [r for r in audit(home) if r["event"] == "decision"][-1]
    assert rec["decision"] == "deny" and named in rec["reason"]


# -- a command that did not run never reports success -------------------------
@pytest.mark.parametrize(
    ("command", "code"),
    [("cat ~/.ssh/id_rsa", 77), ("touch nothing-here", 75), ("printenv", 77)],
)
def test_a_vanished_stderr_reader_does_not_turn_a_refusal_into_success(
    home: Path, tmp_path: Path, command: str, code: int
) -> None:
    r, w = os.pipe()
    os.close(r)  # the reader has gone: every write to stderr fails with EPIPE
    try:
        p = subprocess.run(
            [*xguard_exe(), "-c", command],
            env={**os.environ, "XGUARD_WAIT": "0"},
            stdout=subprocess.DEVNULL,
            stderr=w,
            cwd=tmp_path,
            check=False,
        )
    finally:
        os.close(w)
    assert p.returncode == code
    assert not (tmp_path / "nothing-here").exists()


def test_a_caller_that_ignores_sigchld_still_gets_the_commands_status(home: Path) -> None:
    # The disposition survives exec; with it the kernel would reap the child
    # and its status would be lost.
    p = subprocess.run(
        [*xguard_exe(), "-c", "exit 3"],
        env={**os.environ, "XGUARD_WAIT": "0"},
        preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN),
        capture_output=True,
        check=False,
    )
    assert p.returncode == 3
    assert audit(home)[-1]["exit_code"] == 3


# -- the injection points ----------------------------------------------------
class _Runs:
    """An executor that records what it was given and ends as told."""

    def __init__(self, result: ExecResult) -> None:
        self.result = result
        self.ran: list[str] = []

    def prepare(self, gate: Any, req: Any, decision: Any, record: dict[str, Any]) -> None:
        record["confined"] = "none"

    def run(self, gate: Any, req: Any, decision: Any, record: dict[str, Any]) -> ExecResult:
        self.ran.append(req.text)
        return self.result


def _never_asked(*_: Any) -> Asked:
    raise AssertionError("an allowed or denied command never asks")


def test_an_unknown_exit_status_is_recorded_as_unknown_and_never_success(home: Path) -> None:
    gate = Gate()
    ex = _Runs(ExecResult(None, 5, {"note": "the command's exit status could not be read"}))
    out = run_request(Request(text="true"), gate, ask=_never_asked, execute=ex)
    assert ex.ran == ["true"]
    assert out.exit_code == 70 and out.ran
    dec, ext = audit(home)[-2:]
    assert dec["event"] == "decision" and dec["confined"] == "none"
    assert ext["event"] == "exit" and ext["exit_code"] is None and ext["note"]


@pytest.mark.parametrize(
    ("asked", "code", "answer", "ran"),
    [
        (Asked(True, reviewer="alice", request_id="r1"), 0, "allow", True),
        (Asked(False, 77, message="xguard: denied by bob"), 77, "deny", False),
        (Asked(False, 75), 75, "pending", False),
        (Asked(False, 130), 130, "deny", False),
    ],
)
def test_what_asking_says_is_what_happens(
    home: Path, asked: Asked, code: int, answer: str, ran: bool
) -> None:
    ex = _Runs(ExecResult(0, 1))
    out = run_request(Request(text="touch f"), Gate(), ask=lambda *_: asked, execute=ex)
    assert (out.exit_code, out.answer, out.ran) == (code, answer, ran)
    assert ex.ran == (["touch f"] if ran else [])
    events = [r["event"] for r in audit(home)]
    assert ("exit" in events) == ran
    if ran:
        dec = [r for r in audit(home) if r["event"] == "decision"][-1]
        assert dec["reviewer"] == "alice" and dec["id"] == "r1"


def test_a_deny_never_reaches_asking_or_running(home: Path) -> None:
    ex = _Runs(ExecResult(0, 1))
    out = run_request(Request(text="printenv"), Gate(), ask=_never_asked, execute=ex)
    assert out.exit_code == 77 and out.answer == "deny" and ex.ran == []
    assert out.message is not None and "printenv: prints secrets" in out.message


def test_a_hook_runs_nothing_and_records_its_answer(home: Path) -> None:
    out = run_request(
        Request(text="touch f"), Gate(), ask=lambda *_: Asked(False, answer="ask"), execute=None
    )
    assert out.answer == "ask" and not out.ran
    assert audit(home)[-1]["hook_answer"] == "ask"


# -- strict mode: verbs that would decide locally fail closed ------------------
@pytest.mark.parametrize(
    "args",
    [
        ["check", "--rules", "{rules}", "-c", "true"],
        ["check", "--batch", "-"],
    ],
)
def test_check_that_would_decide_locally_fails_closed_in_strict_mode(
    home: Path, args: list[str]
) -> None:
    args = [a.replace("{rules}", str(home / "rules.yaml")) for a in args]
    p = xg(*args, env={"XGUARD_BROKER": str(home / "broker.sock")}, input='{"command": "true"}\n')
    assert p.returncode == 78, p.stderr
    assert "strict mode" in p.stderr and p.stdout == ""


# -- check --batch: one bad line, one error object ---------------------------
def test_a_batch_line_that_cannot_be_read_or_written_back_gets_its_own_error(
    home: Path,
) -> None:
    deep = '{"command": "true", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [
        '{"command": "true", "n": 1}',
        deep,
        '{"command": "cat \\ud800", "n": 3}',
        "not json",
        '{"command": "printenv", "n": 5}',
    ]
    p = xg("check", "--batch", "-", input="\n".join(lines) + "\n")
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 1
    assert len(out) == 5
    assert out[0]["decision"] == "allow" and out[0]["n"] == 1
    assert out[1] == {"line": 2, "error": out[1]["error"]} and "error" in out[1]
    assert out[2]["n"] == 3 and out[2]["command"] == "cat \ud800" and "decision" in out[2]
    assert out[3]["line"] == 4 and "error" in out[3]
    assert out[4]["decision"] == "deny" and out[4]["n"] == 5

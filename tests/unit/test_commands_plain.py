"""Command functions take plain values and return an exit code (issue 10):
called here without click, as a test or another program would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xguard.commands import approval_cmd, rules_cmd

GOOD = """\
default: require_approval
rules:
  - {pattern: ls, action: allow}
tests:
  - {command: "ls -la", expect: allow}
  - {command: "rm -rf /", expect: require_approval}
"""
WRONG_EXAMPLE = GOOD.replace("expect: require_approval", "expect: allow")
BROKEN = "default: allow\nrules:\n  - {pattern: ls, action: maybe}\n"


@pytest.mark.parametrize(
    ("text", "code", "ok"),
    [(GOOD, 0, True), (WRONG_EXAMPLE, 1, False), (BROKEN, 78, False)],
    ids=["good", "failing-example", "broken"],
)
def test_rules_lint_and_test_as_plain_functions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, code: int, ok: bool
) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    assert rules_cmd.lint(str(f), as_json=True) == code
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is ok and out["file"] == str(f)
    assert rules_cmd.test(str(f), as_json=False) == code


def test_deciding_an_unknown_request_as_a_plain_function(
    xguard_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XGUARD_GATED", raising=False)
    xguard_home.mkdir(parents=True, exist_ok=True)
    code = approval_cmd.deny("zzzzzz", reason="no")
    assert code == 1, capsys.readouterr()
    assert "zzzzzz" in capsys.readouterr().err

"""`check --batch`: one bad line never ends the batch.

A line nested too deeply for the JSON reader, one that is not a JSON object,
or one whose fields JSON cannot write back (a number out of range) is
answered with `{"line": N, "error": …}` in its place. A command (or field)
that is not valid Unicode, or bytes that are not UTF-8, in the file or on
stdin, is decided (never allowed) and written back with JSON escapes. Every
other line is still decided, in order.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import xguard_exe

RULES = "default: require_approval\nrules:\n  - {pattern: echo, action: allow}\n"

DEEP = '{"command": "ls", "x": ' + "[" * 5000 + "]" * 5000 + "}"
# (line, "error" for an error object or the decision it must not be, exit status)
BAD_LINES = [
    pytest.param(DEEP.encode(), "error", id="nested-5000-deep"),
    pytest.param(b'{"command": "echo", "n": 1e999999}', "error", id="huge-number"),
    pytest.param(b"[1, 2]", "error", id="not-an-object"),
    pytest.param(b'{"command": "echo \\ud800"}', "allow", id="lone-surrogate-in-command"),
    pytest.param(b'{"command": "echo \xff\xfe"}', "allow", id="not-utf8"),
]


@pytest.mark.parametrize("source", ["file", "stdin"])
@pytest.mark.parametrize(("bad", "answer"), BAD_LINES)
def test_one_bad_line_one_answer(
    bad: bytes, answer: str, source: str, xguard_home: Path, tmp_path: Path
) -> None:
    xguard_home.mkdir(parents=True, exist_ok=True)
    (xguard_home / "rules.yaml").write_text(RULES)
    data = b'{"command": "echo a", "id": 1}\n' + bad + b'\n{"command": "rm x", "id": 3}\n'
    f = tmp_path / "in.jsonl"
    f.write_bytes(data)
    p = subprocess.run(
        [*xguard_exe(), "check", "--batch", str(f) if source == "file" else "-"],
        input=data if source == "stdin" else None,
        capture_output=True,
        env={**os.environ},
        timeout=60,
        check=False,
    )
    assert p.stderr == b"", p.stderr
    p.stdout.decode("utf-8")  # the output is UTF-8 text
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert len(out) == 3, p.stdout[:500]
    assert (out[0]["id"], out[0]["decision"]) == (1, "allow")
    assert (out[2]["id"], out[2]["decision"]) == (3, "require_approval")
    if answer == "error":
        assert out[1]["line"] == 2 and out[1]["error"], out[1]
        assert "decision" not in out[1]
        assert p.returncode == 1
    else:
        assert out[1]["decision"] != answer, out[1]
        assert out[1]["command"].startswith("echo ")
        assert p.returncode == 0


def test_batch_answers_equal_fresh_decisions(xguard_home: Path, tmp_path: Path) -> None:
    """What the batch remembers between lines (parses, rule matches, file
    facts) never changes an answer: every line, repeated, is answered as a
    fresh in-process decision under the built-in defaults answers it."""
    from tests.conftest import CORPUS
    from xguard.gate.request import Gate

    commands = []
    for name in ("evasion.jsonl", "benign.jsonl"):
        p = CORPUS / name
        if p.exists():
            commands += [json.loads(x)["command"] for x in p.read_text().splitlines() if x.strip()]
    if not commands:
        pytest.skip("shared/corpus is not beside this checkout")
    (tmp_path / "README.md").write_text("x")
    lines = [{"command": c, "cwd": str(tmp_path)} for c in commands] * 2
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    p = subprocess.run(
        [*xguard_exe(), "check", "--batch", str(f)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert len(out) == len(lines)
    gate = Gate(environ={**os.environ, "XGUARD_HOME": str(xguard_home)})
    for line, got in zip(lines, out, strict=True):
        want = gate.decide_text(line["command"], line["cwd"]).to_json()
        assert {k: got[k] for k in want} == want, line["command"]

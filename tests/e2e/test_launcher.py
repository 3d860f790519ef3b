"""The installed launcher ends a hot-path verb without tearing the interpreter
down (xguard/__main__.py `launch`): what it printed must still all arrive, and
its status must be the verb's own, through pipes and files alike."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import xguard_exe

# Python's own buffering, as an agent's environment has it: with
# PYTHONUNBUFFERED set nothing would be left in a buffer to lose.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

BATCH = ["ls -la", "rm -rf /", "git status", "cat ~/.ssh/id_rsa"] * 500


def test_batch_output_arrives_whole_through_a_pipe() -> None:
    p = subprocess.run(
        [*xguard_exe(), "check", "--batch", "-"],
        input="\n".join(BATCH) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=ENV,
    )
    lines = p.stdout.splitlines()
    assert len(lines) == len(BATCH), p.stderr
    assert lines[-1].startswith("{") and lines[-1].endswith("}")


def test_output_arrives_whole_into_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("wb") as f:
        p = subprocess.run(
            [*xguard_exe(), "check", "--batch", "-"],
            input=("\n".join(BATCH) + "\n").encode(),
            stdout=f,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
            env=ENV,
        )
    assert len(out.read_text().splitlines()) == len(BATCH), p.stderr


@pytest.mark.parametrize(
    ("args", "code", "stdout"),
    [
        (["-c", "echo out; exit 3"], 3, "out\n"),
        (["-c", "printf 'no newline'"], 0, "no newline"),
        (["-c", "cat ~/.ssh/id_rsa"], 77, ""),
        (["run", "--", "sh", "-c", "echo r; exit 5"], 5, "r\n"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_status_and_output_are_the_verbs_own(args: list[str], code: int, stdout: str) -> None:
    p = subprocess.run(
        [*xguard_exe(), *args], capture_output=True, text=True, timeout=60, check=False, env=ENV
    )
    assert (p.returncode, p.stdout) == (code, stdout), p.stderr


@pytest.mark.parametrize("verb", ["run", "check", "hook"])
def test_help_written_by_the_hot_path_arrives(verb: str) -> None:
    p = subprocess.run(
        [*xguard_exe(), verb, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ENV,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: xguard {verb}"), p.stdout
    assert p.stdout.endswith("\n")

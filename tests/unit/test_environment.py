"""The one object that knows the terminal (xguard/environment.py): each
terminal branch is reached by pinning a fact, without a pty."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from xguard.approval.wait import Channel
from xguard.environment import Environment


@pytest.mark.parametrize(
    ("stdin", "stderr", "prompts"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_a_prompt_only_for_a_person_at_a_terminal(stdin: bool, stderr: bool, prompts: bool) -> None:
    env = Environment(stdin_isatty=stdin, stderr_isatty=stderr)
    assert env.at_terminal is prompts
    if not prompts:
        # No terminal: the channel never even opens /dev/tty.
        assert Channel(env).prompt(gate=None, ticket=None) is None  # type: ignore[arg-type]


def test_facts_are_read_from_the_streams_when_not_pinned() -> None:
    env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO())
    assert (env.stdin_isatty, env.stdout_isatty, env.stderr_isatty) == (False, False, False)
    closed = io.StringIO()
    closed.close()
    assert Environment(stdin=closed).stdin_isatty is False


_CHILD = """
import os, signal, sys, threading
from xguard.gate.execenv import run_child
# SIGINT to this process alone, once the command runs (run_child's handlers are set).
threading.Timer(0.7, os.kill, (os.getpid(), signal.SIGINT)).start()
out = run_child("/bin/sleep", ["sleep", "2"], {}, interactive=sys.argv[1] == "1")
print(out.exit_code, flush=True)
"""


@pytest.mark.parametrize(("interactive", "code"), [(False, 130), (True, 0)])
def test_sigint_is_passed_on_off_a_terminal_and_left_to_the_terminal_on_one(
    interactive: bool, code: int
) -> None:
    # On a terminal Ctrl-C reaches the whole foreground group, the command
    # included; xguard itself waits. Off one, a SIGINT sent to xguard alone
    # is passed on. Pinned here, no pty needed.
    p = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "1" if interactive else "0"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, _ = p.communicate(timeout=30)
    assert out.split() == [str(code)]

"""`xguard review` and the terminal prompt on a real terminal: tmux runs them,
send-keys types, capture-pane reads the screen (issue 3 items 3 and 4)."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import xguard_exe

XG = xguard_exe()
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

RULES = """\
default: require_approval
rules:
  - {pattern: "touch", action: require_approval, reason: "creates files"}
profiles:
  production: {production: true}
"""
COLOUR = re.compile(r"\x1b\[[0-9;]*?(?:3[0-7]|38;[0-9;]+|4[0-7]|48;[0-9;]+)m")


class Tmux:
    """A private tmux server; each window is one terminal."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str) -> str:
        p = subprocess.run(
            ["tmux", "-L", self.name, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert p.returncode == 0, p.stderr
        return p.stdout

    def start(
        self,
        target: str,
        argv: list[str],
        width: int = 80,
        height: int = 24,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = " ".join(
            f"{k}={shlex.quote(v)}" for k, v in {**self.env, **(extra_env or {})}.items()
        )
        # The pane stays after the program ends, showing its exit status.
        line = f"env {env} {shlex.join(argv)}; echo EXIT=$?; sleep 600"
        self(
            "new-session",
            "-d",
            "-s",
            target,
            "-c",
            str(self.cwd),
            "-x",
            str(width),
            "-y",
            str(height),
            line,
        )

    def screen(self, target: str, escapes: bool = False, join: bool = True) -> str:
        """The visible screen; join=True rejoins lines the terminal wrapped."""
        return self(
            "capture-pane",
            "-p",
            *(["-e"] if escapes else []),
            *(["-J"] if join else []),
            "-t",
            target,
        )

    def wait(
        self, target: str, pred: Callable[[str], bool], timeout: float = 10, join: bool = True
    ) -> str:
        end = time.monotonic() + timeout
        s = ""
        while time.monotonic() < end:
            s = self.screen(target, join=join)
            if pred(s):
                return s
            time.sleep(0.05)
        raise AssertionError(f"screen never matched:\n{s}")

    def keys(self, target: str, *keys: str, literal: bool = False) -> None:
        self("send-keys", "-t", target, *(["-l"] if literal else []), *keys)


@pytest.fixture
def env(tmp_path: Path, xguard_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    monkeypatch.setenv("XGUARD_RULES", str(rules))
    return {
        "XGUARD_HOME": str(xguard_home),
        "XGUARD_RULES": str(rules),
        "TERM": "xterm-256color",
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }


@pytest.fixture
def tmux(env: dict[str, str], tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(f"xgtest-{os.getpid()}-{time.monotonic_ns()}", env, tmp_path)
    yield t
    subprocess.run(["tmux", "-L", t.name, "kill-server"], capture_output=True, check=False)


class Waiter:
    """A background agent-side `xguard run` waiting for approval."""

    def __init__(
        self, tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.marker = tmp_path / name
        self.proc = subprocess.Popen(
            [*XG, "run", *args, "--", "touch", str(self.marker)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        err = b""
        assert self.proc.stderr is not None
        while b"waiting for approval" not in err or not err.endswith(b"\n"):
            r, _, _ = select.select([self.proc.stderr], [], [], 15)
            assert r, err
            chunk = os.read(self.proc.stderr.fileno(), 4096)
            assert chunk, err
            err += chunk
        self.seen = time.monotonic()
        self.id = err.decode().split("waiting for approval ")[1].split()[0]

    def finish(self) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, err.decode()


def rerun(tmp_path: Path, marker: Path) -> int:
    return subprocess.run(
        [*XG, "run", "--wait", "0", "--", "touch", str(marker)],
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def pending_ids() -> list[str]:
    p = subprocess.run(
        [*XG, "pending", "--json"], capture_output=True, text=True, timeout=30, check=True
    )
    return [r["id"] for r in json.loads(p.stdout)]


# ---------------------------------------------------------------------------
def test_approve_and_deny_from_the_keyboard(tmux: Tmux, tmp_path: Path) -> None:
    first = Waiter(tmp_path, "first")
    second = Waiter(tmp_path, "second")
    tmux.start("rev", [*XG, "review"])
    s = tmux.wait("rev", lambda s: first.id in s and second.id in s)
    # Oldest first, the cursor on it, and its detail pane shows cwd and rule.
    assert s.index(first.id) < s.index(second.id)
    assert re.search(rf"cwd +{re.escape(str(tmp_path))} ", s)
    assert "rules.yaml:3" in s and "creates files" in s
    tmux.keys("rev", "a")
    code, err = first.finish()
    assert code == 0, err
    assert first.marker.exists()
    tmux.wait("rev", lambda s: first.id not in s.split("\n", 1)[1] or f"approved {first.id}" in s)
    tmux.keys("rev", "d")
    tmux.wait("rev", lambda s: f"Deny {second.id}, reason:" in s)
    tmux.keys("rev", "not on a Friday", literal=True)
    tmux.keys("rev", "Enter")
    code, err = second.finish()
    assert code == 77 and "not on a Friday" in err
    s = tmux.wait("rev", lambda s: "No pending requests" in s)
    tmux.keys("rev", "q")
    tmux.wait("rev", lambda s: "EXIT=0" in s)


def test_move_details_and_approve_for_a_while(tmux: Tmux, tmp_path: Path) -> None:
    a = Waiter(tmp_path, "a")
    b = Waiter(tmp_path, "b")
    tmux.start("rev", [*XG, "review"])
    tmux.wait("rev", lambda s: a.id in s and b.id in s)
    tmux.keys("rev", "j")
    tmux.wait("rev", lambda s: f"> {b.id}" in s.replace("│ >  ", "> ").replace(">  ", "> "))
    tmux.keys("rev", "Enter")
    s = tmux.wait("rev", lambda s: re.search(rf"request +{b.id}", s) is not None)
    assert "source run" in s and str(tmp_path) in s
    tmux.keys("rev", "Escape")
    tmux.wait("rev", lambda s: re.search(rf"request +{b.id}", s) is None)
    tmux.keys("rev", "k", "Down")  # up to a, down to b again
    tmux.keys("rev", "A")
    tmux.wait("rev", lambda s: f"Approve {b.id} for how long? [15m]" in s)
    tmux.keys("rev", "Enter")
    assert b.finish()[0] == 0
    tmux.wait("rev", lambda s: f"approved {b.id} for 15m" in s)
    assert (
        rerun(tmp_path, b.marker) == 0 and rerun(tmp_path, b.marker) == 0
    )  # no asking for 15 minutes
    assert pending_ids() == [a.id]
    tmux.keys("rev", "q")
    tmux.wait("rev", lambda s: "EXIT=0" in s)
    assert pending_ids() == [a.id]  # a reviewer that quits leaves requests pending


def test_several_reviewers_first_decision_wins(tmux: Tmux, tmp_path: Path) -> None:
    w = Waiter(tmp_path, "m")
    tmux.start("one", [*XG, "review"])
    tmux.start("two", [*XG, "review"])
    for t in ("one", "two"):
        tmux.wait(t, lambda s: w.id in s)
    tmux.keys("one", "a")
    assert w.finish()[0] == 0
    s = tmux.wait("two", lambda s: f"{w.id} approved by" in s)
    assert "No pending requests" in s
    tmux.keys("two", "q")
    tmux.keys("one", "q")


def test_new_request_shows_within_a_second_and_rings(tmux: Tmux, tmp_path: Path) -> None:
    tmux.start("rev", [*XG, "review"])
    tmux.wait("rev", lambda s: "No pending requests" in s)
    assert tmux("display", "-p", "-t", "rev", "#{window_bell_flag}").strip() == "0"
    w = Waiter(tmp_path, "m")
    tmux.wait("rev", lambda s: w.id in s, timeout=5)
    assert time.monotonic() - w.seen < 1.0
    assert tmux("display", "-p", "-t", "rev", "#{window_bell_flag}").strip() == "1"
    w.proc.terminate()
    w.finish()


def test_production_is_unmistakable_and_asks_again(tmux: Tmux, tmp_path: Path) -> None:
    w = Waiter(tmp_path, "m", "--profile", "production")
    tmux.start("rev", [*XG, "review"], extra_env={"NO_COLOR": "1"})
    s = tmux.wait("rev", lambda s: w.id in s)
    assert "‼ PRODUCTION ‼" in s and "PRODUCTION" in s.split("\n")[0]
    assert "╔" in s or "═" in s  # a double-lined pane, visible without colour
    tmux.keys("rev", "a")
    tmux.wait("rev", lambda s: f"Approve {w.id} on PRODUCTION once? [y/N]" in s)
    tmux.keys("rev", "n")
    tmux.wait("rev", lambda s: "not approved" in s)
    assert pending_ids() == [w.id]
    tmux.keys("rev", "a")
    tmux.wait("rev", lambda s: "on PRODUCTION once?" in s)
    tmux.keys("rev", "y")
    assert w.finish()[0] == 0


def test_no_color_means_no_colour(tmux: Tmux, tmp_path: Path) -> None:
    w = Waiter(tmp_path, "m", "--profile", "production")
    tmux.start("plain", [*XG, "review"], extra_env={"NO_COLOR": "1"})
    tmux.start("colour", [*XG, "review"])
    for t in ("plain", "colour"):
        tmux.wait(t, lambda s: w.id in s)
    assert COLOUR.search(tmux.screen("colour", escapes=True))
    assert not COLOUR.search(tmux.screen("plain", escapes=True))
    w.proc.terminate()
    w.finish()


def test_fits_80x24_and_survives_resizes(tmux: Tmux, tmp_path: Path) -> None:
    waiters = [Waiter(tmp_path, f"m{i:02d}") for i in range(14)]
    # COLUMNS/LINES (pytest exports them) must not pin the size.
    tmux.start("rev", [*XG, "review"], extra_env={"COLUMNS": "80", "LINES": "24"})
    s = tmux.wait("rev", lambda s: waiters[0].id in s, join=False)
    lines = s.split("\n")
    assert max(len(x) for x in lines) <= 80
    assert "q quit" in s and s.startswith("xguard review · 14 pending")
    assert "more, scroll with j/k" in s
    # Scrolling keeps the cursor on screen down to the newest request.
    tmux.keys("rev", "G")
    tmux.wait("rev", lambda s: waiters[-1].id in s and waiters[0].id not in s)
    for w, h in ((120, 40), (60, 16), (80, 24)):
        tmux("resize-window", "-t", "rev", "-x", str(w), "-y", str(h))
        # Redrawn for the new size: the panes' right edges sit in the last column.
        s = tmux.wait(
            "rev",
            lambda s, w=w, h=h: (
                "q quit" in s
                and s.split("\n")[0].startswith("xguard review")
                and s.split("\n")[1].endswith("╮")
                and len(s.split("\n")[1]) == w
                and s.rstrip("\n").count("\n") + 1 in (h - 1, h)
            ),
            join=False,
        )
        assert waiters[-1].id in s
    tmux.keys("rev", "q")
    tmux.wait("rev", lambda s: "EXIT=0" in s)
    for w in waiters:
        w.proc.terminate()
        w.finish()


def test_escapes_in_commands_are_shown_not_obeyed(tmux: Tmux, tmp_path: Path) -> None:
    evil = "touch x; echo '\x1b[2J\x1b[31mPWNED [bold]markup[/bold]'"
    proc = subprocess.Popen(
        [*XG, "-c", evil], cwd=tmp_path, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    tmux.start("rev", [*XG, "review"])
    s = tmux.wait("rev", lambda s: "PWNED" in s)
    assert "\\x1b[2J\\x1b[31mPWNED [bold]markup[/bold]" in s
    assert s.startswith("xguard review")  # the screen was not cleared by the command text
    proc.terminate()
    proc.wait()


def test_reviewer_killed_leaves_requests_pending(tmux: Tmux, tmp_path: Path) -> None:
    w = Waiter(tmp_path, "m", "--wait", "30")
    tmux.start("rev", [*XG, "review"])
    tmux.wait("rev", lambda s: w.id in s)
    pid = int(tmux("display", "-p", "-t", "rev", "#{pane_pid}").strip())
    kids = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    for k in kids:
        os.kill(int(k), 9)
    tmux.wait("rev", lambda s: "EXIT=137" in s)
    assert pending_ids() == [w.id]
    w.proc.terminate()
    assert w.finish()[0] == 143


def test_review_needs_a_terminal(env: dict[str, str]) -> None:
    p = subprocess.run(
        [*XG, "review"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert p.returncode == 64 and "needs a terminal" in p.stderr


# ---------------------------------------------------------------------------
# The sudo-like prompt when a person runs xguard at a terminal.


def test_prompt_at_the_terminal(tmux: Tmux, tmp_path: Path) -> None:
    marker = tmp_path / "made"
    tmux.start("sh", [*XG, "-c", f"touch {marker} && echo ran-it"], height=50)
    s = tmux.wait("sh", lambda s: "Run it? [y/N/d]" in s)
    assert "this command needs approval" in s and f"touch {marker}" in s and "creates files" in s
    [rid] = pending_ids()  # it shows in `xguard review` too
    tmux.keys("sh", "d", "Enter")
    s = tmux.wait("sh", lambda s: s.count("Run it? [y/N/d]") == 2)
    assert re.search(rf"cwd +{re.escape(str(tmp_path))}\n", s) and "rules.yaml:3" in s, s
    tmux.keys("sh", "y", "Enter")
    s = tmux.wait("sh", lambda s: "EXIT=" in s)
    assert "ran-it" in s and "EXIT=0" in s and marker.exists()
    assert rid not in pending_ids()


def test_prompt_no_denies(tmux: Tmux, tmp_path: Path) -> None:
    tmux.start("sh", [*XG, "-c", f"touch {tmp_path / 'made'}"])
    tmux.wait("sh", lambda s: "[y/N/d]" in s)
    tmux.keys("sh", "Enter")  # the default is No
    s = tmux.wait("sh", lambda s: "EXIT=" in s)
    assert "EXIT=77" in s and "denied at the terminal" in s


def test_prompt_races_the_reviewer(tmux: Tmux, tmp_path: Path) -> None:
    tmux.start("sh", [*XG, "-c", "touch made && echo ran-it"], extra_env={})
    tmux.wait("sh", lambda s: "[y/N/d]" in s)
    [rid] = pending_ids()
    subprocess.run([*XG, "approve", rid], check=True, capture_output=True, timeout=30)
    s = tmux.wait("sh", lambda s: "EXIT=" in s)
    assert f"{rid} approved by" in s and "ran-it" in s and "EXIT=0" in s


def test_prompt_off_in_config(tmux: Tmux, tmp_path: Path, env: dict[str, str]) -> None:
    Path(env["XGUARD_RULES"]).write_text(RULES + "prompt: false\n")
    tmux.start("sh", [*XG, "-c", "touch made"], extra_env={"XGUARD_WAIT": "1"})
    s = tmux.wait("sh", lambda s: "EXIT=" in s)
    assert "EXIT=75" in s and "[y/N/d]" not in s


def test_reset_a_tripped_session_from_the_keyboard(
    tmux: Tmux, tmp_path: Path, env: dict[str, str]
) -> None:
    rules = Path(env["XGUARD_RULES"])
    # `kill -0 $$` is allowed and, not being a read, counts toward the loop breaker.
    rules.write_text(
        "default: require_approval\nrules:\n  - {pattern: 'kill -0', action: allow, dynamic: allow}\n"
        "limits: {loop: {same_rule: 1, same_command: 1, window: 1m, trip_at: 2}}\n"
    )
    run_env = {**os.environ, **env, "XGUARD_WAIT": "0"}
    out = subprocess.run(
        [*XG, "session", "start"], env=run_env, capture_output=True, text=True, check=True
    )
    sid = out.stdout.split("XGUARD_SESSION=")[1].split()[0]
    run_env["XGUARD_SESSION"] = sid
    codes = [
        subprocess.run(
            [*XG, "-c", "kill -0 $$"], env=run_env, capture_output=True, check=False
        ).returncode
        for _ in range(4)
    ]
    assert codes[-1] == 77  # tripped: nothing but reads runs
    tmux.start("r", [*XG, "review"])
    tmux.wait("r", lambda s: "TRIPPED" in s)
    tmux.keys("r", "R")
    tmux.wait("r", lambda s: f"Reset tripped session {sid}" in s)
    tmux.keys("r", "y")
    tmux.wait("r", lambda s: f"session {sid} reset by" in s and "TRIPPED" not in s)
    tmux.keys("r", "q")
    p = subprocess.run(
        [*XG, "-c", "kill -0 $$"], env=run_env, capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stderr


def test_review_says_where_an_approved_commands_output_is(tmux: Tmux, tmp_path: Path) -> None:
    """Issue 14: once a command it approved has ended, the reviewer sees how,
    and the command that shows what it printed."""
    agent = subprocess.Popen(
        [*XG, "run", "--", "sh", "-c", "echo printed"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert agent.stderr is not None
    rid = agent.stderr.readline().decode().split("waiting for approval ")[1].split()[0]
    tmux.start("rev", [*XG, "review"], width=120)
    tmux.wait("rev", lambda s: rid in s)
    tmux.keys("rev", "a")
    out, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0 and out == b"printed\n"
    said = f"{rid} ran: exit 0 · output 8 bytes: xguard audit show {rid}"
    tmux.wait("rev", lambda s: said in s)
    tmux.keys("rev", "q")

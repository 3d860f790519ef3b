"""Claude Code (the real program, pinned in harness.VERSIONS) through xguard.

Three ways in, each driven with the same four steps (harness.SCRIPT):
the PreToolUse hook (`xguard hook claude-code --require-approval wait`),
CLAUDE_CODE_SHELL=<symlink named xguard-bash>, and
CLAUDE_CODE_SHELL_PREFIX=xguard-prefix.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import xguard_exe, xguard_tool
from tests.runtimes import harness
from tests.runtimes.fakemodel import FakeModel

pytestmark = pytest.mark.slow
PACKAGE = "@anthropic-ai/claude-code"


def claude(world: harness.World) -> list[str]:
    world.env.update(
        ANTHROPIC_BASE_URL=world.model.url,
        ANTHROPIC_API_KEY="sk-fake-key-for-tests",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
    )
    return [
        str(harness.CLAUDE_BIN),
        "-p",
        "Run the steps.",
        "--allowedTools",
        "Bash Read",
        "--output-format",
        "stream-json",
        "--verbose",
    ]


def setup_hook(world: harness.World) -> None:
    hook = f"{xguard_exe()[0]} hook claude-code --require-approval wait"
    settings = {
        "hooks": {"PreToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": hook}]}]}
    }
    (world.home / ".claude").mkdir()
    (world.home / ".claude" / "settings.json").write_text(json.dumps(settings))


def setup_shell(world: harness.World) -> None:
    # Claude Code takes a shell only when its path holds "bash" or "zsh".
    world.env["CLAUDE_CODE_SHELL"] = str(world.link("xguard-bash", xguard_exe()[0]))


def setup_prefix(world: harness.World) -> None:
    world.env["CLAUDE_CODE_SHELL_PREFIX"] = xguard_tool("xguard-prefix")


PATHS = {"hook": setup_hook, "shell": setup_shell, "prefix": setup_prefix}


@pytest.mark.parametrize("path", list(PATHS))
def test_claude_code(path: str, tmp_path: Path, xguard_home: Path) -> None:
    harness.installed(harness.CLAUDE_BIN, PACKAGE)
    assert harness.version_of(PACKAGE) == harness.VERSIONS[PACKAGE]
    with FakeModel(harness.SCRIPT) as model:
        world = harness.World(tmp_path, xguard_home, model)
        argv = claude(world)
        PATHS[path](world)
        t0 = time.monotonic()
        r = harness.run(world, argv)
        elapsed = time.monotonic() - t0
        results = model.tool_results_anthropic()
    harness.check_run(world, results, r)
    source = "hook:claude-code" if path == "hook" else "shell:claude-code"
    allowed = [x for x in harness.decisions(world, harness.ALLOWED) if x["event"] == "decision"]
    assert allowed[0]["source"] == source
    if path == "shell":
        # Start-up steps (the `-c env` probe, the snapshot script) were answered
        # without a request, each with a record of its own, and did not hold up
        # the first command (Claude Code waits up to 10 s for its snapshot).
        steps = {x["rules"][0] for x in world.audit() if x.get("source") == "startup:claude-code"}
        assert steps == {"startup:env-probe", "startup:snapshot"}, world.audit()
        assert elapsed < 25, elapsed  # four steps and one approval wait (4 s) that runs out
    if path != "hook":
        # The snapshot was never sourced: no gated command names it.
        gated = [x for x in world.audit() if str(x.get("source")).startswith("shell:")]
        assert gated and not [x for x in gated if "shell-snapshots" in str(x["command"])]


@pytest.mark.parametrize(("path", "gated"), [("hook", True), ("shell", False), ("prefix", False)])
def test_claude_code_read_tool(path: str, gated: bool, tmp_path: Path, xguard_home: Path) -> None:
    """Claude Code's Read tool reaches files without a shell: the hook denies a
    file a path rule denies; with only a shell path the key reaches the model."""
    harness.installed(harness.CLAUDE_BIN, PACKAGE)
    with FakeModel([]) as model:
        world = harness.World(tmp_path, xguard_home, model)
        model.commands = [{"tool": "Read", "input": {"file_path": str(world.project_key)}}]
        argv = claude(world)
        PATHS[path](world)
        harness.run(world, argv)
        received = model.received()
        results = model.tool_results_anthropic()
    assert len(results) == 1, results
    assert (harness.SECRET in received) is not gated
    denied = [x for x in world.audit() if x.get("tool") == "Read" and x["decision"] == "deny"]
    assert len(denied) == (1 if gated else 0)

"""Gemini CLI (the real program, pinned in harness.VERSIONS) through xguard.

Two ways in, each driven with the same four steps (harness.SCRIPT): the
BeforeTool hook (`xguard hook gemini`), and a folder first on PATH holding
`bash` -> xguard (Gemini spawns the bare name `bash`; $SHELL is ignored).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import xguard_exe
from tests.runtimes import harness
from tests.runtimes.fakemodel import FakeModel

pytestmark = pytest.mark.slow
PACKAGE = "@google/gemini-cli"
HOOK_TIMEOUT_S = 120


def settings(world: harness.World, hooks: dict[str, object] | None = None) -> list[str]:
    s: dict[str, object] = {
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }
    if hooks:
        s["hooks"] = hooks
    d = world.home / ".gemini"
    d.mkdir(exist_ok=True)
    (d / "settings.json").write_text(json.dumps(s))
    world.env.update(
        GOOGLE_GEMINI_BASE_URL=world.model.url,
        GEMINI_API_KEY="fake-key",
        GEMINI_CLI_TRUST_WORKSPACE="true",
    )
    return [
        harness.which_node(),
        str(harness.GEMINI_JS),
        "-p",
        "Run the steps.",
        "--approval-mode",
        "yolo",
        "--output-format",
        "json",
    ]


def hook_settings() -> dict[str, object]:
    cmd = f"{xguard_exe()[0]} hook gemini --require-approval wait --timeout {HOOK_TIMEOUT_S}"
    return {
        "BeforeTool": [
            {
                "matcher": ".*",
                "hooks": [{"type": "command", "command": cmd, "timeout": HOOK_TIMEOUT_S * 1000}],
            }
        ]
    }


@pytest.mark.parametrize("path", ["hook", "path-shim"])
def test_gemini(path: str, tmp_path: Path, xguard_home: Path) -> None:
    harness.installed(harness.GEMINI_JS, PACKAGE)
    assert harness.version_of(PACKAGE) == harness.VERSIONS[PACKAGE]
    with FakeModel(harness.SCRIPT) as model:
        world = harness.World(tmp_path, xguard_home, model)
        if path == "hook":
            argv = settings(world, hook_settings())
        else:
            argv = settings(world)
            world.link("bash", xguard_exe()[0])
            world.env["PATH"] = f"{world.bin}:{world.env['PATH']}"
        r = harness.run(world, argv)
        results = model.tool_results_gemini()
    harness.check_run(world, results, r)
    source = "hook:gemini" if path == "hook" else "shell:gemini"
    allowed = [x for x in harness.decisions(world, harness.ALLOWED) if x["event"] == "decision"]
    assert allowed[0]["source"] == source


@pytest.mark.parametrize(("path", "gated"), [("hook", True), ("path-shim", False)])
def test_gemini_read_file(path: str, gated: bool, tmp_path: Path, xguard_home: Path) -> None:
    """Gemini CLI's read_file reaches files without a shell: the hook denies a
    file a path rule denies; with only the PATH shim the key reaches the model."""
    harness.installed(harness.GEMINI_JS, PACKAGE)
    with FakeModel([]) as model:
        world = harness.World(tmp_path, xguard_home, model)
        model.commands = [{"tool": "read_file", "input": {"file_path": str(world.project_key)}}]
        if path == "hook":
            argv = settings(world, hook_settings())
        else:
            argv = settings(world)
            world.link("bash", xguard_exe()[0])
            world.env["PATH"] = f"{world.bin}:{world.env['PATH']}"
        harness.run(world, argv)
        received = model.received()
        results = model.tool_results_gemini()
    assert len(results) == 1, results
    assert (harness.SECRET in received) is not gated
    denied = [x for x in world.audit() if x.get("tool") == "read_file" and x["decision"] == "deny"]
    assert len(denied) == (1 if gated else 0)


def test_gemini_ask_in_a_headless_run(tmp_path: Path, xguard_home: Path) -> None:
    """`ask` hands the question to Gemini CLI; a headless `-p` run has no one to
    answer it and waits for ever (which is why `xguard hook gemini` defaults to
    `wait`). The command never runs."""
    harness.installed(harness.GEMINI_JS, PACKAGE)
    cmd = f"{xguard_exe()[0]} hook gemini --require-approval ask"
    hooks = {"BeforeTool": [{"matcher": ".*", "hooks": [{"type": "command", "command": cmd}]}]}
    with FakeModel([harness.APPROVED]) as model:
        world = harness.World(tmp_path, xguard_home, model)
        argv = settings(world, hooks)
        with pytest.raises(subprocess.TimeoutExpired):
            harness.run(world, argv, timeout=25)
    assert not (world.work / "approved-dir").exists()
    [rec] = [x for x in harness.decisions(world, harness.APPROVED) if x["event"] == "decision"]
    assert rec["hook_answer"] == "ask" and world.pending() == []


def test_dollar_shell_is_not_consulted(tmp_path: Path, xguard_home: Path) -> None:
    """Gemini CLI spawns the bare name `bash` from PATH: SHELL=xguard gates nothing."""
    harness.installed(harness.GEMINI_JS, PACKAGE)
    with FakeModel([harness.DENIED]) as model:
        world = harness.World(tmp_path, xguard_home, model)
        argv = settings(world)
        world.env["SHELL"] = str(world.link("bash", xguard_exe()[0]))
        harness.run(world, argv)
        received = model.received()
    assert harness.SECRET in received
    assert world.audit() == []

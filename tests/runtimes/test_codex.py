"""Codex CLI (the real program, pinned in harness.VERSIONS) through xguard.

Two ways in, each driven with the same four steps (harness.SCRIPT):
the PreToolUse hook (`xguard hook codex`), and the login shell. Codex takes
its shell from the passwd entry (getpwuid), not $SHELL, so the login-shell
test runs Codex in a mount namespace of its own where /etc/passwd names a
file called `bash` that is xguard (root, or unprivileged user namespaces,
are needed for that; the test is skipped with the reason otherwise).

Also shown: the model may pick the shell (`exec_command`'s `shell`
argument), which goes around the login shell but not the hook; and a hook
Codex was never told to trust does not run at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import xguard_exe
from tests.runtimes import harness
from tests.runtimes.fakemodel import FakeModel

pytestmark = pytest.mark.slow
PACKAGE = "@openai/codex"


def config(world: harness.World, extra: str = "") -> None:
    """A provider on the fake model, and every feature that reaches another host off."""
    d = world.home / ".codex"
    d.mkdir(exist_ok=True)
    (d / "config.toml").write_text(
        f"""
model = "fake-model"
model_provider = "fake"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.fake]
name = "fake"
base_url = "{world.model.url}/v1"
wire_api = "responses"
env_key = "FAKE_MODEL_KEY"
request_max_retries = 0
stream_max_retries = 0

[features]
plugins = false
remote_plugin = false
apps = false

[analytics]
enabled = false
{extra}"""
    )
    world.env.update(CODEX_HOME=str(d), FAKE_MODEL_KEY="fake-key")


HOOK = """
[[hooks.PreToolUse]]
matcher = "*"
[[hooks.PreToolUse.hooks]]
type = "command"
command = "{exe} hook codex --require-approval wait"
"""


def codex(*extra: str) -> list[str]:
    return [
        str(harness.CODEX_BIN),
        "exec",
        "--skip-git-repo-check",
        "--json",
        *extra,
        "Run the steps.",
    ]


def with_login_shell(world: harness.World, argv: list[str]) -> list[str]:
    """argv run where this user's passwd entry names xguard (as `bash`) as the login shell."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    shell = world.link("bash", xguard_exe()[0])
    uid = os.getuid()
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        f = line.split(":")
        if len(f) == 7 and f[2] == "0":  # root here, or root inside --map-root-user
            f[6] = str(shell)
        lines.append(":".join(f))
    passwd = world.tmp / "passwd"
    passwd.write_text("\n".join(lines) + "\n")
    ns = [unshare, "--mount"] if uid == 0 else [unshare, "--mount", "--map-root-user"]
    probe = subprocess.run([*ns, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.strip()}")
    script = 'mount --bind "$0" /etc/passwd && exec "$@"'
    return [*ns, "/bin/sh", "-c", script, str(passwd), *argv]


@pytest.mark.parametrize("path", ["hook", "login-shell"])
def test_codex(path: str, tmp_path: Path, xguard_home: Path) -> None:
    harness.installed(harness.CODEX_BIN, PACKAGE)
    assert harness.version_of(PACKAGE) == harness.VERSIONS[PACKAGE]
    with FakeModel(harness.SCRIPT) as model:
        world = harness.World(tmp_path, xguard_home, model)
        if path == "hook":
            config(world, HOOK.format(exe=xguard_exe()[0]))
            # Trust is recorded by Codex's terminal UI; a test has none, so it
            # passes the flag automation uses (test_untrusted_hook_is_skipped).
            argv = codex("--dangerously-bypass-hook-trust")
        else:
            config(world)
            argv = with_login_shell(world, codex())
        r = harness.run(world, argv)
        results = model.tool_results_openai()
    harness.check_run(world, results, r)
    source = "hook:codex" if path == "hook" else "shell"
    allowed = [x for x in harness.decisions(world, harness.ALLOWED) if x["event"] == "decision"]
    assert allowed[0]["source"] == source
    if path == "login-shell":
        # Codex's snapshot script went to the login shell at start-up: it was
        # answered without a request, and the snapshot was never sourced.
        steps = {x["rules"][0] for x in world.audit() if x.get("source") == "startup:codex"}
        assert steps == {"startup:snapshot"}, world.audit()


@pytest.mark.parametrize(("path", "gated"), [("hook", True), ("login-shell", False)])
def test_codex_model_chosen_shell(
    path: str, gated: bool, tmp_path: Path, xguard_home: Path
) -> None:
    """`exec_command` takes a `shell` from the model: `/bin/sh` goes around the
    login shell (the key's text reaches the model), never around the hook."""
    harness.installed(harness.CODEX_BIN, PACKAGE)
    with FakeModel([{"command": harness.DENIED, "shell": "/bin/sh"}]) as model:
        world = harness.World(tmp_path, xguard_home, model)
        if path == "hook":
            config(world, HOOK.format(exe=xguard_exe()[0]))
            argv = codex("--dangerously-bypass-hook-trust")
        else:
            config(world)
            argv = with_login_shell(world, codex())
        harness.run(world, argv)
        received = model.received()
        results = model.tool_results_openai()
    assert len(results) == 1, results
    assert (harness.SECRET in received) is not gated
    denies = [x for x in harness.decisions(world, harness.DENIED) if x["event"] == "decision"]
    assert [x["decision"] for x in denies] == (["deny"] if gated else [])


def test_untrusted_hook_is_skipped(tmp_path: Path, xguard_home: Path) -> None:
    """A hook Codex was never told to trust does not run: `codex exec` goes on
    without it (xguard doctor warns about this)."""
    harness.installed(harness.CODEX_BIN, PACKAGE)
    with FakeModel([harness.DENIED]) as model:
        world = harness.World(tmp_path, xguard_home, model)
        config(world, HOOK.format(exe=xguard_exe()[0]))
        harness.run(world, codex())
        received = model.received()
    assert harness.SECRET in received
    assert harness.decisions(world, harness.DENIED) == []


def test_dollar_shell_is_not_consulted(tmp_path: Path, xguard_home: Path) -> None:
    """Codex takes the login shell from passwd: SHELL=xguard gates nothing."""
    harness.installed(harness.CODEX_BIN, PACKAGE)
    with FakeModel([harness.DENIED]) as model:
        world = harness.World(tmp_path, xguard_home, model)
        config(world)
        world.env["SHELL"] = str(world.link("bash", xguard_exe()[0]))
        harness.run(world, codex())
        received = model.received()
    assert harness.SECRET in received
    assert world.audit() == []

"""Driving the real agent runtimes through xguard, with a scripted model.

The runtimes are the npm packages `.ci/run` installs, at the versions pinned
here, into `.ci/node` (`npm install --prefix .ci/node --ignore-scripts`); the
tests are skipped with the reason when they are not there. Every run gets a
HOME of its own, a fake model on 127.0.0.1, and proxy variables that send any
other host to that same server, which refuses and records the attempt: a test
asserts there were none.

One run of a runtime plays the same four steps (SCRIPT), one tool call each,
and `check_run` asserts what really happened: the audit records, the marker
files, the pending queue, and what the model was sent back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe
from tests.runtimes.fakemodel import FakeModel

ROOT = Path(__file__).resolve().parents[2]
NODE_PREFIX = Path(os.environ.get("XGUARD_TEST_NODE_PREFIX", ROOT / ".ci" / "node"))
MODULES = NODE_PREFIX / "node_modules"
# exactly what .ci/run installs: package -> version, from .ci/runtimes.txt
VERSIONS = dict(
    line.strip().rsplit("@", 1)
    for line in (ROOT / ".ci" / "runtimes.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
CLAUDE_BIN = MODULES / "@anthropic-ai" / "claude-code-linux-x64" / "claude"
CODEX_BIN = (
    MODULES
    / "@openai"
    / "codex-linux-x64"
    / "vendor"
    / "x86_64-unknown-linux-musl"
    / "bin"
    / "codex"
)
GEMINI_JS = MODULES / "@google" / "gemini-cli" / "bundle" / "gemini.js"

SECRET = "XGUARD-DUMMY-KEY-7f3c9a-never-reaches-the-model"  # noqa: S105 - a dummy
WAIT = "4s"  # how long a command waits for approval: the approver answers well within it

# The four steps: allowed, denied key read, approved from another process,
# left to time out. A step's marker says what the model sent.
ALLOWED = "touch allowed-marker && echo allowed-ran"
DENIED = "cat ~/.ssh/id_rsa"
APPROVED = "mkdir approved-dir"
TIMEOUT = "mkdir timeout-dir"
SCRIPT = [ALLOWED, DENIED, APPROVED, TIMEOUT]

RULES = """\
default: require_approval
rules:
  - {pattern: "touch", action: allow}
  - {pattern: "echo", action: allow, dynamic: allow}
  - {pattern: "cat", action: allow}
  - {pattern: "ls", action: allow, dynamic: allow}
  - {pattern: "xguard hook", action: allow}
  - {path: "/**", action: allow}
  - {path: "~/.ssh/**", action: deny, reason: "private keys"}
  - {path: "~/project/secrets/**", action: deny, reason: "project secrets"}
"""


def installed(path: Path, package: str) -> None:
    if not path.exists():
        # .ci/run installs them: in CI a missing runtime is a failure, not a skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"{package}@{VERSIONS[package]} is not installed under {NODE_PREFIX} "
            "(.ci/run installs it with npm)"
        )


def version_of(package: str) -> str:
    data = json.loads((MODULES / package / "package.json").read_text())
    return str(data["version"])


class World:
    """One runtime run's folders, environment and fake model."""

    def __init__(self, tmp_path: Path, xguard_home: Path, model: FakeModel) -> None:
        self.tmp = tmp_path
        self.xguard_home = xguard_home
        self.model = model
        self.home = tmp_path / "home"
        self.work = self.home / "project"
        self.work.mkdir(parents=True)
        (self.home / ".ssh").mkdir()
        (self.home / ".ssh" / "id_rsa").write_text(f"-----BEGIN KEY-----\n{SECRET}\n")
        # A key inside the project too: the runtimes' file tools only reach the workspace.
        self.project_key = self.work / "secrets" / "deploy_key"
        self.project_key.parent.mkdir()
        self.project_key.write_text(f"{SECRET}\n")
        self.rules = tmp_path / "rules.yaml"
        self.rules.write_text(RULES)
        self.approver: Approver | None = None  # the reviewer of the last run
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        keep = ("LANG", "TERM", "TZ", "USER", "LOGNAME")
        self.env = {k: v for k, v in os.environ.items() if k in keep}
        self.env.update(
            HOME=str(self.home),
            PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            XGUARD_HOME=str(xguard_home),
            XGUARD_RULES=str(self.rules),
            XGUARD_WAIT=WAIT,
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
            TMPDIR="/tmp",
            **model.proxy_env(),
        )

    def link(self, name: str, target: str) -> Path:
        p = self.bin / name
        p.symlink_to(target)
        return p

    # -- xguard as the reviewer sees it ---------------------------------------
    def xg(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "XGUARD_HOME": str(self.xguard_home)}
        return subprocess.run(
            [*xguard_exe(), *args], env=env, capture_output=True, text=True, timeout=30, check=False
        )

    def pending(self) -> list[dict[str, Any]]:
        r = self.xg("pending", "--json")
        assert r.returncode == 0, r.stderr
        return list(json.loads(r.stdout))

    def audit(self) -> list[dict[str, Any]]:
        f = self.xguard_home / "audit" / "audit.jsonl"
        text = f.read_text() if f.exists() else ""
        # Read while xguard appends (the Approver's thread): the piece after the
        # last newline is a line still being written, read next time.
        return [json.loads(x) for x in text.split("\n")[:-1] if x]


class Approver(threading.Thread):
    """A reviewer in another process: approves the request for APPROVED as soon
    as it is pending, and only that one (TIMEOUT is left to time out). It
    learns of requests from the audit log's `pending` records (a file read,
    so that polling costs the runtime under test no CPU), and approves with
    `xguard approve`."""

    def __init__(self, world: World) -> None:
        super().__init__(daemon=True)
        self.world = world
        self.stop = threading.Event()
        self.approved: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []  # every request a reviewer was shown

    def run(self) -> None:
        while not self.stop.is_set():
            for r in self.world.audit():
                if r["event"] != "pending" or r["id"] in {x["id"] for x in self.seen}:
                    continue
                self.seen.append(r)
                if r["command"] == APPROVED:
                    out = self.world.xg("approve", r["id"], "--note", "conformance test")
                    assert out.returncode == 0, out.stderr
                    self.approved.append(r)
            self.stop.wait(0.1)


def run(world: World, argv: list[str], timeout: float = 150) -> subprocess.CompletedProcess[str]:
    approver = Approver(world)
    approver.start()
    try:
        r = subprocess.run(
            argv,
            env=world.env,
            cwd=world.work,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        approver.stop.set()
        approver.join(5)
    world.approver = approver
    return r


def decisions(world: World, command: str) -> list[dict[str, Any]]:
    return [r for r in world.audit() if r.get("command") == command]


def check_run(world: World, results: list[str], r: subprocess.CompletedProcess[str]) -> None:
    """What must hold after the four steps, whatever the path."""
    why = f"runtime exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert world.model.escapes == [], world.model.escapes
    assert len(results) == len(SCRIPT), (results, why)
    # 1. allowed: ran at once, no request, the model saw its output
    assert (world.work / "allowed-marker").exists(), why
    assert "allowed-ran" in results[0], results
    assert [x["decision"] for x in decisions(world, ALLOWED) if x["event"] == "decision"] == [
        "allow"
    ], world.audit()
    # 2. denied: the key's text never reached the model, through any request
    assert SECRET not in world.model.received()
    assert [x["decision"] for x in decisions(world, DENIED) if x["event"] == "decision"] == ["deny"]
    # 3. approved from another process: the reviewer saw the model's command
    # (not a wrapper), and it ran once approved
    approver = world.approver
    assert approver is not None
    assert [a["command"] for a in approver.approved] == [APPROVED], approver.seen
    assert (world.work / "approved-dir").is_dir(), why
    events = [x["event"] for x in decisions(world, APPROVED)]
    assert "pending" in events and "approved" in events, events
    # 4. left to time out: did not run, still queued, the model was told
    assert not (world.work / "timeout-dir").exists()
    assert "pending" in [x["event"] for x in decisions(world, TIMEOUT)]
    assert "approval" in results[3].lower(), results[3]
    # Every request a reviewer ever saw was the model's own command: no
    # wrapper text, no runtime start-up step.
    assert {s["command"] for s in approver.seen} <= {APPROVED, TIMEOUT}, approver.seen
    assert [p["command"] for p in world.pending()] == [TIMEOUT]


def which_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    return node

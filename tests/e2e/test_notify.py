"""Notifications (issue 3 item 6): a real HTTP server on 127.0.0.1 gets the
webhook; a command target gets the request on stdin; a dead webhook neither
slows the agent nor goes unrecorded."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

XG = xguard_exe()


class Hook:
    """A webhook receiver on 127.0.0.1."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.got = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                n = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(n)))
                hook.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")
                hook.got.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, targets: str, names: str) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(
        f"default: require_approval\nrules:\n  - {{pattern: touch, action: require_approval, "
        f"reason: 'creates files', notify: [{names}]}}\nnotify:\n{targets}"
    )
    monkeypatch.setenv("XGUARD_RULES", str(p))


def run_once(
    tmp_path: Path, name: str = "made"
) -> tuple[subprocess.CompletedProcess[str], float, str]:
    """`touch NAME` as an agent with --wait 0: queued, notified, exit 75."""
    t = time.monotonic()
    p = subprocess.run(
        [*XG, "run", "--wait", "0", "--", "touch", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    took = time.monotonic() - t
    assert p.returncode == 75, p.stderr
    return p, took, p.stderr.split("waiting for approval ")[1].split()[0]


def audit(home: Path) -> list[dict[str, Any]]:
    path = home / "audit" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_for(pred: Any, timeout: float = 15) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> float:
    """How long the same request takes with nobody to notify (median of 3)."""
    rules(tmp_path, monkeypatch, "  quiet: {bell: true}\n", "quiet")
    return sorted(run_once(tmp_path, f"base{i}")[1] for i in range(3))[1]


def test_webhook_gets_slack_text_and_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: Hook
) -> None:
    rules(
        tmp_path,
        monkeypatch,
        f"  '#ops': {{webhook: '{hook.url}', headers: {{X-Token: s3cret}}}}\n",
        "'#ops'",
    )
    _, _, rid = run_once(tmp_path)
    assert hook.got.wait(10)
    [body] = hook.bodies
    assert isinstance(body["text"], str) and rid in body["text"] and "touch made" in body["text"]
    assert f"xguard approve {rid}" in body["text"]
    assert body["id"] == rid and body["event"] == "pending" and body["command"] == "touch made"
    assert body["cwd"] == str(tmp_path) and body["reasons"] and body["units"]
    assert body["approve"] == f"xguard approve {rid}" and body["expires"].endswith("Z")
    assert hook.headers[0]["Content-Type"] == "application/json"
    assert hook.headers[0]["X-Token"] == "s3cret"


def test_command_target_gets_the_request_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "got.json"
    rules(
        tmp_path, monkeypatch, f"  '@oncall': {{command: [sh, -c, 'cat > {out}']}}\n", "'@oncall'"
    )
    _, _, rid = run_once(tmp_path)
    body = wait_for(lambda: out.exists() and out.stat().st_size and json.loads(out.read_text()))
    assert body["id"] == rid and body["command"] == "touch made"


def test_failing_command_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xguard_home: Path
) -> None:
    rules(tmp_path, monkeypatch, "  bad: {command: [sh, -c, 'echo broken >&2; exit 3']}\n", "bad")
    _, _, rid = run_once(tmp_path)
    rec = wait_for(lambda: [r for r in audit(xguard_home) if r["event"] == "notify_failed"])
    assert rec[0]["id"] == rid and rec[0]["target"] == "bad"
    assert "exited 3" in rec[0]["error"] and "broken" in rec[0]["error"]


def test_closed_port_does_not_slow_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xguard_home: Path
) -> None:
    base = baseline(tmp_path, monkeypatch)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rules(
        tmp_path,
        monkeypatch,
        f"  dead: {{webhook: 'http://127.0.0.1:{port}/x', timeout: 2s}}\n",
        "dead",
    )
    _, took, rid = run_once(tmp_path)
    assert took < base + 0.5, (took, base)
    rec = wait_for(lambda: [r for r in audit(xguard_home) if r["event"] == "notify_failed"])
    assert (
        rec[0]["id"] == rid and rec[0]["target"] == "dead" and "webhook failed" in rec[0]["error"]
    )


def test_silent_server_does_not_slow_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xguard_home: Path
) -> None:
    base = baseline(tmp_path, monkeypatch)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does), never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x"
        rules(tmp_path, monkeypatch, f"  slow: {{webhook: '{url}', timeout: 1s}}\n", "slow")
        _, took, rid = run_once(tmp_path)
        assert took < base + 0.5, (took, base)
        rec = wait_for(lambda: [r for r in audit(xguard_home) if r["event"] == "notify_failed"])
        assert rec[0]["id"] == rid and rec[0]["target"] == "slow"
    finally:
        silent.close()


def test_undefined_target_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xguard_home: Path
) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text(
        "default: require_approval\nrules:\n  - {pattern: touch, action: require_approval, "
        "notify: [nobody]}\n"
    )
    monkeypatch.setenv("XGUARD_RULES", str(p))
    _, _, rid = run_once(tmp_path)
    rec = wait_for(lambda: [r for r in audit(xguard_home) if r["event"] == "notify_failed"])
    assert rec[0]["id"] == rid
    assert rec[0]["target"] == "nobody" and "no such target" in rec[0]["error"]

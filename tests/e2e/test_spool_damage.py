"""A damaged spool never hides a request, never hangs a waiter, never runs anything.

- A request file that became unreadable or corrupt is listed by `pending`
  (flagged), can be denied (never approved: what would run is unknown), and
  its waiter ends with the denial (77), with no traceback.
- A torn decision file is reported by the waiter in one clear line, is not
  taken for a decision, and the request can be decided again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_approval import Waiter, audit, pending_json, wait_for, xg

RULES = "default: require_approval\nrules:\n  - {pattern: echo, action: allow, dynamic: allow}\n"


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(RULES)
    monkeypatch.setenv("XGUARD_RULES", str(p))
    return p


CORRUPTIONS = [
    pytest.param(b"", id="empty"),
    pytest.param(b'{"id": "x", "command": "tou', id="torn"),
    pytest.param(b"\x00\x00\x00\x00", id="zeroes"),
    pytest.param(b"[1, 2]", id="not-an-object"),
]


@pytest.mark.parametrize("junk", CORRUPTIONS)
def test_corrupt_request_is_listed_and_can_be_denied(
    junk: bytes, rules: Path, tmp_path: Path, xguard_home: Path
) -> None:
    marker = tmp_path / "made"
    w = Waiter(["-c", f"touch {marker}"], tmp_path)
    (xguard_home / "spool" / f"{w.id}.json").write_bytes(junk)

    listed = {r["id"]: r for r in pending_json()}
    assert w.id in listed, "a corrupt request must not vanish from pending"
    assert "request file" in listed[w.id]["corrupt"]
    text = xg("pending").stdout
    assert w.id in text and "request file" in text

    p = xg("approve", w.id)
    assert p.returncode == 1
    assert p.stderr.startswith(f"xguard: request {w.id} cannot be approved"), p.stderr
    assert "\n" not in p.stderr.rstrip("\n")

    xg("deny", w.id, "--reason", "spool damaged", check=True)
    code, out, err = w.finish()
    assert (code, out) == (77, ""), err
    assert "spool damaged" in err and "Traceback" not in err and "internal error" not in err
    assert not marker.exists()
    denied = [r for r in audit(xguard_home) if r.get("id") == w.id and r["event"] == "denied"]
    assert denied and "request file" in denied[0]["corrupt"]
    assert w.id not in {r["id"] for r in pending_json()}


def test_corrupt_request_expires_without_a_traceback(
    tmp_path: Path, xguard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text("expiry: 2s\n" + RULES)
    monkeypatch.setenv("XGUARD_RULES", str(p))
    w = Waiter(["-c", "touch x"], tmp_path)
    (xguard_home / "spool" / f"{w.id}.json").write_bytes(b'{"torn')
    code, _, err = w.finish(timeout=30)
    assert code == 75, err
    assert f"approval request {w.id} expired: the command did not run" in err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("junk", CORRUPTIONS)
def test_torn_decision_is_reported_and_can_be_decided_again(
    junk: bytes, rules: Path, tmp_path: Path, xguard_home: Path
) -> None:
    marker = tmp_path / "made"
    w = Waiter(["-c", f"touch {marker} && echo ran"], tmp_path)
    (xguard_home / "spool" / f"{w.id}.decision").write_bytes(junk)

    def said() -> bool:
        import os
        import select

        assert w.proc.stderr is not None
        r, _, _ = select.select([w.proc.stderr], [], [], 0.1)
        if r:
            w.err += os.read(w.proc.stderr.fileno(), 4096)
        return b"cannot be used" in w.err

    wait_for(said)
    assert not marker.exists()
    assert f"xguard: the decision on {w.id} cannot be used (".encode() in w.err
    listed = {r["id"]: r for r in pending_json()}
    assert "decision file" in listed[w.id]["corrupt"]

    p = xg("approve", w.id, check=True)
    assert p.stdout.startswith(f"approved {w.id}")
    code, out, err = w.finish()
    assert (code, out) == (0, "ran\n"), err
    assert marker.exists()
    approved = [r for r in audit(xguard_home) if r.get("id") == w.id and r["event"] == "approved"]
    assert approved and "decision file" in approved[0]["replaced"]
    v = json.loads((xguard_home / "spool" / f"{w.id}.decision").read_text())
    assert v["state"] == "approved"

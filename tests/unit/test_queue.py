"""The approval spool (xguard/queue.py): durable requests, first-wins decisions,
answers for re-runs, expiry, wake-ups. Real files, real processes, no mocks."""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from xguard.commands.approval_cmd import is_gate_cmdline
from xguard.approval.notify import payload
from xguard.paths import Paths
from xguard.approval.queue import Listener, Spool, wake_all, write_atomic
from xguard.gate.request import request_key
from xguard.util import new_id


class Log:
    """Records audit appends (the real AuditLog has its own tests)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        self.records.append((event, fields))
        return fields


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(Paths(tmp_path / "cfg", tmp_path / "state")).ensure()


def make_request(key: str = "k" * 32, expires_in: float = 3600, **extra: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "id": new_id(),
        "key": key,
        "created": now,
        "expires": now + expires_in,
        "command": "rm -rf build",
        "cwd": "/src",
        "session": "s1",
        "profile": None,
        "user": "u",
        "host": "h",
        "pid": 1,
        "reasons": ["rm -rf build: deletes"],
        "units": [],
        "rules": ["r:1"],
        "notify": [],
        **extra,
    }


def test_create_is_durable_private_and_locked(spool: Spool) -> None:
    t = spool.create(make_request(), new_id)
    path = spool.dir / f"{t.id}.json"
    assert json.loads(path.read_text())["id"] == t.id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.dir.stat().st_mode) == 0o700
    assert not [n for n in os.listdir(spool.dir) if n.startswith(".tmp-")]
    assert [r["id"] for r in spool.pending()] == [t.id]
    # A waiter holds the lock, so nobody adopts its request.
    assert spool.adopt("k" * 32) is None
    t.release()
    adopted = spool.adopt("k" * 32)
    assert adopted is not None and adopted.id == t.id


def test_id_collision_draws_a_new_id(spool: Spool) -> None:
    first = spool.create(make_request(), new_id)
    again = make_request()
    again["id"] = first.id
    second = spool.create(again, lambda: "zzzzzz")
    assert second.id == "zzzzzz"
    assert {r["id"] for r in spool.pending()} == {first.id, "zzzzzz"}


def test_first_decision_wins(spool: Spool) -> None:
    t = spool.create(make_request(), new_id)
    log = Log()
    won, v = spool.decide(t.id, "approved", "alice", note="ok", log=log)
    assert won and v["state"] == "approved"
    won2, v2 = spool.decide(t.id, "denied", "bob", reason="no", log=log)
    assert not won2 and v2["by"] == "alice"
    assert [e for e, _ in log.records] == ["approved"]
    assert log.records[0][1]["reviewer"] == "alice" and log.records[0][1]["note"] == "ok"
    assert spool.get(t.id)["state"] == "approved"
    assert spool.pending() == []


def _race(args: tuple[str, str, str]) -> bool:
    state_dir, rid, who = args
    s = Spool(Paths(Path(state_dir), Path(state_dir)))
    return s.decide(rid, "approved" if who.endswith(("0", "2", "4", "6", "8")) else "denied", who)[
        0
    ]


def test_many_deciders_at_once_exactly_one_wins(tmp_path: Path) -> None:
    paths = Paths(tmp_path, tmp_path)
    s = Spool(paths).ensure()
    t = s.create(make_request(), new_id)
    with multiprocessing.get_context("fork").Pool(8) as pool:
        wins = pool.map(_race, [(str(tmp_path), t.id, f"r{i}") for i in range(40)])
    assert wins.count(True) == 1
    v = s.verdict(t.id)
    assert v is not None and v["by"] == f"r{wins.index(True)}"


def test_once_answer_is_used_once(spool: Spool) -> None:
    t = spool.create(make_request(), new_id)
    t.release()  # the waiter timed out
    spool.decide(t.id, "approved", "alice")
    a = spool.use_answer("k" * 32)
    assert a is not None and a["state"] == "approved" and a["id"] == t.id
    assert spool.use_answer("k" * 32) is None


def test_once_answer_belongs_to_a_live_waiter(spool: Spool) -> None:
    t = spool.create(make_request(), new_id)
    spool.decide(t.id, "approved", "alice")
    assert spool.use_answer("k" * 32) is None  # its own waiter takes it
    spool.consume_own_answer(t)
    t.release()
    assert spool.use_answer("k" * 32) is None


def test_timed_answer_lasts_until_it_ends(spool: Spool) -> None:
    t = spool.create(make_request(), new_id)
    t.release()
    spool.decide(t.id, "approved", "alice", for_seconds=60)
    for _ in range(3):
        assert spool.use_answer("k" * 32) is not None
    assert spool.use_answer("k" * 32, now=time.time() + 61) is None
    assert spool.use_answer("other" * 6) is None


def test_denial_after_the_waiter_left_is_told_once(spool: Spool) -> None:
    t = spool.create(make_request(), new_id)
    t.release()
    spool.decide(t.id, "denied", "bob", reason="not on Fridays")
    a = spool.use_answer("k" * 32)
    assert a is not None and a["state"] == "denied" and a["reason"] == "not on Fridays"
    assert spool.use_answer("k" * 32) is None


def test_sweep_expires_overdue_requests_once(spool: Spool) -> None:
    old = spool.create(make_request(expires_in=-1), new_id)
    fresh = spool.create(make_request(key="f" * 32), new_id)
    log = Log()
    assert spool.sweep(log) == [old.id]
    assert spool.sweep(log) == []
    assert [(e, f["id"]) for e, f in log.records] == [("expired", old.id)]
    assert spool.get(old.id)["state"] == "expired"
    assert spool.get(fresh.id)["state"] == "pending"


def test_prune_keeps_pending_and_recent(spool: Spool) -> None:
    t = spool.create(make_request(), new_id)
    spool.decide(t.id, "denied", "bob")
    spool.sweep(now=time.time() + 3600)
    assert spool.get(t.id) is not None
    spool.sweep(now=time.time() + 8 * 86400)
    assert spool.get(t.id) is None


def test_resolve_prefix(spool: Spool) -> None:
    a = make_request()
    a["id"] = "abc234"
    b = make_request()
    b["id"] = "abd234"
    spool.create(a, new_id)
    spool.create(b, new_id)
    assert spool.resolve("abc234") == "abc234"
    assert spool.resolve("abd") == "abd234"
    with pytest.raises(LookupError, match="ambiguous"):
        spool.resolve("ab")
    with pytest.raises(LookupError, match="no request"):
        spool.resolve("zz")


def test_write_atomic_exclusive(tmp_path: Path) -> None:
    p = tmp_path / "x"
    assert write_atomic(p, b"one", exclusive=True)
    assert not write_atomic(p, b"two", exclusive=True)
    assert p.read_bytes() == b"one"
    assert write_atomic(p, b"three")
    assert p.read_bytes() == b"three"
    assert os.listdir(tmp_path) == ["x"]


@pytest.mark.parametrize("deep", [False, True])
def test_wake_reaches_listeners_and_cleans_stale_sockets(tmp_path: Path, deep: bool) -> None:
    # sun_path holds 108 bytes: deep folders are reached through /proc/self/fd.
    wake = tmp_path / ("d" * 120 if deep else "w")
    listener = Listener(wake)
    assert stat.S_IMODE(os.stat(listener.path).st_mode) == 0o600
    stale = Listener(wake)
    stale.sock.close()  # as if its process was killed: the file stays
    wake_all(wake, {"id": "abc"})
    r, _, _ = select.select([listener], [], [], 2)
    assert r and listener.drain() == [{"id": "abc"}]
    assert not stale.path.exists()
    listener.close()
    assert not listener.path.exists()


def test_request_key_binds_everything_reviewed() -> None:
    base = request_key("rm x", "/a", "s1", None, ["shell", "--"])
    assert base == request_key("rm x", "/a", "s1", None, ["shell", "--"])
    assert (
        len(
            {
                base,
                request_key("rm y", "/a", "s1", None, ["shell", "--"]),
                request_key("rm x", "/b", "s1", None, ["shell", "--"]),
                request_key("rm x", "/a", "s2", None, ["shell", "--"]),
                request_key("rm x", "/a", "s1", "production", ["shell", "--"]),
                request_key("rm x", "/a", "s1", None, ["shell", "-e", "--"]),
                request_key("rm x", "/a", "s1", None, ["argv"]),
            }
        )
        == 7
    )


@pytest.mark.parametrize(
    ("argv", "gate"),
    [
        (["/usr/bin/python3", "/usr/local/bin/xguard", "-c", "ls"], True),
        (["xguard", "-lc", "ls"], True),
        (["xguard", "--login", "-c", "ls"], True),
        (["xguard", "-o", "pipefail", "-c", "ls"], True),
        (["xguard", "run", "--", "ls"], True),
        (["xguard", "--debug", "run", "--", "ls"], True),
        (["xguard", "hook", "claude-code"], True),
        (["xguard"], True),
        (["python3", "-m", "xguard", "-c", "ls"], True),
        (["xguard", "review"], False),
        (["xguard", "approve", "abc"], False),
        (["xguard", "--help"], False),
        (["python3", "-m", "pytest"], False),
        (["bash", "-c", "xguard -c ls"], False),
        ([], False),
    ],
)
def test_gate_processes_are_recognised(argv: list[str], gate: bool) -> None:
    assert is_gate_cmdline(argv) is gate


def test_notify_payload_is_slack_text_plus_fields() -> None:
    req = make_request(production=True)
    req["command"] = "echo <!channel> & rm"
    body = payload(req)
    assert body["id"] == req["id"] and body["command"] == req["command"]
    assert "<!channel>" not in body["text"] and "&lt;!channel&gt; &amp; rm" in body["text"]
    assert f"xguard approve {req['id']}" in body["text"]
    assert "PRODUCTION" in body["text"]
    assert body["cwd"] == "/src" and body["reasons"] == req["reasons"]
    assert body["expires"].endswith("Z")

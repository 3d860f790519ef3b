"""Sessions, limits and numeric caps, in process (issue 5): tables of cases for
reads and caps, the loop breaker's counting and trip, rate caps, flock'd
counters under concurrency, fail-closed state, and the session record."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from xguard.gate import limits
from xguard.gate import sessions
from xguard.errors import ConfigError
from xguard.policy.rules import Ruleset, build_ruleset_dict
from xguard.gate.request import Gate, Request

RULES = """\
default: require_approval
rules:
  - {pattern: "ls", action: allow}
  - {pattern: "cat", action: allow}
  - {pattern: "echo", action: allow}
  - {pattern: "find", action: allow}
  - {pattern: "git", action: allow}
  - {pattern: "kubectl", action: allow}
  - {pattern: "mytool report", action: allow, read: true}
  - {pattern: "mytool", action: allow}
  - {pattern: "ls -R", action: allow, read: false}
  - {pattern: "psql", action: allow}
  - {pattern: "SELECT", action: allow}
  - {pattern: "DELETE FROM", action: allow}
  - {pattern: "kubectl scale", action: allow, caps: {"--replicas": 10}}
  - {pattern: "kubectl autoscale", action: allow, baseline: {"--max": 3}}
  - pattern: "helm upgrade"
    action: allow
    baseline: {"--replicas": 2}
    growth: 3
    caps: {"--replicas": 5}
  - {path: "/tmp/**", access: write, action: allow}
"""


@pytest.fixture
def gate(xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gate:
    return make_gate(xguard_home, tmp_path, monkeypatch, "")


def make_gate(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str) -> Gate:
    home.mkdir(parents=True, exist_ok=True)
    (home / "rules.yaml").write_text(RULES + extra)
    monkeypatch.chdir(tmp_path)
    return Gate()


def decide(gate: Gate, text: str) -> Any:
    return gate.decide_text(text)


# ---------------------------------------------------------------------------
# Reads: what the loop breaker never counts and a tripped session still runs.
READS = [
    ("ls -la", True),
    ("cat README", True),
    ("echo hi", True),
    ("echo hi > /tmp/out", False),  # writes a file
    ("git status", True),
    ("git -C sub log -3", True),
    ("git push", False),
    ("git branch -D main", False),
    ("kubectl get pods", True),
    ("kubectl -n prod get pods", True),
    ("kubectl scale deploy/api --replicas=3", False),
    ("kubectl delete pod x", False),
    ("find . -name x", True),
    ("find . -delete", False),
    ("mytool report", True),  # `read: true` on the rule
    ("mytool run", False),  # unknown tool: counts
    ("ls -R", False),  # `read: false` wins over the table
    ("psql -c 'SELECT 1'", False),  # the client's own unit is not a known read
    ("cat a | ls", True),
]


@pytest.mark.parametrize(("text", "read"), READS)
def test_reads(gate: Gate, text: str, read: bool) -> None:
    d = decide(gate, text)
    rules = limits._rule_index(gate.ruleset)
    got = d.decision == "allow" and all(limits.is_read(u, rules) for u in d.units)
    assert got is read


def test_sql_reads(gate: Gate) -> None:
    d = decide(gate, "psql -c 'SELECT * FROM t; DELETE FROM t'")
    rules = limits._rule_index(gate.ruleset)
    sql = {u.text: limits.is_read(u, rules) for u in d.units if u.kind == "sql"}
    assert sql == {"SELECT * FROM t": True, "DELETE FROM t": False}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("kubectl scale deploy/api --replicas=4", "kubectl scale deploy/api --replicas=#"),
        ("kubectl scale deploy/api --replicas=16", "kubectl scale deploy/api --replicas=#"),
        ("sleep 1.5", "sleep #.#"),
        ("git log", "git log"),
    ],
)
def test_command_key_folds_digits(text: str, key: str) -> None:
    assert limits.command_key(text) == key


# ---------------------------------------------------------------------------
# Numeric caps (policy).
CAPS = [
    ("kubectl scale deploy/api --replicas=10", "allow"),
    ("kubectl scale deploy/api --replicas=11", "require_approval"),
    ("kubectl scale deploy/api --replicas 11", "require_approval"),
    ("kubectl scale deploy/api --replicas=1e3", "require_approval"),
    ("kubectl scale deploy/api --replicas=ten", "require_approval"),  # cannot check: fail closed
    ("kubectl scale deploy/api --replicas=$N", "require_approval"),
    ("kubectl scale deploy/api", "allow"),
    ("kubectl autoscale deploy/api --max=6", "allow"),  # 2 x 3
    ("kubectl autoscale deploy/api --max=7", "require_approval"),
    ("helm upgrade x --replicas=5", "allow"),  # min(5, 3 x 2)
    ("helm upgrade x --replicas=6", "require_approval"),
    ("kubectl get pods --replicas=99", "allow"),  # a rule without caps
]


@pytest.mark.parametrize(("text", "decision"), CAPS)
def test_numeric_caps(gate: Gate, text: str, decision: str) -> None:
    d = decide(gate, text)
    assert d.decision == decision, d.reasons


def test_cap_reason_names_the_rule(gate: Gate) -> None:
    d = decide(gate, "kubectl autoscale deploy/api --max=7")
    assert "--max 7 is over the cap of 6 (2 x 3) in rule rules.yaml:" in d.reasons[0]


@pytest.mark.parametrize(
    ("rule", "what"),
    [
        ("{pattern: x, action: allow, caps: {'--n': -1}}", "non-negative"),
        ("{pattern: x, action: allow, caps: {'--n': many}}", "non-negative"),
        ("{pattern: x, action: allow, growth: fast}", "non-negative"),
        ("{pattern: x, action: allow, read: sometimes}", "true or false"),
    ],
)
def test_schema(tmp_path: Path, rule: str, what: str) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(f"rules:\n  - {rule}\n")
    with pytest.raises(ConfigError) as e:
        build_ruleset_dict(str(f), None)
    assert what in e.value.message and "r.yaml:2" in e.value.message


# ---------------------------------------------------------------------------
# The loop breaker and rate caps, in process.
LOOP = "limits: {loop: {same_rule: 2, same_command: 3, window: 1m, trip_at: 4}}\n"


def run(gate: Gate, text: str, session: str | None = "s1") -> tuple[str, limits.Refusal | None]:
    req = Request(text=text, session=session)
    d = decide(gate, text)
    r = limits.after_decision(gate, req, d)
    return d.decision, r


def test_loop_escalates_then_trips(
    xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = make_gate(xguard_home, tmp_path, monkeypatch, LOOP)
    assert run(g, "kubectl scale deploy/api --replicas=2") == ("allow", None)
    assert run(g, "kubectl scale deploy/api --replicas=3") == ("allow", None)
    d, r = run(g, "kubectl scale deploy/api --replicas=4")
    assert (d, r) == ("require_approval", None)
    dd = decide(g, "kubectl scale deploy/api --replicas=5")
    r = limits.after_decision(g, Request(text="x", session="s1"), dd)
    assert r is not None and r.limit == "loop.trip_at" and r.tripped is not None
    assert "xguard session reset s1" in r.message
    # Tripped: reads only.
    assert run(g, "kubectl get pods") == ("allow", None)
    assert run(g, "git push")[1] is not None
    assert run(g, "echo x > /tmp/x")[1] is not None
    # Another session is not affected.
    assert run(g, "git push", session="s2") == ("allow", None)
    assert [t["session"] for t in limits.tripped_sessions(g.paths)] == ["s1"]
    cleared = limits.reset_session(g.paths, "s1", "alice")
    assert cleared["tripped"]
    assert limits.tripped_sessions(g.paths) == []
    assert run(g, "git push") == ("allow", None)


def test_escalation_marks_only_counted_units(
    xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = make_gate(xguard_home, tmp_path, monkeypatch, LOOP)
    for _ in range(2):
        run(g, "mytool run")
    d = decide(g, "ls; mytool run")
    assert limits.after_decision(g, Request(text="ls; mytool run", session="s1"), d) is None
    by = {u.text: u.decision for u in d.units if u.kind == "command"}
    assert by == {"ls": "allow", "mytool run": "require_approval"}
    assert any("loop breaker: rule rules.yaml:" in x for x in d.reasons)


def test_deny_is_left_alone(
    xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = make_gate(xguard_home, tmp_path, monkeypatch, "  - {pattern: rm, action: deny}\n" + LOOP)
    for _ in range(6):
        assert run(g, "rm -rf x") == ("deny", None)
    assert not limits.tripped_sessions(g.paths)


def test_rate_cap(xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = make_gate(xguard_home, tmp_path, monkeypatch, "limits: {rate: {commands_per_minute: 3}}\n")
    for _ in range(3):
        assert run(g, "ls") == ("allow", None)
    r = run(g, "ls")[1]
    assert r is not None and r.limit == "rate.commands_per_minute"
    assert "limits.rate.commands_per_minute in" in r.message
    assert run(g, "ls", session="s2")[1] is None


def test_no_limits_no_state(gate: Gate) -> None:
    assert run(gate, "git push") == ("allow", None)
    assert not os.path.exists(os.path.join(gate.paths.state_dir_s, "limits"))


def test_unreadable_state_fails_closed(
    xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = make_gate(xguard_home, tmp_path, monkeypatch, LOOP)
    run(g, "git push")
    Path(g.paths.state_dir_s, "limits", "s1.json").write_text('{"loop": [')
    r = run(g, "git push")[1]
    assert r is not None and "unreadable" in r.message
    assert run(g, "ls") == ("allow", None)  # reads still run
    limits.reset_session(g.paths, "s1", "bob")
    assert run(g, "git push") == ("allow", None)


def test_state_file_is_always_whole_json(
    xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = make_gate(
        xguard_home,
        tmp_path,
        monkeypatch,
        "limits: {rate: {commands_per_minute: 1000}, loop: {same_command: 1000, window: 1s}}\n",
    )
    path = Path(g.paths.state_dir_s, "limits", "s1.json")
    for i in range(30):
        run(g, f"mytool run --n {'x' * i}")
    big = path.stat().st_size
    time.sleep(1.1)  # the loop window forgets: the state shrinks, padded with blanks
    run(g, "mytool run")
    assert path.stat().st_size == big
    json.loads(path.read_text())


def test_counters_under_concurrency(
    xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = make_gate(
        xguard_home, tmp_path, monkeypatch, "limits: {rate: {commands_per_minute: 100000}}\n"
    )
    procs, each = 6, 20
    pids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 0
            try:
                for _ in range(each):
                    if run(g, "ls")[1] is not None:
                        code = 1
            except BaseException:
                code = 2
            os._exit(code)
        pids.append(pid)
    assert all(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) == 0 for p in pids)
    snap = limits.snapshot(g.paths, "s1")
    assert len(snap["cmds"]) == procs * each


def test_unsafe_session_ids_get_a_hashed_bucket() -> None:
    assert limits.bucket("abc") == "abc"
    assert limits.bucket(None) == limits.bucket("-") == "_nosession"
    assert limits.bucket("") == "_nosession"
    for bad in ("../../x", "a/b", "_nosession", ".hidden", "-rf", "x" * 65):
        b = limits.bucket(bad)
        assert b.startswith("_h") and len(b) == 34 and b != limits.bucket(bad + "y")


def test_effective_merges_profile_limits(
    xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = make_gate(
        xguard_home,
        tmp_path,
        monkeypatch,
        "limits: {max_runtime: 1m, rate: {commands_per_minute: 60, approvals_per_hour: 5}}\n"
        "profiles:\n  prod: {limits: {rate: {commands_per_minute: 5}}}\n",
    )
    assert limits.effective(g)["rate"] == {"commands_per_minute": 60, "approvals_per_hour": 5}
    p = Gate(profile="prod")
    assert limits.effective(p) == {
        "max_runtime": "1m",
        "rate": {"commands_per_minute": 5, "approvals_per_hour": 5},
    }


# ---------------------------------------------------------------------------
# Session records.
def test_session_lifecycle(gate: Gate) -> None:
    rec = sessions.start(gate.paths, gate.ruleset, ttl=1, name="t", by="alice")
    sid = rec["id"]
    assert sessions.safe_name(sid) and sessions.load(gate.paths, sid)["name"] == "t"
    assert sessions.state(rec) == ("live", None)
    assert sessions.check(gate, sid, None) is None
    assert sessions.state(rec, rec["expires"] + 0.001)[0] == "expired"
    assert sessions.grant_alive(gate.paths, {"session": sid})
    sessions.end(gate.paths, sid, "bob")
    limit, msg = sessions.check(gate, sid, None)
    assert limit == "session.expired" and "ended by bob" in msg
    assert not sessions.grant_alive(gate.paths, {"session": sid})
    with pytest.raises(ValueError):
        sessions.end(gate.paths, sid, "bob")
    with pytest.raises(LookupError):
        limits.reset_session(gate.paths, "nope", "bob")
    json.loads(Path(sessions.record_path(gate.paths, sid)).read_text())  # plain JSON on disk


def test_ttl_caps(xguard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = make_gate(
        xguard_home,
        tmp_path,
        monkeypatch,
        "sessions: {max_ttl: 1h}\nprofiles:\n  prod: {sessions: {max_ttl: 10m, default_ttl: 5m}}\n",
    )
    assert sessions.start(g.paths, g.ruleset)["ttl"] == 3600  # default 1h, within max_ttl
    assert sessions.start(g.paths, g.ruleset, profile="prod")["ttl"] == 300
    with pytest.raises(ValueError, match="max_ttl"):
        sessions.start(g.paths, g.ruleset, ttl=11 * 60, profile="prod")


@pytest.mark.parametrize(
    "text", ['{"a":[1,2.5,null,true,false],"b":{"c":"x\\u00e9\\n"}}', "{}  \n", '"s"', "[]"]
)
def test_loads_is_json_loads(text: str) -> None:
    assert sessions.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a":1} x', "nope"])
def test_loads_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        sessions.loads(text)


def test_hot_path_modules_stay_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys; b=set(sys.modules); import xguard.gate.limits, xguard.gate.sessions; "
        "print(sorted(m for m in {'json','re','pathlib','typing','dataclasses'}"
        " if m in sys.modules and m not in b))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    ).stdout
    assert out.strip() == "[]"


def test_ruleset_keeps_read_and_caps(gate: Gate) -> None:
    rs: Ruleset = gate.ruleset
    by = {r.src: r for r in rs.rules}
    assert by["mytool report"].read is True and by["ls -R"].read is False and by["ls"].read is None
    assert by["helm upgrade"].caps == {"--replicas": [5.0, "5"]}
    assert by["kubectl autoscale"].caps == {"--max": [6.0, "6 (2 x 3)"]}

"""`xguard session start|list|show|end|reset` (issue 5).

A person opens a session for an agent and hands it the id:

    eval "$(xguard session start --ttl 30m --profile staging --name 'fix flaky test')"

`start` prints only `export …` lines on stdout (so `eval` works) and says
what it did on stderr. `start` and `reset` are a person's verbs: like
`approve`, they refuse to run inside a gated command, and the policy denies
them as units (built-in self-protection), so an agent can neither open its
own window nor clear its own loop-breaker trip.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from typing import Any


from xguard.gate import limits
from xguard.gate import sessions
from xguard.errors import UsageError
from xguard.util import printable


def _gate(profile: str | None = None) -> Any:
    from xguard.gate.request import Gate

    return Gate(profile=profile)


def _left(rec: dict[str, Any], now: float) -> str:
    from xguard.util import format_age

    st = rec.get("state") or sessions.state(rec, now)[0]
    if st == "live":
        return f"{format_age(rec['expires'] - now)} left"
    when = rec["ended"]["at"] if st == "ended" else rec["expires"]
    return f"{st} {format_age(now - when)} ago"


def session() -> None:
    """Sessions: a window of time an agent's commands run in."""


def start(ttl: str | None, profile: str | None, name: str | None) -> int:
    """Start a session; prints `export XGUARD_SESSION=…` for eval."""
    from xguard.commands.approval_cmd import refuse_if_gated
    from xguard.util import user_name
    from xguard.util import parse_duration

    refuse_if_gated("session start")
    seconds = None
    if ttl is not None:
        seconds = parse_duration(ttl)
        if seconds is None:
            raise UsageError(f"--ttl {ttl!r} is not a duration (like 30s, 15m, 2h)")
    gate = _gate(profile)  # an unknown profile is a config error (78)
    try:
        rec = sessions.start(
            gate.paths,
            gate.ruleset,
            ttl=seconds,
            profile=profile,
            name=name,
            by=user_name(),
            log=gate.audit(),
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    sys.stdout.write(f"export XGUARD_SESSION={rec['id']}\n")
    if profile:
        sys.stdout.write(f"export XGUARD_PROFILE={shlex.quote(profile)}\n")
    label = f" ({printable(name, 60)})" if name else ""
    prof = f", profile {profile}" if profile else ""
    sys.stderr.write(
        f"xguard: session {rec['id']}{label} started{prof}; it expires at "
        f"{sessions.ts(rec['expires'])} (in {sessions._human(rec['ttl'])})\n"
    )
    return 0


def _with_limits(gate: Any, rec: dict[str, Any]) -> dict[str, Any]:
    snap = limits.snapshot(gate.paths, rec["id"])
    rec["tripped"] = snap.get("tripped")
    return rec


def list_(as_json: bool, show_all: bool) -> int:
    """List sessions, oldest first."""
    gate = _gate()
    now = time.time()
    recs = [_with_limits(gate, r) for r in sessions.all_sessions(gate.paths)]
    if not show_all:
        recs = [
            r
            for r in recs
            if r["state"] == "live" or (sessions.state(r, now)[1] or 0) > now - 86400
        ]
    tripped_other = [
        t
        for t in limits.tripped_sessions(gate.paths)
        if not any(r["id"] == t["session"] for r in recs)
    ]
    if as_json:
        sys.stdout.write(json.dumps(recs, ensure_ascii=False, indent=1) + "\n")
        return 0
    if not recs and not tripped_other:
        sys.stderr.write("xguard: no sessions\n")
        return 0
    sys.stdout.write(f"{'ID':<10} {'STATE':<8} {'PROFILE':<11} {'LEFT':<18} {'USER':<10} NAME\n")
    for r in recs:
        st = "TRIPPED" if r.get("tripped") and r["state"] == "live" else r["state"]
        sys.stdout.write(
            f"{r['id']:<10} {st:<8} {printable(str(r.get('profile') or '-'), 11):<11} "
            f"{_left(r, now):<18} {printable(str(r.get('user') or '?'), 10):<10} "
            f"{printable(str(r.get('name') or ''), 60)}\n"
        )
    for t in tripped_other:
        sys.stdout.write(
            f"{printable(t['session'], 10):<10} {'TRIPPED':<8} {'-':<11} {'-':<18} {'-':<10} "
            + ("(no session)" if t["session"] == sessions.NO_SESSION else "(not started by xguard)")
            + "\n"
        )
    return 0


def show(session_id: str, as_json: bool) -> int:
    """Show one session: times, profile, state, loop-breaker counters."""
    gate = _gate()
    try:
        sid = limits.resolve_session(gate.paths, session_id)
    except LookupError as e:
        sys.stderr.write(f"xguard: {e.args[0]}\n")
        return 1
    now = time.time()
    rec = sessions.load(gate.paths, sid) or {"id": sid, "managed": False}
    if "expires" in rec:
        rec["state"] = sessions.state(rec, now)[0]
    snap = limits.snapshot(gate.paths, sid)
    rec["tripped"] = snap.get("tripped")
    rec["limits"] = {
        "commands_last_minute": len(
            [t for t in snap.get("cmds", []) if t > now - limits.RATE_WINDOW]
        ),
        "approval_requests_last_hour": len(
            [t for t in snap.get("asks", []) if t > now - limits.ASK_WINDOW]
        ),
        "loop": {k: len(v) for k, v in (snap.get("loop") or {}).items()},
        "reset": snap.get("reset"),
    }
    if as_json:
        sys.stdout.write(json.dumps(rec, ensure_ascii=False, indent=1) + "\n")
        return 0
    out = [
        f"session  {rec['id']}" + (f"  ({printable(rec['name'], 80)})" if rec.get("name") else "")
    ]
    if "expires" in rec:
        out += [
            f"state    {rec['state']}" + ("  — TRIPPED (loop breaker)" if rec["tripped"] else ""),
            f"profile  {rec.get('profile') or '-'}",
            f"started  {sessions.ts(rec['created'])} by {rec.get('user') or '?'}"
            f" on {rec.get('host') or '?'}",
            f"expires  {sessions.ts(rec['expires'])}  ({_left(rec, now)})",
        ]
        if rec.get("ended"):
            out.append(
                f"ended    {sessions.ts(rec['ended']['at'])} by {rec['ended'].get('by') or '?'}"
            )
    else:
        out.append(
            "state    not started by xguard (no expiry)" + ("  — TRIPPED" if rec["tripped"] else "")
        )
    if rec["tripped"]:
        out.append(f"tripped  {sessions.ts(rec['tripped']['at'])}: {rec['tripped'].get('why')}")
        out.append(f"         reset with: xguard session reset {sid}")
    lim = rec["limits"]
    out.append(
        f"counts   {lim['commands_last_minute']} commands in the last minute, "
        f"{lim['approval_requests_last_hour']} approval requests in the last hour"
    )
    for k, n in sorted(lim["loop"].items(), key=lambda kv: -kv[1])[:10]:
        out.append(
            f"  loop   {n:>3}x {'rule' if k.startswith('r:') else 'cmd '} {printable(k[2:], 100)}"
        )
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def end(session_id: str) -> int:
    """End a session now: its commands and its `--for` approvals stop working,"""
    from xguard.approval.queue import Spool
    from xguard.util import user_name

    gate = _gate()
    log = gate.audit()
    try:
        sid = limits.resolve_session(gate.paths, session_id)
        rec = sessions.end(gate.paths, sid, user_name(), log=log)
    except (LookupError, ValueError) as e:
        sys.stderr.write(f"xguard: {e.args[0]}\n")
        return 1
    spool = Spool(gate.paths)
    cancelled = []
    for r in spool.pending():
        if r.get("session") == sid:
            won, _ = spool.decide(
                r["id"], "cancelled", user_name(), reason=f"session {sid} ended", log=log
            )
            if won:
                cancelled.append(r["id"])
    more = f"; cancelled pending {', '.join(cancelled)}" if cancelled else ""
    sys.stderr.write(f"xguard: session {sid} ended at {sessions.ts(rec['ended']['at'])}{more}\n")
    return 0


def reset(session_id: str) -> int:
    """Clear a session's loop-breaker trip and counters (a reviewer's verb)."""
    from xguard.commands.approval_cmd import refuse_if_gated
    from xguard.util import user_name

    refuse_if_gated("session reset")
    gate = _gate()
    try:
        sid = limits.resolve_session(gate.paths, session_id)
        cleared = limits.reset_session(gate.paths, sid, user_name(), log=gate.audit())
    except LookupError as e:
        sys.stderr.write(f"xguard: {e.args[0]}\n")
        return 1
    was = (
        f" (it had tripped: {cleared['tripped'].get('why')})"
        if cleared.get("tripped")
        else " (it had not tripped)"
    )
    sys.stderr.write(f"xguard: session {sid}: loop breaker and counters reset{was}\n")
    return 0

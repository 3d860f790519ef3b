"""Blast-radius limits: rate caps, the loop breaker, and the session checks (issue 5).

The seed article's third failure was an agent that scaled a cluster in a loop,
each step locally rational. The limits here act "regardless of whether a
human is watching":

- rate caps per session: `limits.rate.commands_per_minute` (every gated
  command) and `approvals_per_hour` (requests that would ask a person);
  over a cap the command does not run (exit 77, naming the cap);
- the loop breaker: the same rule matched, or the same command (its words,
  digits folded, so `--replicas=4`, `=8`, `=16` are one command) run, more
  than `loop.same_rule` / `loop.same_command` times within `loop.window`
  escalates allowed units to require_approval; at `loop.trip_at` the session
  trips, and then nothing but allowed reads runs until a reviewer resets it
  (`xguard session reset ID`, reset_session). Reads never count: an agent
  may `cat` and `grep` all day.

A "read" is a unit that cannot change anything: an allowed command whose
rule says `read: true`, or, when no matching rule says, one in the built-in
table below (`ls`, `git status`, `kubectl get` …); an SQL SELECT; a file
the command only reads. Everything else (writes, unknown tools, wrappers)
counts, and stops when tripped: fail closed.

Counters live in one small JSON file per session under state/limits/,
updated under fcntl.flock. The file is rewritten in place, padded with
blanks to its old length, so a reader never sees a torn file; one that
cannot be read anyway counts as tripped (fail closed) until reset.

Standard library only, and no `json`/`re`: this runs on every command.
"""

from __future__ import annotations

import fcntl
import os
import time

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from typing import Any

    from xguard.audit.log import AuditLog
    from xguard.gate.request import GateLike, Request
    from xguard.policy.decide import Decision

    from xguard.paths import Paths

RATE_WINDOW = 60.0
ASK_WINDOW = 3600.0
DEFAULT_LOOP_WINDOW = 300.0


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Commands that only read, and tools whose first verb says whether they read.
# An allow rule's `read: true|false` overrides this table.
READ_COMMANDS = _words(
    "ls pwd cat tac nl head tail wc stat file du df tree realpath readlink basename dirname od "
    "hexdump strings md5sum sha1sum sha256sum sha512sum b2sum cksum shasum grep egrep fgrep rg fd "
    "fdfind which whereis type echo printf true false test [ cut uniq column comm diff cmp jq "
    "whoami id uname ps"
)
_CONTAINERS = _words("ps logs inspect images version info top stats history port diff")
READ_VERBS = {
    "git": _words(
        "status log diff show blame ls-files ls-tree rev-parse describe shortlog grep cat-file "
        "show-ref rev-list name-rev"
    ),
    "kubectl": _words("get describe logs top explain version api-resources api-versions diff"),
    "docker": _CONTAINERS,
    "podman": _CONTAINERS,
    "helm": _words("list ls status get history show version template search lint"),
    "terraform": _words("show validate version output providers graph"),
    "systemctl": _words(
        "status show list-units list-unit-files is-active is-enabled is-failed cat"
    ),
    "npm": _words("ls list view outdated"),
    "pip": _words("list show freeze"),
}
# Options before the verb that take a value (`kubectl -n prod get`, `git -C dir log`).
_VALUE_OPTS = frozenset({"-n", "--namespace", "--context", "--cluster", "--kubeconfig", "-C"})
# find's actions that write, delete or run programs.
_FIND_ACTS = frozenset(
    {"-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls"}
)
_SQL_READS = ("select ", "show ", "explain ", "describe ", "desc ", "\\d", "\\l")


class Refusal:
    """Why a command does not run: `limit` names the setting, `message` tells the agent."""

    __slots__ = ("limit", "message", "tripped")

    def __init__(self, limit: str, message: str, tripped: dict[str, Any] | None = None) -> None:
        self.limit = limit
        self.message = message
        self.tripped = tripped  # set when this very command tripped the session


# ---------------------------------------------------------------------------
# Settings.


def effective(gate: GateLike) -> dict[str, Any]:
    """The `limits:` in effect: the profile's keys over the top-level ones
    (`rate` and `loop` merged key by key)."""
    top = gate.ruleset.settings.get("limits") or {}
    prof = (gate.ruleset.profiles.get(gate.profile) or {}).get("limits") if gate.profile else None
    if not prof:
        return top
    out = {**top, **prof}
    for k in ("rate", "loop"):
        if k in top and k in prof:
            out[k] = {**top[k], **prof[k]}
    return out


def _seconds(value: Any, default: float) -> float:
    from xguard.util import parse_duration

    v = parse_duration(value) if value is not None else None
    return default if v is None else v


def _where(gate: GateLike, key: str) -> str:
    """Which setting to raise, and where."""
    src = gate.ruleset.sources[0] if gate.ruleset.sources else "the rules file"
    if gate.profile and (gate.ruleset.profiles.get(gate.profile) or {}).get("limits"):
        return f"profiles.{gate.profile}.limits.{key} in {src}"
    return f"limits.{key} in {src}"


# ---------------------------------------------------------------------------
# Reads.


def _rule_index(ruleset: Any) -> dict[str, Any]:
    # The rules this ruleset has made hold every rule its decisions name.
    return ruleset.loaded()


def is_read(d: Any, rules: dict[str, Any]) -> bool:
    """Whether a decided unit can only read (see the module docstring)."""
    if d.decision != "allow":
        return False
    u = d.unit
    kind = d.kind
    if kind == "path":
        return (u.access if u is not None else d.text.split(" ", 1)[0]) == "read"
    if kind == "assign":
        return True  # allowed assignments (LANG=C) change nothing but the command's own view
    if kind not in ("command", "sql"):
        return False
    marks = [
        rules[i].read
        for i in d.rule_ids
        if i in rules and rules[i].action == "allow" and getattr(rules[i], "read", None) is not None
    ]
    if marks:
        return all(marks)  # any `read: false` wins: fail closed
    if kind == "sql":
        t = d.text.lower()
        return (
            t.startswith(_SQL_READS)
            and " into " not in f" {t} "
            and not t.startswith("explain analyze")
        )
    words = list(u.words) if u is not None and u.words else d.text.split(" ")
    if not words:
        return False
    name = words[0].rsplit("/", 1)[-1]
    if name in READ_COMMANDS:
        return True
    if name == "find":
        return not _FIND_ACTS.intersection(words)
    verbs = READ_VERBS.get(name)
    if verbs is None:
        return False
    i = 1
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in _VALUE_OPTS else 1
    return i < len(words) and words[i] in verbs


def command_key(text: str) -> str:
    """A unit's words with digit runs folded to '#': a loop that changes only a
    number (`--replicas=4`, `=8`, `=16`) is one command to the loop breaker."""
    out = []
    digits = False
    for c in text:
        if c.isdigit():
            if not digits:
                out.append("#")
            digits = True
        else:
            out.append(c)
            digits = False
    return "".join(out)


# ---------------------------------------------------------------------------
# State: one small JSON file per session bucket.


def bucket(session: str | None) -> str:
    """The file name (without .json) that holds a session's counters."""
    from xguard.gate import sessions  # off an allowed command's path: limits may be unset

    if not session or session == sessions.NO_SESSION:
        return "_nosession"
    if sessions.safe_name(session) and not session.startswith("_"):
        return session
    from xguard.audit.log import sha256

    return "_h" + sha256(session.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _state_path(paths: Paths, session: str | None) -> str:
    return os.path.join(paths.state_dir_s, "limits", bucket(session) + ".json")


def has_state(paths: Paths, session: str) -> bool:
    """Whether the limits have counted anything for this session."""
    return os.path.exists(_state_path(paths, session))


class _Locked:
    """A session's counters, read and written under flock(LOCK_EX)."""

    def __init__(self, paths: Paths, session: str | None) -> None:
        self.path = _state_path(paths, session)
        try:
            self.fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
            )
        except FileNotFoundError:
            from xguard.paths import ensure_dir

            ensure_dir(os.path.dirname(self.path))
            self.fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
            )
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        raw = b""
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            raw += chunk
        self.size = len(raw)
        self.state: dict[str, Any] = {}
        if raw.strip():
            try:
                from xguard.gate.sessions import loads

                obj = loads(raw.decode("utf-8"))
                if not isinstance(obj, dict):
                    raise ValueError
                self.state = obj
            except (ValueError, UnicodeDecodeError):
                # Fail closed: a counter file we cannot read may have held a trip.
                self.state = {
                    "tripped": {
                        "at": time.time(),
                        "why": f"the limits file {self.path} was unreadable",
                    }
                }

    def save(self, sync: bool = False) -> None:
        from xguard.audit.log import dumps

        data = dumps(self.state).encode("utf-8", "surrogateescape")
        # Padding with blanks (valid JSON) instead of truncating: no moment
        # where the file holds half a record or nothing at all.
        if len(data) < self.size:
            data += b" " * (self.size - len(data))
        os.pwrite(self.fd, data, 0)
        if self.size > 4096 and len(data.rstrip()) * 4 < self.size:
            os.ftruncate(self.fd, len(data.rstrip()))  # shrink now and then, under the lock
        if sync:
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)  # drops the lock


def _recent(times: list[float], since: float) -> list[float]:
    return [t for t in times if t > since]


# ---------------------------------------------------------------------------
# The runner's hooks.


def session_profile(environ: Any, session: str | None) -> str | None:
    """The profile the command's session was started for (None: not started for one)."""
    sid = session or environ.get("XGUARD_SESSION")
    if not sid:
        return None
    from xguard.gate.sessions import profile_of

    return profile_of(environ, sid)


def before_decision(gate: GateLike, req: Request) -> Refusal | None:
    """Session checks, before the command is decided (sessions.check)."""
    if not req.session and not gate.ruleset.settings.get("sessions") and not gate.ruleset.profiles:
        return None  # fast path: no session and no session policy anywhere
    from xguard.gate.sessions import check

    r = check(gate, req.session, gate.profile)
    return Refusal(*r) if r else None


def after_decision(gate: GateLike, req: Request, decision: Decision) -> Refusal | None:
    """Apply the limits to a decided command: may escalate `decision` in place
    (loop breaker), or refuse it (rate caps, a tripped session). Records what
    the counters need. A `deny` is left to the pipeline."""
    if decision.decision == "deny":
        return None
    conf = effective(gate)
    rate = conf.get("rate") or {}
    loop = conf.get("loop") or {}
    if not rate and not loop:
        return None
    rules = _rule_index(gate.ruleset)
    units = [(d, is_read(d, rules)) for d in decision.units]
    all_reads = decision.decision == "allow" and all(r for _, r in units)
    st = _Locked(gate.paths, req.session)
    try:
        return _apply(
            gate, req, decision, st=st, rate=rate, loop=loop, units=units, all_reads=all_reads
        )
    finally:
        st.close()


def _apply(
    gate: GateLike,
    req: Request,
    decision: Decision,
    *,
    st: _Locked,
    rate: dict[str, Any],
    loop: dict[str, Any],
    units: list[tuple[Any, bool]],
    all_reads: bool,
) -> Refusal | None:
    s = st.state
    s["session"] = req.session  # the real id, for buckets named by a hash
    now = time.time()
    who = f"session {req.session}" if req.session else "commands without a session"
    from xguard.gate.sessions import NO_SESSION

    reset = f"xguard session reset {req.session or NO_SESSION}"

    tripped = s.get("tripped")
    if tripped and not all_reads:
        return Refusal(
            "loop.trip_at",
            f"{who} tripped the loop breaker at {_ts(tripped['at'])} ({tripped.get('why', '')}): "
            f"nothing but allowed reads runs until a reviewer resets it ({reset})",
        )

    cmds = _recent(s.get("cmds", []), now - RATE_WINDOW)
    cpm = rate.get("commands_per_minute")
    if cpm is not None and len(cmds) >= cpm:
        return Refusal(
            "rate.commands_per_minute",
            f"rate cap: {who} ran {len(cmds)} commands in the last minute "
            f"(limits.rate.commands_per_minute is {cpm}); wait, or raise "
            f"{_where(gate, 'rate.commands_per_minute')}",
        )
    changed = cpm is not None

    if loop and not tripped:
        trip = _loop_breaker(s, decision, units, loop, now)
        changed = True
        if trip is not None:
            s["tripped"] = {"at": now, "why": trip}
            st.save(sync=True)
            return Refusal(
                "loop.trip_at",
                f"{who} tripped the loop breaker: {trip}; nothing but allowed reads runs "
                f"until a reviewer resets it ({reset})",
                tripped=s["tripped"],
            )

    per_hour = rate.get("approvals_per_hour")
    if decision.decision == "require_approval" and per_hour is not None and _new_ask(gate, req):
        asks = _recent(s.get("asks", []), now - ASK_WINDOW)
        if len(asks) >= per_hour:
            if changed:
                st.save()
            return Refusal(
                "rate.approvals_per_hour",
                f"rate cap: {who} asked for approval {len(asks)} times in the last hour "
                f"(limits.rate.approvals_per_hour is {per_hour}); wait, or raise "
                f"{_where(gate, 'rate.approvals_per_hour')}",
            )
        s["asks"] = [*asks, now]
        changed = True
    if cpm is not None:
        s["cmds"] = [*cmds, now]  # only a command that passed every limit counts as run
    if changed:
        st.save()
    return None


def _loop_breaker(
    s: dict[str, Any],
    decision: Decision,
    units: list[tuple[Any, bool]],
    loop: dict[str, Any],
    now: float,
) -> str | None:
    """Count this command's units that can change something (by rule and by
    command); escalate the allowed ones over `same_rule`/`same_command`;
    return why the session trips when a count reaches `trip_at`."""
    window = _seconds(loop.get("window"), DEFAULT_LOOP_WINDOW)
    caps = {"rule": loop.get("same_rule"), "command": loop.get("same_command")}
    hits: dict[str, list[float]] = {}
    for k, v in (s.get("loop") or {}).items():
        recent = _recent(v, now - window)
        if recent:
            hits[k] = recent
    worst: tuple[int, str] = (0, "")
    escalate: list[tuple[Any, str]] = []
    for d, read in units:
        if read or d.decision == "deny":
            continue
        keys = [("rule", "r:" + i) for i in d.rule_ids if not i.startswith(("builtin:", "default"))]
        if d.kind in ("command", "sql"):
            keys.append(("command", "c:" + command_key(d.text)))
        why = ""
        for kind, key in keys:
            hits.setdefault(key, []).append(now)
            n = len(hits[key])
            worst = max(worst, (n, key))
            cap = caps[kind]
            if cap is not None and n > cap and not why:
                label = f"rule {key[2:]}" if kind == "rule" else f"`{key[2:]}`"
                why = (
                    f"loop breaker: {label} {n} times within {_human(window)} "
                    f"(limits.loop.same_{kind} is {cap})"
                )
        if why:
            escalate.append((d, why))
    s["loop"] = hits
    trip_at = loop.get("trip_at")
    if trip_at is not None and worst[0] >= trip_at:
        n, key = worst
        what = f"`{key[2:]}`" if key.startswith("c:") else f"rule {key[2:]}"
        return f"{what} {n} times within {_human(window)}, limits.loop.trip_at is {trip_at}"
    for d, why in escalate:
        if d.decision == "allow":
            d.decision = "require_approval"
            d.why = f"{why}; {d.why}" if d.why else why
            decision.reasons.append(f"{d.text}: {why}")
            if decision.decision == "allow":
                decision.decision = "require_approval"
    return None


def _new_ask(gate: GateLike, req: Request) -> bool:
    """Whether this require_approval will ask a person: not when an answer
    (a `--for` approval, a late denial) or a pending request for exactly
    this command already exists. Peeks at the queue's files, read-only, with
    the queue's own key (same text, cwd, session, profile, flags)."""
    from xguard.gate.request import request_key

    how = ["argv"] if req.argv is not None else ["shell", *req.shell_args, "--", *req.positional]
    key = request_key(req.text, gate.cwd, req.session, req.profile or gate.profile, how)
    spool = gate.paths.spool_dir_s
    answers = os.path.join(spool, "answers")
    from xguard.gate.sessions import read_json

    now = time.time()
    try:
        for n in os.listdir(answers):
            if n.startswith(key + "."):
                a = read_json(os.path.join(answers, n))
                if a is not None and a.get("until", 0) > now:
                    return False
    except FileNotFoundError:
        pass
    try:
        names = set(os.listdir(spool))
    except FileNotFoundError:
        return True
    for n in names:
        if n.endswith(".json") and not n.startswith(".") and n[:-5] + ".decision" not in names:
            r = read_json(os.path.join(spool, n))
            if r is not None and r.get("key") == key:
                return False
    return True


def audit_refusal(
    gate: GateLike,
    req: Request,
    decision: Decision | None,
    why: Refusal,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write the audit records of a refusal (a `decision` line with decision
    deny and `limit`, and `session_tripped` when this command tripped the
    session); return the line to show the agent, without the `xguard: ` prefix.
    For front ends that answer the agent otherwise than on stderr (hooks, the broker)."""
    from xguard.util import new_id, printable

    # _Undecided has the fields of a Decision that base_record reads.
    d: Decision = decision if decision is not None else _Undecided()  # type: ignore[assignment]
    record = gate.base_record(req, d, new_id())
    record["decision"] = "deny"
    if extra:
        record.update(extra)
    log = gate.audit()
    log.append("decision", **record, limit=why.limit, note=why.message)
    if why.tripped is not None:
        keys = ("id", "session", "profile", "user", "host", "pid", "cwd", "command")
        log.append(
            "session_tripped",
            **{k: record[k] for k in keys},
            note=why.tripped.get("why"),
            limit=why.limit,
        )
    if why.limit.startswith("session"):
        return why.message
    return f"denied: {printable(req.text, 200)} — {why.message}"


def refuse(gate: GateLike, req: Request, decision: Decision, why: Refusal) -> int:
    """Audit a refusal and tell the agent on stderr; the exit status (77)."""
    import sys

    from xguard.errors import ExitCode

    sys.stderr.write(f"xguard: {audit_refusal(gate, req, decision, why)}\n")
    return int(ExitCode.NOPERM)


class _Undecided:
    # The session is refused before the command is decided: the audit
    # record then names no units and no rules.
    decision = "deny"
    units: tuple[Any, ...] = ()
    rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# For `xguard session reset|show` and the reviewer.


def clear(paths: Paths, session: str, by: str) -> dict[str, Any]:
    """Drop a session's trip and counters; returns what was there."""
    st = _Locked(paths, session)
    try:
        old = dict(st.state)
        st.state = {"reset": {"at": time.time(), "by": by}}
        st.save(sync=True)
    finally:
        st.close()
    return old


def snapshot(paths: Paths, session: str) -> dict[str, Any]:
    """A session's counters as they are now (read-only; for `session show`)."""
    from xguard.gate.sessions import read_json

    return read_json(_state_path(paths, session)) or {}


def tripped_sessions(paths: Paths) -> list[dict[str, Any]]:
    """Sessions whose loop breaker has tripped: [{"session", "at", "why"}] (for the reviewer)."""
    from xguard.gate import sessions

    folder = os.path.join(paths.state_dir_s, "limits")
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for n in sorted(names):
        if not n.endswith(".json"):
            continue
        s = sessions.read_json(os.path.join(folder, n))
        t = (s or {}).get("tripped")
        if t:
            sid = (s or {}).get("session") or (
                sessions.NO_SESSION if n == "_nosession.json" else n[:-5]
            )
            out.append({"session": sid, "at": t.get("at"), "why": t.get("why")})
    return out


def reset_session(
    paths: Paths, session_id: str, by: str, log: AuditLog | None = None
) -> dict[str, Any]:
    """Clear a session's loop-breaker trip and counters (a reviewer's verb:
    `xguard session reset ID`, or a key in `xguard review`).

    `session_id` may be sessions.NO_SESSION ("-") for the commands that run without a
    session. Returns what was cleared ({"tripped": {...} | None, ...});
    LookupError when xguard knows nothing about that id.
    """
    from xguard.gate import sessions

    rec = sessions.load(paths, session_id)
    if rec is None and session_id != sessions.NO_SESSION and not has_state(paths, session_id):
        raise LookupError(f"no session {session_id!r} (see xguard session list)")
    cleared = clear(paths, session_id, by)
    if log is not None:
        log.append(
            "session_reset",
            session=None if session_id == sessions.NO_SESSION else session_id,
            profile=rec.get("profile") if rec else None,
            reviewer=by,
            note="loop breaker reset" + (" (it had tripped)" if cleared.get("tripped") else ""),
            tripped=cleared.get("tripped"),
        )
    return cleared


def resolve_session(paths: Paths, ref: str) -> str:
    """An exact id or an unambiguous prefix -> the id; LookupError otherwise."""
    from xguard.gate import sessions

    ref = ref.strip()
    if ref == sessions.NO_SESSION or sessions.load(paths, ref) is not None:
        return ref
    hits = [r["id"] for r in sessions.all_sessions(paths) if ref and r["id"].startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise LookupError(f"{ref!r} is ambiguous: {', '.join(hits)}")
    if sessions.safe_name(ref) and has_state(paths, ref):
        return ref  # an unmanaged id the limits know (an agent runtime's session)
    raise LookupError(f"no session {ref!r} (see xguard session list)")


def _ts(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _human(seconds: float) -> str:
    s = int(seconds)
    for unit, n in (("h", 3600), ("m", 60)):
        if s >= n and s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


# ---------------------------------------------------------------------------
# Row caps and live baselines (issue 13): what the impact preview found,
# held against `limits.max_rows`/`max_rows_hard` and `baseline: live`.

_DML_START = ("delete ", "update ", "truncate ", "drop table ", "insert ", "with ")


def row_caps(gate: GateLike, d: Any) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
    """((max_rows, where it is set) | None, (max_rows_hard, where) | None) for
    one decided unit: the lowest of the limits in effect and of the rules it matched."""
    conf = effective(gate)
    rules = _rule_index(gate.ruleset)
    out: list[tuple[int, str] | None] = []
    for key in ("max_rows", "max_rows_hard"):
        best = (conf[key], _where(gate, key)) if conf.get(key) is not None else None
        for rid in d.rule_ids:
            r = rules.get(rid)
            v = getattr(r, key, None) if r is not None else None
            if v is not None and (best is None or v < best[0]):
                best = (v, f"limits.{key} of rule {rid}")
        out.append(best)
    return out[0], out[1]


def preview_units(gate: GateLike, decision: Decision) -> list[int]:
    """The units the impact preview measures: DML that is not allowed outright
    or that a row cap applies to, and `kubectl scale` under a live baseline.
    Cheap, standard library only: on the hot path it decides whether
    xguard/gate/impact.py (and sqlglot) is imported at all."""
    if decision.decision == "deny":
        return []
    conf = effective(gate)
    top_caps = conf.get("max_rows") is not None or conf.get("max_rows_hard") is not None
    out = []
    rules = None
    for i, d in enumerate(decision.units):
        if d.kind == "sql":
            if d.decision == "deny" or (d.unit is not None and d.unit.meta):
                continue
            if not d.text.lower().startswith(_DML_START):
                continue
            if d.decision != "allow" or top_caps or any(row_caps(gate, d)):
                out.append(i)
        elif d.kind == "command" and d.decision != "deny" and d.rule_ids:
            words = d.unit.words if d.unit is not None else ()
            if not words or words[0].rsplit("/", 1)[-1] != "kubectl" or "scale" not in words:
                continue
            rules = rules or _rule_index(gate.ruleset)
            if any(getattr(rules.get(r), "live", None) for r in d.rule_ids):
                out.append(i)
    return out


def _escalate(decision: Decision, d: Any, to: str, why: str) -> None:
    from xguard.policy.rules import STRICTNESS

    if STRICTNESS[to] <= STRICTNESS[d.decision]:
        return
    d.decision = to
    d.why = f"{why}; {d.why}" if d.why else why
    line = f"{d.text}: {why}"
    if to == "deny":
        decision.reasons.insert(0, line)  # the deny message names the unit that decided
    else:
        decision.reasons.append(line)
    if STRICTNESS[to] > STRICTNESS[decision.decision]:
        decision.decision = to


def apply_impact(
    gate: GateLike, decision: Decision, items: list[dict[str, Any]], describe: Any
) -> None:
    """Hold each preview against its unit's caps; may make `decision` stricter,
    never looser. A cap that cannot be checked (the preview failed) asks a person."""
    rules = _rule_index(gate.ruleset)
    for it in items:
        d = decision.units[it["unit"]]
        if "replicas" in it or (d.kind == "command" and "error" in it):
            _apply_live(decision, d, it, rules)
            continue
        soft, hard = row_caps(gate, d)
        if soft is None and hard is None:
            continue
        rows = it.get("rows")
        if rows is None:
            cap = soft or hard
            assert cap is not None
            if d.decision == "allow":
                what = it.get("error") or "the row count is unknown"
                _escalate(
                    decision,
                    d,
                    "require_approval",
                    f"the row cap ({cap[1]} is {cap[0]:,}) cannot be checked: {what}",
                )
            continue
        said = describe(it)
        if hard is not None and rows > hard[0]:
            _escalate(
                decision, d, "deny", f"{said}: over the hard cap of {hard[0]:,} rows ({hard[1]})"
            )
        elif soft is not None and rows > soft[0]:
            _escalate(
                decision,
                d,
                "require_approval",
                f"{said}: over the cap of {soft[0]:,} rows ({soft[1]})",
            )


def _apply_live(decision: Decision, d: Any, it: dict[str, Any], rules: dict[str, Any]) -> None:
    growth = None
    for rid in d.rule_ids:
        live = getattr(rules.get(rid), "live", None)
        if live:
            g = min(live.values())
            growth = g if growth is None else min(growth, g)
    if growth is None:
        return
    if "error" in it:
        _escalate(
            decision, d, "require_approval", f"the live baseline cannot be read: {it['error']}"
        )
        return
    now, to = it["replicas"], it["to"]
    if to > now * growth:
        _escalate(
            decision,
            d,
            "require_approval",
            f"{it['summary']}: over {growth:g} x the {now} running now ({now * growth:g})",
        )


def runtime_cap(gate: GateLike, d: Any, rows: int | None) -> tuple[int, str] | None:
    """The cap a psql statement is held to when it runs (issue 13): max_rows for
    a statement previewed under it; max_rows_hard for one a person approved
    above it, or without a count (a failed preview under a cap always asks)."""
    soft, hard = row_caps(gate, d)
    if soft is not None and rows is not None and rows <= soft[0]:
        return soft
    return hard

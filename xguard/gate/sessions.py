"""Sessions: a window of time, opened by a person, that an agent's commands run in (issue 5).

`xguard session start` writes one record, `state/sessions/<id>.json`, and
prints `export XGUARD_SESSION=<id>`; every command then carries the id. A
session ends when its TTL runs out or when someone ends it, and from then on
its commands do not run (exit 77) and the approvals granted `--for` a while
inside it are dead too (`grant_alive`, checked where grants are honoured).
With `sessions: {required: true}` a command without a live session does not
run at all.

Ids that xguard did not issue (an agent runtime's own session id, passed by
an adapter) are "unmanaged": they never expire and only `required` refuses
them. The loop breaker's trip is kept with the counters, in limits.py; its
`reset` lives here because it is a reviewer's verb on a session.

Records are written atomically (temporary file, fsync, rename) and read on
every command, so this module uses the standard library only and not even
`json` (~1.5 ms): records are read with the C scanner behind `json` and
written with audit.dumps, byte for byte what json.dumps gives.
"""

from __future__ import annotations

import os
import time

from xguard.audit.log import dumps, utc_timestamp
from xguard.errors import ConfigError
from xguard.paths import ensure_dir

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from typing import Any

    from xguard.paths import Paths

ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # the runner's: easy to read aloud and type
ID_LENGTH = 8
NO_SESSION = "-"  # how `session reset` names the commands that run without a session
DEFAULT_TTL = 3600.0
DEFAULT_MAX_TTL = 8 * 3600.0
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
START_HINT = 'eval "$(xguard session start --ttl 30m)"'


class _Ctx:
    # What _json.make_scanner reads from a JSONDecoder; plain types only.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


_scanner: list[Any] = []  # made on first use


def loads(text: str) -> Any:
    """json.loads for the files xguard writes, without importing `json` (and `re`)."""
    if not _scanner:
        try:
            import _json

            _scanner.append(_json.make_scanner(_Ctx()))  # type: ignore[arg-type]  # duck-typed
        except (ImportError, AttributeError):  # pragma: no cover - not CPython
            import json

            return json.loads(text)
    text = text.strip()
    try:
        obj, end = _scanner[0](text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return obj


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            obj = loads(f.read().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def write_json(path: str, obj: dict[str, Any]) -> None:
    """Replace `path` with `obj` all at once (temporary file, fsync, rename)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (dumps(obj) + "\n").encode("utf-8", "surrogateescape"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def safe_name(sid: str) -> bool:
    """Whether `sid` can name a file: ids come from the environment, which the agent controls."""
    return 0 < len(sid) <= 64 and sid[0] not in "-." and all(c in _SAFE for c in sid)


def new_id() -> str:
    """A fresh session id (8 characters of ID_ALPHABET)."""
    return "".join(ID_ALPHABET[b % len(ID_ALPHABET)] for b in os.urandom(ID_LENGTH))


def record_path(paths: Paths, sid: str) -> str:
    """Where a session's record lives."""
    return os.path.join(paths.sessions_dir_s, f"{sid}.json")


def load(paths: Paths, sid: str | None) -> dict[str, Any] | None:
    """The record of a session xguard started, or None (no id, or an id it did not issue)."""
    if not sid or not safe_name(sid):
        return None
    rec = read_json(record_path(paths, sid))
    return rec if rec is not None and rec.get("id") == sid else None


def state(rec: dict[str, Any], now: float | None = None) -> tuple[str, float | None]:
    """-> ("live" | "expired" | "ended", when it stopped being live)."""
    now = time.time() if now is None else now
    ended = rec.get("ended")
    expires = rec.get("expires")
    if ended and (expires is None or ended["at"] < expires):
        return "ended", ended["at"]
    if expires is not None and now >= expires:
        return "expired", expires
    return "live", None


def ts(epoch: float) -> str:
    """RFC 3339 UTC, to the second (what people read in messages)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def settings(ruleset: Any, profile: str | None) -> dict[str, Any]:
    """The `sessions:` settings in effect: the profile's keys over the top-level ones."""
    top = ruleset.settings.get("sessions") or {}
    prof = ((ruleset.profiles.get(profile) or {}).get("sessions") or {}) if profile else {}
    return {**top, **prof} if prof else top


# ---------------------------------------------------------------------------
# The runner's checks (hot path).


def profile_of(environ: dict[str, str] | os._Environ[str], sid: str | None) -> str | None:
    """The profile a session was started for, so its commands run under it
    without the agent having to set XGUARD_PROFILE as well."""
    if not sid or not safe_name(sid):
        return None
    from xguard.paths import get_paths

    rec = load(get_paths(dict(environ)), sid)
    return rec.get("profile") if rec else None


def check(gate: Any, session: str | None, profile: str | None) -> tuple[str, str] | None:
    """(limit, message) when the session forbids running anything, else None.

    Refuses: an expired or ended session; a session started for another
    profile than the one this command runs under; and, with
    `sessions.required`, no session or one xguard did not start.
    """
    conf = settings(gate.ruleset, profile)
    required = bool(conf.get("required"))
    if not session:
        if not required:
            return None
        return (
            "sessions.required",
            "no live session, and this setup requires one (sessions.required); "
            f"a person starts one with: {START_HINT}",
        )
    rec = load(gate.paths, session)
    if rec is None:
        if not required:
            return None  # an unmanaged id: limits still count it, nothing expires it
        return (
            "sessions.required",
            f"session {session} is not one that xguard started, and this setup "
            f"requires one (sessions.required); a person starts one with: {START_HINT}",
        )
    st, when = state(rec)
    if st != "live":
        how = f" (ended by {rec['ended'].get('by') or '?'})" if st == "ended" else ""
        return (
            "session.expired",
            f"session {session} expired at {ts(when or 0)}{how}; start a new one",
        )
    if rec.get("profile") and rec["profile"] != profile:
        return (
            "session.profile",
            f"session {session} was started for profile {rec['profile']}, "
            f"not {profile or 'the default profile'}; run with XGUARD_PROFILE={rec['profile']} "
            "or start a session for this profile",
        )
    return None


def grant_alive(paths: Paths, answer: dict[str, Any]) -> bool:
    """Whether an approval granted inside a session may still be used: not
    once the session xguard started for it has expired or ended (issue 5)."""
    rec = load(paths, answer.get("session"))
    return rec is None or state(rec)[0] == "live"


# ---------------------------------------------------------------------------
# Verbs (off the hot path; `xguard session …` and the reviewer).


def start(
    paths: Paths,
    ruleset: Any,
    *,
    ttl: float | None = None,
    profile: str | None = None,
    name: str | None = None,
    by: str = "",
    log: Any = None,
) -> dict[str, Any]:
    """Open a session and record it; ValueError when the TTL is 0 or over sessions.max_ttl."""
    conf = settings(ruleset, profile)
    max_ttl = _duration(conf.get("max_ttl"), DEFAULT_MAX_TTL)
    if ttl is None:
        ttl = min(_duration(conf.get("default_ttl"), DEFAULT_TTL), max_ttl)
    if ttl <= 0:
        raise ValueError("the TTL must be longer than 0s")
    if ttl > max_ttl:
        raise ValueError(
            f"a TTL of {_human(ttl)} is longer than sessions.max_ttl ({_human(max_ttl)})"
        )
    ensure_dir(paths.sessions_dir_s)
    now = time.time()
    while True:
        sid = new_id()
        if not os.path.exists(record_path(paths, sid)):
            break
    rec = {
        "v": 1,
        "id": sid,
        "name": name,
        "profile": profile,
        "user": by,
        "host": os.uname().nodename,
        "created": now,
        "created_ts": utc_timestamp(int(now * 1e9)),
        "ttl": ttl,
        "expires": now + ttl,
        "expires_ts": utc_timestamp(int((now + ttl) * 1e9)),
        "ended": None,
    }
    write_json(record_path(paths, sid), rec)
    if log is not None:
        log.append(
            "session_start",
            session=sid,
            profile=profile,
            user=by,
            note=name,
            ttl_s=ttl,
            expires=rec["expires_ts"],
        )
    return rec


def end(paths: Paths, sid: str, by: str, log: Any = None) -> dict[str, Any]:
    """End a session now; LookupError: no such session; ValueError: it already ended."""
    rec = load(paths, sid)
    if rec is None:
        raise LookupError(f"no session {sid!r} (see xguard session list)")
    if rec.get("ended"):
        raise ValueError(f"session {sid} already ended at {ts(rec['ended']['at'])}")
    now = time.time()
    rec["ended"] = {"at": now, "ts": utc_timestamp(int(now * 1e9)), "by": by}
    write_json(record_path(paths, sid), rec)
    if log is not None:
        log.append("session_end", session=sid, profile=rec.get("profile"), user=by, reviewer=by)
    return rec


def all_sessions(paths: Paths) -> list[dict[str, Any]]:
    """Every session record, oldest first, each with its current `state`."""
    try:
        names = os.listdir(paths.sessions_dir_s)
    except FileNotFoundError:
        return []
    now = time.time()
    out = []
    for n in names:
        if not n.endswith(".json") or n.startswith("."):
            continue
        rec = load(paths, n[:-5])
        if rec is not None:
            rec["state"] = state(rec, now)[0]
            out.append(rec)
    out.sort(key=lambda r: (r.get("created", 0), r["id"]))
    return out


def _duration(value: Any, default: float) -> float:
    from xguard.util import parse_duration

    if value is None:
        return default
    v = parse_duration(value)
    if v is None:
        raise ConfigError(f"sessions: {value!r} is not a duration (like 30s, 15m, 2h)")
    return v


def _human(seconds: float) -> str:
    s = int(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n and s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"

"""Small helpers every layer uses. Imports nothing of xguard, and only the
standard library modules that the hot path already has loaded."""

from __future__ import annotations

import os
import sys

# SHA-256 without hashlib (which loads OpenSSL): the built-in module, whose
# name changed in 3.12. Asking for the right name first matters: a failed
# import searches every folder on sys.path, a cost paid on each command.
if sys.version_info >= (3, 12):
    try:
        from _sha2 import sha256
    except ImportError:  # pragma: no cover - interpreters without the built-in module
        from hashlib import sha256
else:
    try:
        from _sha256 import sha256
    except ImportError:  # pragma: no cover
        from hashlib import sha256  # noqa: F401 - imported by the audit log, rules and confine

ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: easy to read aloud and type


def new_id(n: int = 6) -> str:
    """A short random id (requests, commands)."""
    b = os.urandom(n)
    return "".join(ID_ALPHABET[x % len(ID_ALPHABET)] for x in b)


_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def shell_join(argv: list[str]) -> str:
    """shlex.join without shlex (it imports re: ~6 ms on the `run` path);
    tests/unit/test_util.py proves the two equal."""
    return " ".join(
        a if a and _SHELL_SAFE.issuperset(a) else "'" + a.replace("'", "'\"'\"'") + "'"
        for a in argv
    )


def printable(text: str, limit: int = 400) -> str:
    """The command as a person should see it: control characters escaped."""
    out = []
    for c in text:
        if c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 32 or ord(c) == 127 or (not c.isascii() and not c.isprintable()):
            out.append(f"\\u{ord(c):04x}" if ord(c) > 0xFF else f"\\x{ord(c):02x}")
        else:
            out.append(c)
    s = "".join(out)
    return s if len(s) <= limit else s[: limit - 1] + "…"


_UNITS = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float | None:
    """`30s`, `15m`, `2h`, `1d`, `500ms` or a bare number (seconds) -> seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    v = value.strip()
    unit = ""
    for u in ("ms", "s", "m", "h", "d", "w"):
        if v.endswith(u):
            unit, v = u, v[: -len(u)].rstrip()
            break
    if (
        not v
        or not all(c.isdigit() or c == "." for c in v)
        or v.count(".") > 1
        or v.startswith(".")
        or v.endswith(".")
    ):
        return None
    return float(v) * _UNITS[unit]


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(value: object) -> int | None:
    """`10MB`, `512k`, `1GiB` (powers of 1024) or a bare number of bytes -> bytes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    v = value.strip().lower().removesuffix("ib").removesuffix("b")
    unit = v[-1:] if v[-1:] in ("k", "m", "g") else ""
    v = v[: len(v) - len(unit)].strip()
    if not v.isdigit():
        return None
    return int(v) * _SIZE_UNITS[unit]


def format_age(seconds: float) -> str:
    """A short age for people: 12s, 5m, 2h05m, 3d."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def user_name(uid: int | None = None) -> str:
    """A user's name (this process's by default): what a decision's `by` and
    the audit's `user` and `reviewer` say."""
    import pwd

    uid = os.getuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# Set by a warm worker (xguard/commands/warmserver.py), which stands in for
# the client process: the agent is the client's parent, not the server.
_PARENT: list[int] = []


def proc_ppid(pid: int) -> int | None:
    """Process `pid`'s parent, from /proc/PID/stat; None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # The name field is "(comm)" and may itself hold spaces and parentheses.
        return int(data[data.rfind(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def parent_pid() -> int:
    """The process that ran this xguard: the agent, whom a reviewer sees and
    whose ancestors the no-self-approval check walks."""
    return _PARENT[0] if _PARENT else os.getppid()


# A file changed less than this long ago is not trusted to its recorded
# times: two writes within one timestamp tick look alike (git's "racy" rule).
RACY_NS = 1_000_000_000


def settled(paths: list[str] | tuple[str, ...]) -> tuple[object, ...] | None:
    """What the kernel says of each path (device, inode, size, change and
    modification times; None for one that does not exist), for telling later
    whether any changed; None when that cannot vouch for them: one cannot be
    read, or changed within the last RACY_NS."""
    import time

    now = time.time_ns()
    out: list[object] = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            out.append(None)
            continue
        except OSError:
            return None
        if now - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
            return None
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def inodes(paths: list[str] | tuple[str, ...]) -> tuple[tuple[int, int] | None, ...]:
    """(device, inode) of what each path names now (None: nothing, or unreadable)."""
    out: list[tuple[int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_dev, st.st_ino))
    return tuple(out)


def say(line: str) -> None:
    """One line to the agent on stderr. A reader that has gone does not make a
    command that did not run look like success: the caller's status stands."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (BrokenPipeError, OSError):
        pass


def dsn_server(dsn: str) -> str:
    """Which server a libpq connection string points at, for messages (never
    the password). Imports psycopg's parser: call it only where one is in use."""
    import psycopg.conninfo

    try:
        d = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "an unparsable connection string"
    if d.get("service"):
        return f"service {d['service']}"
    host = str(d.get("host") or d.get("hostaddr") or os.environ.get("PGHOST") or "local socket")
    port = str(d.get("port") or os.environ.get("PGPORT") or "5432")
    db = d.get("dbname") or os.environ.get("PGDATABASE")
    return f"{host}:{port}" + (f"/{db}" if db else "")

"""The agent's side of strict mode (issue 6): ask the broker, run what it allows.

In strict mode the agent runs as its own Unix user and the broker (`xguard
serve`, running as the reviewer) owns the rules, the queue and the audit log.
This side never reads the rules, never writes a decision and never writes
the log. For each command it sends one request over the broker's Unix socket
and then, on the same connection:

    -> {"op": "run", "text", "argv", "shell_args", "positional", "cwd", ...}
    <- {"status": "waiting", "id", "wait", "message"}      (require_approval)
    <- {"status": "exit", "code", "message"}               (denied, pending, error)
    <- {"status": "run", "id", "keep", "set", "shell", "max_runtime", ...}
    -> {"op": "exit", "exit_code", "duration_ms", "signal", "timed_out"}
    <- {"status": "ok"}

One JSON object per line. The broker learns who is asking from the socket
(SO_PEERCRED), never from the message: whatever this side claims, it cannot
become a reviewer, and a denial or a pending approval can only end here.

Strict mode applies to this process when /etc/xguard/client.conf (root's,
not writable by anyone else) lists this user, or when XGUARD_BROKER names a
socket (set by the login setup: sshd's SetEnv, a systemd unit). The variable
can turn strict mode on, never off: client.conf wins.

Hot path: standard library only, `_socket` rather than `socket` (which
drags in selectors and array, ~3 ms) and `_json`'s scanner rather than `json`
(which imports re and enum, ~6 ms).
"""

from __future__ import annotations

import os
import sys

from xguard.errors import ExitCode, XguardError
from xguard.gate.strictmode import ENV_VAR

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 1
CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 60.0  # the broker decides (or says "waiting") within this
ACK_TIMEOUT = 15.0  # the broker acknowledges the exit report within this
WAIT_MARGIN = 15.0  # beyond the approval wait the broker announced
MAX_LINE = 8 << 20


class _JsonContext:
    # What _json.make_scanner reads off json.JSONDecoder; strict JSON only.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")


_scanner: Any = None


def loads(data: bytes) -> Any:
    """One JSON value from bytes (the broker's answers are ASCII)."""
    global _scanner  # noqa: PLW0603 - built on first use, off the path that never needs it
    if _scanner is None:
        import _json

        _scanner = _json.make_scanner(_JsonContext())  # type: ignore[arg-type]  # duck-typed
    text = data.decode("utf-8", "surrogateescape").strip()
    try:
        obj, end = _scanner(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("extra data after JSON")
    return obj


_INF = float("inf")


def _enc(obj: Any, q: Any) -> str:
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return q(obj)
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        return float.__repr__(obj) if -_INF < obj < _INF else "null"  # NaN and ±inf are not JSON
    if isinstance(obj, dict):
        return "{" + ",".join(q(str(k)) + ":" + _enc(v, q) for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_enc(v, q) for v in obj) + "]"
    return q(str(obj))


def dumps(obj: Any) -> bytes:
    """Compact ASCII JSON; argv bytes decoded with surrogateescape travel as \\udcXX escapes."""
    import _json

    return _enc(obj, _json.encode_basestring_ascii).encode("ascii")


class BrokerError(XguardError):
    """The broker could not be reached or broke the protocol: fail closed, nothing ran."""

    exit_code = ExitCode.SOFTWARE


# ---------------------------------------------------------------------------
# The connection.


class Conn:
    """One line-delimited JSON connection to the broker."""

    def __init__(self, path: str) -> None:
        import _socket

        self.path = path
        self.buf = b""
        self.s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.s.settimeout(CONNECT_TIMEOUT)
        try:
            self.s.connect(path)
        except OSError as e:
            self.s.close()
            why = e.strerror or str(e)
            raise BrokerError(
                f"strict mode: cannot reach the broker at {path}: {why}; nothing ran "
                "(is `xguard serve` running?)"
            ) from None

    def send(self, obj: dict[str, Any]) -> None:
        data = dumps(obj)
        self.s.settimeout(ACK_TIMEOUT)
        try:
            self.s.sendall(data + b"\n")
        except OSError as e:
            raise BrokerError(
                f"strict mode: the broker at {self.path} went away: {e.strerror or e}"
            ) from None

    def recv(self, timeout: float | None) -> dict[str, Any]:
        """The next message; BrokerError on timeout, end of stream or garbage."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buf:
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    raise BrokerError(
                        f"strict mode: no answer from the broker at {self.path} "
                        f"within {timeout:g}s; nothing ran"
                    )
                self.s.settimeout(left)
            else:
                self.s.settimeout(None)
            try:
                chunk = self.s.recv(65536)
            except TimeoutError:
                continue
            except OSError as e:
                raise BrokerError(
                    f"strict mode: the broker at {self.path} went away: {e.strerror or e}"
                ) from None
            if not chunk:
                raise BrokerError(f"strict mode: the broker at {self.path} closed the connection")
            self.buf += chunk
            if len(self.buf) > MAX_LINE:
                raise BrokerError("strict mode: the broker sent an over-long message")
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            obj = loads(line)
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            raise BrokerError("strict mode: the broker sent something that is not a JSON object")
        return obj

    def close(self) -> None:
        self.s.close()


def request(sock_path: str, msg: dict[str, Any], timeout: float = ANSWER_TIMEOUT) -> dict[str, Any]:
    """One question, one answer."""
    conn = Conn(sock_path)
    try:
        conn.send({"v": PROTOCOL, **msg})
        return conn.recv(timeout)
    finally:
        conn.close()


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return os.environ.get("PWD", "/")


def _say(text: str | None) -> None:
    if text:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()


def _exit_answer(r: dict[str, Any]) -> int:
    _say(r.get("message"))
    code = r.get("code")
    return code if type(code) is int and 0 <= code < 256 else int(ExitCode.SOFTWARE)


# ---------------------------------------------------------------------------
# Gate one command through the broker.


class _Signalled(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def gate_via_broker(req: Any, sock_path: str) -> int:
    """Strict mode's gate_and_run: the broker decides, audits and waits; this
    process runs the command as the agent user and reports how it ended."""
    msg: dict[str, Any] = {
        "v": PROTOCOL,
        "op": "run",
        "text": req.text,
        "argv": req.argv,
        "shell_args": list(req.shell_args),
        "positional": list(req.positional),
        "cwd": _cwd(),
        "session": req.session or os.environ.get("XGUARD_SESSION") or None,
        "profile": req.profile or os.environ.get("XGUARD_PROFILE") or None,
        "wait": req.wait,
        "source": req.source,
        "ppid": os.getppid(),
    }
    if req.source == "ssh":
        msg["ssh"] = os.environ.get("SSH_CONNECTION")
    msg["can"] = can_confine()
    conn = Conn(sock_path)
    try:
        conn.send(msg)
        r = conn.recv(ANSWER_TIMEOUT)
        if r.get("status") == "waiting":
            r = _wait(conn, r)
        status = r.get("status")
        if status == "run":
            return _run(conn, req, r)
        if status == "exit":
            return _exit_answer(r)
        raise BrokerError(f"strict mode: unexpected answer from the broker: {str(status)[:40]!r}")
    finally:
        conn.close()


def _wait(conn: Conn, r: dict[str, Any]) -> dict[str, Any]:
    """Wait on the connection for the reviewer's answer; a signal cancels."""
    import signal

    rid = str(r.get("id"))
    wait = r.get("wait")
    timeout = (float(wait) if isinstance(wait, int | float) else ANSWER_TIMEOUT) + WAIT_MARGIN

    def on_signal(signum: int, _frame: object) -> None:
        raise _Signalled(signum)

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in sigs}
    try:
        _say(r.get("message"))  # after the handlers: whoever reads this line may signal us at once
        return conn.recv(timeout)
    except _Signalled as got:
        # Closing the connection is the cancel: the broker marks the request
        # cancelled and audits it (SPEC §4: a waiting xguard killed by a signal).
        conn.close()
        name = signal.Signals(got.signum).name
        _say(f"xguard: cancelled approval request {rid} ({name})")
        return {"status": "exit", "code": 128 + got.signum}
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


_SUPPORT: dict[str, Any] = {}


def _support() -> Any:
    """What confinement starts here, as the agent user (confine.support, asked
    once per process: the request says it, the run then uses it); None when
    it cannot be found out."""
    if "sup" not in _SUPPORT:
        from xguard.gate.confine import support
        from xguard.paths import get_paths

        try:
            _SUPPORT["sup"] = support(get_paths(dict(os.environ)).cache_dir_s)
        except (OSError, XguardError):
            _SUPPORT["sup"] = None
    return _SUPPORT["sup"]


def can_confine() -> dict[str, Any]:
    """What box this process, as the agent user, can start: the broker plans
    it under its rules (issue 11). The probe's answer is kept in the agent's
    own cache folder (editing it can only make commands fail or decisions
    stricter: see the broker's _can)."""
    from xguard.gate.confine import FORCE_ENV

    sup = _support()
    if sup is None:
        return {"bwrap": False, "landlock": 0}
    bwrap = bool(sup.bwrap)
    if os.environ.get(FORCE_ENV) == "landlock" and sup.abi >= 1:
        bwrap = False  # as locally: a choice between mechanisms that work
    return {"bwrap": bwrap, "landlock": sup.abi}


def _box(r: dict[str, Any]) -> Any:
    """The box the broker planned, or None for an unconfined run. A plan this
    side cannot start is an error, never a run without it."""
    plan = r.get("box")
    if plan is None:
        return None
    from xguard.gate.confine import Box

    def paths(key: str) -> list[str]:
        v = plan.get(key)
        if not isinstance(v, list) or not all(isinstance(p, str) and p[:1] == "/" for p in v):
            raise BrokerError(f"strict mode: the broker's box plan has a bad {key!r}")
        return list(v)

    if not isinstance(plan, dict) or plan.get("mechanism") not in ("bwrap", "landlock"):
        raise BrokerError("strict mode: the broker's box plan is not one this side knows")
    cwd = plan.get("cwd")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise BrokerError("strict mode: the broker's box plan has a bad 'cwd'")
    box = Box(plan["mechanism"], cwd)
    box.network = plan.get("network") is True
    box.writable = paths("writable")
    box.masked_dirs = paths("masked_dirs")
    box.masked_files = paths("masked_files")
    sup = _support()
    if sup is not None:
        box.bwrap, box.abi = sup.bwrap or "", sup.abi
    if (box.mechanism == "bwrap" and not box.bwrap) or (
        box.mechanism == "landlock" and box.abi < 1
    ):
        raise BrokerError(f"strict mode: {box.mechanism} cannot start here; nothing was run")
    return box


def _run(conn: Conn, req: Any, r: dict[str, Any]) -> int:
    """Run what the broker allowed, through the one executor, and report how it ended."""
    from xguard.gate.execenv import launch, scrub

    keep = [k for k in r.get("keep") or [] if isinstance(k, str)]
    set_ = {
        k: v for k, v in (r.get("set") or {}).items() if isinstance(k, str) and isinstance(v, str)
    }
    env = scrub(dict(os.environ), keep, set_)
    # Marks the command as gated (no self-approval, issue 3) and keeps nested
    # xguards going to the same broker.
    env["XGUARD_GATED"] = str(r.get("id"))
    if os.environ.get(ENV_VAR):
        env[ENV_VAR] = os.environ[ENV_VAR]
    max_runtime = r.get("max_runtime") if isinstance(r.get("max_runtime"), int | float) else None
    grace = float(r["kill_grace"]) if isinstance(r.get("kill_grace"), int | float) else 5.0
    rec = r.get("record")
    relay = _Relay(conn, rec["max_bytes"]) if isinstance(rec, dict) else None
    try:
        box = _box(r)
    except BrokerError as e:
        _report(conn, {"exit_code": 126, "duration_ms": 0, "note": e.message})
        raise
    result = launch(
        req,
        env,
        shell=str(r.get("shell") or "/bin/bash"),
        max_runtime=max_runtime,
        kill_grace=grace,
        recorder=relay,
        box=box,
    )
    _report(
        conn,
        {"exit_code": result.exit_code, "duration_ms": result.duration_ms, **result.fields},
    )
    # Nobody knows how it ended: never report success.
    return int(ExitCode.SOFTWARE) if result.exit_code is None else result.exit_code


class _Relay:
    """The executor's recorder in strict mode (issue 14): output goes to the
    broker as it is shown, and the broker stores it where the agent cannot
    edit it. Past `max_bytes` only the count travels. If the broker goes away
    the command and its output to the caller go on; the exit report then
    fails and says so."""

    def __init__(self, conn: Conn, max_bytes: Any) -> None:
        import time

        self.conn = conn
        self.room = max_bytes if type(max_bytes) is int and max_bytes >= 0 else 0
        self.counted = 0  # bytes over the cap, reported once at the end
        self.dead = False
        self.clock = time.monotonic_ns
        self.t0 = self.clock()

    def _send(self, msg: dict[str, Any]) -> None:
        if self.dead:
            return
        try:
            self.conn.send(msg)
        except XguardError:
            self.dead = True

    def _t(self) -> int:
        return (self.clock() - self.t0) // 1000

    def begin(self, tty: bool, cols: int, rows: int) -> None:
        self.t0 = self.clock()
        self._send({"op": "begin", "tty": tty, "cols": cols, "rows": rows})

    def write(self, stream: int, data: bytes) -> None:
        import binascii

        keep = data[: self.room]
        self.room -= len(keep)
        self.counted += len(data) - len(keep)
        if keep:
            b64 = binascii.b2a_base64(keep, newline=False).decode("ascii")
            self._send({"op": "out", "s": stream, "t": self._t(), "d": b64})

    @property
    def full(self) -> bool:
        return self.room <= 0

    def count(self, n: int) -> None:
        """Bytes past the cap moved to the caller without being read (splice)."""
        self.counted += n

    def resize(self, cols: int, rows: int) -> None:
        self._send({"op": "resize", "t": self._t(), "cols": cols, "rows": rows})

    def end(self) -> None:
        """The output has ended (the executor says so): report what went over the cap."""
        if self.counted:
            self._send({"op": "out", "s": 1, "t": self._t(), "n": self.counted})


def _report(conn: Conn, fields: dict[str, Any]) -> None:
    """Tell the broker how the command ended, so it writes the exit record."""
    try:
        conn.send({"op": "exit", **fields})
        conn.recv(ACK_TIMEOUT)
    except XguardError as e:
        sys.stderr.write(
            f"xguard: warning: the command ran but its exit was not logged: {e.message}\n"
        )


# ---------------------------------------------------------------------------
# The other verbs.


def check_via_broker(
    sock_path: str, text: str | None, argv: list[str] | None, as_json: bool, profile: str | None
) -> int:
    """`xguard check` in strict mode: the broker's rules decide; nothing is logged, nothing runs."""
    r = request(
        sock_path,
        {
            "op": "check",
            "text": text,
            "argv": argv,
            "cwd": _cwd(),
            "profile": profile or os.environ.get("XGUARD_PROFILE") or None,
            "can": can_confine(),  # decided as `xguard -c` would be, box included
        },
    )
    if r.get("status") != "ok":
        return _exit_answer(r)
    d = r.get("result") or {}
    if as_json:
        import json  # as the local `check --json` prints it

        sys.stdout.write(json.dumps(d, ensure_ascii=False) + "\n")
    else:
        from xguard.util import printable

        sys.stdout.write(f"{d.get('decision')}\n")
        for u in d.get("units") or []:
            rule = f" [{u.get('rule')}]" if u.get("rule") else ""
            shown = printable(str(u.get("text")), 120)
            sys.stdout.write(f"  {u.get('decision'):<17} {u.get('kind'):<8} {shown}{rule}\n")
            if u.get("decision") != "allow" and u.get("why"):
                sys.stdout.write(f"  {'':<17} {'':<8} └ {u.get('why')}\n")
    return {"allow": 0, "require_approval": 1, "deny": 2}.get(
        str(d.get("decision")), int(ExitCode.SOFTWARE)
    )


def remote_decide(
    sock_path: str,
    ref: str,
    state: str,
    *,
    for_seconds: float | None = None,
    note: str | None = None,
    reason: str | None = None,
) -> int:
    """`xguard approve|deny` through the broker: it accepts decisions only from reviewer uids."""
    r = request(
        sock_path,
        {
            "op": "decide",
            "id": ref,
            "state": state,
            "for_seconds": for_seconds,
            "note": note,
            "reason": reason,
        },
    )
    if r.get("status") != "ok":
        return _exit_answer(r)
    from xguard.util import printable

    how = f" for {for_seconds:g}s" if for_seconds else (" (once)" if state == "approved" else "")
    sys.stdout.write(f"{state} {r.get('id')}{how}: {printable(str(r.get('command') or ''), 200)}\n")
    return 0


def remote_pending(sock_path: str, show_all: bool = False) -> list[dict[str, Any]]:
    """The broker's queue (reviewers only)."""
    r = request(sock_path, {"op": "pending", "all": show_all})
    if r.get("status") != "ok":
        _say(r.get("message"))
        code = r.get("code")
        raise SystemExit(code if type(code) is int else int(ExitCode.SOFTWARE))
    reqs = r.get("requests")
    return reqs if isinstance(reqs, list) else []


def report_refusal(sock_path: str, command: str, why: str, source: str = "ssh") -> None:
    """Have the broker audit something this side refused on its own (an
    interactive SSH login, a subsystem); best effort."""
    try:
        request(
            sock_path,
            {
                "op": "refuse",
                "text": command,
                "why": why,
                "source": source,
                "cwd": _cwd(),
                "ssh": os.environ.get("SSH_CONNECTION"),
            },
            timeout=ACK_TIMEOUT,
        )
    except XguardError as e:
        sys.stderr.write(f"xguard: warning: the refusal was not logged: {e.message}\n")

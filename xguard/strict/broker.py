"""The strict-mode broker, `xguard serve` (issue 6): it owns the truth.

The broker runs as the reviewer (or a dedicated user) and is the only
process that reads the rules, writes the queue and writes the audit log.
Agents, each running as a Unix user of its own, ask it over a Unix socket
(see xguard/brokerclient.py for the protocol): it decides with the same
engine as the local path, audits, waits for a reviewer, and tells the agent
side what to run and with which environment; the agent side reports how the
command ended and the broker writes the exit record.

Who may do what comes from the socket, never from a message: SO_PEERCRED
gives the peer's uid (and pid), and

- `run`, `check`, `refuse` are accepted from the uids in `agents:`;
- `decide` (approve/deny) and `pending` only from reviewers: `reviewers:`,
  the broker's own user and root. Anything else is refused and audited
  (event `refused`): an agent can never approve itself, even with code of
  its own talking to the socket.

Before every request (and at start) the broker checks that no file it
trusts is writable by an agent, by group or by others (xguard/strict.py);
if one is, nothing runs and the answer is a config error naming the file.

One thread per connection; deciding is serialised (the parser holds one
tree-sitter parser). SIGTERM/SIGINT stop it cleanly: no new connections,
waiting agents are told their request stays pending (exit 75), running
commands get a few seconds to report, then the socket is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
import traceback
from typing import Any

from xguard.strict import setup as strict
from xguard.errors import ConfigError, ExitCode, XguardError
from xguard.paths import get_paths
from xguard.approval.backend import open_queue
from xguard.approval.queue import POLL
from xguard.approval.wait import Channel, obtain_approval, readable
from xguard.gate.execenv import ExecResult
from xguard.gate.pipeline import Asked, run_request
from xguard.gate.request import Gate, Request
from xguard.util import new_id, proc_ppid

PROTOCOL = 1
MAX_LINE = 4 << 20
READ_TIMEOUT = 15.0  # a client states its request within this
STOP_GRACE = 3.0  # on shutdown, running commands get this long to report their exit
MAX_CONNECTIONS = 512  # beyond this, new connections are closed at once (a flood from an agent)


class _Gone(Exception):
    """The client went away."""


def _answer(code: int, message: str) -> dict[str, Any]:
    return {"status": "exit", "code": int(code), "message": message}


class Peer:
    """Who is on the other end of a connection, from the kernel (SO_PEERCRED)."""

    __slots__ = ("gid", "home", "name", "pid", "uid")

    def __init__(self, pid: int, uid: int, gid: int) -> None:
        self.pid, self.uid, self.gid = pid, uid, gid
        try:
            pw = pwd.getpwuid(uid)
            self.name, self.home = pw.pw_name, pw.pw_dir
        except KeyError:
            self.name, self.home = str(uid), "/"

    @classmethod
    def of(cls, conn: socket.socket) -> Peer:
        fmt = "3i"
        pid, uid, gid = struct.unpack(
            fmt, conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(fmt))
        )
        return cls(pid, uid, gid)


class LineConn:
    """Line-delimited JSON over one accepted connection."""

    def __init__(self, sock: socket.socket, broker: Broker) -> None:
        self.sock = sock
        self.broker = broker
        self.buf = b""

    def send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
        self.sock.settimeout(READ_TIMEOUT)
        try:
            self.sock.sendall(data.encode("utf-8", "surrogateescape") + b"\n")
        except OSError as e:
            raise _Gone from e

    def read(self, timeout: float | None, *, until_stop: bool = False) -> dict[str, Any] | None:
        """The next message, or None at end of stream (or timeout, or shutdown
        plus STOP_GRACE when until_stop)."""
        end = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return None
            fds: list[Any] = [self.sock]
            if until_stop and end is None:
                fds.append(self.broker.stop_r)
            ready = readable(fds, left)
            if self.broker.stop_r in ready:
                end = time.monotonic() + STOP_GRACE
                continue
            if not ready:
                continue
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > MAX_LINE:
                return None
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None


# ---------------------------------------------------------------------------
# Validating what a client sends.


def _int(v: Any, low: int = 0, high: int = 1 << 62) -> int | None:
    return v if type(v) is int and low <= v <= high else None


def _relayed(recorder: Any, msg: dict[str, Any]) -> None:
    """One message of the agent side's output relay (issue 14), into the recorder."""
    import binascii

    op, t = msg.get("op"), _int(msg.get("t"))
    if op == "begin":
        cols, rows = _int(msg.get("cols"), 1, 10_000), _int(msg.get("rows"), 1, 10_000)
        recorder.begin(msg.get("tty") is True, cols or 80, rows or 24)
    elif op == "resize":
        cols, rows = _int(msg.get("cols"), 1, 10_000), _int(msg.get("rows"), 1, 10_000)
        if cols and rows:
            recorder.resize(cols, rows, t)
    elif op == "out" and msg.get("s") in (1, 2, 3):
        if _int(msg.get("n")):
            recorder.count(msg["n"])
        elif isinstance(msg.get("d"), str):
            try:
                data = binascii.a2b_base64(msg["d"])
            except (binascii.Error, ValueError):
                return
            recorder.write(msg["s"], data, t)


def _text(
    msg: dict[str, Any], key: str, default: str | None = None, limit: int = 1 << 20
) -> str | None:
    v = msg.get(key, default)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > limit:
        raise XguardError(f"broker: bad request: {key} must be text")
    return v


def _texts(msg: dict[str, Any], key: str, allow_none: bool = False) -> list[str] | None:
    v = msg.get(key)
    if v is None and allow_none:
        return None
    v = [] if v is None else v
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v) or len(v) > 10000:
        raise XguardError(f"broker: bad request: {key} must be a list of text")
    return v


def _number(msg: dict[str, Any], key: str) -> float | None:
    v = msg.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise XguardError(f"broker: bad request: {key} must be a non-negative number")
    return float(v)


def _can(msg: dict[str, Any]) -> tuple[bool, int]:
    """The box the agent side says it can start: (bubblewrap works, Landlock ABI).
    Claiming more than it can only makes its commands fail to start (the box
    is required once planned); claiming less gets the stricter decisions of
    an unconfined command."""
    can = msg.get("can")
    if not isinstance(can, dict):
        return False, 0
    abi = can.get("landlock")
    return can.get("bwrap") is True, abi if type(abi) is int and 0 <= abi < 100 else 0


def confine_for(ruleset: Any, can: tuple[bool, int] | None) -> tuple[str, str]:
    """(mechanism, why none) for an agent's command: the rules' `confine:`
    setting and what the agent side can start (issue 11)."""
    from xguard.gate.confine import Support, setting

    if setting(ruleset) == "off":
        return "none", "confine: off"
    bwrap, abi = can or (False, 0)
    # The same preference as a local gate's (Support.best), over what the agent side said.
    best = Support("bwrap" if bwrap else None, abi, {}).best()
    if best != "none":
        return best, ""
    return "none", "the agent side can start no sandbox (neither bubblewrap nor Landlock)"


# ---------------------------------------------------------------------------
class _AgentView:
    """The broker's Gate as the agent's request sees it: the agent's cwd, home,
    user and pid, for code written against the Gate (the pipeline, limits, sessions)."""

    # The broker runs as another user with another environment: an impact
    # preview from here would not connect as the agent's command does (issue 13).
    impact_preview = False

    def __init__(self, broker: Broker, gate: Gate, peer: Peer, req: dict[str, Any]) -> None:
        self.broker, self.gate, self.peer, self.req = broker, gate, peer, req
        self.paths = gate.paths
        self.ruleset = gate.ruleset
        self.environ = gate.environ
        self.profile = req["profile"]
        self.cwd = req["cwd"]
        self.home = peer.home

    def audit(self) -> Any:
        return self.gate.audit()

    def context(self, cwd: str | None = None) -> Any:
        return self.gate.context(cwd or self.cwd)

    def confine(self) -> tuple[str, str]:
        """(mechanism, why none): the box the agent side can start (it said so
        in its request), if the rules want one (issue 11)."""
        return confine_for(self.ruleset, self.req.get("can"))

    def decide(self, rq: Any) -> Any:
        mechanism, why = self.confine()
        decision = self.broker._decide(
            self.gate, rq.text, rq.argv, self.cwd, confined=mechanism != "none"
        )
        if decision.decision == "allow":
            from xguard.gate.confine import escalate

            # As Gate._escalate: `confine: required` with no box, an allow that
            # relied on the box, a command that asks to run unconfined.
            escalate(decision, rq.text if rq.argv is None else "", self.ruleset, mechanism, why)
        return decision

    def base_record(self, rq: Any, decision: Any, cmd_id: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": cmd_id,
            "session": self.req["session"],
            "profile": self.profile,
            "user": self.peer.name,
            "host": self.broker.host,
            "pid": self.peer.pid,
            "cwd": self.cwd,
            "command": self.req["text"],
            "units": [u.to_json() for u in decision.units],
            "decision": decision.decision,
            "rules": decision.rules,
            "source": self.req["source"],
            "uid": self.peer.uid,
            "strict": True,  # decided by the broker; the exit record is the agent side's report
        }
        if self.req.get("ssh"):
            record["ssh_client"] = self.req["ssh"]
        return record


class _ClientRuns:
    """The broker's executor: the agent-side client runs the command (as the
    agent user) and reports how it ended; its report is what the exit record
    says, marked `"reported": "agent"`."""

    def __init__(self, broker: Broker, lc: LineConn, view: _AgentView) -> None:
        self.broker, self.lc, self.view = broker, lc, view
        self.box: dict[str, Any] | None = None  # the box plan the client starts

    def prepare(self, gate: Any, req: Any, decision: Any, record: dict[str, Any]) -> None:
        """Plan the box here, under the broker's rules, for the agent's cwd and
        home (issue 11); the client starts it as the agent user."""
        from xguard.gate.confine import plan

        mechanism, _ = self.view.confine()
        box = plan(
            decision,
            self.view.ruleset,
            self.view.context(self.view.cwd),
            self.view.paths,
            mechanism,
            approved=decision.decision != "allow",
            cache_dir=self.view.paths.cache_dir_s,
            here=False,
        )
        record["confined"] = box.mechanism
        if box.mechanism != "none":
            self.box = {
                "mechanism": box.mechanism,
                "cwd": box.cwd,
                "network": box.network,
                "writable": box.writable,
                "masked_dirs": box.masked_dirs,
                "masked_files": box.masked_files,
            }

    def run(self, gate: Any, req: Any, decision: Any, record: dict[str, Any]) -> ExecResult:
        from xguard.gate.execenv import start_recording, with_output

        # Issue 14: the agent side relays what the command prints as it shows
        # it; the recording is kept here, out of the agent's reach.
        recorder, output = start_recording(self.view, req, decision, record)
        answer = self.broker._run_answer(self.view, decision, record)
        if recorder is not None:
            answer["record"] = {"max_bytes": recorder.max_bytes}
        if self.box is not None:
            answer["box"] = self.box
        self.lc.send(answer)
        while True:
            rep = self.lc.read(None, until_stop=True)
            if rep is None or rep.get("op") not in ("begin", "out", "resize"):
                break
            if recorder is not None:
                _relayed(recorder, rep)
        return with_output(self._ended(rep), recorder, output)

    def _ended(self, rep: dict[str, Any] | None) -> ExecResult:
        fields: dict[str, Any] = {"reported": "agent"}
        code = duration = None
        if rep is not None and rep.get("op") == "exit":
            code = rep.get("exit_code") if type(rep.get("exit_code")) is int else None
            duration = rep.get("duration_ms") if type(rep.get("duration_ms")) is int else None
            if type(rep.get("signal")) is int:
                fields["signal"] = rep["signal"]
            if rep.get("timed_out") is True:
                fields["timed_out"] = True
        elif self.broker.stopping.is_set():
            fields["note"] = "the broker stopped before the agent reported how the command ended"
        else:
            fields["note"] = "the agent side went away without reporting how the command ended"
        return ExecResult(code, duration, fields)


class _AgentChannel(Channel):
    """The waiting agent as the broker sees it: a client on a socket. It is
    told it waits; closing the connection (the agent side got a signal or
    died) cancels the request; a stopping broker ends the wait."""

    handles_signals = False  # the broker waits in a thread

    def __init__(self, broker: Broker, lc: LineConn, peer: Peer) -> None:
        self.broker, self.lc, self.peer = broker, lc, peer

    def ppid(self) -> int:
        return proc_ppid(self.peer.pid) or 0

    def announce(self, rid: str, wait: float) -> None:
        self.lc.send(
            {
                "status": "waiting",
                "id": rid,
                "wait": wait,
                "message": f"xguard: waiting for approval {rid} (xguard approve {rid})",
            }
        )

    def prompt(self, gate: Any, ticket: Any) -> None:
        return None

    def fds(self) -> list[Any]:
        return [self.lc.sock, self.broker.stop_r]

    def interrupted(self, rid: str) -> Asked | None:
        if not self.broker.stopping.is_set():
            return None
        return Asked(
            False,
            int(ExitCode.TEMPFAIL),
            message=f"xguard: pending approval {rid}: the broker is stopping; "
            "the command did not run; run it again later",
            request_id=rid,
        )

    def ready(self, ready: list[Any], waiter: Any, rid: str) -> None:
        if self.lc.sock in ready:
            # The agent side closes the connection when it is signalled (or
            # killed): the request is cancelled, as SPEC §4 asks. (A reviewer
            # who decided in the same instant wins, and nothing runs either.)
            waiter.spool.decide(
                rid,
                "cancelled",
                "xguard (agent went away)",
                reason="the waiting agent went away (signal or closed connection)",
                log=waiter.log,
            )
            raise _Gone


class Broker:
    """The server. `Broker(...).serve()` runs until SIGTERM/SIGINT or stop()."""

    def __init__(
        self,
        environ: dict[str, str] | None = None,
        socket_path: str | None = None,
        *,
        allow_same_user: bool = False,
        verbose: bool = False,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.paths = get_paths(self.environ)
        self.uid = os.getuid()
        self.allow_same_user = allow_same_user
        self.verbose = verbose
        self.host = os.uname().nodename
        self._gates: dict[tuple[str, str], tuple[tuple[Any, ...], Gate]] = {}
        self._gate_lock = threading.Lock()
        self._decide_lock = threading.Lock()
        self._ident: tuple[Gate, dict[int, str], dict[int, str]] | None = None
        self.stopping = threading.Event()
        self.stop_r, self.stop_w = os.pipe()
        os.set_blocking(self.stop_w, False)
        self.threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self.lsock: socket.socket | None = None
        self._sock_ino: tuple[int, int] | None = None
        base = self.gate(None)
        self.socket_path = os.path.abspath(
            socket_path or base.ruleset.setting("socket") or strict.DEFAULT_SOCKET
        )
        self.identity(base)
        self.require_secure(base)

    # -- configuration ------------------------------------------------------
    def say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"xguard serve: {text}\n")
            sys.stderr.flush()

    def _sources_key(self, profile: str | None) -> tuple[Any, ...]:
        from xguard.policy.rules import BUILTIN_RULES

        names = [
            self.environ.get("XGUARD_RULES", "").strip(),
            str(self.paths.rules_file),
            str(self.paths.config_file),
            str(BUILTIN_RULES),
        ]
        if profile:
            names.append(str(self.paths.rules_d / f"{profile}.yaml"))
        out = []
        for n in names:
            try:
                st = os.stat(n) if n else None
            except OSError:
                st = None
            out.append(
                (n, st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns) if st else (n, None)
            )
        return tuple(out)

    def gate(self, profile: str | None, home: str | None = None) -> Gate:
        """The rules for a profile, re-read when a source file changes.

        One Gate per (profile, home): path rules compile `~` into their regex
        the first time they are used, so each agent home needs its own."""
        key = self._sources_key(profile)
        slot = (profile or "", home or "")
        with self._gate_lock:
            hit = self._gates.get(slot)
            if hit is not None and hit[0] == key:
                return hit[1]
            # Passing environ explicitly: the broker is not a strict-mode client.
            g = Gate(environ=self.environ, profile=profile)
            if home:
                g.home = home
            self._gates[slot] = (key, g)
            return g

    def identity(self, base: Gate) -> tuple[dict[int, str], dict[int, str]]:
        """({agent uid: name}, {reviewer uid: name}) from `agents:` / `reviewers:`."""
        ident = self._ident
        if ident is not None and ident[0] is base:
            return ident[1], ident[2]
        file = self.paths.config_file_s  # where `agents:` belongs, even before it exists
        agents = strict.resolve_users(base.ruleset.setting("agents") or [], "agents", file)
        if not agents:
            raise ConfigError(
                "strict mode needs `agents:` (the agent users, by name or uid) "
                "in config.yaml or the rules file",
                file,
                1,
            )
        reviewers = strict.resolve_users(base.ruleset.setting("reviewers") or [], "reviewers", file)
        reviewers.setdefault(self.uid, Peer(0, self.uid, 0).name)
        reviewers.setdefault(0, "root")
        for uid, name in agents.items():
            if uid == 0 and not (self.allow_same_user and uid == self.uid):
                raise ConfigError(
                    "agents: root cannot be contained; give the agent a user of its own", file, 1
                )
            if uid in reviewers and not (self.allow_same_user and uid == self.uid):
                raise ConfigError(
                    f"agents: {name} is also a reviewer or the broker's own user, "
                    "so it could approve its own commands",
                    file,
                    1,
                )
        self._ident = (base, agents, reviewers)
        return agents, reviewers

    def require_secure(self, gate: Gate) -> None:
        """ConfigError (exit 78) naming the first file an agent, group or others could change."""
        agents, reviewers = self.identity(self.gate(None))
        ag = set(agents)
        if self.allow_same_user:
            ag.discard(self.uid)
        trusted = ({0, self.uid} | set(reviewers)) - ag
        sources = list(dict.fromkeys([*self.gate(None).ruleset.sources, *gate.ruleset.sources]))
        strict.require_secure(
            self.paths, sources, agents=ag, trusted=trusted, socket_path=self.socket_path
        )

    def audit_refusal(self, peer: Peer, what: str, **fields: Any) -> None:
        """An unauthorised request is itself an event (issue 6: refused and audited)."""
        try:
            self.gate(None).audit().append(
                "refused",
                user=peer.name,
                uid=peer.uid,
                pid=peer.pid,
                host=self.host,
                decision="deny",
                note=what,
                **fields,
            )
        except XguardError as e:
            self.say(f"cannot audit a refusal: {e.message}")
        self.say(f"refused: {what}")

    # -- serving ------------------------------------------------------------
    def bind(self) -> None:
        """Create the socket (0666: who may do what is decided by peer uid)."""
        path = self.socket_path
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
            # Agents must reach the socket; only the broker may write here.
            os.chmod(folder, 0o755)  # noqa: S103
        self.require_secure(self.gate(None))
        why = strict.reachable(path)
        if why:
            self.say(f"warning: agents may not reach the socket: {why}")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise ConfigError("exists and is not a socket; refusing to replace it", path, 1)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # left by a broker that died
            else:
                raise XguardError(f"another broker is already listening on {path}")
            finally:
                probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o111)
        try:
            s.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o666)  # noqa: S103 - who may do what is decided by the peer's uid
        s.listen(128)
        st = os.stat(path)
        self._sock_ino = (st.st_dev, st.st_ino)
        self.lsock = s

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            os.write(self.stop_w, b"x")

    def serve(self, install_signals: bool = True) -> int:
        if self.lsock is None:
            self.bind()
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
            signal.signal(
                signal.SIGHUP,
                lambda *_: self.say("SIGHUP: rules and config are re-read when they change"),
            )
        agents, reviewers = self.identity(self.gate(None))
        names = ", ".join(agents.values())
        revs = ", ".join(sorted(set(reviewers.values())))
        self.say(
            f"listening on {self.socket_path} (pid {os.getpid()}; agents: {names}; "
            f"reviewers: {revs}; state {self.paths.state_dir})"
        )
        assert self.lsock is not None
        try:
            while not self.stopping.is_set():
                waitables: list[Any] = [self.lsock, self.stop_r]
                ready, _, _ = select.select(waitables, [], [], 5.0)
                if self.lsock not in ready:
                    continue
                try:
                    conn, _ = self.lsock.accept()
                except OSError:
                    continue
                with self._threads_lock:
                    busy = len(self.threads) >= MAX_CONNECTIONS
                if busy:
                    conn.close()
                    self.say(f"refused a connection: {MAX_CONNECTIONS} already open")
                    continue
                t = threading.Thread(
                    target=self._handle, args=(conn,), daemon=True, name="xguard-conn"
                )
                with self._threads_lock:
                    self.threads.add(t)
                t.start()
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        self.stopping.set()
        if self.lsock is not None:
            self.lsock.close()
            with contextlib.suppress(OSError):
                st = os.stat(self.socket_path)
                if (st.st_dev, st.st_ino) == self._sock_ino:
                    os.unlink(self.socket_path)
        end = time.monotonic() + STOP_GRACE + POLL + 2
        with self._threads_lock:
            threads = list(self.threads)
        for t in threads:
            t.join(max(end - time.monotonic(), 0))
        self.say("stopped")

    def _handle(self, conn: socket.socket) -> None:
        lc = LineConn(conn, self)
        try:
            peer = Peer.of(conn)
            msg = lc.read(READ_TIMEOUT)
            if msg is None:
                return
            op = msg.get("op")
            fn = {
                "run": self.op_run,
                "check": self.op_check,
                "hook": self.op_hook,
                "decide": self.op_decide,
                "pending": self.op_pending,
                "refuse": self.op_refuse,
                "ping": self.op_ping,
            }.get(str(op))
            if fn is None:
                lc.send(
                    _answer(ExitCode.USAGE, f"xguard: broker: unknown request {str(op)[:40]!r}")
                )
                return
            if self.verbose:
                self.say(f"{op} from {peer.name} (uid {peer.uid}, pid {peer.pid})")
            fn(lc, peer, msg)
        except _Gone:
            pass
        except XguardError as e:
            with contextlib.suppress(_Gone):
                lc.send(_answer(e.exit_code, f"xguard: {e.message}"))
        except Exception as e:  # fail closed: the agent side runs nothing without a "run" answer
            self.say("internal error:\n" + traceback.format_exc())
            with contextlib.suppress(_Gone):
                lc.send(
                    _answer(
                        ExitCode.SOFTWARE,
                        f"xguard: internal error in the broker: {type(e).__name__}; nothing ran",
                    )
                )
        finally:
            conn.close()
            with self._threads_lock:
                self.threads.discard(threading.current_thread())

    # -- deciding -----------------------------------------------------------
    def _decide(
        self,
        gate: Gate,
        text: str | None,
        argv: list[str] | None,
        cwd: str,
        *,
        confined: bool = False,
    ) -> Any:
        """`confined`: the command runs in the box (rules marked `if_confined` count)."""
        from xguard.policy.decide import decide
        from xguard.shell.parser import parse, parse_argv

        ctx = gate.context(cwd)
        if ctx.confined != confined:
            from xguard._record import asdict

            ctx = type(ctx)(**{**asdict(ctx), "confined": confined})
        with self._decide_lock:
            units = parse_argv(argv) if argv is not None else parse(text or "")
            return decide(units, gate.ruleset, ctx)

    def _checked_gate(self, peer: Peer, profile: str | None, command: str | None, cwd: str) -> Gate:
        """The gate for this request, after the security check; a config error is audited."""
        try:
            gate = self.gate(profile, peer.home)
            self.require_secure(gate)
            return gate
        except ConfigError as e:
            with contextlib.suppress(XguardError):
                self.gate(None).audit().append(
                    "config_error",
                    command=command,
                    cwd=cwd,
                    pid=peer.pid,
                    user=peer.name,
                    host=self.host,
                    note=e.message,
                )
            self.say(e.message)
            raise

    @staticmethod
    def _cwd(msg: dict[str, Any], peer: Peer) -> str:
        cwd = _text(msg, "cwd", limit=4096)
        return os.path.normpath(cwd) if cwd and cwd.startswith("/") else peer.home

    # -- ops ----------------------------------------------------------------
    def op_ping(self, lc: LineConn, peer: Peer, msg: dict[str, Any]) -> None:
        agents, reviewers = self.identity(self.gate(None))
        role = "agent" if peer.uid in agents else "reviewer" if peer.uid in reviewers else None
        lc.send(
            {
                "status": "ok",
                "v": PROTOCOL,
                "uid": peer.uid,
                "user": peer.name,
                "role": role,
                "pid": os.getpid(),
            }
        )

    def op_check(self, lc: LineConn, peer: Peer, msg: dict[str, Any]) -> None:
        agents, reviewers = self.identity(self.gate(None))
        if peer.uid not in agents and peer.uid not in reviewers:
            self.audit_refusal(
                peer,
                f"check from {peer.name} (uid {peer.uid}), who is neither an agent nor a reviewer",
            )
            lc.send(
                _answer(
                    ExitCode.NOPERM, f"xguard: denied: {peer.name} is not an agent of this broker"
                )
            )
            return
        text, argv = _text(msg, "text"), _texts(msg, "argv", allow_none=True)
        if text is None and not argv:
            raise XguardError("broker: bad request: check needs text or argv")
        cwd = self._cwd(msg, peer)
        gate = self._checked_gate(peer, _text(msg, "profile", limit=200), text, cwd)
        mechanism, why = confine_for(gate.ruleset, _can(msg))
        d = self._decide(gate, text, argv, cwd, confined=mechanism != "none")
        if d.decision == "allow":  # decided as `run` would be (issue 11)
            from xguard.gate.confine import escalate

            escalate(d, text or "", gate.ruleset, mechanism, why)
        lc.send({"status": "ok", "result": d.to_json()})

    def op_hook(self, lc: LineConn, peer: Peer, msg: dict[str, Any]) -> None:
        """Decide, and audit, a command an agent runtime's pre-command hook asks
        about (Claude Code's PreToolUse). Nothing runs here: the runtime runs the
        command itself, through its shell, which in strict mode asks again."""
        from xguard.gate import limits

        agents, _ = self.identity(self.gate(None))
        text = _text(msg, "text", "") or ""
        if peer.uid not in agents:
            self.audit_refusal(
                peer,
                f"hook from {peer.name} (uid {peer.uid}), who is not an agent of this broker",
                command=text,
            )
            lc.send(
                _answer(
                    ExitCode.NOPERM, f"xguard: denied: {peer.name} is not an agent of this broker"
                )
            )
            return
        if not text.strip():
            raise XguardError("broker: bad request: hook needs text")
        session = _text(msg, "session", limit=200) or None
        profile = _text(msg, "profile", limit=200) or limits.session_profile(self.environ, session)
        answer = _text(msg, "answer", "ask", limit=20) or "ask"
        req: dict[str, Any] = {
            "text": text,
            "argv": None,
            "shell_args": [],
            "positional": [],
            "cwd": self._cwd(msg, peer),
            "session": session,
            "profile": profile,
            "wait": 0,
            "source": _text(msg, "source", "hook", limit=100) or "hook",
            "ssh": None,
        }
        gate = self._checked_gate(peer, profile, text, req["cwd"])
        view = _AgentView(self, gate, peer, req)
        rq = Request(
            text=text, session=session, profile=profile, source=req["source"], cwd=req["cwd"]
        )
        # Nothing runs here (execute=None); what needs approval is handed back
        # to the runtime as `ask`, or refused when the hook is set to deny.
        handback = Asked(False, 77, answer="deny" if answer == "deny" else "ask")
        outcome = run_request(rq, view, ask=lambda *_: handback, execute=None)
        if outcome.record is None:  # refused by a session or a limit (audited)
            reason = (outcome.message or "refused").removeprefix("xguard: ")
            lc.send(
                {"status": "ok", "result": {"decision": "deny", "units": [], "reasons": [reason]}}
            )
            return
        assert outcome.decision is not None
        lc.send({"status": "ok", "result": outcome.decision.to_json()})

    def op_refuse(self, lc: LineConn, peer: Peer, msg: dict[str, Any]) -> None:
        """Audit what the agent side refused on its own (ssh-gate: a login, a subsystem)."""
        agents, _ = self.identity(self.gate(None))
        if peer.uid not in agents:
            lc.send(
                _answer(
                    ExitCode.NOPERM, f"xguard: denied: {peer.name} is not an agent of this broker"
                )
            )
            return
        why = _text(msg, "why", "refused", limit=2000) or "refused"
        self.gate(None).audit().append(
            "decision",
            id=new_id(),
            user=peer.name,
            uid=peer.uid,
            pid=peer.pid,
            host=self.host,
            cwd=self._cwd(msg, peer),
            command=_text(msg, "text", "", limit=65536),
            units=[],
            decision="deny",
            rules=["ssh-gate"],
            source=_text(msg, "source", "ssh", limit=100),
            note=why,
            ssh_client=_text(msg, "ssh", limit=200),
        )
        lc.send({"status": "ok"})

    def op_pending(self, lc: LineConn, peer: Peer, msg: dict[str, Any]) -> None:
        _, reviewers = self.identity(self.gate(None))
        if peer.uid not in reviewers:
            self.audit_refusal(
                peer, f"`pending` from {peer.name} (uid {peer.uid}), who is not a reviewer"
            )
            lc.send(
                _answer(
                    ExitCode.NOPERM,
                    f"xguard: denied: only reviewers may list the queue ({peer.name} is not one)",
                )
            )
            return
        gate = self.gate(None)
        spool = open_queue(gate)  # issue 15: the queue the config names
        try:
            spool.sweep(gate.audit())
            reqs = spool.all() if msg.get("all") else spool.pending()
        finally:
            spool.close()
        now = time.time()
        for r in reqs:
            r["age_s"] = round(now - r.get("created", now), 3)
        lc.send({"status": "ok", "requests": reqs})

    def op_decide(self, lc: LineConn, peer: Peer, msg: dict[str, Any]) -> None:
        state = msg.get("state")
        ref = _text(msg, "id", "", limit=100) or ""
        verb = "approve" if state == "approved" else "deny"
        _, reviewers = self.identity(self.gate(None))
        if peer.uid not in reviewers:
            # The heart of strict mode: an agent can never decide, whatever it sends.
            self.audit_refusal(
                peer,
                f"{verb} {ref} attempted by {peer.name} (uid {peer.uid}), who is not a "
                "reviewer: refused",
                id=ref or None,
                attempted=state,
            )
            lc.send(
                _answer(
                    ExitCode.NOPERM,
                    f"xguard: denied: {peer.name} (uid {peer.uid}) may not approve or "
                    "deny requests; only reviewers may (strict mode)",
                )
            )
            return
        if state not in ("approved", "denied"):
            raise XguardError("broker: bad request: state must be approved or denied")
        gate = self.gate(None)
        spool = open_queue(gate)  # issue 15: the queue the config names
        try:
            self._decide_on(lc, peer, msg, gate=gate, spool=spool, ref=ref, state=state)
        finally:
            spool.close()

    def _decide_on(
        self,
        lc: LineConn,
        peer: Peer,
        msg: dict[str, Any],
        *,
        gate: Any,
        spool: Any,
        ref: str,
        state: str,
    ) -> None:
        from xguard.approval.wait import settings

        log = gate.audit()
        spool.sweep(log)
        try:
            rid = spool.resolve(ref)
            won, v = spool.decide(
                rid,
                state,
                peer.name,
                reason=_text(msg, "reason", limit=2000),
                note=_text(msg, "note", limit=2000),
                for_seconds=_number(msg, "for_seconds"),
                once_seconds=settings(gate, None)[1],
                log=log,
            )
        except LookupError as e:
            lc.send(_answer(1, f"xguard: {e.args[0]}"))
            return
        if not won:
            lc.send(_answer(1, f"xguard: {rid} was already {v.get('state')} by {v.get('by')}"))
            return
        req = spool.get(rid) or {}
        lc.send({"status": "ok", "id": rid, "state": state, "command": req.get("command")})

    def op_run(self, lc: LineConn, peer: Peer, msg: dict[str, Any]) -> None:
        from xguard.gate import limits

        agents, _ = self.identity(self.gate(None))
        text = _text(msg, "text", "")
        if peer.uid not in agents:
            self.audit_refusal(
                peer,
                f"run from {peer.name} (uid {peer.uid}), who is not an agent of this broker",
                command=text,
            )
            lc.send(
                _answer(
                    ExitCode.NOPERM,
                    f"xguard: denied: {peer.name} (uid {peer.uid}) is not an agent of this broker",
                )
            )
            return
        argv = _texts(msg, "argv", allow_none=True)
        if argv is not None and not argv:
            raise XguardError("broker: bad request: empty argv")
        session = _text(msg, "session", limit=200) or None
        profile = _text(msg, "profile", limit=200) or None
        if profile is None:  # a session's own profile (issue 5), from the broker's sessions
            profile = limits.session_profile(self.environ, session)
        req: dict[str, Any] = {
            "text": text or "",
            "argv": argv,
            "shell_args": _texts(msg, "shell_args"),
            "positional": _texts(msg, "positional"),
            "cwd": self._cwd(msg, peer),
            "session": session,
            "profile": profile,
            "wait": _number(msg, "wait"),
            "source": _text(msg, "source", "shell", limit=100) or "shell",
            "ssh": _text(msg, "ssh", limit=200),
            "can": _can(msg),
        }
        gate = self._checked_gate(peer, profile, req["text"], req["cwd"])
        view = _AgentView(self, gate, peer, req)
        rq = Request(
            text=req["text"],
            argv=argv,
            shell_args=req["shell_args"],
            positional=req["positional"],
            wait=req["wait"],
            session=session,
            profile=profile,
            source=req["source"],
            cwd=req["cwd"],
        )

        def ask(g: Any, r: Any, decision: Any, record: dict[str, Any], log: Any) -> Asked:
            # The same spool, rules and waiting loop as the local path
            # (xguard/approval/wait.py), minus the terminal prompt: the agent's
            # terminal is the agent's, never a reviewer's.
            return obtain_approval(g, r, decision, record, log, _AgentChannel(self, lc, peer))

        # Sessions and blast-radius limits (issue 5) count in the broker's own
        # state, where the agent cannot reset them.
        outcome = run_request(rq, view, ask=ask, execute=_ClientRuns(self, lc, view))
        if outcome.ran:
            with contextlib.suppress(_Gone):
                lc.send({"status": "ok"})  # the exit record is written: the client may go
            return
        lc.send(_answer(outcome.exit_code, outcome.message or "xguard: the command did not run"))

    def _run_answer(
        self, view: _AgentView, decision: Any, record: dict[str, Any]
    ) -> dict[str, Any]:
        from xguard.gate.execenv import runtime_limits

        keep, set_ = view.gate.env_settings(view.profile)
        max_runtime, grace = runtime_limits(view, decision)
        return {
            "status": "run",
            "id": record["id"],
            "keep": keep,
            "set": set_,
            "shell": view.gate.ruleset.setting("shell", "/bin/bash"),
            "max_runtime": max_runtime,
            "kill_grace": grace,
        }


# ---------------------------------------------------------------------------
def serve_main(
    socket_path: str | None = None,
    *,
    check_only: bool = False,
    allow_same_user: bool = False,
    verbose: bool = False,
) -> int:
    """`xguard serve`: run the broker in the foreground (systemd runs it the same way)."""
    os.umask(0o077)  # everything the broker creates is its own
    broker = Broker(socket_path=socket_path, allow_same_user=allow_same_user, verbose=verbose)
    if check_only:
        agents, reviewers = broker.identity(broker.gate(None))
        revs = ", ".join(sorted(set(reviewers.values())))
        sys.stdout.write(
            f"ok: strict mode is safe here (socket {broker.socket_path}; agents: "
            f"{', '.join(agents.values())}; reviewers: {revs})\n"
        )
        return 0
    return broker.serve()

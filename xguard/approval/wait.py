"""The agent's side of approval: queue the request, wait, maybe ask at the terminal (SPEC §4).

`obtain_approval` is the pipeline's `ask` for front ends that wait here (the
shell, `run`, the interactive shell; xguard/gate/pipeline.py). It can only turn
a `require_approval` into "run" or "do not run" (exit 77, 75 or 128+N): it
never sees a `deny`. In order:

1. an earlier answer to exactly this command (same text, cwd, session,
   profile, flags) is used: an approval runs it without asking, once or for
   a while; a denial given after the agent stopped waiting exits 77, once;
2. otherwise a pending request for the same command that nobody waits on any
   more (its waiter timed out) is taken over, or a new one is queued, audited
   (`pending`), announced on the wake-up sockets and sent to notify targets;
3. one line on stderr, then wait: for a reviewer (woken by the socket, with
   polling as the fallback), for the person at this terminal when there is
   one (a sudo-like `[y/N/d]` prompt on /dev/tty), for the wait to end (75,
   the request stays pending until it expires), or for SIGINT/SIGTERM/SIGHUP,
   which cancel the request unless it was decided and exit 128+N.

Hot path: standard library only.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

from xguard.approval import notify
from xguard.gate import sessions
from xguard.environment import Environment
from xguard.errors import ExitCode
from xguard.gate.pipeline import Asked
from xguard.approval.backend import open_queue
from xguard.approval.queue import POLL
from xguard.gate.request import request_key
from xguard.util import user_name
from xguard.util import new_id, parent_pid, printable, say

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from xguard.audit.log import AuditLog
    from xguard.gate.request import GateLike, Request
    from xguard.policy.decide import Decision

    from xguard.approval.backend import Queue, Ticket, Waker

DEFAULT_WAIT = 60.0
DEFAULT_EXPIRY = 3600.0
CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Signalled(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def obtain_approval(
    gate: GateLike,
    req: Request,
    decision: Decision,
    record: dict[str, Any],
    log: AuditLog,
    channel: Channel | None = None,
) -> Asked:
    """Get a human's yes or no for `req` (see the module docstring for the order).

    `channel` is where the waiting agent is: this process at its terminal (the
    default), or the broker's client at the other end of a socket. The queue
    is the one the config names (open_queue): this host's file spool, or the
    PostgreSQL queue shared by many hosts (issue 15)."""
    spool = open_queue(gate)
    try:
        return _obtain(gate, req, decision, record, log, spool=spool, channel=channel)
    finally:
        spool.close()


def _obtain(
    gate: GateLike,
    req: Request,
    decision: Decision,
    record: dict[str, Any],
    log: AuditLog,
    *,
    spool: Queue,
    channel: Channel | None,
) -> Asked:
    key = request_key(
        req.text, str(record["cwd"]), record.get("session"), record.get("profile"), req.how()
    )
    answer = spool.use_answer(key)
    if answer is not None and not sessions.grant_alive(gate.paths, answer):
        answer = None  # issue 5: a grant dies with the session it was given in
    if answer is not None and answer.get("state") == "approved":
        # The runner's decision line names the approval this run rides on.
        record["approval"] = answer["id"]
        return Asked(True, reviewer=answer.get("by"))
    if answer is not None:
        # Denied after the agent stopped waiting: this run is how it learns.
        return Asked(
            False,
            int(ExitCode.NOPERM),
            message=_denied(req, answer),
            request_id=answer["id"],
            reviewer=answer.get("by"),
        )
    waiter = _Waiter(gate, req, decision, record, log, spool=spool, key=key)
    return waiter.run(channel or Channel())


def _denied(req: Request, verdict: dict[str, Any]) -> str:
    who = f"denied by {verdict.get('by', '?')}, request {verdict.get('id')}"
    why = f"{verdict['reason']} ({who})" if verdict.get("reason") else who
    return f"xguard: denied: {printable(req.text, 200)} — {why}"


def settings(gate: GateLike, profile: str | None) -> tuple[float, float]:
    """(wait, expiry) in seconds from the config: the profile's wait first."""
    from xguard.util import parse_duration

    prof = gate.ruleset.profiles.get(profile or "", {}) if profile else {}
    wait = parse_duration(prof.get("wait", gate.ruleset.setting("wait", DEFAULT_WAIT)))
    expiry = parse_duration(gate.ruleset.setting("expiry", DEFAULT_EXPIRY))
    return (DEFAULT_WAIT if wait is None else wait), (expiry or DEFAULT_EXPIRY)


def is_production(gate: GateLike, profile: str | None) -> bool:
    """A profile marked `production: true`, or named prod/production when unmarked."""
    if not profile:
        return False
    prof = gate.ruleset.profiles.get(profile, {})
    if "production" in prof:
        return bool(prof["production"])
    return profile.lower() in ("prod", "production")


def seen_as_production(gate: GateLike, request: dict[str, Any]) -> bool:
    """Whether a reviewer should treat a queued request as production.

    The request's own `production` comes from the config of the host that
    asked, and whoever holds that host's database role writes the row: a
    request can say `production: false` of a profile the reviewer's own
    config calls production (the profile itself is bound into the request's
    key, so it cannot lie about that). Either side saying so is enough.
    """
    profile = request.get("profile")
    own = is_production(gate, profile if isinstance(profile, str) else None)
    return bool(request.get("production")) or own


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    # A signal in the middle of publishing would leave a request without its
    # audit line; held here, it is handled right after, as a cancel.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, CANCEL_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def readable(objs: list[Any], timeout: float | None) -> list[Any]:
    """Which of `objs` (descriptors or objects with fileno()) are readable; poll(2),
    not select(2), so that a busy broker's descriptors above 1023 work."""
    p = select.poll()
    by_fd = {}
    for o in objs:
        fd = o if isinstance(o, int) else o.fileno()
        by_fd[fd] = o
        p.register(fd, select.POLLIN)
    events = p.poll(None if timeout is None else max(timeout, 0) * 1000)
    return [by_fd[fd] for fd, _ in events]


class Channel:
    """Where the waiting agent is, for the one waiting loop. This default is
    this process at its terminal: the waiting line on stderr, SIGINT/SIGTERM/
    SIGHUP cancel, a sudo-like prompt on /dev/tty. The broker passes its own
    (xguard/strict/broker.py): the agent is a client at the end of a socket."""

    handles_signals = True  # only the main thread of a process can

    def __init__(self, terminal: Environment | None = None) -> None:
        self.terminal = terminal or Environment()

    def ppid(self) -> int:
        """The agent process that asked (the reviewer sees its name)."""
        return parent_pid()

    def announce(self, rid: str, wait: float) -> None:
        say(f"xguard: waiting for approval {rid} (xguard approve {rid})")

    def prompt(self, gate: GateLike, ticket: Ticket) -> _Prompt | None:
        if not self.terminal.at_terminal:
            return None  # nobody at a terminal to ask (sudo's test)
        return _Prompt.open(gate, ticket)

    def fds(self) -> list[Any]:
        """More things to wait on beside the wake-up socket and the prompt."""
        return []

    def interrupted(self, rid: str) -> Asked | None:
        """Checked on every turn: an answer that ends the wait now, or None."""
        return None

    def ready(self, ready: list[Any], waiter: _Waiter, rid: str) -> None:
        """One of fds() is ready (may raise to end the wait)."""
        return None


class _Waiter:
    def __init__(
        self,
        gate: GateLike,
        req: Request,
        decision: Decision,
        record: dict[str, Any],
        log: AuditLog,
        *,
        spool: Queue,
        key: str,
    ) -> None:
        self.gate, self.req, self.decision, self.record, self.log = gate, req, decision, record, log
        self.spool, self.key = spool, key
        wait, self.expiry = settings(gate, record.get("profile"))
        self.wait = req.wait if req.wait is not None else wait
        self.t0 = time.monotonic()

    def run(self, channel: Channel) -> Asked:
        def on_signal(signum: int, _frame: object) -> None:
            raise _Signalled(signum)

        self.channel = channel
        signals = channel.handles_signals
        # Listen before the request exists, so no wake-up can fall in between.
        listener = self.spool.listener()
        old = {s: signal.signal(s, on_signal) for s in CANCEL_SIGNALS} if signals else {}
        held = _signals_held if signals else contextlib.nullcontext
        ticket: Ticket | None = None
        prompt: _Prompt | None = None
        try:
            try:
                with held():
                    self.spool.sweep(self.log)
                    ticket = self.spool.adopt(self.key) or self._publish()
                    self.record["id"] = ticket.id
                channel.announce(ticket.id, self.wait)
                if self.wait > 0:
                    prompt = channel.prompt(self.gate, ticket)
                return self._wait(ticket, listener, prompt)
            except _Signalled as got:
                # A second Ctrl-C must not interrupt the cancel itself.
                for s in CANCEL_SIGNALS:
                    signal.signal(s, signal.SIG_IGN)
                return self._cancelled(ticket, got.signum)
        finally:
            # Held while the old handlers come back: a signal now gets those.
            with held():
                for s, h in old.items():
                    signal.signal(s, h)
            if prompt is not None:
                prompt.close()
            if listener is not None:
                listener.close()
            if ticket is not None:
                ticket.release()

    def _publish(self) -> Ticket:
        now = time.time()
        request = self._request(now)
        ticket = self.spool.create(request, new_id)
        self.record["id"] = ticket.id
        try:
            self.log.append(
                "pending",
                **self.record,
                expires=request["expires_ts"],
                parent=request["parent"],
                ppid=request["ppid"],
                git_branch=request["git_branch"],
                notify=request["notify"],
                reasons=request["reasons"],
            )
        except BaseException:
            # Not audited means not queued: take it back before failing closed.
            self.spool.decide(
                ticket.id, "cancelled", "xguard", reason="the audit log could not be written"
            )
            ticket.release()
            raise
        self.spool.wake({"id": ticket.id, "state": "pending"})
        if request["notify"]:
            notify.dispatch(self.gate.ruleset.notify, request["notify"], request, self.gate.audit)
        return ticket

    def _request(self, now: float) -> dict[str, Any]:
        from xguard.audit.log import utc_timestamp

        ppid = self.channel.ppid()
        rec = self.record
        targets = self.gate.ruleset.notify
        return {
            "v": 1,
            "id": rec["id"],
            "key": self.key,
            "created": now,
            "expires": now + self.expiry,
            "expires_ts": utc_timestamp(int((now + self.expiry) * 1e9)),
            "session": rec.get("session"),
            "profile": rec.get("profile"),
            "production": is_production(self.gate, rec.get("profile")),
            "user": rec.get("user"),
            **({"uid": rec["uid"]} if "uid" in rec else {}),
            "host": rec.get("host"),
            "pid": rec.get("pid"),
            "ppid": ppid,
            "parent": proc_name(ppid),
            "cwd": rec.get("cwd"),
            "git_branch": git_branch(str(rec.get("cwd") or "")),
            "command": self.req.text,
            # What the key was made of, so a shared queue can check that what a
            # reviewer reads is what the approval lets run (pgqueue._bound).
            "how": self.req.how(),
            "argv": self.req.argv,
            "source": self.req.source,
            "units": rec.get("units"),
            "decision": rec.get("decision"),
            "reasons": list(self.decision.reasons),
            "rules": rec.get("rules"),
            "notify": list(self.decision.notify),
            # issue 13: what the statement would touch, and the text that runs when
            # a row cap wraps it
            **{k: rec[k] for k in ("impact", "exec", "row_cap") if k in rec},
            "bell": any((targets.get(n) or {}).get("bell") for n in self.decision.notify),
        }

    def _wait(self, ticket: Ticket, listener: Waker | None, prompt: _Prompt | None) -> Asked:
        rid = ticket.id
        wait_end = self.t0 + self.wait
        expire_end = time.monotonic() + max(ticket.request.get("expires", 0) - time.time(), 0)
        end = min(wait_end, expire_end)
        said = None
        while True:
            verdict, problem = self.spool.read_verdict(rid)
            if problem is not None and problem != said:
                # Never silent, never run: a decision nobody can read is no decision.
                sys.stderr.write(
                    f"xguard: the decision on {rid} cannot be used ({problem}); the command "
                    f"did not run; waiting for it to be decided again (xguard approve|deny {rid})\n"
                )
                sys.stderr.flush()
                said = problem
            if verdict is not None:
                if prompt is not None and verdict["by"] != prompt.who:
                    prompt.say(f"\nxguard: {rid} {verdict['state']} by {verdict['by']}\n")
                return self._verdict(ticket, verdict)
            stop = self.channel.interrupted(rid)
            if stop is not None:
                return stop
            left = end - time.monotonic()
            if left <= 0:
                break
            fds = [x for x in (listener, prompt) if x is not None] + self.channel.fds()
            ready = readable(fds, min(POLL, left))
            if listener is not None and listener in ready:
                listener.drain()
            if prompt is not None and prompt in ready and not self._answer(ticket, prompt):
                prompt.close()
                prompt = None
            self.channel.ready(ready, self, rid)
        if expire_end <= wait_end:
            self.spool.decide(rid, "expired", "xguard", log=self.log)
            return self._verdict(
                ticket, self.spool.verdict(rid) or {"state": "expired", "by": "xguard"}
            )
        return Asked(
            False,
            int(ExitCode.TEMPFAIL),
            message=f"xguard: pending approval {rid}: the command did not run; "
            "go on with other work and run it again later",
            request_id=rid,
        )

    def _answer(self, ticket: Ticket, prompt: _Prompt) -> bool:
        """Handle one line typed at the prompt; False when the terminal is gone."""
        answer = prompt.read()
        if answer is None:
            return False
        if answer in ("y", "yes", "", "n", "no"):
            try:
                if answer in ("y", "yes"):
                    self.spool.decide(ticket.id, "approved", prompt.who, log=self.log)
                else:
                    self.spool.decide(
                        ticket.id,
                        "denied",
                        prompt.who,
                        reason="denied at the terminal",
                        log=self.log,
                    )
            except LookupError as e:  # a corrupt request file cannot be approved
                prompt.say(f"xguard: {e.args[0]}\n")
                prompt.ask()
        else:
            if answer in ("d", "details"):
                prompt.details()
            prompt.ask()
        return True

    def _verdict(self, ticket: Ticket, verdict: dict[str, Any]) -> Asked:
        rid, state, by = ticket.id, verdict.get("state"), verdict.get("by", "?")
        if state in ("approved", "denied"):
            self.spool.consume_own_answer(ticket)
        if state == "approved":
            return Asked(True, request_id=rid, reviewer=by)
        if state == "denied":
            return Asked(
                False,
                int(ExitCode.NOPERM),
                message=_denied(self.req, verdict),
                request_id=rid,
                reviewer=by,
            )
        return Asked(
            False,
            int(ExitCode.TEMPFAIL),
            message=f"xguard: approval request {rid} {state}: the command did not run",
            request_id=rid,
        )

    def _cancelled(self, ticket: Ticket | None, signum: int) -> Asked:
        name = signal.Signals(signum).name
        message = None
        if ticket is not None:
            won, _ = self.spool.decide(
                ticket.id,
                "cancelled",
                f"xguard ({name})",
                reason=f"the waiting xguard got {name}",
                log=self.log,
            )
            if won:
                message = f"xguard: cancelled approval request {ticket.id} ({name})"
        return Asked(False, 128 + signum, message=message, request_id=ticket.id if ticket else None)


# ---------------------------------------------------------------------------
class _Prompt:
    """sudo's way: ask on /dev/tty, not on the command's stdin or stdout."""

    def __init__(self, fd: int, request: dict[str, Any]) -> None:
        self.fd = fd
        self.request = request
        try:
            tty = os.ttyname(fd)
        except OSError:
            tty = "terminal"
        self.who = f"{user_name()} at {tty}"

    @classmethod
    def open(cls, gate: GateLike, ticket: Ticket) -> _Prompt | None:
        """A prompt when a person runs xguard at a terminal and config allows it."""
        if gate.ruleset.setting("prompt", True) is False:
            return None
        try:
            fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except (OSError, ValueError, AttributeError):
            return None
        if not _foreground(fd):
            # A background job reading its terminal is stopped (SIGTTIN): wait silently instead.
            os.close(fd)
            return None
        p = cls(fd, ticket.request)
        req = ticket.request
        why = "\n".join(f"  why: {printable(r, 300)}" for r in (req.get("reasons") or [])[:5])
        prod = "  PRODUCTION\n" if req.get("production") else ""
        p.say(
            f"xguard: this command needs approval (request {ticket.id}):\n{prod}"
            f"    {printable(str(req.get('command')), 400)}\n{why}\n"
        )
        p.ask()
        return p

    def fileno(self) -> int:
        """For select()."""
        return self.fd

    def say(self, text: str) -> None:
        """Write to the terminal (never to stdout)."""
        with contextlib.suppress(OSError):
            os.write(self.fd, text.encode("utf-8", "replace"))

    def ask(self) -> None:
        """Show the question."""
        self.say("Run it? [y/N/d] ")

    def read(self) -> str | None:
        """One typed line, lowercased; None at end of input or when sent to the background."""
        if not _foreground(self.fd):
            return None
        try:
            data = os.read(self.fd, 1024)
        except OSError:
            return None
        if not data:
            return None
        return data.decode("utf-8", "replace").strip().lower()

    def details(self) -> None:
        """The 'd' answer: what the reviewer sees."""
        r = self.request

        def show(key: str, limit: int = 300) -> str:
            # Folder and branch names can hold terminal escapes too.
            return printable(str(r.get(key) or "-"), limit)

        branch = f"  (git branch {show('git_branch', 80)})" if r.get("git_branch") else ""
        lines = [
            f"  command  {show('command', 2000)}",
            f"  cwd      {show('cwd')}{branch}",
            f"  session  {show('session', 80)}   profile {show('profile', 80)}",
            f"  agent    {show('parent', 80)} (pid {r.get('ppid')})",
        ]
        for u in r.get("units") or []:
            rule = f" [{u.get('rule')}]" if u.get("rule") else ""
            text = printable(str(u.get("text")), 200)
            lines.append(f"  {u.get('decision'):<17} {u.get('kind'):<8} {text}{rule}")
            if u.get("decision") != "allow" and u.get("why"):
                lines.append(f"  {'':<17} {'':<8} └ {printable(str(u['why']), 300)}")
        self.say("\n".join(lines) + "\n")

    def close(self) -> None:
        """Stop asking."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _foreground(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


# ---------------------------------------------------------------------------
def proc_name(pid: int) -> str | None:
    """A process's name (Linux /proc), for the reviewer's 'agent process'."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().decode("utf-8", "replace").strip() or None
    except OSError:
        return None


def git_branch(cwd: str) -> str | None:
    """The git branch of `cwd`, read from .git/HEAD (no git process on the hot path)."""
    d = os.path.abspath(cwd) if cwd else ""
    while d:
        dotgit = os.path.join(d, ".git")
        head = None
        if os.path.isdir(dotgit):
            head = os.path.join(dotgit, "HEAD")
        elif os.path.isfile(dotgit):  # a worktree or submodule: "gitdir: <path>"
            with (
                contextlib.suppress(OSError, UnicodeDecodeError),
                open(dotgit, encoding="utf-8") as f,
            ):
                line = f.readline().strip()
                if line.startswith("gitdir:"):
                    head = os.path.join(d, line[7:].strip(), "HEAD")
        if head is not None:
            try:
                with open(head, encoding="utf-8") as f:
                    ref = f.readline().strip()
            except (OSError, UnicodeDecodeError):
                return None
            if ref.startswith("ref: refs/heads/"):
                return ref[len("ref: refs/heads/") :]
            return f"(detached {ref[:12]})" if ref else None
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent
    return None

"""The one pipeline every front end's request goes through.

    outcome = run_request(request, gate, ask=<how to ask>, execute=<how to run>)

    limits.before -> decide -> limits.after -> deny | ask -> limits.before again
    -> audit "decision" -> execute -> audit "exit"

The shell (`-c`, `-s`, `run`), the interactive shell, ssh-gate, the broker and
every runtime hook call it; they differ only in the two things they pass in:

- `ask(gate, req, decision, record, log) -> Asked`: how a `require_approval`
  command gets a person's answer. The local shell waits on the spool (and
  the terminal); the broker waits for its reviewers while its client waits on
  the socket; a hook may hand the question back to its runtime (`ask`).
  Asking can only turn require_approval into run / not run: it never sees a
  `deny` (DESIGN-NOTES: approval only narrows).
- `execute`: how an approved or allowed command runs (an `Executor`: spawn it
  here, or tell the broker's client to and wait for its report), or None for
  a hook, whose runtime runs the command itself.

Order matters (SPEC §5, §6): the decision record is written before the
command starts, and if it cannot be written nothing runs; what runs is the
text that was decided on. The pipeline writes nothing to the terminal: the
one line the agent must see comes back in `Outcome.message`, and each front
end shows it its own way (stderr, a hook's reason, the broker's answer).
"""

from __future__ import annotations

from xguard.errors import ExitCode, XguardError
from xguard.util import new_id, printable

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from xguard.audit.log import AuditLog
    from xguard.gate.execenv import ExecResult
    from xguard.gate.request import Request
    from xguard.policy.decide import Decision

    class Executor(Protocol):
        """How an allowed or approved command runs."""

        def prepare(
            self, gate: Any, req: Request, decision: Decision, record: dict[str, Any]
        ) -> None:
            """Before the decision record is written: add what it must say about
            how the command will run (`confined`)."""

        def run(
            self, gate: Any, req: Request, decision: Decision, record: dict[str, Any]
        ) -> ExecResult:
            """Run it; how it ended."""

    Asker = Callable[[Any, Request, Decision, dict[str, Any], AuditLog], "Asked"]


class Asked:
    """A person's answer to a require_approval command, as `ask` got it.

    run: approved, go on. Otherwise exit_code says why not (77 denied, 75 still
    pending, 128+N cancelled by a signal) and message, when set, is the line
    the agent has not been shown yet. answer="ask" hands the question back to
    an agent runtime that asks its user itself (a hook)."""

    __slots__ = ("answer", "exit_code", "message", "request_id", "reviewer", "run")

    def __init__(
        self,
        run: bool,
        exit_code: int | None = None,
        *,
        message: str | None = None,
        request_id: str | None = None,
        reviewer: str | None = None,
        answer: str | None = None,
    ) -> None:
        self.run = run
        self.exit_code = exit_code
        self.message = message
        self.request_id = request_id
        self.reviewer = reviewer
        self.answer = answer


class Outcome:
    """What happened to a request.

    exit_code: what the front end exits with (the command's own status when it
    ran). answer: allow | deny | ask | pending — what a hook tells its runtime.
    message: one line for the agent, None when it has seen all it needs."""

    __slots__ = (
        "answer",
        "decision",
        "exit_code",
        "message",
        "ran",
        "record",
        "request_id",
        "reviewer",
    )

    def __init__(
        self,
        exit_code: int,
        answer: str,
        *,
        decision: Decision | None = None,
        record: dict[str, Any] | None = None,
        message: str | None = None,
        ran: bool = False,
        request_id: str | None = None,
        reviewer: str | None = None,
    ) -> None:
        self.exit_code = exit_code
        self.answer = answer
        self.decision = decision
        self.record = record
        self.message = message
        self.ran = ran
        self.request_id = request_id
        self.reviewer = reviewer


# The identity fields every record of a command carries (SPEC §6), for the exit line.
EXIT_FIELDS = ("id", "session", "profile", "user", "host", "pid", "cwd", "command", "source")


def deny_message(req: Request, decision: Decision) -> str:
    """`xguard: denied: <command> — <the unit that decided: why>` (SPEC §2)."""
    why = decision.reasons[0] if decision.reasons else "denied by rule"
    return f"xguard: denied: {printable(req.text, 200)} — {why}"


def run_request(
    req: Request,
    gate: Any,
    *,
    ask: Asker,
    execute: Executor | None,
    extra: dict[str, Any] | None = None,
) -> Outcome:
    """Decide `req`, ask when it needs a person, audit, and run it (or not).

    `gate` is a `Gate` or anything with its face (the broker's per-agent view).
    `extra` adds fields to every record (a hook's tool-call ids). With
    `execute=None` nothing runs: the decision record carries the `hook_answer`
    its runtime is given.
    """
    from xguard.gate import limits  # issue 5: sessions and blast-radius limits

    stop = limits.before_decision(gate, req)  # expired or ended session, sessions.required
    decision = None
    if stop is None:
        decision = gate.decide(req)
        stop = limits.after_decision(gate, req, decision)  # loop breaker (may escalate), caps
    if stop is not None:
        line = limits.audit_refusal(gate, req, decision, stop, extra)
        return Outcome(int(ExitCode.NOPERM), "deny", decision=decision, message=f"xguard: {line}")
    assert decision is not None  # set whenever stop is None
    # Issue 13: the impact preview (rows a statement would touch, replicas
    # running now), after the limits and before anyone is asked. It may make the
    # decision stricter (row caps, live baselines), and, for a command that runs
    # here, wrap what runs so psql holds the row cap at run time ("exec").
    impact: dict[str, Any] = {}
    preview = limits.preview_units(gate, decision)
    if preview:
        from xguard.gate.impact import step

        impact = step(gate, req, decision, preview, guard=execute is not None)
    record = gate.base_record(req, decision, new_id())
    record.update(impact)
    if decision.reasons:  # the unit that decided, and why (issue 10)
        record["reason"] = decision.reasons[0]
    if extra:
        record.update(extra)
    log = gate.audit()
    hook = execute is None

    if decision.decision == "deny":
        log.append("decision", **record, **({"hook_answer": "deny"} if hook else {}))
        return Outcome(
            int(ExitCode.NOPERM),
            "deny",
            decision=decision,
            record=record,
            message=deny_message(req, decision),
        )

    reviewer = request_id = None
    if decision.decision == "require_approval":
        asked = ask(gate, req, decision, record, log)
        request_id = asked.request_id
        if asked.answer == "ask":  # the runtime asks its own user (a hook)
            log.append("decision", **record, hook_answer="ask")
            return Outcome(
                0, "ask", decision=decision, record=record, message=asked.message, ran=False
            )
        if not asked.run:
            code = int(ExitCode.NOPERM) if asked.exit_code is None else asked.exit_code
            if asked.answer == "deny" and hook:  # a hook set to deny what needs approval
                log.append("decision", **record, hook_answer="deny")
            answer = "pending" if code == ExitCode.TEMPFAIL else "deny"
            return Outcome(
                code,
                answer,
                decision=decision,
                record=record,
                message=asked.message,
                request_id=request_id,
                reviewer=asked.reviewer,
            )
        stop = limits.before_decision(gate, req)  # the session may have ended during the wait
        if stop is not None:
            line = limits.audit_refusal(gate, req, decision, stop, extra)
            return Outcome(
                int(ExitCode.NOPERM), "deny", decision=decision, message=f"xguard: {line}"
            )
        record["id"] = request_id or record["id"]
        reviewer = asked.reviewer

    if execute is None:
        # The runtime runs it, outside any box of ours (issue 11).
        log.append("decision", **record, reviewer=reviewer, hook_answer="allow", confined="none")
        return Outcome(
            0,
            "allow",
            decision=decision,
            record=record,
            request_id=request_id,
            reviewer=reviewer,
        )
    execute.prepare(gate, req, decision, record)
    # Written before the command starts (SPEC §6); if it cannot be written,
    # AuditError propagates and nothing runs.
    log.append("decision", **record, reviewer=reviewer)
    result = execute.run(gate, req, decision, record)
    message = None
    try:
        log.append(
            "exit",
            **{k: record.get(k) for k in EXIT_FIELDS},
            exit_code=result.exit_code,
            duration_ms=result.duration_ms,
            **result.fields,
        )
    except XguardError as e:
        message = f"xguard: warning: the command ran but its exit was not logged: {e.message}"
    # Nobody knows how it ended: never report success (issue 10).
    code = int(ExitCode.SOFTWARE) if result.exit_code is None else result.exit_code
    return Outcome(
        code,
        "allow",
        decision=decision,
        record=record,
        message=message,
        ran=True,
        request_id=request_id,
        reviewer=reviewer,
    )

"""How a local front end hands a request over: to the one pipeline with the
local ways to ask (the spool and the terminal) and to run (here, scrubbed);
in strict mode to the broker, which runs the pipeline, while this process
only executes what it is told to. Hot path: standard library only."""

from __future__ import annotations

from xguard.environment import Environment
from xguard.gate import strictmode
from xguard.util import say

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from typing import Any

    from xguard.audit.log import AuditLog
    from xguard.gate.pipeline import Asked
    from xguard.gate.request import Gate, Request
    from xguard.policy.decide import Decision


def gate_and_run(req: Request, terminal: Environment | None = None) -> int:
    """Decide, maybe wait for a human, run; show the agent the one line it
    needs; return the exit status. `terminal`: this process's streams and
    whether they are terminals (xguard/environment.py)."""
    if strictmode.configured():
        from xguard.gate.strictmode import broker_socket
        from xguard.strict.client import gate_via_broker

        sock = broker_socket()
        if sock:  # strict mode (issue 6): the broker decides and audits; this process runs
            return gate_via_broker(req, sock)
    from xguard.gate.execenv import LocalExecutor
    from xguard.gate.pipeline import run_request
    from xguard.gate.request import load_gate

    terminal = terminal or Environment()
    gate = load_gate(req, confinable=True)  # LocalExecutor runs it in the box (issue 11)
    outcome = run_request(req, gate, ask=LocalAsker(terminal), execute=LocalExecutor(terminal))
    if outcome.message:
        say(outcome.message)
    return outcome.exit_code


class LocalAsker:
    """Wait on the local spool, and ask at the terminal when a person is at
    one (the approval modules are imported only when a command needs
    approval: the queue's imports are not an allowed command's cost)."""

    def __init__(self, terminal: Environment) -> None:
        self.terminal = terminal

    def __call__(
        self, gate: Gate, req: Request, decision: Decision, record: dict[str, Any], log: AuditLog
    ) -> Asked:
        from xguard.approval.wait import Channel, obtain_approval

        return obtain_approval(gate, req, decision, record, log, Channel(self.terminal))

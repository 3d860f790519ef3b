"""Answer a runtime's own start-up step (xguard/adapters/wrappers.py `startup`).

Claude Code probes its shell with `<shell> -c env` and builds a shell snapshot
at start-up; Codex CLI builds a snapshot through the login shell and then
sources it to check it. None of these is the model's command, so none of
them may leave a pending request for a reviewer or hold up the first command
until the runtime's own timeout (Claude Code waits 10 s for its snapshot).
They are answered at once and nothing runs: a snapshot is neither written nor
sourced, so the runtime goes on without one. The env probe is decided like
any command when the rules allow or deny `env` (it then runs with xguard's
scrubbed environment, or is denied); only when it would wait for a person is
it answered here, with no output. Each answer leaves a `decision` record of its own (source
`startup:<runtime>`, rule `startup:<kind>`), so the log still shows every
text the shell was given.
"""

from __future__ import annotations

import os
import sys

from xguard.adapters.wrappers import Startup


def needs_answer(step: Startup, text: str) -> bool:
    """True when the step is answered here; False for an env probe the rules
    allow or deny (it then goes through the gate like any command)."""
    if step.kind != "env-probe":
        return True
    from xguard.gate.request import Gate

    return bool(Gate().decide_text(text).decision == "require_approval")


def answer(step: Startup, text: str, session: str | None) -> int:
    """Record the step, say on stderr that it did not run, return its status."""
    from xguard.gate.request import Gate
    from xguard.util import new_id

    gate = Gate()
    log = gate.audit()
    import pwd

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    log.append(
        "decision",
        id=new_id(),
        session=session or gate.environ.get("XGUARD_SESSION") or None,
        profile=gate.profile,
        user=user,
        host=os.uname().nodename,
        pid=os.getpid(),
        cwd=gate.cwd,
        command=text,
        units=[],
        decision="deny",
        rules=[f"startup:{step.kind}"],
        note=f"{step.runtime} start-up step, not run: {step.what}",
        source=f"startup:{step.runtime}",
    )
    if step.kind == "env-probe":
        return 0  # an empty environment: nothing of the agent's reaches the runtime this way
    sys.stderr.write(
        f"xguard: {step.runtime}'s {step.what} was not run: xguard never makes or sources "
        "shell snapshots (the agent can write them)\n"
    )
    return 1

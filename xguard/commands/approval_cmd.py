"""`xguard pending`, `approve`, `deny` and `review`: the reviewer's verbs (issue 3).

The deciding verbs refuse to run from inside a gated command, so an agent
cannot approve its own request (issue 3 item 7). The policy already denies
units that run them (SPEC §3, built in); this is the second wall, for what
slips past the parser (a script that calls `xguard approve`, `env -u`):

- the executor puts XGUARD_GATED in every gated command's environment;
- and, because a variable can be unset, the verbs also walk their parent
  processes (/proc/<pid>/stat) looking for an xguard gate process, or, in
  the kernel box's own pid namespace, for xguard's bwrap as its init (and
  there the spool is masked anyway).

In the default same-user setup an agent that can start programs outside its
shell (a detached daemon, another terminal) is not contained; strict mode
(a separate agent user) is the setup that holds against that.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any


from xguard.errors import ExitCode, UsageError
from xguard.util import format_age, parent_pid, printable, proc_ppid

GATE_MARKER = "XGUARD_GATED"
# Arguments with which an xguard process gates commands (SPEC §2): shell mode
# (-c, -lc, -s …, or none at all) and the hot-path verbs.
_GATE_VERBS = frozenset({"run", "hook", "ssh-gate", "warm"})  # warm: its workers gate
_NOT_GATES = frozenset({"-h", "--help", "-V", "--version"})


# ---------------------------------------------------------------------------
# No self-approval.


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]] if raw else []


def is_gate_cmdline(argv: list[str]) -> bool:
    """Whether a process's argv is an xguard that gates commands.

    Matches the console script (`xguard …`, or `python …/xguard …` as a
    shebang runs it) and `python -m xguard …`; then the arguments decide:
    shell mode or a hot-path verb is a gate, `xguard review` is not.
    """
    for i, a in enumerate(argv[:4]):
        if os.path.basename(a) == "xguard" or (
            i > 0 and argv[i - 1] == "-m" and a in ("xguard", "xguard.__main__")
        ):
            args = argv[i + 1 :]
            break
    else:
        return False
    if args[:1] == ["--debug"]:
        args = args[1:]
    if not args:
        return True  # an interactive gated shell, or a script on stdin
    first = args[0]
    return first in _GATE_VERBS or (first.startswith(("-", "+")) and first not in _NOT_GATES)


def gated_by(
    environ: dict[str, str] | os._Environ[str] | None = None, pid: int | None = None
) -> str | None:
    """Why this process runs inside a gated command, or None when it does not."""
    env = os.environ if environ is None else environ
    if env.get(GATE_MARKER):
        return f"{GATE_MARKER} is set (request {env[GATE_MARKER]})"
    pid = parent_pid() if pid is None else pid
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        argv = _cmdline(pid)
        if is_gate_cmdline(argv):
            return (
                f"its parent process {pid} ({printable(' '.join(argv[:4]), 80)}) is an xguard gate"
            )
        pid = proc_ppid(pid) or 0
    return _boxed()


def _boxed() -> str | None:
    """Inside the kernel box (issue 11) the parent chain ends at the pid
    namespace's init, xguard's bwrap; the gate itself is outside, unseen."""
    from xguard.gate.confine import BOX_SIGNATURE

    argv = _cmdline(1)
    if (
        argv
        and os.path.basename(argv[0]) == "bwrap"
        and tuple(argv[1 : 1 + len(BOX_SIGNATURE)]) == BOX_SIGNATURE
    ):
        return "it runs in xguard's sandbox (pid 1 is the sandbox's bwrap)"
    return None


def refuse_if_gated(verb: str) -> None:
    """Exit 77 when a deciding verb runs inside a gated command.

    Nothing is written: inside a gated command the environment (XGUARD_HOME
    among it) is the agent's to choose, so no log location found there can
    be trusted. The gated command's own exit line (77) is the trace.
    """
    why = gated_by()
    if why:
        sys.stderr.write(
            f"xguard: denied: xguard {verb} cannot run inside a command that xguard gates "
            f"(no self-approval): {why}\n"
        )
        raise SystemExit(int(ExitCode.NOPERM))


# ---------------------------------------------------------------------------
def _gate() -> Any:
    from xguard.gate.request import Gate

    return Gate()


def pending(as_json: bool, show_all: bool) -> int:
    """List pending approval requests, oldest first."""
    from xguard.gate.strictmode import broker_socket
    from xguard.strict.client import remote_pending

    if broker_socket():  # strict mode: the broker's queue, for reviewers only (issue 6)
        reqs = remote_pending(str(broker_socket()), show_all)
    else:
        from xguard.approval.backend import open_queue

        gate = _gate()
        spool = open_queue(gate)
        try:
            spool.sweep(gate.audit())
            reqs = spool.all() if show_all else spool.pending()
        finally:
            spool.close()
    now = time.time()
    if as_json:
        for r in reqs:
            r["age_s"] = round(now - r.get("created", now), 3)
        sys.stdout.write(json.dumps(reqs, ensure_ascii=False, indent=1) + "\n")
        return 0
    if not reqs:
        sys.stderr.write(
            "xguard: no pending requests\n" if not show_all else "xguard: no requests\n"
        )
        return 0
    width = shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 10_000
    head = f"{'ID':<8} {'AGE':>6} {'STATE':<9} " if show_all else f"{'ID':<8} {'AGE':>6} "
    sys.stdout.write(
        f"{head}{'HOST':<14} {'SESSION':<12} {'PROFILE':<11} {'CWD':<24} COMMAND  —  WHY\n"
    )
    for r in reqs:
        state = f"{r['state']:<9} " if show_all else ""
        why = "; ".join(r.get("reasons") or [])
        prof = "PRODUCTION" if r.get("production") else (r.get("profile") or "-")
        line = (
            f"{r['id']:<8} {format_age(now - r.get('created', now)):>6} {state}"
            f"{printable(str(r.get('host') or '-'), 14):<14} "
            f"{printable(str(r.get('session') or '-'), 12):<12} {printable(str(prof), 11):<11} "
            f"{printable(str(r.get('cwd')), 24):<24} {printable(str(r.get('command')), 300)}  —  "
            f"{printable(why, 300)}"
        )
        sys.stdout.write((line if len(line) <= width else line[: width - 1] + "…") + "\n")
    return 0


def _decide(
    ref: str,
    state: str,
    *,
    for_: str | None = None,
    note: str | None = None,
    reason: str | None = None,
) -> int:
    from xguard.util import parse_duration

    refuse_if_gated("approve" if state == "approved" else "deny")
    for_seconds = None
    if for_ is not None:
        for_seconds = parse_duration(for_)
        if not for_seconds:
            raise UsageError(f"--for {for_!r} is not a duration (like 30s, 15m, 2h)")
    from xguard.gate.strictmode import broker_socket
    from xguard.strict.client import remote_decide

    if (
        broker_socket()
    ):  # strict mode: the broker accepts decisions from reviewer uids only (issue 6)
        return remote_decide(
            str(broker_socket()), ref, state, for_seconds=for_seconds, note=note, reason=reason
        )
    from xguard.approval.backend import open_queue

    gate = _gate()
    spool = open_queue(gate)
    try:
        return _decide_on(
            gate, spool, ref, state, for_=for_, for_seconds=for_seconds, note=note, reason=reason
        )
    finally:
        spool.close()


def _decide_on(
    gate: Any,
    spool: Any,
    ref: str,
    state: str,
    *,
    for_: str | None,
    for_seconds: float | None,
    note: str | None,
    reason: str | None,
) -> int:
    from xguard.approval.backend import reviewer_name
    from xguard.approval.wait import settings

    log = gate.audit()
    spool.sweep(log)
    try:
        rid = spool.resolve(ref)
    except LookupError as e:
        sys.stderr.write(f"xguard: {e.args[0]}\n")
        return 1
    try:
        won, v = spool.decide(
            rid,
            state,
            reviewer_name(spool),
            reason=reason,
            note=note,
            for_seconds=for_seconds,
            once_seconds=settings(gate, None)[1],
            log=log,
        )
    except LookupError as e:
        sys.stderr.write(f"xguard: {e.args[0]}\n")
        return 1
    if not won:
        sys.stderr.write(f"xguard: {rid} was already {v.get('state')} by {v.get('by')}\n")
        return 1
    req = spool.get(rid) or {}
    how = f" for {for_}" if for_seconds else (" (once)" if state == "approved" else "")
    sys.stdout.write(f"{state} {rid}{how}: {printable(str(req.get('command', '')), 200)}\n")
    return 0


def approve(request_id: str, for_: str | None, note: str | None) -> int:
    """Approve one request (an unambiguous prefix of its ID is enough)."""
    return _decide(request_id, "approved", for_=for_, note=note)


def deny(request_id: str, reason: str | None) -> int:
    """Deny one request; the agent's command exits 77 with the reason."""
    return _decide(request_id, "denied", reason=reason)


def review(no_bell: bool, web: bool, listen: str, trust_proxy: tuple[str, ...]) -> int:
    """The reviewer's live terminal: approve or deny pending requests."""
    refuse_if_gated("review")
    if web:
        try:
            from xguard.approval.web import serve
        except ImportError as e:
            raise UsageError(
                f"xguard review --web needs the web extra: pip install 'xguard[web]' ({e.name})"
            ) from e
        gate = _gate()
        trusted = [*(gate.ruleset.setting("web") or {}).get("trusted_proxies", []), *trust_proxy]
        return serve(gate, listen, trusted)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "xguard review needs a terminal; use xguard pending / approve / deny in scripts"
        )
    from xguard.approval.review import review_main

    return review_main(_gate(), bell=not no_bell)

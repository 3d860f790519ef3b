"""`xguard ssh-gate`: the gate of an OpenSSH forced command (issue 6).

On a host the agent reaches over SSH, every login of the agent's key runs
`xguard ssh-gate` instead of what the client asked for:

    # sshd_config (preferred: the agent cannot edit it)
    Match User agent
        ForceCommand /usr/local/bin/xguard ssh-gate
    # or in a root-owned authorized_keys file
    command="/usr/local/bin/xguard ssh-gate",restrict ssh-ed25519 AAAA… agent

sshd puts what the client asked for in SSH_ORIGINAL_COMMAND; that string
goes through the same gate as `xguard -c` (through the broker in strict
mode), with source `ssh` and the client's address in the audit record.

- No command (an interactive login) is refused unless `--allow-interactive`;
  then each line is gated on its own.
- A subsystem (sftp: sshd hands over its program, `sftp-server` or
  `internal-sftp`, as the command) is refused unless `--allow-subsystem sftp`;
  then it still goes through the gate like any command.

Refusals are audited (a `decision` record with decision `deny`, rule
`ssh-gate`) and exit 77. Hot path: standard library only.
"""

from __future__ import annotations

import os
import sys

from xguard.errors import ExitCode, UsageError

# What sshd runs for a subsystem request, by program name -> subsystem name.
SUBSYSTEM_PROGRAMS = {"sftp-server": "sftp", "internal-sftp": "sftp"}


def subsystem_of(command: str) -> str | None:
    """The subsystem a forced command's SSH_ORIGINAL_COMMAND stands for, if any."""
    words = command.strip().split()
    if not words:
        return None
    return SUBSYSTEM_PROGRAMS.get(os.path.basename(words[0]))


def forced_command_args(text: str) -> list[str] | None:
    """The ssh-gate arguments when `text` is exactly `[/path/]xguard ssh-gate [OPTIONS]`.

    sshd runs a ForceCommand as `$SHELL -c COMMAND`; when the agent's login
    shell is xguard itself, that arrives here in shell mode. Only plain words
    qualify (no quoting, expansion or operators), so nothing else can hide in
    it; and ssh-gate gates SSH_ORIGINAL_COMMAND like `-c`, so this can never
    run anything ungated.
    """
    words = text.split()
    if len(words) < 2 or os.path.basename(words[0]) != "xguard" or words[1] != "ssh-gate":
        return None
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=,:+-")
    if not all(set(w) <= ok for w in words):
        return None
    return words[2:]


def _parse(args: list[str]) -> tuple[bool, set[str]]:
    from xguard.frontends.verbs import VERBS

    verb = VERBS["ssh-gate"]
    opts, rest = verb.parse(args)
    if opts.get("help"):
        sys.stdout.write(verb.help())
        raise SystemExit(0)
    if rest:
        raise UsageError(f"unexpected argument {rest[0]!r}\n{verb.usage}")
    return bool(opts["allow_interactive"]), set(opts["allow_subsystem"])


def _refuse(what: str, why: str) -> int:
    """Audit and refuse; exit 77."""
    from xguard.strict.client import report_refusal
    from xguard.gate.strictmode import broker_socket

    sock = broker_socket()
    if sock:
        report_refusal(sock, what, why)
    else:
        try:
            from xguard.gate.request import Gate
            from xguard.util import new_id

            gate = Gate()
            gate.audit().append(
                "decision",
                id=new_id(),
                user=os.environ.get("USER"),
                host=os.uname().nodename,
                pid=os.getpid(),
                cwd=os.getcwd(),
                command=what,
                units=[],
                decision="deny",
                rules=["ssh-gate"],
                source="ssh",
                note=why,
                ssh_client=os.environ.get("SSH_CONNECTION"),
            )
        except Exception as e:  # the refusal stands even when it cannot be logged
            sys.stderr.write(f"xguard: warning: the refusal was not logged: {e}\n")
    sys.stderr.write(f"xguard: denied: {why}\n")
    return int(ExitCode.NOPERM)


def ssh_gate_main(args: list[str]) -> int:
    allow_interactive, subsystems = _parse(args)
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
    if command is None or not command.strip():
        if not allow_interactive:
            return _refuse(
                "(interactive login)",
                "interactive SSH logins are refused for this user; "
                "run one command at a time: ssh HOST 'COMMAND'",
            )
        return _interactive()
    sub = subsystem_of(command)
    if sub is not None and sub not in subsystems:
        return _refuse(command, f"the SSH subsystem '{sub}' is refused for this user")
    from xguard.frontends.local import gate_and_run
    from xguard.gate.request import Request, env_wait

    return gate_and_run(Request(text=command, source="ssh", wait=env_wait()))


def _interactive() -> int:
    """An allowed interactive login: the gated shell (through the broker in strict mode)."""
    from xguard.gate.strictmode import broker_socket

    sock = broker_socket()
    if not sock:
        from xguard.frontends.interactive import interactive_main

        return interactive_main([])
    # Strict mode: each line is one `xguard -c`, decided by the broker. No
    # state carries from line to line (cd, exports): say so once.
    from xguard.strict.client import gate_via_broker
    from xguard.gate.request import Request, env_wait

    tty = sys.stdin.isatty()
    if tty:
        sys.stderr.write(
            "xguard: strict-mode SSH shell; each line runs on its own "
            "(no cd or exports carry over)\n"
        )
    status = 0
    while True:
        if tty:
            sys.stderr.write("xguard$ ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            return status
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.strip() in ("exit", "logout"):
            return status
        status = gate_via_broker(Request(text=line, source="ssh", wait=env_wait()), sock)

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

USAGE = "usage: xguard ssh-gate [--allow-interactive] [--allow-subsystem NAME]..."
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
    interactive = False
    subsystems: set[str] = set()
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            sys.stdout.write(
                USAGE + "\n\nGate SSH_ORIGINAL_COMMAND (an OpenSSH forced command).\n\n"
                "Examples:\n"
                "  sshd_config:      Match User agent / ForceCommand xguard ssh-gate\n"
                '  authorized_keys:  command="xguard ssh-gate",restrict ssh-ed25519 AAAA… agent\n'
                "  then, from the agent's side:  ssh agent@host 'ls -la'\n"
            )
            raise SystemExit(0)
        if a == "--allow-interactive":
            interactive = True
        elif a == "--allow-subsystem" or a.startswith("--allow-subsystem="):
            if "=" in a:
                value = a.split("=", 1)[1]
            else:
                if i + 1 >= len(args):
                    raise UsageError(f"--allow-subsystem needs a name\n{USAGE}")
                i += 1
                value = args[i]
            subsystems.add(value)
        else:
            raise UsageError(f"unknown option {a!r}\n{USAGE}")
        i += 1
    return interactive, subsystems


def _refuse(what: str, why: str) -> int:
    """Audit and refuse; exit 77."""
    from xguard.strict.client import broker_socket, report_refusal

    sock = broker_socket()
    if sock:
        report_refusal(sock, what, why)
    else:
        try:
            from xguard.gate.runner import Gate, new_id

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
    from xguard.gate.runner import Request, _env_wait, gate_and_run

    req = Request(text=command, source="ssh", wait=_env_wait())  # type: ignore[call-arg]
    return gate_and_run(req)


def _interactive() -> int:
    """An allowed interactive login: the gated shell (through the broker in strict mode)."""
    from xguard.strict.client import broker_socket

    sock = broker_socket()
    if not sock:
        from xguard.frontends.interactive import interactive_main

        return interactive_main([])
    # Strict mode: each line is one `xguard -c`, decided by the broker. No
    # state carries from line to line (cd, exports): say so once.
    from xguard.strict.client import gate_via_broker
    from xguard.gate.runner import Request, _env_wait

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
        req = Request(text=line, source="ssh", wait=_env_wait())  # type: ignore[call-arg]
        status = gate_via_broker(req, sock)

"""The shell front end: `xguard -c`, `-s`, a script on stdin, `xguard run` and
`xguard check` (hot path: standard library only).

Each turns its command line into a `Request` and hands it to the one pipeline
(xguard/gate/pipeline.py) with the local ways to ask (the spool and the
terminal) and to run (here, scrubbed); in strict mode the broker runs the
pipeline instead and this process only executes what it is told to.
"""

from __future__ import annotations

import os
import sys

from xguard.adapters import wrapped_or_startup
from xguard.environment import Environment
from xguard.errors import UsageError
from xguard.gate import strictmode
from xguard.gate.request import Request, env_wait
from xguard.frontends.local import gate_and_run
from xguard.util import parse_duration, printable, say, shell_join

# Shell mode: the flag shapes agents use for $SHELL.
_PASS_SHORT = set("euxvfhBCHPTk")  # bash set-options that change how the script runs
_IGNORE_SHORT = set("lirDps")  # login/interactive/restricted …: no rc files ever run ungated


def parse_shell_args(args: list[str]) -> tuple[str | None, list[str], list[str], bool]:
    """-> (command string or None, flags for bash, positional args, read stdin)."""
    passthru: list[str] = []
    cmd_mode = False
    stdin_mode = False
    i = 0
    while i < len(args):
        a = args[i]
        if a in {"--", "-"}:
            i += 1
            break
        if a.startswith("--"):
            if a in ("--rcfile", "--init-file"):
                i += 2
                continue
            i += 1
            continue
        if a[:1] in "-+" and len(a) > 1:
            letters = a[1:]
            takes_o = False
            for ch in letters:
                if ch == "c":
                    cmd_mode = True
                elif ch == "s":
                    stdin_mode = True
                elif ch in ("o", "O"):
                    takes_o = True
                elif ch in _PASS_SHORT:
                    passthru.append(a[0] + ch)
            if takes_o:
                if i + 1 >= len(args):
                    raise UsageError("option -o needs a name (usage: xguard -o pipefail -c STRING)")
                if "o" in letters:
                    passthru.extend([a[0] + "o", args[i + 1]])
                i += 2
                continue
            i += 1
            continue
        break
    rest = args[i:]
    if cmd_mode:
        if not rest:
            raise UsageError("-c needs a command string (usage: xguard -c STRING [NAME [ARG...]])")
        return rest[0], passthru, rest[1:], False
    return None, passthru, rest, stdin_mode or not rest


def shell_main(args: list[str], terminal: Environment | None = None) -> int:
    terminal = terminal or Environment()
    text, flags, positional, from_stdin = parse_shell_args(args)
    source, exec_text = "shell", None
    writes: tuple[tuple[str, bool], ...] = ()
    if text is not None and "ssh-gate" in text and "SSH_CONNECTION" in os.environ:
        # sshd runs a ForceCommand through the login shell (issue 6).
        from xguard.frontends.sshgate import forced_command_args, ssh_gate_main

        ssh_args = forced_command_args(text)
        if ssh_args is not None:
            return ssh_gate_main(ssh_args)
    if text is not None and wrapped_or_startup(text):  # a plain test: most texts stop here
        from xguard.adapters.wrappers import recognise, startup

        # An agent runtime's own wrapper around the model's command (SHELL,
        # CLAUDE_CODE_SHELL_PREFIX, a login shell or a PATH shim is xguard): the
        # model's command is what is decided, shown and audited (issue 12).
        found = recognise(text, os.environ)
        if found is not None:
            text, exec_text, source = found.command, found.exec_text, found.source
            writes = found.writes
        else:
            step = startup(text, flags)
            if step is not None:  # a runtime's start-up step: answered at once, no request
                from xguard.adapters.startup import answer, needs_answer

                if needs_answer(step, text):
                    return answer(step, text, None)
    if text is None:
        if from_stdin:
            if terminal.stdin_isatty and not positional:
                from xguard.frontends.interactive import interactive_main

                return interactive_main(args)
            text = terminal.stdin.buffer.read().decode("utf-8", "surrogateescape")
            positional = ["xguard", *positional] if positional else []
        else:
            script = positional[0]
            try:
                with open(script, "rb") as f:
                    text = f.read().decode("utf-8", "surrogateescape")
            except OSError as e:
                say(f"xguard: {script}: {e.strerror}")
                return 127
    return gate_and_run(
        Request(
            text=text,
            shell_args=flags,
            positional=positional,
            wait=env_wait(),
            source=source,
            exec_text=exec_text,
            trailer_writes=writes,
        ),
        terminal,
    )


def run_main(args: list[str]) -> int:
    from xguard.frontends.verbs import VERBS

    verb = VERBS["run"]
    opts, argv = verb.parse(args)
    if opts.get("help"):
        sys.stdout.write(verb.help())
        return 0
    wait = env_wait()
    if opts["wait"] is not None:
        wait = parse_duration(opts["wait"])
        if wait is None:
            raise UsageError(
                f"--wait {opts['wait']!r} is not a duration (like 30s, 15m, 2h)\n{verb.usage}"
            )
    if not argv:
        raise UsageError(f"nothing to run\n{verb.usage}")
    req = Request(
        text=shell_join(argv),
        argv=argv,
        wait=wait,
        session=opts["session"],
        profile=opts["profile"],
        source="run",
    )
    return gate_and_run(req)


def check_main(args: list[str]) -> int:
    from xguard.frontends.verbs import VERBS

    verb = VERBS["check"]
    opts, rest = verb.parse(args)
    if opts.get("help"):
        sys.stdout.write(verb.help())
        return 0
    text, rules, batch, profile = opts["command"], opts["rules"], opts["batch"], opts["profile"]
    argv = rest or None
    if rest and not opts.get("--"):
        raise UsageError(f"unexpected argument {rest[0]!r}\n{verb.usage}")
    if strictmode.configured():
        from xguard.strict.client import check_via_broker
        from xguard.gate.strictmode import broker_socket, refuse_local

        sock = broker_socket()
        if sock:
            if rules is not None or batch is not None:
                # Both decide in this process, under rules the agent can edit:
                # in strict mode only the broker's rules decide (issue 6).
                refuse_local()
            if text is not None or argv:
                return check_via_broker(sock, text, argv, bool(opts["json"]), profile)
    from xguard.gate.request import Gate

    # Decided as `xguard -c` would: in the box where one can start (issue 11).
    gate = Gate(rules_file=rules, profile=profile, confinable=True)
    if batch is not None:
        from xguard.frontends.batch import check_batch

        return check_batch(gate, batch)
    if text is None and not argv:
        raise UsageError(f"give -c STRING, -- ARGV... or --batch FILE\n{verb.usage}")
    d = gate.decide_text(text) if text is not None else gate.decide_argv(argv or [])
    out = sys.stdout
    if opts["json"]:
        import json  # with `re`, ~10 ms: only when asked for

        out.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")
    else:
        out.write(f"{d.decision}\n")
        for u in d.units:
            rule = f" [{u.rule}]" if u.rule else ""
            out.write(f"  {u.decision:<17} {u.kind:<8} {printable(u.text, 120)}{rule}\n")
            if u.decision != "allow" and u.why:
                out.write(f"  {'':<17} {'':<8} └ {u.why}\n")
    return {"allow": 0, "require_approval": 1, "deny": 2}[d.decision]


def dispatch(verb: str, args: list[str]) -> int:
    if verb == "run":
        return run_main(args)
    if verb == "check":
        return check_main(args)
    if verb == "hook":
        from xguard.frontends.hooks import hook_main

        return hook_main(args)
    if verb == "ssh-gate":
        from xguard.frontends.sshgate import ssh_gate_main

        return ssh_gate_main(args)
    raise UsageError(f"unknown command {verb}")  # pragma: no cover

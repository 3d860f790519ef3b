"""The hot path: parse -> decide -> (ask) -> audit -> run.

`xguard -c`, `xguard -s`, `xguard run`, `xguard check` and the agent hooks
start here. This module and everything it imports use the standard library
only (tree-sitter is imported only for commands that are not plain);
tests/unit/test_hotpath_imports.py proves click, rich, yaml, filelock and
platformdirs stay out.

Order matters (SPEC §5, §6): the decision record is written before the
command starts, and if it cannot be written nothing runs; what runs is
exactly the string that was decided on.
"""

from __future__ import annotations

import os
import sys
from xguard._record import dataclass, field

from xguard.errors import ConfigError, ExitCode, UsageError, XguardError
from xguard.paths import Paths, ensure_dir, get_paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from xguard.gate.confine import Box

ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: easy to read aloud and type


def new_id(n: int = 6) -> str:
    b = os.urandom(n)
    return "".join(ID_ALPHABET[x % len(ID_ALPHABET)] for x in b)


_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def shell_join(argv: list[str]) -> str:
    """shlex.join without shlex (it imports re: ~6 ms on the `run` path);
    tests/unit/test_runner_helpers.py proves the two equal."""
    return " ".join(
        a if a and _SHELL_SAFE.issuperset(a) else "'" + a.replace("'", "'\"'\"'") + "'"
        for a in argv
    )


def printable(text: str, limit: int = 400) -> str:
    """The command as a person should see it: control characters escaped."""
    out = []
    for c in text:
        if c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 32 or ord(c) == 127 or (not c.isascii() and not c.isprintable()):
            out.append(f"\\u{ord(c):04x}" if ord(c) > 0xFF else f"\\x{ord(c):02x}")
        else:
            out.append(c)
    s = "".join(out)
    return s if len(s) <= limit else s[: limit - 1] + "…"


# ---------------------------------------------------------------------------
@dataclass
class Request:
    """One command to gate: shell text or a direct argv."""

    text: str
    argv: list[str] | None = None  # run mode
    shell_args: list[str] = field(default_factory=list)  # flags passed on to bash (-e, -o pipefail)
    positional: list[str] = field(default_factory=list)  # $0 $1 … after the string
    wait: float | None = None
    session: str | None = None
    profile: str | None = None
    source: str = "shell"  # shell | run | hook:claude-code | ssh | shell:claude-code
    # What bash runs when xguard adds a fixed trailer of its own to the decided
    # text (Claude Code's cwd report, xguard/adapters/claude_code.py); else text.
    exec_text: str | None = None


class Gate:
    """Everything the hot path needs, loaded once per process."""

    def __init__(
        self,
        environ: dict[str, str] | None = None,
        rules_file: str | None = None,
        profile: str | None = None,
        confinable: bool = False,
    ) -> None:
        from xguard.policy.rules import load_ruleset

        if environ is None and rules_file is None and _maybe_strict():
            from xguard.strict.client import refuse_local

            refuse_local()  # strict mode (issue 6): the broker decides, never the agent's own rules
        self.environ = dict(os.environ if environ is None else environ)
        self.paths: Paths = get_paths(self.environ)
        self.profile = (
            profile if profile is not None else (self.environ.get("XGUARD_PROFILE") or None)
        )
        ensure_dir(self.paths.state_dir_s)
        self.ruleset = load_ruleset(self.paths, rules_file, self.environ, profile=self.profile)
        if (
            self.profile
            and self.profile not in self.ruleset.profiles
            and not os.path.exists(os.path.join(self.paths.rules_d_s, f"{self.profile}.yaml"))
        ):
            raise ConfigError(f"unknown profile '{self.profile}'", str(self.ruleset.sources[0]), 1)
        self.cwd = _cwd(self.environ)
        self.home = self.environ.get("HOME") or os.path.expanduser("~")
        self._contexts: dict[str, object] = {}
        # Whether this front end runs what it allows through run_child with a
        # box (issue 11); hooks, whose runtime runs the command, are not.
        self.confinable = confinable
        self._confine: tuple[str, str] | None = None

    def confine(self) -> tuple[str, str]:
        """(mechanism, why none) for commands this gate runs; resolved once."""
        if self._confine is None:
            if not self.confinable:
                self._confine = ("none", "this front end does not run the command")
            else:
                from xguard.gate.confine import resolve

                self._confine = resolve(self.ruleset, self.paths.cache_dir_s, self.environ)
        return self._confine

    def context(self, cwd: str | None = None):  # type: ignore[no-untyped-def]
        """The policy context for a cwd (made once per cwd: batch checks reuse it)."""
        key = cwd or self.cwd
        cached = self._contexts.get(key)
        if cached is not None:
            return cached
        from xguard.policy.decide import Context, real_glob

        protected = self.paths.protected_s()
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for s in self.ruleset.sources:
            if s and not s.startswith(package):
                protected.append(s)
        ctx = Context(
            cwd=key,
            home=self.home,
            protected=protected,
            expand_glob=real_glob,
            confined=self.confine()[0] != "none",
        )
        self._contexts[key] = ctx
        return ctx

    def decide_text(self, text: str, cwd: str | None = None):  # type: ignore[no-untyped-def]
        from xguard.policy.decide import decide
        from xguard.shell.parser import parse

        return decide(parse(text), self.ruleset, self.context(cwd))

    def decide_argv(self, argv: list[str], cwd: str | None = None):  # type: ignore[no-untyped-def]
        from xguard.policy.decide import decide
        from xguard.shell.parser import parse_argv

        return decide(parse_argv(argv), self.ruleset, self.context(cwd))

    def audit(self):  # type: ignore[no-untyped-def]
        from xguard.audit.log import AuditLog

        a = self.ruleset.setting("audit", {}) or {}
        forward = a.get("forward")
        if forward == "syslog":
            forward = {"syslog": {"address": "/dev/log"}}
        return AuditLog(
            self.paths.audit_file_s,
            rotate_bytes=a.get("rotate_bytes"),
            keep=a.get("keep", 10),
            forward=forward,
        )

    def base_record(self, req: Request, decision, cmd_id: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
        import pwd

        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
        return {
            "id": cmd_id,
            "session": req.session,
            "profile": req.profile or self.profile,
            "user": user,
            "host": os.uname().nodename,
            "pid": os.getpid(),
            "cwd": self.cwd,
            "command": req.text,
            "units": [u.to_json() for u in decision.units],
            "decision": decision.decision,
            "rules": decision.rules,
            "source": req.source,
        }


def _maybe_strict() -> bool:
    """Cheap test before importing xguard/brokerclient.py (issue 6: strict mode)."""
    return bool(os.environ.get("XGUARD_BROKER")) or os.path.exists("/etc/xguard/client.conf")


def _cwd(environ: dict[str, str]) -> str:
    try:
        return os.getcwd()
    except OSError:
        return environ.get("PWD", "/")


# ---------------------------------------------------------------------------
def _audit_config_error(e: ConfigError, req: Request) -> None:
    """Best effort: a broken config is itself an event worth keeping (SPEC §6)."""
    try:
        from xguard.audit.log import AuditLog

        paths = get_paths()
        AuditLog(paths.audit_file_s).append(
            "config_error",
            command=req.text,
            cwd=_cwd(dict(os.environ)),
            pid=os.getpid(),
            session=os.environ.get("XGUARD_SESSION"),
            note=e.message,
            profile=req.profile or os.environ.get("XGUARD_PROFILE"),
        )
    except Exception:  # noqa: S110 - the config error itself is what the user must see
        pass


def gate_and_run(req: Request, gate: Gate | None = None) -> int:
    """Decide, audit, maybe wait for a human, run; return the exit status."""
    if gate is None and _maybe_strict():
        from xguard.strict.client import broker_socket, gate_via_broker

        sock = broker_socket()
        if sock:  # strict mode (issue 6): the broker decides and audits; this process runs
            return gate_via_broker(req, sock)
    from xguard.gate import limits  # issue 5: sessions and blast-radius limits

    if gate is None:
        if req.profile is None and not os.environ.get("XGUARD_PROFILE"):  # a session's own profile
            req.profile = limits.session_profile(os.environ, req.session)
        try:
            gate = Gate(profile=req.profile, confinable=True)
        except ConfigError as e:
            _audit_config_error(e, req)
            raise
    req.session = req.session or gate.environ.get("XGUARD_SESSION") or None
    stop = limits.before_decision(gate, req)  # expired/ended session, sessions.required
    if stop is not None:
        return limits.refuse(gate, req, None, stop)
    decision = gate.decide_argv(req.argv) if req.argv is not None else gate.decide_text(req.text)
    stop = limits.after_decision(
        gate, req, decision
    )  # loop breaker (may escalate), rate caps, trip
    if stop is not None:
        return limits.refuse(gate, req, decision, stop)
    # --- confinement (issue 11): `required` with no box, or an allow that
    # needs the box, or a command that asks to run unconfined, needs a person.
    from xguard.gate import confine

    mechanism, _ = gate.confine()
    _escalate(gate, decision, req.text)
    # ---
    cmd_id = new_id()
    record = gate.base_record(req, decision, cmd_id)
    log = gate.audit()
    shown = printable(req.text, 200)

    if decision.decision == "deny":
        log.append("decision", **record)
        why = decision.reasons[0] if decision.reasons else "denied by rule"
        sys.stderr.write(f"xguard: denied: {shown} — {why}\n")
        return int(ExitCode.NOPERM)

    approved_by = None
    if decision.decision == "require_approval":
        from xguard.approval.wait import obtain_approval

        outcome = obtain_approval(gate, req, decision, record, log)
        if outcome.exit_code is not None:
            return outcome.exit_code
        stop = limits.before_decision(gate, req)  # the session may have expired during the wait
        if stop is not None:
            return limits.refuse(gate, req, decision, stop)
        record["id"] = outcome.request_id or cmd_id
        approved_by = outcome.reviewer

    # --- confinement (issue 11): the box this command runs in, from its decision.
    box = confine.plan(
        decision,
        gate.ruleset,
        gate.context(),
        gate.paths,
        mechanism,
        approved=approved_by is not None,
        cache_dir=gate.paths.cache_dir_s,
    )
    record["confined"] = box.mechanism
    # ---
    # The decision line is written before the command starts (SPEC §6); if it
    # cannot be written, AuditError propagates and nothing runs.
    log.append("decision", **record, reviewer=approved_by)
    return _execute(req, gate, decision, record, log, box=box)


def _execute(  # type: ignore[no-untyped-def]
    req: Request, gate: Gate, decision, record: dict[str, object], log, *, box: Box | None = None
) -> int:
    from xguard.gate.execenv import run_child, scrub, which

    env_cfg = gate.ruleset.env
    profile_cfg = gate.ruleset.profiles.get(gate.profile or "", {}) if gate.profile else {}
    keep = profile_cfg.get("env", {}).get("keep", env_cfg["keep"])
    set_ = {**env_cfg.get("set", {}), **profile_cfg.get("env", {}).get("set", {})}
    env = scrub(gate.environ, keep, set_)
    # Marks the command as gated, so xguard's deciding verbs refuse to run inside it (issue 3, no self-approval).
    env["XGUARD_GATED"] = str(record["id"])
    if req.argv is not None:
        path = which(req.argv[0], env.get("PATH", os.defpath))
        if path is None:
            sys.stderr.write(f"xguard: {req.argv[0]}: command not found\n")
            log.append("exit", **_exit_fields(record), exit_code=127, duration_ms=0)
            return 127
        argv = req.argv
    else:
        path = gate.ruleset.setting("shell", "/bin/bash")
        argv = [path, *req.shell_args, "-c", req.exec_text or req.text, *req.positional]
    from xguard.gate.limits import effective
    from xguard.policy.rules import parse_duration

    limits = effective(gate)  # the profile's limits over the top-level ones (issue 5)

    max_runtime = decision.max_runtime
    if max_runtime is None and limits.get("max_runtime") is not None:
        max_runtime = parse_duration(limits["max_runtime"])
    grace = parse_duration(limits.get("kill_grace", 5)) or 5.0
    try:
        out = run_child(path, argv, env, max_runtime=max_runtime, kill_grace=grace, box=box)
    except OSError as e:
        sys.stderr.write(f"xguard: cannot run {argv[0]}: {e.strerror}\n")
        log.append("exit", **_exit_fields(record), exit_code=126, duration_ms=0)
        return 126
    try:
        extra: dict[str, object] = {"timed_out": True} if out.timed_out else {}
        if out.signal:
            extra["signal"] = out.signal
        log.append(
            "exit",
            **_exit_fields(record),
            exit_code=out.exit_code,
            duration_ms=out.duration_ms,
            **extra,
        )
    except XguardError as e:
        sys.stderr.write(
            f"xguard: warning: the command ran but its exit was not logged: {e.message}\n"
        )
    if out.timed_out:
        sys.stderr.write(
            f"xguard: command exceeded max_runtime ({max_runtime:g}s) and was stopped\n"
        )
    return out.exit_code


def _exit_fields(record: dict[str, object]) -> dict[str, object]:
    """The identity fields every record carries (SPEC §6), for the exit line."""
    return {
        k: record[k]
        for k in ("id", "session", "profile", "user", "host", "pid", "cwd", "command", "source")
    }


# ---------------------------------------------------------------------------
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
        if a == "--" or a == "-":
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


def shell_main(args: list[str]) -> int:
    text, flags, positional, from_stdin = parse_shell_args(args)
    source, exec_text = "shell", None
    if text is not None and "ssh-gate" in text and "SSH_CONNECTION" in os.environ:
        from xguard.strict.sshgate import (
            forced_command_args,
        )  # sshd runs a ForceCommand through the login shell (issue 6)

        ssh_args = forced_command_args(text)
        if ssh_args is not None:
            from xguard.strict.sshgate import ssh_gate_main

            return ssh_gate_main(ssh_args)
    if text is not None and " && pwd -P >| " in text:
        # Claude Code's Bash-tool wrapper (SHELL or CLAUDE_CODE_SHELL_PREFIX is
        # xguard): the model's command inside it is what is gated (issue 7).
        from xguard.adapters.claude_code import parse_claude_code_wrapper

        wrapper = parse_claude_code_wrapper(text, os.environ)
        if wrapper is not None:
            text, exec_text, source = wrapper.command, wrapper.exec_text, "shell:claude-code"
    if text is None:
        if from_stdin:
            if sys.stdin.isatty() and not positional:
                from xguard.frontends.interactive import interactive_main

                return interactive_main(args)
            text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
            positional = ["xguard", *positional] if positional else []
        else:
            script = positional[0]
            try:
                with open(script, "rb") as f:
                    text = f.read().decode("utf-8", "surrogateescape")
            except OSError as e:
                sys.stderr.write(f"xguard: {script}: {e.strerror}\n")
                return 127
    return gate_and_run(
        Request(
            text=text,
            shell_args=flags,
            positional=positional,
            wait=_env_wait(),
            source=source,
            exec_text=exec_text,
        )
    )


def _env_wait() -> float | None:
    from xguard.policy.rules import parse_duration

    w = os.environ.get("XGUARD_WAIT")
    if not w:
        return None
    v = parse_duration(w)
    if v is None:
        raise UsageError(f"XGUARD_WAIT={w!r} is not a duration (like 30s, 15m, 2h)")
    return v


# ---------------------------------------------------------------------------
# `xguard run` and `xguard check` (hand-parsed: click is too slow for here).
RUN_USAGE = "usage: xguard run [--wait DURATION] [--session ID] [--profile NAME] -- ARGV..."
CHECK_USAGE = "usage: xguard check [--json] [--rules FILE] [--profile NAME] (-c STRING | -- ARGV... | --batch FILE)"


def _take(args: list[str], i: int, flag: str, usage: str) -> tuple[str, int]:
    a = args[i]
    if "=" in a and a.startswith("--"):
        return a.split("=", 1)[1], i + 1
    if i + 1 >= len(args):
        raise UsageError(f"{flag} needs a value\n{usage}")
    return args[i + 1], i + 2


def run_main(args: list[str]) -> int:
    from xguard.policy.rules import parse_duration

    wait = _env_wait()
    session = profile = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if a in ("-h", "--help"):
            sys.stdout.write(
                RUN_USAGE + "\n\nGate ARGV as one simple command and run it directly (no shell).\n"
                "Example: xguard run -- git status\n"
            )
            return 0
        if a.split("=", 1)[0] == "--wait":
            v, i = _take(args, i, "--wait", RUN_USAGE)
            wait = parse_duration(v)
            if wait is None:
                raise UsageError(f"--wait {v!r} is not a duration (like 30s, 15m, 2h)\n{RUN_USAGE}")
        elif a.split("=", 1)[0] == "--session":
            session, i = _take(args, i, "--session", RUN_USAGE)
        elif a.split("=", 1)[0] == "--profile":
            profile, i = _take(args, i, "--profile", RUN_USAGE)
        elif a.startswith("-"):
            raise UsageError(f"unknown option {a}\n{RUN_USAGE}")
        else:
            break
    argv = args[i:]
    if not argv:
        raise UsageError(f"nothing to run\n{RUN_USAGE}")
    req = Request(
        text=shell_join(argv), argv=argv, wait=wait, session=session, profile=profile, source="run"
    )
    return gate_and_run(req)


def check_main(args: list[str]) -> int:
    import json

    as_json = False
    rules = text = batch = profile = None
    argv: list[str] | None = None
    i = 0
    while i < len(args):
        a = args[i]
        key = a.split("=", 1)[0]
        if a == "--json":
            as_json = True
            i += 1
        elif a in ("-h", "--help"):
            sys.stdout.write(
                CHECK_USAGE + "\n\nSay what would happen to a command; run nothing.\n"
                "Exit 0 allow, 1 require_approval, 2 deny, 78 config error.\n"
                "Example: xguard check --json -c 'rm -rf ~'\n"
            )
            return 0
        elif key == "--rules":
            rules, i = _take(args, i, "--rules", CHECK_USAGE)
        elif key == "--profile":
            profile, i = _take(args, i, "--profile", CHECK_USAGE)
        elif key == "--batch":
            batch, i = _take(args, i, "--batch", CHECK_USAGE)
        elif a == "-c":
            text, i = _take(args, i, "-c", CHECK_USAGE)
        elif a == "--":
            argv = args[i + 1 :]
            break
        else:
            raise UsageError(f"unexpected argument {a!r}\n{CHECK_USAGE}")
    if rules is None and batch is None and (text is not None or argv) and _maybe_strict():
        from xguard.strict.client import broker_socket, check_via_broker

        sock = broker_socket()
        if sock:  # strict mode: the broker's rules decide (issue 6)
            return check_via_broker(sock, text, argv, as_json, profile)
    # Decided as `xguard -c` would: in the box where one can start (issue 11).
    gate = Gate(rules_file=rules, profile=profile, confinable=True)
    if batch is not None:
        return _check_batch(gate, batch)
    if text is None and not argv:
        raise UsageError(f"give -c STRING, -- ARGV... or --batch FILE\n{CHECK_USAGE}")
    d = gate.decide_text(text) if text is not None else gate.decide_argv(argv or [])
    _escalate(gate, d, text or "")
    if as_json:
        sys.stdout.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(f"{d.decision}\n")
        for u in d.units:
            rule = f" [{u.rule}]" if u.rule else ""
            sys.stdout.write(f"  {u.decision:<17} {u.kind:<8} {printable(u.text, 120)}{rule}\n")
            if u.decision != "allow" and u.why:
                sys.stdout.write(f"  {'':<17} {'':<8} └ {u.why}\n")
    return {"allow": 0, "require_approval": 1, "deny": 2}[d.decision]


def _escalate(gate: Gate, decision, text: str) -> None:  # type: ignore[no-untyped-def]
    """What `xguard -c` adds to the decision for its box (issue 11)."""
    from xguard.gate import confine

    mechanism, why = gate.confine()
    confine.escalate(decision, text, gate.ruleset, mechanism, why)


def _check_batch(gate: Gate, batch: str) -> int:
    import json

    f = sys.stdin if batch == "-" else open(batch, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    out = sys.stdout
    bad = 0
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                cmd = obj["command"]
                if not isinstance(cmd, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                bad += 1
                out.write(
                    json.dumps({"line": n, "error": 'not a JSON object with a "command" string'})
                    + "\n"
                )
                continue
            d = gate.decide_text(cmd, obj.get("cwd"))
            _escalate(gate, d, cmd)
            obj.update(d.to_json())
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return 0 if not bad else 1


def dispatch(verb: str, args: list[str]) -> int:
    if verb == "run":
        return run_main(args)
    if verb == "check":
        return check_main(args)
    if verb == "hook":
        from xguard.adapters import hook_main

        return hook_main(args)
    if verb == "ssh-gate":
        from xguard.strict.sshgate import ssh_gate_main

        return ssh_gate_main(args)
    raise UsageError(f"unknown command {verb}")  # pragma: no cover

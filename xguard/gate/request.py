"""What the pipeline works on: a `Request` (one command to gate) and the
`Gate` (everything deciding it needs, loaded once per process).

Hot path: standard library only (tree-sitter comes in through the parser, and
only for commands that are not plain); tests/unit/test_hotpath_imports.py
proves click, rich, yaml, filelock and platformdirs stay out.
"""

from __future__ import annotations

import os

from xguard._record import dataclass, field
from xguard.errors import ConfigError, UsageError
from xguard.gate import strictmode
from xguard.paths import Paths, ensure_dir, get_paths, host_name
from xguard.util import parse_duration, user_name

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from typing import Any, Protocol

    from xguard.audit.log import AuditLog
    from xguard.policy.decide import Context, Decision
    from xguard.policy.rules import Ruleset

    class GateLike(Protocol):
        """What the pipeline, the limits and approval waiting use of a gate:
        a `Gate`, or the broker's view of one for a single agent."""

        paths: Paths
        ruleset: Ruleset
        environ: dict[str, str]
        profile: str | None
        cwd: str

        def context(self, cwd: str | None = None) -> Context: ...
        def decide(self, req: Request) -> Decision: ...
        def audit(self) -> AuditLog: ...
        def base_record(self, req: Request, decision: Decision, cmd_id: str) -> dict[str, Any]: ...


@dataclass
class Request:
    """One command to gate: shell text or a direct argv, as a front end hands it over."""

    text: str
    argv: list[str] | None = None  # run mode: executed directly, no shell
    shell_args: list[str] = field(default_factory=list)  # flags passed on to bash (-e, -o pipefail)
    positional: list[str] = field(default_factory=list)  # $0 $1 … after the string
    wait: float | None = None
    session: str | None = None
    profile: str | None = None
    # Who asked: shell | run | interactive | ssh | hook:<runtime> | shell:<runtime>
    source: str = "shell"
    # What bash runs when a front end adds a fixed trailer of its own to the
    # decided text (a runtime's cwd report, xguard/adapters/); else text.
    exec_text: str | None = None
    cwd: str | None = None  # the folder it runs in; None: this process's
    # Files that trailer (not the decided text) writes, and whether it writes
    # them on every run: opened here before the command runs, without
    # following a symlink, as the trailer's fd 9 (gate/execenv.py
    # open_trailer_file), so neither the command nor the box can redirect them.
    trailer_writes: tuple[tuple[str, bool], ...] = ()

    def how(self) -> list[str]:
        """How the text runs, for approval keys: argv mode, or shell flags and positional args."""
        if self.argv is not None:
            return ["argv"]
        return ["shell", *self.shell_args, "--", *self.positional]


def request_key(
    text: str, cwd: str, session: str | None, profile: str | None, how: list[str]
) -> str:
    """What an approval is bound to: the exact text, cwd, session and profile,
    plus how the text runs (shell flags, positional args, or argv mode), so a
    different command, folder, session or profile can never reuse it."""
    import json
    from hashlib import sha256

    blob = json.dumps([text, cwd, session or "", profile or "", how], ensure_ascii=False)
    return sha256(blob.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def current_cwd(environ: dict[str, str] | None = None) -> str:
    try:
        return os.getcwd()
    except OSError:
        return (os.environ if environ is None else environ).get("PWD", "/")


def env_wait(environ: dict[str, str] | None = None) -> float | None:
    """XGUARD_WAIT as seconds (None when unset); a bad value is a usage error."""
    w = (os.environ if environ is None else environ).get("XGUARD_WAIT")
    if not w:
        return None
    v = parse_duration(w)
    if v is None:
        raise UsageError(f"XGUARD_WAIT={w!r} is not a duration (like 30s, 15m, 2h)")
    return v


class Gate:
    """Everything deciding needs, loaded once per process: paths, rules, profile, cwd."""

    def __init__(
        self,
        environ: dict[str, str] | None = None,
        rules_file: str | None = None,
        profile: str | None = None,
        confinable: bool = False,
    ) -> None:
        from xguard.policy.rules import load_ruleset

        if environ is None and rules_file is None and strictmode.configured():
            strictmode.refuse_local()  # strict mode (issue 6): the broker decides, never the agent's own rules
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
        self.cwd = current_cwd(self.environ)
        self.home = self.environ.get("HOME") or os.path.expanduser("~")
        self._contexts: dict[str, Context] = {}
        # Whether this front end runs what it allows in the kernel box
        # (issue 11: LocalExecutor); hooks, whose runtime runs the command, do
        # not. Strict mode's broker works out its agents' boxes itself
        # (strict/broker.py: confine_for).
        self.confinable = confinable
        self._confine: tuple[str, str] | None = None

    def confine(self) -> tuple[str, str]:
        """(mechanism, why none) for the commands this gate runs; resolved once."""
        if self._confine is None:
            if not self.confinable:
                self._confine = ("none", "this front end does not run commands in a box")
            else:
                from xguard.gate.confine import resolve

                self._confine = resolve(self.ruleset, self.paths.cache_dir_s, self.environ)
        return self._confine

    def context(self, cwd: str | None = None) -> Context:
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
        # issue 11: a command name is decided on the program the agent's PATH runs.
        from xguard.policy.resolve import path_resolver

        which = path_resolver(
            self.environ.get("PATH", os.defpath),
            self.home,
            key,
            trusted=self.ruleset.setting("trust_path", []),
        )
        ctx = Context(
            cwd=key,
            home=self.home,
            protected=protected,
            expand_glob=real_glob,
            which=which,
            confined=self.confine()[0] != "none",
        )
        self._contexts[key] = ctx
        return ctx

    def decide_text(self, text: str, cwd: str | None = None) -> Decision:
        from xguard.policy.decide import decide
        from xguard.shell.parser import parse

        return self._escalate(decide(parse(text), self.ruleset, self.context(cwd)), text)

    def decide_argv(self, argv: list[str], cwd: str | None = None) -> Decision:
        from xguard.policy.decide import decide
        from xguard.shell.parser import parse_argv

        return self._escalate(decide(parse_argv(argv), self.ruleset, self.context(cwd)), "")

    def _escalate(self, decision: Decision, text: str) -> Decision:
        """What confinement adds (issue 11): `confine: required` with no box,
        an allow that needs the box without one, or a command that asks to run
        unconfined, needs a person."""
        if decision.decision == "allow":
            from xguard.gate.confine import escalate

            mechanism, why = self.confine()
            escalate(decision, text, self.ruleset, mechanism, why)
        return decision

    def decide(self, req: Request) -> Decision:
        """The decision for a request: its argv, or its text, in its cwd."""
        if req.argv is not None:
            return self.decide_argv(req.argv, req.cwd)
        return self.decide_text(req.text, req.cwd)

    def audit(self) -> AuditLog:
        from xguard.audit.log import AuditLog

        a = self.ruleset.setting("audit", {}) or {}
        forward = a.get("forward")
        if forward == "syslog":
            forward = {"syslog": {"address": "/dev/log"}}
        mirror = None
        queue = self.ruleset.setting("queue") or {}
        if queue.get("postgres"):  # issue 15: a copy of every record in the shared database
            from xguard.audit.dbsync import Kicker

            mirror = Kicker(self.paths.state_dir_s, queue["postgres"])
        return AuditLog(
            self.paths.audit_file_s,
            rotate_bytes=a.get("rotate_bytes"),
            keep=a.get("keep", 10),
            forward=forward,
            mirror=mirror,
        )

    def env_settings(self, profile: str | None = None) -> tuple[list[str], dict[str, str]]:
        """(variables kept, variables set) for the command's environment: the profile's over the top level."""
        env_cfg = self.ruleset.env
        name = profile if profile is not None else self.profile
        prof = self.ruleset.profiles.get(name or "", {}) if name else {}
        keep = prof.get("env", {}).get("keep", env_cfg["keep"])
        set_ = {**env_cfg.get("set", {}), **prof.get("env", {}).get("set", {})}
        return keep, set_

    def base_record(self, req: Request, decision: Decision, cmd_id: str) -> dict[str, object]:
        """The fields every record of this command carries (SPEC §6)."""
        return {
            "id": cmd_id,
            "session": req.session,
            "profile": req.profile or self.profile,
            "user": user_name(),
            "host": host_name(self.environ),
            "pid": os.getpid(),
            "cwd": req.cwd or self.cwd,
            "command": req.text,
            "units": [u.to_json() for u in decision.units],
            "decision": decision.decision,
            "rules": decision.rules,
            "source": req.source,
        }


def audit_config_error(e: ConfigError, req: Request) -> None:
    """Best effort: a broken config is itself an event worth keeping (SPEC §6)."""
    try:
        from xguard.audit.log import AuditLog

        paths = get_paths()
        AuditLog(paths.audit_file_s).append(
            "config_error",
            command=req.text,
            cwd=req.cwd or current_cwd(),
            pid=os.getpid(),
            session=req.session or os.environ.get("XGUARD_SESSION"),
            note=e.message,
            profile=req.profile or os.environ.get("XGUARD_PROFILE"),
        )
    except Exception:  # noqa: S110 - the config error itself is what the user must see
        pass


def load_gate(req: Request, cwd: str | None = None, *, confinable: bool = False) -> Gate:
    """The Gate for a request as every local front end builds it: a session's own
    profile (issue 5), and a config error audited before it is reported."""
    if req.profile is None and not os.environ.get("XGUARD_PROFILE"):
        sid = req.session or os.environ.get("XGUARD_SESSION")
        if sid:
            from xguard.gate.sessions import profile_of

            req.profile = profile_of(os.environ, sid)
    try:
        gate = Gate(profile=req.profile, confinable=confinable)
    except ConfigError as e:
        audit_config_error(e, req)
        raise
    if cwd:
        gate.cwd = cwd
    req.session = req.session or gate.environ.get("XGUARD_SESSION") or None
    if gate.ruleset.setting("warm", True) or os.environ.get("XGUARD_WARM") == "1":
        from xguard import warm

        # Started once this command is done (xguard/__main__.py: launch).
        from xguard.util import parse_duration

        idle = parse_duration(gate.ruleset.setting("warm_idle"))
        warm.want_start(gate.paths.state_dir_s, idle)
    return gate

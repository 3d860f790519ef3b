"""The hot-path verbs' command lines, as one table.

`xguard run`, `check`, `hook` and `ssh-gate` are parsed here by hand (click
costs ~45 ms, paid on every gated command). The same table feeds their
`--help`, the click faces that `xguard --help`, the man page and the
completions are made from (xguard/commands/faces.py), so the four cannot
drift apart. Standard library only.
"""

from __future__ import annotations

from xguard.errors import UsageError

TYPE_CHECKING = False  # typing costs ~3 ms to import on the hot path; type checkers see True
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class Opt:
    """One option: `--wait DURATION`; flag=True for an option without a value."""

    __slots__ = ("choices", "dest", "flag", "help", "metavar", "multi", "names")

    def __init__(
        self,
        names: Sequence[str],
        metavar: str = "",
        help: str = "",
        *,
        flag: bool = False,
        choices: Sequence[str] = (),
        dest: str | None = None,
        multi: bool = False,
    ) -> None:
        self.names = tuple(names)
        self.multi = multi  # may be given more than once: the values come back as a list
        self.metavar = metavar
        self.help = help
        self.flag = flag
        self.choices = tuple(choices)
        self.dest = dest or self.names[-1].lstrip("-").replace("-", "_")


class Arg:
    """A word after the options: `RUNTIME`, or `ARGV...` (many=True)."""

    __slots__ = ("many", "name", "required")

    def __init__(self, name: str, *, many: bool = False, required: bool = True) -> None:
        self.name, self.many, self.required = name, many, required


class Verb:
    """A hot-path verb: its options, the words after them, and its help text."""

    __slots__ = ("args", "epilog", "examples", "name", "options", "positionals", "summary", "usage")

    def __init__(
        self,
        name: str,
        summary: str,
        options: Sequence[Opt],
        *,
        args: str,
        examples: Sequence[str],
        epilog: str = "",
        positionals: Sequence[Arg] = (),
    ) -> None:
        self.name = name
        self.positionals = tuple(positionals)
        self.summary = summary
        self.options = tuple(options)
        self.args = args
        self.examples = tuple(examples)
        self.epilog = epilog
        opts = " ".join(
            f"[{o.names[0]}]" if o.flag else f"[{o.names[0]} {o.metavar}]" for o in self.options
        )
        self.usage = f"usage: xguard {name} {opts} {args}".replace("  ", " ").rstrip()

    def help(self) -> str:
        lines = [self.usage, "", self.summary]
        if self.epilog:
            lines += ["", self.epilog]
        if self.options:
            lines += ["", "Options:"]
            for o in self.options:
                left = ", ".join(o.names) + ("" if o.flag else f" {o.metavar}")
                lines.append(f"  {left:<28} {o.help}")
        lines += ["", "Examples:", *(f"  {e}" for e in self.examples)]
        return "\n".join(lines) + "\n"

    def parse(
        self, args: list[str], *, positional_first: bool = False
    ) -> tuple[dict[str, Any], list[str]]:
        """-> (option values by dest, the words after the options).

        Options end at `--` or at the first word that is not one. `--opt=VALUE`
        works for every option with a value. `-h`/`--help` come back as
        {"help": True}. positional_first: the verb's first word (hook's runtime)
        stands before its options.
        """
        values: dict[str, Any] = {o.dest: [] if o.multi else None for o in self.options}
        rest: list[str] = []
        by_name = {n: o for o in self.options for n in o.names}
        i = 0
        if positional_first and args and not args[0].startswith("-"):
            rest.append(args[0])
            i = 1
        while i < len(args):
            a = args[i]
            if a == "--":
                values["--"] = True  # what follows is an argv, whatever it looks like
                i += 1
                break
            if a in ("-h", "--help"):
                values["help"] = True
                return values, rest
            name, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")
            o = by_name.get(name)
            if o is None:
                if a.startswith("-") and a != "-":
                    raise UsageError(f"unknown option {a}\n{self.usage}")
                break
            if o.flag:
                if eq:
                    raise UsageError(f"{name} takes no value\n{self.usage}")
                values[o.dest] = True
                i += 1
                continue
            if eq:
                v, i = inline, i + 1
            elif i + 1 < len(args):
                v, i = args[i + 1], i + 2
            else:
                raise UsageError(f"{name} needs a value\n{self.usage}")
            if o.choices and v not in o.choices:
                raise UsageError(
                    f"{name} must be one of {', '.join(o.choices)} (got {v!r})\n{self.usage}"
                )
            if o.multi:
                values[o.dest].append(v)
            else:
                values[o.dest] = v
        rest.extend(args[i:])
        return values, rest


_WAIT = Opt(
    ["--wait"], "DURATION", "How long to wait for approval (30s, 15m, 2h); also XGUARD_WAIT."
)
_SESSION = Opt(["--session"], "ID", "Session to run in; also XGUARD_SESSION.")

VERBS: dict[str, Verb] = {
    "run": Verb(
        "run",
        "Gate ARGV as one simple command and run it directly (no shell).",
        [
            _WAIT,
            _SESSION,
            Opt(
                ["--profile"], "NAME", "Rules profile (staging, production …); also XGUARD_PROFILE."
            ),
        ],
        args="-- ARGV...",
        positionals=[Arg("argv", many=True)],
        examples=[
            "xguard run -- git status",
            "xguard run --wait 5m -- kubectl scale deploy/api --replicas=3",
        ],
    ),
    "check": Verb(
        "check",
        "Say what would happen to a command; run nothing.",
        [
            Opt(["--json"], help="Print one JSON object: decision, units, reasons.", flag=True),
            Opt(["--rules"], "FILE", "Decide under this rules file instead of the one in effect."),
            Opt(["--profile"], "NAME", "Rules profile to decide under."),
            Opt(["-c"], "STRING", "The shell command to check.", dest="command"),
            Opt(["--batch"], "FILE", "JSON lines with a \"command\" each ('-' for stdin)."),
        ],
        args="[-- ARGV...]",
        positionals=[Arg("argv", many=True, required=False)],
        epilog="Exit 0 allow, 1 require_approval, 2 deny, 78 config error.",
        examples=[
            "xguard check -c 'rm -rf ~'",
            "xguard check --json -- git status",
            "xguard check --batch commands.jsonl --rules my-rules.yaml",
        ],
    ),
    "hook": Verb(
        "hook",
        "Answer an agent runtime's pre-command hook (JSON on stdin).",
        [
            Opt(
                ["--require-approval"],
                "ask|wait|deny",
                "What require_approval becomes: ask (the runtime prompts; not for codex, where "
                "it would run the command), wait (for `xguard review`), deny; default: config "
                "hook.<runtime>.require_approval, else ask (codex, gemini: wait).",
                choices=["ask", "wait", "deny"],
            ),
            Opt(
                ["--timeout"],
                "SECONDS",
                "The hook's timeout in the runtime's settings (default 600; gemini 60): "
                "`wait` gives up before it.",
            ),
        ],
        args="claude-code|codex|gemini",
        positionals=[Arg("runtime")],
        examples=[
            'Claude Code settings.json: {"hooks": {"PreToolUse": [{"matcher": "*",',
            '  "hooks": [{"type": "command", "command": "xguard hook claude-code"}]}]}}',
            'Codex config.toml: [[hooks.PreToolUse.hooks]] command = "xguard hook codex"',
            'Gemini CLI settings.json: {"hooks": {"BeforeTool": [{"matcher": ".*",',
            '  "hooks": [{"type": "command", "command": "xguard hook gemini"}]}]}}',
        ],
    ),
    "ssh-gate": Verb(
        "ssh-gate",
        "Gate SSH_ORIGINAL_COMMAND (an OpenSSH forced command).",
        [
            Opt(
                ["--allow-interactive"],
                help="Give a login without a command the gated shell (default: refused).",
                flag=True,
            ),
            Opt(
                ["--allow-subsystem"],
                "NAME",
                "Allow this SSH subsystem (sftp …); may be given more than once.",
                multi=True,
            ),
        ],
        args="",
        examples=[
            "sshd_config:      Match User agent / ForceCommand xguard ssh-gate",
            'authorized_keys:  command="xguard ssh-gate",restrict ssh-ed25519 AAAA… agent',
            "then, from the agent's side:  ssh agent@host 'ls -la'",
        ],
    ),
}

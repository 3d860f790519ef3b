"""The `xguard` command line's click faces: every option, argument, help
text and example of the commands that are not the hot path, and the faces of
the hot-path verbs (made from their one table, xguard/frontends/verbs.py).

This is the only place that knows click, with cli.py (the group and its
entry). Each face calls a plain function in a command module
(`xguard/commands/*_cmd.py`) that takes plain values and returns an exit
code, imported only when the command runs: `xguard pending` does not load
the audit reader, and a test can call `approve("k3m9xa", None, None)`
without click. The hot-path verbs never reach these faces: __main__ sends
them to xguard/frontends/shell.py before click is imported; called anyway
(through click), they hand their words back to the same dispatcher.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from xguard.adapters import HOOKS
from xguard.frontends.verbs import VERBS, Verb


C = TypeVar("C", bound=click.Command)


def face(target: str) -> Callable[[C], C]:
    """Make a click command call `module:function` with its parsed values.

    A group calls its function only when no subcommand was given (the
    subcommand's own face does the work then)."""

    def attach(cmd: C) -> C:
        def run(**values: Any) -> Any:
            if isinstance(cmd, click.Group) and click.get_current_context().invoked_subcommand:
                return 0
            module, name = target.split(":", 1)
            return getattr(importlib.import_module(module), name)(**values)

        cmd.callback = run
        return cmd

    return attach


# -- values parsed at the edge ------------------------------------------------


def _time_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A filter time (15m, 2h, 7d or ISO) as the ISO time it means."""
    if value is None:
        return None
    from xguard.audit.read import parse_time

    try:
        return parse_time(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a time: use 15m, 2h, 7d or an ISO time such as 2024-05-01T09:30"
        ) from None


def _time_checked(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A time (ISO, or 15m, 2h, 7d), checked here and passed on as written."""
    if value:
        from xguard.audit.read import parse_time

        try:
            parse_time(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a time (ISO, or 15m, 2h, 7d)") from None
    return value


def _values(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """--event pending,approved and --event pending --event approved mean the same."""
    return tuple(v.strip() for item in value for v in item.split(",") if v.strip())


def _anchor_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A saved head (an earlier verify's output), read."""
    if value is None:
        return None
    from xguard.audit.read import read_anchor

    try:
        return read_anchor(Path(value))
    except (OSError, ValueError) as e:
        raise click.BadParameter(str(e)) from None


# -- the hot-path verbs ---------------------------------------------------------
def _verb_face(verb: Verb) -> click.Command:
    params: list[click.Parameter] = []
    for o in verb.options:
        params.append(
            click.Option(
                list(o.names),
                o.dest,
                is_flag=o.flag,
                multiple=o.multi,
                metavar=None if o.flag else o.metavar,
                type=click.Choice(list(o.choices)) if o.choices else None,
                help=o.help,
            )
        )
    for a in verb.positionals:
        if a.many:
            params.append(
                click.Argument([a.name], nargs=-1, type=click.UNPROCESSED, required=a.required)
            )
        else:
            choice = click.Choice(list(HOOKS)) if verb.name == "hook" else None
            params.append(click.Argument([a.name], type=choice, required=a.required))
    if verb.name == "hook":  # the runtime's own words, passed on
        params.append(click.Argument(["args"], nargs=-1, type=click.UNPROCESSED))

    def callback(**values: Any) -> int:
        from xguard.frontends.shell import dispatch

        words: list[str] = []
        for a in verb.positionals:
            if not a.many and values.get(a.name) is not None:
                words.append(str(values[a.name]))
        for o in verb.options:
            v = values.get(o.dest)
            if o.flag and v:
                words.append(o.names[0])
            elif o.multi:
                for x in v or ():
                    words += [o.names[0], x]
            elif v is not None and not o.flag:
                words += [o.names[0], v]
        words += list(values.get("args") or ())
        many = [a for a in verb.positionals if a.many]
        if many and values.get(many[0].name):
            words += ["--", *values[many[0].name]]
        return dispatch(verb.name, words)

    examples = "\n".join(f"  {e}" for e in verb.examples)
    return click.Command(
        verb.name,
        params=params,
        callback=callback,
        help=verb.summary + (f"\n\n{verb.epilog}" if verb.epilog else ""),
        short_help=verb.summary,
        epilog=f"\b\nExamples:\n{examples}",
        context_settings={
            "ignore_unknown_options": verb.name in ("run", "hook"),
            "allow_interspersed_args": verb.name != "run",
        },
    )


run_cmd = _verb_face(VERBS["run"])
check_cmd = _verb_face(VERBS["check"])
hook_cmd = _verb_face(VERBS["hook"])
ssh_gate_cmd = _verb_face(VERBS["ssh-gate"])


# -- the other commands -------------------------------------------------------


@face("xguard.commands.approval_cmd:pending")
@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array of request objects.")
@click.option(
    "--all", "show_all", is_flag=True, help="Also requests decided, expired or cancelled recently."
)
def pending() -> None:
    """List pending approval requests, oldest first.

    \b
    Examples:
      xguard pending
      xguard pending --json | jq -r '.[].id'
    """


@face("xguard.commands.approval_cmd:approve")
@click.command()
@click.argument("request_id")
@click.option(
    "--for",
    "for_",
    metavar="DURATION",
    help="Also let the same command (same text, cwd, session, profile) run again "
    "for this long, e.g. 30m.",
)
@click.option("--note", metavar="TEXT", help="A note for the audit log.")
def approve() -> None:
    """Approve one request (an unambiguous prefix of its ID is enough).

    \b
    Examples:
      xguard approve k3m9xa
      xguard approve k3m9xa --for 30m --note "migration window"
    """


@face("xguard.commands.approval_cmd:deny")
@click.command()
@click.argument("request_id")
@click.option("--reason", metavar="TEXT", help="Why; the waiting agent sees it on stderr.")
def deny() -> None:
    """Deny one request; the agent's command exits 77 with the reason.

    \b
    Example:
      xguard deny k3m9xa --reason "use the staging cluster"
    """


@face("xguard.commands.approval_cmd:review")
@click.command(
    epilog="\b\nExamples:\n  xguard review            # in a terminal beside the agent's\n"
    "  xguard review --no-bell  # quiet, unless a rule asks for the bell\n"
    "  xguard review --web      # a page for a browser or a phone; prints its URL\n"
    "  xguard review --web --listen 127.0.0.1:9000   # then: ssh -L 9000:127.0.0.1:9000 HOST"
)
@click.option(
    "--no-bell", is_flag=True, help="Ring only for requests whose rule notifies a bell target."
)
@click.option(
    "--web", is_flag=True, help="Serve the queue as a web page instead (prints a one-time URL)."
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    default="127.0.0.1:8765",
    show_default=True,
    help="With --web: where to listen (loopback unless you say otherwise).",
)
@click.option(
    "--trust-proxy",
    "trust_proxy",
    multiple=True,
    metavar="ADDR",
    help="With --web: a reverse proxy's address whose X-Forwarded-* headers are believed.",
)
def review() -> None:
    """The reviewer's live terminal: approve or deny pending requests.

    \b
    Keys: ↑/↓ or j/k move, a approve once, A approve for a while,
          d deny (asks a reason), Enter details, R reset a tripped
          session (asks first), q quit.
    """


@face("xguard.commands.audit_cmd:audit")
@click.group("audit", invoke_without_command=True)
@click.option(
    "--since",
    metavar="TIME",
    callback=_time_option,
    help="Only records at or after TIME (15m, 2h, 7d or ISO).",
)
@click.option(
    "--until", metavar="TIME", callback=_time_option, help="Only records at or before TIME."
)
@click.option("--session", metavar="ID", help="Only this session.")
@click.option(
    "--decision",
    metavar="D",
    multiple=True,
    callback=_values,
    help="Only decision D: allow, require_approval or deny (repeat or comma-separate).",
)
@click.option(
    "--event",
    metavar="E",
    multiple=True,
    callback=_values,
    help="Only event E: decision, exit, pending, approved, denied, expired, cancelled, "
    "config_error (repeat or comma-separate).",
)
@click.option(
    "--grep",
    metavar="TEXT",
    help="Only records with TEXT in a field (command, units, cwd, note …).",
)
@click.option("--cwd", metavar="DIR", help="Only commands run in DIR or below it.")
@click.option("--user", metavar="NAME", help="Only records of this user.")
@click.option(
    "--last",
    "last",
    metavar="N",
    type=click.IntRange(min=0),
    help="Only the last N matching records.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the stored JSON lines.")
@click.option(
    "--follow", "-f", "follow_", is_flag=True, help="Keep printing new records (like tail -f)."
)
def audit() -> None:
    """Read the audit log, oldest first; filters combine with AND.

    \b
    Examples:
      xguard audit --last 20
      xguard audit --since 2h --decision deny
      xguard audit --session s1 --json | jq .command
      xguard audit --follow
      xguard audit verify --anchor head.txt
      xguard audit report --since 30d
      xguard audit show ID --output
    """


@face("xguard.commands.audit_cmd:verify_cmd")
@audit.command(
    "verify",
    epilog="\b\nExamples:\n"
    "  xguard audit verify > head.txt          # keep the head somewhere safe\n"
    "  xguard audit verify --anchor head.txt   # later: still there, and extended?\n"
    "  xguard audit verify --syslog /var/log/xguard.log\n"
    "  xguard audit verify --against-db        # the shared database's copy (queue.postgres)",
)
@click.option(
    "--anchor",
    metavar="FILE",
    callback=_anchor_option,
    help="A saved head (an earlier verify's output): the log must still hold and extend it.",
)
@click.option(
    "--syslog",
    "syslog_file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="A syslog file holding the forwarded copy (audit.forward): cross-check against it.",
)
@click.option(
    "--against-db",
    "against_db",
    is_flag=True,
    help="Cross-check against this host's copy in the shared database (queue.postgres).",
)
@click.option(
    "--host",
    "db_host",
    metavar="HOST",
    help="With --against-db: the host whose copy to compare (default: this role's own).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def verify_cmd() -> None:
    """Check the hash chain across rotated files; exit 0 intact, 1 broken.

    Names the first bad line (edited, missing, inserted, reordered, not JSON,
    torn, truncated) and prints the head: keep it, and pass it back with
    --anchor to catch a log cut short. Output recordings are checked against
    the exit records that vouch for them: one edited, cut or deleted names its
    command.
    """


@face("xguard.commands.audit_cmd:report_cmd")
@audit.command(
    "report", epilog="\b\nExamples:\n  xguard audit report\n  xguard audit report --since 7d --json"
)
@click.option(
    "--since",
    metavar="TIME",
    default="30d",
    show_default=True,
    callback=_time_option,
    help="Cover records from TIME on (15m, 2h, 7d or ISO).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def report_cmd() -> None:
    """The permission review: rule hits and unused rules, approvals worth
    turning into allow rules, denials by reason, time to decision, sessions."""


@face("xguard.commands.audit_show:show_cmd")
@audit.command(
    "show",
    epilog="\b\nExamples:\n  xguard audit show k3m9xq\n"
    "  xguard audit show k3m9xq --output > out.bin   # the exact bytes\n"
    "  xguard audit show k3m9xq --json | jq .output",
)
@click.argument("cmd_id", metavar="ID")
@click.option("--output", "only_output", is_flag=True, help="Write only the exact output bytes.")
@click.option("--raw", is_flag=True, help="Do not escape control sequences on a terminal.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object: the records, and the output frames (text and base64).",
)
def show_cmd() -> None:
    """Show one command: decision, units, approval, exit, and what it printed.

    The output is escaped on a terminal (escape sequences, invalid UTF-8 and
    NULs shown as backslash escapes) unless --raw; --output writes the exact
    stored bytes, whose SHA-256 is the exit record's output.sha256. Exit 1
    when the id is unknown or its recording cannot be read back.
    """


@face("xguard.commands.audit_show:replay_cmd")
@audit.command(
    "replay",
    epilog="\b\nExamples:\n  xguard audit replay k3m9xq\n"
    "  xguard audit replay k3m9xq --speed 4 --max-wait 1\n"
    "  xguard audit replay k3m9xq --format asciicast > k3m9xq.cast && asciinema play k3m9xq.cast",
)
@click.argument("cmd_id", metavar="ID")
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Play N times faster.",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Never pause longer than this between writes.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["raw", "asciicast"]),
    default="raw",
    show_default=True,
    help="raw: play to this terminal; asciicast: print an asciicast v2 file.",
)
def replay_cmd() -> None:
    """Play a command's output back as it happened, like sudoreplay.

    The bytes go to stdout (and stderr for what the command wrote there) with
    the pauses it made. --format asciicast prints the recording as an
    asciicast v2 file instead (for `asciinema play`).
    """


@face("xguard.commands.rules_cmd:rules")
@click.group("rules")
def rules() -> None:
    """Validate rules files and run the examples they carry."""


@face("xguard.commands.rules_cmd:lint")
@rules.command(
    "lint", epilog="\b\nExamples:\n  xguard rules lint\n  xguard rules lint ./my-rules.yaml"
)
@click.argument("file", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def lint() -> None:
    """Validate a rules file (default: the one in effect) and its tests.

    Exit 0 when valid and every example holds, 78 when the file is invalid,
    1 when an example fails.
    """


@face("xguard.commands.rules_cmd:test")
@rules.command("test", epilog="\b\nExample:\n  xguard rules test ./my-rules.yaml")
@click.argument("file", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def test() -> None:
    """Run the `tests:` examples a rules file carries."""


@face("xguard.commands.rules_cmd:init")
@click.command(
    "init",
    epilog="\b\nExamples:\n  xguard init\n  xguard init --force   # replace an existing file",
)
@click.option("--force", is_flag=True, help="Overwrite an existing rules file.")
@click.option(
    "--print", "to_stdout", is_flag=True, help="Print the default rules instead of writing them."
)
def init() -> None:
    """Write the commented built-in rules to the config location for editing."""


@face("xguard.commands.rules_cmd:replay")
@rules.command(
    "replay",
    epilog="\b\nExamples:\n  xguard rules replay --rules new.yaml\n"
    "  xguard rules replay --rules new.yaml --since 7d --json",
)
@click.option(
    "--rules", "new_rules", required=True, metavar="FILE", help="The rules file to preview."
)
@click.option(
    "--since",
    metavar="TIME",
    default="7d",
    show_default=True,
    callback=_time_checked,
    help="Replay decisions since this time (ISO time, or 15m, 2h, 7d ago).",
)
@click.option("--until", metavar="TIME", callback=_time_checked, help="…and until this time.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def replay() -> None:
    """Decide logged commands again under a new rules file; show what would change."""


@face("xguard.commands.session_cmd:session")
@click.group()
def session() -> None:
    """Sessions: a window of time an agent's commands run in.

    \b
    Examples:
      eval "$(xguard session start --ttl 30m)"
      xguard session list
      xguard session reset k3m9xa2b     (after the loop breaker tripped)
    """


@face("xguard.commands.session_cmd:start")
@session.command(
    epilog="\b\nExamples:\n  eval \"$(xguard session start --ttl 30m --name 'fix flaky test')\"\n"
    '  eval "$(xguard session start --profile staging)"'
)
@click.option(
    "--ttl",
    metavar="DURATION",
    help="How long it lasts (30s, 15m, 2h); default sessions.default_ttl, "
    "at most sessions.max_ttl.",
)
@click.option(
    "--profile",
    metavar="NAME",
    help="Rules profile its commands run under (staging, production …).",
)
@click.option(
    "--name", metavar="TEXT", help="A label for people (shown in list, review and the audit log)."
)
def start() -> None:
    """Start a session; prints `export XGUARD_SESSION=…` for eval."""


@face("xguard.commands.session_cmd:list_")
@session.command(
    "list", epilog="\b\nExamples:\n  xguard session list\n  xguard session list --all --json"
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of session objects.")
@click.option(
    "--all", "show_all", is_flag=True, help="Also sessions that ended or expired over a day ago."
)
def list_() -> None:
    """List sessions, oldest first."""


@face("xguard.commands.session_cmd:show")
@session.command(
    epilog="\b\nExamples:\n  xguard session show 7kq2mz\n  xguard session show 7kq2mz --json"
)
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def show() -> None:
    """Show one session: times, profile, state, loop-breaker counters."""


@face("xguard.commands.session_cmd:end")
@session.command(epilog="\b\nExample:\n  xguard session end 7kq2mz")
@click.argument("session_id")
def end() -> None:
    """End a session now: its commands and its `--for` approvals stop working,
    and its pending requests are cancelled."""


@face("xguard.commands.session_cmd:reset")
@session.command(
    epilog="\b\nExamples:\n  xguard session reset 7kq2mz   # after the loop breaker tripped\n"
    "  xguard session reset -        # the commands that run without a session"
)
@click.argument("session_id")
def reset() -> None:
    """Clear a session's loop-breaker trip and counters (a reviewer's verb).

    Use `-` for the commands that run without a session.
    """


@face("xguard.commands.warm_cmd:warm")
@click.group(
    epilog="\b\nExamples:\n"
    "  xguard warm start              # in the background; exits after 10 minutes idle\n"
    "  xguard warm status\n"
    "  xguard warm stop"
)
def warm() -> None:
    """A loaded xguard that gated commands fork from.

    With a warm server running, `xguard -c`, `run`, `check` and `hook` hand
    their invocation to a fork of it and skip loading xguard: the same rules
    (read fresh), decisions, audit records and box. A command whose process
    the server cannot stand in for (a terminal, another namespace, cgroup,
    seccomp or no_new_privs state, other limits) runs the usual way.
    A server starts on the first command by default (`warm: false` in the
    rules file, or XGUARD_WARM=0, turns that off).
    """


@face("xguard.commands.warm_cmd:warm_start")
@warm.command("start")
@click.option(
    "--idle",
    metavar="DURATION",
    default="10m",
    show_default=True,
    help="Exit after this long without a command.",
)
@click.option("--foreground", is_flag=True, help="Run in this process until stopped.")
def warm_start() -> None:
    """Start the warm server (in the background unless --foreground)."""


@face("xguard.commands.warm_cmd:warm_stop")
@warm.command("stop")
def warm_stop() -> None:
    """Stop the warm server: new commands start cold at once; running ones finish."""


@face("xguard.commands.warm_cmd:warm_status")
@warm.command("status")
def warm_status() -> None:
    """Say whether a warm server runs here: exit 0 if one does, 3 if not."""


@face("xguard.commands.warm_cmd:warm_serve")
@warm.command("serve", hidden=True)
@click.option("--idle", metavar="DURATION", default="10m")
def warm_serve() -> None:
    """The server process itself (what `warm start` runs in the background)."""


@face("xguard.commands.strict_cmd:serve")
@click.command(
    epilog="\b\nExamples:\n"
    "  xguard serve                          # foreground; Ctrl-C or SIGTERM stops it\n"
    "  xguard serve --socket /run/xguard/broker.sock\n"
    "  xguard serve --check                  # exit 0 when safe, 78 naming the file otherwise"
)
@click.option(
    "--socket",
    "socket_path",
    metavar="PATH",
    help="Where to listen (default: `socket:` in config.yaml, else /run/xguard/broker.sock).",
)
@click.option("--check", "check_only", is_flag=True, help="Check ownership and modes, then exit.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request on stderr.")
@click.option(
    "--allow-same-user",
    is_flag=True,
    hidden=True,
    help="Accept the broker's own user as an agent: benchmarks and tests only; no boundary.",
)
def serve() -> None:
    """Run the strict-mode broker in the foreground.

    The broker owns the rules, the approval queue and the audit log. Agents
    (`agents:` in config.yaml), each running as a user of its own, send it
    their commands over a Unix socket; only reviewers (`reviewers:`, the
    broker's own user and root) may approve. It refuses to start, exit 78
    naming the file, when an agent, a group or others could write anything
    it trusts.
    """


@face("xguard.commands.strict_cmd:setup")
@click.group(epilog="\b\nExample:\n  sudo xguard setup strict --agent-user claude")
def setup() -> None:
    """Set xguard up on this machine."""


@face("xguard.commands.strict_cmd:setup_strict")
@setup.command(
    "strict",
    epilog="\b\nExamples:\n"
    "  sudo xguard setup strict --agent-user claude            # print the steps\n"
    "  sudo xguard setup strict --agent-user claude --apply    # and do them",
)
@click.option(
    "--agent-user",
    required=True,
    metavar="NAME",
    help="The agent's own Unix user (created if missing).",
)
@click.option(
    "--reviewer",
    metavar="NAME",
    help="Who runs the broker and approves (default: $SUDO_USER, else you).",
)
@click.option(
    "--socket", "socket_path", default="/run/xguard/broker.sock", show_default=True, metavar="PATH"
)
@click.option(
    "--xguard",
    "exe",
    metavar="PATH",
    help="The xguard executable to use as login shell and service.",
)
@click.option(
    "--ssh/--no-ssh", default=True, show_default=True, help="Also gate the agent's SSH logins."
)
@click.option(
    "--systemd/--no-systemd",
    default=True,
    show_default=True,
    help="Install the broker as a systemd service.",
)
@click.option(
    "--apply",
    "do_apply",
    is_flag=True,
    help="Perform the steps (as root); otherwise only print them.",
)
def setup_strict() -> None:
    """Print (and with --apply perform) the steps of strict mode.

    The agent gets a Unix user of its own whose login shell is xguard; the
    reviewer's rules, queue and audit log stay the reviewer's; a broker
    service owns them; SSH logins of the agent go through `xguard ssh-gate`.
    """


@face("xguard.commands.db_cmd:db")
@click.group()
def db() -> None:
    """The shared PostgreSQL queue for many hosts (`queue: {postgres: DSN}`)."""


@face("xguard.commands.db_cmd:init_cmd")
@db.command(
    "init",
    epilog="\b\nExamples:\n"
    "  xguard db init --dsn 'host=db.internal dbname=xguard user=postgres' \\\n"
    "      --agent build-01 --agent build-02 --reviewer alice@laptop\n"
    "  xguard db init --agent ci=ci_runner     # host ci logs in as role ci_runner",
)
@click.option("--dsn", metavar="DSN", help="Connect as the owner (default: queue.postgres).")
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="HOST[=ROLE]",
    help="A host whose agents queue requests; its login role (default xguard_agent_HOST).",
)
@click.option(
    "--reviewer",
    "reviewers",
    multiple=True,
    metavar="ROLE[@HOST]",
    help="A reviewer's login role; @HOST also lets it copy that host's audit log.",
)
def init_cmd() -> None:
    """Create the schema, the roles, the grants and row-level security; print each step.

    Safe to run again: every step is idempotent. Run it as the database owner,
    never with an agent's connection string. Login roles are created without
    a password: give each one how it logs in (a password in the host's
    ~/.pgpass or service file, or a client certificate).
    """


@face("xguard.commands.db_cmd:sync_cmd")
@db.command(
    "sync",
    epilog="\b\nExample:\n  xguard db sync && xguard audit verify --against-db",
)
def sync_cmd() -> None:
    """Copy this host's audit lines the database does not hold yet (normally done in the
    background after every record); exit 1 when the copy and the log disagree."""


@face("xguard.commands.doctor_cmd:doctor")
@click.command(
    epilog="""\b
Examples:
  xguard doctor                 a readable report
  xguard doctor --json | jq .problems
"""
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object instead of the report."
)
def doctor() -> None:
    """Check the setup: rules and profile in effect, queue, audit log, reviewer,
    agent integrations, and anything unsafe.

    Exit status 0 when nothing is unsafe, 1 when something is (other users can
    write the rules or state folders, the rules do not load, no room or no
    permission for the audit log).
    """

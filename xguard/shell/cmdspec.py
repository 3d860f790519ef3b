"""What common commands do with their arguments: wrappers, shells, writers.

Pure tables plus a small getopt, standard library only (hot path).

- WRAPPERS: commands that run another command (`nice -n 10 rm` runs `rm`, not
  `10`), parsed with each wrapper's real option syntax;
- SHELL_STRING: commands whose option argument is shell code (`bash -c`, `su -c`);
- WRITERS: which operands a command writes (SPEC §3 "every file the command writes").

Where a command's syntax is not fully known, the tables err toward finding
*more* commands and *more* written files: an extra unit can only make a
decision stricter.
"""

from __future__ import annotations

from xguard._record import dataclass, field

from xguard.shell.words import Word, lit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # A writer: argument words (without the command name) -> (written, read) words.
    Writer = Callable[[list[Word]], tuple[list[Word], list[Word]]]


@dataclass
class Opts:
    """Result of getopt: options (name, value-word or None) and operands."""

    opts: list[tuple[str, Word | None]] = field(default_factory=list)
    operands: list[Word] = field(default_factory=list)
    rest_index: int = -1  # with stop_at_operand: index of the first operand in args


def getopt(
    args: list[Word],
    short_arg: str = "",
    long_arg: frozenset[str] = frozenset(),
    *,
    stop_at_operand: bool = False,
    short_optional: str = "",
    long_optional: frozenset[str] = frozenset(),
) -> Opts:
    """GNU-style option parsing over words.

    short_arg: short options that take a value (`-n 10`, `-n10`);
    long_arg: long options that take a value (`--adjustment=10`, `--adjustment 10`);
    short_optional/long_optional: values only when attached (`-i{}`, `--in-place=.bak`).
    Long options may be abbreviated, as getopt_long allows.
    With stop_at_operand the first operand ends option parsing (sudo, env, nice …).
    """
    res = Opts()
    i = 0
    n = len(args)
    while i < n:
        w = args[i]
        v = w.value
        if v == "--" and w.literal:
            i += 1
            if stop_at_operand:
                res.rest_index = i
                return res
            res.operands.extend(args[i:])
            return res
        if v.startswith("--") and len(v) > 2:
            name, eq, val = v[2:].partition("=")
            full = _expand_long(name, long_arg | long_optional)
            if eq:
                res.opts.append((full, Word(val, dynamic=w.dynamic, approx=val)))
            elif full in long_arg and i + 1 < n:
                res.opts.append((full, args[i + 1]))
                i += 1
            else:
                res.opts.append((full, None))
            i += 1
            continue
        if v.startswith("-") and len(v) > 1:
            j = 1
            while j < len(v):
                ch = v[j]
                if ch in short_arg:
                    rest = v[j + 1 :]
                    if rest:
                        res.opts.append((ch, Word(rest, dynamic=w.dynamic, approx=rest)))
                    elif i + 1 < n:
                        res.opts.append((ch, args[i + 1]))
                        i += 1
                    else:
                        res.opts.append((ch, None))
                    break
                if ch in short_optional:
                    rest = v[j + 1 :]
                    res.opts.append((ch, lit(rest) if rest else None))
                    break
                res.opts.append((ch, None))
                j += 1
            i += 1
            continue
        if stop_at_operand:
            res.rest_index = i
            return res
        res.operands.append(w)
        i += 1
    if stop_at_operand:
        res.rest_index = n
    return res


def _expand_long(name: str, known: frozenset[str]) -> str:
    """Resolve an abbreviated long option (`--out` for `--output`) if unambiguous."""
    if name in known:
        return name
    hits = [k for k in known if k.startswith(name)]
    return hits[0] if len(hits) == 1 else name


# ---------------------------------------------------------------------------
# Wrappers. Each entry: (short options with a value, long options with a
# value, number of operands before the command). An entry of None means the
# wrapper needs special handling in `unwrap`.
_W = tuple[str, frozenset[str], int]
WRAPPERS: dict[str, _W | None] = {
    "sudo": (
        "ugCDhprtTU",
        frozenset(
            {
                "user",
                "group",
                "close-from",
                "chdir",
                "host",
                "prompt",
                "role",
                "type",
                "other-user",
                "command-timeout",
            }
        ),
        0,
    ),
    "doas": ("uC", frozenset(), 0),
    "pkexec": ("", frozenset({"user"}), 0),
    "nice": ("n", frozenset({"adjustment"}), 0),
    "nohup": ("", frozenset(), 0),
    "timeout": ("ks", frozenset({"kill-after", "signal"}), 1),
    "time": ("fo", frozenset({"format", "output"}), 0),
    "stdbuf": ("ioe", frozenset({"input", "output", "error"}), 0),
    "ionice": ("cnp", frozenset({"class", "classdata", "pid"}), 0),
    "setsid": ("", frozenset(), 0),
    "command": ("", frozenset(), 0),
    "builtin": ("", frozenset(), 0),
    "exec": ("a", frozenset(), 0),
    "taskset": ("", frozenset(), 1),
    "chrt": ("T", frozenset({"sched-runtime", "sched-period", "sched-deadline"}), 1),
    "chroot": ("", frozenset({"userspec", "groups"}), 1),
    "unshare": (
        "S",
        frozenset(
            {"setuid", "setgid", "wd", "root", "map-user", "map-group", "map-users", "map-groups"}
        ),
        0,
    ),
    "nsenter": (
        "tSGrwTUmunipC",
        frozenset({"target", "setuid", "setgid", "root", "wd", "wdns", "env"}),
        0,
    ),
    "setpriv": (
        "",
        frozenset(
            {
                "reuid",
                "regid",
                "ruid",
                "euid",
                "rgid",
                "egid",
                "groups",
                "inh-caps",
                "ambient-caps",
                "bounding-set",
                "securebits",
                "pdeathsig",
                "selinux-label",
                "apparmor-profile",
                "landlock-access",
                "landlock-rule",
            }
        ),
        0,
    ),
    "runuser": (
        "ugGw",
        frozenset({"user", "group", "supp-group", "whitelist-environment", "shell", "command"}),
        0,
    ),
    "strace": (
        "abeEIoOpPsSuXU",
        frozenset(
            {"output", "signal", "trace", "trace-path", "env", "user", "attach", "string-limit"}
        ),
        0,
    ),
    "ltrace": ("aAeEfnoOpsuw", frozenset({"output"}), 0),
    "eatmydata": ("", frozenset(), 0),
    "fakeroot": ("ls", frozenset({"lib", "faked"}), 0),
    "proxychains": ("f", frozenset(), 0),
    "proxychains4": ("f", frozenset(), 0),
    "torsocks": ("udaP", frozenset(), 0),
    "caffeinate": ("tw", frozenset(), 0),
    "systemd-run": (
        "pMEuH",
        frozenset(
            {
                "unit",
                "property",
                "description",
                "slice",
                "setenv",
                "uid",
                "gid",
                "working-directory",
                "machine",
                "host",
            }
        ),
        0,
    ),
    "catchsegv": ("", frozenset(), 0),
    "firejail": ("", frozenset(), 0),
    "xvfb-run": (
        "nsfepaw",
        frozenset(
            {"server-num", "server-args", "auth-file", "error-file", "xauth-protocol", "wait"}
        ),
        0,
    ),
    "dbus-run-session": ("", frozenset({"config-file", "dbus-daemon"}), 0),
    "sg": ("", frozenset(), 1),
    "busybox": ("", frozenset(), 0),
    "env": None,
    "xargs": None,
    "parallel": None,
    "flock": None,
    "watch": None,
    "script": None,
    "su": None,
    "find": None,
    "kubectl": None,
    "docker": None,
    "podman": None,
    "ssh": None,
    "eval": None,
    "trap": None,
}

# Shells: `NAME [opts] -c STRING` runs STRING as shell code.
SHELLS = frozenset(
    {
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "mksh",
        "ash",
        "yash",
        "posh",
        "rbash",
        "fish",
        "busybox-sh",
    }
)
# Options of bash/sh that take a value (so `bash -o pipefail -c X` finds X).
_SHELL_SHORT_ARG = "oO"
_SHELL_LONG_ARG = frozenset({"rcfile", "init-file"})

_XARGS_SHORT = "aEdIsLnP"
_XARGS_LONG = frozenset(
    {"arg-file", "delimiter", "max-chars", "max-args", "max-procs", "process-slot-var"}
)
# GNU xargs: these take a value only when it is attached with '=' (optional_argument).
_XARGS_LONG_OPTIONAL = frozenset({"eof", "replace", "max-lines"})

_SSH_SHORT = "BbcDEeFIiJLlmOoPpQRSWw"
_DOCKER_EXEC_SHORT = "euw"
_DOCKER_EXEC_LONG = frozenset({"env", "env-file", "user", "workdir", "detach-keys"})
_DOCKER_RUN_SHORT = "aceEhlmpuvw"
_DOCKER_RUN_LONG = frozenset(
    "add-host annotation attach blkio-weight cap-add cap-drop cgroup-parent cgroupns cidfile cpu-period cpu-quota "
    "cpu-shares cpus cpuset-cpus cpuset-mems device device-cgroup-rule dns dns-option dns-search domainname "
    "entrypoint env env-file expose gpus group-add health-cmd health-interval health-retries health-timeout "
    "hostname ip ip6 ipc isolation kernel-memory label label-file link log-driver log-opt mac-address memory "
    "memory-reservation memory-swap mount name network network-alias pid pids-limit platform publish pull "
    "restart runtime security-opt shm-size stop-signal stop-timeout storage-opt sysctl tmpfs ulimit user "
    "userns uts volume volume-driver volumes-from workdir".split()
)
_KUBECTL_EXEC_SHORT = "cfn"
_KUBECTL_EXEC_LONG = frozenset(
    {
        "container",
        "filename",
        "namespace",
        "pod-running-timeout",
        "context",
        "kubeconfig",
        "cluster",
        "user",
        "server",
        "token",
        "as",
        "as-group",
    }
)


@dataclass
class Unwrapped:
    """What a wrapper runs.

    commands: argvs of the commands it runs (each becomes its own unit)
    shell:    strings it runs as shell code (parsed recursively)
    dynamic:  the inner commands get arguments known only at run time (xargs, find {})
    assigns:  variable names it sets in the inner command's environment (env NAME=V)
    env:      those assignments as NAME=VALUE ("" where the value is known only at run time)
    issues:   reasons the wrapper's own unit must be at least require_approval
    """

    commands: list[list[Word]] = field(default_factory=list)
    shell: list[Word] = field(default_factory=list)
    dynamic: bool = False
    assigns: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)


def _nice_legacy(args: list[Word]) -> list[Word]:
    # `nice -10 cmd` (obsolete form): the number is the adjustment.
    if args and args[0].value[:1] == "-" and args[0].value[1:].lstrip("-").isdigit():
        return args[1:]
    return args


def unwrap(name: str, words: list[Word]) -> Unwrapped | None:
    """If `name` (a basename) runs another command, say what it runs."""
    args = words[1:]
    if name in SHELLS:
        return _unwrap_shell(args)
    if name not in WRAPPERS:
        return None
    spec = WRAPPERS[name]
    out = Unwrapped()
    if spec is not None:
        if name == "nice":
            args = _nice_legacy(args)
        if name == "busybox" and args and args[0].value.startswith("-"):
            return out
        o = getopt(args, spec[0], spec[1], stop_at_operand=True)
        rest = args[o.rest_index :]
        if name == "ionice" and any(k in ("p", "pid") for k, _ in o.opts):
            return out
        if name == "taskset" and any(k in ("p", "pid") for k, _ in o.opts):
            return out
        if name == "sudo" and any(k in ("s", "i", "shell", "login") for k, _ in o.opts):
            if not rest:
                out.issues.append("sudo opens a root shell")
                return out
            out.shell.append(lit(" ".join(w.value for w in rest)))
            return out
        if name == "runuser":
            for k, v in o.opts:
                if k in ("c", "command") and v is not None:
                    out.shell.append(v)
        if name in ("command",) and any(k in ("v", "V") for k, _ in o.opts):
            return out  # `command -v x` only looks x up
        rest = rest[spec[2] :]
        if rest:
            out.commands.append(rest)
        elif name in ("unshare", "nsenter", "chroot", "sudo", "doas", "runuser", "pkexec"):
            out.issues.append(f"{name} with no command starts a shell")
        return out
    return _SPECIAL[name](args, out)


def _unwrap_shell(args: list[Word]) -> Unwrapped:
    out = Unwrapped()
    # bash's own parser: single-letter flags may combine (-lc, -ec, -xc); -o/+o take a value.
    i = 0
    cmd_string = False
    while i < len(args):
        v = args[i].value
        if v in {"--", "-"}:
            i += 1
            break
        if v.startswith("--"):
            if v in ("--version", "--help"):
                return out  # prints and exits; runs nothing
            if v[2:] in _SHELL_LONG_ARG:
                i += 1
            i += 1
            continue
        if v[:1] in ("-", "+") and len(v) > 1:
            letters = v[1:]
            if "c" in letters:
                cmd_string = True
            if "k" in letters and v[0] == "-":
                # -k: every NAME=VALUE word becomes an assignment, anywhere in a command.
                out.issues.append("bash -k turns argument words into variable assignments")
            if "o" in letters or "O" in letters:
                if i + 1 < len(args) and args[i + 1].value == "keyword" and v[0] == "-":
                    out.issues.append(
                        "bash -o keyword turns argument words into variable assignments"
                    )
                i += 1  # the option name
            i += 1
            continue
        break
    rest = args[i:]
    if cmd_string:
        if rest:
            out.shell.append(rest[0])
        else:
            out.issues.append("shell -c without a command string")
    elif rest:
        out.issues.append("runs a script file")
    else:
        out.issues.append("a shell reading commands from its input")
    return out


def _env(args: list[Word], out: Unwrapped) -> Unwrapped:
    o = getopt(
        args,
        "uCS",
        frozenset(
            {"unset", "chdir", "split-string", "block-signal", "default-signal", "ignore-signal"}
        ),
        stop_at_operand=True,
        long_optional=frozenset({"block-signal", "default-signal", "ignore-signal"}),
    )
    for k, v in o.opts:
        if k in ("S", "split-string") and v is not None:
            # env -S splits its argument into words: treat it as shell code.
            out.shell.append(v)
    rest = args[o.rest_index :]
    while rest and "=" in rest[0].value and not rest[0].value.startswith("="):
        out.assigns.append(rest[0].value.split("=", 1)[0])
        out.env.append(rest[0].value if rest[0].literal else "")
        rest = rest[1:]
    if rest:
        out.commands.append(rest)
    return out


def _xargs(args: list[Word], out: Unwrapped) -> Unwrapped:
    o = getopt(
        args,
        _XARGS_SHORT,
        _XARGS_LONG,
        stop_at_operand=True,
        short_optional="ile",
        long_optional=_XARGS_LONG_OPTIONAL,
    )
    rest = args[o.rest_index :]
    out.commands.append(rest or [lit("echo")])
    out.dynamic = True
    return out


def _parallel(args: list[Word], out: Unwrapped) -> Unwrapped:
    # GNU parallel: the command runs through a shell with {} replaced.
    rest = [w for w in args if not w.value.startswith("-")]
    if ":::" in [w.value for w in rest]:
        rest = rest[: [w.value for w in rest].index(":::")]
    if rest:
        out.shell.append(Word(" ".join(w.value for w in rest), dynamic=True))
    out.dynamic = True
    out.issues.append("parallel runs commands through a shell")
    return out


def _flock(args: list[Word], out: Unwrapped) -> Unwrapped:
    # flock [opts] FILE CMD [ARGS] | flock [opts] FILE -c CMDSTRING | flock [opts] FD
    o = getopt(
        args, "wEc", frozenset({"timeout", "conflict-exit-code", "command"}), stop_at_operand=True
    )
    for k, v in o.opts:
        if k in ("c", "command") and v is not None:
            out.shell.append(v)
    rest = args[o.rest_index :][1:]
    if rest and rest[0].value in ("-c", "--command"):
        if len(rest) > 1:
            out.shell.append(rest[1])
    elif rest:
        out.commands.append(rest)
    return out


def _watch(args: list[Word], out: Unwrapped) -> Unwrapped:
    o = getopt(
        args,
        "nqd",
        frozenset({"interval", "differences", "equexit", "chgexit"}),
        stop_at_operand=True,
        long_optional=frozenset({"differences"}),
    )
    rest = args[o.rest_index :]
    if not rest:
        return out
    if any(k in ("x", "exec") for k, _ in o.opts):
        out.commands.append(rest)
    else:
        # watch joins its arguments and runs them with `sh -c`.
        out.shell.append(
            Word(" ".join(w.value for w in rest), dynamic=any(w.dynamic for w in rest))
        )
    return out


def _script(args: list[Word], out: Unwrapped) -> Unwrapped:
    o = getopt(
        args,
        "cEIOBTmo",
        frozenset(
            {
                "command",
                "echo",
                "log-in",
                "log-out",
                "log-io",
                "log-timing",
                "logging-format",
                "output-limit",
            }
        ),
    )
    for k, v in o.opts:
        if k in ("c", "command") and v is not None:
            out.shell.append(v)
    if not any(k in ("c", "command") for k, _ in o.opts):
        out.issues.append("script starts an interactive shell")
    return out


def _su(args: list[Word], out: Unwrapped) -> Unwrapped:
    o = getopt(
        args,
        "cgGsCw",
        frozenset(
            {"command", "group", "supp-group", "shell", "session-command", "whitelist-environment"}
        ),
    )
    found = False
    for k, v in o.opts:
        if k in ("c", "C", "command", "session-command") and v is not None:
            out.shell.append(v)
            found = True
    if not found:
        out.issues.append("su with no command starts a shell")
    return out


def _find(args: list[Word], out: Unwrapped) -> Unwrapped:
    # find … -exec CMD … ; / + (also -execdir, -ok, -okdir): CMD runs with {} from find.
    i = 0
    while i < len(args):
        v = args[i].value
        if v in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(args) and args[j].value not in (";", "+"):
                j += 1
            cmd = args[i + 1 : j]
            if cmd:
                out.commands.append(cmd)
                out.dynamic = out.dynamic or any("{}" in w.value for w in cmd)
            i = j + 1
            continue
        i += 1
    return out


def _kubectl(args: list[Word], out: Unwrapped) -> Unwrapped:
    vals = [w.value for w in args]
    if "exec" not in vals and "debug" not in vals and "run" not in vals:
        return out
    if "--" in vals:
        rest = args[vals.index("--") + 1 :]
        if rest:
            out.commands.append(rest)
    return out


def _docker(args: list[Word], out: Unwrapped) -> Unwrapped:
    # docker [global opts] exec|run [opts] CONTAINER|IMAGE [CMD …]
    g = getopt(
        args,
        "cHl",
        frozenset({"config", "context", "host", "log-level", "tlscacert", "tlscert", "tlskey"}),
        stop_at_operand=True,
    )
    rest = args[g.rest_index :]
    if not rest:
        return out
    sub = rest[0].value
    if sub == "container" and len(rest) > 1:
        rest = rest[1:]
        sub = rest[0].value
    if sub == "exec":
        o = getopt(rest[1:], _DOCKER_EXEC_SHORT, _DOCKER_EXEC_LONG, stop_at_operand=True)
    elif sub == "run":
        o = getopt(rest[1:], _DOCKER_RUN_SHORT, _DOCKER_RUN_LONG, stop_at_operand=True)
    else:
        return out
    inner = rest[1:][o.rest_index :]
    if len(inner) > 1:
        out.commands.append(inner[1:])
    return out


def _ssh(args: list[Word], out: Unwrapped) -> Unwrapped:
    o = getopt(args, _SSH_SHORT, frozenset(), stop_at_operand=True)
    rest = args[o.rest_index :]
    if len(rest) > 1:
        # The remote shell re-parses the joined words.
        out.shell.append(
            Word(" ".join(w.value for w in rest[1:]), dynamic=any(w.dynamic for w in rest[1:]))
        )
    elif rest:
        out.issues.append("ssh with no command opens a remote shell")
    return out


def _eval(args: list[Word], out: Unwrapped) -> Unwrapped:
    if not args:
        return out
    if all(w.literal for w in args):
        out.shell.append(lit(" ".join(w.value for w in args)))
    else:
        out.issues.append("eval of text known only at run time")
    return out


def _trap(args: list[Word], out: Unwrapped) -> Unwrapped:
    vals = [w for w in args if not w.value.startswith("-")]
    if vals:
        if vals[0].literal:
            out.shell.append(vals[0])
        else:
            out.issues.append("trap with an action known only at run time")
    return out


_SPECIAL = {
    "env": _env,
    "xargs": _xargs,
    "parallel": _parallel,
    "flock": _flock,
    "watch": _watch,
    "script": _script,
    "su": _su,
    "find": _find,
    "kubectl": _kubectl,
    "docker": _docker,
    "podman": _docker,
    "ssh": _ssh,
    "eval": _eval,
    "trap": _trap,
}

# Builtins that run or load code, or redefine what a name runs, in ways the
# parser cannot follow. Their units are at least require_approval.
CODE_BUILTINS = {
    "source": "source runs a file's commands",
    ".": "'.' runs a file's commands",
    "alias": "alias changes what a command name runs",
    "unalias": "unalias changes what a command name runs",
    "hash": "hash changes which program a name runs",
    "enable": "enable changes which builtins exist",
    "shopt": "shopt changes how later commands are parsed",
    "set": "set changes how later commands run",
    "coproc": "coproc runs a command in the background",
    "mapfile": "mapfile -C runs a callback",
    "readarray": "readarray -C runs a callback",
    "declare": "declare can set variables and functions",
    "typeset": "typeset can set variables and functions",
    "export": "export changes the environment of later commands",
    "readonly": "readonly sets variables",
    "local": "local sets variables",
    "unset": "unset changes variables and functions",
    "fc": "fc re-runs history",
    "bind": "bind changes key bindings and can run commands",
    "complete": "complete -C runs commands",
    "compgen": "compgen -C runs commands",
    "ulimit": "ulimit changes resource limits",
    "let": "let evaluates arithmetic, which can run code hidden in a variable's value",
    "umask": "umask changes the mode of created files",
}


# ---------------------------------------------------------------------------
# Writers: which operands a command writes. Each function gets the argument
# words (without the command name) and returns (written, read) words.
def _all_operands(short: str = "", long: frozenset[str] = frozenset()) -> Writer:
    def f(args: list[Word]) -> tuple[list[Word], list[Word]]:
        return getopt(args, short, long).operands, []

    return f


def _last_is_target(short: str, long: frozenset[str], *, all_written: bool = False) -> Writer:
    def f(args: list[Word]) -> tuple[list[Word], list[Word]]:
        o = getopt(args, short + "t", long | {"target-directory"})
        targets = [v for k, v in o.opts if k in ("t", "target-directory") and v is not None]
        if targets:
            return targets + (o.operands if all_written else []), (
                [] if all_written else o.operands
            )
        if len(o.operands) >= 2:
            src = o.operands[:-1]
            return [o.operands[-1], *(src if all_written else [])], ([] if all_written else src)
        return (o.operands if all_written else []), ([] if all_written else o.operands)

    return f


def _after_first(short: str, long: frozenset[str]) -> Writer:
    # chmod MODE FILE…, chown OWNER FILE… (unless --reference=RFILE).
    def f(args: list[Word]) -> tuple[list[Word], list[Word]]:
        o = getopt(args, short, long)
        if any(k == "reference" for k, _ in o.opts):
            return o.operands, []
        return o.operands[1:], []

    return f


def _dd(args: list[Word]) -> tuple[list[Word], list[Word]]:
    w, r = [], []
    for a in args:
        if a.value.startswith("of="):
            w.append(Word(a.value[3:], dynamic=a.dynamic, approx=a.approx[3:]))
        elif a.value.startswith("if="):
            r.append(Word(a.value[3:], dynamic=a.dynamic, approx=a.approx[3:]))
    return w, r


def _sed(args: list[Word]) -> tuple[list[Word], list[Word]]:
    o = getopt(
        args,
        "efl",
        frozenset({"expression", "file", "line-length"}),
        short_optional="i",
        long_optional=frozenset({"in-place"}),
    )
    inplace = any(k in ("i", "in-place") for k, _ in o.opts)
    has_script = any(k in ("e", "f", "expression", "file") for k, _ in o.opts)
    files = o.operands if has_script else o.operands[1:]
    return (files if inplace else []), ([] if inplace else files)


def _opt_targets(short: str, long: frozenset[str], write_opts: set[str]) -> Writer:
    def f(args: list[Word]) -> tuple[list[Word], list[Word]]:
        o = getopt(args, short, long)
        return [v for k, v in o.opts if k in write_opts and v is not None], []

    return f


def _uniq(args: list[Word]) -> tuple[list[Word], list[Word]]:
    o = getopt(
        args,
        "fsw",
        frozenset({"skip-fields", "skip-chars", "check-chars", "group", "all-repeated"}),
    )
    return o.operands[1:2], o.operands[:1]


def _compress(args: list[Word]) -> tuple[list[Word], list[Word]]:
    o = getopt(args, "S", frozenset({"suffix"}))
    if any(k in ("c", "stdout", "to-stdout", "l", "list", "t", "test") for k, _ in o.opts):
        return [], o.operands
    return o.operands, []


def _split(args: list[Word]) -> tuple[list[Word], list[Word]]:
    o = getopt(
        args,
        "abCdlnt",
        frozenset(
            {
                "suffix-length",
                "bytes",
                "line-bytes",
                "lines",
                "number",
                "additional-suffix",
                "separator",
                "filter",
            }
        ),
    )
    return o.operands[1:2], o.operands[:1]


def _git(args: list[Word]) -> tuple[list[Word], list[Word]]:
    w = []
    for a in args:
        for pre in ("--output=", "--output-directory="):
            if a.value.startswith(pre):
                w.append(Word(a.value[len(pre) :], dynamic=a.dynamic, approx=a.approx[len(pre) :]))
    return w, []


def _find_w(args: list[Word]) -> tuple[list[Word], list[Word]]:
    w = []
    for i, a in enumerate(args[:-1]):
        if a.value in ("-fprint", "-fprint0", "-fls", "-fprintf"):
            w.append(args[i + 1])
    return w, []


def _script_w(args: list[Word]) -> tuple[list[Word], list[Word]]:
    # script [opts] [FILE]: FILE (default ./typescript) and every log file are written.
    o = getopt(
        args,
        "cEIOBTmo",
        frozenset(
            {
                "command",
                "echo",
                "log-in",
                "log-out",
                "log-io",
                "log-timing",
                "logging-format",
                "output-limit",
            }
        ),
    )
    logs = [v for k, v in o.opts if k in "IOBT" + "log-in log-out log-io log-timing" and v]
    return (o.operands or [lit("typescript")]) + logs, []


def _xxd(args: list[Word]) -> tuple[list[Word], list[Word]]:
    # xxd reads options up to its first operand and then takes the next two
    # words as INFILE and OUTFILE whatever they look like (`xxd a.txt --`
    # writes a file named `--`).
    i = 0
    while i < len(args):
        v = args[i].value
        if v == "-" or not v.startswith("-"):
            break
        if v == "--":
            i += 1
            break
        if v.lstrip("-") in (
            "c",
            "cols",
            "g",
            "groupsize",
            "l",
            "len",
            "o",
            "offset",
            "s",
            "seek",
            "n",
            "name",
            "R",
        ):
            i += 1  # the option's value is the next word
        i += 1
    rest = args[i:]
    return rest[1:2], rest[:1]


def _second_operand(short: str, long: frozenset[str] = frozenset()) -> Writer:
    # TOOL [opts] [INFILE [OUTFILE]]: `-` as INFILE is stdin, OUTFILE is still written.
    def f(args: list[Word]) -> tuple[list[Word], list[Word]]:
        o = getopt(args, short, long)
        return o.operands[1:2], o.operands[:1]

    return f


WRITERS = {
    # kubectl's own files: a profile, a log, an HTTP cache (`kubectl get` is a read).
    "kubectl": _opt_targets(
        "",
        frozenset({"profile", "profile-output", "log-file", "cache-dir", "log-dir"}),
        {"profile-output", "log-file", "cache-dir", "log-dir"},
    ),
    "xxd": _xxd,
    # BSD base64 -o FILE (macOS); GNU base64 has no -o and fails on it.
    "base64": _opt_targets("bio", frozenset({"break", "input", "output"}), {"o", "output"}),
    "shuf": _opt_targets(
        "eino",
        frozenset({"echo", "input-range", "head-count", "output", "random-source"}),
        {"o", "output"},
    ),
    "iconv": _opt_targets("oft", frozenset({"output", "from-code", "to-code"}), {"o", "output"}),
    "csplit": _opt_targets(
        "bfn", frozenset({"prefix", "suffix-format", "digits"}), {"f", "prefix"}
    ),
    "script": _script_w,
    "tee": _all_operands("", frozenset({"output-error"})),
    "rm": _all_operands(),
    "rmdir": _all_operands(),
    "unlink": _all_operands(),
    "shred": _all_operands("ns", frozenset({"iterations", "size", "random-source", "remove"})),
    "touch": _all_operands("dtr", frozenset({"date", "reference", "time"})),
    "mkdir": _all_operands("m", frozenset({"mode", "context"})),
    "mkfifo": _all_operands("m", frozenset({"mode", "context"})),
    "mknod": _all_operands("m", frozenset({"mode", "context"})),
    "truncate": _all_operands("sr", frozenset({"size", "reference"})),
    "cp": _last_is_target(
        "S", frozenset({"suffix", "backup", "sparse", "reflink", "preserve", "no-preserve"})
    ),
    "ln": _last_is_target("S", frozenset({"suffix", "backup"})),
    "install": _last_is_target("gmoS", frozenset({"group", "mode", "owner", "suffix", "backup"})),
    "mv": _last_is_target("S", frozenset({"suffix", "backup"}), all_written=True),
    "rsync": _last_is_target(
        "e",
        frozenset(
            {
                "rsh",
                "rsync-path",
                "exclude",
                "include",
                "filter",
                "files-from",
                "exclude-from",
                "include-from",
                "log-file",
                "backup-dir",
                "temp-dir",
                "partial-dir",
            }
        ),
    ),
    "scp": _last_is_target("cFiJloPS", frozenset()),
    "chmod": _after_first("", frozenset({"reference"})),
    "chown": _after_first("", frozenset({"reference", "from"})),
    "chgrp": _after_first("", frozenset({"reference"})),
    "dd": _dd,
    "sed": _sed,
    "sort": _opt_targets(
        "okStT",
        frozenset(
            {
                "output",
                "key",
                "buffer-size",
                "field-separator",
                "temporary-directory",
                "parallel",
                "files0-from",
                "batch-size",
                "compress-program",
                "random-source",
            }
        ),
        {"o", "output"},
    ),
    "curl": _opt_targets(
        "oDcKdFHuTxXeEAbrwm",
        frozenset(
            {
                "output",
                "dump-header",
                "cookie-jar",
                "trace",
                "trace-ascii",
                "stderr",
                "config",
                "data",
                "header",
                "user",
                "upload-file",
                "proxy",
                "request",
                "referer",
                "user-agent",
                "cookie",
                "range",
                "write-out",
                "max-time",
                "etag-save",
                "hsts",
                "alt-svc",
            }
        ),
        {
            "o",
            "output",
            "D",
            "dump-header",
            "c",
            "cookie-jar",
            "trace",
            "trace-ascii",
            "stderr",
            "etag-save",
        },
    ),
    "wget": _opt_targets(
        "OoaPe",
        frozenset(
            {"output-document", "output-file", "append-output", "directory-prefix", "execute"}
        ),
        {"O", "output-document", "o", "output-file", "a", "append-output", "P", "directory-prefix"},
    ),
    "uniq": _uniq,
    "gzip": _compress,
    "gunzip": _compress,
    "bzip2": _compress,
    "bunzip2": _compress,
    "xz": _compress,
    "unxz": _compress,
    "zstd": _compress,
    "unzstd": _compress,
    "git": _git,
    "find": _find_w,
    "time": _opt_targets("fo", frozenset({"format", "output"}), {"o", "output"}),
    "strace": _opt_targets("abeEIoOpPsSuXU", frozenset({"output"}), {"o", "output"}),
    "ltrace": _opt_targets("aAeEfnoOpsuw", frozenset({"output"}), {"o", "output"}),
    "split": _split,
    "sdiff": _opt_targets("ow", frozenset({"output", "width"}), {"o", "output"}),
    "patch": _opt_targets(
        "oiBdDFprVYzg", frozenset({"output", "input", "directory"}), {"o", "output"}
    ),
}


# ---------------------------------------------------------------------------
# Recursive readers: the folders whose whole tree a search reads. A search of
# a folder that holds secrets reads them, however the folder is spelled.
_GREP_SHORT = "efmABCdD"
_GREP_LONG = frozenset(
    "regexp file max-count after-context before-context context directories devices label "
    "include exclude exclude-dir exclude-from binary-files color colour group-separator".split()
)
_RG_SHORT = "eAfBCgjmMtTEr"
_RG_LONG = frozenset(
    "regexp file after-context before-context context glob iglob threads max-count "
    "max-filesize type type-not type-add type-clear encoding replace max-depth maxdepth "
    "path-separator pre pre-glob sort sortr colors color context-separator field-match-separator "
    "field-context-separator dfa-size-limit regex-size-limit ignore-file engine".split()
)


def recursive_folders(name: str, args: list[Word]) -> list[tuple[Word, str]]:
    """Folders `name ARGS` searches recursively (`grep -r`, `rg`, `ag`, `diff -r`),
    each with "all" or "visible" (hidden files skipped, as rg does by default);
    `.` when the tool searches the cwd by default."""
    return [(w, mode) for w in _recursive(name, args) for mode in [_hidden_mode(name, args)]]


def _hidden_mode(name: str, args: list[Word]) -> str:
    if name not in ("rg", "ag"):
        return "all"
    for w in args:
        v = w.value
        if v in ("--hidden", "--no-ignore-dot", "--unrestricted", "-.") or (
            v.startswith("-") and not v.startswith("--") and ("u" in v or "." in v)
        ):
            return "all"
    return "visible"


def _recursive(name: str, args: list[Word]) -> list[Word]:
    if name in ("grep", "egrep", "fgrep", "zgrep"):
        o = getopt(args, _GREP_SHORT, _GREP_LONG)
        rec = any(
            k in ("r", "R", "recursive", "dereference-recursive")
            or (k in ("d", "directories") and v is not None and v.value == "recurse")
            for k, v in o.opts
        )
        if not rec:
            return []
        given = any(k in ("e", "f", "regexp", "file") for k, _ in o.opts)
        paths = o.operands if given else o.operands[1:]
        return paths or [lit(".")]
    if name in ("rg", "ag", "ack", "ack-grep"):
        o = getopt(args, _RG_SHORT, _RG_LONG)
        if any(k in ("files", "type-list", "version", "help", "h", "V") for k, _ in o.opts):
            return [lit(".")] if any(k == "files" for k, _ in o.opts) else []
        given = any(k in ("e", "f", "regexp", "file") for k, _ in o.opts)
        paths = o.operands if given else o.operands[1:]
        return paths or [lit(".")]
    if name == "git":
        # `git diff A B` with a path outside the repository is `--no-index`:
        # it reads both trees, whatever git tracks.
        g = getopt(
            args, "Cc", frozenset({"git-dir", "work-tree", "namespace"}), stop_at_operand=True
        )
        rest = args[g.rest_index :]
        if rest and rest[0].value == "diff":
            return [w for w in rest[1:] if w.value[:1] in ("/", "~", ".") and w.value != "."]
        return []
    if name == "diff":
        o = getopt(
            args,
            "CFILSUWxX",
            frozenset(
                {
                    "label",
                    "exclude",
                    "exclude-from",
                    "from-file",
                    "to-file",
                    "starting-file",
                    "unified",
                    "context",
                }
            ),
        )
        if any(k in ("r", "recursive") for k, _ in o.opts):
            return o.operands
    return []

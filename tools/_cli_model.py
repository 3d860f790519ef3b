"""The xguard command line as plain data, walked from the click CLI.

Shared by tools/gen_completions.py and tools/gen_man.py, and by the drift
test (tests/e2e/test_completions_man.py): the generated completions and man
page must name every command and option this model has.

Shell mode (`xguard -c STRING`, `-s`, `-l` …) is not a click command (the
hot path parses it by hand), so its flags are listed here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click


@dataclass
class Opt:
    names: list[str]  # e.g. ["-f", "--follow"]
    takes_value: bool
    metavar: str
    help: str
    choices: list[str] = field(default_factory=list)
    is_file: bool = False


@dataclass
class Arg:
    name: str
    metavar: str
    nargs: int  # -1 for many
    choices: list[str] = field(default_factory=list)
    is_file: bool = False


@dataclass
class Cmd:
    path: list[str]  # [] for xguard itself, ["audit", "verify"] …
    help: str
    short: str
    epilog: str
    usage: str
    options: list[Opt]
    args: list[Arg]
    subcommands: list[Cmd]

    @property
    def name(self) -> str:
        return " ".join(["xguard", *self.path])

    def walk(self) -> list[Cmd]:
        out = [self]
        for c in self.subcommands:
            out.extend(c.walk())
        return out


# Shell mode: what agents pass to $SHELL (SPEC §2), handled before click.
SHELL_OPTIONS = [
    Opt(
        ["-c"],
        True,
        "STRING",
        "Gate STRING, then run it as bash -c STRING would; more arguments become $0 $1 …",
    ),
    Opt(["-s"], False, "", "Read the script on standard input and gate it as one string."),
    Opt(
        ["-l", "--login"],
        False,
        "",
        "Accepted for login shells; no profile or rc file is ever read.",
    ),
    Opt(
        ["-i"],
        False,
        "",
        "Accepted; with no -c on a terminal, xguard is the interactive gated shell anyway.",
    ),
    Opt(
        ["-e"],
        False,
        "",
        "Passed on to bash (exit on error); so are -u -x -v -f -h -B -C -H -P -T -k.",
    ),
    Opt(["-o"], True, "OPTION", "Passed on to bash, e.g. -o pipefail."),
    Opt(["--debug"], False, "", "Show tracebacks on internal errors (also XGUARD_DEBUG=1)."),
]
_FILE_METAVARS = ("FILE", "PATH", "DIR")


def _is_file(metavar: str, ptype: click.ParamType) -> bool:
    return isinstance(ptype, click.Path | click.File) or any(
        m in metavar.upper() for m in _FILE_METAVARS
    )


def _opt(p: click.Option, ctx: click.Context) -> Opt:
    takes = not p.is_flag and not p.count
    choices = list(p.type.choices) if isinstance(p.type, click.Choice) else []
    metavar = p.metavar or (p.type.name.upper() if takes else "")
    if choices and not p.metavar:
        metavar = "|".join(str(c) for c in choices)
    names = sorted([*p.opts, *p.secondary_opts], key=lambda n: (n.startswith("--"), n))
    return Opt(
        names,
        takes,
        metavar,
        " ".join((p.help or "").split()),
        [str(c) for c in choices],
        takes and _is_file(metavar, p.type),
    )


def _arg(p: click.Argument) -> Arg:
    choices = [str(c) for c in p.type.choices] if isinstance(p.type, click.Choice) else []
    metavar = (p.metavar or p.name or "ARG").upper()
    return Arg(p.name or "arg", metavar, p.nargs, choices, _is_file(metavar, p.type))


def build(cli: click.Command | None = None) -> Cmd:
    """The whole tree, lazily loaded subcommands included (list_commands/get_command)."""
    if cli is None:
        from xguard.commands.cli import cli as xcli

        cli = xcli
    root_ctx = cli.make_context("xguard", [], resilient_parsing=True)
    return _build(cli, root_ctx, [])


def _build(cmd: click.Command, ctx: click.Context, path: list[str]) -> Cmd:
    options = [
        _opt(p, ctx) for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.hidden
    ]
    args = [_arg(p) for p in cmd.params if isinstance(p, click.Argument)]
    subs: list[Cmd] = []
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
            subs.append(_build(sub, sub_ctx, [*path, name]))
    if not path:
        # Shell mode's flags are xguard's own options too.
        known = {n for o in options for n in o.names}
        options = [o for o in SHELL_OPTIONS if not set(o.names) & known] + options
    help_text = (cmd.help or "").strip()
    short = (
        cmd.get_short_help_str(limit=200)
        if path
        else "a sudo-style gate between AI agents and the shell"
    )
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    return Cmd(path, help_text, short, (cmd.epilog or "").strip(), usage, options, args, subs)


def valued(cmd: Cmd) -> list[str]:
    return [n for o in cmd.options if o.takes_value for n in o.names]


def write_or_check(
    render: Callable[[], dict[str, str]],
    out_dir: Path,
    script: str,
    what: str,
    argv: list[str] | None = None,
) -> int:
    """The generators' command line: write the files, or with --check exit 1
    naming each committed file that differs from what the CLI generates now."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=f"Generate {what} from xguard's CLI.")
    ap.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    ap.add_argument("--out", default=str(out_dir))
    a = ap.parse_args(argv)
    out = Path(a.out)
    stale = []
    for name, text in render().items():
        p = out / name
        if a.check:
            if not p.exists() or p.read_text() != text:
                stale.append(str(p))
            continue
        out.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    if stale:
        sys.stderr.write(f"stale (run python3 tools/{script}): " + ", ".join(stale) + "\n")
        return 1
    return 0

"""Completions and man pages (issue 7 item 4).

- each completion loads in its real shell (bash, zsh, fish) and completes
  subcommands, nested subcommands, options and option values;
- `man -l` renders both pages with groff warnings on, and none appear;
- drift: the committed files are exactly what the generators make from the
  CLI today, and a command or option the CLI gains is reported missing (the
  checker itself is tested on a CLI with an extra command and option).

The shells come from Debian: apt-get install zsh fish tmux groff man-db.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import _cli_model  # noqa: E402
import gen_completions  # noqa: E402
import gen_man  # noqa: E402

COMPLETIONS = ROOT / "completions"
MAN = ROOT / "man"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool}); this test runs it for real")
    return path


# ---------------------------------------------------------------------------
# Drift.
def test_completions_are_generated_from_the_current_cli() -> None:
    for name, text in gen_completions.render().items():
        assert (COMPLETIONS / name).read_text() == text, (
            f"{name} is stale: run python3 tools/gen_completions.py"
        )


def test_man_pages_are_generated_from_the_current_cli() -> None:
    for name, text in gen_man.render().items():
        assert (MAN / name).read_text() == text, f"{name} is stale: run python3 tools/gen_man.py"


def missing(model: _cli_model.Cmd, man_src: str, bash: str, zsh: str, fish: str) -> list[str]:
    """Commands and options the man page or a completion file does not name."""
    out = []
    for c in model.walk():
        if c.path:
            name = c.path[-1]
            if f"{gen_man.esc(c.name)} " not in man_src:
                out.append(f"man: {c.name}")
            if re.search(rf"(^|[ \"]){re.escape(name)}( |\"|$)", bash, re.M) is None:
                out.append(f"bash: {c.name}")
            if f"{name}) " not in zsh:
                out.append(f"zsh: {c.name}")
            if f"-a '{name}'" not in fish:
                out.append(f"fish: {c.name}")
        for o in c.options:
            for n in o.names:
                if gen_man.esc(n) not in man_src:
                    out.append(f"man: {c.name} {n}")
                if f" {n} " not in f" {bash} ".replace('"', " "):
                    out.append(f"bash: {c.name} {n}")
                if n not in zsh:
                    out.append(f"zsh: {c.name} {n}")
                flag = (
                    f"-l {n[2:]}"
                    if n.startswith("--")
                    else (f"-s {n[1:]}" if len(n) == 2 else f"-o {n[1:]}")
                )
                if flag not in fish:
                    out.append(f"fish: {c.name} {n}")
    return out


def _files() -> tuple[str, str, str, str]:
    return (
        (MAN / "xguard.1").read_text(),
        (COMPLETIONS / "xguard.bash").read_text(),
        (COMPLETIONS / "_xguard").read_text(),
        (COMPLETIONS / "xguard.fish").read_text(),
    )


def test_every_command_and_option_is_documented_and_completed() -> None:
    assert missing(_cli_model.build(), *_files()) == []


def test_the_drift_check_catches_a_new_command_and_option() -> None:
    from xguard.commands.cli import cli

    @click.group(cls=type(cli), commands={})
    def fake() -> None:
        pass

    @click.command("frobnicate")
    @click.option("--wibble", help="A new option.")
    def frob(wibble: str | None) -> None:
        pass

    class Extended(type(cli)):  # type: ignore[misc]  # a base known at run time
        def list_commands(self, ctx: click.Context) -> list[str]:
            return [*super().list_commands(ctx), "frobnicate"]

        def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
            return frob if name == "frobnicate" else super().get_command(ctx, name)

    ext = Extended(
        name=cli.name, params=list(cli.params), help=cli.help, context_settings=cli.context_settings
    )
    # A new option on an existing command, too.
    audit = cli.get_command(click.Context(cli), "audit")
    assert audit is not None
    model = _cli_model.build(ext)
    audit_node = next(c for c in model.walk() if c.path == ["audit"])
    audit_node.options.append(_cli_model.Opt(["--brand-new"], False, "", "new"))
    gaps = missing(model, *_files())
    for where in ("man", "bash", "zsh", "fish"):
        assert f"{where}: xguard frobnicate" in gaps
        assert f"{where}: xguard frobnicate --wibble" in gaps
        assert f"{where}: xguard audit --brand-new" in gaps
    del fake


def test_rules_page_names_every_config_key() -> None:
    from xguard.policy.rules import TOP_SCHEMA

    src = (MAN / "xguard-rules.5").read_text()
    for key, _ in gen_man.schema_keys(TOP_SCHEMA):
        assert f"\\fB{gen_man.esc(key)}\\fR" in src, key


# ---------------------------------------------------------------------------
# Man pages render without warnings.
@pytest.mark.parametrize("page", ["xguard.1", "xguard-rules.5"])
def test_man_renders_without_warnings(page: str) -> None:
    groff = need("groff")
    r = subprocess.run(
        [groff, "-ww", "-man", "-z", str(MAN / page)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    man = need("man")
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8", "MANPAGER": "cat", "PAGER": "cat"}
    r = subprocess.run(
        [man, "--warnings", "-l", str(MAN / page)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = r.stdout
    assert "NAME" in text and "SEE ALSO" in text
    if page == "xguard.1":
        for section in ("SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"):
            assert section in text
    else:
        for section in ("RULES", "MATCHING", "CONFIGURATION KEYS"):
            assert section in text


# ---------------------------------------------------------------------------
# Completions in their real shells.
BASH_CASES = [
    ("xguard aud", "audit"),
    ("xguard audit ve", "verify"),
    ("xguard audit --fo", "--follow"),
    ("xguard audit --since 2h ve", "verify"),  # an option's value is skipped
    ("xguard rules l", "lint"),
    ("xguard hook c", "claude-code"),
    ("xguard hook --require-approval w", "wait"),
    ("xguard -", "-c"),
    ("xguard doc", "doctor"),
    ("xguard pending --j", "--json"),
]


@pytest.mark.parametrize(("line", "expect"), BASH_CASES)
def test_bash_completion(line: str, expect: str) -> None:
    bash = need("bash")
    script = (
        f"source {COMPLETIONS / 'xguard.bash'}\n"
        f"COMP_WORDS=({line}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE='{line}'\n"
        "_xguard; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
        "complete -p xguard\n"
    )
    r = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", script], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert expect in r.stdout.splitlines(), r.stdout
    assert "complete -o default -F _xguard xguard" in r.stdout


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        (x.rstrip() + (" " if x.endswith(" ") else ""), y)
        for x, y in [
            ("xguard aud", "audit"),
            ("xguard audit ", "verify"),
            ("xguard audit --fo", "--follow"),
            ("xguard rules ", "lint"),
            ("xguard hook ", "claude-code"),
            ("xguard hook --require-approval ", "wait"),
            ("xguard -", "-c"),
            ("xguard approve --", "--note"),
        ]
    ],
)
def test_fish_completion(line: str, expect: str) -> None:
    fish = need("fish")
    r = subprocess.run(
        [fish, "--no-config", "-c", f"source {COMPLETIONS / 'xguard.fish'}; complete -C '{line}'"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    got = [x.split("\t", 1)[0] for x in r.stdout.splitlines()]
    assert expect in got, r.stdout


def test_zsh_completion_loads() -> None:
    zsh = need("zsh")
    script = (
        f"fpath=({COMPLETIONS} $fpath); autoload -Uz compinit && compinit -u -D && "
        f"source {COMPLETIONS / '_xguard'} && print -r -- $_comps[xguard]"
    )
    r = subprocess.run(
        [zsh, "-f", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HOME": "/nonexistent"},
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.strip() == "_xguard"


def test_zsh_completion_completes() -> None:
    """zsh completion needs a real line editor: type and press Tab in tmux."""
    zsh = need("zsh")
    need("tmux")
    sock = f"xgz-{uuid.uuid4().hex[:8]}"

    def tmux(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", sock, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )

    def screen_after(keys: list[str], pattern: str) -> str:
        tmux("send-keys", "C-u")
        tmux("send-keys", "-l", keys[0])
        for k in keys[1:]:
            tmux("send-keys", k)
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = tmux("capture-pane", "-p").stdout
            if re.search(pattern, text, re.M):
                return text
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not on screen:\n{text}")

    env_cmd = f"env -i HOME=/nonexistent TERM=xterm PATH=/usr/bin:/bin {zsh} -f"
    try:
        tmux("new-session", "-d", "-x", "200", "-y", "40", env_cmd)
        tmux(
            "send-keys",
            "-l",
            f"fpath=({COMPLETIONS} $fpath); autoload -Uz compinit; compinit -u -D; "
            "PS1='ZSH> '; clear",
        )
        tmux("send-keys", "Enter")
        time.sleep(0.5)
        screen_after(["xguard aud", "Tab"], r"^ZSH> xguard audit\s*$")
        screen_after(["xguard audit --fo", "Tab"], r"^ZSH> xguard audit --follow\s*$")
        screen_after(["xguard rules ", "Tab"], r"lint\s+--.*\n(.*\n)*.*test\s+--")
        screen_after(["xguard hook --require-approval ", "Tab"], r"ask\s+deny\s+wait")
    finally:
        tmux("kill-server")


def test_every_command_help_has_examples() -> None:
    """Issue 7 conventions: helpful --help with examples on every command."""
    import subprocess

    from tests.conftest import xguard_exe

    verbs = [
        "run",
        "check",
        "hook",
        "ssh-gate",
        "rules lint",
        "rules test",
        "rules replay",
        "init",
        "audit",
        "audit verify",
        "audit report",
        "pending",
        "approve",
        "deny",
        "review",
        "session start",
        "session list",
        "session show",
        "session end",
        "session reset",
        "serve",
        "setup strict",
        "doctor",
    ]
    for v in verbs:
        p = subprocess.run(
            [*xguard_exe(), *v.split(), "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert p.returncode == 0, (v, p.stderr)
        assert "Example" in p.stdout, v

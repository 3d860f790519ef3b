"""`xguard rules lint|test` and `xguard init`: checking and writing rules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import ConfigError, ExitCode
from ..paths import ensure_dir, get_paths
from ..rules import BUILTIN_RULES, load_ruleset, rules_source


def _resolve(file: str | None) -> Path:
    if file:
        return Path(file)
    return rules_source(get_paths())


def run_rule_tests(path: Path) -> tuple[int, list[str]]:
    """Decide every `tests:` example of a rules file; -> (count, failure lines)."""
    from ..policy import Context, decide, real_glob
    from ..shellparse import parse, parse_argv

    rs = load_ruleset(get_paths(), path, use_cache=False)
    paths = get_paths()
    failures = []
    home = os.environ.get("HOME", "/root")
    for t in rs.tests:
        ctx = Context(cwd=t.get("cwd") or os.getcwd(), home=home, protected=[str(p) for p in paths.protected()],
                      expand_glob=real_glob)
        units = parse_argv(t["argv"]) if "argv" in t else parse(t["command"])
        d = decide(units, rs, ctx)
        if d.decision != t["expect"]:
            why = "; ".join(d.reasons[:2]) or "every unit allowed"
            failures.append(f"{t.get('command') or t.get('argv')!r}: expected {t['expect']}, got {d.decision} ({why})")
    return len(rs.tests), failures


@click.group("rules")
def rules() -> None:
    """Validate rules files and run the examples they carry."""


@rules.command("lint", epilog="\b\nExamples:\n  xguard rules lint\n  xguard rules lint ./my-rules.yaml")
@click.argument("file", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def lint(file: str | None, as_json: bool) -> int:
    """Validate a rules file (default: the one in effect) and its tests.

    Exit 0 when valid and every example holds, 78 when the file is invalid,
    1 when an example fails.
    """
    path = _resolve(file)
    try:
        n, failures = run_rule_tests(path)
    except ConfigError as e:
        if as_json:
            click.echo(__import__("json").dumps({"file": str(path), "ok": False, "error": e.message}))
        else:
            click.echo(f"xguard: {e.message}", err=True)
        return int(ExitCode.CONFIG)
    if as_json:
        click.echo(__import__("json").dumps({"file": str(path), "ok": not failures, "tests": n, "failures": failures}))
    else:
        for f in failures:
            click.echo(f"{path}: test failed: {f}", err=True)
        click.echo(f"{path}: {'ok' if not failures else 'FAILED'} ({n} examples, {len(failures)} failed)")
    return 0 if not failures else 1


@rules.command("test", epilog="\b\nExample:\n  xguard rules test ./my-rules.yaml")
@click.argument("file", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def test(ctx: click.Context, file: str | None, as_json: bool) -> int:
    """Run the `tests:` examples a rules file carries."""
    return ctx.invoke(lint, file=file, as_json=as_json)


@click.command("init", epilog="\b\nExamples:\n  xguard init\n  xguard init --force   # replace an existing file")
@click.option("--force", is_flag=True, help="Overwrite an existing rules file.")
@click.option("--print", "to_stdout", is_flag=True, help="Print the default rules instead of writing them.")
def init(force: bool, to_stdout: bool) -> int:
    """Write the commented built-in rules to the config location for editing."""
    text = BUILTIN_RULES.read_text(encoding="utf-8")
    if to_stdout:
        sys.stdout.write(text)
        return 0
    paths = get_paths()
    dest = paths.rules_file
    if dest.exists() and not force:
        click.echo(f"xguard: {dest} exists; not overwriting it (use --force)", err=True)
        return 1
    ensure_dir(paths.config_dir)
    tmp = dest.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    click.echo(f"wrote {dest}; check it with: xguard rules lint")
    return 0

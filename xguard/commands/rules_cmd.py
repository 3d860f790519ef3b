"""`xguard rules lint|test` and `xguard init`: checking and writing rules."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


from xguard.errors import ConfigError, ExitCode
from xguard.paths import ensure_dir, get_paths
from xguard.policy.rules import BUILTIN_RULES, load_ruleset, rules_source


def _resolve(file: str | None) -> Path:
    if file:
        return Path(file)
    return rules_source(get_paths())


def run_rule_tests(path: Path) -> tuple[int, list[str]]:
    """Decide every `tests:` example of a rules file; -> (count, failure lines)."""
    from xguard.policy.decide import Context, decide, real_glob
    from xguard.shell.parser import parse, parse_argv

    rs = load_ruleset(get_paths(), path, use_cache=False)
    paths = get_paths()
    failures = []
    home = os.environ.get("HOME", "/root")
    for t in rs.tests:
        ctx = Context(
            cwd=t.get("cwd") or os.getcwd(),
            home=home,
            protected=[str(p) for p in paths.protected()],
            expand_glob=real_glob,
            confined=bool(t.get("confined", False)),  # as `xguard -c` where a box can start
        )
        units = parse_argv(t["argv"]) if "argv" in t else parse(t["command"])
        d = decide(units, rs, ctx)
        if d.decision != t["expect"]:
            why = "; ".join(d.reasons[:2]) or "every unit allowed"
            failures.append(
                f"{t.get('command') or t.get('argv')!r}: expected {t['expect']}, got {d.decision} ({why})"
            )
    return len(rs.tests), failures


def rules() -> None:
    """Validate rules files and run the examples they carry."""


def lint(file: str | None, as_json: bool) -> int:
    """Validate a rules file (default: the one in effect) and its tests."""
    path = _resolve(file)
    try:
        n, failures = run_rule_tests(path)
    except ConfigError as e:
        if as_json:
            print(__import__("json").dumps({"file": str(path), "ok": False, "error": e.message}))
        else:
            print(f"xguard: {e.message}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    if as_json:
        print(
            __import__("json").dumps(
                {"file": str(path), "ok": not failures, "tests": n, "failures": failures}
            )
        )
    else:
        for f in failures:
            print(f"{path}: test failed: {f}", file=sys.stderr)
        print(
            f"{path}: {'ok' if not failures else 'FAILED'} ({n} examples, {len(failures)} failed)"
        )
    return 0 if not failures else 1


def test(file: str | None, as_json: bool) -> int:
    """Run the `tests:` examples a rules file carries."""
    return lint(file=file, as_json=as_json)


def init(force: bool, to_stdout: bool) -> int:
    """Write the commented built-in rules to the config location for editing."""
    text = BUILTIN_RULES.read_text(encoding="utf-8")
    if to_stdout:
        sys.stdout.write(text)
        return 0
    paths = get_paths()
    dest = paths.rules_file
    if dest.exists() and not force:
        print(f"xguard: {dest} exists; not overwriting it (use --force)", file=sys.stderr)
        return 1
    ensure_dir(paths.config_dir)
    tmp = dest.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    print(f"wrote {dest}; check it with: xguard rules lint")
    return 0


def replay_history(new_rules: Path, since: str | None, until: str | None = None) -> dict[str, Any]:
    """Decide every logged command again under `new_rules`; report what changes.

    Each command is decided in the cwd it ran in, as shell text or (for
    `xguard run`) as the argv it was. Returns counts per transition and the
    changed commands, most frequent first.
    """
    import shlex
    from collections import Counter

    from xguard.audit.read import Filter, entries, parse_time
    from xguard.policy.decide import Context, decide, real_glob
    from xguard.shell.parser import parse, parse_argv

    paths = get_paths()
    rs = load_ruleset(paths, new_rules, use_cache=False)
    filt = Filter(
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        event=("decision", "pending"),
    )
    home = os.environ.get("HOME", "/root")
    protected = [str(p) for p in paths.protected()]
    seen: dict[tuple[str, str, str], tuple[str, str, list[str]]] = {}
    counts: Counter[tuple[str, str, str]] = Counter()
    total = 0
    ids: set[str] = set()
    for e in entries(paths.audit_file, filt):
        r = e.record
        # An approved command logs `pending`, then `decision` under the same id: count it once.
        rid = str(r.get("id") or "")
        if rid and rid in ids:
            continue
        ids.add(rid)
        cmd, cwd, old = r.get("command"), r.get("cwd") or "/", r.get("decision")
        if not isinstance(cmd, str) or old not in ("allow", "require_approval", "deny"):
            continue
        total += 1
        key = (cmd, cwd, str(r.get("source") or "shell"))
        counts[key] += 1
        if key in seen:
            continue
        ctx = Context(cwd=cwd, home=home, protected=protected, expand_glob=real_glob)
        if key[2] == "run":
            try:
                units = parse_argv(shlex.split(cmd))
            except ValueError:
                units = parse(cmd)
        else:
            units = parse(cmd)
        d = decide(units, rs, ctx)
        seen[key] = (str(old), d.decision, d.reasons[:2])
    changes: Counter[str] = Counter()
    changed: list[dict[str, Any]] = []
    for key, (old, new, reasons) in seen.items():
        if old != new:
            changes[f"{old} -> {new}"] += counts[key]
            changed.append(
                {
                    "command": key[0],
                    "cwd": key[1],
                    "from": old,
                    "to": new,
                    "times": counts[key],
                    "why": reasons,
                }
            )
    changed.sort(key=lambda c: (-int(c["times"]), str(c["command"])))
    return {
        "rules": str(new_rules),
        "decisions": total,
        "distinct": len(seen),
        "changed": sum(changes.values()),
        "transitions": dict(changes),
        "commands": changed,
    }


def replay(new_rules: str, since: str, until: str | None, as_json: bool) -> int:
    """Decide logged commands again under a new rules file; show what would change."""
    import json

    try:
        res = replay_history(Path(new_rules), since, until)
    except ConfigError as e:
        print(f"xguard: {e.message}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    except FileNotFoundError:
        print("xguard: no audit log to replay", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(res, ensure_ascii=False))
        return 0
    from xguard.util import printable

    print(
        f"{res['decisions']} logged decisions ({res['distinct']} distinct commands) under {new_rules}: "
        f"{res['changed']} would change"
    )
    transitions: dict[str, int] = res["transitions"]
    commands: list[dict[str, object]] = res["commands"]
    for t, n in sorted(transitions.items()):
        print(f"  {t}: {n}")
    for c in commands:
        print(
            f"  {c['from']} -> {c['to']}  x{c['times']}  {printable(str(c['command']), 100)}  (in {c['cwd']})"
        )
    return 0

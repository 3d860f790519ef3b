"""The built-in rules (xguard/data/default-rules.yaml) as `xguard rules test` sees them.

- the file passes the schema (loaded without the cache, so YAML is really read);
- every example under `tests:` holds, decided in-process;
- every rule that does not allow says why (`reason`), since the file is what
  `xguard init` writes out for people to edit;
- it is at least as protective as shared/fixtures/agent-readonly.yaml: every
  require_approval/deny rule there is here with the same matcher and the same
  or a stricter action.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from xguard.paths import Paths
from xguard.policy.decide import Context, decide, real_glob
from xguard.policy.rules import BUILTIN_RULES, STRICTNESS, Ruleset, load_ruleset, load_yaml_file
from xguard.shell.parser import parse, parse_argv

_RAW = load_yaml_file(BUILTIN_RULES)
EXAMPLES = _RAW.get("tests", [])


def _id(t: dict[str, object]) -> str:
    text = str(t.get("command") or t.get("argv"))
    return text if len(text) <= 60 else text[:57] + "..."


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Ruleset:
    state = tmp_path_factory.mktemp("xghome")
    return load_ruleset(Paths(state, state), BUILTIN_RULES, use_cache=False)


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A cwd that looks like a project, and a home folder."""
    home = tmp_path_factory.mktemp("home")
    project = home / "project"
    for rel in ("README.md", "package.json", ".gitignore", "src/app.py", "names.txt", "data.csv"):
        p = project / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x\n", encoding="utf-8")
    return project, home


def test_schema(rules: Ruleset) -> None:
    assert rules.default == "require_approval"
    assert len(rules.rules) > 100
    assert len(rules.tests) == len(EXAMPLES) >= 100
    assert {"PAGER", "GIT_PAGER"} <= set(rules.env["set"])
    assert "PATH" in rules.env["keep"]


@pytest.mark.parametrize("example", [pytest.param(t, id=_id(t)) for t in EXAMPLES])
def test_example(example: dict[str, object], rules: Ruleset, where: tuple[Path, Path]) -> None:
    project, home = where
    ctx = Context(
        cwd=str(example.get("cwd") or project),
        home=str(home),
        expand_glob=real_glob,
        confined=bool(example.get("confined", False)),
    )
    argv = example.get("argv")
    units = parse_argv([str(a) for a in argv]) if argv else parse(str(example["command"]))
    d = decide(units, rules, ctx)
    assert d.decision == example["expect"], "; ".join(d.reasons[:3]) or "every unit allowed"


def test_examples_cover_every_action() -> None:
    counts = {a: sum(t["expect"] == a for t in EXAMPLES) for a in STRICTNESS}
    assert all(n >= 20 for n in counts.values()), counts


def test_every_strict_rule_gives_a_reason() -> None:
    missing = [
        f"line {r['line']}: {r.get('pattern') or r.get('regex') or r.get('path')}"
        for r in _RAW["rules"]
        if r["action"] != "allow" and not r.get("reason")
    ]
    assert not missing, missing


def _matcher(r: dict[str, object]) -> tuple[str, str, str]:
    kind = next(k for k in ("pattern", "regex", "path") if k in r)
    return kind, str(r[kind]), str(r.get("access", "any")) if kind == "path" else ""


def test_at_least_as_protective_as_the_fixture() -> None:
    fixture = FIXTURES / "agent-readonly.yaml"
    if not fixture.exists():
        pytest.skip("shared/fixtures is not beside this checkout")
    ours: dict[tuple[str, str, str], int] = {}
    for r in _RAW["rules"]:
        m = _matcher(r)
        ours[m] = max(ours.get(m, 0), STRICTNESS[r["action"]])
    theirs = load_yaml_file(fixture)
    assert STRICTNESS[_RAW["default"]] >= STRICTNESS[theirs.get("default", "require_approval")]
    weaker = [
        f"{m}: {r['action']}"
        for r in theirs["rules"]
        if r["action"] != "allow"
        for m in [_matcher(r)]
        if ours.get(m, -1) < STRICTNESS[r["action"]]
    ]
    assert not weaker, weaker
